//! Head edits, rewrites and redirect targets.

use super::*;
use crate::config::rules::{value_template, HeaderRules, Rewrite, Template};
use crate::http1::name_set::NameSet;

fn vars() -> Vars<'static> {
    Vars {
        client_ip: "203.0.113.7",
        host: b"example.com",
        scheme: "http",
        request_id: "id1",
        request_uri: b"/a/b?x=1",
        pool: "web",
        backend: "10.0.0.1:80",
    }
}

fn header_rules(set: &[(&str, &str)], add: &[(&str, &str)], remove: &[&str]) -> HeaderLines {
    let list = |pairs: &[(&str, &str)]| -> Vec<(String, Template)> {
        pairs.iter().map(|(n, v)| (n.to_string(), value_template(v).expect("value"))).collect()
    };
    HeaderLines::new(&HeaderRules {
        set: list(set),
        add: list(add),
        remove: remove.iter().map(|n| n.to_string()).collect(),
    })
}

#[test]
fn remove_and_set_drop_every_field_of_the_name_then_lines_are_appended() {
    let mut head = b"GET / HTTP/1.1\r\nHost: h\r\nX-Debug: 1\r\nX-Env: dev\r\nx-debug: 2\r\n\
X-Keep: a:b\r\n\r\n"
        .to_vec();
    let rules = header_rules(&[("X-Env", "prod-$pool")], &[("X-Via", "$backend")], &["X-DEBUG"]);
    apply(&mut head, &rules, NameSet::ALL, &vars());
    let expected = "GET / HTTP/1.1\r\nHost: h\r\nX-Keep: a:b\r\nX-Env: prod-web\r\n\
X-Via: 10.0.0.1:80\r\n\r\n";
    assert_eq!(String::from_utf8_lossy(&head), expected);
}

#[test]
fn a_value_with_a_byte_no_field_may_hold_is_left_out() {
    let rules = header_rules(&[("X-Host", "$host"), ("X-Empty", "$request_id")], &[], &[]);
    let mut out = Vec::new();
    let bad = Vars { host: b"a\r\nX-Injected: 1", request_id: "", ..vars() };
    rules.push(&bad, &mut out);
    assert!(out.is_empty(), "{}", out.escape_ascii());
}

#[test]
fn retries_write_the_lines_again_for_another_backend() {
    let mut head = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n".to_vec();
    let rules = header_rules(&[], &[("X-Via", "$backend")], &[]);
    let mark = apply(&mut head, &rules, NameSet::ALL, &vars());
    rewrite_lines(&mut head, mark, &rules, &Vars { backend: "10.0.0.2:80", ..vars() });
    assert_eq!(head, b"GET / HTTP/1.1\r\nHost: h\r\nX-Via: 10.0.0.2:80\r\n\r\n");
}

#[test]
fn prefixes_are_replaced_on_the_normalised_path_at_a_segment_boundary() {
    let strip = Rewrite { from: "/api".into(), to: String::new() };
    let cases: [(&[u8], Option<&[u8]>); 7] = [
        (b"/api/users", Some(b"/users")),
        (b"/api", Some(b"/")),
        (b"/api/", Some(b"/")),
        (b"/apix/y", None),
        (b"/%61pi/x/../y", Some(b"/y")),
        (b"/api/..%2F..%2Fetc", Some(b"/..%2F..%2Fetc")),
        (b"/other", None),
    ];
    for (path, expected) in cases {
        let got = rewritten(path, &strip);
        assert_eq!(got.as_deref(), expected, "{}", path.escape_ascii());
    }
    let replace = Rewrite { from: "/v1".into(), to: "/v2".into() };
    assert_eq!(rewritten(b"/v1/a", &replace).as_deref(), Some(&b"/v2/a"[..]));
    assert_eq!(rewritten(b"/v1", &replace).as_deref(), Some(&b"/v2"[..]));
    let mut head = b"GET /api/a?x=/api/b HTTP/1.1\r\nHost: h\r\n\r\n".to_vec();
    assert!(rewrite_target(&mut head, &strip));
    assert_eq!(head, b"GET /a?x=/api/b HTTP/1.1\r\nHost: h\r\n\r\n");
    let mut star = b"OPTIONS * HTTP/1.1\r\n\r\n".to_vec();
    assert!(!rewrite_target(&mut star, &strip));
}

