#!/usr/bin/python3
"""Generate the wire-layer fixture frames with scapy (python3-scapy).

The .bin files are committed; tests read them with include_bytes! and never
run scapy. Re-run from this directory with `/usr/bin/python3 gen.py` after
changing a fixture. Expected outputs (replies, NAT rewrites, tunnel headers)
are built by scapy independently of the Rust code, so the tests compare our
bytes with scapy's byte for byte.
"""
from scapy.all import (Ether, Dot1Q, ARP, IP, IPv6, TCP, UDP, ICMP, Raw,
                       IPv6ExtHdrHopByHop, IPv6ExtHdrDestOpt, IPv6ExtHdrRouting,
                       IPv6ExtHdrFragment, ICMPv6EchoRequest, ICMPv6EchoReply,
                       ICMPv6PacketTooBig, ICMPv6TimeExceeded, ICMPv6DestUnreach,
                       ICMPv6ND_NS, ICMPv6ND_NA, ICMPv6ND_RS, ICMPv6ND_RA,
                       ICMPv6NDOptSrcLLAddr, ICMPv6NDOptDstLLAddr,
                       ICMPv6NDOptPrefixInfo, ICMPv6NDOptMTU, IPOption_Router_Alert,
                       fragment, fragment6)
from scapy.layers.ipsec import AH

C_MAC = "02:00:00:00:00:01"   # client / router side
L_MAC = "02:00:00:00:00:02"   # Tack
S_MAC = "02:00:00:00:00:03"   # real server
CLIENT4, VIP4, SERVER4, LOCAL4 = "198.51.100.7", "203.0.113.10", "10.1.0.5", "10.1.0.254"
CLIENT6, VIP6, SERVER6, LOCAL6 = "2001:db8:1::7", "2001:db8:2::10", "fd00:1::5", "fd00:1::fe"
SYN_OPTS = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1234567, 0)), ("NOP", None), ("WScale", 7)]

out = {}

def put(name, pkt):
    out[name] = bytes(pkt)

# --- IPv4 ---
syn4 = Ether(src=C_MAC, dst=L_MAC) / IP(src=CLIENT4, dst=VIP4, id=4321, ttl=61) / \
    TCP(sport=40000, dport=80, seq=1000, flags="S", window=64240, options=SYN_OPTS)
put("ipv4_tcp_syn", syn4)
# DNAT to the real server (what NAT mode sends), checksums recomputed by scapy.
dnat4 = syn4.copy(); dnat4[IP].dst = SERVER4; del dnat4[IP].chksum; del dnat4[TCP].chksum
put("ipv4_tcp_syn_dnat", dnat4)
# Full NAT: also SNAT to the local address and port 2049.
fnat4 = dnat4.copy(); fnat4[IP].src = LOCAL4; fnat4[TCP].sport = 2049
del fnat4[IP].chksum; del fnat4[TCP].chksum
put("ipv4_tcp_syn_fullnat", fnat4)
# MSS clamped to 1440 (IP-in-IP overhead 20).
mss4 = syn4.copy(); mss4[TCP].options = [("MSS", 1440)] + SYN_OPTS[1:]; del mss4[TCP].chksum
put("ipv4_tcp_syn_mss1440", mss4)
# MSS option at an odd offset (after one NOP).
odd = Ether(src=C_MAC, dst=L_MAC) / IP(src=CLIENT4, dst=VIP4) / \
    TCP(sport=40001, dport=80, flags="S", options=[("NOP", None), ("MSS", 8960), ("NOP", None), ("NOP", None), ("NOP", None)])
put("ipv4_tcp_syn_odd_mss", odd)
odd_c = odd.copy(); odd_c[TCP].options = [("NOP", None), ("MSS", 1400), ("NOP", None), ("NOP", None), ("NOP", None)]
del odd_c[TCP].chksum
put("ipv4_tcp_syn_odd_mss1400", odd_c)
# IPIP: outer header to the server, DF copied.
# Outer DF follows the inner DF (clear here), TOS copied (RFC 2003 §3.1).
ipip = IP(src=LOCAL4, dst=SERVER4, proto=4, ttl=64, id=7, flags=0, tos=0) / syn4[IP]
put("ipv4_ipip_outer", ipip)

vlan_udp = Ether(src=C_MAC, dst=L_MAC) / Dot1Q(vlan=100, prio=5) / IP(src=CLIENT4, dst=VIP4, ttl=64) / \
    UDP(sport=5353, dport=53) / Raw(b"hello")
