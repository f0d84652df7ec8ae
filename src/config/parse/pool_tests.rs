//! Tests for the strategy keys of `[[pool]]`: `[pool.hash]`, `[pool.sticky]`, `ewma_decay`.

use std::time::Duration;

use crate::config::parse::parse_str;
use crate::config::HashKey;
use crate::config::{HashConfig, PoolConfig, SameSite, StickyConfig, StrategyKind};

use crate::config::parse::tests::error;

fn pool(text: &str) -> PoolConfig {
    match parse_str("weir.toml", text) {
        Ok(mut config) => config.pools.remove(0),
        Err(errors) => panic!("unexpected errors: {errors:#?}"),
    }
}

/// A pool named `a` with `strategy`, then `rest`.
fn with(strategy: &str, rest: &str) -> String {
    format!("[[pool]]\nname = \"a\"\nstrategy = \"{strategy}\"\n{rest}")
}

#[test]
fn every_strategy_is_available() {
    for name in StrategyKind::NAMES {
        let rest = if name == "consistent_hash" { "[pool.hash]\nkey = \"path\"\n" } else { "" };
        let kind = pool(&with(name, rest)).strategy;
        assert_eq!(kind.name(), name);
        assert_eq!(StrategyKind::from_name(name), Some(kind));
        assert!(kind.is_available());
    }
}

#[test]
fn hash_table() {
    let parsed = pool(&with("consistent_hash", "[pool.hash]\nkey = \"header:X-User\"\n"));
    let key = HashKey::Header("x-user".into());
    assert_eq!(parsed.hash, Some(HashConfig { key: key.clone(), table_size: 65_537 }));
    let parsed =
        pool(&with("consistent_hash", "hash = { key = \"cookie:sid\", table_size = 1_021 }\n"));
    assert_eq!(
        parsed.hash,
        Some(HashConfig { key: HashKey::Cookie("sid".into()), table_size: 1021 })
    );
    // A sticky pool over consistent hashing carries the key too.
    let text =
        with("sticky", "[pool.sticky]\nbase = \"consistent_hash\"\n[pool.hash]\nkey = \"path\"\n");
    assert_eq!(pool(&text).hash, Some(HashConfig { key: HashKey::Path, table_size: 65_537 }));
}

#[test]
fn hash_errors_are_located() {
    assert_eq!(
        error(&with("consistent_hash", "")),
        "weir.toml:3:12: consistent_hash needs a [pool.hash] table with key = \"header:NAME\" \
         (or cookie:NAME, query:NAME, client_ip, path)"
    );
    assert!(error(&with("consistent_hash", "[pool.hash]\ntable_size = 1021\n"))
        .starts_with("weir.toml:4:7: [pool.hash] needs key = "));
    assert_eq!(
        error(&with("round_robin", "[pool.hash]\nkey = \"path\"\n")),
        "weir.toml:4:7: [pool.hash] applies only to strategy = \"consistent_hash\"; \
         this pool uses \"round_robin\""
    );
    let bad_key = error(&with("consistent_hash", "[pool.hash]\nkey = \"body\"\n"));
    assert!(bad_key.starts_with("weir.toml:5:7: `key`: expected header:NAME"), "{bad_key}");
    assert_eq!(
        error(&with("consistent_hash", "[pool.hash]\nkey = \"path\"\ntable_size = 65536\n")),
        "weir.toml:6:14: `table_size` must be prime, as Maglev needs; 65536 is not"
    );
    assert_eq!(
        error(&with("consistent_hash", "[pool.hash]\nkey = \"path\"\ntable_size = 7\n")),
        "weir.toml:6:14: `table_size` must be between 1021 and 5000011, found 7"
    );
    assert_eq!(
        error(&with("consistent_hash", "[pool.hash]\nkey = \"path\"\nsize = 7\n")),
        "weir.toml:6:1: unknown key `size` in [pool.hash]"
    );
}

#[test]
fn sticky_table() {
    // Without a table a sticky pool still gets the default cookie settings.
    let parsed = pool(&with("sticky", ""));
    assert_eq!(parsed.sticky, Some(StickyConfig::default()));
    assert_eq!(pool(&with("sticky", "[pool.sticky]\n")).sticky, Some(StickyConfig::default()));
    let text = with(
        "sticky",
        r#"[pool.sticky]
cookie = "srv"
base = "peak_ewma"
path = "/app"
max_age = "1h"
secure = true
http_only = false
same_site = "None"
secret = "s3cret"
forward_cookie = true
"#,
    );
    let expected = StickyConfig {
        cookie: "srv".into(),
        base: StrategyKind::PeakEwma,
        path: "/app".into(),
        max_age: Some(Duration::from_secs(3600)),
        secure: true,
        http_only: false,
        same_site: Some(SameSite::None),
        secret: Some("s3cret".into()),
        forward_cookie: true,
    };
    assert_eq!(pool(&text).sticky, Some(expected));
    let defaults = StickyConfig::default();
    assert_eq!((defaults.cookie.as_str(), defaults.path.as_str()), ("weir_affinity", "/"));
    assert_eq!(defaults.base, StrategyKind::LeastRequests);
    assert!(defaults.http_only && !defaults.secure && !defaults.forward_cookie);
}

