"""An HTTP/2 server conformance suite (RFC 9113, RFC 7541) for tests/it/h2/conformance.rs,
after h2spec's case list: its `generic`, `http2` and `hpack` groups, case for case, each
asserting the reaction the RFC requires, as h2spec accepts it:
- a connection error: GOAWAY with that code, or the connection closed (a GOAWAY with
  another code fails the case, where h2spec would let the close after it pass);
- a stream error: RST_STREAM with that code, GOAWAY with it, or the connection closed;
- otherwise a normal response (END_STREAM on the stream, status 2xx), a PING or SETTINGS
  acknowledgement, or DATA frames of the length flow control allows.

Usage: h2_conformance.py HOST PORT [--tls CAFILE SERVERNAME] PREFIX...

Runs each case whose id is or starts with `PREFIX/` (ids as `http2/6.5.2/1`), each on a
new connection (h2c with prior knowledge, or TLS with ALPN h2), and prints one line per
case: `pass ID`, `fail ID: WHY`, `deviation ID: WHY` (a known deviation, see
`h2_conformance_cases.KNOWN`, still deviates) or `fixed ID` (it no longer does). Frames
and header blocks are written raw, so that every rule can be broken on purpose; frames
read are parsed with hyperframe and header blocks decoded with hpack. Every read is
bounded by a socket timeout and every wait by MAX_EVENTS frames.
"""

import socket
import ssl
import sys

import hpack
import hpack.huffman
import hpack.huffman_constants
import hyperframe.exceptions
import hyperframe.frame as hf

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# No read waits longer than this (h2spec's default is 2 s; a passing case never waits it
# out, so a loaded machine gets more room); a wait reads at most MAX_EVENTS frames.
TIMEOUT_SECS = 5
MAX_EVENTS = 10_000

(DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE,
 CONTINUATION) = range(10)
END_STREAM = ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20
CODES = ["NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR",
         "SETTINGS_TIMEOUT", "STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL",
         "COMPRESSION_ERROR", "CONNECT_ERROR", "ENHANCE_YOUR_CALM", "INADEQUATE_SECURITY",
         "HTTP_1_1_REQUIRED"]
(NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR, SETTINGS_TIMEOUT, STREAM_CLOSED,
 FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR) = range(10)
# SETTINGS identifiers.
HEADER_TABLE_SIZE, ENABLE_PUSH, MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE = (
    1, 2, 3, 4, 5)
DEFAULT_WINDOW = 65535
# The length of h2spec's dummy header values (its MaxHeaderLen).
DUMMY_LEN = 4000


class Fail(Exception):
    """The case saw something other than what the RFC requires."""


def code_name(code):
    return CODES[code] if code < len(CODES) else hex(code)


# Frames, raw.

def frame(ftype, flags, stream_id, payload=b"", length=None):
    """A frame; `length` may lie about the payload's length."""
    n = len(payload) if length is None else length
    return n.to_bytes(3, "big") + bytes([ftype, flags]) + stream_id.to_bytes(4, "big") + payload


def settings(*pairs, flags=0, stream_id=0):
    body = b"".join(key.to_bytes(2, "big") + value.to_bytes(4, "big") for key, value in pairs)
    return frame(SETTINGS, flags, stream_id, body)


def window_update(stream_id, increment):
    return frame(WINDOW_UPDATE, 0, stream_id, increment.to_bytes(4, "big"))


def rst_stream(stream_id, code):
    return frame(RST_STREAM, 0, stream_id, code.to_bytes(4, "big"))


def ping(opaque=b"h2spec\0\0", flags=0, stream_id=0):
    return frame(PING, flags, stream_id, opaque)


def goaway(last_stream_id, code, stream_id=0):
    return frame(GOAWAY, 0, stream_id, last_stream_id.to_bytes(4, "big") + code.to_bytes(4, "big"))


def priority_fields(depends_on, weight=16, exclusive=False):
    return (depends_on | (exclusive << 31)).to_bytes(4, "big") + bytes([weight - 1])


def priority(stream_id, depends_on=0, weight=16, exclusive=False):
    return frame(PRIORITY, 0, stream_id, priority_fields(depends_on, weight, exclusive))


