//! A million distinct keys keep a limit's memory within its documented bound
//! (`16 × table_size` bytes): measured as the resident memory of a process of its own,
//! this test binary run again for the one test below, so no other test's allocations
//! blur it.

use std::process::Command;

use weir::config::{LimitConfig, LimitKey, Rate};
use weir::limit::Limiter;

/// Distinct keys sent through the limit: the million.
const KEYS: u64 = 1_000_000;
/// Memory the measuring process may gain beyond the table: its runtime and the
/// allocator's own bookkeeping, nothing that grows with keys.
const SLACK_BYTES: u64 = 1 << 20;
/// Set in the child process that measures.
const CHILD: &str = "WEIR_LIMIT_MEMORY_CHILD";

/// Resident anonymous memory of this process (heap and stacks: what keys could grow;
/// file pages are the binary's code, paged in as new code runs), from /proc/self/status.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status.lines().find(|line| line.starts_with("RssAnon:")).expect("RssAnon");
    let kib: u64 = line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("a number");
    kib * 1024
}

/// The measurement, run only in the child: prints `table before after evictions`.
#[test]
fn limit_memory_child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let config = LimitConfig::new(
        "mem",
        LimitKey::Header("x-key".into()),
        Rate { count: 1, per: std::time::Duration::from_secs(60) },
    );
    let before = rss_bytes();
    let limiter = Limiter::new(config, 1);
    let mut key = String::with_capacity(32);
    runtime.block_on(async {
        for n in 0..KEYS {
            key.clear();
            std::fmt::Write::write_fmt(&mut key, format_args!("client-{n}")).expect("write");
            limiter.check(key.as_bytes()).await;
        }
    });
    let after = rss_bytes();
    let evictions = limiter.total(|stats| &stats.evictions);
    println!("MEASURED {} {before} {after} {evictions}", limiter.table_bytes());
}

#[test]
fn a_million_keys_stay_within_the_limit_tables_bound() {
    let exe = std::env::current_exe().expect("the test binary");
    let output = Command::new(exe)
        .args([
            "rate_limits_memory::limit_memory_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .output()
        .expect("the measuring process runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    let line = stdout.split("MEASURED ").nth(1).and_then(|rest| rest.lines().next());
    let line = line.unwrap_or_else(|| panic!("nothing measured: {stdout}"));
    let numbers: Vec<u64> = line.split(' ').map(|n| n.parse().expect("a number")).collect();
    let [table, before, after, evictions] = numbers[..] else { panic!("{line}") };
    eprintln!(
        "1M keys: table {table} B, RSS {before} -> {after} B (+{}), {evictions} evictions",
        after.saturating_sub(before)
    );
    assert_eq!(table, 131_072 * 16, "the default table_size");
    assert!(after.saturating_sub(before) <= table + SLACK_BYTES, "grew {} B", after - before);
    // Every key but those still in the table pushed an earlier one out: the table was
    // full and stayed its size.
    assert!(evictions >= KEYS - 131_072, "{evictions}");
}
