//! The known HTTP/2 attacks run against weir, each bounded in time: weir answers each
//! with GOAWAY (or a refused stream) within the bound, its memory stays bounded,
//! and the attack is counted in `weir_http2_attacks_total{kind}`. weir runs as a child
//! process, so its RSS can be read from `/proc`; each test prints the RSS growth and
//! the time to GOAWAY it measured (`cargo test -- --nocapture`). The attack clients are
//! `support/h2_attacks.py` (raw frames).

use crate::support::admin::admin_addr;
use crate::support::process::{temp_dir, WeirProcess};
use crate::support::scrape::{metric, scrape};
use crate::support::{client, Balancer, TestBackend};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// A MiB in the KiB `/proc` counts in.
const MIB: u64 = 1024;

/// weir as a child process (one worker) over `backend`, with `server` lines added to
/// its `[server]` table. Returns it, its client address and its admin address.
async fn weir(backend: SocketAddr, server: &str) -> (WeirProcess, SocketAddr, SocketAddr) {
    let dir = temp_dir("h2-attacks");
    let path = dir.join("weir.toml");
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n{server}\n\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [[pool]]\nname = \"web\"\nbackends = [{{ address = \"{backend}\" }}]\n"
    );
    std::fs::write(&path, text).expect("write config");
    let (process, addr) = WeirProcess::start(&["-c", path.to_str().unwrap()]).await;
    let admin = admin_addr(&process).await;
    (process, addr, admin)
}

/// Runs one attack of `h2_attacks.py` against `addr`; returns its report's words.
async fn attack(name: &str, addr: SocketAddr, arg: &str) -> HashMap<String, String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/support/h2_attacks.py");
    let run = tokio::process::Command::new("python3")
        .args([script, name, &addr.ip().to_string(), &addr.port().to_string(), arg])
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the attack ends within its bounds")
        .expect("run python3 (with the h2 package: pip install h2)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{name} failed: {stderr}");
    report(&String::from_utf8_lossy(&out.stdout))
}

