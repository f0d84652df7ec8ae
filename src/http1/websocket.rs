//! The WebSocket opening handshake (RFC 6455 §4) as weir needs it when it is the
//! WebSocket client toward a backend: for a WebSocket over an HTTP/2 stream (RFC 8441)
//! the client sends no `Sec-WebSocket-Key` (§5 of RFC 8441), so weir makes one for the
//! HTTP/1.1 upgrade and checks the backend's `Sec-WebSocket-Accept` against it.

use ring::digest;

/// The GUID RFC 6455 §1.3 appends to the key before hashing.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A `Sec-WebSocket-Key`: 16 random bytes, base64 (24 characters).
pub type Key = [u8; 24];
/// A `Sec-WebSocket-Accept`: the SHA-1 of key and GUID, base64 (28 characters).
pub type Accept = [u8; 28];

/// A fresh key from the system's random source (RFC 6455 §4.1: "randomly selected").
/// Should that source fail, the thread's generator stands in: the key only has to be
/// new, so that an answer proves the backend read this handshake (RFC 6455 §10.3's
/// masking, where unpredictability matters, is the client's and not weir's).
pub fn new_key() -> Key {
    use ring::rand::SecureRandom;
    let mut nonce = [0u8; 16];
    if ring::rand::SystemRandom::new().fill(&mut nonce).is_err() {
        nonce[..8].copy_from_slice(&crate::rng::next_u64().to_le_bytes());
        nonce[8..].copy_from_slice(&crate::rng::next_u64().to_le_bytes());
    }
    let mut key = [0u8; 24];
    base64(&nonce, &mut key);
    key
}

/// The `Sec-WebSocket-Accept` a server must answer to `key`.
pub fn accept(key: &[u8]) -> Accept {
    let mut context = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    context.update(key);
    context.update(GUID);
    let mut out = [0u8; 28];
    base64(context.finish().as_ref(), &mut out);
    out
}

/// Standard base64 with padding of `input` into `out`, which is exactly long enough.
fn base64(input: &[u8], out: &mut [u8]) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    debug_assert_eq!(out.len(), input.len().div_ceil(3) * 4);
    for (chunk, quad) in input.chunks(3).zip(out.chunks_mut(4)) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        for (i, slot) in quad.iter_mut().enumerate() {
            *slot =
                if i <= chunk.len() { ALPHABET[(n >> (18 - 6 * i)) as usize & 63] } else { b'=' };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_is_the_rfc_6455_example() {
        assert_eq!(&accept(b"dGhlIHNhbXBsZSBub25jZQ=="), b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn keys_are_16_random_bytes_in_base64() {
        let (a, b) = (new_key(), new_key());
        assert_ne!(a, b);
        let in_alphabet = |c: &u8| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/';
        assert!(a.ends_with(b"==") && a[..22].iter().all(in_alphabet), "{a:?}");
        let mut short = [0u8; 4];
        base64(b"f", &mut short);
        assert_eq!(&short, b"Zg==");
        base64(b"fo", &mut short);
        assert_eq!(&short, b"Zm8=");
    }
}
