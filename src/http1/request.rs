//! Request heads: parse, check framing, and write the head weir sends upstream.
//!
//! The upstream head keeps the request target and every end-to-end header as received
//! (name case, order, duplicates), removes hop-by-hop fields and those named in
//! `Connection` (never one weir relies on, see [`ConnectionOptions`]), and adds
//! `X-Forwarded-For/Proto/Host`. Ambiguous framing is refused before anything reaches a
//! backend (RFC 9112 §6.3); the framing fields are written in one canonical form.

use std::mem::MaybeUninit;
use std::ops::Range;

use super::fields::{self, ConnectionOptions, Name, TransferCoding};
use super::forwarded::{self, Trust};
use super::lines::{append_to_value, Lines};
use super::name_set::NameSet;
use super::target::{self, Target};
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
    /// Where the target's origin form (path and query, or `*`) sits in the input buffer:
    /// all of the target, or what follows an absolute-form target's authority.
    pub origin: Range<usize>,
    /// The client address `X-Forwarded-For` names, read only from a trusted proxy
    /// ([`Trust::Proxy`]); `None` means the connection's own.
    pub forwarded_client: Option<std::net::IpAddr>,
    /// The names of [`Name::Other`] fields, as a filter (route rules, the gRPC check).
    pub names: NameSet,
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
    /// A transfer coding other than `chunked` alone: 501 (RFC 9112 §6.1, as nginx).
    NotImplemented(&'static str),
}

impl RequestError {
    /// Status code and the short body weir answers with.
    pub fn status(self) -> (u16, &'static str) {
        match self {
            RequestError::HeadTooLarge => (431, "request header fields too large"),
            RequestError::Bad(reason) => (400, reason),
            RequestError::MethodNotAllowed => (405, "CONNECT is not supported"),
            RequestError::Version => (505, "HTTP version not supported"),
            RequestError::NotImplemented(reason) => (501, reason),
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
    /// What becomes of a received `X-Forwarded-For`.
    pub trust: Trust<'a>,
}

/// Parses a request head from `buf` and, when complete, writes the upstream head into
/// `out` (cleared first; left empty by an error).
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
    out.clear();
    let form = target::parse(target, method == b"OPTIONS").map_err(RequestError::Bad)?;
    let mut scan = Scan { authority: form.authority, ..Scan::default() };
    let replace = matches!(forwarding.trust, Trust::Replace);
    let written = scan_and_write(buf, method, &form, request.headers, &mut scan, replace, out)
        .and_then(|end| {
            Ok((end, scan.info(buf, head_len, method, [target, form.origin], http10)?))
        });
    let (forwarded_for_end, mut info) = match written {
        Ok(written) => written,
        Err(error) => {
            out.clear();
            return Err(error);
        }
    };
    if scan.connection.has_names() || info.upgrade {
        let line_len = method.len() + form.lead.len() + form.origin.len() + REQUEST_LINE_EXTRA_LEN;
        rewrite_fields(buf, request.headers, &scan, &info, forwarding, line_len, out);
    } else if let Some(at) = forwarded_for_end {
        append_to_value(out, at, forwarding.client_ip);
    }
    finish_upstream_head(&scan, &info, forwarding, out);
    if let (Trust::Proxy(trusted), Some(_)) = (forwarding.trust, scan.last_forwarded_for) {
        info.forwarded_client = forwarded::client(request.headers, trusted);
    }
    Ok(Parsed::Complete(info))
}

/// Bytes of the request line besides method and target: ` ` and ` HTTP/1.1\r\n`.
const REQUEST_LINE_EXTRA_LEN: usize = 12;

/// The request line weir sends: copied as received when it already reads as weir's would.
/// An absolute-form target goes as its origin form (RFC 9112 §3.2.2: origin servers get
/// origin form, and the authority goes in `Host`).
fn write_request_line(lines: &mut Lines<'_, '_>, buf: &[u8], method: &[u8], target: &Target<'_>) {
    let (lead, target) = (target.lead, target.origin);
    // Checked for being non-empty first: an empty slice may point anywhere.
    if !method.is_empty() && !target.is_empty() && lead.is_empty() {
        let start = offset_in(buf, method);
        let target_end = start + method.len() + 1 + target.len();
        let raw = buf.get(start + method.len()) == Some(&b' ')
            && offset_in(buf, target) == start + method.len() + 1
            && buf.get(target_end..target_end + 11) == Some(b" HTTP/1.1\r\n".as_slice());
        if raw {
            lines.keep_raw(start..target_end + 11);
            return;
        }
    }
    let out = lines.flush();
    out.extend_from_slice(method);
    out.push(b' ');
    out.extend_from_slice(lead);
    out.extend_from_slice(target);
    // weir speaks HTTP/1.1 upstream whatever the client spoke, so upstream connections
    // stay reusable.
    out.extend_from_slice(b" HTTP/1.1\r\n");
}

/// What the pass over the header fields learned.
#[derive(Default)]
struct Scan<'a> {
    length: Option<u64>,
    coding: TransferCoding,
    connection: ConnectionOptions<'a>,
    host: Option<&'a [u8]>,
    /// An absolute-form target's authority: it replaces `Host` (RFC 9112 §3.2.2).
    authority: Option<&'a [u8]>,
    last_forwarded_for: Option<usize>,
    expect_continue: bool,
    /// `Upgrade` fields seen (saturating): an upgrade needs exactly one.
    upgrades: u8,
    /// The last `Upgrade` value is the single token `websocket`, in any case.
    websocket: bool,
    names: NameSet,
}

