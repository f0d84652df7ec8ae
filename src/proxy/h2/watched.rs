//! A client's HTTP/2 connection as the codec reads and writes it: [`Watched`] feeds
//! what the client sends to the attack scan ([`super::guard`]) as the bytes pass, times
//! each header block against `header_timeout`, and closes with a lingering close.
//!
//! When the codec closes the connection (its GOAWAY written and the write side shut),
//! the lingering close of [`crate::proxy::linger`] runs in [`Watched`]'s shutdown: the
//! codec owns the connection to its end.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::super::linger::{LINGER_BYTES, LINGER_READ, LINGER_TIME};
use super::guard::Scan;
use crate::metrics::Http2Attack;

/// A client connection whose frames are watched as they are read. Once an attack is
/// seen it reads nothing more: the driver sends GOAWAY and closes.
#[derive(Debug)]
pub struct Watched<T> {
    inner: T,
    scan: Rc<RefCell<Scan>>,
    /// How long a header block may take to arrive (`header_timeout`, as for an HTTP/1
    /// head): past it the client is a slowloris ([`Http2Attack::SlowHeaders`]).
    header_timeout: Duration,
    /// The header block's deadline, armed when a read ends inside a block: a request
    /// whose head arrives in one read (nearly all) arms no timer. Once the codec closes,
    /// the lingering close's deadline.
    slow: Option<Pin<Box<Sleep>>>,
    armed: bool,
    /// Bytes the lingering close may still drop, once the write side is shut.
    lingering: Option<usize>,
}

/// The driver's side of [`Watched`]: the attack it saw, if any.
#[derive(Debug)]
pub struct Watch(pub(super) Rc<RefCell<Scan>>);

impl Watch {
    /// The attack seen so far.
    pub fn attack(&self) -> Option<Http2Attack> {
        self.0.borrow().attack
    }

    /// Whether the codec closed the connection (its last GOAWAY went out): weir can
    /// send no other.
    pub fn closing(&self) -> bool {
        self.0.borrow().closing
    }
}

/// `inner`, watched from its client preface on; each header block must arrive within
/// `header_timeout`.
pub fn watch<T>(inner: T, header_timeout: Duration) -> (Watched<T>, Watch) {
    let scan = Rc::new(RefCell::new(Scan::new(Instant::now())));
    let watched = Watched {
        inner,
        scan: Rc::clone(&scan),
        header_timeout,
        slow: None,
        armed: false,
        lingering: None,
    };
    (watched, Watch(scan))
}

impl<T> Watched<T> {
    /// After a read: arms the header block's deadline when the read ended inside one,
    /// disarms it when none is open.
    fn time_block(&mut self, in_block: bool) {
        if !in_block {
            self.armed = false;
        } else if !self.armed {
            self.arm(Instant::now() + self.header_timeout);
        }
    }

    fn arm(&mut self, deadline: Instant) {
        self.armed = true;
        match &mut self.slow {
            Some(sleep) => sleep.as_mut().reset(deadline),
            None => self.slow = Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
    }

    /// While the client sends nothing: whether the armed deadline (an open header
    /// block's, or the lingering close's) has passed (the timer wakes the task when it
    /// does).
    fn overdue(&mut self, cx: &mut Context<'_>) -> bool {
        match &mut self.slow {
            Some(sleep) if self.armed => sleep.as_mut().poll(cx).is_ready(),
            _ => false,
        }
    }
}

impl<T: AsyncRead + Unpin> Watched<T> {
    /// The lingering close, once the write side is shut: reads and drops what the client
    /// sends until it closes, errs, or passes [`LINGER_BYTES`], or [`LINGER_TIME`] passes.
    fn poll_linger(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut left = self.lingering.unwrap_or(LINGER_BYTES);
        let mut scratch = [0u8; LINGER_READ];
        // Bounded by `left`: each pass drops at least one byte, or ends the close.
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            let read = match Pin::new(&mut self.inner).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) => buf.filled().len(),
                // The client is gone: nothing is left to lose.
                Poll::Ready(Err(_)) => 0,
                Poll::Pending if self.overdue(cx) => 0,
                Poll::Pending => {
                    self.lingering = Some(left);
                    return Poll::Pending;
                }
            };
            if read == 0 || read >= left {
                self.lingering = Some(0);
                return Poll::Ready(Ok(()));
            }
            left -= read;
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.scan.borrow().attack.is_some() {
            // The driver, woken when the attack was seen, closes the connection.
            return Poll::Pending;
        }
        let before = buf.filled().len();
        let Poll::Ready(read) = Pin::new(&mut this.inner).poll_read(cx, buf) else {
            if this.overdue(cx) {
                this.scan.borrow_mut().attack = Some(Http2Attack::SlowHeaders);
                cx.waker().wake_by_ref();
            }
            return Poll::Pending;
        };
        read?;
        let mut scan = this.scan.borrow_mut();
        scan.feed(&buf.filled()[before..]);
        if scan.attack.is_some() {
            cx.waker().wake_by_ref();
        }
        let in_block = scan.in_block;
        drop(scan);
        this.time_block(in_block);
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Watched<T> {
    /// The codec closes: the write side is shut (a FIN after its last frames; over TLS
    /// a close_notify first, which waits for room in the socket), then the lingering
    /// close runs. [`LINGER_TIME`] bounds both, from the first call: the driver stops its
    /// own timers once the codec closes (`Watch::closing`), and a client that reads
    /// nothing must not hold the shutdown open.
    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.lingering == Some(0) {
            return Poll::Ready(Ok(()));
        }
        if !self.scan.borrow().closing {
            self.scan.borrow_mut().closing = true;
            self.arm(Instant::now() + LINGER_TIME);
        }
        if self.lingering.is_none() {
            match Pin::new(&mut self.inner).poll_shutdown(cx) {
                Poll::Ready(shut) => shut?,
                Poll::Pending if self.overdue(cx) => {
                    self.lingering = Some(0);
                    return Poll::Ready(Ok(()));
                }
                Poll::Pending => return Poll::Pending,
            }
            self.lingering = Some(LINGER_BYTES);
        }
        self.poll_linger(cx)
    }
}

write_through!(Watched, [AsyncRead, AsyncWrite], |this, cx| this.poll_close(cx));
