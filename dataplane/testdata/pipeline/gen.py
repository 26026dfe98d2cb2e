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
ROUTER4, FAR4, ROUTER6 = "198.51.100.254", "192.0.2.77", "2001:db8:1::fe"
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


# ----------------------------------------------------------- forwarding ----
# Services (dataplane/tests/pipeline_common/mod.rs forwarding_services()):
#   VIP4 tcp/80 NAT -> SERVER4 (port kept)     VIP4 tcp/8080 NAT -> SERVER4:80
#   VIP4 udp/53 NAT -> SERVER4:5353            VIP4 tcp/443 full NAT -> SERVER4 (local LOCAL4)
#   VIP4 tcp/22 DSR -> SERVER4                 VIP4 tcp/25 tunnel -> SERVER4
#   VIP4 tcp/26 tunnel -> SERVER6 (4in6)
#   VIP6 tcp/443 NAT -> SERVER6                VIP6 tcp/8443 full NAT -> SERVER6 (local LOCAL6)
#   VIP6 tcp/22 DSR -> SERVER6                 VIP6 tcp/25 tunnel -> SERVER6
# Worker 0 of 1 without RSS: the first full-NAT port is 1024.
SYN_OPTS = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1234567, 0)), ("NOP", None), ("WScale", 7)]


def routed(pkt, src_mac, dst_mac, **ip):
    """pkt after a router hop: new MACs, TTL - 1, IP fields changed, checksums recomputed."""
    p = pkt.copy()
    p[Ether].src = src_mac
    p[Ether].dst = dst_mac
    l3 = IP if IP in p else IPv6
    if l3 is IP:
        p[IP].ttl -= 1
        del p[IP].chksum
    else:
        p[IPv6].hlim -= 1
    for k, v in ip.items():
        setattr(p[l3], k, v)
    for l4 in (TCP, UDP):
        if l4 in p:
            del p[l4].chksum
    return p


def l4(p, **kw):
    for layer in (TCP, UDP):
        if layer in p:
            for k, v in kw.items():
                setattr(p[layer], k, v)
            del p[layer].chksum
    return p


def syn4(dport, sport=40000, ttl=61):
    return Ether(src=C_MAC, dst=L0_MAC) / IP(src=CLIENT4, dst=VIP4, id=4321, ttl=ttl) / \
        TCP(sport=sport, dport=dport, seq=1000, flags="S", window=64240, options=SYN_OPTS)


def syn6(dport, sport=40000):
    return Ether(src=C_MAC, dst=L0_MAC) / IPv6(src=CLIENT6, dst=VIP6, hlim=60, fl=0xabcde, tc=0x28) / \
        TCP(sport=sport, dport=dport, seq=77, flags="S", window=64240, options=SYN_OPTS)


def synack4(src, sport, dst, dport):
    return Ether(src=S_MAC, dst=L1_MAC) / IP(src=src, dst=dst, id=555, ttl=64, flags="DF") / \
        TCP(sport=sport, dport=dport, seq=9000, ack=1001, flags="SA", window=65160, options=[("MSS", 1460)])


def synack6(src, sport, dst, dport):
    return Ether(src=S_MAC, dst=L1_MAC) / IPv6(src=src, dst=dst, hlim=64) / \
        TCP(sport=sport, dport=dport, seq=9000, ack=78, flags="SA", window=65160, options=[("MSS", 1440)])