fn report(line: &str) -> HashMap<String, String> {
    let words = line.split_whitespace().filter_map(|w| w.split_once('='));
    words.map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn number(report: &HashMap<String, String>, key: &str) -> u64 {
    let value = report.get(key).unwrap_or_else(|| panic!("no {key} in {report:?}"));
    value.parse().unwrap_or_else(|_| panic!("{key} in {report:?}"))
}

/// Attacks of `kind` weir counted.
async fn attacks(admin: SocketAddr, kind: &str) -> f64 {
    let text = scrape(admin).await;
    metric(&text, "weir_http2_attacks_total", &[("kind", kind)]).expect("the series exists")
}

/// One attack run against a fresh weir: its report, weir's RSS growth in KiB (its peak
/// during the attack over its RSS before), and weir still running for a scrape.
struct Attacked {
    report: HashMap<String, String>,
    growth: u64,
    admin: SocketAddr,
    weir: WeirProcess,
    _backend: TestBackend,
}

/// Runs `name` against a fresh weir with `server` config lines; prints the RSS growth
/// and the time to GOAWAY.
async fn measured(name: &str, arg: &str, server: &str) -> Attacked {
    let backend = TestBackend::start("b1").await;
    let (weir, addr, admin) = weir(backend.addr(), server).await;
    // One request first, so the growth is the attack's, not the first request's.
    assert_eq!(client::get_close(addr, "/").await.status, 200);
    let before = weir.status_kib("VmRSS");
    let report = attack(name, addr, arg).await;
    let growth = weir.status_kib("VmHWM").saturating_sub(before);
    eprintln!(
        "{name} {arg}: RSS growth {growth} KiB, GOAWAY {} after {} ms: {report:?}",
        report["goaway"],
        report.get("elapsed_ms").map_or("-", String::as_str),
    );
    Attacked { report, growth, admin, weir, _backend: backend }
}

/// Most PING or SETTINGS ACKs weir may send a flood before its GOAWAY: the burst it
/// allows (100) and what the codec still answers of the read in which the guard saw
/// the flood (one 8 KiB read: 481 PINGs or 546 SETTINGS). How many frames the client
/// got written first depends on the scheduler (on a loaded machine, all 100,000 fit in
/// the socket buffers before weir reads any), so weir's answers are what is bounded.
const MOST_ACKS: u64 = 1_000;

fn assert_acks_bounded(report: &HashMap<String, String>) {
    assert!(number(report, "acked") < MOST_ACKS, "{report:?}");
}

fn assert_goaway(report: &HashMap<String, String>) {
    assert_eq!(report["goaway"], "ENHANCE_YOUR_CALM", "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_gets_goaway_within_1000_resets_while_others_are_served() {
    // Goal: CVE-2023-44487. A client opening and resetting streams in a loop gets
    // GOAWAY within 1,000 resets, whether its resets arrive before weir accepted the
    // streams (`burst`: the codec's limit) or after (`paced`: weir's reset share), and
    // another client on another connection is served all the while.
    let backend = TestBackend::start("b1").await;
    let (process, addr, admin) = weir(backend.addr(), "").await;
    for mode in ["burst", "paced"] {
        let before = process.status_kib("VmRSS");
        let attacker = tokio::spawn(async move { attack("rapid_reset", addr, mode).await });
        let mut served = 0;
        // Bounded by the attack's own bounds: it ends within 120 s.
        while !attacker.is_finished() {
            let response = client::get_close(addr, "/").await;
            assert_eq!(response.status, 200, "another client is served during the attack");
            served += 1;
        }
        let report = attacker.await.unwrap();
        let growth = process.status_kib("VmHWM").saturating_sub(before);
        let processed = number(&report, "last_stream").div_ceil(2);
        eprintln!(
            "rapid_reset {mode}: RSS growth {growth} KiB, GOAWAY after {} ms and {processed} \
             streams weir processed ({} resets sent), {served} requests served meanwhile",
            report["elapsed_ms"], report["resets"]
        );
        assert_goaway(&report);
        assert!(processed <= 1000, "{report:?}");
        assert!(served >= 1);
    }
    assert_eq!(attacks(admin, "rapid_reset").await, 2.0);
    assert_eq!(client::get_close(addr, "/").await.status, 200, "weir serves on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuation_flood_is_cut_at_the_header_list_limit() {
    // Goal: the 2024 CONTINUATION flood. A header block that never ends gets GOAWAY
    // within the frames the header list limit (64 KiB) needs, and memory stays flat.
    // Bound whole: weir runs until the scrape at the end.
    let run = measured("continuation", "", "").await;
    let (report, growth, admin) = (run.report.clone(), run.growth, run.admin);
    assert_goaway(&report);
    // 64 KiB of 16 KiB frames, with the codec's margin: a few frames, not 64 MiB.
    assert!(number(&report, "bytes") < 64 * 1024 * 1024, "{report:?}");
    assert!(growth < 8 * MIB, "RSS grew {growth} KiB");
    assert_eq!(attacks(admin, "continuation").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http2_bomb_stays_under_64_mib_and_is_closed() {
    // Goal: the HTTP/2 Bomb. 2,048 streams, each with 60 KiB of headers from a 4 KiB
    // HPACK entry referenced 15 times, on a connection whose windows are 0 so no
    // response can end: weir's RSS grows less than 64 MiB, and the connection gets
    // GOAWAY once its streams' headers pass the connection's budget (1 MiB).
    // Bound whole: weir runs until the scrape at the end.
    let run = measured("bomb", "2048", "").await;
    let (report, growth, admin) = (run.report.clone(), run.growth, run.admin);
    assert_goaway(&report);
    assert!(growth < 64 * MIB, "RSS grew {growth} KiB");
    assert_eq!(attacks(admin, "header_budget").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_is_bounded_and_closed() {
    // Goal: PINGs past their budget (100 at once, then 10 a second) get GOAWAY, and
    // weir answers fewer than 1,000 of the 100,000 the client sends.
    // Bound whole: weir runs until the scrape at the end.
    let run = measured("ping_flood", "100000", "").await;
    let (report, growth, admin) = (run.report.clone(), run.growth, run.admin);
    assert_goaway(&report);
    assert_acks_bounded(&report);
    assert!(growth < 8 * MIB, "RSS grew {growth} KiB");
    assert_eq!(attacks(admin, "ping_flood").await, 1.0);
    // Logged at warn (within a budget), with the client's address, for the operator.
    let logged = run.weir.wait_stderr(|log| log.contains("HTTP/2 attack refused: ping_flood"));
    let line = logged.await.expect("a warn line for the attack");
    assert!(line.contains("WARN") && line.contains("127.0.0.1"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settings_flood_is_bounded_and_closed() {
    // Goal: SETTINGS frames past their budget (each needs an ACK) get GOAWAY, and weir
    // acknowledges fewer than 1,000 of them.
    // Bound whole: weir runs until the scrape at the end.
    let run = measured("settings_flood", "100000", "").await;
    let (report, growth, admin) = (run.report.clone(), run.growth, run.admin);
    assert_goaway(&report);
    assert_acks_bounded(&report);
    assert!(growth < 8 * MIB, "RSS grew {growth} KiB");
    assert_eq!(attacks(admin, "settings_flood").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_window_stall_is_closed_after_send_timeout() {
    // Goal: a client that never opens its window on a 64 MiB response holds at most its
    // window in weir, and its connection gets GOAWAY once the response waited
    // `send_timeout` (1 s here).
    // Bound whole: weir runs until the scrape at the end.
    let run = measured("stall", "67108864", "send_timeout = \"1s\"").await;
    let (report, growth, admin) = (run.report.clone(), run.growth, run.admin);
    assert_goaway(&report);
    assert_eq!(number(&report, "received"), 65_535, "one window: {report:?}");
    let elapsed = number(&report, "elapsed_ms");
    assert!((1000..10_000).contains(&elapsed), "GOAWAY after {elapsed} ms");
    assert!(growth < 8 * MIB, "RSS grew {growth} KiB");
    assert_eq!(attacks(admin, "stall").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_block_trickled_past_header_timeout_is_closed() {
    // Goal: slowloris over HTTP/2. A header block must arrive within `header_timeout`
    // (1 s here), as an HTTP/1 head must; one trickled a byte every 100 ms (up to 20 s)
    // gets GOAWAY after it, though bytes keep coming and the idle timeout (75 s) is far.
    // Bound whole: weir runs until the scrape at the end.
    let run = measured("slow_headers", "200", "header_timeout = \"1s\"").await;
    let (report, growth, admin) = (run.report.clone(), run.growth, run.admin);
    assert_goaway(&report);
    let elapsed = number(&report, "elapsed_ms");
    assert!((1000..10_000).contains(&elapsed), "GOAWAY after {elapsed} ms");
    assert!(number(&report, "bytes") < 200, "{report:?}");
    assert!(growth < 8 * MIB, "RSS grew {growth} KiB");
    assert_eq!(attacks(admin, "slow_headers").await, 1.0);
}

/// A client resets its stream while weir waits on the backend (for the response head,
/// or, with `partial`, for the rest of a body): the backend sees its connection closed
/// at once, not after a timeout, and the connection is not pooled.
async fn reset_cancels_the_exchange(partial: bool) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    // The backend timeout is 60 s by default: a close within 5 s is not its doing.
    let weir = Balancer::over(&[backend], |_| {});
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/support/h2_attacks.py");
    let addr = weir.addr();
    let mut child = tokio::process::Command::new("python3")
        .args([script, "reset_waiting", &addr.ip().to_string(), &addr.port().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run python3");
    let limit = Duration::from_secs(10);
    let (mut upstream, _) = tokio::time::timeout(limit, listener.accept()).await.unwrap().unwrap();
    let mut head = Vec::new();
    let mut buf = [0; 4096];
    // Bounded by the timeout: the request head is small.
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(limit, upstream.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "weir closed before the request head");
        head.extend_from_slice(&buf[..n]);
    }
    if partial {
        upstream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nhello")
            .await
            .unwrap();
    }
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"reset\n").await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), upstream.read(&mut buf)).await;
    // A close either way: EOF, or a reset when weir closed before it had read what the
    // backend sent (the kernel answers a close with unread bytes with RST).
    let reset = |e: &std::io::Error| e.kind() == std::io::ErrorKind::ConnectionReset;
    let closed_now = matches!(&closed, Ok(Ok(0))) || matches!(&closed, Ok(Err(e)) if reset(e));
    assert!(closed_now, "weir dropped the exchange: {closed:?}");
    stdin.write_all(b"done\n").await.unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).await.unwrap();
    assert_eq!(report(&line)["pong"], "1", "the connection lives on: {line}");
    assert_eq!(weir.pool_total(|p| p.retries.get()), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_while_waiting_for_the_head_closes_the_upstream_connection() {
    reset_cancels_the_exchange(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_mid_response_closes_the_upstream_connection() {
    reset_cancels_the_exchange(true).await;
}
