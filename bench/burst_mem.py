#!/usr/bin/env python3
"""Does weir give memory back after a burst? (allocator choice, README "Memory")

For each binary, a fresh weir with one worker in front of an nginx origin: read its
RSS, hold --count keep-alive connections that made one request each
(bench/idle_conns.py), read RSS, close them all, then read RSS each second for
--after seconds. Prints KiB before, with the connections held, and after the close
(at 1 s and at the end). An allocator that keeps freed pages stays near the peak;
one that purges them comes back toward the start.

Usage: bench/burst_mem.py --weir A --weir B [--count 5000] [--after 30]
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import idle_mem  # noqa: E402  (its nginx origin, weir start and RSS reading)


def burst(binary, origin_port, count, after):
    listen = idle_mem.free_port()
    proc, pids = idle_mem.start_weir(binary, listen, origin_port)
    try:
        time.sleep(idle_mem.SETTLE_S)
        before = idle_mem.rss_kib(pids)
        args = [sys.executable, os.path.join(idle_mem.HERE, "idle_conns.py"), "--port",
                str(listen), "--count", str(count)]
        held = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        report = json.loads(held.stdout.readline())
        time.sleep(idle_mem.SETTLE_S)
        peak = idle_mem.rss_kib(pids)
        held.stdin.write("release\n")
        held.stdin.close()
        held.wait()
        curve = []
        for _ in range(after):
            time.sleep(1)
            curve.append(idle_mem.rss_kib(pids))
    finally:
        proc.terminate()
        proc.wait()
    if report["held"] != count:
        sys.exit(f"burst_mem: only {report} of {count} held")
    return before, peak, curve


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weir", required=True, action="append", help="weir binary (repeatable)")
    ap.add_argument("--count", type=int, default=5000)
    ap.add_argument("--after", type=int, default=30, help="seconds watched after the close")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.count + 1024), hard))
    prefix = tempfile.mkdtemp(prefix="weir-burst-mem-")
    origin_port = idle_mem.free_port()
    origin, _ = idle_mem.start_nginx(prefix, origin_port, None)
    try:
        for binary in args.weir:
            before, peak, curve = burst(binary, origin_port, args.count, args.after)
            print(f"{binary:32} RSS KiB: before {before}, {args.count} held {peak}, "
                  f"closed +1 s {curve[0]}, +{args.after} s {curve[-1]}", flush=True)
    finally:
        origin.terminate()
        origin.wait()
        shutil.rmtree(prefix, ignore_errors=True)


if __name__ == "__main__":
    main()
