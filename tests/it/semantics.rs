//! HTTP/1.1 message semantics through weir: trailers in both directions, `Expect:
//! 100-continue` (accepted and rejected), HEAD, 204 and 304 on a reused connection,
//! close-delimited and HTTP/1.0 responses, a WebSocket echo over an upgrade, and the
//! tunnel idle timeout.

use crate::support::ws::{OP_BINARY, OP_CLOSE, OP_TEXT};
use crate::support::{
    self, connect, hash_bytes, read_response, read_response_for_head, roundtrip, upload_summary,
    ws_client_handshake_request, ws_encode_client_frame, ws_expected_accept, ws_read_frame,
    Balancer, Response, TestBackend,
};

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// How long a client waits for something that must (or must not) arrive.
const WAIT: Duration = Duration::from_secs(5);

/// Reads once: `Some(0)` on EOF, `Some(n)` for n bytes, `None` if nothing came in time.
async fn read_once(s: &mut TcpStream, limit: Duration) -> Option<usize> {
    let mut buf = [0u8; 256];
    match timeout(limit, s.read(&mut buf)).await {
        Ok(Ok(n)) => Some(n),
        Ok(Err(_)) => Some(0),
        Err(_) => None,
    }
}

/// Waits for weir to close a tunnel that has gone quiet: EOF must come, and no sooner
/// than `limit` after `since`, taken before the tunnel's last byte moved (so it is no
/// later than weir's idle clock start).
async fn closes_once_idle(s: &mut TcpStream, limit: Duration, since: tokio::time::Instant) {
    assert_eq!(read_once(s, WAIT).await, Some(0), "an idle tunnel was not closed");
    let waited = since.elapsed();
    assert!(waited >= limit, "closed {waited:?} after the last byte, limit {limit:?}");
}

/// Reads one response within [`WAIT`], so a response that never comes fails fast.
async fn read_within(s: &mut TcpStream, what: &str) -> Response {
    match timeout(WAIT, read_response(s)).await {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => panic!("{what}: {e}"),
        Err(_) => panic!("{what}: nothing within {WAIT:?}"),
    }
}

/// Sends `GET /` on `s` and asserts the backend answers with its name.
async fn assert_reusable(s: &mut TcpStream, after: &str) {
    let resp = roundtrip(s, b"GET / HTTP/1.1\r\nHost: test\r\n\r\n").await;
    let resp = resp.unwrap_or_else(|e| panic!("connection unusable after {after}: {e}"));
    assert_eq!((resp.status, resp.text().as_str()), (200, "b"), "after {after}");
}

#[tokio::test]
async fn response_trailers_are_relayed() {
    // Goal: a chunked response's trailers reach the client. Method: GET /trailers, check
    // body and trailer fields, then reuse the connection.
    let backend = TestBackend::start("b").await;
    let weir = Balancer::front(&backend);
    let mut s = connect(weir.addr()).await.unwrap();
    let resp = roundtrip(&mut s, b"GET /trailers HTTP/1.1\r\nHost: test\r\n\r\n").await.unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "hello world");
    assert_eq!(resp.trailer("X-Checksum"), Some("abc"), "{:?}", resp.trailers);
    assert_eq!(resp.trailer("X-Extra"), Some("1"), "{:?}", resp.trailers);
    assert_reusable(&mut s, "a response with trailers").await;
}

#[tokio::test]
async fn upload_trailers_reach_backend() {
    // Goal: a chunked request's trailers reach the backend. Method: POST /upload with two
    // trailer fields; the backend lists the trailers it received in X-Trailers.
    let backend = TestBackend::start("b").await;
    let weir = Balancer::front(&backend);
    let mut s = connect(weir.addr()).await.unwrap();
    let req = b"POST /upload HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\
        Trailer: X-Sum, X-Note\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 42\r\n\
        X-Note: hi there\r\n\r\n";
    let resp = roundtrip(&mut s, req).await.unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), upload_summary(11, hash_bytes(b"hello world")));
    assert_eq!(resp.header("X-Trailers"), Some("X-Sum=42;X-Note=hi there"));
    assert_reusable(&mut s, "an upload with trailers").await;
}

#[tokio::test]
async fn expect_continue_relays_100_then_final() {
    // Goal: `Expect: 100-continue` works end to end. Method: send only the head, wait for
    // the backend's 100 Continue through weir, then send the body and read the 200.
    let backend = TestBackend::start("b").await;
    let weir = Balancer::front(&backend);
    let mut s = connect(weir.addr()).await.unwrap();
    let head = b"POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 11\r\n\
        Expect: 100-continue\r\n\r\n";
    s.write_all(head).await.unwrap();
    let interim = read_within(&mut s, "100 Continue before the body").await;
    assert_eq!(interim.status, 100, "expected 100 Continue before the body");
    s.write_all(b"hello world").await.unwrap();
    let resp = read_within(&mut s, "final response").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), upload_summary(11, hash_bytes(b"hello world")));
    assert_reusable(&mut s, "100-continue").await;
}

