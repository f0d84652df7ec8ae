//! An HTTP/2 request as the HTTP/1.1 request head text weir's own parser reads
//! ([`crate::http1::request::parse`]), so every check, `X-Forwarded-*` rule and
//! [`crate::http1::request::RequestInfo`] is the same as for an HTTP/1 client.
//!
//! RFC 9113 §8.3.1 and §8.2.2: `:authority` becomes `Host`, cookie crumbs are joined
//! with `; ` (§8.2.3), and connection-specific fields make the stream malformed (the
//! `h2` codec refuses them already; they are refused here again so the rule does not
//! hang on a dependency's choice). A body without `Content-Length` goes chunked, so the
//! backend sees where it ends; `Content-Length` is kept when given (the codec checks it
//! against the DATA received), unless the request announces trailers (`Trailer`): only
//! a chunked body can carry them in HTTP/1.1.

use bytes::BytesMut;
use http::header::{self, HeaderName};
use http::request::Parts;

/// Why a request is malformed (RFC 9113 §8.1.1): the stream is reset with
/// `PROTOCOL_ERROR`.
pub type Malformed = &'static str;

/// Fields that are about one HTTP/1 connection and have no meaning in HTTP/2
/// (RFC 9113 §8.2.2).
fn connection_specific(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name == "keep-alive"
        || name == "proxy-connection"
}

/// A field value HTTP/2 allows (RFC 9113 §8.2.1): no CR, LF or NUL (the codec's field
/// values exclude them already; a line break here would split the head), and no SP or
/// HTAB first or last (the codec lets those through; HTTP/1 would drop them unseen).
fn valid_value(value: &[u8]) -> bool {
    let blank = |b: Option<&u8>| matches!(b, Some(b' ' | b'\t'));
    !value.iter().any(|&b| matches!(b, b'\r' | b'\n' | b'\0'))
        && !blank(value.first())
        && !blank(value.last())
}

/// What the translated head is for.
#[derive(Clone, Copy)]
pub enum Form<'a> {
    /// A request as it came; `body` says whether DATA frames follow its HEADERS.
    Request { body: bool },
    /// A WebSocket extended CONNECT (RFC 8441 §5): a `GET` with the HTTP/1.1 upgrade
    /// fields and this `Sec-WebSocket-Key` (its DATA frames are the tunnel, not a body).
    WebSocket { key: &'a [u8] },
}

/// Writes the HTTP/1.1 head of `parts` to `out` (cleared first). Returns whether the
/// head says the body is chunked.
pub fn write_head(parts: &Parts, form: Form<'_>, out: &mut BytesMut) -> Result<bool, Malformed> {
    out.clear();
    let path = parts.uri.path_and_query().map_or("/", |path| path.as_str());
    let websocket = matches!(form, Form::WebSocket { .. });
    let method = if websocket { "GET" } else { parts.method.as_str() };
    out.extend_from_slice(method.as_bytes());
    out.extend_from_slice(b" ");
    out.extend_from_slice(if path.is_empty() { b"/" } else { path.as_bytes() });
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let authority = parts.uri.authority().map(|authority| authority.as_str());
    if let Some(authority) = authority {
        field(out, b"host", authority.as_bytes());
    }
    let mut cookie = false;
    let chunked = matches!(form, Form::Request { body: true })
        && (parts.headers.contains_key(header::TRAILER)
            || !parts.headers.contains_key(header::CONTENT_LENGTH));
    // `HeaderMap` keeps each name's values together, in the order the names first came.
    for (name, value) in &parts.headers {
        let value = value.as_bytes();
        if !allowed(name, value, websocket)? {
            continue;
        }
        if name == header::HOST {
            // §8.3.1: a Host that names another authority than `:authority` is malformed.
            match authority {
                Some(authority) if authority.as_bytes().eq_ignore_ascii_case(value) => {}
                Some(_) => return Err("Host disagrees with :authority"),
                None => field(out, b"host", value),
            }
            continue;
        }
        if name == header::COOKIE {
            // §8.2.3: crumbs are joined with "; " into one field for HTTP/1.1.
            if cookie {
                out.truncate(out.len() - 2);
                out.extend_from_slice(b"; ");
                out.extend_from_slice(value);
                out.extend_from_slice(b"\r\n");
            } else {
                field(out, b"cookie", value);
            }
            cookie = true;
            continue;
        }
        cookie = false;
        if chunked && name == header::CONTENT_LENGTH {
            continue;
        }
        field(out, name.as_str().as_bytes(), value);
    }
    if chunked {
        field(out, b"transfer-encoding", b"chunked");
    }
    if let Form::WebSocket { key } = form {
        field(out, b"connection", b"upgrade");
        field(out, b"upgrade", b"websocket");
        field(out, b"sec-websocket-key", key);
    }
    out.extend_from_slice(b"\r\n");
    Ok(chunked)
}