def data(stream_id, payload, end=True, pad=None):
    flags = END_STREAM if end else 0
    if pad is not None:
        flags |= PADDED
        payload = bytes([pad]) + payload + b"\0" * pad
    return frame(DATA, flags, stream_id, payload)


def headers(stream_id, block, end_stream=True, end_headers=True, pad=None, prio=None):
    flags = (END_STREAM if end_stream else 0) | (END_HEADERS if end_headers else 0)
    if prio is not None:
        flags |= PRIORITY_FLAG
        block = prio + block
    if pad is not None:
        flags |= PADDED
        block = bytes([pad]) + block + b"\0" * pad
    return frame(HEADERS, flags, stream_id, block)


def continuation(stream_id, block, end_headers=True):
    return frame(CONTINUATION, END_HEADERS if end_headers else 0, stream_id, block)


# HPACK (RFC 7541), by hand, so that each representation is chosen.

def integer(value, prefix_bits, first=0):
    """§5.1: `value` on a `prefix_bits` prefix, its other bits from `first`."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out, value = [first | limit], value - limit
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    return bytes(out + [value])


def huffman_bits(text):
    """The Huffman code of `text` as a string of bits, unpadded."""
    codes, lengths = hpack.huffman_constants.REQUEST_CODES, hpack.huffman_constants.REQUEST_CODES_LENGTH
    return "".join(format(codes[b], f"0{lengths[b]}b") for b in text)


def pack_bits(bits, pad="1"):
    bits += pad * (-len(bits) % 8)
    return int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b""


def string(text, huffman=False, raw=None):
    """§5.2: a string literal; `raw` gives the bytes of a Huffman string as they are."""
    text = text.encode() if isinstance(text, str) else text
    if raw is not None:
        return integer(len(raw), 7, 0x80) + raw
    if huffman:
        coded = pack_bits(huffman_bits(text))
        return integer(len(coded), 7, 0x80) + coded
    return integer(len(text), 7) + text


# §6.2: the first bits and prefix of each literal representation.
LITERALS = {"incremental": (0x40, 6), "without": (0x00, 4), "never": (0x10, 4)}


def literal(name, value, kind="without", index=None, huffman=False):
    """A literal field; with `index`, its name is that table entry's."""
    first, prefix = LITERALS[kind]
    if index is not None:
        return integer(index, prefix, first) + string(value, huffman)
    return integer(0, prefix, first) + string(name, huffman) + string(value, huffman)


def indexed(index):
    return integer(index, 7, 0x80)


def table_size_update(size):
    return integer(size, 5, 0x20)


def block(fields):
    """A header block of literals without indexing: the table stays empty."""
    return b"".join(literal(name, value) for name, value in fields)


class Target:
    def __init__(self, host, port, tls=None):
        self.host, self.port, self.tls = host, int(port), tls


