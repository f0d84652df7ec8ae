//! HTTP/2 from clients end to end, with real clients: curl with prior knowledge (h2c) on
//! a plain listener and with ALPN over TLS, through weir to HTTP/1.1 test backends.
//! Bodies are checked by length and FNV-1a hash.

use crate::support::tls::{Issued, Pki};
use crate::support::{self, curl, pattern_hash, upload_summary, Balancer, TestBackend};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use weir::access_log::{Format, Target};
use weir::config::TlsListenerConfig;
use weir::tls::ListenerSettings;

const MIB: u64 = 1024 * 1024;

/// curl over h2c with prior knowledge; `-w` appends the protocol version curl used.
async fn h2c(args: &[&str]) -> String {
    let mut all = vec!["--http2-prior-knowledge"];
    all.extend_from_slice(args);
    curl(&all).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_get_and_post_reach_the_backend_over_http2() {
    // Goal: a client that opens a plain connection with the HTTP/2 preface is served
    // HTTP/2. Method: curl --http2-prior-knowledge GET and POST; curl reports the
    // version it spoke.
    let backend = TestBackend::start("b1").await;
    let log = support::process::temp_path("h2-access.log");
    let weir = Balancer::over(&[backend.addr()], |config| {
        config.log.access = Target::Path(log.clone());
        config.log.format = Format::Combined;
    });
    let url = format!("http://{}/", weir.addr());
    assert_eq!(h2c(&["-w", " %{http_version} %{http_code}", &url]).await, "b1 2 200");
    // HEAD: the head's Content-Length, and no body (END_STREAM on the HEADERS).
    let head = h2c(&["-I", &url]).await.to_ascii_lowercase();
    assert!(head.starts_with("http/2 200") && head.contains("content-length: 2"), "{head}");
    let echo = format!("http://{}/echo-body", weir.addr());
    assert_eq!(h2c(&["--data-binary", "hello", &echo]).await, "hello");
    // The backend got an HTTP/1.1 head with Host from :authority and weir's fields.
    let head = String::from_utf8(backend.last_request_head().unwrap()).unwrap();
    assert!(head.starts_with("POST /echo-body HTTP/1.1\r\n"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains(&format!("host: {}\r\n", weir.addr())), "{head}");
    assert!(lower.contains("x-forwarded-proto: http\r\n"), "{head}");
    assert!(lower.contains("content-length: 5\r\n"), "{head}");
    // The access log names the protocol the client spoke.
    weir.stop().await;
    let text = std::fs::read_to_string(&log).expect("access log written");
    let _ = std::fs::remove_file(&log);
    assert_eq!(text.matches("\"GET / HTTP/2.0\" 200 ").count(), 1, "{text}");
    assert_eq!(text.matches("\"HEAD / HTTP/2.0\" 200 ").count(), 1, "{text}");
    assert_eq!(text.matches("\"POST /echo-body HTTP/2.0\" 200 ").count(), 1, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_fields_than_max_headers_get_431() {
    // Goal: `max_headers` bounds an HTTP/2 request as an HTTP/1 one. Method: curl sends
    // 120 fields (the default allows 100); weir answers 431 and no backend sees it.
    let backend = TestBackend::start("b1").await;
    let weir = Balancer::front(&backend);
    let fields: Vec<String> = (0..120).map(|n| format!("x-field-{n}: {n}")).collect();
    let mut args = vec!["-o", "/dev/null", "-w", "%{http_code}"];
    for field in &fields {
        args.extend_from_slice(&["-H", field]);
    }
    let url = format!("http://{}/", weir.addr());
    args.push(&url);
    assert_eq!(h2c(&args).await, "431");
    assert_eq!(backend.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interim_100_continue_is_relayed_as_informational_headers() {
    // Goal: 1xx responses reach an HTTP/2 client. Method: curl sends `expect:
    // 100-continue`; the backend answers 100 before it reads the body, which weir sends
    // as an informational HEADERS frame (curl -v shows `HTTP/2 100`), then the upload.
    let backend = TestBackend::start("b1").await;
    let weir = Balancer::front(&backend);
    let url = format!("http://{}/upload", weir.addr());
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "-v", "--max-time", "30", "--http2-prior-knowledge"])
        .args(["-H", "Expect: 100-continue", "--data-binary", "hello", &url])
        .output()
        .await
        .expect("run curl");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("< HTTP/2 100"), "{stderr}");
    assert!(stderr.contains("< HTTP/2 200"), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        upload_summary(5, support::hash_bytes(b"hello"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_can_be_turned_off() {
    // Goal: `[server] h2c = false` serves HTTP/1 only. Method: the preface gets weir's
    // HTTP/1 answer to an HTTP/2.0 request line (505), not HTTP/2 frames.
    let backend = TestBackend::start("b1").await;
    let weir = Balancer::over(&[backend.addr()], |config| config.server.h2c = false);
    let answer = support::raw_request(weir.addr(), b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 505 "), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_uploads_and_downloads_of_1_mib_arrive_intact() {
    // Goal: bodies stream both ways under HTTP/2 flow control. Method: 1 MiB up with
    // Content-Length and without (weir frames it chunked for the backend), 1 MiB down
    // with Content-Length and chunked from the backend; all checked by hash.
    let backend = TestBackend::start("b1").await;
    let weir = Balancer::front(&backend);
    let n = MIB + 7;
    let file = support::pattern_file(n);
    let data = format!("@{}", file.display());
    let url = format!("http://{}/upload", weir.addr());
    let want = upload_summary(n, pattern_hash(n));
    assert_eq!(h2c(&["--data-binary", &data, &url]).await, want, "with Content-Length");
    let path = file.display().to_string();
    let chunked = h2c(&["-T", &path, "-H", "Transfer-Encoding: chunked", &url]).await;
    assert_eq!(chunked, want, "without Content-Length");
    let _ = std::fs::remove_file(file);
    for framing in [0, 1] {
        let url = format!("http://{}/download?bytes={n}&chunked={framing}", weir.addr());
        check_download(&["--http2-prior-knowledge"], &url, n).await;
    }
}

/// Downloads `url` with curl (`args` first) into a file; checks its length and hash.
async fn check_download(args: &[&str], url: &str, n: u64) {
    let path = support::process::temp_path("h2-download.bin");
    let out = path.display().to_string();
    let mut all = args.to_vec();
    all.extend_from_slice(&["-o", &out, "-w", "%{http_version} %{http_code}", url]);
    assert_eq!(curl(&all).await, "2 200", "{url}");
    let data = std::fs::read(&path).unwrap();
    let _ = std::fs::remove_file(path);
    assert_eq!(data.len() as u64, n, "{url}: length");
    assert_eq!(support::hash_bytes(&data), pattern_hash(n), "{url}: hash");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_clients_negotiate_http2_with_alpn() {
    // Goal: a TLS listener offers h2 by ALPN by default. Method: curl --http2 over TLS
    // (it offers h2 and http/1.1) GETs, uploads and downloads 1 MiB, and reports HTTP/2.
    let backend = TestBackend::start("b1").await;
    let pki = Pki::new("h2-alpn");
    let issued = pki.server(&["weir.test"], "weir");
    let weir = Balancer::over(&[backend.addr()], |config| tls_only(config, &issued));
    let ca = pki.ca_file().display().to_string();
    let port = weir.tls_addr().port();
    let resolve = format!("weir.test:{port}:127.0.0.1");
    let tls = ["--http2", "--cacert", &ca, "--resolve", &resolve];
    let base = format!("https://weir.test:{port}");
    let mut get = tls.to_vec();
    let root = format!("{base}/");
    get.extend_from_slice(&["-w", " %{http_version}", &root]);
    assert_eq!(curl(&get).await, "b1 2");
    let n = MIB + 3;
    let file = support::pattern_file(n);
    let data = format!("@{}", file.display());
    let upload = format!("{base}/upload");
    let mut post = tls.to_vec();
    post.extend_from_slice(&["--data-binary", &data, &upload]);
    assert_eq!(curl(&post).await, upload_summary(n, pattern_hash(n)));
    let _ = std::fs::remove_file(file);
    check_download(&tls, &format!("{base}/download?bytes={n}&chunked=1"), n).await;
}

/// Makes `config` listen on one TLS listener (port 0, ALPN by default) with `issued`.
pub(super) fn tls_only(config: &mut weir::config::Config, issued: &Issued) {
    config.server.listen = Vec::new();
    config.server.tls = vec![TlsListenerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        settings: ListenerSettings {
            certs: vec![(issued.cert.clone(), issued.key.clone())],
            ..ListenerSettings::default()
        },
    }];
}

/// Runs `nghttp` (from nghttp2-client), which sends every request of a run on one
/// connection; returns its stdout (the response bodies), asserting it succeeded.
pub(super) async fn nghttp(args: &[&str]) -> String {
    let out = tokio::process::Command::new("nghttp")
        .args(["--timeout=30"])
        .args(args)
        .output()
        .await
        .expect("run nghttp (Debian nghttp2-client)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "nghttp {args:?} failed: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_of_one_connection_spread_round_robin() {
    // Goal: each stream is balanced on its own, as a request. Method: nghttp sends 300
    // requests on one HTTP/2 connection (one worker, so one round-robin sequence) to a
    // pool of 3 backends; each gets 100. (Not curl -Z: curl 7.88 with prior knowledge
    // fails its second multiplexed transfer with "Error in the HTTP2 framing layer"
    // before sending it; weir never sees that stream.)
    let backends = [
        TestBackend::start("r0").await,
        TestBackend::start("r1").await,
        TestBackend::start("r2").await,
    ];
    let addrs: Vec<SocketAddr> = backends.iter().map(TestBackend::addr).collect();
    let weir = Balancer::over(&addrs, |config| config.server.workers = 1);
    let url = format!("http://{}/", weir.addr());
    let out = nghttp(&["-m", "300", &url]).await;
    // Each body is its backend's two-letter name.
    let mut count: HashMap<&str, usize> = HashMap::new();
    for name in out.as_bytes().chunks(2) {
        *count.entry(std::str::from_utf8(name).unwrap()).or_default() += 1;
    }
    for name in ["r0", "r1", "r2"] {
        assert_eq!(count.get(name), Some(&100), "{out}");
    }
    let requests: usize = backends.iter().map(TestBackend::requests).sum();
    assert_eq!(requests, 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailers_pass_both_ways() {
    // Goal: HTTP/2 trailers become chunked trailers for the backend, and the backend's
    // chunked trailers become trailing HEADERS. Method: nghttp uploads a file with a
    // trailer (no Content-Length, so weir sends it chunked; the backend echoes the
    // trailers it got in `X-Trailers`), then GETs `/trailers` (chunked, with trailers).
    let backend = TestBackend::start("b1").await;
    let weir = Balancer::front(&backend);
    let n = 100_003;
    let file = support::pattern_file(n);
    let upload = format!("http://{}/upload", weir.addr());
    let path = file.display().to_string();
    let sent = nghttp(&["-v", "-d", &path, "--trailer", "x-sum: 42", &upload]).await;
    let _ = std::fs::remove_file(file);
    assert!(sent.contains("x-trailers: x-sum=42\n"), "{sent}");
    assert!(sent.contains(&upload_summary(n, pattern_hash(n))), "{sent}");
    let url = format!("http://{}/trailers", weir.addr());
    let got = nghttp(&["-v", &url]).await;
    // nghttp -v prints each DATA frame's bytes before its own line about the frame.
    let body_at = got.find("world[").unwrap_or_else(|| panic!("no body: {got}"));
    assert!(got.contains("hello [") && got.contains("END_STREAM | END_HEADERS"), "{got}");
    let trailer_at = got.find(") x-checksum: abc\n").expect("the trailer");
    assert!(body_at < trailer_at && got.contains(") x-extra: 1\n"), "{got}");
    assert!(!got.contains("transfer-encoding"), "{got}");
}

/// Response bytes of the stalled download: far more than any socket buffers hold.
const STALLED_BYTES: u64 = 256 * MIB;
/// Most the backend may have written while the client reads nothing: socket buffers on
/// both sides of weir, weir's pump buffer and one HTTP/2 window, with room to spare.
const STALLED_WRITTEN_MAX: u64 = 48 * MIB;

/// A backend that answers its first request with [`STALLED_BYTES`] of zeros, counting
/// what it manages to write into `written`.
async fn endless_backend(written: Arc<AtomicU64>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        // Bounded: the request is small, and a closed connection ends the loop.
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8];
            if conn.read(&mut byte).await.unwrap_or(0) == 0 {
                return;
            }
            head.push(byte[0]);
        }
        let reply = format!("HTTP/1.1 200 OK\r\nContent-Length: {STALLED_BYTES}\r\n\r\n");
        conn.write_all(reply.as_bytes()).await.unwrap();
        let zeros = vec![0u8; 64 * 1024];
        while conn.write_all(&zeros).await.is_ok() {
            written.fetch_add(zeros.len() as u64, Ordering::Relaxed);
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_holds_only_its_window() {
    // Goal: backpressure from an HTTP/2 client reaches the backend: weir sends DATA only
    // as the stream's window allows, so a client that reads nothing makes weir stop
    // reading the backend (instead of buffering the response). Method: raw h2c frames
    // GET a 256 MiB response and never read; the backend's writes stop well short.
    let written = Arc::new(AtomicU64::new(0));
    let backend = endless_backend(Arc::clone(&written)).await;
    let weir = Balancer::over(&[backend], |_| {});
    let mut client = tokio::net::TcpStream::connect(weir.addr()).await.unwrap();
    let mut hpack = vec![0x82, 0x86, 0x04, 4];
    hpack.extend_from_slice(b"/big");
    hpack.extend_from_slice(&[0x01, 1, b'x']);
    let mut frames = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0".to_vec();
    // HEADERS, END_STREAM | END_HEADERS, stream 1.
    frames.extend_from_slice(&[0, 0, hpack.len() as u8, 0x01, 0x05, 0, 0, 0, 1]);
    frames.extend_from_slice(&hpack);
    client.write_all(&frames).await.unwrap();
    // Waits for the backend's writes to stop: unchanged over 20 checks in a row.
    let (mut last, mut still) = (u64::MAX, 0);
    for _ in 0..1_000 {
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        let now = written.load(Ordering::Relaxed);
        still = if now == last { still + 1 } else { 0 };
        last = now;
        if still == 20 {
            break;
        }
    }
    assert_eq!(still, 20, "the backend's writes stopped ({last} bytes written)");
    assert!(last < STALLED_WRITTEN_MAX, "{last} bytes left the backend");
    drop(client);
}

mod attacks;
mod browser;
mod conformance;
mod cut;
mod drain;
mod hostile;
mod limits;
mod metrics;
mod spread;
mod websocket;
