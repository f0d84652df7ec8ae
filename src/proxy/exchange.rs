//! One request/response exchange over one upstream connection.
//!
//! The request body is sent while the response head is awaited, and the response body is
//! relayed while any rest of the request body is sent: a backend that answers early, or
//! echoes as it reads, never deadlocks against weir. Interim 1xx responses (such as
//! `100 Continue`) are relayed to the client as they come.

use std::cell::Cell;
use std::pin::pin;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::AsyncRead;
use tokio::time::Instant;

use super::io::{Stream, Writer};
use super::pump::{write_all, Capture, Pump, PumpError};
use super::timer::Alarm;
use crate::http1::request::RequestInfo;
use crate::http1::response::{Exchange, ResponseInfo};
use crate::http1::BodyKind;

mod head;
pub(super) use head::{HeadReader, MAX_INTERIM_HEADS};

/// The cause of a response cut because the request body passed `max_body`.
pub const BODY_TOO_LARGE: &str = "request body over max_body";

/// Where the request body comes from on this attempt.
pub enum Upload<'a> {
    /// Stream it from the client after the head in `Io::head`, optionally adding the body
    /// to a replay copy that already holds the head.
    FromClient(Option<&'a mut Capture>),
    /// Replay a copy, head included, kept by an earlier attempt (the client's body was
    /// fully read).
    Replay(&'a [u8]),
}

/// Buffers and limits an exchange uses.
pub struct Io<'a> {
    /// Client input: body bytes after the head, then pipelined requests.
    pub input: &'a mut BytesMut,
    /// The upstream request head on entry; emptied once sent.
    pub head: &'a mut Vec<u8>,
    /// Scratch for the client-bound response head.
    pub reply: &'a mut Vec<u8>,
    /// Upstream input.
    pub upstream: &'a mut BytesMut,
    /// Whole header lines (`Name: value\r\n`) to add to the final response head, or
    /// empty: the sticky `Set-Cookie`.
    pub extra_header: &'a [u8],
    /// Fields to remove from the final response head before `extra_header` is added
    /// (a route's `response_headers`, the request id's header).
    pub strip: crate::rules::Strip<'a>,
    /// The connection's timer, for the response timeout.
    pub alarm: &'a mut Alarm,
    /// When the exchange began: the start of `header_latency`, and of the response
    /// timeout of a request without a body (sent at once).
    pub started: Instant,
}

/// Timeouts that apply to one exchange.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Client body idle timeout.
    pub body_timeout: Duration,
    /// Time from the end of the request to the response head.
    pub response_timeout: Duration,
    /// Backend idle timeout: the longest wait for a response body byte from the backend,
    /// or for the backend to take a request body byte.
    pub read_timeout: Duration,
    /// The longest a write to the client may make no progress.
    pub send_timeout: Duration,
    /// Most bytes in a response head.
    pub max_header_bytes: usize,
    /// gRPC statuses retried: a gRPC call's trailers-only answer with one of them, to
    /// a request sent whole and kept, is not relayed if a retry is arranged.
    pub grpc_retry: crate::config::GrpcCodes,
    /// Most request body data bytes (the route's `max_body`), if any.
    pub max_body: Option<u64>,
}

/// How an exchange that produced a response ended.
#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    /// The status relayed.
    pub status: u16,
    /// The upstream connection may go back to the pool.
    pub upstream_reusable: bool,
    /// The client connection may serve another request.
    pub keep_client: bool,
    /// A 101 was relayed: the caller tunnels bytes both ways now.
    pub upgraded: bool,
    /// Time from the start of the exchange to the final response head.
    pub header_latency: Duration,
    /// Bytes sent upstream, head and body.
    pub bytes_sent: u64,
    /// Bytes received from upstream, head and body.
    pub bytes_received: u64,
    /// Response body bytes written to the client (chunk framing included when relayed).
    pub body_bytes_written: u64,
    /// Request body bytes sent upstream (chunk framing included), for the access log's
    /// `bytes_in`.
    pub body_bytes_sent: u64,
}

/// What reached the client of a response that stopped part way.
#[derive(Clone, Copy, Debug)]
pub struct Cut {
    /// The status of the head the client got whole, or 0 if it got none.
    pub status: u16,
    /// Response body bytes written to the client.
    pub body_bytes: u64,
    /// Why the response stopped, for the access log and the warning.
    pub cause: &'static str,
    /// The backend caused it (not the client): a warning names the backend.
    pub upstream_fault: bool,
}

