//! Route rules and `[server] request_id`: each problem at its own line and column.

use crate::config::parse::tests::{error, errors, parse};
use crate::config::rules::{Part, Rewrite, Var};
use crate::config::RouteRules;

/// A file with one pool and one route holding `lines`; the route's rules start on
/// line 5.
fn route(lines: &str) -> String {
    format!("[[pool]]\nname = \"p\"\n[[route]]\npool = \"p\"\n{lines}\n")
}

fn rules(lines: &str) -> RouteRules {
    parse(&route(lines)).routes[0].rules.clone()
}

#[test]
fn header_rules_compile_their_templates() {
    let rules = rules(
        r#"request_headers = { set = { "X-Env" = "prod", "X-Who" = "$client_ip via ${scheme}" }, remove = ["X-Debug"] }
response_headers = { add = { "Strict-Transport-Security" = "max-age=63072000" } }"#,
    );
    let request = &rules.request_headers;
    assert_eq!(request.remove, ["X-Debug"]);
    assert_eq!(request.set[0].0, "X-Env");
    let who = &request.set[1].1;
    let expected =
        [Part::Var(Var::ClientIp), Part::Literal(" via ".into()), Part::Var(Var::Scheme)];
    assert_eq!(who.parts, expected);
    assert_eq!(rules.response_headers.add[0].0, "Strict-Transport-Security");
}

