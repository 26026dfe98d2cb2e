#!/usr/bin/env python3
"""Lab client holding HTTP/1.1 keep-alive connections open, driven by lines on stdin:

  open N URL   open N connections to URL, one request each; prints the servers
  again        one more request on every open connection; prints the servers
               (or "reset"/"error:<reason>" for a connection that failed)
  quit

Each answer is one line of space-separated results."""
import socket
import sys
import urllib.parse

conns = []


def request(s, host, path):
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionResetError("closed")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    while len(body) < length:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionResetError("closed")
        body += chunk
    return body.decode().split()[0]


for line in sys.stdin:
    words = line.split()
    if not words:
        continue
    out = []
    if words[0] == "open":
        n, url = int(words[1]), words[2]
        u = urllib.parse.urlsplit(url)
        fam = socket.AF_INET6 if ":" in u.hostname else socket.AF_INET
        for _ in range(n):
            s = socket.socket(fam, socket.SOCK_STREAM)
            s.settimeout(5)
            try:
                s.connect((u.hostname, u.port or 80))
                out.append(request(s, u.hostname, u.path or "/"))
                conns.append((s, u.hostname, u.path or "/"))
            except Exception as e:
                out.append(f"error:{type(e).__name__}")
    elif words[0] == "again":
        for s, host, path in conns:
            try:
                out.append(request(s, host, path))
            except ConnectionResetError:
                out.append("reset")
            except Exception as e:
                out.append(f"error:{type(e).__name__}")
    elif words[0] == "quit":
        break
    print(" ".join(out), flush=True)
