//! Listener changes on reload: `[server] listen` gains and loses addresses without a
//! restart, the other listeners and the connections on a removed one carry on, and an
//! address that cannot be bound refuses the whole reload. Also by SIGHUP on the binary.

use crate::support::process::{temp_path, write_config, WeirProcess};
use crate::support::{self, config_for, connect, get_close, roundtrip, Balancer, TestBackend};

use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::{sleep, Instant};
use weir::config::Config;

/// Bound on every wait.
const REACT: Duration = Duration::from_secs(10);
/// Poll interval of the bounded waits.
const POLL: Duration = Duration::from_millis(20);

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n";

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("literal address")
}

fn with_listen(base: &Config, listen: &[SocketAddr]) -> Config {
    let mut config = base.clone();
    config.server.listen = listen.to_vec();
    config
}

/// Waits until connecting to `target` is refused.
async fn wait_refused(target: SocketAddr) {
    let deadline = Instant::now() + REACT;
    while TcpStream::connect(target).await.is_ok() {
        assert!(Instant::now() < deadline, "{target} still accepts connections");
        sleep(POLL).await;
    }
}

/// A request on a kept connection: 200 from A, and the connection stays open.
async fn keep_alive_ok(stream: &mut TcpStream) {
    let resp = roundtrip(stream, GET).await.expect("response on the kept connection");
    assert_eq!((resp.status, resp.text().as_str()), (200, "A"));
    assert!(!resp.has_connection_close(), "kept connection told to close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_and_removes_listeners_without_disturbing_others() {
    // Goal: a reload adds a listener and removes another while connections on both carry
    // on. Method: listen on 127.0.0.1:0 with a keep-alive connection and a slow request
    // open on it; reload to add 127.0.0.2:0 (served at once, the first port unchanged);
    // reload to drop 127.0.0.1:0 (refused now, yet the kept connection and the slow
    // request finish); reload with an address taken by another socket: refused whole.
    let a = TestBackend::start("A").await;
    let base = config_for(&[a.addr()]);
    let weir = Balancer::start(base.clone());
    let handle = weir.handle();
    let first = weir.addr();
    let mut kept = connect(first).await.expect("connect");
    keep_alive_ok(&mut kept).await;
    let before = a.requests();
    let slow = tokio::spawn(async move { get_close(first, "/slow?ms=800").await });
    let deadline = Instant::now() + REACT;
    // The slow request must be in flight before its listener goes.
    while a.requests() == before {
        assert!(Instant::now() < deadline, "the slow request never reached the backend");
        sleep(POLL).await;
    }

    let both = [addr("127.0.0.1:0"), addr("127.0.0.2:0")];
    handle.reload(with_listen(&base, &both)).expect("reload adds a listener");
    let addrs = handle.listen_addrs();
    assert_eq!((addrs.len(), addrs[0]), (2, first), "the first listener is untouched");
    let second = addrs[1];
    assert_eq!(second.ip().to_string(), "127.0.0.2");
    assert_eq!(get_close(second, "/").await.text(), "A");
    keep_alive_ok(&mut kept).await;

    handle.reload(with_listen(&base, &both[1..])).expect("reload removes a listener");
    assert_eq!(handle.listen_addrs(), vec![second]);
    wait_refused(first).await;
    keep_alive_ok(&mut kept).await;
    let slow = tokio::time::timeout(REACT, slow).await.expect("slow ends").expect("task");
    assert_eq!((slow.status, slow.text().as_str()), (200, "slow"));
    assert_eq!(get_close(second, "/").await.text(), "A");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a blocker");
    let blocked = taken.local_addr().expect("blocker address");
    let generation = handle.shared().snapshot.load().generation;
    let error = handle.reload(with_listen(&base, &[both[1], blocked])).expect_err("refused");
    assert!(error.contains(&format!("listen {blocked}")), "{error}");
    assert_eq!(handle.listen_addrs(), vec![second], "a refused reload changes nothing");
    assert_eq!(handle.shared().snapshot.load().generation, generation);
    assert_eq!(get_close(second, "/").await.text(), "A");
    weir.stop().await;
}

/// A config file for the binary with the given `listen` list and worker count.
fn config_file(backend: SocketAddr, listen: &[&str], workers: usize) -> String {
    let listen: Vec<String> = listen.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "[server]\nlisten = [{}]\nworkers = {workers}\n\n[admin]\nlisten = \"off\"\n\n\
         [[pool]]\nname = \"web\"\nbackends = [{{ address = \"{backend}\" }}]\n",
        listen.join(", ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_adds_and_removes_a_listener() {
    // Goal: SIGHUP applies `listen` changes to the running binary and says that a worker
    // count change needs a restart. Method: add 127.0.0.2:0 and change workers, send
    // SIGHUP, find the new address in the log and use it; then drop 127.0.0.1:0, send
    // SIGHUP, and see it refused while the other still serves.
    let a = TestBackend::start("A").await;
    let path = temp_path("listeners.toml");
    write_config(&path, &config_file(a.addr(), &["127.0.0.1:0"], 2));
    let (process, first) = WeirProcess::start(&["-c", path.to_str().unwrap()]).await;
    write_config(&path, &config_file(a.addr(), &["127.0.0.1:0", "127.0.0.2:0"], 3));
    process.signal("HUP");
    let line = process.wait_stderr(|l| l.contains("listening on http://127.0.0.2:")).await;
    let line = line.unwrap_or_else(|| panic!("no new listener:\n{}", process.stderr()));
    let second = support::process::address_after(&line, "http://");
    assert_eq!(get_close(second, "/").await.text(), "A");
    assert_eq!(get_close(first, "/").await.text(), "A");
    let warned = process.wait_stderr(|l| l.contains("worker count change")).await;
    assert!(warned.is_some(), "no worker count warning:\n{}", process.stderr());

    write_config(&path, &config_file(a.addr(), &["127.0.0.2:0"], 2));
    process.signal("HUP");
    let stopped = format!("stopped listening on http://{first}");
    let logged = process.wait_stderr(|l| l.contains(&stopped)).await;
    assert!(logged.is_some(), "no `{stopped}`:\n{}", process.stderr());
    wait_refused(first).await;
    assert_eq!(get_close(second, "/").await.text(), "A");
}
