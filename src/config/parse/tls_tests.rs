//! Tests for `[pool.tls]` and `[[server.tls]]`, with certificates made by rcgen.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::parse::parse_str;
use crate::config::parse::tests::{error, errors};
use crate::tls::{ClientSettings, TlsVersion};

/// A scratch directory with a self-signed certificate and its key, removed when dropped.
struct Pem(PathBuf);

impl Pem {
    fn new(tag: &str) -> Pem {
        let dir = std::env::temp_dir().join(format!("weir-parse-tls-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["a.test".to_string()]).unwrap();
        std::fs::write(dir.join("a.pem"), cert.cert.pem()).unwrap();
        std::fs::write(dir.join("a.key"), cert.signing_key.serialize_pem()).unwrap();
        Pem(dir)
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for Pem {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn pool_tls_keys_parse() {
    let pem = Pem::new("pool");
    let text = format!(
        "[[pool]]\nname = \"a\"\nbackends = [\"https://127.0.0.1:1\"]\n[pool.tls]\n\
         server_name = \"a.test\"\nca_file = \"{ca}\"\nclient_cert = \"{ca}\"\n\
         client_key = \"{key}\"\nalpn = [\"http/1.1\"]\ninsecure_skip_verify = true\n\
         handshake_timeout = \"2s\"\n",
        ca = pem.path("a.pem"),
        key = pem.path("a.key"),
    );
    let config = parse_str("weir.toml", &text).unwrap();
    let tls = config.pools[0].tls.clone().unwrap();
    let expected = ClientSettings {
        server_name: Some("a.test".into()),
        ca_file: Some(pem.path("a.pem").into()),
        client_cert: Some(pem.path("a.pem").into()),
        client_key: Some(pem.path("a.key").into()),
        alpn: vec!["http/1.1".into()],
        insecure_skip_verify: true,
        handshake_timeout: Duration::from_secs(2),
    };
    assert_eq!(tls, expected);
}

#[test]
fn pool_tls_problems_are_located() {
    let base = "[[pool]]\nname = \"a\"\n";
    assert_eq!(
        error(&format!("{base}[pool.tls]\nx = 1\n")),
        "weir.toml:4:1: unknown key `x` in [pool.tls]"
    );
    assert_eq!(
        error(&format!("{base}tls = {{ verify = true }}\n")),
        "weir.toml:3:9: unknown key `verify` in [pool.tls]"
    );
    assert_eq!(
        error(&format!("{base}[pool.tls]\nalpn = []\n")),
        "weir.toml:4:8: `alpn` needs 1 to 8 protocol names"
    );
    let missing = error(&format!("{base}[pool.tls]\nca_file = \"/nonexistent/ca.pem\"\n"));
    // At the setting that names the file.
    assert!(
        missing.starts_with("weir.toml:4:11: [pool.tls]: cannot read ca_file /nonexistent/ca.pem"),
        "{missing}"
    );
    let pem = Pem::new("half");
    let half = error(&format!("{base}[pool.tls]\nclient_cert = \"{}\"\n", pem.path("a.pem")));
    let expected = "weir.toml:4:15: [pool.tls]: client_cert and client_key must be set together";
    assert_eq!(half, expected);
}

#[test]
fn server_tls_listeners_parse() {
    let pem = Pem::new("server");
    let (cert, key) = (pem.path("a.pem"), pem.path("a.key"));
    let text = format!(
        "[server]\nlisten = []\n[[server.tls]]\nlisten = \"127.0.0.1:8443\"\n\
         certs = [{{ cert = \"{cert}\", key = \"{key}\" }}]\nmin_version = \"1.3\"\n\
         proxy_protocol = true\n"
    );
    let config = parse_str("weir.toml", &text).unwrap();
    assert!(config.server.listen.is_empty());
    assert!(config.server.tls[0].settings.proxy_protocol && !config.server.proxy_protocol);
    let listener = &config.server.tls[0];
    assert_eq!(listener.listen, "127.0.0.1:8443".parse().unwrap());
    assert_eq!(listener.settings.certs, vec![(PathBuf::from(&cert), PathBuf::from(&key))]);
    assert_eq!(listener.settings.min_version, Some(TlsVersion::Tls13));
    assert_eq!(listener.settings.alpn, vec!["h2".to_string(), "http/1.1".to_string()]);
}

#[test]
fn server_tls_problems_are_located() {
    let pem = Pem::new("bad");
    let (cert, key) = (pem.path("a.pem"), pem.path("a.key"));
    let head = "[[server.tls]]\nlisten = \"127.0.0.1:8443\"\n";
    let swapped = format!("{head}certs = [{{ cert = \"{key}\", key = \"{cert}\" }}]\n");
    let swapped = error(&swapped);
    assert!(swapped.starts_with("weir.toml:3:9: [[server.tls]]: cert "), "{swapped}");
    let ok_certs = format!("certs = [{{ cert = \"{cert}\", key = \"{key}\" }}]\n");
    assert_eq!(
        error(&format!("{head}{ok_certs}min_version = \"1.1\"\n")),
        "weir.toml:4:15: `min_version`: expected \"1.2\" or \"1.3\", found \"1.1\""
    );
    assert_eq!(
        errors(&format!("[[server.tls]]\n{ok_certs}")),
        vec!["weir.toml:1:1: [[server.tls]] needs `listen`"]
    );
    assert_eq!(
        error(&format!("{head}certs = [{{ cert = \"{cert}\" }}]\n")),
        "weir.toml:3:9: a `certs` entry needs `key`: an array such as \
         [{ cert = \"a.pem\", key = \"a.key\" }]"
    );
    assert!(!Path::new(&cert).ends_with("missing"));
}
