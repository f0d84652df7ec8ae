//! Shared helpers for weir's integration tests: start weir in-process on port 0 in front
//! of test backends, run the `weir` binary with its stderr captured, read its memory use
//! from `/proc`, and send simple requests. Every wait is bounded by a timeout.
// Each test binary uses only some helpers.
#![allow(dead_code)]

use crate::support::{connect, read_response, Response, TestBackend};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::time::{sleep, Instant};
use weir::config::{BackendAddress, BackendConfig, Config, PoolConfig, StrategyKind};
use weir::server::Handle;

/// How long to wait for the binary to log its listening address.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// Poll interval of the bounded waits below.
const POLL: Duration = Duration::from_millis(20);

/// A configuration with one round-robin pool `web` over `backends`, listening on
/// 127.0.0.1:0 with two workers and no admin listener.
pub fn config_for(backends: &[SocketAddr]) -> Config {
    let mut config = Config::default();
    config.server.listen = vec!["127.0.0.1:0".parse().expect("literal address")];
    config.server.workers = 2;
    config.server.drain_timeout = Duration::from_secs(2);
    config.admin.listen = None;
    let list = backends
        .iter()
        .map(|addr| BackendConfig {
            address: BackendAddress::parse(&addr.to_string()).expect("socket address parses"),
            weight: 1,
            resolve: false,
        })
        .collect();
    config.pools.push(PoolConfig::new("web", StrategyKind::RoundRobin, list));
    config
}

/// weir running in-process; dropping it starts a drain and joins on a side thread, so the
/// test runtime (which also runs the backends) never blocks.
pub struct Weir {
    handle: Option<Handle>,
    addr: SocketAddr,
}

impl Weir {
    /// Starts weir in front of `backend` with [`config_for`] defaults.
    pub fn start(backend: &TestBackend) -> Weir {
        Weir::start_with(&[backend.addr()], |_| {})
    }

    /// Starts weir in front of `backends`, after `tweak` adjusts the configuration.
    pub fn start_with(backends: &[SocketAddr], tweak: impl FnOnce(&mut Config)) -> Weir {
        let mut config = config_for(backends);
        tweak(&mut config);
        let handle = weir::server::start(config).expect("weir starts");
        let addr = handle.listen_addrs()[0];
        Weir { handle: Some(handle), addr }
    }

    /// The client listener address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Weir {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.begin_shutdown();
            std::thread::spawn(move || handle.shutdown());
        }
    }
}

/// Sends `req` on a new connection and reads one final response.
pub async fn send(addr: SocketAddr, req: &[u8]) -> Response {
    let mut stream = connect(addr).await.expect("connect to weir");
    crate::support::roundtrip(&mut stream, req).await.expect("response from weir")
}

/// `GET path` with `Connection: close` on a new connection.
pub async fn get_close(addr: SocketAddr, path: &str) -> Response {
    let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    let mut stream = connect(addr).await.expect("connect to weir");
    stream.write_all(req.as_bytes()).await.expect("write");
    read_response(&mut stream).await.expect("response from weir")
}

/// Time limit for one curl run: long enough for the 100 MiB transfers of tests/bodies.rs.
const CURL_MAX_SECS: &str = "120";