# NAT, IPv4: DNAT on the way in, source restored on the way out.
s = syn4(80); put("nat4_syn", s)
put("nat4_syn_out", routed(s, L1_MAC, S_MAC, dst=SERVER4))
r = synack4(SERVER4, 80, CLIENT4, 40000); put("nat4_synack", r)
put("nat4_synack_out", routed(r, L0_MAC, C_MAC, src=VIP4))
ack = Ether(src=C_MAC, dst=L0_MAC) / IP(src=CLIENT4, dst=VIP4, id=4322, ttl=61) / TCP(sport=40000, dport=80, seq=1001, ack=9001, flags="A") / Raw(b"GET / HTTP/1.0\r\n\r\n")
put("nat4_data", ack)
put("nat4_data_out", routed(ack, L1_MAC, S_MAC, dst=SERVER4))
# Port translation 8080 -> 80.
s = syn4(8080, sport=40001); put("nat4p_syn", s)
put("nat4p_syn_out", l4(routed(s, L1_MAC, S_MAC, dst=SERVER4), dport=80))
r = synack4(SERVER4, 80, CLIENT4, 40001); put("nat4p_synack", r)
put("nat4p_synack_out", l4(routed(r, L0_MAC, C_MAC, src=VIP4), sport=8080))
# UDP 53 -> 5353, and back.
u = Ether(src=C_MAC, dst=L0_MAC) / IP(src=CLIENT4, dst=VIP4, ttl=64) / UDP(sport=1000, dport=53) / Raw(b"dns?")
put("nat4u_q", u)
put("nat4u_q_out", l4(routed(u, L1_MAC, S_MAC, dst=SERVER4), dport=5353))
ur = Ether(src=S_MAC, dst=L1_MAC) / IP(src=SERVER4, dst=CLIENT4, ttl=64) / UDP(sport=5353, dport=1000) / Raw(b"dns!")
put("nat4u_r", ur)
put("nat4u_r_out", l4(routed(ur, L0_MAC, C_MAC, src=VIP4), sport=53))
# Zero UDP checksum stays zero (RFC 768).
u0 = Ether(src=C_MAC, dst=L0_MAC) / IP(src=CLIENT4, dst=VIP4, ttl=64) / UDP(sport=1001, dport=53, chksum=0) / Raw(b"nocsum")
put("nat4u0_q", u0)
u0o = routed(u0, L1_MAC, S_MAC, dst=SERVER4); u0o[UDP].dport = 5353; u0o[UDP].chksum = 0
put("nat4u0_q_out", u0o)

# Full NAT, IPv4: client -> LOCAL4:1024 -> SERVER4:443, and back.
s = syn4(443); put("fnat4_syn", s)
put("fnat4_syn_out", l4(routed(s, L1_MAC, S_MAC, src=LOCAL4, dst=SERVER4), sport=1024))
r = synack4(SERVER4, 443, LOCAL4, 1024); put("fnat4_synack", r)
put("fnat4_synack_out", l4(routed(r, L0_MAC, C_MAC, src=VIP4, dst=CLIENT4), sport=443, dport=40000))

# DSR, IPv4: only the MACs change, the TTL too stays.
s = syn4(22); put("dsr4_syn", s)
d = s.copy(); d[Ether].src = L1_MAC; d[Ether].dst = S_MAC
put("dsr4_syn_out", d)

# Tunnel, IPv4 in IPv4: outer header from port 1's address, MSS clamped to
# 1500 - 20 (outer) - 20 (IP) - 20 (TCP) = 1440; first ident of the worker is 1.
s = syn4(25); put("tun4_syn", s)
inner = s[IP].copy(); inner[TCP].options = [("MSS", 1440)] + SYN_OPTS[1:]; del inner[TCP].chksum
put("tun4_syn_out", Ether(src=L1_MAC, dst=S_MAC) / IP(src=PORT1_4, dst=SERVER4, proto=4, id=1, ttl=64, flags=0, tos=0) / inner)
# A full-size DF segment does not fit: fragmentation needed (MTU 1480) to the client, from the VIP (ident 2).
big = Ether(src=C_MAC, dst=L0_MAC) / IP(src=CLIENT4, dst=VIP4, id=4400, ttl=61, flags="DF") / TCP(sport=40000, dport=25, seq=1001, ack=1, flags="A") / Raw(b"B" * 1460)
put("tun4_big", big)
put("tun4_big_icmp", Ether(src=L0_MAC, dst=C_MAC) / IP(src=VIP4, dst=CLIENT4, id=2, ttl=64) / ICMP(type=3, code=4, nexthopmtu=1480) / bytes(big[IP])[:548])
# IPv4 in IPv6 (VIP4 tcp/26 -> SERVER6): MSS 1500 - 40 - 20 - 20 = 1420.
s = syn4(26); put("tun46_syn", s)
inner = s[IP].copy(); inner[TCP].options = [("MSS", 1420)] + SYN_OPTS[1:]; del inner[TCP].chksum
put("tun46_syn_out", Ether(src=L1_MAC, dst=S_MAC) / IPv6(src=PORT1_6, dst=SERVER6, nh=4, hlim=64, tc=0) / inner)

