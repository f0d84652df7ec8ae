//! Responses that break part way are logged and counted as what the client got: a body
//! cut by the backend is a 200 with the bytes written, a malformed chunked body before any
//! byte reached the client is a 502, and after the head went out the connection closes.
//! The upstream connection of a broken response is never reused.

use crate::support::scrape::{metric, scrape_until};
use crate::support::{self, read_head, Balancer};

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout, Instant};

/// The longest any test waits for an event that must happen.
const WAIT: Duration = Duration::from_secs(10);
/// What the backend answers on each connection after the first.
const GOOD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// A backend whose first connection gets the pieces of `first` once its request head is
/// read, each after the first one when `release` yields, and whose later connections get
/// [`GOOD`] for every request. Closes the first connection after the pieces unless
/// `release` is given (then weir must close it). Counts connections.
async fn scripted_backend(
    first: Vec<Vec<u8>>,
    mut release: Option<mpsc::Receiver<()>>,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let mut reader = BufReader::new(stream);
            if count.fetch_add(1, Ordering::SeqCst) == 0 {
                let Ok(Some(_)) = read_head(&mut reader, 64 * 1024).await else { continue };
                for (n, piece) in first.iter().enumerate() {
                    if n > 0 {
                        // Each later piece waits until the test says the client has
                        // the ones before.
                        release.as_mut().expect("a release channel").recv().await;
                    }
                    let _ = reader.write_all(piece).await;
                }
                if release.is_some() {
                    let _ = reader.read_to_end(&mut Vec::new()).await;
                }
                continue;
            }
            tokio::spawn(async move {
                while let Ok(Some(_)) = read_head(&mut reader, 64 * 1024).await {
                    let _ = reader.write_all(GOOD).await;
                }
            });
        }
    });
    (addr, accepted)
}

/// weir with its admin listener and a JSON access log at `log`.
fn balancer(backend: SocketAddr, log: &Path) -> Balancer {
    let log = log.to_path_buf();
    Balancer::with_admin(&[backend], |c| {
        c.log.access = weir::access_log::Target::Path(log);
        c.log.format = weir::access_log::Format::Json;
    })
}

/// Waits (bounded) for `n` lines in a JSON access log and parses them.
async fn log_lines(path: &Path, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().count() >= n {
            return text.lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
        }
        assert!(Instant::now() < deadline, "{n} log lines expected, have:\n{text}");
        sleep(Duration::from_millis(20)).await;
    }
}

/// Sends a GET with `Connection: close` on a new connection; returns all bytes until EOF.
async fn get_to_eof(addr: SocketAddr) -> Vec<u8> {
    let mut client = TcpStream::connect(addr).await.expect("connect to weir");
    let req = b"GET /x HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
    client.write_all(req).await.expect("send");
    let mut got = Vec::new();
    let read = timeout(WAIT, client.read_to_end(&mut got)).await.expect("closed in time");
    assert!(read.is_ok(), "{read:?}");
    got
}

