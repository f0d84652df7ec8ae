//! Request header handling through weir, checked on the head the backend received
//! (`/echo-head`): hop-by-hop and Connection-named removal, Host passed through,
//! X-Forwarded-For/-Proto/-Host, a 300-byte header name, and duplicate order and case.

use crate::support::{send, Balancer, TestBackend};

/// One header field of a raw head: name and value bytes (value without OWS).
type Field = (Vec<u8>, Vec<u8>);

/// Splits a raw request head into its fields, in order (the request line is skipped).
fn fields(raw: &[u8]) -> Vec<Field> {
    let text = raw.strip_suffix(b"\r\n\r\n").expect("head ends in CRLFCRLF");
    text.split(|&b| b == b'\n')
        .skip(1)
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .map(|line| {
            let colon = line.iter().position(|&b| b == b':').expect("field has a colon");
            (line[..colon].to_vec(), line[colon + 1..].trim_ascii().to_vec())
        })
        .collect()
}

/// Values of every field named `name` (case-insensitive), as text.
fn values(fields: &[Field], name: &str) -> Vec<String> {
    fields
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .collect()
}

/// Sends `GET /echo-head` with `headers` (CRLF-terminated lines) and returns the fields
/// of the head the backend received.
async fn upstream_fields(weir: &Balancer, headers: &str) -> Vec<Field> {
    let req = format!("GET /echo-head HTTP/1.1\r\n{headers}\r\n");
    let resp = send(weir.addr(), req.as_bytes()).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    fields(&resp.body)
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed() {
    // Goal: hop-by-hop fields never reach the backend. Method: send Keep-Alive,
    // Proxy-Connection, TE and Connection with an end-to-end field; inspect /echo-head.
    let backend = TestBackend::start("b").await;
    let weir = Balancer::front(&backend);
    let headers = "Host: test\r\nKeep-Alive: timeout=5, max=100\r\n\
        Proxy-Connection: keep-alive\r\nTE: trailers\r\nConnection: keep-alive\r\n\
        X-End-To-End: yes\r\n";
    let got = upstream_fields(&weir, headers).await;
    for name in ["Keep-Alive", "Proxy-Connection", "TE", "Connection"] {
        assert!(values(&got, name).is_empty(), "{name} reached the backend: {got:?}");
    }
    assert_eq!(values(&got, "X-End-To-End"), ["yes"]);
}

#[tokio::test]
async fn connection_named_headers_are_removed() {
    // Goal: fields named in Connection are removed. Method: `Connection: X-Foo` with
    // X-Foo and X-Bar set; then a mixed-case list; X-Bar must still arrive.
    let backend = TestBackend::start("b").await;
    let weir = Balancer::front(&backend);
    let headers = "Host: test\r\nConnection: X-Foo\r\nX-Foo: secret\r\nX-Bar: keep\r\n";
    let got = upstream_fields(&weir, headers).await;
    assert!(values(&got, "X-Foo").is_empty(), "X-Foo reached the backend: {got:?}");
    assert_eq!(values(&got, "X-Bar"), ["keep"]);
    let headers = "Host: test\r\nx-foo: 1\r\nConnection: keep-alive, X-FOO\r\nX-Bar: 2\r\n";
    let got = upstream_fields(&weir, headers).await;
    assert!(values(&got, "X-Foo").is_empty(), "x-foo reached the backend: {got:?}");
    assert_eq!(values(&got, "X-Bar"), ["2"]);
}

#[tokio::test]
async fn host_is_passed_through_unchanged() {
    // Goal: Host reaches the backend byte for byte. Method: a Host with odd case and a
    // port; the backend must see exactly one Host with that value.
    let backend = TestBackend::start("b").await;
    let weir = Balancer::front(&backend);
    let got = upstream_fields(&weir, "Host: ExAmple.COM:8443\r\n").await;
    let hosts: Vec<&Field> = got.iter().filter(|(n, _)| n.eq_ignore_ascii_case(b"host")).collect();
    assert_eq!(hosts.len(), 1, "{got:?}");
    assert_eq!(hosts[0].1, b"ExAmple.COM:8443");
}

#[tokio::test]
async fn x_forwarded_for_is_created_or_appended() {
    // Goal: X-Forwarded-For gains the client address. Method: send none, one and two
    // existing values; the backend's combined value must end with 127.0.0.1.
    let backend = TestBackend::start("b").await;
    let weir = Balancer::front(&backend);
    let got = upstream_fields(&weir, "Host: test\r\n").await;
    assert_eq!(values(&got, "X-Forwarded-For"), ["127.0.0.1"]);
    let got = upstream_fields(&weir, "Host: test\r\nX-Forwarded-For: 203.0.113.7\r\n").await;
    assert_eq!(values(&got, "X-Forwarded-For"), ["203.0.113.7, 127.0.0.1"]);
    let two =
        "Host: test\r\nX-Forwarded-For: 1.1.1.1\r\nX-Other: o\r\nx-forwarded-for: 2.2.2.2\r\n";
    let got = upstream_fields(&weir, two).await;
    let combined = values(&got, "X-Forwarded-For").join(", ");
    assert_eq!(combined, "1.1.1.1, 2.2.2.2, 127.0.0.1", "{got:?}");
}

#[tokio::test]
async fn x_forwarded_proto_and_host_are_set() {
    // Goal: X-Forwarded-Proto is `http` and X-Forwarded-Host is the Host value, replacing
    // whatever the client sent. Method: send spoofed values; inspect /echo-head.
    let backend = TestBackend::start("b").await;
    let weir = Balancer::front(&backend);
    let got = upstream_fields(&weir, "Host: Shop.Example:81\r\n").await;
    assert_eq!(values(&got, "X-Forwarded-Proto"), ["http"]);
    assert_eq!(values(&got, "X-Forwarded-Host"), ["Shop.Example:81"]);
    let spoofed = "Host: shop.example\r\nX-Forwarded-Proto: https\r\n\
        X-Forwarded-Host: evil.example\r\n";
    let got = upstream_fields(&weir, spoofed).await;
    assert_eq!(values(&got, "X-Forwarded-Proto"), ["http"], "{got:?}");
    assert_eq!(values(&got, "X-Forwarded-Host"), ["shop.example"], "{got:?}");
}

#[tokio::test]
async fn long_header_name_arrives_intact() {
    // Goal: a 300-byte header name and its value pass byte for byte. Method: a name of
    // mixed-case token characters and a value with punctuation; find them upstream.
    let backend = TestBackend::start("b").await;
    let weir = Balancer::front(&backend);
    let alphabet = b"abcXYZ019-_.!#$%&'*+^`|~";
    let name: String = (0..300).map(|i| alphabet[i % alphabet.len()] as char).collect();
    let value = "v a=l;u\"e\" (x)/\t,y?".repeat(20);
    let got = upstream_fields(&weir, &format!("Host: test\r\n{name}: {value}\r\n")).await;
    let found: Vec<&Field> = got.iter().filter(|(n, _)| n.len() == 300).collect();
    assert_eq!(found.len(), 1, "300-byte name not found once: {got:?}");
    assert_eq!(found[0].0, name.as_bytes(), "name changed");
    assert_eq!(found[0].1, value.trim_ascii().as_bytes(), "value changed");
}

#[tokio::test]
async fn duplicate_headers_keep_order_and_case() {
    // Goal: repeated fields keep their order, interleaving and case. Method: send A: 1,
    // B: x, A: 2, a: 3 and compare the backend's A/B fields in order.
    let backend = TestBackend::start("b").await;
    let weir = Balancer::front(&backend);
    let headers = "Host: test\r\nA: 1\r\nB: x\r\nA: 2\r\na: 3\r\n";
    let got = upstream_fields(&weir, headers).await;
    let ab: Vec<(String, String)> = got
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(b"a") || n.eq_ignore_ascii_case(b"b"))
        .map(|(n, v)| (String::from_utf8_lossy(n).into(), String::from_utf8_lossy(v).into()))
        .collect();
    let want = [("A", "1"), ("B", "x"), ("A", "2"), ("a", "3")];
    let want: Vec<(String, String)> =
        want.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
    assert_eq!(ab, want);
}

#[tokio::test]
async fn http10_request_without_host_gets_a_host_upstream() {
    // Goal: an HTTP/1.1 request weir sends upstream always has a Host (RFC 9112 3.2),
    // even when an HTTP/1.0 client sent none. Method: `GET /echo-head HTTP/1.0` with no
    // Host; if the backend sees an HTTP/1.1 request line, it must see exactly one Host.
    let backend = TestBackend::start("b").await;
    let weir = Balancer::front(&backend);
    let resp = send(weir.addr(), b"GET /echo-head HTTP/1.0\r\n\r\n").await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let head = resp.text();
    let request_line = head.lines().next().unwrap_or("");
    if request_line.ends_with("HTTP/1.1") {
        let hosts = values(&fields(&resp.body), "Host");
        assert_eq!(hosts.len(), 1, "HTTP/1.1 request without exactly one Host: {head:?}");
        assert!(!hosts[0].is_empty(), "empty Host upstream: {head:?}");
    }
}
