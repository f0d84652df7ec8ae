//! [`TonicServer`]: a tonic gRPC server (tonic's own transport, hyper under it) with the
//! service `test.Echo` of the grpcio peer (`grpc_peer.py`, same methods and answers, so
//! the two stacks are interchangeable behind weir) and tonic-health's stock
//! `grpc.health.v1.Health`, steered by [`tonic_health::server::HealthReporter`].
//!
//! Messages are raw bytes ([`super::tonic_client::Raw`], a hand-written tonic codec):
//! the grpcio peer's messages are raw bytes too, and no protoc or build script is needed.
//! Beyond grpc_peer.py's methods:
//! - `Hold(m)`: one answer `held:` + m, then nothing; when the call's stream is dropped
//!   (the peer reset it) the server notes the instant ([`TonicServer::held_dropped`]);
//! - `Version`: not gRPC: a plain `200` whose body is the HTTP version the request
//!   came in, for the tests of `protocol = "auto"`.
//!
//! HTTP/1.1 is accepted as well as HTTP/2 (tonic's `accept_http1`), so one server can
//! stand for a backend that speaks either; over TLS, the ALPN list is the caller's.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::codegen::{BoxFuture, Service};
use tonic::server::{Grpc, NamedService};
use tonic::{Request, Response, Status, Streaming};
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use super::grpc::{Counts, HealthPeer};
use super::tls::Pki;
use super::tonic_client::Raw;

/// What every request and call left behind.
#[derive(Default)]
struct Shared {
    name: String,
    who: AtomicU64,
    /// Each health check answered: when, and the state last set (see [`Probed`]).
    checks: Mutex<Vec<(SystemTime, String)>>,
    /// The HTTP version of each request, in arrival order.
    versions: Mutex<Vec<http::Version>>,
    held_dropped: Mutex<Option<Instant>>,
}

/// A tonic server; stops (its listener and connections) when dropped.
pub struct TonicServer {
    /// Where it listens.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    reporter: HealthReporter,
    /// The state last set, held while it changes and while a check is answered, so
    /// a recorded check carries the state it answered.
    gate: Arc<tokio::sync::Mutex<String>>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    /// Over TLS: the task that owns the listener and runs the handshakes.
    handshakes: Option<tokio::task::JoinHandle<()>>,
}

type Incoming<IO> = std::pin::Pin<Box<dyn Stream<Item = std::io::Result<IO>> + Send>>;

