//! Header-name classes and value parsers shared by requests and responses.

/// Most tokens weir tracks in `Connection` headers. A legitimate message names a few
/// (`close`, `upgrade`, `keep-alive`, a custom hop-by-hop field); more is refused.
pub const MAX_CONNECTION_TOKENS: usize = 16;

/// Header names the proxy acts on. [`Name::of`] recognises one with a dispatch on the
/// length and at most two case-insensitive comparisons, instead of comparing every field
/// against every known name (about a third of the head-rewrite instructions before).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Name {
    /// `Content-Length`.
    ContentLength,
    /// `Transfer-Encoding`.
    TransferEncoding,
    /// `Connection`.
    Connection,
    /// `Keep-Alive`.
    KeepAlive,
    /// `Proxy-Connection`.
    ProxyConnection,
    /// `TE`.
    Te,
    /// `Upgrade`.
    Upgrade,
    /// `Host`.
    Host,
    /// `Expect`.
    Expect,
    /// `X-Forwarded-For`.
    XForwardedFor,
    /// `X-Forwarded-Proto`.
    XForwardedProto,
    /// `X-Forwarded-Host`.
    XForwardedHost,
    /// Any other field.
    Other,
}

impl Name {
    /// Classifies a field name, ignoring ASCII case. Always inlined: the call cost about
    /// as much as the classification in the per-field loops (issue #3).
    #[inline(always)]
    pub fn of(name: &[u8]) -> Name {
        let is = |known: &[u8]| eq_lowercase(name, known);
        match name.len() {
            2 if is(b"te") => Name::Te,
            4 if is(b"host") => Name::Host,
            6 if is(b"expect") => Name::Expect,
            7 if is(b"upgrade") => Name::Upgrade,
            10 if is(b"connection") => Name::Connection,
            10 if is(b"keep-alive") => Name::KeepAlive,
            14 if is(b"content-length") => Name::ContentLength,
            15 if is(b"x-forwarded-for") => Name::XForwardedFor,
            16 if is(b"proxy-connection") => Name::ProxyConnection,
            16 if is(b"x-forwarded-host") => Name::XForwardedHost,
            17 if is(b"transfer-encoding") => Name::TransferEncoding,
            17 if is(b"x-forwarded-proto") => Name::XForwardedProto,
            _ => Name::Other,
        }
    }

    /// Hop-by-hop fields that a proxy removes (RFC 9110 §7.6.1). `Transfer-Encoding` and
    /// `Upgrade` are handled by the framing and upgrade logic, not here.
    pub fn is_hop_by_hop(self) -> bool {
        matches!(self, Name::Connection | Name::KeepAlive | Name::ProxyConnection | Name::Te)
    }
}

/// Length of the longest name [`Name::of`] recognises (`Transfer-Encoding`,
/// `X-Forwarded-Proto`): the stack buffer [`is_underscore_spelling`] maps into.
const MAX_KNOWN_NAME_LEN: usize = 17;

/// Whether `name`, a field [`Name::of`] classed `Other`, spells a known name with `_` for
/// `-` (`Transfer_Encoding`, `X_Forwarded_For`). CGI and WSGI servers (old gunicorn
/// among them) map `_` to `-`, so they would read framing or forwarding weir did not.
/// Only names with a `-` have such a spelling (10: `Keep-Alive`; 14 to 17), so any
/// other length costs one comparison, and the rest never allocates.
#[inline]
pub fn is_underscore_spelling(name: &[u8]) -> bool {
    matches!(name.len(), 10 | 14..=MAX_KNOWN_NAME_LEN) && name.contains(&b'_') && {
        let mut dashed = [0u8; MAX_KNOWN_NAME_LEN];
        let dashed = &mut dashed[..name.len()];
        for (to, &from) in dashed.iter_mut().zip(name) {
            *to = if from == b'_' { b'-' } else { from };
        }
        Name::of(dashed) != Name::Other
    }
}

