#!/usr/bin/env python3
"""Open N keep-alive HTTP/1.1 connections, send one GET on each, read the
response, and hold the connections open (stdlib only). With --silent, open them
and send nothing at all (a connection that has not begun a request).

Protocol with the caller (bench/compare.py), one JSON object per line on stdout:
  1. after every connection has either completed its GET or failed:
       {"held": n, "failed": n, "non200": n, "open_s": seconds}
  2. for every "check" line read on stdin:
       {"still_open": n}       (connections the server has not closed)
  3. on "release" (or EOF on stdin) every connection is reset (SO_LINGER 0, so no
     TIME_WAIT is left behind) and the helper exits.
"""
import argparse
import errno
import json
import resource
import selectors
import socket
import struct
import sys
import time


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = need if hard == resource.RLIM_INFINITY else min(need, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def response_complete(buf):
    """Return (done, status) for a buffered HTTP/1.1 response."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return False, None
    head = buf[:end].decode("latin-1").split("\r\n")
    try:
        status = int(head[0].split()[1])
    except (IndexError, ValueError):
        return True, -1
    length = None
    chunked = False
    for line in head[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    body = buf[end + 4:]
    if chunked:
        return body.endswith(b"0\r\n\r\n"), status
    if length is None:
        length = 0 if status in (204, 304) or status < 200 else None
    if length is None:  # delimited by close: not a keep-alive response
        return False, status
    return len(body) >= length, status


class Conn:
    __slots__ = ("sock", "phase", "buf")

    def __init__(self, sock):
        self.sock = sock
        self.phase = "connect"
        self.buf = b""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--window", type=int, default=200,
                    help="connections being opened/answered at once")
    ap.add_argument("--path", default="/")
    ap.add_argument("--silent", action="store_true",
                    help="send nothing: hold each connection as soon as it is up")
    ap.add_argument("--timeout", type=float, default=60.0,
                    help="give up on connections not answered after this many seconds")
    args = ap.parse_args()
    if args.host not in ("127.0.0.1", "localhost"):
        sys.exit("idle_conns.py: loopback only")
    raise_nofile(args.count + 256)

    req = ("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: weir-bench-idle\r\n\r\n"
           % (args.path, args.host, args.port)).encode()
    sel = selectors.DefaultSelector()
    held, failed, non200, started, inflight = [], 0, 0, 0, 0
    t0 = time.monotonic()
    deadline = t0 + args.timeout

    def fail(c):
        nonlocal failed, inflight
        failed += 1
        inflight -= 1
        try:
            sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()

    while len(held) + failed + non200 < args.count:
        while inflight < args.window and started < args.count:
            started += 1
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            rc = s.connect_ex((args.host, args.port))
            if rc not in (0, errno.EINPROGRESS):
                failed += 1
                s.close()
                continue
            inflight += 1
            sel.register(s, selectors.EVENT_WRITE, Conn(s))
        if time.monotonic() > deadline:
            for key in list(sel.get_map().values()):
                fail(key.data)
            break
        for key, _ in sel.select(timeout=0.5):
            c = key.data
            if c.phase == "connect":
                if c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    fail(c)
                    continue
                if args.silent:
                    sel.unregister(c.sock)
                    inflight -= 1
                    held.append(c.sock)
                    continue
                try:
                    c.sock.send(req)
                except OSError:
                    fail(c)
                    continue
                c.phase = "read"
                sel.modify(c.sock, selectors.EVENT_READ, c)
                continue
            try:
                data = c.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                fail(c)
                continue
            if not data:
                fail(c)
                continue
            c.buf += data
            done, status = response_complete(c.buf)
            if done:
                sel.unregister(c.sock)
                inflight -= 1
                if status == 200:
                    c.buf = b""
                    held.append(c.sock)
                else:
                    non200 += 1
                    c.sock.close()

    print(json.dumps({"held": len(held), "failed": failed, "non200": non200,
                      "open_s": round(time.monotonic() - t0, 3)}), flush=True)

    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "check":
            alive = 0
            for s in held:
                try:
                    if s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT):
                        alive += 1  # unexpected data, but still open
                except BlockingIOError:
                    alive += 1
                except OSError:
                    pass
            print(json.dumps({"still_open": alive}), flush=True)
        elif cmd == "release":
            break
    linger = struct.pack("ii", 1, 0)
    for s in held:
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        except OSError:
            pass
        s.close()


if __name__ == "__main__":
    main()
