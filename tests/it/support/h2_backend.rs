//! [`H2Backend`]: a real HTTP/2 origin server (the `h2` crate's server, cleartext with
//! prior knowledge) on 127.0.0.1 for the tests of HTTP/2 to backends. It counts the
//! connections it accepted and routes by path:
//! - `/echo`: the request body back, `x-backend` naming the server; request trailers
//!   come back as response trailers, with `x-echoed: yes` added;
//! - `/big?N`: N pattern bytes with `Content-Length` (see [`super::pattern_bytes`]);
//! - `/trailers`: `abc`, then trailers `x-checksum: 42` and `grpc-status: 0`;
//! - `/grpc-error`: a trailers-only answer (HEADERS with END_STREAM): `grpc-status: 5`,
//!   `grpc-message: no such thing`;
//! - `/reset`: resets the stream (`INTERNAL_ERROR`) instead of answering;
//! - `/huge-head`: a response head with a 100 KiB field, past weir's header list limit;
//! - `/refuse-once`: the first such stream the backend gets is refused (RST_STREAM
//!   `REFUSED_STREAM`), later ones are echoed as `/echo`;
//! - `/refuse-at?NAME`, `/reset-at?NAME`: a backend named NAME refuses every such
//!   stream (RST_STREAM `REFUSED_STREAM`), or resets it (`INTERNAL_ERROR`), once it has
//!   read the whole request and before any answer; the others echo it as `/echo`;
//! - `/unavailable-once`: the first such stream a backend named `flaky` gets is
//!   answered trailers-only with `grpc-status: 14` (UNAVAILABLE), after reading its
//!   request; every other is echoed as `/echo`;
//! - `/hold`: answers nothing; the stream's reset by the peer is recorded (`cancels`);
//! - `/gate?N`: the server's name, once the backend has received N streams in all;
//! - `/status?N`: status N, no body;
//! - `/early-hints?N`: N interim `103 Early Hints` heads (`link: </style.css>;
//!   rel=preload` and `x-hint: K`, K from 1), then the server's name;
//! - `/informational-101`: an interim `101` (which HTTP/2 forbids), then the name;
//! - anything else: the server's name.
//!
//! It speaks cleartext HTTP/2 ([`H2Backend::start`]) or HTTP/2 over TLS when the client
//! chooses h2 by ALPN ([`H2Backend::start_tls`]).
//!
//! [`H2Backend::start_limited`] advertises a SETTINGS_MAX_CONCURRENT_STREAMS (the
//! codec refuses streams past it). A connection can be told to send GOAWAY (graceful: 2^31-1, a PING, the final id) after
//! a number of streams.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::RecvStream;
use http::{HeaderMap, HeaderValue, Request, Response};
use tokio::net::TcpListener;

/// What an [`H2Backend`] counted.
#[derive(Default)]
pub struct Counts {
    /// Connections accepted.
    pub accepted: AtomicUsize,
    /// Streams (requests) received.
    pub streams: AtomicUsize,
    /// Streams the peer reset (`/hold` only), with the reason CANCEL.
    pub cancels: AtomicUsize,
    /// When the last such CANCEL arrived, as the backend saw it.
    pub cancelled_at: std::sync::Mutex<Option<std::time::Instant>>,
    /// Connections that ended.
    pub closed: AtomicUsize,
    /// Response body bytes the peer's window let through, all streams together.
    pub body_sent: AtomicUsize,
    /// Streams refused (`/refuse-once`).
    pub refused: AtomicUsize,
    /// Calls answered UNAVAILABLE (`/unavailable-once`).
    pub unavailable: AtomicUsize,
    /// Woken at each stream received (`/gate`).
    arrived: tokio::sync::Notify,
}

/// An HTTP/2 backend; stops when dropped.
pub struct H2Backend {
    addr: SocketAddr,
    /// Its counters.
    pub counts: Arc<Counts>,
    task: tokio::task::JoinHandle<()>,
}

impl H2Backend {
    /// Returns once the backend has accepted `streams` streams in all.
    pub async fn streams_reach(&self, streams: usize) {
        gate(&self.counts, streams).await;
    }

    /// Starts a backend named `name`; with `goaway_after`, each connection sends a
    /// graceful GOAWAY after that many streams and closes once they are done.
    pub async fn start(name: &str, goaway_after: Option<usize>) -> H2Backend {
        H2Backend::start_with(name, Serve { goaway_after, max_streams: None }, None).await
    }

    /// Starts a cleartext backend named `name` that advertises
    /// SETTINGS_MAX_CONCURRENT_STREAMS `max_streams`.
    pub async fn start_limited(name: &str, max_streams: u32) -> H2Backend {
        let serve = Serve { goaway_after: None, max_streams: Some(max_streams) };
        H2Backend::start_with(name, serve, None).await
    }

    /// Starts a backend named `name` over TLS with `config` (its ALPN list decides
    /// what weir may choose; connections that do not choose h2 are closed).
    pub async fn start_tls(name: &str, config: rustls::ServerConfig) -> H2Backend {
        H2Backend::start_with(name, Serve::default(), Some(config)).await
    }