impl<'a> Scan<'a> {
    /// Takes field number `index` into account.
    fn add(&mut self, index: usize, name: Name, value: &'a [u8]) -> Result<(), RequestError> {
        match name {
            Name::ContentLength => {
                let n = fields::content_length(value)
                    .ok_or(RequestError::Bad("invalid Content-Length"))?;
                if self.length.is_some_and(|previous| previous != n) {
                    return Err(RequestError::Bad("conflicting Content-Length"));
                }
                self.length = Some(n);
            }
            Name::TransferEncoding => self.coding.add(value),
            Name::Connection if !self.connection.add(value) => {
                return Err(RequestError::Bad("too many Connection options"));
            }
            Name::Host => {
                if self.host.is_some() {
                    return Err(RequestError::Bad("more than one Host"));
                }
                self.host = Some(value);
            }
            Name::XForwardedFor => self.last_forwarded_for = Some(index),
            Name::Expect => {
                self.expect_continue = fields::trim(value).eq_ignore_ascii_case(b"100-continue");
            }
            Name::Upgrade => {
                self.upgrades = self.upgrades.saturating_add(1);
                self.websocket = fields::trim(value).eq_ignore_ascii_case(b"websocket");
            }
            _ => {}
        }
        Ok(())
    }

    /// The request's facts once every field is in.
    fn info(
        &self,
        buf: &[u8],
        head_len: usize,
        method: &[u8],
        [target, origin]: [&[u8]; 2],
        http10: bool,
    ) -> Result<RequestInfo, RequestError> {
        if !http10 && self.host.is_none() {
            return Err(RequestError::Bad("missing Host"));
        }
        let connection = &self.connection;
        Ok(RequestInfo {
            head_len,
            method: Method::from_bytes(method),
            http10,
            body: body_kind(self.length, self.coding, http10)?,
            keep_alive: if http10 {
                connection.keep_alive && !connection.close
            } else {
                !connection.close
            },
            expect_continue: self.expect_continue && !http10,
            // Only WebSocket: a tunnel bypasses routing and the access log, so weir opens
            // one only for the protocol it means to support. Any other `Upgrade` (h2c,
            // TLS/1.0) goes as a plain request without it, as nginx forwards one when
            // not configured to upgrade; a 101 to it is then a 502.
            upgrade: connection.upgrade && self.upgrades == 1 && self.websocket && !http10,
            host: self.authority.or(self.host).map(|h| range_in(buf, h)),
            target: range_in(buf, target),
            origin: range_in(buf, origin),
            forwarded_client: None,
            names: self.names,
        })
    }
}

/// One pass over the fields: writes the request line, reads the fields into `scan` and
/// writes the fields a plain request forwards. Returns where the last `X-Forwarded-For`
/// value ends in `out`; with `replace`, received ones are dropped. A request whose
/// `Connection` names fields, or that upgrades, is written again by [`rewrite_fields`]:
/// rare, and it keeps the common request to one name classification per field.
fn scan_and_write<'a>(
    buf: &'a [u8],
    method: &[u8],
    target: &Target<'_>,
    headers: &[httparse::Header<'a>],
    scan: &mut Scan<'a>,
    replace: bool,
    out: &mut Vec<u8>,
) -> Result<Option<usize>, RequestError> {
    let mut lines = Lines::new(buf, out);
    write_request_line(&mut lines, buf, method, target);
    let mut wrote_length = false;
    let mut forwarded_for_end = None;
    for (index, header) in headers.iter().enumerate() {
        let name = Name::of(header.name.as_bytes());
        if name == Name::Other {
            // Most fields: nothing to check, always forwarded. The one exception is a
            // framing or forwarding name spelled with `_`, which backends that read `_`
            // as `-` would act on (see `fields::is_underscore_spelling`).
            if fields::is_underscore_spelling(header.name.as_bytes()) {
                return Err(RequestError::Bad("underscore in a framing or forwarding field name"));
            }
            scan.names.add(header.name.as_bytes());
            lines.keep(header);
            continue;
        }
        if replace && name == Name::XForwardedFor {
            // Never seen, so the one weir writes names the peer alone.
            continue;
        }
        scan.add(index, name, header.value)?;
        let skip = match name {
            // Upgrade fields go upstream only when upgrading, which is rewritten.
            Name::XForwardedProto | Name::XForwardedHost | Name::Upgrade => true,
            Name::ContentLength | Name::TransferEncoding => {
                keep_framing(&mut lines, header, name, scan.length, &mut wrote_length);
                true
            }
            Name::Host => scan.authority.is_some(),
            _ => name.is_hop_by_hop(),
        };
        if !skip {
            lines.keep(header);
            if name == Name::XForwardedFor {
                forwarded_for_end = Some(lines.flush().len() - 2);
            }
        }
    }
    lines.flush();
    Ok(forwarded_for_end)
}