impl TonicServer {
    /// Starts a cleartext (h2c or HTTP/1.1) server whose `Who` answers `name`.
    pub async fn start(name: &str) -> TonicServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        TonicServer::start_on(listener, name, None).await
    }

    /// Starts a server over TLS with a certificate for `localhost` from `pki`, offering
    /// the ALPN protocols `alpn` in that order of preference.
    pub async fn start_tls(name: &str, pki: &Pki, alpn: &[&str]) -> TonicServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let tls = Tls { config: tls_config(name, pki, alpn), websocket: false };
        TonicServer::start_on(listener, name, Some(tls)).await
    }

    /// Starts a server on `listener`, over TLS with `tls` (its ALPN list as given) when
    /// there is one.
    pub async fn start_on(listener: TcpListener, name: &str, tls: Option<Tls>) -> TonicServer {
        let addr = listener.local_addr().expect("address");
        let shared = Arc::new(Shared { name: name.to_string(), ..Shared::default() });
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter.set_service_status(SERVICE, ServingStatus::Serving).await;
        let gate = Arc::new(tokio::sync::Mutex::new("SERVING".to_string()));
        let probed = Probed { inner: health, gate: Arc::clone(&gate), shared: Arc::clone(&shared) };
        let router = tonic::transport::Server::builder()
            .accept_http1(true)
            .add_service(Echo(Arc::clone(&shared)))
            .add_service(probed);
        let (stop, stopped) = oneshot::channel::<()>();
        let stopped = async move {
            let _ = stopped.await;
        };
        let (task, handshakes) = match tls {
            None => {
                let incoming =
                    tonic::codegen::tokio_stream::wrappers::TcpListenerStream::new(listener);
                let task = tokio::spawn(async move {
                    let _ = router.serve_with_incoming_shutdown(incoming, stopped).await;
                });
                (task, None)
            }
            Some(tls) => {
                let (incoming, handshakes) = tls_incoming(listener, tls);
                let task = tokio::spawn(async move {
                    let _ = router.serve_with_incoming_shutdown(incoming, stopped).await;
                });
                (task, Some(handshakes))
            }
        };
        TonicServer { addr, shared, reporter, gate, stop: Some(stop), task, handshakes }
    }

    /// Calls of `Who` so far.
    pub fn who(&self) -> u64 {
        self.shared.who.load(Ordering::SeqCst)
    }

    /// The HTTP version of every request so far.
    pub fn versions(&self) -> Vec<http::Version> {
        self.shared.versions.lock().unwrap().clone()
    }

    /// When a `Hold` call's stream was last dropped.
    pub fn held_dropped(&self) -> Option<Instant> {
        *self.shared.held_dropped.lock().unwrap()
    }

    /// Sets the health of `service` to `state` (`SERVING`, `NOT_SERVING`); returns the
    /// time just before.
    pub async fn set_health(&self, service: &str, state: &str) -> SystemTime {
        let asked = SystemTime::now();
        let status = match state {
            "SERVING" => ServingStatus::Serving,
            "NOT_SERVING" => ServingStatus::NotServing,
            _ => panic!("no state {state}"),
        };
        let mut label = self.gate.lock().await;
        self.reporter.set_service_status(service, status).await;
        *label = state.to_string();
        asked
    }

    /// What the server counted so far.
    pub fn counts(&self) -> Counts {
        let checks = self.shared.checks.lock().unwrap().clone();
        Counts { who: self.who(), checks }
    }
}

impl TonicServer {
    /// Stops gracefully: the listener closes, open connections get GOAWAY (idle
    /// HTTP/1.1 ones close) and finish their calls. Whether every connection closed
    /// within 10 s.
    pub async fn stop(mut self) -> bool {
        let _ = self.handshakes.take().map(|handshakes| handshakes.abort());
        let _ = self.stop.take().map(|stop| stop.send(()));
        let task = &mut self.task;
        tokio::time::timeout(std::time::Duration::from_secs(10), task).await.is_ok()
    }
}

impl HealthPeer for TonicServer {
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    async fn set_health(&mut self, service: &str, state: &str) -> SystemTime {
        TonicServer::set_health(self, service, state).await
    }

    async fn counts(&mut self) -> Counts {
        TonicServer::counts(self)
    }
}

impl Drop for TonicServer {
    fn drop(&mut self) {
        let _ = self.handshakes.take().map(|handshakes| handshakes.abort());
        let _ = self.stop.take().map(|stop| stop.send(()));
        self.task.abort();
    }
}

/// A server configuration with a certificate for `localhost` (files tagged `name`)
/// from `pki`, offering `alpn`.
pub fn tls_config(name: &str, pki: &Pki, alpn: &[&str]) -> rustls::ServerConfig {
    let issued = pki.server(&["localhost"], name);
    let mut config = pki.server_config(&issued, false);
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.as_bytes().to_vec()).collect();
    config
}

/// How a [`TonicServer`] speaks TLS.
pub struct Tls {
    /// Its certificate and ALPN list.
    pub config: rustls::ServerConfig,
    /// Connections that did not choose h2 by ALPN are WebSocket echo servers
    /// ([`websocket_echo`]) instead of tonic's: a backend whose HTTP/1.1 side only
    /// upgrades.
    pub websocket: bool,
}

/// Most handshaken connections waiting for tonic to take them.
const ACCEPTED_QUEUE: usize = 64;

