#!/usr/bin/python3
"""Generates the net_pcap fixtures of control/tests/dpdk_pcap.rs with scapy.

arp_ping_in.pcap: what the appliance port receives (ARP requests, pings, an NDP
solicitation, an ICMPv6 echo, and frames it must drop). arp_ping_out.pcap: the
replies a correct appliance sends, in order, built independently by scapy:
ARP reply, echo replies with the addresses swapped, TTL 64, id and TOS kept,
a solicited neighbour advertisement with the target link-layer address.
Run from this directory: /usr/bin/python3 gen_pcap.py (Debian python3-scapy)
"""
from scapy.all import (ARP, ICMP, IP, IPv6, ICMPv6EchoReply, ICMPv6EchoRequest,
                       ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptDstLLAddr,
                       ICMPv6NDOptSrcLLAddr, Ether, Raw, wrpcap)

US_MAC, PEER_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"
US4, PEER4 = "10.9.0.1", "10.9.0.2"
US6, PEER6 = "fd09::1", "fd09::2"
SOLICITED = "ff02::1:ff00:1"
SOLICITED_MAC = "33:33:ff:00:00:01"

inp, out = [], []

inp.append(Ether(src=PEER_MAC, dst="ff:ff:ff:ff:ff:ff") /
           ARP(op=1, hwsrc=PEER_MAC, psrc=PEER4, hwdst="00:00:00:00:00:00", pdst=US4))
out.append(Ether(src=US_MAC, dst=PEER_MAC) /
           ARP(op=2, hwsrc=US_MAC, psrc=US4, hwdst=PEER_MAC, pdst=PEER4))
# Not ours: dropped.
inp.append(Ether(src=PEER_MAC, dst="ff:ff:ff:ff:ff:ff") /
           ARP(op=1, hwsrc=PEER_MAC, psrc=PEER4, hwdst="00:00:00:00:00:00", pdst="10.9.0.99"))
for seq in (1, 2, 3):
    payload = Raw(bytes(range(seq, seq + 56)))
    inp.append(Ether(src=PEER_MAC, dst=US_MAC) / IP(src=PEER4, dst=US4, id=100 + seq, ttl=63, tos=0x10) /
               ICMP(type=8, id=0x1234, seq=seq) / payload)
    out.append(Ether(src=US_MAC, dst=PEER_MAC) / IP(src=US4, dst=PEER4, id=100 + seq, ttl=64, tos=0x10) /
               ICMP(type=0, id=0x1234, seq=seq) / payload)
# A truncated IPv4 packet and a ping to somebody else: dropped.
inp.append(Ether(bytes(Ether(src=PEER_MAC, dst=US_MAC) / IP(src=PEER4, dst=US4) / ICMP())[:30]))
inp.append(Ether(src=PEER_MAC, dst=US_MAC) / IP(src=PEER4, dst="10.9.0.77", ttl=64) / ICMP(type=8, id=1, seq=1))
# IPv6: neighbour solicitation to the solicited-node group, then a ping.
inp.append(Ether(src=PEER_MAC, dst=SOLICITED_MAC) / IPv6(src=PEER6, dst=SOLICITED, hlim=255) /
           ICMPv6ND_NS(tgt=US6) / ICMPv6NDOptSrcLLAddr(lladdr=PEER_MAC))
out.append(Ether(src=US_MAC, dst=PEER_MAC) / IPv6(src=US6, dst=PEER6, hlim=255) /
           ICMPv6ND_NA(tgt=US6, R=0, S=1, O=1) / ICMPv6NDOptDstLLAddr(lladdr=US_MAC))
inp.append(Ether(src=PEER_MAC, dst=US_MAC) / IPv6(src=PEER6, dst=US6, hlim=64) /
           ICMPv6EchoRequest(id=7, seq=1, data=b"tack-ping6"))
out.append(Ether(src=US_MAC, dst=PEER_MAC) / IPv6(src=US6, dst=PEER6, hlim=64) /
           ICMPv6EchoReply(id=7, seq=1, data=b"tack-ping6"))

wrpcap("arp_ping_in.pcap", inp)
wrpcap("arp_ping_out.pcap", out)