#[tokio::test]
async fn expect_rejected_gives_417_without_body() {
    // Goal: a backend's refusal of `Expect: 100-continue` reaches the client before any
    // body is sent. Method: send only the head of POST /expect-reject and read a 417.
    let backend = TestBackend::start("b").await;
    let weir = Balancer::front(&backend);
    let mut s = connect(weir.addr()).await.unwrap();
    let head = b"POST /expect-reject HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\
        Expect: 100-continue\r\n\r\n";
    s.write_all(head).await.unwrap();
    let resp = read_within(&mut s, "417 without sending the body").await;
    assert_eq!(resp.status, 417, "{}", resp.text());
    assert_eq!(backend.requests(), 1);
}

/// Sends a HEAD request and reads its (bodiless) response.
async fn head(s: &mut TcpStream, path: &str) -> Response {
    let req = format!("HEAD {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    read_response_for_head(s).await.expect("HEAD response")
}

#[tokio::test]
async fn head_has_headers_but_no_body() {
    // Goal: HEAD answers carry headers, no body, and keep the connection usable. Method:
    // HEAD responses announcing a length and chunked framing, each followed by a GET.
    let backend = TestBackend::start("b").await;
    let weir = Balancer::front(&backend);
    let mut s = connect(weir.addr()).await.unwrap();
    let resp = head(&mut s, "/download?bytes=1000").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("Content-Length"), Some("1000"));
    assert_eq!(resp.header("X-Backend"), Some("b"));
    assert_reusable(&mut s, "HEAD with Content-Length").await;
    let resp = head(&mut s, "/download?bytes=1000&chunked=1").await;
    assert_eq!(resp.status, 200);
    assert_reusable(&mut s, "HEAD with chunked framing").await;
    let resp = head(&mut s, "/").await;
    assert_eq!(resp.status, 200);
    assert_reusable(&mut s, "HEAD /").await;
}

#[tokio::test]
async fn no_content_and_not_modified_have_no_body() {
    // Goal: 204 and 304 responses have no body and keep the connection usable. Method:
    // read each, then check the next response on the same connection is intact.
    let backend = TestBackend::start("b").await;
    let weir = Balancer::front(&backend);
    let mut s = connect(weir.addr()).await.unwrap();
    for status in [204u16, 304] {
        let req = format!("GET /status/{status} HTTP/1.1\r\nHost: test\r\n\r\n");
        let resp = roundtrip(&mut s, req.as_bytes()).await.unwrap();
        assert_eq!(resp.status, status);
        assert!(resp.body.is_empty(), "{status} had a body");
        assert_reusable(&mut s, &format!("a {status}")).await;
    }
}

#[tokio::test]
async fn close_delimited_response_then_close() {
    // Goal: a response ended by the backend closing arrives whole, then weir closes the
    // client connection. Method: GET /close-delimited, read the body, expect EOF.
    let backend = TestBackend::start("b").await;
    let weir = Balancer::front(&backend);
    let mut s = connect(weir.addr()).await.unwrap();
    s.write_all(b"GET /close-delimited HTTP/1.1\r\nHost: test\r\n\r\n").await.unwrap();
    let resp = read_response(&mut s).await.expect("close-delimited response");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "close-delimited-body");
    assert_eq!(read_once(&mut s, WAIT).await, Some(0), "client connection not closed");
}

#[tokio::test]
async fn http10_backend_response_is_relayed() {
    // Goal: an HTTP/1.0 backend's unframed response reaches an HTTP/1.1 client whole.
    // Method: GET /http10, check status and body, then check weir still serves.
    let backend = TestBackend::start("b").await;
    let weir = Balancer::front(&backend);
    let mut s = connect(weir.addr()).await.unwrap();
    s.write_all(b"GET /http10 HTTP/1.1\r\nHost: test\r\n\r\n").await.unwrap();
    let resp = read_response(&mut s).await.expect("response from an HTTP/1.0 backend");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "http10-body");
    assert_eq!(read_once(&mut s, WAIT).await, Some(0), "client connection not closed");
    let mut fresh = connect(weir.addr()).await.unwrap();
    assert_reusable(&mut fresh, "an HTTP/1.0 response").await;
}

