//! One upstream HTTP/2 stream as the exchange sees an upstream connection
//! ([`Stream`]): it writes the HTTP/1.1 request, which goes out as HEADERS, DATA and
//! trailers, and reads the HTTP/1.1 response, made of the stream's HEADERS (the head),
//! DATA (the body, chunked unless the backend sent `Content-Length`) and trailers
//! (chunked trailers).
//!
//! Flow control holds both ways: request bytes are taken only as the backend's window
//! allows, and response bytes are acknowledged (WINDOW_UPDATE) only as the exchange
//! takes them. Dropping a stream before its response ended resets it with `CANCEL`,
//! so a client's reset reaches the backend.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll, Waker};

use bytes::Bytes;
use h2::client::{ResponseFuture, SendRequest};
use h2::{Reason, SendStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};

use super::head::{self, RequestBody};
use super::StreamSlot;
use crate::http1::chunked::Decoder;
use crate::proxy::h2::body::RequestBody as Body;
use crate::proxy::h2::respond::{broken, end_with_trailers, poll_chunked, poll_length};
use crate::proxy::io::{Stream, Unsendable, Writer};

/// The interim response weir gives a request with `Expect: 100-continue` itself.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Where the request stands.
#[derive(Debug)]
enum Sending {
    /// Head bytes so far.
    Head(Vec<u8>),
    /// This many body bytes are left.
    Length(u64),
    /// A chunked body, de-chunked as it comes; its trailer bytes so far.
    Chunked(Decoder, Vec<u8>),
    /// The request ended.
    Done,
}

/// Where the response stands.
#[derive(Debug)]
enum Receiving {
    /// The request head is not sent yet; the read waits.
    NotAsked(Option<Waker>),
    /// Waiting for the response head.
    Head(ResponseFuture),
    /// The HTTP/1.1 head (from `at`), then the body.
    Body { head: Vec<u8>, at: usize, body: Body },
    /// The request could not be sent (or not whole): no response will come, and a read
    /// fails at once rather than wait for the response timeout. `Some` when no backend
    /// could take it over HTTP/2 ([`Unsendable`]).
    Failed(Option<&'static str>),
}

/// An HTTP/2 stream to a backend, read and written as an HTTP/1.1 connection.
#[derive(Debug)]
pub struct H2Upstream {
    handle: SendRequest<Bytes>,
    send: Option<SendStream<Bytes>>,
    sending: Sending,
    receiving: Receiving,
    /// The last write waited for the backend's window.
    waiting: bool,
    /// The stream failed in a way that proves the backend never processed it: refused
    /// (`REFUSED_STREAM`) or above a GOAWAY's last stream id. Any method may go again.
    refused: bool,
    /// The backend reset the stream (RST_STREAM, not `REFUSED_STREAM`) before its
    /// response head: an answer about this request, never the idle-close race a
    /// pooled HTTP/1 connection's silent close may be.
    reset: bool,
    /// Body bytes taken and dropped after the backend refused the stream, and the most
    /// that may be (the pool's `replay_buffer`): the exchange reads the client's body on
    /// into its replay copy, so the request can go again ([`H2Upstream::drop_body`]).
    dropped: (usize, usize),
    /// Bytes of an interim response to read before the backend's response head: weir's
    /// own `100 Continue`, or a 1xx the backend sent ([`H2Upstream::poll_interim`]).
    interim: Bytes,
    /// The request's `:scheme`: `https` over TLS.
    scheme: &'static str,
    /// The stream's place on its connection; given up once the backend refused it (the
    /// codec no longer counts it), while the client's body is read on.
    slot: Option<StreamSlot>,
}

impl H2Upstream {
    /// A stream to be opened on the connection behind `handle`.
    pub(super) fn new(
        handle: SendRequest<Bytes>,
        slot: StreamSlot,
        tls: bool,
        replay_buffer: usize,
    ) -> H2Upstream {
        H2Upstream {
            handle,
            send: None,
            sending: Sending::Head(Vec::new()),
            receiving: Receiving::NotAsked(None),
            waiting: false,
            refused: false,
            reset: false,
            dropped: (0, replay_buffer),
            interim: Bytes::new(),
            scheme: if tls { "https" } else { "http" },
            slot: Some(slot),
        }
    }

    /// Whether the backend never processed this stream, so any request may be sent again.
    pub fn refused(&self) -> bool {
        self.refused
    }

