"""A small HTTP/1.1 origin for bench/soak.py: keep-alive, Content-Length and chunked
request bodies, large responses, and a real WebSocket echo (RFC 6455 handshake and
frames). Python 3 stdlib only; one process per backend so the soak can kill and restart
one with SIGKILL.

    python3 soak_backend.py PORT NAME

Paths:
  GET  /small          a 64-byte body
  GET  /big?n=BYTES    BYTES of body (at most MAX_BODY), written in 64 KiB pieces
  POST /echo           the request body's length and checksum as text
  GET  /ws             WebSocket upgrade; every data frame is echoed back
Every response carries `X-Backend: NAME`, so the soak can tell who answered.
"""
import asyncio
import base64
import hashlib
import sys
import zlib

# Largest body /big serves and /echo accepts: the soak's largest transfer is 8 MiB; a
# bound keeps a malformed request from making the origin allocate without limit.
MAX_BODY = 64 * 1024 * 1024
# Largest request head: the soak's heads are a few hundred bytes.
MAX_HEAD = 16 * 1024
# Largest WebSocket frame echoed: the soak sends at most 16 KiB.
MAX_FRAME = 1024 * 1024
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC11B85"


async def read_head(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    if len(head) > MAX_HEAD:
        raise ValueError("head too large")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    fields = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
    return method, target, fields


async def read_body(reader, fields):
    if fields.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass
                return bytes(body)
            if len(body) + size > MAX_BODY:
                raise ValueError("body too large")
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    length = int(fields.get("content-length", "0"))
    if length > MAX_BODY:
        raise ValueError("body too large")
    return await reader.readexactly(length)


def response(name, status, body, extra=b""):
    return (b"HTTP/1.1 %d OK\r\nX-Backend: %s\r\nContent-Length: %d\r\n%s\r\n"
            % (status, name, len(body), extra)) + body


async def websocket(reader, writer, name, fields):
    key = fields.get("sec-websocket-key", "").encode()
    accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
    writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nX-Backend: %s\r\nSec-WebSocket-Accept: %s\r\n\r\n"
                 % (name, accept))
    await writer.drain()
    while True:
        b0, b1 = await reader.readexactly(2)
        length = b1 & 0x7F
        if length == 126:
            length = int.from_bytes(await reader.readexactly(2), "big")
        elif length == 127:
            length = int.from_bytes(await reader.readexactly(8), "big")
        if length > MAX_FRAME:
            return
        mask = await reader.readexactly(4) if b1 & 0x80 else b"\0\0\0\0"
        data = bytes(c ^ mask[i % 4] for i, c in enumerate(await reader.readexactly(length)))
        opcode = b0 & 0x0F
        if opcode == 8:  # close: answer it and stop
            writer.write(b"\x88\x00")
            await writer.drain()
            return
        header = bytes([0x80 | opcode])
        if length < 126:
            header += bytes([length])
        else:
            header += bytes([126]) + length.to_bytes(2, "big")
        writer.write(header + data)
        await writer.drain()


async def serve(reader, writer, name):
    try:
        while True:
            method, target, fields = await read_head(reader)
            body = await read_body(reader, fields)
            path, _, query = target.partition("?")
            if path == "/ws" and fields.get("upgrade", "").lower() == "websocket":
                await websocket(reader, writer, name, fields)
                return
            if path == "/big":
                n = min(int(query.partition("=")[2] or "0"), MAX_BODY)
                writer.write(b"HTTP/1.1 200 OK\r\nX-Backend: %s\r\nContent-Length: %d\r\n\r\n"
                             % (name, n))
                piece = b"x" * 65536
                sent = 0
                while sent < n:
                    step = min(len(piece), n - sent)
                    writer.write(piece[:step])
                    sent += step
                    await writer.drain()
            elif path == "/echo":
                text = b"%d %08x" % (len(body), zlib.crc32(body))
                writer.write(response(name, 200, text))
            else:
                writer.write(response(name, 200, b"s" * 64))
            await writer.drain()
            if fields.get("connection", "").lower() == "close":
                return
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def main():
    port, name = int(sys.argv[1]), sys.argv[2].encode()
    server = await asyncio.start_server(lambda r, w: serve(r, w, name), "127.0.0.1", port,
                                        reuse_address=True, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
