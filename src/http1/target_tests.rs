use super::*;

fn normal(path: &str) -> String {
    String::from_utf8(normalise_path(path.as_bytes()).into_owned()).unwrap()
}

#[test]
fn origin_form_is_kept_as_received() {
    let target = parse(b"/a/../b?x=%zz#", false);
    assert_eq!(target, Err("fragment in the request target"));
    let target = parse(b"/a/../b?q=100%", false).unwrap();
    assert_eq!(target, Target { authority: None, lead: b"", origin: b"/a/../b?q=100%" });
    assert_eq!(parse(b"*", true).unwrap().origin, b"*");
    assert_eq!(parse(b"*", false), Err("`*` target without OPTIONS"));
    assert_eq!(parse(b"*x", true), Err("request target is neither origin nor absolute form"));
    assert!(parse(b"admin", false).is_err());
    assert!(parse(b"", false).is_err());
}

#[test]
fn absolute_form_yields_its_authority_and_origin() {
    let t = parse(b"HTTPS://Ex.com:8443/a?b", false).unwrap();
    assert_eq!(
        (t.authority, t.lead, t.origin),
        (Some(&b"Ex.com:8443"[..]), &b""[..], &b"/a?b"[..])
    );
    let t = parse(b"http://[::1]:80", false).unwrap();
    assert_eq!((t.authority, t.lead, t.origin), (Some(&b"[::1]:80"[..]), &b"/"[..], &b""[..]));
    let t = parse(b"http://a?x=1", false).unwrap();
    assert_eq!((t.lead, t.origin), (&b"/"[..], &b"?x=1"[..]));
    assert_eq!(parse(b"http://a", true).unwrap().lead, b"*");
    assert_eq!(parse(b"http://a:65535/", false).unwrap().authority, Some(&b"a:65535"[..]));
}

#[test]
fn bad_absolute_forms_are_refused() {
    let refused = [
        ("ftp://a/", "request target scheme is not http or https"),
        ("http:/a/", "absolute-form target without an authority"),
        ("http:///x", "empty authority in the request target"),
        ("http://?x", "empty authority in the request target"),
        ("http://u@a/", "userinfo in the request target"),
        ("http://u:p@a/", "userinfo in the request target"),
        ("http://a:/", "bad port in the request target"),
        ("http://a:65536/", "bad port in the request target"),
        ("http://a:000080/", "bad port in the request target"),
        ("http://a:8x/", "bad port in the request target"),
        ("http://a:1:2/", "bad port in the request target"),
        ("http://:80/", "bad host in the request target"),
        ("http://%61/", "bad host in the request target"),
        ("http://a,b/", "bad host in the request target"),
        ("http://[]/", "bad IP literal in the request target"),
        ("http://[::1/", "bad IP literal"),
        ("http://[::1]x/", "bad port in the request target"),
        ("http://a/x#y", "fragment in the request target"),
        ("http://a/%zz", "invalid percent-encoding in the request path"),
        ("http://a/x\\y", "backslash in the request path"),
    ];
    for (target, reason) in refused {
        assert_eq!(parse(target.as_bytes(), false), Err(reason), "{target}");
    }
}

#[test]
fn broken_percent_encoding_and_backslashes_are_refused() {
    for path in ["/%zz", "/%4", "/a%", "/%%41", "/%g0", "/a\\..\\b"] {
        assert!(parse(path.as_bytes(), false).is_err(), "{path}");
    }
    // Double encoding is valid: %25 is a literal '%'.
    assert!(parse(b"/%252e%252e/%00", false).is_ok());
}

#[test]
fn normal_paths_are_borrowed() {
    for path in ["/", "/admin", "/a/b/", "/a.b/..c/.d", "*"] {
        assert!(matches!(normalise_path(path.as_bytes()), Cow::Borrowed(_)), "{path}");
        assert_eq!(normal(path), path);
    }
    assert_eq!(normal(""), "/");
}

