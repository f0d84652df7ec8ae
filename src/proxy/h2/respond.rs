//! The write side of an HTTP/2 stream: takes the HTTP/1.1 response weir writes (its own,
//! already normalised output) and sends it as HEADERS, DATA and trailers.
//!
//! Interim heads (1xx) go as informational HEADERS. The final head loses its hop-by-hop
//! fields and never carries `Transfer-Encoding` (RFC 9113 §8.2.2); a chunked body is
//! de-chunked into DATA, its trailers sent as trailing HEADERS. Each write sends at most
//! the capacity the stream has (`reserve_capacity` and `poll_capacity`), so a client
//! that stops reading holds at most its window (and the codec's send buffer) per stream,
//! and weir's body pump waits, under its `send_timeout`, as it does for a full socket.

use std::cell::RefCell;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, SendStream};
use http::{HeaderMap, Response, StatusCode};
use tokio::io::AsyncWrite;

use super::fields::fields;
use crate::http1::chunked::Decoder;
use crate::http1::HEADER_SLOTS;
use crate::proxy::io::Unsendable;

/// Most bytes of one response head weir writes: its own limit on backend heads plus the
/// fields it adds, with room to spare.
const MAX_HEAD_BYTES: usize = 2 * 1024 * 1024;

/// How the rest of the response arrives.
#[derive(Debug)]
enum Body {
    /// The head is not complete yet; the bytes so far are in `head`.
    Head,
    /// This many body bytes are left.
    Length(u64),
    /// A chunked body, de-chunked as it comes.
    Chunked(Decoder),
    /// A body that ends when the exchange ends.
    UntilEnd,
    /// A WebSocket tunnel after the backend's 101: bytes both ways until the backend's
    /// end, which a shutdown passes on as END_STREAM.
    Tunnel,
    /// The stream's last frame was sent.
    Ended,
}

/// The codec's handles on one stream: shared with the stream's [`ResetWatch`].
#[derive(Debug)]
struct Handles {
    respond: SendResponse<Bytes>,
    send: Option<SendStream<Bytes>>,
}

/// Tells when the client resets the stream (or the connection breaks), so the exchange
/// for it can stop at once rather than wait for the backend.
#[derive(Debug)]
pub struct ResetWatch(Rc<RefCell<Handles>>);

impl ResetWatch {
    /// Ready once the stream can carry nothing more. The codec wakes the stream's task
    /// for this and for send capacity alike; both are polled by the same task.
    pub fn poll_reset(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut handles = self.0.borrow_mut();
        let Handles { respond, send } = &mut *handles;
        let polled = match send.as_mut() {
            Some(send) => send.poll_reset(cx),
            None => respond.poll_reset(cx),
        };
        polled.map(|_| ())
    }
}

/// Sends an HTTP/1.1 response written into it as HTTP/2 frames.
#[derive(Debug)]
pub struct ResponseWriter {
    handles: Rc<RefCell<Handles>>,
    /// The last write waited for flow-control capacity: the client takes no bytes.
    waiting: bool,
    /// The request was HEAD: the response has no body whatever its head says.
    head_request: bool,
    /// The request was a WebSocket CONNECT: a 101 opens the tunnel ([`Self::tunnel_on_101`]).
    websocket: bool,
    head: Vec<u8>,
    /// Trailer bytes of a chunked body, collected until its end.
    trailers: Vec<u8>,
    body: Body,
    /// The status of the final head sent (0 until one went; 101 for a tunnel).
    status: u16,
}

pub(crate) fn broken(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, error)
}

impl ResponseWriter {
    /// A writer for the response to a stream, and the watch on its reset.
    pub fn new(respond: SendResponse<Bytes>, head_request: bool) -> (ResponseWriter, ResetWatch) {
        let handles = Rc::new(RefCell::new(Handles { respond, send: None }));
        let writer = ResponseWriter {
            handles: Rc::clone(&handles),
            waiting: false,
            head_request,
            websocket: false,
            head: Vec::new(),
            trailers: Vec::new(),
            body: Body::Head,
            status: 0,
        };
        (writer, ResetWatch(handles))
    }