/// How much of a response weir wrote to the client, to tell what a failure cost.
#[derive(Clone, Copy, Debug)]
pub struct Sent {
    /// The response status.
    pub status: u16,
    /// Length of the client-bound head, written before any body byte.
    pub head: u64,
    /// Bytes written to the client socket, head included.
    pub written: u64,
}

impl Sent {
    /// The failure a broken response body means. When no byte reached the client, a
    /// fault of the backend can still be answered with a 502; once bytes went out, only
    /// closing the connection signals it, and the log says what the client got.
    pub fn failure(self, error: PumpError) -> Failure {
        let (cause, upstream_fault) = match error {
            PumpError::Framing(_) => ("malformed chunked response body", true),
            PumpError::Eof => ("upstream closed before the response body ended", true),
            PumpError::Read(_) => ("upstream read failed in the response body", true),
            PumpError::ReadTimeout => ("upstream sent no body byte for read_timeout", true),
            PumpError::Write(ref e) if e.kind() == std::io::ErrorKind::TimedOut => {
                ("client took no byte for send_timeout", false)
            }
            PumpError::Write(_) => ("client gone", false),
            // Only a request body has a limit; a response pump never stops so.
            PumpError::TooLarge => (BODY_TOO_LARGE, false),
        };
        if self.written == 0 && upstream_fault {
            return Failure::BadResponse(cause);
        }
        let head_sent = self.written >= self.head;
        Failure::Aborted(Cut {
            status: if head_sent { self.status } else { 0 },
            body_bytes: self.written.saturating_sub(self.head),
            cause,
            upstream_fault,
        })
    }
}