type TlsStream = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;

/// TLS connections accepted on `listener` with `tls`, each handshake in its own task (a
/// slow one holds up no other); a failed handshake is skipped, and with `tls.websocket`
/// so is a connection that chose HTTP/1.1 (served apart). The task owning the listener
/// is returned: aborting it closes the listener.
fn tls_incoming(listener: TcpListener, tls: Tls) -> (Incoming<TlsStream>, JoinHandle<()>) {
    let websocket = tls.websocket;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls.config));
    let (send, receive) = tokio::sync::mpsc::channel::<TlsStream>(ACCEPTED_QUEUE);
    let handshakes = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, send) = (acceptor.clone(), send.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                if websocket && tls.get_ref().1.alpn_protocol() != Some(b"h2") {
                    return websocket_echo(tls).await;
                }
                let _ = send.send(tls).await;
            });
        }
    });
    let accepted = futures_util::stream::unfold(receive, |mut receive| async move {
        receive.recv().await.map(|tls| (Ok(tls), receive))
    });
    (Box::pin(accepted), handshakes)
}

/// Answers a WebSocket upgrade on `tls` with `101` and echoes frames; anything else
/// gets `400`. Records nothing: the client sees what happened.
async fn websocket_echo(tls: TlsStream) {
    use tokio::io::AsyncWriteExt;
    let mut tls = tokio::io::BufReader::new(tls);
    let Ok(Some(head)) = super::read_head(&mut tls, super::MAX_HEAD).await else { return };
    let head = String::from_utf8_lossy(&head).to_string();
    let key = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("sec-websocket-key").then(|| value.trim().to_string())
    });
    let answer = match &key {
        Some(key) => format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            super::ws::ws_expected_accept(key)
        ),
        None => "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n".to_string(),
    };
    if tls.write_all(answer.as_bytes()).await.is_ok() && key.is_some() {
        let _ = super::ws::serve_echo(&mut tls).await;
    }
}

const SERVICE: &str = "test.Echo";

/// `test.Echo`, dispatched by path as tonic-build's generated servers do.
#[derive(Clone)]
struct Echo(Arc<Shared>);

impl NamedService for Echo {
    const NAME: &'static str = SERVICE;
}

type HttpResponse = http::Response<tonic::body::Body>;

impl Service<http::Request<tonic::body::Body>> for Echo {
    type Response = HttpResponse;
    type Error = Infallible;
    type Future = BoxFuture<HttpResponse, Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        self.0.versions.lock().unwrap().push(request.version());
        let shared = Arc::clone(&self.0);
        Box::pin(async move { Ok(dispatch(shared, request).await) })
    }
}

/// A stream of answers, as the server-streaming and bidirectional methods return.
type Answers = std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>;

fn prefixed(prefix: &str, message: &[u8]) -> Bytes {
    Bytes::from([prefix.as_bytes(), message].concat())
}

async fn dispatch(shared: Arc<Shared>, request: http::Request<tonic::body::Body>) -> HttpResponse {
    let method = request.uri().path().rsplit('/').next().unwrap_or_default().to_string();
    let mut grpc = Grpc::new(Raw);
    match method.as_str() {
        "Unary" => grpc.unary(Handler(unary), request).await,
        "Missing" => grpc.unary(Handler(missing), request).await,
        "Who" => {
            let who = move |_: Request<Bytes>| {
                shared.who.fetch_add(1, Ordering::SeqCst);
                let name = Bytes::from(shared.name.clone());
                async move { Ok(Response::new(name)) }
            };
            grpc.unary(Handler(who), request).await
        }
        "ServerStream" => grpc.server_streaming(Handler(server_stream), request).await,
        "Hold" => {
            grpc.server_streaming(Handler(move |call| hold(Arc::clone(&shared), call)), request)
                .await
        }
        "ClientStream" => grpc.client_streaming(Handler(client_stream), request).await,
        "Bidi" => grpc.streaming(Handler(bidi), request).await,
        "Version" => {
            let version = format!("{:?}", request.version());
            // `String` is an `http_body::Body`: one chunk.
            http::Response::new(tonic::body::Body::new(version))
        }
        _ => Status::unimplemented(method).into_http(),
    }
}