/// Reads until what arrived ends with `end`.
async fn read_until(client: &mut TcpStream, end: &[u8]) {
    let mut got = Vec::new();
    while !got.ends_with(end) {
        let mut buf = [0u8; 1024];
        let n = timeout(WAIT, client.read(&mut buf)).await.expect("bytes in time").expect("read");
        assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
}

/// Asserts weir's status class counters: `ok` 2xx and `bad` 5xx responses.
async fn assert_counted(admin: SocketAddr, ok: f64, bad: f64) {
    let text = scrape_until(admin, "weir_requests_total", &[("code_class", "2xx")], ok).await;
    let errors = metric(&text, "weir_requests_total", &[("code_class", "5xx")]);
    assert_eq!(errors, Some(bad), "5xx count\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_cut_by_the_backend_is_logged_as_sent() {
    // Goal: the log and the metrics say what the client got: a 200 and 10 body bytes.
    // Method: the backend announces 100 bytes, sends 10 and closes.
    let piece = [&b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"[..], &[b'x'; 10]].concat();
    let (backend, _) = scripted_backend(vec![piece], None).await;
    let log = support::process::temp_path("cut.json");
    let weir = balancer(backend, &log);
    let got = get_to_eof(weir.addr()).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("\r\n\r\nxxxxxxxxxx"), "{text}");
    let line = &log_lines(&log, 1).await[0];
    assert_eq!(
        (line["status"].as_u64(), line["bytes_out"].as_u64()),
        (Some(200), Some(10)),
        "{line}"
    );
    assert!(line["error"].as_str().is_some_and(|e| e.contains("closed")), "{line}");
    assert_counted(weir.admin(), 1.0, 0.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_chunked_body_before_any_byte_sent_gives_502() {
    // Goal: a bad chunk-size line that arrives with the head is answered with a 502 and a
    // cause, logged and counted as such, and the upstream connection is not reused.
    // Method: head and `zz` in one write on a connection the backend keeps open; then a
    // second request, which must arrive on a new backend connection.
    let piece = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec();
    let (_keep, release) = mpsc::channel(1);
    let (backend, accepted) = scripted_backend(vec![piece], Some(release)).await;
    let log = support::process::temp_path("bad-chunk.json");
    let weir = balancer(backend, &log);
    let got = get_to_eof(weir.addr()).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 502"), "{text:?}");
    assert!(text.to_ascii_lowercase().contains("chunked"), "{text}");
    let line = &log_lines(&log, 1).await[0];
    assert_eq!(line["status"].as_u64(), Some(502), "{line}");
    assert!(line["error"].as_str().is_some(), "{line}");
    let next = support::get_close(weir.addr(), "/next").await;
    assert_eq!((next.status, next.text().as_str()), (200, "ok"));
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "the broken connection was reused");
    assert_counted(weir.admin(), 1.0, 1.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_chunk_after_the_head_went_out_closes_the_client() {
    // Goal: once the head and a chunk reached the client, a bad chunk-size line closes the
    // client connection, and the log says 200 with the body bytes written. Method: the
    // backend sends the head and a chunk, waits until the client has them, then `zz`.
    let first = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n".to_vec();
    let (release_tx, release) = mpsc::channel(1);
    let (backend, accepted) =
        scripted_backend(vec![first, b"zz\r\n".to_vec()], Some(release)).await;
    let log = support::process::temp_path("late-bad-chunk.json");
    let weir = balancer(backend, &log);
    let mut client = TcpStream::connect(weir.addr()).await.expect("connect to weir");
    client.write_all(b"GET /x HTTP/1.1\r\nHost: test\r\n\r\n").await.expect("send");
    read_until(&mut client, b"hello\r\n").await;
    release_tx.send(()).await.expect("backend waiting");
    let mut rest = Vec::new();
    let read = timeout(WAIT, client.read_to_end(&mut rest)).await.expect("closed in time");
    assert!(read.is_ok() && rest.is_empty(), "{read:?} {:?}", String::from_utf8_lossy(&rest));
    let line = &log_lines(&log, 1).await[0];
    let chunk_bytes = "5\r\nhello\r\n".len() as u64;
    assert_eq!(
        (line["status"].as_u64(), line["bytes_out"].as_u64()),
        (Some(200), Some(chunk_bytes)),
        "{line}"
    );
    assert!(line["error"].as_str().is_some_and(|e| e.contains("chunked")), "{line}");
    let next = support::get_close(weir.addr(), "/next").await;
    assert_eq!((next.status, next.text().as_str()), (200, "ok"));
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "the broken connection was reused");
    assert_counted(weir.admin(), 2.0, 0.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_cut_after_the_head_is_warned_about_with_the_backend() {
    // Goal: the operator sees which backend broke a response, and why. Method: the weir
    // binary; the backend sends a head with a chunk, then a bad chunk-size line once the
    // client has the chunk; stderr must carry a warning naming the backend and cause.
    let first = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n".to_vec();
    let (release_tx, release) = mpsc::channel(1);
    let (backend, _) = scripted_backend(vec![first, b"zz\r\n".to_vec()], Some(release)).await;
    let backend_arg = backend.to_string();
    let args = ["-b", &backend_arg, "-l", "127.0.0.1:0", "--admin", "off"];
    let (weir, addr) = support::process::WeirProcess::start(&args).await;
    let mut client = TcpStream::connect(addr).await.expect("connect to weir");
    client.write_all(b"GET /x HTTP/1.1\r\nHost: test\r\n\r\n").await.expect("send");
    read_until(&mut client, b"hello\r\n").await;
    release_tx.send(()).await.expect("backend waiting");
    let warned = |l: &str| l.contains("WARN") && l.contains("response cut");
    let line = weir.wait_stderr(warned).await.unwrap_or_else(|| panic!("{}", weir.stderr()));
    assert!(line.contains(&backend_arg) && line.contains("chunked"), "{line}");
}
