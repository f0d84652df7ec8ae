//! Response heads: parse, check framing, and write the head weir sends to the client.
//!
//! Bad framing from a backend (RFC 9112 §6.3) is a 502: weir closes the upstream
//! connection and never guesses where such a body ends. `Content-Length` goes to the
//! client as one plain value, and not at all on 1xx, 204 and 304; `Connection` cannot
//! remove a framing field (see [`ConnectionOptions`]).

use std::mem::MaybeUninit;

use super::fields::{self, ConnectionOptions, Name, TransferCoding};
use super::lines::{push_field, Lines};
use super::{offset_in, BodyKind, Parsed, HEADER_SLOTS};

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
    /// The `Sec-WebSocket-Accept` a 101 must carry when weir made the request's key (a
    /// WebSocket over HTTP/2, RFC 8441): weir is then the WebSocket client, so it checks
    /// the handshake. Its own client takes any 2xx as the tunnel open (RFC 9113 §8.5),
    /// so a 2xx other than 101 is refused too.
    pub websocket_accept: Option<super::websocket::Accept>,
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
/// (cleared first). Interim responses for HTTP/1.0 clients leave `out` empty, and so does
/// an error.
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
    let reason = response.reason.unwrap_or_default().as_bytes();
    let rules = Rules::new(status, reason, exchange)?;
    if let Some(accept) = exchange.websocket_accept.filter(|_| status == 101) {
        check_accept(response.headers, &accept)?;
    }
    let http10 = response.version == Some(0);
    out.clear();
    let mut connection = ConnectionOptions::default();
    let scanned = scan_and_write(buf, response.headers, &rules, &mut connection, out)
        .and_then(|framing| Ok((framing.length, framing.body(rules.no_body)?)));
    let (length, body) = match scanned {
        Ok(scanned) => scanned,
        Err(error) => {
            out.clear();
            return Err(error);
        }
    };
    let upstream_reusable = body != BodyKind::UntilClose
        && status != 101
        && if http10 { connection.keep_alive && !connection.close } else { !connection.close };
    let dechunk = exchange.client_http10 && body == BodyKind::Chunked;
    debug_assert!(!dechunk || rules.drop_transfer_encoding);
    let info = ResponseInfo {
        head_len,
        status,
        body,
        upstream_reusable,
        close_client: exchange.close_client || body == BodyKind::UntilClose || dechunk,
        dechunk,
    };
    if rules.write {
        if connection.has_names() {
            rewrite_fields(buf, response.headers, &rules, &connection, length, out);
        }
        finish_head(&info, exchange, out);
    }
    Ok(Parsed::Complete(info))
}

/// Checks that a 101 carries exactly one `Sec-WebSocket-Accept`, and that it is the one
/// for the key weir sent (RFC 6455 §4.1: otherwise the client fails the connection).
fn check_accept(
    headers: &[httparse::Header<'_>],
    accept: &super::websocket::Accept,
) -> Result<(), ResponseError> {
    let mut values = headers
        .iter()
        .filter(|header| header.name.eq_ignore_ascii_case("sec-websocket-accept"))
        .map(|header| fields::trim(header.value));
    match (values.next(), values.next()) {
        (Some(value), None) if value == accept.as_slice() => Ok(()),
        _ => Err(ResponseError("Sec-WebSocket-Accept does not match the key weir sent")),
    }
}

/// What decides the head weir writes, known before the fields are read.
struct Rules<'a> {
    /// Status code.
    status: u16,
    /// Reason phrase as received (empty when absent or not ASCII).
    reason: &'a [u8],
    /// The response has no body whatever its framing fields say (HEAD, 1xx, 204, 304).
    no_body: bool,
    /// `Content-Length` and `Transfer-Encoding` are left out (1xx, 204, 304).
    strip_framing: bool,
    /// The client gets this head at all (not an interim one for an HTTP/1.0 client).
    write: bool,
    /// `Transfer-Encoding` is left out: weir de-chunks for an HTTP/1.0 client.
    drop_transfer_encoding: bool,
}