    /// Whether the backend reset the stream before its response head.
    pub fn reset(&self) -> bool {
        self.reset
    }

    /// Notes an error of the stream; returns it as an I/O error.
    fn failed(&mut self, error: h2::Error) -> io::Error {
        self.note(&error);
        broken(error)
    }

    /// Notes what `error` says of the stream: refused, or reset.
    fn note(&mut self, error: &h2::Error) {
        let reset = error.is_reset() && error.is_remote();
        // Only before the response head: a stream the backend answered was processed.
        if matches!(self.receiving, Receiving::Head(_) | Receiving::NotAsked(_)) {
            self.refused |= never_processed(error);
            self.reset |= reset && !never_processed(error);
        }
    }

    /// A write failed: whether the backend refused the stream before its response head
    /// (noted, as a read would note it). The codec gives such a write no error to say
    /// why (a closed stream's capacity poll just ends): the stream's response does, as
    /// the codec keeps it: a head, if one came first (then it was processed, and the read
    /// takes the head), or the reset or GOAWAY. The stream's reset reason would not tell
    /// a GOAWAY's stream from a reset one.
    fn refused_by(&mut self, cx: &mut Context<'_>) -> bool {
        if matches!(self.receiving, Receiving::Head(_)) {
            let _ = self.poll_response(cx);
        }
        self.refused
    }

    /// After the backend refused the stream: takes and drops request body bytes, so the
    /// exchange reads the client's whole body on into its replay copy and the request
    /// can go again (RFC 9113 §8.7: a refused stream was not processed). Before, such a
    /// request failed with 502 whenever its body had not all come when the refusal did.
    /// At most the pool's `replay_buffer` bytes after the refusal: the copy holds no more
    /// body than that in all.
    fn drop_body(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.slot = None;
        let refused = || broken("the backend refused the stream");
        let taken = match &mut self.sending {
            Sending::Length(left) => {
                let take = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                *left -= take as u64;
                take
            }
            Sending::Chunked(decoder, _) => {
                let mut at = 0;
                // Bounded by `buf`: each step consumes at least one byte, or ends.
                while at < buf.len() && !decoder.is_done() {
                    let step =
                        decoder.feed(&buf[at..]).map_err(|_| broken("malformed chunked body"))?;
                    if step.consumed == 0 {
                        break;
                    }
                    at += step.consumed;
                }
                at
            }
            Sending::Head(_) | Sending::Done => return Err(refused()),
        };
        if matches!(&self.sending, Sending::Length(0))
            || matches!(&self.sending, Sending::Chunked(decoder, _) if decoder.is_done())
        {
            self.sending = Sending::Done;
        }
        self.dropped.0 += taken;
        if self.dropped.0 > self.dropped.1 {
            return Err(refused());
        }
        Ok(taken)
    }

    /// Takes request head bytes; sends the head once it is complete. Returns the bytes
    /// of `buf` consumed. A head that cannot be sent ends the stream: its read fails too.
    fn poll_head(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let result = ready!(self.poll_send_head(cx, buf));
        if let Err(error) = &result {
            self.fail(Unsendable::of(error));
        }
        Poll::Ready(result)
    }

    /// Ends the response side: no response will come for this request.
    fn fail(&mut self, unsendable: Option<&'static str>) {
        let asked = std::mem::replace(&mut self.receiving, Receiving::Failed(unsendable));
        if let Receiving::NotAsked(Some(waker)) = asked {
            waker.wake();
        }
    }

