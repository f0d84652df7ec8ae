//! `[[pool]] send_proxy_protocol`: each new upstream connection starts with a PROXY
//! header naming the client, then the request; such connections are never shared by two
//! clients (nor pooled at all).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use weir::proxy_protocol::{Version, V2_SIGNATURE};

use crate::support::{connect, roundtrip, Balancer};

/// A raw backend: records every byte each connection sends, and answers each request
/// head (GETs only) with a 200.
struct RawBackend {
    addr: SocketAddr,
    connections: Arc<Mutex<Vec<Vec<u8>>>>,
}

/// Most bytes one test connection may send the raw backend.
const MAX_RECORDED: usize = 64 * 1024;

impl RawBackend {
    async fn start() -> RawBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let connections: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let all = Arc::clone(&connections);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let index = {
                    let mut all = all.lock().unwrap();
                    all.push(Vec::new());
                    all.len() - 1
                };
                let all = Arc::clone(&all);
                tokio::spawn(async move {
                    let (mut buf, mut answered) = ([0u8; 4096], 0);
                    while let Ok(n @ 1..) = stream.read(&mut buf).await {
                        let heads = {
                            let mut all = all.lock().unwrap();
                            all[index].extend_from_slice(&buf[..n]);
                            assert!(all[index].len() < MAX_RECORDED);
                            all[index].windows(4).filter(|w| w == b"\r\n\r\n").count()
                        };
                        for _ in answered..heads {
                            let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                            let _ = stream.write_all(ok).await;
                        }
                        answered = heads;
                    }
                });
            }
        });
        RawBackend { addr, connections }
    }

    fn connections(&self) -> Vec<Vec<u8>> {
        self.connections.lock().unwrap().clone()
    }
}

fn sending(backend: SocketAddr, version: Version, proxy_in: bool) -> Balancer {
    Balancer::over(&[backend], |config| {
        config.pools[0].send_proxy_protocol = Some(version);
        config.server.proxy_protocol = proxy_in;
    })
}

const GET: &[u8] = b"GET /s HTTP/1.1\r\nHost: a\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_names_each_client_on_its_own_connections() {
    let backend = RawBackend::start().await;
    let weir = sending(backend.addr, Version::V1, true);
    // Two clients, interleaved, two requests each on one keep-alive connection.
    let mut first = connect(weir.addr()).await.expect("connect");
    first.write_all(b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 443\r\n").await.expect("header");
    let mut second = connect(weir.addr()).await.expect("connect");
    second.write_all(b"PROXY TCP4 198.51.100.9 10.0.0.1 50000 443\r\n").await.expect("header");
    for _ in 0..2 {
        for client in [&mut first, &mut second] {
            assert_eq!(roundtrip(client, GET).await.expect("response").status, 200);
        }
    }
    let connections = backend.connections();
    assert_eq!(connections.len(), 4, "one upstream connection per request, none shared");
    let mut starts: Vec<String> = connections
        .iter()
        .map(|bytes| {
            let text = String::from_utf8(bytes.clone()).expect("text");
            // The header, then exactly one request.
            assert_eq!(text.matches("\r\n\r\n").count(), 1, "{text}");
            assert!(text.contains("X-Forwarded-For: "), "{text}");
            text.split_once("GET /s").expect("the request after the header").0.to_string()
        })
        .collect();
    starts.sort();
    let expected = [
        "PROXY TCP4 198.51.100.9 10.0.0.1 50000 443\r\n",
        "PROXY TCP4 198.51.100.9 10.0.0.1 50000 443\r\n",
        "PROXY TCP4 203.0.113.7 10.0.0.1 40000 443\r\n",
        "PROXY TCP4 203.0.113.7 10.0.0.1 40000 443\r\n",
    ];
    assert_eq!(starts, expected);
    for bytes in &connections {
        let text = String::from_utf8_lossy(bytes);
        let header_ip = if text.contains("203.0.113.7 ") { "203.0.113.7" } else { "198.51.100.9" };
        assert!(text.contains(&format!("X-Forwarded-For: {header_ip}\r\n")), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_names_the_peer_and_weirs_listener_without_proxy_in() {
    let backend = RawBackend::start().await;
    let weir = sending(backend.addr, Version::V2, false);
    let mut client = connect(weir.addr()).await.expect("connect");
    let me = client.local_addr().expect("addr");
    assert_eq!(roundtrip(&mut client, GET).await.expect("response").status, 200);
    let connections = backend.connections();
    assert_eq!(connections.len(), 1);
    let mut expected = V2_SIGNATURE.to_vec();
    expected.extend_from_slice(&[0x21, 0x11, 0, 12, 127, 0, 0, 1, 127, 0, 0, 1]);
    expected.extend_from_slice(&me.port().to_be_bytes());
    expected.extend_from_slice(&weir.addr().port().to_be_bytes());
    let bytes = &connections[0];
    assert_eq!(&bytes[..expected.len()], &expected[..]);
    assert!(bytes[expected.len()..].starts_with(b"GET /s HTTP/1.1\r\n"));
}
