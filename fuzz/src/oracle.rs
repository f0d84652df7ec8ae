//! A strict, independent HTTP/1.1 parser: the oracle the request and response targets
//! hold weir's forwarded bytes against.
//!
//! Written from the RFC 9112 grammar alone, without httparse or weir's `http1` code, so a
//! mistake the two share cannot hide. It is stricter than any peer weir talks to: if the
//! bytes weir forwards parse here to one message with the framing weir decided, then every
//! reasonable backend or client reads the same message boundaries too.
//!
//! Strict means:
//! - lines end in CRLF; a bare CR or LF anywhere in a head or chunk line is an error;
//! - the start line has single spaces and `HTTP/1.1` (weir always speaks 1.1 onwards);
//! - field names are tokens right before the colon; values hold no controls; no obs-fold;
//! - framing is the normalised form issue #9 asks for: at most one `Content-Length` field
//!   with one plain decimal value, or one `Transfer-Encoding: chunked` alone, never both;
//! - chunk sizes are hex digits, chunk extensions follow `;name[=value]` exactly;
//! - no `Content-Length` or `Transfer-Encoding` on 1xx and 204 (RFC 9110 §8.6, RFC 9112
//!   §6.1).
//!
//! Request targets may hold obs-text (bytes 0x80–0xFF) as well as visible ASCII: real
//! servers accept it and it has no framing meaning.

/// Most hex digits in a chunk size: 16 fill a u64.
const MAX_CHUNK_SIZE_DIGITS: usize = 16;

/// Most decimal digits in a Content-Length: 19 always fit a u64.
const MAX_LENGTH_DIGITS: usize = 19;

/// Why bytes were refused; `at` is the offset where the problem was seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// What is wrong.
    pub what: &'static str,
    /// Byte offset in the input.
    pub at: usize,
}

type Result<T> = std::result::Result<T, Error>;

fn fail<T>(what: &'static str, at: usize) -> Result<T> {
    Err(Error { what, at })
}

/// The start line of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Start {
    /// `method SP target SP HTTP/1.1`.
    Request {
        /// The method token.
        method: Vec<u8>,
        /// The request target, as written.
        target: Vec<u8>,
    },
    /// `HTTP/1.1 SP status SP reason`.
    Response {
        /// The three-digit status code.
        status: u16,
    },
}

/// A parsed head: start line and field lines (names as written, values trimmed of OWS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// The start line.
    pub start: Start,
    /// The field lines in order.
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
    /// Bytes of the head, including the empty line.
    pub len: usize,
}

impl Head {
    /// Values of every field named `name` (ASCII case-insensitive), in order.
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        let name = name.as_bytes();
        self.fields.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| &v[..])
    }

    /// How many fields are named `name`.
    pub fn count(&self, name: &str) -> usize {
        self.values(name).count()
    }
}

/// How a message body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body: a request without framing fields, or a response that cannot have one
    /// (to HEAD, 1xx, 204, 304) whatever its fields say.
    None,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// A response without framing fields: the body runs until the connection closes.
    UntilClose,
}

/// One whole message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The head.
    pub head: Head,
    /// How its body is delimited.
    pub framing: Framing,
    /// Bytes of payload (chunk data only, for a chunked body).
    pub body_len: u64,
    /// Bytes of the whole message, head and body.
    pub len: usize,
}

/// Parses a request head at the start of `wire`.
pub fn request_head(wire: &[u8]) -> Result<Head> {
    let (line, mut at) = line(wire, 0)?;
    let start = request_line(line)?;
    let fields = field_lines(wire, &mut at)?;
    Ok(Head { start, fields, len: at })
}

/// Parses a response head at the start of `wire`.
pub fn response_head(wire: &[u8]) -> Result<Head> {
    let (line, mut at) = line(wire, 0)?;
    let start = status_line(line)?;
    let fields = field_lines(wire, &mut at)?;
    Ok(Head { start, fields, len: at })
}

/// A request's framing (RFC 9112 §6.3, strictly).
pub fn request_framing(head: &Head) -> Result<Framing> {
    Ok(framing_fields(head, false)?.unwrap_or(Framing::None))
}

/// A response's framing; `head_request` when it answers a HEAD.
pub fn response_framing(head: &Head, head_request: bool) -> Result<Framing> {
    let Start::Response { status } = head.start else {
        return fail("not a response", 0);
    };
    let fields = framing_fields(head, true)?;
    if ((100..200).contains(&status) || status == 204) && fields.is_some() {
        return fail("framing field on a 1xx or 204", 0);
    }
    if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(Framing::None);
    }
    Ok(fields.unwrap_or(Framing::UntilClose))
}

/// Exactly one request at the start of `wire`, body included.
pub fn request(wire: &[u8]) -> Result<Message> {
    let head = request_head(wire)?;
    let framing = request_framing(&head)?;
    message(wire, head, framing)
}

