use super::*;

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("test address")
}

fn complete(buf: &[u8]) -> Header {
    match parse(buf) {
        Ok(Parsed::Complete(header)) => header,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
    }
}

/// A v2 header: version/command, family, then the payload.
fn v2(command: u8, family: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.extend_from_slice(&[command, family]);
    out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

const V4_PAYLOAD: [u8; 12] = [203, 0, 113, 7, 10, 0, 0, 1, 0x30, 0x39, 0x1f, 0x90];

#[test]
fn v1_tcp4_tcp6_and_unknown() {
    let line = b"PROXY TCP4 203.0.113.7 10.0.0.1 12345 8080\r\nGET / HTTP/1.1\r\n";
    let header = complete(line);
    assert_eq!(header.len, 44);
    assert_eq!(header.addresses, Some((addr("203.0.113.7:12345"), addr("10.0.0.1:8080"))));
    let header = complete(b"PROXY TCP6 2001:db8::7 ::1 65535 0\r\n");
    assert_eq!(header.addresses, Some((addr("[2001:db8::7]:65535"), addr("[::1]:0"))));
    assert_eq!(complete(b"PROXY UNKNOWN\r\n"), Header { len: 15, addresses: None });
    let unknown = b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n";
    assert_eq!(complete(unknown), Header { len: unknown.len(), addresses: None });
}

#[test]
fn v1_at_the_longest_allowed_length() {
    let src = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    let line = format!("PROXY UNKNOWN {src} {src} 65535 65535\r\n");
    assert_eq!(line.len(), V1_MAX_LEN);
    assert_eq!(complete(line.as_bytes()).len, V1_MAX_LEN);
}

#[test]
fn every_v1_prefix_is_partial() {
    let line = b"PROXY TCP4 203.0.113.7 10.0.0.1 12345 8080\r\n";
    for end in 1..line.len() {
        assert_eq!(parse(&line[..end]), Ok(Parsed::Partial), "{end}");
    }
}

#[test]
fn malformed_v1_lines_are_refused() {
    for line in [
        &b"PROXY TCP4 203.0.113.7 10.0.0.1 12345\r\n"[..],
        b"PROXY TCP4 203.0.113.7 10.0.0.1 12345 8080 extra\r\n",
        b"PROXY TCP4 203.0.113.7  10.0.0.1 12345 8080\r\n",
        b"PROXY TCP4 203.0.113.7 10.0.0.1 12345 8080\n",
        b"PROXY TCP4 2001:db8::1 10.0.0.1 1 2\r\n",
        b"PROXY TCP6 203.0.113.7 ::1 1 2\r\n",
        b"PROXY TCP4 203.0.113.07 10.0.0.1 1 2\r\n",
        b"PROXY TCP4 203.0.113.7 10.0.0.1 65536 2\r\n",
        b"PROXY TCP4 203.0.113.7 10.0.0.1 012 2\r\n",
        b"PROXY TCP4 203.0.113.7 10.0.0.1 +1 2\r\n",
        b"PROXY UDP4 203.0.113.7 10.0.0.1 1 2\r\n",
        b"PROXY UNKNOWNX\r\n",
        b"PROXY TCP4 1.2.3.4\r5.6.7.8",
        b"PROXY TCP4 1.2.3.4\x00",
        b"PROXY \r\n",
    ] {
        assert_eq!(parse(line), Err(Error::Malformed), "{:?}", String::from_utf8_lossy(line));
    }
}

#[test]
fn a_v1_line_without_end_is_too_long_at_the_bound() {
    let mut line = b"PROXY UNKNOWN ".to_vec();
    line.resize(V1_MAX_LEN - 1, b'a');
    assert_eq!(parse(&line), Ok(Parsed::Partial));
    line.push(b'a');
    assert_eq!(parse(&line), Err(Error::TooLong));
    // A line end just past the bound does not rescue it.
    line.extend_from_slice(b"\r\n");
    assert_eq!(parse(&line), Err(Error::TooLong));
}

#[test]
fn anything_else_is_missing() {
    for start in
        [&b"GET / HTTP/1.1\r\n"[..], b"\x16\x03\x01", b"PRI * HTTP/2.0", b"proxy ", b"\r\n\r\nX"]
    {
        assert_eq!(parse(start), Err(Error::Missing), "{start:?}");
    }
    assert_eq!(parse(b"PRO"), Ok(Parsed::Partial));
    assert_eq!(parse(b"\r\n\r\n"), Ok(Parsed::Partial));
}

#[test]
fn v2_inet_and_inet6_with_tlvs_skipped() {
    let header = complete(&v2(0x21, 0x11, &V4_PAYLOAD));
    assert_eq!(header.len, 28);
    assert_eq!(header.addresses, Some((addr("203.0.113.7:12345"), addr("10.0.0.1:8080"))));
    let mut payload = V4_PAYLOAD.to_vec();
    // Two TLVs (ALPN "h2", an empty NOOP), then bytes after the header.
    payload.extend_from_slice(&[0x01, 0, 2, b'h', b'2', 0x04, 0, 0]);
    let mut bytes = v2(0x21, 0x11, &payload);
    bytes.extend_from_slice(b"GET");
    assert_eq!(complete(&bytes).len, bytes.len() - 3);
    let mut payload = [0u8; 36];
    payload[15] = 7;
    payload[31] = 1;
    payload[32..].copy_from_slice(&[0, 80, 1, 187]);
    let header = complete(&v2(0x21, 0x21, &payload));
    assert_eq!(header.addresses, Some((addr("[::7]:80"), addr("[::1]:443"))));
}

#[test]
fn v2_local_unspec_and_unix_keep_the_connection_addresses() {
    assert_eq!(complete(&v2(0x20, 0x00, &[])).addresses, None);
    // LOCAL ignores the family and skips the payload.
    assert_eq!(complete(&v2(0x20, 0x11, &V4_PAYLOAD)).addresses, None);
    assert_eq!(complete(&v2(0x20, 0x99, &[1, 2, 3])).addresses, None);
    assert_eq!(complete(&v2(0x21, 0x00, &[])).addresses, None);
    assert_eq!(complete(&v2(0x21, 0x31, &[0; 216])).addresses, None);
}

#[test]
fn every_v2_prefix_is_partial() {
    let mut payload = V4_PAYLOAD.to_vec();
    payload.extend_from_slice(&[0x01, 0, 2, b'h', b'2']);
    let bytes = v2(0x21, 0x11, &payload);
    for end in 1..bytes.len() {
        assert_eq!(parse(&bytes[..end]), Ok(Parsed::Partial), "{end}");
    }
}

#[test]
fn bad_v2_headers_are_refused() {
    assert_eq!(parse(&v2(0x11, 0x11, &V4_PAYLOAD)), Err(Error::Malformed), "version 1");
    assert_eq!(parse(&v2(0x22, 0x11, &V4_PAYLOAD)), Err(Error::Malformed), "command 2");
    assert_eq!(parse(&v2(0x21, 0x13, &V4_PAYLOAD)), Err(Error::Malformed), "protocol 3");
    assert_eq!(parse(&v2(0x21, 0x41, &V4_PAYLOAD)), Err(Error::Malformed), "family 4");
    assert_eq!(parse(&v2(0x21, 0x11, &V4_PAYLOAD[..11])), Err(Error::Malformed), "short");
    assert_eq!(parse(&v2(0x21, 0x21, &V4_PAYLOAD)), Err(Error::Malformed), "short inet6");
    assert_eq!(parse(&v2(0x21, 0x12, &V4_PAYLOAD)), Err(Error::Unsupported), "UDP");
    assert_eq!(parse(&v2(0x21, 0x32, &[0; 216])), Err(Error::Unsupported), "unix datagram");
    let mut payload = V4_PAYLOAD.to_vec();
    payload.extend_from_slice(&[0x01, 0, 9, b'h']);
    assert_eq!(parse(&v2(0x21, 0x11, &payload)), Err(Error::Malformed), "TLV past the end");
    payload.truncate(14);
    assert_eq!(parse(&v2(0x21, 0x11, &payload)), Err(Error::Malformed), "half a TLV");
    let mut signature = V2_SIGNATURE;
    signature[11] = b'X';
    assert_eq!(parse(&signature), Err(Error::Missing), "signature");
}

#[test]
fn a_v2_length_over_the_bound_is_refused_before_the_payload() {
    let mut bytes = V2_SIGNATURE.to_vec();
    let len = (V2_MAX_PAYLOAD + 1) as u16;
    bytes.extend_from_slice(&[0x21, 0x11]);
    bytes.extend_from_slice(&len.to_be_bytes());
    assert_eq!(parse(&bytes), Err(Error::TooLong));
    let largest =
        v2(0x21, 0x11, &[V4_PAYLOAD.as_slice(), &[0x04, 0x03, 0xf1], &[0; 1009]].concat());
    assert_eq!(complete(&largest).len, MAX_HEADER_LEN);
}

#[test]
fn a_repeated_header_is_told_from_http() {
    assert_eq!(begins_header(b"PROXY TCP4"), Some(true));
    assert_eq!(begins_header(&V2_SIGNATURE), Some(true));
    assert_eq!(begins_header(b"PRO"), None);
    assert_eq!(begins_header(b"\r\n\r\n\0"), None);
    assert_eq!(begins_header(b"POST / HTTP/1.1"), Some(false));
    assert_eq!(begins_header(b"PROXX"), Some(false));
}

#[test]
fn written_headers_parse_back() {
    let cases = [
        ("203.0.113.7:40000", "10.0.0.1:8080", "203.0.113.7:40000", "10.0.0.1:8080"),
        ("[2001:db8::7]:1", "[::1]:2", "[2001:db8::7]:1", "[::1]:2"),
        ("[::ffff:203.0.113.7]:1", "10.0.0.1:2", "203.0.113.7:1", "10.0.0.1:2"),
        // Written mapped into IPv6 beside an IPv6 destination; read back as the IPv4
        // client it names.
        ("203.0.113.7:1", "[::1]:2", "203.0.113.7:1", "[::1]:2"),
    ];
    for version in [Version::V1, Version::V2] {
        for (src, dst, want_src, want_dst) in cases {
            let mut out = Vec::new();
            write(&mut out, version, addr(src), addr(dst));
            let header = complete(&out);
            assert_eq!(header.len, out.len());
            assert_eq!(header.addresses, Some((addr(want_src), addr(want_dst))), "{version:?}");
        }
    }
    let mut out = Vec::new();
    write(&mut out, Version::V1, addr("203.0.113.7:40000"), addr("10.0.0.1:8080"));
    assert_eq!(out, b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 8080\r\n");
}

#[test]
fn an_unknown_line_with_control_bytes_is_refused_whole_or_in_parts() {
    // Found by the fuzz target: accepted whole, refused when its prefix came first, so
    // weir's verdict depended on how the bytes were split.
    let line = b"PROXY UNKNOWN \0P R\r\n";
    assert_eq!(parse(line), Err(Error::Malformed));
    assert_eq!(parse(&line[..15]), Err(Error::Malformed));
    assert_eq!(parse(b"PROXY UNKNOWN a\rb\r\n"), Err(Error::Malformed));
}

#[test]
fn ipv4_mapped_addresses_are_their_ipv4_clients_and_write_back_the_same() {
    // The fuzz target's round trip found it: parsed as IPv6, written as IPv4.
    let line = b"PROXY TCP6 ::ffff:1.2.3.4 ::ffff:5.6.7.8 1 2\r\n";
    let want = Some((addr("1.2.3.4:1"), addr("5.6.7.8:2")));
    assert_eq!(complete(line).addresses, want);
    let mut payload = [0u8; 36];
    payload[10..12].copy_from_slice(&[0xff, 0xff]);
    payload[12..16].copy_from_slice(&[1, 2, 3, 4]);
    payload[26..28].copy_from_slice(&[0xff, 0xff]);
    payload[28..32].copy_from_slice(&[5, 6, 7, 8]);
    payload[32..36].copy_from_slice(&[0, 1, 0, 2]);
    assert_eq!(complete(&v2(0x21, 0x21, &payload)).addresses, want);
}
