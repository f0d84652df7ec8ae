//! grpcio peers (`grpc_peer.py`, an independent gRPC stack): a server the test steers
//! on its stdin (health states, counts), the one-shot client of every RPC kind, and a
//! load client that calls continuously until told to stop.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

const PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/support/grpc_peer.py");
/// Longest wait for one line from a peer: they answer at once, unless the machine is
/// very busy.
const LINE_WAIT: Duration = Duration::from_secs(30);

/// What a client of every kind gets from a `test.Echo` server (grpcio's or tonic's),
/// as grpc_peer.py's client prints it.
pub const EVERY_KIND: &str = concat!(
    r#"{"unary": {"ok": "unary:hello"}, "#,
    r#""server_stream": {"ok": ["server:0:x", "server:1:x", "server:2:x"]}, "#,
    r#""client_stream": {"ok": "client:a+b+c"}, "#,
    r#""bidi": {"ok": ["bidi:m0", "bidi:m1", "bidi:m2", "bidi:m3", "bidi:m4"]}, "#,
    r#""missing": {"code": "NOT_FOUND", "message": "no such thing"}}"#
);

/// [`EVERY_KIND`] as a JSON value, to compare with what a tonic client got.
pub fn every_kind() -> Value {
    serde_json::from_str(EVERY_KIND).expect("JSON")
}

/// A grpcio process with its stdin and stdout; killed when dropped.
struct Peer {
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    _child: Child,
}

impl Peer {
    fn spawn(args: &[&str]) -> Peer {
        let mut child = Command::new("python3")
            .arg(PEER)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("run python3 (with grpcio: pip install grpcio grpcio-health-checking)");
        let stdin = child.stdin.take().expect("stdin");
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Peer { stdin, lines, _child: child }
    }

    async fn line(&mut self) -> String {
        let next = tokio::time::timeout(LINE_WAIT, self.lines.next_line()).await;
        next.expect("the peer answered in time").expect("read").expect("a line")
    }

    async fn say(&mut self, command: &str) {
        self.stdin.write_all(format!("{command}\n").as_bytes()).await.expect("write");
        self.stdin.flush().await.expect("flush");
    }
}

/// A grpcio server (service `test.Echo` and `grpc.health.v1.Health`).
pub struct GrpcServer {
    /// Where it listens.
    pub addr: SocketAddr,
    peer: Peer,
}

/// What a [`GrpcServer`] counted.
pub struct Counts {
    /// Calls of `Who` so far.
    pub who: u64,
    /// Each health check answered: when, and the status answered.
    pub checks: Vec<(SystemTime, String)>,
}

impl Counts {
    /// Checks answered `status` between `from` and `to`.
    pub fn checks_between(&self, status: &str, from: SystemTime, to: SystemTime) -> usize {
        let within = |at: &SystemTime| *at >= from && *at < to;
        self.checks.iter().filter(|(at, answered)| within(at) && answered == status).count()
    }
}

impl GrpcServer {
    /// Starts a server whose `Who` answers `name`.
    pub async fn start(name: &str) -> GrpcServer {
        GrpcServer::spawn(&["server", name]).await
    }

    /// Starts a server over TLS, presenting the certificate chain and key in the PEM
    /// files `cert` and `key` (grpcio offers ALPN `h2`).
    pub async fn start_tls(
        name: &str,
        cert: &std::path::Path,
        key: &std::path::Path,
    ) -> GrpcServer {
        let (cert, key) = (cert.to_str().expect("UTF-8"), key.to_str().expect("UTF-8"));
        GrpcServer::spawn(&["server", name, cert, key]).await
    }

    async fn spawn(args: &[&str]) -> GrpcServer {
        let mut peer = Peer::spawn(args);
        let port: u16 = peer.line().await.trim().parse().expect("a port");
        GrpcServer { addr: SocketAddr::from(([127, 0, 0, 1], port)), peer }
    }

    /// Sets the health of `service` to `state` (`SERVING`, `NOT_SERVING`); returns when
    /// the server has, with the time just before it was asked.
    pub async fn set_health(&mut self, service: &str, state: &str) -> SystemTime {
        let asked = SystemTime::now();
        self.peer.say(&format!("status {service} {state}")).await;
        assert_eq!(self.peer.line().await, "ok");
        asked
    }

    /// What the server counted so far.
    pub async fn counts(&mut self) -> Counts {
        self.peer.say("count").await;
        let doc: Value = serde_json::from_str(&self.peer.line().await).expect("JSON");
        let checks = doc["checks"].as_array().expect("checks").iter().map(|check| {
            let at = Duration::from_secs_f64(check[0].as_f64().expect("a time"));
            (SystemTime::UNIX_EPOCH + at, check[1].as_str().expect("a status").to_string())
        });
        Counts { who: doc["who"].as_u64().expect("who"), checks: checks.collect() }
    }
}

/// A gRPC server with `test.Echo` (its `Who` counted) and a health service whose states
/// the test sets: grpcio's ([`GrpcServer`]) or tonic's (`TonicServer`).
pub trait HealthPeer {
    /// Where it listens.
    fn addr(&self) -> SocketAddr;
    /// Sets the health of `service` to `state` (`SERVING`, `NOT_SERVING`); returns the
    /// time just before it was asked.
    async fn set_health(&mut self, service: &str, state: &str) -> SystemTime;
    /// What it counted so far.
    async fn counts(&mut self) -> Counts;
}

impl HealthPeer for GrpcServer {
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    async fn set_health(&mut self, service: &str, state: &str) -> SystemTime {
        GrpcServer::set_health(self, service, state).await
    }

    async fn counts(&mut self) -> Counts {
        GrpcServer::counts(self).await
    }
}

/// Runs every call of the grpcio client through `addr`; its JSON line of results.
pub async fn grpc_client(addr: SocketAddr) -> String {
    run_client(&["client", &addr.to_string()]).await
}

/// A bidirectional call through `addr` idle `before` its first message and `between`
/// its first answer and its second message; its JSON line (`ok` answers, or the error's
/// `code` and `message`).
pub async fn idle_call(addr: SocketAddr, before: Duration, between: Duration) -> String {
    let (before, between) = (before.as_secs_f64().to_string(), between.as_secs_f64().to_string());
    run_client(&["idle", &addr.to_string(), &before, &between]).await
}

async fn run_client(args: &[&str]) -> String {
    let run = Command::new("python3").arg(PEER).args(args).output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the client finished")
        .expect("run python3");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("UTF-8").trim().to_string()
}

/// A grpcio client calling `Who` through weir from 4 threads until stopped.
pub struct GrpcLoad(Peer);

impl GrpcLoad {
    /// Starts calling `addr`; returns once a first call succeeded.
    pub async fn start(addr: SocketAddr) -> GrpcLoad {
        let mut peer = Peer::spawn(&["load", &addr.to_string()]);
        assert_eq!(peer.line().await, "started");
        GrpcLoad(peer)
    }

    /// Stops; the answers by server name, and the failed calls by gRPC code.
    pub async fn stop(mut self) -> (Value, Value) {
        self.0.say("stop").await;
        let doc: Value = serde_json::from_str(&self.0.line().await).expect("JSON");
        (doc["ok"].clone(), doc["failed"].clone())
    }
}
