//! Tests of a head's fields as HTTP/2 HEADERS.

use super::*;
use http::HeaderValue;

fn fields_of(head: &[u8]) -> HeaderMap {
    let mut slots = [httparse::EMPTY_HEADER; 16];
    let Ok(httparse::Status::Complete((_, headers))) = httparse::parse_headers(head, &mut slots)
    else {
        panic!("a whole field block");
    };
    fields(headers).expect("fields HTTP/2 can carry")
}

#[test]
fn connection_specific_fields_never_reach_http2_in_any_spelling() {
    // RFC 9113 §8.2.2: none of these may appear in HTTP/2 HEADERS.
    let head =
        b"Connection: close\r\nUPGRADE: websocket\r\nTe: trailers\r\nKeep-Alive: timeout=5\r\n\
                 proxy-connection: keep-alive\r\nTransfer-Encoding: chunked\r\n\
                 Content-Type: text/plain\r\nX-Keep-Alive: 1\r\nTEE: 2\r\nConnections: 3\r\n\r\n";
    let map = fields_of(head);
    // `HeaderMap` documents no order for its names: compare them sorted.
    let mut names: Vec<&str> = map.keys().map(HeaderName::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["connections", "content-type", "tee", "x-keep-alive"]);
}

#[test]
fn values_are_kept_in_order_and_repeated_names_all_go() {
    let map = fields_of(b"x-a: 1\r\nset-cookie: a=1\r\nset-cookie: b=2\r\nX-A: 2\r\n\r\n");
    let cookies: Vec<&[u8]> = map.get_all("set-cookie").iter().map(HeaderValue::as_bytes).collect();
    assert_eq!(cookies, [b"a=1".as_slice(), b"b=2"]);
    let a: Vec<&[u8]> = map.get_all("x-a").iter().map(HeaderValue::as_bytes).collect();
    assert_eq!(a, [b"1".as_slice(), b"2"]);
}

#[test]
fn known_names_are_the_names_http_would_build_in_any_case() {
    for name in [
        "grpc-status",
        "Grpc-Message",
        "GRPC-ENCODING",
        "X-Forwarded-For",
        "x-forwarded-host",
        "X-Forwarded-Proto",
        "grpc-accept-encoding",
    ] {
        let built = HeaderName::from_bytes(name.as_bytes()).unwrap();
        assert_eq!(known(Name::of(name.as_bytes()), name.as_bytes()), Some(built), "{name}");
    }
    // The same lengths, other names: built by `http` as before.
    for name in ["grpc-statux", "x-forwarded-fox", "content-type", "x"] {
        assert_eq!(known(Name::of(name.as_bytes()), name.as_bytes()), None, "{name}");
    }
    let map = fields_of(b"X-Forwarded-For: 1.2.3.4\r\nx-forwarded-fox: 5\r\n\r\n");
    assert_eq!(map["x-forwarded-for"], "1.2.3.4");
    assert_eq!(map["x-forwarded-fox"], "5");
}
