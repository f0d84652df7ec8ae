//! The data path: one task per client connection, serving requests in a keep-alive loop.
//!
//! For each request: read and check the head ([`crate::http1::request`]), route it, pick a
//! backend, take a pooled upstream connection or open one, run the exchange
//! ([`exchange`]), and put the upstream connection back if it is clean. Errors weir makes
//! itself are short `text/plain` answers naming the cause ([`reply`]). Client and upstream
//! connections are plain TCP or TLS ([`io`]); the code is specialised for each.

// First: the macro is used by the modules below it.
#[macro_use]
mod write_through;
pub mod affinity;
mod attempt;
pub(crate) mod boxed;
pub mod buffers;
pub(crate) mod class;
pub mod exchange;
mod failure;
pub(crate) mod forward;
pub(crate) mod grpc;
pub(crate) mod h2;
pub(crate) mod inbound;
pub(crate) mod io;
pub(crate) mod limiting;
pub(crate) mod linger;
pub(crate) mod logging;
pub(crate) mod outbound;
mod policy;
pub mod pump;
pub(crate) mod reply;
pub(crate) mod retry;
pub mod timer;
pub(crate) mod tunnel;
pub(crate) mod upstream_h2;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;

use tokio::io::AsyncReadExt;
use tokio::time::Instant;

use crate::config::ServerConfig;
use crate::context::Context;
use crate::drain::Watch;
use crate::http1::forwarded::Trust;
use crate::http1::request::{self, Forwarding, RequestInfo};
use crate::http1::Parsed;
use crate::snapshot::Snapshot;
use crate::tls::Acceptor;
use boxed::boxed;
use buffers::Buffers;
use io::Stream;
use timer::Alarm;

/// What one client connection knows about itself.
pub struct Client {
    /// What the data path shares across workers.
    pub shared: Arc<Context>,
    /// The client's address: the peer's, or the source a PROXY protocol header named.
    pub peer: SocketAddr,
    /// The peer's IP as text, for `X-Forwarded-For`.
    pub peer_ip: String,
    /// This worker's drain signal.
    pub drain: Rc<crate::drain::Drain>,
    /// Whether per-request metrics are counted (`[admin] metrics`, fixed at start).
    pub metrics: bool,
    /// The connection came in on a TLS listener: `X-Forwarded-Proto: https`.
    pub tls: bool,
    /// The connection speaks HTTP/2 (each stream is one request; see [`h2`]).
    pub http2: bool,
    /// The address the client reached: a PROXY header's destination, or weir's own when
    /// a pool sends PROXY headers (see [`inbound`] and `forward::connect`). Boxed: every
    /// connection's task carries the field, and few need it (the idle-task bound in
    /// `worker`).
    pub local: Option<Box<SocketAddr>>,
    /// The connection began with a PROXY header: a second one is refused.
    pub proxied: bool,
}

impl Client {
    /// The client address of a request: what a trusted proxy's `X-Forwarded-For`
    /// names, else the connection's.
    pub fn address(&self, info: &RequestInfo) -> std::net::IpAddr {
        info.forwarded_client.unwrap_or(self.peer.ip())
    }

    /// What becomes of this connection's `X-Forwarded-For` under `trusted_proxies`.
    pub fn trust<'c>(&self, server: &'c ServerConfig) -> Trust<'c> {
        match &server.trusted_proxies {
            None => Trust::Everyone,
            Some(list) if crate::cidr::any_contains(list, self.peer.ip()) => Trust::Proxy(list),
            Some(_) => Trust::Replace,
        }
    }
}

/// A client address as text, for `X-Forwarded-For`, made once per connection. IPv4, the
/// common case, is written by hand: `Display` through `core::fmt` took about 1,460
/// instructions per connection (callgrind, a new connection per request), 7% of such a
/// request's user-space cost.
pub fn ip_text(ip: std::net::IpAddr) -> String {
    let std::net::IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut text = String::with_capacity(15);
    for (index, octet) in v4.octets().into_iter().enumerate() {
        if index > 0 {
            text.push('.');
        }
        if octet >= 100 {
            text.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            text.push(char::from(b'0' + octet / 10 % 10));
        }
        text.push(char::from(b'0' + octet % 10));
    }
    text
}