/// Whether field `name: value` goes on (`false`: it is left out); an error when it makes
/// the request malformed. `websocket` for a WebSocket CONNECT.
fn allowed(name: &HeaderName, value: &[u8], websocket: bool) -> Result<bool, Malformed> {
    if connection_specific(name) {
        return Err("connection-specific header field");
    }
    if name == header::TE && value != b"trailers" {
        return Err("TE other than trailers");
    }
    if !valid_value(value) {
        return Err("line break, or white space at either end, in a field value");
    }
    if websocket && name == header::CONTENT_LENGTH {
        // The DATA frames are the tunnel's bytes, never a request body.
        return Err("Content-Length on a WebSocket CONNECT");
    }
    // The client sends no key (RFC 8441 §5); weir's own goes instead of any it sends.
    Ok(!(websocket && name == header::SEC_WEBSOCKET_KEY))
}

/// Writes one HTTP/1 field line.
pub(super) fn field(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(request: http::Request<()>, body: bool) -> Result<String, Malformed> {
        let (parts, ()) = request.into_parts();
        let mut out = BytesMut::new();
        write_head(&parts, Form::Request { body }, &mut out)?;
        Ok(String::from_utf8(out.to_vec()).expect("ASCII"))
    }

    fn request(method: &str, uri: &str) -> http::request::Builder {
        http::Request::builder().method(method).uri(uri)
    }

    #[test]
    fn authority_becomes_host_and_cookie_crumbs_are_joined() {
        let request = request("GET", "https://example.com/a?b=1")
            .header("accept", "*/*")
            .header("cookie", "a=1")
            .header("cookie", "b=2")
            .header("x-last", "z")
            .body(())
            .unwrap();
        assert_eq!(
            head(request, false).unwrap(),
            "GET /a?b=1 HTTP/1.1\r\nhost: example.com\r\naccept: */*\r\n\
             cookie: a=1; b=2\r\nx-last: z\r\n\r\n"
        );
    }

    #[test]
    fn a_body_without_length_goes_chunked_and_a_length_is_kept() {
        let chunked = request("POST", "http://h/up").body(()).unwrap();
        assert!(head(chunked, true).unwrap().ends_with("transfer-encoding: chunked\r\n\r\n"));
        let sized = request("POST", "http://h/up").header("content-length", "5").body(());
        let sized = head(sized.unwrap(), true).unwrap();
        assert!(sized.contains("content-length: 5\r\n") && !sized.contains("chunked"));
        // Trailers need chunked framing: the length goes (the codec still checks it).
        let trailers = request("POST", "http://h/up").header("content-length", "5");
        let trailers = head(trailers.header("trailer", "x-sum").body(()).unwrap(), true);
        let trailers = trailers.unwrap();
        assert!(trailers.ends_with("trailer: x-sum\r\ntransfer-encoding: chunked\r\n\r\n"));
        assert!(!trailers.contains("content-length"), "{trailers}");
    }

    #[test]
    fn connection_specific_fields_and_te_other_than_trailers_are_malformed() {
        for (name, value) in [
            ("connection", "keep-alive"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "close"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("te", "gzip"),
        ] {
            let request = request("GET", "http://h/").header(name, value).body(()).unwrap();
            assert!(head(request, false).is_err(), "{name}: {value}");
        }
        let trailers = request("GET", "http://h/").header("te", "trailers").body(()).unwrap();
        assert!(head(trailers, false).unwrap().contains("te: trailers\r\n"));
    }

    #[test]
    fn values_with_a_line_break_or_white_space_at_either_end_are_malformed() {
        // RFC 9113 §8.2.1: no CR, LF or NUL, and no SP or HTAB first or last.
        for value in [" a", "a ", "\ta", "a\t"] {
            let request = request("GET", "http://h/").header("x-a", value).body(()).unwrap();
            assert!(head(request, false).is_err(), "{value:?}");
        }
        let inner = request("GET", "http://h/").header("x-a", "a b\tc").body(()).unwrap();
        assert!(head(inner, false).unwrap().contains("x-a: a b\tc\r\n"));
    }

    #[test]
    fn host_must_agree_with_authority_and_stands_in_when_there_is_none() {
        let same = request("GET", "http://h.example/").header("host", "H.example").body(());
        assert_eq!(head(same.unwrap(), false).unwrap().matches("host:").count(), 1);
        let other = request("GET", "http://h.example/").header("host", "evil").body(());
        assert!(head(other.unwrap(), false).is_err());
        let only_host = request("GET", "/x").header("host", "h.example").body(()).unwrap();
        assert_eq!(head(only_host, false).unwrap(), "GET /x HTTP/1.1\r\nhost: h.example\r\n\r\n");
    }
}
