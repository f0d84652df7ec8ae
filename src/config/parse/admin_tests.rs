//! `[admin]` parsing.

use super::parse_str;

fn shown(text: &str) -> Vec<String> {
    match parse_str("weir.toml", text) {
        Ok(config) => panic!("expected errors, got {:?}", config.admin),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn empty_or_padded_admin_token_is_refused_where_it_is_written() {
    let message = "`token` must not start or end with white space";
    for token in ["\" \"", "\" s3cret\"", "\"s3cret\\t\""] {
        let text = format!("[admin]\nlisten = \"127.0.0.1:0\"\ntoken = {token}\n");
        assert_eq!(shown(&text), [format!("weir.toml:3:9: {message}")], "{token}");
    }
    let empty = "[admin]\ntoken = \"\"\n";
    assert_eq!(shown(empty), ["weir.toml:2:9: `token` must not be empty"]);
    let config = parse_str("weir.toml", "[admin]\ntoken = \"s3cret\"\n").unwrap();
    assert_eq!(config.admin.token.as_deref(), Some("s3cret"));
}
