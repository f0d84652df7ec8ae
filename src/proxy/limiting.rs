//! A route's rate limits on one request ([`crate::limit`]): the key each limit counts by,
//! read from the request, then the limit's verdict: pass, wait (delay mode), or a 429
//! with `Retry-After`. HTTP/1 requests and HTTP/2 streams both come through here.
//!
//! A request without the key (no such header or cookie, or an empty value) is not
//! limited, as nginx treats an empty key; it is counted (`outcome="unkeyed"`).

use std::mem::MaybeUninit;
use std::net::IpAddr;
use std::time::Duration;

use super::forward::Refusal;
use super::Client;
use crate::balance::key::cookie_value;
use crate::config::LimitKey;
use crate::http1::request::RequestInfo;
use crate::http1::HEADER_SLOTS;
use crate::limit::{RouteLimits, Verdict};

/// The access log's error for a 429.
pub const LIMITED: &str = "rate limited";

/// Runs the request through every limit of its route, in order; waits where one says so.
/// `None` lets it through; a refusal is the 429 to answer. A request refused by a later
/// limit has spent its place in the earlier ones, as with nginx's several `limit_req`.
pub async fn admit(
    limits: &RouteLimits,
    client: &Client,
    head: &[u8],
    info: &RequestInfo,
) -> Option<Refusal> {
    for limiter in &limits.limiters {
        let mut octets = [0u8; 16];
        let ip = client.address(info);
        let key = key_of(&limiter.config.key, head, ip, &limits.route_key, &mut octets);
        let Some(key) = key.filter(|key| !key.is_empty()) else {
            limiter.unkeyed();
            continue;
        };
        match limiter.check(key).await {
            Verdict::Pass => {}
            Verdict::Wait(wait) => tokio::time::sleep(wait).await,
            Verdict::Reject(wait) => return Some(refusal(&limiter.config.name, wait)),
        }
    }
    None
}

/// The 429 of limit `name` for a request that would conform after `wait`.
fn refusal(name: &str, wait: Duration) -> Refusal {
    // Whole seconds (RFC 9110 §10.2.3), rounded up so a client that obeys conforms.
    let seconds = wait.as_nanos().div_ceil(1_000_000_000).max(1);
    Refusal {
        status: 429,
        cause: format!("rate limit `{name}` exceeded"),
        log: LIMITED,
        fields: format!("Retry-After: {seconds}\r\n"),
    }
}

/// The bytes a limit counts the request by; `None` when the request has none.
fn key_of<'a>(
    key: &LimitKey,
    head: &'a [u8],
    ip: IpAddr,
    route_key: &'a [u8],
    octets: &'a mut [u8; 16],
) -> Option<&'a [u8]> {
    match key {
        LimitKey::ClientIp => Some(match ip.to_canonical() {
            IpAddr::V4(v4) => {
                octets[..4].copy_from_slice(&v4.octets());
                &octets[..4]
            }
            IpAddr::V6(v6) => {
                *octets = v6.octets();
                &octets[..]
            }
        }),
        LimitKey::Route => Some(route_key),
        LimitKey::Header(name) => header(head, name.as_bytes()),
        LimitKey::Cookie(name) => {
            let mut cookies = headers(head).into_iter().flatten();
            cookies.find_map(|(field, value)| {
                field
                    .eq_ignore_ascii_case(b"cookie")
                    .then(|| cookie_value(value, name.as_bytes()))?
            })
        }
    }
}

/// The first value of header `name` (lowercase) in `head`.
fn header<'a>(head: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let mut fields = headers(head)?;
    fields.find_map(|(field, value)| field.eq_ignore_ascii_case(name).then_some(value))
}

/// The fields of a head that already passed validation, as (name, value) pairs.
fn headers(head: &[u8]) -> Option<impl Iterator<Item = (&[u8], &[u8])>> {
    let mut slots = [MaybeUninit::<httparse::Header<'_>>::uninit(); HEADER_SLOTS];
    let mut request = httparse::Request::new(&mut []);
    // The head parsed once already, so this cannot fail; an error only means no fields.
    request.parse_with_uninit_headers(head, &mut slots).ok()?;
    let fields: Vec<(&[u8], &[u8])> =
        request.headers.iter().map(|h| (h.name.as_bytes(), h.value)).collect();
    Some(fields.into_iter())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_the_address_a_header_a_cookie_or_the_route() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\nX-Api-Key: k1\r\nCookie: a=1; sid=s9\r\n\r\n";
        let ip: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        let mut octets = [0; 16];
        let key = key_of(&LimitKey::ClientIp, head, ip, b"r", &mut octets);
        assert_eq!(key, Some(&[10, 1, 2, 3][..]), "a mapped address counts as IPv4");
        let header_key = LimitKey::Header("x-api-key".into());
        assert_eq!(key_of(&header_key, head, ip, b"r", &mut octets), Some(&b"k1"[..]));
        let cookie_key = LimitKey::Cookie("sid".into());
        assert_eq!(key_of(&cookie_key, head, ip, b"r", &mut octets), Some(&b"s9"[..]));
        assert_eq!(key_of(&LimitKey::Route, head, ip, b"r", &mut octets), Some(&b"r"[..]));
        let absent = LimitKey::Header("x-other".into());
        assert_eq!(key_of(&absent, head, ip, b"r", &mut octets), None);
        let refused = refusal("api", Duration::from_millis(1500));
        assert_eq!(refused.fields, "Retry-After: 2\r\n");
        assert_eq!(refusal("api", Duration::ZERO).fields, "Retry-After: 1\r\n");
    }
}
