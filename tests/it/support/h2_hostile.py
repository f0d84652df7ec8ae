"""Hostile HTTP/2 clients for tests/it/h2/hostile.rs, written with the Python `h2` package.

Usage: h2_hostile.py SCENARIO HOST PORT

Each scenario opens one h2c (prior knowledge) connection, misbehaves in one way, reads
what weir answers until every stream it opened has ended (or the connection closes), and
prints one line per stream: `STREAM_ID status=NNN` for a response head, `STREAM_ID
reset=NAME` for RST_STREAM, and `goaway=NAME` for GOAWAY. Every read is bounded by a
socket timeout, so a scenario never hangs.
"""

import socket
import sys
import time

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.frame_buffer
import h2.settings
import hpack
import hyperframe.frame

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# No read waits longer than this; a scenario reads at most MAX_READS times.
TIMEOUT_SECS = 10
MAX_READS = 10_000


def connect(host, port):
    """An h2c connection whose outbound headers are not checked, so it can break rules."""
    sock = socket.create_connection((host, int(port)), timeout=TIMEOUT_SECS)
    config = h2.config.H2Configuration(
        client_side=True,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
        validate_inbound_headers=False,
    )
    conn = h2.connection.H2Connection(config=config)
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    return sock, conn


def head(host, port, path, extra=(), method="GET"):
    return [
        (":method", method),
        (":path", path),
        (":scheme", "http"),
        (":authority", f"{host}:{port}"),
    ] + list(extra)


def settle(sock, conn):
    """Reads until the server's SETTINGS arrived (and were acknowledged by us)."""
    for _ in range(MAX_READS):
        data = sock.recv(65536)
        if not data:
            return
        events = conn.receive_data(data)
        sock.sendall(conn.data_to_send())
        if any(isinstance(e, h2.events.RemoteSettingsChanged) for e in events):
            return


