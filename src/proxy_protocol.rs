//! PROXY protocol v1 and v2 (HAProxy's `proxy-protocol.txt`): the header an L4 balancer
//! sends before a connection's first byte to name the client it relays, and the one weir
//! sends to backends that ask for it. A pure codec: bytes in, addresses out, no I/O.
//!
//! [`parse`] reads the header from the bytes received so far. [`Parsed::Partial`] promises
//! that every byte given belongs to the header, so a reader may consume them and wait for
//! more without ever taking a byte of what follows (see `proxy::inbound`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Longest v1 line, CRLF included (the specification's bound: "PROXY TCP6" with two
/// full-length IPv6 addresses and ports).
pub const V1_MAX_LEN: usize = 107;
/// What starts every v1 header.
const V1_PREFIX: &[u8] = b"PROXY ";
/// The v2 signature: not a valid start of any HTTP or TLS stream.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The fixed part of a v2 header: signature, version and command, family, length.
const V2_FIXED_LEN: usize = 16;
/// Most bytes of addresses and TLVs a v2 header may carry. Addresses take at most 216
/// (AF_UNIX); the TLVs L4 balancers add (AWS's VPC endpoint id, GCP's PSC id, HAProxy's
/// ALPN, authority and SSL facts) fit in a few hundred more. The field could say 65,535:
/// the bound keeps a hostile peer from making weir hold that much per connection.
pub const V2_MAX_PAYLOAD: usize = 1024;
/// Longest header [`parse`] accepts, of either version: the reader's buffer size.
pub const MAX_HEADER_LEN: usize = V2_FIXED_LEN + V2_MAX_PAYLOAD;
/// Longest header [`write`] makes: v1 at its longest (v2 with IPv6 takes 52 bytes).
pub const MAX_WRITTEN_LEN: usize = V1_MAX_LEN;

/// A complete header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Bytes the header took, from the start of the connection.
    pub len: usize,
    /// Source (the client) and destination (the address it connected to); `None` for v1
    /// `UNKNOWN`, a v2 `LOCAL` command (a health check) or a family without IP
    /// addresses: the connection's own addresses stand, as the specification says.
    pub addresses: Option<(SocketAddr, SocketAddr)>,
}

/// What the bytes received so far make.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A whole header.
    Complete(Header),
    /// A valid beginning: every byte so far belongs to the header.
    Partial,
}

/// Why a connection's PROXY header was refused; each is a `reason` label of
/// `weir_proxy_protocol_errors_total`. The last three are found by the reader, not here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The connection did not start with a PROXY header (plain HTTP, TLS, garbage).
    Missing,
    /// A header that breaks the specification's grammar.
    Malformed,
    /// A v1 line over [`V1_MAX_LEN`] or a v2 payload over [`V2_MAX_PAYLOAD`].
    TooLong,
    /// Valid, but not a TCP stream (v2 over UDP).
    Unsupported,
    /// The header did not arrive within `header_timeout`.
    Timeout,
    /// The client closed the connection before its header was complete.
    Closed,
    /// A second header followed the first.
    Repeated,
}

impl Error {
    /// Every reason, in exposition order.
    pub const ALL: [Error; 7] = [
        Error::Missing,
        Error::Malformed,
        Error::TooLong,
        Error::Unsupported,
        Error::Timeout,
        Error::Closed,
        Error::Repeated,
    ];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            Error::Missing => "missing",
            Error::Malformed => "malformed",
            Error::TooLong => "too_long",
            Error::Unsupported => "unsupported",
            Error::Timeout => "timeout",
            Error::Closed => "closed",
            Error::Repeated => "repeated",
        }
    }
}

/// Reads a PROXY header (either version) from the start of `buf`.
///
/// # Errors
///
/// [`Error::Missing`] when `buf` cannot begin a header, else what is wrong with it.
pub fn parse(buf: &[u8]) -> Result<Parsed, Error> {
    if starts_like(buf, &V2_SIGNATURE) {
        return if buf.len() < V2_FIXED_LEN { Ok(Parsed::Partial) } else { parse_v2(buf) };
    }
    if starts_like(buf, V1_PREFIX) {
        return parse_v1(buf);
    }
    Err(Error::Missing)
}

/// Whether `buf` begins with a PROXY signature of either version (a repeated header), as
/// far as its bytes tell: `None` while they are too few to say.
pub fn begins_header(buf: &[u8]) -> Option<bool> {
    let full = |sig: &[u8]| buf.len() >= sig.len() && buf.starts_with(sig);
    if full(V1_PREFIX) || full(&V2_SIGNATURE) {
        return Some(true);
    }
    let maybe = |sig: &[u8]| buf.len() < sig.len() && sig.starts_with(buf);
    if maybe(V1_PREFIX) || maybe(&V2_SIGNATURE) {
        None
    } else {
        Some(false)
    }
}

