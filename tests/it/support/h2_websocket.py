"""WebSocket over HTTP/2 (RFC 8441) clients for tests/it/h2/websocket.rs, with the Python
`h2` package over h2c (prior knowledge).

Usage: h2_websocket.py SCENARIO HOST PORT PATH

Each scenario opens one connection, reads weir's SETTINGS (printing
`connect_protocol=N`, SETTINGS_ENABLE_CONNECT_PROTOCOL), sends an extended CONNECT on
stream 1 (`:protocol websocket`) or another CONNECT, and prints one event a line:
`status=NNN`, `header NAME=VALUE` for the WebSocket fields of the response, `reset=NAME`,
`ended` (END_STREAM), and what each scenario checks. WebSocket frames are masked, as a
client's must be (RFC 6455 §5.3). Every read is bounded by a socket timeout.
"""

import hashlib
import os
import socket
import struct
import sys
import time

import h2.errors
import h2.events

from h2_hostile import MAX_READS, connect, head, settle

OP_TEXT, OP_BINARY, OP_CLOSE = 0x1, 0x2, 0x8
# The response fields a scenario prints when the head arrives.
SHOWN = ("x-backend", "sec-websocket-protocol", "sec-websocket-extensions",
         "sec-websocket-accept", "upgrade", "connection")
# The large message of `echo`.
LARGE = 1024 * 1024


def frame(opcode, payload):
    """One final, masked client frame."""
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + masked


def parse_frame(buf):
    """(opcode, payload, rest) for a whole unmasked server frame at the front of buf."""
    if len(buf) < 2:
        return None
    opcode, length, at = buf[0] & 0x0F, buf[1] & 0x7F, 2
    if length == 126:
        if len(buf) < 4:
            return None
        length, at = struct.unpack("!H", buf[2:4])[0], 4
    elif length == 127:
        if len(buf) < 10:
            return None
        length, at = struct.unpack("!Q", buf[2:10])[0], 10
    if len(buf) < at + length:
        return None
    return opcode, buf[at:at + length], buf[at + length:]


class Tunnel:
    """Stream 1 of one connection: its events, the bytes received, flow control."""

    def __init__(self, host, port, read=True):
        self.sock, self.conn = connect(host, port)
        settle(self.sock, self.conn)
        enabled = self.conn.remote_settings.enable_connect_protocol
        print(f"connect_protocol={enabled}", flush=True)
        self.read = read
        self.received = b""
        self.status = None
        self.ended = False
        self.reset = None

    def send_headers(self, headers, end=False):
        self.conn.send_headers(1, headers, end_stream=end)
        self.sock.sendall(self.conn.data_to_send())

    def pump(self):
        """Reads once and handles the events; False when the connection closed."""
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, ConnectionResetError):
            print("closed", flush=True)
            return False
        if not data:
            print("closed", flush=True)
            return False
        for event in self.conn.receive_data(data):
            self.on(event)
        self.sock.sendall(self.conn.data_to_send())
        return True

    def on(self, event):
        if isinstance(event, h2.events.ResponseReceived):
            fields = {k.decode(): v.decode() for k, v in event.headers}
            self.status = fields[":status"]
            print(f"status={self.status}", flush=True)
            for name in SHOWN:
                if name in fields:
                    print(f"header {name}={fields[name]}", flush=True)
        elif isinstance(event, h2.events.DataReceived):
            self.received += event.data
            if self.read:
                # The window opens again only because this client read the bytes.
                self.conn.acknowledge_received_data(event.flow_controlled_length, 1)
        elif isinstance(event, h2.events.StreamEnded):
            self.ended = True
            print("ended", flush=True)
        elif isinstance(event, h2.events.StreamReset):
            self.reset = h2.errors.ErrorCodes(event.error_code).name
            print(f"reset={self.reset}", flush=True)

    def wait(self, done):
        """Pumps until done() or the stream or connection ends."""
        for _ in range(MAX_READS):
            if done() or self.reset:
                return done()
            if not self.pump():
                return False
        return False

    def open(self, host, port, path, protocol="websocket", extra=()):
        """Sends the extended CONNECT; returns whether the answer was 200."""
        fields = head(host, port, path, method="CONNECT") + [(":protocol", protocol)]
        self.send_headers(fields + [("sec-websocket-version", "13")] + list(extra))
        self.wait(lambda: self.status is not None or self.ended)
        return self.status == "200"

    def send(self, data, end=False):
        """Sends data as flow control allows, reading (and acknowledging) meanwhile."""
        for _ in range(MAX_READS):
            if not data:
                break
            window = min(self.conn.local_flow_control_window(1), len(data), 16384)
            if window > 0:
                self.conn.send_data(1, data[:window])
                self.sock.sendall(self.conn.data_to_send())
                data = data[window:]
            elif not self.pump():
                return
        if end:
            self.conn.end_stream(1)
            self.sock.sendall(self.conn.data_to_send())

    def message(self):
        """The next whole WebSocket frame from the backend, as (opcode, payload)."""
        got = []

        def whole():
            parsed = parse_frame(self.received)
            if parsed:
                got.append(parsed[:2])
                self.received = parsed[2]
            return bool(got)
        self.wait(whole)
        return got[0] if got else (None, b"")


