//! HTTP/2 connections across the `weir` binary's signals: SIGTERM drains them with the
//! two-step GOAWAY of RFC 9113 §6.8 (in-flight streams finish, later ones are refused),
//! SIGUSR2 hands over under HTTP/2 load with no failed stream, and SIGHUP leaves an open
//! connection serving. The clients are `support/h2_frames.py` (raw frames).

use crate::support::process::{config_toml, temp_path, write_config, WeirProcess};
use crate::support::slow_backend::answer_heads;
use crate::support::TestBackend;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::watch;
use tokio::time::{sleep, timeout, Instant};

/// Bound on every wait for weir, a backend or a client to react.
const REACT: Duration = Duration::from_secs(20);
/// Poll interval of the bounded waits on counters.
const POLL: Duration = Duration::from_millis(20);
/// Streams in flight when SIGTERM comes, as the issue asks.
const IN_FLIGHT: usize = 50;
/// The drain deadline of the SIGTERM test: far above what the streams need.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);

/// A `support/h2_frames.py` scenario as a child process, its stdout read line by line.
pub(super) struct Script {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    seen: Vec<String>,
}

impl Script {
    pub(super) fn start(scenario: &str, addr: SocketAddr, args: &[&str]) -> Script {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/support/h2_frames.py");
        let mut child = Command::new("python3")
            .args([path, scenario, &addr.ip().to_string(), &addr.port().to_string()])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("run python3 (with the h2 package: pip install h2)");
        let lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        Script { child, lines, seen: Vec::new() }
    }

    /// Reads lines until one satisfies `pred`; panics at end of output or after [`REACT`].
    pub(super) async fn wait_for(&mut self, pred: impl Fn(&str) -> bool) -> String {
        loop {
            let line = timeout(REACT, self.lines.next_line()).await;
            let line = line.unwrap_or_else(|_| panic!("client silent; so far {:?}", self.seen));
            let line = line.expect("client stdout");
            let line = line.unwrap_or_else(|| panic!("client ended; it said {:?}", self.seen));
            self.seen.push(line.clone());
            if pred(&line) {
                return line;
            }
        }
    }

    /// Writes `text` to the client's stdin.
    pub(super) async fn tell(&mut self, text: &str) {
        let stdin = self.child.stdin.as_mut().expect("piped stdin");
        stdin.write_all(text.as_bytes()).await.expect("write to the client");
    }

    /// Closes stdin and returns every line the client printed, once it exited 0.
    pub(super) async fn finish(mut self) -> Vec<String> {
        drop(self.child.stdin.take());
        let mut rest = String::new();
        let stdout = self.lines.into_inner().into_inner();
        let mut stdout = stdout;
        let read = timeout(REACT, stdout.read_to_string(&mut rest)).await;
        read.expect("the client ends").expect("client stdout");
        let status = timeout(REACT, self.child.wait()).await.expect("client exits");
        assert!(status.expect("client status").success(), "client failed: {:?}", self.seen);
        self.seen.extend(rest.lines().map(str::to_string));
        self.seen
    }
}

/// A backend that holds every answer until [`Gate::open`]: `200 gated` then.
pub(super) struct Gate {
    pub(super) addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    pub(super) open: watch::Sender<bool>,
}

impl Gate {
    pub(super) async fn start() -> Gate {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let (open, opened) = watch::channel(false);
        let count = Arc::clone(&requests);
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let opened = opened.clone();
                tokio::spawn(answer_heads(conn, Arc::clone(&count), move |_| {
                    let mut opened = opened.clone();
                    async move {
                        opened.wait_for(|open| *open).await.ok()?;
                        Some("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\ngated".to_string())
                    }
                }));
            }
        });
        Gate { addr, requests, open }
    }

    pub(super) fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Waits until the backend has read `n` requests; panics after [`REACT`].
    pub(super) async fn wait_requests(&self, n: usize) {
        let deadline = Instant::now() + REACT;
        while self.requests() < n {
            assert!(Instant::now() < deadline, "{} of {n} requests arrived", self.requests());
            sleep(POLL).await;
        }
    }
}

