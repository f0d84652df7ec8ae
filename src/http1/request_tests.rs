use super::*;
use crate::http1::forwarded::Trust;

const FORWARDING: Forwarding<'static> =
    Forwarding { client_ip: b"10.1.2.3", proto: b"http", max_headers: 100, trust: Trust::Everyone };

fn rewrite(head: &[u8]) -> Result<(RequestInfo, String), RequestError> {
    let mut out = Vec::new();
    match parse(head, &FORWARDING, &mut out)? {
        Parsed::Complete(info) => Ok((info, String::from_utf8(out).unwrap())),
        Parsed::Partial => panic!("partial"),
    }
}

#[test]
fn keeps_end_to_end_fields_in_order_and_adds_forwarding() {
    let head = b"GET /a?b HTTP/1.1\r\nHost: Ex.com\r\nX-A: 1\r\nConnection: keep-alive, X-Hop\r\n\
X-Hop: gone\r\nKeep-Alive: 5\r\nx-a: 2\r\nTE: trailers\r\nX-Forwarded-For: 1.1.1.1\r\n\r\n";
    let (info, out) = rewrite(head).unwrap();
    assert_eq!(info.body, BodyKind::Empty);
    assert!(info.keep_alive);
    assert_eq!(&head[info.host.unwrap()], b"Ex.com");
    assert_eq!(&head[info.target], b"/a?b");
    assert_eq!(
        out,
        "GET /a?b HTTP/1.1\r\nHost: Ex.com\r\nX-A: 1\r\nx-a: 2\r\n\
X-Forwarded-For: 1.1.1.1, 10.1.2.3\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: Ex.com\r\n\r\n"
    );
}

#[test]
fn refuses_ambiguous_framing() {
    let cases: [&[u8]; 5] = [
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
    ];
    for case in cases {
        let error = rewrite(case).unwrap_err();
        assert_eq!(error.status().0, 400, "{}", String::from_utf8_lossy(case));
    }
}

#[test]
fn collapses_identical_content_lengths_and_keeps_chunked() {
    let head = b"PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\n";
    let (info, out) = rewrite(head).unwrap();
    assert_eq!(info.body, BodyKind::Length(3));
    assert_eq!(out.matches("ength: 3").count(), 1);
    let head = b"PUT / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    let (info, out) = rewrite(head).unwrap();
    assert_eq!(info.body, BodyKind::Chunked);
    assert!(out.contains("Transfer-Encoding: chunked\r\n"));
}

