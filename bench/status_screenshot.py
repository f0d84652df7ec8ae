#!/usr/bin/env python3
"""Load weir's status page in headless Chromium while traffic runs.

The script drives Chromium through chromedriver's WebDriver HTTP API (Python standard
library only). It checks that the page rendered the backends, that the next refresh
showed a changed request count, and then saves a screenshot.

Usage: bench/status_screenshot.py [STATUS_URL]
  STATUS_URL   e.g. http://127.0.0.1:9901/status. Without it, the script builds weir,
               starts `weir demo` on free ports and sends traffic itself.
Environment:
  OUT              screenshot path (default target/status.png); the DOM goes beside it
  EXPECT_BACKENDS  backend rows the page must show (default 1; 3 for the demo)
  SETTLE_POLLS     polls to wait before the screenshot, so rates and sparklines have
                   data (default 6, about 12 s)
  CHROMIUM, CHROMEDRIVER  binaries (default chromium and chromedriver; Debian packages
                   `chromium` and `chromium-driver`)
Exit status 0 when every check passes; 1 with a message otherwise.
"""

import base64
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BROWSER_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
    "--window-size=1280,800",
]
# What the page shows, read in the browser: polls so far, live state, one entry per row.
STATE_JS = """
const rows = [...document.querySelectorAll('tr[data-backend]')].map((r) => ({
  backend: r.dataset.backend, requests: Number(r.dataset.requests), state: r.className }));
return { polls: Number(document.body.dataset.polls || 0),
         live: document.getElementById('live').className, rows };
"""


class Failure(Exception):
    pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, check, limit=20.0, step=0.1):
    """Calls check() until it returns something truthy, at most `limit` seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(step)
    raise Failure(f"timed out waiting for {what}")


class WebDriver:
    """The few WebDriver calls this script needs, over plain HTTP."""

    def __init__(self, chromium, chromedriver, profile):
        self.port = free_port()
        self.process = subprocess.Popen(
            [chromedriver, f"--port={self.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.base = f"http://127.0.0.1:{self.port}"
        wait_for("chromedriver", self._ready)
        options = {"binary": chromium, "args": BROWSER_ARGS + [f"--user-data-dir={profile}"]}
        caps = {"capabilities": {"alwaysMatch": {"goog:chromeOptions": options}}}
        self.session = self.call("POST", "/session", caps)["sessionId"]

    def _ready(self):
        try:
            return self.call("GET", "/status").get("ready")
        except OSError:
            return False

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response)["value"]

    def session_call(self, method, path, body=None):
        return self.call(method, f"/session/{self.session}{path}", body)

    def run(self, script):
        return self.session_call("POST", "/execute/sync", {"script": script, "args": []})

    def close(self):
        try:
            self.session_call("DELETE", "")
        except OSError:
            pass
        self.process.terminate()
        self.process.wait(timeout=10)


def state_when(driver, predicate):
    """The page's state if `predicate` holds for it, else None."""
    state = driver.run(STATE_JS)
    return state if predicate(state) else None


def check_page(driver, url, expect, settle_polls, out):
    # An exact 1280x800 viewport: --window-size counts the (invisible) window frame.
    metrics = {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False}
    cdp = {"cmd": "Emulation.setDeviceMetricsOverride", "params": metrics}
    driver.session_call("POST", "/goog/cdp/execute", cdp)
    driver.session_call("POST", "/url", {"url": url})
    first = wait_for("the first poll", lambda: state_when(driver, lambda s: s["polls"] >= 1))
    if len(first["rows"]) < expect:
        raise Failure(f"{len(first['rows'])} backend rows rendered, expected {expect}")
    if first["live"] != "live":
        raise Failure(f"the page is not live: {first['live']}")
    polls = first["polls"]
    nxt = wait_for("the next refresh",
                   lambda: state_when(driver, lambda s: s["polls"] > polls), limit=10)
    before = [r["requests"] for r in first["rows"]]
    after = [r["requests"] for r in nxt["rows"]]
    if before == after:
        raise Failure(f"request counts did not change on refresh: {before}")
    wait_for(f"{settle_polls} polls", lambda: driver.run(STATE_JS)["polls"] >= settle_polls,
             limit=settle_polls * 2.0 + 10)
    png = base64.b64decode(driver.session_call("GET", "/screenshot"))
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out, "wb") as f:
        f.write(png)
    with open(os.path.splitext(out)[0] + "-dom.html", "w") as f:
        f.write(driver.run("return document.documentElement.outerHTML;"))
    states = sorted({r["state"] for r in nxt["rows"]})
    return (f"ok: {len(first['rows'])} backends rendered ({', '.join(states)}), request counts "
            f"{before} -> {after} on the next refresh; screenshot {out} ({len(png)} bytes)")


def demo_load(listen, stop):
    """Keep-alive GETs at about 60 requests/s until `stop` is set (at most 10 minutes)."""
    host, port = listen.rsplit(":", 1)
    deadline = time.monotonic() + 600
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            conn.request("GET", "/")
            conn.getresponse().read()
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection(host, int(port), timeout=5)
        time.sleep(0.015)


def start_demo(work):
    subprocess.run(["cargo", "build", "-q"], cwd=ROOT, check=True)
    err = open(os.path.join(work, "demo.err"), "w+")
    weir = subprocess.Popen(
        [os.path.join(ROOT, "target/debug/weir"), "-l", "127.0.0.1:0", "--admin",
         "127.0.0.1:0", "-w", "2", "demo"], stdout=subprocess.DEVNULL, stderr=err)

    def address(kind):
        err.seek(0)
        match = re.search(kind + r" listening on http://([0-9.:]+)", err.read())
        return match.group(1) if match else None

    admin = wait_for("weir demo's admin listener", lambda: address("admin"))
    listen = wait_for("weir demo's listener", lambda: address("server:"))
    return weir, admin, listen


def main():
    out = os.environ.get("OUT", os.path.join(ROOT, "target/status.png"))
    expect = int(os.environ.get("EXPECT_BACKENDS", "1"))
    settle = int(os.environ.get("SETTLE_POLLS", "6"))
    chromium = shutil.which(os.environ.get("CHROMIUM", "chromium"))
    chromedriver = shutil.which(os.environ.get("CHROMEDRIVER", "chromedriver"))
    if not chromium or not chromedriver:
        print("status_screenshot: needs chromium and chromedriver "
              "(apt-get install chromium chromium-driver)", file=sys.stderr)
        return 1
    work = tempfile.mkdtemp(prefix="weir-status-")
    weir, stop, driver = None, threading.Event(), None
    try:
        if len(sys.argv) > 1:
            url = sys.argv[1]
        else:
            weir, admin, listen = start_demo(work)
            threading.Thread(target=demo_load, args=(listen, stop), daemon=True).start()
            url, expect = f"http://{admin}/status", max(expect, 3)
        driver = WebDriver(chromium, chromedriver, os.path.join(work, "profile"))
        print(check_page(driver, url, expect, settle, out))
        return 0
    except (Failure, OSError, subprocess.SubprocessError, KeyError, ValueError) as error:
        print(f"status_screenshot: FAIL: {error}", file=sys.stderr)
        return 1
    finally:
        stop.set()
        if driver:
            driver.close()
        if weir:
            weir.terminate()
            weir.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
