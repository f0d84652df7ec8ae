//! What a pool's strategy needs from a request (the hash key, the sticky cookie), and the
//! cookie handling around a sticky pick. Pools without a hash key or stickiness skip all
//! of it, so plain pools pay nothing.

use std::mem::MaybeUninit;
use std::net::IpAddr;

use crate::balance::key::cookie_value;
use crate::balance::PickRequest;
use crate::config::StickyConfig;
use crate::http1::fields;
use crate::http1::lines::push_field;
use crate::http1::HEADER_SLOTS;
use crate::snapshot::Pool;

/// Whether picks in `pool` look at the request at all.
pub fn needs_request(pool: &Pool) -> bool {
    pool.settings.hash.is_some() || pool.settings.sticky.is_some()
}

/// Reads the hash key and the sticky cookie from a request head that already passed
/// validation. `head` is the raw head, `target` its request target.
pub fn pick_request<'a>(
    pool: &Pool,
    head: &'a [u8],
    target: &'a [u8],
    client_ip: IpAddr,
) -> PickRequest<'a> {
    let mut slots = [MaybeUninit::<httparse::Header<'a>>::uninit(); HEADER_SLOTS];
    let mut request = httparse::Request::new(&mut []);
    // The head parsed once already, so this cannot fail; an error only means no fields.
    let headers: &[httparse::Header<'a>] = match request.parse_with_uninit_headers(head, &mut slots)
    {
        Ok(_) => request.headers,
        Err(_) => &[],
    };
    let header = |name: &[u8]| {
        headers.iter().find(|h| h.name.as_bytes().eq_ignore_ascii_case(name)).map(|h| h.value)
    };
    let hash_key = pool
        .settings
        .hash
        .as_ref()
        .and_then(|hash| crate::balance::key::hash_of(&hash.key, target, header, client_ip));
    let sticky_id = pool.settings.sticky.as_ref().and_then(|sticky| {
        // A client may split cookies over several `Cookie` fields.
        headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("cookie"))
            .find_map(|h| cookie_value(h.value, sticky.cookie.as_bytes()))
    });
    PickRequest { hash_key, sticky_id }
}

/// The `Set-Cookie` line that pins the client to the picked backend, when the request did
/// not already carry that backend's id. Empty when nothing needs setting.
pub fn set_cookie_line(pool: &Pool, index: usize, sent: Option<&[u8]>, out: &mut Vec<u8>) {
    out.clear();
    let (Some(sticky), Some(id)) = (&pool.settings.sticky, pool.strategy.sticky_id(index)) else {
        return;
    };
    if sent == Some(id.as_bytes()) {
        return;
    }
    out.extend_from_slice(b"Set-Cookie: ");
    crate::balance::sticky::write_set_cookie(sticky, id, out);
    out.extend_from_slice(b"\r\n");
}

/// Removes the sticky cookie from the upstream head (unless `forward_cookie` is set), so
/// the backend sees only the application's own cookies.
pub fn strip_cookie(sticky: &StickyConfig, head: &mut Vec<u8>) {
    if sticky.forward_cookie || !contains_cookie_field(head) {
        return;
    }
    let name = sticky.cookie.as_bytes();
    let mut rebuilt = Vec::with_capacity(head.len());
    let mut lines = head.split(|&b| b == b'\n');
    if let Some(request_line) = lines.next() {
        rebuilt.extend_from_slice(request_line);
        rebuilt.push(b'\n');
    }
    // Bounded by the number of lines in a validated head.
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let (field, value) = (&line[..colon], fields::trim(&line[colon + 1..]));
        if !field.eq_ignore_ascii_case(b"cookie") {
            rebuilt.extend_from_slice(line);
            rebuilt.extend_from_slice(b"\r\n");
            continue;
        }
        let kept = without_cookie(value, name);
        if !kept.is_empty() {
            push_field(&mut rebuilt, field, &kept);
        }
    }
    rebuilt.extend_from_slice(b"\r\n");
    *head = rebuilt;
}

fn contains_cookie_field(head: &[u8]) -> bool {
    head.windows(8).any(|w| w.eq_ignore_ascii_case(b"\ncookie:"))
}

/// `a=1; NAME=x; b=2` without the `NAME` pair.
fn without_cookie(value: &[u8], name: &[u8]) -> Vec<u8> {
    let mut kept = Vec::with_capacity(value.len());
    for pair in value.split(|&b| b == b';') {
        let pair = fields::trim(pair);
        let pair_name = pair.split(|&b| b == b'=').next().map(fields::trim).unwrap_or_default();
        if pair.is_empty() || pair_name == name {
            continue;
        }
        if !kept.is_empty() {
            kept.extend_from_slice(b"; ");
        }
        kept.extend_from_slice(pair);
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_only_the_sticky_cookie() {
        let sticky = StickyConfig::default();
        let mut head = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nCookie: x=1; {}=abc; y=2\r\nCookie: {}=d\r\nX: y\r\n\r\n",
            sticky.cookie, sticky.cookie
        )
        .into_bytes();
        strip_cookie(&sticky, &mut head);
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "GET / HTTP/1.1\r\nHost: a\r\nCookie: x=1; y=2\r\nX: y\r\n\r\n"
        );
    }

    #[test]
    fn forward_cookie_keeps_the_head() {
        let sticky = StickyConfig { forward_cookie: true, ..StickyConfig::default() };
        let original = b"GET / HTTP/1.1\r\nCookie: weir_affinity=1\r\n\r\n".to_vec();
        let mut head = original.clone();
        strip_cookie(&sticky, &mut head);
        assert_eq!(head, original);
    }
}
