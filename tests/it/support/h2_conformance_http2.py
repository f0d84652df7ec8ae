"""h2spec's `http2` sections 6 to 8 for h2_conformance.py (frame definitions, error codes,
HTTP message exchange), RFC 9113 rules h2spec (written for RFC 7540) lacks, under the
RFC 9113 section that states them (ids past h2spec's numbers), and h2spec's `hpack`.
"""

import h2_conformance as h
from h2_conformance import (
    ACK, CANCEL, COMPRESSION_ERROR, CONTINUATION, DATA, ENABLE_PUSH, FLOW_CONTROL_ERROR,
    FRAME_SIZE_ERROR, HEADERS, INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE, PING, PRIORITY,
    PROTOCOL_ERROR, PUSH_PROMISE, RST_STREAM, SETTINGS, WINDOW_UPDATE, connection_error,
    frame, ping_ack, response, stream_error)
from h2_conformance_cases import case, dummy, get, half_closed, post, started, unended_block


def connection(c, *frames, codes=(PROTOCOL_ERROR,)):
    """`frames` after the handshake: a connection error."""
    c.handshake()
    c.send(*frames)
    connection_error(c, *codes)


def on_open(c, *frames, codes=(PROTOCOL_ERROR,), stream=True):
    """`frames` on an open stream 1 (a POST whose body is to come): a stream error, or a
    connection error unless `stream`."""
    c.handshake()
    post(c, then=frames)
    (stream_error if stream else connection_error)(c, *codes)


# 6.1 DATA, 6.2 HEADERS, 6.3 PRIORITY, 6.4 RST_STREAM

case("http2/6.1/1", "Sends a DATA frame with 0x0 stream identifier")(
    lambda c: on_open(c, h.data(0, b"test"), stream=False))
case("http2/6.1/2", "Sends a DATA frame on the stream that is not in \"open\" or \"half-closed (local)\" state")(
    lambda c: half_closed(c, h.data(1, b"test")))
case("http2/6.1/3", "Sends a DATA frame with invalid pad length")(
    lambda c: on_open(c, frame(DATA, 0x9, 1, b"\x06Test"), stream=False))
case("http2/6.2/1", "Sends a HEADERS frame without the END_HEADERS flag, and a PRIORITY frame")(
    lambda c: unended_block(c, h.priority(1, 0)))
case("http2/6.2/2", "Sends a HEADERS frame to another stream while sending a HEADERS frame")(
    lambda c: unended_block(c, h.headers(3, h.block(c.common()))))
case("http2/6.2/3", "Sends a HEADERS frame with 0x0 stream identifier")(
    lambda c: connection(c, h.headers(0, h.block(c.common()))))


@case("http2/6.2/4", "Sends a HEADERS frame with invalid pad length")
def _(c):
    block = started(c)
    c.send(frame(HEADERS, 0x0D, 1, bytes([len(block) + 1]) + block))
    connection_error(c, PROTOCOL_ERROR)


case("http2/6.3/1", "Sends a PRIORITY frame with 0x0 stream identifier")(
    lambda c: connection(c, h.priority(0, 1)))
case("http2/6.3/2", "Sends a PRIORITY frame with a length other than 5 octets")(
    lambda c: on_open(c, frame(PRIORITY, 0, 1, b"\x80\0\0\x01"), codes=(FRAME_SIZE_ERROR,)))
case("http2/6.4/1", "Sends a RST_STREAM frame with 0x0 stream identifier")(
    lambda c: connection(c, h.rst_stream(0, CANCEL)))
case("http2/6.4/2", "Sends a RST_STREAM frame on a idle stream")(
    lambda c: connection(c, h.rst_stream(1, CANCEL)))
case("http2/6.4/3", "Sends a RST_STREAM frame with a length other than 4 octets")(
    lambda c: on_open(c, frame(RST_STREAM, 0, 1, b"\0\0\0"), codes=(FRAME_SIZE_ERROR,),
                      stream=False))


# 6.5 SETTINGS

FRAME_SIZE = (FRAME_SIZE_ERROR,)
case("http2/6.5/1", "Sends a SETTINGS frame with ACK flag and payload")(
    lambda c: connection(c, h.settings((INITIAL_WINDOW_SIZE, 1), flags=ACK), codes=FRAME_SIZE))
