#!/usr/bin/python3
"""Generate the pipeline fixture frames with scapy (python3-scapy).

The .bin files are committed; the tests (dataplane/tests/pipeline_*.rs) read
them with include_bytes! and never run scapy. Re-run from this directory with
`/usr/bin/python3 gen.py` after changing a fixture. Every expected output is
built by scapy from the protocol's rules, independently of the Rust code, and
the tests compare the pipeline's frames with them byte for byte.

Topology (mirrored by dataplane/tests/pipeline_common/mod.rs):
  port 0 (client side) L0_MAC, 198.51.100.1/24, 2001:db8:1::1/64
  port 1 (server side) L1_MAC, 10.1.0.1/24, fd00:1::1/64
  client 198.51.100.7 / 2001:db8:1::7 (C_MAC), on-link on port 0
  router 198.51.100.254 / 2001:db8:1::fe (R_MAC): default route via port 0
  servers 10.1.0.5 (S_MAC), 10.1.0.6 (S2_MAC), fd00:1::5 (S_MAC), on-link on port 1
  VIPs 203.0.113.10 / 2001:db8:2::10; full-NAT local addresses 10.1.0.254 / fd00:1::fe
"""
from scapy.all import (Ether, Dot1Q, ARP, IP, IPv6, TCP, UDP, ICMP, Raw, Padding,
                       IPv6ExtHdrHopByHop, IPv6ExtHdrFragment,
                       ICMPv6EchoRequest, ICMPv6EchoReply, ICMPv6PacketTooBig,
                       ICMPv6TimeExceeded, ICMPv6DestUnreach,
                       ICMPv6ND_NS, ICMPv6ND_NA, ICMPv6NDOptSrcLLAddr,
                       ICMPv6NDOptDstLLAddr, IPOption_Router_Alert)

C_MAC = "02:00:00:00:00:01"
L0_MAC = "02:00:00:00:00:02"
L1_MAC = "02:00:00:00:01:02"
S_MAC = "02:00:00:00:00:03"
S2_MAC = "02:00:00:00:00:04"
R_MAC = "02:00:00:00:00:fe"
BCAST = "ff:ff:ff:ff:ff:ff"
CLIENT4, PORT0_4, PORT1_4 = "198.51.100.7", "198.51.100.1", "10.1.0.1"
ROUTER4, FAR4 = "198.51.100.254", "192.0.2.77"
VIP4, SERVER4, SERVER4B, LOCAL4 = "203.0.113.10", "10.1.0.5", "10.1.0.6", "10.1.0.254"
CLIENT6, PORT0_6, PORT1_6 = "2001:db8:1::7", "2001:db8:1::1", "fd00:1::1"
VIP6, SERVER6, LOCAL6 = "2001:db8:2::10", "fd00:1::5", "fd00:1::fe"

out = {}


def put(name, pkt):
    out[name] = bytes(pkt)


def sn(addr):
    """Solicited-node multicast address and MAC of an IPv6 address."""
    import ipaddress
    low = ipaddress.IPv6Address(addr).packed[13:]
    grp = ipaddress.IPv6Address(b"\xff\x02" + b"\x00" * 9 + b"\x01\xff" + low)
    mac = "33:33:ff:%02x:%02x:%02x" % tuple(low)
    return str(grp), mac


