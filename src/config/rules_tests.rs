//! Templates and the names and values rules may use.

use super::*;

#[test]
fn templates_split_into_literals_and_variables() {
    let template = Template::parse("a$host${path}b$$c$request_uri").expect("parses");
    let expected = [
        Part::Literal("a".into()),
        Part::Var(Var::Host),
        Part::Var(Var::Path),
        Part::Literal("b$c".into()),
        Part::Var(Var::RequestUri),
    ];
    assert_eq!(template.parts, expected);
    assert!(template.uses(Var::Host) && !template.uses(Var::Backend));
    assert!(Template::parse("${host").is_err());
    assert!(Template::parse("$").unwrap_err().contains("unknown variable `$`"));
    assert!(Template::parse("$hostx").unwrap_err().contains("`$hostx`"));
}

#[test]
fn names_must_be_tokens_and_not_framing() {
    assert!(header_name("X-Env").is_ok());
    for bad in
        ["", "X Env", "X:Env", "Content-Length", "HOST", "Keep-Alive", "trailer", "X-Forwarded_For"]
    {
        assert!(header_name(bad).is_err(), "{bad}");
    }
    assert!(header_name(&"x".repeat(MAX_NAME_BYTES + 1)).is_err());
    assert!(value_template("a\tb é").is_ok());
    for bad in ["a\rb", "a\nb", "a\0b", " a", "a "] {
        assert!(value_template(bad).is_err(), "{bad:?}");
    }
    assert!(value_template(&"a".repeat(MAX_TEMPLATE_BYTES + 1)).is_err());
}