case("http2/6.5/2", "Sends a SETTINGS frame with a stream identifier other than 0x0")(
    lambda c: connection(c, h.settings((INITIAL_WINDOW_SIZE, 1), stream_id=1)))
case("http2/6.5/3", "Sends a SETTINGS frame with a length other than a multiple of 6 octets")(
    lambda c: connection(c, frame(SETTINGS, 0, 0, b"\0\x02\0"), codes=FRAME_SIZE))
case("http2/6.5.2/1", "SETTINGS_ENABLE_PUSH (0x2): Sends the value other than 0 or 1")(
    lambda c: connection(c, h.settings((ENABLE_PUSH, 2))))
case("http2/6.5.2/2", "SETTINGS_INITIAL_WINDOW_SIZE (0x4): Sends the value above the maximum flow control window size")(
    lambda c: connection(c, h.settings((INITIAL_WINDOW_SIZE, 2**31)), codes=(FLOW_CONTROL_ERROR,)))
case("http2/6.5.2/3", "SETTINGS_MAX_FRAME_SIZE (0x5): Sends the value below the initial value")(
    lambda c: connection(c, h.settings((MAX_FRAME_SIZE, 16383))))
case("http2/6.5.2/4", "SETTINGS_MAX_FRAME_SIZE (0x5): Sends the value above the maximum allowed frame size")(
    lambda c: connection(c, h.settings((MAX_FRAME_SIZE, 2**24))))


@case("http2/6.5.2/5", "Sends a SETTINGS frame with unknown identifier")
def _(c):
    c.handshake()
    c.send(h.settings((0xFF, 1)))
    h.settings_ack(c)


def windowed(c, *sizes, path="/"):
    """Sets the server's initial stream window to each of `sizes` in one SETTINGS frame,
    then GETs `path`."""
    c.handshake()
    c.send(h.settings(*[(INITIAL_WINDOW_SIZE, size) for size in sizes]))
    h.settings_ack(c)
    get(c, path=path)


@case("http2/6.5.3/1", "Sends multiple values of SETTINGS_INITIAL_WINDOW_SIZE")
def _(c):
    windowed(c, 100, 1)
    h.data_length(c, 1, 1)


@case("http2/6.5.3/2", "Sends a SETTINGS frame without ACK flag")
def _(c):
    c.handshake()
    c.send(h.settings((ENABLE_PUSH, 0)))
    h.settings_ack(c)


# 6.7 PING, 6.8 GOAWAY

@case("http2/6.7/1", "Sends a PING frame")
def _(c):
    c.handshake()
    ping_ack(c, b"pingpong")


@case("http2/6.7/2", "Sends a PING frame with ACK")
def _(c):
    c.handshake()
    c.send(h.ping(b"invalid!", flags=ACK))
    c.send(h.ping(b"h2spec\0\0"))
    ev = h.wait_for(c, lambda ev: isinstance(ev, h.hf.PingFrame), "PING ACK")
    if ev.opaque_data != b"h2spec\0\0" or "ACK" not in ev.flags:
        raise h.Fail(f"answered a PING ACK: {h.describe(ev)} {ev.opaque_data!r}")


case("http2/6.7/3", "Sends a PING frame with a stream identifier field value other than 0x0")(
    lambda c: connection(c, h.ping(stream_id=1)))
case("http2/6.7/4", "Sends a PING frame with a length field value other than 8")(
    lambda c: connection(c, frame(PING, 0, 0, b"\0" * 6), codes=FRAME_SIZE))
case("http2/6.8/1", "Sends a GOAWAY frame with a stream identifier other than 0x0")(
    lambda c: connection(c, h.goaway(0, h.NO_ERROR, stream_id=1)))


# 6.9 WINDOW_UPDATE

case("http2/6.9/1", "Sends a WINDOW_UPDATE frame with a flow control window increment of 0")(
    lambda c: connection(c, h.window_update(0, 0)))
case("http2/6.9/2", "Sends a WINDOW_UPDATE frame with a flow control window increment of 0 on a stream")(
    lambda c: on_open(c, h.window_update(1, 0)))
case("http2/6.9/3", "Sends a WINDOW_UPDATE frame with a length other than 4 octets")(
    lambda c: connection(c, frame(WINDOW_UPDATE, 0, 0, b"\0\0\x01"), codes=FRAME_SIZE))


