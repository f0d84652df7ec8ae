"""The cases of h2_conformance.py: h2spec's `generic` and `http2` sections 3 to 5 here;
`http2` sections 6 to 8, a few RFC 9113 rules h2spec (written for RFC 7540) lacks, and
`hpack` in h2_conformance_http2.py. Each case gets a new connection and raises Fail when the server
does not react as the RFC requires; ids are `GROUP/SECTION/N`, numbered as h2spec's.
"""

import h2_conformance as h
from h2_conformance import (
    CANCEL, COMPRESSION_ERROR, FRAME_SIZE_ERROR, HEADERS, INITIAL_WINDOW_SIZE,
    MAX_CONCURRENT_STREAMS, PING, PROTOCOL_ERROR, REFUSED_STREAM, STREAM_CLOSED, connection_error, frame, ping_ack, response, stream_error)

CASES = []
# Known deviations of the `h2` codec (0.4.21) that weir cannot fix at its layer (the
# codec writes the GOAWAY or RST_STREAM itself, or drops what weir would check): case id
# -> reason. Each is expected to fail; tests/it/h2/conformance.rs lists the same ids.
# h2spec itself passes those answered with GOAWAY PROTOCOL_ERROR: it takes the close
# after a GOAWAY with another code as the connection error it wanted.
CODEC = "h2 maps every error loading a frame to GOAWAY PROTOCOL_ERROR (codec/framed_read.rs)"
HPACK = f"{CODEC}, HPACK errors too; RFC 9113 §4.3 wants COMPRESSION_ERROR"
SIZE = f"{CODEC}; RFC 9113 §4.2 and §6 want FRAME_SIZE_ERROR for a wrong length"
WINDOW = f"{CODEC}; RFC 9113 §6.5.2 wants FLOW_CONTROL_ERROR for a window over 2^31-1"
HALF_CLOSED = ("h2 answers a frame on a half-closed (remote) stream with GOAWAY PROTOCOL_ERROR "
               "(proto/streams recv_data, State::recv_close); RFC 9113 §5.1 wants RST_STREAM "
               "STREAM_CLOSED")
CLOSED = ("h2 answers {} on a closed stream with {}; h2spec wants a STREAM_CLOSED error as RFC "
          "7540 did, where RFC 9113 §5.1 makes the connection error a MAY")
KNOWN = {
    **{case_id: HPACK for case_id in [
        "http2/4.3/1", "hpack/2.3.3/1", "hpack/2.3.3/2", "hpack/4.2/1", "hpack/5.2/1",
        "hpack/5.2/2", "hpack/5.2/3", "hpack/6.1/1", "hpack/6.3/1"]},
    **{case_id: SIZE for case_id in [
        "http2/6.3/2", "http2/6.4/3", "http2/6.5/1", "http2/6.5/3", "http2/6.7/4", "http2/6.9/3"]},
    "http2/6.5.2/2": WINDOW,
    "http2/6.9.2/3": WINDOW,
    "http2/5.1/5": HALF_CLOSED,
    "http2/5.1/6": HALF_CLOSED,
    "http2/6.1/2": HALF_CLOSED,
    "http2/5.1/9": CLOSED.format("HEADERS after the client's RST_STREAM", "GOAWAY PROTOCOL_ERROR"),
    "http2/5.1/11": CLOSED.format("DATA", "RST_STREAM STREAM_CLOSED (a stream error)"),
    "http2/5.1/12": CLOSED.format("HEADERS", "GOAWAY PROTOCOL_ERROR"),
    "http2/8.1.2.1/3": ("h2 drops the pseudo-fields of trailers (frame::Headers::into_fields), so "
                        "weir never sees them; RFC 9113 §8.1 wants RST_STREAM PROTOCOL_ERROR"),
}


def case(case_id, desc):
    def add(test):
        CASES.append((case_id, desc, test))
        return test

    return add


def request(c, stream_id=1, end_stream=True, path="/", method="GET", extra=()):
    """A request head of literal fields (h2spec's common fields, then `extra`)."""
    fields = c.common(path, method) + list(extra)
    return h.headers(stream_id, h.block(fields), end_stream=end_stream)


