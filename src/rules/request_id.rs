//! Request ids: generated when a request has none weir may keep, checked when it has
//! one from a trusted proxy.

use std::fmt::Write as _;

use crate::config::rules::MAX_REQUEST_ID_BYTES;

/// Whether an incoming id may be kept: 1 to [`MAX_REQUEST_ID_BYTES`] bytes of letters,
/// digits and `-_.:+/=@` (what UUIDs, W3C trace ids, AWS and base64 ids use). Anything
/// else (white space, quotes, control bytes, a log-line forgery) is replaced.
pub fn valid(id: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID_BYTES).contains(&id.len())
        && id.iter().all(|&b| b.is_ascii_alphanumeric() || b"-_.:+/=@".contains(&b))
}

/// A new id: 128 random bits as 32 lowercase hex digits, the shape of nginx's
/// `$request_id`. Unique in practice, not secret: it comes from the per-thread
/// generator of the random strategies.
pub fn generate() -> String {
    let mut id = String::with_capacity(32);
    for _ in 0..2 {
        let _ = write!(id, "{:016x}", crate::rng::next_u64());
    }
    id
}

/// The value of the one field `name` in a raw request head; `None` when there is none
/// or more than one (two ids for one request: neither is believed).
pub fn incoming<'h>(head: &'h [u8], name: &str) -> Option<&'h [u8]> {
    let mut found = None;
    // Bounded by the lines of a head that already passed the size limit.
    for line in head.split(|&b| b == b'\n').skip(1) {
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        if !line[..colon].eq_ignore_ascii_case(name.as_bytes()) {
            continue;
        }
        if found.is_some() {
            return None;
        }
        let value = &line[colon + 1..];
        found = Some(crate::http1::fields::trim(value.strip_suffix(b"\r").unwrap_or(value)));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_bounded_and_plain() {
        assert!(valid(b"3f2a-9c:1/+="));
        assert!(valid(&[b'a'; MAX_REQUEST_ID_BYTES]));
        assert!(!valid(&[b'a'; MAX_REQUEST_ID_BYTES + 1]));
        assert!(!valid(b""));
        for bad in [&b"a b"[..], b"a\"b", b"a\rb", b"a\nb", b"a\0b", b"caf\xc3\xa9"] {
            assert!(!valid(bad), "{}", bad.escape_ascii());
        }
        let (one, two) = (generate(), generate());
        assert_eq!(one.len(), 32);
        assert!(valid(one.as_bytes()) && one != two);
    }

    #[test]
    fn one_incoming_field_is_read_and_two_are_none() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\nx-request-id:  abc \r\n\r\n";
        assert_eq!(incoming(head, "X-Request-Id"), Some(&b"abc"[..]));
        let two = b"GET / HTTP/1.1\r\nX-Request-Id: a\r\nX-Request-Id: b\r\n\r\n";
        assert_eq!(incoming(two, "X-Request-Id"), None);
        assert_eq!(incoming(b"GET / HTTP/1.1\r\n\r\n", "X-Request-Id"), None);
    }
}
