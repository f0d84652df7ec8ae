//! Counters of DNS discovery for `/metrics`: lookups by result and addresses in use, per
//! name. Updated once per lookup on the `weir-dns` thread, so a mutex is cheap enough.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use crate::metrics::{escape, header};

/// What is counted for one name.
#[derive(Clone, Copy, Debug, Default)]
struct NameStats {
    ok: u64,
    failed: u64,
    addresses: usize,
}

/// Counters of every discovered name, in name order.
#[derive(Debug, Default)]
pub struct Stats {
    names: Mutex<BTreeMap<String, NameStats>>,
}

impl Stats {
    /// Counts a lookup of `host`: `ok` when every query answered; `addresses` in use
    /// after it.
    pub fn record(&self, host: &str, ok: bool, addresses: usize) {
        let Ok(mut names) = self.names.lock() else {
            return;
        };
        let stats = names.entry(host.to_string()).or_default();
        match ok {
            true => stats.ok += 1,
            false => stats.failed += 1,
        }
        stats.addresses = addresses;
    }

    /// Forgets the names for which `keep` is false (removed from the config).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        if let Ok(mut names) = self.names.lock() {
            names.retain(|host, _| keep(host));
        }
    }

    /// Appends `weir_dns_lookups_total{host,result}` and `weir_dns_addresses{host}`;
    /// nothing when no backend uses `resolve = true`.
    pub fn render(&self, out: &mut String) {
        let Ok(names) = self.names.lock() else {
            return;
        };
        if names.is_empty() {
            return;
        }
        let name = "weir_dns_lookups_total";
        header(out, name, "counter", "DNS lookups of resolve = true names, by result.");
        for (host, stats) in names.iter() {
            let host = escape(host);
            for (result, value) in [("ok", stats.ok), ("failed", stats.failed)] {
                let _ = writeln!(out, "{name}{{host=\"{host}\",result=\"{result}\"}} {value}");
            }
        }
        let name = "weir_dns_addresses";
        let help =
            "Addresses in use for a resolve = true name (the last known while lookups fail).";
        header(out, name, "gauge", help);
        for (host, stats) in names.iter() {
            let _ = writeln!(out, "{name}{{host=\"{}\"}} {}", escape(host), stats.addresses);
        }
    }
}
