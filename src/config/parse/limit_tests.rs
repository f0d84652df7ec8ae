//! `[[limit]]`, a route's `limits` and `max_connections_per_client`: what is read, and
//! every refusal at its FILE:LINE:COL.

use std::time::Duration;

use super::parse_str;
use crate::config::{LimitKey, LimitMode, OnStoreError, Rate};

const POOL: &str = "[[pool]]\nname = \"web\"\nbackends = [{ address = \"127.0.0.1:9\" }]\n";

fn errors(text: &str) -> Vec<String> {
    match parse_str("weir.toml", &format!("{POOL}{text}")) {
        Ok(config) => panic!("expected errors, got {:?}", config.limits),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

/// The one error of `text`, which must be at `line:col` (lines count from the limit
/// text, after the 3 lines of the pool) and mention `needle`.
fn one_error(text: &str, line: usize, col: usize, needle: &str) {
    let shown = errors(text);
    assert_eq!(shown.len(), 1, "{shown:?}");
    let at = format!("weir.toml:{}:{col}: ", line + 3);
    assert!(shown[0].starts_with(&at), "want {at}: {shown:?}");
    assert!(shown[0].contains(needle), "want {needle}: {shown:?}");
}

#[test]
fn limits_are_read_and_routes_name_them() {
    let text = format!(
        "{POOL}[server]\nmax_connections_per_client = 10\n\
         [[limit]]\nname = \"api\"\nkey = \"header:X-Api-Key\"\nrate = \"6000/m\"\nburst = 20\n\
         mode = \"delay\"\ndelay = \"500ms\"\ntable_size = 1024\n\
         store = \"redis://127.0.0.1\"\non_store_error = \"open\"\nstore_timeout = \"20ms\"\n\
         [[limit]]\nname = \"per-ip\"\nkey = \"client_ip\"\nrate = \"100/s\"\n\
         [[route]]\npath_prefix = \"/api\"\npool = \"web\"\nlimits = [\"api\", \"per-ip\"]\n"
    );
    let config = parse_str("weir.toml", &text).unwrap();
    assert_eq!(config.server.max_connections_per_client, Some(10));
    let api = &config.limits[0];
    assert_eq!(api.key, LimitKey::Header("x-api-key".into()));
    assert_eq!(api.rate, Rate { count: 6000, per: Duration::from_secs(60) });
    assert_eq!(api.rate.interval_nanos(), 10_000_000);
    assert_eq!((api.burst, api.table_size), (20, 1024));
    assert_eq!(api.mode, LimitMode::Delay(Duration::from_millis(500)));
    assert_eq!(api.store.as_deref(), Some("127.0.0.1:6379"));
    assert_eq!(api.on_store_error, OnStoreError::Open);
    assert_eq!(api.store_timeout, Duration::from_millis(20));
    let per_ip = &config.limits[1];
    assert_eq!((per_ip.burst, per_ip.mode, per_ip.store.as_deref()), (0, LimitMode::Reject, None));
    assert_eq!(per_ip.on_store_error, OnStoreError::Local);
    assert_eq!(config.routes[0].limits, ["api", "per-ip"]);
}

#[test]
fn bad_limits_are_refused_where_they_are_written() {
    let limit = |rest: &str| format!("[[limit]]\nname = \"api\"\nkey = \"client_ip\"\n{rest}");
    one_error(&limit("rate = \"0/s\"\n"), 4, 8, "more than 0");
    one_error(&limit("rate = \"10/h\"\n"), 4, 8, "\"100/s\"");
    one_error(&limit("rate = \"ten/s\"\n"), 4, 8, "rate");
    one_error(&limit("rate = \"1/s\"\nburst = -1\n"), 5, 9, "burst");
    one_error(&limit("rate = \"1/s\"\ntable_size = 4\n"), 5, 14, "table_size");
    one_error(&limit("rate = \"1/s\"\nmode = \"queue\"\n"), 5, 8, "\"reject\" or \"delay\"");
    one_error(&limit("rate = \"1/s\"\nmode = \"delay\"\n"), 5, 8, "needs `delay`");
    one_error(&limit("rate = \"1/s\"\ndelay = \"1s\"\n"), 5, 9, "only with mode");
    one_error(&limit("rate = \"1/s\"\nmode = \"delay\"\ndelay = \"2m\"\n"), 6, 9, "at most 60s");
    one_error(&limit("rate = \"1/s\"\nstore = \"http://x\"\n"), 5, 9, "redis://");
    one_error(&limit("rate = \"1/s\"\nstore = \"redis://x:99999\"\n"), 5, 9, "redis://");
    one_error(&limit("rate = \"1/s\"\non_store_error = \"closed\"\n"), 5, 18, "never fails closed");
    one_error(&limit("rate = \"1/s\"\nkeys = 1\n"), 5, 1, "unknown key `keys`");
    one_error(
        "[[limit]]\nname = \"a\"\nkey = \"ip\"\nrate = \"1/s\"\n",
        3,
        7,
        "client_ip, header:NAME",
    );
    one_error("[[limit]]\nname = \"a\"\nkey = \"header:\"\nrate = \"1/s\"\n", 3, 7, "needs a name");
    one_error(
        "[[limit]]\nname = \"a\"\nkey = \"cookie:a b\"\nrate = \"1/s\"\n",
        3,
        7,
        "not a valid",
    );
    one_error("[[limit]]\nname = \"a b\"\nkey = \"route\"\nrate = \"1/s\"\n", 2, 8, "name");
    one_error("[[limit]]\nname = \"a\"\nkey = \"route\"\n", 1, 1, "needs `rate`");
    let twice = "[[limit]]\nname = \"a\"\nkey = \"route\"\nrate = \"1/s\"\n";
    one_error(&format!("{twice}{twice}"), 6, 8, "duplicate limit name");
}

#[test]
fn routes_may_name_only_limits_that_exist() {
    let limit = "[[limit]]\nname = \"api\"\nkey = \"route\"\nrate = \"1/s\"\n";
    let route = |limits: &str| format!("{limit}[[route]]\npool = \"web\"\nlimits = {limits}\n");
    one_error(&route("[\"apj\"]"), 7, 11, "no limit named `apj`; defined limits: [api]");
    one_error(&route("[\"api\", \"api\"]"), 7, 18, "named twice");
    one_error(&route("\"api\""), 7, 10, "array of limit names");
    let no_limits = "[[route]]\npool = \"web\"\nlimits = [\"api\"]\n";
    one_error(no_limits, 3, 11, "defined limits: []");
    one_error("[server]\nmax_connections_per_client = 0\n", 2, 30, "max_connections_per_client");
}