# Time exceeded: TTL 1 towards the VIP, answered from the VIP, whole packet quoted.
s = syn4(80, sport=40009, ttl=1); put("ttl1_syn", s)
put("ttl1_icmp", Ether(src=L0_MAC, dst=C_MAC) / IP(src=VIP4, dst=CLIENT4, id=1, ttl=64) / ICMP(type=11, code=0) / bytes(s[IP]))

# ICMP errors about NAT'd flows.
# Server side: a router behind the appliance cannot reach the server with our
# forwarded SYN; the error goes to the client (the appliance is its route).
fwd_syn = routed(syn4(80), L1_MAC, S_MAC, dst=SERVER4)
e = Ether(src=S2_MAC, dst=L1_MAC) / IP(src="10.1.0.99", dst=CLIENT4, id=77, ttl=64) / ICMP(type=3, code=1) / bytes(fwd_syn[IP])[:28]
put("nat4_err_srv", e)
q = IP(bytes(fwd_syn[IP])); q.dst = VIP4; del q.chksum
put("nat4_err_srv_out", Ether(src=L0_MAC, dst=C_MAC) / IP(src=VIP4, dst=CLIENT4, id=77, ttl=63) / ICMP(type=3, code=1) / bytes(q)[:28])
# Client side: fragmentation needed about our reply (VIP:80 -> client), to the server.
rep = routed(synack4(SERVER4, 80, CLIENT4, 40000), L0_MAC, C_MAC, src=VIP4)
e = Ether(src=R_MAC, dst=L0_MAC) / IP(src=ROUTER4, dst=VIP4, id=78, ttl=64) / ICMP(type=3, code=4, nexthopmtu=1400) / bytes(rep[IP])[:28]
put("nat4_err_cli", e)
q = IP(bytes(rep[IP])); q.src = SERVER4; del q.chksum
put("nat4_err_cli_out", Ether(src=L1_MAC, dst=S_MAC) / IP(src=ROUTER4, dst=SERVER4, id=78, ttl=63) / ICMP(type=3, code=4, nexthopmtu=1400) / bytes(q)[:28])
# Full NAT, server side: quote LOCAL4:1024 -> SERVER4:443 becomes CLIENT4:40000 -> VIP4:443.
fwd_f = routed(syn4(443), L1_MAC, S_MAC, src=LOCAL4, dst=SERVER4); fwd_f = l4(fwd_f, sport=1024)
fwd_f = Ether(bytes(fwd_f))
e = Ether(src=S2_MAC, dst=L1_MAC) / IP(src="10.1.0.99", dst=LOCAL4, id=79, ttl=64) / ICMP(type=3, code=1) / bytes(fwd_f[IP])[:28]
put("fnat4_err_srv", e)
q = IP(bytes(fwd_f[IP])); q.src = CLIENT4; q.dst = VIP4; q[TCP].sport = 40000; del q.chksum
put("fnat4_err_srv_out", Ether(src=L0_MAC, dst=C_MAC) / IP(src=VIP4, dst=CLIENT4, id=79, ttl=63) / ICMP(type=3, code=1) / bytes(q)[:28])
# Full NAT, client side: quote VIP4:443 -> CLIENT4:40000 becomes SERVER4:443 -> LOCAL4:1024, outer LOCAL4 -> SERVER4.
rep_f = Ether(bytes(l4(routed(synack4(SERVER4, 443, LOCAL4, 1024), L0_MAC, C_MAC, src=VIP4, dst=CLIENT4), dport=40000)))
e = Ether(src=R_MAC, dst=L0_MAC) / IP(src=ROUTER4, dst=VIP4, id=80, ttl=64) / ICMP(type=3, code=4, nexthopmtu=1400) / bytes(rep_f[IP])[:28]
put("fnat4_err_cli", e)
q = IP(bytes(rep_f[IP])); q.src = SERVER4; q.dst = LOCAL4; q[TCP].dport = 1024; del q.chksum
put("fnat4_err_cli_out", Ether(src=L1_MAC, dst=S_MAC) / IP(src=LOCAL4, dst=SERVER4, id=80, ttl=63) / ICMP(type=3, code=4, nexthopmtu=1400) / bytes(q)[:28])
# DSR, client side: an error about the server's reply (VIP4:22 -> client) goes to the server unchanged.
rep_d = IP(src=VIP4, dst=CLIENT4, ttl=64) / TCP(sport=22, dport=40000, flags="SA")
e = Ether(src=R_MAC, dst=L0_MAC) / IP(src=ROUTER4, dst=VIP4, id=81, ttl=64) / ICMP(type=3, code=4, nexthopmtu=1400) / bytes(rep_d)[:28]
put("dsr4_err_cli", e)
d = e.copy(); d[Ether].src = L1_MAC; d[Ether].dst = S_MAC
put("dsr4_err_cli_out", d)

