#!/usr/bin/env python3
"""A long-lived TCP session for the lab, standing in for a routing
protocol's (BGP keeps one TCP connection up with keepalives): one side
echoes lines, the other sends one every INTERVAL_MS and waits for its echo.
Both stop by themselves after SECONDS.

  tcp_session.py serve ADDR PORT SECONDS
  tcp_session.py client ADDR PORT SECONDS INTERVAL_MS

The client prints one JSON line: messages sent and echoed, the longest
round trip in milliseconds, and whether the session broke. Only for the
lab's own namespaces (tests run it with `ip netns exec`).
"""
import json
import socket
import sys
import threading
import time


def serve(addr: str, port: int, seconds: float) -> None:
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    ls = socket.socket(fam, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # The address may still be appearing on the appliance's interface.
    deadline = time.time() + 10
    while True:
        try:
            ls.bind((addr, port))
            break
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.1)
    ls.listen(8)
    ls.settimeout(0.2)
    end = time.time() + seconds

    def echo(c: socket.socket) -> None:
        c.settimeout(0.5)
        while time.time() < end:
            try:
                d = c.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                break
            if not d:
                break
            c.sendall(d)
        c.close()

    print("listening", flush=True)
    while time.time() < end:
        try:
            c, _ = ls.accept()
        except socket.timeout:
            continue
        threading.Thread(target=echo, args=(c,), daemon=True).start()


def client(addr: str, port: int, seconds: float, interval_ms: int) -> None:
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(3)
    s.connect((addr, port))
    sent = echoed = 0
    longest = 0.0
    broken = ""
    end = time.time() + seconds
    while time.time() < end:
        msg = f"keepalive {sent}\n".encode()
        t0 = time.time()
        try:
            s.sendall(msg)
            sent += 1
            got = b""
            while len(got) < len(msg):
                d = s.recv(len(msg) - len(got))
                if not d:
                    raise OSError("closed by the peer")
                got += d
            echoed += 1
        except OSError as e:
            broken = str(e) or type(e).__name__
            break
        longest = max(longest, (time.time() - t0) * 1000)
        time.sleep(interval_ms / 1000)
    s.close()
    print(json.dumps({"sent": sent, "echoed": echoed, "longest_ms": round(longest, 1), "broken": broken}))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    elif len(sys.argv) == 6 and sys.argv[1] == "client":
        client(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]))
    else:
        sys.exit(__doc__)