    async fn start_with(
        name: &str,
        serve_as: Serve,
        tls: Option<rustls::ServerConfig>,
    ) -> H2Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let counts = Arc::new(Counts::default());
        let (name, shared) = (Arc::<str>::from(name), Arc::clone(&counts));
        let acceptor = tls.map(|config| tokio_rustls::TlsAcceptor::from(Arc::new(config)));
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                shared.accepted.fetch_add(1, Ordering::SeqCst);
                let (name, counts) = (Arc::clone(&name), Arc::clone(&shared));
                let Some(acceptor) = acceptor.clone() else {
                    tokio::spawn(serve(tcp, name, counts, serve_as));
                    continue;
                };
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                        serve(tls, name, counts, serve_as).await;
                    }
                });
            }
        });
        H2Backend { addr, counts, task }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.counts.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for H2Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How a backend's connections behave.
#[derive(Clone, Copy, Default)]
struct Serve {
    /// A graceful GOAWAY after this many streams.
    goaway_after: Option<usize>,
    /// The SETTINGS_MAX_CONCURRENT_STREAMS advertised (the codec's default, none, else).
    max_streams: Option<u32>,
}

async fn serve<T>(io: T, name: Arc<str>, counts: Arc<Counts>, serve_as: Serve)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut builder = h2::server::Builder::new();
    if let Some(max) = serve_as.max_streams {
        builder.max_concurrent_streams(max);
    }
    let Ok(mut conn) = builder.handshake(io).await else { return };
    let (goaway_after, mut served) = (serve_as.goaway_after, 0);
    while let Some(Ok((request, respond))) = conn.accept().await {
        served += 1;
        counts.streams.fetch_add(1, Ordering::SeqCst);
        counts.arrived.notify_waiters();
        tokio::spawn(answer(request, respond, Arc::clone(&name), Arc::clone(&counts)));
        if goaway_after == Some(served) {
            conn.graceful_shutdown();
        }
    }
    counts.closed.fetch_add(1, Ordering::SeqCst);
}

/// The reset `/refuse-at?NAME` and `/reset-at?NAME` give on the backend named NAME.
fn fault_at(path: &str, query: &str, name: &str) -> Option<h2::Reason> {
    match path {
        "/refuse-at" if query == name => Some(h2::Reason::REFUSED_STREAM),
        "/reset-at" if query == name => Some(h2::Reason::INTERNAL_ERROR),
        _ => None,
    }
}

async fn answer(
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    name: Arc<str>,
    counts: Arc<Counts>,
) {
    let mut path = request.uri().path().to_string();
    if path == "/refuse-once" {
        if counts.refused.fetch_add(1, Ordering::SeqCst) == 0 {
            respond.send_reset(h2::Reason::REFUSED_STREAM);
            return;
        }
        path = "/echo".into();
    }
    let query = request.uri().query().unwrap_or("").to_string();
    let mut body = request.into_body();
    let (data, trailers) = read_all(&mut body).await;
    // After the whole request: weir has all of it to send again, whatever the timing.
    if let Some(reason) = fault_at(&path, &query, &name) {
        respond.send_reset(reason);
        return;
    }
    if path == "/refuse-at" || path == "/reset-at" {
        path = "/echo".into();
    }
    if path == "/unavailable-once" {
        if unavailable_once(&mut respond, &name, &counts) {
            return;
        }
        path = "/echo".into();
    }
    let mut head = Response::builder().status(200).header("x-backend", &*name);
    match path.as_str() {
        "/echo" => {
            let mut send = respond.send_response(head.body(()).unwrap(), false).unwrap();
            send_all(&mut send, data, trailers.is_none()).await;
            if let Some(mut trailers) = trailers {
                trailers.insert("x-echoed", HeaderValue::from_static("yes"));
                let _ = send.send_trailers(trailers);
            }
        }
        "/big" => {
            let n: usize = query.parse().unwrap_or(1024 * 1024);
            head = head.header("content-length", n);
            let mut send = respond.send_response(head.body(()).unwrap(), false).unwrap();
            let body = Bytes::from(super::pattern_bytes(n));
            send_counted(&mut send, body, &counts.body_sent).await;
        }
        "/trailers" => {
            send_with_trailers(respond.send_response(head.body(()).unwrap(), false).unwrap()).await
        }
        "/grpc-error" | "/status" | "/huge-head" => {
            let head = head_only(head, &path, &query);
            let _ = respond.send_response(head.body(()).unwrap(), true);
        }
        "/reset" => respond.send_reset(h2::Reason::INTERNAL_ERROR),
        "/early-hints" | "/informational-101" => {
            interim(&mut respond, &path, &query);
            send_name(respond.send_response(head.body(()).unwrap(), false), &name).await;
        }
        "/hold" => hold(&mut respond, &counts).await,
        "/gate" => {
            gate(&counts, query.parse().unwrap_or(0)).await;
            let send = respond.send_response(head.body(()).unwrap(), false).unwrap();
            send_name(Ok(send), &name).await;
        }
        _ => send_name(respond.send_response(head.body(()).unwrap(), false), &name).await,
    }
}