# IPv6: NAT, full NAT, DSR, tunnel.
s = syn6(443); put("nat6_syn", s)
put("nat6_syn_out", routed(s, L1_MAC, S_MAC, dst=SERVER6))
r = synack6(SERVER6, 443, CLIENT6, 40000); put("nat6_synack", r)
put("nat6_synack_out", routed(r, L0_MAC, C_MAC, src=VIP6))
s = syn6(8443); put("fnat6_syn", s)
put("fnat6_syn_out", l4(routed(s, L1_MAC, S_MAC, src=LOCAL6, dst=SERVER6), sport=1024))
r = synack6(SERVER6, 8443, LOCAL6, 1024); put("fnat6_synack", r)
put("fnat6_synack_out", l4(routed(r, L0_MAC, C_MAC, src=VIP6, dst=CLIENT6), sport=8443, dport=40000))
s = syn6(22); put("dsr6_syn", s)
d = s.copy(); d[Ether].src = L1_MAC; d[Ether].dst = S_MAC
put("dsr6_syn_out", d)
s = syn6(25); put("tun6_syn", s)
inner = s[IPv6].copy(); inner[TCP].options = [("MSS", 1400)] + SYN_OPTS[1:]; del inner[TCP].chksum
put("tun6_syn_out", Ether(src=L1_MAC, dst=S_MAC) / IPv6(src=PORT1_6, dst=SERVER6, nh=41, hlim=64, tc=0x28) / inner)
big6 = Ether(src=C_MAC, dst=L0_MAC) / IPv6(src=CLIENT6, dst=VIP6, hlim=60) / TCP(sport=40000, dport=25, seq=78, flags="A") / Raw(b"C" * 1440)
put("tun6_big", big6)
put("tun6_big_icmp", Ether(src=L0_MAC, dst=C_MAC) / IPv6(src=VIP6, dst=CLIENT6, hlim=64) / ICMPv6PacketTooBig(mtu=1460) / bytes(big6[IPv6])[:1232])  # RFC 4443 2.4(c): within 1280 bytes
# ICMPv6 packet too big from the client side about the NAT reply, whole packet quoted (inner TCP checksum updated).
rep6 = routed(synack6(SERVER6, 443, CLIENT6, 40000), L0_MAC, C_MAC, src=VIP6)
e = Ether(src=R_MAC, dst=L0_MAC) / IPv6(src=ROUTER6, dst=VIP6, hlim=64) / ICMPv6PacketTooBig(mtu=1280) / bytes(rep6[IPv6])
put("nat6_err_cli", e)
q = IPv6(bytes(rep6[IPv6])); q.src = SERVER6; del q[TCP].chksum
put("nat6_err_cli_out", Ether(src=L1_MAC, dst=S_MAC) / IPv6(src=ROUTER6, dst=SERVER6, hlim=63) / ICMPv6PacketTooBig(mtu=1280) / bytes(q))
# ICMPv6 errors from the server side and about full NAT and DSR flows (the
# IPv6 counterparts of the IPv4 ones above; ICMPv6 quotes the whole packet).
# NAT, server side: address unreachable about our forwarded SYN, to the client.
fwd6 = Ether(bytes(routed(syn6(443), L1_MAC, S_MAC, dst=SERVER6)))
e = Ether(src=S2_MAC, dst=L1_MAC) / IPv6(src="fd00:1::99", dst=CLIENT6, hlim=64) / ICMPv6DestUnreach(code=3) / bytes(fwd6[IPv6])
put("nat6_err_srv", e)
q = IPv6(bytes(fwd6[IPv6])); q.dst = VIP6; del q[TCP].chksum
put("nat6_err_srv_out", Ether(src=L0_MAC, dst=C_MAC) / IPv6(src=VIP6, dst=CLIENT6, hlim=63) / ICMPv6DestUnreach(code=3) / bytes(q))
# Full NAT, server side: quote LOCAL6:1024 -> SERVER6:8443 becomes CLIENT6:40000 -> VIP6:8443.
fwd6f = Ether(bytes(l4(routed(syn6(8443), L1_MAC, S_MAC, src=LOCAL6, dst=SERVER6), sport=1024)))
e = Ether(src=S2_MAC, dst=L1_MAC) / IPv6(src="fd00:1::99", dst=LOCAL6, hlim=64) / ICMPv6DestUnreach(code=3) / bytes(fwd6f[IPv6])
put("fnat6_err_srv", e)
q = IPv6(bytes(fwd6f[IPv6])); q.src = CLIENT6; q.dst = VIP6; q[TCP].sport = 40000; del q[TCP].chksum
put("fnat6_err_srv_out", Ether(src=L0_MAC, dst=C_MAC) / IPv6(src=VIP6, dst=CLIENT6, hlim=63) / ICMPv6DestUnreach(code=3) / bytes(q))
# Full NAT, client side: packet too big about VIP6:8443 -> CLIENT6:40000, to the
# server as SERVER6:8443 -> LOCAL6:1024, outer LOCAL6 -> SERVER6.
rep6f = Ether(bytes(l4(routed(synack6(SERVER6, 8443, LOCAL6, 1024), L0_MAC, C_MAC, src=VIP6, dst=CLIENT6), dport=40000)))
e = Ether(src=R_MAC, dst=L0_MAC) / IPv6(src=ROUTER6, dst=VIP6, hlim=64) / ICMPv6PacketTooBig(mtu=1280) / bytes(rep6f[IPv6])
put("fnat6_err_cli", e)
q = IPv6(bytes(rep6f[IPv6])); q.src = SERVER6; q.dst = LOCAL6; q[TCP].dport = 1024; del q[TCP].chksum
put("fnat6_err_cli_out", Ether(src=L1_MAC, dst=S_MAC) / IPv6(src=LOCAL6, dst=SERVER6, hlim=63) / ICMPv6PacketTooBig(mtu=1280) / bytes(q))
# DSR, client side: packet too big about the server's reply (VIP6:22 -> client)
# goes to the server unchanged, by MAC.
rep6d = IPv6(src=VIP6, dst=CLIENT6, hlim=64) / TCP(sport=22, dport=40000, flags="SA")
e = Ether(src=R_MAC, dst=L0_MAC) / IPv6(src=ROUTER6, dst=VIP6, hlim=64) / ICMPv6PacketTooBig(mtu=1280) / bytes(rep6d)
put("dsr6_err_cli", e)
d = e.copy(); d[Ether].src = L1_MAC; d[Ether].dst = S_MAC
put("dsr6_err_cli_out", d)
# Hop limit 1 on IPv6: time exceeded from the VIP.
s6 = syn6(443, sport=40009); s6[IPv6].hlim = 1; put("hlim1_syn", s6)
put("hlim1_icmp", Ether(src=L0_MAC, dst=C_MAC) / IPv6(src=VIP6, dst=CLIENT6, hlim=64) / ICMPv6TimeExceeded(code=0) / bytes(s6[IPv6]))

