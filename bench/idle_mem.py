#!/usr/bin/env python3
"""Memory per held connection, from a fresh process each time (issue #9, item 8).

For each proxy (weir, and nginx when installed) and each mode, start the proxy
fresh with one worker in front of an nginx origin, read its RSS, hold --count
connections with bench/idle_conns.py (``silent``: never send a byte; ``one``: one
GET each, then idle keep-alive), let the proxy settle, read RSS again, and print
(after - before) / count in KiB. A fresh process per measurement, because a heap
grown by earlier traffic hides what new connections cost.

Usage: bench/idle_mem.py --weir target/release/weir [--count 5000] [--rounds 3]
"""
import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SETTLE_S = 2.0  # let the proxy accept and park every connection before reading RSS


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, limit=20.0):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"idle_mem: nothing listens on {port}")


def rss_kib(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            total += next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
    return total


def nginx_conf(prefix, listen, backend):
    if backend:
        location = "proxy_pass http://b; proxy_http_version 1.1; proxy_set_header Connection '';"
    else:
        location = 'return 200 "ok\\n";'
    upstream = f"upstream b {{ server 127.0.0.1:{backend}; keepalive 64; }}" if backend else ""
    conf = f"""worker_processes 1; worker_rlimit_nofile 20000; daemon off; master_process on;
pid {prefix}/nginx-{listen}.pid; error_log {prefix}/error-{listen}.log warn;
events {{ worker_connections 20000; }}
http {{ access_log off; keepalive_requests 1000000; keepalive_timeout 300s;
  client_body_temp_path {prefix}/cb; proxy_temp_path {prefix}/px; fastcgi_temp_path {prefix}/fc;
  uwsgi_temp_path {prefix}/uw; scgi_temp_path {prefix}/sc;
  {upstream}
  server {{ listen 127.0.0.1:{listen} backlog=4096;
    location / {{ {location} }} }}
}}
"""
    path = os.path.join(prefix, f"nginx-{listen}.conf")
    with open(path, "w") as f:
        f.write(conf)
    return path


def start_nginx(prefix, listen, backend):
    user = ["-g", "user root;"] if os.geteuid() == 0 else []
    proc = subprocess.Popen(["nginx", "-p", prefix, "-c", nginx_conf(prefix, listen, backend)] + user,
                            stderr=subprocess.DEVNULL)
    wait_port(listen)
    kids = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    return proc, [int(k) for k in kids]  # the worker holds the connections


def start_weir(binary, listen, backend):
    proc = subprocess.Popen([binary, "-b", f"127.0.0.1:{backend}", "-l", f"127.0.0.1:{listen}",
                             "-w", "1", "--admin", "off", "--log-level", "error"],
                            stderr=subprocess.DEVNULL)
    wait_port(listen)
    return proc, [proc.pid]


def measure(start, count, silent):
    listen = free_port()
    proc, pids = start(listen)
    try:
        time.sleep(SETTLE_S)
        before = rss_kib(pids)
        args = [sys.executable, os.path.join(HERE, "idle_conns.py"), "--port", str(listen),
                "--count", str(count)] + (["--silent"] if silent else [])
        held = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        report = json.loads(held.stdout.readline())
        time.sleep(SETTLE_S)
        after = rss_kib(pids)
        held.stdin.write("release\n")
        held.stdin.close()
        held.wait()
    finally:
        proc.terminate()
        proc.wait()
    if report["held"] != count:
        sys.exit(f"idle_mem: only {report} of {count} held")
    return (after - before) / count


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weir", required=True, action="append", help="weir binary (repeatable)")
    ap.add_argument("--count", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.count + 1024), hard))
    prefix = tempfile.mkdtemp(prefix="weir-idle-mem-")
    origin_port = free_port()
    origin, _ = start_nginx(prefix, origin_port, None)
    proxies = [(b, lambda port, b=b: start_weir(b, port, origin_port)) for b in args.weir]
    if shutil.which("nginx"):
        proxies.append(("nginx", lambda port: start_nginx(prefix, port, origin_port)))
    try:
        for mode, silent in (("silent", True), ("one request", False)):
            for name, start in proxies:
                figures = [measure(start, args.count, silent) for _ in range(args.rounds)]
                shown = ", ".join(f"{f:.2f}" for f in figures)
                print(f"{mode:12} {name:40} KiB/conn: {shown}", flush=True)
    finally:
        origin.terminate()
        origin.wait()
        shutil.rmtree(prefix, ignore_errors=True)


if __name__ == "__main__":
    main()
