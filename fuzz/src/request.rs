//! The request target: what weir forwards upstream must be exactly the message weir
//! decided it was, read by the strict [`oracle`](crate::oracle).

use weir::cidr::Cidr;
use weir::http1::forwarded::Trust;
use weir::http1::request::{self, Forwarding, RequestInfo};
use weir::http1::{BodyKind, Parsed};

use crate::oracle::{self, Framing, Head, Start};
use crate::{forwarded_body, Body};

/// The client address weir appends to `X-Forwarded-For`.
pub const CLIENT_IP: &[u8] = b"192.0.2.7";

/// Most fields per head: weir's default `max_headers` order, so heads of any shape the
/// fuzzer makes up are parsed rather than refused for size.
const MAX_HEADERS: usize = 100;

/// Runs one input: a request head, then whatever body bytes follow it.
pub fn check(data: &[u8]) {
    let forwarding = Forwarding {
        client_ip: CLIENT_IP,
        proto: b"http",
        max_headers: MAX_HEADERS,
        trust: Trust::Everyone,
    };
    let mut out = Vec::new();
    let parsed = request::parse(data, &forwarding, &mut out);
    check_trust(data, &forwarding, &out);
    let info = match parsed {
        Ok(Parsed::Complete(info)) => info,
        Ok(Parsed::Partial) => return,
        Err(_) => {
            assert!(out.is_empty(), "a refused request left a head to forward");
            return;
        }
    };
    assert!(info.head_len <= data.len());
    let head = match oracle::request_head(&out) {
        Ok(head) => head,
        Err(e) => panic!("forwarded head does not parse: {e:?}\n{}", show(&out)),
    };
    assert_eq!(head.len, out.len(), "forwarded head has bytes after its end\n{}", show(&out));
    let framing = oracle::request_framing(&head)
        .unwrap_or_else(|e| panic!("forwarded framing is ambiguous: {e:?}\n{}", show(&out)));
    check_head(data, &info, &head, framing, &out);
    check_body(data, &info, framing, &out);
}

/// Method, target, framing decision and the fields weir must set or keep.
fn check_head(data: &[u8], info: &RequestInfo, head: &Head, framing: Framing, out: &[u8]) {
    let Start::Request { method, target } = &head.start else { unreachable!() };
    // RFC 9112 §2.2: empty lines before the request line are ignored.
    let line_start = data.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(0);
    let sent_method = data[line_start..].split(|&b| b == b' ').next().unwrap_or_default();
    assert_eq!(method.as_slice(), sent_method, "method changed\n{}", show(out));
    let received = &data[info.target.clone()];
    let (origin, authority) = expected_target(sent_method, received);
    assert_eq!(target.as_slice(), origin.as_slice(), "target changed\n{}", show(out));
    let expected = match info.body {
        BodyKind::Empty => matches!(framing, Framing::None | Framing::Length(0)),
        BodyKind::Length(n) => framing == Framing::Length(n),
        BodyKind::Chunked => framing == Framing::Chunked,
        BodyKind::UntilClose => false,
    };
    assert!(expected, "weir framed {:?}, forwards {framing:?}\n{}", info.body, show(out));
    let hosts: Vec<&[u8]> = head.values("host").collect();
    match (authority, &info.host) {
        (Some(authority), _) => {
            assert_eq!(hosts, [authority], "Host is not the target's authority\n{}", show(out));
        }
        (None, Some(range)) => {
            let sent = oracle::trim(&data[range.clone()]);
            assert_eq!(hosts, [sent], "Host not forwarded as received\n{}", show(out));
        }
        (None, None) => assert_eq!(head.count("host"), 0, "a Host appeared\n{}", show(out)),
    }
    let last_for = head.values("x-forwarded-for").last().unwrap_or_else(|| {
        panic!("no X-Forwarded-For\n{}", show(out));
    });
    let appended = oracle::trim(last_for.rsplit(|&b| b == b',').next().unwrap_or_default());
    assert_eq!(appended, CLIENT_IP, "X-Forwarded-For lost the client\n{}", show(out));
    for hop in ["te", "keep-alive", "proxy-connection"] {
        assert_eq!(head.count(hop), 0, "hop-by-hop {hop} forwarded\n{}", show(out));
    }
    let connection: Vec<&[u8]> = head.values("connection").collect();
    let upgrade: &[&[u8]] = if info.upgrade { &[b"upgrade"] } else { &[] };
    assert_eq!(connection, upgrade, "Connection is not weir's own\n{}", show(out));
    assert_eq!(head.count("upgrade") > 0, info.upgrade, "Upgrade mismatch\n{}", show(out));
    // A backend that reads `_` as `-` (CGI, WSGI) must not find a second framing or
    // forwarding field under another spelling.
    for (name, _) in &head.fields {
        let dashed: Vec<u8> =
            name.iter().map(|&b| if b == b'_' { b'-' } else { b.to_ascii_lowercase() }).collect();
        let guarded = [
            &b"content-length"[..],
            b"transfer-encoding",
            b"keep-alive",
            b"proxy-connection",
            b"x-forwarded-for",
            b"x-forwarded-proto",
            b"x-forwarded-host",
        ];
        let spelled = name.contains(&b'_') && guarded.contains(&dashed.as_slice());
        assert!(!spelled, "an underscore spelling went upstream\n{}", show(out));
    }
}

