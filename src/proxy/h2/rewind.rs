//! A plain connection whose first bytes were read to look for the HTTP/2 preface: they
//! are read again before the rest.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A connection whose first bytes were read to find the preface: they are read again
/// before the rest.
pub struct Rewind<S> {
    first: Bytes,
    inner: S,
}

impl<S> Rewind<S> {
    /// `inner`, with `first` to be read before it.
    pub fn new(first: Bytes, inner: S) -> Rewind<S> {
        Rewind { first, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.first.is_empty() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let n = this.first.len().min(buf.remaining());
        buf.put_slice(&this.first[..n]);
        this.first.advance(n);
        if this.first.is_empty() {
            // Read whole: an empty `Bytes` still holds the buffer it was split from (the
            // connection's 4 KiB input buffer) for as long as the connection lives.
            this.first = Bytes::new();
        }
        Poll::Ready(Ok(()))
    }
}

write_through!(Rewind);