    /// Makes a 101 open a WebSocket tunnel (RFC 8441 §5): the client gets `:status 200`
    /// and the stream carries the tunnel's bytes. Only a WebSocket CONNECT asks for it;
    /// the exchange relays a 101 only to a request that asked to upgrade.
    pub fn tunnel_on_101(&mut self) {
        self.websocket = true;
    }

    /// The status of the final head sent to the client: 0 before one went, 101 once a
    /// WebSocket tunnel opened (the client saw 200).
    pub fn sent_status(&self) -> u16 {
        self.status
    }

    /// Whether the stream was reset before weir ended it: by the client's RST_STREAM
    /// or, rarely, by a connection error (the codec does not say which here).
    pub fn was_reset(&mut self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut handles = self.handles.borrow_mut();
        let Handles { respond, send } = &mut *handles;
        let polled = match send.as_mut() {
            Some(send) => send.poll_reset(&mut cx),
            None => respond.poll_reset(&mut cx),
        };
        matches!(polled, Poll::Ready(Ok(_)))
    }

    /// Ends the stream once the exchange is over: a body that ends with the exchange
    /// ends here; a response cut short (or never begun) resets the stream, as closing
    /// the connection tells an HTTP/1 client. Returns whether the response was cut
    /// while it waited for the client's window: the client stalled it past
    /// `send_timeout`.
    pub fn finish(&mut self) -> bool {
        let mut handles = self.handles.borrow_mut();
        let Handles { respond, send } = &mut *handles;
        let stalled = self.waiting && !matches!(self.body, Body::Ended);
        match (&self.body, send.as_mut()) {
            (Body::Ended, _) => {}
            // The tunnel stopped before the backend ended it (a read error, the idle
            // timeout): RFC 9113 §8.5's answer to a connection closed abnormally.
            (Body::Tunnel, Some(send)) => send.send_reset(Reason::CONNECT_ERROR),
            (_, Some(send)) => send.send_reset(Reason::INTERNAL_ERROR),
            (_, None) => respond.send_reset(Reason::INTERNAL_ERROR),
        }
        self.body = Body::Ended;
        stalled
    }

    /// Answers a WebSocket CONNECT whose backend switched protocols: `:status` 200, and
    /// the stream carries the tunnel's bytes from now on.
    fn open_tunnel(&mut self, mut response: Response<()>, mut fields: HeaderMap) -> io::Result<()> {
        // The handshake's proof is for weir's key, checked already; the client sent none
        // (RFC 8441 §5), and its answer is a 2xx.
        fields.remove(http::header::SEC_WEBSOCKET_ACCEPT);
        *response.headers_mut() = fields;
        let mut handles = self.handles.borrow_mut();
        handles.send = Some(handles.respond.send_response(response, false).map_err(broken)?);
        (self.body, self.status, self.head) = (Body::Tunnel, 101, Vec::new());
        Ok(())
    }