/// Runs the real `curl` client with `args`; returns its stdout, asserting it succeeded.
pub async fn curl(args: &[&str]) -> String {
    let out = tokio::process::Command::new("curl")
        .args(["-s", "-S", "--max-time", CURL_MAX_SECS])
        .args(args)
        .output()
        .await
        .expect("run curl");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "curl {args:?} failed: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A unique path under Cargo's per-test temporary directory.
pub fn temp_path(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    dir.join(format!("weir-{}-{n}-{name}", std::process::id()))
}

/// Lines read from one pipe of a child, by a background thread.
type Lines = Arc<Mutex<Vec<String>>>;

fn collect_lines<R: std::io::Read + Send + 'static>(pipe: R) -> Lines {
    let lines: Lines = Arc::default();
    let sink = Arc::clone(&lines);
    std::thread::spawn(move || {
        // Bounded by the pipe: it ends when the child exits.
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

/// The `weir` binary running as a child process; killed when dropped.
pub struct WeirProcess {
    child: Child,
    stdout: Lines,
    stderr: Lines,
}

impl WeirProcess {
    /// Spawns `weir ARGS` with stdout and stderr captured.
    pub fn spawn(args: &[&str]) -> WeirProcess {
        WeirProcess::spawn_env(args, &[])
    }

    /// [`WeirProcess::spawn`] with extra environment variables.
    pub fn spawn_env(args: &[&str], env: &[(&str, &str)]) -> WeirProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(args)
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn weir");
        let stdout = collect_lines(child.stdout.take().expect("piped stdout"));
        let stderr = collect_lines(child.stderr.take().expect("piped stderr"));
        WeirProcess { child, stdout, stderr }
    }

    /// Spawns `weir ARGS` and waits for its client listener address.
    /// Fails at once, with its stderr, if the process exits first.
    pub async fn start(args: &[&str]) -> (WeirProcess, SocketAddr) {
        WeirProcess::start_env(args, &[]).await
    }

    /// [`WeirProcess::start`] with extra environment variables.
    pub async fn start_env(args: &[&str], env: &[(&str, &str)]) -> (WeirProcess, SocketAddr) {
        let mut process = WeirProcess::spawn_env(args, env);
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let is_listening = |l: &String| l.contains("listening on http://") && !l.contains("admin");
        loop {
            let line = process.stderr.lock().unwrap().iter().find(|l| is_listening(l)).cloned();
            if let Some(line) = line {
                return (process, address_after(&line, "http://"));
            }
            if let Ok(Some(status)) = process.child.try_wait() {
                sleep(POLL).await;
                panic!("weir {args:?} exited ({status}) before listening:\n{}", process.stderr());
            }
            assert!(Instant::now() < deadline, "weir never listened:\n{}", process.stderr());
            sleep(POLL).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (`HUP`, `TERM`, ...) with `kill(1)`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// The first stderr line matching `pred`, waiting up to [`STARTUP_TIMEOUT`].
    pub async fn wait_stderr(&self, pred: impl Fn(&str) -> bool) -> Option<String> {
        wait_line(&self.stderr, pred).await
    }

    /// The first stdout line matching `pred`, waiting up to [`STARTUP_TIMEOUT`].
    pub async fn wait_stdout(&self, pred: impl Fn(&str) -> bool) -> Option<String> {
        wait_line(&self.stdout, pred).await
    }

    /// Waits up to `limit` for the process to exit.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            sleep(POLL).await;
        }
    }

    /// A field of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`).
    pub fn status_kib(&self, field: &str) -> u64 {
        let path = format!("/proc/{}/status", self.pid());
        let text = std::fs::read_to_string(&path).expect("read /proc status");
        text.lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("{field} missing in {path}"))
    }
}

impl Drop for WeirProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_line(lines: &Lines, pred: impl Fn(&str) -> bool) -> Option<String> {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    while Instant::now() < deadline {
        let found = lines.lock().unwrap().iter().find(|l| pred(l)).cloned();
        if found.is_some() {
            return found;
        }
        sleep(POLL).await;
    }
    None
}

/// Parses the `HOST:PORT` that follows `marker` in `line`.
pub fn address_after(line: &str, marker: &str) -> SocketAddr {
    let start = line.find(marker).expect("marker in line") + marker.len();
    let text: String = line[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();
    text.parse().unwrap_or_else(|_| panic!("no address in `{line}`"))
}

/// A config file for the binary: listener and admin on port 0, two workers, and one
/// round-robin pool `web` over `backend`.
pub fn config_toml(backend: SocketAddr) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 2\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [[pool]]\nname = \"web\"\nstrategy = \"round_robin\"\n\
         backends = [{{ address = \"{backend}\" }}]\n"
    )
}

/// Replaces the file at `path` with `text` atomically (write aside, then rename), so a
/// reload never reads half a file.
pub fn write_config(path: &std::path::Path, text: &str) {
    let aside = path.with_extension("tmp");
    std::fs::write(&aside, text).expect("write config");
    std::fs::rename(&aside, path).expect("rename config");
}
