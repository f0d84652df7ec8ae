use super::*;

/// A keep-alive HTTP/1.1 GET, no upgrade (also the proxy tests' plain exchange).
pub(crate) fn exchange() -> Exchange {
    Exchange {
        head_request: false,
        upgrade_requested: false,
        client_http10: false,
        close_client: false,
        max_headers: 100,
        websocket_accept: None,
    }
}

fn rewrite(head: &[u8], exchange: &Exchange) -> Result<(ResponseInfo, String), ResponseError> {
    let mut out = Vec::new();
    match parse(head, exchange, &mut out)? {
        Parsed::Complete(info) => Ok((info, String::from_utf8(out).unwrap())),
        Parsed::Partial => panic!("partial"),
    }
}

#[test]
fn framing_of_ordinary_responses() {
    let (info, out) =
        rewrite(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\n", &exchange()).unwrap();
    assert_eq!(info.body, BodyKind::Length(5));
    assert!(info.upstream_reusable && !info.close_client);
    assert_eq!(out, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\n");
    let (info, out) = rewrite(b"HTTP/1.1 200 OK\r\nX-A: b\r\n\r\n", &exchange()).unwrap();
    assert_eq!(info.body, BodyKind::UntilClose);
    assert!(!info.upstream_reusable && info.close_client);
    assert!(out.ends_with("Connection: close\r\n\r\n"));
}

#[test]
fn bodiless_statuses_and_head() {
    for head in [
        &b"HTTP/1.1 204 No Content\r\n\r\n"[..],
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
    ] {
        let (info, _) = rewrite(head, &exchange()).unwrap();
        assert_eq!(info.body, BodyKind::Empty);
        assert!(info.upstream_reusable);
    }
    let head_request = Exchange { head_request: true, ..exchange() };
    let (info, out) =
        rewrite(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", &head_request).unwrap();
    assert_eq!(info.body, BodyKind::Empty);
    assert!(out.contains("Content-Length: 9"));
}

#[test]
fn bad_framing_is_refused() {
    let cases: [&[u8]; 3] = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
    ];
    for case in cases {
        assert!(rewrite(case, &exchange()).is_err());
    }
    assert!(rewrite(b"HTTP/1.1 101 Switching\r\n\r\n", &exchange()).is_err());
}

#[test]
fn hop_by_hop_fields_are_removed() {
    let head = b"HTTP/1.1 200 OK\r\nConnection: X-Secret\r\nX-Secret: 1\r\nKeep-Alive: 3\r\nContent-Length: 0\r\n\r\n";
    let (_, out) = rewrite(head, &exchange()).unwrap();
    assert_eq!(out, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
}

#[test]
fn http10_clients_get_no_interim_and_no_chunked() {
    let old = Exchange { client_http10: true, ..exchange() };
    let (info, out) = rewrite(b"HTTP/1.1 100 Continue\r\n\r\n", &old).unwrap();
    assert!(info.is_interim() && out.is_empty());
    let (info, out) =
        rewrite(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", &old).unwrap();
    assert!(info.dechunk && info.close_client);
    assert!(!out.contains("Transfer-Encoding"));
}

#[test]
fn connection_named_fields_are_removed_wherever_they_stand() {
    // The named field comes before `Connection`, so the first pass has already written
    // it: the head is written again without it.
    let head = b"HTTP/1.1 200 OK\r\nX-Secret: 1\r\nX-A: a\r\nContent-Length: 2\r\n\
Content-Length: 2\r\nConnection: keep-alive, x-secret\r\nX-B: b\r\n\r\n";
    let (info, out) = rewrite(head, &exchange()).unwrap();
    assert_eq!(info.body, BodyKind::Length(2));
    assert!(info.upstream_reusable);
    assert_eq!(out, "HTTP/1.1 200 OK\r\nX-A: a\r\nContent-Length: 2\r\nX-B: b\r\n\r\n");
}

#[test]
fn identical_content_lengths_are_forwarded_once() {
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\ncontent-length: 4\r\nX-A: a\r\n\r\n";
    let (info, out) = rewrite(head, &exchange()).unwrap();
    assert_eq!(info.body, BodyKind::Length(4));
    assert_eq!(out, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nX-A: a\r\n\r\n");
}

#[test]
fn upgrade_is_forwarded_on_101_only() {
    let upgrade = Exchange { upgrade_requested: true, ..exchange() };
    let head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: x\r\n\r\n";
    let (info, out) = rewrite(head, &upgrade).unwrap();
    assert!(!info.upstream_reusable);
    assert_eq!(
        out,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: x\r\n\
Connection: upgrade\r\n\r\n"
    );
    let head = b"HTTP/1.1 200 OK\r\nUpgrade: h2c\r\nContent-Length: 0\r\n\r\n";
    let (_, out) = rewrite(head, &upgrade).unwrap();
    assert_eq!(out, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
}

#[test]
fn a_websocket_weir_keyed_needs_the_matching_accept_and_a_101() {
    // RFC 6455 §1.3's example key; weir sent it, so weir checks the answer.
    let accept = crate::http1::websocket::accept(b"dGhlIHNhbXBsZSBub25jZQ==");
    let keyed = Exchange { upgrade_requested: true, websocket_accept: Some(accept), ..exchange() };
    let head = |accept: &str| {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
{accept}\r\n"
        )
    };
    let good = head("Sec-WebSocket-Accept:  s3pPLMBiTxaQ9kYGzzhZRbK+xOo= \r\n");
    assert_eq!(rewrite(good.as_bytes(), &keyed).unwrap().0.status, 101);
    for bad in [
        "",
        "Sec-WebSocket-Accept: x\r\n",
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Accept: x\r\n",
    ] {
        assert!(rewrite(head(bad).as_bytes(), &keyed).is_err(), "{bad:?}");
    }
    // Its client would take a 2xx as the tunnel open; other statuses are relayed.
    for status in [200, 204, 299] {
        let head = format!("HTTP/1.1 {status} OK\r\nContent-Length: 0\r\n\r\n");
        assert!(rewrite(head.as_bytes(), &keyed).is_err(), "{status}");
    }
    let refused = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(rewrite(refused, &keyed).unwrap().0.status, 403);
}

#[test]
fn status_lines_weir_would_not_write_are_rebuilt() {
    let cases: [(&[u8], &str); 4] = [
        (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", "HTTP/1.1 200 OK\r\n"),
        (b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", "HTTP/1.1 200 \r\n"),
        (b"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n", "HTTP/1.1 200 OK\r\n"),
        (b"\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", "HTTP/1.1 404 Not Found\r\n"),
    ];
    for (head, status_line) in cases {
        let (_, out) = rewrite(head, &exchange()).unwrap();
        assert!(out.starts_with(status_line), "{out:?}");
        assert!(out.contains("\r\nContent-Length: 0\r\n"), "{out:?}");
    }
    // obs-text in a reason phrase: httparse hands back an empty reason.
    let (_, out) =
        rewrite(b"HTTP/1.1 200 \xffK\r\nContent-Length: 0\r\n\r\n", &exchange()).unwrap();
    assert!(out.starts_with("HTTP/1.1 200 \r\n"), "{out:?}");
}

#[test]
fn http10_clients_keep_transfer_encoding_of_bodiless_responses() {
    let old_head = Exchange { client_http10: true, head_request: true, ..exchange() };
    let (info, out) =
        rewrite(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", &old_head).unwrap();
    assert!(!info.dechunk);
    assert_eq!(
        out,
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"
    );
}

#[test]
fn refused_heads_leave_nothing_to_send() {
    let mut out = b"stale".to_vec();
    let head = b"HTTP/1.1 200 OK\r\nX-A: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n";
    assert!(parse(head, &exchange(), &mut out).is_err());
    assert!(out.is_empty());
}

#[test]
fn a_status_code_under_100_is_a_bad_response() {
    // httparse takes any three digits; weir neither relays nor panics on such a code
    // (it once hit a debug assertion) and the client gets a 502.
    for head in [&b"HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n"[..], b"HTTP/1.1 000 \r\n\r\n"] {
        let error = rewrite(head, &exchange()).unwrap_err();
        assert_eq!(error, ResponseError("invalid status code from upstream"));
    }
    // An unregistered but three-digit code such as 999 still passes, as before.
    assert!(rewrite(b"HTTP/1.1 999 X\r\nContent-Length: 0\r\n\r\n", &exchange()).is_ok());
}

/// `base` (status line and fields, no final empty line) parsed again with a `Connection:
/// token` field after the fields and before them: the client gets the same head and weir
/// decides the same framing as without it.
fn assert_connection_token_ignored(base: &str, token: &str, exchange: &Exchange) {
    let (plain_info, plain) = rewrite(format!("{base}\r\n").as_bytes(), exchange).unwrap();
    let (line, fields) = base.split_once("\r\n").unwrap();
    for variant in [token.to_string(), token.to_ascii_lowercase(), format!("{token}, X-Other")] {
        let after = format!("{base}Connection: {variant}\r\n\r\n");
        let before = format!("{line}\r\nConnection: {variant}\r\n{fields}\r\n");
        for head in [after, before] {
            let (info, out) = rewrite(head.as_bytes(), exchange).unwrap();
            assert_eq!(out, plain, "{head:?}");
            assert_eq!(info.body, plain_info.body, "{head:?}");
            assert_eq!(info.upstream_reusable, plain_info.upstream_reusable, "{head:?}");
        }
    }
}

#[test]
fn connection_cannot_remove_content_length_from_a_response() {
    let base = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n";
    assert_connection_token_ignored(base, "Content-Length", &exchange());
}

#[test]
fn connection_cannot_remove_transfer_encoding_from_a_response() {
    let base = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n";
    assert_connection_token_ignored(base, "Transfer-Encoding", &exchange());
}

#[test]
fn connection_cannot_remove_upgrade_from_a_101() {
    let upgrade = Exchange { upgrade_requested: true, ..exchange() };
    let base = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n";
    assert_connection_token_ignored(base, "Upgrade", &upgrade);
}

#[test]
fn connection_naming_other_fields_weir_reads_changes_nothing() {
    let base = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nKeep-Alive: 5\r\nHost: h\r\n\
X-Forwarded-For: 1.1.1.1\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\nExpect: x\r\n";
    for token in [
        "Connection",
        "Keep-Alive",
        "Proxy-Connection",
        "TE",
        "Host",
        "X-Forwarded-For",
        "X-Forwarded-Proto",
        "X-Forwarded-Host",
        "Expect",
    ] {
        assert_connection_token_ignored(base, token, &exchange());
    }
}

#[test]
fn content_length_reaches_the_client_as_one_plain_value() {
    let head_request = Exchange { head_request: true, ..exchange() };
    for (fields, exchange) in [
        ("Content-Length: 5, 5", exchange()),
        ("Content-Length: 5\r\ncontent-length: 5, 5", exchange()),
        ("Content-Length: 05", exchange()),
        ("Content-Length: 5, 5", head_request),
    ] {
        let head = format!("HTTP/1.1 200 OK\r\n{fields}\r\nX-A: 1\r\n\r\n");
        let (_, out) = rewrite(head.as_bytes(), &exchange).unwrap();
        let lengths = crate::http1::field_lines(&out, "Content-Length");
        assert_eq!(lengths.len(), 1, "{out:?}");
        assert!(lengths[0].eq_ignore_ascii_case("content-length: 5"), "{out:?}");
    }
}

#[test]
fn bodiless_statuses_lose_their_framing_fields() {
    let upgrade = Exchange { upgrade_requested: true, ..exchange() };
    for head in [
        "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\nX-A: 1\r\n\r\n",
        "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        "HTTP/1.1 100 Continue\r\nContent-Length: 5\r\n\r\n",
        "HTTP/1.1 103 Early Hints\r\nTransfer-Encoding: chunked\r\nLink: </a>\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nContent-Length: 0\r\n\r\n",
    ] {
        let (info, out) = rewrite(head.as_bytes(), &upgrade).unwrap();
        assert_eq!(info.body, BodyKind::Empty, "{head:?}");
        let lower = out.to_ascii_lowercase();
        assert!(!lower.contains("content-length") && !lower.contains("transfer"), "{out:?}");
    }
}

#[test]
fn transfer_codings_are_checked_on_every_response_that_relays_them() {
    // Found by the response fuzz target: `@gzip, chunked` went to clients, and a HEAD
    // response relayed any Transfer-Encoding unread.
    let head = Exchange { head_request: true, ..exchange() };
    for (value, exchange) in [
        ("@gzip, chunked", exchange()),
        ("gzip;q=1, chunked", exchange()),
        ("ch\u{d1}uon)ked0", head),
        ("@gzip, chunked", head),
        ("gzip", head),
    ] {
        let response = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: {value}\r\n\r\n");
        assert!(rewrite(response.as_bytes(), &exchange).is_err(), "{value:?}");
    }
    let (info, out) =
        rewrite(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", &head).unwrap();
    assert_eq!(info.body, BodyKind::Empty);
    assert!(out.contains("Transfer-Encoding: gzip, chunked\r\n"), "{out}");
}
