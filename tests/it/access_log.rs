//! The access log end to end: JSON lines written by a real weir parse one by one with
//! every documented field, and a writer that cannot keep up (its stdout pipe is never
//! read) drops lines, counted in a metric, instead of stalling traffic.

use crate::support::process::write_config;
use crate::support::scrape::{metric, scrape};
use crate::support::{self, connect, roundtrip, send, Balancer, TestBackend};

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use weir::access_log::{Format, Target};

const FIELDS: [&str; 13] = [
    "time",
    "client",
    "method",
    "path",
    "status",
    "bytes_in",
    "bytes_out",
    "total_ms",
    "upstream_ms",
    "pool",
    "backend",
    "retries",
    "error",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_parse_with_every_field() {
    // Goal: each request gives one JSON line with the documented fields and true values.
    // Method: 10 GETs, a POST and one refused request (bad framing), then a drain that
    // flushes.
    let backend = TestBackend::start("a").await;
    let path = support::process::temp_path("access.json");
    let mut config = support::config_for(&[backend.addr()]);
    config.log.access = Target::Path(path.clone());
    config.log.format = Format::Json;
    let weir = Balancer::start(config);
    let addr = weir.addr();
    for i in 0..10 {
        let req = format!("GET /item?n={i} HTTP/1.1\r\nHost: t\r\nUser-Agent: test/1\r\n\r\n");
        assert_eq!(send(addr, req.as_bytes()).await.status, 200);
    }
    let post = b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world";
    assert_eq!(send(addr, post).await.status, 200);
    let bad = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
    assert_eq!(send(addr, bad).await.status, 400);
    weir.stop().await;
    let text = std::fs::read_to_string(&path).expect("access log written");
    let lines: Vec<serde_json::Value> =
        text.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert_eq!(lines.len(), 12, "one line per request:\n{text}");
    for line in &lines {
        for field in FIELDS {
            assert!(line.get(field).is_some(), "`{field}` missing in {line}");
        }
    }
    let ok = lines.iter().filter(|l| l["status"] == 200).count();
    assert_eq!(ok, 11);
    let first = lines.iter().find(|l| l["path"] == "/item?n=0").expect("first request");
    assert_eq!(first["method"], "GET");
    assert_eq!(first["backend"], backend.addr().to_string());
    assert_eq!(first["pool"], "web");
    assert_eq!(first["user_agent"], "test/1");
    assert!(first["bytes_out"].as_u64().unwrap() > 0);
    // `bytes_in` counts request body bytes, as the README says: none for a GET.
    assert_eq!(first["bytes_in"], 0, "{first}");
    let upload = lines.iter().find(|l| l["path"] == "/upload").expect("the POST");
    assert_eq!(upload["bytes_in"], 11, "{upload}");
    assert!(first["upstream_ms"].as_f64().is_some());
    let refused = lines.iter().find(|l| l["status"] == 400).expect("the refused request");
    assert!(refused["error"].as_str().is_some_and(|e| e.contains("Content-Length")), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_that_falls_behind_drops_lines_and_traffic_flows() {
    // Goal: with the log writer blocked (stdout is a pipe nobody reads), every request
    // still succeeds and the dropped lines are counted. Method: the binary, 24,000 GETs.
    let backend = TestBackend::start("a").await;
    let path = support::process::temp_path("stalled.toml");
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 2\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [log]\naccess = \"stdout\"\nformat = \"json\"\n\
         [[pool]]\nname = \"web\"\nbackends = [\"{}\"]\n",
        backend.addr()
    );
    write_config(&path, &config);
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["-c", path.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn weir");
    let (addr, admin) = addresses(&mut child).await;
    let mut clients = Vec::new();
    for _ in 0..24 {
        clients.push(tokio::spawn(async move { keep_alive_gets(addr, 1000).await }));
    }
    for client in clients {
        assert_eq!(client.await.expect("client task"), 1000, "every request succeeded");
    }
    let text = scrape(admin).await;
    let dropped = metric(&text, "weir_access_log_dropped_total", &[]).expect("metric");
    assert!(dropped > 0.0, "a stalled writer drops lines:\n{text}");
    let _ = child.kill();
    let _ = child.wait();
}

/// Sends `count` GETs on one keep-alive connection; returns how many got a 200.
async fn keep_alive_gets(addr: std::net::SocketAddr, count: usize) -> usize {
    let mut stream = connect(addr).await.expect("connect");
    let mut ok = 0;
    for _ in 0..count {
        let response = roundtrip(&mut stream, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").await;
        ok += usize::from(response.is_ok_and(|r| r.status == 200));
    }
    let _ = stream.shutdown().await;
    ok
}

/// Reads the client and admin addresses from the binary's stderr (bounded).
async fn addresses(
    child: &mut std::process::Child,
) -> (std::net::SocketAddr, std::net::SocketAddr) {
    let mut stderr = child.stderr.take().expect("piped stderr");
    let found = tokio::task::spawn_blocking(move || {
        let mut seen = String::new();
        let mut buf = [0u8; 4096];
        // Bounded: the two lines come at start; stop after 64 KiB or EOF.
        while seen.len() < 64 * 1024 {
            let n = stderr.read(&mut buf).unwrap_or(0);
            if n == 0 {
                break;
            }
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            let client = seen.lines().find(|l| l.contains("listening on") && !l.contains("admin"));
            let admin = seen.lines().find(|l| l.contains("admin listening on"));
            if let (Some(client), Some(admin)) = (client, admin) {
                let parse = |l: &str| support::process::address_after(l, "http://");
                return Some((parse(client), parse(admin)));
            }
        }
        None
    });
    let found = tokio::time::timeout(Duration::from_secs(20), found).await;
    found.expect("weir started in time").expect("reader").expect("listening lines")
}