def collect(sock, conn, streams):
    """Reads events until each of `streams` ended or the connection closed; prints them."""
    open_streams = set(streams)
    lines = []
    for _ in range(MAX_READS):
        if not open_streams:
            break
        try:
            data = sock.recv(65536)
        except (socket.timeout, ConnectionResetError):
            lines.append("closed")
            break
        if not data:
            lines.append("closed")
            break
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                status = dict(event.headers).get(b":status", b"?").decode()
                lines.append(f"{event.stream_id} status={status}")
            elif isinstance(event, h2.events.StreamReset):
                lines.append(f"{event.stream_id} reset={event.error_code.name}")
                open_streams.discard(event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                open_streams.discard(event.stream_id)
            elif isinstance(event, h2.events.ConnectionTerminated):
                lines.append(f"goaway={event.error_code.name}")
                open_streams.clear()
            elif isinstance(event, h2.events.DataReceived):
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        sock.sendall(conn.data_to_send())
    print("\n".join(lines), flush=True)


def bad_then_good(host, port, send_bad):
    """Stream 1 as `send_bad` sends it, then a good GET on stream 3 of the same connection."""
    sock, conn = connect(host, port)
    settle(sock, conn)
    send_bad(conn)
    conn.send_headers(3, head(host, port, "/"), end_stream=True)
    sock.sendall(conn.data_to_send())
    collect(sock, conn, [1, 3])


def connection_specific(host, port):
    """`connection: keep-alive` in a request (RFC 9113 §8.2.2)."""
    extra = [("connection", "keep-alive")]
    bad_then_good(
        host, port, lambda conn: conn.send_headers(1, head(host, port, "/", extra), end_stream=True)
    )


def content_length(host, port):
    """`content-length: 10` with 5 bytes of DATA."""

    def send_bad(conn):
        conn.send_headers(1, head(host, port, "/echo-body", [("content-length", "10")], "POST"))
        conn.send_data(1, b"hello", end_stream=True)

    bad_then_good(host, port, send_bad)


def stalled_body(host, port):
    """A POST that sends 5 bytes of its body and then nothing (no END_STREAM)."""

    def send_bad(conn):
        conn.send_headers(1, head(host, port, "/echo-body", method="POST"))
        conn.send_data(1, b"hello")

    bad_then_good(host, port, send_bad)


def big_headers(host, port):
    """One 8 KiB header value (over a 4 KiB header list limit)."""
    extra = [("x-big", "a" * 8192)]
    bad_then_good(
        host, port, lambda conn: conn.send_headers(1, head(host, port, "/", extra), end_stream=True)
    )


def too_many_streams(host, port):
    """101 streams open at once (uploads whose bodies never come) when 100 are allowed."""
    sock, conn = connect(host, port)
    settle(sock, conn)
    # Ignore the server's limit, as an attacker would.
    limit = h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS
    conn.remote_settings.update({limit: 1_000})
    conn.remote_settings.acknowledge()
    ids = [1 + 2 * n for n in range(101)]
    for stream_id in ids:
        conn.send_headers(stream_id, head(host, port, "/echo-body", method="POST"))
    sock.sendall(conn.data_to_send())
    # Only the refused one ends; the others wait for their bodies.
    collect(sock, conn, [ids[-1]])


def raw_frames(sock):
    """Frames weir sends on `sock`, read raw (H2Connection takes a PING after GOAWAY
    for an error), then `"eof"` or `"reset"` for how the connection ended. A read that
    times out raises: weir kept the connection."""
    frames = h2.frame_buffer.FrameBuffer(server=False)
    frames.max_frame_size = 16384
    for _ in range(MAX_READS):
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            yield "reset"
            return
        if not data:
            yield "eof"
            return
        frames.add_data(data)
        yield from frames


def goaways(host, port, first_only):
    """Opens a connection and sends nothing more, not even an answer to the PING that
    comes with a polite GOAWAY; prints each GOAWAY (its code, and with `first_only`
    unset its last stream id) and `closed` at the end (`reset` for an RST), or stops
    at the first GOAWAY."""
    sock, conn = connect(host, port)
    for frame in raw_frames(sock):
        if frame == "eof":
            print("closed", flush=True)
            return
        if frame == "reset":
            print("reset", flush=True)
            return
        if isinstance(frame, hyperframe.frame.GoAwayFrame):
            code = h2.errors.ErrorCodes(frame.error_code).name
            if first_only:
                print(f"goaway={code}", flush=True)
                return
            print(f"goaway={code} last={frame.last_stream_id}", flush=True)


def idle(host, port):
    """An idle connection gets GOAWAY."""
    goaways(host, port, first_only=True)


def idle_silent(host, port):
    """An idle connection that never answers the GOAWAY's PING gets the final GOAWAY and
    is closed."""
    goaways(host, port, first_only=False)


def stalled_upload(host, port):
    """Uploads up to 64 MiB to a backend that reads nothing, sending only what the
    window allows; prints `sent=N` once no WINDOW_UPDATE came for 2 s."""
    sock, conn = connect(host, port)
    settle(sock, conn)
    conn.send_headers(1, head(host, port, "/stalled", method="POST"))
    sock.sendall(conn.data_to_send())
    chunk = b"x" * 16384
    sent = 0
    sock.settimeout(2)
    while sent < 64 * 1024 * 1024:
        window = min(conn.local_flow_control_window(1), len(chunk))
        if window > 0:
            conn.send_data(1, chunk[:window])
            sock.sendall(conn.data_to_send())
            sent += window
            continue
        try:
            data = sock.recv(65536)
        except socket.timeout:
            break
        if not data:
            break
        conn.receive_data(data)
        sock.sendall(conn.data_to_send())
    print(f"sent={sent}", flush=True)


def goaway_mid_send(host, port, behind=bytes(64 * 1024)):
    """A connection error (a connection WINDOW_UPDATE of 0, RFC 9113 §6.9) sent with
    `behind` after it (64 KiB weir will not parse), as from a client whose requests
    crossed weir's GOAWAY, on a connection whose receive buffer is still full of an
    8 KiB response the client has not read yet. Then reads until the connection ends;
    prints `goaway=NAME` for each GOAWAY and `end=eof` or `end=reset` for how the
    connection ended. A socket closed with unread input sends RST, and its kernel drops
    what it had not sent yet: here the rest of the response and the GOAWAY."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # The smallest receive buffer the kernel allows: most of the response waits in weir.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
    sock.settimeout(TIMEOUT_SECS)
    sock.connect((host, int(port)))
    settings = hyperframe.frame.SettingsFrame(0)
    settings.settings = {hyperframe.frame.SettingsFrame.INITIAL_WINDOW_SIZE: 1 << 20}
    get = hyperframe.frame.HeadersFrame(1)
    get.data = hpack.Encoder().encode(head(host, port, "/download?bytes=8192"))
    get.flags.add("END_HEADERS")
    get.flags.add("END_STREAM")
    sock.sendall(PREFACE + settings.serialize() + get.serialize())
    time.sleep(0.3)
    bad = hyperframe.frame.WindowUpdateFrame(0)
    bad.window_increment = 0
    try:
        sock.sendall(bad.serialize() + behind)
    except (BrokenPipeError, ConnectionResetError):
        pass
    time.sleep(0.3)
    for frame in raw_frames(sock):
        if frame in ("eof", "reset"):
            print(f"end={frame}", flush=True)
        elif isinstance(frame, hyperframe.frame.GoAwayFrame):
            print(f"goaway={h2.errors.ErrorCodes(frame.error_code).name}", flush=True)


def error_then_ping_flood(host, port):
    """`goaway_mid_send` with 150 PINGs behind the error (past weir's PING budget of
    100): weir's scan of the bytes sees a flood the codec never reads."""
    ping = hyperframe.frame.PingFrame(0)
    ping.opaque_data = bytes(8)
    goaway_mid_send(host, port, ping.serialize() * 150)


SCENARIOS = {
    "error_then_ping_flood": error_then_ping_flood,
    "goaway_mid_send": goaway_mid_send,
    "stalled_upload": stalled_upload,
    "idle": idle,
    "idle_silent": idle_silent,
    "connection_specific": connection_specific,
    "content_length": content_length,
    "big_headers": big_headers,
    "stalled_body": stalled_body,
    "too_many_streams": too_many_streams,
}

if __name__ == "__main__":
    SCENARIOS[sys.argv[1]](sys.argv[2], sys.argv[3])