async fn unary(call: Request<Bytes>) -> Result<Response<Bytes>, Status> {
    Ok(Response::new(prefixed("unary:", call.get_ref())))
}

async fn missing(_: Request<Bytes>) -> Result<Response<Bytes>, Status> {
    Err(Status::not_found("no such thing"))
}

async fn server_stream(call: Request<Bytes>) -> Result<Response<Answers>, Status> {
    let message = call.into_inner();
    let answers = (0..3).map(move |i| Ok(prefixed(&format!("server:{i}:"), &message)));
    Ok(Response::new(Box::pin(futures_util::stream::iter(answers))))
}

/// Notes when the `Hold` stream holding it is dropped.
struct DropNote(Arc<Shared>);

impl Drop for DropNote {
    fn drop(&mut self) {
        *self.0.held_dropped.lock().unwrap() = Some(Instant::now());
    }
}

async fn hold(shared: Arc<Shared>, call: Request<Bytes>) -> Result<Response<Answers>, Status> {
    let first = Some(prefixed("held:", call.get_ref()));
    let answers =
        futures_util::stream::unfold((DropNote(shared), first), |(note, first)| async move {
            match first {
                Some(answer) => Some((Ok(answer), (note, None))),
                None => std::future::pending().await,
            }
        });
    Ok(Response::new(Box::pin(answers)))
}

async fn client_stream(call: Request<Streaming<Bytes>>) -> Result<Response<Bytes>, Status> {
    let mut messages = call.into_inner();
    let mut parts = Vec::new();
    while let Some(message) = messages.message().await? {
        parts.push(message);
    }
    Ok(Response::new(prefixed("client:", &parts.join(&b"+"[..]))))
}

async fn bidi(call: Request<Streaming<Bytes>>) -> Result<Response<Answers>, Status> {
    let answers = call.into_inner().map(|message| Ok(prefixed("bidi:", &message?)));
    Ok(Response::new(Box::pin(answers)))
}

/// A function as a tower service: tonic's `UnaryService` and its kin are implemented for
/// every such service.
struct Handler<F>(F);

impl<F, Fut, In, Out> Service<Request<In>> for Handler<F>
where
    F: FnMut(Request<In>) -> Fut,
    Fut: std::future::Future<Output = Result<Response<Out>, Status>>,
{
    type Response = Response<Out>;
    type Error = Status;
    type Future = Fut;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<In>) -> Fut {
        (self.0)(request)
    }
}

/// tonic-health's service, recording each `Check` it answers with the state the test
/// last set: [`TonicServer::set_health`] holds `gate` while it changes the state, and a
/// check holds it while answered, so the two never interleave.
#[derive(Clone)]
struct Probed<S> {
    inner: S,
    gate: Arc<tokio::sync::Mutex<String>>,
    shared: Arc<Shared>,
}

impl<S: NamedService> NamedService for Probed<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<tonic::body::Body>> for Probed<S>
where
    S: Service<http::Request<tonic::body::Body>, Response = HttpResponse, Error = Infallible>,
    S: Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = Infallible;
    type Future = BoxFuture<HttpResponse, Infallible>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let (mut inner, gate, shared) =
            (self.inner.clone(), Arc::clone(&self.gate), Arc::clone(&self.shared));
        Box::pin(async move {
            if !request.uri().path().ends_with("/Check") {
                return inner.call(request).await;
            }
            let label = gate.lock().await;
            let answer = inner.call(request).await;
            shared.checks.lock().unwrap().push((SystemTime::now(), label.clone()));
            answer
        })
    }
}
