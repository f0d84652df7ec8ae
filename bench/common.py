"""Shared by the weir benchmark driver's modules (bench/compare.py, cli.py, procs.py,
report.py): paths, the proxy names, the load scenarios, logging, the fatal-error type
and small helpers (free ports, config templates, finding tools, probing a target until
it answers).

Python 3 stdlib only. Everything listens on and talks to 127.0.0.1 only.
"""
import http.client
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
CONF = os.path.join(BENCH, "conf")
WRK_DIR = os.path.join(BENCH, "wrk")
CLK_TCK = os.sysconf("SC_CLK_TCK")
HOST = "127.0.0.1"
LARGE_SIZE = 1 << 20
POST_SIZE = 1024

PEERS = ("nginx", "haproxy")
# "hyper" is opt-in: a minimal reverse proxy on hyper 1.x (bench/hyper-baseline), run only
# to measure what weir's own HTTP/1 codec buys. It is single-threaded: 1-worker runs only.
EXTRAS = ("hyper",)
ALL_PROXIES = ("weir",) + PEERS + EXTRAS
DEFAULT_PROXIES = ("weir",) + PEERS
DIRECT = "direct"
# weir again, from the file of --weir-config (bench/policy.toml: issue #20's policy), so
# a config's cost is measured against plain weir in the same run.
WEIR_CONFIG = "weir-config"

# backend: which origin port the scenario uses ("small" / "large" / "post")
SCENARIOS = [
    dict(key="get-ka", title="small GET, keep-alive (-t1 -c64)", backend="small",
         wrk=["-t1", "-c64"]),
    dict(key="get-close", title="small GET, Connection: close (-t1 -c64)", backend="small",
         wrk=["-t1", "-c64", "-H", "Connection: close"]),
    dict(key="post-1k", title="1 KiB POST, keep-alive (-t1 -c64)", backend="post",
         wrk=["-t1", "-c64"], script="post.lua"),
    dict(key="get-1m", title="1 MiB response, keep-alive (-t1 -c8)", backend="large",
         wrk=["-t1", "-c8"]),
    dict(key="get-c1000", title="small GET, 1,000 keep-alive conns (-t2 -c1000)",
         backend="small", wrk=["-t2", "-c1000"]),
    dict(key="idle-10k", title="idle keep-alive conns held open (RSS only)", backend="small",
         idle=True),
]
SCEN_BY_KEY = {s["key"]: s for s in SCENARIOS}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Fatal(Exception):
    pass


# ----------------------------------------------------------------- helpers

def free_port(used):
    """A free loopback port below the ephemeral range (so it never collides with
    the client side of the benchmark's own connections)."""
    lo = 20000
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            eph_lo = int(f.read().split()[0])
    except (OSError, ValueError):
        eph_lo = 32768
    hi = eph_lo - 1 if eph_lo - 1 > lo + 1000 else 65000
    for _ in range(1000):
        port = random.randint(lo, hi)
        if port in used:
            continue
        s = socket.socket()
        try:
            s.bind((HOST, port))
        except OSError:
            continue
        finally:
            s.close()
        used.add(port)
        return port
    raise Fatal("could not find a free port on 127.0.0.1")


def render(template, dest, values):
    with open(os.path.join(CONF, template)) as f:
        text = f.read()
    for k, v in values.items():
        text = text.replace("@%s@" % k, str(v))
    left = re.findall(r"@[A-Z_]+@", text)
    if left:
        raise Fatal("%s: unfilled placeholders %s" % (template, sorted(set(left))))
    with open(dest, "w") as f:
        f.write(text)
    return dest


def which(name):
    path = shutil.which(name)
    if path:
        return path
    for d in ("/usr/sbin", "/sbin", "/usr/local/sbin"):
        if os.access(os.path.join(d, name), os.X_OK):
            return os.path.join(d, name)
    return None


def run_out(argv, **kw):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30, **kw)
        return (r.stdout + r.stderr).strip()
    except (OSError, subprocess.SubprocessError) as e:
        return "unavailable (%s)" % e


def probe(port, scen, timeout=2.0):
    """One request of the scenario's kind; returns None if OK, else a reason."""
    try:
        c = http.client.HTTPConnection(HOST, port, timeout=timeout)
        if scen["backend"] == "post":
            c.request("POST", "/", body=b"x" * POST_SIZE,
                      headers={"Content-Type": "application/octet-stream"})
        else:
            c.request("GET", "/")
        r = c.getresponse()
        body = r.read()
        c.close()
    except (OSError, http.client.HTTPException) as e:
        return "%s: %s" % (type(e).__name__, e)
    if r.status != 200:
        return "status %d" % r.status
    want = LARGE_SIZE if scen["backend"] == "large" else len(b"ok\n")
    if len(body) != want:
        return "body %d bytes, expected %d" % (len(body), want)
    return None


def wait_ready(proc, port, scen, timeout=15.0):
    deadline = time.monotonic() + timeout
    why = "not started"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return "exited with status %s" % proc.returncode
        why = probe(port, scen, timeout=1.0)
        if why is None:
            return None
        time.sleep(0.1)
    return "not ready after %.0fs (%s)" % (timeout, why)


def tail(path, n=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""
