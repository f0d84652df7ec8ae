"""Raw-frame HTTP/2 clients for the tests in tests/it/h2/ (drain, metrics, limits).

Usage: h2_frames.py SCENARIO HOST PORT [ARGS...]

The frames are read and written raw (hyperframe, hpack: the `h2` package's own codecs),
not through h2.connection.H2Connection, whose state machine refuses what these clients
must do after a GOAWAY: answer its PING and open a stream anyway. Every read is bounded
by a socket timeout; each scenario prints its events, one a line, and flushes each.
"""

import socket
import sys
import threading

import hpack
import hyperframe.frame as hf

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# No read waits longer than this; a scenario reads at most MAX_READS times per connection.
TIMEOUT_SECS = 20
MAX_READS = 100_000
# GOAWAY's "2^31-1" last-stream-id: the warning of a graceful shutdown (RFC 9113 §6.8).
WARNING_ID = 2**31 - 1


def say(line):
    print(line, flush=True)


class Conn:
    """One h2c connection with prior knowledge, frames raw."""

    def __init__(self, host, port, auto_pong=True):
        self.host, self.port = host, port
        # Whether PINGs are answered as they are read (else the scenario answers them).
        self.auto_pong = auto_pong
        self.sock = socket.create_connection((host, int(port)), timeout=TIMEOUT_SECS)
        self.encoder, self.decoder = hpack.Encoder(), hpack.Decoder()
        self.buffer = b""
        self.closed = False
        # Why the connection counts as closed: an error, or "eof".
        self.why = "eof"
        self.write_error = None
        self.sock.sendall(PREFACE + hf.SettingsFrame(0).serialize())

    def send(self, *frames):
        """Writes `frames`. A write weir did not read (it closed the connection) is no
        error here: what weir sent before closing is still to be read, until EOF."""
        try:
            self.sock.sendall(b"".join(f.serialize() for f in frames))
        except OSError as error:
            self.write_error = repr(error)

    def get(self, stream_id, path):
        """A GET on `stream_id`: HEADERS with END_STREAM."""
        block = self.encoder.encode(
            [
                (":method", "GET"),
                (":path", path),
                (":scheme", "http"),
                (":authority", f"{self.host}:{self.port}"),
            ]
        )
        frame = hf.HeadersFrame(stream_id, block)
        frame.flags.add("END_HEADERS")
        frame.flags.add("END_STREAM")
        self.send(frame)

    def frames(self):
        """The next frames read, answering SETTINGS (and PING, with `auto_pong`) and
        returning the flow control window of DATA at once; [] once the connection closed."""
        if self.closed:
            return []
        try:
            data = self.sock.recv(65536)
        except OSError as error:
            self.why = repr(error)
            data = b""
        if not data:
            self.closed = True
            return []
        self.buffer += data
        out = []
        while len(self.buffer) >= 9:
            frame, length = hf.Frame.parse_frame_header(memoryview(self.buffer[:9]))
            if len(self.buffer) < 9 + length:
                break
            frame.parse_body(memoryview(self.buffer[9 : 9 + length]))
            self.buffer = self.buffer[9 + length :]
            out.append(self.react(frame))
        return out

    def react(self, frame):
        if isinstance(frame, hf.SettingsFrame) and "ACK" not in frame.flags:
            self.send(hf.SettingsFrame(0, flags=["ACK"]))
        elif isinstance(frame, hf.PingFrame) and "ACK" not in frame.flags and self.auto_pong:
            self.pong(frame)
        elif isinstance(frame, hf.DataFrame) and frame.flow_controlled_length:
            n = frame.flow_controlled_length
            updates = [hf.WindowUpdateFrame(0, n)]
            if "END_STREAM" not in frame.flags:
                updates.append(hf.WindowUpdateFrame(frame.stream_id, n))
            self.send(*updates)
        elif isinstance(frame, hf.HeadersFrame):
            frame.headers = dict(self.decoder.decode(frame.data))
        return frame

    def each_frame(self):
        """Every frame read until the connection closes (at most MAX_READS reads)."""
        for _ in range(MAX_READS):
            frames = self.frames()
            if self.closed:
                return
            yield from frames

    def pong(self, ping):
        self.send(hf.PingFrame(0, ping.opaque_data, flags=["ACK"]))


