//! Backends as configured: the address as written (scheme, host, port) and its weight.

use std::fmt;

/// One backend of a pool.
#[derive(Clone, Debug, PartialEq)]
pub struct BackendConfig {
    /// Where the backend lives; its `HOST:PORT` is its identity.
    pub address: BackendAddress,
    /// Relative weight, 0 to [`MAX_WEIGHT`](super::MAX_WEIGHT).
    pub weight: u32,
    /// How the host is looked up: once at load, or again and again by discovery (each
    /// address, or each SRV target's address, becoming a backend of its own).
    pub resolve: Resolve,
}

/// How a backend's host is looked up (`resolve = false | true | "srv"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Resolve {
    /// Once, at load (`resolve = false`, the default).
    Once,
    /// Its A and AAAA records, again every `dns_refresh` (`resolve = true`).
    Addresses,
    /// Its SRV records (`resolve = "srv"`): ports, priorities and weights come from the
    /// records, and each target's addresses are looked up. The address has no port
    /// (stored as port 0).
    Srv,
    /// The ready endpoints of a Kubernetes Service, from its EndpointSlices
    /// (`kubernetes = { service, namespace, port }`). The address is
    /// `SERVICE.NAMESPACE.svc` (the Host requests carry), its port the `port` number, or 0
    /// for a named port: each slice says which number the name stands for.
    Kubernetes(KubePort),
}

/// The `port` of a `kubernetes` backend: a number, or a port name of the Service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KubePort {
    /// A port number (the EndpointSlice's port of that number).
    Number(u16),
    /// A port name (an IANA_SVC_NAME, at most [`MAX_PORT_NAME`] bytes, as Kubernetes
    /// validates it): kept inline so [`Resolve`] stays `Copy`.
    Name([u8; MAX_PORT_NAME], u8),
}

/// Longest Kubernetes port name: Kubernetes' own limit for an IANA_SVC_NAME.
pub const MAX_PORT_NAME: usize = 15;

impl KubePort {
    /// A port name: 1 to 15 lower-case letters, digits and `-`, with a letter in it and
    /// no `-` at either end or twice in a row (Kubernetes' IANA_SVC_NAME rule).
    pub fn name(text: &str) -> Result<KubePort, String> {
        let valid = (1..=MAX_PORT_NAME).contains(&text.len())
            && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && text.bytes().any(|b| b.is_ascii_lowercase())
            && !text.starts_with('-')
            && !text.ends_with('-')
            && !text.contains("--");
        if !valid {
            return Err(format!(
                "`port`: `{text}` is not a Kubernetes port name (1 to {MAX_PORT_NAME} lower-case \
                 letters, digits and `-`)"
            ));
        }
        let mut bytes = [0; MAX_PORT_NAME];
        bytes[..text.len()].copy_from_slice(text.as_bytes());
        Ok(KubePort::Name(bytes, text.len() as u8))
    }

    /// The port as written: its number or its name.
    pub fn text(&self) -> String {
        match self {
            KubePort::Number(number) => number.to_string(),
            KubePort::Name(bytes, len) => {
                String::from_utf8_lossy(&bytes[..usize::from(*len)]).into_owned()
            }
        }
    }
}

impl Resolve {
    /// The value as JSON writes it (the admin API, the state file, fleet objects):
    /// `false`, `true`, `"srv"` or `"kubernetes:PORT"`.
    pub fn json(self) -> String {
        match self {
            Resolve::Kubernetes(port) => format!("kubernetes:{}", port.text()),
            other => other.name().to_string(),
        }
    }

    /// The value as the config file and the state file write it.
    pub fn name(self) -> &'static str {
        match self {
            Resolve::Once => "false",
            Resolve::Addresses => "true",
            Resolve::Srv => "srv",
            Resolve::Kubernetes(_) => "kubernetes",
        }
    }
}

