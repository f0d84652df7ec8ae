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


def dial(host, port):
    """A non-blocking socket connecting to host:port, or None if connect failed at once."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    if s.connect_ex((host, port)) not in (0, errno.EINPROGRESS):
        s.close()
        return None
    return s


def reset_all(socks):
    """Closes every socket with a reset (SO_LINGER 0): no TIME_WAIT is left behind."""
    linger = struct.pack("ii", 1, 0)
    for s in socks:
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        except OSError:
            pass
        s.close()


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


def parser(doc, timeout):
    """The options every idle-connection helper takes."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--window", type=int, default=200,
                    help="connections being opened/answered at once")
    ap.add_argument("--path", default="/")
    ap.add_argument("--timeout", type=float, default=timeout,
                    help="give up on connections not answered after this many seconds")
    return ap


def parse(ap):
    """The options, checked (loopback only), with the fd limit raised for them."""
    args = ap.parse_args()
    if args.host not in ("127.0.0.1", "localhost"):
        sys.exit("%s: loopback only" % ap.prog)
    raise_nofile(args.count + 256)
    return args


def main():
    ap = parser(__doc__, 60.0)
    ap.add_argument("--silent", action="store_true",
                    help="send nothing: hold each connection as soon as it is up")
    args = parse(ap)

    req = ("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: weir-bench-idle\r\n\r\n"
           % (args.path, args.host, args.port)).encode()

    def step(c):
        if c.phase == "connect":
            if c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                raise OSError("connect failed")
            if args.silent:
                return "held"
            c.sock.send(req)
            c.phase = "read"
            return selectors.EVENT_READ
        try:
            data = c.sock.recv(65536)
        except BlockingIOError:
            return None
        if not data:
            raise OSError("closed by the server")
        c.buf += data
        done, status = response_complete(c.buf)
        if not done:
            return None
        c.buf = b""
        return "held" if status == 200 else "non200"

    def alive(c):
        try:
            # Data (unexpected, but the connection is open), or b"" once it closed.
            return bool(c.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except BlockingIOError:
            return True
        except OSError:
            return False

    run(args, Conn, step, alive)


def run(args, make, step, alive):
    """The whole protocol above, for any kind of connection: opens and holds them
    (`hold_all`), reports, answers "check" with `alive(conn)` of each held one, and
    resets them all on "release" or EOF."""
    held, failed, non200, seconds = hold_all(args, make, step)
    print(json.dumps({"held": len(held), "failed": failed, "non200": non200,
                      "open_s": round(seconds, 3)}), flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "check":
            print(json.dumps({"still_open": sum(1 for c in held if alive(c))}), flush=True)
        elif cmd == "release":
            break
    reset_all([c.sock for c in held])


def hold_all(args, make, step):
    """Opens args.count connections to args.host:args.port, args.window at a time. Each
    is `make(sock)` (sock non-blocking, connecting, waited on for writing), and
    `step(conn)` runs on each of its readiness events until it returns "held" or
    "non200", or raises OSError (failed). Otherwise it returns the selector events to
    wait for next (conn.sock may have been replaced, as by its TLS wrapper), or None to
    wait as before. Returns (held conns, failed, non200, seconds)."""
    sel = selectors.DefaultSelector()
    held, failed, non200, started, inflight = [], 0, 0, 0, 0
    t0 = time.monotonic()
    deadline = t0 + args.timeout

    def settle(key, close):
        nonlocal inflight
        inflight -= 1
        sel.unregister(key.fileobj)
        if close:
            key.data.sock.close()

    while len(held) + failed + non200 < args.count:
        while inflight < args.window and started < args.count:
            started += 1
            s = dial(args.host, args.port)
            if s is None:
                failed += 1
                continue
            inflight += 1
            sel.register(s, selectors.EVENT_WRITE, make(s))
        if time.monotonic() > deadline:
            for key in list(sel.get_map().values()):
                settle(key, True)
                failed += 1
            break
        for key, _ in sel.select(timeout=0.5):
            c = key.data
            try:
                verdict = step(c)
            except OSError:
                settle(key, True)
                failed += 1
                continue
            if verdict == "held":
                settle(key, False)
                held.append(c)
            elif verdict == "non200":
                settle(key, True)
                non200 += 1
            elif verdict is not None and c.sock is key.fileobj:
                sel.modify(c.sock, verdict, c)
            elif verdict is not None:
                sel.unregister(key.fileobj)
                sel.register(c.sock, verdict, c)
    return held, failed, non200, time.monotonic() - t0


if __name__ == "__main__":
    main()