@case("http2/6.9/4", "RFC 9113 6.9: Sends a WINDOW_UPDATE frame on a closed stream")
def _(c):
    # "WINDOW_UPDATE can be sent by a peer that has sent a frame with the END_STREAM
    # flag set": the server MUST NOT treat it as an error.
    c.handshake()
    get(c)
    response(c)
    c.send(h.window_update(1, 1))
    ping_ack(c)


@case("http2/6.9.1/1", "Sends SETTINGS frame to set the initial window size to 1 and sends HEADERS frame")
def _(c):
    windowed(c, 1)
    h.data_length(c, 1, 1)


@case("http2/6.9.1/2", "Sends multiple WINDOW_UPDATE frames increasing the flow control window to above 2^31-1")
def _(c):
    c.handshake()
    c.send(h.window_update(0, 2**31 - 1), h.window_update(0, 2**31 - 1))
    ev = h.wait_for(c, lambda ev: isinstance(ev, h.hf.GoAwayFrame), "GOAWAY")
    if ev.error_code != FLOW_CONTROL_ERROR:
        raise h.Fail(h.describe(ev))


@case("http2/6.9.1/3", "Sends multiple WINDOW_UPDATE frames increasing the flow control window to above 2^31-1 on a stream")
def _(c):
    c.handshake()
    post(c)
    c.send(h.window_update(1, 2**31 - 1), h.window_update(1, 2**31 - 1))
    ev = h.wait_for(c, lambda ev: isinstance(ev, h.hf.RstStreamFrame), "RST_STREAM")
    if ev.error_code != FLOW_CONTROL_ERROR or ev.stream_id != 1:
        raise h.Fail(h.describe(ev))


@case("http2/6.9.2/1", "Changes SETTINGS_INITIAL_WINDOW_SIZE after sending HEADERS frame")
def _(c):
    windowed(c, 0)
    c.send(h.settings((INITIAL_WINDOW_SIZE, 1)))
    h.settings_ack(c)
    h.data_length(c, 1, 1)


@case("http2/6.9.2/2", "Sends a SETTINGS frame for window size to be negative")
def _(c):
    # A 64-byte body (h2spec's needs 5 or more): 3 bytes go, the window turns -1 and the
    # WINDOW_UPDATE of 2 lets 1 more go.
    windowed(c, 3, path="/download?bytes=64")
    h.data_length(c, 1, 3)
    c.send(h.settings((INITIAL_WINDOW_SIZE, 2)))
    h.settings_ack(c)
    c.send(h.window_update(1, 2))
    h.data_length(c, 1, 1)


case("http2/6.9.2/3", "Sends a SETTINGS_INITIAL_WINDOW_SIZE settings with an exceeded maximum window size value")(
    lambda c: connection(c, frame(SETTINGS, 0, 0, b"\0\x04\x80\0\0\0"), codes=(FLOW_CONTROL_ERROR,)))


# 6.10 CONTINUATION

@case("http2/6.10/1", "Sends multiple CONTINUATION frames preceded by a HEADERS frame")
def _(c):
    c.send(h.headers(1, started(c), end_headers=False),
           h.continuation(1, dummy(1), end_headers=False),
           h.continuation(1, h.block([("x-dummy1", "x" * h.DUMMY_LEN)])))
    response(c)


case("http2/6.10/2", "Sends a CONTINUATION frame followed by any frame other than CONTINUATION")(
    lambda c: unended_block(c, h.continuation(1, dummy(), end_headers=False), h.data(1, b"test")))
case("http2/6.10/3", "Sends a CONTINUATION frame with 0x0 stream identifier")(
    lambda c: unended_block(c, h.continuation(0, dummy())))
case("http2/6.10/4", "Sends a CONTINUATION frame preceded by a HEADERS frame with END_HEADERS flag")(
    lambda c: on_open(c, h.continuation(1, dummy()), stream=False))
case("http2/6.10/5", "Sends a CONTINUATION frame preceded by a CONTINUATION frame with END_HEADERS flag")(
    lambda c: unended_block(c, h.continuation(1, dummy()), h.continuation(1, dummy())))
case("http2/6.10/6", "Sends a CONTINUATION frame preceded by a DATA frame")(
    lambda c: on_open(c, h.data(1, b"test", end=False), frame(CONTINUATION, 0x4, 1, dummy()),
                      stream=False))