# Strays: a mid-stream segment for a round-robin service, a fragment to the VIP, UDP to a VIP port without service.
put("nat4_midstream", Ether(src=C_MAC, dst=L0_MAC) / IP(src=CLIENT4, dst=VIP4) / TCP(sport=41000, dport=80, flags="A"))
put("udp_no_service", Ether(src=C_MAC, dst=L0_MAC) / IP(src=CLIENT4, dst=VIP4) / UDP(sport=1, dport=9999))
put("frag_to_vip", Ether(src=C_MAC, dst=L0_MAC) / IP(src=CLIENT4, dst=VIP4, flags="MF", frag=0) / UDP(sport=1, dport=53) / Raw(b"x" * 16))

# ------------------------------------------------------ redirect responder ----
# The redirect service (seed 000) answered in place: VIP4 tcp/80 and VIP6
# tcp/80, one server each (http://www1.example.com, https://www1...;
# http://www6.example.com), secure prefix /checkout/, SYN-cookie master key
# REDIR_KEY, the clock at REDIR_NOW seconds (dataplane/tests/pipeline_respond.rs).
# The cookies are computed here from syncookie.rs's definition with a SipHash
# written from its paper (Aumasson and Bernstein, 2012), not taken from Rust.
REDIR_KEY = b"fixture-cookie-k"
REDIR_NOW = 1234 * 60 + 7
M64 = (1 << 64) - 1


