//! A real DNS server for the tests: `dnsmasq` (Debian's `dnsmasq-base`) on 127.0.0.1 and
//! a port whose TCP side is held for its life ([`HeldPort`]), authoritative for
//! `weir.test` (unknown names there are NXDOMAIN, other names REFUSED: it asks no
//! upstream). A and AAAA records come from a hosts file it re-reads on SIGHUP; the test
//! waits for the "read FILE" line that follows, not a time.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::process::{hold_port, temp_path, HeldPort};

/// How long dnsmasq may take to start or to re-read its file.
const READY: Duration = Duration::from_secs(10);

/// A running dnsmasq; killed on drop.
pub struct Dnsmasq {
    child: Child,
    addr: SocketAddr,
    hosts: PathBuf,
    /// Its log lines, and a signal for each new one.
    log: Arc<(Mutex<Vec<String>>, Condvar)>,
    /// The port's TCP side, held until this is dropped: dnsmasq sets `SO_REUSEADDR` on
    /// its sockets, so it binds the held port, and binds it again in [`Dnsmasq::restart`]
    /// with no other test able to take it meanwhile. The UDP side is held only from the
    /// pick until dnsmasq is up ([`hold_udp`]).
    held: Option<HeldPort>,
}

impl Dnsmasq {
    /// Serves `records` (name, address) with TTL 1, plus each of `extra` dnsmasq option
    /// (`--cname=...`, `--srv-host=...`).
    pub fn start(records: &[(&str, IpAddr)], extra: &[String]) -> Dnsmasq {
        let hosts = temp_path("dnsmasq.hosts");
        std::fs::write(&hosts, hosts_text(records)).expect("write hosts file");
        for _ in 0..20 {
            let held = hold_port();
            let Some(udp) = hold_udp(held.port()) else { continue };
            if let Some(mut dns) = Dnsmasq::spawn(held.port(), &hosts, extra) {
                drop(udp);
                dns.held = Some(held);
                return dns;
            }
        }
        panic!("dnsmasq did not start (is dnsmasq-base installed?)");
    }

    fn spawn(port: u16, hosts: &Path, extra: &[String]) -> Option<Dnsmasq> {
        let mut command = Command::new("dnsmasq");
        command.args(["--no-daemon", "--no-resolv", "--no-hosts", "--bind-interfaces"]);
        command.args(["--listen-address=127.0.0.1", "--log-facility=-", "--local=/weir.test/"]);
        command.args([format!("--port={port}"), format!("--addn-hosts={}", hosts.display())]);
        command.args(["--local-ttl=1", "--cache-size=0"]).args(extra);
        if std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0) {
            command.arg("--user=root"); // Root would switch to nobody, who cannot read the file.
        }
        let mut child = command.stderr(Stdio::piped()).stdout(Stdio::null()).spawn().ok()?;
        let log = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let stderr = child.stderr.take()?;
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.0.lock().unwrap().push(line);
                sink.1.notify_all();
            }
            // dnsmasq exited (a failed start): a wait for its reads ends now.
            sink.0.lock().unwrap().push(EXITED.to_string());
            sink.1.notify_all();
        });
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut dns = Dnsmasq { child, addr, hosts: hosts.to_path_buf(), log, held: None };
        if dns.wait_reads(1) {
            return Some(dns);
        }
        // The hosts file is the caller's, for the next try: this one's drop must keep it.
        dns.hosts = PathBuf::new();
        None
    }

    /// Its address, for `[dns] servers`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the A and AAAA records and waits until dnsmasq has read them.
    pub fn set(&self, records: &[(&str, IpAddr)]) {
        let reads = self.reads();
        std::fs::write(&self.hosts, hosts_text(records)).expect("write hosts file");
        let pid = self.child.id().to_string();
        let hup = Command::new("kill").args(["-HUP", &pid]).status().expect("run kill");
        assert!(hup.success(), "SIGHUP to dnsmasq");
        assert!(self.wait_reads(reads + 1), "dnsmasq did not re-read its hosts file");
    }

    /// Starts it again on the same port with the options `extra` instead (dnsmasq reads
    /// `--srv-host` only at start: this is how an SRV record is removed). The TCP port
    /// stays held throughout; retries while the old process still holds the port;
    /// panics if it never comes back.
    pub fn restart(&mut self, extra: &[String]) {
        self.kill();
        for _ in 0..50 {
            if let Some(mut dns) = Dnsmasq::spawn(self.addr.port(), &self.hosts, extra) {
                std::mem::swap(self, &mut dns);
                // The old one's hosts file and held port are ours too: keep them.
                dns.hosts = PathBuf::new();
                self.held = dns.held.take();
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("dnsmasq did not restart on port {}", self.addr.port());
    }

    /// Stops it: the port answers nothing any more.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Times dnsmasq has read its hosts file.
    fn reads(&self) -> usize {
        let needle = format!("read {}", self.hosts.display());
        self.log.0.lock().unwrap().iter().filter(|line| line.contains(&needle)).count()
    }

    /// Waits (bounded) until dnsmasq has read its hosts file `n` times.
    fn wait_reads(&self, n: usize) -> bool {
        let needle = format!("read {}", self.hosts.display());
        let lines = self.log.0.lock().unwrap();
        let read = |lines: &[String]| lines.iter().filter(|line| line.contains(&needle)).count();
        let wait = |lines: &mut Vec<String>| {
            read(lines) < n && lines.last().is_none_or(|line| line != EXITED)
        };
        let (lines, _) = self.log.1.wait_timeout_while(lines, READY, wait).unwrap();
        read(&lines) >= n
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.hosts);
    }
}

/// The line the log gets when dnsmasq's stderr ends: it exited.
const EXITED: &str = "<dnsmasq exited>";

fn hosts_text(records: &[(&str, IpAddr)]) -> String {
    records.iter().map(|(name, ip)| format!("{ip} {name}\n")).collect()
}

/// UDP `127.0.0.1:PORT` held with `SO_REUSEADDR` (as dnsmasq binds it) from the pick until
/// dnsmasq is up: no other socket can take the port before dnsmasq binds it, which it can
/// while this is held. Dropped once dnsmasq is up, before any query is sent: two UDP
/// sockets sharing a port would leave which one a datagram reaches to the kernel. None if
/// the port is in use for UDP.
fn hold_udp(port: u16) -> Option<socket2::Socket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).ok()?;
    socket.set_reuse_address(true).ok()?;
    socket.bind(&SocketAddr::from(([127, 0, 0, 1], port)).into()).ok()?;
    Some(socket)
}