/// Exactly one response at the start of `wire`, body included.
pub fn response(wire: &[u8], head_request: bool) -> Result<Message> {
    let head = response_head(wire)?;
    let framing = response_framing(&head, head_request)?;
    message(wire, head, framing)
}

fn message(wire: &[u8], head: Head, framing: Framing) -> Result<Message> {
    let (body_len, body_bytes) = body(&wire[head.len..], framing)
        .map_err(|e| Error { what: e.what, at: e.at + head.len })?;
    let len = head.len + body_bytes;
    Ok(Message { head, framing, body_len, len })
}

/// Reads a body with `framing` from `bytes`; returns (payload bytes, bytes taken).
pub fn body(bytes: &[u8], framing: Framing) -> Result<(u64, usize)> {
    match framing {
        Framing::None => Ok((0, 0)),
        Framing::Length(n) => match usize::try_from(n) {
            Ok(n) if n <= bytes.len() => Ok((n as u64, n)),
            _ => fail("body shorter than Content-Length", bytes.len()),
        },
        Framing::Chunked => chunked(bytes),
        Framing::UntilClose => Ok((bytes.len() as u64, bytes.len())),
    }
}

/// Decodes one chunked body; returns (payload bytes, bytes taken, trailers included).
pub fn chunked(bytes: &[u8]) -> Result<(u64, usize)> {
    let mut at = 0;
    let mut payload = 0u64;
    loop {
        let (line, next) = line(bytes, at)?;
        let size = chunk_size_line(line).map_err(|e| Error { what: e.what, at: at + e.at })?;
        at = next;
        if size == 0 {
            field_lines(bytes, &mut at)?;
            return Ok((payload, at));
        }
        let end = usize::try_from(size)
            .ok()
            .and_then(|size| at.checked_add(size))
            .filter(|&end| end <= bytes.len())
            .ok_or(Error { what: "chunk data cut short", at })?;
        if bytes.get(end..end + 2) != Some(b"\r\n") {
            return fail("chunk data not followed by CRLF", end);
        }
        payload += size;
        at = end + 2;
    }
}

/// `1*HEXDIG *( ";" name [ "=" value ] )`, white space allowed around `;` and `=`.
fn chunk_size_line(line: &[u8]) -> Result<u64> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > MAX_CHUNK_SIZE_DIGITS {
        return fail("bad chunk size", 0);
    }
    let size = line[..digits]
        .iter()
        .fold(0u64, |size, &b| size << 4 | u64::from(char::from(b).to_digit(16).unwrap_or(0)));
    let mut rest = &line[digits..];
    // Bounded: every pass consumes at least the `;` and a name.
    while !rest.is_empty() {
        rest = skip_ws(rest);
        let Some(after) = rest.strip_prefix(b";") else {
            return fail("bad chunk extension", line.len() - rest.len());
        };
        let (name, after) = token(skip_ws(after));
        if name.is_empty() {
            return fail("empty chunk extension name", line.len() - after.len());
        }
        rest = skip_ws(after);
        if let Some(after) = rest.strip_prefix(b"=") {
            rest = ext_value(skip_ws(after))
                .ok_or(Error { what: "bad chunk extension value", at: line.len() - after.len() })?;
        }
    }
    Ok(size)
}

/// Skips a token or quoted-string; returns what follows it.
fn ext_value(bytes: &[u8]) -> Option<&[u8]> {
    let (value, rest) = token(bytes);
    if !value.is_empty() {
        return Some(rest);
    }
    let mut rest = bytes.strip_prefix(b"\"")?;
    // Bounded by the line: each pass consumes one or two bytes.
    loop {
        match rest {
            [b'"', after @ ..] => return Some(after),
            [b'\\', c, after @ ..] if is_quoted_byte(*c) || *c == b'"' || *c == b'\\' => {
                rest = after
            }
            [c, after @ ..] if is_quoted_byte(*c) && *c != b'\\' => rest = after,
            _ => return None,
        }
    }
}

/// qdtext and quoted-pair bytes: HTAB, SP, VCHAR, obs-text.
fn is_quoted_byte(b: u8) -> bool {
    b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80
}

fn skip_ws(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    bytes
}

/// The longest token at the start of `bytes`, and what follows it.
fn token(bytes: &[u8]) -> (&[u8], &[u8]) {
    let n = bytes.iter().take_while(|&&b| is_tchar(b)).count();
    bytes.split_at(n)
}

/// RFC 9110 §5.6.2 tchar.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The line starting at `at`, without its CRLF, and where the next line starts.
fn line(bytes: &[u8], at: usize) -> Result<(&[u8], usize)> {
    let rest = &bytes[at.min(bytes.len())..];
    let Some(end) = rest.iter().position(|&b| b == b'\r' || b == b'\n') else {
        return fail("line without CRLF", bytes.len());
    };
    if rest[end] == b'\n' || rest.get(end + 1) != Some(&b'\n') {
        return fail("bare CR or LF", at + end);
    }
    Ok((&rest[..end], at + end + 2))
}

