//! The smallest fair hyper 1.x reverse proxy: one current-thread runtime, one listener,
//! keep-alive both ways with a per-thread pool of upstream `SendRequest` handles, bodies
//! streamed (`Incoming` passed straight through). Usage: hyper-baseline LISTEN BACKEND.

use std::cell::RefCell;
use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

thread_local! {
    static IDLE: RefCell<Vec<SendRequest<Incoming>>> = const { RefCell::new(Vec::new()) };
}

async fn upstream(backend: SocketAddr) -> Result<SendRequest<Incoming>, hyper::Error> {
    if let Some(sender) = IDLE.with(|idle| idle.borrow_mut().pop()) {
        if sender.is_ready() {
            return Ok(sender);
        }
    }
    let stream = TcpStream::connect(backend).await.expect("backend connect");
    stream.set_nodelay(true).expect("nodelay");
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::task::spawn_local(conn);
    Ok(sender)
}

async fn proxy(req: Request<Incoming>, backend: SocketAddr) -> Result<Response<Incoming>, hyper::Error> {
    let mut sender = upstream(backend).await?;
    sender.ready().await?;
    let response = sender.send_request(req).await?;
    IDLE.with(|idle| idle.borrow_mut().push(sender));
    Ok(response)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let listen: SocketAddr = args[1].parse().expect("LISTEN");
    let backend: SocketAddr = args[2].parse().expect("BACKEND");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let listener = TcpListener::bind(listen).await.expect("bind");
        loop {
            let (stream, _) = listener.accept().await.expect("accept");
            stream.set_nodelay(true).expect("nodelay");
            tokio::task::spawn_local(async move {
                let service = service_fn(move |req| proxy(req, backend));
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
}