#[tokio::test]
async fn websocket_echo_through_upgrade() {
    // Goal: a WebSocket upgrade is relayed and frames flow both ways. Method: handshake
    // on /ws, check the 101 and accept key, echo a text and a binary frame, then close.
    let backend = TestBackend::start("b").await;
    let weir = Balancer::front(&backend);
    let mut s = connect(weir.addr()).await.unwrap();
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    s.write_all(&ws_client_handshake_request("test", "/ws", key)).await.unwrap();
    let resp = read_response(&mut s).await.expect("handshake response");
    assert_eq!(resp.status, 101, "{}", resp.text());
    let accept = ws_expected_accept(key);
    assert_eq!(resp.header("Sec-WebSocket-Accept"), Some(accept.as_str()));
    assert!(support::has_token(&resp.header_all("Upgrade"), "websocket"));
    assert!(support::has_token(&resp.header_all("Connection"), "upgrade"));
    let mask = [0x12, 0x34, 0x56, 0x78];
    let binary: Vec<u8> = (0..=255u8).chain(0..=255).collect();
    for (op, payload) in [(OP_TEXT, b"hello weir".to_vec()), (OP_BINARY, binary)] {
        s.write_all(&ws_encode_client_frame(op, &payload, mask)).await.unwrap();
        let echoed = ws_read_frame(&mut s).await.expect("echoed frame");
        assert_eq!(echoed, (op, payload), "echo of opcode {op}");
    }
    let close = [0x03, 0xE8];
    s.write_all(&ws_encode_client_frame(OP_CLOSE, &close, mask)).await.unwrap();
    let echoed = ws_read_frame(&mut s).await.expect("close frame");
    assert_eq!(echoed, (OP_CLOSE, close.to_vec()));
    assert_eq!(read_once(&mut s, WAIT).await, Some(0), "tunnel not closed");
}

#[tokio::test]
async fn a_websocket_tunnel_lives_while_it_talks_and_closes_once_idle() {
    // Goal: `tunnel_idle_timeout` closes an upgraded connection on which nothing moves,
    // and only then. Method: a 400 ms limit; frames every 100 ms for 1.2 s (three limits)
    // keep the tunnel open; then silence must end in EOF, no sooner than the limit after
    // the last frame sent.
    const LIMIT: Duration = Duration::from_millis(400);
    let backend = TestBackend::start("b").await;
    let weir = Balancer::over(&[backend.addr()], |c| c.pools[0].tunnel_idle_timeout = LIMIT);
    let mut s = connect(weir.addr()).await.unwrap();
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    s.write_all(&ws_client_handshake_request("test", "/ws", key)).await.unwrap();
    let resp = read_within(&mut s, "handshake").await;
    assert_eq!(resp.status, 101, "{}", resp.text());
    let mask = [1, 2, 3, 4];
    let mut last_sent = tokio::time::Instant::now();
    for i in 0..12u8 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Before the frame: the tunnel's last byte moves after it, so a client slow
        // to read the echo cannot make the close look early.
        last_sent = tokio::time::Instant::now();
        s.write_all(&ws_encode_client_frame(OP_TEXT, &[i], mask)).await.unwrap();
        let echoed = timeout(WAIT, ws_read_frame(&mut s)).await.expect("echo in time");
        assert_eq!(echoed.expect("echoed frame"), (OP_TEXT, vec![i]), "frame {i}");
    }
    closes_once_idle(&mut s, LIMIT, last_sent).await;
}

#[tokio::test]
async fn bytes_in_one_direction_alone_keep_a_tunnel_open() {
    // Goal: "no byte either way" means either way: a backend that only pushes (the client
    // never writes after the upgrade) keeps the tunnel open, and its silence closes it.
    // Method: a raw backend answers 101 (WebSocket, the one upgrade weir tunnels; the
    // bytes after it need not be frames), then sends a byte every 100 ms for 1.2 s (three
    // limits of 400 ms) and goes quiet without closing.
    const LIMIT: Duration = Duration::from_millis(400);
    const PUSHES: u8 = 12;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    // When the backend last pushed, taken before the write: the tunnel's last byte moves
    // after it.
    let last_push = std::sync::Arc::new(std::sync::Mutex::new(tokio::time::Instant::now()));
    let pushed = std::sync::Arc::clone(&last_push);
    tokio::spawn(async move {
        let (mut up, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match up.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let reply =
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n";
        up.write_all(reply).await.unwrap();
        for i in 0..PUSHES {
            tokio::time::sleep(Duration::from_millis(100)).await;
            *pushed.lock().unwrap() = tokio::time::Instant::now();
            if up.write_all(&[i]).await.is_err() {
                return;
            }
        }
        let _ = up.read(&mut buf).await; // quiet until weir closes
    });
    let weir = Balancer::over(&[backend], |c| c.pools[0].tunnel_idle_timeout = LIMIT);
    let mut s = connect(weir.addr()).await.unwrap();
    let request =
        "GET /push HTTP/1.1\r\nHost: test\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n";
    s.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let end_of_head = loop {
        if let Some(at) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = timeout(WAIT, s.read(&mut buf)).await.expect("101 in time").unwrap();
        assert_ne!(n, 0, "closed before the 101: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    };
    assert!(got.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&got));
    while got.len() < end_of_head + usize::from(PUSHES) {
        let n = timeout(WAIT, s.read(&mut buf)).await.expect("a push in time").unwrap();
        assert_ne!(n, 0, "tunnel closed after {} pushes", got.len() - end_of_head);
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got[end_of_head..], (0..PUSHES).collect::<Vec<u8>>());
    let since = *last_push.lock().unwrap();
    closes_once_idle(&mut s, LIMIT, since).await;
}
