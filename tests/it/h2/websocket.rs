//! WebSocket over HTTP/2 (RFC 8441): an HTTP/2 client's extended CONNECT reaches an
//! HTTP/1.1 backend as a WebSocket upgrade, and the stream carries the tunnel. The
//! clients are `support/h2_websocket.py` (Python `h2`, h2c), sending masked frames; the
//! backends are the test backend's `/ws` echo and raw ones that show what they saw.

use crate::support::scrape::{metric, scrape_until};
use crate::support::{self, ws_expected_accept, Balancer, TestBackend};

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use weir::access_log::{Format, Target};

/// Bound on a scenario, and on each wait for a backend's event.
const WAIT: Duration = Duration::from_secs(30);

/// Runs a scenario of `h2_websocket.py` to its end; returns its event lines.
async fn scenario(name: &str, addr: SocketAddr, path: &str) -> Vec<String> {
    let out = tokio::time::timeout(WAIT, command(name, addr, path).output())
        .await
        .expect("the scenario ends within its socket timeouts")
        .expect("run python3 (with the h2 package: pip install h2)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{name} failed: {stderr}");
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

fn command(name: &str, addr: SocketAddr, path: &str) -> tokio::process::Command {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/support/h2_websocket.py");
    let mut command = tokio::process::Command::new("python3");
    command.args([script, name, &addr.ip().to_string(), &addr.port().to_string(), path]);
    command.kill_on_drop(true);
    command
}

fn has(events: &[String], line: &str) -> bool {
    events.iter().any(|event| event == line)
}

/// What a raw backend does after reading a request head.
#[derive(Clone, Copy)]
enum Answer {
    /// A correct 101 (with a subprotocol and an extension), then: read to EOF, send
    /// `got:` and what it read, close.
    Upgrade,
    /// A 101 whose `Sec-WebSocket-Accept` is not the key's.
    WrongAccept,
    /// `200 OK` instead of a 101.
    Ok,
}

/// A backend for one connection: it reports the request head, then `eof` when the
/// client side of the connection ended.
async fn raw_backend(answer: Answer) -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tell, events) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let Some(got) = read_head(&mut conn).await else { return };
        let head = String::from_utf8_lossy(&got).into_owned();
        let _ = tell.send(head.clone());
        let key = head
            .lines()
            .find_map(|line| line.strip_prefix("sec-websocket-key: "))
            .unwrap_or_default();
        let reply = match answer {
            Answer::Upgrade => format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {}\r\nSec-WebSocket-Protocol: chat\r\n\
                 Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
                ws_expected_accept(key)
            ),
            Answer::WrongAccept => "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
                .to_string(),
            Answer::Ok => "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_string(),
        };
        conn.write_all(reply.as_bytes()).await.unwrap();
        let mut rest = Vec::new();
        let _ = conn.read_to_end(&mut rest).await;
        let _ = tell.send("eof".to_string());
        let _ = conn.write_all(format!("got:{}", String::from_utf8_lossy(&rest)).as_bytes()).await;
        let _ = conn.shutdown().await;
    });
    (addr, events)
}

/// The bytes of a connection up to the end of a request head; `None` if it ends first.
pub(super) async fn read_head(conn: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    Some(got)
}

