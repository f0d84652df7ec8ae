//! Header-name classes and value parsers shared by requests and responses.

/// Most tokens weir tracks in `Connection` headers. A legitimate message names a few
/// (`close`, `upgrade`, `keep-alive`, a custom hop-by-hop field); more is refused.
pub const MAX_CONNECTION_TOKENS: usize = 16;

/// Hop-by-hop fields that a proxy removes (RFC 9110 §7.6.1). `Transfer-Encoding` and
/// `Upgrade` are handled by the framing and upgrade logic, not here.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"connection")
        || name.eq_ignore_ascii_case(b"keep-alive")
        || name.eq_ignore_ascii_case(b"proxy-connection")
        || name.eq_ignore_ascii_case(b"te")
}

/// The tokens of a `Connection` value, lowercased comparisons left to the caller.
pub fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim).filter(|t| !t.is_empty())
}

/// Trims optional white space (SP and HTAB).
pub fn trim(mut value: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = value {
        value = rest;
    }
    value
}

/// Connection options named by a message, bounded by [`MAX_CONNECTION_TOKENS`].
#[derive(Default)]
pub struct ConnectionOptions<'a> {
    names: [&'a [u8]; MAX_CONNECTION_TOKENS],
    count: usize,
    /// `close` was named.
    pub close: bool,
    /// `keep-alive` was named.
    pub keep_alive: bool,
    /// `upgrade` was named.
    pub upgrade: bool,
}

impl<'a> ConnectionOptions<'a> {
    /// Adds the tokens of one `Connection` value; false when there are too many.
    pub fn add(&mut self, value: &'a [u8]) -> bool {
        for token in tokens(value) {
            if token.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if token.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else if token.eq_ignore_ascii_case(b"upgrade") {
                self.upgrade = true;
            } else {
                if self.count == MAX_CONNECTION_TOKENS {
                    return false;
                }
                self.names[self.count] = token;
                self.count += 1;
            }
        }
        true
    }

    /// Whether `name` is listed as a connection option, so it must not be forwarded.
    pub fn names(&self, name: &[u8]) -> bool {
        self.names[..self.count].iter().any(|n| n.eq_ignore_ascii_case(name))
    }
}

/// Parses a `Content-Length` value: digits, or a list of identical digit strings.
/// Returns `None` for anything else, including overflow.
pub fn content_length(value: &[u8]) -> Option<u64> {
    let mut result: Option<u64> = None;
    for part in value.split(|&b| b == b',') {
        let part = trim(part);
        if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = part.iter().fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0'));
        match result {
            Some(previous) if previous != n => return None,
            _ => result = Some(n),
        }
    }
    result
}

/// Outcome of reading every `Transfer-Encoding` field of a message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransferCoding {
    /// At least one `Transfer-Encoding` field was present.
    pub present: bool,
    /// The final coding is `chunked`.
    pub chunked_last: bool,
    /// `chunked` appears somewhere other than last, or twice: always an error.
    pub misplaced_chunked: bool,
}

impl TransferCoding {
    /// Adds one `Transfer-Encoding` field value.
    pub fn add(&mut self, value: &[u8]) {
        self.present = true;
        for coding in value.split(|&b| b == b',').map(trim) {
            if self.chunked_last {
                // Something follows `chunked`: chunked is not last, and may not repeat.
                self.misplaced_chunked = true;
            }
            self.chunked_last = coding.eq_ignore_ascii_case(b"chunked");
        }
    }

    /// The codings end in exactly one `chunked`.
    pub fn is_valid_chunked(&self) -> bool {
        self.present && self.chunked_last && !self.misplaced_chunked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_accepts_identical_lists_only() {
        assert_eq!(content_length(b"42"), Some(42));
        assert_eq!(content_length(b" 5 , 5"), Some(5));
        assert_eq!(content_length(b"5, 6"), None);
        assert_eq!(content_length(b"-1"), None);
        assert_eq!(content_length(b"+1"), None);
        assert_eq!(content_length(b""), None);
        assert_eq!(content_length(b"99999999999999999999"), None);
    }

    #[test]
    fn transfer_coding_requires_single_final_chunked() {
        let mut te = TransferCoding::default();
        te.add(b"gzip, chunked");
        assert!(te.is_valid_chunked());
        let mut te = TransferCoding::default();
        te.add(b"chunked");
        te.add(b"chunked");
        assert!(!te.is_valid_chunked());
        let mut te = TransferCoding::default();
        te.add(b"chunked, gzip");
        assert!(!te.is_valid_chunked());
        let mut te = TransferCoding::default();
        te.add(b"identity");
        assert!(!te.is_valid_chunked());
    }

    #[test]
    fn connection_options_are_bounded() {
        let mut options = ConnectionOptions::default();
        assert!(options.add(b"close, X-Foo , upgrade"));
        assert!(options.close && options.upgrade);
        assert!(options.names(b"x-foo"));
        let many = "a,".repeat(MAX_CONNECTION_TOKENS + 1);
        let mut options = ConnectionOptions::default();
        assert!(!options.add(many.as_bytes()));
    }
}
