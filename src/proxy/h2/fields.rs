//! The fields of an HTTP/1.1 head weir wrote (its own, already normalised output: a
//! request to an HTTP/2 backend, or a response or trailers to an HTTP/2 client) as the
//! `HeaderMap` of HTTP/2 HEADERS.

use std::io;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::respond::broken;
use crate::http1::fields::Name;

/// The fields of a head that go in HTTP/2 HEADERS: all but the connection-specific ones.
///
/// Each value is a copy of its own, never a slice of a buffer holding the whole head:
/// the codec's HPACK encoder keeps the values it indexes in its dynamic table for the
/// connection's life, and a slice would keep the whole head alive with it (and a
/// response's first body bytes), one buffer per message whose values the table took
/// (`date`, a request id). One 16 KiB response left 8 KiB a connection so
/// (bench/RESULTS.md, `h2_idle_ab.sh`). Copies hold only what the table counts.
pub(crate) fn fields(headers: &[httparse::Header<'_>]) -> io::Result<HeaderMap> {
    Ok(request_fields(headers, false)?.map)
}

/// The fields of a request head for an HTTP/2 backend ([`request_fields`]).
pub(crate) struct RequestFields {
    /// All that go in HEADERS.
    pub map: HeaderMap,
    /// The `Host` value, the request's `:authority` (RFC 9113 §8.3.1).
    pub host: Option<HeaderValue>,
    /// The request had `Expect: 100-continue`, which does not go (see
    /// [`crate::proxy::upstream_h2::head::request`]).
    pub expect_continue: bool,
}

/// [`fields`], and for a `request` (to an HTTP/2 backend) also the `Host` value apart,
/// and no `Expect`: left out here rather than removed from the map after, a search and
/// a shift each.
pub(crate) fn request_fields(
    headers: &[httparse::Header<'_>],
    request: bool,
) -> io::Result<RequestFields> {
    let map = HeaderMap::with_capacity(headers.len());
    let mut out = RequestFields { map, host: None, expect_continue: false };
    for header in headers {
        let class = Name::of(header.name.as_bytes());
        if class.is_hop_by_hop() || matches!(class, Name::TransferEncoding | Name::Upgrade) {
            // Fields about one HTTP/1 connection, which HTTP/2 forbids (RFC 9113 §8.2.2).
            continue;
        }
        if request && class == Name::Expect {
            let value = crate::http1::fields::trim(header.value);
            out.expect_continue |= value.eq_ignore_ascii_case(b"100-continue");
            continue;
        }
        let value = HeaderValue::from_bytes(header.value).map_err(broken)?;
        if request && class == Name::Host {
            // weir's parser lets one `Host` through; the first, as `HeaderMap::remove`.
            out.host = out.host.or(Some(value));
            continue;
        }
        let name = match known(class, header.name.as_bytes()) {
            Some(name) => name,
            None => HeaderName::from_bytes(header.name.as_bytes()).map_err(broken)?,
        };
        out.map.append(name, value);
    }
    Ok(out)
}

/// A name weir meets on most gRPC calls and most requests to HTTP/2 backends, and which
/// `http` has no constant for, as one built from a `'static` string: neither parsed nor
/// allocated (`HeaderName::from_bytes` allocates each name it does not know: 4 times a
/// gRPC call in callgrind, for the `X-Forwarded-*` fields weir adds and the backend's
/// `grpc-status`). `class` is the name's [`Name`]; the gRPC names are matched on the
/// length first, then in any ASCII case.
fn known(class: Name, name: &[u8]) -> Option<HeaderName> {
    // `const`, so each name is checked once, when weir is compiled.
    const FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
    const FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
    const FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
    const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
    const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
    const GRPC_ENCODING: HeaderName = HeaderName::from_static("grpc-encoding");
    const GRPC_ACCEPT_ENCODING: HeaderName = HeaderName::from_static("grpc-accept-encoding");
    let grpc = match class {
        Name::XForwardedFor => return Some(FORWARDED_FOR),
        Name::XForwardedHost => return Some(FORWARDED_HOST),
        Name::XForwardedProto => return Some(FORWARDED_PROTO),
        Name::Other => match name.len() {
            11 => GRPC_STATUS,
            12 => GRPC_MESSAGE,
            13 => GRPC_ENCODING,
            20 => GRPC_ACCEPT_ENCODING,
            _ => return None,
        },
        _ => return None,
    };
    name.eq_ignore_ascii_case(grpc.as_str().as_bytes()).then_some(grpc)
}

#[cfg(test)]
#[path = "fields_tests.rs"]
mod tests;