    /// Takes head bytes; sends the head once it is complete, with as much of a
    /// fixed-length body that came in the same write as the stream can take now.
    /// Returns the bytes of `buf` consumed.
    ///
    /// A head that arrives whole (nearly all) is parsed where it lies; the body bytes
    /// after it are copied once, as the first DATA frame.
    fn take_head(&mut self, buf: &[u8]) -> io::Result<usize> {
        let before = self.head.len();
        if before > 0 {
            self.head.extend_from_slice(buf);
        }
        let input: &[u8] = if before > 0 { &self.head } else { buf };
        let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; HEADER_SLOTS];
        let mut parsed = httparse::Response::new(&mut []);
        let end = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut parsed,
            input,
            &mut slots,
        ) {
            Ok(httparse::Status::Complete(end)) => end,
            Ok(httparse::Status::Partial) if input.len() < MAX_HEAD_BYTES => {
                if before == 0 {
                    self.head.extend_from_slice(buf);
                }
                return Ok(buf.len());
            }
            _ => return Err(broken("weir wrote a response head HTTP/2 cannot carry")),
        };
        let status = parsed.code.unwrap_or(0);
        // A head with no body after it: its framing fields say nothing (a HEAD response
        // may name a coding it would have used).
        let bodiless = self.head_request || matches!(status, 100..=199 | 204 | 304);
        let framing = if bodiless { Framing::Length(0) } else { framing(parsed.headers)? };
        // A fixed-length body's first bytes ([`Framing::body_in`]).
        let first = Bytes::copy_from_slice(&input[end..end + framing.body_in(input.len() - end)]);
        let fields = fields(parsed.headers)?;
        let mut response = Response::new(());
        if status == 101 && self.websocket {
            self.open_tunnel(response, fields)?;
            return Ok(end - before);
        }
        *response.status_mut() = StatusCode::from_u16(status).map_err(broken)?;
        *response.headers_mut() = fields;
        self.head.clear();
        if (100..200).contains(&status) {
            // Interim (100 Continue, 103 Early Hints): the final head follows.
            let mut handles = self.handles.borrow_mut();
            handles.respond.send_informational(response).map_err(broken)?;
            return Ok(end - before);
        }
        self.status = status;
        self.body = match framing {
            _ if self.head_request || status == 204 || status == 304 => Body::Length(0),
            Framing::Chunked => Body::Chunked(Decoder::new()),
            Framing::Length(length) => Body::Length(length),
            Framing::UntilEnd => Body::UntilEnd,
        };
        let empty = matches!(self.body, Body::Length(0));
        let mut handles = self.handles.borrow_mut();
        let mut send = handles.respond.send_response(response, empty).map_err(broken)?;
        let sent = match &mut self.body {
            Body::Length(left) => send_ready(&mut send, first, left)?,
            _ => 0,
        };
        if matches!(self.body, Body::Length(0)) {
            self.body = Body::Ended;
        }
        handles.send = Some(send);
        self.head = Vec::new();
        Ok(end - before + sent)
    }

    fn poll_chunked(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let ResponseWriter { handles, body, trailers, waiting, .. } = self;
        let Body::Chunked(decoder) = body else { unreachable!("called for a chunked body") };
        let send = &mut handles.borrow_mut().send;
        let consumed = ready!(poll_chunked(send, decoder, trailers, waiting, cx, buf))?;
        if decoder.is_done() {
            let send = send.as_mut().ok_or_else(|| broken("no response head"))?;
            end_with_trailers(send, trailers)?;
            self.body = Body::Ended;
        }
        Poll::Ready(Ok(consumed))
    }
}

/// Takes chunked body bytes (HTTP/1 framing) and sends their data as DATA frames, as the
/// stream's capacity allows; trailer bytes are collected in `trailers` until the
/// decoder is done, when the caller ends the stream with [`end_with_trailers`]. Returns
/// the bytes of `buf` consumed.
pub(crate) fn poll_chunked(
    send: &mut Option<SendStream<Bytes>>,
    decoder: &mut Decoder,
    trailers: &mut Vec<u8>,
    waiting: &mut bool,
    cx: &mut Context<'_>,
    buf: &[u8],
) -> Poll<io::Result<usize>> {
    let mut consumed = 0;
    // Bounded: each pass consumes a framing byte, or returns.
    while consumed < buf.len() && !decoder.is_done() {
        let rest = &buf[consumed..];
        if let Some(left) = decoder.data_left() {
            if consumed > 0 {
                // The framing so far is taken; the data comes with the next write.
                return Poll::Ready(Ok(consumed));
            }
            let data = &rest[..rest.len().min(usize::try_from(left).unwrap_or(usize::MAX))];
            let sent = ready!(poll_send(send, cx, data, false, waiting))?;
            decoder.feed(&rest[..sent]).map_err(|_| broken("malformed chunked body"))?;
            return Poll::Ready(Ok(sent));
        }
        // One framing byte at a time, so trailer bytes can be told from the rest.
        if decoder.in_trailers() {
            trailers.push(rest[0]);
        }
        decoder.feed(&rest[..1]).map_err(|_| broken("malformed chunked body"))?;
        consumed += 1;
    }
    Poll::Ready(Ok(consumed))
}

