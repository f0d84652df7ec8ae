"""A gRPC server and client from grpcio (an independent stack) for tests/it/grpc.rs.

Messages are raw bytes (no protoc): the generic handlers pass them through unchanged.

    python3 grpc_peer.py server          prints the port it listens on, serves until killed
    python3 grpc_peer.py client ADDR     runs every call through ADDR, prints one JSON line

Service `test.Echo`:
    Unary(m)          -> b"unary:" + m
    ServerStream(m)   -> b"server:0:" + m, b"server:1:" + m, b"server:2:" + m
    ClientStream(ms)  -> b"client:" + b"+".join(ms)
    Bidi(ms)          -> b"bidi:" + m for each m, as each arrives
    Missing(m)        -> aborts with NOT_FOUND "no such thing" (a trailers-only answer)
"""

import json
import sys
import time
from concurrent import futures

import grpc

SERVICE = "test.Echo"


def serve():
    def unary(request, context):
        return b"unary:" + request

    def server_stream(request, context):
        for i in range(3):
            yield b"server:%d:" % i + request

    def client_stream(requests, context):
        return b"client:" + b"+".join(requests)

    def bidi(requests, context):
        for message in requests:
            yield b"bidi:" + message

    def missing(request, context):
        context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")

    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        "Missing": grpc.unary_unary_rpc_method_handler(missing),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    server.wait_for_termination()


def code_of(call):
    try:
        return {"ok": call()}
    except grpc.RpcError as error:
        return {"code": error.code().name, "message": error.details()}


def client(addr):
    channel = grpc.insecure_channel(addr)
    method = lambda name: "/%s/%s" % (SERVICE, name)
    unary = channel.unary_unary(method("Unary"))
    server_stream = channel.unary_stream(method("ServerStream"))
    client_stream = channel.stream_unary(method("ClientStream"))
    bidi = channel.stream_stream(method("Bidi"))
    missing = channel.unary_unary(method("Missing"))
    timeout = 10
    result = {
        "unary": code_of(lambda: unary(b"hello", timeout=timeout).decode()),
        "server_stream": code_of(
            lambda: [m.decode() for m in server_stream(b"x", timeout=timeout)]
        ),
        "client_stream": code_of(
            lambda: client_stream(iter([b"a", b"b", b"c"]), timeout=timeout).decode()
        ),
        "bidi": code_of(lambda: bidi_ping_pong(bidi, timeout)),
        "missing": code_of(lambda: missing(b"x", timeout=timeout).decode()),
    }
    print(json.dumps(result), flush=True)


def bidi_ping_pong(bidi, timeout):
    """Sends a message only after the answer to the previous one came back: the stream
    is truly bidirectional through the proxy, not buffered to its end."""
    import queue

    outbox = queue.Queue()
    answers = []

    def requests():
        for i in range(5):
            yield b"m%d" % i
            if outbox.get(timeout=timeout) is None:
                return

    for answer in bidi(requests(), timeout=timeout):
        answers.append(answer.decode())
        outbox.put(answer)
    return answers


if __name__ == "__main__":
    if sys.argv[1] == "server":
        serve()
    else:
        client(sys.argv[2])