/// Whether a field name (or a token of a field value) equals `known`, a lowercase name of
/// letters and `-` of the same length, ignoring ASCII case; eight bytes at a time. Setting
/// bit 5 turns an uppercase letter into its lowercase and leaves lowercase letters and `-`
/// alone; the only other byte it turns into a letter or `-` is CR (into `-`), which
/// httparse never lets into a field name or value.
#[inline]
fn eq_lowercase(name: &[u8], known: &[u8]) -> bool {
    debug_assert!(known.iter().all(|&b| b.is_ascii_lowercase() || b == b'-'));
    if name.len() != known.len() {
        return false;
    }
    const LOWER: u64 = 0x2020_2020_2020_2020;
    // Whole-word loads of windows that cover the name, the last one overlapping the one
    // before instead of a partial load: with `known` a constant, a 10-byte name is two
    // loads and two compares (issue #3).
    let same = |load: fn(&[u8], usize) -> u64, at: usize| {
        load(name, at) | LOWER == load(known, at) | LOWER
    };
    let n = name.len();
    match n {
        0 => true,
        1 => name[0] | 0x20 == known[0] | 0x20,
        2..=3 => same(word::<2>, 0) && same(word::<2>, n - 2),
        4..=7 => same(word::<4>, 0) && same(word::<4>, n - 4),
        _ => {
            let mut at = 0;
            // Bounded by the name's length, eight bytes a step.
            while at + 8 < n {
                if !same(word::<8>, at) {
                    return false;
                }
                at += 8;
            }
            same(word::<8>, n - 8)
        }
    }
}

/// The `N` bytes at `at` as a little-endian word (0 past the end, which callers avoid).
#[inline]
fn word<const N: usize>(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    if let Some(chunk) = bytes.get(at..).and_then(<[u8]>::first_chunk::<N>) {
        word[..N].copy_from_slice(chunk);
    }
    u64::from_le_bytes(word)
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
    /// Filled on the first name other than `close`, `keep-alive` and `upgrade`: nearly
    /// no message has one, and starting with `None` spares every message the writes of
    /// a whole array (issue #3).
    names: Option<[&'a [u8]; MAX_CONNECTION_TOKENS]>,
    count: usize,
    /// `close` was named.
    pub close: bool,
    /// `keep-alive` was named.
    pub keep_alive: bool,
    /// `upgrade` was named.
    pub upgrade: bool,
}

impl<'a> ConnectionOptions<'a> {
    /// Adds the tokens of one `Connection` value (as httparse returns it: no CR); false
    /// when there are too many.
    #[inline]
    pub fn add(&mut self, value: &'a [u8]) -> bool {
        debug_assert!(!value.contains(&b'\r'));
        // Nearly every value is one bare token; that skips the tokenizer (issue #3).
        self.add_known(value) || self.add_tokens(value)
    }

    /// [`ConnectionOptions::add`] for a value that is not one bare known token.
    #[inline(never)]
    fn add_tokens(&mut self, value: &'a [u8]) -> bool {
        for token in tokens(value) {
            // A field weir interprets or writes itself (framing, Host, TE, Upgrade, Expect,
            // X-Forwarded-*, the hop-by-hop ones) is never removed on a message's say-so:
            // such a token is ignored, as nginx and HAProxy keep these fields. Honouring
            // `Connection: Content-Length` would forward a body without its framing
            // (request smuggling, issue #9). Hop-by-hop fields are removed anyway.
            if self.add_known(token) || Name::of(token) != Name::Other {
                continue;
            }
            if self.count == MAX_CONNECTION_TOKENS {
                return false;
            }
            let names = self.names.get_or_insert([&[]; MAX_CONNECTION_TOKENS]);
            names[self.count] = token;
            self.count += 1;
        }
        true
    }

    /// Notes `token` if it is `close`, `keep-alive` or `upgrade`, in any case.
    #[inline]
    fn add_known(&mut self, token: &[u8]) -> bool {
        let flag = match token.len() {
            5 if eq_lowercase(token, b"close") => &mut self.close,
            7 if eq_lowercase(token, b"upgrade") => &mut self.upgrade,
            10 if eq_lowercase(token, b"keep-alive") => &mut self.keep_alive,
            _ => return false,
        };
        *flag = true;
        true
    }

    /// Whether `name` is listed as a connection option, so it must not be forwarded. Never
    /// true for a name [`Name::of`] recognises: those tokens are ignored.
    pub fn names(&self, name: &[u8]) -> bool {
        let names = self.names.as_ref().map_or(&[][..], |names| &names[..self.count]);
        names.iter().any(|n| n.eq_ignore_ascii_case(name))
    }

    /// Whether any option other than `close`, `keep-alive` and `upgrade` was named: only
    /// then can [`ConnectionOptions::names`] be true.
    pub fn has_names(&self) -> bool {
        self.count > 0
    }
}

/// Parses a `Content-Length` value: digits, or a list of identical digit strings.
/// Returns `None` for anything else, including overflow.
pub fn content_length(value: &[u8]) -> Option<u64> {
    // Nearly every value is one plain number: one pass, no tokenizer (issue #3).
    // 19 digits always fit a u64.
    if !value.is_empty() && value.len() <= 19 {
        let mut n = 0u64;
        for &byte in value {
            let digit = byte.wrapping_sub(b'0');
            if digit > 9 {
                return content_length_list(value);
            }
            n = n * 10 + u64::from(digit);
        }
        return Some(n);
    }
    content_length_list(value)
}

/// [`content_length`] for anything but one plain number of at most 19 digits.
#[inline(never)]
fn content_length_list(value: &[u8]) -> Option<u64> {
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

/// Decimal digits of the largest u64: the buffer [`decimal`] writes into.
pub const MAX_DECIMAL_DIGITS: usize = 20;

/// `n` in decimal, written at the end of `digits`: the plain form of a `Content-Length`.
pub fn decimal(mut n: u64, digits: &mut [u8; MAX_DECIMAL_DIGITS]) -> &[u8] {
    let mut at = MAX_DECIMAL_DIGITS;
    // Bounded: a u64 has at most 20 decimal digits.
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &digits[at..];
        }
    }
}