fn request_line(line: &[u8]) -> Result<Start> {
    let mut parts = line.splitn(3, |&b| b == b' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v)) => (m, t, v),
        _ => return fail("request line is not three parts", 0),
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return fail("bad method", 0);
    }
    if target.is_empty() || !target.iter().all(|&b| (0x21..=0x7e).contains(&b) || b >= 0x80) {
        return fail("bad request target", method.len() + 1);
    }
    if version != b"HTTP/1.1" {
        return fail("version is not HTTP/1.1", method.len() + target.len() + 2);
    }
    Ok(Start::Request { method: method.to_vec(), target: target.to_vec() })
}

fn status_line(line: &[u8]) -> Result<Start> {
    let Some(rest) = line.strip_prefix(b"HTTP/1.1 ") else {
        return fail("status line does not start with HTTP/1.1", 0);
    };
    let code = match rest {
        [a, b, c, b' ', ..] if [a, b, c].iter().all(|d| d.is_ascii_digit()) => {
            [a, b, c].iter().fold(0u16, |n, &&d| n * 10 + u16::from(d - b'0'))
        }
        _ => return fail("bad status code", 9),
    };
    if code < 100 {
        return fail("status code under 100", 9);
    }
    if !rest[3..].iter().all(|&b| is_quoted_byte(b)) {
        return fail("bad reason phrase", 12);
    }
    Ok(Start::Response { status: code })
}

/// Field lines from `at` through the empty line; `at` ends after it.
fn field_lines(bytes: &[u8], at: &mut usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut fields = Vec::new();
    // Bounded by the input: each pass consumes one line.
    loop {
        let (line, next) = line(bytes, *at)?;
        if line.is_empty() {
            *at = next;
            return Ok(fields);
        }
        fields.push(field_line(line).map_err(|e| Error { what: e.what, at: *at + e.at })?);
        *at = next;
    }
}

/// `name ":" OWS value OWS`; no space before the colon, no obs-fold, no controls.
fn field_line(line: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    let (name, rest) = token(line);
    if name.is_empty() {
        // A line starting with SP or HTAB is obs-fold; anything else is not a name.
        return fail("field line does not start with a name", 0);
    }
    let Some(value) = rest.strip_prefix(b":") else {
        return fail("field name not followed by a colon", name.len());
    };
    if !value.iter().all(|&b| is_quoted_byte(b)) {
        return fail("control byte in a field value", name.len() + 1);
    }
    Ok((name.to_vec(), trim(value).to_vec()))
}

/// Trims SP and HTAB from both ends.
pub fn trim(mut bytes: &[u8]) -> &[u8] {
    bytes = skip_ws(bytes);
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// The framing the fields name, if any: the normalised form only. A request's only
/// coding is one `chunked`; a response (`codings`) may name other transfer codings
/// before one final `chunked` (RFC 9112 §6.1), which the client decodes.
fn framing_fields(head: &Head, codings_allowed: bool) -> Result<Option<Framing>> {
    let lengths: Vec<&[u8]> = head.values("content-length").collect();
    let codings: Vec<&[u8]> = head.values("transfer-encoding").collect();
    match (lengths.as_slice(), codings.as_slice()) {
        ([], []) => Ok(None),
        ([], [coding]) if coding.eq_ignore_ascii_case(b"chunked") => Ok(Some(Framing::Chunked)),
        ([], _) if codings_allowed && ends_in_one_chunked(&codings) => Ok(Some(Framing::Chunked)),
        ([], _) => fail("Transfer-Encoding other than one `chunked`", 0),
        ([length], []) => decimal(length).map(|n| Some(Framing::Length(n))),
        ([_], _) => fail("both Content-Length and Transfer-Encoding", 0),
        _ => fail("more than one Content-Length field", 0),
    }
}

/// Every coding of every field is a token, the last is `chunked`, and no other is.
fn ends_in_one_chunked(fields: &[&[u8]]) -> bool {
    let codings: Vec<&[u8]> =
        fields.iter().flat_map(|field| field.split(|&b| b == b',')).map(trim).collect();
    let chunked = |c: &[u8]| c.eq_ignore_ascii_case(b"chunked");
    codings.iter().all(|c| !c.is_empty() && c.iter().all(|&b| is_tchar(b)))
        && codings.last().is_some_and(|c| chunked(c))
        && codings.iter().filter(|c| chunked(c)).count() == 1
}

/// `1*DIGIT` that fits a u64.
fn decimal(value: &[u8]) -> Result<u64> {
    if value.is_empty() || value.len() > MAX_LENGTH_DIGITS || !value.iter().all(u8::is_ascii_digit)
    {
        return fail("Content-Length is not one plain number", 0);
    }
    Ok(value.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

#[cfg(test)]
#[path = "oracle_tests.rs"]
mod tests;