def get(c, stream_id=1, end_stream=True, path="/", method="GET", extra=()):
    c.send(request(c, stream_id, end_stream, path, method, extra))


def post(c, stream_id=1, extra=(), then=()):
    """Sends a POST head, its body still to come, and the frames `then` in the same
    write: the server reads them before the stream can end."""
    c.send(request(c, stream_id, False, method="POST", extra=extra), *then)


def dummy(count=1):
    """h2spec's dummy fields: `count` fields of DUMMY_LEN bytes each."""
    return h.block([(f"x-dummy{n}", "x" * h.DUMMY_LEN) for n in range(count)])


def started(c):
    """Handshake, then the common head's block, for cases that split it."""
    c.handshake()
    return h.block(c.common())


# generic: each frame and representation used as meant gets a normal answer.

@case("generic/1/1", "Sends a client connection preface")
def _(c):
    c.handshake()
    ping_ack(c)


@case("generic/2/1", "Sends a PRIORITY frame on idle stream")
def _(c):
    c.handshake()
    c.send(h.priority(1, 0, 255))
    get(c)
    response(c)


@case("generic/2/2", "Sends a WINDOW_UPDATE frame on half-closed (remote) stream")
def _(c):
    c.handshake()
    get(c)
    c.send(h.window_update(1, 1))
    response(c)


@case("generic/2/3", "Sends a PRIORITY frame on half-closed (remote) stream")
def _(c):
    c.handshake()
    get(c)
    c.send(h.priority(1, 0, 255))
    response(c)


@case("generic/2/4", "Sends a RST_STREAM frame on half-closed (remote) stream")
def _(c):
    c.handshake()
    get(c)
    c.send(h.rst_stream(1, CANCEL))
    ping_ack(c)


@case("generic/2/5", "Sends a PRIORITY frame on closed stream")
def _(c):
    c.handshake()
    get(c)
    response(c)
    c.send(h.priority(1, 0, 255))
    ping_ack(c)


def post_with(c, *frames):
    c.handshake()
    post(c, then=frames)
    response(c)


case("generic/3.1/1", "Sends a DATA frame")(lambda c: post_with(c, h.data(1, b"test")))
case("generic/3.1/2", "Sends multiple DATA frames")(
    lambda c: post_with(c, h.data(1, b"test", end=False), h.data(1, b"test")))
case("generic/3.1/3", "Sends a DATA frame with padding")(
    lambda c: post_with(c, h.data(1, b"test", pad=8)))


def headers_with(c, **options):
    c.send(h.headers(1, started(c), **options))
    response(c)


case("generic/3.2/1", "Sends a HEADERS frame")(lambda c: headers_with(c))
case("generic/3.2/2", "Sends a HEADERS frame with padding")(lambda c: headers_with(c, pad=8))
case("generic/3.2/3", "Sends a HEADERS frame with priority")(
    lambda c: headers_with(c, prio=h.priority_fields(0, 255)))


def get_then(c, *frames):
    c.handshake()
    get(c)
    c.send(*frames)
    response(c)


case("generic/3.3/1", "Sends a PRIORITY frame with priority 1")(
    lambda c: get_then(c, h.priority(1, 0, 1)))
case("generic/3.3/2", "Sends a PRIORITY frame with priority 256")(
    lambda c: get_then(c, h.priority(1, 0, 256)))
case("generic/3.3/3", "Sends a PRIORITY frame with stream dependency")(
    lambda c: get_then(c, h.priority(1, 3)))
case("generic/3.3/4", "Sends a PRIORITY frame with exclusive")(
    lambda c: get_then(c, h.priority(1, 3, exclusive=True)))


@case("generic/3.3/5", "Sends a PRIORITY frame for an idle stream, then a HEADERS frame for a lower stream ID")
def _(c):
    c.handshake()
    c.send(h.priority(3, 0))
    get(c)
    response(c)


@case("generic/3.4/1", "Sends a RST_STREAM frame")
def _(c):
    c.handshake()
    post(c)
    c.send(h.rst_stream(1, CANCEL))
    ping_ack(c)


