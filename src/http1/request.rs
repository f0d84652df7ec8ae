//! Request heads: parse, check framing, and write the head weir sends upstream.
//!
//! The upstream head keeps the request target and every end-to-end header as received
//! (name case, order, duplicates), removes hop-by-hop fields and those named in
//! `Connection`, and adds `X-Forwarded-For/Proto/Host`. Ambiguous framing is refused
//! before anything reaches a backend (RFC 9112 §6.3).

use std::mem::MaybeUninit;
use std::ops::Range;

use super::fields::{self, ConnectionOptions, Name, TransferCoding};
use super::{offset_in, BodyKind, Parsed, HEADER_SLOTS};

/// Request methods weir treats specially.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// GET.
    Get,
    /// HEAD: the response has no body.
    Head,
    /// POST.
    Post,
    /// PUT.
    Put,
    /// DELETE.
    Delete,
    /// OPTIONS.
    Options,
    /// TRACE.
    Trace,
    /// Any other method (PATCH, extension methods).
    Other,
}

impl Method {
    fn from_bytes(method: &[u8]) -> Method {
        match method {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"OPTIONS" => Method::Options,
            b"TRACE" => Method::Trace,
            _ => Method::Other,
        }
    }

    /// Idempotent per RFC 9110 §9.2.2, so a retry after bytes were sent is safe.
    pub fn is_idempotent(self) -> bool {
        !matches!(self, Method::Post | Method::Other)
    }
}

/// What the proxy needs to know about a parsed request.
#[derive(Clone, Debug)]
pub struct RequestInfo {
    /// Bytes of the head, including the final CRLF CRLF.
    pub head_len: usize,
    /// The method.
    pub method: Method,
    /// The client spoke HTTP/1.0.
    pub http10: bool,
    /// How the body is delimited.
    pub body: BodyKind,
    /// The client allows the connection to stay open after this exchange.
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent.
    pub expect_continue: bool,
    /// The client asks to switch protocols (`Connection: upgrade` plus `Upgrade`).
    pub upgrade: bool,
    /// Where the `Host` value sits in the input buffer.
    pub host: Option<Range<usize>>,
    /// Where the request target sits in the input buffer.
    pub target: Range<usize>,
}

/// A request weir refuses to forward; each maps to a status the client receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// The head is over `max_header_bytes` or has too many fields: 431.
    HeadTooLarge,
    /// Malformed or ambiguous: 400, with the reason.
    Bad(&'static str),
    /// A method weir does not proxy (CONNECT): 405.
    MethodNotAllowed,
    /// Not HTTP/1.x: 505.
    Version,
}

impl RequestError {
    /// Status code and the short body weir answers with.
    pub fn status(self) -> (u16, &'static str) {
        match self {
            RequestError::HeadTooLarge => (431, "request header fields too large"),
            RequestError::Bad(reason) => (400, reason),
            RequestError::MethodNotAllowed => (405, "CONNECT is not supported"),
            RequestError::Version => (505, "HTTP version not supported"),
        }
    }
}

/// Per-connection facts that go into the rewritten head.
#[derive(Clone, Copy, Debug)]
pub struct Forwarding<'a> {
    /// Client address text, appended to `X-Forwarded-For`.
    pub client_ip: &'a [u8],
    /// `http` or `https`, for `X-Forwarded-Proto`.
    pub proto: &'a [u8],
    /// Most header fields allowed.
    pub max_headers: usize,
}

/// Parses a request head from `buf` and, when complete, writes the upstream head into
/// `out` (cleared first).
pub fn parse(
    buf: &[u8],
    forwarding: &Forwarding<'_>,
    out: &mut Vec<u8>,
) -> Result<Parsed<RequestInfo>, RequestError> {
    let mut slots = [MaybeUninit::<httparse::Header<'_>>::uninit(); HEADER_SLOTS];
    let mut request = httparse::Request::new(&mut []);
    let head_len = match request.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(RequestError::HeadTooLarge),
        Err(httparse::Error::Version) => return Err(RequestError::Version),
        Err(_) => return Err(RequestError::Bad("malformed request head")),
    };
    if request.headers.len() > forwarding.max_headers {
        return Err(RequestError::HeadTooLarge);
    }
    let method = request.method.unwrap_or_default().as_bytes();
    let target = request.path.unwrap_or_default().as_bytes();
    if method == b"CONNECT" {
        return Err(RequestError::MethodNotAllowed);
    }
    let http10 = request.version == Some(0);
    let scan = scan_headers(request.headers, http10)?;
    let info = RequestInfo {
        head_len,
        method: Method::from_bytes(method),
        http10,
        body: scan.body,
        keep_alive: if http10 {
            scan.connection.keep_alive && !scan.connection.close
        } else {
            !scan.connection.close
        },
        expect_continue: scan.expect_continue && !http10,
        upgrade: scan.connection.upgrade && scan.upgrade_present && !http10,
        host: scan.host.map(|h| offset_in(buf, h)..offset_in(buf, h) + h.len()),
        target: offset_in(buf, target)..offset_in(buf, target) + target.len(),
    };
    write_upstream_head(buf, method, target, request.headers, &scan, &info, forwarding, out);
    Ok(Parsed::Complete(info))
}

/// What a first pass over the header fields learned.
struct Scan<'a> {
    body: BodyKind,
    connection: ConnectionOptions<'a>,
    host: Option<&'a [u8]>,
    last_forwarded_for: Option<usize>,
    expect_continue: bool,
    upgrade_present: bool,
}

