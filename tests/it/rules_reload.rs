//! Route rules are reloadable and shown: `weir check` reports a bad rule as
//! FILE:LINE:COL, a SIGHUP with a bad rule keeps the running rules, a good one replaces
//! them, and `/api/v1/routes` and `/api/v1/pools` show the rules and their counters.

use std::process::Command;
use std::time::Duration;

use crate::support::admin::{admin_addr, admin_get};
use crate::support::process::{config_toml, temp_path, write_config, WeirProcess};
use crate::support::{send, Recorder};

/// The test file: one pool over `backend`, one route whose `X-Env` is `env` (written
/// as TOML, so `"a\r\nb"` is a CR LF), and a redirect on `/old`.
fn file(backend: std::net::SocketAddr, env: &str) -> String {
    format!(
        "{}\n[[route]]\npath_prefix = \"/old\"\npool = \"web\"\n\
         redirect = {{ to = \"/new$path\", status = 302 }}\n\n\
         [[route]]\npool = \"web\"\nmax_body = \"1KiB\"\n\
         request_headers = {{ set = {{ \"X-Env\" = \"{env}\" }} }}\n",
        config_toml(backend)
    )
}

/// The `X-Env` the backend got for one request.
async fn env_seen(weir: std::net::SocketAddr, backend: &Recorder) -> Vec<String> {
    assert_eq!(send(weir, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").await.status, 200);
    backend.requests().pop().expect("recorded").fields("X-Env")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_reload_and_a_bad_rule_keeps_the_running_ones() {
    let backend = Recorder::echo_target().await;
    let path = temp_path("rules-reload.toml");
    write_config(&path, &file(backend.addr(), "one"));
    let (weir, addr) = WeirProcess::start(&["--config", path.to_str().unwrap()]).await;
    let admin = admin_addr(&weir).await;
    assert_eq!(env_seen(addr, &backend).await, ["one"]);
    // A CR LF in a value: `weir check` names its line and column, and a reload refuses it.
    write_config(&path, &file(backend.addr(), "a\\r\\nX-Injected: 1"));
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["check", "--config", path.to_str().unwrap()])
        .output()
        .expect("run weir check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let at = format!("{}:21:39: header value", path.display());
    assert!(stderr.contains(&at), "no `{at}` in {stderr}");
    weir.signal("HUP");
    let refused =
        weir.wait_stderr(|line| line.contains("header value") && line.contains(":21:39:"));
    assert!(refused.await.is_some(), "the reload was refused:\n{}", weir.stderr());
    assert_eq!(env_seen(addr, &backend).await, ["one"], "the running rules stay");
    write_config(&path, &file(backend.addr(), "two"));
    weir.signal("HUP");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while env_seen(addr, &backend).await != ["two"] {
        assert!(tokio::time::Instant::now() < deadline, "the new rule never applied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let routes: serde_json::Value =
        serde_json::from_str(&admin_get(admin, "/api/v1/routes").await.text()).expect("JSON");
    let rules = &routes["routes"][1]["rules"];
    assert_eq!(rules["request_headers"]["set"]["X-Env"], "two", "{routes}");
    assert_eq!(rules["max_body"], 1024);
    let redirect = &routes["routes"][0]["rules"]["redirect"];
    assert_eq!(
        (redirect["to"].as_str(), redirect["status"].as_u64()),
        (Some("/new$path"), Some(302))
    );
    let moved = send(addr, b"GET /old/x?q HTTP/1.1\r\nHost: h\r\n\r\n").await;
    assert_eq!((moved.status, moved.header("Location")), (302, Some("/new/old/x?q")));
    let big = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2000\r\n\r\n";
    assert_eq!(send(addr, big).await.status, 413);
    let pools: serde_json::Value =
        serde_json::from_str(&admin_get(admin, "/api/v1/pools").await.text()).expect("JSON");
    let policy = &pools["frontend"]["policy"];
    assert_eq!(
        (policy["redirects"].as_u64(), policy["body_too_large"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(policy["denied"], 0, "{pools}");
}
