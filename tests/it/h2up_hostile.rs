//! Hostile HTTP/2 backends, frame by frame: a backend that speaks enough HTTP/2 to be
//! reached (its SETTINGS, and the answer to weir's PING) and then breaks a rule on the
//! stream weir opens. Whatever it does, the client gets a 502 or a response cut short
//! in bounded time, never a hang, never bytes the response's own framing does not allow
//! (which would desynchronise an HTTP/1.1 client's connection), and weir's memory is
//! not the backend's to fill.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::Balancer;
use weir::config::BackendProtocol;

/// Far longer than any of these answers takes on a loaded machine, far shorter than the
/// response timeout (60 s) a hang would wait for.
const BOUNDED: Duration = Duration::from_secs(20);

/// Most CONTINUATION frames the flood sends: 64 MiB, far past any header list limit.
const FLOOD_FRAMES: usize = 4096;

/// What the backend does once weir opens a stream.
#[derive(Clone, Copy)]
enum Misdeed {
    /// Sends these bytes (frames for stream `id`, built by the function).
    Reply(fn(u32) -> Vec<u8>),
    /// A HEADERS frame without END_HEADERS, then CONTINUATION frames of 16 KiB each
    /// until weir stops reading (or [`FLOOD_FRAMES`]).
    ContinuationFlood,
    /// A `103` head of about 12 KiB, then small `103` HEADERS frames until weir stops
    /// reading (or [`INTERIM_FLOOD_FRAMES`]).
    InterimFlood,
}

/// Most 1xx HEADERS frames the interim flood sends: 14 MB of 14-byte frames, each
/// decoded into a response of a few hundred bytes if weir queued them. Half of it is
/// well past what the sockets' buffers hold on loopback (the backend's send buffer can
/// reach about 2.6 MB at connect, weir's receive buffer a few MB more).
const INTERIM_FLOOD_FRAMES: usize = 1_000_000;

/// One frame: length, type, flags, stream id, payload (RFC 9113 §4.1).
fn frame(kind: u8, flags: u8, id: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("a small frame").to_be_bytes();
    let mut out = vec![len[1], len[2], len[3], kind, flags];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const SETTINGS: u8 = 4;
const PUSH_PROMISE: u8 = 5;
const PING: u8 = 6;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 1;
const END_HEADERS: u8 = 4;
const ACK: u8 = 1;

/// An HPACK literal field without indexing, with a new name (RFC 7541 §6.2.2); both
/// strings shorter than 127 bytes.
fn literal(name: &str, value: &str) -> Vec<u8> {
    let mut out = vec![0, u8::try_from(name.len()).expect("short")];
    out.extend_from_slice(name.as_bytes());
    out.push(u8::try_from(value.len()).expect("short"));
    out.extend_from_slice(value.as_bytes());
    out
}

/// `:status 200` (HPACK static table entry 8).
const STATUS_200: u8 = 0x88;

/// Counts what the backend saw: connections, and frames it sent in a flood.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    /// Connections that ended (weir closed them).
    closed: AtomicUsize,
    flooded: AtomicUsize,
}

