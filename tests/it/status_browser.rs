//! The status page in a real browser: `bench/status_screenshot.py` drives headless
//! Chromium (through chromedriver) against weir while traffic runs, checks that every
//! backend rendered and that a refresh changed a value, and saves `target/status.png`.
//! Skipped when chromium, chromedriver or python3 is missing, except under CI=true,
//! where .ci/run installs them and their absence fails the test.

use crate::support::balancer::add_routed_pool;
use crate::support::load::{Client, Load, Request};
use crate::support::{self, Balancer, TestBackend};

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success())
}

/// Paths of the flaky pool's load: one request in eight gets a 503.
const FLAKY: &[&str] = &[
    "/status/200",
    "/status/200",
    "/status/200",
    "/status/503",
    "/status/200",
    "/status/200",
    "/status/200",
    "/status/200",
];

/// Load on every pool, GETs cycling through each plan's paths: about 130 requests/s in all.
fn start_load(addr: SocketAddr) -> Load {
    let plans: [(&'static [&'static str], u64); 4] =
        [(&["/"], 12), (&["/"], 20), (&["/slow?ms=40"], 30), (FLAKY, 25)];
    let client = |(paths, ms): (&'static [&'static str], u64)| {
        let next = move |n: usize| Request::Get(paths[n % paths.len()].to_string());
        Client::new("status page load", Duration::from_millis(ms), next)
    };
    Load::start(addr, plans.map(client))
}

/// Runs the browser script against `url`; returns its success and its output.
async fn run_browser_script(url: String, backends: usize) -> (bool, String) {
    let root = env!("CARGO_MANIFEST_DIR");
    let script = format!("{root}/bench/status_screenshot.py");
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args([script.as_str(), url.as_str()])
            .env("OUT", format!("{root}/target/status.png"))
            .env("EXPECT_BACKENDS", backends.to_string())
            .output()
    })
    .await
    .expect("script task")
    .expect("run bench/status_screenshot.py");
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_renders_in_headless_chromium() {
    // Goal: the page renders every pool and backend, refreshes itself, and looks right.
    // Method: three pools (two plain backends, a slow one, a flaky one that answers 503
    // to one request in eight, plus a backend marked down as a health check would), load
    // on all of them, then the browser script; its exit status is the verdict.
    if !["chromium", "chromedriver", "python3"].iter().all(|tool| have(tool)) {
        // CI installs them (.ci/run); there a missing tool is a failure, not a skip.
        assert!(
            std::env::var_os("CI").is_none(),
            "CI=true but chromium, chromedriver or python3 is missing"
        );
        eprintln!("skipping: needs chromium, chromedriver (chromium-driver) and python3");
        return;
    }
    let (a, b) = (TestBackend::start("web-a").await, TestBackend::start("web-b").await);
    let slow = TestBackend::start("slow").await;
    let flaky = TestBackend::start("flaky").await;
    // Held for the test's life: no other test can start listening on it.
    let held = support::process::hold_port();
    let down = held.addr();
    let weir = Balancer::with_admin(&[a.addr(), b.addr()], |config| {
        add_routed_pool(config, "slow", slow.addr(), "/slow");
        add_routed_pool(config, "flaky", flaky.addr(), "/status/");
        let extra = support::config_for(&[down]).pools.remove(0).backends.remove(0);
        config.pools.last_mut().expect("flaky pool").backends.push(extra);
    });
    let snapshot = weir.handle().shared().snapshot.load();
    for (_, backend) in snapshot.backends().filter(|(_, b)| b.label == down.to_string()) {
        backend.live.healthy.store(false, Ordering::Relaxed);
    }
    let load = start_load(weir.addr());
    let (passed, output) = run_browser_script(format!("http://{}/status", weir.admin()), 5).await;
    load.finish().await;
    eprintln!("{output}");
    assert!(passed, "browser check failed:\n{output}");
}
