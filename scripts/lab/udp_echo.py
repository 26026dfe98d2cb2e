#!/usr/bin/env python3
"""UDP echo service for the Tack lab: answers each datagram with
'<name> <payload>', from the address the datagram was sent to (so that
direct server return works: a VIP held on loopback answers as the VIP)."""
import selectors
import socket
import sys

name, port = sys.argv[1], int(sys.argv[2])
IPV6_RECVPKTINFO = getattr(socket, "IPV6_RECVPKTINFO", 49)
IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)

socks = []
s4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s4.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
s4.bind(("0.0.0.0", port))
socks.append(s4)
s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
s6.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
s6.bind(("::", port))
socks.append(s6)

sel = selectors.DefaultSelector()
for s in socks:
    sel.register(s, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        s = key.fileobj
        data, anc, _flags, peer = s.recvmsg(65535, 256)
        reply = name.encode() + b" " + data
        # Answer from the destination address of the request.
        cmsgs = []
        for level, ctype, cdata in anc:
            if level == socket.IPPROTO_IP and ctype == IP_PKTINFO:
                # struct in_pktinfo { int ifindex; in_addr spec_dst; in_addr addr; }
                cmsgs.append((level, IP_PKTINFO, bytes(4) + cdata[8:12] + bytes(4)))
            elif level == socket.IPPROTO_IPV6 and ctype == IPV6_PKTINFO:
                cmsgs.append((level, IPV6_PKTINFO, cdata[:16] + bytes(4)))
        s.sendmsg([reply], cmsgs, 0, peer)
