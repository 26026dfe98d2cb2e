#!/usr/bin/env python3
"""Instructions per packet of tack's real worker loop, by callgrind.

`tack` runs the harness's NAT profile (bench/throughput.py) under
`valgrind --tool=callgrind`, collecting only inside the worker loop
(`Worker::run`); `tackgen` sends `--packets` frames of `--flows` flows over
net_memif. Printed: instructions per packet of the whole loop and of its
parts (the pipeline, the memif PMD's receive and transmit, the rest), and
per idle poll (an iteration that received nothing). Instruction counts are
repeatable on a shared machine where times are not.

    TACK_BIN=... TACKGEN_BIN=... bench/loopprof.py [--flows 1000] [--packets 300000]
"""

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import throughput  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flows", type=int, default=1000)
    ap.add_argument("--packets", type=int, default=300_000)
    ap.add_argument("--tack", default=os.environ.get("TACK_BIN"))
    ap.add_argument("--tackgen", default=os.environ.get("TACKGEN_BIN"))
    ap.add_argument("--keep", help="copy callgrind's output here")
    ap.add_argument("--from", dest="src", help="only read this callgrind output of an earlier run")
    ap.add_argument("--idle-cost", type=float, help="instructions per idle iteration (with --from)")
    args = ap.parse_args()
    idle = None
    if not args.src:
        # The cost of an iteration that receives nothing, from a run without traffic.
        out = measure(args, traffic=False)
        idle = summary(out, 2)
        subprocess.run(["rm", "-rf", os.path.dirname(out)])
    out = args.src or measure(args)
    summary(out, args.packets + args.flows, args.idle_cost or idle)
    if not args.src:
        subprocess.run(["rm", "-rf", os.path.dirname(out)])


def measure(args, traffic=True):
    """Runs tack under callgrind and the generator (or, without traffic, the
    generator connected and idle for 3 s); the output's path."""
    work = tempfile.mkdtemp(prefix="tack-loopprof-")
    row = dict(flows=args.flows, size=64, new_share=0.0, proto="udp", ip=4, workers=1, seconds=1, huge=False)
    sock, mgmt = os.path.join(work, "t.sock"), os.path.join(work, "mgmt.sock")
    prof = os.path.join(work, "tack.yaml")
    with open(prof, "w") as f:
        f.write(throughput.profile(row, sock, mgmt, {"fwd": [1], "fwd_main": 0}))
    out = os.path.join(work, "callgrind.out")
    tack = throughput.Proc(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                            "--collect-atstart=no", "--toggle-collect=*Worker::run*",
                            args.tack, "run", "--config", prof], os.path.join(work, "tack.log"))
    try:
        throughput.wait_for(mgmt, tack, "tack under valgrind", timeout=120)
        # Without traffic: one frame, then connected and idle for 3 s.
        flows, packets = (args.flows, args.packets) if traffic else (1, 1)
        subprocess.run([args.tackgen, "--socket", sock, "--file-prefix", f"lp{os.getpid()}",
                        "--flows", str(flows), "--packets", str(packets), "--seconds", "120",
                        "--hold", "0" if traffic else "3", "--check", "nat"],
                       check=True, stdout=subprocess.DEVNULL, timeout=300)
        throughput.remove_run_dir(f"lp{os.getpid()}")
    finally:
        tack.stop(timeout=60)
    if args.keep:
        subprocess.run(["cp", out, args.keep])
    return out


def summary(out, packets, idle_cost=None):
    """Prints the loop's instructions per packet and per iteration from callgrind's output."""
    ann = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--tree=calling", out],
                         capture_output=True, text=True).stdout

    def incl(pattern):
        """Inclusive instructions and calls of the callees of Worker::run matching pattern."""
        total, calls = 0, 0
        for m in re.finditer(r"^\s*([\d,]+) \([^)]*\)\s+>\s+(.*?)(?: \(([\d,]+)x\))?(?: \[.*\])?$", ann, re.M):
            if re.search(pattern, m.group(2)):
                total += int(m.group(1).replace(",", ""))
                calls += int((m.group(3) or "0").replace(",", ""))
        return total, calls

    whole = int(re.search(r"([\d,]+) \(100.0%\)\s+PROGRAM TOTALS", ann).group(1).replace(",", ""))
    pipeline, bursts = incl(r"process_burst")
    rx, polls = incl(r"tack_rte_eth_rx_burst")
    tx, _ = incl(r"tack_rte_eth_tx_burst")
    idle = polls - bursts
    rest = whole - pipeline - rx - tx
    if packets <= 2:
        print(f"idle worker loop under callgrind: {polls} iterations, {whole / polls:.0f} instructions each "
              f"(memif rx {rx / polls:.0f}, the loop's own {rest / polls:.0f})")
        return whole / polls
    print(f"worker loop under callgrind: {packets} packets, {polls} iterations ({bursts} with packets, {idle} idle)")
    print(f"  whole loop       {whole:>12,} instructions")
    print(f"  pipeline         {pipeline / packets:>8.0f} per packet (process_burst)")
    print(f"  memif tx         {tx / packets:>8.0f} per packet")
    if idle_cost:
        busy = whole - idle * idle_cost
        print(f"  idle iterations  {idle * idle_cost:>12,.0f} ({idle} x {idle_cost:.0f})")
        print(f"  busy loop        {busy / packets:>8.0f} per packet: pipeline {pipeline / packets:.0f}, memif tx "
              f"{tx / packets:.0f}, memif rx and the loop's own {(busy - pipeline - tx) / packets:.0f}")
    return None


if __name__ == "__main__":
    main()
