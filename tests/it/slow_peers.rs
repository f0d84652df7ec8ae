//! Slow but steady peers are served whole; stalled peers time out. The backend idle
//! timeout (`read_timeout`) runs only while weir waits on the backend, never while the
//! client drains what weir already has; writes stall only when a peer takes no byte for
//! the send timeout. Both directions: a slow download and a slow upload.
//!
//! The client and backend here are raw sockets with a small SO_RCVBUF. A slow peer pauses
//! a few times for several times the timeout of the other side, mid-body, while its own
//! timeout is far longer: weir's write to it is blocked all through each pause, so weir
//! must charge the wait to that peer's timeout, not to the other side's.

use crate::support::{self, read_head, Balancer};

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::time::{sleep, timeout, Instant};

/// The short timeout under test, for whichever side is paced.
const TIMEOUT: Duration = Duration::from_millis(500);
/// The receive buffer of a paced peer: small, so its reads pace the sender closely.
const RCVBUF: u32 = 16 * 1024;
/// Bytes a peer reads at a time.
const PACE_BYTES: usize = 16 * 1024;
/// A body several times larger than the socket buffers on its way.
const BODY: usize = 4 * 1024 * 1024;
/// The body of the pausing tests: far more than loopback sockets hold between weir and a
/// peer that reads nothing (measured 1.6 to 3 MB on Linux, whatever SO_RCVBUF), so
/// weir's write is blocked during each pause whatever the host's buffer sizes.
const PAUSED_BODY: usize = 16 * 1024 * 1024;
/// Each pause of a slow peer: three times the short timeout of the other side.
const PAUSE: Duration = Duration::from_millis(1500);
/// How many pauses, one after each MiB read.
const PAUSES: usize = 2;
/// The timeout of the pausing peer itself: far above `PAUSE`.
const PATIENT: Duration = Duration::from_secs(20);
/// The longest any test waits for an event that must happen.
const WAIT: Duration = Duration::from_secs(60);

/// A connected socket with a small receive buffer (set before connecting, so the window
/// the peer sees is small from the start).
async fn small_buffer_client(addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(RCVBUF).expect("SO_RCVBUF");
    socket.connect(addr).await.expect("connect to weir")
}

/// Reads `n` bytes (or to EOF), pausing for `PAUSE` after each of the first `PAUSES`
/// MiB; returns how many arrived.
async fn pausing_read<R: AsyncReadExt + Unpin>(r: &mut R, n: usize) -> usize {
    const MIB: usize = 1024 * 1024;
    let mut buf = vec![0u8; PACE_BYTES];
    let mut got = 0;
    while got < n {
        let want = PACE_BYTES.min(n - got);
        match timeout(WAIT, r.read(&mut buf[..want])).await {
            Ok(Ok(read)) if read > 0 => {
                // A MiB boundary crossed by this read, up to the last pause.
                if got / MIB != (got + read) / MIB && (got + read) / MIB <= PAUSES {
                    sleep(PAUSE).await;
                }
                got += read;
            }
            _ => break,
        }
    }
    got
}

/// A backend for one connection: reads the request head, then runs `serve`.
async fn one_shot_backend<F, Fut>(serve: F) -> SocketAddr
where
    F: FnOnce(BufReader<TcpStream>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let socket = TcpSocket::new_v4().expect("socket");
    // Inherited by the accepted socket: a backend that reads slowly has a small window.
    socket.set_recv_buffer_size(RCVBUF).expect("SO_RCVBUF");
    socket.bind("127.0.0.1:0".parse().expect("literal")).expect("bind");
    let listener: TcpListener = socket.listen(8).expect("listen");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        let mut reader = BufReader::new(stream);
        read_head(&mut reader, 64 * 1024).await.expect("request head").expect("a request");
        serve(reader).await;
    });
    addr
}