#[test]
fn every_spelling_of_a_path_normalises_to_one() {
    let cases = [
        ("/%61dmin", "/admin"),
        ("/%41%44MIN", "/ADMIN"),
        ("//admin", "/admin"),
        ("/x/../admin", "/admin"),
        ("/./admin/.", "/admin/"),
        ("/admin/x/..", "/admin/"),
        ("/a//b///c//", "/a/b/c/"),
        ("/%2e%2E/admin", "/admin"),
        ("/x/.%2e/admin", "/admin"),
        ("/x/%2e/admin", "/x/admin"),
        ("/../admin", "/admin"),
        ("/../../..", "/"),
        ("/..", "/"),
        ("/a/b/../../../../c", "/c"),
        ("/%7e%5f%2d%2e%30", "/~_-.0"),
    ];
    for (path, expected) in cases {
        assert_eq!(normal(path), expected, "{path}");
        assert_eq!(normal(expected), expected, "normalising twice changes {expected}");
    }
}

#[test]
fn reserved_and_hostile_escapes_stay_encoded() {
    let cases = [
        // %2F is a data slash, not a separator: never decoded, never resolved.
        ("/%2fadmin", "/%2Fadmin"),
        ("/x%2F..%2Fadmin", "/x%2F..%2Fadmin"),
        // Decoded once only: %25 is '%', so %252e is "%2e" literally, not a dot.
        ("/%252e%252e/admin", "/%252e%252e/admin"),
        ("/%00/a", "/%00/a"),
        ("/a%3F/b", "/a%3F/b"),
        ("/%5c..%5cadmin", "/%5C..%5Cadmin"),
        ("/\u{e9}/../a", "/a"),
    ];
    for (path, expected) in cases {
        assert_eq!(normal(path), expected, "{path}");
    }
}

#[test]
fn long_and_deep_paths_stay_linear_and_bounded() {
    // 100k dot segments and a 100k-byte segment: the output never outgrows the input.
    let many_up = "/..".repeat(100_000) + "/x";
    assert_eq!(normal(&many_up), "/x");
    let deep = "/a".repeat(50_000) + &"/..".repeat(49_999);
    assert_eq!(normal(&deep), "/a/");
    let long = format!("/{}", "%61".repeat(100_000));
    let out = normalise_path(long.as_bytes());
    assert_eq!(out.len(), 100_001);
    assert!(out.len() <= long.len());
    let slashes = "/".repeat(100_000);
    assert_eq!(normal(&slashes), "/");
}

#[test]
fn the_path_ends_at_the_query() {
    assert_eq!(path_of(b"/a/b?c/../d"), b"/a/b");
    assert_eq!(path_of(b"?x"), b"");
    assert_eq!(path_of(b"/a"), b"/a");
}

#[test]
fn dot_segments_with_parameters_are_refused() {
    // Tomcat and Jetty strip `;params` from a segment, so `/x/..;/admin` is `/admin` there
    // while the normalised path keeps `..;` as a name and misses an `/admin` rule.
    let refused = [
        "/x/..;/admin",
        "/..;/admin",
        "/x/.;/admin",
        "/x/..;jsessionid=1/admin",
        "/x/%2e%2e;/admin",
        "/x/.%2E;/admin",
        "/x/%2e;x/admin",
        "/x/..;",
        "http://a/x/..;/admin",
    ];
    for target in refused {
        let reason = "dot segment with parameters in the request path";
        assert_eq!(parse(target.as_bytes(), false), Err(reason), "{target}");
    }
    // Parameters on other segments, dots inside names, and the query are not refused.
    for target in ["/a;b/c", "/...;/x", "/x.;/y", "/a/b..;c", "/x?/..;/admin", "/%2e%2e%2e;/x"] {
        assert!(parse(target.as_bytes(), false).is_ok(), "{target}");
    }
}
