//! HTTP/2 protocol conformance (RFC 9113, RFC 7541) of weir's server side: the suite in
//! `support/h2_conformance.py` (h2spec's case list, `generic`, `http2` and `hpack`, plus
//! RFC 9113 rules h2spec lacks), run by section against weir in front of a real HTTP/1.1
//! backend. Each case opens its own connection, breaks (or follows) one rule with raw
//! frames, and checks the reaction the RFC requires; a failure names the case and its
//! section. Run one section by hand with
//! `python3 tests/it/support/h2_conformance.py HOST PORT http2/6.5`.

use super::tls_only;
use crate::support::tls::Pki;
use crate::support::{Balancer, TestBackend};

use std::net::SocketAddr;
use std::time::Duration;

/// Known deviations of the `h2` codec (0.4.21) that weir cannot fix at its layer, as
/// (case id, why). Each must still deviate, so the
/// test fails when one appears or disappears; the script gives each its full reason in
/// `h2_conformance_cases.KNOWN`. h2spec itself passes the ones answered with GOAWAY
/// PROTOCOL_ERROR (it takes the close after any GOAWAY as the connection error).
const KNOWN: &[(&str, &str)] = &[
    ("hpack/2.3.3/1", HPACK),
    ("hpack/2.3.3/2", HPACK),
    ("hpack/4.2/1", HPACK),
    ("hpack/5.2/1", HPACK),
    ("hpack/5.2/2", HPACK),
    ("hpack/5.2/3", HPACK),
    ("hpack/6.1/1", HPACK),
    ("hpack/6.3/1", HPACK),
    ("http2/4.3/1", HPACK),
    ("http2/5.1/5", "DATA on a half-closed (remote) stream: GOAWAY, not RST_STREAM STREAM_CLOSED"),
    ("http2/5.1/6", "HEADERS on a half-closed (remote) stream: GOAWAY, not RST_STREAM"),
    ("http2/5.1/9", "HEADERS after a client's RST_STREAM: PROTOCOL_ERROR, not STREAM_CLOSED"),
    ("http2/5.1/11", "DATA on a closed stream: RST_STREAM, not GOAWAY STREAM_CLOSED (9113: MAY)"),
    ("http2/5.1/12", "HEADERS on a closed stream: PROTOCOL_ERROR, not STREAM_CLOSED (9113: MAY)"),
    ("http2/6.1/2", "DATA on a half-closed (remote) stream: GOAWAY, not RST_STREAM STREAM_CLOSED"),
    ("http2/6.3/2", SIZE),
    ("http2/6.4/3", SIZE),
    ("http2/6.5/1", SIZE),
    ("http2/6.5/3", SIZE),
    ("http2/6.5.2/2", WINDOW),
    ("http2/6.7/4", SIZE),
    ("http2/6.9/3", SIZE),
    ("http2/6.9.2/3", WINDOW),
    ("http2/8.1.2.1/3", "the codec drops pseudo-fields of trailers: weir never sees them"),
];
/// The codec answers every frame it cannot load with GOAWAY PROTOCOL_ERROR.
const HPACK: &str = "an HPACK error gets PROTOCOL_ERROR, not COMPRESSION_ERROR";
const SIZE: &str = "a frame of a wrong length gets PROTOCOL_ERROR, not FRAME_SIZE_ERROR";
const WINDOW: &str = "a window over 2^31-1 by SETTINGS gets PROTOCOL_ERROR, not FLOW_CONTROL_ERROR";

