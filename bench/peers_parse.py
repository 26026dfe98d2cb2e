#!/usr/bin/env python3
"""bench/peers.sh's arithmetic.

  peers_parse.py ROUND PEER TEST LB_TICKS SOFTIRQ_TICKS HZ < wrk-output
      one tab-separated line of the raw table: round, peer, test, requests,
      seconds, requests/s, p50 and p99 (ms), errors, LB CPU s, softirq s
  peers_parse.py --summary < raw-table
      per test, one row per peer: the medians over the rounds, requests per
      LB CPU-second, and ratios to haproxy and nft
"""
import re
import statistics
import sys

UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def latency_ms(text, pct):
    m = re.search(rf"^\s*{pct}%\s+([0-9.]+)(us|ms|s)\s*$", text, re.M)
    return float(m.group(1)) * UNITS[m.group(2)] if m else float("nan")


def parse_run(args):
    rnd, peer, test, lb_ticks, sq_ticks, hz = args
    text = sys.stdin.read()
    m = re.search(r"(\d+) requests in ([0-9.]+)(us|ms|s|m)", text)
    if not m:
        sys.exit(f"peers_parse.py: no wrk result for {peer} {test}:\n{text}")
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[m.group(3)]
    requests, seconds = int(m.group(1)), float(m.group(2)) * scale
    errors = 0
    e = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if e:
        # A server closing a connection after its answer is a "read" error
        # for wrk with `Connection: close`: only connect, write and timeout count.
        errors += int(e.group(1)) + int(e.group(3)) + int(e.group(4))
    n = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if n:
        errors += int(n.group(1))
    hz = float(hz)
    print(
        "\t".join(
            [
                rnd,
                peer,
                test,
                str(requests),
                f"{seconds:.2f}",
                f"{requests / seconds:.0f}",
                f"{latency_ms(text, 50):.3f}",
                f"{latency_ms(text, 99):.3f}",
                str(errors),
                f"{int(lb_ticks) / hz:.2f}",
                f"{int(sq_ticks) / hz:.2f}",
            ]
        )
    )


def summary():
    lines = [l.rstrip("\n").split("\t") for l in sys.stdin if l.strip()]
    head, rows = lines[0], [dict(zip(lines[0], l)) for l in lines[1:]]
    peers = list(dict.fromkeys(r["peer"] for r in rows if r["round"] == "1"))
    out = []
    for test, title in (
        ("keepalive", "Keep-alive (32 connections, many requests each)"),
        ("close", "One request per connection (new connections/s)"),
    ):
        stats = {}
        for p in peers:
            runs = [r for r in rows if r["peer"] == p and r["test"] == test]
            if not runs:
                continue
            med = lambda k: statistics.median(float(r[k]) for r in runs)
            per_cpu = [
                int(r["requests"]) / float(r["lb_cpu_s"]) if float(r["lb_cpu_s"]) > 0 else float("nan")
                for r in runs
            ]
            stats[p] = {
                "rps": med("rps"),
                "p50": med("p50_ms"),
                "p99": med("p99_ms"),
                "cpu": med("lb_cpu_s"),
                "sq": med("softirq_s"),
                "per_cpu": statistics.median(per_cpu),
                "errors": sum(int(r["errors"]) for r in runs),
                "runs": len(runs),
            }

        def ratio(p, key, ref):
            if ref not in stats or not stats[ref][key] or stats[ref][key] != stats[ref][key]:
                return "-"
            return f"{stats[p][key] / stats[ref][key]:.2f}"

        out.append(f"{title}: medians over the rounds")
        cols = [
            "peer", "req/s", "p50 ms", "p99 ms", "LB CPU s", "softirq s",
            "req/LB-CPU-s", "req/s÷haproxy", "req/s÷nft", "req/CPU÷haproxy",
            "req/CPU÷nft", "errors",
        ]
        table = [cols]
        for p, s in stats.items():
            table.append(
                [
                    p,
                    f"{s['rps']:.0f}",
                    f"{s['p50']:.2f}",
                    f"{s['p99']:.2f}",
                    f"{s['cpu']:.2f}",
                    f"{s['sq']:.2f}",
                    f"{s['per_cpu']:.0f}",
                    ratio(p, "rps", "haproxy"),
                    ratio(p, "rps", "nft"),
                    ratio(p, "per_cpu", "haproxy"),
                    ratio(p, "per_cpu", "nft"),
                    str(s["errors"]),
                ]
            )
        widths = [max(len(r[i]) for r in table) for i in range(len(cols))]
        for r in table:
            out.append("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
        out.append("")
    out.append(
        "LB CPU s: user + system seconds of the tack or haproxy process during the run;"
        " for nft the machine's softirq seconds (which also hold the other hops' kernel work:"
        " compare with the softirq column of the other peers)."
    )
    print("\n".join(out))


if __name__ == "__main__":
    if sys.argv[1:] == ["--summary"]:
        summary()
    elif len(sys.argv) == 7:
        parse_run(sys.argv[1:])
    else:
        sys.exit(__doc__)
