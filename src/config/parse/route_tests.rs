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