@case("generic/3.5/1", "Sends a SETTINGS frame")
def _(c):
    c.handshake()
    c.send(h.settings((INITIAL_WINDOW_SIZE, h.DEFAULT_WINDOW)))
    h.settings_ack(c)


@case("generic/3.7/1", "Sends a PING frame")
def _(c):
    c.handshake()
    ping_ack(c)


@case("generic/3.8/1", "Sends a GOAWAY frame")
def _(c):
    c.handshake()
    c.send(h.goaway(0, h.NO_ERROR))
    h.closes(c)


@case("generic/3.9/1", "Sends a WINDOW_UPDATE frame with stream ID 0")
def _(c):
    c.handshake()
    c.send(h.window_update(0, 1))
    ping_ack(c)


case("generic/3.9/2", "Sends a WINDOW_UPDATE frame with arbitrary stream ID")(
    lambda c: post_with(c, h.window_update(1, 1), h.data(1, b"test")))


@case("generic/3.10/1", "Sends a CONTINUATION frame")
def _(c):
    whole = started(c)
    c.send(h.headers(1, whole[:5], end_headers=False), h.continuation(1, whole[5:]))
    response(c)


@case("generic/3.10/2", "Sends multiple CONTINUATION frames")
def _(c):
    whole = started(c)
    c.send(h.headers(1, whole[:5], end_headers=False),
           h.continuation(1, whole[5:10], end_headers=False), h.continuation(1, whole[10:]))
    response(c)


@case("generic/4/1", "Sends a GET request")
def _(c):
    c.handshake()
    get(c)
    response(c)


@case("generic/4/2", "Sends a HEAD request")
def _(c):
    c.handshake()
    get(c, method="HEAD")
    response(c)


case("generic/4/3", "Sends a POST request")(lambda c: post_with(c, h.data(1, b"test")))
case("generic/4/4", "Sends a POST request with trailers")(lambda c: post_with(
    c, h.data(1, b"test", end=False), h.headers(1, h.block([("x-trailer", "ok")]))))


def hpack_request(c, representation):
    """A GET whose last field is sent with `representation` (the others literal)."""
    c.handshake()
    c.send(h.headers(1, h.block(c.common()[:3]) + representation(c)))
    response(c)


def authority(c):
    return c.common()[3][1]


@case("generic/5/1", "Sends a indexed header field representation")
def _(c):
    # :method GET (2), :scheme http (6) or https (7), :path / (4) from the static table.
    scheme = 7 if c.target.tls else 6
    c.handshake()
    c.send(h.headers(1, h.indexed(2) + h.indexed(scheme) + h.indexed(4)
                     + h.literal("", authority(c), index=1)))
    response(c)


def hpack_literal(kind, new_name, huffman):
    name = ":authority" if new_name else ""
    index = None if new_name else 1
    return lambda c: hpack_request(
        c, lambda c: h.literal(name, authority(c), kind, index=index, huffman=huffman))


CASE = 2
for kind, title in [("incremental", "with incremental indexing"),
                    ("without", "without indexing"), ("never", "never indexed")]:
    for new_name in (False, True):
        for huffman in (False, True):
            naming = "new name" if new_name else "indexed name"
            coding = " (with Huffman coding)" if huffman else ""
            case(f"generic/5/{CASE}", f"Sends a literal header field {title} - {naming}{coding}")(
                hpack_literal(kind, new_name, huffman))
            CASE += 1


@case("generic/5/14", "Sends a dynamic table size update")
def _(c):
    c.handshake()
    c.send(h.headers(1, h.table_size_update(0) + h.block(c.common())))
    response(c)


@case("generic/5/15", "Sends multiple dynamic table size update")
def _(c):
    c.handshake()
    c.send(h.headers(1, h.table_size_update(0) + h.table_size_update(4096) + h.block(c.common())))
    response(c)


# http2 3.5, 4: the preface, the frame format and size, and header blocks.

@case("http2/3.5/1", "Sends client connection preface")
def _(c):
    c.send(h.PREFACE, h.settings())
    first = c.event()
    if not isinstance(first, h.hf.SettingsFrame) or "ACK" in first.flags:
        raise h.Fail(f"the server's preface is {h.describe(first)}, not SETTINGS")