# ---------------------------------------------------------------- local ----
# ARP request for the VIP, answered in place (RFC 826).
put("arp_req_vip", Ether(src=C_MAC, dst=BCAST) / ARP(op=1, hwsrc=C_MAC, psrc=CLIENT4, pdst=VIP4))
put("arp_rep_vip", Ether(src=L0_MAC, dst=C_MAC) / ARP(op=2, hwsrc=L0_MAC, psrc=VIP4, hwdst=C_MAC, pdst=CLIENT4))
# For the port's own address, padded to the Ethernet minimum: padding kept.
pad = Padding(load=b"\x00" * 18)
put("arp_req_port_padded", Ether(src=C_MAC, dst=BCAST) / ARP(op=1, hwsrc=C_MAC, psrc=CLIENT4, pdst=PORT0_4) / pad)
put("arp_rep_port_padded", Ether(src=L0_MAC, dst=C_MAC) / ARP(op=2, hwsrc=L0_MAC, psrc=PORT0_4, hwdst=C_MAC, pdst=CLIENT4) / pad)
# VLAN-tagged request: the reply keeps the tag.
put("arp_req_vlan", Ether(src=C_MAC, dst=BCAST) / Dot1Q(vlan=42) / ARP(op=1, hwsrc=C_MAC, psrc=CLIENT4, pdst=VIP4))
put("arp_rep_vlan", Ether(src=L0_MAC, dst=C_MAC) / Dot1Q(vlan=42) / ARP(op=2, hwsrc=L0_MAC, psrc=VIP4, hwdst=C_MAC, pdst=CLIENT4))
# For an address that is not ours, and for port 1's address asked on port 0.
put("arp_req_other", Ether(src=C_MAC, dst=BCAST) / ARP(op=1, hwsrc=C_MAC, psrc=CLIENT4, pdst="198.51.100.99"))
put("arp_req_wrong_port", Ether(src=C_MAC, dst=BCAST) / ARP(op=1, hwsrc=C_MAC, psrc=CLIENT4, pdst=PORT1_4))
# A server's reply to our request, and the request we send for the server.
put("arp_rep_server", Ether(src=S_MAC, dst=L1_MAC) / ARP(op=2, hwsrc=S_MAC, psrc=SERVER4, hwdst=L1_MAC, pdst=PORT1_4))
put("arp_req_for_server", Ether(src=L1_MAC, dst=BCAST) / ARP(op=1, hwsrc=L1_MAC, psrc=PORT1_4, hwdst="00:00:00:00:00:00", pdst=SERVER4))
put("arp_rep_server2", Ether(src=S2_MAC, dst=L1_MAC) / ARP(op=2, hwsrc=S2_MAC, psrc=SERVER4B, hwdst=L1_MAC, pdst=PORT1_4))
put("arp_rep_router", Ether(src=R_MAC, dst=L0_MAC) / ARP(op=2, hwsrc=R_MAC, psrc=ROUTER4, hwdst=L0_MAC, pdst=PORT0_4))
put("arp_req_for_router", Ether(src=L0_MAC, dst=BCAST) / ARP(op=1, hwsrc=L0_MAC, psrc=PORT0_4, hwdst="00:00:00:00:00:00", pdst=ROUTER4))
put("arp_rep_client", Ether(src=C_MAC, dst=L0_MAC) / ARP(op=2, hwsrc=C_MAC, psrc=CLIENT4, hwdst=L0_MAC, pdst=PORT0_4))

# ICMP echo to the VIP: reply with the addresses swapped, TTL 64, ident and TOS kept.
put("echo4_vip", Ether(src=C_MAC, dst=L0_MAC) / IP(src=CLIENT4, dst=VIP4, id=99, ttl=57, tos=0x10) /
    ICMP(type=8, id=0x1234, seq=1) / Raw(b"ping payload 0123456789"))
put("echo4_vip_reply", Ether(src=L0_MAC, dst=C_MAC) / IP(src=VIP4, dst=CLIENT4, id=99, ttl=64, tos=0x10) /
    ICMP(type=0, id=0x1234, seq=1) / Raw(b"ping payload 0123456789"))
# To the port's address with an IP option: the reply has none (RFC 1122 3.2.2.6 allows it).
put("echo4_opts", Ether(src=C_MAC, dst=L0_MAC) / IP(src=CLIENT4, dst=PORT0_4, id=7, options=[IPOption_Router_Alert()]) /
    ICMP(type=8, id=5, seq=9) / Raw(b"abc"))
put("echo4_opts_reply", Ether(src=L0_MAC, dst=C_MAC) / IP(src=PORT0_4, dst=CLIENT4, id=7, ttl=64) /
    ICMP(type=0, id=5, seq=9) / Raw(b"abc"))
# Ethernet padding of a short request is not echoed.
put("echo4_padded", Ether(src=S_MAC, dst=L1_MAC) / IP(src=SERVER4, dst=PORT1_4, id=3) / ICMP(type=8, id=1, seq=1) / Padding(load=b"\x00" * 18))
put("echo4_padded_reply", Ether(src=L1_MAC, dst=S_MAC) / IP(src=PORT1_4, dst=SERVER4, id=3, ttl=64) / ICMP(type=0, id=1, seq=1))
# Echo to a broadcast address and a fragmented echo are not answered.
put("echo4_bcast", Ether(src=C_MAC, dst=BCAST) / IP(src=CLIENT4, dst="198.51.100.255") / ICMP(type=8))

put("echo6_vip", Ether(src=C_MAC, dst=L0_MAC) / IPv6(src=CLIENT6, dst=VIP6, hlim=50) / ICMPv6EchoRequest(id=0x42, seq=3, data=b"ping6"))
put("echo6_vip_reply", Ether(src=L0_MAC, dst=C_MAC) / IPv6(src=VIP6, dst=CLIENT6, hlim=64) / ICMPv6EchoReply(id=0x42, seq=3, data=b"ping6"))
put("echo6_hbh", Ether(src=C_MAC, dst=L0_MAC) / IPv6(src=CLIENT6, dst=PORT0_6) / IPv6ExtHdrHopByHop() / ICMPv6EchoRequest(id=7, seq=8, data=b"x" * 40))
put("echo6_hbh_reply", Ether(src=L0_MAC, dst=C_MAC) / IPv6(src=PORT0_6, dst=CLIENT6, hlim=64) / ICMPv6EchoReply(id=7, seq=8, data=b"x" * 40))

