//! Tests for `kubernetes = { service, namespace, port }` backends.

use crate::config::backend::KubePort;
use crate::config::parse::parse_str;
use crate::config::parse::tests::error;
use crate::config::Resolve;

/// A pool with one backend written `backend`.
fn pool(backend: &str) -> String {
    format!("[[pool]]\nname = \"a\"\nbackends = [{backend}]\n")
}

#[test]
fn a_kubernetes_backend_parses_with_a_port_name_or_number() {
    let text = pool(
        "{ kubernetes = { service = \"api\", namespace = \"prod\", port = \"http\" }, weight = 3 }, \
         { kubernetes = { service = \"web\", namespace = \"prod\", port = 8080 } }",
    );
    let config = parse_str("weir.toml", &text).unwrap();
    let [named, numbered] = &config.pools[0].backends[..] else { panic!("two backends") };
    assert_eq!(named.resolve, Resolve::Kubernetes(KubePort::name("http").unwrap()));
    assert_eq!((named.weight, named.address.host.as_str()), (3, "api.prod.svc"));
    assert_eq!(named.kubernetes(), Some(("prod", "api", KubePort::name("http").unwrap())));
    assert_eq!(numbered.resolve, Resolve::Kubernetes(KubePort::Number(8080)));
    assert_eq!(numbered.address.port, 8080);
    assert!(named.is_discovered());
}

#[test]
fn bad_kubernetes_backends_point_at_the_mistake() {
    let message =
        error(&pool("{ kubernetes = { service = \"API\", namespace = \"p\", port = 80 } }"));
    assert!(
        message.starts_with("weir.toml:3:40: `service`: `API` is not a Kubernetes name"),
        "{message}"
    );
    let message = error(&pool("{ kubernetes = { service = \"a\", namespace = \"p\", port = 0 } }"));
    assert!(message.starts_with("weir.toml:3:69: `port` must be between 1 and 65535"), "{message}");
    let message = error(&pool(
        "{ kubernetes = { service = \"a\", namespace = \"p\", port = \"way-too-long-name\" } }",
    ));
    assert!(message.contains("is not a Kubernetes port name"), "{message}");
    let message = error(&pool("{ kubernetes = { service = \"a\", port = 80 } }"));
    assert_eq!(message, "weir.toml:3:28: a kubernetes backend needs a `namespace`");
    let message = error(&pool(
        "{ address = \"a:1\", kubernetes = { service = \"a\", namespace = \"p\", port = 1 } }",
    ));
    assert!(message.contains("has no `address` or `resolve`"), "{message}");
    let message =
        error(&pool("{ kubernetes = { service = \"a\", namespace = \"p\", port = 1, x = 1 } }"));
    assert_eq!(message, "weir.toml:3:72: unknown key `x` in a kubernetes backend");
}

#[test]
fn json_writes_and_reads_a_kubernetes_backend_back() {
    use crate::config::parse::value::{backend_for, resolve_json};
    let text =
        pool("{ kubernetes = { service = \"api\", namespace = \"prod\", port = \"http\" } }");
    let config = parse_str("weir.toml", &text).unwrap();
    let backend = &config.pools[0].backends[0];
    let resolve = serde_json::Value::String(backend.resolve.json());
    assert_eq!(resolve, "kubernetes:http");
    let read = resolve_json(Some(&resolve)).unwrap();
    assert_eq!(read, backend.resolve);
    assert_eq!(backend_for(&backend.written(), read).unwrap(), backend.address);
    let numbered = resolve_json(Some(&serde_json::json!("kubernetes:8080"))).unwrap();
    assert_eq!(backend_for("web.prod.svc", numbered).unwrap().port, 8080);
    assert!(backend_for("api.prod", read).is_err(), "not SERVICE.NAMESPACE.svc");
    assert!(backend_for("API.prod.svc", read).is_err());
    assert!(resolve_json(Some(&serde_json::json!("kubernetes:0"))).is_err());
    assert!(resolve_json(Some(&serde_json::json!("kubernetes:Bad_Name"))).is_err());
}
