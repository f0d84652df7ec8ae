//! `weir demo`: three small backends on loopback, each answering with its own name, and
//! a balancer in front of them on 127.0.0.1:8080 with the admin listener on
//! 127.0.0.1:9901. It prints commands to try and runs until Ctrl-C.

use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::config::{BackendConfig, Config, PoolConfig, StrategyKind};
use crate::server;

/// Names of the demo backends.
const NAMES: [&str; 3] = ["alpha", "beta", "gamma"];
/// Largest request head a demo backend reads.
const DEMO_HEAD_BYTES: usize = 16 * 1024;
/// Idle keep-alive time on a demo backend connection.
const DEMO_IDLE: Duration = Duration::from_secs(60);

/// Runs the demo until SIGINT or SIGTERM.
pub fn run(args: &crate::flags::Args) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("weir demo: {error}");
            return ExitCode::FAILURE;
        }
    };
    let backends = match runtime.block_on(start_backends()) {
        Ok(backends) => backends,
        Err(error) => {
            eprintln!("weir demo: cannot start demo backends: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut config = Config::default();
    let backend_configs = backends.iter().copied().map(BackendConfig::at).collect();
    config.pools.push(PoolConfig::new("demo", StrategyKind::RoundRobin, backend_configs));
    // Only the listener, admin and worker flags apply to the demo.
    let flags = crate::flags::Args {
        listen: args.listen.clone(),
        port: args.port,
        workers: args.workers,
        admin: args.admin.clone(),
        ..crate::flags::Args::default()
    };
    if let Err(error) = crate::flags::apply_flags(&flags, &mut config) {
        eprintln!("weir demo: {error}");
        return ExitCode::from(2);
    }
    let handle = match server::start(config) {
        Ok(handle) => handle,
        Err(error) => {
            eprintln!("weir demo: {error}");
            return ExitCode::FAILURE;
        }
    };
    print_help(&handle, &backends);
    let _ = runtime.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate = signal(SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        io::Result::Ok(())
    });
    handle.shutdown();
    ExitCode::SUCCESS
}

fn print_help(handle: &server::Handle, backends: &[SocketAddr]) {
    let listen = handle.listen_addrs()[0];
    println!("weir demo: balancing {} backends:", backends.len());
    for (name, addr) in NAMES.iter().zip(backends) {
        println!("  {name:<6} http://{addr}");
    }
    println!("\nTry:");
    println!("  for i in 1 2 3 4 5 6; do curl -s http://{listen}/; done    # round robin");
    println!("  curl -si -X POST --data-binary 'hello' http://{listen}/echo");
    if let Some(admin) = handle.admin_addr() {
        println!("  curl -s http://{admin}/metrics                          # counters");
        println!("  curl -s http://{admin}/healthz");
    }
    println!("\nCtrl-C drains and stops.");
}

async fn start_backends() -> io::Result<Vec<SocketAddr>> {
    let mut addrs = Vec::with_capacity(NAMES.len());
    for name in NAMES {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        addrs.push(listener.local_addr()?);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(demo_connection(stream, name));
            }
        });
    }
    Ok(addrs)
}

/// A keep-alive HTTP/1.1 responder: `/echo` returns the request body, anything else the
/// backend's name.
async fn demo_connection(mut stream: TcpStream, name: &'static str) -> io::Result<()> {
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        let (head_len, body_len, echo) = loop {
            if let Some(parsed) = parse_head(&buf)? {
                break parsed;
            }
            if buf.len() > DEMO_HEAD_BYTES {
                return Ok(());
            }
            match tokio::time::timeout(DEMO_IDLE, stream.read_buf(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return Ok(()),
            }
        };
        buf.advance(head_len);
        // Bounded by the declared length; the demo refuses bodies over 1 MiB.
        while buf.len() < body_len {
            if stream.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
        }
        let body = if echo {
            buf.split_to(body_len).to_vec()
        } else {
            format!("hello from {name}\n").into_bytes()
        };
        if !echo {
            buf.advance(body_len);
        }
        let head = format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Backend: {name}\r\nContent-Length: {}\r\n\r\n", body.len());
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&body).await?;
    }
}

fn parse_head(buf: &[u8]) -> io::Result<Option<(usize, usize, bool)>> {
    let mut slots = [MaybeUninit::<httparse::Header<'_>>::uninit(); 64];
    let mut request = httparse::Request::new(&mut []);
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let head_len = match request.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(bad("bad request")),
    };
    let mut body_len = 0usize;
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            body_len = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| bad("bad length"))?;
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(bad("the demo backend reads Content-Length bodies only"));
        }
    }
    if body_len > 1024 * 1024 {
        return Err(bad("body too large for the demo"));
    }
    Ok(Some((head_len, body_len, request.path.is_some_and(|p| p.starts_with("/echo")))))
}