/// Sends a GET and returns the connection after reading the response head.
async fn get_head(addr: SocketAddr) -> (BufReader<TcpStream>, Vec<u8>) {
    let mut client = small_buffer_client(addr).await;
    let req = b"GET /big HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
    client.write_all(req).await.expect("send request");
    let mut reader = BufReader::new(client);
    let head = timeout(WAIT, read_head(&mut reader, 64 * 1024)).await.expect("head in time");
    (reader, head.expect("read head").expect("a response head"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_pauses_longer_than_the_backend_idle_timeout_gets_the_whole_body() {
    // Goal: the client's pauses are charged to send_timeout, not to the backend's
    // read_timeout: weir is not waiting on the backend while the client drains. Method:
    // read_timeout = 500 ms, send_timeout = 20 s; the client pauses for 1.5 s twice,
    // while weir's write to it is blocked.
    let backend = one_shot_backend(|mut conn| async move {
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {PAUSED_BODY}\r\n\r\n");
        conn.write_all(head.as_bytes()).await.expect("head");
        let _ = conn.write_all(&vec![b'x'; PAUSED_BODY]).await;
    })
    .await;
    let weir = Balancer::over(&[backend], |c| {
        c.pools[0].read_timeout = TIMEOUT;
        c.server.send_timeout = PATIENT;
    });
    let (mut client, head) = get_head(weir.addr()).await;
    assert!(head.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head));
    let got = pausing_read(&mut client, PAUSED_BODY).await;
    assert_eq!(got, PAUSED_BODY, "the download was cut");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_pauses_longer_than_the_client_body_timeout_gets_the_whole_upload() {
    // Goal: a backend's pauses in reading the request body are charged to read_timeout,
    // not to the client's body_timeout, though the client, held back, sends nothing for
    // longer than body_timeout would allow a silent client. Method: body_timeout =
    // 500 ms, read_timeout = 20 s; the backend pauses for 1.5 s twice, while weir's
    // write to it is blocked, and answers with the count.
    let backend = one_shot_backend(|mut conn| async move {
        let got = pausing_read(&mut conn, PAUSED_BODY).await;
        let body = got.to_string();
        let reply = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        let _ = conn.write_all(reply.as_bytes()).await;
    })
    .await;
    let weir = Balancer::over(&[backend], |c| {
        c.server.body_timeout = TIMEOUT;
        c.pools[0].read_timeout = PATIENT;
        // Bounds the failure: a request weir stopped sending gets its 504 after this.
        c.pools[0].response_timeout = PATIENT;
    });
    let mut client = TcpStream::connect(weir.addr()).await.expect("connect to weir");
    let head = format!(
        "POST /up HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {PAUSED_BODY}\r\n\r\n"
    );
    client.write_all(head.as_bytes()).await.expect("send head");
    // A failed write means weir gave up on the body; the reply says why.
    let _ = client.write_all(&vec![b'u'; PAUSED_BODY]).await;
    let mut reply = Vec::new();
    let _ = timeout(WAIT, client.read_to_end(&mut reply)).await.expect("a reply in time");
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.ends_with(&format!("\r\n\r\n{PAUSED_BODY}")), "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_stops_sending_mid_body_times_out() {
    // Goal: the backend idle timeout still fires when weir waits on a silent backend.
    // Method: the backend sends half the body and then nothing, holding the connection;
    // the client, reading freely, sees the connection close short of the body.
    let (stalled_tx, stalled_rx) = tokio::sync::oneshot::channel::<()>();
    let backend = one_shot_backend(|mut conn| async move {
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {BODY}\r\n\r\n");
        conn.write_all(head.as_bytes()).await.expect("head");
        conn.write_all(&vec![b'x'; BODY / 2]).await.expect("half the body");
        // Hold the connection open until the test ends.
        let _ = stalled_rx.await;
    })
    .await;
    let weir = Balancer::over(&[backend], |c| c.pools[0].read_timeout = TIMEOUT);
    let (mut client, _) = get_head(weir.addr()).await;
    let mut body = Vec::new();
    let read = timeout(WAIT, client.read_to_end(&mut body)).await.expect("closed in time");
    assert!(read.is_ok(), "{read:?}");
    assert_eq!(body.len(), BODY / 2, "only what the backend sent arrives");
    drop(stalled_tx);
}

/// Waits (bounded) for the first line of a JSON access log and parses it.
async fn first_log_line(path: &std::path::Path) -> serde_json::Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(line) = text.lines().next() {
            return serde_json::from_str(line).expect("a JSON line");
        }
        assert!(Instant::now() < deadline, "no access log line");
        sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_after_the_send_timeout() {
    // Goal: a client that takes no byte for send_timeout is given up on, and the log says
    // what it got. Method: send_timeout = 500 ms, the client reads the head and then
    // nothing; once weir logs the request, the client reads the rest to EOF.
    let backend = one_shot_backend(|mut conn| async move {
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {BODY}\r\n\r\n");
        conn.write_all(head.as_bytes()).await.expect("head");
        let _ = conn.write_all(&vec![b'x'; BODY]).await;
    })
    .await;
    let log = support::process::temp_path("stalled-client.json");
    let weir = Balancer::over(&[backend], |c| {
        c.server.send_timeout = TIMEOUT;
        c.log.access = weir::access_log::Target::Path(log.clone());
        c.log.format = weir::access_log::Format::Json;
    });
    let (mut client, _) = get_head(weir.addr()).await;
    let line = first_log_line(&log).await;
    let mut rest = Vec::new();
    let read = timeout(WAIT, client.read_to_end(&mut rest)).await.expect("closed in time");
    assert!(read.is_ok(), "{read:?}");
    let got = client.buffer().len() + rest.len();
    assert!(got < BODY, "the whole body arrived: the stalled client was not cut");
    assert_eq!(line["status"], 200, "{line}");
    assert_eq!(line["bytes_out"], got as u64, "the log says what the client got: {line}");
    let error = line["error"].as_str().unwrap_or_default();
    assert!(error.contains("send_timeout"), "{line}");
}
