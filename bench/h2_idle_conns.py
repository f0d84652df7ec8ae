#!/usr/bin/env python3
"""Open N HTTP/2 connections, do one GET on each, and hold them open (stdlib only).

Each connection does what a browser's does before it goes quiet: the client preface
and an empty SETTINGS, an ACK of the server's SETTINGS, one GET / on stream 1 whose
whole response is read (HEADERS and DATA up to END_STREAM), and a WINDOW_UPDATE for
the DATA it got. Plain connections use prior knowledge (h2c); with --tls the
connection negotiates ALPN h2 (the certificate is not checked: loopback only).

Protocol with the caller (bench/h2_idle.sh), one JSON object per line on stdout, as
bench/idle_conns.py:
  1. after every connection has either completed its GET or failed:
       {"held": n, "failed": n, "non200": n, "open_s": seconds}
  2. for every "check" line read on stdin:
       {"still_open": n}   (connections neither closed nor sent GOAWAY by the server)
  3. on "release" (or EOF on stdin) every connection is reset (SO_LINGER 0, so no
     TIME_WAIT is left behind) and the helper exits.
"""
import selectors
import socket
import ssl
import struct

from idle_conns import parse, parser, run

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0, 1, 4, 6, 7, 8, 9
END_STREAM, ACK = 0x1, 0x1
# HPACK (RFC 7541 appendix A): ":status: 200" is static index 8, sent as one byte.
STATUS_200 = 0x88


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes((kind, flags)) + \
        struct.pack(">I", stream) + payload


def request(authority, path, tls):
    """The preface, an empty SETTINGS, and GET `path` on stream 1 (END_STREAM)."""
    # Static indices: :method GET 2, :scheme http 6 / https 7, :path / 4; :authority
    # as a literal without indexing whose name is static index 1.
    block = bytes((0x82, 0x87 if tls else 0x86))
    if path == "/":
        block += b"\x84"
    else:
        block += b"\x04" + bytes((len(path),)) + path.encode()
    block += b"\x01" + bytes((len(authority),)) + authority.encode()
    return PREFACE + frame(SETTINGS, 0, 0) + frame(HEADERS, 0x4 | END_STREAM, 1, block)


class Conn:
    __slots__ = ("sock", "phase", "buf", "status", "acked", "done", "got")

    def __init__(self, sock):
        self.sock = sock
        self.phase = "connect"
        self.buf = b""
        self.status = None
        self.acked = False   # the server's SETTINGS were ACKed
        self.done = False    # the response ended (END_STREAM on stream 1)
        self.got = 0         # DATA bytes received, given back by WINDOW_UPDATE

    def frames(self):
        """Takes the complete frames out of `buf`: yields (kind, flags, stream, payload)."""
        while len(self.buf) >= 9:
            length = int.from_bytes(self.buf[:3], "big")
            if len(self.buf) < 9 + length:
                return
            kind, flags = self.buf[3], self.buf[4]
            stream = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
            payload, self.buf = self.buf[9:9 + length], self.buf[9 + length:]
            yield kind, flags, stream, payload

    def say(self, hello):
        """Sends the preface, SETTINGS and the GET; then the connection waits to read."""
        self.sock.sendall(hello)  # a few dozen bytes into an empty socket buffer
        self.phase = "read"
        return selectors.EVENT_READ

    def handle(self):
        """Answers what the server sent; returns bytes to send, or None if it refused."""
        out = b""
        for kind, flags, stream, payload in self.frames():
            if kind == SETTINGS and not flags & ACK:
                out += frame(SETTINGS, ACK, 0)
                self.acked = True
            elif kind == PING and not flags & ACK:
                out += frame(PING, ACK, 0, payload)
            elif kind == GOAWAY:
                return None
            elif kind == HEADERS and stream == 1 and self.status is None:
                pad = payload[0] if flags & 0x8 else 0
                start = (1 if flags & 0x8 else 0) + (5 if flags & 0x20 else 0)
                block = payload[start:len(payload) - pad]
                self.status = 200 if block[:1] == bytes((STATUS_200,)) else -1
                self.done = self.done or bool(flags & END_STREAM)
            elif kind == DATA and stream == 1:
                self.got += len(payload)
                self.done = self.done or bool(flags & END_STREAM)
        if self.done and self.got:
            out += frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", self.got))
            self.got = 0
        return out


def main():
    ap = parser(__doc__, 120.0)
    ap.add_argument("--tls", action="store_true", help="TLS with ALPN h2 instead of h2c")
    args = parse(ap)

    hello = request("%s:%d" % (args.host, args.port), args.path, args.tls)
    tls = None
    if args.tls:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
        tls.set_alpn_protocols(["h2"])

    def step(c):
        try:
            if c.phase == "connect":
                if c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    raise OSError("connect failed")
                if not tls:
                    return c.say(hello)
                c.sock = tls.wrap_socket(c.sock, do_handshake_on_connect=False,
                                         server_hostname="localhost")
                c.phase = "handshake"
            if c.phase == "handshake":
                c.sock.do_handshake()
                if c.sock.selected_alpn_protocol() != "h2":
                    raise OSError("ALPN h2 not selected")
                return c.say(hello)
            data = c.sock.recv(65536)
        except ssl.SSLWantWriteError:
            return selectors.EVENT_WRITE
        except (BlockingIOError, ssl.SSLWantReadError):
            return selectors.EVENT_READ
        if not data:
            raise OSError("closed by the server")
        c.buf += data
        out = c.handle()
        if out is None:
            raise OSError("GOAWAY")
        if out:
            c.sock.sendall(out)  # a few dozen bytes into an empty socket buffer
        if not (c.done and c.acked):
            return None
        return "held" if c.status == 200 else "non200"

    def alive(c):
        """Reads what the server sent since: closed, or GOAWAY, is not alive."""
        if c.buf is None:
            return False
        try:
            data = c.sock.recv(65536)
        except (BlockingIOError, ssl.SSLWantReadError):
            return True
        except OSError:
            data = b""
        c.buf = c.buf + data if data else None
        if c.buf is not None and c.handle() is None:
            c.buf = None
        return c.buf is not None

    run(args, Conn, step, alive)


if __name__ == "__main__":
    main()
