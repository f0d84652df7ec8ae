//! A tiny authoritative DNS server for tests, on 127.0.0.1 (UDP and TCP on one port).
//!
//! The test sets A, AAAA and CNAME records and can make the server fall silent, answer
//! SERVFAIL, truncate every UDP reply (so clients must retry over TCP) or send a reply
//! with a wrong id first. Its encoder is written independently of weir's, so the two
//! check each other. Unknown names get NXDOMAIN; a known name without records of the
//! asked type gets an empty NOERROR answer.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// How the server treats queries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsMode {
    /// Answers from its records.
    Answer,
    /// Drops every query.
    Silent,
    /// Answers SERVFAIL.
    ServFail,
}

/// Records of one name.
#[derive(Clone, Debug, Default)]
struct Records {
    a: Vec<Ipv4Addr>,
    aaaa: Vec<Ipv6Addr>,
    cname: Option<String>,
}

struct State {
    names: HashMap<String, Records>,
    mode: DnsMode,
    ttl: u32,
    truncate_udp: bool,
    stray_first: bool,
}

/// A running test DNS server. It runs on a thread of its own, so it answers even while
/// the test's runtime is blocked (weir's start waits for its first lookups).
pub struct TestDns {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    udp_queries: Arc<AtomicUsize>,
    tcp_queries: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

const A: u16 = 1;
const CNAME: u16 = 5;
const AAAA: u16 = 28;

impl Drop for TestDns {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl TestDns {
    /// Starts a server on 127.0.0.1 with a free port, answering, TTL 1s, no records.
    pub fn start() -> TestDns {
        let (udp, tcp) = bind_pair().expect("bind the test DNS server");
        let addr = udp.local_addr().expect("local address");
        let state = Arc::new(Mutex::new(State {
            names: HashMap::new(),
            mode: DnsMode::Answer,
            ttl: 1,
            truncate_udp: false,
            stray_first: false,
        }));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let dns = TestDns {
            addr,
            state,
            udp_queries: Arc::new(AtomicUsize::new(0)),
            tcp_queries: Arc::new(AtomicUsize::new(0)),
            stop: Some(stop),
        };
        let (state, udp_count) = (Arc::clone(&dns.state), Arc::clone(&dns.udp_queries));
        let tcp_count = Arc::clone(&dns.tcp_queries);
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            runtime.expect("test DNS runtime").block_on(async move {
                let udp = UdpSocket::from_std(udp).expect("tokio UDP socket");
                let tcp = TcpListener::from_std(tcp).expect("tokio TCP listener");
                tokio::select! {
                    () = serve_udp(udp, Arc::clone(&state), udp_count) => {}
                    () = serve_tcp(tcp, state, tcp_count) => {}
                    _ = stopped => {}
                }
            });
        });
        dns
    }

    /// Where it listens (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn edit(&self, name: &str, f: impl FnOnce(&mut Records)) {
        let mut state = self.state.lock().unwrap();
        f(state.names.entry(name.to_ascii_lowercase()).or_default());
    }

    /// Replaces the A records of `name`.
    pub fn set_a(&self, name: &str, ips: &[Ipv4Addr]) {
        self.edit(name, |r| r.a = ips.to_vec());
    }

    /// Forgets `name`: it gets NXDOMAIN.
    pub fn remove(&self, name: &str) {
        self.state.lock().unwrap().names.remove(&name.to_ascii_lowercase());
    }

    /// How queries are treated from now on.
    pub fn set_mode(&self, mode: DnsMode) {
        self.state.lock().unwrap().mode = mode;
    }

    /// Whether UDP replies come truncated (TC set, no answers).
    pub fn set_truncate_udp(&self, on: bool) {
        self.state.lock().unwrap().truncate_udp = on;
    }

    /// Whether each UDP reply is preceded by one with a wrong id and bogus answer.
    pub fn set_stray_first(&self, on: bool) {
        self.state.lock().unwrap().stray_first = on;
    }

    /// UDP queries received so far (answered or not).
    pub fn udp_queries(&self) -> usize {
        self.udp_queries.load(Ordering::SeqCst)
    }

    /// TCP queries received so far.
    pub fn tcp_queries(&self) -> usize {
        self.tcp_queries.load(Ordering::SeqCst)
    }
}

/// A UDP and a TCP socket on the same free port (retried if TCP finds it taken),
/// non-blocking, for a runtime to adopt.
fn bind_pair() -> io::Result<(std::net::UdpSocket, std::net::TcpListener)> {
    let mut last = None;
    for _ in 0..50 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0")?;
        match std::net::TcpListener::bind(udp.local_addr()?) {
            Ok(tcp) => {
                udp.set_nonblocking(true)?;
                tcp.set_nonblocking(true)?;
                return Ok((udp, tcp));
            }
            Err(error) => last = Some(error),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free port")))
}

async fn serve_udp(socket: UdpSocket, state: Arc<Mutex<State>>, count: Arc<AtomicUsize>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
            return;
        };
        count.fetch_add(1, Ordering::SeqCst);
        let (replies, stray) = {
            let state = state.lock().unwrap();
            (respond(&buf[..n], &state, state.truncate_udp), state.stray_first)
        };
        let Some(reply) = replies else {
            continue;
        };
        if stray {
            let bogus = read_plain_name(&buf[..n], 12).map(|name| bogus_state(&name));
            let bogus = bogus.and_then(|state| respond(&buf[..n], &state, false));
            let mut bogus = bogus.unwrap_or_default();
            if bogus.len() >= 2 {
                bogus[0] ^= 0x5A; // Another id.
                let _ = socket.send_to(&bogus, peer).await;
            }
        }
        let _ = socket.send_to(&reply, peer).await;
    }
}

