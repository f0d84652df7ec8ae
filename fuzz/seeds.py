#!/usr/bin/env python3
"""Writes the seed corpus under corpus/<target>/: every shape issue #9 names, plus the
classic smuggling shapes. Run from anywhere; it rewrites only the files it names, so
inputs committed by hand (crashes found, kept as regressions) stay."""
import os

HERE = os.path.dirname(os.path.abspath(__file__))
H = "Host: x\r\n"


def req(name, fields, body="", line="POST /a HTTP/1.1"):
    return name, f"{line}\r\n{fields}\r\n{body}".encode("latin-1")


REQUEST = [
    req("get", H, line="GET / HTTP/1.1"),
    req("post_length", H + "Content-Length: 5\r\n", "hello"),
    req("post_chunked", H + "Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"),
    req("chunked_trailers", H + "Transfer-Encoding: chunked\r\n",
        "5\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n"),
    # The live hole: Connection names the framing field, weir drops it, the body stays.
    req("connection_content_length", H + "Connection: Content-Length\r\nContent-Length: 43\r\n",
        "GET /SMUGGLED HTTP/1.1\r\nHost: x\r\nX-Ignore: "),
    req("connection_transfer_encoding",
        H + "Connection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n",
        "5\r\nhello\r\n0\r\n\r\n"),
    req("connection_host_xff", H + "Connection: Host, X-Forwarded-For\r\n"
        "X-Forwarded-For: 198.51.100.1\r\n", line="GET / HTTP/1.1"),
    req("connection_keep_alive_custom", H + "Connection: keep-alive, X-Foo\r\nX-Foo: 1\r\n",
        line="GET / HTTP/1.1"),
    req("length_list", H + "Content-Length: 5, 5\r\n", "hello"),
    req("length_twice", H + "Content-Length: 5\r\nContent-Length: 5\r\n", "hello"),
    req("length_conflict", H + "Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"),
    req("te_gzip_chunked", H + "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
        "5\r\nhello\r\n0\r\n\r\n"),
    req("te_gzip_chunked_list", H + "Transfer-Encoding: gzip, chunked\r\n",
        "5\r\nhello\r\n0\r\n\r\n"),
    req("te_identity_chunked", H + "Transfer-Encoding: identity,chunked\r\n",
        "5\r\nhello\r\n0\r\n\r\n"),
    req("te_chunked_twice", H + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        "5\r\nhello\r\n0\r\n\r\n"),
    req("chunk_extension", H + "Transfer-Encoding: chunked\r\n",
        "8;name=value\r\nhello wo\r\n0\r\n\r\n"),
    req("chunk_extension_bare", H + "Transfer-Encoding: chunked\r\n",
        "5 ;x\r\nhello\r\n0\r\n\r\n"),
    req("absolute_form", "Host: public.example\r\n", line="GET http://internal.example/x HTTP/1.1"),
    req("absolute_admin", "Host: a\r\n", line="GET http://a/admin HTTP/1.1"),
    req("percent_admin", H, line="GET /%61dmin HTTP/1.1"),
    req("dot_admin", H, line="GET /x/../admin HTTP/1.1"),
    req("double_slash_admin", H, line="GET //admin HTTP/1.1"),
    req("cl_te", H + "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\nG"),
    req("te_cl", H + "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
        "5c\r\nGPOST / HTTP/1.1\r\n\r\n0\r\n\r\n"),
    req("te_obs_fold", H + "Transfer-Encoding:\r\n chunked\r\n", "0\r\n\r\n"),
    req("te_obs_fold_value", H + "Transfer-Encoding: gzip\r\n ,chunked\r\n", "0\r\n\r\n"),
    req("te_xchunked", H + "Transfer-Encoding: xchunked\r\n", "0\r\n\r\n"),
    req("te_space_colon", H + "Transfer-Encoding : chunked\r\n", "0\r\n\r\n"),
    req("cl_space_colon", H + "Content-Length : 5\r\n", "hello"),
    ("bare_lf", b"POST /a HTTP/1.1\nHost: x\nContent-Length: 5\n\nhello"),
    ("bare_lf_mixed", b"POST /a HTTP/1.1\r\nHost: x\nContent-Length: 5\r\n\r\nhello"),
    ("nul_in_value", b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n"),
    ("nul_in_target", b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n"),
    req("huge_length", H + "Content-Length: 99999999999999999999\r\n", "hello"),
    req("max_length", H + "Content-Length: 18446744073709551615\r\n", "hello"),
    req("plus_length", H + "Content-Length: +5\r\n", "hello"),
    req("minus_length", H + "Content-Length: -1\r\n", "hello"),
    req("http10_no_host", "Connection: keep-alive\r\nContent-Length: 2\r\n", "hi",
        line="POST / HTTP/1.0"),
    req("http10_te", H + "Transfer-Encoding: chunked\r\n", "0\r\n\r\n", line="POST / HTTP/1.0"),
    req("upgrade", H + "Connection: Upgrade\r\nUpgrade: websocket\r\n", line="GET /ws HTTP/1.1"),
    req("upgrade_named_length", H + "Connection: Upgrade, Content-Length\r\nUpgrade: websocket\r\n"
        "Content-Length: 3\r\n", "abc", line="GET /ws HTTP/1.1"),
    req("expect_continue", H + "Expect: 100-continue\r\nContent-Length: 3\r\n", "abc"),
    req("hop_by_hop", H + "Keep-Alive: timeout=5\r\nProxy-Connection: close\r\nTE: trailers\r\n"
        "X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\n", line="GET / HTTP/1.1"),
    req("two_hosts", H + "Host: y\r\n", line="GET / HTTP/1.1"),
    req("empty_host", "Host:\r\n", line="GET / HTTP/1.1"),
    req("pipelined", H, "GET /2 HTTP/1.1\r\nHost: x\r\n\r\n", line="GET /1 HTTP/1.1"),
    req("trailing_space_values", "Host: x  \r\nX-Forwarded-For: 1.1.1.1 \r\nContent-Length: 1 \r\n",
        "a"),
    req("connect", H, line="CONNECT x:443 HTTP/1.1"),
    req("lower_method", H, line="get / HTTP/1.1"),
    req("high_bytes_target", H, line="GET /\xe9t\xe9 HTTP/1.1"),
]


def resp(name, flags, head, body=""):
    return name, bytes([flags]) + f"{head}\r\n\r\n{body}".encode("latin-1")


# Flags byte: 1 HEAD request, 2 upgrade requested, 4 HTTP/1.0 client, 8 close client.
RESPONSE = [
    resp("length", 0, "HTTP/1.1 200 OK\r\nContent-Length: 5", "hello"),
    resp("chunked", 0, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked", "5\r\nhello\r\n0\r\n\r\n"),
    resp("until_close", 0, "HTTP/1.1 200 OK", "body until close"),
    resp("connection_content_length", 0,
         "HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 5", "hello"),
    resp("connection_transfer_encoding", 0,
         "HTTP/1.1 200 OK\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked",
         "5\r\nhello\r\n0\r\n\r\n"),
    resp("no_content_length", 0, "HTTP/1.1 204 No Content\r\nContent-Length: 0"),
    resp("no_content_chunked", 0, "HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked"),
    resp("not_modified_length", 0, "HTTP/1.1 304 Not Modified\r\nContent-Length: 5"),
    resp("not_modified_chunked", 0, "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked"),
    resp("continue", 0, "HTTP/1.1 100 Continue"),
    resp("continue_http10_client", 4, "HTTP/1.1 100 Continue"),
    resp("switching", 2, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
         "Upgrade: websocket"),
    resp("head_length", 1, "HTTP/1.1 200 OK\r\nContent-Length: 5"),
    resp("http10_client_chunked", 4, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked",
         "5\r\nhello\r\n0\r\n\r\n"),
    resp("close_client", 8, "HTTP/1.1 200 OK\r\nContent-Length: 2", "hi"),
    resp("length_list", 0, "HTTP/1.1 200 OK\r\nContent-Length: 5, 5", "hello"),
    resp("te_gzip_chunked", 0, "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked",
         "5\r\nhello\r\n0\r\n\r\n"),
    resp("chunk_extension", 0, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked",
         "8;name=value\r\nhello wo\r\n0\r\n\r\n"),
    resp("http10_backend", 0, "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2",
         "hi"),
    resp("hop_by_hop", 0, "HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nUpgrade: h2c\r\n"
         "Content-Length: 0"),
    resp("cl_te", 0, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\nTransfer-Encoding: chunked",
         "0\r\n\r\n"),
    resp("no_reason", 0, "HTTP/1.1 200\r\nContent-Length: 0"),
    ("bare_lf", b"\x00HTTP/1.1 200 OK\nContent-Length: 5\n\nhello"),
]

CHUNKED = [
    ("simple", b"\x07" + b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
    ("extensions", b"\x03" + b"8;name=value\r\nhello wo\r\n3 ; a=\"b\"\r\nrld\r\n0\r\n\r\n"),
    ("trailers", b"\x11" + b"5\r\nhello\r\n0\r\nX-Sum: 1\r\nY: 2\r\n\r\nGET / HTTP/1.1\r\n"),
    ("bare_lf", b"\x05" + b"5\nhello\n0\n\n"),
    ("negative", b"\x01" + b"-5\r\nhello\r\n0\r\n\r\n"),
    ("hex_prefix", b"\x02" + b"0x5\r\nhello\r\n0\r\n\r\n"),
    ("leading_space", b"\x09" + b" 5\r\nhello\r\n0\r\n\r\n"),
    ("space_extension", b"\x0b" + b"5 x\r\nhello\r\n0\r\n\r\n"),
    ("huge_size", b"\x0d" + b"ffffffffffffffff\r\nx"),
    ("too_many_digits", b"\x0f" + b"00000000000000005\r\nhello\r\n0\r\n\r\n"),
    ("data_overrun", b"\x13" + b"5\r\nhelloXX0\r\n\r\n"),
    ("bare_cr_trailer", b"\x17" + b"0\r\nX: y\r\r\n\r\n"),
]

ADMIN = [
    ("healthz", b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("metrics_query", b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("post_body", b"POST /api/v1/pools HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"),
    ("plus_length", b"POST /api/v1/pools HTTP/1.1\r\nContent-Length: +2\r\n\r\n{}"),
    ("length_list", b"POST /api/v1/pools HTTP/1.1\r\nContent-Length: 2, 2\r\n\r\n{}"),
    ("chunked", b"POST /api/v1/pools HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("http10_close", b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"),
    ("huge_length", b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n"),
    ("bare_lf", b"GET /status HTTP/1.1\nAuthorization: Bearer x\n\n"),
]

STICKY = [
    ("pinned", b"weir_affinity=7d9e1f473f45f654"),
    ("pinned_among", b"a=1; weir_affinity=7d9e1f473f45f654; b=2"),
    ("quoted", b"weir_affinity=\"7D9E1F473F45F654\""),
    ("unknown", b"weir_affinity=0000000000000000"),
    ("short", b"weir_affinity=7d9e"),
    ("empty", b"weir_affinity="),
    ("spaces", b" weir_affinity = 7d9e1f473f45f654 ;x"),
    ("twice", b"weir_affinity=zz; weir_affinity=7d9e1f473f45f654"),
    ("no_pair", b";;=;weir_affinity"),
]

BROKEN_CONFIG = [
    ("syntax", b"[server\nlisten = [\"127.0.0.1:8080\"]\n"),
    ("unknown_key", b"[server]\nlisten = [\"127.0.0.1:0\"]\nbogus = 1\n"),
    ("bad_duration", b"[server]\nread_timeout = \"5 parsecs\"\n"),
    ("missing_pool", b"[[route]]\npool = \"nope\"\n"),
    ("multibyte", "[[pool]]\nname = \"\u00e9\u00e9\"\nbackends = [\"\u00e9:80\"]\n".encode()),
    ("crlf", b"[server]\r\nworkers = 0\r\n"),
    ("empty", b""),
]


def frame(kind, flags, stream, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


# A seed byte, then frames. A SETTINGS frame on stream N stands for weir opening N, a
# RST_STREAM for weir letting it go (see simple::h2_frames): a response with interim
# heads and trailers, a flood of 1xx heads on one stream, a stream let go and answered
# on, a header block split over CONTINUATION, a cut frame.
STATUS_103 = b"\x08\x03103"
H2_FRAMES = [
    ("response", bytes([5]) + frame(4, 0, 1) + frame(1, 4, 1, STATUS_103) + frame(1, 4, 1, b"\x88")
     + frame(0, 0, 1, b"body") + frame(1, 5, 1)),
    ("interim_flood", bytes([18]) + frame(4, 0, 1) + frame(1, 4, 1, STATUS_103) * 40),
    ("ended_streams", bytes([70]) + frame(4, 0, 1) + frame(4, 0, 3) + frame(1, 4, 1, b"\x88")
     + frame(0, 1, 1) + frame(3, 0, 3, b"\x00\x00\x00\x08") + frame(1, 4, 3, STATUS_103) * 30
     + frame(1, 4, 5, b"\x88")),
    ("continuation", bytes([9]) + frame(4, 0, 1) + frame(1, 0, 1, b"\x88") + frame(9, 4, 1, b"")),
    ("cut", bytes([1]) + frame(0, 0, 1, b"abcdef")[:12]),
]


def write(target, seeds):
    folder = os.path.join(HERE, "corpus", target)
    os.makedirs(folder, exist_ok=True)
    for name, data in seeds:
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)


def main():
    write("request", REQUEST)
    write("response", RESPONSE)
    write("chunked", CHUNKED)
    write("admin_head", ADMIN)
    examples = os.path.join(HERE, "..", "examples")
    configs = [(name[:-5], open(os.path.join(examples, name), "rb").read())
               for name in sorted(os.listdir(examples)) if name.endswith(".toml")]
    write("config", configs + BROKEN_CONFIG)
    write("sticky", STICKY)
    write("h2_frames", H2_FRAMES)


if __name__ == "__main__":
    main()