/// `buf` and `signature` agree on their common length.
fn starts_like(buf: &[u8], signature: &[u8]) -> bool {
    let n = buf.len().min(signature.len());
    !buf.is_empty() && buf[..n] == signature[..n]
}

/// A v1 line: `PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n` or `PROXY UNKNOWN ...\r\n`.
fn parse_v1(buf: &[u8]) -> Result<Parsed, Error> {
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let lf = window.iter().position(|&b| b == b'\n');
    // Printable text, and a CR only last: the same test on a whole line and on each of
    // its prefixes, so the verdict never depends on how the bytes were split.
    let text = &window[..lf.unwrap_or(window.len())];
    let text = text.strip_suffix(b"\r").unwrap_or(text);
    if text.iter().any(|&b| !(b == b' ' || b.is_ascii_graphic())) {
        return Err(Error::Malformed);
    }
    let Some(lf) = lf else {
        return if buf.len() >= V1_MAX_LEN { Err(Error::TooLong) } else { Ok(Parsed::Partial) };
    };
    let line = window[..lf].strip_suffix(b"\r").ok_or(Error::Malformed)?;
    let fields = &line[V1_PREFIX.len()..];
    let header = |addresses| Ok(Parsed::Complete(Header { len: lf + 1, addresses }));
    if let Some(rest) = fields.strip_prefix(b"UNKNOWN") {
        // The sender could not tell the addresses; whatever follows is ignored.
        if rest.is_empty() || rest[0] == b' ' {
            return header(None);
        }
        return Err(Error::Malformed);
    }
    let mut parts = fields.split(|&b| b == b' ');
    let (family, src, dst, sport, dport) = (
        parts.next().ok_or(Error::Malformed)?,
        parts.next().ok_or(Error::Malformed)?,
        parts.next().ok_or(Error::Malformed)?,
        parts.next().ok_or(Error::Malformed)?,
        parts.next().ok_or(Error::Malformed)?,
    );
    if parts.next().is_some() {
        return Err(Error::Malformed);
    }
    let ip = |text: &[u8]| -> Result<IpAddr, Error> {
        let text = std::str::from_utf8(text).map_err(|_| Error::Malformed)?;
        match family {
            b"TCP4" => text.parse::<Ipv4Addr>().map(IpAddr::V4).map_err(|_| Error::Malformed),
            b"TCP6" => text.parse::<Ipv6Addr>().map(IpAddr::V6).map_err(|_| Error::Malformed),
            _ => Err(Error::Malformed),
        }
    };
    // Canonical: an IPv4-mapped IPv6 address is the IPv4 client it names, as weir's own
    // peers are, so logs, X-Forwarded-For and access lists see one form.
    let src = SocketAddr::new(ip(src)?.to_canonical(), v1_port(sport)?);
    let dst = SocketAddr::new(ip(dst)?.to_canonical(), v1_port(dport)?);
    header(Some((src, dst)))
}

/// A v1 port: 1 to 5 decimal digits, no leading zero, at most 65535.
fn v1_port(text: &[u8]) -> Result<u16, Error> {
    let digits = !text.is_empty() && text.len() <= 5 && text.iter().all(u8::is_ascii_digit);
    if !digits || (text.len() > 1 && text[0] == b'0') {
        return Err(Error::Malformed);
    }
    let value = text.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
    u16::try_from(value).map_err(|_| Error::Malformed)
}

/// A v2 header whose fixed part is in `buf`.
fn parse_v2(buf: &[u8]) -> Result<Parsed, Error> {
    let (version_command, family, len) = (buf[12], buf[13], [buf[14], buf[15]]);
    let len = usize::from(u16::from_be_bytes(len));
    if version_command >> 4 != 2 {
        return Err(Error::Malformed);
    }
    if len > V2_MAX_PAYLOAD {
        return Err(Error::TooLong);
    }
    let local = match version_command & 0x0f {
        0 => true,
        1 => false,
        _ => return Err(Error::Malformed),
    };
    // The family byte is checked before the payload arrives: an unassigned value is
    // refused at once (the specification: "must be rejected as invalid"). A LOCAL
    // command's family is ignored, as the specification says.
    let needed = match family {
        _ if local => 0,
        0x00 => 0,
        0x11 | 0x12 => 12,
        0x21 | 0x22 => 36,
        0x31 | 0x32 => 216,
        _ => return Err(Error::Malformed),
    };
    if len < needed {
        return Err(Error::Malformed);
    }
    if buf.len() < V2_FIXED_LEN + len {
        return Ok(Parsed::Partial);
    }
    let header = |addresses| Ok(Parsed::Complete(Header { len: V2_FIXED_LEN + len, addresses }));
    if local {
        // A health check from the balancer itself: its own connection's addresses stand,
        // and the payload is skipped whole.
        return header(None);
    }
    let payload = &buf[V2_FIXED_LEN..V2_FIXED_LEN + len];
    check_tlvs(&payload[needed..])?;
    match family {
        0x11 => header(Some(v2_addresses::<4>(payload))),
        0x21 => header(Some(v2_addresses::<16>(payload))),
        // Datagrams, over IP or AF_UNIX: weir proxies streams only.
        0x12 | 0x22 | 0x32 => Err(Error::Unsupported),
        // UNSPEC, or an AF_UNIX stream: no IP address to take.
        _ => header(None),
    }
}

