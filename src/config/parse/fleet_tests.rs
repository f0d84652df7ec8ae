//! `[fleet]` parsing.

use super::parse_str;

#[test]
fn fleet_errors_are_located() {
    let text = "[fleet]\netcd = [\"127.0.0.1:2379\"]\nprefix = \"weir\"\ntimeout = \"90s\"\nlease = \"1s\"\nname = \"a b\"\nmembers = 3\n";
    let errors = parse_str("weir.toml", text).unwrap_err();
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "weir.toml:2:8: `etcd`: \"127.0.0.1:2379\" needs http:// or https://",
            "weir.toml:3:10: `prefix` starts and ends with `/`, as \"/weir/prod/\"; found \"weir\"",
            "weir.toml:4:11: `timeout` must be at most 30s",
            "weir.toml:5:9: `lease` must be between 2s and 30s",
            "weir.toml:6:8: `name` is 1 to 64 letters, digits, `.`, `-`, `_` or `:`",
            "weir.toml:7:1: unknown key `members` in [fleet]",
        ]
    );
    let errors = parse_str("weir.toml", "[fleet]\nprefix = \"/w/\"\n").unwrap_err();
    assert_eq!(
        errors[0].to_string(),
        "weir.toml:1:1: [fleet] needs `etcd`, such as [\"http://127.0.0.1:2379\"]"
    );
}

#[test]
fn a_fleet_section_reads_every_key() {
    let text = "[fleet]\netcd = [\"http://127.0.0.1:2379\", \"https://10.0.0.2:2379\"]\n\
                prefix = \"/weir/prod/\"\nname = \"lb-1\"\ntimeout = \"3s\"\nlease = \"15s\"\n\
                username = \"weir\"\npassword = \"p\"\n";
    let fleet = parse_str("weir.toml", text).expect("valid").fleet.expect("[fleet]");
    assert_eq!(fleet.etcd.len(), 2);
    assert_eq!((fleet.prefix.as_str(), fleet.name.as_deref()), ("/weir/prod/", Some("lb-1")));
    assert_eq!((fleet.timeout.as_secs(), fleet.lease.as_secs()), (3, 15));
    assert!(parse_str("w.toml", "[fleet]\netcd = [\"http://h:1\"]\nusername = \"u\"\n").is_err());
}