/// Ends a stream after a chunked body: with its trailers (HTTP/1 field lines) as
/// trailing HEADERS, or with an empty DATA frame when it had none.
/// Trailers that cannot go as HTTP/2 fields (more than [`MAX_TRAILERS`], or a field the
/// `http` crate refuses) are an [`Unsendable`] error; a failed send, a plain one.
pub(crate) fn end_with_trailers(send: &mut SendStream<Bytes>, trailers: &[u8]) -> io::Result<()> {
    const CAUSE: &str = "trailers HTTP/2 cannot carry";
    let mut slots = [httparse::EMPTY_HEADER; MAX_TRAILERS];
    let parsed = httparse::parse_headers(trailers, &mut slots);
    let Ok(httparse::Status::Complete((_, headers))) = parsed else {
        return Err(Unsendable::error(CAUSE));
    };
    let fields = fields(headers).map_err(|_| Unsendable::error(CAUSE))?;
    if fields.is_empty() {
        send.send_data(Bytes::new(), true).map_err(broken)
    } else {
        send.send_trailers(fields).map_err(broken)
    }
}

/// Most trailer fields relayed; a trailer section is bounded in bytes by the chunked
/// decoder too.
const MAX_TRAILERS: usize = 100;

/// Sends what of `data` (a fixed-length body's first bytes, `left` of it to come) the
/// stream can take without waiting; the rest goes through [`poll_send`]. Returns the
/// bytes sent.
fn send_ready(send: &mut SendStream<Bytes>, mut data: Bytes, left: &mut u64) -> io::Result<usize> {
    data.truncate(usize::try_from(*left).unwrap_or(usize::MAX));
    if data.is_empty() {
        return Ok(0);
    }
    send.reserve_capacity(data.len());
    data.truncate(send.capacity());
    let n = data.len();
    if n > 0 {
        *left -= n as u64;
        send.send_data(data, *left == 0).map_err(broken)?;
    }
    Ok(n)
}

/// Sends up to `data.len()` body bytes as the stream's capacity allows, ending the stream
/// with the last of them when `last`. Returns the bytes sent. `waiting` tells whether
/// it is waiting for capacity.
pub(crate) fn poll_send(
    send: &mut Option<SendStream<Bytes>>,
    cx: &mut Context<'_>,
    data: &[u8],
    last: bool,
    waiting: &mut bool,
) -> Poll<io::Result<usize>> {
    let Some(send) = send.as_mut() else {
        return Poll::Ready(Err(broken("response body before its head")));
    };
    if data.is_empty() {
        if last {
            send.send_data(Bytes::new(), true).map_err(broken)?;
        }
        return Poll::Ready(Ok(0));
    }
    send.reserve_capacity(data.len());
    // Bounded: the codec reports capacity above zero, or the stream's end.
    while send.capacity() == 0 {
        *waiting = true;
        let polled = ready!(send.poll_capacity(cx));
        // A stream reset or closed while it waited is no stall.
        *waiting = false;
        match polled {
            Some(Ok(_)) => {}
            Some(Err(error)) => return Poll::Ready(Err(broken(error))),
            None => return Poll::Ready(Err(broken("stream closed"))),
        }
    }
    *waiting = false;
    let n = send.capacity().min(data.len());
    let end = last && n == data.len();
    send.send_data(Bytes::copy_from_slice(&data[..n]), end).map_err(broken)?;
    Poll::Ready(Ok(n))
}

