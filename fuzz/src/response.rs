//! The response target: what weir sends a client must be exactly the response weir
//! decided it was, read by the strict [`oracle`](crate::oracle).

use weir::http1::response::{self, Exchange, ResponseInfo};
use weir::http1::{BodyKind, Parsed};

use crate::oracle::{self, Framing, Head, Start};
use crate::request::show;
use crate::{dechunk, forwarded_body, Body};

/// Most fields per head; see the request target.
const MAX_HEADERS: usize = 100;

/// The exchange an input's first byte describes, one flag a bit.
pub fn exchange(flags: u8) -> Exchange {
    Exchange {
        head_request: flags & 1 != 0,
        upgrade_requested: flags & 2 != 0,
        client_http10: flags & 4 != 0,
        close_client: flags & 8 != 0,
        max_headers: MAX_HEADERS,
        websocket_accept: None,
    }
}

/// Runs one input: a flags byte (see [`exchange`]), then a response head and body bytes.
pub fn check(data: &[u8]) {
    let Some((&flags, data)) = data.split_first() else { return };
    let exchange = exchange(flags);
    let mut out = Vec::new();
    let info = match response::parse(data, &exchange, &mut out) {
        Ok(Parsed::Complete(info)) => info,
        Ok(Parsed::Partial) => return,
        Err(_) => {
            assert!(out.is_empty(), "a refused response left a head to send");
            return;
        }
    };
    if out.is_empty() {
        assert!(info.is_interim() && exchange.client_http10, "no head for {info:?}");
        return;
    }
    let head = oracle::response_head(&out)
        .unwrap_or_else(|e| panic!("head sent does not parse: {e:?}\n{}", show(&out)));
    assert_eq!(head.len, out.len(), "head sent has bytes after its end\n{}", show(&out));
    let framing = oracle::response_framing(&head, exchange.head_request)
        .unwrap_or_else(|e| panic!("framing sent is ambiguous: {e:?}\n{}", show(&out)));
    check_head(&info, &head, framing, &out);
    if info.status != 101 {
        check_body(data, &info, framing, &out, exchange.head_request);
    }
}

/// Status, framing decision and weir's own connection handling.
fn check_head(info: &ResponseInfo, head: &Head, framing: Framing, out: &[u8]) {
    assert_eq!(head.start, Start::Response { status: info.status }, "status\n{}", show(out));
    let expected = match info.body {
        _ if info.status == 101 => framing == Framing::None,
        _ if info.dechunk => framing == Framing::UntilClose,
        BodyKind::Empty => matches!(framing, Framing::None | Framing::Length(0)),
        BodyKind::Length(n) => framing == Framing::Length(n),
        BodyKind::Chunked => framing == Framing::Chunked,
        BodyKind::UntilClose => framing == Framing::UntilClose,
    };
    assert!(expected, "weir framed {:?}, sends {framing:?}\n{}", info, show(out));
    for hop in ["te", "keep-alive", "proxy-connection"] {
        assert_eq!(head.count(hop), 0, "hop-by-hop {hop} sent\n{}", show(out));
    }
    let connection: Vec<&[u8]> = head.values("connection").collect();
    assert!(connection.len() <= 1, "more than one Connection\n{}", show(out));
    if info.status == 101 {
        assert_eq!(connection, [b"upgrade"], "101 without Connection: upgrade\n{}", show(out));
    } else if info.close_client && !info.is_interim() {
        assert_eq!(connection, [b"close"], "closing without saying so\n{}", show(out));
    }
    if framing == Framing::UntilClose {
        assert!(info.close_client, "a body until close on a kept connection\n{}", show(out));
    }
    let stray_upgrade = head.count("upgrade") > 0 && info.status != 101;
    assert!(!stray_upgrade, "Upgrade sent without a 101\n{}", show(out));
}

/// The head and the body as weir sends it read as exactly one response.
fn check_body(data: &[u8], info: &ResponseInfo, framing: Framing, out: &[u8], head: bool) {
    let rest = &data[info.head_len..];
    let body = if info.dechunk {
        // An HTTP/1.0 client gets the chunk data alone, delimited by the close.
        match dechunk(rest) {
            Some((_, data)) => Body::Whole { payload: data.len() as u64, bytes: data },
            None => Body::HeadOnly,
        }
    } else {
        forwarded_body(info.body, rest)
    };
    let Body::Whole { bytes, payload } = body else { return };
    let wire = [out, &bytes].concat();
    let message = oracle::response(&wire, head)
        .unwrap_or_else(|e| panic!("response sent does not parse: {e:?}\n{}", show(&wire)));
    assert_eq!(message.framing, framing);
    assert_eq!(message.len, wire.len(), "bytes sent are not one response\n{}", show(&wire));
    assert_eq!(message.body_len, payload, "body length differs\n{}", show(&wire));
}