put("vlan_ipv4_udp", vlan_udp)
udp0 = Ether(src=C_MAC, dst=L_MAC) / IP(src=CLIENT4, dst=VIP4) / UDP(sport=1000, dport=53, chksum=0) / Raw(b"zero checksum")
put("ipv4_udp_zero_csum", udp0)
udp0_d = udp0.copy(); udp0_d[IP].dst = SERVER4; del udp0_d[IP].chksum
put("ipv4_udp_zero_csum_dnat", udp0_d)
udp4 = Ether(src=C_MAC, dst=L_MAC) / IP(src=CLIENT4, dst=VIP4) / UDP(sport=1000, dport=53) / Raw(b"dns?")
put("ipv4_udp", udp4)
udp4_d = udp4.copy(); udp4_d[IP].dst = SERVER4; udp4_d[UDP].dport = 5353
del udp4_d[IP].chksum; del udp4_d[UDP].chksum
put("ipv4_udp_dnat", udp4_d)

opts = Ether(src=C_MAC, dst=L_MAC) / IP(src=CLIENT4, dst=VIP4, options=[IPOption_Router_Alert()]) / TCP(sport=1, dport=2, flags="A")
put("ipv4_options_tcp", opts)

arp_req = Ether(src=C_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=C_MAC, psrc=CLIENT4, hwdst="00:00:00:00:00:00", pdst=VIP4)
put("arp_request", arp_req)
arp_rep = Ether(src=L_MAC, dst=C_MAC) / ARP(op=2, hwsrc=L_MAC, psrc=VIP4, hwdst=C_MAC, pdst=CLIENT4)
put("arp_reply", arp_rep)

echo4 = Ether(src=C_MAC, dst=L_MAC) / IP(src=CLIENT4, dst=VIP4, id=99) / ICMP(type=8, id=0x1234, seq=1) / Raw(b"ping payload 0123456789")
put("ipv4_icmp_echo", echo4)
echo4r = Ether(src=L_MAC, dst=C_MAC) / IP(src=VIP4, dst=CLIENT4, id=99) / ICMP(type=0, id=0x1234, seq=1) / Raw(b"ping payload 0123456789")
put("ipv4_icmp_echo_reply", echo4r)

# Fragmentation needed from a router, quoting the server's reply as sent by Tack (NAT mode).
reply4 = IP(src=VIP4, dst=CLIENT4, flags="DF") / TCP(sport=80, dport=40000, flags="A", seq=5, ack=6)
fn = Ether(src=C_MAC, dst=L_MAC) / IP(src="192.0.2.1", dst=VIP4) / ICMP(type=3, code=4, nexthopmtu=1400) / bytes(reply4)[:28]
put("ipv4_icmp_frag_needed", fn)
# Same, translated back for the server: outer dst -> SERVER4, quoted src -> SERVER4.
inner_t = IP(bytes(reply4)); inner_t.src = SERVER4; del inner_t.chksum; del inner_t[TCP].chksum
fn_t = Ether(src=C_MAC, dst=L_MAC) / IP(src="192.0.2.1", dst=SERVER4) / ICMP(type=3, code=4, nexthopmtu=1400) / bytes(inner_t)[:28]
put("ipv4_icmp_frag_needed_translated", fn_t)
te = Ether(src=C_MAC, dst=L_MAC) / IP(src="192.0.2.1", dst=VIP4) / ICMP(type=11, code=0) / bytes(IP(src=VIP4, dst=CLIENT4) / UDP(sport=53, dport=1000))[:28]
put("ipv4_icmp_time_exceeded", te)

big = IP(src=CLIENT4, dst=VIP4, id=777) / UDP(sport=4000, dport=53) / Raw(b"x" * 3000)
frags = fragment(big, fragsize=1480)
put("ipv4_frag_first", Ether(src=C_MAC, dst=L_MAC) / frags[0])
put("ipv4_frag_second", Ether(src=C_MAC, dst=L_MAC) / frags[1])

# --- IPv6 ---
syn6 = Ether(src=C_MAC, dst=L_MAC) / IPv6(src=CLIENT6, dst=VIP6, hlim=60, fl=0xabcde, tc=0x28) / \
    TCP(sport=40000, dport=443, seq=77, flags="S", options=SYN_OPTS)
put("ipv6_tcp_syn", syn6)
fnat6 = syn6.copy(); fnat6[IPv6].dst = SERVER6; fnat6[IPv6].src = LOCAL6; fnat6[TCP].sport = 3001; del fnat6[TCP].chksum
put("ipv6_tcp_syn_fullnat", fnat6)
ip6ip6 = IPv6(src=LOCAL6, dst=SERVER6, nh=41, hlim=64, tc=0x28) / syn6[IPv6]
put("ipv6_ip6ip6_outer", ip6ip6)