def status_of(frame):
    return frame.headers.get(":status", "?")


def drain(host, port, count, path):
    """Opens `count` streams; when the warning GOAWAY comes, opens one more before it
    acknowledges the warning's PING (so the final GOAWAY must count it); after the final
    GOAWAY, opens one more and sends a PING of its own, so weir has read that stream once
    the PING comes back. Prints `open`, `warning`, `final=ID`, `late=ID sent`, then
    `ID status=NNN`, `ID reset=CODE`, `ID ended` per stream, and `closed`."""
    conn = Conn(host, port, auto_pong=False)
    ids = [1 + 2 * n for n in range(int(count))]
    for stream_id in ids:
        conn.get(stream_id, path)
    say("open")
    next_id = ids[-1] + 2
    for frame in conn.each_frame():
        if isinstance(frame, hf.GoAwayFrame):
            if frame.last_stream_id == WARNING_ID:
                say(f"warning error={frame.error_code}")
                conn.get(next_id, path)
                next_id += 2
            else:
                say(f"final={frame.last_stream_id} error={frame.error_code}")
                conn.get(next_id, path)
                say(f"late={next_id} sent")
                conn.send(hf.PingFrame(0, b"lateping"))
        elif isinstance(frame, hf.PingFrame):
            if "ACK" not in frame.flags:
                conn.pong(frame)
            elif frame.opaque_data == b"lateping":
                say("late read")
        elif isinstance(frame, hf.HeadersFrame):
            say(f"{frame.stream_id} status={status_of(frame)}")
        elif isinstance(frame, hf.RstStreamFrame):
            say(f"{frame.stream_id} reset={frame.error_code}")
        if "END_STREAM" in getattr(frame, "flags", ()):
            say(f"{frame.stream_id} ended")
    say(f"closed {conn.why} write_error={conn.write_error}")


def serve_one(conn, stream_id, path):
    """GETs `path` on `stream_id` and reads until it ends; (status, body, goaway seen)."""
    conn.get(stream_id, path)
    status, body, goaway = None, b"", False
    for frame in conn.each_frame():
        if isinstance(frame, hf.GoAwayFrame):
            goaway = True
        elif isinstance(frame, hf.HeadersFrame) and frame.stream_id == stream_id:
            status = status_of(frame)
        elif isinstance(frame, hf.DataFrame) and frame.stream_id == stream_id:
            body += frame.data
        elif isinstance(frame, hf.RstStreamFrame) and frame.stream_id == stream_id:
            return f"reset={frame.error_code}", body, goaway
        if frame.stream_id == stream_id and "END_STREAM" in frame.flags:
            return status, body, goaway
    return "closed", body, goaway


def reload(host, port):
    """One connection: a GET, then (after a line on stdin) another on the same
    connection. Prints `1 STATUS BODY goaway=BOOL`, `ready`, then `3 ...`."""
    conn = Conn(host, port)
    status, body, goaway = serve_one(conn, 1, "/")
    say(f"1 {status} {body.decode()} goaway={goaway}")
    say("ready")
    sys.stdin.readline()
    status, body, goaway = serve_one(conn, 3, "/")
    say(f"3 {status} {body.decode()} goaway={goaway}")


def reset(host, port, path):
    """GETs `path` on stream 1; after a line on stdin, resets it (CANCEL) and sends a
    PING, so weir has read the reset once the PING comes back; then reads until weir
    closes the connection. Prints `open`, `reset read`, then `goaway=CODE` and `closed`."""
    conn = Conn(host, port)
    conn.get(1, path)
    say("open")
    sys.stdin.readline()
    conn.send(hf.RstStreamFrame(1, error_code=8), hf.PingFrame(0, b"resetchk"))
    for frame in conn.each_frame():
        if isinstance(frame, hf.PingFrame) and frame.opaque_data == b"resetchk":
            say("reset read")
        elif isinstance(frame, hf.GoAwayFrame):
            say(f"goaway={frame.error_code} last={frame.last_stream_id}")
    say("closed")