/// Why an exchange produced no (complete) response.
#[derive(Debug)]
pub enum Failure {
    /// The upstream closed or reset the connection. `silent` when not one response byte
    /// had arrived, so a stale pooled connection may be retried.
    UpstreamClosed {
        /// No response byte arrived.
        silent: bool,
        /// The whole request, body included, had been written.
        request_sent: bool,
    },
    /// The backend refused the TLS session after the handshake seemed done: with TLS 1.3
    /// a server that rejects the client certificate says so only on the first read.
    UpstreamTls(crate::tls::TlsError),
    /// No response head within the response timeout.
    Timeout,
    /// The upstream sent something weir will not relay.
    BadResponse(&'static str),
    /// The client went away or sent a broken body; nothing more can be said to it.
    ClientGone,
    /// The client paused its body past the body timeout.
    ClientTimeout,
    /// The client's chunked body was malformed.
    ClientBadBody,
    /// The client's body grew past the route's `max_body`.
    BodyTooLarge,
    /// The response had begun when something failed; the client connection must close.
    Aborted(Cut),
    /// The backend's protocol cannot carry the request ([`super::io::Unsendable`]):
    /// nothing, or not all of it, was sent.
    Unsendable(&'static str),
    /// A gRPC call's trailers-only answer carried a status in `Limits::grpc_retry`, and
    /// a retry was arranged: nothing was relayed.
    GrpcRetry,
}

/// Runs one exchange. On entry `io.head` holds the upstream request head.
/// `may_retry` is asked once, for a gRPC status in `limits.grpc_retry` (see
/// [`grpc_retry`]).
#[allow(clippy::too_many_arguments)]
pub async fn run<C: Stream, U: Stream>(
    client: &mut C,
    upstream: &mut U,
    io: Io<'_>,
    request: &RequestInfo,
    upload: Upload<'_>,
    exchange: Exchange,
    limits: Limits,
    may_retry: impl FnOnce(u8) -> bool,
) -> Result<Outcome, Failure> {
    let (mut client_read, mut client_write) = client.halves();
    let (mut upstream_read, mut upstream_write) = upstream.halves();
    let Io { input, head, reply, upstream: upstream_buf, extra_header, strip, alarm, started } = io;
    upstream_buf.clear();
    let head_len = head.len() as u64;
    let body = request.body;
    let (kept, read, write) = (Cell::new(false), &mut client_read, &mut upstream_write);
    let copying = matches!(&upload, Upload::FromClient(Some(capture)) if !capture.overflow);
    let upload = send_request(upload, body, head, input, read, write, limits, &kept);
    let mut upload = pin!(upload);
    let mut uploaded: Option<Result<u64, PumpError>> = None;
    let info = HeadReader {
        upstream: &mut upstream_read,
        buf: &mut *upstream_buf,
        reply: &mut *reply,
        client: &mut client_write,
        exchange: &exchange,
        limits: &limits,
        alarm,
        sent_at: (body == BodyKind::Empty).then_some(started),
        received: false,
        copying,
        interims: 0,
    }
    .read(upload.as_mut(), &mut uploaded)
    .await?;
    let header_latency = started.elapsed();
    let retry = grpc_retry(&info, &upstream_buf[..info.head_len], &limits, &uploaded, &kept);
    if retry.is_some_and(may_retry) {
        return Err(Failure::GrpcRetry);
    }
    upstream_buf.advance(info.head_len);
    strip.apply(reply);
    crate::http1::lines::append_lines(reply, extra_header);
    if info.status == 101 {
        let sent = write_all(&mut client_write, reply, limits.send_timeout).await;
        sent.map_err(|_| Failure::ClientGone)?;
        return Ok(upgraded(header_latency, head_len, info.head_len as u64));
    }
    let reply_head = reply.len() as u64;
    let mut pump = download(&info, &limits, reply);
    let downloaded = if let Some(length) = whole_body(&info, upstream_buf, &uploaded) {
        // Common for small responses: the body came with the head, and the request is
        // sent. One write, without the streaming machinery.
        pump.staged.extend_from_slice(&upstream_buf[..length]);
        upstream_buf.advance(length);
        pump.flush(&mut client_write).await.map(|()| length as u64)
    } else {
        let download = pump.run(upstream_buf, &mut upstream_read, &mut client_write);
        both_ways(upload.as_mut(), pin!(download), &mut uploaded).await
    };
    let sent = Sent { status: info.status, head: reply_head, written: pump.written };
    let downloaded = downloaded.map_err(|error| sent.failure(error));
    let heads = (head_len, info.head_len as u64);
    let outcome = finish(info, uploaded, downloaded, upstream_buf.is_empty())?;
    Ok(outcome.counted(pump.written - reply_head, header_latency, heads))
}

impl Outcome {
    /// The outcome of a relayed response with what [`finish`] does not know: the body
    /// bytes written to the client, the header latency, and the request's and the
    /// response's head lengths.
    fn counted(mut self, body_written: u64, latency: Duration, heads: (u64, u64)) -> Outcome {
        self.body_bytes_written = body_written;
        self.header_latency = latency;
        self.body_bytes_sent = self.bytes_sent;
        self.bytes_sent += heads.0;
        self.bytes_received += heads.1;
        self
    }
}

/// Sends the rest of the request body while the response comes down, until the
/// response ends. A body over `max_body` ends both: the backend has answered a request
/// it will never see whole, so the rest of its answer means nothing to the client.
async fn both_ways<U, D>(
    mut upload: std::pin::Pin<&mut U>,
    mut download: std::pin::Pin<&mut D>,
    uploaded: &mut Option<Result<u64, PumpError>>,
) -> Result<u64, PumpError>
where
    U: std::future::Future<Output = Result<u64, PumpError>>,
    D: std::future::Future<Output = Result<u64, PumpError>>,
{
    loop {
        tokio::select! {
            result = upload.as_mut(), if uploaded.is_none() => {
                if matches!(result, Err(PumpError::TooLarge)) {
                    return Err(PumpError::TooLarge);
                }
                *uploaded = Some(result);
            }
            result = download.as_mut() => return result,
        }
    }
}

/// The outcome of a `101` relayed to the client: the connection is a tunnel from now on.
fn upgraded(header_latency: Duration, bytes_sent: u64, bytes_received: u64) -> Outcome {
    Outcome {
        status: 101,
        upstream_reusable: false,
        keep_client: false,
        upgraded: true,
        header_latency,
        bytes_sent,
        bytes_received,
        body_bytes_written: 0,
        body_bytes_sent: 0,
    }
}

/// The pump of a response body to the client, with the client-bound head staged in
/// `reply`: weir waits on the backend for `read_timeout`, on the client for
/// `send_timeout`.
pub fn download<'a>(info: &ResponseInfo, limits: &Limits, reply: &'a mut Vec<u8>) -> Pump<'a> {
    Pump {
        kind: info.body,
        dechunk: info.dechunk,
        idle_timeout: limits.read_timeout,
        send_timeout: limits.send_timeout,
        written: 0,
        staged: reply,
        capture: None,
        limit: None,
    }
}