@case("http2/3.5/2", "Sends invalid connection preface")
def _(c):
    c.send(b"INVALID CONNECTION PREFACE\r\n\r\n")
    connection_error(c, PROTOCOL_ERROR)


@case("http2/4.1/1", "Sends a frame with unknown type")
def _(c):
    c.handshake()
    c.send(frame(0x16, 0, 0, b"\0" * 8))
    ping_ack(c)


@case("http2/4.1/2", "Sends a frame with undefined flag")
def _(c):
    c.handshake()
    c.send(frame(PING, 0x16, 0, b"undefine"))
    h.wait_for(c, lambda ev: isinstance(ev, h.hf.PingFrame) and ev.opaque_data == b"undefine",
               "PING ACK")


@case("http2/4.1/3", "Sends a frame with reserved field bit")
def _(c):
    c.handshake()
    c.send(frame(PING, 0, 1 << 31, b"reserved"))
    h.wait_for(c, lambda ev: isinstance(ev, h.hf.PingFrame) and ev.opaque_data == b"reserved",
               "PING ACK")


@case("http2/4.2/1", "Sends a DATA frame with 2^14 octets in length")
def _(c):
    post_with(c, h.data(1, b"x" * 16384))


@case("http2/4.2/2", "Sends a large size DATA frame that exceeds the SETTINGS_MAX_FRAME_SIZE")
def _(c):
    c.handshake()
    post(c)
    c.send(h.data(1, b"x" * (c.remote.get(h.MAX_FRAME_SIZE, 16384) + 1)))
    stream_error(c, FRAME_SIZE_ERROR)


@case("http2/4.2/3", "Sends a large size HEADERS frame that exceeds the SETTINGS_MAX_FRAME_SIZE")
def _(c):
    c.send(h.headers(1, started(c) + dummy(5)))
    connection_error(c, FRAME_SIZE_ERROR)


def unended_block(c, *frames, codes=(PROTOCOL_ERROR,)):
    """A header block left open on stream 1, then `frames`: a connection error."""
    c.send(h.headers(1, started(c), end_headers=False), *frames)
    connection_error(c, *codes)


case("http2/4.3/1", "Sends invalid header block fragment")(
    lambda c: (c.handshake(), c.send(frame(HEADERS, 0x5, 1, b"\x40")),
               connection_error(c, COMPRESSION_ERROR)))
case("http2/4.3/2", "Sends a PRIORITY frame while sending the header blocks")(
    lambda c: unended_block(c, h.priority(1, 0), h.continuation(1, dummy())))
case("http2/4.3/3", "Sends a HEADERS frame to another stream while sending the header blocks")(
    lambda c: unended_block(c, h.headers(3, h.block(c.common()))))


# http2 5: stream states, identifiers, concurrency, dependencies, errors, extensions.

def idle(c, *frames):
    c.handshake()
    c.send(*frames)
    connection_error(c, PROTOCOL_ERROR)


def half_closed(c, *frames, codes=(STREAM_CLOSED,)):
    """A GET and `frames` in one write, so the stream is still half-closed (remote)
    when the server reads them, not closed by a quick response."""
    c.handshake()
    c.send(request(c), *frames)
    stream_error(c, *codes)


def reset_by_client(c, *frames, codes=(STREAM_CLOSED,)):
    c.handshake()
    post(c, then=[h.rst_stream(1, CANCEL), *frames])
    stream_error(c, *codes)


def closed(c, *frames, codes=(STREAM_CLOSED,)):
    c.handshake()
    get(c)
    response(c)
    c.send(*frames)
    connection_error(c, *codes)


def again(c):
    return h.headers(1, h.block(c.common()))


EITHER = (STREAM_CLOSED, PROTOCOL_ERROR)
case("http2/5.1/1", "idle: Sends a DATA frame")(lambda c: idle(c, h.data(1, b"test")))
case("http2/5.1/2", "idle: Sends a RST_STREAM frame")(lambda c: idle(c, h.rst_stream(1, CANCEL)))
case("http2/5.1/3", "idle: Sends a WINDOW_UPDATE frame")(lambda c: idle(c, h.window_update(1, 100)))
case("http2/5.1/4", "idle: Sends a CONTINUATION frame")(
    lambda c: idle(c, h.continuation(1, h.block(c.common()))))
