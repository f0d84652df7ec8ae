//! The oracle's own tests: it must accept the plain shapes and refuse every ambiguous one,
//! or the fuzz targets built on it prove nothing.

use super::*;

fn what<T: std::fmt::Debug>(result: Result<T>) -> &'static str {
    result.expect_err("refused").what
}

#[test]
fn a_request_with_a_length_is_one_message() {
    let wire = b"POST /a?b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
    let message = request(wire).unwrap();
    let target = b"/a?b".to_vec();
    assert_eq!(message.head.start, Start::Request { method: b"POST".to_vec(), target });
    assert_eq!(message.framing, Framing::Length(5));
    assert_eq!((message.body_len, message.len), (5, wire.len()));
    assert_eq!(message.head.values("HOST").collect::<Vec<_>>(), [b"x"]);
}

#[test]
fn a_request_without_framing_has_no_body_and_stops_at_the_head() {
    let wire = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\n";
    let message = request(wire).unwrap();
    assert_eq!(message.framing, Framing::None);
    assert_eq!(message.len, 27);
}

#[test]
fn a_chunked_body_counts_data_and_keeps_trailers() {
    let body = b"5;a=b ; c=\"q\\\"x\"\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 1\r\n\r\n";
    assert_eq!(chunked(body), Ok((11, body.len())));
    let wire = [b"PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n", &body[..]];
    let message = request(&wire.concat()).unwrap();
    assert_eq!((message.framing, message.body_len), (Framing::Chunked, 11));
}

#[test]
fn refuses_ambiguous_framing() {
    let head = |fields: &str| format!("POST / HTTP/1.1\r\nHost: x\r\n{fields}\r\n\r\n");
    let refused = [
        "Content-Length: 5, 5",
        "Content-Length: 5\r\nContent-Length: 5",
        "Content-Length: +5",
        "Content-Length: -1",
        "Content-Length: 99999999999999999999",
        "Transfer-Encoding: gzip, chunked",
        "Transfer-Encoding: identity, chunked",
        "Transfer-Encoding: xchunked",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
        "Transfer-Encoding: chunked\r\nContent-Length: 0",
    ];
    for fields in refused {
        let head = request_head(head(fields).as_bytes()).unwrap();
        assert!(request_framing(&head).is_err(), "{fields:?}");
    }
}

#[test]
fn refuses_malformed_heads() {
    let refused: [&[u8]; 10] = [
        b"GET / HTTP/1.1\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\r\n\r\n",
        b"GET  / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\0b\r\n\r\n",
        b"GET /\x01 HTTP/1.1\r\n\r\n",
        b"G(T / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n",
    ];
    for wire in refused {
        assert!(request(wire).is_err(), "{:?}", String::from_utf8_lossy(wire));
    }
}

#[test]
fn refuses_malformed_chunks() {
    let refused: [&[u8]; 9] = [
        b"5\nhello\r\n0\r\n\r\n",
        b"5 x\r\nhello\r\n0\r\n\r\n",
        b"5;\r\nhello\r\n0\r\n\r\n",
        b"5;a=\"x\r\nhello\r\n0\r\n\r\n",
        b"-5\r\nhello\r\n0\r\n\r\n",
        b"5\r\nhelloXX0\r\n\r\n",
        b"5\r\nhel",
        b"11111111111111111\r\n",
        b"0\r\nX: y\n\r\n",
    ];
    for body in refused {
        assert!(chunked(body).is_err(), "{:?}", String::from_utf8_lossy(body));
    }
    assert_eq!(what(chunked(b"0x5\r\n")), "bad chunk extension");
}

#[test]
fn response_framing_follows_status_and_method() {
    let framing = |wire: &[u8], head_request| {
        response_head(wire).and_then(|head| response_framing(&head, head_request))
    };
    assert_eq!(framing(b"HTTP/1.1 200 OK\r\n\r\n", false), Ok(Framing::UntilClose));
    assert_eq!(
        framing(b"HTTP/1.1 200 \r\nContent-Length: 3\r\n\r\n", false),
        Ok(Framing::Length(3))
    );
    assert_eq!(framing(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", true), Ok(Framing::None));
    assert_eq!(framing(b"HTTP/1.1 304 NM\r\nContent-Length: 3\r\n\r\n", false), Ok(Framing::None));
    let refused: [&[u8]; 5] = [
        b"HTTP/1.1 204 NC\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 100 C\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200\r\n\r\n",
        b"HTTP/1.1 099 X\r\n\r\n",
        b"HTTP/1.0 200 OK\r\n\r\n",
    ];
    for wire in refused {
        assert!(framing(wire, false).is_err(), "{:?}", String::from_utf8_lossy(wire));
    }
}

#[test]
fn a_response_with_a_length_must_have_the_whole_body() {
    let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel";
    assert_eq!(what(response(wire, false)), "body shorter than Content-Length");
    let wire = b"HTTP/1.1 200 OK\r\n\r\nuntil close";
    assert_eq!(response(wire, false).unwrap().body_len, 11);
}