/// Lines of `seen` that satisfy `pred`.
fn count(seen: &[String], pred: impl Fn(&str) -> bool) -> usize {
    seen.iter().filter(|l| pred(l)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_http2_streams_with_a_two_step_goaway() {
    // Goal: RFC 9113 §6.8 on SIGTERM: a GOAWAY warning (last-stream-id 2^31-1), then,
    // one round trip later, the final GOAWAY; streams opened before it finish, streams
    // after it are never processed; the process exits 0 within `drain_timeout`. Method:
    // 50 streams wait at a gated backend; SIGTERM; the client opens stream 101 before it
    // answers the warning's PING (so it must be counted) and stream 103 after the final
    // GOAWAY; the gate opens; 51 answers, 103 never reaches the backend.
    let gate = Gate::start().await;
    let config = temp_path("h2-drain.toml");
    let text = config_toml(gate.addr).replacen(
        "workers = 2\n",
        &format!("workers = 2\ndrain_timeout = \"{}s\"\n", DRAIN_TIMEOUT.as_secs()),
        1,
    );
    write_config(&config, &text);
    let (mut weir, addr) = WeirProcess::start(&["-c", config.to_str().unwrap()]).await;
    let n = IN_FLIGHT.to_string();
    let mut client = Script::start("drain", addr, &[&n, "/"]);
    client.wait_for(|l| l == "open").await;
    gate.wait_requests(IN_FLIGHT).await;
    let signalled = Instant::now();
    weir.signal("TERM");
    let warning = client.wait_for(|l| l.starts_with("warning")).await;
    assert_eq!(warning, "warning error=0", "NO_ERROR");
    let last = IN_FLIGHT * 2 + 1;
    let fin = client.wait_for(|l| l.starts_with("final=")).await;
    assert_eq!(fin, format!("final={last} error=0"), "{:?}", client.seen);
    client.wait_for(|l| l == "late read").await;
    // Stream `last` was taken and reaches the backend; the late one does not.
    gate.wait_requests(IN_FLIGHT + 1).await;
    gate.open.send_replace(true);
    let status = weir.wait_exit(DRAIN_TIMEOUT).await;
    let took = signalled.elapsed();
    let status = status.unwrap_or_else(|| panic!("weir still running:\n{}", weir.stderr()));
    assert_eq!(status.code(), Some(0), "{}", weir.stderr());
    assert!(!weir.stderr().contains("drain timeout passed"), "{}", weir.stderr());
    eprintln!("SIGTERM to exit: {took:?} (drain_timeout {DRAIN_TIMEOUT:?})");
    let seen = client.finish().await;
    eprintln!("client: {:?}", seen.last());
    let answered = count(&seen, |l| l.ends_with(" status=200"));
    let ended = count(&seen, |l| l.ends_with(" ended"));
    assert_eq!((answered, ended), (IN_FLIGHT + 1, IN_FLIGHT + 1), "{seen:?}");
    let late = last + 2;
    assert!(!seen.iter().any(|l| l.starts_with(&format!("{late} "))), "{seen:?}");
    assert!(!seen.iter().any(|l| l.contains("reset=")), "{seen:?}");
    assert_eq!(gate.requests(), IN_FLIGHT + 1, "the stream after the final GOAWAY");
}

/// Requests the backends of `backends` have read, together.
fn served(backends: &[TestBackend]) -> usize {
    backends.iter().map(TestBackend::requests).sum()
}

/// Waits until `backends` have read `n` requests together; panics after [`REACT`].
async fn wait_served(backends: &[TestBackend], n: usize) {
    let deadline = Instant::now() + REACT;
    while served(backends) < n {
        assert!(Instant::now() < deadline, "{} of {n} requests served", served(backends));
        sleep(POLL).await;
    }
}

/// Streams each load client's connection keeps open, and the number of clients.
const LOAD_DEPTH: &str = "4";
const LOAD_CLIENTS: &str = "4";
/// Requests the load must get served by each process, so both carry real traffic.
const LOAD_SPELL: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usr2_under_http2_load_fails_no_stream() {
    // Goal: a binary upgrade under HTTP/2 load fails no stream: the old process's
    // connections get the two-step GOAWAY, what they took finishes, and what they did
    // not take (ids above the final GOAWAY's) goes to the new process on a new
    // connection, as RFC 9113 §8.7 allows. Method: 4 h2c clients, 4 streams deep each;
    // SIGUSR2 once the old process served 300; once it exited 0, 300 more; the tally
    // has no failure, and every client's connection got a GOAWAY.
    let backends = [
        TestBackend::start("A").await,
        TestBackend::start("B").await,
        TestBackend::start("C").await,
    ];
    let addrs: Vec<SocketAddr> = backends.iter().map(TestBackend::addr).collect();
    let pid_path = temp_path("h2-usr2.pid");
    let config = temp_path("h2-usr2.toml");
    write_config(&config, &crate::upgrade::config_text(&addrs, &pid_path));
    let (mut old, addr) = WeirProcess::start(&["-c", config.to_str().unwrap()]).await;
    let wait_pid = crate::upgrade::wait_pid_file;
    assert_eq!(wait_pid(&pid_path, None).await, old.pid());
    let mut load = Script::start("load", addr, &[LOAD_CLIENTS, LOAD_DEPTH]);
    load.wait_for(|l| l == "running").await;
    wait_served(&backends, LOAD_SPELL).await;
    old.signal("USR2");
    let new = crate::upgrade::Adopted(wait_pid(&pid_path, Some(old.pid())).await);
    let status = old.wait_exit(REACT).await;
    let status = status.unwrap_or_else(|| panic!("old weir still running:\n{}", old.stderr()));
    assert_eq!(status.code(), Some(0), "old exit status; stderr:\n{}", old.stderr());
    let by_old = served(&backends);
    wait_served(&backends, by_old + LOAD_SPELL).await;
    let seen = load.finish().await;
    let tally = seen.iter().find(|l| l.starts_with("ok=")).expect("the tally");
    eprintln!("HTTP/2 load across the upgrade: {tally}; {by_old} served before the old exited");
    let field = |name: &str| -> usize {
        let text = tally.split(' ').find_map(|f| f.strip_prefix(name)?.strip_prefix('='));
        text.and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{name} in {tally}"))
    };
    assert_eq!(field("failed"), 0, "{seen:?}\n{}", old.stderr());
    assert!(field("ok") >= 2 * LOAD_SPELL, "{tally}");
    // `warned`: connections that got a GOAWAY (each client's first was on the old process).
    assert!(field("warned") >= 4, "{tally}");
    assert!(!old.stderr().contains("panicked"), "{}", old.stderr());
    new.signal("TERM");
    new.wait_gone().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_connection_open_across_sighup_keeps_serving() {
    // Goal: a reload does not disturb open HTTP/2 connections: no GOAWAY, and the
    // connection's next stream follows the new config. Method: one h2c connection gets
    // A; the file is rewritten to B and SIGHUP sent; once a new connection gets B, the
    // open one's next stream gets 200 B, and no GOAWAY came on it.
    let a = TestBackend::start("A").await;
    let b = TestBackend::start("B").await;
    let config = temp_path("h2-reload.toml");
    write_config(&config, &config_toml(a.addr()));
    let (weir, addr) = WeirProcess::start(&["-c", config.to_str().unwrap()]).await;
    let mut client = Script::start("reload", addr, &[]);
    assert_eq!(client.wait_for(|l| l.starts_with("1 ")).await, "1 200 A goaway=False");
    client.wait_for(|l| l == "ready").await;
    write_config(&config, &config_toml(b.addr()));
    weir.signal("HUP");
    crate::signals::wait_for_backend(addr, "B").await;
    client.tell("next\n").await;
    assert_eq!(client.wait_for(|l| l.starts_with("3 ")).await, "3 200 B goaway=False");
    client.finish().await;
    assert!(!weir.stderr().contains("panicked"), "{}", weir.stderr());
}