impl<'a> Rules<'a> {
    /// The rules for a response with `status`; a status weir never relays is an error.
    #[inline]
    fn new(status: u16, reason: &'a [u8], exchange: &Exchange) -> Result<Rules<'a>, ResponseError> {
        // httparse takes any three digits; RFC 9110 §15 status codes start at 100. A code
        // under 100 has no class: relaying it would make a final response look interim.
        if status < 100 {
            return Err(ResponseError("invalid status code from upstream"));
        }
        if status == 101 && !exchange.upgrade_requested {
            return Err(ResponseError("unexpected 101 from upstream"));
        }
        if exchange.websocket_accept.is_some() && (200..300).contains(&status) {
            return Err(ResponseError("a WebSocket upgrade answered with a 2xx, not 101"));
        }
        let bodiless = (100..200).contains(&status) || status == 204 || status == 304;
        let no_body = exchange.head_request || bodiless;
        let interim = (100..200).contains(&status) && status != 101;
        Ok(Rules {
            status,
            reason,
            no_body,
            // RFC 9110 §8.6 and RFC 9112 §6.1: no framing fields on these; whatever the
            // backend sent, the client must not read them as a body to come.
            strip_framing: bodiless,
            write: !(interim && exchange.client_http10),
            // A Transfer-Encoding that is not an error means a chunked body here.
            drop_transfer_encoding: exchange.client_http10 && !no_body,
        })
    }
}

impl Rules<'_> {
    /// Writes field `header` (of class `name`) into the client-bound head unless it is
    /// left out (fields named in `Connection` aside). The first `Content-Length` stands
    /// for identical repeats and goes out as one plain value, `length`, which is what
    /// weir reads: `Connection` cannot name it (see [`ConnectionOptions`]).
    #[inline(always)]
    fn keep(
        &self,
        lines: &mut Lines<'_, '_>,
        header: &httparse::Header<'_>,
        name: Name,
        length: Option<u64>,
        wrote_length: &mut bool,
    ) {
        let skip = match name {
            Name::Upgrade => self.status != 101,
            Name::ContentLength | Name::TransferEncoding if self.strip_framing => true,
            Name::TransferEncoding => self.drop_transfer_encoding,
            Name::ContentLength => {
                if let Some(length) = length.filter(|_| !std::mem::replace(wrote_length, true)) {
                    lines.keep_length(header, length);
                }
                true
            }
            _ => name.is_hop_by_hop(),
        };
        if !skip {
            lines.keep(header);
        }
    }

    /// Bytes of the status line weir writes: `HTTP/1.1 NNN reason\r\n`.
    fn status_line_len(&self) -> usize {
        15 + self.reason.len()
    }
}

/// One pass over the fields: checks framing and writes the head up to its last field.
/// Fields named in `Connection` are still in; [`rewrite_fields`] redoes the rare head
/// that has some, so that the common one classifies each name once.
fn scan_and_write<'a>(
    buf: &'a [u8],
    headers: &[httparse::Header<'a>],
    rules: &Rules<'_>,
    connection: &mut ConnectionOptions<'a>,
    out: &mut Vec<u8>,
) -> Result<Framing, ResponseError> {
    let mut lines = Lines::new(buf, out);
    if rules.write {
        write_status_line(&mut lines, buf, rules);
    }
    let mut framing = Framing::default();
    let mut wrote_length = false;
    for header in headers {
        let name = Name::of(header.name.as_bytes());
        if name == Name::Other {
            // Most fields: nothing to check, always forwarded.
            if rules.write {
                lines.keep(header);
            }
            continue;
        }
        framing.add(name, header.value, rules, connection)?;
        if rules.write {
            rules.keep(&mut lines, header, name, framing.length, &mut wrote_length);
        }
    }
    lines.flush();
    Ok(framing)
}