# Neighbour solicitation for the VIP to its solicited-node group: solicited,
# override advertisement to the soliciting node's link-layer address.
grp, grp_mac = sn(VIP6)
put("ns_vip", Ether(src=C_MAC, dst=grp_mac) / IPv6(src=CLIENT6, dst=grp, hlim=255) / ICMPv6ND_NS(tgt=VIP6) / ICMPv6NDOptSrcLLAddr(lladdr=C_MAC))
put("na_vip", Ether(src=L0_MAC, dst=C_MAC) / IPv6(src=VIP6, dst=CLIENT6, hlim=255) / ICMPv6ND_NA(tgt=VIP6, R=0, S=1, O=1) / ICMPv6NDOptDstLLAddr(lladdr=L0_MAC))
# Unicast solicitation (reachability probe) without a link-layer option: answered to the Ethernet source.
put("ns_port_unicast", Ether(src=C_MAC, dst=L0_MAC) / IPv6(src=CLIENT6, dst=PORT0_6, hlim=255) / ICMPv6ND_NS(tgt=PORT0_6))
put("na_port_unicast", Ether(src=L0_MAC, dst=C_MAC) / IPv6(src=PORT0_6, dst=CLIENT6, hlim=255) / ICMPv6ND_NA(tgt=PORT0_6, R=0, S=1, O=1) / ICMPv6NDOptDstLLAddr(lladdr=L0_MAC))
# Duplicate address detection (from ::): answered to all-nodes, not solicited.
grp0, grp0_mac = sn(PORT0_6)
put("ns_dad", Ether(src=C_MAC, dst=grp0_mac) / IPv6(src="::", dst=grp0, hlim=255) / ICMPv6ND_NS(tgt=PORT0_6))
put("na_dad", Ether(src=L0_MAC, dst="33:33:00:00:00:01") / IPv6(src=PORT0_6, dst="ff02::1", hlim=255) / ICMPv6ND_NA(tgt=PORT0_6, R=0, S=0, O=1) / ICMPv6NDOptDstLLAddr(lladdr=L0_MAC))
# Invalid: hop limit not 255 (RFC 4861 7.1.1); and one for a target that is not ours.
put("ns_bad_hlim", Ether(src=C_MAC, dst=grp_mac) / IPv6(src=CLIENT6, dst=grp, hlim=64) / ICMPv6ND_NS(tgt=VIP6) / ICMPv6NDOptSrcLLAddr(lladdr=C_MAC))
grpo, grpo_mac = sn("2001:db8:1::99")
put("ns_other", Ether(src=C_MAC, dst=grpo_mac) / IPv6(src=CLIENT6, dst=grpo, hlim=255) / ICMPv6ND_NS(tgt="2001:db8:1::99") / ICMPv6NDOptSrcLLAddr(lladdr=C_MAC))
# What we send to resolve the IPv6 server, and its answer.
grps, grps_mac = sn(SERVER6)
put("ns_for_server6", Ether(src=L1_MAC, dst=grps_mac) / IPv6(src=PORT1_6, dst=grps, hlim=255) / ICMPv6ND_NS(tgt=SERVER6) / ICMPv6NDOptSrcLLAddr(lladdr=L1_MAC))
put("na_server6", Ether(src=S_MAC, dst=L1_MAC) / IPv6(src=SERVER6, dst=PORT1_6, hlim=255) / ICMPv6ND_NA(tgt=SERVER6, R=0, S=1, O=1) / ICMPv6NDOptDstLLAddr(lladdr=S_MAC))

# Exception path and strays.
put("tcp_to_port", Ether(src=C_MAC, dst=L0_MAC) / IP(src=CLIENT4, dst=PORT0_4) / TCP(sport=50000, dport=22, flags="S"))
put("udp_not_ours", Ether(src=C_MAC, dst=L0_MAC) / IP(src=CLIENT4, dst="198.51.100.99") / UDP(sport=1, dport=2))
put("bad_ip_csum", Ether(src=C_MAC, dst=L0_MAC) / IP(src=CLIENT4, dst=VIP4, chksum=0x1234) / UDP(sport=1, dport=2))

for name, data in out.items():
    with open(name + ".bin", "wb") as f:
        f.write(data)
print(len(out), "fixtures")
