"""A gRPC server and client from grpcio (an independent stack) for tests/it/grpc.rs.

Messages are raw bytes (no protoc): the generic handlers pass them through unchanged.

    python3 grpc_peer.py server [NAME [CERT KEY]]
                                         prints the port it listens on, serves until killed
                                         (over TLS with the PEM files CERT and KEY)
    python3 grpc_peer.py client ADDR     runs every call through ADDR, prints one JSON line
    python3 grpc_peer.py idle ADDR A B   a Bidi call that waits A seconds before its first
                                         message and B before its second; one JSON line
    python3 grpc_peer.py load ADDR       calls Who through ADDR from 4 threads until a line
                                         comes on stdin; prints "started" after the first
                                         answer, then one JSON line of counts

The server also serves grpc.health.v1.Health (grpcio-health-checking), every service
SERVING at first, and reads commands on stdin, one a line:
    status SERVICE STATE   sets SERVICE ("" is written "-") to SERVING or NOT_SERVING
    count                  prints one JSON line: {"who": calls of Who so far,
                           "checks": [[unix time, status answered], ...]}

Service `test.Echo`:
    Unary(m)          -> b"unary:" + m
    ServerStream(m)   -> b"server:0:" + m, b"server:1:" + m, b"server:2:" + m
    ClientStream(ms)  -> b"client:" + b"+".join(ms)
    Bidi(ms)          -> b"bidi:" + m for each m, as each arrives
    Missing(m)        -> aborts with NOT_FOUND "no such thing" (a trailers-only answer)
    Who(m)            -> NAME
"""

import json
import sys
import threading
import time
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

SERVICE = "test.Echo"


class CountingHealth(health.HealthServicer):
    """The stock health service, recording when each Check was answered and how."""

    def __init__(self):
        super().__init__()
        self.lock = threading.Lock()
        self.checks = []

    def Check(self, request, context):
        answer = super().Check(request, context)
        with self.lock:
            name = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
            self.checks.append([time.time(), name])
        return answer


def commands(servicer, counts):
    """Reads the test's commands on stdin until it closes."""
    for line in sys.stdin:
        words = line.split()
        if words[:1] == ["status"]:
            service = "" if words[1] == "-" else words[1]
            state = health_pb2.HealthCheckResponse.ServingStatus.Value(words[2])
            servicer.set(service, state)
            print("ok", flush=True)
        elif words[:1] == ["count"]:
            with servicer.lock:
                checks = list(servicer.checks)
            print(json.dumps({"who": counts["who"], "checks": checks}), flush=True)


def serve(name, tls=None):
    counts = {"who": 0}
    lock = threading.Lock()

    def who(request, context):
        with lock:
            counts["who"] += 1
        return name.encode()

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
        "Who": grpc.unary_unary_rpc_method_handler(who),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    servicer = CountingHealth()
    for service in ("", SERVICE):
        servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    if tls:
        cert, key = (open(path, "rb").read() for path in tls)
        credentials = grpc.ssl_server_credentials([(key, cert)])
        port = server.add_secure_port("127.0.0.1:0", credentials)
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    commands(servicer, counts)
    server.wait_for_termination()


def load(addr):
    """Calls Who from 4 threads until stdin gets a line; counts answers by server and
    failures by code."""
    channel = grpc.insecure_channel(addr)
    who = channel.unary_unary("/%s/Who" % SERVICE)
    stop = threading.Event()
    started = threading.Event()
    lock = threading.Lock()
    counts = {"ok": {}, "failed": {}}

    def run():
        while not stop.is_set():
            try:
                name = who(b"", timeout=10).decode()
                key, started_now = ("ok", name), True
            except grpc.RpcError as error:
                key, started_now = ("failed", error.code().name), False
            with lock:
                table = counts[key[0]]
                table[key[1]] = table.get(key[1], 0) + 1
                if started_now and not started.is_set():
                    started.set()
                    print("started", flush=True)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    sys.stdin.readline()
    stop.set()
    for thread in threads:
        thread.join()
    print(json.dumps(counts), flush=True)


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


def idle(addr, before, between):
    """A bidirectional stream that stays idle `before` its first message, and `between`
    its first answer and its second message."""
    channel = grpc.insecure_channel(addr)
    bidi = channel.stream_stream("/%s/Bidi" % SERVICE)
    got = threading.Event()

    def requests():
        time.sleep(before)
        yield b"first"
        got.wait(timeout=60)
        time.sleep(between)
        yield b"second"

    def run():
        answers = []
        for answer in bidi(requests(), timeout=60):
            answers.append(answer.decode())
            got.set()
        return answers

    print(json.dumps(code_of(run)), flush=True)


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
        serve(sys.argv[2] if len(sys.argv) > 2 else "server", sys.argv[3:5] or None)
    elif sys.argv[1] == "idle":
        idle(sys.argv[2], float(sys.argv[3]), float(sys.argv[4]))
    elif sys.argv[1] == "load":
        load(sys.argv[2])
    else:
        client(sys.argv[2])