# 7 Error codes: unknown codes are no errors.

@case("http2/7/1", "Sends a GOAWAY frame with unknown error code")
def _(c):
    c.handshake()
    c.send(h.goaway(0, 0xFF))
    h.closes(c)


@case("http2/7/2", "Sends a RST_STREAM frame with unknown error code")
def _(c):
    c.handshake()
    post(c)
    c.send(h.rst_stream(1, 0xFF))
    ping_ack(c)


# 8 HTTP message exchange: malformed requests are stream errors of type PROTOCOL_ERROR.

def malformed(c, fields):
    c.handshake()
    c.send(h.headers(1, h.block(fields)))
    stream_error(c, PROTOCOL_ERROR)


def common(c, **replace):
    """h2spec's common fields with some replaced (None drops one)."""
    fields = [(name, replace.get(name[1:], value)) for name, value in c.common()]
    return [(name, value) for name, value in fields if value is not None]


def trailer(c, fields, end_stream=True):
    on_open(c, h.data(1, b"test", end=False), h.headers(1, h.block(fields), end_stream=end_stream))


case("http2/8.1/1", "Sends a second HEADERS frame without the END_STREAM flag")(
    lambda c: trailer(c, [("x-trailer", "test")], end_stream=False))
case("http2/8.1.2/1", "Sends a HEADERS frame that contains the header field name in uppercase letters")(
    lambda c: malformed(c, c.common() + [("X-TEST", "ok")]))
case("http2/8.1.2.1/1", "Sends a HEADERS frame that contains a unknown pseudo-header field")(
    lambda c: malformed(c, c.common() + [(":test", "ok")]))
case("http2/8.1.2.1/2", "Sends a HEADERS frame that contains the pseudo-header field defined for response")(
    lambda c: malformed(c, c.common() + [(":status", "200")]))
case("http2/8.1.2.1/3", "Sends a HEADERS frame that contains a pseudo-header field as trailers")(
    lambda c: trailer(c, [(":method", "POST")]))
case("http2/8.1.2.1/4", "Sends a HEADERS frame that contains a pseudo-header field that appears in a header block after a regular header field")(
    lambda c: malformed(c, c.common()[:3] + [("x-test", "ok")] + c.common()[3:]))
case("http2/8.1.2.2/1", "Sends a HEADERS frame that contains the connection-specific header field")(
    lambda c: malformed(c, c.common() + [("connection", "keep-alive")]))
case("http2/8.1.2.2/2", "Sends a HEADERS frame that contains the TE header field with any value other than \"trailers\"")(
    lambda c: malformed(c, c.common() + [("trailers", "test"), ("te", "trailers, deflate")]))
case("http2/8.1.2.3/1", "Sends a HEADERS frame with empty \":path\" pseudo-header field")(
    lambda c: malformed(c, common(c, path="")))
case("http2/8.1.2.3/2", "Sends a HEADERS frame that omits \":method\" pseudo-header field")(
    lambda c: malformed(c, common(c, method=None)))
case("http2/8.1.2.3/3", "Sends a HEADERS frame that omits \":scheme\" pseudo-header field")(
    lambda c: malformed(c, common(c, scheme=None)))
case("http2/8.1.2.3/4", "Sends a HEADERS frame that omits \":path\" pseudo-header field")(
    lambda c: malformed(c, common(c, path=None)))
for n, name in enumerate([":method", ":scheme", ":path"], start=5):
    case(f"http2/8.1.2.3/{n}", f"Sends a HEADERS frame with duplicated \"{name}\" pseudo-header field")(
        lambda c, name=name: malformed(c, c.common() + [(name, dict(c.common())[name])]))
case("http2/8.1.2.6/1", "Sends a HEADERS frame with the \"content-length\" header field which does not equal the DATA frame payload length")(
    lambda c: on_open_with_length(c, h.data(1, b"test")))
case("http2/8.1.2.6/2", "Sends a HEADERS frame with the \"content-length\" header field which does not equal the sum of the multiple DATA frames payload length")(
    lambda c: on_open_with_length(c, h.data(1, b"test", end=False), h.data(1, b"test")))


