//! Request targets (RFC 9112 §3.2): which form a target has, the authority of an
//! absolute-form one, the origin form weir forwards instead, and the normalised path
//! that routing matches on.
//!
//! Routing must see one spelling of each path, or a prefix rule is bypassed by writing
//! the same path another way (`/%61dmin`, `/x/../admin`, `//admin`). Backends, though,
//! get the path bytes as received: weir is not the origin and must not change what a
//! URI means to it. Everything here is pure and linear in the target's length, which
//! the head size limit already bounds.

use std::borrow::Cow;

/// A request target that passed [`parse`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target<'a> {
    /// Host and optional port of an absolute-form target, as received; `None` for the
    /// origin and asterisk forms.
    pub authority: Option<&'a [u8]>,
    /// What goes upstream before [`Target::origin`]: `/` (or `*` for OPTIONS) when an
    /// absolute-form target has an empty path (RFC 9112 §3.2.1, §3.2.4), else nothing.
    pub lead: &'static [u8],
    /// Path and query (or `*`) as received: a sub-slice of the target.
    pub origin: &'a [u8],
}

/// Most digits in a port: 65535 has five.
const MAX_PORT_DIGITS: usize = 5;

/// Classifies `target` and checks what routing relies on. `options` says the method is
/// OPTIONS, the only one that may use `*`. The error is the 400 reason.
pub fn parse(target: &[u8], options: bool) -> Result<Target<'_>, &'static str> {
    // A fragment is never sent (RFC 9112 §3.2); a backend might still cut the path there.
    if target.contains(&b'#') {
        return Err("fragment in the request target");
    }
    let origin_form = |origin| Target { authority: None, lead: b"", origin };
    match target.first() {
        Some(b'/') => check_path(path_of(target)).map(|()| origin_form(target)),
        Some(b'*') if target.len() == 1 && options => Ok(origin_form(target)),
        Some(b'*') if target.len() == 1 => Err("`*` target without OPTIONS"),
        _ => absolute_form(target, options),
    }
}

/// `http://authority/path?query` (or `https`): the authority must be a plain host with an
/// optional port, without userinfo.
fn absolute_form(target: &[u8], options: bool) -> Result<Target<'_>, &'static str> {
    let Some(colon) = target.iter().position(|&b| b == b':') else {
        return Err("request target is neither origin nor absolute form");
    };
    let scheme = &target[..colon];
    if !scheme.eq_ignore_ascii_case(b"http") && !scheme.eq_ignore_ascii_case(b"https") {
        return Err("request target scheme is not http or https");
    }
    let Some(rest) = target[colon + 1..].strip_prefix(b"//") else {
        return Err("absolute-form target without an authority");
    };
    let end = rest.iter().position(|&b| b == b'/' || b == b'?').unwrap_or(rest.len());
    let (authority, origin) = rest.split_at(end);
    check_authority(authority)?;
    check_path(path_of(origin))?;
    let lead: &[u8] = match origin.first() {
        Some(b'/') => b"",
        None if options => b"*",
        _ => b"/",
    };
    Ok(Target { authority: Some(authority), lead, origin })
}

/// `host [":" port]`, where host is a name or a bracketed IP literal. Stricter than RFC
/// 3986's reg-name: percent-encoding and sub-delimiters never appear in DNS names, and a
/// name with them could not match a host route the way the backend reads it.
fn check_authority(authority: &[u8]) -> Result<(), &'static str> {
    if authority.is_empty() {
        return Err("empty authority in the request target");
    }
    if authority.contains(&b'@') {
        return Err("userinfo in the request target");
    }
    let (host, port) = match authority.strip_prefix(b"[") {
        Some(literal) => {
            let close = literal.iter().position(|&b| b == b']').ok_or("bad IP literal")?;
            let address = &literal[..close];
            let ip_byte = |b: &u8| b.is_ascii_hexdigit() || matches!(b, b':' | b'.');
            if address.is_empty() || !address.iter().all(ip_byte) {
                return Err("bad IP literal in the request target");
            }
            (&authority[..close + 2], &literal[close + 1..])
        }
        None => {
            let colon = authority.iter().position(|&b| b == b':').unwrap_or(authority.len());
            authority.split_at(colon)
        }
    };
    let name_byte = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
    if host.is_empty() || (host[0] != b'[' && !host.iter().all(name_byte)) {
        return Err("bad host in the request target");
    }
    match port.strip_prefix(b":") {
        None if port.is_empty() => Ok(()),
        Some(digits) if valid_port(digits) => Ok(()),
        _ => Err("bad port in the request target"),
    }
}

/// One to five digits, at most 65535. An empty port is legal in RFC 3986 but no client
/// sends one, and refusing it leaves one spelling per authority.
fn valid_port(digits: &[u8]) -> bool {
    (1..=MAX_PORT_DIGITS).contains(&digits.len())
        && digits.iter().all(u8::is_ascii_digit)
        && digits.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0')) <= u32::from(u16::MAX)
}