/// The status line; copied as received when it already reads as weir's would.
fn write_status_line(lines: &mut Lines<'_, '_>, buf: &[u8], rules: &Rules<'_>) {
    let len = rules.status_line_len();
    let reason = rules.reason;
    // `reason` is checked for being non-empty first: an empty one may point anywhere.
    // A code under 100 never gets here (refused in `parse`); the check stays as a guard.
    let raw = !reason.is_empty()
        && rules.status >= 100
        && buf.starts_with(b"HTTP/1.1 ")
        && buf.get(12) == Some(&b' ')
        && offset_in(buf, reason) == 13
        && buf.get(len - 2..len) == Some(b"\r\n".as_slice());
    if raw {
        lines.keep_raw(0..len);
        return;
    }
    let out = lines.flush();
    out.extend_from_slice(b"HTTP/1.1 ");
    push_status(out, rules.status);
    out.push(b' ');
    out.extend_from_slice(reason);
    out.extend_from_slice(b"\r\n");
}

/// Writes the fields again, leaving out those named in `Connection`.
fn rewrite_fields(
    buf: &[u8],
    headers: &[httparse::Header<'_>],
    rules: &Rules<'_>,
    connection: &ConnectionOptions<'_>,
    length: Option<u64>,
    out: &mut Vec<u8>,
) {
    debug_assert!(out.len() >= rules.status_line_len());
    out.truncate(rules.status_line_len());
    let mut lines = Lines::new(buf, out);
    let mut wrote_length = false;
    for header in headers {
        if !connection.names(header.name.as_bytes()) {
            let name = Name::of(header.name.as_bytes());
            rules.keep(&mut lines, header, name, length, &mut wrote_length);
        }
    }
    lines.flush();
}

/// Adds weir's own `Connection` field, if any, and the empty line.
fn finish_head(info: &ResponseInfo, exchange: &Exchange, out: &mut Vec<u8>) {
    if info.status == 101 {
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

/// Framing fields seen so far.
#[derive(Default)]
struct Framing {
    length: Option<u64>,
    coding: TransferCoding,
}

impl Framing {
    /// Takes one field into account; `Connection` options go into `connection`.
    fn add<'a>(
        &mut self,
        name: Name,
        value: &'a [u8],
        rules: &Rules<'_>,
        connection: &mut ConnectionOptions<'a>,
    ) -> Result<(), ResponseError> {
        match name {
            Name::Connection if !connection.add(value) => {
                return Err(ResponseError("too many Connection options from upstream"));
            }
            Name::Connection => {}
            // A HEAD response's length is relayed, so it is read (and normalised) too.
            Name::ContentLength if !rules.strip_framing => {
                let n = fields::content_length(value)
                    .ok_or(ResponseError("invalid Content-Length from upstream"))?;
                if self.length.is_some_and(|previous| previous != n) {
                    return Err(ResponseError("conflicting Content-Length from upstream"));
                }
                self.length = Some(n);
            }
            Name::TransferEncoding if !rules.strip_framing => self.coding.add(value),
            _ => {}
        }
        Ok(())
    }

    /// How the body is delimited (RFC 9112 §6.3); bad framing is an error.
    fn body(&self, no_body: bool) -> Result<BodyKind, ResponseError> {
        // A HEAD response's framing fields are relayed (they describe the GET), so they
        // are checked as a GET response's would be; 1xx, 204 and 304 lose them instead.
        if no_body && !self.coding.present {
            return Ok(BodyKind::Empty);
        }
        if self.coding.present {
            if self.length.is_some() {
                return Err(ResponseError(
                    "both Content-Length and Transfer-Encoding from upstream",
                ));
            }
            if self.coding.malformed {
                return Err(ResponseError("malformed Transfer-Encoding from upstream"));
            }
            if !self.coding.is_valid_chunked() {
                return Err(ResponseError(
                    "Transfer-Encoding from upstream does not end in chunked",
                ));
            }
            return Ok(if no_body { BodyKind::Empty } else { BodyKind::Chunked });
        }
        Ok(match self.length {
            Some(0) => BodyKind::Empty,
            Some(n) => BodyKind::Length(n),
            None => BodyKind::UntilClose,
        })
    }
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
pub(crate) mod tests;
