//! Heads across the upstream HTTP/2 boundary: weir's HTTP/1.1 request head (its own,
//! already normalised output) as an HTTP/2 request (RFC 9113 §8.3.1: `Host` becomes
//! `:authority`, connection-specific fields are dropped), and an HTTP/2 response head
//! as the HTTP/1.1 head the exchange parses.

use std::io;
use std::mem::MaybeUninit;

use http::{header, HeaderMap, HeaderValue, Request, Response, Uri};

use crate::http1::HEADER_SLOTS;
use crate::proxy::h2::fields::{request_fields, RequestFields};
use crate::proxy::h2::respond::{broken, framing, Framing};

/// Most bytes of one request head weir writes: its own limit on client heads plus the
/// fields it adds, with room to spare.
const MAX_HEAD_BYTES: usize = 2 * 1024 * 1024;

/// How the request body after the head is framed.
#[derive(Debug)]
pub enum RequestBody {
    /// No body: the HEADERS frame ends the stream.
    Empty,
    /// This many bytes.
    Length(u64),
    /// Chunked, to be de-chunked into DATA frames, its trailers sent as HEADERS.
    Chunked,
}

/// A request head for an HTTP/2 backend ([`request`]).
#[derive(Debug)]
pub struct Head {
    /// The request.
    pub request: Request<()>,
    /// How its body is framed.
    pub body: RequestBody,
    /// The length of its HTTP/1.1 head.
    pub end: usize,
    /// It had `Expect: 100-continue`: weir answers `100 Continue` itself.
    pub expect_continue: bool,
}

/// A complete request head parsed from `input`, for a connection of `scheme` (`http`
/// or `https`). `None` while the head is incomplete.
///
/// `Expect` does not go: the codec drops a backend's interim responses, so its
/// `100 Continue` would never reach the client, and the backend would wait for a body
/// the client holds back. weir answers `100 Continue` itself instead, as nginx does
/// (lb-semantics §7), and the backend reads the body as it comes, under flow control
/// (what 100-continue is for over HTTP/1).
pub fn request(input: &[u8], scheme: &str) -> io::Result<Option<Head>> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; HEADER_SLOTS];
    let mut parsed = httparse::Request::new(&mut []);
    let end = match httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut parsed,
        input,
        &mut slots,
    ) {
        Ok(httparse::Status::Complete(end)) => end,
        Ok(httparse::Status::Partial) if input.len() < MAX_HEAD_BYTES => return Ok(None),
        _ => return Err(broken("weir wrote a request head HTTP/2 cannot carry")),
    };
    let framing = framing(parsed.headers)?;
    let RequestFields { map: mut fields, host, expect_continue } =
        request_fields(parsed.headers, true)?;
    let authority = host.ok_or_else(|| broken("request without Host"))?;
    let path = parsed.path.unwrap_or("/");
    let uri = Uri::builder()
        .scheme(scheme)
        .authority(authority.as_bytes())
        .path_and_query(path)
        .build()
        .map_err(broken)?;
    // weir relays trailers both ways, and gRPC servers look for this (RFC 9113 §8.2.2
    // allows `TE: trailers` alone).
    fields.insert(header::TE, HeaderValue::from_static("trailers"));
    let mut request = Request::new(());
    *request.method_mut() = parsed.method.unwrap_or("GET").parse().map_err(broken)?;
    *request.uri_mut() = uri;
    *request.headers_mut() = fields;
    let body = match framing {
        Framing::Chunked => RequestBody::Chunked,
        Framing::Length(0) | Framing::UntilEnd => RequestBody::Empty,
        Framing::Length(length) => RequestBody::Length(length),
    };
    Ok(Some(Head { request, body, end, expect_continue }))
}

/// Writes the HTTP/1.1 head of `response` to `out`. A body framed by the backend's
/// `Content-Length` keeps it; any other body goes chunked, so its end and trailers
/// travel; a response that ended with its head (`end_stream`, a trailers-only gRPC
/// error among them) gets `Content-Length: 0`. Returns whether the body is chunked.
pub fn response(response: &Response<h2::RecvStream>, out: &mut Vec<u8>) -> bool {
    let (status, headers) = (response.status(), response.headers());
    status_and_fields(status, headers, out);
    let ended = response.body().is_end_stream();
    let chunked = !ended && !headers.contains_key(header::CONTENT_LENGTH);
    if chunked {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    } else if ended && !headers.contains_key(header::CONTENT_LENGTH) && !bodiless(status) {
        out.extend_from_slice(b"Content-Length: 0\r\n");
    }
    out.extend_from_slice(b"\r\n");
    chunked
}

/// Writes an HTTP/1.1 status line for `status` and the field lines of `headers` to
/// `out`; the blank line that ends the head is the caller's.
pub fn status_and_fields(status: http::StatusCode, headers: &HeaderMap, out: &mut Vec<u8>) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.extend_from_slice(b" ");
    out.extend_from_slice(status.canonical_reason().unwrap_or("Other").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        crate::http1::lines::push_field(out, name.as_str().as_bytes(), value.as_bytes());
    }
}

/// A status whose response never has a body, nor a `Content-Length` saying so.
fn bodiless(status: http::StatusCode) -> bool {
    status == http::StatusCode::NO_CONTENT || status == http::StatusCode::NOT_MODIFIED
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Request<()>, RequestBody, usize) {
        let head = request(text.as_bytes(), "http").unwrap().unwrap();
        (head.request, head.body, head.end)
    }

    #[test]
    fn host_becomes_the_authority_and_connection_fields_go() {
        let text = "POST /a?b=1 HTTP/1.1\r\nHost: api.example:8080\r\nConnection: keep-alive\r\n\
                    Content-Length: 5\r\nX-Id: 7\r\n\r\nhello";
        let (req, body, end) = parse(text);
        assert_eq!(end, text.len() - 5);
        assert_eq!(req.method(), "POST");
        assert_eq!(req.uri(), "http://api.example:8080/a?b=1");
        assert!(req.headers().get("host").is_none());
        assert!(req.headers().get("connection").is_none());
        assert_eq!(req.headers()["x-id"], "7");
        assert_eq!(req.headers()["te"], "trailers");
        assert!(matches!(body, RequestBody::Length(5)));
        let text = "PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n";
        assert!(parse(text).0.headers().get("expect").is_none(), "no 100 could come back");
        let text = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
        let (chunked, body, _) = parse(text);
        assert!(matches!(body, RequestBody::Chunked));
        assert!(chunked.headers().get("transfer-encoding").is_none());
        assert!(matches!(parse("GET / HTTP/1.1\r\nHost: a\r\n\r\n").1, RequestBody::Empty));
        assert!(request("GET / HTTP/1.1\r\nHost: a\r\n".as_bytes(), "http").unwrap().is_none());
        let text = "GET / HTTP/1.1\r\nHost: a\r\n\r\n".as_bytes();
        let tls = request(text, "https").unwrap().unwrap();
        assert_eq!(tls.request.uri(), "https://a/", "a TLS connection's :scheme");
        let text = "PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\n";
        assert!(request(text.as_bytes(), "http").unwrap().unwrap().expect_continue);
        assert!(
            !request(b"PUT / HTTP/1.1\r\nHost: a\r\n\r\n", "http")
                .unwrap()
                .unwrap()
                .expect_continue
        );
    }
}