/// How reading the next request head ended.
enum Head {
    /// A request head, at the front of the input buffer.
    Request(RequestInfo),
    /// The connection is done (closed, timed out); nothing to send.
    Close,
    /// Nothing has arrived after all: the wake-up was a false positive (tokio marks an
    /// accepted socket readable before any byte came). Give the buffers back and wait.
    Idle,
    /// Answer this error, then close.
    Refuse(u16, &'static str),
    /// The HTTP/2 client preface, at the front of the input buffer.
    Http2,
}

/// Serves one client connection, plain or TLS, until it closes.
pub async fn serve<S: Stream>(mut stream: S, client: Client) {
    let mut spare: Option<Buffers> = None;
    let mut first = true;
    // One timer and one drain registration for the connection's life, not per request
    // (see `timer` and `crate::drain`).
    let mut alarm = Alarm::default();
    let mut watch = client.drain.watch();
    // When the current wait for a request ends; kept across false wake-ups, so bytes
    // that never make a request (a TLS record trickled a byte at a time) cannot
    // stretch it.
    let mut wait_until: Option<Instant> = None;
    loop {
        if spare.is_none() {
            // The timeout is copied out so an idle connection pins no snapshot.
            let idle = {
                let snapshot = current_snapshot(&client.shared);
                let server = &snapshot.config.server;
                if first {
                    server.header_timeout
                } else {
                    server.keepalive_timeout
                }
            };
            let wait = Wait { until: &mut wait_until, idle };
            if !wait_for_bytes(&mut stream, &mut watch, &mut alarm, wait).await {
                break;
            }
        }
        // Loaded once the request has begun to arrive, never before an idle wait: a
        // request that arrives after a change (a backend removed or drained) must see it.
        let snapshot = current_snapshot(&client.shared);
        let started_first = std::mem::replace(&mut first, false);
        let buffers = spare.take().unwrap_or_else(buffers::take);
        let conn = Conn { client: &client, alarm: &mut alarm, started: Instant::now() };
        // Boxed: reading a head and running an exchange take a lot of state, and an idle
        // connection should not carry it (10,000 idle clients would pin 10,000 copies).
        // Only a connection's first bytes may be the HTTP/2 preface.
        let h2c = started_first && !client.tls && snapshot.config.server.h2c;
        let start = Start { h2c, proxied: started_first && client.proxied };
        let (after, buffers) =
            boxed(|| one_request(&mut stream, conn, &snapshot, buffers, start)).await;
        if after == After::Idle {
            // Not a request yet: a connection that has sent nothing holds no buffers
            // (5,000 of them held 16.9 KiB each before, issue #9). `first` stays as it
            // was, so a new connection keeps the header timeout.
            first = started_first;
            buffers::give(buffers);
            continue;
        }
        wait_until = None;
        if after == After::Http2 {
            drop(watch);
            return http2(stream, client, buffers).await;
        }
        if after == After::Close || after == After::Gone {
            // A lingering connection pins no snapshot.
            drop(snapshot);
            return close(&mut stream, buffers, after == After::Close).await;
        }
        // An idle connection keeps no buffers (see `buffers`), unless a pipelined request
        // is already waiting in them.
        if buffers.input.is_empty() {
            buffers::give(buffers);
        } else {
            spare = Some(buffers);
        }
    }
}

/// Closes a client connection, with a lingering close if weir answered on it
/// (`answered`); whatever the client left unread is dropped with it. The buffers go
/// back first: a lingering connection holds none.
async fn close<S: Stream>(stream: &mut S, mut buffers: Buffers, answered: bool) {
    buffers.input.clear();
    buffers::give(buffers);
    if answered {
        boxed(|| linger::close(stream)).await;
    }
}

/// The HTTP/2 driver for a plain connection that sent the preface: the preface and
/// whatever followed it are read again by the codec. Boxed: an HTTP/1 connection's task
/// must not carry HTTP/2 state.
fn http2<S: Stream>(
    stream: S,
    client: Client,
    mut buffers: Buffers,
) -> std::pin::Pin<Box<impl std::future::Future<Output = ()>>> {
    let first = buffers.input.split().freeze();
    buffers::give(buffers);
    Box::pin(h2::serve(h2::Rewind::new(first, stream), client))
}

/// One request's view of its connection.
pub struct Conn<'a> {
    /// The client.
    pub client: &'a Client,
    /// The connection's timer, for the wait for the response head.
    pub alarm: &'a mut Alarm,
    /// When the request began to arrive: the start of its header timeout and of its
    /// duration. Read once and passed on, as each clock read costs.
    pub started: Instant,
}