    fn poll_send_head(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let Sending::Head(bytes) = &mut self.sending else { unreachable!("called for a head") };
        let before = bytes.len();
        bytes.extend_from_slice(buf);
        // Weir's own head, parsed by weir before: what fails here is what HTTP/2 (the
        // `http` crate's URI and field rules) refuses and HTTP/1.1 took.
        let cannot = |_| Unsendable::error("request target, Host or field HTTP/2 cannot carry");
        let Some(head) = head::request(bytes, self.scheme).map_err(cannot)? else {
            return Poll::Ready(Ok(buf.len()));
        };
        let head::Head { request, body, end, expect_continue } = head;
        match self.handle.poll_ready(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(error)) => return Poll::Ready(Err(self.failed(error))),
            Poll::Pending => {
                // The same bytes come again with the next write.
                if let Sending::Head(bytes) = &mut self.sending {
                    bytes.truncate(before);
                }
                return Poll::Pending;
            }
        }
        let empty = matches!(body, RequestBody::Empty);
        let (response, send) = match self.handle.send_request(request, empty) {
            Ok(sent) => sent,
            Err(error) => return Poll::Ready(Err(self.failed(error))),
        };
        if let Some(slot) = self.slot.as_mut() {
            slot.opened(u32::from(send.stream_id()));
        }
        self.send = Some(send);
        self.sending = match body {
            RequestBody::Empty => Sending::Done,
            RequestBody::Length(length) => Sending::Length(length),
            RequestBody::Chunked => Sending::Chunked(Decoder::new(), Vec::new()),
        };
        let asked = std::mem::replace(&mut self.receiving, Receiving::Head(response));
        if let Receiving::NotAsked(Some(waker)) = asked {
            waker.wake();
        }
        // The client waits for it before it sends the body; the backend never sends one
        // weir could relay (see `head::request`).
        self.interim = Bytes::from_static(if expect_continue { CONTINUE } else { b"" });
        // Body bytes after the head come with the next write.
        Poll::Ready(Ok(end - before))
    }

    /// Takes an interim response (1xx) the backend sent before its response head, as
    /// HTTP/1.1 in `interim`, which must be empty: whether one came. The exchange relays
    /// it as it relays an HTTP/1 backend's (103 Early Hints above all). Dropped, as the
    /// codec dropped every one before: `100 Continue` (weir does not forward `Expect`
    /// and answers it itself, see `head::request`) and `101`, which HTTP/2 forbids
    /// (RFC 9113 §8.6) and which HTTP/1.1 would take for a switch of protocols. Must
    /// come before [`Self::poll_response`], which skips what is not taken here (only
    /// [`Self::refused_by`] does not: a write that failed is past its hints).
    fn poll_interim(&mut self, cx: &mut Context<'_>) -> io::Result<bool> {
        debug_assert!(self.interim.is_empty(), "an interim head is still being read");
        let Receiving::Head(future) = &mut self.receiving else { return Ok(false) };
        // Bounded by the responses the codec holds: each pass takes one.
        loop {
            match future.poll_informational(cx) {
                Poll::Ready(Some(Ok(response)))
                    if !matches!(response.status().as_u16(), 100 | 101) =>
                {
                    let mut text = Vec::with_capacity(128);
                    head::status_and_fields(response.status(), response.headers(), &mut text);
                    text.extend_from_slice(b"\r\n");
                    self.interim = Bytes::from(text);
                    return Ok(true);
                }
                Poll::Ready(Some(Ok(_))) => {}
                Poll::Ready(Some(Err(error))) => return Err(self.failed(error)),
                Poll::Ready(None) | Poll::Pending => return Ok(false),
            }
        }
    }

    /// Reads the response head once it comes, as HTTP/1.1.
    fn poll_response(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Receiving::Head(future) = &mut self.receiving else { return Poll::Ready(Ok(())) };
        let response = match ready!(Pin::new(future).poll(cx)) {
            Ok(response) => response,
            Err(error) => return Poll::Ready(Err(self.failed(error))),
        };
        let mut head = Vec::with_capacity(256);
        let chunked = head::response(&response, &mut head);
        let body = Body::new(response.into_body(), chunked);
        self.receiving = Receiving::Body { head, at: 0, body };
        Poll::Ready(Ok(()))
    }
}

impl Drop for H2Upstream {
    fn drop(&mut self) {
        // A stream dropped before its response ended (the client reset its own stream,
        // or went away): the backend hears it at once, as RST_STREAM(CANCEL).
        let ended = matches!(&self.receiving, Receiving::Body { body, .. } if body.is_end_stream());
        if !ended {
            if let Some(send) = self.send.as_mut() {
                send.send_reset(Reason::CANCEL);
            }
        }
    }
}

