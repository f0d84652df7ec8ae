//! `[log]` parsing.

use super::parse_str;

#[test]
fn log_table_errors_are_located() {
    let text = "[log]\naccess = 3\nformat = \"xml\"\nlevel = 1\n";
    let errors = parse_str("weir.toml", text).unwrap_err();
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "weir.toml:2:10: `access`: expected \"off\", \"stdout\" or a file path, found integer",
            "weir.toml:3:10: `format` must be \"combined\" or \"json\"",
            "weir.toml:4:1: unknown key `level` in [log]",
        ]
    );
}