#[test]
fn bad_header_rules_are_errors_at_their_position() {
    // A CR or LF in a value: TOML's "\r\n" escapes reach the checker as bytes.
    assert_eq!(
        error(&route(r#"request_headers = { set = { "X-A" = "a\r\nX-Injected: 1" } }"#)),
        "weir.toml:5:37: header value \"a\\r\\nX-Injected: 1\" holds byte 0x0d, which is not \
allowed in a field value"
    );
    assert_eq!(
        error(&route(r#"response_headers = { add = { "X-A" = "$nope" } }"#)),
        "weir.toml:5:38: unknown variable `$nope`; known: $client_ip $host $scheme \
$request_id $path $request_uri $pool $backend"
    );
    for name in [
        "Content-Length",
        "transfer-encoding",
        "Host",
        "Connection",
        "Upgrade",
        "TE",
        "Trailer",
        "Transfer_Encoding",
        "X-Forwarded-For",
    ] {
        let text = route(&format!(r#"request_headers = {{ set = {{ "{name}" = "1" }} }}"#));
        let message = error(&text);
        assert!(message.starts_with("weir.toml:5:29: "), "{name}: {message}");
        assert!(message.contains("framing or forwarding"), "{name}: {message}");
        let text = route(&format!(r#"response_headers = {{ remove = ["{name}"] }}"#));
        assert!(error(&text).starts_with("weir.toml:5:32: "), "{name}");
    }
    assert_eq!(
        error(&route(r#"request_headers = { set = { "X A" = "1" } }"#)),
        "weir.toml:5:29: header name \"X A\" is not an HTTP token of 1 to 128 bytes"
    );
    assert_eq!(
        error(&route(r#"request_headers = { sett = {} }"#)),
        "weir.toml:5:21: unknown key `sett` in `request_headers`"
    );
    assert_eq!(
        error(&route(r#"request_headers = { add = { "X-Id" = "$request_id" } }"#)),
        "weir.toml:5:38: `$request_id` needs `[server] request_id = true`"
    );
    let with_ids = format!(
        "[server]\nrequest_id = true\n{}",
        route(r#"request_headers = { add = { "X-Id" = "$request_id" } }"#)
    );
    assert!(parse(&with_ids).routes[0].rules.request_headers.uses(Var::RequestId));
    let many: Vec<String> = (0..33).map(|n| format!("\"X-{n}\"")).collect();
    let text = route(&format!("response_headers = {{ remove = [{}] }}", many.join(", ")));
    assert_eq!(error(&text), "weir.toml:5:31: at most 32 headers per list");
}

#[test]
fn redirects_need_a_target_and_a_redirect_status() {
    let redirect =
        rules(r#"redirect = { to = "https://$host$request_uri", status = 308 }"#).redirect;
    let redirect = redirect.expect("a redirect");
    assert_eq!((redirect.status, redirect.to.source.as_str()), (308, "https://$host$request_uri"));
    let https = rules("https_redirect = true");
    assert!(https.https_only && https.redirect.is_some_and(|r| r.status == 301));
    assert!(rules("https_redirect = false").is_empty());
    assert_eq!(
        error(&route("redirect = { status = 301 }")),
        "weir.toml:5:12: `redirect` needs a target: `to = \"https://...\"`"
    );
    assert_eq!(
        error(&route(r#"redirect = { to = "/x", status = 304 }"#)),
        "weir.toml:5:34: `status` must be one of [301, 302, 303, 307, 308], found 304"
    );
    assert_eq!(
        error(&route(r#"redirect = { to = "example.com/x" }"#)),
        "weir.toml:5:19: `to` must be an http:// or https:// URL or a path starting with '/', \
not \"example.com/x\""
    );
    assert_eq!(
        error(&route(r#"redirect = { to = "https://a b/" }"#)),
        "weir.toml:5:19: `to` holds ' ', which a URI may not hold"
    );
    let both = route("https_redirect = true\nredirect = { to = \"/x\" }");
    assert_eq!(error(&both), "weir.toml:6:1: `redirect` and `https_redirect` exclude each other");
}

#[test]
fn rewrites_and_max_body() {
    let strip = rules(r#"strip_prefix = "/api""#).rewrite;
    assert_eq!(strip, Some(Rewrite { from: "/api".into(), to: String::new() }));
    let replace = rules(r#"replace_prefix = { from = "/v1", to = "/v2" }"#).rewrite;
    assert_eq!(replace, Some(Rewrite { from: "/v1".into(), to: "/v2".into() }));
    assert_eq!(
        error(&route(r#"strip_prefix = "/a/../b""#)),
        "weir.toml:5:16: `strip_prefix` must be a normalised path (routing matches normalised \
paths): write \"/b\" for \"/a/../b\""
    );
    assert_eq!(
        error(&route(r#"replace_prefix = { from = "/v1" }"#)),
        "weir.toml:5:18: `replace_prefix` needs both `from` and `to`"
    );
    assert_eq!(
        error(&route("strip_prefix = \"/a\"\nreplace_prefix = { from = \"/v1\", to = \"/v2\" }")),
        // Keys are read in name order: the error is at the later name.
        "weir.toml:5:1: `strip_prefix` and `replace_prefix` exclude each other"
    );
    assert_eq!(rules(r#"max_body = "1MiB""#).max_body, Some(1 << 20));
    assert_eq!(rules("max_body = 10").max_body, Some(10));
    assert_eq!(
        error(&route("max_body = 0")),
        "weir.toml:5:12: `max_body` must be between 1 and 1024GiB"
    );
}

#[test]
fn request_ids_are_off_by_default_and_named_when_on() {
    assert_eq!(parse("").server.request_id, None);
    let on = parse("[server]\nrequest_id = true\n").server.request_id.expect("on");
    assert_eq!(on.header, "X-Request-Id");
    let named = parse("[server]\nrequest_id = { header = \"X-Trace\" }\n").server.request_id;
    assert_eq!(named.expect("on").header, "X-Trace");
    assert_eq!(parse("[server]\nrequest_id = false\n").server.request_id, None);
    let errors = errors("[server]\nrequest_id = { header = \"Content-Length\", x = 1 }\n");
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].starts_with("weir.toml:2:25: "), "{errors:?}");
    assert_eq!(errors[1], "weir.toml:2:43: unknown key `x` in `request_id`");
}

#[test]
fn the_benchmark_policy_file_holds_three_header_rules_and_an_access_list() {
    let config = parse(include_str!("../../../bench/policy.toml"));
    let route = &config.routes[0];
    let (request, response) = (&route.rules.request_headers, &route.rules.response_headers);
    let rules = request.set.len() + request.remove.len() + request.add.len() + response.add.len();
    assert_eq!(rules, 3);
    assert!(!route.acl.is_open());
}
