//! `/etc/hosts`, consulted before DNS when weir follows the system's settings (no
//! `[dns] servers`), as glibc's default `hosts: files dns` does. A name found there is
//! answered from the file alone; the file is read again before each round of lookups.

use std::collections::HashMap;
use std::io::Read;
use std::net::IpAddr;

use super::wire;

/// Where the static host table lives.
pub const HOSTS_FILE: &str = "/etc/hosts";
/// Most bytes read: container hosts files are a few lines, ad-blocking ones a few MiB at
/// worst; past 4 MiB the rest is ignored rather than held in memory.
const MAX_HOSTS_FILE: u64 = 4 * 1024 * 1024;

/// Addresses by name, in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hosts {
    names: HashMap<String, Vec<IpAddr>>,
}

impl Hosts {
    /// The system's table; empty if it cannot be read.
    pub fn read() -> Hosts {
        let mut text = String::new();
        let file = std::fs::File::open(HOSTS_FILE);
        let read = file.and_then(|file| file.take(MAX_HOSTS_FILE).read_to_string(&mut text));
        if let Err(error) = read {
            tracing::debug!("cannot read {HOSTS_FILE}: {error}");
            return Hosts::default();
        }
        Hosts::parse(&text)
    }

    /// Parses hosts-file text: `IP NAME [ALIAS...]` per line, `#` comments.
    pub fn parse(text: &str) -> Hosts {
        let mut names: HashMap<String, Vec<IpAddr>> = HashMap::new();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or_default();
            let mut words = line.split_whitespace();
            let ip = words.next().and_then(|ip| ip.split('%').next()?.parse::<IpAddr>().ok());
            let Some(ip) = ip else {
                continue;
            };
            for name in words.filter(|name| wire::check_name(name).is_ok()) {
                let ips = names.entry(wire::normalize(name)).or_default();
                if !ips.contains(&ip) {
                    ips.push(ip);
                }
            }
        }
        Hosts { names }
    }

    /// The addresses of `host`, if the table names it.
    pub fn get(&self, host: &str) -> Option<&[IpAddr]> {
        self.names.get(&wire::normalize(host)).map(Vec::as_slice)
    }
}