/// Starts a backend that misbehaves as `misdeed` on every stream; returns its address.
async fn start(misdeed: Misdeed) -> (SocketAddr, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Seen::default());
    let counts = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            counts.connections.fetch_add(1, Ordering::SeqCst);
            let seen = Arc::clone(&counts);
            tokio::spawn(async move {
                serve(tcp, misdeed, Arc::clone(&seen)).await;
                seen.closed.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (addr, seen)
}

/// What the backend's socket buffers for sending (Linux doubles it): small, so that a
/// flood's count of frames sent measures what weir read rather than the host's buffer
/// settings.
const SEND_BUFFER: usize = 64 * 1024;

/// One connection: the preface, SETTINGS and PING answered as a server must, and the
/// misdeed on each HEADERS frame. Ends when weir closes the connection.
async fn serve(mut tcp: TcpStream, misdeed: Misdeed, seen: Arc<Seen>) {
    let _ = socket2::SockRef::from(&tcp).set_send_buffer_size(SEND_BUFFER);
    let mut preface = [0u8; 24];
    if tcp.read_exact(&mut preface).await.is_err() {
        return;
    }
    if tcp.write_all(&frame(SETTINGS, 0, 0, &[])).await.is_err() {
        return;
    }
    // Bounded by the connection: each pass reads one frame.
    loop {
        let mut head = [0u8; 9];
        if tcp.read_exact(&mut head).await.is_err() {
            return;
        }
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let (kind, flags) = (head[3], head[4]);
        let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        if tcp.read_exact(&mut payload).await.is_err() {
            return;
        }
        let answer = match (kind, misdeed) {
            (SETTINGS, _) if flags & ACK == 0 => frame(SETTINGS, ACK, 0, &[]),
            (PING, _) if flags & ACK == 0 => frame(PING, ACK, 0, &payload),
            (HEADERS, Misdeed::Reply(reply)) => reply(id),
            (HEADERS, Misdeed::ContinuationFlood) => return flood(tcp, id, &seen).await,
            (HEADERS, Misdeed::InterimFlood) => return interim_flood(tcp, id, &seen).await,
            _ => continue,
        };
        if tcp.write_all(&answer).await.is_err() {
            return;
        }
    }
}

/// Sends an endless header block on stream `id`; counts the CONTINUATION frames weir
/// took before it closed the connection.
async fn flood(mut tcp: TcpStream, id: u32, seen: &Seen) {
    let field = literal("x-flood", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    let block: Vec<u8> = field.iter().copied().cycle().take(16_000).collect();
    let mut start = vec![STATUS_200];
    start.extend_from_slice(&block);
    if tcp.write_all(&frame(HEADERS, 0, id, &start)).await.is_err() {
        return;
    }
    let continuation = frame(CONTINUATION, 0, id, &block);
    for _ in 0..FLOOD_FRAMES {
        if tcp.write_all(&continuation).await.is_err() {
            return;
        }
        seen.flooded.fetch_add(1, Ordering::SeqCst);
    }
}

/// Sends a large `103` head on stream `id`, then small ones in a loop; counts those
/// weir took before it closed the connection.
async fn interim_flood(mut tcp: TcpStream, id: u32, seen: &Seen) {
    // `:status 103`: a literal with the static table's `:status` name (index 8).
    let status = [0x08, 3, b'1', b'0', b'3'];
    let mut large = status.to_vec();
    for i in 0..90 {
        large.extend_from_slice(&literal(&format!("x-hint-{i:02}"), &"h".repeat(120)));
    }
    if tcp.write_all(&frame(HEADERS, END_HEADERS, id, &large)).await.is_err() {
        return;
    }
    let small = frame(HEADERS, END_HEADERS, id, &status);
    let batch: Vec<u8> = small.iter().copied().cycle().take(small.len() * 100).collect();
    for _ in 0..INTERIM_FLOOD_FRAMES / 100 {
        if tcp.write_all(&batch).await.is_err() {
            return;
        }
        seen.flooded.fetch_add(100, Ordering::SeqCst);
    }
}

/// weir over one hostile backend, speaking h2c to it, with a 60 s response timeout
/// that a hang would wait for.
fn weir_over(backend: SocketAddr) -> Balancer {
    Balancer::over(&[backend], |config| {
        let pool = &mut config.pools[0];
        (pool.protocol, pool.response_timeout) = (BackendProtocol::H2c, Duration::from_secs(60));
    })
}

/// Sends one GET to weir and reads until weir closes the connection (or the whole
/// answer, for `Connection: close`); returns the bytes.
async fn exchange(weir: &Balancer) -> Vec<u8> {
    let mut tcp = TcpStream::connect(weir.addr()).await.expect("connect");
    let request = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    tcp.write_all(request).await.expect("write");
    let mut got = Vec::new();
    let read = tokio::time::timeout(BOUNDED, tcp.read_to_end(&mut got)).await;
    read.expect("an answer in bounded time, not a hang").expect("read");
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backends_endless_header_block_is_cut_at_the_header_list_limit() {
    // Goal: the CONTINUATION flood (2024) from a backend: weir's codec stops the
    // header block near the response header limit (`max_header_bytes`, 64 KiB) and
    // closes the connection, rather than read the flood; the client gets a 502.
    // Method: the backend sends up to 4,096 frames of 16 KiB; weir took at most a
    // few, far fewer than a flood that filled its memory would need.
    let (backend, seen) = start(Misdeed::ContinuationFlood).await;
    let weir = weir_over(backend);
    let got = exchange(&weir).await;
    assert!(got.starts_with(b"HTTP/1.1 502 "), "{}", got.escape_ascii());
    let flooded = seen.flooded.load(Ordering::SeqCst);
    // Besides the few frames weir read, what the sockets' buffers held before weir's
    // close reached the backend: the backend's 128 KiB and weir's receive buffer (a few
    // MiB at most on loopback), not 32 MiB.
    assert!(flooded < FLOOD_FRAMES / 2, "weir kept reading the flood: {flooded} frames");
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_a_backend_may_not_send_get_the_client_a_502() {
    // Goal: rules an HTTP/2 server breaks on weir's stream are each a clear 502, in
    // bounded time: a PUSH_PROMISE though weir's SETTINGS turned push off (RFC 9113
    // §8.4: a connection error), a `:status` that is no number, and a response head
    // with a connection-specific field (§8.2.2: malformed).
    let push: fn(u32) -> Vec<u8> = |id| {
        let mut promise = 2u32.to_be_bytes().to_vec();
        promise.extend_from_slice(&[0x82, 0x84, 0x86, 0x41, 0x01, b'a']);
        frame(PUSH_PROMISE, END_HEADERS, id, &promise)
    };
    let bad_status: fn(u32) -> Vec<u8> = |id| {
        // `:status` by its static name index (8), with the value `abc`.
        frame(HEADERS, END_HEADERS | END_STREAM, id, &[0x08, 3, b'a', b'b', b'c'])
    };
    let connection_field: fn(u32) -> Vec<u8> = |id| {
        let mut block = vec![STATUS_200];
        block.extend_from_slice(&literal("connection", "close"));
        frame(HEADERS, END_HEADERS | END_STREAM, id, &block)
    };
    // The control: the same backend answering as it should is heard as such.
    let fine: fn(u32) -> Vec<u8> = |id| frame(HEADERS, END_HEADERS | END_STREAM, id, &[0x88]);
    let (backend, _) = start(Misdeed::Reply(fine)).await;
    let got = exchange(&weir_over(backend)).await;
    assert!(got.starts_with(b"HTTP/1.1 200 "), "control: {}", got.escape_ascii());
    for (name, reply) in [("push", push), ("status", bad_status), ("field", connection_field)] {
        let (backend, _) = start(Misdeed::Reply(reply)).await;
        let weir = weir_over(backend);
        let got = exchange(&weir).await;
        assert!(got.starts_with(b"HTTP/1.1 502 "), "{name}: {}", got.escape_ascii());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_past_a_backends_content_length_never_reaches_the_client() {
    // Goal: a backend that sends more DATA than its `content-length` says: the client
    // never gets more body bytes than the head it got announces, so its connection's
    // framing holds (the excess would be read as the next response). Method: the
    // backend answers `content-length: 3` and 10 bytes of DATA; the client gets a
    // 502, or a 200 whose body is at most its 3 bytes, and then the connection closes.
    let reply: fn(u32) -> Vec<u8> = |id| {
        let mut block = vec![STATUS_200];
        block.extend_from_slice(&literal("content-length", "3"));
        let mut out = frame(HEADERS, END_HEADERS, id, &block);
        out.extend_from_slice(&frame(DATA, END_STREAM, id, b"0123456789"));
        out
    };
    let (backend, _) = start(Misdeed::Reply(reply)).await;
    let weir = weir_over(backend);
    let got = exchange(&weir).await;
    match got.get(..13) {
        Some(b"HTTP/1.1 502 ") => {}
        Some(b"HTTP/1.1 200 ") => {
            let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").expect("a head") + 4;
            let body = &got[head_end..];
            assert!(body.len() <= 3, "more than Content-Length: {}", got.escape_ascii());
        }
        _ => panic!("neither 502 nor 200: {}", got.escape_ascii()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_whose_limit_drops_to_zero_are_let_go_once_idle() {
    // Goal: a backend that lowers SETTINGS_MAX_CONCURRENT_STREAMS to 0 after each
    // connection's first stream (RFC 9113 §6.5.2 allows it, for short spells): each
    // request is still answered, on a new connection, and the ones at 0 with no stream
    // are closed as weir looks for room (or at its sweep, once a second), not kept until
    // `idle_timeout` (60 s here), so they do not pile up one per request. Method: 20
    // requests one after another; all 200, over 20 connections, which weir all closed:
    // 19 as the next request looked for room, the last at a sweep.
    let answer_then_zero: fn(u32) -> Vec<u8> = |id| {
        let mut out = frame(HEADERS, END_HEADERS | END_STREAM, id, &[STATUS_200]);
        // SETTINGS_MAX_CONCURRENT_STREAMS (0x3) = 0.
        out.extend_from_slice(&frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 0]));
        out
    };
    let (backend, seen) = start(Misdeed::Reply(answer_then_zero)).await;
    let weir = Balancer::over(&[backend], |config| {
        config.server.workers = 1;
        let pool = &mut config.pools[0];
        pool.protocol = BackendProtocol::H2c;
        pool.idle_timeout = Duration::from_secs(60);
    });
    for _ in 0..20 {
        let got = exchange(&weir).await;
        assert!(got.starts_with(b"HTTP/1.1 200 "), "{}", got.escape_ascii());
    }
    assert_eq!(seen.connections.load(Ordering::SeqCst), 20);
    let closed = |_: &Balancer| seen.closed.load(Ordering::SeqCst) == 20;
    let let_go = weir.wait_for(BOUNDED, closed).await;
    assert!(let_go.is_some(), "closed {}", seen.closed.load(Ordering::SeqCst));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backends_interim_heads_in_a_loop_close_its_connection_while_the_client_stalls() {
    // Goal: 1xx HEADERS are not flow-controlled, and the codec queued every one for
    // the stream's reader, which waits while a client that reads nothing takes the
    // interim head already relayed: a backend sending them in a loop filled weir's
    // memory until `send_timeout`. Now the 19th header block on one of weir's streams
    // closes the connection. Method: the client's receive buffer is small and it reads
    // nothing until the backend's connection closed; the backend sends a 12 KiB `103`,
    // then up to 1,000,000 small ones. weir took far fewer than a queue of them all
    // needs, and the client, once it reads, gets 16 `103` heads whole (the exchange's
    // limit) and then a 502.
    let (backend, seen) = start(Misdeed::InterimFlood).await;
    let weir = weir_over(backend);
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("a small receive buffer");
    let mut tcp = socket.connect(weir.addr()).await.expect("connect");
    let request = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    tcp.write_all(request).await.expect("write");
    let closed = |_: &Balancer| seen.closed.load(Ordering::SeqCst) == 1;
    assert!(weir.wait_for(BOUNDED, closed).await.is_some(), "weir read the flood on");
    let flooded = seen.flooded.load(Ordering::SeqCst);
    // What weir read before the 19th block, and what the sockets' buffers held before
    // its close reached the backend: a few MB of loopback buffers at most.
    assert!(flooded < INTERIM_FLOOD_FRAMES / 2, "weir kept reading the flood: {flooded} frames");
    let mut got = Vec::new();
    let read = tokio::time::timeout(BOUNDED, tcp.read_to_end(&mut got)).await;
    read.expect("an answer in bounded time").expect("read");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 103 "), "{}", &text[..text.len().min(200)]);
    let last = text.rfind("HTTP/1.1 ").expect("a final head");
    assert!(text[last..].starts_with("HTTP/1.1 502 "), "{}", &text[last..]);
    // The heads before the 19th block reached the codec, and the exchange relays 16.
    assert_eq!(text.matches("HTTP/1.1 103 ").count(), 16, "interim heads relayed whole");
}