/// Completes the TLS handshake of a client of a TLS listener (bounded by the listener's
/// handshake timeout), then serves it like a plain one.
pub async fn serve_tls(stream: tokio::net::TcpStream, acceptor: Arc<Acceptor>, client: Client) {
    // The task lives as long as the connection and is as big as the largest of the
    // futures it awaits, so each is boxed (two allocations per connection, none per
    // request): the handshake's (1,352 bytes, freed once it ends), HTTP/1's (3,104) and
    // HTTP/2's. Inline, an idle HTTP/2 client over TLS held HTTP/1's size beside its own.
    // The protocol is read in the arm and the stream moved out, never borrowed where it
    // is held: a borrowed value stays in the future across every later await (1,208 bytes
    // more, the stream moved on).
    let (tls, http2) = match Box::pin(acceptor.accept(stream)).await {
        Ok(tls) => {
            let http2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            (tls, http2)
        }
        Err(error) => {
            return tracing::debug!(client = %client.peer, "TLS handshake failed: {error}")
        }
    };
    if http2 {
        Box::pin(h2::serve(tls, client)).await;
    } else {
        Box::pin(serve(tls, client)).await;
    }
}

/// How long an idle keep-alive connection stays open once its worker drains. Closing it
/// at once races a request the client may be sending at that moment, which then fails
/// with no answer (a POST is not retried); a client under load sends its next request
/// well within a second, gets an answer with `Connection: close`, and goes elsewhere. A
/// second also keeps `systemctl stop` with idle browsers short: nginx closes idle
/// connections at once, and a drain should not wait `drain_timeout` for them.
pub const DRAIN_IDLE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// How long a wait for a request may last.
struct Wait<'a> {
    /// The end of this wait, set when it first has to wait.
    until: &'a mut Option<Instant>,
    /// The idle or header timeout that sets it.
    idle: std::time::Duration,
}

/// Waits until the client sends something, holding no buffers. False when the
/// connection should close instead: idle timeout, peer gone, or idle for
/// [`DRAIN_IDLE_GRACE`] after the worker began draining.
async fn wait_for_bytes<S: Stream>(
    stream: &mut S,
    watch: &mut Watch<'_>,
    alarm: &mut Alarm,
    wait: Wait<'_>,
) -> bool {
    let mut readable = pin!(stream.readable());
    // A pipelining or quick client: no clock read, no timer.
    if let Poll::Ready(ready) = timer::poll_once(readable.as_mut()).await {
        return ready.is_ok();
    }
    alarm.set(*wait.until.get_or_insert_with(|| Instant::now() + wait.idle));
    tokio::select! {
        biased;
        ready = &mut readable => return ready.is_ok(),
        () = alarm.expired() => return false,
        () = &mut *watch => {}
    }
    // The grace runs on the same timer: a timeout here would grow every idle
    // connection's task by a timer's size.
    alarm.set(Instant::now() + DRAIN_IDLE_GRACE);
    tokio::select! {
        biased;
        ready = readable => ready.is_ok(),
        () = alarm.expired() => false,
    }
}

/// What a connection does after [`one_request`].
#[derive(Debug, PartialEq, Eq)]
enum After {
    /// Serve the next request.
    Next,
    /// Close, with a lingering close: weir answered, and the client may still be
    /// sending ([`linger`]).
    Close,
    /// Close at once: the client is gone, sent nothing weir answers, or let its head
    /// time out.
    Gone,
    /// No request began: wait for bytes again, holding no buffers.
    Idle,
    /// The client sent the HTTP/2 preface: serve HTTP/2 from now on.
    Http2,
}

/// What only a connection's first bytes may be.
#[derive(Clone, Copy)]
struct Start {
    /// The HTTP/2 preface is looked for.
    h2c: bool,
    /// A PROXY header came first: another one is refused.
    proxied: bool,
}

/// Reads one request head and handles the request. Returns what the connection does
/// next, and the buffers.
async fn one_request<S: Stream>(
    stream: &mut S,
    conn: Conn<'_>,
    snapshot: &SnapshotRef,
    mut buffers: Buffers,
    first: Start,
) -> (After, Buffers) {
    let client = conn.client;
    let server = &snapshot.config.server;
    let read = read_head(stream, client, server, &mut buffers, (conn.started, first)).await;
    let keep = match read {
        Head::Idle => return (After::Idle, buffers),
        Head::Http2 => return (After::Http2, buffers),
        Head::Close => return (After::Gone, buffers),
        Head::Refuse(status, reason) => {
            let answer = reply::Answer::local(status, reason, true);
            reply::send(stream, client, &mut buffers.reply, answer, server.send_timeout).await;
            logging::Pending::unparsed(client)
                .finish(client, logging::Done::refused(status, reason));
            // A client whose head timed out is slow or stalled, not sending on: it is
            // closed at once, as nginx closes on `client_header_timeout`.
            if status == 408 {
                return (After::Gone, buffers);
            }
            false
        }
        // Not `&& !draining`: a drain that began during this exchange came too late for
        // its response to say `Connection: close`, so closing now would race the
        // client's next request. That request is served and its response says close.
        Head::Request(info) => forward::handle(stream, conn, snapshot, &mut buffers, info).await,
    };
    (if keep { After::Next } else { After::Close }, buffers)
}

