//! HTTP/2 to backends (`protocol = "h2c"`), end to end: HTTP/1.1 and HTTP/2 clients
//! through weir to a real HTTP/2 server ([`H2Backend`], the `h2` crate's server).
//! Bodies are checked by length and hash.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use http::{HeaderMap, HeaderValue, Request};
use tokio::net::TcpStream;

use crate::support::h2_backend::H2Backend;
use crate::support::process::hold_port;
use crate::support::{self, pattern_bytes, pattern_hash, Balancer};
use weir::config::BackendProtocol;

const MIB: usize = 1024 * 1024;

/// weir over `backends`, speaking h2c to them.
fn weir_h2c(backends: &[SocketAddr]) -> Balancer {
    Balancer::over(backends, |config| config.pools[0].protocol = BackendProtocol::H2c)
}

/// An HTTP/2 client connection (prior knowledge) to weir.
pub(crate) async fn h2_client(addr: SocketAddr) -> SendRequest<Bytes> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (send, conn) = h2::client::handshake(tcp).await.expect("handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

/// An HTTP/2 client connection to weir whose streams' windows are 0: it takes no
/// response body byte (HEADERS are not flow-controlled).
pub(crate) async fn h2_client_not_reading(addr: SocketAddr) -> SendRequest<Bytes> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let builder = h2::client::Builder::new().initial_window_size(0).clone();
    let (send, conn) = builder.handshake::<_, Bytes>(tcp).await.expect("handshake");
    tokio::spawn(conn);
    send
}

/// What an HTTP/2 client got: status, head fields, body, trailers.
struct Got {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
    trailers: Option<HeaderMap>,
}