/// The head of an answer that ends with it, for `path` (`/grpc-error`, `/status` or
/// `/huge-head`) and `query`.
fn head_only(head: http::response::Builder, path: &str, query: &str) -> http::response::Builder {
    match path {
        "/grpc-error" => head
            .header("content-type", "application/grpc")
            .header("grpc-status", "5")
            .header("grpc-message", "no such thing"),
        "/status" => head.status(query.parse::<u16>().unwrap_or(500)),
        _ => head.header("x-huge", "h".repeat(100 * 1024)),
    }
}

/// `abc`, then trailers `x-checksum: 42` and `grpc-status: 0`.
async fn send_with_trailers(mut send: h2::SendStream<Bytes>) {
    send_all(&mut send, Bytes::from_static(b"abc"), false).await;
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", HeaderValue::from_static("42"));
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let _ = send.send_trailers(trailers);
}

/// The interim heads of `/early-hints?N` (N `103 Early Hints`, numbered by `x-hint`)
/// or of `/informational-101`.
fn interim(respond: &mut SendResponse<Bytes>, path: &str, query: &str) {
    if path == "/informational-101" {
        let _ = respond.send_informational(Response::builder().status(101).body(()).unwrap());
        return;
    }
    for hint in 1..=query.parse().unwrap_or(1) {
        let early = Response::builder()
            .status(103)
            .header("link", "</style.css>; rel=preload")
            .header("x-hint", hint.to_string());
        let _ = respond.send_informational(early.body(()).unwrap());
    }
}

/// Answers nothing; records the peer's CANCEL, and when it came.
async fn hold(respond: &mut SendResponse<Bytes>, counts: &Counts) {
    let reset = std::future::poll_fn(|cx| respond.poll_reset(cx)).await;
    if matches!(reset, Ok(h2::Reason::CANCEL)) {
        let now = std::time::Instant::now();
        *counts.cancelled_at.lock().unwrap() = Some(now);
        counts.cancels.fetch_add(1, Ordering::SeqCst);
    }
}

/// Sends `name` as the body, ending the stream; nothing if the head could not go (weir
/// reset the stream first, as it does a request it cannot finish).
async fn send_name(send: Result<h2::SendStream<Bytes>, h2::Error>, name: &str) {
    if let Ok(mut send) = send {
        send_all(&mut send, Bytes::from(name.as_bytes().to_vec()), true).await;
    }
}

/// Returns once the backend has received `streams` streams in all.
async fn gate(counts: &Counts, streams: usize) {
    // Bounded by the test: each pass waits for another stream.
    loop {
        let arrived = counts.arrived.notified();
        tokio::pin!(arrived);
        arrived.as_mut().enable();
        if counts.streams.load(Ordering::SeqCst) >= streams {
            return;
        }
        arrived.await;
    }
}

/// Answers UNAVAILABLE, trailers-only, if this backend is `flaky` and has not yet;
/// returns whether it did.
fn unavailable_once(respond: &mut SendResponse<Bytes>, name: &str, counts: &Counts) -> bool {
    let first = counts.unavailable.compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst);
    if name != "flaky" || first.is_err() {
        return false;
    }
    let head = Response::builder()
        .status(200)
        .header("content-type", "application/grpc")
        .header("grpc-status", "14")
        .header("grpc-message", "try another");
    let _ = respond.send_response(head.body(()).unwrap(), true);
    true
}

/// The whole request body and its trailers.
async fn read_all(body: &mut RecvStream) -> (Bytes, Option<HeaderMap>) {
    let mut data = Vec::new();
    while let Some(Ok(chunk)) = body.data().await {
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    let trailers = body.trailers().await.ok().flatten();
    (Bytes::from(data), trailers)
}

/// Sends `data` as the peer's window allows, ending the stream, adding the bytes to
/// `sent` as they go.
async fn send_counted(send: &mut h2::SendStream<Bytes>, mut data: Bytes, sent: &AtomicUsize) {
    // Bounded by the data: each pass sends a part, or ends.
    while !data.is_empty() {
        let part = data.split_to(data.len().min(16 * 1024));
        sent.fetch_add(part.len(), Ordering::SeqCst);
        if send_all(send, part, data.is_empty()).await < 1 {
            return;
        }
    }
}

/// Sends `data` as the peer's window allows; ends the stream when `end`. Returns the
/// bytes sent.
async fn send_all(send: &mut h2::SendStream<Bytes>, mut data: Bytes, end: bool) -> usize {
    let total = data.len();
    if data.is_empty() && end {
        let _ = send.send_data(Bytes::new(), true);
    }
    while !data.is_empty() {
        send.reserve_capacity(data.len());
        let Some(Ok(n)) = std::future::poll_fn(|cx| send.poll_capacity(cx)).await else { break };
        let chunk = data.split_to(n.min(data.len()));
        if send.send_data(chunk, end && data.is_empty()).is_err() {
            break;
        }
    }
    total - data.len()
}
