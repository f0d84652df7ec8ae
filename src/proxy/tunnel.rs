//! After a `101 Switching Protocols`, bytes flow both ways untouched until either side
//! closes, or until no byte has moved either way for the pool's `tunnel_idle_timeout`
//! (HAProxy's `timeout tunnel`). Without that limit a peer that vanished without a FIN or
//! an RST would hold a task and two sockets until the process exits.

use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use super::buffers::Buffers;
use super::io::Stream;
use super::pump::write_all;

/// Relays bytes both ways, starting with any already buffered on either side, until one
/// side closes or the tunnel has been idle for `idle_timeout`.
pub async fn run<C: Stream, U: Stream>(
    client: &mut C,
    upstream: &mut U,
    buffers: &mut Buffers,
    idle_timeout: Duration,
) {
    // Bytes that came with the 101 or after the request head; the same limit applies to
    // a peer that will not take them.
    if !buffers.upstream.is_empty()
        && write_all(client, &buffers.upstream, idle_timeout).await.is_err()
    {
        return;
    }
    buffers.upstream.clear();
    if !buffers.input.is_empty() && write_all(upstream, &buffers.input, idle_timeout).await.is_err()
    {
        return;
    }
    buffers.input.clear();
    let moved = Cell::new(Instant::now());
    let mut client = Active { inner: client, moved: &moved };
    let mut upstream = Active { inner: upstream, moved: &moved };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
        () = idle(&moved, idle_timeout) => {
            tracing::debug!(?idle_timeout, "closing a tunnel that passed no byte for its idle timeout");
        }
    }
}

/// Returns once `idle_timeout` has passed since the last byte moved. Each pass either
/// returns or sleeps until a later deadline, and a deadline only moves when bytes did.
async fn idle(moved: &Cell<Instant>, idle_timeout: Duration) {
    loop {
        let deadline = moved.get() + idle_timeout;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline).await;
    }
}

/// A stream that notes when bytes last moved through it. Tunnels are not the hot path,
/// so a clock read per read or write is fine here.
struct Active<'a, S> {
    inner: &'a mut S,
    moved: &'a Cell<Instant>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Active<'_, S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut *self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.moved.set(Instant::now());
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Active<'_, S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut *self.inner).poll_write(cx, buf);
        if matches!(poll, Poll::Ready(Ok(written)) if written > 0) {
            self.moved.set(Instant::now());
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_shutdown(cx)
    }
}
