//! One HTTP/2 stream as the request path sees a client connection ([`Stream`]): the
//! request body is read from the stream's DATA frames, and the HTTP/1 response weir
//! writes goes out as HEADERS and DATA.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::body::RequestBody;
use super::respond::ResponseWriter;
use crate::proxy::io::{Stream, Writer};

/// One HTTP/2 stream as the exchange sees a client connection: it reads the request
/// body and writes the HTTP/1 response, which goes out as HTTP/2 frames.
pub struct Http2Stream {
    pub body: RequestBody,
    pub response: ResponseWriter,
    /// A WebSocket CONNECT: what the backend's 101 must carry ([`super::websocket`]).
    pub websocket_accept: Option<crate::http1::websocket::Accept>,
}

impl AsyncRead for Http2Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().body).poll_read(cx, buf)
    }
}

impl AsyncWrite for Http2Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().response).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().response).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().response).poll_shutdown(cx)
    }
}

/// Frames are queued in the codec at once; there is nothing to flush.
impl Writer for Http2Stream {
    const BUFFERS: bool = false;
    const ENDS_BODY_ON_SHUTDOWN: bool = true;
}

impl Writer for &mut ResponseWriter {
    const BUFFERS: bool = false;
    const ENDS_BODY_ON_SHUTDOWN: bool = true;
}

impl Stream for Http2Stream {
    type Read<'a> = &'a mut RequestBody;
    type Write<'a> = &'a mut ResponseWriter;

    fn halves(&mut self) -> (Self::Read<'_>, Self::Write<'_>) {
        (&mut self.body, &mut self.response)
    }

    fn readable(&mut self) -> impl Future<Output = io::Result<()>> {
        // Only a connection's idle wait asks, and a stream has none.
        std::future::ready(Ok(()))
    }

    fn websocket_accept(&self) -> Option<crate::http1::websocket::Accept> {
        self.websocket_accept
    }
}
