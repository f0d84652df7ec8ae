//! `[pool.hash]`: what `consistent_hash` hashes ([`HashKey`]) and the Maglev table size.
//! The hashing itself is in [`crate::balance::key`] and the table in
//! [`crate::balance::maglev`]; the settings live here so that the config reads no
//! balancer code.

use std::fmt;

/// Table size when `[pool.hash] table_size` is not set, as in Envoy.
pub const DEFAULT_TABLE_SIZE: usize = 65_537;

/// Whether `n` is prime (trial division; table sizes are at most a few million).
pub fn is_prime(n: usize) -> bool {
    n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| !n.is_multiple_of(d))
}

/// What `consistent_hash` hashes: `[pool.hash] key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashKey {
    /// `header:NAME`: a request header's value (name stored lowercase).
    Header(String),
    /// `cookie:NAME`: a cookie's value.
    Cookie(String),
    /// `query:NAME`: a query parameter's raw value.
    Query(String),
    /// `client_ip`: the client's address (IPv4-mapped IPv6 counts as IPv4).
    ClientIp,
    /// `path`: the request path, without the query.
    Path,
}

const KEY_FORMS: &str = "header:NAME, cookie:NAME, query:NAME, client_ip or path";

impl HashKey {
    /// Parses `header:NAME | cookie:NAME | query:NAME | client_ip | path`.
    pub fn parse(text: &str) -> Result<HashKey, String> {
        let bad = || format!("`key`: expected {KEY_FORMS}, found \"{text}\"");
        match text {
            "client_ip" => return Ok(HashKey::ClientIp),
            "path" => return Ok(HashKey::Path),
            _ => {}
        }
        let (kind, name) = text.split_once(':').ok_or_else(bad)?;
        if name.is_empty() {
            return Err(format!("`key`: `{kind}:` needs a name, as in \"{kind}:x-user-id\""));
        }
        let token = name.bytes().all(crate::http1::fields::is_tchar);
        let query_ok = !name.bytes().any(|b| b"&=#?".contains(&b) || b <= b' ' || b == 0x7f);
        match kind {
            "header" if token => Ok(HashKey::Header(name.to_ascii_lowercase())),
            "cookie" if token => Ok(HashKey::Cookie(name.to_string())),
            "query" if query_ok => Ok(HashKey::Query(name.to_string())),
            "header" | "cookie" | "query" => {
                Err(format!("`key`: \"{name}\" is not a valid {kind} name"))
            }
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HashKey::Header(name) => write!(f, "header:{name}"),
            HashKey::Cookie(name) => write!(f, "cookie:{name}"),
            HashKey::Query(name) => write!(f, "query:{name}"),
            HashKey::ClientIp => f.write_str("client_ip"),
            HashKey::Path => f.write_str("path"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_key_parse() {
        assert_eq!(HashKey::parse("header:X-User-Id"), Ok(HashKey::Header("x-user-id".into())));
        assert_eq!(HashKey::parse("cookie:sid"), Ok(HashKey::Cookie("sid".into())));
        assert_eq!(HashKey::parse("query:user"), Ok(HashKey::Query("user".into())));
        assert_eq!(HashKey::parse("client_ip"), Ok(HashKey::ClientIp));
        assert_eq!(HashKey::parse("path"), Ok(HashKey::Path));
        for bad in ["", "ip", "header", "body:x", "Path"] {
            let message = HashKey::parse(bad).unwrap_err();
            assert!(message.contains("expected header:NAME"), "{bad}: {message}");
        }
        assert!(HashKey::parse("header:").unwrap_err().contains("needs a name"));
        assert!(HashKey::parse("header:a b").unwrap_err().contains("not a valid header name"));
        assert!(HashKey::parse("query:a&b").unwrap_err().contains("not a valid query name"));
        assert_eq!(HashKey::parse("header:x-a").unwrap().to_string(), "header:x-a");
    }
}
