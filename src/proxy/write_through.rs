//! `AsyncWrite` passed through for the connection wrappers that watch what is read
//! (client side, [`super::h2`]; upstream side, [`super::upstream_h2`]).

/// `AsyncWrite` for a wrapper of a connection whose writes go straight to its `inner`;
/// its shutdown is `inner`'s, or the expression given (with the wrapper's further
/// bounds, such as `AsyncRead` for a shutdown that reads).
macro_rules! write_through {
    ($wrapper:ident) => {
        write_through!($wrapper, [AsyncWrite], |this, cx| Pin::new(&mut this.inner).poll_shutdown(cx));
    };
    ($wrapper:ident, [$($bound:ident),+], |$this:ident, $cx:ident| $shutdown:expr) => {
        impl<S: $($bound +)+ Unpin> AsyncWrite for $wrapper<S> {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Pin::new(&mut self.get_mut().inner).poll_flush(cx)
            }

            fn poll_shutdown(self: Pin<&mut Self>, $cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                let $this = self.get_mut();
                $shutdown
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.inner.is_write_vectored()
            }
        }
    };
}
