//! A small reader for the Prometheus text format: scrapes of the admin `/metrics`, and the
//! value of one series. Every wait is bounded.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::{sleep, Instant};

use super::admin::admin_get;

/// How long a counter may take to catch up with responses already received: weir counts
/// a request after its last byte is written, so a fast client can scrape first.
pub const SETTLE: Duration = Duration::from_secs(5);

/// One scrape of `/metrics`.
pub async fn scrape(admin: SocketAddr) -> String {
    let response = admin_get(admin, "/metrics").await;
    assert_eq!(response.status, 200, "scrape: {}", response.text());
    response.text()
}

/// Parses `name{k="v",...}` into its name and labels. Label values here never hold
/// quotes or commas, which keeps this reader small.
fn series(text: &str) -> (&str, Vec<(&str, &str)>) {
    let Some((name, rest)) = text.split_once('{') else { return (text, Vec::new()) };
    let labels = rest
        .trim_end_matches('}')
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k, v.trim_matches('"')))
        .collect();
    (name, labels)
}

/// Sum of every sample named `name` whose labels include all of `labels`; `None` when
/// no sample matches.
pub fn metric(scrape: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut total = None;
    for line in scrape.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let Some((head, value)) = line.rsplit_once(' ') else { continue };
        let (sample, have) = series(head);
        if sample != name || !labels.iter().all(|want| have.contains(want)) {
            continue;
        }
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in `{line}`"));
        total = Some(total.unwrap_or(0.0) + value);
    }
    total
}

/// Scrapes until `name{labels}` equals `want` (up to [`SETTLE`]), then returns that
/// scrape. Panics with the last value otherwise.
pub async fn scrape_until(
    admin: SocketAddr,
    name: &str,
    labels: &[(&str, &str)],
    want: f64,
) -> String {
    let deadline = Instant::now() + SETTLE;
    loop {
        let text = scrape(admin).await;
        let value = metric(&text, name, labels);
        if value == Some(want) {
            return text;
        }
        assert!(Instant::now() < deadline, "{name}{labels:?} = {value:?}, want {want}\n{text}");
        sleep(Duration::from_millis(20)).await;
    }
}
