//! Request and response bodies through weir: POST and PUT uploads of 0 B, 1 B, 64 KiB and
//! 100 MiB with Content-Length and chunked framing, 100 MiB downloads in both framings, the
//! same with the real `curl` client, and the binary's memory use while streaming 100 MiB.
//! Every body is checked by length and FNV-1a hash, never by keeping it in memory.

use crate::support::process::{temp_path, WeirProcess};
use crate::support::{
    self, connect, curl, pattern_hash, read_response, read_response_hashed, upload_summary,
    Balancer, Response, TestBackend, IO_CHUNK,
};

use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

const MIB: u64 = 1024 * 1024;
/// The large body size the issue asks for.
const BIG: u64 = 100 * MIB;
/// Chunk sizes of chunked uploads, cycled, so chunk boundaries fall everywhere.
const CHUNK_SIZES: [usize; 4] = [65_521, 1, 4_093, IO_CHUNK];
/// Most that streaming 100 MiB may raise the binary's resident memory.
const RSS_RISE_MAX_KIB: u64 = 32 * 1024;

/// Writes `n` pattern bytes, chunk-encoded when `chunked` (ending with the last chunk).
async fn write_pattern<W: AsyncWrite + Unpin>(
    w: &mut W,
    n: u64,
    chunked: bool,
) -> std::io::Result<()> {
    support::write_pattern(w, n, chunked, &CHUNK_SIZES).await
}

/// Sends `METHOD /upload` with an `n`-byte pattern body and reads the final response.
async fn upload<S>(s: &mut S, method: &str, n: u64, chunked: bool) -> Response
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let framing = match chunked {
        true => "Transfer-Encoding: chunked".to_string(),
        false => format!("Content-Length: {n}"),
    };
    let head = format!("{method} /upload HTTP/1.1\r\nHost: test\r\n{framing}\r\n\r\n");
    let written = match s.write_all(head.as_bytes()).await {
        Ok(()) => write_pattern(s, n, chunked).await,
        Err(e) => Err(e),
    };
    match read_response(s).await {
        Ok(resp) => resp,
        Err(e) => panic!("{method} {n} B chunked={chunked}: no response ({e}); write: {written:?}"),
    }
}

