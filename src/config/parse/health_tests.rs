//! Tests for `[pool.health]`, `[pool.passive]`, `[pool.retry]`, `when_all_unhealthy` and
//! `slow_start`.

use std::time::Duration;

use crate::config::parse::parse_str;
use crate::config::{
    HealthConfig, PassiveConfig, PoolConfig, ProbeKind, RetryConfig, StatusSet, WhenAllUnhealthy,
};

use crate::config::parse::tests::error;

fn pool(rest: &str) -> PoolConfig {
    let text = format!("[[pool]]\nname = \"a\"\n{rest}");
    match parse_str("weir.toml", &text) {
        Ok(mut config) => config.pools.remove(0),
        Err(errors) => panic!("unexpected errors: {errors:#?}"),
    }
}

fn set(codes: &[u16]) -> StatusSet {
    let mut set = StatusSet::empty();
    codes.iter().for_each(|&code| set.insert(code));
    set
}

#[test]
fn defaults_without_tables() {
    let parsed = pool("");
    assert_eq!(parsed.health, None);
    assert_eq!(parsed.passive, PassiveConfig::default());
    assert_eq!(parsed.retry, RetryConfig::default());
    assert_eq!(parsed.when_all_unhealthy, WhenAllUnhealthy::TryAll);
    assert_eq!(parsed.slow_start, None);
    let health = pool("[pool.health]\n").health.expect("probes on");
    assert_eq!(health, HealthConfig::default());
    assert!(health.expect_status.contains(200) && health.expect_status.contains(399));
    assert!(!health.expect_status.contains(400) && !health.expect_status.contains(199));
}

#[test]
fn health_table() {
    let parsed = pool(
        "[pool.health]\ntype = \"http\"\npath = \"/healthz\"\nhost = \"app.internal\"\n\
         expect_status = [200, \"204-206\"]\ninterval = \"500ms\"\ntimeout = \"100ms\"\n\
         healthy_threshold = 1\nunhealthy_threshold = 4\n",
    );
    let health = parsed.health.expect("probes on");
    assert_eq!(health.path, "/healthz");
    assert_eq!(health.host.as_deref(), Some("app.internal"));
    assert_eq!(health.expect_status, set(&[200, 204, 205, 206]));
    assert_eq!((health.interval, health.timeout), (ms(500), ms(100)));
    assert_eq!((health.healthy_threshold, health.unhealthy_threshold), (1, 4));
    // The jitter defaults to 10% of the interval actually configured.
    assert_eq!(health.jitter, ms(50));
    let tcp = pool("[pool.health]\ntype = \"tcp\"\njitter = \"0s\"\n").health.unwrap();
    assert_eq!((tcp.kind, tcp.jitter), (ProbeKind::Tcp, Duration::ZERO));
    let grpc = pool("[pool.health]\ntype = \"grpc\"\nservice = \"pkg.Echo\"\n").health.unwrap();
    assert_eq!((grpc.kind, grpc.service.as_str()), (ProbeKind::Grpc, "pkg.Echo"));
    let whole = pool("[pool.health]\ntype = \"grpc\"\n").health.unwrap();
    assert_eq!(whole.service, "", "no service: the whole server");
    let single = pool("health = { expect_status = \"204\" }\n").health.unwrap();
    assert_eq!(single.expect_status, set(&[204]));
}

#[test]
fn health_errors() {
    let at = |rest: &str| error(&format!("[[pool]]\nname = \"a\"\n[pool.health]\n{rest}"));
    assert!(
        at("type = \"https\"\n").contains("probes to https:// backends speak TLS by themselves"),
        "{}",
        at("type = \"https\"\n")
    );
    assert_eq!(
        at("type = \"udp\"\n"),
        "weir.toml:4:8: `type`: expected \"http\", \"tcp\" or \"grpc\", found \"udp\""
    );
    assert!(at("path = \"health\"\n").contains("`path` must start with '/'"));
    assert_eq!(
        at("service = \"pkg.Echo\"\n"),
        "weir.toml:4:11: `service` is for `type = \"grpc\"` probes only"
    );
    let spaced = at("type = \"grpc\"\nservice = \"a b\"\n");
    assert!(spaced.contains("must be a service name"), "{spaced}");
    let long = at(&format!("type = \"grpc\"\nservice = \"{}\"\n", "s".repeat(1025)));
    assert!(long.contains("longer than 1024 bytes"), "{long}");
    assert!(at("host = \"a b\"\n").contains("bare host name"));
    // An HTTP/2 probe sends them as `:path` and `:authority`: a fragment `http` would
    // drop, or an authority it refuses, is refused at load rather than failing probes.
    assert!(at("path = \"/h#frag\"\n").contains("`path` must start"));
    assert!(at("host = \"a/b\"\n").contains("bare host name"));
    assert!(at("expect_status = \"399-200\"\n").contains("between 200 and 599"));
    assert!(at("expect_status = [99]\n").contains("between 200 and 599"));
    assert!(at("expect_status = \"ok\"\n").contains("expected a status"));
    assert!(at("interval = \"1ms\"\n").contains("`interval` must be between"));
    assert!(at("healthy_threshold = 0\n").contains("between 1 and 100"));
    assert_eq!(
        at("interval = \"1s\"\njitter = \"2s\"\n"),
        "weir.toml:5:10: `jitter` must not exceed `interval`"
    );
    assert_eq!(at("fall = 3\n"), "weir.toml:4:1: unknown key `fall` in [pool.health]");
}

