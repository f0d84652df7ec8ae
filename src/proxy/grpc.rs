//! gRPC requests, told by their `Content-Type` (`application/grpc`, `+proto`, ...): when
//! weir itself fails one (no backend, connect failure, timeout), the answer is gRPC's
//! shape, HTTP 200 with `grpc-status` and `grpc-message` and no body (a trailers-only
//! response to an HTTP/2 client), not a text 502 that gRPC clients report as UNKNOWN.
//! `grpc-timeout` bounds the wait for the response head, as the RPC's deadline.
//!
//! Which requests are looked at: those of HTTP/2 clients (gRPC runs over HTTP/2 only),
//! and those to `protocol = "h2c"` pools. An HTTP/1 client of an HTTP/1 pool pays no
//! scan of its head.

use std::time::Duration;

/// What weir knows of a gRPC request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grpc {
    /// The deadline the client set (`grpc-timeout`).
    pub timeout: Option<Duration>,
}

/// The gRPC facts of a request head (HTTP/1.1 text), or `None` if it is no gRPC request.
pub fn of(head: &[u8]) -> Option<Grpc> {
    let mut grpc = false;
    let mut timeout = None;
    // Bounded by the head, itself bounded by `max_header_bytes`.
    for line in field_lines(head) {
        // Both names are 12 bytes, and the head passed weir's parser (or is its own
        // output), so names end at their colon: a line is one of them only with its
        // colon there, which rules out nearly every line without a scan of its value.
        let Some(value) = value_of(line, 12) else { continue };
        if line[..12].eq_ignore_ascii_case(b"content-type") {
            grpc = value.len() >= 16 && value[..16].eq_ignore_ascii_case(b"application/grpc");
        } else if line[..12].eq_ignore_ascii_case(b"grpc-timeout") {
            timeout = parse_timeout(value);
        }
    }
    grpc.then_some(Grpc { timeout })
}

/// The `grpc-status` of a response head (HTTP/1.1 text), if it has one of 0 to 99.
pub fn status_in(head: &[u8]) -> Option<u8> {
    // Bounded by the head, itself bounded by `max_header_bytes`.
    for line in field_lines(head) {
        let Some(value) = value_of(line, 11) else { continue };
        if line[..11].eq_ignore_ascii_case(b"grpc-status") {
            let valid = (1..=2).contains(&value.len()) && value.iter().all(u8::is_ascii_digit);
            return valid.then(|| value.iter().fold(0, |n, d| n * 10 + (d - b'0')));
        }
    }
    None
}

/// The lines of `head` after its start line, each without its LF. Found with `memchr`
/// (a vector search): splitting at each byte compared in turn cost 1,231 instructions a
/// gRPC call (callgrind, a 250-byte head), most of the gRPC check.
fn field_lines(head: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut ends = memchr::memchr_iter(b'\n', head);
    let mut start = Some(0);
    // As `split`: each LF ends a line, and what follows the last one is a line too.
    std::iter::from_fn(move || {
        let from = start?;
        let Some(end) = ends.next() else {
            start = None;
            return Some(&head[from..]);
        };
        start = Some(end + 1);
        Some(&head[from..end])
    })
    .skip(1)
}

/// The trimmed value of field line `line` if its name is `name_len` bytes long (its
/// colon right after them). For a name without a colon in it, this is the same test as
/// splitting the line at its first colon: white space before the colon (which RFC 9112
/// §5.1 forbids, and weir's parser refuses) makes a longer name either way.
fn value_of(line: &[u8], name_len: usize) -> Option<&[u8]> {
    (line.get(name_len) == Some(&b':')).then(|| trim(&line[name_len + 1..]))
}

fn trim(value: &[u8]) -> &[u8] {
    let start = value.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(value.len());
    let end = value.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(start, |i| i + 1);
    &value[start..end.max(start)]
}