/// Records `name` at 192.0.2.1 and 2001:db8::1 (documentation addresses), for stray
/// replies.
fn bogus_state(name: &str) -> State {
    let records = Records {
        a: vec![Ipv4Addr::new(192, 0, 2, 1)],
        aaaa: vec!["2001:db8::1".parse().unwrap()],
        cname: None,
    };
    State {
        names: HashMap::from([(name.to_string(), records)]),
        mode: DnsMode::Answer,
        ttl: 1,
        truncate_udp: false,
        stray_first: false,
    }
}

async fn serve_tcp(listener: TcpListener, state: Arc<Mutex<State>>, count: Arc<AtomicUsize>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let (state, count) = (Arc::clone(&state), Arc::clone(&count));
        tokio::spawn(async move {
            let _ = serve_tcp_conn(stream, state, count).await;
        });
    }
}

async fn serve_tcp_conn(
    mut stream: TcpStream,
    state: Arc<Mutex<State>>,
    count: Arc<AtomicUsize>,
) -> io::Result<()> {
    let len = usize::from(stream.read_u16().await?);
    let mut query = vec![0; len];
    stream.read_exact(&mut query).await?;
    count.fetch_add(1, Ordering::SeqCst);
    let reply = respond(&query, &state.lock().unwrap(), false);
    if let Some(reply) = reply {
        stream.write_all(&(reply.len() as u16).to_be_bytes()).await?;
        stream.write_all(&reply).await?;
    }
    Ok(())
}

/// The reply to `query`, or `None` to stay silent (or for a query that does not parse).
fn respond(query: &[u8], state: &State, truncate: bool) -> Option<Vec<u8>> {
    if query.len() < 12 || state.mode == DnsMode::Silent {
        return None;
    }
    let (name, mut pos) = (read_plain_name(query, 12)?, 12);
    while query[pos] != 0 {
        pos += 1 + usize::from(query[pos]);
    }
    let question_end = pos + 5;
    let qtype = u16::from_be_bytes([*query.get(pos + 1)?, *query.get(pos + 2)?]);
    let mut answers = Vec::new();
    let mut count = 0u16;
    let rcode = match state.mode {
        DnsMode::ServFail => 2,
        _ if truncate => 0,
        _ => answer(state, &name, qtype, &mut answers, &mut count),
    };
    let mut out = query[..2].to_vec();
    let rd = query[2] & 0x01;
    let tc = if truncate && state.mode == DnsMode::Answer { 0x02 } else { 0 };
    out.extend_from_slice(&[0x80 | rd | tc, 0x80 | rcode]);
    out.extend_from_slice(&[0, 1]);
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(query.get(12..question_end)?);
    out.extend_from_slice(&answers);
    Some(out)
}

/// Appends the answers for `name` (following aliases); returns the response code.
fn answer(state: &State, name: &str, qtype: u16, out: &mut Vec<u8>, count: &mut u16) -> u8 {
    let mut current = name.to_string();
    for hop in 0..10 {
        let Some(records) = state.names.get(&current) else {
            return if hop == 0 { 3 } else { 0 };
        };
        // The first owner is a compression pointer to the question name.
        let owner = |out: &mut Vec<u8>| match hop {
            0 => out.extend_from_slice(&[0xC0, 12]),
            _ => write_name(out, &current),
        };
        if let Some(target) = &records.cname {
            owner(out);
            let mut rdata = Vec::new();
            write_name(&mut rdata, target);
            write_record(out, CNAME, state.ttl, &rdata);
            *count += 1;
            current = target.clone();
            continue;
        }
        let ips: Vec<Vec<u8>> = match qtype {
            A => records.a.iter().map(|ip| ip.octets().to_vec()).collect(),
            AAAA => records.aaaa.iter().map(|ip| ip.octets().to_vec()).collect(),
            _ => Vec::new(),
        };
        for ip in ips {
            owner(out);
            write_record(out, qtype, state.ttl, &ip);
            *count += 1;
        }
        return 0;
    }
    0
}

fn write_record(out: &mut Vec<u8>, kind: u16, ttl: u32, rdata: &[u8]) {
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    out.extend_from_slice(rdata);
}

fn write_name(out: &mut Vec<u8>, name: &str) {
    for label in name.split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
}

/// An uncompressed name, lowercase (queries never compress).
fn read_plain_name(msg: &[u8], mut pos: usize) -> Option<String> {
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*msg.get(pos)?);
        if len == 0 {
            return Some(labels.join("."));
        }
        let label = msg.get(pos + 1..pos + 1 + len)?;
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        pos += 1 + len;
    }
}
