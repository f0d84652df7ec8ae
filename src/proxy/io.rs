//! The byte streams the data path runs over: plain TCP or TLS, on the client side and on
//! the backend side.
//!
//! The data path is generic over [`Stream`], so a plain connection compiles to code that
//! calls `TcpStream` directly: its halves are tokio's borrowed `split` halves, with no
//! lock and no allocation. A TLS stream cannot be split that way (one rustls state serves
//! both directions), so its halves share it through tokio's `split`, which takes a short
//! lock around each poll; that cost is only paid by TLS connections.

use std::future::Future;
use std::io;

use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::net::{tcp, TcpStream};

/// Something the data path writes to, and whether it may keep written bytes until
/// flushed. rustls does (a record waits for room in the socket); a socket and its write
/// half write through, so their flush is left out at compile time.
pub trait Writer: AsyncWrite + Unpin {
    /// Written bytes may wait in a buffer until a flush.
    const BUFFERS: bool;
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

/// A TLS connection to a backend.
pub type ClientTls = tokio_rustls::client::TlsStream<TcpStream>;
/// A TLS connection from a client.
pub type ServerTls = tokio_rustls::server::TlsStream<TcpStream>;

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

/// An upstream connection: plain, or TLS to an `https://` backend. The data path matches
/// on it once per attempt and then runs code specialised for the variant.
#[derive(Debug)]
pub enum Upstream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP. Boxed: a TLS session is a few KiB of state, and the plain variant
    /// should not carry its size around.
    Tls(Box<ClientTls>),
}

impl Upstream {
    /// Whether an idle pooled connection has nothing to read, so it may be reused: data
    /// means a protocol error, an EOF or a TLS `close_notify` means the backend closed it.
    pub fn is_quiet(&mut self) -> bool {
        match self {
            Upstream::Plain(tcp) => {
                let mut probe = [0u8; 1];
                matches!(tcp.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
            Upstream::Tls(tls) => crate::tls::client::is_idle_quiet(tls),
        }
    }
}