def echo(host, port, path):
    """A text and a 1 MiB binary message echoed, then a close handshake ends the stream."""
    tunnel = Tunnel(host, port)
    extensions = ("sec-websocket-extensions", "permessage-deflate")
    if not tunnel.open(host, port, path, extra=[("sec-websocket-protocol", "chat"), extensions]):
        return
    tunnel.send(frame(OP_TEXT, b"hello weir"))
    opcode, payload = tunnel.message()
    print(f"text={payload.decode()} opcode={opcode}", flush=True)
    large = os.urandom(LARGE)
    tunnel.send(frame(OP_BINARY, large))
    opcode, payload = tunnel.message()
    same = hashlib.sha256(payload).digest() == hashlib.sha256(large).digest()
    print(f"binary={len(payload)} same={same} opcode={opcode}", flush=True)
    tunnel.send(frame(OP_CLOSE, struct.pack("!H", 1000)))
    opcode, payload = tunnel.message()
    print(f"close={opcode} code={struct.unpack('!H', payload)[0]}", flush=True)
    tunnel.wait(lambda: tunnel.ended)


def half_close(host, port, path):
    """Sends `ping` then END_STREAM; reads what the backend sends until the stream ends."""
    tunnel = Tunnel(host, port)
    if not tunnel.open(host, port, path, extra=[("sec-websocket-protocol", "chat")]):
        return
    tunnel.send(b"ping", end=True)
    tunnel.wait(lambda: tunnel.ended)
    print(f"got={tunnel.received.decode()}", flush=True)


def reset(host, port, path):
    """Resets the open tunnel, waits (the connection open) until stdin closes, then
    checks the connection still answers a PING."""
    tunnel = Tunnel(host, port)
    if not tunnel.open(host, port, path):
        return
    tunnel.send(b"before the reset")
    tunnel.conn.reset_stream(1, h2.errors.ErrorCodes.CANCEL)
    tunnel.sock.sendall(tunnel.conn.data_to_send())
    print("reset sent", flush=True)
    sys.stdin.read()
    tunnel.conn.ping(b"weir-ws!")
    tunnel.sock.sendall(tunnel.conn.data_to_send())
    for _ in range(MAX_READS):
        data = tunnel.sock.recv(65536)
        if not data:
            print("closed", flush=True)
            return
        events = tunnel.conn.receive_data(data)
        if any(isinstance(e, h2.events.PingAckReceived) for e in events):
            print("alive", flush=True)
            return


def refused(host, port, path, fields):
    """Sends a CONNECT with `fields`; prints the answer."""
    tunnel = Tunnel(host, port)
    tunnel.send_headers(head(host, port, path, method="CONNECT")[:1] + fields)
    tunnel.wait(lambda: tunnel.ended)
    if tunnel.received:
        print(f"body={tunnel.received.decode(errors='replace').strip()}", flush=True)


def websocket_anyway(host, port, path):
    """An extended CONNECT whatever weir's SETTINGS said."""
    tunnel = Tunnel(host, port)
    tunnel.open(host, port, path)
    if tunnel.status:
        tunnel.wait(lambda: tunnel.ended)


def plain_connect(host, port, path):
    refused(host, port, path, [(":authority", f"{host}:{port}")])


def unknown_protocol(host, port, path):
    fields = head(host, port, path, method="CONNECT")[1:] + [(":protocol", "connect-udp")]
    refused(host, port, path, fields)


def stalled(host, port, path):
    """Sends frames to an echo backend and never reads (no WINDOW_UPDATE for what weir
    sends); prints `sent=N` once weir gave no window for 2 s."""
    tunnel = Tunnel(host, port, read=False)
    if not tunnel.open(host, port, path):
        return
    pending = b""
    sent = 0
    tunnel.sock.settimeout(2)
    while sent < 256 * 1024 * 1024 and not tunnel.reset:
        # One byte stream of whole frames, cut wherever the window ends.
        if not pending:
            pending = frame(OP_BINARY, b"x" * 16000)
        window = min(tunnel.conn.local_flow_control_window(1), len(pending))
        if window > 0:
            tunnel.conn.send_data(1, pending[:window])
            tunnel.sock.sendall(tunnel.conn.data_to_send())
            pending = pending[window:]
            sent += window
            continue
        try:
            data = tunnel.sock.recv(65536)
        except socket.timeout:
            break
        if not data:
            break
        for event in tunnel.conn.receive_data(data):
            tunnel.on(event)
        tunnel.sock.sendall(tunnel.conn.data_to_send())
    print(f"sent={sent} received={len(tunnel.received)}", flush=True)


def idle(host, port, path):
    """Opens a tunnel and sends nothing; prints how the stream ended and when."""
    tunnel = Tunnel(host, port)
    if not tunnel.open(host, port, path):
        return
    opened = time.monotonic()
    tunnel.wait(lambda: tunnel.ended)
    print(f"after_ms={int((time.monotonic() - opened) * 1000)}", flush=True)


SCENARIOS = {
    "echo": echo,
    "half_close": half_close,
    "reset": reset,
    "websocket_anyway": websocket_anyway,
    "plain_connect": plain_connect,
    "unknown_protocol": unknown_protocol,
    "stalled": stalled,
    "idle": idle,
}

if __name__ == "__main__":
    SCENARIOS[sys.argv[1]](sys.argv[2], sys.argv[3], sys.argv[4])
