//! Tests for request keys and the XXH64 hash.

use std::net::IpAddr;

use super::*;
use crate::config::HashKey;

#[test]
fn xxh64_matches_the_reference_vectors() {
    // Values from the reference implementation (python-xxhash, which wraps it).
    let long: Vec<u8> = (0..100).collect();
    let cases: [(&[u8], u64, u64); 6] = [
        (b"", 0xef46_db37_51d8_e999, 0x9558_4af7_701f_808d),
        (b"a", 0xd24e_c4f1_a98c_6e5b, 0x747b_8605_23d6_9ab6),
        (b"abc", 0x44bc_2cf5_ad77_0999, 0x0170_0e64_f6f2_3509),
        (b"Nobody inspects the spammish repetition", 0xfbce_a83c_8a37_8bf1, 0x081a_8764_28a9_313b),
        (
            b"0123456789abcdef0123456789abcdef0123456789abcdefXYZ",
            0x2068_b5be_32b6_d8dc,
            0x966e_3c46_6ec3_c793,
        ),
        (&long, 0x6ac1_e580_3216_6597, 0x028b_a1ae_2de4_de27),
    ];
    for (input, seed0, seed12345) in cases {
        assert_eq!(xxh64(input, 0), seed0, "{input:?}");
        assert_eq!(xxh64(input, 12345), seed12345, "{input:?}");
        assert_eq!(hash_bytes(input), seed0);
    }
}

#[test]
fn cookie_values() {
    let header = b"a=1; weir_affinity=\"0123456789abcdef\";b = 2 ;empty=; x";
    assert_eq!(cookie_value(header, b"a"), Some(&b"1"[..]));
    assert_eq!(cookie_value(header, b"weir_affinity"), Some(&b"0123456789abcdef"[..]));
    assert_eq!(cookie_value(header, b"b"), Some(&b"2"[..]));
    assert_eq!(cookie_value(header, b"empty"), Some(&b""[..]));
    assert_eq!(cookie_value(header, b"x"), None);
    assert_eq!(cookie_value(header, b"A"), None);
    assert_eq!(cookie_value(b"", b"a"), None);
    assert_eq!(cookie_value(b"a=1; a=2", b"a"), Some(&b"1"[..]));
}

#[test]
fn query_values() {
    assert_eq!(query_value(b"/p?user=7&x=1", b"user"), Some(&b"7"[..]));
    assert_eq!(query_value(b"/p?x=1&user=%41", b"user"), Some(&b"%41"[..]));
    assert_eq!(query_value(b"/p?flag&x=1", b"flag"), Some(&b""[..]));
    assert_eq!(query_value(b"/p?x=1#user=2", b"user"), None);
    assert_eq!(query_value(b"/p?users=1", b"user"), None);
    assert_eq!(query_value(b"/p", b"user"), None);
    assert_eq!(query_value(b"/user=1", b"user"), None);
    assert_eq!(path_of(b"/a/b?x=1"), b"/a/b");
    assert_eq!(path_of(b"/a/b"), b"/a/b");
}

#[test]
fn hash_key_extracts_from_a_request() {
    let ip: IpAddr = "203.0.113.9".parse().unwrap();
    let mapped: IpAddr = "::ffff:203.0.113.9".parse().unwrap();
    let header = |name: &[u8]| match name {
        b"x-user-id" => Some(&b"42"[..]),
        b"cookie" => Some(&b"sid=abc; other=1"[..]),
        _ => None,
    };
    let target = b"/cart?user=9";
    let key = |text: &str| hash_of(&HashKey::parse(text).unwrap(), target, header, ip);
    assert_eq!(key("header:X-User-Id"), Some(hash_bytes(b"42")));
    assert_eq!(key("header:x-missing"), None);
    assert_eq!(key("cookie:sid"), Some(hash_bytes(b"abc")));
    assert_eq!(key("cookie:none"), None);
    assert_eq!(key("query:user"), Some(hash_bytes(b"9")));
    assert_eq!(key("query:none"), None);
    assert_eq!(key("path"), Some(hash_bytes(b"/cart")));
    assert_eq!(key("client_ip"), Some(hash_bytes(&[203, 0, 113, 9])));
    assert_eq!(hash_of(&HashKey::ClientIp, target, header, mapped), key("client_ip"));
}
