"""Traffic and bookkeeping for bench/soak.py: a minimal HTTP/1.1 and WebSocket client on
asyncio streams, the traffic loops, and the error accounting that tells expected errors
(in flight on a backend at the instant it was killed) from unexpected ones.

Python 3 stdlib only.
"""
import asyncio
import base64
import collections
import os
import socket
import time
import zlib

# A kill is taken to reach operations that started up to this long after it: SIGKILL
# is sent right after the kill is recorded, and the process takes a moment to die.
KILL_SLACK_S = 0.5
# Pause between two requests of one loop: the soak is about time and churn, not peak
# rate; this keeps the Python client from eating both cores.
PAUSE_S = 0.004
# Most unexpected errors kept with their details for the report.
MAX_DETAILS = 50
# Read size of the slow client and its pause: 16 KiB every 0.125 s is 128 KB/s.
SLOW_PIECE, SLOW_PAUSE_S = 16 * 1024, 0.125
# Bodies up to this size are kept so their content can be checked (the POST echoes).
KEEP_BODY = 4096


class Cut(Exception):
    """The response ended before its framing said it would."""


class Context:
    """Counts operations and classifies errors against the kill times."""

    def __init__(self):
        self.kills = []  # (monotonic time, backend name)
        self.events = collections.Counter()
        self.ok = collections.Counter()
        self.expected = collections.Counter()
        self.unexpected_n = collections.Counter()
        self.details = []

    def kill(self, name):
        self.kills.append((time.monotonic(), name))
        self.events["kill"] += 1

    def event(self, what):
        self.events[what] += 1

    def unexpected(self, kind, why):
        self.unexpected_n[kind] += 1
        if len(self.details) < MAX_DETAILS:
            self.details.append(f"{time.strftime('%H:%M:%S')} {kind}: {why}")

    def record(self, kind, start, end, error=None, backend=None):
        """One operation from `start` to `end`; `backend` is who answered, if known."""
        if error is None:
            self.ok[kind] += 1
            return
        for at, name in self.kills:
            overlaps = start <= at + KILL_SLACK_S and end >= at
            if overlaps and backend in (None, name):
                self.expected[f"{kind}: {error}"] += 1
                return
        self.unexpected(kind, f"{error} (backend {backend})")

    def report(self):
        return {"ok": dict(self.ok), "ok_total": sum(self.ok.values()),
                "expected": dict(self.expected), "unexpected": sum(self.unexpected_n.values()),
                "unexpected_by_kind": dict(self.unexpected_n), "details": self.details,
                "events": dict(self.events)}


def summary(r):
    lines = [f"soak: {'PASS' if r['pass'] else 'FAIL'} after {r['duration_s']} s",
             f"  operations ok: {r['ok_total']} {r['ok']}",
             f"  events: {r['events']}",
             f"  expected errors (in flight on a killed backend): {r['expected']}",
             f"  unexpected errors: {r['unexpected']} {r['unexpected_by_kind']}",
             f"  RSS: {r['rss_kib_after_warmup']} KiB after warm-up, "
             f"{r['rss_kib_last_minute']} KiB over the last minute "
             f"(drift {r['rss_drift'] * 100:+.2f}%)",
             f"  fds: {r['fds_baseline']} before traffic, {r['fds_after']} after it settled",
             f"  threads after warm-up and at the end: {r['threads']}; "
             f"metric series: {r['metric_series']}"]
    lines += [f"    {d}" for d in r["details"][:20]]
    return "\n".join(lines)


