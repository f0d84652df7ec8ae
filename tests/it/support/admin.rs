//! Calls to the admin listener: `GET`, and calls with a method, a bearer token and a JSON
//! body; the backends a pools document lists, and the `weir` binary with its admin
//! address.
use super::process::{address_after, WeirProcess};
use super::{connect, roundtrip, Response};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::{sleep, Instant};

/// The token the tests configure.
pub const TOKEN: &str = "s3cret-token";
/// Bound on waits for weir to react (a drain to finish, a file change to apply).
pub const REACT: Duration = Duration::from_secs(10);
/// Poll interval of those waits.
const POLL: Duration = Duration::from_millis(20);

/// One API answer: status and parsed JSON body (`Null` when the body is not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub json: Value,
    pub www_authenticate: Option<String>,
}

/// `METHOD path` on the admin listener, with `Bearer token` and `body` when given.
pub async fn call(
    admin: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Reply {
    let mut stream = connect(admin).await.expect("connect to admin");
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: admin\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let response = roundtrip(&mut stream, request.as_bytes()).await.expect("admin response");
    let json = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    let www_authenticate = response.header("www-authenticate").map(str::to_string);
    Reply { status: response.status, json, www_authenticate }
}

/// `GET path` on a fresh connection to `admin`, without a token.
pub async fn admin_get(admin: SocketAddr, path: &str) -> Response {
    let mut stream = connect(admin).await.expect("connect to admin");
    let req = format!("GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n");
    roundtrip(&mut stream, req.as_bytes()).await.expect("admin response")
}

/// [`call`] with the test token.
pub async fn authed(admin: SocketAddr, method: &str, path: &str, body: Option<&str>) -> Reply {
    call(admin, method, path, Some(TOKEN), body).await
}

/// `GET /api/v1/pools`.
pub async fn pools(admin: SocketAddr) -> Value {
    let reply = call(admin, "GET", "/api/v1/pools", None, None).await;
    assert_eq!(reply.status, 200, "{:?}", reply.json);
    reply.json
}

/// `(address, state, weight)` of every backend of pool `pool` in a pools document.
pub fn backends(doc: &Value, pool: &str) -> Vec<(String, String, u64)> {
    let pools = doc["pools"].as_array().expect("pools array");
    let Some(found) = pools.iter().find(|p| p["name"] == pool) else { return Vec::new() };
    let list = found["backends"].as_array().expect("backends array");
    list.iter()
        .map(|b| {
            let address = b["address"].as_str().unwrap_or_default().to_string();
            let state = b["state"].as_str().unwrap_or_default().to_string();
            (address, state, b["weight"].as_u64().unwrap_or_default())
        })
        .collect()
}

/// Polls `/api/v1/pools` until `done` holds; panics with the last document after
/// [`REACT`].
pub async fn pools_until(admin: SocketAddr, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + REACT;
    loop {
        let doc = pools(admin).await;
        if done(&doc) {
            return doc;
        }
        assert!(Instant::now() < deadline, "never saw {what}: {doc}");
        sleep(POLL).await;
    }
}

/// The admin address a running `weir` logged.
pub async fn admin_addr(process: &WeirProcess) -> SocketAddr {
    let line = process.wait_stderr(|l| l.contains("admin listening on http://")).await;
    let line = line.unwrap_or_else(|| panic!("no admin address:\n{}", process.stderr()));
    address_after(&line, "http://")
}

/// A config file for the binary: client and admin listeners on port 0 (admin with the
/// test token), two workers, and a round-robin pool `web` over `backends`.
pub fn config_with_token(backends: &[SocketAddr]) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 2\ndrain_timeout = \"5s\"\n\n\
         [admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n\n\
         [[pool]]\nname = \"web\"\nbackends = [{}]\n",
        list.join(", ")
    )
}