/// The length of a response body that is entirely in `buf` already, when nothing else is
/// left to do (the request was sent, no de-chunking).
fn whole_body(
    info: &ResponseInfo,
    buf: &BytesMut,
    uploaded: &Option<Result<u64, PumpError>>,
) -> Option<usize> {
    let length = match info.body {
        BodyKind::Empty => 0,
        BodyKind::Length(n) => usize::try_from(n).ok()?,
        BodyKind::Chunked | BodyKind::UntilClose => return None,
    };
    (uploaded.is_some() && !info.dechunk && buf.len() >= length).then_some(length)
}

/// The gRPC status of a trailers-only answer (HTTP 200, `grpc-status` in the head, no
/// body) that `limits` retries, when the whole request was sent (`uploaded`) and can be
/// sent again (`kept`); `None` otherwise, and at once when no gRPC status is retried.
fn grpc_retry(
    info: &ResponseInfo,
    head: &[u8],
    limits: &Limits,
    uploaded: &Option<Result<u64, PumpError>>,
    kept: &Cell<bool>,
) -> Option<u8> {
    let sent_whole = matches!(uploaded, Some(Ok(_))) && kept.get();
    if limits.grpc_retry.is_empty() || !sent_whole || info.status != 200 {
        return None;
    }
    if !matches!(info.body, BodyKind::Empty | BodyKind::Length(0)) {
        return None;
    }
    let code = super::grpc::status_in(head)?;
    limits.grpc_retry.contains(code).then_some(code)
}

/// Sends the request: the head, then the body from the client or a replay copy. Body
/// bytes that already arrived ride with the head in one write. `kept` is set when the
/// request was sent whole and can be sent again (no body, a replay, or a replay copy
/// that holds the whole body).
#[allow(clippy::too_many_arguments)]
async fn send_request<R, W>(
    upload: Upload<'_>,
    body: BodyKind,
    head: &mut Vec<u8>,
    input: &mut BytesMut,
    client: &mut R,
    upstream: &mut W,
    limits: Limits,
    kept: &Cell<bool>,
) -> Result<u64, PumpError>
where
    R: AsyncRead + Unpin,
    W: Writer,
{
    // Writes to the backend fail after `read_timeout` without progress, as the body
    // pump's do: a backend that takes no byte cannot hold the exchange (whose response
    // timeout starts only once the request is sent) open forever.
    match upload {
        Upload::Replay(bytes) => {
            write_all(upstream, bytes, limits.read_timeout).await?;
            kept.set(true);
            Ok(bytes.len() as u64)
        }
        // The head is left intact, so a stale connection can be retried with it.
        Upload::FromClient(_) if body == BodyKind::Empty => {
            write_all(upstream, head, limits.read_timeout).await?;
            kept.set(true);
            Ok(0)
        }
        Upload::FromClient(capture) => {
            let mut pump = Pump {
                kind: body,
                dechunk: false,
                // The client's pauses count against the body timeout; the backend's
                // (while it does not take bytes) against the backend idle timeout.
                idle_timeout: limits.body_timeout,
                send_timeout: limits.read_timeout,
                written: 0,
                staged: head,
                capture,
                limit: limits.max_body,
            };
            let sent = pump.run(input, client, upstream).await;
            kept.set(pump.capture.as_ref().is_some_and(|capture| !capture.overflow));
            sent
        }
    }
}

fn finish(
    info: ResponseInfo,
    uploaded: Option<Result<u64, PumpError>>,
    downloaded: Result<u64, Failure>,
    upstream_drained: bool,
) -> Result<Outcome, Failure> {
    let body_bytes_received = downloaded?;
    let upload_complete = matches!(uploaded, Some(Ok(_)));
    Ok(Outcome {
        status: info.status,
        upstream_reusable: info.upstream_reusable
            && upload_complete
            && upstream_drained
            && info.body != BodyKind::UntilClose,
        keep_client: !info.close_client && upload_complete,
        upgraded: false,
        header_latency: Duration::ZERO,
        bytes_sent: match uploaded {
            Some(Ok(bytes)) => bytes,
            _ => 0,
        },
        bytes_received: body_bytes_received,
        body_bytes_written: 0,
        body_bytes_sent: 0,
    })
}

#[cfg(test)]
#[path = "exchange_tests.rs"]
pub(super) mod tests;
