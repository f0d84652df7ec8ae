//! Response heads: parse, check framing, and write the head weir sends to the client.
//!
//! Bad framing from a backend (RFC 9112 §6.3) is a 502: weir closes the upstream
//! connection and never guesses where such a body ends.

use std::mem::MaybeUninit;

use super::fields::{self, ConnectionOptions, Name, TransferCoding};
use super::request::{push_field, push_line};
use super::{BodyKind, Parsed, HEADER_SLOTS};

/// Facts about the exchange that decide the response's framing and connection header.
#[derive(Clone, Copy, Debug)]
pub struct Exchange {
    /// The request was HEAD, so the response has no body.
    pub head_request: bool,
    /// The request asked to upgrade, so a 101 is acceptable.
    pub upgrade_requested: bool,
    /// The client spoke HTTP/1.0: no 1xx, no chunked.
    pub client_http10: bool,
    /// weir will close the client connection after this response whatever the
    /// response says (client asked, shutdown, unread request body).
    pub close_client: bool,
    /// Most header fields allowed.
    pub max_headers: usize,
}

/// What the proxy needs to know about a parsed response.
#[derive(Clone, Copy, Debug)]
pub struct ResponseInfo {
    /// Bytes of the head, including the final CRLF CRLF.
    pub head_len: usize,
    /// Status code.
    pub status: u16,
    /// How the body is delimited.
    pub body: BodyKind,
    /// The backend lets the connection be reused after this response.
    pub upstream_reusable: bool,
    /// weir closes the client connection after this response.
    pub close_client: bool,
    /// The body must be de-chunked for an HTTP/1.0 client.
    pub dechunk: bool,
}

impl ResponseInfo {
    /// An interim 1xx response other than 101.
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status) && self.status != 101
    }
}

/// Why a response head was refused (the client gets 502).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseError(pub &'static str);

/// Parses a response head; when complete, writes the client-bound head into `out`
/// (cleared first). Interim responses for HTTP/1.0 clients leave `out` empty.
pub fn parse(
    buf: &[u8],
    exchange: &Exchange,
    out: &mut Vec<u8>,
) -> Result<Parsed<ResponseInfo>, ResponseError> {
    let mut slots = [MaybeUninit::<httparse::Header<'_>>::uninit(); HEADER_SLOTS];
    let mut response = httparse::Response::new(&mut []);
    let head_len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        &mut slots,
    ) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(ResponseError("upstream response head too large"))
        }
        Err(_) => return Err(ResponseError("malformed upstream response head")),
    };
    if response.headers.len() > exchange.max_headers {
        return Err(ResponseError("upstream response head too large"));
    }
    let status = response.code.unwrap_or(0);
    if status == 101 && !exchange.upgrade_requested {
        return Err(ResponseError("unexpected 101 from upstream"));
    }
    let http10 = response.version == Some(0);
    let mut connection = ConnectionOptions::default();
    let no_body =
        exchange.head_request || (100..200).contains(&status) || status == 204 || status == 304;
    let body = scan(response.headers, no_body, &mut connection)?;
    let upstream_reusable = body != BodyKind::UntilClose
        && status != 101
        && if http10 { connection.keep_alive && !connection.close } else { !connection.close };
    let dechunk = exchange.client_http10 && body == BodyKind::Chunked;
    let info = ResponseInfo {
        head_len,
        status,
        body,
        upstream_reusable,
        close_client: exchange.close_client || body == BodyKind::UntilClose || dechunk,
        dechunk,
    };
    out.clear();
    if !(info.is_interim() && exchange.client_http10) {
        let reason = response.reason.unwrap_or_default().as_bytes();
        write_head(buf, &info, reason, response.headers, &connection, exchange, out);
    }
    Ok(Parsed::Complete(info))
}

fn scan<'a>(
    headers: &[httparse::Header<'a>],
    no_body: bool,
    connection: &mut ConnectionOptions<'a>,
) -> Result<BodyKind, ResponseError> {
    let mut length: Option<u64> = None;
    let mut coding = TransferCoding::default();
    for header in headers {
        match Name::of(header.name.as_bytes()) {
            Name::Connection if !connection.add(header.value) => {
                return Err(ResponseError("too many Connection options from upstream"));
            }
            Name::Connection => {}
            _ if no_body => {}
            Name::ContentLength => {
                let n = fields::content_length(header.value)
                    .ok_or(ResponseError("invalid Content-Length from upstream"))?;
                if length.is_some_and(|previous| previous != n) {
                    return Err(ResponseError("conflicting Content-Length from upstream"));
                }
                length = Some(n);
            }
            Name::TransferEncoding => coding.add(header.value),
            _ => {}
        }
    }
    if no_body {
        return Ok(BodyKind::Empty);
    }
    if coding.present {
        if length.is_some() {
            return Err(ResponseError("both Content-Length and Transfer-Encoding from upstream"));
        }
        if !coding.is_valid_chunked() {
            return Err(ResponseError("Transfer-Encoding from upstream does not end in chunked"));
        }
        return Ok(BodyKind::Chunked);
    }
    Ok(match length {
        Some(0) => BodyKind::Empty,
        Some(n) => BodyKind::Length(n),
        None => BodyKind::UntilClose,
    })
}

fn write_head(
    buf: &[u8],
    info: &ResponseInfo,
    reason: &[u8],
    headers: &[httparse::Header<'_>],
    connection: &ConnectionOptions<'_>,
    exchange: &Exchange,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_status(out, info.status);
    out.push(b' ');
    out.extend_from_slice(reason);
    out.extend_from_slice(b"\r\n");
    let upgrading = info.status == 101;
    let mut wrote_length = false;
    for header in headers {
        let name = Name::of(header.name.as_bytes());
        let skip = match name {
            Name::Upgrade => !upgrading,
            Name::TransferEncoding => info.dechunk,
            Name::ContentLength => std::mem::replace(&mut wrote_length, true),
            _ => name.is_hop_by_hop(),
        };
        if skip || connection.names(header.name.as_bytes()) {
            continue;
        }
        push_line(out, buf, header);
    }
    if upgrading {
        push_field(out, b"Connection", b"upgrade");
    } else if info.is_interim() {
        // Interim responses carry no connection semantics of their own.
    } else if info.close_client {
        push_field(out, b"Connection", b"close");
    } else if exchange.client_http10 {
        push_field(out, b"Connection", b"keep-alive");
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends the three ASCII digits of a status code (httparse guarantees 100..=999).
fn push_status(out: &mut Vec<u8>, status: u16) {
    debug_assert!((100..1000).contains(&status));
    let status = status.clamp(100, 999);
    out.extend_from_slice(&[
        b'0' + (status / 100) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
    ]);
}

#[cfg(test)]
#[path = "response_tests.rs"]
mod tests;
