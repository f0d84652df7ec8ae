//! `protocol = "auto"` (the default) with `https://` backends: weir offers ALPN
//! `h2, http/1.1`, speaks HTTP/2 to a backend that chooses h2 and HTTP/1.1 to one that
//! does not, remembers the answer per backend, and finds out again after a failed
//! connect. Upgrades offer only `http/1.1`. The backends are tonic servers over TLS
//! (`support/tonic_server.rs`) that accept both protocols; `/test.Echo/Version` answers
//! the HTTP version the request reached them in.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use crate::support::client::{connect, read_response, roundtrip, send};
use crate::support::grpc::{every_kind, grpc_client};
use crate::support::h2_backend::H2Backend;
use crate::support::tls::{https_config, trusting, Pki, TlsBackend};
use crate::support::tonic_client::tonic_client;
use crate::support::tonic_server::{tls_config, Tls, TonicServer};
use crate::support::ws::{
    ws_client_handshake_request, ws_encode_client_frame, ws_expected_accept, ws_read_frame, OP_TEXT,
};
use crate::support::Balancer;
use weir::config::{BackendProtocol, HealthConfig, ProbeKind};
use weir::snapshot::Alpn;

const VERSION: &[u8] = b"GET /test.Echo/Version HTTP/1.1\r\nHost: test\r\n\r\n";

/// weir with its default protocol over the `https://` backend `backend`.
fn weir_auto(backend: SocketAddr, pki: &Pki) -> Balancer {
    let config = https_config(backend, trusting(pki));
    assert_eq!(config.pools[0].protocol, BackendProtocol::Auto, "auto is the default");
    Balancer::start(config)
}

/// The HTTP version a request through weir reached the backend in, on a new client
/// connection.
async fn version(weir: &Balancer) -> String {
    let response = send(weir.addr(), VERSION).await;
    assert_eq!(response.status, 200, "{}", response.text());
    response.text()
}

fn streams(weir: &Balancer, backend: SocketAddr) -> u64 {
    weir.backend_total(backend, |stats| stats.http2_streams.get())
}