/// `grpc-timeout` (gRPC over HTTP/2, "Timeout"): at most 8 digits and a unit, `H`, `M`,
/// `S`, `m`, `u` or `n`.
fn parse_timeout(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The gRPC status for an HTTP status weir answers with itself, after gRPC's HTTP to
/// gRPC status mapping, except that a timeout is the deadline passing.
pub fn status_of(http: u16) -> u8 {
    match http {
        // DEADLINE_EXCEEDED: weir's response timeout or the client's deadline passed.
        504 | 408 => 4,
        // UNAVAILABLE: no backend, a connect failure, a backend gone; clients retry it.
        502 | 503 | 429 => 14,
        // PERMISSION_DENIED: an access list refused the client.
        403 => 7,
        // UNIMPLEMENTED: weir has no such route or method.
        404 | 405 | 501 => 12,
        // INTERNAL: the request was malformed on the way.
        400 | 431 => 13,
        _ => 2,
    }
}

/// Writes the gRPC-shaped answer for `http` and `cause` to `out` (cleared first): 200,
/// `grpc-status`, and `grpc-message` percent-encoded as gRPC requires.
pub fn render(out: &mut Vec<u8>, http: u16, cause: &str, close: bool) {
    use std::io::Write as _;
    out.clear();
    let connection = if close { "Connection: close\r\n" } else { "" };
    let _ = write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: application/grpc\r\ngrpc-status: {}\r\ngrpc-message: ",
        status_of(http)
    );
    for &b in cause.as_bytes() {
        if (b' '..=b'~').contains(&b) && b != b'%' {
            out.push(b);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    let _ = write!(out, "\r\nContent-Length: 0\r\n{connection}\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grpc_request_is_told_by_its_content_type_and_its_timeout_read() {
        let head =
            b"POST /pkg.Svc/Call HTTP/1.1\r\nHost: a\r\nContent-Type: application/grpc+proto\r\n\
                     grpc-timeout: 250m\r\nTE: trailers\r\n\r\n";
        assert_eq!(of(head), Some(Grpc { timeout: Some(Duration::from_millis(250)) }));
        let plain = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n\r\n";
        assert_eq!(of(plain), None);
        let head = b"POST / HTTP/1.1\r\ncontent-type: application/grpc\r\ngrpc-timeout: 1x\r\n\r\n";
        assert_eq!(of(head), Some(Grpc { timeout: None }));
        assert_eq!(parse_timeout(b"2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_timeout(b"123456789S"), None, "more than 8 digits");
        assert_eq!(parse_timeout(b"S"), None);
        let head = b"HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\nGrpc-Status: 14\r\n\r\n";
        assert_eq!(status_in(head), Some(14));
        assert_eq!(status_in(b"HTTP/1.1 200 OK\r\ngrpc-status: 1x\r\n\r\n"), None);
        assert_eq!(status_in(b"HTTP/1.1 200 OK\r\ngrpc-status: 140\r\n\r\n"), None);
        assert_eq!(status_in(b"HTTP/1.1 200 OK\r\n\r\n"), None);
        // Only a field's name counts: not a longer name, nor the name inside a value.
        let lookalikes = b"POST / HTTP/1.1\r\ncontent-types: application/grpc\r\n\
                           x-a: content-type: application/grpc\r\ncontent-type:\r\n\r\n";
        assert_eq!(of(lookalikes), None);
        let head = b"HTTP/1.1 200 OK\r\nx-grpc-status: 3\r\ngrpc-statuses: 4\r\n\r\n";
        assert_eq!(status_in(head), None);
    }

    #[test]
    fn field_lines_are_the_lines_split_at_each_lf_after_the_first() {
        for head in [&b"GET / HTTP/1.1\r\na: 1\r\nb: 2\r\n\r\n"[..], b"S\nx: 1", b"S", b"", b"\n\n"]
        {
            let split: Vec<&[u8]> = head.split(|&b| b == b'\n').skip(1).collect();
            assert_eq!(field_lines(head).collect::<Vec<_>>(), split, "{head:?}");
        }
    }

    #[test]
    fn weirs_own_failures_map_to_grpc_statuses() {
        assert_eq!(status_of(502), 14);
        assert_eq!(status_of(503), 14);
        assert_eq!(status_of(504), 4);
        let mut out = Vec::new();
        render(&mut out, 502, "upstream refused: 100% down", false);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("grpc-status: 14\r\n"), "{text}");
        assert!(text.contains("grpc-message: upstream refused: 100%25 down\r\n"), "{text}");
        assert!(text.ends_with("Content-Length: 0\r\n\r\n"), "{text}");
    }
}
