//! A held exchange, for retries on status: the response head is read in full before any
//! of it goes to the client, so a retriable status can still be retried.
//!
//! Only requests without a body use it (see [`super::Plan::holds_status`]), so the
//! request is one write of the head, and it stays in `Io::head` for the next attempt.
//! Interim 1xx responses are relayed as they come, as [`exchange::run`] does; they are
//! not the response itself.
//!
//! [`exchange::run`]: crate::proxy::exchange::run

use bytes::Buf;
use tokio::io::AsyncRead;
use tokio::time::{timeout_at, Instant};

use crate::config::StatusSet;
use crate::http1::response::{self, Exchange, ResponseInfo};
use crate::http1::{BodyKind, Parsed};
use crate::proxy::exchange::{self, Failure, Io, Limits, Outcome};
use crate::proxy::io::Writer;
use crate::proxy::pump::write_all;

/// How a held exchange ended without failing.
#[derive(Debug)]
pub enum Held {
    /// The response was relayed.
    Relayed(Outcome),
    /// The status is retriable and a retry was arranged; nothing was relayed but interim
    /// responses. The upstream connection must be closed.
    Retry(u16),
}

/// Runs one held exchange. On entry `io.head` holds the upstream request head, and the
/// request has no body. `may_retry` is asked once, for a status in `retry_on`.
pub async fn run<C, U>(
    client: &mut C,
    upstream: &mut U,
    io: Io<'_>,
    exchange: Exchange,
    limits: Limits,
    retry_on: &StatusSet,
    may_retry: impl FnOnce(u16) -> bool,
) -> Result<Held, Failure>
where
    C: Writer,
    U: AsyncRead + Writer,
{
    let Io { head, reply, upstream: buf, extra_header, .. } = io;
    buf.clear();
    let started = Instant::now();
    let head_len = head.len() as u64;
    let not_sent = Failure::UpstreamClosed { silent: true, request_sent: false };
    // A backend that takes no byte of the head for read_timeout is given up on, as in
    // the body pump.
    if write_all(upstream, head, limits.read_timeout).await.is_err() {
        return Err(not_sent);
    }
    let deadline = Instant::now() + limits.response_timeout;
    // Some byte came, an interim head included: a close is then no idle-close race.
    let mut received = false;
    // Bounded: each pass reads bytes into a head bounded by `max_header_bytes`, or ends at
    // the deadline.
    let info = loop {
        match timeout_at(deadline, tokio::io::AsyncReadExt::read_buf(upstream, buf)).await {
            Err(_) => return Err(Failure::Timeout),
            Ok(Ok(0)) => {
                return Err(Failure::UpstreamClosed { silent: !received, request_sent: true })
            }
            Ok(Err(error)) => return Err(exchange::closed(Some(error), !received, true)),
            Ok(Ok(_)) => received = true,
        }
        if let Some(info) = parse(buf, &exchange, reply, client, &limits).await? {
            break info;
        }
    };
    let header_latency = started.elapsed();
    if retry_on.contains(info.status) && may_retry(info.status) {
        return Ok(Held::Retry(info.status));
    }
    buf.advance(info.head_len);
    crate::http1::request::append_lines(reply, extra_header);
    let mut pump = exchange::download(&info, &limits, reply);
    let reply_head = pump.staged.len() as u64;
    let body = pump.run(buf, upstream, client).await;
    let sent = exchange::Sent { status: info.status, head: reply_head, written: pump.written };
    let body = body.map_err(|error| sent.failure(error))?;
    Ok(Held::Relayed(Outcome {
        status: info.status,
        upstream_reusable: info.upstream_reusable
            && buf.is_empty()
            && info.body != BodyKind::UntilClose,
        keep_client: !info.close_client,
        upgraded: false,
        header_latency,
        bytes_sent: head_len,
        bytes_received: info.head_len as u64 + body,
        body_bytes_written: pump.written - reply_head,
        // A held exchange carries no request body.
        body_bytes_sent: 0,
    }))
}

/// Parses what arrived, relaying interim heads: `Some` for a final head, `None` to read on.
async fn parse<C: Writer>(
    buf: &mut bytes::BytesMut,
    exchange: &Exchange,
    reply: &mut Vec<u8>,
    client: &mut C,
    limits: &Limits,
) -> Result<Option<ResponseInfo>, Failure> {
    // Bounded: each pass consumes one interim head.
    loop {
        match response::parse(buf, exchange, reply) {
            Err(error) => return Err(Failure::BadResponse(error.0)),
            Ok(Parsed::Partial) if buf.len() >= limits.max_header_bytes => {
                return Err(Failure::BadResponse("upstream response head too large"));
            }
            Ok(Parsed::Partial) => return Ok(None),
            Ok(Parsed::Complete(info)) if info.is_interim() => {
                buf.advance(info.head_len);
                let relayed = write_all(client, reply, limits.send_timeout).await;
                relayed.map_err(|_| Failure::ClientGone)?;
                if buf.is_empty() {
                    return Ok(None);
                }
            }
            Ok(Parsed::Complete(info)) => return Ok(Some(info)),
        }
    }
}