#[test]
fn locations_keep_the_query_and_refuse_a_forged_host() {
    let to = Template::parse("https://$host$path").expect("template");
    assert_eq!(location(&to, &vars()).as_deref(), Some(&b"https://example.com/a/b?x=1"[..]));
    let uri = Template::parse("https://$host$request_uri").expect("template");
    assert_eq!(location(&uri, &vars()).as_deref(), Some(&b"https://example.com/a/b?x=1"[..]));
    let own_query = Template::parse("/new?from=old").expect("template");
    assert_eq!(location(&own_query, &vars()).as_deref(), Some(&b"/new?from=old"[..]));
    for host in [&b"evil.com/@x"[..], b"a@b", b"a b", b"a\"b", b"", b"a\r\nX: 1"] {
        let forged = Vars { host, ..vars() };
        assert_eq!(location(&to, &forged), None, "{}", host.escape_ascii());
    }
    let ipv6 = Vars { host: b"[::1]", ..vars() };
    assert_eq!(location(&to, &ipv6).as_deref(), Some(&b"https://[::1]/a/b?x=1"[..]));
}

#[test]
fn strip_removes_response_fields_and_the_backends_id() {
    let rules = header_rules(&[("Server", "weir")], &[], &["X-Powered-By"]);
    let strip = Strip { rules: Some(&rules), id_header: Some("X-Request-Id") };
    let mut head = b"HTTP/1.1 200 OK\r\nServer: x\r\nX-Powered-By: y\r\nX-Request-Id: z\r\n\
Content-Length: 0\r\n\r\n"
        .to_vec();
    strip.apply(&mut head);
    assert_eq!(head, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
}

#[test]
fn constant_lines_are_written_once_at_load_and_template_lines_per_request() {
    let constant = header_rules(&[("X-Env", "prod")], &[("X-Empty", ""), ("X-B", "b$$")], &[]);
    assert_eq!(constant.constant(), Some(&b"X-Env: prod\r\nX-B: b$\r\n"[..]));
    assert!(!constant.uses.has(crate::config::rules::Var::Host));
    let mixed = header_rules(&[("X-Env", "prod")], &[("X-Host", "h=$host")], &[]);
    assert_eq!(mixed.constant(), None, "a line with a variable depends on the request");
    assert!(mixed.uses.has(crate::config::rules::Var::Host));
    let mut out = Vec::new();
    mixed.push(&vars(), &mut out);
    assert_eq!(out, b"X-Env: prod\r\nX-Host: h=example.com\r\n");
}

#[test]
fn strip_matches_whole_names_in_any_case_and_keeps_a_head_it_does_not_touch() {
    let rules = header_rules(&[("X-Env", "1")], &[], &["x-debug", "X-DEBUG"]);
    let untouched = b"GET / HTTP/1.1\r\nHost: h\r\nX-Environment: a\r\nX-Debugger: b\r\n\r\n";
    let mut head = untouched.to_vec();
    strip(&mut head, |line| rules.drops(line));
    assert_eq!(head, untouched, "names that only start with a dropped name stay");
    let mut head =
        b"GET / HTTP/1.1\r\nX-DEBUG: 1\r\nx-env: 2\r\nHost: h\r\nX-Debug: 3\r\n\r\n".to_vec();
    strip(&mut head, |line| rules.drops(line));
    assert_eq!(head, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    let mut start_line_only = b"GET /X-Debug: HTTP/1.1\r\n\r\n".to_vec();
    strip(&mut start_line_only, |line| rules.drops(line));
    assert_eq!(start_line_only, b"GET /X-Debug: HTTP/1.1\r\n\r\n", "the start line is no field");
}

#[test]
fn the_parse_names_every_field_a_rule_drops_so_skipping_the_pass_loses_nothing() {
    use crate::http1::forwarded::Trust;
    use crate::http1::request::{parse, Forwarding};
    use crate::http1::Parsed;
    let forwarding = Forwarding {
        client_ip: b"192.0.2.1",
        proto: b"http",
        max_headers: 100,
        trust: Trust::Everyone,
    };
    let rules = header_rules(&[("X-Env", "prod")], &[], &["X-Debug"]);
    for (request, kept) in [
        (&b"GET / HTTP/1.1\r\nHost: h\r\nx-DEBUG: 1\r\nX-Env: dev\r\n\r\n"[..], false),
        (b"GET / HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n\r\n", true),
    ] {
        let mut head = Vec::new();
        let Ok(Parsed::Complete(info)) = parse(request, &forwarding, &mut head) else { panic!() };
        assert_eq!(rules.may_drop(info.names), !kept, "{}", request.escape_ascii());
        apply(&mut head, &rules, info.names, &vars());
        let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
        assert!(!text.contains("x-debug") && !text.contains("x-env: dev"), "{text}");
        assert!(text.ends_with("x-env: prod\r\n\r\n"), "{text}");
    }
}
