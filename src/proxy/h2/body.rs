//! The read side of an HTTP/2 stream: the request body from DATA frames, as the bytes an
//! HTTP/1 client would send after the translated head (chunk-framed when the head says
//! `Transfer-Encoding: chunked`, with trailers as chunked trailers).
//!
//! Flow-control capacity is released only as the exchange takes bytes, so an upload to a
//! backend that stops reading holds at most the stream's window in weir.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use h2::RecvStream;
use http::HeaderMap;
use tokio::io::{AsyncRead, ReadBuf};

/// Where the body stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// DATA frames may follow.
    Data,
    /// The DATA frames ended; trailers may follow (chunked only).
    Trailers,
    /// Everything was handed out, or there was no body.
    Done,
}

/// Most request body bytes read and dropped after an early response ([`RequestBody::linger`]):
/// one stream window (64 KiB), what a client may send without waiting for weir, so a body
/// that fits ends cleanly and a larger one costs at most this.
const LINGER_BYTES: usize = 64 * 1024;
/// Longest wait for the rest of a body after an early response: a client on loopback or a
/// LAN finishes a window's worth in milliseconds; one second bounds what a stalled one
/// holds (a stream slot), as nginx's `lingering_timeout` bounds HTTP/1's.
const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(1);

/// A request body read from an HTTP/2 stream.
#[derive(Debug)]
pub struct RequestBody {
    recv: RecvStream,
    /// Frame the body in chunks: the head says `Transfer-Encoding: chunked`.
    chunked: bool,
    /// Framing bytes to hand out before `data`: a chunk-size line, a chunk's CRLF, the
    /// last chunk and trailers.
    framing: BytesMut,
    /// The rest of the current DATA frame.
    data: Bytes,
    phase: Phase,
}

impl RequestBody {
    /// The body of a stream whose head was translated with `chunked` framing or not.
    pub fn new(recv: RecvStream, chunked: bool) -> RequestBody {
        let phase = if recv.is_end_stream() { Phase::Done } else { Phase::Data };
        RequestBody { recv, chunked, framing: BytesMut::new(), data: Bytes::new(), phase }
    }

    /// Moves framing or data bytes into `buf`. False when there were none.
    fn hand_out(&mut self, buf: &mut ReadBuf<'_>) -> io::Result<bool> {
        if !self.framing.is_empty() {
            let n = self.framing.len().min(buf.remaining());
            buf.put_slice(&self.framing.split_to(n));
            return Ok(true);
        }
        if self.data.is_empty() {
            return Ok(false);
        }
        let n = self.data.len().min(buf.remaining());
        buf.put_slice(&self.data[..n]);
        self.data.advance(n);
        // The window opens again only for what the exchange took.
        self.recv.flow_control().release_capacity(n).map_err(io::Error::other)?;
        if self.data.is_empty() && self.chunked {
            self.framing.extend_from_slice(b"\r\n");
        }
        Ok(true)
    }

    /// Whether the peer ended the stream and every frame was taken.
    pub fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }

    /// How the request side of the stream ended, once the exchange is over: `Some(true)`
    /// if the client reset it (RST_STREAM) before its body ended, `Some(false)` for
    /// another error, `None` if the body ended (the codec then keeps a later reset on
    /// the response side only). Frames still queued are passed over.
    pub fn reset_by_client(&mut self) -> Option<bool> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        // Bounded: an exchange that ended leaves few frames unread; past
        // `UNREAD_FRAMES_CHECKED` a reset goes uncounted rather than this loop running long.
        for _ in 0..UNREAD_FRAMES_CHECKED {
            match self.recv.poll_data(&mut cx) {
                Poll::Ready(Some(Ok(_))) => {}
                Poll::Ready(Some(Err(error))) => {
                    return Some(error.is_reset() && error.is_remote())
                }
                Poll::Ready(None) => return None,
                Poll::Pending => return Some(false),
            }
        }
        Some(false)
    }

    /// After a response that ended before the request body did (a 413, a 403, an early
    /// answer): reads and drops what the client still sends, for at most
    /// [`LINGER_BYTES`] and [`LINGER_TIME`], so a client still uploading a small body
    /// sees its stream end cleanly. Past the bounds the stream is dropped and the codec
    /// resets it with `NO_ERROR` (RFC 9113 §8.1), which some clients (curl 7.88) report
    /// as an error when it comes while they are still sending.
    pub async fn linger(&mut self) {
        let deadline = tokio::time::Instant::now() + LINGER_TIME;
        let mut left = LINGER_BYTES;
        // Bounded by `left` and the deadline: every pass takes a frame or ends.
        while left > 0 && !self.recv.is_end_stream() {
            let frame = std::future::poll_fn(|cx| self.recv.poll_data(cx));
            match tokio::time::timeout_at(deadline, frame).await {
                Ok(Some(Ok(data))) => {
                    left = left.saturating_sub(data.len());
                    let _ = self.recv.flow_control().release_capacity(data.len());
                }
                _ => return,
            }
        }
    }

    /// Takes the next DATA frame, or moves on to trailers at the end of the stream.
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match ready!(self.recv.poll_data(cx)) {
            Some(Ok(data)) if data.is_empty() => {}
            Some(Ok(data)) => {
                if self.chunked {
                    self.framing.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
                }
                self.data = data;
            }
            Some(Err(error)) => return Poll::Ready(Err(io::Error::other(error))),
            None if self.chunked => self.phase = Phase::Trailers,
            None => self.phase = Phase::Done,
        }
        Poll::Ready(Ok(()))
    }

    /// Writes the last chunk and any trailers.
    fn poll_trailers(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let trailers = ready!(self.recv.poll_trailers(cx)).map_err(io::Error::other)?;
        self.framing.extend_from_slice(b"0\r\n");
        if let Some(trailers) = trailers {
            write_fields(&trailers, &mut self.framing);
        }
        self.framing.extend_from_slice(b"\r\n");
        self.phase = Phase::Done;
        Poll::Ready(Ok(()))
    }
}

/// Most unread DATA frames [`RequestBody::reset_by_client`] passes over to find a reset.
const UNREAD_FRAMES_CHECKED: usize = 64;

/// Writes fields as HTTP/1 field lines. The codec's names and values hold no CR or LF.
fn write_fields(fields: &HeaderMap, out: &mut BytesMut) {
    for (name, value) in fields {
        super::translate::field(out, name.as_str().as_bytes(), value.as_bytes());
    }
}

impl AsyncRead for RequestBody {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Bounded: each pass hands out bytes, or moves to a later phase, or takes a
        // frame (empty DATA frames are bounded by the codec).
        loop {
            if this.hand_out(buf)? {
                return Poll::Ready(Ok(()));
            }
            match this.phase {
                Phase::Done => return Poll::Ready(Ok(())),
                Phase::Data => ready!(this.poll_frame(cx))?,
                Phase::Trailers => ready!(this.poll_trailers(cx))?,
            }
        }
    }
}