/// Sends a request over `client`, with `body` and `trailers` if given; reads it all.
async fn h2_request(
    client: &SendRequest<Bytes>,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
    trailers: Option<HeaderMap>,
) -> Result<Got, h2::Error> {
    let mut client = client.clone().ready().await?;
    let request =
        Request::builder().method(method).uri(format!("http://weir.test{path}")).body(()).unwrap();
    let end = body.is_none() && trailers.is_none();
    let (response, mut send) = client.send_request(request, end)?;
    if let Some(body) = body {
        let mut data = Bytes::from(body);
        while !data.is_empty() {
            send.reserve_capacity(data.len());
            let n = std::future::poll_fn(|cx| send.poll_capacity(cx)).await.expect("open")?;
            let chunk = data.split_to(n.min(data.len()));
            send.send_data(chunk, data.is_empty() && trailers.is_none())?;
        }
    }
    if let Some(trailers) = trailers {
        send.send_trailers(trailers)?;
    }
    let response = response.await?;
    let (parts, mut recv) = response.into_parts();
    let mut body = Vec::new();
    while let Some(chunk) = recv.data().await {
        let chunk = chunk?;
        let _ = recv.flow_control().release_capacity(chunk.len());
        body.extend_from_slice(&chunk);
    }
    let trailers = recv.trailers().await?;
    Ok(Got { status: parts.status.as_u16(), headers: parts.headers, body, trailers })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_and_http2_clients_reach_an_h2c_backend_with_bodies_both_ways() {
    // Goal: any client protocol reaches an h2c backend, 1 MiB both ways. Method: an
    // HTTP/1.1 client and an HTTP/2 client each upload 1 MiB to /echo and download
    // 1 MiB from /big; bodies are checked by hash.
    let backend = H2Backend::start("b1", None).await;
    let weir = weir_h2c(&[backend.addr()]);
    let upload = pattern_bytes(MIB);
    let mut head =
        format!("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: {MIB}\r\n\r\n").into_bytes();
    head.extend_from_slice(&upload);
    let mut conn = support::connect(weir.addr()).await.unwrap();
    let response = support::roundtrip(&mut conn, &head).await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.header("x-backend"), Some("b1"));
    assert_eq!(support::hash_bytes(&response.body), pattern_hash(MIB as u64));
    let big = format!("GET /big?{MIB} HTTP/1.1\r\nHost: a\r\n\r\n");
    let response = support::roundtrip(&mut conn, big.as_bytes()).await.unwrap();
    assert_eq!(response.header("content-length"), Some(&*MIB.to_string()));
    assert_eq!(support::hash_bytes(&response.body), pattern_hash(MIB as u64));
    let client = h2_client(weir.addr()).await;
    let got = h2_request(&client, "POST", "/echo", Some(upload), None).await.unwrap();
    assert_eq!((got.status, got.body.len()), (200, MIB));
    assert_eq!(support::hash_bytes(&got.body), pattern_hash(MIB as u64));
    let got = h2_request(&client, "GET", &format!("/big?{MIB}"), None, None).await.unwrap();
    assert_eq!(support::hash_bytes(&got.body), pattern_hash(MIB as u64));
    // Both clients' requests went over one upstream connection per worker at most.
    assert!(backend.accepted() <= 2, "{}", backend.accepted());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailers_pass_end_to_end() {
    // Goal: trailers cross weir h2<->h2 and h1-chunked<->h2. Method: an HTTP/2 client
    // sends trailers to /echo and gets them back (with the backend's own added); an
    // HTTP/1.1 client sends a chunked body with a trailer and reads chunked trailers;
    // /trailers answers a body then trailers.
    let backend = H2Backend::start("b1", None).await;
    let weir = weir_h2c(&[backend.addr()]);
    let client = h2_client(weir.addr()).await;
    let mut trailers = HeaderMap::new();
    trailers.insert("x-sum", HeaderValue::from_static("7"));
    let got = h2_request(&client, "POST", "/echo", Some(b"hello".to_vec()), Some(trailers))
        .await
        .unwrap();
    assert_eq!(got.body, b"hello");
    let trailers = got.trailers.expect("trailers relayed");
    assert_eq!(trailers["x-sum"], "7");
    assert_eq!(trailers["x-echoed"], "yes");
    let request = "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\
                   Trailer: x-sum\r\n\r\n5\r\nhello\r\n0\r\nx-sum: 9\r\n\r\n";
    let response = support::send(weir.addr(), request.as_bytes()).await;
    assert_eq!(response.body, b"hello");
    assert_eq!(response.trailer("x-sum"), Some("9"));
    assert_eq!(response.trailer("x-echoed"), Some("yes"));
    let response = support::send(weir.addr(), b"GET /trailers HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(response.body, b"abc");
    assert_eq!(response.trailer("x-checksum"), Some("42"));
    let got = h2_request(&client, "GET", "/trailers", None, None).await.unwrap();
    assert_eq!(got.trailers.expect("trailers")["grpc-status"], "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trailers_only_grpc_error_reaches_the_client_intact() {
    // Goal: a gRPC error that arrives as one HEADERS frame with END_STREAM reaches the
    // client as that. Method: /grpc-error answers grpc-status 5 with a message; an
    // HTTP/2 client gets them in the head with an empty body and no trailers, an
    // HTTP/1.1 client as head fields.
    let backend = H2Backend::start("b1", None).await;
    let weir = weir_h2c(&[backend.addr()]);
    let client = h2_client(weir.addr()).await;
    let got = h2_request(&client, "POST", "/grpc-error", None, None).await.unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(got.headers["grpc-status"], "5");
    assert_eq!(got.headers["grpc-message"], "no such thing");
    assert!(got.body.is_empty() && got.trailers.is_none());
    let response = support::send(
        weir.addr(),
        b"POST /grpc-error HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert_eq!(response.header("grpc-status"), Some("5"));
    assert_eq!(response.header("grpc-message"), Some("no such thing"));
}

/// Sends `total` GETs over `client`, `at_once` at a time; returns the statuses that
/// were not 200 (errors as 0).
async fn load(client: &SendRequest<Bytes>, total: usize, at_once: usize) -> Vec<u16> {
    let mut failed = Vec::new();
    for _ in 0..total / at_once {
        let batch = (0..at_once).map(|_| h2_request(client, "GET", "/", None, None));
        for result in futures_util::future::join_all(batch).await {
            match result {
                Ok(got) if got.status == 200 => {}
                Ok(got) => failed.push(got.status),
                Err(_) => failed.push(0),
            }
        }
    }
    failed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_requests_on_one_client_connection_use_one_upstream_connection() {
    // Goal: streams share upstream connections. Method: 1,000 GETs, 100 at a time, over
    // one HTTP/2 client connection (served by one worker); the backend accepts one
    // connection.
    let backend = H2Backend::start("b1", None).await;
    let weir = weir_h2c(&[backend.addr()]);
    let client = h2_client(weir.addr()).await;
    assert_eq!(load(&client, 1000, 100).await, Vec::<u16>::new());
    assert_eq!(backend.counts.streams.load(Ordering::SeqCst), 1000);
    assert_eq!(backend.accepted(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_goaway_mid_load_fails_no_request() {
    // Goal: a backend's graceful GOAWAY costs no request. Method: each backend
    // connection sends GOAWAY after 30 streams while 50 run at a time; 500 GETs all get
    // 200, over several upstream connections; the GOAWAYs are counted.
    let backend = H2Backend::start("b1", Some(30)).await;
    let weir = weir_h2c(&[backend.addr()]);
    let client = h2_client(weir.addr()).await;
    assert_eq!(load(&client, 500, 50).await, Vec::<u16>::new());
    assert!(backend.accepted() >= 2, "{}", backend.accepted());
    // Counted once a connection that got GOAWAY ends.
    let goaways = |weir: &Balancer| weir.backend_total(backend.addr(), |s| s.http2_goaways.get());
    weir.wait_for(Duration::from_secs(5), |weir| goaways(weir) >= 1).await.expect("counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reset_reaches_the_backend_as_cancel() {
    // Goal: a client's RST_STREAM reaches the backend as RST_STREAM(CANCEL), within
    // 100 ms (the bound, measured between the client's reset and its arrival
    // at the backend). Method: a GET /hold that the backend never answers; once the
    // backend has the stream the client resets it with CANCEL; the backend notes when
    // the CANCEL came.
    let backend = H2Backend::start("b1", None).await;
    let weir = weir_h2c(&[backend.addr()]);
    let client = h2_client(weir.addr()).await;
    let mut ready = client.clone().ready().await.unwrap();
    let request = Request::builder().uri("http://weir.test/hold").body(()).unwrap();
    let (response, mut send) = ready.send_request(request, true).unwrap();
    let held = tokio::spawn(response);
    let streams = &backend.counts.streams;
    let got = |_: &Balancer| streams.load(Ordering::SeqCst) == 1;
    weir.wait_for(Duration::from_secs(5), got).await.expect("the backend got the stream");
    let reset_at = std::time::Instant::now();
    send.send_reset(h2::Reason::CANCEL);
    let cancels = &backend.counts.cancels;
    let cancelled = |_: &Balancer| cancels.load(Ordering::SeqCst) == 1;
    weir.wait_for(Duration::from_secs(5), cancelled).await.expect("the backend saw CANCEL");
    let arrived = backend.counts.cancelled_at.lock().unwrap().expect("a time");
    let took = arrived.duration_since(reset_at);
    assert!(took < Duration::from_millis(100), "the CANCEL took {took:?}");
    held.abort();
}

/// A gRPC-shaped request (a POST with `content-type: application/grpc`), with more
/// fields, over `client`.
async fn grpc_call(client: &SendRequest<Bytes>, path: &str, fields: &[(&str, &str)]) -> Got {
    let mut ready = client.clone().ready().await.unwrap();
    let mut request = Request::builder()
        .method("POST")
        .uri(format!("http://weir.test{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in fields {
        request = request.header(*name, *value);
    }
    let (response, _) = ready.send_request(request.body(()).unwrap(), true).unwrap();
    let (parts, mut recv) = response.await.unwrap().into_parts();
    let mut body = Vec::new();
    while let Some(Ok(chunk)) = recv.data().await {
        body.extend_from_slice(&chunk);
    }
    let trailers = recv.trailers().await.unwrap();
    Got { status: parts.status.as_u16(), headers: parts.headers, body, trailers }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weir_fails_a_grpc_call_in_grpcs_shape() {
    // Goal: when weir itself fails a gRPC call, the client gets gRPC's answer, not a
    // text 502. Method: a pool whose only backend refuses connections; an HTTP/2
    // client's gRPC call gets a trailers-only 200 with grpc-status 14 UNAVAILABLE, an
    // HTTP/1.1 client the same fields in the head; a plain request still gets 502.
    // The port is held for the whole test, so no other test's listener can take it.
    let dead = hold_port();
    let weir = weir_h2c(&[dead.addr()]);
    let client = h2_client(weir.addr()).await;
    let got = grpc_call(&client, "/pkg.Svc/Call", &[]).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.headers["grpc-status"], "14");
    assert!(got.headers.contains_key("grpc-message"));
    assert!(got.body.is_empty() && got.trailers.is_none(), "trailers-only");
    let request = "POST /pkg.Svc/Call HTTP/1.1\r\nHost: a\r\nContent-Type: application/grpc\r\n\
                   Content-Length: 0\r\n\r\n";
    let response = support::send(weir.addr(), request.as_bytes()).await;
    assert_eq!((response.status, response.header("grpc-status")), (200, Some("14")));
    let response = support::send(weir.addr(), b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(response.status, 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_timeout_is_the_calls_deadline() {
    // Goal: `grpc-timeout` bounds the wait for the answer, and the backend hears the
    // cancel. Method: a call to /hold (never answered) with grpc-timeout 200m gets
    // grpc-status 4 DEADLINE_EXCEEDED, well before the pool's 60 s response timeout;
    // the backend sees the stream reset with CANCEL.
    let backend = H2Backend::start("b1", None).await;
    let weir = weir_h2c(&[backend.addr()]);
    let client = h2_client(weir.addr()).await;
    let call = grpc_call(&client, "/hold", &[("grpc-timeout", "200m")]);
    let got = tokio::time::timeout(Duration::from_secs(10), call).await.expect("answered");
    assert_eq!(got.headers["grpc-status"], "4");
    let cancels = &backend.counts.cancels;
    let cancelled = |_: &Balancer| cancels.load(Ordering::SeqCst) == 1;
    weir.wait_for(Duration::from_secs(5), cancelled).await.expect("the backend saw CANCEL");
}

/// A backend that answers the HTTP/2 preface with `reply` and then holds the
/// connection open; returns its address.
async fn hostile(reply: &'static [u8]) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut preface = [0u8; 24];
                let _ = tcp.read_exact(&mut preface).await;
                let _ = tcp.write_all(reply).await;
                let mut sink = [0u8; 4096];
                while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_backend_gets_the_client_a_502_never_a_hang() {
    // Goal: whatever an HTTP/2 backend does wrong, the client gets an answer: 502 (for
    // a gRPC call, grpc-status 14), in bounded time. Method: a stream reset by the
    // backend, a response head past weir's header list limit, a frame HTTP/2 forbids
    // (DATA on stream 0), and a backend that speaks HTTP/1.1.
    let backend = H2Backend::start("b1", None).await;
    let weir = weir_h2c(&[backend.addr()]);
    for path in ["/reset", "/huge-head"] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n");
        let response = support::send(weir.addr(), request.as_bytes()).await;
        assert_eq!(response.status, 502, "{path}");
        let client = h2_client(weir.addr()).await;
        let got = grpc_call(&client, path, &[]).await;
        assert_eq!(got.headers["grpc-status"], "14", "{path}");
    }
    // An empty SETTINGS frame, then DATA on stream 0: a connection error.
    let settings_then_bad_data: &[u8] =
        &[0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, b'x'];
    let http1: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
    for reply in [settings_then_bad_data, http1] {
        let weir = weir_h2c(&[hostile(reply).await]);
        let send = support::send(weir.addr(), b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        let response = tokio::time::timeout(Duration::from_secs(10), send).await.expect("no hang");
        assert_eq!(response.status, 502, "{}", reply.escape_ascii());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_upstream_connection_closes_after_idle_timeout() {
    // Goal: an upstream HTTP/2 connection without streams is closed after the pool's
    // `idle_timeout`, as an idle HTTP/1 one is. Method: idle_timeout 200 ms; one GET;
    // the backend sees its connection end (the worker's sweep runs every second).
    let backend = H2Backend::start("b1", None).await;
    let weir = Balancer::over(&[backend.addr()], |config| {
        config.pools[0].protocol = BackendProtocol::H2c;
        config.pools[0].idle_timeout = Duration::from_millis(200);
    });
    let response = support::send(weir.addr(), b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(response.status, 200);
    let closed = &backend.counts.closed;
    let ended = |_: &Balancer| closed.load(Ordering::SeqCst) == 1;
    weir.wait_for(Duration::from_secs(5), ended).await.expect("the idle connection closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_holds_its_window_not_the_download() {
    // Goal: flow control holds across weir: a client that reads nothing makes the
    // backend stop sending, with at most the windows and buffers on the way in between.
    // Method: an HTTP/2 client with a 16 KiB stream window asks for 8 MiB and reads
    // nothing; the backend's sending stalls well short of it: at most weir's upstream
    // window (64 KiB), its client-side send buffer (64 KiB) and the client's window,
    // plus a 16 KiB part in flight; 512 KiB is the bound asserted.
    let backend = H2Backend::start("b1", None).await;
    let weir = weir_h2c(&[backend.addr()]);
    let tcp = TcpStream::connect(weir.addr()).await.unwrap();
    let mut builder = h2::client::Builder::new();
    builder.initial_window_size(16 * 1024);
    let (client, conn) = builder.handshake::<_, Bytes>(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut ready = client.ready().await.unwrap();
    let request = Request::builder().uri(format!("http://weir.test/big?{}", 8 * MIB)).body(());
    let (response, _send) = ready.send_request(request.unwrap(), true).unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    // Give the backend time to send all it can, then check it stalled.
    let sent = &backend.counts.body_sent;
    let stalled = |_: &Balancer| sent.load(Ordering::SeqCst) > 0;
    weir.wait_for(Duration::from_secs(5), stalled).await.expect("the body began");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = sent.load(Ordering::SeqCst);
    assert!(sent <= 512 * 1024, "the backend sent {sent} bytes to a client that read none");
    drop(response);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_stream_is_sent_again_whatever_its_method() {
    // Goal: a stream the backend refused (REFUSED_STREAM: never processed) goes again on
    // a new connection, even a POST with a body. Method: /refuse-once refuses the first
    // stream; a POST with a body gets its echo, on the backend's second connection.
    let backend = H2Backend::start("b1", None).await;
    let weir = weir_h2c(&[backend.addr()]);
    let request = "POST /refuse-once HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
    let response = support::send(weir.addr(), request.as_bytes()).await;
    assert_eq!((response.status, &response.body[..]), (200, &b"hello"[..]));
    assert_eq!(backend.counts.refused.load(Ordering::SeqCst), 2, "refused, then served");
    assert_eq!(backend.accepted(), 2, "sent again on a new connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_calls_on_one_client_connection_spread_over_three_backends() {
    // Goal: balancing is per call, not per connection, and the upstream side multiplexes.
    // Method: 10,000 gRPC-shaped POSTs, 100 at a time, over one HTTP/2 client
    // connection to a round-robin pool of 3 h2c backends: each backend gets 33% ±2%,
    // over one connection (the client connection is served by one worker).
    let backends = [
        H2Backend::start("b1", None).await,
        H2Backend::start("b2", None).await,
        H2Backend::start("b3", None).await,
    ];
    let addrs: Vec<SocketAddr> = backends.iter().map(H2Backend::addr).collect();
    let weir = weir_h2c(&addrs);
    let client = h2_client(weir.addr()).await;
    for _ in 0..100 {
        let batch = (0..100).map(|_| grpc_call(&client, "/pkg.Svc/Call", &[]));
        for got in futures_util::future::join_all(batch).await {
            assert_eq!(got.status, 200);
        }
    }
    for backend in &backends {
        let share = backend.counts.streams.load(Ordering::SeqCst);
        assert!((3_133..=3_533).contains(&share), "{share} of 10,000");
        assert_eq!(backend.accepted(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_pool_refuses_a_tls_backend_that_does_not_choose_h2() {
    // Goal: `protocol = "h2"` never sends HTTP/2 to a backend that did not agree to it
    // by ALPN. Method: an HTTPS backend that speaks HTTP/1.1 only (no ALPN); a request
    // through weir gets 502, and the backend sees no request.
    use crate::support::tls::{https_config, trusting, Pki, TlsBackend};
    let pki = Pki::new("h2-no-alpn");
    let config = pki.server_config(&pki.server(&["localhost"], "h1"), false);
    let backend = TlsBackend::start("h1", config).await;
    let weir = Balancer::start({
        let mut config = https_config(backend.addr(), trusting(&pki));
        config.pools[0].protocol = BackendProtocol::H2;
        config.pools[0].retry.attempts = 0;
        config
    });
    let response = support::send(weir.addr(), b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(response.status, 502);
    assert!(backend.accepted() >= 1, "weir connected");
    assert_eq!(backend.requests(), 0, "and sent nothing the backend took as a request");
}
