//! The binary's allocator (README "Memory"): jemalloc with its background purge thread,
//! which hands freed pages back to the kernel after a decay time. `bench/burst_mem.py`
//! and `bench/soak.sh` measure the effect (memory returned after a burst, RSS drift
//! under ten minutes of mixed traffic); this test checks the mechanism is on in the
//! binary that ships, so a change of allocator or of its features cannot drop it
//! unnoticed.

use std::time::Duration;
use tokio::time::{sleep, Instant};

use crate::support::process::{thread_names, WeirProcess};
use crate::support::{send, TestBackend};

/// The name jemalloc (5.3, Linux) gives its background purge threads.
const PURGE_THREAD: &str = "jemalloc_bg_thd";
/// jemalloc starts its first purge thread when it initialises, before `main`; the wait
/// only covers a loaded machine.
const WAIT: Duration = Duration::from_secs(10);
/// Re-reading `/proc` this often costs nothing next to the wait.
const POLL: Duration = Duration::from_millis(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_runs_the_allocators_purge_thread() {
    // Goal: the weir binary allocates through jemalloc with background purging on.
    // Method: after one proxied request, its threads include jemalloc's purge thread.
    let backend = TestBackend::start("b").await;
    let b = backend.addr().to_string();
    let args = ["-b", &b, "-l", "127.0.0.1:0", "--admin", "off"];
    let (process, addr) = WeirProcess::start(&args).await;
    let resp = send(addr, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let deadline = Instant::now() + WAIT;
    loop {
        let names = thread_names(process.pid());
        if names.iter().any(|n| n == PURGE_THREAD) {
            break;
        }
        assert!(Instant::now() < deadline, "no {PURGE_THREAD} thread in weir: {names:?}");
        sleep(POLL).await;
    }
}

#[test]
fn binary_has_the_thread_cache_option_compiled_in() {
    // Goal: the shipped binary's jemalloc keeps 128 objects per small size class in each
    // thread's cache (`.cargo/config.toml`): without it the HTTP/1 path cost 4.6% more
    // CPU (bench/RESULTS.md). A build that misses the option (cargo run from outside the
    // repository, a changed feature) must fail here, not lose the CPU unnoticed.
    // Method: jemalloc prints its options at exit when asked through its environment.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("--version")
        .env("_RJEM_MALLOC_CONF", "stats_print:true")
        .output()
        .expect("run weir --version");
    assert!(output.status.success(), "{output:?}");
    let stats = String::from_utf8_lossy(&output.stderr).into_owned()
        + &String::from_utf8_lossy(&output.stdout);
    assert!(
        stats
            .contains("config.malloc_conf: \"background_thread:true,tcache_nslots_small_min:128\""),
        "jemalloc's compiled-in options: {}",
        stats.lines().find(|l| l.contains("config.malloc_conf")).unwrap_or("(none printed)")
    );
    assert!(stats.contains("opt.tcache_nslots_small_min: 128"), "the option is not in effect");
}