case("http2/5.1/5", "half closed (remote): Sends a DATA frame")(
    lambda c: half_closed(c, h.data(1, b"test")))
case("http2/5.1/6", "half closed (remote): Sends a HEADERS frame")(
    lambda c: half_closed(c, again(c)))
case("http2/5.1/7", "half closed (remote): Sends a CONTINUATION frame")(
    lambda c: half_closed(c, h.continuation(1, h.block(c.common())), codes=EITHER))
case("http2/5.1/8", "closed: Sends a DATA frame after sending RST_STREAM frame")(
    lambda c: reset_by_client(c, h.data(1, b"test")))
case("http2/5.1/9", "closed: Sends a HEADERS frame after sending RST_STREAM frame")(
    lambda c: reset_by_client(c, again(c)))
case("http2/5.1/10", "closed: Sends a CONTINUATION frame after sending RST_STREAM frame")(
    lambda c: reset_by_client(c, h.continuation(1, dummy()), codes=EITHER))
case("http2/5.1/11", "closed: Sends a DATA frame")(lambda c: closed(c, h.data(1, b"test")))
case("http2/5.1/12", "closed: Sends a HEADERS frame")(lambda c: closed(c, again(c)))
case("http2/5.1/13", "closed: Sends a CONTINUATION frame")(
    lambda c: closed(c, h.continuation(1, dummy()), codes=EITHER))
case("http2/5.1.1/1", "Sends even-numbered stream identifier")(
    lambda c: idle(c, h.headers(2, h.block(c.common()))))
case("http2/5.1.1/2", "Sends stream identifier that is numerically smaller than previous")(
    lambda c: idle(c, h.headers(5, h.block(c.common())), h.headers(3, h.block(c.common()))))


@case("http2/5.1.2/1", "Sends HEADERS frames that causes their advertised concurrent stream limit to be exceeded")
def _(c):
    c.handshake()
    limit = c.remote.get(MAX_CONCURRENT_STREAMS)
    if limit is None:
        raise h.Fail("the server sets no SETTINGS_MAX_CONCURRENT_STREAMS")
    c.send(*[h.headers(1 + 2 * n, h.block(c.common()), end_stream=False) for n in range(limit + 1)])
    stream_error(c, PROTOCOL_ERROR, REFUSED_STREAM)


case("http2/5.3.1/1", "Sends HEADERS frame that depends on itself")(
    lambda c: (c.send(h.headers(1, started(c), prio=h.priority_fields(1))),
               stream_error(c, PROTOCOL_ERROR)))
case("http2/5.3.1/2", "Sends PRIORITY frame that depend on itself")(
    lambda c: (c.handshake(), c.send(h.priority(1, 1)), stream_error(c, PROTOCOL_ERROR)))


@case("http2/5.4.1/1", "Sends an invalid PING frame for connection close")
def _(c):
    c.handshake()
    c.send(h.ping(stream_id=3))
    for ev in h.events(c):
        if ev == "timeout":
            raise h.Fail("the connection stays open (timeout)")


@case("http2/5.4.1/2", "Sends an invalid PING frame to receive GOAWAY frame")
def _(c):
    c.handshake()
    c.send(h.ping(stream_id=3))
    h.wait_for(c, lambda ev: isinstance(ev, h.hf.GoAwayFrame), "GOAWAY")


@case("http2/5.5/1", "Sends an unknown extension frame")
def _(c):
    c.handshake()
    c.send(frame(0xFF, 0, 0, b"unknown!"))
    ping_ack(c)


case("http2/5.5/2", "Sends an unknown extension frame in the middle of a header block")(
    lambda c: unended_block(c, frame(0xFF, 0, 1, b"unknown!"), h.continuation(1, dummy())))

import h2_conformance_http2  # noqa: E402,F401 (adds sections 6 to 8 to CASES)