/// Writes the fields again after the request line (`line_len` bytes), with everything
/// known: leaves out fields named in `Connection` and keeps `Upgrade` when upgrading.
#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename them
fn rewrite_fields(
    buf: &[u8],
    headers: &[httparse::Header<'_>],
    scan: &Scan<'_>,
    info: &RequestInfo,
    forwarding: &Forwarding<'_>,
    line_len: usize,
    out: &mut Vec<u8>,
) {
    debug_assert!(out.len() >= line_len);
    out.truncate(line_len);
    let mut lines = Lines::new(buf, out);
    let mut wrote_length = false;
    for (index, header) in headers.iter().enumerate() {
        let name = Name::of(header.name.as_bytes());
        let skip = match name {
            Name::XForwardedProto | Name::XForwardedHost => true,
            Name::XForwardedFor => matches!(forwarding.trust, Trust::Replace),
            Name::Upgrade => !info.upgrade,
            Name::ContentLength | Name::TransferEncoding => {
                keep_framing(&mut lines, header, name, scan.length, &mut wrote_length);
                true
            }
            Name::Host => scan.authority.is_some(),
            _ => name.is_hop_by_hop(),
        };
        if skip || scan.connection.names(header.name.as_bytes()) {
            continue;
        }
        lines.keep(header);
        if Some(index) == scan.last_forwarded_for {
            let out = lines.flush();
            let at = out.len() - 2;
            append_to_value(out, at, forwarding.client_ip);
        }
    }
    lines.flush();
}

/// Writes a framing field as weir forwards it, whatever its spelling: the first
/// `Content-Length` as one plain value (identical repeats and lists collapse, RFC 9112
/// §6.3), `Transfer-Encoding` as exactly `chunked` (the only coding a request may have,
/// see [`body_kind`]). The line is copied raw when it already reads so, which is the
/// common case. `Connection` cannot name these fields (see [`ConnectionOptions`]), so the
/// framing a backend reads is the framing weir reads.
#[inline]
fn keep_framing(
    lines: &mut Lines<'_, '_>,
    header: &httparse::Header<'_>,
    name: Name,
    length: Option<u64>,
    wrote_length: &mut bool,
) {
    match (name, length) {
        (Name::TransferEncoding, _) => lines.keep_as(header, b"Transfer-Encoding", b"chunked"),
        (_, Some(length)) if !std::mem::replace(wrote_length, true) => {
            lines.keep_length(header, length);
        }
        _ => {}
    }
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
        if coding.malformed {
            return Err(RequestError::Bad("malformed Transfer-Encoding"));
        }
        if !coding.is_valid_chunked() {
            return Err(RequestError::Bad("Transfer-Encoding does not end in chunked"));
        }
        if !coding.is_chunked_only() {
            // Upstream framing is `chunked` alone; weir decodes no other coding, and
            // forwarding one lets a backend read the body differently.
            return Err(RequestError::NotImplemented("Transfer-Encoding other than chunked"));
        }
        return Ok(BodyKind::Chunked);
    }
    Ok(match length {
        Some(0) | None => BodyKind::Empty,
        Some(n) => BodyKind::Length(n),
    })
}

/// Adds the forwarding fields, weir's own `Connection` field and the empty line. Each
/// constant piece is one copy that ends one line and starts the next, which halves the
/// copies of four `push_field` calls.
fn finish_upstream_head(
    scan: &Scan<'_>,
    info: &RequestInfo,
    forwarding: &Forwarding<'_>,
    out: &mut Vec<u8>,
) {
    if scan.last_forwarded_for.is_none() {
        out.extend_from_slice(b"X-Forwarded-For: ");
        out.extend_from_slice(forwarding.client_ip);
        out.extend_from_slice(b"\r\nX-Forwarded-Proto: ");
    } else {
        out.extend_from_slice(b"X-Forwarded-Proto: ");
    }
    out.extend_from_slice(forwarding.proto);
    if let Some(authority) = scan.authority {
        out.extend_from_slice(b"\r\nHost: ");
        out.extend_from_slice(authority);
    }
    if let Some(host) = scan.authority.or(scan.host) {
        out.extend_from_slice(b"\r\nX-Forwarded-Host: ");
        out.extend_from_slice(host);
    }
    if info.upgrade {
        out.extend_from_slice(b"\r\nConnection: upgrade");
    }
    out.extend_from_slice(b"\r\n\r\n");
}

/// Where `part`, a slice of `buf`, sits in it.
fn range_in(buf: &[u8], part: &[u8]) -> Range<usize> {
    let start = offset_in(buf, part);
    start..start + part.len()
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