/// A `tchar` (RFC 9110 §5.6.2): the bytes of a token such as a transfer coding.
pub fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
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
    /// A coding other than `chunked` was named (`gzip`, `identity`, an empty one).
    pub other: bool,
    /// A coding is not a plain token (empty, parameters, `@gzip`): weir cannot tell
    /// what a peer would make of it, so the message is refused.
    pub malformed: bool,
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
            self.other |= !self.chunked_last;
            self.malformed |= coding.is_empty() || !coding.iter().all(|&b| is_tchar(b));
        }
    }

    /// The codings are tokens and end in exactly one `chunked`.
    pub fn is_valid_chunked(&self) -> bool {
        self.present && self.chunked_last && !self.misplaced_chunked && !self.malformed
    }

    /// The only coding is one `chunked`: the one request framing weir forwards.
    pub fn is_chunked_only(&self) -> bool {
        self.is_valid_chunked() && !self.other
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
        assert_eq!(content_length(b"9999999999999999999"), Some(9_999_999_999_999_999_999));
        assert_eq!(content_length(b"0"), Some(0));
        assert_eq!(content_length(b"5 "), Some(5));
        assert_eq!(content_length(b"5/"), None);
        assert_eq!(content_length(b"5:"), None);
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
    fn names_are_recognised_in_any_case_and_only_whole() {
        let known = [
            ("TE", Name::Te),
            ("host", Name::Host),
            ("Expect", Name::Expect),
            ("UPGRADE", Name::Upgrade),
            ("Connection", Name::Connection),
            ("keep-alive", Name::KeepAlive),
            ("Content-Length", Name::ContentLength),
            ("X-Forwarded-For", Name::XForwardedFor),
            ("Proxy-Connection", Name::ProxyConnection),
            ("x-forwarded-host", Name::XForwardedHost),
            ("Transfer-Encoding", Name::TransferEncoding),
            ("X-Forwarded-Proto", Name::XForwardedProto),
        ];
        for (name, class) in known {
            assert_eq!(Name::of(name.as_bytes()), class, "{name}");
            assert_eq!(Name::of(format!("{name}x").as_bytes()), Name::Other, "{name}x");
            assert_eq!(Name::of(&name.as_bytes()[1..]), Name::Other, "{name} minus one");
        }
        for other in ["", "T", "User-Agent", "Content-Type", "X-Forwarded-Port", "Hosts"] {
            assert_eq!(Name::of(other.as_bytes()), Name::Other, "{other}");
        }
        let hop_by_hop = |name: &[u8]| Name::of(name).is_hop_by_hop();
        assert!(hop_by_hop(b"Keep-Alive") && !hop_by_hop(b"Upgrade"));
    }

    #[test]
    fn every_known_name_with_a_dash_has_its_underscore_spelling_caught() {
        let dashed = ["keep-alive", "content-length", "transfer-encoding", "proxy-connection"];
        let forwarded = ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"];
        for name in dashed.iter().chain(&forwarded) {
            assert!(!is_underscore_spelling(name.as_bytes()), "{name}");
            assert!(is_underscore_spelling(name.replace('-', "_").as_bytes()), "{name}");
            assert!(is_underscore_spelling(name.replacen('-', "_", 1).as_bytes()), "{name}");
        }
        for other in ["X_Api_Key", "Content_Type", "host_", "X_Forwarded_Port", "t_"] {
            assert!(!is_underscore_spelling(other.as_bytes()), "{other}");
        }
    }

    #[test]
    fn eq_lowercase_matches_eq_ignore_ascii_case() {
        let known = b"abcdefghijklmnopqrstuvwxyz-abcdefghij";
        for len in 0..=known.len() {
            let known = &known[..len];
            let upper = known.to_ascii_uppercase();
            assert!(eq_lowercase(known, known) && eq_lowercase(&upper, known), "{len}");
            for at in 0..len {
                for byte in [b'x', b'_', b'\t', b' ', 0xe1, known[at] ^ 0x01, known[at] ^ 0x40] {
                    let mut name = upper.clone();
                    name[at] = byte;
                    let expected = name.eq_ignore_ascii_case(known);
                    assert_eq!(eq_lowercase(&name, known), expected, "{len} {at} {byte}");
                }
            }
            assert!(!eq_lowercase(&upper[..len.saturating_sub(1)], known) || len == 0);
        }
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

    #[test]
    fn connection_never_names_a_field_weir_relies_on() {
        let mut options = ConnectionOptions::default();
        let value = b"Content-Length, transfer-encoding, HOST, TE, Upgrade, Expect, \
X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host, Connection, Keep-Alive, Proxy-Connection";
        assert!(options.add(value));
        assert!(options.upgrade && !options.has_names());
        for name in value.split(|&b| b == b',').map(trim) {
            assert!(!options.names(name), "{}", String::from_utf8_lossy(name));
        }
    }

    #[test]
    fn decimal_writes_plain_numbers() {
        let mut digits = [0; MAX_DECIMAL_DIGITS];
        for n in [0, 5, 10, 4096, u64::MAX] {
            assert_eq!(decimal(n, &mut digits), n.to_string().as_bytes());
        }
    }

    #[test]
    fn transfer_coding_chunked_only() {
        let only = |values: &[&[u8]]| {
            let mut te = TransferCoding::default();
            values.iter().for_each(|v| te.add(v));
            te.is_chunked_only()
        };
        assert!(only(&[b"chunked"]) && only(&[b"Chunked"]));
        assert!(!only(&[b"gzip, chunked"]) && !only(&[b"identity", b"chunked"]));
        assert!(!only(&[b", chunked"]) && !only(&[b"chunked", b"chunked"]));
    }

    #[test]
    fn transfer_codings_must_be_tokens() {
        // Found by the response fuzz target: `@gzip, chunked` was relayed to clients.
        for bad in [&b"@gzip, chunked"[..], b"gzip;q=1, chunked", b", chunked", b"gz ip, chunked"] {
            let mut te = TransferCoding::default();
            te.add(bad);
            assert!(te.malformed && !te.is_valid_chunked(), "{}", bad.escape_ascii());
        }
        let mut te = TransferCoding::default();
        te.add(b"gzip , chunked");
        assert!(!te.malformed && te.is_valid_chunked());
    }
}