async def wait_port(port, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def admin_call(port, method, path, body, token):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    data = (body or "").encode()
    w.write(f"{method} {path} HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
    await w.drain()
    status = int((await r.readline()).split()[1])
    w.close()
    return status


async def admin_get(port, path):
    """The body of a GET on the admin listener (read to the end: `Connection: close`)."""
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(f"GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n".encode())
    await w.drain()
    data = await r.read()
    w.close()
    return data.split(b"\r\n\r\n", 1)[-1].decode(errors="replace")


class Conn:
    """One client connection; `rcvbuf` shrinks the socket's receive buffer."""

    def __init__(self, port, rcvbuf=None):
        self.port, self.rcvbuf, self.r, self.w = port, rcvbuf, None, None
        self.last_body = b""
        # Requests sent on this connection, and whether this one's head arrived: a
        # client may resend an idempotent request whose reused connection closed before
        # any response byte (RFC 9112 §9.3.1), as browsers and curl do.
        self.uses, self.got_head, self.stale_retries = 0, False, 0

    async def open(self):
        if self.w is not None:
            return
        sock = None
        if self.rcvbuf:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", self.port))
            self.r, self.w = await asyncio.open_connection(sock=sock)
        else:
            self.r, self.w = await asyncio.open_connection("127.0.0.1", self.port)

    def close(self):
        if self.w is not None:
            self.w.close()
        self.r = self.w = None
        self.uses = 0

    async def head(self):
        head = await self.r.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        fields = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                fields.setdefault(name.strip().lower(), value.strip())
        return status, fields

    async def body(self, fields, slow=False):
        """Reads the body; returns its length. Raises Cut when it ends early."""
        if fields.get("transfer-encoding", "").lower() == "chunked":
            n = 0
            while True:
                size = int((await self.r.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    while await self.r.readuntil(b"\r\n") != b"\r\n":
                        pass
                    return n
                n += len(await self.r.readexactly(size))
                await self.r.readexactly(2)
        left = int(fields.get("content-length", "0"))
        total, kept = left, []
        while left:
            piece = await self.r.read(min(left, SLOW_PIECE if slow else 1 << 20))
            if not piece:
                raise Cut(f"body cut at {total - left} of {total}")
            left -= len(piece)
            if total <= KEEP_BODY:
                kept.append(piece)
            if slow:
                await asyncio.sleep(SLOW_PAUSE_S)
        self.last_body = b"".join(kept)
        return total

    async def request(self, method, path, extra=b"", body=None, chunked=False, slow=False):
        """One exchange; an idempotent one is resent once on a fresh connection when a
        reused connection closed before any response byte (the keep-alive race)."""
        reused = self.w is not None and self.uses > 0
        try:
            return await self.exchange(method, path, extra, body, chunked, slow)
        except (asyncio.IncompleteReadError, ConnectionError) as e:
            if not reused or self.got_head or method != "GET":
                raise
            self.close()
            self.stale_retries += 1
            return await self.exchange(method, path, extra, body, chunked, slow)

    async def exchange(self, method, path, extra, body, chunked, slow):
        await self.open()
        self.uses += 1
        self.got_head = False
        head = f"{method} {path} HTTP/1.1\r\nHost: soak\r\n".encode() + extra
        if body is None:
            self.w.write(head + b"\r\n")
        elif chunked:
            self.w.write(head + b"Transfer-Encoding: chunked\r\n\r\n")
            for at in range(0, len(body), 65536):
                piece = body[at:at + 65536]
                self.w.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
                await self.w.drain()
            self.w.write(b"0\r\n\r\n")
        else:
            self.w.write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        await self.w.drain()
        status, fields = await self.head()
        self.got_head = True
        n = await self.body(fields, slow)
        if fields.get("connection", "").lower() == "close":
            self.close()
        return status, fields, n, self.last_body


async def http_loop(ctx, port, end, kind, make, rcvbuf=None):
    """Repeats one request shape until `end`; `make()` gives (method, path, extra, body,
    chunked, slow, check) where `check(status, n, body)` returns an error or None; `body`
    is the response body when it is at most KEEP_BODY bytes."""
    conn, cookie = Conn(port, rcvbuf), b""
    while time.monotonic() < end:
        method, path, extra, body, chunked, slow, check = make()
        start, backend, error = time.monotonic(), None, None
        try:
            status, fields, n, content = await conn.request(method, path, extra + cookie,
                                                            body, chunked, slow)
            backend = fields.get("x-backend")
            error = check(status, n, content)
            if "set-cookie" in fields:
                cookie = b"Cookie: " + fields["set-cookie"].split(";")[0].encode() + b"\r\n"
        except (Cut, asyncio.IncompleteReadError, ConnectionError, OSError) as e:
            error = f"{type(e).__name__}: {e}"[:120]
        if error:
            conn.close()
        ctx.record(kind, start, time.monotonic(), error, backend)
        await asyncio.sleep(PAUSE_S)
    ctx.events["client resent after a keep-alive close"] += conn.stale_retries
    conn.close()


def expect(length, content=None):
    """A 200 with a body of `length` bytes (equal to `content` when given)."""
    def check(status, n, body):
        if status != 200:
            return f"status {status}"
        if n != length:
            return f"length {n} != {length}"
        if content is not None and body != content:
            return f"body {body[:40]!r} != {content[:40]!r}"
        return None
    return check


async def ws_loop(ctx, port, end):
    """WebSocket sessions: handshake, 20 echoed masked text frames, close."""
    while time.monotonic() < end:
        start, backend, error = time.monotonic(), None, None
        conn = Conn(port)
        try:
            await conn.open()
            key = base64.b64encode(os.urandom(16)).decode()
            conn.w.write(f"GET /ws HTTP/1.1\r\nHost: soak\r\nUpgrade: websocket\r\n"
                         f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                         f"Sec-WebSocket-Version: 13\r\n\r\n".encode())
            status, fields = await conn.head()
            backend = fields.get("x-backend")
            if status != 101:
                raise Cut(f"status {status}")
            for i in range(20):
                payload = os.urandom(64 + i * 512)
                mask = os.urandom(4)
                masked = bytes(c ^ mask[j % 4] for j, c in enumerate(payload))
                n = len(payload)
                length = bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big")
                conn.w.write(b"\x82" + length + mask + masked)
                await conn.w.drain()
                b0, b1 = await conn.r.readexactly(2)
                size = b1 & 0x7F
                if size == 126:
                    size = int.from_bytes(await conn.r.readexactly(2), "big")
                if await conn.r.readexactly(size) != payload:
                    raise Cut("echo differs")
            conn.w.write(b"\x88\x80" + os.urandom(4))
            await conn.w.drain()
            await conn.r.readexactly(2)
        except (Cut, asyncio.IncompleteReadError, ConnectionError, OSError) as e:
            error = f"{type(e).__name__}: {e}"[:120]
        conn.close()
        ctx.record("websocket", start, time.monotonic(), error, backend)
        await asyncio.sleep(0.05)


def all_loops(ctx, port, end):
    small = lambda: ("GET", "/small", b"", None, False, False, expect(length=64))  # noqa: E731
    sticky = lambda: ("GET", "/s/small", b"", None, False, False, expect(length=64))  # noqa: E731
    big = 8 * 1024 * 1024
    download = lambda: ("GET", f"/big?n={big}", b"", None, False, False, expect(length=big))  # noqa: E731
    slow_n = 1024 * 1024
    slow = lambda: ("GET", f"/big?n={slow_n}", b"", None, False, True, expect(length=slow_n))  # noqa: E731

    def post(size, chunked):
        body = os.urandom(size)
        want = b"%d %08x" % (size, zlib.crc32(body))
        check = expect(len(want), want)
        return lambda: ("POST", "/echo", b"", body, chunked, False, check)

    loops = [http_loop(ctx, port, end, "get", small) for _ in range(6)]
    loops += [http_loop(ctx, port, end, "get-sticky", sticky) for _ in range(2)]
    loops += [http_loop(ctx, port, end, "post-1k", post(1024, False)),
              http_loop(ctx, port, end, "post-256k-chunked", post(256 * 1024, True)),
              http_loop(ctx, port, end, "download-8m", download),
              http_loop(ctx, port, end, "slow-client-1m", slow, rcvbuf=16 * 1024),
              ws_loop(ctx, port, end)]
    return loops