fn opened(weir: &Balancer, backend: SocketAddr) -> u64 {
    weir.backend_total(backend, |stats| stats.connections_opened.get())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auto_pool_speaks_h2_to_an_https_backend_that_chooses_it() {
    // Goal: under `auto`, a backend offering h2 and HTTP/1.1 is reached over HTTP/2,
    // from the first request on, and later ones reuse the connection without another
    // handshake; gRPC calls and gRPC probes work through the pool. Method: 4 HTTP/1.1
    // requests on one client connection, then every gRPC call kind from a tonic and a
    // grpcio client; the backend saw only HTTP/2, weir's metrics count every request
    // as an HTTP/2 stream, and probes every 100 ms pass.
    let pki = Pki::new("auto-h2");
    let server = TonicServer::start_tls("s", &pki, &["h2", "http/1.1"]).await;
    let weir = Balancer::start({
        let mut config = https_config(server.addr, trusting(&pki));
        let probes = HealthConfig { kind: ProbeKind::Grpc, ..HealthConfig::default() };
        // Frequent probes; a timeout far above a loaded machine's handshake, since
        // this asserts that probes pass, not how fast.
        let (interval, timeout) = (Duration::from_millis(100), Duration::from_secs(10));
        config.pools[0].health = Some(HealthConfig { interval, timeout, ..probes });
        config
    });
    let mut client = connect(weir.addr()).await.expect("connect");
    for _ in 0..4 {
        let response = roundtrip(&mut client, VERSION).await.expect("a response");
        assert_eq!((response.status, response.text()), (200, "HTTP/2.0".to_string()));
    }
    assert_eq!(opened(&weir, server.addr), 1, "one handshake for 4 requests");
    assert_eq!(tonic_client(weir.addr()).await, every_kind());
    let grpcio = grpc_client(weir.addr()).await;
    assert_eq!(serde_json::from_str::<serde_json::Value>(&grpcio).expect("JSON"), every_kind());
    let versions = server.versions();
    assert_eq!(versions.len(), 14, "{versions:?}");
    assert!(versions.iter().all(|version| *version == http::Version::HTTP_2), "{versions:?}");
    assert_eq!(streams(&weir, server.addr), 14);
    let series =
        format!("weir_backend_http2_streams_total{{pool=\"web\",backend=\"{}\"}}", server.addr);
    assert_eq!(weir.metric(&series), Some(14), "{}", weir.metrics());
    assert!((1..=2).contains(&opened(&weir, server.addr)), "one connection per worker");
    // gRPC probes reached the health service over TLS (h2 by ALPN), and passed.
    let probed = |_: &Balancer| server.counts().checks.len() >= 2;
    assert!(weir.wait_for(Duration::from_secs(10), probed).await.is_some(), "no probe");
    let failures = weir.backend_total(server.addr, |stats| stats.probe_failures.get());
    assert_eq!(failures, 0, "{}", weir.status(server.addr).reason);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auto_pool_speaks_http1_to_an_https_backend_without_h2() {
    // Goal: a backend offering only `http/1.1` is reached over HTTP/1.1, and the answer
    // is remembered: later requests take pooled HTTP/1.1 connections. Method: 4
    // requests on one client connection; one upstream connection, no HTTP/2 stream.
    let pki = Pki::new("auto-h1");
    let server = TonicServer::start_tls("s", &pki, &["http/1.1"]).await;
    let weir = weir_auto(server.addr, &pki);
    let mut client = connect(weir.addr()).await.expect("connect");
    for _ in 0..4 {
        let response = roundtrip(&mut client, VERSION).await.expect("a response");
        assert_eq!((response.status, response.text()), (200, "HTTP/1.1".to_string()));
    }
    assert_eq!(opened(&weir, server.addr), 1);
    assert_eq!(streams(&weir, server.addr), 0);
}

/// A listener on `addr` again, once the previous server let it go (bounded tries).
async fn rebind(addr: SocketAddr) -> TcpListener {
    for _ in 0..500 {
        if let Ok(listener) = TcpListener::bind(addr).await {
            return listener;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{addr} stayed bound");
}

/// A tonic server on `listener` offering `alpn`.
async fn restart(listener: TcpListener, pki: &Pki, alpn: &[&str]) -> TonicServer {
    let tls = Tls { config: tls_config("s", pki, alpn), websocket: false };
    TonicServer::start_on(listener, "s", Some(tls)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auto_backend_that_changes_protocol_across_restarts_keeps_working() {
    // Goal: a backend restarted with another ALPN offer is reached in its new protocol,
    // with no failed request while it is up: h2, then HTTP/1.1 only, then h2 only; a
    // connect that fails while it is down keeps what it chose, and the first handshake
    // after the restart learns the new answer. Method: the server on
    // one port stops gracefully (GOAWAY, idle HTTP/1.1 connections closed), one
    // request gets 502, and the server starts again; 4 requests after each start, each
    // on a new client connection.
    let pki = Pki::new("auto-restart");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let weir = weir_auto(addr, &pki);
    let phases: [(&[&str], &str); 3] =
        [(&["h2", "http/1.1"], "HTTP/2.0"), (&["http/1.1"], "HTTP/1.1"), (&["h2"], "HTTP/2.0")];
    let mut listener = Some(listener);
    for (alpn, expected) in phases {
        let bound = match listener.take() {
            Some(listener) => listener,
            None => rebind(addr).await,
        };
        let server = restart(bound, &pki, alpn).await;
        for _ in 0..4 {
            assert_eq!(version(&weir).await, expected, "offering {alpn:?}");
        }
        assert!(server.stop().await, "the server's connections closed");
        // While it is down, a failed connect keeps what it chose.
        let before = weir.shared().snapshot.load().pools[0].backends[0].live.alpn();
        assert_eq!(send(weir.addr(), VERSION).await.status, 502);
        assert_eq!(weir.shared().snapshot.load().pools[0].backends[0].live.alpn(), before);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_upgrade_reaches_an_auto_backend_that_speaks_h2() {
    // Goal: an Upgrade request to an `auto` backend known to choose h2 still works:
    // its connection offers only `http/1.1`. Method: the backend serves HTTP/2 to
    // connections that chose h2 and is a WebSocket echo server on those that chose
    // HTTP/1.1; a first request learns h2, then a WebSocket handshake and an echoed
    // frame through weir.
    let pki = Pki::new("auto-ws");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let tls = Tls { config: tls_config("s", &pki, &["h2", "http/1.1"]), websocket: true };
    let server = TonicServer::start_on(listener, "s", Some(tls)).await;
    let weir = weir_auto(server.addr, &pki);
    assert_eq!(version(&weir).await, "HTTP/2.0");
    let mut ws = connect(weir.addr()).await.expect("connect");
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    ws.write_all(&ws_client_handshake_request("test", "/ws", key)).await.expect("write");
    let response = read_response(&mut ws).await.expect("handshake response");
    assert_eq!(response.status, 101, "{}", response.text());
    let accept = ws_expected_accept(key);
    assert_eq!(response.header("Sec-WebSocket-Accept"), Some(accept.as_str()));
    let mask = [0x12, 0x34, 0x56, 0x78];
    ws.write_all(&ws_encode_client_frame(OP_TEXT, b"over http/1.1", mask)).await.expect("write");
    let echoed = ws_read_frame(&mut ws).await.expect("echoed frame");
    assert_eq!(echoed, (OP_TEXT, b"over http/1.1".to_vec()));
    // The request after it still goes over HTTP/2.
    assert_eq!(version(&weir).await, "HTTP/2.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_between_auto_and_http1_changes_the_protocol_at_once() {
    // Goal: the pool's protocol is part of a backend's identity: a reload from `auto`
    // to `http1` stops HTTP/2 to a backend that chose h2 (its HTTP/2 connections are
    // not reused), and one back to `auto` learns h2 again. Method: a backend offering
    // both; requests before and after each reload.
    let pki = Pki::new("auto-reload");
    let server = TonicServer::start_tls("s", &pki, &["h2", "http/1.1"]).await;
    let weir = weir_auto(server.addr, &pki);
    assert_eq!(version(&weir).await, "HTTP/2.0");
    let mut config = https_config(server.addr, trusting(&pki));
    config.pools[0].protocol = BackendProtocol::Http1;
    weir.reload(config.clone()).expect("reload to http1");
    assert_eq!(version(&weir).await, "HTTP/1.1");
    assert_eq!(weir.shared().snapshot.load().pools[0].backends[0].live.alpn(), Alpn::Unknown);
    config.pools[0].protocol = BackendProtocol::Auto;
    weir.reload(config).expect("reload to auto");
    assert_eq!(version(&weir).await, "HTTP/2.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_chooses_h2_but_speaks_http1_gets_502_not_a_hang() {
    // Goal (hostile backend): one that chooses h2 by ALPN and then answers weir's
    // HTTP/2 preface with HTTP/1.1 fails the request cleanly, every time, with no
    // panic and no hang. Method: an HTTPS origin that answers every head `200`, with
    // ALPN `h2`; two requests through an `auto` pool, each a 502 from weir.
    let pki = Pki::new("auto-liar");
    let issued = pki.server(&["localhost"], "liar");
    let mut config = pki.server_config(&issued, false);
    config.alpn_protocols = vec![b"h2".to_vec()];
    let backend = TlsBackend::start("liar", config).await;
    let weir = weir_auto(backend.addr(), &pki);
    for _ in 0..2 {
        let response = send(weir.addr(), VERSION).await;
        assert_eq!(response.status, 502, "{}", response.text());
    }
    assert_eq!(backend.accepted(), 2, "one connection a request: none was kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_refused_by_an_auto_backend_that_chose_h2_is_sent_again() {
    // Goal: on an `auto` backend that chose h2, a stream the backend never processed
    // (REFUSED_STREAM) goes again whatever its method, as on an `h2` pool: the replay
    // copy follows the link, not the configured protocol. Method: an HTTP/2 backend
    // over TLS offering h2 refuses the first /refuse-once stream; a POST with a body,
    // the first request weir sends it, gets its echo, on a second connection.
    let pki = Pki::new("auto-refused");
    let backend = H2Backend::start_tls("b1", tls_config("s", &pki, &["h2", "http/1.1"])).await;
    let weir = weir_auto(backend.addr(), &pki);
    let request = "POST /refuse-once HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
    let response = send(weir.addr(), request.as_bytes()).await;
    assert_eq!((response.status, &response.body[..]), (200, &b"hello"[..]));
    let refused = backend.counts.refused.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(refused, 2, "refused, then served");
    assert_eq!(weir.shared().snapshot.load().pools[0].backends[0].live.alpn(), Alpn::H2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_first_requests_to_an_auto_backend_opens_one_connection_per_worker() {
    // Goal: before weir knows what an `auto` backend chooses, concurrent first requests
    // wait for one handshake per worker instead of each opening a connection. Method:
    // 50 requests at once on 50 client connections to a fresh weir (2 workers) in front
    // of an HTTP/2 backend over TLS; all answered, over at most 2 connections.
    let pki = Pki::new("auto-burst");
    let backend = H2Backend::start_tls("b1", tls_config("s", &pki, &["h2", "http/1.1"])).await;
    let weir = weir_auto(backend.addr(), &pki);
    let request = b"GET /name HTTP/1.1\r\nHost: a\r\n\r\n";
    let burst = (0..50).map(|_| send(weir.addr(), request));
    for response in futures_util::future::join_all(burst).await {
        assert_eq!(response.status, 200, "{}", response.text());
    }
    let accepted = backend.accepted();
    assert!((1..=2).contains(&accepted), "{accepted} connections for 50 first requests");
}