#[test]
fn requires_one_host_and_limits_fields() {
    assert_eq!(rewrite(b"GET / HTTP/1.1\r\n\r\n").unwrap_err().status().0, 400);
    let two_hosts = b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n";
    assert_eq!(rewrite(two_hosts).unwrap_err().status().0, 400);
    let mut many = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    for i in 0..FORWARDING.max_headers {
        many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert_eq!(rewrite(&many).unwrap_err().status().0, 431);
}

#[test]
fn upgrade_keeps_upgrade_fields_only_when_asked() {
    let head = b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    let (info, out) = rewrite(head).unwrap();
    assert!(info.upgrade);
    assert!(out.contains("Upgrade: websocket\r\n") && out.contains("Connection: upgrade\r\n"));
    let head = b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n";
    let (info, out) = rewrite(head).unwrap();
    assert!(!info.upgrade);
    assert!(!out.contains("Upgrade"));
}

#[test]
fn partial_heads_wait_for_more() {
    let mut out = Vec::new();
    let result = parse(b"GET / HTTP/1.1\r\nHost: a\r\n", &FORWARDING, &mut out).unwrap();
    assert!(matches!(result, Parsed::Partial));
}

#[test]
fn field_lines_pass_as_received_with_a_crlf() {
    // No space, extra spaces and a tab after the colon, trailing white space, a bare LF
    // line ending and an empty value: the line is copied up to the value's end, then CRLF.
    let head = b"GET / HTTP/1.1\r\nHost:a\r\nX-A:b\r\nX-B:   c d  \r\nX-C:\te\nX-D:\r\n\r\n";
    let (_, out) = rewrite(head).unwrap();
    assert_eq!(
        out,
        "GET / HTTP/1.1\r\nHost:a\r\nX-A:b\r\nX-B:   c d\r\nX-C:\te\r\nX-D: \r\n\
X-Forwarded-For: 10.1.2.3\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: a\r\n\r\n"
    );
}

#[test]
fn the_client_address_goes_on_the_last_forwarded_for() {
    // In the second head `Connection` names a field that came before it, so the head is
    // written again; the client address still goes on the last `X-Forwarded-For`.
    let heads: [&[u8]; 2] = [
        b"GET / HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1\r\nHost: a\r\n\
x-forwarded-for: 2.2.2.2 \r\nX-B: b\r\nX-Forwarded-Proto: https\r\n\r\n",
        b"GET / HTTP/1.1\r\nX-Hop: 1\r\nX-Forwarded-For: 1.1.1.1\r\nHost: a\r\n\
x-forwarded-for: 2.2.2.2\r\nConnection: X-Hop\r\nX-B: b\r\n\r\n",
    ];
    for head in heads {
        let (_, out) = rewrite(head).unwrap();
        assert_eq!(
            out,
            "GET / HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1\r\nHost: a\r\n\
x-forwarded-for: 2.2.2.2, 10.1.2.3\r\nX-B: b\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: a\r\n\r\n"
        );
    }
}

#[test]
fn upgrade_fields_before_connection_are_kept() {
    let head = b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1\r\n\
Connection: Upgrade\r\n\r\n";
    let (info, out) = rewrite(head).unwrap();
    assert!(info.upgrade);
    assert_eq!(
        out,
        "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1, 10.1.2.3\r\n\
X-Forwarded-Proto: http\r\nX-Forwarded-Host: a\r\nConnection: upgrade\r\n\r\n"
    );
}

#[test]
fn request_lines_weir_would_not_write_are_rebuilt() {
    let cases: [(&[u8], &str); 3] = [
        (b"GET /x HTTP/1.0\r\nHost: a\r\n\r\n", "GET /x HTTP/1.1\r\nHost: a\r\n"),
        (b"\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n", "GET /x HTTP/1.1\r\nHost: a\r\n"),
        (b"GET /x HTTP/1.1\nHost: a\r\n\r\n", "GET /x HTTP/1.1\r\nHost: a\r\n"),
    ];
    for (head, start) in cases {
        let (info, out) = rewrite(head).unwrap();
        assert!(out.starts_with(start), "{out:?}");
        assert_eq!(&head[info.target], b"/x");
    }
}

#[test]
fn refused_requests_leave_nothing_to_send() {
    let mut out = b"stale".to_vec();
    let head = b"GET / HTTP/1.1\r\nX-A: a\r\n\r\n";
    assert!(parse(head, &FORWARDING, &mut out).is_err());
    assert!(out.is_empty());
    let head = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
    assert!(parse(head, &FORWARDING, &mut out).is_err());
    assert!(out.is_empty());
}

#[test]
fn absolute_form_goes_upstream_in_origin_form_with_its_authority_as_host() {
    let head = b"GET http://In.example:81/x?y HTTP/1.1\r\nHost: public.example\r\nX-A: 1\r\n\r\n";
    let (info, out) = rewrite(head).unwrap();
    assert_eq!(&head[info.host.unwrap()], b"In.example:81");
    assert_eq!(&head[info.target], b"http://In.example:81/x?y");
    assert_eq!(&head[info.origin], b"/x?y");
    assert_eq!(
        out,
        "GET /x?y HTTP/1.1\r\nX-A: 1\r\nX-Forwarded-For: 10.1.2.3\r\nX-Forwarded-Proto: http\r\n\
Host: In.example:81\r\nX-Forwarded-Host: In.example:81\r\n\r\n"
    );
    // The same when Connection makes weir write the fields again, and without Host at all.
    let head = b"OPTIONS HTTP://a HTTP/1.0\r\nConnection: X-B\r\nX-B: 2\r\n\r\n";
    let (info, out) = rewrite(head).unwrap();
    assert_eq!(&head[info.host.unwrap()], b"a");
    assert_eq!(
        out,
        "OPTIONS * HTTP/1.1\r\nX-Forwarded-For: 10.1.2.3\r\nX-Forwarded-Proto: http\r\n\
Host: a\r\nX-Forwarded-Host: a\r\n\r\n"
    );
    let head = b"GET http://a?q HTTP/1.1\r\nHost: b\r\nConnection: Host\r\n\r\n";
    assert!(rewrite(head).unwrap().1.starts_with("GET /?q HTTP/1.1\r\n"));
}

#[test]
fn unroutable_targets_are_refused() {
    for (target, reason) in [
        ("http://u@a/", "userinfo in the request target"),
        ("*", "`*` target without OPTIONS"),
        ("/%zz", "invalid percent-encoding in the request path"),
        ("/a#b", "fragment in the request target"),
    ] {
        let head = format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(rewrite(head.as_bytes()).unwrap_err(), RequestError::Bad(reason), "{target}");
    }
}

/// `base` (request line and fields, no final empty line) rewritten twice more, with a
/// `Connection: token` field after the fields and before them: weir writes the same head
/// and decides the same framing as without it.
fn assert_connection_token_ignored(base: &str, token: &str) {
    let (plain_info, plain) = rewrite(format!("{base}\r\n").as_bytes()).unwrap();
    let (line, fields) = base.split_once("\r\n").unwrap();
    for variant in
        [token.to_string(), token.to_ascii_lowercase(), format!("close, {token}, X-Other")]
    {
        let after = format!("{base}Connection: {variant}\r\n\r\n");
        let before = format!("{line}\r\nConnection: {variant}\r\n{fields}\r\n");
        for head in [after, before] {
            let (info, out) = rewrite(head.as_bytes()).unwrap();
            assert_eq!(out, plain, "{head:?}");
            assert_eq!(info.body, plain_info.body, "{head:?}");
            assert_eq!(info.expect_continue, plain_info.expect_continue, "{head:?}");
            assert_eq!(info.upgrade, plain_info.upgrade, "{head:?}");
            assert_eq!(info.host.map(|h| head[h].to_string()), Some("a".into()), "{head:?}");
        }
    }
}

#[test]
fn connection_cannot_remove_content_length() {
    assert_connection_token_ignored(
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n",
        "Content-Length",
    );
}

#[test]
fn connection_cannot_remove_transfer_encoding() {
    let base = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n";
    assert_connection_token_ignored(base, "Transfer-Encoding");
}

#[test]
fn connection_cannot_remove_host() {
    assert_connection_token_ignored("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n", "Host");
}

#[test]
fn connection_naming_te_still_removes_it_as_hop_by_hop() {
    assert_connection_token_ignored("GET / HTTP/1.1\r\nHost: a\r\nTE: trailers\r\n", "TE");
}

#[test]
fn connection_naming_upgrade_keeps_it_for_an_upgrade() {
    let base = "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n";
    assert_connection_token_ignored(base, "Upgrade");
}

#[test]
fn connection_cannot_remove_x_forwarded_for() {
    let base = "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1\r\n";
    assert_connection_token_ignored(base, "X-Forwarded-For");
}

#[test]
fn connection_cannot_remove_x_forwarded_proto_or_host() {
    let base = "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-Proto: https\r\n";
    assert_connection_token_ignored(base, "X-Forwarded-Proto");
    let base = "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-Host: b\r\n";
    assert_connection_token_ignored(base, "X-Forwarded-Host");
}

#[test]
fn connection_naming_connection_or_keep_alive_changes_nothing() {
    let base = "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nKeep-Alive: 5\r\n";
    for token in ["Connection", "Keep-Alive", "Proxy-Connection"] {
        assert_connection_token_ignored(base, token);
    }
}

#[test]
fn connection_cannot_remove_expect() {
    let base = "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n";
    assert_connection_token_ignored(base, "Expect");
}

#[test]
fn content_length_goes_upstream_as_one_plain_value() {
    for fields in [
        "Content-Length: 5, 5",
        "Content-Length: 5\r\ncontent-length: 5, 5",
        "Content-Length: 5 , 5\r\nX-A: 1\r\nContent-Length: 5",
        "Content-Length: 005",
    ] {
        let head = format!("POST / HTTP/1.1\r\nHost: a\r\n{fields}\r\n\r\n");
        let (info, out) = rewrite(head.as_bytes()).unwrap();
        assert_eq!(info.body, BodyKind::Length(5));
        let lengths = crate::http1::field_lines(&out, "Content-Length");
        assert_eq!(lengths.len(), 1, "{out:?}");
        assert!(lengths[0].eq_ignore_ascii_case("content-length: 5"), "{out:?}");
    }
}

#[test]
fn transfer_encoding_goes_upstream_as_exactly_chunked() {
    for field in [
        "Transfer-Encoding: Chunked",
        "transfer-encoding:   chunked  ",
        "Transfer-Encoding:chunked",
    ] {
        let head = format!("POST / HTTP/1.1\r\nHost: a\r\n{field}\r\nX-A: 1\r\n\r\n");
        let (info, out) = rewrite(head.as_bytes()).unwrap();
        assert_eq!(info.body, BodyKind::Chunked);
        let codings = crate::http1::field_lines(&out, "Transfer-Encoding");
        assert_eq!(codings.len(), 1, "{out:?}");
        let line = codings[0];
        assert!(line.eq_ignore_ascii_case("Transfer-Encoding: chunked"), "{out:?}");
        assert!(line.ends_with(": chunked"), "{out:?}");
    }
}

#[test]
fn codings_besides_chunked_are_not_implemented() {
    for codings in ["gzip, chunked", "identity, chunked", "gzip\r\nTransfer-Encoding: chunked"] {
        let head = format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {codings}\r\n\r\n");
        let error = rewrite(head.as_bytes()).unwrap_err();
        assert_eq!(error.status().0, 501, "{codings}");
    }
}

#[test]
fn underscore_spellings_of_framing_and_forwarding_fields_are_refused() {
    // CGI/WSGI backends (and old gunicorn) read `_` as `-`: `Transfer_Encoding: chunked`
    // next to a Content-Length weir frames by would be chunked to them (desync).
    let names = [
        "Transfer_Encoding",
        "content_length",
        "X_Forwarded_For",
        "x_forwarded-proto",
        "X-Forwarded_Host",
        "Keep_Alive",
        "Proxy_Connection",
    ];
    for name in names {
        let head = format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n{name}: 1\r\n\r\n");
        let error = rewrite(head.as_bytes()).unwrap_err();
        assert_eq!(
            error,
            RequestError::Bad("underscore in a framing or forwarding field name"),
            "{name}"
        );
    }
    // Other underscore names pass byte for byte, whatever their length.
    let head = b"GET / HTTP/1.1\r\nHost: a\r\nX_Api_Key: k\r\nContent_Lengthy: 1\r\n\
Transfer_Encodin_: 2\r\nX_Forwarded_Fo: 3\r\n\r\n";
    let (_, out) = rewrite(head).unwrap();
    for line in ["X_Api_Key: k", "Content_Lengthy: 1", "Transfer_Encodin_: 2", "X_Forwarded_Fo: 3"]
    {
        assert!(out.contains(&format!("\r\n{line}\r\n")), "{line}: {out}");
    }
}

#[test]
fn only_a_websocket_upgrade_is_an_upgrade() {
    // Any other protocol (h2c, ...) would open a tunnel past routing and the access log:
    // it goes as a plain request, without `Upgrade` and the `upgrade` option.
    for upgrade in ["h2c", "websocket, h2c", "TLS/1.0", "websocket/13", ""] {
        let head = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: {upgrade}\r\n\
Connection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n"
        );
        let (info, out) = rewrite(head.as_bytes()).unwrap();
        assert!(!info.upgrade, "{upgrade}");
        assert_eq!(
            out,
            "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 10.1.2.3\r\n\
X-Forwarded-Proto: http\r\nX-Forwarded-Host: a\r\n\r\n",
            "{upgrade}"
        );
    }
    let two = b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nUpgrade: h2c\r\n\
Connection: upgrade\r\n\r\n";
    assert!(!rewrite(two).unwrap().0.upgrade);
    for websocket in ["websocket", "WebSocket", " WEBSOCKET "] {
        let head = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nUpgrade:{websocket}\r\nConnection: upgrade\r\n\r\n"
        );
        let (info, out) = rewrite(head.as_bytes()).unwrap();
        assert!(info.upgrade && out.contains("Connection: upgrade\r\n"), "{websocket}");
    }
}

#[test]
fn the_name_filter_holds_content_type_in_any_spelling() {
    // The gRPC check (`proxy::forward::ending_of`) skips heads whose filter rules out
    // `Content-Type`; it must never rule it out when the field is there, however the
    // client spelled it, or a gRPC call would lose its deadline and its gRPC errors.
    for name in ["content-type", "Content-Type", "CONTENT-TYPE"] {
        let head = format!("POST /pkg.Svc/Call HTTP/1.1\r\nHost: a\r\n{name}: application/grpc\r\nTE: trailers\r\nContent-Length: 0\r\n\r\n");
        let (info, _) = rewrite(head.as_bytes()).unwrap();
        assert!(info.names.may_hold(b"content-type"), "{name}");
    }
    let (info, _) = rewrite(b"GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n").unwrap();
    assert!(!info.names.may_hold(b"content-type"), "a GET without one is ruled out");
}
