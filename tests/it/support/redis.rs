//! A real `redis-server` for the fleet-wide rate limit tests, on 127.0.0.1 and a port
//! held for its life ([`HeldPort`]: redis-server sets `SO_REUSEADDR` on its listener, so it
//! binds the held port; no other test can take the port before it does, or after
//! [`Redis::stop`], when connections to it are refused), with persistence off; killed on
//! drop (or on [`Redis::stop`], mid-test).

use super::process::{hold_port, HeldPort};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long redis-server may take to answer its first PING.
const READY: Duration = Duration::from_secs(10);

/// A running redis-server.
pub struct Redis {
    child: Option<Child>,
    addr: SocketAddr,
    /// The port, held until this is dropped.
    _port: HeldPort,
}

impl Redis {
    /// Starts redis-server; retries on another port if it did not answer.
    pub fn start() -> Redis {
        for _ in 0..20 {
            let held = hold_port();
            let port = held.port();
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
                .args(["--appendonly", "no", "--protected-mode", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server runs (apt-get install redis-server)");
            let addr = held.addr();
            let redis = Redis { child: Some(child), addr, _port: held };
            if redis.ready() {
                return redis;
            }
        }
        panic!("redis-server did not start");
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Kills the server now.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether it answers PING within [`READY`] (or exited first).
    fn ready(&self) -> bool {
        let start = Instant::now();
        while start.elapsed() < READY {
            if let Ok(mut stream) = TcpStream::connect_timeout(&self.addr, READY) {
                let _ = stream.set_read_timeout(Some(READY));
                let mut reply = [0u8; 7];
                if stream.write_all(b"PING\r\n").is_ok()
                    && stream.read_exact(&mut reply).is_ok()
                    && &reply == b"+PONG\r\n"
                {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}