/// Refuses what makes a path mean different things to different readers: invalid
/// percent-encoding (`%zz`, `%4`), which parsers repair differently, and a raw backslash,
/// which some servers (IIS, some frameworks) read as `/`, so `/x\..\admin` would bypass
/// a prefix rule there. RFC 3986 allows neither. The query is not checked: routing never
/// reads it, and clients do send `?q=100%`. Also a dot segment with parameters (see
/// [`is_dot_with_params`]).
fn check_path(path: &[u8]) -> Result<(), &'static str> {
    let mut i = 0;
    while i < path.len() {
        match path[i] {
            b'%' if hex_pair(&path[i + 1..]).is_none() => {
                return Err("invalid percent-encoding in the request path");
            }
            b'%' => i += 3,
            b'\\' => return Err("backslash in the request path"),
            b'/' if is_dot_with_params(&path[i + 1..]) => {
                return Err("dot segment with parameters in the request path");
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// Whether the segment at the start of `rest` is `.` or `..` (dots raw or `%2e`) followed
/// by `;`: Tomcat and Jetty drop a segment's `;parameters`, so `/x/..;/admin` is `/admin`
/// to them, while routing reads `..;` as a name and would miss an `/admin` rule. RFC 3986
/// gives parameters no meaning, so weir cannot resolve such a segment the way they do.
fn is_dot_with_params(mut rest: &[u8]) -> bool {
    let mut dots = 0;
    // Bounded: at most two dots make a dot segment.
    while dots < 2 {
        match rest {
            [b'.', tail @ ..] | [b'%', b'2', b'e' | b'E', tail @ ..] => rest = tail,
            _ => break,
        }
        dots += 1;
    }
    dots > 0 && rest.first() == Some(&b';')
}

/// The path of an origin form: everything before the query.
pub fn path_of(origin: &[u8]) -> &[u8] {
    origin.split(|&b| b == b'?').next().unwrap_or_default()
}

/// The value of the two hex digits at the start of `bytes`.
fn hex_pair(bytes: &[u8]) -> Option<u8> {
    let digit = |b: u8| (b as char).to_digit(16);
    match bytes {
        [high, low, ..] => Some((digit(*high)? * 16 + digit(*low)?) as u8),
        _ => None,
    }
}

/// RFC 3986 §2.3: the characters that mean the same encoded or not.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The path routing matches on (RFC 3986 §6.2.2): percent-encoded unreserved characters
/// decoded (once: `%252e` stays), other percent-encodings upper-cased, repeated slashes
/// merged, and dot segments resolved (§5.2.4), also those decoding made (`/%2e%2e/`); a
/// `..` above the root stays at the root (`/../x` is `/x`), as §5.2.4 says. An empty path
/// is `/`; a path not starting with `/` (`*`) is returned as it is. Borrows when the path
/// is already normal, which is the common case; otherwise allocates once, at most the
/// path's length, and each byte is read once and removed at most once.
pub fn normalise_path(path: &[u8]) -> Cow<'_, [u8]> {
    if path.is_empty() {
        return Cow::Borrowed(b"/");
    }
    if path[0] != b'/' || is_normal(path) {
        return Cow::Borrowed(path);
    }
    let mut out = Vec::with_capacity(path.len());
    let mut segments = path[1..].split(|&b| b == b'/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        let start = out.len();
        out.push(b'/');
        decode_into(segment, &mut out);
        match &out[start + 1..] {
            b"" if !last => out.truncate(start),
            b"." | b".." => {
                let up = out.len() - start == 3;
                out.truncate(start);
                if up {
                    let parent = out.iter().rposition(|&b| b == b'/').unwrap_or(0);
                    out.truncate(parent);
                }
                if last {
                    out.push(b'/');
                }
            }
            _ => {}
        }
    }
    if out.is_empty() {
        out.push(b'/');
    }
    Cow::Owned(out)
}

/// Whether [`normalise_path`] would return `path` unchanged: no percent sign, no empty
/// segment but the last, no dot segment.
fn is_normal(path: &[u8]) -> bool {
    if path.contains(&b'%') {
        return false;
    }
    let mut segments = path[1..].split(|&b| b == b'/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        if (segment.is_empty() && !last) || segment == b"." || segment == b".." {
            return false;
        }
    }
    true
}

/// Appends `segment` with unreserved characters decoded and other escapes upper-cased;
/// a `%` without two hex digits ([`parse`] refuses those) is copied as it is.
fn decode_into(segment: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < segment.len() {
        match (segment[i], hex_pair(&segment[i + 1..])) {
            (b'%', Some(byte)) if is_unreserved(byte) => out.push(byte),
            (b'%', Some(_)) => {
                out.push(b'%');
                out.extend(segment[i + 1..i + 3].iter().map(u8::to_ascii_uppercase));
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
                continue;
            }
        }
        i += 3;
    }
}

#[cfg(test)]
#[path = "target_tests.rs"]
mod tests;