def _rotl(x, b):
    return ((x << b) | (x >> (64 - b))) & M64


def siphash24(key, msg, wide=False):
    """SipHash-2-4 of msg under a 16-byte key: a 64-bit value, or (h1, h2) for the 128-bit variant."""
    k0 = int.from_bytes(key[:8], "little")
    k1 = int.from_bytes(key[8:], "little")
    v = [k0 ^ 0x736f6d6570736575, k1 ^ 0x646f72616e646f6d, k0 ^ 0x6c7967656e657261, k1 ^ 0x7465646279746573]
    if wide:
        v[1] ^= 0xee

    def rounds(n):
        for _ in range(n):
            v[0] = (v[0] + v[1]) & M64; v[1] = _rotl(v[1], 13); v[1] ^= v[0]; v[0] = _rotl(v[0], 32)
            v[2] = (v[2] + v[3]) & M64; v[3] = _rotl(v[3], 16); v[3] ^= v[2]
            v[0] = (v[0] + v[3]) & M64; v[3] = _rotl(v[3], 21); v[3] ^= v[0]
            v[2] = (v[2] + v[1]) & M64; v[1] = _rotl(v[1], 17); v[1] ^= v[2]; v[2] = _rotl(v[2], 32)

    tail = len(msg) % 8
    for i in range(0, len(msg) - tail, 8):
        m = int.from_bytes(msg[i:i + 8], "little")
        v[3] ^= m; rounds(2); v[0] ^= m
    b = ((len(msg) & 0xff) << 56) | int.from_bytes(msg[len(msg) - tail:], "little")
    v[3] ^= b; rounds(2); v[0] ^= b
    v[2] ^= 0xee if wide else 0xff
    rounds(4)
    h1 = v[0] ^ v[1] ^ v[2] ^ v[3]
    if not wide:
        return h1
    v[1] ^= 0xdd
    rounds(4)
    return h1, v[0] ^ v[1] ^ v[2] ^ v[3]


# The published test vector (SipHash-2-4, key 00..0f, message 00..0e).
assert siphash24(bytes(range(16)), bytes(range(15))) == 0xa129ca6149be45e5


def cookie(client, server, cport, sport, isn, mss):
    """The SYN cookie (syncookie.rs): minute(6) | MSS index(2) | MAC(24)."""
    import ipaddress
    table = [536, 1220, 1440, 1460]
    idx = max(i for i, m in enumerate(table) if m <= max(mss, 536))
    period = REDIR_NOW // 60
    k0, k1 = siphash24(REDIR_KEY, period.to_bytes(8, "little"), wide=True)
    secret = k0.to_bytes(8, "little") + k1.to_bytes(8, "little")
    msg = (ipaddress.ip_address(client).packed + ipaddress.ip_address(server).packed +
           cport.to_bytes(2, "little") + sport.to_bytes(2, "little") +
           isn.to_bytes(4, "little") + idx.to_bytes(4, "little"))
    mac = siphash24(secret, msg) & 0xffffff
    return (period % 64) << 26 | idx << 24 | mac, table[idx]


