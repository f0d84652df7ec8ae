//! An upstream HTTP/2 connection as its codec reads it: [`Watched`] counts the header
//! blocks a backend sends on each stream as the bytes pass, by their frame headers
//! ([`Frames`]), before the codec decodes them.
//!
//! Why: the codec reads on whatever the streams' readers do, and queues a response's
//! 1xx HEADERS for its stream's reader with no limit (HEADERS are not flow-controlled).
//! A reader waits while a slow client takes an interim head already relayed (up to
//! `send_timeout`), so a backend that sent 1xx heads in a loop meanwhile filled weir's
//! memory, a few hundred bytes of decoded head per 14 bytes sent; HPACK indexing makes
//! it up to `max_header_bytes` each. The exchange's own limit
//! ([`MAX_INTERIM_HEADS`]) counts only the heads its reader took.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::http2::{Frames, HeaderBlocks, Passed, FRAME_HEADER};
use crate::proxy::exchange::MAX_INTERIM_HEADS;

/// Header blocks a backend may send on one stream: the interim heads the exchange
/// relays ([`MAX_INTERIM_HEADS`]), the response head and trailers. Past it the read
/// fails, and with it the connection (the codec's GOAWAY; the connection's requests get
/// a 502), as for any other protocol fault: no honest backend sends them.
pub const MOST_HEADER_BLOCKS: u32 = MAX_INTERIM_HEADS as u32 + 2;

/// Streams counted at once, per stream the connection may carry: each open one, and
/// as many that weir reset (a client went away) and the backend never ended.
const COUNTED_PER_STREAM: usize = 2;

/// A backend connection whose header blocks are counted per stream as they are read.
#[derive(Debug)]
pub struct Watched<T> {
    inner: T,
    frames: Frames,
    blocks: HeaderBlocks,
    /// A stream passed [`MOST_HEADER_BLOCKS`]: every read fails from then on.
    fault: Option<u32>,
}

/// `inner`, watched from the backend's first frame on; the connection carries up to
/// `streams` streams at once.
pub fn watch<T>(inner: T, streams: usize) -> Watched<T> {
    let blocks = HeaderBlocks::new(MOST_HEADER_BLOCKS, streams.saturating_mul(COUNTED_PER_STREAM));
    Watched { inner, frames: Frames::default(), blocks, fault: None }
}

impl<T> Watched<T> {
    /// Passes what the backend sent. Past the limit: the stream, and where in `bytes`
    /// the header of the frame that passed it begins (0 if in an earlier read).
    fn feed(&mut self, bytes: &[u8]) -> Option<(u32, usize)> {
        let mut rest = bytes;
        // Bounded by `bytes`: each call takes some, or ends the frame whose head it gave.
        while let Some(passed) = self.frames.next(&mut rest) {
            match passed {
                Passed::Head(head) if self.blocks.frame(head) => {
                    let at = (bytes.len() - rest.len()).saturating_sub(FRAME_HEADER);
                    return Some((head.stream, at));
                }
                _ => {}
            }
        }
        None
    }
}

/// The read error of a connection whose backend sent too many header blocks.
fn too_many(stream: u32) -> io::Error {
    let text = format!(
        "the backend sent more than {MOST_HEADER_BLOCKS} header blocks on stream {stream} \
         (interim responses in a loop?)"
    );
    io::Error::new(io::ErrorKind::InvalidData, text)
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(stream) = this.fault {
            return Poll::Ready(Err(too_many(stream)));
        }
        let before = buf.filled().len();
        std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let Some((stream, at)) = this.feed(&buf.filled()[before..]) else {
            return Poll::Ready(Ok(()));
        };
        // The frames before the one past the limit reach the codec (the interim heads
        // a client is owed); from that frame on nothing does.
        this.fault = Some(stream);
        buf.set_filled(before + at);
        if at > 0 {
            return Poll::Ready(Ok(()));
        }
        Poll::Ready(Err(too_many(stream)))
    }
}

write_through!(Watched);

#[cfg(test)]
#[path = "watched_tests.rs"]
mod tests;
