//! `[[route]]` parsing: hosts, path prefixes, and the pool a route names.

use crate::config::parse::tests::{error, errors, parse};
use crate::config::HostMatch;

#[test]
fn route_to_a_missing_pool() {
    let text = "[[pool]]\nname = \"web\"\n[[pool]]\nname = \"api\"\n[[route]]\npool = \"ap\"\n";
    assert_eq!(error(text), "weir.toml:6:8: no pool named `ap`; defined pools: [web, api]");
    assert_eq!(
        error("[[route]]\npool = \"web\"\n"),
        "weir.toml:2:8: no pool named `web`; defined pools: []"
    );
    assert_eq!(
        error("[[pool]]\nname = \"web\"\n[[route]]\nhost = \"a.com\"\n"),
        "weir.toml:3:1: [[route]] needs a `pool`"
    );
}

#[test]
fn route_hosts_and_prefixes() {
    let route = |line: &str| format!("[[pool]]\nname = \"p\"\n[[route]]\npool = \"p\"\n{line}\n");
    let host = |line: &str| parse(&route(line)).routes[0].host.clone();
    assert_eq!(host("host = \"*.A.com\""), Some(HostMatch::Suffix(".a.com".to_string())));
    assert_eq!(host("host = \"A.com\""), Some(HostMatch::Exact("a.com".to_string())));
    for bad in ["\"\"", "\"*\"", "\"a.*.com\"", "\"*a.com\"", "\"*.\"", "\"a b\"", "\"a.com/x\""] {
        let errors = errors(&route(&format!("host = {bad}")));
        assert_eq!(errors.len(), 1, "{bad}: {errors:?}");
        assert!(errors[0].starts_with("weir.toml:5:8: "), "{bad}: {errors:?}");
    }
    let prefix = parse(&route("path_prefix = \"/x\"")).routes[0].path_prefix.clone();
    assert_eq!(prefix, Some("/x".to_string()));
    assert_eq!(
        error(&route("path_prefix = \"x\"")),
        "weir.toml:5:15: `path_prefix` must start with '/': \"x\""
    );
}

#[test]
fn path_prefixes_must_be_normalised_paths() {
    let route = |line: &str| format!("[[pool]]\nname = \"p\"\n[[route]]\npool = \"p\"\n{line}\n");
    // Requests are routed on their normalised path, so only a normal prefix can match.
    for (bad, normal) in
        [("/%61dmin", "/admin"), ("//a", "/a"), ("/a/../b", "/b"), ("/%2fx", "/%2Fx")]
    {
        assert_eq!(
            error(&route(&format!("path_prefix = \"{bad}\""))),
            format!(
                "weir.toml:5:15: `path_prefix` must be a normalised path (routing matches \
                 normalised paths): write \"{normal}\" for \"{bad}\""
            )
        );
    }
    for good in ["/", "/api/", "/a%2Fb", "/~x"] {
        assert_eq!(
            parse(&route(&format!("path_prefix = \"{good}\""))).routes[0].path_prefix.as_deref(),
            Some(good)
        );
    }
}

#[test]
fn policy_keys_parse_and_bad_blocks_are_located() {
    let text = "[server]\nproxy_protocol = true\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n\
[admin]\ndeny = [\"192.0.2.0/24\"]\n[[pool]]\nname = \"p\"\nsend_proxy_protocol = \"v2\"\n\
[[route]]\npool = \"p\"\nallow = [\"10.0.0.0/8\"]\n";
    let config = parse(text);
    assert!(config.server.proxy_protocol);
    let trusted: Vec<String> =
        config.server.trusted_proxies.iter().flatten().map(|c| c.to_string()).collect();
    assert_eq!(trusted, ["10.0.0.0/8", "::1/128"]);
    assert_eq!(config.admin.acl.deny[0].to_string(), "192.0.2.0/24");
    assert_eq!(config.routes[0].acl.allow[0].to_string(), "10.0.0.0/8");
    let version = config.pools[0].send_proxy_protocol;
    assert_eq!(version, Some(crate::proxy_protocol::Version::V2));
    let bad = "[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"10.1.2.3/8\"]\n";
    assert_eq!(
        error(bad),
        "weir.toml:2:34: `trusted_proxies`: \"10.1.2.3/8\" has host bits set: write \"10.0.0.0/8\""
    );
    let bad = "[[pool]]\nname = \"p\"\n[[route]]\npool = \"p\"\ndeny = \"10.0.0.0/8\"\n";
    assert!(error(bad).starts_with("weir.toml:5:8: `deny`: expected an array"), "{}", error(bad));
    let bad = "[[pool]]\nname = \"p\"\nsend_proxy_protocol = \"v3\"\n";
    assert!(error(bad).starts_with("weir.toml:3:23: `send_proxy_protocol` must be"));
}