def redir_pair(v6, sport, isn, mss, path, location, ident):
    """(SYN, SYN-ACK, request, 302 + FIN) of one client connection."""
    cli, vip = (CLIENT6, VIP6) if v6 else (CLIENT4, VIP4)
    ip_in = (lambda: IPv6(src=cli, dst=vip, hlim=60)) if v6 else (lambda: IP(src=cli, dst=vip, id=4321, ttl=61))
    # Answers: from the VIP, TTL/hop limit 64, DF, the worker's next ident (IPv4).
    ip_out = (lambda i: IPv6(src=vip, dst=cli, hlim=64)) if v6 else (lambda i: IP(src=vip, dst=cli, id=i, ttl=64, flags="DF"))
    syn = Ether(src=C_MAC, dst=L0_MAC) / ip_in() / TCP(sport=sport, dport=80, seq=isn, flags="S", window=64240, options=SYN_OPTS if mss == 1460 else [("MSS", mss)])
    k, kmss = cookie(cli, vip, sport, 80, isn, mss)
    # RFC 4987 3.6: MSS only; the responder's window is 65535.
    synack = Ether(src=L0_MAC, dst=C_MAC) / ip_out(ident) / TCP(sport=80, dport=sport, seq=k, ack=(isn + 1) & 0xffffffff, flags="SA", window=65535, options=[("MSS", kmss)])
    req = "GET %s HTTP/1.1\r\nHost: shop.example.com\r\nUser-Agent: fixture\r\n\r\n" % path
    data = Ether(src=C_MAC, dst=L0_MAC) / ip_in() / TCP(sport=sport, dport=80, seq=(isn + 1) & 0xffffffff, ack=(k + 1) & 0xffffffff, flags="PA", window=502) / Raw(req.encode())
    body = "HTTP/1.1 302 Found\r\nLocation: %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n" % location
    found = Ether(src=L0_MAC, dst=C_MAC) / ip_out(ident + 1) / TCP(sport=80, dport=sport, seq=(k + 1) & 0xffffffff, ack=(isn + 1 + len(req)) & 0xffffffff, flags="FPA", window=65535) / Raw(body.encode())
    return syn, synack, data, found


syn, synack, data, found = redir_pair(False, 40000, 1000, 1460, "/cart?item=7", "http://www1.example.com/cart?item=7", 1)
put("redir4_syn", syn); put("redir4_synack", synack); put("redir4_req", data); put("redir4_302", found)
# The same request again (a retransmission, the 302 was lost): the same
# answer, but for the worker's next IP ident.
again = found.copy(); again[IP].id = 3; del again[IP].chksum
put("redir4_302_again", again)
# The request with a cookie one off: nothing (counted as a bad cookie).
bad = data.copy(); bad[TCP].ack = (bad[TCP].ack + 1) & 0xffffffff; del bad[TCP].chksum
put("redir4_req_bad_cookie", bad)
# IPv6, no MSS option beyond 1300 (cookie MSS 1220), a secure path to the HTTPS URL.
syn, synack, data, found = redir_pair(True, 40001, 0xfffffff0, 1300, "/checkout/pay?x=1", "https://www6.example.com/checkout/pay?x=1", 0)
put("redir6_syn", syn); put("redir6_synack", synack); put("redir6_req", data); put("redir6_302", found)

# ------------------------------------------------------------- SYN proxy ----
# VIP4 tcp/443 full NAT -> SERVER4 (local LOCAL4, first port 1024) with
# syn_proxy, the same cookie key and clock as the redirect responder
# (dataplane/tests/pipeline_synproxy.rs). The shift between the sequence
# spaces is the cookie minus the server's ISN (9000).
M32 = 0xffffffff
k, kmss = cookie(CLIENT4, VIP4, 40000, 443, 1000, 1460)
sp_syn = syn4(443)
put("sp4_syn", sp_syn)
put("sp4_synack", Ether(src=L0_MAC, dst=C_MAC) / IP(src=VIP4, dst=CLIENT4, id=1, ttl=64, flags="DF") /
    TCP(sport=443, dport=40000, seq=k, ack=1001, flags="SA", window=65535, options=[("MSS", kmss)]))
