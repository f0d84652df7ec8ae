//! PROXY protocol in front of weir (`[server] proxy_protocol`): HAProxy's `send-proxy`
//! and `send-proxy-v2` give the right client address to the access log and to
//! `X-Forwarded-For`; hostile or missing headers close the connection, counted, and
//! reach no backend; h2c works after the header.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use weir::access_log::{Format, Target};
use weir::config::{LimitConfig, LimitKey};

use crate::support::process::hold_port;
use crate::support::{self, connect, roundtrip, Balancer, Recorder};

/// How long a test waits for weir to close a connection it must close.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// A PROXY v1 line claiming client 203.0.113.7.
const V1: &[u8] = b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 8080\r\n";
const GET: &[u8] = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n";

/// weir with `proxy_protocol = true` in front of `backend`, JSON access log at `log`.
fn proxied(backend: SocketAddr, log: Option<&std::path::Path>) -> Balancer {
    Balancer::over(&[backend], |config| {
        config.server.proxy_protocol = true;
        config.server.header_timeout = Duration::from_millis(300);
        if let Some(log) = log {
            config.log.access = Target::Path(log.to_path_buf());
            config.log.format = Format::Json;
        }
    })
}

/// The v2 header for 203.0.113.7:40000 → 10.0.0.1:8080, with `tlvs` appended.
fn v2(tlvs: &[u8]) -> Vec<u8> {
    let mut out = weir::proxy_protocol::V2_SIGNATURE.to_vec();
    out.extend_from_slice(&[0x21, 0x11]);
    out.extend_from_slice(&(12 + tlvs.len() as u16).to_be_bytes());
    out.extend_from_slice(&[203, 0, 113, 7, 10, 0, 0, 1, 0x9c, 0x40, 0x1f, 0x90]);
    out.extend_from_slice(tlvs);
    out
}

fn errors(weir: &Balancer, reason: &str) -> u64 {
    let series = format!("weir_proxy_protocol_errors_total{{reason=\"{reason}\"}}");
    weir.metric(&series).expect("the series is exposed")
}