ext6 = Ether(src=C_MAC, dst=L_MAC) / IPv6(src=CLIENT6, dst=VIP6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / \
    IPv6ExtHdrRouting(addresses=["2001:db8:3::1"], segleft=0) / UDP(sport=5000, dport=53) / Raw(b"ext")
put("ipv6_ext_udp", ext6)
ah6 = Ether(src=C_MAC, dst=L_MAC) / IPv6(src=CLIENT6, dst=VIP6) / AH(nh=6, payloadlen=4, spi=0x100, seq=1, icv=b"\x00" * 12) / TCP(sport=7, dport=8, flags="A")
put("ipv6_ah_tcp", ah6)
udp6 = Ether(src=C_MAC, dst=L_MAC) / IPv6(src=CLIENT6, dst=VIP6) / UDP(sport=1000, dport=53) / Raw(b"v6 dns")
put("ipv6_udp", udp6)
udp6_d = udp6.copy(); udp6_d[IPv6].dst = SERVER6; del udp6_d[UDP].chksum
put("ipv6_udp_dnat", udp6_d)

big6 = IPv6(src=CLIENT6, dst=VIP6) / IPv6ExtHdrFragment(id=0xdeadbeef) / UDP(sport=4000, dport=53) / Raw(b"y" * 3000)
f6 = fragment6(big6, 1280)
put("ipv6_frag_first", Ether(src=C_MAC, dst=L_MAC) / f6[0])
put("ipv6_frag_second", Ether(src=C_MAC, dst=L_MAC) / f6[1])

e6 = Ether(src=C_MAC, dst=L_MAC) / IPv6(src=CLIENT6, dst=VIP6) / ICMPv6EchoRequest(id=0x42, seq=3, data=b"ping6")
put("ipv6_icmpv6_echo", e6)
e6r = Ether(src=L_MAC, dst=C_MAC) / IPv6(src=VIP6, dst=CLIENT6) / ICMPv6EchoReply(id=0x42, seq=3, data=b"ping6")
put("ipv6_icmpv6_echo_reply", e6r)
reply6 = IPv6(src=VIP6, dst=CLIENT6) / TCP(sport=443, dport=40000, flags="A") / Raw(b"z" * 100)
put("ipv6_icmpv6_ptb", Ether(src=C_MAC, dst=L_MAC) / IPv6(src="2001:db8:ff::1", dst=VIP6) / ICMPv6PacketTooBig(mtu=1280) / bytes(reply6))
put("ipv6_icmpv6_time_exceeded", Ether(src=C_MAC, dst=L_MAC) / IPv6(src="2001:db8:ff::1", dst=VIP6) / ICMPv6TimeExceeded(code=0) / bytes(reply6)[:48])
put("ipv6_icmpv6_dst_unreach", Ether(src=C_MAC, dst=L_MAC) / IPv6(src="2001:db8:ff::1", dst=VIP6) / ICMPv6DestUnreach(code=4) / bytes(IPv6(src=VIP6, dst=CLIENT6) / UDP(sport=53, dport=1000)))

sn = "ff02::1:ff00:10"
ns = Ether(src=C_MAC, dst="33:33:ff:00:00:10") / IPv6(src=CLIENT6, dst=sn, hlim=255) / ICMPv6ND_NS(tgt=VIP6) / ICMPv6NDOptSrcLLAddr(lladdr=C_MAC)
put("ipv6_ns", ns)
na = Ether(src=L_MAC, dst=C_MAC) / IPv6(src=VIP6, dst=CLIENT6, hlim=255) / ICMPv6ND_NA(tgt=VIP6, R=0, S=1, O=1) / ICMPv6NDOptDstLLAddr(lladdr=L_MAC)
put("ipv6_na", na)
rs = Ether(src=C_MAC, dst="33:33:00:00:00:02") / IPv6(src="fe80::1", dst="ff02::2", hlim=255) / ICMPv6ND_RS() / ICMPv6NDOptSrcLLAddr(lladdr=C_MAC)
put("ipv6_rs", rs)
ra = Ether(src=C_MAC, dst="33:33:00:00:00:01") / IPv6(src="fe80::1", dst="ff02::1", hlim=255) / \
    ICMPv6ND_RA(chlim=64, M=0, O=1, routerlifetime=1800, reachabletime=30000, retranstimer=1000) / \
    ICMPv6NDOptSrcLLAddr(lladdr=C_MAC) / ICMPv6NDOptMTU(mtu=9000) / ICMPv6NDOptPrefixInfo(prefix="2001:db8:1::", prefixlen=64)
put("ipv6_ra", ra)

for name, data in out.items():
    with open(name + ".bin", "wb") as f:
        f.write(data)
print(len(out), "fixtures")
