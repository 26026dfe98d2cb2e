#!/usr/bin/python3
"""Seed dataplane/fuzz/corpus/pipeline/ with scripts built from the fixtures.

The script format is that of tack_dataplane::pipeline::fuzz_pipeline:
records [op, len_lo, len_hi, bytes...]; op 0 = frame on port 0, op 4 = frame
on port 1, op 1 = poll after bytes[0] * 100 ms, op 2 = control message,
op 3 = drain events. Run from this directory after gen.py.
"""
import hashlib
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "fuzz", "corpus", "pipeline")


def fx(name):
    with open(os.path.join(HERE, name + ".bin"), "rb") as f:
        return f.read()


def rec(op, data):
    return bytes([op]) + struct.pack("<H", len(data)) + data


def frame(port, name):
    return rec(port << 2, fx(name))


POLL = rec(1, b"\x0a")       # 1 s
EVENTS = rec(3, b"")

# Which port each fixture arrives on.
port1 = ("arp_rep_server", "arp_rep_server2", "na_server6", "nat4_synack", "nat4p_synack",
         "nat4u_r", "fnat4_synack", "nat6_synack", "fnat6_synack", "nat4_err_srv",
         "fnat4_err_srv", "nat6_err_srv", "fnat6_err_srv", "echo4_padded")
scripts = []
for f in sorted(os.listdir(HERE)):
    if not f.endswith(".bin"):
        continue
    name = f[:-4]
    if name.endswith("_out") or name.endswith("_reply") or name.endswith("_icmp"):
        continue
    scripts.append(frame(1 if name in port1 else 0, name) + POLL + EVENTS)

# Whole conversations: resolution, both directions, errors, timers, control.
convs = [
    [(0, "nat4_syn"), (1, "arp_rep_server"), (1, "nat4_synack"), (0, "arp_rep_client"), (0, "nat4_data")],
    [(1, "arp_rep_server"), (0, "arp_rep_router"), (0, "fnat4_syn"), (1, "fnat4_synack"), (1, "fnat4_err_srv"), (0, "fnat4_err_cli")],
    [(1, "arp_rep_server"), (0, "nat4_syn"), (1, "nat4_err_srv"), (0, "nat4_err_cli")],
    [(1, "na_server6"), (0, "nat6_syn"), (1, "nat6_synack"), (0, "nat6_err_cli"), (1, "nat6_err_srv")],
    [(1, "na_server6"), (0, "fnat6_syn"), (1, "fnat6_synack"), (1, "fnat6_err_srv"), (0, "fnat6_err_cli")],
    [(1, "na_server6"), (0, "dsr6_syn"), (0, "dsr6_err_cli")],
    [(1, "arp_rep_server"), (0, "tun4_syn"), (0, "tun4_big"), (0, "tun46_syn")],
    [(1, "arp_rep_server"), (0, "dsr4_syn"), (0, "dsr4_err_cli")],
    [(0, "ttl1_syn"), (0, "hlim1_syn"), (0, "arp_req_vip"), (0, "ns_vip")],
]
for conv in convs:
    s = b"".join(frame(p, n) for p, n in conv)
    scripts.append(s + POLL + EVENTS)
    # The same with a server going down, a flush and long timers in between.
    mid = len(conv) // 2
    s = b"".join(frame(p, n) for p, n in conv[:mid])
    s += rec(2, bytes([0, 0, 0, 3])) + rec(1, b"\xff") + rec(2, bytes([4]))
    s += b"".join(frame(p, n) for p, n in conv[mid:])
    scripts.append(s + EVENTS)

os.makedirs(OUT, exist_ok=True)
for s in scripts:
    with open(os.path.join(OUT, hashlib.sha1(s).hexdigest()), "wb") as f:
        f.write(s)
print(len(scripts), "seeds")
