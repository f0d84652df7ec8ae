//! TLS tables: `[pool.tls]` (how to reach a pool's `https://` backends) and
//! `[[server.tls]]` (listeners that terminate TLS).
//!
//! Certificate, key and CA files are read and checked here as well, so `weir check` and a
//! refused reload point at the line that names a missing or broken file. They are read
//! again when the balancer builds its connectors and acceptors.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;

use toml::de::DeValue;

use super::{socket_addr, string, text, wrong, Slot, Value, Walker, LISTEN_HINT};
use crate::config::TlsListenerConfig;
use crate::tls::{Acceptor, ClientSettings, ListenerSettings, TlsVersion, MAX_ALPN_PROTOCOLS};

const CERTS_HINT: &str = r#"an array such as [{ cert = "a.pem", key = "a.key" }]"#;
const VERSION_HINT: &str = r#""1.2" or "1.3""#;

impl Walker {
    /// `[pool.tls]`. Files are checked; on any error the table is dropped (the errors
    /// keep the config from being used).
    pub(super) fn pool_tls(&mut self, value: &Value<'_>) -> Option<ClientSettings> {
        let table = self.table("tls", value)?;
        let mut out = ClientSettings::default();
        let before = self.errors.len();
        for (key, value) in table {
            let slot = match key.get_ref().as_ref() {
                "server_name" => Slot::Text(&mut out.server_name),
                "ca_file" => Slot::Check(Box::new(|v| path("ca_file", v, &mut out.ca_file))),
                "client_cert" => {
                    Slot::Check(Box::new(|v| path("client_cert", v, &mut out.client_cert)))
                }
                "client_key" => {
                    Slot::Check(Box::new(|v| path("client_key", v, &mut out.client_key)))
                }
                "alpn" => Slot::Check(Box::new(|v| alpn(v).map(|list| out.alpn = list))),
                "insecure_skip_verify" => Slot::Flag(&mut out.insecure_skip_verify),
                "handshake_timeout" => Slot::Duration(&mut out.handshake_timeout, false),
                _ => Slot::Unknown("[pool.tls]"),
            };
            self.fill(key, value, slot);
        }
        if self.errors.len() > before {
            return None;
        }
        if let Err(error) = crate::tls::client::check(&out) {
            // At the file setting the message names, when it names one.
            let message = error.to_string();
            let named = ["ca_file", "client_cert", "client_key"]
                .into_iter()
                .find(|name| message.contains(name))
                .and_then(|name| table.get(name));
            let span = named.map_or(value.span(), |setting| setting.span());
            self.error(span, format!("[pool.tls]: {message}"));
            return None;
        }
        Some(out)
    }

    /// `[[server.tls]]`, in file order; a listener with an error is left out.
    pub(super) fn tls_listeners(&mut self, value: &Value<'_>) -> Vec<TlsListenerConfig> {
        let mut listeners: Vec<TlsListenerConfig> = Vec::new();
        for item in self.tables("server.tls", value) {
            let Some((listener, span)) = self.tls_listener(item) else {
                continue;
            };
            if listeners.iter().any(|other| other.listen == listener.listen) {
                self.error(span, format!("duplicate TLS listen address {}", listener.listen));
                continue;
            }
            listeners.push(listener);
        }
        listeners
    }

    /// One `[[server.tls]]` table, with the span of its address.
    fn tls_listener(&mut self, item: &Value<'_>) -> Option<(TlsListenerConfig, Range<usize>)> {
        let table = self.table("server.tls", item)?;
        let mut settings = ListenerSettings::default();
        let mut listen: Option<SocketAddr> = None;
        let before = self.errors.len();
        for (key, value) in table {
            let slot = match key.get_ref().as_ref() {
                "listen" => Slot::Check(Box::new(|v| {
                    socket_addr("listen", v, LISTEN_HINT).map(|addr| listen = Some(addr))
                })),
                "certs" => Slot::Check(Box::new(|v| certs(v).map(|list| settings.certs = list))),
                "min_version" => Slot::Check(Box::new(|v| {
                    min_version(v).map(|version| settings.min_version = Some(version))
                })),
                "alpn" => Slot::Check(Box::new(|v| alpn(v).map(|list| settings.alpn = list))),
                "handshake_timeout" => Slot::Duration(&mut settings.handshake_timeout, false),
                "proxy_protocol" => Slot::Flag(&mut settings.proxy_protocol),
                _ => Slot::Unknown("[[server.tls]]"),
            };
            self.fill(key, value, slot);
        }
        for required in ["listen", "certs"] {
            if !table.contains_key(required) {
                self.error(item.span(), format!("[[server.tls]] needs `{required}`"));
            }
        }
        if self.errors.len() > before {
            return None;
        }
        let at = table.get("certs").map_or(item.span(), |certs| certs.span());
        let built = Acceptor::new(&settings).map(drop).map_err(|e| format!("[[server.tls]]: {e}"));
        if let Err(message) = built {
            self.error(at, message);
            return None;
        }
        let span = table.get("listen").map_or(item.span(), |listen| listen.span());
        Some((TlsListenerConfig { listen: listen?, settings }, span))
    }
}

/// A file path setting: a non-empty string.
fn path(name: &str, v: &DeValue<'_>, out: &mut Option<PathBuf>) -> Result<(), String> {
    *out = Some(PathBuf::from(text(name, v)?));
    Ok(())
}

/// `alpn`: a non-empty array of protocol names such as `["http/1.1"]`.
fn alpn(v: &DeValue<'_>) -> Result<Vec<String>, String> {
    let array = v.as_array().ok_or_else(|| wrong("alpn", v, r#"an array such as ["http/1.1"]"#))?;
    if array.is_empty() || array.len() > MAX_ALPN_PROTOCOLS {
        return Err(format!("`alpn` needs 1 to {MAX_ALPN_PROTOCOLS} protocol names"));
    }
    array.iter().map(|item| text("alpn", item.get_ref())).collect()
}

/// `min_version`: `"1.2"` or `"1.3"`.
fn min_version(v: &DeValue<'_>) -> Result<TlsVersion, String> {
    match string("min_version", v)? {
        "1.2" => Ok(TlsVersion::Tls12),
        "1.3" => Ok(TlsVersion::Tls13),
        other => Err(format!("`min_version`: expected {VERSION_HINT}, found \"{other}\"")),
    }
}

/// `certs`: `[{ cert = "...", key = "..." }, ...]`, at least one.
fn certs(v: &DeValue<'_>) -> Result<Vec<(PathBuf, PathBuf)>, String> {
    let array = v.as_array().ok_or_else(|| wrong("certs", v, CERTS_HINT))?;
    if array.is_empty() {
        return Err(format!("`certs` needs at least one certificate: {CERTS_HINT}"));
    }
    let pair = |item: &Value<'_>| {
        let table =
            item.get_ref().as_table().ok_or_else(|| wrong("certs", item.get_ref(), CERTS_HINT))?;
        if let Some(other) =
            table.keys().find(|key| !["cert", "key"].contains(&key.get_ref().as_ref()))
        {
            return Err(format!("unknown key `{}` in a `certs` entry", other.get_ref()));
        }
        let field = |name: &str| match table.get(name) {
            Some(value) => text(name, value.get_ref()).map(PathBuf::from),
            None => Err(format!("a `certs` entry needs `{name}`: {CERTS_HINT}")),
        };
        Ok((field("cert")?, field("key")?))
    };
    array.iter().map(pair).collect()
}
