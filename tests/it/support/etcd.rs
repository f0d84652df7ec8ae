//! A real etcd for the tests (Debian's `etcd-server`): one member on 127.0.0.1 with
//! client and peer ports held for it ([`HeldPort`]) and a temporary data directory. It can
//! be killed and started again on the same ports and data, and compacted with `etcdctl`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::process::{hold_port, temp_dir, HeldPort, TempDir};

/// How long etcd may take to be ready to serve clients.
const READY: Duration = Duration::from_secs(20);

/// A running etcd member; killed on drop.
pub struct Etcd {
    child: Option<Child>,
    /// Held while the member lives, killed or not: no other test's socket can take
    /// either port between its start, a kill and a resume.
    client: HeldPort,
    peer: HeldPort,
    /// Removed when dropped, after the member is killed.
    data: TempDir,
}

impl Etcd {
    /// Starts a fresh member and waits until it serves clients.
    pub fn start() -> Etcd {
        let mut etcd =
            Etcd { child: None, client: hold_port(), peer: hold_port(), data: temp_dir("etcd") };
        etcd.resume();
        etcd
    }

    /// `http://127.0.0.1:PORT`, for `[fleet] etcd`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.client.addr())
    }

    /// Kills the member (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the member again on the same ports and data, and waits until it serves.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "etcd is running");
        let client = format!("http://{}", self.client.addr());
        let peer = format!("http://{}", self.peer.addr());
        let mut child = Command::new("etcd")
            .args(["--name", "t", "--data-dir"])
            .arg(&*self.data)
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("t={peer}")])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("etcd runs (is etcd-server installed?)");
        let stderr = child.stderr.take().expect("piped");
        let (ready, wait) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("ready to serve client requests") {
                    let _ = ready.send(());
                }
            }
        });
        self.child = Some(child);
        wait.recv_timeout(READY).expect("etcd ready to serve clients");
    }

    /// `etcdctl ARGS` against this member; its standard output.
    pub fn ctl(&self, args: &[&str]) -> String {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.endpoint()])
            .args(args)
            .output()
            .expect("etcdctl runs");
        assert!(out.status.success(), "etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The member's current revision.
    pub fn revision(&self) -> i64 {
        let out = self.ctl(&["get", "/", "--prefix", "--keys-only", "--limit=1", "-w", "json"]);
        let doc: serde_json::Value = serde_json::from_str(&out).expect("etcdctl json");
        doc["header"]["revision"].as_i64().expect("revision")
    }

    /// Compacts the history up to the current revision.
    pub fn compact(&self) -> i64 {
        let revision = self.revision();
        self.ctl(&["compact", &revision.to_string()]);
        revision
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP relay in front of etcd that a test can cut (every connection closed, new ones
/// refused) and restore: one instance loses etcd while the others keep it.
pub struct Relay {
    addr: std::net::SocketAddr,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    cuts: tokio::sync::watch::Sender<u64>,
}

impl Relay {
    /// Relays 127.0.0.1:PORT (free) to `etcd`.
    pub async fn start(etcd: &Etcd) -> Relay {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().expect("relay addr");
        let target = etcd.client.addr();
        let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (cuts, _) = tokio::sync::watch::channel(0u64);
        let (flag, watch) = (std::sync::Arc::clone(&open), cuts.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !flag.load(Ordering::SeqCst) {
                    continue; // dropped: refused
                }
                let mut cut = watch.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Relay { addr, open, cuts }
    }

    /// `http://127.0.0.1:PORT` of the relay.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Closes every relayed connection and refuses new ones.
    pub fn cut(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        self.cuts.send_modify(|n| *n += 1);
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}
