//! HTTP/2 in the metrics and the status API: the `protocol` label of
//! `weir_requests_total`, the connection and stream gauges, GOAWAYs by reason and resets
//! received, scraped from a running weir while real clients (curl, nghttp, raw frames)
//! use it.

use super::drain::{Gate, Script};
use crate::support::admin::admin_get;
use crate::support::scrape::{metric, scrape, scrape_until};
use crate::support::{curl, Balancer, TestBackend};

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_counted_by_protocol() {
    // Goal: `weir_requests_total` carries `protocol`, and its sum over protocols is the
    // old series (a query on `code_class` alone still counts every response). Method: 3
    // HTTP/1 GETs with curl, 5 HTTP/2 streams with nghttp; scrape, and read the status
    // API's per-protocol totals.
    let backend = TestBackend::start("b1").await;
    let weir = Balancer::with_admin(&[backend.addr()], |_| {});
    let url = format!("http://{}/", weir.addr());
    for _ in 0..3 {
        assert_eq!(curl(&["--http1.1", &url]).await, "b1");
    }
    super::nghttp(&["-m", "5", &url]).await;
    let ok = [("protocol", "http2"), ("code_class", "2xx")];
    let text = scrape_until(weir.admin(), "weir_requests_total", &ok, 5.0).await;
    let http1 =
        metric(&text, "weir_requests_total", &[("protocol", "http1"), ("code_class", "2xx")]);
    assert_eq!(http1, Some(3.0), "{text}");
    assert_eq!(metric(&text, "weir_requests_total", &[("code_class", "2xx")]), Some(8.0));
    let api = admin_get(weir.admin(), "/api/v1/pools").await.text();
    assert!(api.contains(r#""protocols":{"http1":3,"http2":5}"#), "{api}");
}

/// A scrape's value of `name` (no labels beyond `labels`); 0 when absent.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric(text, name, labels).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_gauges_goaways_and_resets_are_counted() {
    // Goal: the HTTP/2 series follow a connection's life. Method: a raw client's stream
    // waits at a gated backend (1 connection, 1 stream open); the client resets it and
    // the gate opens (1 reset received, 0 streams); the connection idles past
    // `keepalive_timeout` and gets GOAWAY (1 with reason `idle`, 0 connections).
    let gate = Gate::start().await;
    let weir = Balancer::with_admin(&[gate.addr], |config| {
        config.server.keepalive_timeout = Duration::from_millis(300);
    });
    let admin = weir.admin();
    let mut client = Script::start("reset", weir.addr(), &["/"]);
    client.wait_for(|l| l == "open").await;
    gate.wait_requests(1).await;
    let text = scrape_until(admin, "weir_http2_streams_active", &[], 1.0).await;
    assert_eq!(value(&text, "weir_http2_connections_active", &[]), 1.0, "{text}");
    client.tell("reset\n").await;
    client.wait_for(|l| l == "reset read").await;
    gate.open.send_replace(true);
    scrape_until(admin, "weir_http2_resets_received_total", &[], 1.0).await;
    let goaway = client.wait_for(|l| l.starts_with("goaway=")).await;
    assert_eq!(goaway, "goaway=0 last=2147483647", "the idle connection's warning");
    client.wait_for(|l| l == "closed").await;
    let text = scrape_until(admin, "weir_http2_connections_active", &[], 0.0).await;
    assert_eq!(value(&text, "weir_http2_streams_active", &[]), 0.0, "{text}");
    let sent = "weir_http2_goaways_sent_total";
    assert_eq!(value(&text, sent, &[("reason", "idle")]), 1.0, "{text}");
    assert_eq!(value(&text, sent, &[]), 1.0, "no other GOAWAY: {text}");
    // Every series is there from the start, for every reason.
    let fresh = scrape(admin).await;
    assert_eq!(fresh.matches("weir_http2_goaways_sent_total{reason=").count(), 9, "{fresh}");
    client.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_the_client_resets_is_counted_and_logged_with_its_request() {
    // Goal: a stream the client resets mid-download is counted with the status it got,
    // as an HTTP/1 client's disconnect is, and its access-log line names its method and
    // path. It vanished from `weir_requests_total`, and its line read `"- - HTTP/2.0" 0`.
    // Method: an HTTP/2 client takes the head and a first DATA frame of 64 MiB, then
    // drops the body (RST_STREAM CANCEL).
    use weir::access_log::{Format, Target};
    let backend = TestBackend::start("b1").await;
    let log = crate::support::process::temp_path("h2-reset-access.log");
    let weir = Balancer::with_admin(&[backend.addr()], |config| {
        config.log.access = Target::Path(log.clone());
        config.log.format = Format::Combined;
    });
    let client = crate::h2up::h2_client(weir.addr()).await;
    let mut sender = client.clone().ready().await.unwrap();
    let request = http::Request::get("http://a/download?bytes=67108864").body(()).unwrap();
    let response = sender.send_request(request, true).unwrap().0.await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    assert!(body.data().await.is_some(), "a first DATA frame");
    drop(body);
    let ok = [("protocol", "http2"), ("code_class", "2xx")];
    let text = scrape_until(weir.admin(), "weir_requests_total", &ok, 1.0).await;
    assert_eq!(value(&text, "weir_http2_resets_received_total", &[]), 1.0, "{text}");
    weir.stop().await;
    let text = std::fs::read_to_string(&log).expect("access log written");
    let _ = std::fs::remove_file(&log);
    let line = "\"GET /download?bytes=67108864 HTTP/2.0\" 200 ";
    assert_eq!(text.matches(line).count(), 1, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_answer_the_client_resets_is_counted_once() {
    // Goal: weir's own answer (here 502: the backend refuses connections) that the
    // client resets while its body waits for the window counts once, not once where it
    // is written and again where the reset is. Method: a client with a window of 0 gets
    // the 502's head (HEADERS are not flow-controlled), then resets the stream.
    // Held for the test's life: no other test can start listening on it.
    let held = crate::support::process::hold_port();
    let weir = Balancer::with_admin(&[held.addr()], |_| {});
    let client = crate::h2up::h2_client_not_reading(weir.addr()).await;
    let mut sender = client.ready().await.unwrap();
    let request = http::Request::get("http://a/").body(()).unwrap();
    let response = sender.send_request(request, true).unwrap().0.await.unwrap();
    assert_eq!(response.status(), 502);
    drop(response);
    let text = scrape_until(weir.admin(), "weir_http2_resets_received_total", &[], 1.0).await;
    let failed = [("protocol", "http2"), ("code_class", "5xx")];
    assert_eq!(value(&text, "weir_requests_total", &failed), 1.0, "{text}");
}