/// Reads and parses the next request head, within the header timeout; with `h2c`, tells
/// the HTTP/2 preface apart first.
async fn read_head<S: Stream>(
    stream: &mut S,
    client: &Client,
    server: &ServerConfig,
    buffers: &mut Buffers,
    (started, Start { h2c, mut proxied }): (Instant, Start),
) -> Head {
    let deadline = started + server.header_timeout;
    let forwarding = Forwarding {
        client_ip: client.peer_ip.as_bytes(),
        proto: if client.tls { b"https" } else { b"http" },
        max_headers: server.max_headers,
        trust: client.trust(server),
    };
    // Bounded: each pass reads at least one byte, and the head is bounded in bytes.
    loop {
        if proxied {
            match crate::proxy_protocol::begins_header(&buffers.input) {
                Some(true) => {
                    inbound::count(client, crate::proxy_protocol::Error::Repeated);
                    return Head::Close;
                }
                Some(false) => proxied = false,
                None => {}
            }
        }
        let preface = if h2c { h2::preface(&buffers.input) } else { None };
        if preface == Some(true) {
            return Head::Http2;
        }
        if !buffers.input.is_empty() && preface.is_none() {
            let head_end = buffers.input.len().min(server.max_header_bytes);
            match request::parse(&buffers.input[..head_end], &forwarding, &mut buffers.head) {
                Ok(Parsed::Complete(info)) => return Head::Request(info),
                Ok(Parsed::Partial) if buffers.input.len() >= server.max_header_bytes => {
                    return Head::Refuse(431, "request header fields too large");
                }
                Ok(Parsed::Partial) => {}
                Err(error) => {
                    let (status, reason) = error.status();
                    return Head::Refuse(status, reason);
                }
            }
        }
        let nothing_yet = buffers.input.is_empty();
        buffers.input.reserve(4096);
        let mut read = pin!(stream.read_buf(&mut buffers.input));
        // As `timer::lazy_timeout_at`, with one more case: when no byte of a request has
        // come, a read that would wait means the wake-up was a false positive.
        let read = match timer::poll_once(read.as_mut()).await {
            Poll::Ready(read) => Ok(read),
            Poll::Pending if nothing_yet => return Head::Idle,
            Poll::Pending => tokio::time::timeout_at(deadline, read).await,
        };
        match read {
            Ok(Ok(0)) | Ok(Err(_)) => return Head::Close,
            Ok(Ok(_)) => {}
            Err(_) if buffers.input.is_empty() => return Head::Close,
            Err(_) => return Head::Refuse(408, "request header timeout"),
        }
    }
}

/// The snapshot type the data path holds across awaits: a worker-local handle.
pub type SnapshotRef = Rc<Arc<Snapshot>>;

thread_local! {
    static SNAPSHOT: RefCell<Option<SnapshotRef>> = const { RefCell::new(None) };
}

/// The current snapshot as a worker-local handle: cloning it costs no atomic operation,
/// and it is refreshed when a reload swapped a new snapshot in.
pub(crate) fn current_snapshot(shared: &Context) -> SnapshotRef {
    let current = shared.snapshot.load();
    SNAPSHOT.with(|cache| {
        let mut cache = cache.borrow_mut();
        match cache.as_ref() {
            Some(cached) if Arc::ptr_eq(cached, &current) => Rc::clone(cached),
            _ => {
                let fresh = Rc::new(Arc::clone(&current));
                *cache = Some(Rc::clone(&fresh));
                fresh
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    #[test]
    fn ip_text_matches_display_for_every_octet_in_every_place() {
        for value in 0..=255u8 {
            for place in 0..4 {
                let mut octets = [10, 0, 200, 7];
                octets[place] = value;
                let ip = IpAddr::V4(Ipv4Addr::from(octets));
                assert_eq!(super::ip_text(ip), ip.to_string());
            }
        }
        let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
        assert_eq!(super::ip_text(v6), "2001:db8::1");
        let mapped = IpAddr::V6(Ipv4Addr::new(127, 0, 0, 1).to_ipv6_mapped());
        assert_eq!(super::ip_text(mapped), mapped.to_string());
    }
}
