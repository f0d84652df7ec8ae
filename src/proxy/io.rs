//! The byte streams the data path runs over: plain TCP or TLS, on the client side and on
//! the backend side.
//!
//! The data path is generic over [`Stream`], so a plain connection compiles to code that
//! calls `TcpStream` directly: its halves are tokio's borrowed `split` halves, with no
//! lock and no allocation. A TLS stream cannot be split that way (one rustls state serves
//! both directions), so its halves share it through tokio's `split`, which takes a short
//! lock around each poll; that cost is only paid by TLS connections. The upstream
//! connection itself, plain or TLS, is [`crate::pool::Upstream`], kept by the pool.

use std::future::Future;
use std::io;

use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::net::{tcp, TcpStream};

use crate::tls::client::ClientTls;
use crate::tls::server::ServerTls;

/// Something the data path writes to, and whether it may keep written bytes until
/// flushed. rustls does (a record waits for room in the socket); a socket and its write
/// half write through, so their flush is left out at compile time.
pub trait Writer: AsyncWrite + Unpin {
    /// Written bytes may wait in a buffer until a flush.
    const BUFFERS: bool;
    /// A response body that ends with the backend's close is ended by a shutdown of
    /// this writer, a signal of its own (an HTTP/2 stream's END_STREAM): one cut short
    /// is not, and is reset. An HTTP/1 connection tells neither; it closes after such
    /// a body anyway.
    const ENDS_BODY_ON_SHUTDOWN: bool = false;
}

impl Writer for TcpStream {
    const BUFFERS: bool = false;
}

impl Writer for tcp::WriteHalf<'_> {
    const BUFFERS: bool = false;
}

impl<T: AsyncWrite> Writer for WriteHalf<T> {
    const BUFFERS: bool = true;
}

/// A client or upstream connection the data path can read and write, also both at once.
pub trait Stream: AsyncRead + Writer {
    /// The read half of [`Stream::halves`].
    type Read<'a>: AsyncRead + Unpin
    where
        Self: 'a;
    /// The write half of [`Stream::halves`].
    type Write<'a>: Writer
    where
        Self: 'a;

    /// Borrows the stream as a read half and a write half that can be used concurrently
    /// (a request body goes up while the response comes down).
    fn halves(&mut self) -> (Self::Read<'_>, Self::Write<'_>);

    /// Resolves when a read may make progress: bytes arrived, or the peer closed. Holds
    /// no buffer while waiting, so idle keep-alive connections stay cheap.
    fn readable(&mut self) -> impl Future<Output = io::Result<()>>;

    /// The `Sec-WebSocket-Accept` the backend must answer when weir made the request's
    /// WebSocket key: an HTTP/2 stream's extended CONNECT (RFC 8441). A connection's
    /// client sends its own key and checks the answer itself.
    fn websocket_accept(&self) -> Option<crate::http1::websocket::Accept> {
        None
    }
}

impl Stream for TcpStream {
    type Read<'a> = tcp::ReadHalf<'a>;
    type Write<'a> = tcp::WriteHalf<'a>;

    fn halves(&mut self) -> (Self::Read<'_>, Self::Write<'_>) {
        self.split()
    }

    fn readable(&mut self) -> impl Future<Output = io::Result<()>> {
        TcpStream::readable(self)
    }
}

/// Whether rustls holds decrypted bytes (or a close) that a read returns at once, without
/// the socket becoming readable again.
fn has_pending<D>(session: &mut rustls::ConnectionCommon<D>) -> bool {
    !matches!(session.reader().into_first_chunk(), Err(err) if err.kind() == io::ErrorKind::WouldBlock)
}

macro_rules! tls_stream {
    ($type:ty) => {
        impl Writer for $type {
            const BUFFERS: bool = true;
        }

        impl Stream for $type {
            type Read<'a> = ReadHalf<&'a mut $type>;
            type Write<'a> = WriteHalf<&'a mut $type>;

            fn halves(&mut self) -> (Self::Read<'_>, Self::Write<'_>) {
                tokio::io::split(self)
            }

            async fn readable(&mut self) -> io::Result<()> {
                let (tcp, session) = self.get_mut();
                if has_pending(session) {
                    return Ok(());
                }
                tcp.readable().await
            }
        }
    };
}

tls_stream!(ClientTls);
tls_stream!(ServerTls);

/// The error an upstream stream gives when it cannot carry the request at all (HTTP/2
/// refuses what HTTP/1.1 takes: a target with `<` or `"`, a Host that is no authority,
/// more trailer fields than weir relays): nothing went to the backend, no backend would
/// take it over this protocol, and the client is told so (400), not the backend blamed.
#[derive(Debug)]
pub struct Unsendable(pub &'static str);

impl std::fmt::Display for Unsendable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Unsendable {}

impl Unsendable {
    /// As an I/O error, the form a stream's reads and writes fail with.
    pub fn error(cause: &'static str) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidInput, Unsendable(cause))
    }

    /// The cause, if `error` is one.
    pub fn of(error: &io::Error) -> Option<&'static str> {
        error.get_ref()?.downcast_ref::<Unsendable>().map(|unsendable| unsendable.0)
    }
}