impl BackendConfig {
    /// A plain-HTTP backend at `addr`, weight 1, resolved once (the demo's and the tests'
    /// backends on loopback).
    pub fn at(addr: std::net::SocketAddr) -> BackendConfig {
        let address =
            BackendAddress { scheme: Scheme::Http, host: addr.ip().to_string(), port: addr.port() };
        BackendConfig { address, weight: 1, resolve: Resolve::Once }
    }

    /// The Kubernetes Service a `kubernetes` backend follows: (namespace, service, port).
    pub fn kubernetes(&self) -> Option<(&str, &str, KubePort)> {
        let Resolve::Kubernetes(port) = self.resolve else { return None };
        let host = self.address.host.strip_suffix(".svc")?;
        let (service, namespace) = host.split_once('.')?;
        Some((namespace, service, port))
    }

    /// Whether discovery follows its host (`resolve = true` or `"srv"`, or Kubernetes).
    pub fn is_discovered(&self) -> bool {
        self.resolve != Resolve::Once
    }

    /// The address as written: an SRV name has no port.
    pub fn written(&self) -> String {
        match (self.resolve, self.address.scheme) {
            (Resolve::Srv, Scheme::Http) => self.address.host.clone(),
            (Resolve::Srv, Scheme::Https) => format!("https://{}", self.address.host),
            // Its port is in `resolve`: `kubernetes:PORT`.
            (Resolve::Kubernetes(_), _) => self.address.host.clone(),
            _ => self.address.to_string(),
        }
    }
}

/// URL scheme of a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS (issue #6).
    Https,
}

/// A backend address as written: `HOST:PORT`, `http://HOST:PORT` or `https://HOST:PORT`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BackendAddress {
    /// Plain or TLS.
    pub scheme: Scheme,
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl BackendAddress {
    /// Parses `HOST:PORT`, `http://HOST:PORT` or `https://HOST:PORT` (IPv6 as `[::1]:80`).
    pub fn parse(text: &str) -> Result<BackendAddress, String> {
        let (scheme, rest) = if let Some(rest) = text.strip_prefix("http://") {
            (Scheme::Http, rest)
        } else if let Some(rest) = text.strip_prefix("https://") {
            (Scheme::Https, rest)
        } else if text.contains("://") {
            return Err(format!("backend `{text}`: only http:// and https:// are supported"));
        } else {
            (Scheme::Http, text)
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') {
            return Err(format!("backend `{text}`: a backend address has no path"));
        }
        let (host, port) =
            split_host_port(rest).ok_or_else(|| format!("backend `{text}`: expected HOST:PORT"))?;
        if host.is_empty() {
            return Err(format!("backend `{text}`: empty host"));
        }
        Ok(BackendAddress { scheme, host: host.to_string(), port })
    }

    /// The identity used for metrics labels, pools and cookies: `HOST:PORT`.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for BackendAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scheme {
            Scheme::Http => f.write_str(&self.authority()),
            Scheme::Https => write!(f, "https://{}", self.authority()),
        }
    }
}

/// Splits `host:port` or `[v6]:port`.
fn split_host_port(text: &str) -> Option<(&str, u16)> {
    if let Some(rest) = text.strip_prefix('[') {
        let (host, tail) = rest.split_once(']')?;
        let port = tail.strip_prefix(':')?.parse().ok()?;
        return Some((host, port));
    }
    let (host, port) = text.rsplit_once(':')?;
    if host.contains(':') {
        return None;
    }
    Some((host, port.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backend_at_a_socket_address_is_what_parsing_it_gives() {
        for text in ["127.0.0.1:9001", "[::1]:8080"] {
            let addr: std::net::SocketAddr = text.parse().unwrap();
            let parsed = BackendAddress::parse(text).unwrap();
            assert_eq!(BackendConfig::at(addr).address, parsed);
            assert_eq!(BackendConfig::at(addr).address.authority(), text);
        }
    }
}