/// Asserts that an upload response reports exactly the pattern body of `n` bytes.
fn assert_upload(resp: &Response, method: &str, n: u64, chunked: bool) {
    let what = format!("{method} {n} B chunked={chunked}");
    assert_eq!(resp.status, 200, "{what}: {}", resp.text());
    assert_eq!(resp.text(), upload_summary(n, pattern_hash(n)), "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_uploads_arrive_intact_on_one_connection() {
    // Goal: 0 B, 1 B and 64 KiB POST/PUT bodies arrive intact in both framings. Method:
    // send all twelve on one keep-alive connection and compare the backend's hash.
    let backend = TestBackend::start("b").await;
    let weir = Balancer::front(&backend);
    let mut s = connect(weir.addr()).await.unwrap();
    for n in [0, 1, 64 * 1024] {
        for method in ["POST", "PUT"] {
            for chunked in [false, true] {
                let resp = upload(&mut s, method, n, chunked).await;
                assert_upload(&resp, method, n, chunked);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_100mib_content_length() {
    // Goal: 100 MiB POST and PUT bodies with Content-Length arrive intact. Method: stream
    // the pattern and compare the backend's length and hash.
    let backend = TestBackend::start("b").await;
    let weir = Balancer::front(&backend);
    let mut s = connect(weir.addr()).await.unwrap();
    for method in ["POST", "PUT"] {
        let resp = upload(&mut s, method, BIG, false).await;
        assert_upload(&resp, method, BIG, false);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_100mib_chunked() {
    // Goal: 100 MiB chunked POST and PUT bodies arrive intact. Method: stream the pattern
    // in chunks of varying sizes and compare the backend's length and hash.
    let backend = TestBackend::start("b").await;
    let weir = Balancer::front(&backend);
    let mut s = connect(weir.addr()).await.unwrap();
    for method in ["POST", "PUT"] {
        let resp = upload(&mut s, method, BIG, true).await;
        assert_upload(&resp, method, BIG, true);
    }
}

/// Downloads `n` pattern bytes and checks length and hash.
async fn check_download(addr: SocketAddr, n: u64, chunked: bool) {
    let mut s = connect(addr).await.unwrap();
    let flag = u8::from(chunked);
    let req = format!("GET /download?bytes={n}&chunked={flag} HTTP/1.1\r\nHost: test\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let (resp, hash) = read_response_hashed(&mut s).await.expect("download response");
    assert_eq!(resp.status, 200, "download chunked={chunked}");
    assert_eq!(resp.body_len, n, "download chunked={chunked}: length");
    assert_eq!(hash, pattern_hash(n), "download chunked={chunked}: hash");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_100mib_both_framings() {
    // Goal: 100 MiB responses arrive intact with Content-Length and chunked framing.
    // Method: hash the body as it streams in and compare with the pattern's hash.
    let backend = TestBackend::start("b").await;
    let weir = Balancer::front(&backend);
    check_download(weir.addr(), BIG, false).await;
    check_download(weir.addr(), BIG, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_uploads_arrive_intact() {
    // Goal: uploads from the real curl client arrive intact. Method: POST a 5 MiB file
    // with Content-Length (curl adds Expect: 100-continue) and PUT it chunked.
    let backend = TestBackend::start("b").await;
    let weir = Balancer::front(&backend);
    let n = 5 * MIB + 7;
    let file = support::pattern_file(n);
    let url = format!("http://{}/upload", weir.addr());
    let data = format!("@{}", file.display());
    let want = upload_summary(n, pattern_hash(n));
    let posted = curl(&["--data-binary", &data, &url]).await;
    assert_eq!(posted, want, "curl POST with Content-Length");
    let te = "Transfer-Encoding: chunked";
    let put = curl(&["-T", &file.display().to_string(), "-H", te, &url]).await;
    assert_eq!(put, want, "curl PUT chunked");
    let _ = std::fs::remove_file(file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_downloads_arrive_intact() {
    // Goal: downloads read by the real curl client arrive intact. Method: save a 20 MiB
    // body in each framing to a file and hash the file.
    let backend = TestBackend::start("b").await;
    let weir = Balancer::front(&backend);
    let n = 20 * MIB + 3;
    for chunked in [0, 1] {
        let path = temp_path("download.bin");
        let url = format!("http://{}/download?bytes={n}&chunked={chunked}", weir.addr());
        let code = curl(&["-o", &path.display().to_string(), "-w", "%{http_code}", &url]).await;
        assert_eq!(code, "200", "curl download chunked={chunked}");
        let data = std::fs::read(&path).unwrap();
        assert_eq!(data.len() as u64, n, "curl download chunked={chunked}: length");
        assert_eq!(support::hash_bytes(&data), pattern_hash(n), "chunked={chunked}");
        let _ = std::fs::remove_file(path);
    }
}

/// Starts the binary in front of `backend`; returns it with its address after warm-up
/// requests on several connections (so both workers have served).
async fn warm_binary(backend: &TestBackend) -> (WeirProcess, SocketAddr) {
    let b = backend.addr().to_string();
    let args = ["-b", &b, "-l", "127.0.0.1:0", "--admin", "off", "-w", "2"];
    let (process, addr) = WeirProcess::start(&args).await;
    for _ in 0..4 {
        let mut s = connect(addr).await.unwrap();
        let resp = upload(&mut s, "POST", 64 * 1024, true).await;
        assert_upload(&resp, "POST", 64 * 1024, true);
        check_download(addr, 256 * 1024, true).await;
    }
    (process, addr)
}

/// Asserts the binary's peak resident memory rose less than the limit since `before`.
fn assert_memory_bounded(process: &WeirProcess, before_kib: u64, what: &str) {
    let peak_kib = process.status_kib("VmHWM");
    let rise_kib = peak_kib.saturating_sub(before_kib);
    eprintln!("{what}: VmRSS before {before_kib} KiB, VmHWM after {peak_kib} KiB");
    assert!(
        rise_kib < RSS_RISE_MAX_KIB,
        "{what}: VmHWM {peak_kib} KiB is {rise_kib} KiB above VmRSS {before_kib} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_memory_bounded_during_100mib_upload() {
    // Goal: a 100 MiB upload streams through the binary. Method: compare VmRSS after
    // warm-up with VmHWM after a Content-Length and a chunked 100 MiB upload.
    let backend = TestBackend::start("b").await;
    let (process, addr) = warm_binary(&backend).await;
    let before_kib = process.status_kib("VmRSS");
    let mut s = connect(addr).await.unwrap();
    for chunked in [false, true] {
        let resp = upload(&mut s, "POST", BIG, chunked).await;
        assert_upload(&resp, "POST", BIG, chunked);
    }
    assert_memory_bounded(&process, before_kib, "100 MiB uploads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_memory_bounded_during_100mib_download() {
    // Goal: a 100 MiB download streams through the binary. Method: compare VmRSS after
    // warm-up with VmHWM after a Content-Length and a chunked 100 MiB download.
    let backend = TestBackend::start("b").await;
    let (process, addr) = warm_binary(&backend).await;
    let before_kib = process.status_kib("VmRSS");
    check_download(addr, BIG, false).await;
    check_download(addr, BIG, true).await;
    assert_memory_bounded(&process, before_kib, "100 MiB downloads");
}