class Conn:
    """One client connection, with h2spec's connection: its handshake, its events, and
    the same refill of the flow control windows it opens for the server's DATA."""

    def __init__(self, target):
        self.target = target
        sock = socket.create_connection((target.host, target.port), timeout=TIMEOUT_SECS)
        if target.tls:
            cafile, server_name = target.tls
            context = ssl.create_default_context(cafile=cafile)
            context.set_alpn_protocols(["h2"])
            sock = context.wrap_socket(sock, server_hostname=server_name)
            if sock.selected_alpn_protocol() != "h2":
                raise Fail(f"ALPN chose {sock.selected_alpn_protocol()}")
        self.sock, self.buffer, self.closed = sock, b"", False
        self.decoder = hpack.Decoder()
        self.remote = {}
        self.windows = {}
        self.fragments = b""

    def send(self, *chunks):
        """Writes raw bytes; a write the server no longer reads is no error here."""
        try:
            self.sock.sendall(b"".join(chunks))
        except OSError:
            pass

    def common(self, path="/", method="GET"):
        """h2spec's common request fields."""
        scheme = "https" if self.target.tls else "http"
        authority = f"{self.target.host}:{self.target.port}"
        return [(":method", method), (":scheme", scheme), (":path", path), (":authority", authority)]

    def handshake(self):
        """Preface and SETTINGS, then until the server's SETTINGS and its ACK of ours."""
        self.send(PREFACE, settings((INITIAL_WINDOW_SIZE, DEFAULT_WINDOW)))
        local = remote = False
        while not (local and remote):
            ev = self.event()
            if isinstance(ev, str):
                raise Fail(f"handshake: {ev}")
            if isinstance(ev, hf.SettingsFrame):
                if "ACK" in ev.flags:
                    local = True
                else:
                    self.remote.update(ev.settings)
                    self.send(settings(flags=ACK))
                    remote = True

    def event(self):
        """The next frame read, or "closed" or "timeout"."""
        while True:
            parsed = self.parse()
            if parsed is not None:
                return parsed
            if self.closed:
                return "closed"
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return "timeout"
            except OSError:
                chunk = b""
            if not chunk:
                self.closed = True
            self.buffer += chunk

    def parse(self):
        if len(self.buffer) < 9:
            return None
        ev, length = hf.Frame.parse_frame_header(memoryview(self.buffer[:9]))
        if len(self.buffer) < 9 + length:
            return None
        ev.parse_body(memoryview(self.buffer[9 : 9 + length]))
        self.buffer = self.buffer[9 + length :]
        if isinstance(ev, (hf.HeadersFrame, hf.ContinuationFrame)):
            self.fragments += ev.data
            if "END_HEADERS" in ev.flags:
                ev.fields = self.decoder.decode(self.fragments)
                self.fragments = b""
        elif isinstance(ev, hf.DataFrame):
            self.refill(ev)
        return ev

    def refill(self, ev):
        """h2spec's: a window at or below zero is opened by the default size."""
        n = ev.flow_controlled_length
        for stream_id in (ev.stream_id, 0):
            window = self.windows.get(stream_id, DEFAULT_WINDOW) - n
            if window <= 0:
                self.send(window_update(stream_id, DEFAULT_WINDOW - window))
                window = DEFAULT_WINDOW
            self.windows[stream_id] = window

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def describe(ev):
    if isinstance(ev, str):
        return ev
    name = type(ev).__name__.replace("Frame", "").upper()
    code = getattr(ev, "error_code", None)
    extra = f" {code_name(code)}" if code is not None else ""
    return f"{name}{extra} stream={ev.stream_id} flags={sorted(ev.flags)}"


def events(conn):
    """Events until the connection closes or a read times out (both returned last)."""
    for _ in range(MAX_EVENTS):
        ev = conn.event()
        yield ev
        if isinstance(ev, str):
            return
    raise Fail(f"more than {MAX_EVENTS} frames")


def connection_error(conn, *codes):
    """h2spec's VerifyConnectionError: GOAWAY with one of `codes`, or a close."""
    for ev in events(conn):
        if ev == "closed":
            return
        if isinstance(ev, hf.GoAwayFrame):
            if ev.error_code in codes:
                return
            raise Fail(f"GOAWAY {code_name(ev.error_code)}, not {'/'.join(map(code_name, codes))}")
        if ev == "timeout":
            raise Fail("neither GOAWAY nor a close (timeout)")


def closes(conn):
    """h2spec's VerifyConnectionClose: the server closes the connection (a GOAWAY before
    may only say NO_ERROR)."""
    for ev in events(conn):
        if ev == "closed":
            return
        if ev == "timeout" or (isinstance(ev, hf.GoAwayFrame) and ev.error_code):
            raise Fail(f"{describe(ev)} instead of a close")


def stream_error(conn, *codes):
    """h2spec's VerifyStreamError: RST_STREAM or GOAWAY with one of `codes`, or a close."""
    seen = "nothing"
    for ev in events(conn):
        if ev == "closed":
            return
        if isinstance(ev, (hf.GoAwayFrame, hf.RstStreamFrame)):
            if ev.error_code in codes:
                return
            if isinstance(ev, hf.GoAwayFrame):
                raise Fail(f"{describe(ev)}, not {'/'.join(map(code_name, codes))}")
        if ev == "timeout":
            raise Fail(f"no RST_STREAM, GOAWAY or close (timeout; last: {seen})")
        seen = describe(ev)


