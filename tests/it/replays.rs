//! Replays on a pooled connection that closes without a response byte: an idempotent
//! request is replayed once on a new connection, a non-idempotent one never, because the
//! backend may already have run it. Counted at a raw backend.

use crate::support::{connect, read_head, read_response, roundtrip, Balancer};

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::time::timeout;

/// Most bytes of a test request head the raw backend reads.
const HEAD_LIMIT: usize = 8 * 1024;
/// Bound on every wait of the test, so a regression fails instead of hanging.
const WAIT: Duration = Duration::from_secs(10);

/// A raw backend that answers the first request of each connection (so weir pools the
/// connection) and, on any later request on it, reads the whole request, counts it and
/// closes without a byte: what a backend that ran the request and then crashed looks like.
/// On a later request that asks for `100 Continue`, it sends one before reading the body.
struct Hangup {
    addr: SocketAddr,
    /// Requests received, by `(method, path)` line.
    seen: Arc<std::sync::Mutex<Vec<String>>>,
    closed_silently: Arc<AtomicUsize>,
}

impl Hangup {
    async fn start() -> Hangup {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let closed_silently = Arc::new(AtomicUsize::new(0));
        let (log, closed) = (Arc::clone(&seen), Arc::clone(&closed_silently));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, Arc::clone(&log), Arc::clone(&closed)));
            }
        });
        Hangup { addr, seen, closed_silently }
    }

    fn count(&self, line: &str) -> usize {
        self.seen.lock().unwrap().iter().filter(|seen| seen.as_str() == line).count()
    }
}

async fn serve(
    stream: tokio::net::TcpStream,
    seen: Arc<std::sync::Mutex<Vec<String>>>,
    closed: Arc<AtomicUsize>,
) {
    let mut reader = BufReader::new(stream);
    // Bounded: one request per pass, and the second one ends the connection.
    for number in 0.. {
        let Ok(Some(head)) = read_head(&mut reader, HEAD_LIMIT).await else { return };
        let text = String::from_utf8_lossy(&head).to_string();
        let length = text
            .lines()
            .find_map(|line| {
                line.to_ascii_lowercase().strip_prefix("content-length:").map(str::to_owned)
            })
            .map_or(0, |value| value.trim().parse::<u64>().expect("a length"));
        let expects = text.to_ascii_lowercase().contains("\r\nexpect: 100-continue\r\n");
        if number > 0 && expects {
            let interim = b"HTTP/1.1 100 Continue\r\n\r\n";
            if reader.get_mut().write_all(interim).await.is_err() {
                return;
            }
        }
        let mut body = vec![0; length as usize];
        if reader.read_exact(&mut body).await.is_err() {
            return;
        }
        let line = text.lines().next().unwrap_or_default();
        let words: Vec<&str> = line.split(' ').take(2).collect();
        seen.lock().unwrap().push(words.join(" "));
        if number > 0 {
            closed.fetch_add(1, Ordering::SeqCst);
            return;
        }
        let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        if reader.get_mut().write_all(reply).await.is_err() {
            return;
        }
    }
}

/// Through weir (one worker: pooled connections are per worker), on one client
/// connection: a GET that leaves a pooled upstream connection, then `request` on it.
/// Returns the status of the answer to `request`.
async fn after_a_pooled_exchange(backend: &Hangup, request: &[u8]) -> u16 {
    let weir = Balancer::over(&[backend.addr], |config| config.server.workers = 1);
    let mut client = connect(weir.addr()).await.expect("connect");
    let warm = b"GET /warm HTTP/1.1\r\nHost: test\r\n\r\n";
    let response = timeout(WAIT, roundtrip(&mut client, warm)).await.expect("in time");
    assert_eq!(response.expect("a response").status, 200);
    let response = timeout(WAIT, roundtrip(&mut client, request)).await.expect("in time");
    let response = response.expect("a response");
    assert_eq!(backend.closed_silently.load(Ordering::SeqCst), 1, "{}", response.text());
    response.status
}

#[tokio::test]
async fn a_post_on_a_pooled_connection_that_closes_silently_runs_once_and_gets_502() {
    let backend = Hangup::start().await;
    let post = b"POST /pay HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nmoney";
    let status = after_a_pooled_exchange(&backend, post).await;
    assert_eq!(backend.count("POST /pay"), 1, "the backend ran the POST exactly once");
    assert_eq!(status, 502, "the POST is not replayed");
}

#[tokio::test]
async fn a_get_on_a_pooled_connection_that_closes_silently_is_replayed_once() {
    let backend = Hangup::start().await;
    let get = b"GET /read HTTP/1.1\r\nHost: test\r\n\r\n";
    let status = after_a_pooled_exchange(&backend, get).await;
    assert_eq!(status, 200, "replayed on a new connection");
    assert_eq!(backend.count("GET /read"), 2, "sent once, replayed once");
}

#[tokio::test]
async fn an_interim_response_counts_as_a_response_byte_so_the_put_is_not_replayed() {
    // Goal: a backend that answered `100 Continue`, read the body and died was reached;
    // that is not the idle-close race, so the PUT is not replayed (outside `attempts`
    // and the budget) and the client sees one 100. Method: a pooled connection, then a
    // PUT with `Expect: 100-continue` that the backend answers with 100, reads and
    // closes on.
    let backend = Hangup::start().await;
    let weir = Balancer::over(&[backend.addr], |config| config.server.workers = 1);
    let mut client = connect(weir.addr()).await.expect("connect");
    let warm = b"GET /warm HTTP/1.1\r\nHost: test\r\n\r\n";
    let response = timeout(WAIT, roundtrip(&mut client, warm)).await.expect("in time");
    assert_eq!(response.expect("a response").status, 200);
    let put =
        b"PUT /doc HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n";
    client.write_all(put).await.expect("send head");
    let mut reader = BufReader::new(client);
    let interim = timeout(WAIT, read_head(&mut reader, HEAD_LIMIT)).await.expect("in time");
    let interim = interim.expect("read").expect("an interim head");
    assert!(interim.starts_with(b"HTTP/1.1 100"), "{}", String::from_utf8_lossy(&interim));
    reader.get_mut().write_all(b"hello").await.expect("send body");
    let mut more_interim = 0;
    // Bounded: read_response times out, and a few interim heads are plenty.
    let last = loop {
        let response = read_response(&mut reader).await.expect("a response");
        if response.status != 100 || more_interim == 4 {
            break response;
        }
        more_interim += 1;
    };
    assert_eq!(backend.count("PUT /doc"), 1, "the backend got the PUT once: {}", last.text());
    assert_eq!(more_interim, 0, "the client got another 100");
    assert_eq!(last.status, 502, "{}", last.text());
}