def settings(host, port):
    """Prints weir's first SETTINGS (`SETTING=VALUE`, by code) and the increment of its
    first connection-level WINDOW_UPDATE (`window+=N`), then `done`."""
    conn = Conn(host, port)
    seen_settings = seen_window = False
    for frame in conn.each_frame():
        if isinstance(frame, hf.SettingsFrame) and "ACK" not in frame.flags:
            for code, value in sorted(frame.settings.items()):
                say(f"{code}={value}")
            seen_settings = True
        elif isinstance(frame, hf.WindowUpdateFrame) and frame.stream_id == 0:
            say(f"window+={frame.window_increment}")
            seen_window = True
        if seen_settings and seen_window:
            break
    say("done")


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.ok = self.failed = self.retried = self.goaways = self.connections = 0
        self.warned = 0
        self.failures = []

    def add(self, **counts):
        with self.lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)


def load_connection(host, port, stop, tally, depth):
    """One connection kept `depth` streams deep until `stop` or a GOAWAY; returns when
    every stream weir took ended. Streams above a GOAWAY's last-stream-id, and those reset
    with REFUSED_STREAM, were not processed (RFC 9113 §8.7): retried, not failures."""
    try:
        conn = Conn(host, port)
    except OSError as error:
        tally.add(failed=1)
        tally.failures.append(f"connect: {error}")
        return
    tally.add(connections=1)
    open_ids, next_id, last_ok = set(), 1, None
    while True:
        while not stop.is_set() and last_ok is None and len(open_ids) < depth:
            conn.get(next_id, "/")
            open_ids.add(next_id)
            next_id += 2
        if not open_ids:
            break
        frames = conn.frames()
        if conn.closed:
            tally.add(failed=len(open_ids))
            tally.failures.append(f"closed ({conn.why}) with {sorted(open_ids)} open")
            break
        for frame in frames:
            if isinstance(frame, hf.GoAwayFrame):
                tally.add(goaways=1, warned=int(last_ok is None))
                last_ok = frame.last_stream_id
                unprocessed = {i for i in open_ids if i > last_ok}
                open_ids -= unprocessed
                tally.add(retried=len(unprocessed))
            elif isinstance(frame, hf.HeadersFrame) and status_of(frame) != "200":
                tally.failures.append(f"{frame.stream_id} status={status_of(frame)}")
                tally.add(failed=1)
                open_ids.discard(frame.stream_id)
            elif isinstance(frame, hf.RstStreamFrame) and frame.stream_id in open_ids:
                open_ids.discard(frame.stream_id)
                if frame.error_code == 7:  # REFUSED_STREAM
                    tally.add(retried=1)
                else:
                    tally.add(failed=1)
                    tally.failures.append(f"{frame.stream_id} reset={frame.error_code}")
            elif "END_STREAM" in frame.flags and frame.stream_id in open_ids:
                open_ids.discard(frame.stream_id)
                tally.add(ok=1)
    conn.sock.close()


def load(host, port, clients, depth):
    """`clients` threads, each on one connection at a time (a new one after a GOAWAY),
    `depth` streams deep, until stdin closes; then prints the tally."""
    stop, tally = threading.Event(), Tally()

    def client():
        while not stop.is_set():
            load_connection(host, port, stop, tally, int(depth))

    threads = [threading.Thread(target=client) for _ in range(int(clients))]
    for thread in threads:
        thread.start()
    say("running")
    sys.stdin.read()
    stop.set()
    for thread in threads:
        thread.join()
    say(
        f"ok={tally.ok} failed={tally.failed} retried={tally.retried} "
        f"goaways={tally.goaways} warned={tally.warned} connections={tally.connections}"
    )
    for failure in tally.failures[:20]:
        say(f"failure {failure}")


SCENARIOS = {"drain": drain, "reload": reload, "load": load, "reset": reset, "settings": settings}

if __name__ == "__main__":
    SCENARIOS[sys.argv[1]](*sys.argv[2:])