/// The other `X-Forwarded-For` treatments against the default's output `everyone`: a
/// trusted proxy's request goes byte for byte the same; an untrusted peer's has exactly
/// one `X-Forwarded-For`, naming the peer, and its framing is unchanged.
fn check_trust(data: &[u8], everyone: &Forwarding<'_>, expected: &[u8]) {
    let trusted = [Cidr::parse("0.0.0.0/0").expect("block"), Cidr::parse("::/0").expect("block")];
    let mut out = Vec::new();
    let proxy = Forwarding { trust: Trust::Proxy(&trusted), ..*everyone };
    let _ = request::parse(data, &proxy, &mut out);
    assert_eq!(out, expected, "a trusted proxy's request went differently\n{}", show(&out));
    let replace = Forwarding { trust: Trust::Replace, ..*everyone };
    let Ok(Parsed::Complete(_)) = request::parse(data, &replace, &mut out) else {
        return;
    };
    let head = oracle::request_head(&out)
        .unwrap_or_else(|e| panic!("replaced head does not parse: {e:?}\n{}", show(&out)));
    let forwarded: Vec<&[u8]> = head.values("x-forwarded-for").collect();
    assert_eq!(forwarded, [CLIENT_IP], "X-Forwarded-For not replaced\n{}", show(&out));
    let before = oracle::request_head(expected).ok().and_then(|h| oracle::request_framing(&h).ok());
    assert_eq!(before, oracle::request_framing(&head).ok(), "framing changed\n{}", show(&out));
}

/// The target an origin server must get for `target` (RFC 9112 §3.2.2), worked out
/// here rather than taken from weir: an absolute-form target loses its scheme and
/// authority (an empty path becomes `/`, or `*` for OPTIONS), and the authority goes in
/// `Host`; any other target goes as received.
fn expected_target<'t>(method: &[u8], target: &'t [u8]) -> (Vec<u8>, Option<&'t [u8]>) {
    let lower = target.to_ascii_lowercase();
    let Some(scheme) = [&b"http://"[..], b"https://"].into_iter().find(|s| lower.starts_with(s))
    else {
        return (target.to_vec(), None);
    };
    let rest = &target[scheme.len()..];
    let end = rest.iter().position(|&b| b == b'/' || b == b'?').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let origin = match path.first() {
        Some(b'/') => path.to_vec(),
        Some(_) => [&b"/"[..], path].concat(),
        None if method == b"OPTIONS" => b"*".to_vec(),
        None => b"/".to_vec(),
    };
    (origin, Some(authority))
}

/// The head and the body as weir frames it read as exactly one message.
fn check_body(data: &[u8], info: &RequestInfo, framing: Framing, out: &[u8]) {
    let Body::Whole { bytes, payload } = forwarded_body(info.body, &data[info.head_len..]) else {
        // Not all there, too long to make up, or refused mid-body (weir then closes the
        // upstream connection): the head alone was checked.
        return;
    };
    let wire = [out, &bytes].concat();
    let message = oracle::request(&wire)
        .unwrap_or_else(|e| panic!("forwarded request does not parse: {e:?}\n{}", show(&wire)));
    assert_eq!(message.framing, framing);
    assert_eq!(message.len, wire.len(), "forwarded bytes are not one message\n{}", show(&wire));
    assert_eq!(message.body_len, payload, "body length differs\n{}", show(&wire));
}

/// Bytes as escaped text, for failure messages.
pub fn show(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}
