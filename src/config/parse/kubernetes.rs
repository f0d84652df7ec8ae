//! A pool's Kubernetes backends: `{ kubernetes = { service = "api", namespace = "prod",
//! port = "http" } }`, the Service whose EndpointSlices discovery follows.

use toml::de::DeValue;

use super::{integer, string, wrong, Slot, Value, Walker};
use crate::config::backend::KubePort;
use crate::config::{BackendAddress, BackendConfig, Resolve, Scheme};

/// Longest Service and namespace name: a DNS-1123 label, as Kubernetes requires.
const MAX_NAME: usize = 63;

impl Walker {
    /// The `kubernetes` table of a backend, with the backend's `weight`.
    pub(super) fn kubernetes(&mut self, value: &Value<'_>, weight: u32) -> Option<BackendConfig> {
        let table = self.table("kubernetes", value)?;
        let (mut service, mut namespace, mut port) = (None, None, None);
        for (key, value) in table {
            let slot = match key.get_ref().as_ref() {
                "service" => {
                    Slot::Check(Box::new(|v| label("service", v).map(|s| service = Some(s))))
                }
                "namespace" => {
                    Slot::Check(Box::new(|v| label("namespace", v).map(|s| namespace = Some(s))))
                }
                "port" => Slot::Check(Box::new(|v| kube_port(v).map(|p| port = Some(p)))),
                _ => Slot::Unknown("a kubernetes backend"),
            };
            self.fill(key, value, slot);
        }
        // A key written wrong has its error already; only an absent one is reported here.
        let missing =
            ["service", "namespace", "port"].into_iter().find(|k| !table.contains_key(*k));
        if let Some(name) = missing {
            self.error(value.span(), format!("a kubernetes backend needs a `{name}`"));
            return None;
        }
        let (service, namespace, port) = (service?, namespace?, port?);
        let address =
            self.check(value, json_address(&format!("{service}.{namespace}.svc"), port))?;
        Some(BackendConfig { address, weight, resolve: Resolve::Kubernetes(port) })
    }
}

/// A Service or namespace name (`key`) as TOML.
fn label(key: &str, v: &DeValue<'_>) -> Result<String, String> {
    check_label(key, string(key, v)?)
}

/// A Service or namespace name: a DNS-1123 label (lower-case letters, digits and `-`,
/// at most [`MAX_NAME`] bytes, starting and ending with a letter or digit).
fn check_label(key: &str, text: &str) -> Result<String, String> {
    let inner = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let valid = (1..=MAX_NAME).contains(&text.len())
        && text.bytes().all(|b| inner(b) || b == b'-')
        && text.bytes().next().is_some_and(inner)
        && text.bytes().last().is_some_and(inner);
    if valid {
        Ok(text.to_string())
    } else {
        Err(format!(
            "`{key}`: `{text}` is not a Kubernetes name (1 to {MAX_NAME} lower-case letters, \
             digits and `-`)"
        ))
    }
}

/// The address of a Kubernetes backend as JSON writes it (the admin API, the state
/// file, fleet objects): `SERVICE.NAMESPACE.svc`, with `port` from `resolve`.
pub fn json_address(text: &str, port: KubePort) -> Result<BackendAddress, String> {
    let bad = || format!("a kubernetes backend's address is SERVICE.NAMESPACE.svc, not `{text}`");
    let (service, namespace) =
        text.strip_suffix(".svc").and_then(|t| t.split_once('.')).ok_or_else(bad)?;
    let (service, namespace) =
        (check_label("service", service)?, check_label("namespace", namespace)?);
    let number = match port {
        KubePort::Number(number) => number,
        KubePort::Name(..) => 0,
    };
    Ok(BackendAddress {
        scheme: Scheme::Http,
        host: format!("{service}.{namespace}.svc"),
        port: number,
    })
}

/// The port of `"resolve": "kubernetes:PORT"`: a number or a port name.
pub fn json_port(text: &str) -> Result<KubePort, String> {
    match text.parse::<u16>() {
        Ok(0) => Err("`port` must be between 1 and 65535, found 0".to_string()),
        Ok(number) => Ok(KubePort::Number(number)),
        Err(_) => KubePort::name(text),
    }
}

/// `port`: a number from 1 to 65535, or a port name of the Service.
fn kube_port(v: &DeValue<'_>) -> Result<KubePort, String> {
    match v {
        DeValue::Integer(_) => {
            let number = integer("port", v, 1, u64::from(u16::MAX))?;
            Ok(KubePort::Number(number as u16))
        }
        DeValue::String(text) => KubePort::name(text),
        other => Err(wrong("port", other, "a port number or a port name")),
    }
}

#[cfg(test)]
#[path = "kubernetes_tests.rs"]
mod tests;
