//! Faults of one client on a shared upstream HTTP/2 connection stay that client's.
//!
//! Requests an HTTP/1.1 backend takes and HTTP/2 cannot carry (the `http` crate refuses
//! a target with `<` or `"`, a Host that is no authority; weir relays at most 100
//! trailer fields): to an h2c pool they get 400 at once, reach no backend (or have their
//! stream reset), and count nothing against it. They used to wait `response_timeout`,
//! get 504, and count as the backend's timeouts: three of them ejected it. And clients
//! that read nothing hold their streams' windows, not the connection's.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::support::client::{raw_request_timeout, send};
use crate::support::h2_backend::H2Backend;
use crate::support::Balancer;
use weir::config::BackendProtocol;

/// Far longer than the test's own wait for each answer: a request that waits for it
/// fails the test.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the test waits for each answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_http2_cannot_carry_get_400_and_leave_the_backend_in_rotation() {
    let backend = H2Backend::start("h2", None).await;
    let weir = Balancer::over(&[backend.addr()], |config| {
        let pool = &mut config.pools[0];
        pool.protocol = BackendProtocol::H2c;
        pool.response_timeout = RESPONSE_TIMEOUT;
        // One failure would eject the only backend: the good request at the end
        // would then get 503.
        pool.passive.consecutive_failures = 1;
    });
    let trailers: String = (0..101).map(|i| format!("t{i}: 1\r\n")).collect();
    let cases = [
        "GET /a<b HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".to_string(),
        "GET /q?x=\"y\" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".to_string(),
        "GET / HTTP/1.1\r\nHost: a%b\r\nConnection: close\r\n\r\n".to_string(),
        format!(
            "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\
             Connection: close\r\n\r\n2\r\nhi\r\n0\r\n{trailers}\r\n"
        ),
    ];
    for case in &cases {
        let got = raw_request_timeout(weir.addr(), case.as_bytes(), ANSWER_WITHIN).await;
        let got = String::from_utf8_lossy(&got);
        assert!(got.starts_with("HTTP/1.1 400 "), "{case:?} got {got:?}");
    }
    // Only the request with trailers had a head HTTP/2 could carry. Its stream opened
    // before weir read the trailers and reset it, but the backend may take it after the
    // client's 400: wait for it (it failed 1 run in the CI of 2026-12-07 21:06 when read
    // at once), then check that no other came.
    let reached = tokio::time::timeout(ANSWER_WITHIN, backend.streams_reach(1)).await;
    assert!(reached.is_ok(), "the stream of the request with trailers reached the backend");
    assert_eq!(backend.counts.streams.load(Ordering::SeqCst), 1);
    let good = send(weir.addr(), b"GET /ok HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").await;
    assert_eq!(good.status, 200, "the backend is still in rotation");
    assert_eq!(backend.counts.streams.load(Ordering::SeqCst), 2, "only the good request came on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_read_nothing_do_not_stop_other_downloads_on_the_connection() {
    // Goal: streams whose clients read nothing keep at most their own windows, never the
    // whole upstream connection's: another client's download on the same connection
    // goes on. Method: one HTTP/2 client with a window of 0 opens 40 downloads of 1 MiB
    // (each holds a stream window in weir: 40 of them are 2.5 MiB, more than the 1 MiB
    // connection window weir gave every connection before), then an HTTP/1.1 client
    // downloads 2 MiB through the same worker and backend connection. It timed out.
    let backend = H2Backend::start("h2", None).await;
    let weir = Balancer::over(&[backend.addr()], |config| {
        config.server.workers = 1;
        config.pools[0].protocol = BackendProtocol::H2c;
    });
    let client = crate::h2up::h2_client_not_reading(weir.addr()).await;
    let mut stalled = Vec::new();
    for _ in 0..40 {
        let mut client = client.clone().ready().await.unwrap();
        let request = http::Request::get("http://a/big?1048576").body(()).unwrap();
        stalled.push(client.send_request(request, true).unwrap().0.await.unwrap());
    }
    let full = 2 * 1024 * 1024;
    // Wait until the stalled streams took a connection window's worth as it was (they
    // take 40 stream windows, 2.5 MiB, now).
    let sent = || backend.counts.body_sent.load(Ordering::SeqCst);
    let took = weir.wait_for(Duration::from_secs(10), |_| sent() >= 1024 * 1024).await;
    assert!(took.is_some(), "the stalled streams took {} bytes", sent());
    let request = format!("GET /big?{full} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    let got = raw_request_timeout(weir.addr(), request.as_bytes(), ANSWER_WITHIN).await;
    assert!(got.starts_with(b"HTTP/1.1 200 "), "{:?}", String::from_utf8_lossy(&got[..64]));
    let body_at = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(got.len() - body_at, full, "the whole body, while 40 streams stall");
    assert_eq!(backend.accepted(), 1, "all on one upstream connection");
    drop(stalled);
}

/// weir over two h2c backends, `a` and `b`, round robin.
async fn pair() -> (H2Backend, H2Backend, Balancer) {
    let (a, b) = (H2Backend::start("a", None).await, H2Backend::start("b", None).await);
    let weir = Balancer::over(&[a.addr(), b.addr()], |config| {
        config.server.workers = 1;
        let pool = &mut config.pools[0];
        pool.protocol = BackendProtocol::H2c;
        pool.passive.consecutive_failures = 3;
    });
    (a, b, weir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_refused_again_on_a_new_connection_goes_to_another_backend() {
    // Goal: a stream the backend refused was never processed (RFC 9113 §8.7), so a POST
    // may go anywhere: refused on a new connection too, it goes to the other backend.
    // It got 502. Method: backend `a` refuses every such stream; 4 POSTs, half of them
    // picked for `a` first.
    let (a, b, weir) = pair().await;
    for _ in 0..4 {
        let post = b"POST /refuse-at?a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
        let got = send(weir.addr(), post).await;
        assert_eq!((got.status, got.text()), (200, "hello".to_string()));
    }
    assert_eq!(b.counts.streams.load(Ordering::SeqCst), 4, "every POST was answered by b");
    assert!(a.counts.streams.load(Ordering::SeqCst) >= 2, "a refused its share");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_a_backend_resets_count_against_it_on_a_reused_connection() {
    // Goal: a backend that resets streams before answering is ejected by passive
    // health, though its connection is reused: an RST_STREAM is an answer about the
    // request, not a pooled connection's idle-close race. Method: `a` resets every
    // such stream; 10 POSTs (not retried) alternate; after 3 failures in a row `a` is
    // out, so it gets 3 streams. Only its first, on a new connection, counted: it got 5.
    let (a, b, weir) = pair().await;
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let post = b"POST /reset-at?a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
        statuses.push(send(weir.addr(), post).await.status);
    }
    assert_eq!(a.counts.streams.load(Ordering::SeqCst), 3, "statuses {statuses:?}");
    assert_eq!(b.counts.streams.load(Ordering::SeqCst), 7);
    assert_eq!(statuses.iter().filter(|&&s| s == 502).count(), 3, "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_is_answered_for_an_http2_backend() {
    // Goal: a client that waits for `100 Continue` before its body (RFC 9110 §10.1.1)
    // gets it from weir, since the HTTP/2 backend's interim answer cannot come back
    // through the codec: it waited for its own timeout (curl: 1 s, on every upload over
    // 1 MiB) or, waiting on, got 408 at `body_timeout`. Method: a raw client sends the
    // head, waits for the 100, then sends the body and reads the echo.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_backend, weir) = refusing().await;
    let mut conn = tokio::net::TcpStream::connect(weir.addr()).await.unwrap();
    let head = "PUT /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\
                Connection: close\r\n\r\n";
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut interim = [0u8; 25];
    let read = tokio::time::timeout(ANSWER_WITHIN, conn.read_exact(&mut interim)).await;
    assert!(matches!(read, Ok(Ok(_))), "no 100 Continue: {read:?}");
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    conn.write_all(b"hello").await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(ANSWER_WITHIN, conn.read_to_end(&mut rest)).await;
    let rest = String::from_utf8_lossy(&rest);
    let echoed = rest.ends_with("\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
    assert!(rest.starts_with("HTTP/1.1 200 ") && echoed, "{rest}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_post_with_expect_is_still_sent_again() {
    // Goal: weir's own `100 Continue` is not the backend's answer: a stream refused
    // after it was never processed, and goes again (here to the other backend). It got
    // 502, as if the backend had sent bytes. Method: 4 POSTs with `Expect:
    // 100-continue`, each sending its body after the 100; backend `a` refuses them all.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (a, b, weir) = pair().await;
    for _ in 0..4 {
        let mut conn = tokio::net::TcpStream::connect(weir.addr()).await.unwrap();
        let head = "POST /refuse-at?a HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\
                    Content-Length: 5\r\nConnection: close\r\n\r\n";
        conn.write_all(head.as_bytes()).await.unwrap();
        let mut interim = [0u8; 25];
        let read = tokio::time::timeout(ANSWER_WITHIN, conn.read_exact(&mut interim)).await;
        assert!(matches!(read, Ok(Ok(_))), "no 100 Continue: {read:?}");
        conn.write_all(b"hello").await.unwrap();
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(ANSWER_WITHIN, conn.read_to_end(&mut rest)).await;
        let rest = String::from_utf8_lossy(&rest);
        let final_head = rest.find("HTTP/1.1 2").or_else(|| rest.find("HTTP/1.1 5"));
        let answer = &rest[final_head.unwrap_or(0)..];
        assert!(answer.starts_with("HTTP/1.1 200 ") && answer.contains("hello"), "{rest}");
    }
    assert_eq!(b.counts.streams.load(Ordering::SeqCst), 4, "every POST was answered by b");
    assert!(a.counts.streams.load(Ordering::SeqCst) >= 2, "a refused its share");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_refused_before_its_body_came_is_sent_again_whole() {
    // Goal: a stream the backend refused at its HEADERS was never processed (RFC 9113
    // §8.7), so the request goes again, even when the refusal comes before the client
    // sent all its body: weir reads the rest into its replay copy (the refused stream
    // drops it) and sends the whole request on. It got 502 at once. Method: for a
    // Content-Length and a chunked body, a backend that refuses its first stream; the
    // client sends the head and half the body, waits for the refusal, sees no answer
    // come, then sends the rest: the echo is the whole body.
    use crate::support::{connect, read_response};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let forms = [
        ("Content-Length: 10", "hello", "world"),
        ("Transfer-Encoding: chunked", "5\r\nhello\r\n", "5\r\nworld\r\n0\r\n\r\n"),
    ];
    for (framing, first, rest) in forms {
        let (backend, weir) = refusing().await;
        let mut s = connect(weir.addr()).await.unwrap();
        let head = format!("POST /refuse-once HTTP/1.1\r\nHost: x\r\n{framing}\r\n\r\n{first}");
        s.write_all(head.as_bytes()).await.unwrap();
        wait_refused(&backend).await;
        let mut early = [0u8; 64];
        let answered = tokio::time::timeout(Duration::from_millis(200), s.read(&mut early)).await;
        assert!(answered.is_err(), "{framing}: answered before the body came: {answered:?}");
        s.write_all(rest.as_bytes()).await.unwrap();
        let got = tokio::time::timeout(ANSWER_WITHIN, read_response(&mut s)).await;
        let got = got.expect("an answer").expect("a response");
        assert_eq!((got.status, got.text()), (200, "helloworld".to_string()), "{framing}");
        assert_eq!(backend.counts.streams.load(Ordering::SeqCst), 2, "{framing}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_clients_post_refused_before_its_body_came_is_sent_again_whole() {
    // Goal: as above, for an HTTP/2 client, whose body weir reads as DATA frames. Method:
    // the client sends HEADERS and 5 bytes of DATA, waits for the backend's refusal, sees
    // no answer come, then sends the last 5 bytes: the echo is the whole body.
    let (backend, weir) = refusing().await;
    let client = crate::h2up::h2_client(weir.addr()).await;
    let mut client = client.ready().await.expect("ready");
    let request = http::Request::post("http://x/refuse-once").body(()).unwrap();
    let (mut response, mut send) = client.send_request(request, false).expect("sent");
    send.send_data(bytes::Bytes::from_static(b"hello"), false).expect("first half");
    wait_refused(&backend).await;
    let early = tokio::time::timeout(Duration::from_millis(200), &mut response).await;
    assert!(early.is_err(), "answered before the body came: {early:?}");
    send.send_data(bytes::Bytes::from_static(b"world"), true).expect("second half");
    let response = tokio::time::timeout(ANSWER_WITHIN, response).await.expect("an answer");
    let response = response.expect("a response");
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut got = Vec::new();
    // Bounded by the echo: 10 bytes.
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("body");
        let _ = body.flow_control().release_capacity(chunk.len());
        got.extend_from_slice(&chunk);
    }
    assert_eq!(got, b"helloworld");
    assert_eq!(backend.counts.streams.load(Ordering::SeqCst), 2);
}

/// Waits until `backend` refused a stream (`/refuse-once`), for at most 10 s.
async fn wait_refused(backend: &H2Backend) {
    let refused = || backend.counts.refused.load(Ordering::SeqCst) >= 1;
    // Bounded: 1,000 waits of 10 ms.
    for _ in 0..1000 {
        if refused() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused(), "the backend refused the stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_grpc_call_whose_client_waits_to_end_its_body_fails_soon() {
    // Goal: a refused call whose client waits for an answer before it ends its body (a
    // bidirectional gRPC call) is not held for the rest of its body: after a short wait
    // (2 s) it gets `UNAVAILABLE`, which gRPC clients retry. Waiting for the body held it
    // for `stream_idle_timeout` (an hour by default), then answered DEADLINE_EXCEEDED.
    // Method: a gRPC-shaped POST sends one message and keeps its body open.
    let (backend, weir) = refusing().await;
    let client = crate::h2up::h2_client(weir.addr()).await;
    let mut client = client.ready().await.expect("ready");
    let request = http::Request::post("http://x/refuse-once")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (response, mut send) = client.send_request(request, false).expect("sent");
    send.send_data(bytes::Bytes::from_static(b"\0\0\0\0\x01x"), false).expect("a message");
    let response = tokio::time::timeout(ANSWER_WITHIN, response).await.expect("an answer soon");
    let response = response.expect("a response");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["grpc-status"], "14", "{:?}", response.headers());
    assert_eq!(backend.counts.refused.load(Ordering::SeqCst), 1);
    drop(send);
}

/// An h2c backend (it refuses its first `/refuse-once` stream) and weir over it.
async fn refusing() -> (H2Backend, Balancer) {
    let backend = H2Backend::start("h2", None).await;
    let weir = Balancer::over(&[backend.addr()], |config| {
        config.pools[0].protocol = BackendProtocol::H2c;
    });
    (backend, weir)
}