/// Sends what of `buf` a fixed-length body with `left` bytes to come can take, as
/// [`poll_send`] does, ending the stream with its last byte; `left` counts down.
pub(crate) fn poll_length(
    send: &mut Option<SendStream<Bytes>>,
    left: &mut u64,
    cx: &mut Context<'_>,
    buf: &[u8],
    waiting: &mut bool,
) -> Poll<io::Result<usize>> {
    let take = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
    let last = take as u64 == *left;
    let sent = ready!(poll_send(send, cx, &buf[..take], last, waiting))?;
    *left -= sent as u64;
    Poll::Ready(Ok(sent))
}

impl AsyncWrite for ResponseWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match &mut this.body {
            Body::Head => Poll::Ready(this.take_head(buf)),
            Body::Length(left) => {
                let send = &mut this.handles.borrow_mut().send;
                let sent = ready!(poll_length(send, left, cx, buf, &mut this.waiting))?;
                if *left == 0 {
                    this.body = Body::Ended;
                }
                Poll::Ready(Ok(sent))
            }
            Body::Chunked(_) => this.poll_chunked(cx, buf),
            Body::UntilEnd | Body::Tunnel => {
                let send = &mut this.handles.borrow_mut().send;
                poll_send(send, cx, buf, false, &mut this.waiting)
            }
            Body::Ended => Poll::Ready(Err(broken("response bytes after its end"))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Frames are queued in the codec, which the connection task writes out.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A response's stream ends in `finish`, once the exchange is over; a tunnel's when
        // the backend ends its side (the client's side may go on, as with TCP's FIN).
        let this = self.get_mut();
        // A body that ends with the backend's close ended whole: the pump shuts the
        // writer down only then ([`crate::proxy::io::Writer::ENDS_BODY_ON_SHUTDOWN`]); one cut short is
        // reset in `finish`, and the client does not take a part for the whole.
        if matches!(this.body, Body::Tunnel | Body::UntilEnd) {
            this.body = Body::Ended;
            let mut handles = this.handles.borrow_mut();
            let send = handles.send.as_mut().ok_or_else(|| broken("no response head"))?;
            send.send_data(Bytes::new(), true).map_err(broken)?;
        }
        Poll::Ready(Ok(()))
    }
}

/// How the final response's body is framed, from its head.
pub(crate) enum Framing {
    Chunked,
    Length(u64),
    UntilEnd,
}

impl Framing {
    /// How many of `available` bytes after the head are this body's: a fixed length's
    /// share of them; none for a chunked body, whose bytes go through the decoder, nor
    /// for one that ends with the connection.
    fn body_in(&self, available: usize) -> usize {
        match *self {
            Framing::Length(length) => available.min(usize::try_from(length).unwrap_or(usize::MAX)),
            Framing::Chunked | Framing::UntilEnd => 0,
        }
    }
}

/// How the body after a head weir wrote is framed: `Transfer-Encoding` (`chunked` alone:
/// an error for any other coding), else `Content-Length`, else to the end.
pub(crate) fn framing(headers: &[httparse::Header<'_>]) -> io::Result<Framing> {
    let mut framing = Framing::UntilEnd;
    for header in headers {
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            // HTTP/2 has no transfer codings (RFC 9113 §8.2.2): de-chunked, a body under
            // another one (`gzip, chunked`) would reach the client still coded, with
            // nothing saying so. weir does not decode it; the stream is reset instead.
            if !crate::http1::fields::trim(header.value).eq_ignore_ascii_case(b"chunked") {
                return Err(broken("a transfer coding other than chunked"));
            }
            framing = Framing::Chunked;
        } else if header.name.eq_ignore_ascii_case("content-length") {
            let text = std::str::from_utf8(header.value).map_err(broken)?;
            framing = Framing::Length(text.trim().parse().map_err(broken)?);
        }
    }
    Ok(framing)
}