ack = Ether(src=C_MAC, dst=L0_MAC) / IP(src=CLIENT4, dst=VIP4, id=4322, ttl=61) / TCP(sport=40000, dport=443, seq=1001, ack=(k + 1) & M32, flags="A", window=502)
put("sp4_ack", ack)
# The client's SYN rebuilt (ISN 1000, the cookie's MSS, nothing else), then full NAT'd.
put("sp4_syn_out", Ether(src=L1_MAC, dst=S_MAC) / IP(src=LOCAL4, dst=SERVER4, id=2, ttl=63, flags="DF") /
    TCP(sport=1024, dport=443, seq=1000, flags="S", window=65535, options=[("MSS", kmss)]))
put("sp4_srv_synack", synack4(SERVER4, 443, LOCAL4, 1024))
# Answered in place: the ACK that completes the server's handshake.
put("sp4_srv_ack", Ether(src=L1_MAC, dst=S_MAC) / IP(src=LOCAL4, dst=SERVER4, id=3, ttl=64, flags="DF") /
    TCP(sport=1024, dport=443, seq=1001, ack=9001, flags="A", window=65535))
# Client data: acknowledgement down by the shift; server data: sequence up by it.
req = b"GET / HTTP/1.1\r\nHost: shop\r\n\r\n"
data = Ether(src=C_MAC, dst=L0_MAC) / IP(src=CLIENT4, dst=VIP4, id=4323, ttl=61) / TCP(sport=40000, dport=443, seq=1001, ack=(k + 1) & M32, flags="PA", window=502) / Raw(req)
put("sp4_data", data)
put("sp4_data_out", l4(routed(data, L1_MAC, S_MAC, src=LOCAL4, dst=SERVER4), sport=1024, ack=9001))
resp = Ether(src=S_MAC, dst=L1_MAC) / IP(src=SERVER4, dst=LOCAL4, id=556, ttl=64, flags="DF") / TCP(sport=443, dport=1024, seq=9001, ack=1001 + len(req), flags="PA", window=509) / Raw(b"HTTP/1.1 200 OK\r\n\r\n")
put("sp4_resp", resp)
put("sp4_resp_out", l4(routed(resp, L0_MAC, C_MAC, src=VIP4, dst=CLIENT4), sport=443, dport=40000, seq=(k + 1) & M32))
# A client ACK with a SACK block (RFC 2018): its edges move with the acknowledgement.
sack = Ether(src=C_MAC, dst=L0_MAC) / IP(src=CLIENT4, dst=VIP4, id=4324, ttl=61) / TCP(sport=40000, dport=443, seq=1001 + len(req), ack=(k + 1) & M32, flags="A", window=502,
    options=[("NOP", None), ("NOP", None), ("SAck", ((k + 101) & M32, (k + 201) & M32))])
put("sp4_sack", sack)
put("sp4_sack_out", l4(routed(sack, L1_MAC, S_MAC, src=LOCAL4, dst=SERVER4), sport=1024, ack=9001,
    options=[("NOP", None), ("NOP", None), ("SAck", (9101, 9201))]))
# An ACK with a forged cookie: nothing.
bad = ack.copy(); bad[TCP].ack = (k + 2) & M32; del bad[TCP].chksum
put("sp4_ack_bad", bad)

# ------------------------------------------------------------ neighbours ----
put("arp_req_for_client", Ether(src=L0_MAC, dst=BCAST) / ARP(op=1, hwsrc=L0_MAC, psrc=PORT0_4, hwdst="00:00:00:00:00:00", pdst=CLIENT4))
# Unicast probe of a stale entry (RFC 4861 7.3.3 PROBE, as Linux does for ARP).
put("arp_probe_server", Ether(src=L1_MAC, dst=S_MAC) / ARP(op=1, hwsrc=L1_MAC, psrc=PORT1_4, hwdst="00:00:00:00:00:00", pdst=SERVER4))

for name, data in out.items():
    with open(name + ".bin", "wb") as f:
        f.write(data)
print(len(out), "fixtures")