impl AsyncRead for H2Upstream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match &mut this.receiving {
            Receiving::NotAsked(waker) => {
                *waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            Receiving::Failed(Some(cause)) => return Poll::Ready(Err(Unsendable::error(cause))),
            Receiving::Failed(None) => return Poll::Ready(Err(broken("request not sent"))),
            _ => {}
        }
        // An interim head is read whole before anything after it, even if a failed write
        // took the response head meanwhile ([`Self::refused_by`]).
        if !this.interim.is_empty()
            || (matches!(this.receiving, Receiving::Head(_)) && this.poll_interim(cx)?)
        {
            let n = this.interim.len().min(buf.remaining());
            buf.put_slice(&this.interim.split_to(n));
            return Poll::Ready(Ok(()));
        }
        ready!(this.poll_response(cx))?;
        let Receiving::Body { head, at, body } = &mut this.receiving else {
            unreachable!("the response head was read")
        };
        if *at < head.len() {
            let n = (head.len() - *at).min(buf.remaining());
            buf.put_slice(&head[*at..*at + n]);
            *at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(body).poll_read(cx, buf)
    }
}

impl AsyncWrite for H2Upstream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.refused && !matches!(this.sending, Sending::Head(_)) {
            return Poll::Ready(this.drop_body(buf));
        }
        match ready!(this.poll_body(cx, buf)) {
            Err(_) if !matches!(this.sending, Sending::Head(_)) && this.refused_by(cx) => {
                Poll::Ready(this.drop_body(buf))
            }
            result => Poll::Ready(result),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Frames are queued in the codec, which the connection's task writes out.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl H2Upstream {
    /// Takes request bytes: the head, then the body as DATA frames (and trailers).
    fn poll_body(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self;
        let H2Upstream { send, sending, waiting, .. } = this;
        match sending {
            Sending::Head(_) => this.poll_head(cx, buf),
            Sending::Length(left) => {
                let sent = ready!(poll_length(send, left, cx, buf, waiting))?;
                if *left == 0 {
                    *sending = Sending::Done;
                }
                Poll::Ready(Ok(sent))
            }
            Sending::Chunked(decoder, trailers) => {
                let consumed = ready!(poll_chunked(send, decoder, trailers, waiting, cx, buf))?;
                if decoder.is_done() {
                    let stream = send.as_mut().ok_or_else(|| broken("no request head"))?;
                    if let Err(error) = end_with_trailers(stream, trailers) {
                        // Trailers HTTP/2 cannot carry: the backend has the head and the
                        // body, so its stream ends, and the exchange with it. A failed
                        // send is a plain write error: the backend may have answered.
                        if let Some(cause) = Unsendable::of(&error) {
                            stream.send_reset(Reason::CANCEL);
                            this.fail(Some(cause));
                        }
                        return Poll::Ready(Err(error));
                    }
                    *sending = Sending::Done;
                }
                Poll::Ready(Ok(consumed))
            }
            Sending::Done => Poll::Ready(Err(broken("request bytes after its end"))),
        }
    }
}

/// Whether `error` proves the backend never processed the stream: refused
/// (`REFUSED_STREAM`), or a graceful GOAWAY's (the codec gives an error GOAWAY's streams
/// at or below its last stream id, processed or being processed, the same error as those
/// above it once the connection closes, and does not say the last id).
fn never_processed(error: &h2::Error) -> bool {
    let graceful_goaway =
        error.is_go_away() && error.is_remote() && error.reason() == Some(Reason::NO_ERROR);
    let refused =
        error.is_reset() && error.is_remote() && error.reason() == Some(Reason::REFUSED_STREAM);
    graceful_goaway || refused
}

/// Whether a read of an upstream stream failed because the backend never processed it
/// (see [`never_processed`]): the exchange then reads the client's body on into its
/// replay copy before it ends the attempt.
pub fn refused(error: &io::Error) -> bool {
    let h2 = error.get_ref().and_then(|e| e.downcast_ref::<h2::Error>());
    h2.is_some_and(never_processed)
}

/// The halves share the stream through tokio's `split` (a short lock per poll): the
/// response is read while the request body is written.
impl Writer for H2Upstream {
    const BUFFERS: bool = true;
}

impl Stream for H2Upstream {
    type Read<'a> = ReadHalf<&'a mut H2Upstream>;
    type Write<'a> = WriteHalf<&'a mut H2Upstream>;

    fn halves(&mut self) -> (Self::Read<'_>, Self::Write<'_>) {
        tokio::io::split(self)
    }

    fn readable(&mut self) -> impl Future<Output = io::Result<()>> {
        // Only a pooled HTTP/1 connection's idle wait asks; a stream has none.
        std::future::ready(Ok(()))
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
