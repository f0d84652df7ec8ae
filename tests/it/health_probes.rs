//! Active probes: one prober per backend for the whole process, whatever the number of
//! workers, across reloads; TCP probes; and probes with their own Host and statuses.

use crate::support::{config_for, Balancer, TestBackend};

use std::time::Duration;

use tokio::time::sleep;
use weir::config::{BackendAddress, Config, HealthConfig, ProbeKind, StatusSet};

const INTERVAL: Duration = Duration::from_millis(100);
const WINDOW: Duration = Duration::from_secs(2);

fn probed(backends: &[&TestBackend], workers: usize, health: HealthConfig) -> Config {
    let addrs: Vec<_> = backends.iter().map(|b| b.addr()).collect();
    let mut config = config_for(&addrs);
    config.server.workers = workers;
    config.pools[0].health = Some(health);
    config
}

fn every_100ms() -> HealthConfig {
    HealthConfig { path: "/health".to_string(), interval: INTERVAL, ..HealthConfig::default() }
}

/// Requests each backend gets over about `WINDOW` with no client traffic (probes only),
/// and how many probe intervals the window really lasted: on a loaded machine the sleep
/// can overrun, and a longer window rightly holds more probes.
async fn probes_in_window(backends: &[&TestBackend]) -> (Vec<usize>, usize) {
    let before: Vec<usize> = backends.iter().map(|b| b.requests()).collect();
    let started = std::time::Instant::now();
    sleep(WINDOW).await;
    let counts = backends.iter().zip(before).map(|(b, before)| b.requests() - before).collect();
    let intervals = (started.elapsed().as_millis() / INTERVAL.as_millis()) as usize;
    (counts, intervals)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_probe_per_backend_per_interval_with_four_workers() {
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    let weir = Balancer::start(probed(&[&a, &b], 4, every_100ms()));
    // Let the first probes (spread over one interval) start.
    sleep(INTERVAL * 2).await;
    // 2 s at 100 ms: 20 probes each (more if the window overran), give or take one at
    // each end of the window and one for the jitter. One prober per worker would make 80.
    // At most 3 over, then; under, a stalled health thread skips the missed intervals
    // (it does not catch up in a burst), so a loaded machine may lose a few: at least
    // half still shows a prober running all along.
    let (counts, expected) = probes_in_window(&[&a, &b]).await;
    for count in counts {
        let bounds = expected / 2..=expected + 3;
        assert!(bounds.contains(&count), "{count} probes in {WINDOW:?}, expected {expected}");
    }
    // A reload (even one that changes the probes) leaves one prober per backend.
    let mut config = probed(&[&a, &b], 4, every_100ms());
    config.pools[0].health.as_mut().unwrap().timeout = Duration::from_millis(500);
    weir.reload(config).expect("reload");
    sleep(INTERVAL * 2).await;
    let (counts, expected) = probes_in_window(&[&a, &b]).await;
    for count in counts {
        let bounds = expected / 2..=expected + 3;
        assert!(bounds.contains(&count), "{count} probes after a reload, expected {expected}");
    }
    assert!(weir.status(a.addr()).healthy && weir.status(b.addr()).healthy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_probes_check_the_status_and_tcp_probes_the_connect() {
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    let weir = Balancer::start(probed(&[&a, &b], 2, every_100ms()));
    // `/health` answers 503: the backend goes out after 3 probes, and back after 2.
    a.set_healthy(false);
    let down = weir.wait_for(Duration::from_secs(2), |w| !w.status(a.addr()).healthy).await;
    assert!(down.is_some(), "{:?}", weir.status(a.addr()));
    assert!(weir.status(a.addr()).reason.contains("3 probes failed in a row (last: status 503)"));
    a.set_healthy(true);
    let up = weir.wait_for(Duration::from_secs(2), |w| w.status(a.addr()).healthy).await;
    assert!(up.is_some(), "{:?}", weir.status(a.addr()));
    // A 503 the probe was told to expect is healthy.
    let mut accepting = every_100ms();
    accepting.expect_status = StatusSet::range(200, 503);
    weir.reload(probed(&[&a, &b], 2, accepting)).expect("reload");
    a.set_healthy(false);
    sleep(INTERVAL * 6).await;
    assert!(weir.status(a.addr()).healthy, "{:?}", weir.status(a.addr()));
    // TCP probes only connect: a stopped backend fails them.
    let tcp = HealthConfig { kind: ProbeKind::Tcp, ..every_100ms() };
    weir.reload(probed(&[&a, &b], 2, tcp)).expect("reload");
    b.stop();
    let down = weir.wait_for(Duration::from_secs(2), |w| !w.status(b.addr()).healthy).await;
    assert!(down.is_some(), "{:?}", weir.status(b.addr()));
    assert!(weir.status(b.addr()).reason.contains("connection refused"));
    assert!(weir.status(a.addr()).healthy, "a passes TCP probes although /health says 503");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_named_by_host_name_is_probed_at_its_addresses() {
    // `localhost` may resolve to ::1 before 127.0.0.1; the probe tries each address in
    // turn, as traffic does, and the backend listens on 127.0.0.1 only.
    let a = TestBackend::start("a").await;
    let label = format!("localhost:{}", a.addr().port());
    let mut config = config_for(&[a.addr()]);
    config.pools[0].backends[0].address = BackendAddress::parse(&label).unwrap();
    config.pools[0].health = Some(every_100ms());
    let weir = Balancer::start(config);
    let before = a.requests();
    let probed = weir.wait_for(Duration::from_secs(5), |_| a.requests() - before >= 3).await;
    assert!(probed.is_some(), "probes reached the backend by name");
    assert!(weir.status_of(&label).healthy, "{:?}", weir.status_of(&label));
    a.stop();
    let down = weir.wait_for(Duration::from_secs(2), |w| !w.status_of(&label).healthy).await;
    assert!(down.is_some(), "{:?}", weir.status_of(&label));
}