#[test]
fn passive_table() {
    let parsed = pool(
        "[pool.passive]\nconsecutive_failures = 3\nbase_ejection = \"1s\"\n\
         max_ejection = \"4s\"\nmax_ejection_percent = 100\nfailure_statuses = [502, \"503-504\"]\n",
    );
    let passive = parsed.passive;
    assert_eq!(passive.consecutive_failures, 3);
    assert_eq!((passive.base_ejection, passive.max_ejection), (ms(1000), ms(4000)));
    assert_eq!(passive.max_ejection_percent, 100);
    assert_eq!(passive.failure_statuses, set(&[502, 503, 504]));
    assert_eq!(pool("[pool.passive]\nconsecutive_failures = 0\n").passive.consecutive_failures, 0);
    let at = |rest: &str| error(&format!("[[pool]]\nname = \"a\"\n[pool.passive]\n{rest}"));
    assert_eq!(
        at("base_ejection = \"10s\"\nmax_ejection = \"5s\"\n"),
        "weir.toml:5:16: `max_ejection` must be at least `base_ejection`"
    );
    assert!(at("failure_statuses = [200]\n").contains("between 400 and 599"));
    assert!(at("max_ejection_percent = 101\n").contains("between 0 and 100"));
}

#[test]
fn retry_table() {
    let parsed = pool(
        "[pool.retry]\nattempts = 3\non = [\"connect-failure\", 503, \"gateway-error\"]\n\
         budget_percent = 50\nmin_per_second = 10\nreplay_buffer = \"16KiB\"\n",
    );
    let retry = parsed.retry;
    assert_eq!(retry.attempts, 3);
    assert!(retry.on.connect_failure && !retry.on.reset && !retry.on.timeout);
    assert_eq!(retry.on.statuses, set(&[502, 503, 504]));
    assert_eq!((retry.budget_percent, retry.min_per_second), (50, 10));
    assert_eq!(retry.replay_buffer, 16 * 1024);
    let grpc = pool("[pool.retry]\non = [\"grpc-unavailable\", \"grpc-resource-exhausted\"]\n");
    let codes = grpc.retry.on.grpc;
    assert!(codes.contains(14) && codes.contains(8) && !codes.contains(2));
    assert!(grpc.retry.on.statuses.is_empty() && !grpc.retry.on.connect_failure);
    let fives = pool("[pool.retry]\non = [\"5xx\"]\n").retry.on.statuses;
    assert!(fives.contains(500) && fives.contains(599) && !fives.contains(499));
    let at = |rest: &str| error(&format!("[[pool]]\nname = \"a\"\n[pool.retry]\n{rest}"));
    assert!(at("attempts = 6\n").contains("between 0 and 5"));
    assert!(at("on = [\"flaky\"]\n").contains("expected \"connect-failure\""));
    assert!(at("on = \"reset\"\n").contains("expected an array"));
    assert!(at("replay_buffer = \"2MiB\"\n").contains("between 0 and 1MiB"));
}

#[test]
fn pool_level_keys() {
    let parsed = pool("when_all_unhealthy = \"fail\"\nslow_start = \"30s\"\n");
    assert_eq!(parsed.when_all_unhealthy, WhenAllUnhealthy::Fail);
    assert_eq!(parsed.slow_start, Some(Duration::from_secs(30)));
    assert_eq!(pool("slow_start = \"0s\"\n").slow_start, None);
    assert_eq!(
        error("[[pool]]\nname = \"a\"\nwhen_all_unhealthy = \"panic\"\n"),
        "weir.toml:3:22: `when_all_unhealthy`: expected \"fail\" or \"try_all\", found \"panic\""
    );
    assert!(error("[[pool]]\nname = \"a\"\nslow_start = \"2h\"\n").contains("between"));
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