def on_open_with_length(c, *frames):
    c.handshake()
    post(c, extra=[("content-length", "1")], then=frames)
    stream_error(c, PROTOCOL_ERROR)


@case("http2/8.2/1", "Sends a PUSH_PROMISE frame")
def _(c):
    c.handshake()
    post(c)
    c.send(frame(PUSH_PROMISE, 0x4, 1, (2).to_bytes(4, "big") + h.block(c.common())))
    connection_error(c, PROTOCOL_ERROR)


# RFC 9113 rules beyond h2spec (which follows RFC 7540).

for n, (what, value) in enumerate([("NUL", "a\0b"), ("CR", "a\rb"), ("LF", "a\nb"),
                                   ("leading space", " ab"), ("trailing tab", "ab\t")], start=1):
    case(f"http2/8.2.1/{n}", f"RFC 9113 8.2.1: Sends a field value with {what}")(
        lambda c, value=value: malformed(c, c.common() + [("x-test", value)]))
case("http2/8.2.1/6", "RFC 9113 8.2.1: Sends a field name with a space")(
    lambda c: malformed(c, c.common() + [("x test", "ok")]))
case("http2/8.2.2/3", "RFC 9113 8.2.2: Sends a HEADERS frame with \"transfer-encoding\"")(
    lambda c: malformed(c, c.common() + [("transfer-encoding", "chunked")]))


@case("http2/8.2.2/4", "RFC 9113 8.2.2: The response to a backend's Connection: close has no connection-specific field")
def _(c):
    c.handshake()
    get(c, path="/close")
    response(c)  # checks the head's fields


@case("http2/8.2.2/5", "RFC 9113 8.2.2: A chunked backend response goes without Transfer-Encoding")
def _(c):
    c.handshake()
    get(c, path="/download?bytes=10&chunked=1")
    response(c)


case("http2/8.3.1/1", "RFC 9113 8.3.1: Sends a Host that differs from :authority")(
    lambda c: malformed(c, c.common() + [("host", "other.example")]))


# hpack: RFC 7541 decoding errors are connection errors of type COMPRESSION_ERROR.

def bad_block(c, block):
    c.handshake()
    c.send(h.headers(1, block))
    connection_error(c, COMPRESSION_ERROR)


def huffman_value(raw):
    """A literal field named x-test whose value is the Huffman string `raw`, as it is."""
    return h.integer(0, 4) + h.string("x-test") + h.string(b"", raw=raw)


def huffman_bits(text):
    bits = h.huffman_bits(text)
    assert len(bits) % 8, "needs padding to test it"
    return bits


case("hpack/2.3.3/1", "Sends a indexed header field representation with invalid index")(
    lambda c: bad_block(c, h.block(c.common()) + h.indexed(70)))
case("hpack/2.3.3/2", "Sends a literal header field representation with invalid index")(
    lambda c: bad_block(c, h.block(c.common()) + h.literal("", "test", "incremental", index=70)))
case("hpack/4.2/1", "Sends a dynamic table size update at the end of header block")(
    lambda c: bad_block(c, h.block(c.common()) + h.table_size_update(4096)))
case("hpack/5.2/1", "Sends a Huffman-encoded string literal representation with padding longer than 7 bits")(
    lambda c: bad_block(c, h.block(c.common()) + huffman_value(h.pack_bits(huffman_bits(b"test")) + b"\xff")))
case("hpack/5.2/2", "Sends a Huffman-encoded string literal representation padded by zero")(
    lambda c: bad_block(c, h.block(c.common()) + huffman_value(h.pack_bits(huffman_bits(b"test"), "0"))))
case("hpack/5.2/3", "Sends a Huffman-encoded string literal representation containing the EOS symbol")(
    lambda c: bad_block(c, h.block(c.common()) + huffman_value(
        h.pack_bits(h.huffman_bits(b"te") + "1" * 30 + h.huffman_bits(b"st")))))
case("hpack/6.1/1", "Sends a indexed header field representation with index 0")(
    lambda c: bad_block(c, h.block(c.common()) + h.indexed(0)))
case("hpack/6.3/1", "Sends a dynamic table size update larger than the value of SETTINGS_HEADER_TABLE_SIZE")(
    lambda c: bad_block(c, h.table_size_update(c.remote.get(h.HEADER_TABLE_SIZE, 4096) + 1)
                        + h.block(c.common())))