async fn next(events: &mut mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(WAIT, events.recv()).await.expect("backend event in time").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_over_http2_echoes_text_and_a_mib_and_closes() {
    // Goal: RFC 8441 end to end. weir advertises ENABLE_CONNECT_PROTOCOL; an extended
    // CONNECT reaches the backend as an HTTP/1.1 upgrade; the 101 becomes :status 200;
    // masked frames echo both ways, 1 MiB included (checked by SHA-256); the client's
    // close frame is echoed and the backend's close ends the stream. The access log
    // and the metrics count it as an HTTP/2 request answered 101.
    let backend = TestBackend::start("b1").await;
    let log = support::process::temp_path("h2-ws-access.log");
    let weir = Balancer::with_admin(&[backend.addr()], |config| {
        config.log.access = Target::Path(log.clone());
        config.log.format = Format::Combined;
    });
    let events = scenario("echo", weir.addr(), "/ws").await;
    for line in [
        "connect_protocol=1",
        "status=200",
        "header x-backend=b1",
        "text=hello weir opcode=1",
        "binary=1048576 same=True opcode=2",
        "close=8 code=1000",
        "ended",
    ] {
        assert!(has(&events, line), "{line} in {events:?}");
    }
    // The handshake's fields are HTTP/1's: none reach the HTTP/2 client.
    assert!(!events.iter().any(|e| e.starts_with("header sec-websocket-accept")), "{events:?}");
    assert!(!events.iter().any(|e| e.starts_with("header upgrade")), "{events:?}");
    let head = String::from_utf8(backend.last_request_head().unwrap()).unwrap();
    assert!(head.starts_with("GET /ws HTTP/1.1\r\n"), "{head}");
    let lower = head.to_ascii_lowercase();
    for field in ["upgrade: websocket\r\n", "connection: upgrade\r\n", "sec-websocket-version: 13"]
    {
        assert!(lower.contains(field), "{field} in {head}");
    }
    assert!(lower.contains("sec-websocket-extensions: permessage-deflate\r\n"), "{head}");
    let labels = [("protocol", "http2"), ("code_class", "1xx")];
    let text = scrape_until(weir.admin(), "weir_requests_total", &labels, 1.0).await;
    assert_eq!(metric(&text, "weir_requests_total", &labels), Some(1.0), "{text}");
    weir.stop().await;
    let text = std::fs::read_to_string(&log).expect("access log written");
    let _ = std::fs::remove_file(&log);
    assert_eq!(text.matches("\"GET /ws HTTP/2.0\" 101 ").count(), 1, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_stream_half_closes_and_the_backend_end_ends_the_stream() {
    // Goal: the client's END_STREAM reaches the backend as EOF while the other way stays
    // open, and the backend's close after its last bytes is the stream's END_STREAM.
    // Subprotocol and extension fields go both ways. Method: a raw backend reads to EOF,
    // then answers `got:` and what it read, and closes.
    let (addr, mut seen) = raw_backend(Answer::Upgrade).await;
    let weir = Balancer::over(&[addr], |_| {});
    let events = scenario("half_close", weir.addr(), "/chat").await;
    let head = next(&mut seen).await;
    assert!(head.contains("sec-websocket-protocol: chat\r\n"), "{head}");
    assert_eq!(next(&mut seen).await, "eof");
    for line in [
        "status=200",
        "header sec-websocket-protocol=chat",
        "header sec-websocket-extensions=permessage-deflate",
        "ended",
        "got=got:ping",
    ] {
        assert!(has(&events, line), "{line} in {events:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reset_closes_the_backend_connection_and_not_the_http2_one() {
    // Goal: RST_STREAM on the tunnel's stream closes its backend connection at once,
    // while the client's connection goes on. Method: the client resets and then waits,
    // its connection open, until the backend saw EOF; then a PING must be answered.
    let (addr, mut seen) = raw_backend(Answer::Upgrade).await;
    let weir = Balancer::over(&[addr], |_| {});
    let mut child = command("reset", weir.addr(), "/chat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run python3");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut events = Vec::new();
    while !has(&events, "reset sent") {
        let line = tokio::time::timeout(WAIT, lines.next_line()).await.expect("in time");
        events.push(line.unwrap().unwrap_or_else(|| panic!("ended early: {events:?}")));
    }
    assert!(has(&events, "status=200"), "{events:?}");
    next(&mut seen).await;
    assert_eq!(next(&mut seen).await, "eof", "the backend connection closed");
    drop(child.stdin.take());
    let line = tokio::time::timeout(WAIT, lines.next_line()).await.expect("in time");
    assert_eq!(line.unwrap().as_deref(), Some("alive"));
    assert!(child.wait().await.unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_does_not_switch_protocols_gets_the_client_a_502() {
    // Goal: the HTTP/2 client takes any 2xx as its tunnel open, so a backend's 200 to
    // the upgrade is a 502, never a tunnel; so is a 101 whose Sec-WebSocket-Accept is
    // not for the key weir sent.
    for answer in [Answer::Ok, Answer::WrongAccept] {
        let (addr, mut seen) = raw_backend(answer).await;
        let weir = Balancer::over(&[addr], |_| {});
        let events = scenario("websocket_anyway", weir.addr(), "/chat").await;
        assert!(has(&events, "status=502"), "{events:?}");
        assert!(has(&events, "ended"), "{events:?}");
        assert!(next(&mut seen).await.contains("sec-websocket-key: "));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connects_other_than_websocket_are_refused() {
    // Goal: weir is no forward proxy. A plain CONNECT, and an extended CONNECT for a
    // protocol other than websocket, get the 405 an HTTP/1 CONNECT gets, and reach no
    // backend; with `[server.http2] websocket = false` weir does not advertise the
    // setting and the codec resets a `:protocol` stream (RFC 8441 §3).
    let backend = TestBackend::start("b1").await;
    let weir = Balancer::front(&backend);
    for name in ["plain_connect", "unknown_protocol"] {
        let events = scenario(name, weir.addr(), "/ws").await;
        assert!(has(&events, "status=405"), "{name}: {events:?}");
    }
    let off = Balancer::over(&[backend.addr()], |config| config.server.http2.websocket = false);
    let events = scenario("websocket_anyway", off.addr(), "/ws").await;
    assert!(has(&events, "connect_protocol=0"), "{events:?}");
    assert!(has(&events, "reset=PROTOCOL_ERROR"), "{events:?}");
    assert_eq!(backend.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_holds_bounded_bytes() {
    // Goal: flow control holds a WebSocket whose client sends and never reads: weir
    // sends what the client's window allows, the echo backend then blocks, and weir
    // stops taking the client's DATA. Method: the client sends frames as its window
    // allows (up to 256 MiB) until none opened for 2 s; what it got in is socket
    // buffers on both sides of weir plus windows, not the 256 MiB.
    let backend = TestBackend::start("b1").await;
    let weir = Balancer::front(&backend);
    let events = scenario("stalled", weir.addr(), "/ws").await;
    let line = events.iter().find(|e| e.starts_with("sent=")).expect("sent=N");
    let sent: u64 = line["sent=".len()..].split(' ').next().unwrap().parse().unwrap();
    assert!(sent < 32 * 1024 * 1024, "{line}: went into weir");
    assert!(has(&events, "status=200"), "{events:?}");
    assert!(!events.iter().any(|e| e.starts_with("reset=")), "the tunnel held: {events:?}");
    // weir sent the client no more than its window: the rest waits at the backend.
    let received: u64 = line.split("received=").nth(1).unwrap().parse().unwrap();
    assert!(received <= 65_535, "{line}: more than the client's window");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_websocket_stream_closes_after_tunnel_idle_timeout() {
    // Goal: the pool's `tunnel_idle_timeout` applies to an HTTP/2 WebSocket as to an
    // HTTP/1 one; the stream is reset with CONNECT_ERROR (RFC 9113 §8.5: the tunnel
    // closed other than by its backend's end).
    const LIMIT: Duration = Duration::from_millis(300);
    let backend = TestBackend::start("b1").await;
    let weir = Balancer::over(&[backend.addr()], |c| c.pools[0].tunnel_idle_timeout = LIMIT);
    let events = scenario("idle", weir.addr(), "/ws").await;
    assert!(has(&events, "reset=CONNECT_ERROR"), "{events:?}");
    let after = events.iter().find_map(|e| e.strip_prefix("after_ms=")).expect("after_ms");
    assert!(after.parse::<u64>().unwrap() >= 250, "closed after {after} ms, before the limit");
}

/// A page whose script opens a WebSocket to `/ws` on its own origin, sends a message,
/// and writes the echo (or `error`) into `data-echo`. Headless Chromium's virtual time
/// does not wait for WebSocket messages, only for fetches: the script fetches `/tick`
/// (answered after 20 ms) until the echo came, at most 250 times.
const WS_PAGE: &str = "<!doctype html><html><body><script>\
    let done = false;\
    const ws = new WebSocket(`wss://${location.host}/ws`);\
    ws.onopen = () => ws.send('hello over h2');\
    ws.onmessage = (e) => { done = true; document.body.setAttribute('data-echo', e.data); };\
    ws.onerror = () => { done = true; document.body.setAttribute('data-echo', 'error'); };\
    (async () => { for (let i = 0; i < 250 && !done; i++) await fetch('/tick'); })();\
    </script></body></html>";

/// A backend for Chromium: `/ws` is a WebSocket echo, anything else [`WS_PAGE`] (`/tick`
/// after 20 ms); one request per connection.
async fn page_and_echo_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Some(got) = read_head(&mut conn).await else { return };
                let head = String::from_utf8_lossy(&got).to_ascii_lowercase();
                let key = head.lines().find_map(|l| l.strip_prefix("sec-websocket-key: "));
                let reply = match key {
                    Some(key) => format!(
                        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                         Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                        // The key is base64: lowercasing the head changed it; take it
                        // from the raw bytes at the same place.
                        ws_expected_accept(raw_key(&got, key.len()))
                    ),
                    None => format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
                         Connection: close\r\n\r\n{WS_PAGE}",
                        WS_PAGE.len()
                    ),
                };
                if head.starts_with("get /tick ") {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                conn.write_all(reply.as_bytes()).await.unwrap();
                if key.is_some() {
                    let _ = crate::support::ws::serve_echo(&mut conn).await;
                }
            });
        }
    });
    addr
}

/// The value of `Sec-WebSocket-Key` in a raw head (any case of the name), `len` long.
fn raw_key(head: &[u8], len: usize) -> &str {
    let text = std::str::from_utf8(head).unwrap();
    let at = text.to_ascii_lowercase().find("sec-websocket-key: ").unwrap() + 19;
    &text[at..at + len]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_opens_a_websocket_over_http2() {
    // Goal: a real browser uses weir's RFC 8441 support. Method: headless Chromium
    // loads a page over TLS (ALPN h2) whose script opens a WebSocket to the same origin
    // and writes the echo into the DOM; the access log shows the upgrade as an HTTP/2
    // request (`"GET /ws HTTP/2.0" 101`): Chromium used its HTTP/2 connection, not an
    // HTTP/1.1 one of its own.
    if !super::browser::have_chromium() {
        assert!(std::env::var_os("CI").is_none(), "CI=true but chromium is missing");
        return eprintln!("skipping: needs chromium");
    }
    let backend = page_and_echo_backend().await;
    let pki = crate::support::tls::Pki::new("h2-ws-browser");
    let issued = pki.server(&["localhost"], "weir");
    let log = support::process::temp_path("h2-ws-browser-access.log");
    let weir = Balancer::over(&[backend], |config| {
        super::tls_only(config, &issued);
        config.log.access = Target::Path(log.clone());
        config.log.format = Format::Combined;
    });
    let url = format!("https://localhost:{}/", weir.tls_addr().port());
    let (dom, stderr) = super::browser::dump_dom(&url, "h2-ws-browser-profile").await;
    weir.stop().await;
    let text = std::fs::read_to_string(&log).expect("access log written");
    let _ = std::fs::remove_file(&log);
    assert!(dom.contains("data-echo=\"hello over h2\""), "{dom}\n{stderr}\n{text}");
    assert_eq!(text.matches("\"GET /ws HTTP/2.0\" 101 ").count(), 1, "{text}");
}
