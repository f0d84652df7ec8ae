//! An upstream HTTP/2 connection as its codec reads it: [`Watched`] counts the header
//! blocks a backend sends on each of weir's streams ([`HeaderBlocks`]) as the bytes
//! pass, by their frame headers ([`Frames`]), before the codec decodes them.
//!
//! Why: the codec reads on whatever the streams' readers do, and queues a response's
//! 1xx HEADERS for its stream's reader with no limit (HEADERS are not flow-controlled).
//! A reader waits while a slow client takes an interim head already relayed (up to
//! `send_timeout`), so a backend that sent 1xx heads in a loop meanwhile filled weir's
//! memory: a few hundred bytes of decoded head per 14 bytes sent, and up to
//! `max_header_bytes` of fields per frame of one-byte HPACK references. The exchange's
//! own limit ([`MAX_INTERIM_HEADS`]) counts only the heads its reader took.

use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::http2::{Frames, HeaderBlocks, Passed, FRAME_HEADER};
use crate::proxy::exchange::MAX_INTERIM_HEADS;

/// Header blocks a backend may send on one of weir's streams: the interim heads the
/// exchange relays ([`MAX_INTERIM_HEADS`]), the response head and trailers. Past it the
/// read fails and the codec drops the connection: its requests still waiting for a head
/// get a 502 (they may have been processed, so none is sent again), and responses under
/// way on it are cut. As for any other protocol fault: no honest backend sends them.
pub const BLOCKS_PER_STREAM: u32 = MAX_INTERIM_HEADS as u32 + 2;

/// A backend connection whose header blocks are counted as they are read.
#[derive(Debug)]
pub struct Watched<T> {
    inner: T,
    frames: Frames,
    blocks: Rc<HeaderBlocks>,
    /// A header block was refused ([`HeaderBlocks::frame`]): every read fails from then
    /// on.
    spent: bool,
}

/// `inner`, watched from the backend's first frame on; `blocks` learns of the
/// connection's streams as weir opens and lets go of them.
pub fn watch<T>(inner: T, blocks: Rc<HeaderBlocks>) -> Watched<T> {
    Watched { inner, frames: Frames::default(), blocks, spent: false }
}

impl<T> Watched<T> {
    /// Passes what the backend sent. Past the limit: where in `bytes` the header of the
    /// frame past it begins (0 if in an earlier read).
    fn feed(&mut self, bytes: &[u8]) -> Option<usize> {
        let mut rest = bytes;
        // Bounded by `bytes`: each call takes some, or ends the frame whose head it gave.
        while let Some(passed) = self.frames.next(&mut rest) {
            match passed {
                Passed::Head(head) if self.blocks.frame(head) => {
                    return Some((bytes.len() - rest.len()).saturating_sub(FRAME_HEADER));
                }
                _ => {}
            }
        }
        None
    }
}

/// The read error of a connection whose backend sent too many header blocks.
fn too_many() -> io::Error {
    let text = format!(
        "the backend sent header blocks weir did not ask for: more than \
         {BLOCKS_PER_STREAM} on a stream (interim responses in a loop?), or on a stream \
         weir had not opened"
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
        if this.spent {
            return Poll::Ready(Err(too_many()));
        }
        let before = buf.filled().len();
        std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let Some(at) = this.feed(&buf.filled()[before..]) else {
            return Poll::Ready(Ok(()));
        };
        // The frames before the one past the limit reach the codec (the interim heads
        // a client is owed); from that frame on nothing does.
        this.spent = true;
        buf.set_filled(before + at);
        if at > 0 {
            return Poll::Ready(Ok(()));
        }
        Poll::Ready(Err(too_many()))
    }
}

write_through!(Watched);

#[cfg(test)]
#[path = "watched_tests.rs"]
mod tests;
