#!/usr/bin/env python3
"""Lab client: N HTTP requests, each on a new TCP connection, from chosen
source addresses; prints JSON {"servers": {name: count}, "errors": n,
"by_source": {src: {name: count}}}.

The lab's servers answer "<name> <client address>".

usage: hits.py URL COUNT [--source ADDR ...] [--parallel N] [--timeout S]
"""
import argparse
import json
import socket
import threading
import urllib.parse

ap = argparse.ArgumentParser()
ap.add_argument("url")
ap.add_argument("count", type=int)
ap.add_argument("--source", action="append", default=[])
ap.add_argument("--parallel", type=int, default=8)
ap.add_argument("--timeout", type=float, default=5.0)
args = ap.parse_args()

u = urllib.parse.urlsplit(args.url)
host, port = u.hostname, u.port or 80
family = socket.AF_INET6 if ":" in host else socket.AF_INET
sources = args.source or [None]
lock = threading.Lock()
servers, by_source, errors = {}, {}, [0]
next_i = [0]


def one(src):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(args.timeout)
    try:
        if src:
            s.bind((src, 0))
        s.connect((host, port))
        s.sendall(f"GET {u.path or '/'} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        body = data.split(b"\r\n\r\n", 1)[1].decode().strip()
        return body.split()[0]
    finally:
        s.close()


def worker():
    while True:
        with lock:
            i = next_i[0]
            if i >= args.count:
                return
            next_i[0] += 1
        src = sources[i % len(sources)]
        try:
            name = one(src)
        except Exception:
            with lock:
                errors[0] += 1
            continue
        with lock:
            servers[name] = servers.get(name, 0) + 1
            d = by_source.setdefault(src or "", {})
            d[name] = d.get(name, 0) + 1


threads = [threading.Thread(target=worker) for _ in range(args.parallel)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps({"servers": servers, "errors": errors[0], "by_source": by_source}))
