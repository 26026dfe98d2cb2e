#!/usr/bin/env python3
"""Lab client: misbehaving management clients. Holds N connections to each
target, half of them idle (connected, silent), half sending a request one
byte at a time (one byte every INTERVAL seconds); reconnects those the
server closes. Ends by itself after DURATION seconds.

usage: slowclients.py --tcp HOST:PORT --unix PATH [--per-target N]
                      [--interval S] [--duration S]
Prints "ready" once every connection is open.
"""
import argparse
import socket
import sys
import threading
import time

ap = argparse.ArgumentParser()
ap.add_argument("--tcp", action="append", default=[])
ap.add_argument("--unix", action="append", default=[])
ap.add_argument("--per-target", type=int, default=10)
ap.add_argument("--interval", type=float, default=0.3)
ap.add_argument("--duration", type=float, default=60.0)
args = ap.parse_args()

REQUEST = b"GET /status HTTP/1.1\r\nHost: tack\r\n\r\n"
deadline = time.monotonic() + args.duration


def connect(target):
    kind, addr = target
    if kind == "tcp":
        host, port = addr.rsplit(":", 1)
        return socket.create_connection((host, int(port)), timeout=5)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(addr)
    return s


def client(target, trickle, opened):
    first = True
    while time.monotonic() < deadline:
        try:
            s = connect(target)
        except OSError:
            time.sleep(0.2)
            continue
        if first:
            opened.release()
            first = False
        try:
            i = 0
            while time.monotonic() < deadline:
                if trickle:
                    s.send(REQUEST[i % len(REQUEST):i % len(REQUEST) + 1])
                    i += 1
                    time.sleep(args.interval)
                else:
                    # Idle: notice a close by the server without sending.
                    s.settimeout(args.interval)
                    try:
                        if s.recv(1) == b"":
                            break
                    except socket.timeout:
                        pass
        except OSError:
            pass
        finally:
            s.close()


targets = [("tcp", t) for t in args.tcp] + [("unix", u) for u in args.unix]
opened = threading.Semaphore(0)
threads = []
for t in targets:
    for i in range(args.per_target):
        th = threading.Thread(target=client, args=(t, i % 2 == 1, opened), daemon=True)
        th.start()
        threads.append(th)
for _ in threads:
    opened.acquire()
print("ready", flush=True)
for th in threads:
    th.join()