/// Longest a section may run: each case's waits are bounded by 5 s socket timeouts, and
/// a passing case waits on none of them.
const SECTION_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs the cases under `prefixes` against `addr` (`tls`: CA file and server name for
/// ALPN h2); returns the script's lines, one per case.
async fn suite(addr: SocketAddr, tls: Option<(&str, &str)>, prefixes: &[&str]) -> Vec<String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/support/h2_conformance.py");
    let mut args = vec![script.to_string(), addr.ip().to_string(), addr.port().to_string()];
    if let Some((ca, name)) = tls {
        args.extend(["--tls".to_string(), ca.to_string(), name.to_string()]);
    }
    args.extend(prefixes.iter().map(|prefix| prefix.to_string()));
    let run = tokio::process::Command::new("python3").args(&args).output();
    let out = tokio::time::timeout(SECTION_TIMEOUT, run)
        .await
        .expect("the suite ends within its socket timeouts")
        .expect("run python3 (with the h2 package: pip install h2)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{prefixes:?} failed: {stderr}");
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

/// Whether `id` is one of the cases `prefixes` chose.
fn chosen(id: &str, prefixes: &[&str]) -> bool {
    prefixes.iter().any(|prefix| id == *prefix || id.starts_with(&format!("{prefix}/")))
}

/// Runs `prefixes` against a fresh weir over a test backend (h2c, or TLS with `tls`)
/// and asserts `cases` cases ran, every one passed but the known deviations among
/// them, and each of those still deviates.
async fn check(prefixes: &[&str], cases: usize) {
    let backend = TestBackend::start("b1").await;
    let weir = Balancer::front(&backend);
    let lines = suite(weir.addr(), None, prefixes).await;
    assert_outcome(&lines, prefixes, cases);
}

fn assert_outcome(lines: &[String], prefixes: &[&str], cases: usize) {
    let failed: Vec<&String> = lines.iter().filter(|line| !line.starts_with("pass ")).collect();
    let mut deviating: Vec<&str> = failed
        .iter()
        .filter_map(|line| line.strip_prefix("deviation "))
        .filter_map(|rest| rest.split(' ').next())
        .collect();
    let mut known: Vec<&str> =
        KNOWN.iter().map(|(id, _)| *id).filter(|id| chosen(id, prefixes)).collect();
    deviating.sort_unstable();
    known.sort_unstable();
    let unexpected: Vec<&&String> =
        failed.iter().filter(|line| !line.starts_with("deviation ")).collect();
    assert!(unexpected.is_empty(), "cases failed:\n{unexpected:#?}");
    assert_eq!(deviating, known, "known deviations: {failed:#?}");
    assert_eq!(lines.len(), cases, "cases run: {lines:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_frames_and_representations_get_normal_answers() {
    // h2spec generic: the preface, each frame type and flag used as meant, GET, HEAD,
    // POST with and without trailers, and each HPACK representation get a response, a
    // PING ACK or a SETTINGS ACK.
    check(&["generic"], 44).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preface_frame_format_frame_size_and_header_blocks() {
    // RFC 9113 §3.4, §4.1 to §4.3: an invalid preface, unknown types and flags, frames
    // over SETTINGS_MAX_FRAME_SIZE, undecodable and interrupted header blocks.
    check(&["http2/3.5", "http2/4.1", "http2/4.2", "http2/4.3"], 11).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_states_identifiers_concurrency_and_extensions() {
    // RFC 9113 §5: frames on idle, half-closed (remote) and closed streams, stream ids,
    // the concurrency limit, self-dependency, connection errors, unknown frames.
    let sections = ["http2/5.1", "http2/5.1.1", "http2/5.1.2", "http2/5.3.1"];
    check(&[&sections[..], &["http2/5.4.1", "http2/5.5"]].concat(), 22).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_headers_priority_rst_stream_and_settings_frames() {
    // RFC 9113 §6.1 to §6.5.3: each frame's stream id, length and padding rules, and
    // the SETTINGS values and their synchronization.
    let sections = ["http2/6.1", "http2/6.2", "http2/6.3", "http2/6.4", "http2/6.5"];
    check(&[&sections[..], &["http2/6.5.2", "http2/6.5.3"]].concat(), 22).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_goaway_flow_control_continuation_and_error_codes() {
    // RFC 9113 §6.7 to §7: PING, GOAWAY, WINDOW_UPDATE and both flow-control windows
    // (overflow, initial size changes, a negative window), CONTINUATION, unknown codes.
    let sections = ["http2/6.7", "http2/6.8", "http2/6.9", "http2/6.9.1", "http2/6.9.2"];
    check(&[&sections[..], &["http2/6.10", "http2/7"]].concat(), 23).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_stream_errors() {
    // RFC 9113 §8: uppercase names, pseudo-header rules, connection-specific fields, TE,
    // Content-Length against DATA, PUSH_PROMISE from a client, field values (§8.2.1),
    // Host against :authority, and weir's response heads (§8.2.2).
    let sections = ["http2/8.1", "http2/8.1.2", "http2/8.1.2.1", "http2/8.1.2.2"];
    let more = ["http2/8.1.2.3", "http2/8.1.2.6", "http2/8.2", "http2/8.2.1", "http2/8.2.2"];
    check(&[&sections[..], &more[..], &["http2/8.3.1"]].concat(), 28).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpack_decoding_errors_are_compression_errors() {
    // RFC 7541 §2.3.3, §4.2, §5.2, §6.1, §6.3: indexes out of range, a table size update
    // at the end of a block or over SETTINGS_HEADER_TABLE_SIZE, bad Huffman padding, EOS.
    check(&["hpack"], 8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preface_and_requests_conform_over_tls_with_alpn() {
    // The same cases over TLS (ALPN h2): the preface and the requests of h2spec's
    // generic section 4.
    let backend = TestBackend::start("b1").await;
    let pki = Pki::new("h2-conformance");
    let issued = pki.server(&["weir.test"], "weir");
    let weir = Balancer::over(&[backend.addr()], |config| tls_only(config, &issued));
    let ca = pki.ca_file().display().to_string();
    let prefixes = ["http2/3.5", "generic/4"];
    let lines = suite(weir.tls_addr(), Some((&ca, "weir.test")), &prefixes).await;
    assert_outcome(&lines, &prefixes, 6);
}
