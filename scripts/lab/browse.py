#!/usr/bin/python3
"""Drive a headless Chromium through the DevTools protocol (over
--remote-debugging-pipe: no extra Python package) and report what a person
would have seen.

    browse.py URL [--click CSS_SELECTOR] [--timeout SECONDS]

Loads URL, waits for the page's load event, then (with --click) clicks the
first element matching the selector and waits for the page it leads to. For
each page loaded it prints one JSON line: the final URL, the HTTP status of
the document, the text of <body>, the URLs of every sub-resource fetched
with its status (and every redirect on the way, with its location), and checks made in the page: whether each <img> decoded,
whether the stylesheet applied (computed colour of <body>) and whether the
script ran (window.scriptRan). Chromium runs as root (--no-sandbox), with
a throwaway profile, no background networking and no name resolution (the
lab uses addresses); the whole run is bounded by --timeout (default 60 s)
and the browser is always stopped.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time


class Browser:
    def __init__(self, deadline):
        self.deadline = deadline
        self.profile = tempfile.mkdtemp(prefix="tack-chromium-")
        # Chromium reads commands on fd 3 and writes answers on fd 4.
        to_chrome_r, self.to_chrome = os.pipe()
        self.from_chrome, from_chrome_w = os.pipe()
        args = [
            "chromium", "--headless", "--no-sandbox", "--disable-gpu",
            "--remote-debugging-pipe", "--user-data-dir=" + self.profile,
            "--no-first-run", "--no-default-browser-check",
            "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--disable-default-apps", "--disable-extensions",
            "--dns-prefetch-disable",
            # No name is resolved: only the lab's addresses (10.x) are reachable.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 10.*",
            "--ignore-certificate-errors", "--disable-dev-shm-usage",
            "about:blank",
        ]

        def fds():
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        self.proc = subprocess.Popen(args, preexec_fn=fds, pass_fds=(3, 4),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.buf = b""
        self.next_id = 0
        self.events = []

    def close(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)

    def _read(self):
        """The next message from Chromium, or an error past the deadline."""
        import select
        while b"\0" not in self.buf:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("chromium did not answer in time")
            r, _, _ = select.select([self.from_chrome], [], [], left)
            if r:
                chunk = os.read(self.from_chrome, 1 << 16)
                if not chunk:
                    raise EOFError("chromium closed its pipe")
                self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, session=None, **params):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self.to_chrome, json.dumps(msg).encode() + b"\0")
        while True:
            m = self._read()
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait_event(self, method, session):
        """Waits for event `method` of `session`; returns its params."""
        while True:
            for i, m in enumerate(self.events):
                if m.get("method") == method and m.get("sessionId") == session:
                    del self.events[i]
                    return m["params"]
            self.events.append(self._read())


PAGE_REPORT = """(() => {
  const imgs = [...document.images].map(i => ({src: i.currentSrc, ok: i.complete && i.naturalWidth > 0}));
  return JSON.stringify({
    url: location.href,
    text: document.body ? document.body.innerText : "",
    images: imgs,
    body_color: document.body ? getComputedStyle(document.body).color : "",
    script_ran: window.scriptRan === true,
  });
})()"""


def page(b, s, responses):
    r = json.loads(b.call("Runtime.evaluate", s, expression=PAGE_REPORT, returnByValue=True)["result"]["value"])
    # Responses of this page in order: redirects (with their location), the
    # document, its sub-resources.
    r["responses"] = responses
    return r


def collect(b, s):
    """Responses (redirects included) received until the page's load event."""
    got = []
    while True:
        for i, m in enumerate(b.events):
            if m.get("sessionId") != s:
                continue
            if m.get("method") == "Network.responseReceived":
                r = m["params"]
                got.append({"url": r["response"]["url"], "status": r["response"]["status"], "type": r.get("type")})
                del b.events[i]
                break
            if m.get("method") == "Network.requestWillBeSent" and "redirectResponse" in m["params"]:
                r = m["params"]
                got.append({"url": r["redirectResponse"]["url"], "status": r["redirectResponse"]["status"],
                            "type": r.get("type"), "location": r["request"]["url"]})
                del b.events[i]
                break
            if m.get("method") == "Page.loadEventFired":
                del b.events[i]
                return got
        else:
            b.events.append(b._read())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--click")
    ap.add_argument("--timeout", type=float, default=60)
    a = ap.parse_args()
    b = Browser(time.monotonic() + a.timeout)
    try:
        target = b.call("Target.createTarget", url="about:blank")["targetId"]
        s = b.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        b.call("Page.enable", s)
        b.call("Network.enable", s)
        b.call("Network.setCacheDisabled", s, cacheDisabled=True)
        nav = b.call("Page.navigate", s, url=a.url)
        if nav.get("errorText"):
            raise RuntimeError(f"navigate {a.url}: {nav['errorText']}")
        print(json.dumps(page(b, s, collect(b, s))), flush=True)
        if a.click:
            sel = json.dumps(a.click)
            b.call("Runtime.evaluate", s, expression=f"document.querySelector({sel}).click()")
            print(json.dumps(page(b, s, collect(b, s))), flush=True)
    finally:
        b.close()


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # a clear error for the test's report
        print(f"browse.py: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