#[test]
fn sticky_errors_are_located() {
    let sticky = |body: &str| error(&with("sticky", &format!("[pool.sticky]\n{body}\n")));
    assert_eq!(
        sticky("base = \"sticky\""),
        "weir.toml:5:8: `base` must be a strategy other than \"sticky\""
    );
    assert!(sticky("base = \"fastest\"").starts_with("weir.toml:5:8: unknown strategy `fastest`"));
    assert_eq!(
        sticky("cookie = \"a b\""),
        "weir.toml:5:10: `cookie`: \"a b\" is not a valid cookie name"
    );
    assert_eq!(sticky("cookie = \"\""), "weir.toml:5:10: `cookie` must not be empty");
    assert_eq!(
        sticky("path = \"app\""),
        "weir.toml:5:8: `path` must start with '/' and hold no ';': \"app\""
    );
    assert_eq!(sticky("max_age = \"0s\""), "weir.toml:5:11: `max_age` must be greater than zero");
    assert_eq!(
        sticky("same_site = \"lax\""),
        "weir.toml:5:13: `same_site`: expected \"Strict\", \"Lax\" or \"None\", found \"lax\""
    );
    assert_eq!(
        sticky("same_site = \"None\""),
        "weir.toml:5:13: `same_site = \"None\"` needs `secure = true`; browsers refuse it"
    );
    assert_eq!(
        sticky("secure = 1"),
        "weir.toml:5:10: `secure`: expected true or false, found integer"
    );
    assert_eq!(sticky("domain = \"x\""), "weir.toml:5:1: unknown key `domain` in [pool.sticky]");
    assert_eq!(
        error(&with("random", "[pool.sticky]\ncookie = \"x\"\n")),
        "weir.toml:4:7: [pool.sticky] applies only to strategy = \"sticky\"; this pool uses \"random\""
    );
    assert!(error(&with("sticky", "[pool.sticky]\nbase = \"consistent_hash\"\n"))
        .starts_with("weir.toml:3:12: consistent_hash needs a [pool.hash] table"));
}

#[test]
fn ewma_decay() {
    assert_eq!(pool(&with("round_robin", "")).ewma_decay, Duration::from_secs(10));
    let parsed = pool(&with("peak_ewma", "ewma_decay = \"2500ms\"\n"));
    assert_eq!(parsed.ewma_decay, Duration::from_millis(2500));
    let over_sticky = with("sticky", "ewma_decay = \"5s\"\n[pool.sticky]\nbase = \"peak_ewma\"\n");
    assert_eq!(pool(&over_sticky).ewma_decay, Duration::from_secs(5));
    assert_eq!(
        error(&with("least_requests", "ewma_decay = \"5s\"\n")),
        "weir.toml:4:1: `ewma_decay` applies only to strategy = \"peak_ewma\"; \
         this pool uses \"least_requests\""
    );
    assert_eq!(
        error(&with("peak_ewma", "ewma_decay = \"0s\"\n")),
        "weir.toml:4:14: `ewma_decay` must be greater than zero"
    );
}

#[test]
fn backend_protocol() {
    use crate::config::{BackendProtocol, UpstreamH2};
    let parsed = pool("[[pool]]\nname = \"a\"\n");
    assert_eq!(parsed.protocol, BackendProtocol::Auto);
    assert_eq!(parsed.h2, UpstreamH2::default());
    let text = "[[pool]]\nname = \"a\"\nprotocol = \"h2c\"\nmax_streams_per_connection = 7\n\
                ping_interval = \"5s\"\nping_timeout = \"1s\"\n";
    let parsed = pool(text);
    assert_eq!(parsed.protocol, BackendProtocol::H2c);
    let h2 = UpstreamH2 {
        max_streams_per_connection: 7,
        ping_interval: Duration::from_secs(5),
        ping_timeout: Duration::from_secs(1),
    };
    assert_eq!(parsed.h2, h2);
    assert_eq!(
        pool("[[pool]]\nname = \"a\"\nprotocol = \"http1\"\n").protocol,
        BackendProtocol::Http1
    );
    let bad = "[[pool]]\nname = \"a\"\nprotocol = \"spdy\"\n";
    assert_eq!(error(bad), r#"weir.toml:3:12: `protocol` must be "auto", "http1", "h2c" or "h2""#);
    let h2 = "[[pool]]\nname = \"a\"\nprotocol = \"h2\"\nbackends = [\"https://a.example:443\"]\n";
    assert_eq!(pool(h2).protocol, BackendProtocol::H2);
    let bad = "[[pool]]\nname = \"a\"\nprotocol = \"h2\"\nbackends = [\"a.example:80\"]\n";
    assert!(
        error(bad).contains("HTTP/2 over TLS, for https:// backends; a.example:80 is not one"),
        "{}",
        error(bad)
    );
    // HTTP probes on an `h2` pool speak HTTP/2 (tests/it/health_h2.rs).
    let probed = format!("{h2}[pool.health]\npath = \"/\"\n");
    assert_eq!(pool(&probed).protocol, BackendProtocol::H2);
    let grpc = format!("{h2}[pool.health]\ntype = \"grpc\"\n");
    assert_eq!(pool(&grpc).protocol, BackendProtocol::H2);
    let bad = "[[pool]]\nname = \"a\"\nmax_streams_per_connection = 0\n";
    assert!(error(bad).starts_with("weir.toml:3:30:"), "{}", error(bad));
    let bad =
        "[[pool]]\nname = \"a\"\nprotocol = \"h2c\"\nbackends = [\"https://a.example:443\"]\n";
    assert!(error(bad).contains("cleartext, for http:// backends"), "{}", error(bad));
    let bad = "[[pool]]\nname = \"a\"\nprotocol = \"h2c\"\nsend_proxy_protocol = \"v1\"\n";
    assert!(error(bad).starts_with("weir.toml:3:12: `send_proxy_protocol` cannot go"));
}