# §8.2.2: fields a server MUST NOT send in HTTP/2.
CONNECTION_SPECIFIC = {"connection", "keep-alive", "proxy-connection", "transfer-encoding",
                       "upgrade"}


def check_head(fields):
    """§8.2.1, §8.2.2, §8.3.2: the server's head: `:status` first and alone among the
    pseudo-fields, lowercase names, no connection-specific field."""
    names = [name for name, _ in fields]
    if not names or names[0] != ":status" or ":status" in names[1:]:
        raise Fail(f"pseudo-fields of the response head: {names}")
    for name in names[1:]:
        if name.startswith(":") or name != name.lower() or name in CONNECTION_SPECIFIC:
            raise Fail(f"field {name!r} in the response head")


def response(conn, stream_id=1):
    """A normal response on `stream_id`: a 2xx head, then END_STREAM."""
    status = None
    for ev in events(conn):
        if isinstance(ev, str) or isinstance(ev, hf.GoAwayFrame):
            raise Fail(f"{describe(ev)} before the response ended (status {status})")
        if ev.stream_id != stream_id:
            continue
        if isinstance(ev, hf.RstStreamFrame):
            raise Fail(describe(ev))
        fields = getattr(ev, "fields", None)
        if fields is not None and status is None:
            check_head(fields)
            status = dict(fields).get(":status", "?")
        if isinstance(ev, (hf.DataFrame, hf.HeadersFrame)) and "END_STREAM" in ev.flags:
            if status is None or not status.startswith("2"):
                raise Fail(f"status {status}")
            return


def wait_for(conn, want, what):
    """The first event `want` accepts; a close, timeout or error GOAWAY fails."""
    for ev in events(conn):
        if not isinstance(ev, str) and want(ev):
            return ev
        if isinstance(ev, str) or (isinstance(ev, hf.GoAwayFrame) and ev.error_code):
            raise Fail(f"{describe(ev)} while waiting for {what}")


def ping_ack(conn, opaque=b"h2spec\0\0"):
    """Sends a PING; the connection is fine if its ACK comes back."""
    conn.send(ping(opaque))
    wait_for(conn, lambda ev: isinstance(ev, hf.PingFrame) and "ACK" in ev.flags
             and ev.opaque_data == opaque, "PING ACK")


def settings_ack(conn):
    wait_for(conn, lambda ev: isinstance(ev, hf.SettingsFrame) and "ACK" in ev.flags,
             "SETTINGS ACK")


def data_length(conn, stream_id, n):
    """The next DATA frame on `stream_id` carries `n` bytes."""
    ev = wait_for(conn, lambda ev: isinstance(ev, hf.DataFrame) and ev.stream_id == stream_id,
                  "DATA")
    if len(ev.data) != n:
        raise Fail(f"DATA of {len(ev.data)} bytes, not {n}")
    return ev


def run(target, prefixes):
    import h2_conformance_cases as cases

    chosen = [c for c in cases.CASES if any(c[0] == p or c[0].startswith(p + "/") for p in prefixes)]
    for case_id, desc, test in chosen:
        conn = None
        try:
            conn = Conn(target)
            test(conn)
            why = None
        except Fail as error:
            why = str(error)
        except (OSError, ValueError, hpack.HPACKError, hyperframe.exceptions.HyperframeError) as error:
            why = repr(error)
        finally:
            if conn is not None:
                conn.close()
        known = cases.KNOWN.get(case_id)
        if known is None:
            print(f"pass {case_id}" if why is None else f"fail {case_id} ({desc}): {why}")
        elif why is None:
            print(f"fixed {case_id} ({desc}): known as '{known}' but passes")
        else:
            print(f"deviation {case_id} ({desc}): {known}; saw {why}")
        sys.stdout.flush()


def main(args):
    host, port, rest = args[0], args[1], args[2:]
    tls = None
    if rest and rest[0] == "--tls":
        tls, rest = (rest[1], rest[2]), rest[3:]
    run(Target(host, port, tls), rest)


if __name__ == "__main__":
    import h2_conformance

    h2_conformance.main(sys.argv[1:])
