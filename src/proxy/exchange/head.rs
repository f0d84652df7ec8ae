//! Reading a response head: the one reader of the streaming exchange ([`super::run`])
//! and the held one ([`crate::proxy::retry::held::run`]). It reads
//! until a final head is whole, relays interim 1xx heads to the client as they come, and
//! tells why the backend stopped if it does before a final head.

use std::future::Future;
use std::pin::Pin;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

use super::{Failure, Limits};
use crate::http1::response::{self, Exchange, ResponseInfo};
use crate::http1::Parsed;
use crate::proxy::io::{Unsendable, Writer};
use crate::proxy::pump::{write_all, PumpError};
use crate::proxy::timer::Alarm;
use crate::proxy::upstream_h2::stream;

/// How long a request whose stream the backend refused waits for the rest of its body
/// before it fails ([`finish_upload`]). A client still uploading sends a replay buffer's
/// worth (64 KiB by default) far sooner on any link a balancer serves; one that waits
/// for an answer before it ends its body never sends it, and should hear soon.
const REFUSED_BODY_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads the response head, while the request is still being sent if it is, relaying
/// interim responses to the client.
pub(in crate::proxy) struct HeadReader<'a, R, W> {
    /// The upstream connection, or its read half.
    pub upstream: &'a mut R,
    /// Upstream input; the head is at its front once read.
    pub buf: &'a mut BytesMut,
    /// Receives the client-bound form of each head parsed.
    pub reply: &'a mut Vec<u8>,
    /// The client connection, or its write half, for interim responses.
    pub client: &'a mut W,
    /// What the client asked, for the head's rewrite.
    pub exchange: &'a Exchange,
    /// The response and send timeouts, and the head size limit.
    pub limits: &'a Limits,
    /// The connection's timer, for the response timeout.
    pub alarm: &'a mut Alarm,
    /// When the request was sent, if known without a clock read: a request without a
    /// body goes out in the first poll.
    pub sent_at: Option<Instant>,
    /// Some byte came from the backend, an interim head included: a close is then no
    /// idle-close race, and the request is not replayed.
    pub received: bool,
    /// The request's body is being copied for a replay: a stream the backend refuses
    /// waits for the rest of the body ([`finish_upload`]). Without a copy (none was
    /// started, or the body outgrew it) the wait would gain nothing.
    pub copying: bool,
    /// Interim heads relayed so far, at most [`MAX_INTERIM_HEADS`].
    pub interims: usize,
}

/// Most interim (1xx) heads relayed for one request. HTTP allows several (RFC 8297:
/// 103 Early Hints that refine each other), and real servers send one or two; a backend
/// that sends more is faulty, and an endless run of them would hold the client without
/// a final answer while every read resets no timer of its own. Past it: 502.
pub(in crate::proxy) const MAX_INTERIM_HEADS: usize = 16;

