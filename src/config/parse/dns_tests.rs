//! Tests for `[dns]`, `dns_refresh` and `resolve`.

use std::time::Duration;

use crate::config::dns::DEFAULT_DNS_REFRESH;
use crate::config::parse::parse_str;
use crate::config::parse::tests::error;
use crate::config::{Config, DnsConfig, Resolve};

fn parse(text: &str) -> Config {
    match parse_str("weir.toml", text) {
        Ok(config) => config,
        Err(errors) => panic!("unexpected errors: {errors:#?}"),
    }
}

/// A pool with one backend written `backend`, and `rest` after it.
fn pool(backend: &str, rest: &str) -> String {
    format!("[[pool]]\nname = \"a\"\nbackends = [{backend}]\n{rest}")
}

#[test]
fn discovery_keys_parse() {
    let text = "[dns]\nservers = [\"10.0.0.2\", \"127.0.0.1:5353\", \"[::1]:53\"]\n\
                timeout = \"500ms\"\n"
        .to_string()
        + &pool(
            "{ address = \"API.internal:8080\", resolve = true, weight = 2 }",
            "dns_refresh = \"5s\"",
        );
    let config = parse(&text);
    let servers = ["10.0.0.2:53", "127.0.0.1:5353", "[::1]:53"].map(|s| s.parse().unwrap());
    let expected =
        DnsConfig { servers: servers.to_vec(), timeout: Some(Duration::from_millis(500)) };
    assert_eq!(config.dns, expected);
    let (pool, backend) = (&config.pools[0], &config.pools[0].backends[0]);
    assert_eq!(pool.dns_refresh, Duration::from_secs(5));
    assert!(backend.resolve == Resolve::Addresses && backend.weight == 2);
    assert_eq!(backend.address.host, "API.internal");
}

#[test]
fn defaults_resolve_once() {
    let config = parse(&pool("\"api.internal:8080\"", ""));
    assert_eq!(config.pools[0].backends[0].resolve, Resolve::Once);
    assert_eq!(config.pools[0].dns_refresh, DEFAULT_DNS_REFRESH);
    assert_eq!(config.dns, DnsConfig::default());
}

#[test]
fn resolve_needs_a_dns_name() {
    let message = error(&pool("{ address = \"10.0.0.1:80\", resolve = true }", ""));
    assert_eq!(
        message,
        "weir.toml:3:25: `resolve = true` needs a host name; 10.0.0.1 is an IP address"
    );
    let message = error(&pool("{ address = \"bad_name!:80\", resolve = true }", ""));
    assert!(message.contains("`bad_name!` is not a DNS name"), "{message}");
    let message = error(&pool("{ address = \"a:80\", resolve = \"yes\" }", ""));
    let expected = "weir.toml:3:43: `resolve`: expected true, false or \"srv\", found string";
    assert_eq!(message, expected);
}

#[test]
fn srv_names_have_no_port() {
    let config = parse(&pool(
        "{ address = \"_http._tcp.API.example\", resolve = \"srv\" }, \
         { address = \"http://_api._tcp.b.example\", resolve = \"srv\" }",
        "",
    ));
    let backend = &config.pools[0].backends[0];
    assert_eq!((backend.resolve, backend.address.port), (Resolve::Srv, 0));
    assert_eq!(backend.written(), "_http._tcp.API.example");
    assert_eq!(config.pools[0].backends[1].written(), "_api._tcp.b.example");
    let message = error(&pool("{ address = \"https://_h._tcp.a\", resolve = \"srv\" }", ""));
    assert!(message.contains("plain HTTP for now"), "{message}");
    let message = error(&pool("{ address = \"_http._tcp.a:80\", resolve = \"srv\" }", ""));
    assert!(
        message.starts_with("weir.toml:3:25: `resolve = \"srv\"` needs an SRV name without a port"),
        "{message}"
    );
    let message = error(&pool("{ resolve = \"srv\", address = \"a b\" }", ""));
    assert!(
        message.starts_with("weir.toml:3:42: `resolve = \"srv\"`: `a b` is not a DNS name"),
        "{message}"
    );
    // Without `resolve = "srv"` a port is still required.
    let message = error(&pool("{ address = \"_http._tcp.a\" }", ""));
    assert!(message.contains("expected HOST:PORT"), "{message}");
}

#[test]
fn bad_discovery_settings_are_located() {
    let cases = [
        (
            pool("\"a:80\"", "dns_refresh = \"500ms\""),
            "4:15: `dns_refresh` must be between 1s and 3600s",
        ),
        (pool("\"a:80\"", "dns_refresh = \"2h\""), "4:15: `dns_refresh` must be between"),
        ("[dns]\nservers = []\n".into(), "2:11: `servers` needs one to 3 addresses"),
        (
            "[dns]\nservers = [\"a\", \"b\", \"c\", \"d\"]\n".into(),
            "2:11: `servers` needs one to 3",
        ),
        ("[dns]\nservers = [\"dns.example\"]\n".into(), "2:11: `servers`: expected an address"),
        ("[dns]\nservers = [\"1.1.1.1\", \"1.1.1.1:53\"]\n".into(), "1.1.1.1:53 is listed twice"),
        ("[dns]\ntimeout = \"1m\"\n".into(), "2:11: `timeout` must be at most 30s"),
        ("[dns]\nsearch = []\n".into(), "2:1: unknown key `search` in [dns]"),
    ];
    for (text, want) in cases {
        let message = error(&text);
        assert!(message.contains(want), "{message} lacks {want}");
    }
}
