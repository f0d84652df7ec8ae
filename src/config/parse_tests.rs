//! Tests for [`super::parse_str`] and [`super::load_file`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{load_file, parse_str};
use crate::config::{
    AdminConfig, BackendAddress, BackendConfig, Config, HostMatch, LogConfig, PoolConfig,
    RouteConfig, Scheme, ServerConfig, StrategyKind,
};

/// The errors for `text`, rendered as `FILE:LINE:COL: message`. Shared with the
/// section tests under `parse/`.
pub(super) fn errors(text: &str) -> Vec<String> {
    match parse_str("weir.toml", text) {
        Ok(config) => panic!("expected errors, got {config:#?}"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

/// The one error for `text`.
pub(super) fn error(text: &str) -> String {
    let errors = errors(text);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    errors[0].clone()
}

/// The config `text` parses to; panics on errors. Shared with the section tests.
pub(super) fn parse(text: &str) -> Config {
    match parse_str("weir.toml", text) {
        Ok(config) => config,
        Err(errors) => panic!("unexpected errors: {errors:#?}"),
    }
}

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("test address")
}

fn backend(text: &str, weight: u32) -> BackendConfig {
    let address = BackendAddress::parse(text).expect("test backend");
    BackendConfig { address, weight, resolve: crate::config::Resolve::Once }
}

const FULL: &str = r#"
# A complete file.
[server]
listen = ["127.0.0.1:8080", "[::1]:8081"]
workers = 4
max_connections = 1000
header_timeout = "2s"
keepalive_timeout = "1.5s"
body_timeout = "250ms"
send_timeout = "20s"
max_header_bytes = "32KiB"
max_headers = 50
drain_timeout = "1m"
pid_file = "/run/weir.pid"
h2c = false

[log]
access = "/var/log/weir/access.log"
format = "json"

[admin]
listen = "127.0.0.1:9999"
token = "secret"
state_file = "state.json"
metrics = false

[[pool]]
name = "web"
strategy = "round_robin"
backends = [ { address = "127.0.0.1:9001", weight = 3 }, "http://127.0.0.1:9002", { address = "localhost:9003" } ]
connect_timeout = "1s"
response_timeout = "2m"
read_timeout = "3s"
idle_timeout = "1h"
tunnel_idle_timeout = "10m"
stream_idle_timeout = "2h"
max_idle = 0

[[pool]]
name = "api.v2"
backends = []

[[route]]
host = "*.Example.COM"
path_prefix = "/api"
pool = "api.v2"

[[route]]
host = "Static.example.com"
pool = "web"

[[route]]
pool = "web"
"#;

#[test]
fn full_file_parses_to_the_expected_config() {
    let mut web = PoolConfig::new(
        "web",
        StrategyKind::RoundRobin,
        vec![
            backend("127.0.0.1:9001", 3),
            backend("127.0.0.1:9002", 1),
            backend("localhost:9003", 1),
        ],
    );
    web.connect_timeout = Duration::from_secs(1);
    web.response_timeout = Duration::from_secs(120);
    web.read_timeout = Duration::from_secs(3);
    web.idle_timeout = Duration::from_secs(3600);
    web.tunnel_idle_timeout = Duration::from_secs(600);
    web.stream_idle_timeout = Duration::from_secs(7200);
    web.max_idle = 0;
    let route = |host, path_prefix: Option<&str>, pool: &str| RouteConfig {
        host,
        path_prefix: path_prefix.map(str::to_string),
        pool: pool.to_string(),
        acl: Default::default(),
        rules: Default::default(),
        limits: Vec::new(),
    };
    let expected = Config {
        source: None,
        server: ServerConfig {
            listen: vec![addr("127.0.0.1:8080"), addr("[::1]:8081")],
            workers: 4,
            max_connections: 1000,
            header_timeout: Duration::from_secs(2),
            keepalive_timeout: Duration::from_millis(1500),
            body_timeout: Duration::from_millis(250),
            send_timeout: Duration::from_secs(20),
            max_header_bytes: 32 * 1024,
            max_headers: 50,
            drain_timeout: Duration::from_secs(60),
            pid_file: Some("/run/weir.pid".to_string()),
            h2c: false,
            http2: crate::config::Http2Config::default(),
            tls: Vec::new(),
            proxy_protocol: false,
            trusted_proxies: None,
            request_id: None,
            max_connections_per_client: None,
        },
        admin: AdminConfig {
            listen: Some(addr("127.0.0.1:9999")),
            token: Some("secret".to_string()),
            state_file: Some("state.json".to_string()),
            metrics: false,
            acl: Default::default(),
        },
        pools: vec![web, PoolConfig::new("api.v2", StrategyKind::RoundRobin, vec![])],
        routes: vec![
            route(Some(HostMatch::Suffix(".example.com".to_string())), Some("/api"), "api.v2"),
            route(Some(HostMatch::Exact("static.example.com".to_string())), None, "web"),
            route(None, None, "web"),
        ],
        log: LogConfig {
            access: crate::config::Target::Path("/var/log/weir/access.log".into()),
            format: crate::config::Format::Json,
        },
        dns: crate::config::DnsConfig::default(),
        fleet: None,
        limits: Vec::new(),
    };
    assert_eq!(parse(FULL), expected);
}

#[test]
fn empty_file_gives_the_defaults() {
    assert_eq!(parse(""), Config::default());
    assert_eq!(parse("[server]\n[admin]\n"), Config::default());
}

#[test]
fn single_listen_string_and_integer_size() {
    let config = parse("[server]\nlisten = \"0.0.0.0:80\"\nmax_header_bytes = 2048\n");
    assert_eq!(config.server.listen, vec![addr("0.0.0.0:80")]);
    assert_eq!(config.server.max_header_bytes, 2048);
}

#[test]
fn admin_listen_off() {
    let config = parse("[admin]\nlisten = \"off\"\n");
    assert_eq!(config.admin.listen, None);
    assert_eq!(config.admin.token, None);
    assert!(config.admin.metrics);
}

#[test]
fn unknown_key_is_located_at_the_key() {
    let text = "[server]\nworkers = 2\n  listn = [\"127.0.0.1:1\"]\n";
    assert_eq!(error(text), "weir.toml:3:3: unknown key `listn` in [server]");
    assert_eq!(
        error("[[pool]]\nname = \"a\"\nweight = 1\n"),
        "weir.toml:3:1: unknown key `weight` in [[pool]]"
    );
    assert_eq!(
        error("[[route]]\npool = \"a\"\nhosts = \"x\"\n[[pool]]\nname = \"a\"\n"),
        "weir.toml:3:1: unknown key `hosts` in [[route]]"
    );
    let backend = "[[pool]]\nname = \"a\"\nbackends = [{ address = \"h:1\", wieght = 2 }]\n";
    assert_eq!(error(backend), "weir.toml:3:32: unknown key `wieght` in a backend");
}

#[test]
fn unknown_top_level_key() {
    let message = error("[server]\n[serverr]\nworkers = 1\n");
    assert!(message.starts_with("weir.toml:2:2: unknown key `serverr` in the file"), "{message}");
}

#[test]
fn column_counts_characters_not_bytes() {
    let text = "[[pool]]\nname = \"a\"\nbackends = [\"é:1\", \"x\"]\n";
    assert_eq!(error(text), "weir.toml:3:20: backend `x`: expected HOST:PORT");
    let text = "[admin]\n\"tøken\" = \"x\"\nnope = 1\n";
    assert_eq!(
        errors(text),
        vec![
            "weir.toml:2:1: unknown key `tøken` in [admin]",
            "weir.toml:3:1: unknown key `nope` in [admin]",
        ]
    );
    let text = "# ünïcödé\r\n[admin]\r\n  ключ = 1\r\n";
    assert!(errors(text).iter().all(|e| e.starts_with("weir.toml:3:")));
}

#[test]
fn three_problems_reported_in_order() {
    let text = r#"
[[route]]
pool = "missing"

[server]
workers = 1000

[[pool]]
name = "web"
connect_timeout = "5"
"#;
    assert_eq!(
        errors(text),
        vec![
            "weir.toml:3:8: no pool named `missing`; defined pools: [web]",
            "weir.toml:6:11: `workers` must be between 0 and 256, found 1000",
            "weir.toml:10:19: `connect_timeout`: missing unit: expected a duration such as \
             \"250ms\", \"5s\" or \"1m\"",
        ]
    );
}

#[test]
fn bad_durations() {
    assert_eq!(
        error("[server]\nheader_timeout = \"ten seconds\"\n"),
        "weir.toml:2:18: `header_timeout`: expected a duration such as \"250ms\", \"5s\" or \"1m\""
    );
    assert_eq!(
        error("[server]\nbody_timeout = 10\n"),
        "weir.toml:2:16: `body_timeout`: expected a duration string such as \"5s\", found integer"
    );
    assert_eq!(
        error("[server]\nheader_timeout = \"0s\"\n"),
        "weir.toml:2:18: `header_timeout` must be greater than zero"
    );
    assert_eq!(
        error("[server]\ndrain_timeout = \"-1s\"\n"),
        "weir.toml:2:17: `drain_timeout`: a duration cannot be negative"
    );
    assert_eq!(parse("[server]\ndrain_timeout = \"0s\"\n").server.drain_timeout, Duration::ZERO);
}

#[test]
fn bad_sizes_and_counts() {
    let errors =
        errors("[server]\nmax_header_bytes = \"2MiB\"\nmax_headers = 0\nmax_connections = \"9\"\n");
    assert_eq!(
        errors,
        vec![
            "weir.toml:2:20: `max_header_bytes` must be between 1KiB and 1MiB",
            "weir.toml:3:15: `max_headers` must be between 1 and 1000, found 0",
            "weir.toml:4:19: `max_connections`: expected an integer, found string",
        ]
    );
    assert_eq!(
        error("[server]\nmax_header_bytes = \"64 parsecs\"\n"),
        "weir.toml:2:20: `max_header_bytes`: expected a size such as \"65536\", \"64KiB\" or \"1MiB\""
    );
    assert!(error("[[pool]]\nname = \"a\"\nmax_idle = 100001\n").contains("between 0 and 100000"));
}

#[test]
fn weight_out_of_range() {
    let text =
        "[[pool]]\nname = \"web\"\nbackends = [{ address = \"127.0.0.1:1\", weight = 10001 }]\n";
    assert_eq!(error(text), "weir.toml:3:49: `weight` must be between 0 and 10000, found 10001");
    let text =
        "[[pool]]\nname = \"web\"\nbackends = [{ address = \"127.0.0.1:1\", weight = -1 }]\n";
    assert_eq!(error(text), "weir.toml:3:49: `weight` must be between 0 and 10000, found -1");
    let text = "[[pool]]\nname = \"web\"\nbackends = [{ address = \"127.0.0.1:1\", weight = 0 }]\n";
    assert_eq!(parse(text).pools[0].backends[0].weight, 0);
}

#[test]
fn duplicate_pool_name() {
    let text = "[[pool]]\nname = \"web\"\n\n[[pool]]\nname = \"web\"\n";
    assert_eq!(error(text), "weir.toml:5:8: duplicate pool name `web`");
}

#[test]
fn pool_names_are_required_and_checked() {
    assert_eq!(error("[[pool]]\nmax_idle = 1\n"), "weir.toml:1:1: [[pool]] needs a `name`");
    assert_eq!(error("[[pool]]\nname = \"\"\n"), "weir.toml:2:8: `name` must not be empty");
    assert_eq!(
        error("[[pool]]\nname = \"my pool\"\n[[route]]\npool = \"my pool\"\n"),
        "weir.toml:2:8: pool name `my pool` may use only letters, digits, `_`, `.` and `-`"
    );
    assert_eq!(
        error("[pool]\nname = \"a\"\n"),
        "weir.toml:1:1: `pool` must be an array of tables: write each as [[pool]]"
    );
}

#[test]
fn strategies() {
    let unknown = error("[[pool]]\nname = \"a\"\nstrategy = \"fastest\"\n");
    assert!(unknown.starts_with("weir.toml:3:12: unknown strategy `fastest`; expected one of "));
    assert!(StrategyKind::NAMES.iter().all(|name| unknown.contains(name)), "{unknown}");
    let pool = &parse("[[pool]]\nname = \"a\"\nstrategy = \"least_requests\"\n").pools[0];
    assert_eq!(pool.strategy, StrategyKind::LeastRequests);
}

#[test]
fn backends() {
    let text = "[[pool]]\nname = \"a\"\nbackends = [\"127.0.0.1:1\", { address = \"[::1]:2\" }]\n";
    let pool = &parse(text).pools[0];
    assert_eq!(pool.backends, vec![backend("127.0.0.1:1", 1), backend("[::1]:2", 1)]);
    assert_eq!(pool.backends[1].address.scheme, Scheme::Http);
    let bad = r#"[[pool]]
name = "a"
backends = ["httpx://api.internal:443", "127.0.0.1:1", "http://127.0.0.1:1", "nope", { weight = 1 }, 7]
"#;
    assert_eq!(
        errors(bad),
        vec![
            "weir.toml:3:13: backend `httpx://api.internal:443`: only http:// and https:// \
             are supported",
            "weir.toml:3:56: duplicate backend `127.0.0.1:1` in this pool",
            "weir.toml:3:78: backend `nope`: expected HOST:PORT",
            "weir.toml:3:86: a backend needs an `address` (or a `kubernetes` Service)",
            "weir.toml:3:102: `backends`: expected an address or a table such as \
             { address = \"127.0.0.1:9001\" }, found integer",
        ]
    );
    assert_eq!(
        error("[[pool]]\nname = \"a\"\nbackends = \"127.0.0.1:1\"\n"),
        "weir.toml:3:12: `backends`: expected an array, found string"
    );
}

#[test]
fn wrong_types_are_located_at_the_value() {
    let text = "server = 1\n[admin]\nlisten = \"localhost\"\nmetrics = \"yes\"\ntoken = 5\n";
    assert_eq!(
        errors(text),
        vec![
            "weir.toml:1:10: `server`: expected a table, found integer",
            "weir.toml:3:10: `listen`: expected an address such as \"127.0.0.1:9901\", or \"off\", \
             found \"localhost\"",
            "weir.toml:4:11: `metrics`: expected true or false, found string",
            "weir.toml:5:9: `token`: expected a string, found integer",
        ]
    );
    let listen = "[server]\nlisten = [\"127.0.0.1:1\", \"127.0.0.1:1\", 3]\n";
    assert_eq!(
        errors(listen),
        vec![
            "weir.toml:2:26: duplicate listen address 127.0.0.1:1",
            "weir.toml:2:41: `listen`: expected a string, found integer",
        ]
    );
    assert_eq!(
        error("[server]\nlisten = []\n"),
        "weir.toml:2:10: `listen` needs at least one address (or a [[server.tls]] listener)"
    );
}

#[test]
fn syntax_errors_have_a_position() {
    let found = errors("[server]\nworkers = 4\nmax_headers = = 5\n");
    assert!(!found.is_empty());
    assert!(found.iter().all(|e| e.starts_with("weir.toml:3:")), "{found:?}");
    let found = errors("[server\nworkers = 1\n");
    assert!(found[0].starts_with("weir.toml:1:8: "), "{found:?}");
}

#[test]
fn syntax_and_semantic_errors_together() {
    let text = "[server]\nworkers = 4\nworkers = 5\nmax_headers = 0\n[admin]\nbogus = true\n";
    let errors = errors(text);
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors[0].starts_with("weir.toml:3:1: duplicate key"), "{errors:?}");
    assert!(errors[1].starts_with("weir.toml:4:15: `max_headers`"), "{errors:?}");
    assert!(errors[2].starts_with("weir.toml:6:1: unknown key `bogus`"), "{errors:?}");
}

#[test]
fn values_guessed_after_a_syntax_error_are_not_reported_twice() {
    let errors = errors("[server]\nworkers = \nmax_headers = 5000\n");
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].starts_with("weir.toml:2:11: "), "{errors:?}");
    assert!(errors[1].starts_with("weir.toml:3:15: `max_headers`"), "{errors:?}");
}