impl<R: AsyncRead + Unpin, W: Writer> HeadReader<'_, R, W> {
    /// Returns the final response head; `reply` then holds its client-bound form. The
    /// response timeout runs from the moment the whole request was sent: when `upload`
    /// completes, or, if `uploaded` is already set, from the alarm's deadline set by the
    /// caller.
    pub async fn read<U>(
        &mut self,
        mut upload: Pin<&mut U>,
        uploaded: &mut Option<Result<u64, PumpError>>,
    ) -> Result<ResponseInfo, Failure>
    where
        U: Future<Output = Result<u64, PumpError>>,
    {
        // Bounded: each pass reads bytes into a head bounded by `max_header_bytes`, or
        // finishes the upload (once), or ends at the deadline.
        loop {
            tokio::select! {
                biased;
                result = upload.as_mut(), if uploaded.is_none() => {
                    if let Some(failure) = result.as_ref().err().and_then(client_side) {
                        return Err(failure);
                    }
                    *uploaded = Some(result);
                    let sent_at = self.sent_at.unwrap_or_else(Instant::now);
                    self.alarm.set(sent_at + self.limits.response_timeout);
                }
                read = self.upstream.read_buf(self.buf) => {
                    if !matches!(read, Ok(n) if n > 0) {
                        let refused = read.as_ref().err().is_some_and(stream::refused);
                        if refused && uploaded.is_none() && self.copying {
                            finish_upload(upload.as_mut(), uploaded).await?;
                        }
                        let request_sent = matches!(uploaded, Some(Ok(_)));
                        return Err(closed(read.err(), !self.received, request_sent));
                    }
                    self.received = true;
                    if let Some(info) = self.parse().await? {
                        return Ok(info);
                    }
                }
                () = self.alarm.expired(), if uploaded.is_some() => return Err(Failure::Timeout),
            }
        }
    }

    /// Parses what arrived: `Some` for a final head, `None` to read on.
    pub(super) async fn parse(&mut self) -> Result<Option<ResponseInfo>, Failure> {
        // Bounded: each pass consumes one interim head.
        loop {
            match response::parse(self.buf, self.exchange, self.reply) {
                Err(error) => return Err(Failure::BadResponse(error.0)),
                Ok(Parsed::Partial) if self.buf.len() >= self.limits.max_header_bytes => {
                    return Err(Failure::BadResponse("upstream response head too large"));
                }
                Ok(Parsed::Partial) => return Ok(None),
                Ok(Parsed::Complete(info)) if info.is_interim() => {
                    self.interims += 1;
                    if self.interims > MAX_INTERIM_HEADS {
                        return Err(Failure::BadResponse("too many interim responses"));
                    }
                    self.buf.advance(info.head_len);
                    let relayed = write_all(self.client, self.reply, self.limits.send_timeout);
                    let relayed = relayed.await;
                    relayed.map_err(|_| Failure::ClientGone)?;
                    if self.buf.is_empty() {
                        return Ok(None);
                    }
                }
                Ok(Parsed::Complete(info)) => return Ok(Some(info)),
            }
        }
    }
}

/// The backend refused the stream (never processed it) while the client's body was
/// still coming: reads the body on to its end, the upstream dropping it, so the replay
/// copy holds the whole request and it can go again. For at most [`REFUSED_BODY_WAIT`]
/// (and the stream's `replay_buffer` bytes): a client that waits for an answer before
/// it ends its body (a bidirectional gRPC call) gets the 502 (gRPC `UNAVAILABLE`, the
/// code retry policies name) it got before. A client fault is the failure.
async fn finish_upload<U>(
    upload: Pin<&mut U>,
    uploaded: &mut Option<Result<u64, PumpError>>,
) -> Result<(), Failure>
where
    U: Future<Output = Result<u64, PumpError>>,
{
    let Ok(result) = tokio::time::timeout(REFUSED_BODY_WAIT, upload).await else {
        return Ok(());
    };
    if let Some(failure) = result.as_ref().err().and_then(client_side) {
        return Err(failure);
    }
    *uploaded = Some(result);
    Ok(())
}

/// Why the upstream stopped before a response head: a TLS alert (such as a refused client
/// certificate) when the read error carries one, else a closed connection.
fn closed(error: Option<std::io::Error>, silent: bool, request_sent: bool) -> Failure {
    if let Some(cause) = error.as_ref().and_then(Unsendable::of) {
        return Failure::Unsendable(cause);
    }
    match error.map(crate::tls::TlsError::from_io) {
        Some(crate::tls::TlsError::Io(_)) | None => {
            Failure::UpstreamClosed { silent, request_sent }
        }
        Some(tls) => Failure::UpstreamTls(tls),
    }
}

/// Maps an upload error to a failure if the client caused it; upstream write errors are
/// not final, because the backend may still have answered (say, 413 then close).
fn client_side(error: &PumpError) -> Option<Failure> {
    match error {
        PumpError::Read(_) | PumpError::Eof => Some(Failure::ClientGone),
        PumpError::ReadTimeout => Some(Failure::ClientTimeout),
        PumpError::Framing(_) => Some(Failure::ClientBadBody),
        PumpError::TooLarge => Some(Failure::BodyTooLarge),
        PumpError::Write(error) => Unsendable::of(error).map(Failure::Unsendable),
    }
}