/// Reads until weir closes the connection; the bytes it sent before closing.
async fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(CLOSE_WAIT, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return out,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!("weir kept the connection open; it sent {out:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_and_v2_headers_name_the_client_in_xff_and_the_log() {
    let backend = Recorder::echo_target().await;
    let log = support::process::temp_path("proxy.json");
    let weir = proxied(backend.addr(), Some(&log));
    for header in [V1.to_vec(), v2(&[0x01, 0, 2, b'h', b'2', 0x04, 0, 1, 0])] {
        let mut stream = connect(weir.addr()).await.expect("connect");
        stream.write_all(&header).await.expect("write header");
        // Two requests: the address holds for the whole connection.
        for _ in 0..2 {
            assert_eq!(roundtrip(&mut stream, GET).await.expect("response").status, 200);
        }
    }
    weir.stop().await;
    let requests = backend.requests();
    assert_eq!(requests.len(), 4);
    for request in &requests {
        assert_eq!(request.fields("X-Forwarded-For"), ["203.0.113.7"]);
    }
    let text = std::fs::read_to_string(&log).expect("access log written");
    let clients: Vec<String> = text
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("JSON line"))
        .map(|line| format!("{}:{}", line["client"].as_str().unwrap(), line["client_port"]))
        .collect();
    assert_eq!(clients, ["203.0.113.7:40000"; 4], "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge_works_after_the_header() {
    let backend = Recorder::echo_target().await;
    let weir = proxied(backend.addr(), None);
    let mut stream = connect(weir.addr()).await.expect("connect");
    stream.write_all(V1).await.expect("write header");
    let (mut client, connection) = h2::client::handshake(stream).await.expect("h2 handshake");
    tokio::spawn(connection);
    let request = http::Request::get("http://a/h2").body(()).expect("request");
    let (response, _) = client.send_request(request, true).expect("send");
    assert_eq!(response.await.expect("response").status(), 200);
    let requests = backend.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].fields("X-Forwarded-For"), ["203.0.113.7"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_or_missing_headers_close_the_connection_counted() {
    let backend = Recorder::echo_target().await;
    let weir = proxied(backend.addr(), None);
    let mut long_v1 = b"PROXY UNKNOWN ".to_vec();
    long_v1.resize(200, b'a');
    let mut bad_signature = v2(&[]);
    bad_signature[8] = b'X';
    let mut too_long_v2 = v2(&[]);
    too_long_v2[14..16].copy_from_slice(&1025u16.to_be_bytes());
    let mut short_v2 = v2(&[]);
    short_v2[14..16].copy_from_slice(&8u16.to_be_bytes());
    let repeated = [V1, V1, GET].concat();
    let repeated_v2 = [v2(&[]), v2(&[]), GET.to_vec()].concat();
    let cases: [(&str, Vec<u8>, &str); 8] = [
        ("no header", GET.to_vec(), "missing"),
        ("v1 over 107 bytes", long_v1, "too_long"),
        ("bad v2 signature", [bad_signature, GET.to_vec()].concat(), "missing"),
        ("v2 length over the bound", too_long_v2, "too_long"),
        ("v2 length short of its addresses", short_v2, "malformed"),
        ("a second v1 header", repeated, "repeated"),
        ("a second v2 header", repeated_v2, "repeated"),
        (
            "garbage after the v1 fields",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 junk\r\n".to_vec(),
            "malformed",
        ),
    ];
    for (case, bytes, reason) in cases {
        let before = errors(&weir, reason);
        let mut stream = connect(weir.addr()).await.expect("connect");
        stream.write_all(&bytes).await.expect("write");
        assert_eq!(until_closed(&mut stream).await, b"", "{case}: weir answered");
        assert_eq!(errors(&weir, reason), before + 1, "{case}: not counted as {reason}");
    }
    assert!(backend.requests().is_empty(), "a refused connection reached the backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_trickled_past_header_timeout_is_dropped() {
    let backend = Recorder::echo_target().await;
    let weir = proxied(backend.addr(), None);
    let mut stream = connect(weir.addr()).await.expect("connect");
    // Part of a header in two writes, then nothing: weir's header timer must end it.
    stream.write_all(&V1[..5]).await.expect("write");
    stream.write_all(&V1[5..20]).await.expect("write");
    assert_eq!(until_closed(&mut stream).await, b"");
    assert_eq!(errors(&weir, "timeout"), 1);
    // A client that closes half-way is counted apart.
    let mut stream = connect(weir.addr()).await.expect("connect");
    stream.write_all(&V1[..20]).await.expect("write");
    stream.shutdown().await.expect("shutdown");
    assert_eq!(until_closed(&mut stream).await, b"");
    assert_eq!(errors(&weir, "closed"), 1);
    assert!(backend.requests().is_empty());
}

/// HAProxy in TCP mode on `port`, sending PROXY headers (`send`) to weir at `weir`.
struct Haproxy(Child);

impl Haproxy {
    fn start(port: u16, weir: SocketAddr, send: &str) -> Haproxy {
        let config = format!(
            "global\n  maxconn 100\ndefaults\n  mode tcp\n  timeout connect 5s\n  \
             timeout client 30s\n  timeout server 30s\nfrontend f\n  bind 127.0.0.1:{port}\n  \
             default_backend b\nbackend b\n  server s1 {weir} {send}\n"
        );
        let path = support::process::temp_path("haproxy.cfg");
        std::fs::write(&path, config).expect("write haproxy config");
        let child = Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy runs");
        Haproxy(child)
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Connects to `addr` from 127.0.0.2, so the client HAProxy sees is not weir's peer.
async fn connect_from_127_0_0_2(addr: SocketAddr) -> TcpStream {
    connect_from([127, 0, 0, 2], addr).await
}

/// Connects to `addr` from `source` (a loopback address other than weir's peer).
async fn connect_from(source: [u8; 4], addr: SocketAddr) -> TcpStream {
    // Bounded: HAProxy takes a moment to bind after it starts.
    for _ in 0..500 {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.bind(SocketAddr::from((source, 0))).expect("bind a loopback source");
        if let Ok(stream) = socket.connect(addr).await {
            return stream;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("HAProxy did not start listening on {addr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_send_proxy_v1_and_v2_give_the_client_address() {
    let backend = Recorder::echo_target().await;
    let log = support::process::temp_path("haproxy.json");
    let weir = proxied(backend.addr(), Some(&log));
    for send in ["send-proxy", "send-proxy-v2"] {
        // Held until HAProxy is gone: no other test can take the port before HAProxy
        // binds it, so what answers there is HAProxy.
        let held = hold_port();
        let _haproxy = Haproxy::start(held.port(), weir.addr(), send);
        let mut stream = connect_from_127_0_0_2(held.addr()).await;
        let response = roundtrip(&mut stream, GET).await.expect("a response through HAProxy");
        assert_eq!(response.status, 200, "{send}");
    }
    weir.stop().await;
    for request in backend.requests() {
        assert_eq!(request.fields("X-Forwarded-For"), ["127.0.0.2"]);
    }
    assert_eq!(backend.requests().len(), 2);
    let text = std::fs::read_to_string(&log).expect("access log written");
    for line in text.lines() {
        let line: serde_json::Value = serde_json::from_str(line).expect("JSON line");
        assert_eq!(line["client"], "127.0.0.2", "{line}");
    }
    assert_eq!(text.lines().count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_send_proxy_v1_and_v2_give_the_limiter_the_client_address() {
    let backend = Recorder::echo_target().await;
    let weir = Balancer::over(&[backend.addr()], |config| {
        config.server.proxy_protocol = true;
        let once_a_minute = crate::rate_limits::rate(1, 60);
        let limit = LimitConfig::new("ip", LimitKey::ClientIp, once_a_minute);
        crate::rate_limits::limited(config, limit);
    });
    // Every connection reaches weir from HAProxy's address; the limit must count the
    // client each PROXY header names: 127.0.0.2 twice (v1, then v2), then 127.0.0.3.
    let (held_v1, held_v2) = (hold_port(), hold_port());
    let (v1, v2) = (held_v1.port(), held_v2.port());
    let _haproxy_v1 = Haproxy::start(v1, weir.addr(), "send-proxy");
    let _haproxy_v2 = Haproxy::start(v2, weir.addr(), "send-proxy-v2");
    let via = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    for (source, port, status) in
        [([127, 0, 0, 2], v1, 200), ([127, 0, 0, 2], v2, 429), ([127, 0, 0, 3], v2, 200)]
    {
        let mut stream = connect_from(source, via(port)).await;
        let response = roundtrip(&mut stream, GET).await.expect("a response through HAProxy");
        assert_eq!(response.status, status, "{source:?} through port {port}");
    }
    let clients: Vec<_> = backend.requests().iter().map(|r| r.fields("X-Forwarded-For")).collect();
    assert_eq!(clients, [["127.0.0.2"], ["127.0.0.3"]]);
    let rejected = "weir_limit_requests_total{limit=\"ip\",outcome=\"rejected\"}";
    assert_eq!(weir.metric(rejected), Some(1));
}