/// Source and destination of an AF_INET (`N = 4`) or AF_INET6 (`N = 16`) payload.
fn v2_addresses<const N: usize>(payload: &[u8]) -> (SocketAddr, SocketAddr) {
    let ip = |at: usize| -> IpAddr {
        let mut octets = [0u8; N];
        octets.copy_from_slice(&payload[at..at + N]);
        match N {
            4 => IpAddr::from(<[u8; 4]>::try_from(&octets[..]).expect("four octets")),
            _ => IpAddr::from(<[u8; 16]>::try_from(&octets[..]).expect("sixteen octets")),
        }
    };
    let port = |at: usize| u16::from_be_bytes([payload[at], payload[at + 1]]);
    // Canonical, as in v1: an IPv4-mapped address is its IPv4 client.
    let (src, dst) = (ip(0).to_canonical(), ip(N).to_canonical());
    (SocketAddr::new(src, port(2 * N)), SocketAddr::new(dst, port(2 * N + 2)))
}

/// TLVs are skipped, but each must fit in the payload: a length that runs past it means
/// the sender and weir disagree on the header's end.
fn check_tlvs(mut tlvs: &[u8]) -> Result<(), Error> {
    // Bounded: each pass removes at least three bytes.
    while !tlvs.is_empty() {
        let [_, high, low, ..] = *tlvs else {
            return Err(Error::Malformed);
        };
        let end = 3 + usize::from(u16::from_be_bytes([high, low]));
        tlvs = tlvs.get(end..).ok_or(Error::Malformed)?;
    }
    Ok(())
}

/// Which version weir sends to a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// The text line.
    V1,
    /// The binary header.
    V2,
}

/// Writes a `PROXY` command naming `src` (the client) and `dst` (the address it reached)
/// in `version` onto `out`. Mixed families are written as IPv6 (IPv4-mapped), and
/// IPv4-mapped IPv6 addresses as IPv4, since both ends must share one family.
pub fn write(out: &mut Vec<u8>, version: Version, src: SocketAddr, dst: SocketAddr) {
    let (src, dst) = same_family(src, dst);
    match version {
        Version::V1 => {
            let family = if src.is_ipv4() { "TCP4" } else { "TCP6" };
            let line = format!(
                "PROXY {family} {} {} {} {}\r\n",
                src.ip(),
                dst.ip(),
                src.port(),
                dst.port()
            );
            out.extend_from_slice(line.as_bytes());
        }
        Version::V2 => {
            out.extend_from_slice(&V2_SIGNATURE);
            // Version 2, PROXY command.
            out.push(0x21);
            match (src.ip(), dst.ip()) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    out.extend_from_slice(&[0x11, 0, 12]);
                    out.extend_from_slice(&s.octets());
                    out.extend_from_slice(&d.octets());
                }
                (s, d) => {
                    out.extend_from_slice(&[0x21, 0, 36]);
                    out.extend_from_slice(&v6(s).octets());
                    out.extend_from_slice(&v6(d).octets());
                }
            }
            out.extend_from_slice(&src.port().to_be_bytes());
            out.extend_from_slice(&dst.port().to_be_bytes());
        }
    }
}

/// Both addresses in one family: IPv4 when both are (or map) IPv4, else IPv6.
fn same_family(src: SocketAddr, dst: SocketAddr) -> (SocketAddr, SocketAddr) {
    let (s, d) = (src.ip().to_canonical(), dst.ip().to_canonical());
    if s.is_ipv4() == d.is_ipv4() {
        return (SocketAddr::new(s, src.port()), SocketAddr::new(d, dst.port()));
    }
    (SocketAddr::new(IpAddr::V6(v6(s)), src.port()), SocketAddr::new(IpAddr::V6(v6(d)), dst.port()))
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[cfg(test)]
#[path = "proxy_protocol_tests.rs"]
mod tests;