fn scan_headers<'a>(
    headers: &[httparse::Header<'a>],
    http10: bool,
) -> Result<Scan<'a>, RequestError> {
    let mut scan = Scan {
        body: BodyKind::Empty,
        connection: ConnectionOptions::default(),
        host: None,
        last_forwarded_for: None,
        expect_continue: false,
        upgrade_present: false,
    };
    let mut length: Option<u64> = None;
    let mut coding = TransferCoding::default();
    for (index, header) in headers.iter().enumerate() {
        let value = header.value;
        match Name::of(header.name.as_bytes()) {
            Name::ContentLength => {
                let n = fields::content_length(value)
                    .ok_or(RequestError::Bad("invalid Content-Length"))?;
                if length.is_some_and(|previous| previous != n) {
                    return Err(RequestError::Bad("conflicting Content-Length"));
                }
                length = Some(n);
            }
            Name::TransferEncoding => coding.add(value),
            Name::Connection if !scan.connection.add(value) => {
                return Err(RequestError::Bad("too many Connection options"));
            }
            Name::Host => {
                if scan.host.is_some() {
                    return Err(RequestError::Bad("more than one Host"));
                }
                scan.host = Some(value);
            }
            Name::XForwardedFor => scan.last_forwarded_for = Some(index),
            Name::Expect => {
                scan.expect_continue = fields::trim(value).eq_ignore_ascii_case(b"100-continue");
            }
            Name::Upgrade => scan.upgrade_present = true,
            _ => {}
        }
    }
    if !http10 && scan.host.is_none() {
        return Err(RequestError::Bad("missing Host"));
    }
    scan.body = body_kind(length, coding, http10)?;
    Ok(scan)
}

/// RFC 9112 §6.3 for requests: anything ambiguous is refused.
fn body_kind(
    length: Option<u64>,
    coding: TransferCoding,
    http10: bool,
) -> Result<BodyKind, RequestError> {
    if coding.present {
        if length.is_some() {
            return Err(RequestError::Bad("both Content-Length and Transfer-Encoding"));
        }
        if http10 {
            return Err(RequestError::Bad("Transfer-Encoding in an HTTP/1.0 request"));
        }
        if !coding.is_valid_chunked() {
            return Err(RequestError::Bad("Transfer-Encoding does not end in chunked"));
        }
        return Ok(BodyKind::Chunked);
    }
    Ok(match length {
        Some(0) | None => BodyKind::Empty,
        Some(n) => BodyKind::Length(n),
    })
}

#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename them
fn write_upstream_head(
    buf: &[u8],
    method: &[u8],
    target: &[u8],
    headers: &[httparse::Header<'_>],
    scan: &Scan<'_>,
    info: &RequestInfo,
    forwarding: &Forwarding<'_>,
    out: &mut Vec<u8>,
) {
    out.clear();
    out.extend_from_slice(method);
    out.push(b' ');
    out.extend_from_slice(target);
    // weir speaks HTTP/1.1 upstream whatever the client spoke, so upstream connections
    // stay reusable.
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut wrote_length = false;
    for (index, header) in headers.iter().enumerate() {
        let name = Name::of(header.name.as_bytes());
        let skip = match name {
            Name::XForwardedProto | Name::XForwardedHost => true,
            Name::Upgrade => !info.upgrade,
            // Identical repeats may be collapsed (RFC 9112 §6.3); keep the first.
            Name::ContentLength => std::mem::replace(&mut wrote_length, true),
            _ => name.is_hop_by_hop(),
        };
        if skip || scan.connection.names(header.name.as_bytes()) {
            continue;
        }
        push_line(out, buf, header);
        if Some(index) == scan.last_forwarded_for {
            out.truncate(out.len() - 2);
            out.extend_from_slice(b", ");
            out.extend_from_slice(forwarding.client_ip);
            out.extend_from_slice(b"\r\n");
        }
    }
    finish_upstream_head(scan, info, forwarding, out);
}

fn finish_upstream_head(
    scan: &Scan<'_>,
    info: &RequestInfo,
    forwarding: &Forwarding<'_>,
    out: &mut Vec<u8>,
) {
    if scan.last_forwarded_for.is_none() {
        push_field(out, b"X-Forwarded-For", forwarding.client_ip);
    }
    push_field(out, b"X-Forwarded-Proto", forwarding.proto);
    if let Some(host) = scan.host {
        push_field(out, b"X-Forwarded-Host", host);
    }
    if info.upgrade {
        push_field(out, b"Connection", b"upgrade");
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends `name: value\r\n`.
pub fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends a received field line as it arrived (name, colon, white space, value; the
/// line's own trailing white space and line ending are normalised to CRLF): one copy
/// instead of four. `buf` is the buffer httparse parsed `header` from.
pub fn push_line(out: &mut Vec<u8>, buf: &[u8], header: &httparse::Header<'_>) {
    let (name, value) = (header.name.as_bytes(), header.value);
    let start = offset_in(buf, name);
    let end = offset_in(buf, value) + value.len();
    // An empty value may not point into `buf` at all.
    let line = buf.get(start..end).filter(|_| !value.is_empty() && end > start + name.len());
    match line {
        Some(line) => {
            debug_assert!(line.starts_with(name) && line.ends_with(value));
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        }
        None => push_field(out, name, value),
    }
}

/// Adds whole field lines (`Name: value\r\n`, possibly several) to a finished head, before
/// the empty line that ends it.
pub fn append_lines(head: &mut Vec<u8>, lines: &[u8]) {
    debug_assert!(head.ends_with(b"\r\n\r\n"));
    debug_assert!(lines.is_empty() || lines.ends_with(b"\r\n"));
    if lines.is_empty() || !head.ends_with(b"\r\n\r\n") {
        return;
    }
    head.truncate(head.len() - 2);
    head.extend_from_slice(lines);
    head.extend_from_slice(b"\r\n");
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