#[test]
fn load_file_sets_the_source() {
    let dir = std::env::temp_dir().join(format!("weir-parse-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("weir.toml");
    std::fs::write(&path, "[server]\nworkers = 2\n").expect("write");
    let config = load_file(&path).expect("valid file");
    assert_eq!(config.source, Some(path.clone()));
    assert_eq!(config.server.workers, 2);

    std::fs::write(&path, "[server]\nworkers = -2\n").expect("write");
    let errors = load_file(&path).expect_err("invalid file");
    assert_eq!(errors[0].file, path.display().to_string());
    assert_eq!((errors[0].line, errors[0].col), (2, 11));
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn load_file_reports_io_errors_at_1_1() {
    let path = PathBuf::from("/nonexistent/weir/config.toml");
    let errors = load_file(&path).expect_err("missing file");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].file, "/nonexistent/weir/config.toml");
    assert_eq!((errors[0].line, errors[0].col), (1, 1));
    assert!(errors[0].message.contains("No such file"), "{}", errors[0].message);
}

#[test]
fn mangled_files_never_panic_and_errors_stay_in_the_text() {
    // A small deterministic generator: delete, duplicate or insert a TOML-ish character.
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |bound: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        usize::try_from(seed % bound as u64).expect("small")
    };
    let inserts = ['[', ']', '=', '"', '{', '}', ',', '\n', '#', '.', '-', 'é', '0', ' '];
    for _ in 0..3000 {
        let mut chars: Vec<char> = FULL.chars().collect();
        for _ in 0..1 + next(3) {
            let at = next(chars.len());
            match next(3) {
                0 => drop(chars.remove(at)),
                1 => chars.insert(at, chars[at]),
                _ => chars.insert(at, inserts[next(inserts.len())]),
            }
        }
        let text: String = chars.into_iter().collect();
        let lines = text.lines().count() + 1;
        if let Err(errors) = parse_str("weir.toml", &text) {
            assert!(!errors.is_empty());
            for e in &errors {
                assert!(e.line >= 1 && e.line <= lines && e.col >= 1, "{e} in\n{text}");
            }
            let positions: Vec<_> = errors.iter().map(|e| (e.line, e.col)).collect();
            assert!(positions.windows(2).all(|w| w[0] <= w[1]), "unsorted: {errors:?}");
        }
    }
}
