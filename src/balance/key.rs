//! Request keys for `consistent_hash`: the hash of a [`HashKey`] (`[pool.hash] key`) in a
//! request ([`hash_of`]), how to find it ([`cookie_value`], [`query_value`]) and the hash itself
//! ([`hash_bytes`]).
//!
//! The hash is XXH64 written out here, so it is identical on every platform, in every
//! process and across restarts: two weir instances given the same key send it to the
//! same backend. Nothing here allocates.

use std::net::IpAddr;

use crate::config::HashKey;

const P1: u64 = 0x9E37_79B1_85EB_CA87;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const P3: u64 = 0x1656_67B1_9E37_79F9;
const P4: u64 = 0x85EB_CA77_C2B2_AE63;
const P5: u64 = 0x27D4_EB2F_1656_67C5;

/// The stable 64-bit hash of `bytes`: XXH64 with seed 0.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    xxh64(bytes, 0)
}

fn read64(bytes: &[u8]) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(word)
}

fn read32(bytes: &[u8]) -> u64 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[..4]);
    u64::from(u32::from_le_bytes(word))
}

fn round(acc: u64, input: u64) -> u64 {
    acc.wrapping_add(input.wrapping_mul(P2)).rotate_left(31).wrapping_mul(P1)
}

fn merge(acc: u64, value: u64) -> u64 {
    (acc ^ round(0, value)).wrapping_mul(P1).wrapping_add(P4)
}

/// XXH64 of `bytes` with `seed`, as specified by its reference implementation.
pub fn xxh64(bytes: &[u8], seed: u64) -> u64 {
    let mut rest = bytes;
    let mut hash = if bytes.len() >= 32 {
        let mut v = [
            seed.wrapping_add(P1).wrapping_add(P2),
            seed.wrapping_add(P2),
            seed,
            seed.wrapping_sub(P1),
        ];
        while rest.len() >= 32 {
            for (lane, chunk) in v.iter_mut().zip(rest[..32].chunks_exact(8)) {
                *lane = round(*lane, read64(chunk));
            }
            rest = &rest[32..];
        }
        let hash = v[0]
            .rotate_left(1)
            .wrapping_add(v[1].rotate_left(7))
            .wrapping_add(v[2].rotate_left(12))
            .wrapping_add(v[3].rotate_left(18));
        v.iter().fold(hash, |hash, &lane| merge(hash, lane))
    } else {
        seed.wrapping_add(P5)
    };
    hash = hash.wrapping_add(bytes.len() as u64);
    while rest.len() >= 8 {
        hash ^= round(0, read64(rest));
        hash = hash.rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
        rest = &rest[8..];
    }
    if rest.len() >= 4 {
        hash ^= read32(rest).wrapping_mul(P1);
        hash = hash.rotate_left(23).wrapping_mul(P2).wrapping_add(P3);
        rest = &rest[4..];
    }
    for &byte in rest {
        hash ^= u64::from(byte).wrapping_mul(P5);
        hash = hash.rotate_left(11).wrapping_mul(P1);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(P2);
    hash ^= hash >> 29;
    hash = hash.wrapping_mul(P3);
    hash ^ (hash >> 32)
}

/// The value of cookie `name` in a `Cookie` header value (`a=1; b=2`), without surrounding
/// double quotes. Names are case-sensitive; the first match wins.
pub fn cookie_value<'a>(cookie_header: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    cookie_header.split(|&b| b == b';').find_map(|pair| {
        let pair = trim(pair);
        let eq = pair.iter().position(|&b| b == b'=')?;
        (trim(&pair[..eq]) == name).then(|| unquote(trim(&pair[eq + 1..])))
    })
}

/// The raw (not percent-decoded) value of query parameter `name` in a request target such
/// as `/p?a=1&b=2`. A parameter without `=` has the empty value; the first match wins.
pub fn query_value<'a>(target: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let target = target.split(|&b| b == b'#').next().unwrap_or_default();
    let query = &target[target.iter().position(|&b| b == b'?')? + 1..];
    query.split(|&b| b == b'&').find_map(|pair| match pair.iter().position(|&b| b == b'=') {
        Some(eq) => (&pair[..eq] == name).then(|| &pair[eq + 1..]),
        None => (pair == name).then_some(&pair[pair.len()..]),
    })
}

/// The path of a request target, without the query.
pub fn path_of(target: &[u8]) -> &[u8] {
    let end = target.iter().position(|&b| b == b'?' || b == b'#').unwrap_or(target.len());
    &target[..end]
}

fn trim(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

fn unquote(value: &[u8]) -> &[u8] {
    match value {
        [b'"', inner @ .., b'"'] => inner,
        _ => value,
    }
}

/// The hash of `key` in a request, or `None` when the request lacks it.
///
/// `header(name)` returns the value of the request header `name` (given lowercase),
/// and for `cookie:NAME` the value of the `Cookie` header; `target` is the
/// request-target; `client_ip` the client's address.
pub fn hash_of<'a>(
    key: &HashKey,
    target: &'a [u8],
    header: impl Fn(&[u8]) -> Option<&'a [u8]>,
    client_ip: IpAddr,
) -> Option<u64> {
    match key {
        HashKey::Header(name) => header(name.as_bytes()).map(hash_bytes),
        HashKey::Cookie(name) => {
            header(b"cookie").and_then(|c| cookie_value(c, name.as_bytes())).map(hash_bytes)
        }
        HashKey::Query(name) => query_value(target, name.as_bytes()).map(hash_bytes),
        HashKey::ClientIp => Some(match client_ip.to_canonical() {
            IpAddr::V4(ip) => hash_bytes(&ip.octets()),
            IpAddr::V6(ip) => hash_bytes(&ip.octets()),
        }),
        HashKey::Path => Some(hash_bytes(path_of(target))),
    }
}

#[cfg(test)]
#[path = "key_tests.rs"]
mod tests;
