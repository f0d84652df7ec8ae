//! Tests of the bare machine: the seed scenario at its core, and ejection times.

use std::time::Duration;

use tokio::time::Instant;

use super::*;

fn passive(base_secs: u64, max_secs: u64) -> PassiveConfig {
    PassiveConfig {
        base_ejection: Duration::from_secs(base_secs),
        max_ejection: Duration::from_secs(max_secs),
        ..PassiveConfig::default()
    }
}

#[test]
fn ejection_time_grows_linearly_and_is_capped() {
    let config = passive(10, 35);
    let times: Vec<u64> = (1..=5).map(|n| ejection_time(&config, n).as_secs()).collect();
    assert_eq!(times, vec![10, 20, 30, 35, 35]);
    assert_eq!(ejection_time(&config, 0).as_secs(), 10);
}

#[test]
fn a_passed_probe_ends_a_passive_ejection_and_a_trip_needs_clear() {
    let now = Instant::now();
    let probes = HealthConfig::default();
    let config = passive(10, 300);
    let rules = Rules { probes: Some(&probes), passive: &config, slow_start: None };
    let mut machine = Machine::new(now);
    let trip = Event::Trip { failures: 5, kinds: Cause::Connect.bit() };
    let change = machine.step(trip, rules, now).expect("ejected");
    assert!(change.ejected && change.was_healthy && !change.healthy);
    assert_eq!(change.reason, "5 consecutive connect failures, until a probe passes");
    // Without probes the timer would end it; with probes only a probe does.
    assert_eq!(machine.deadline(rules), None);
    assert_eq!(machine.step(Event::Timer, rules, now + Duration::from_secs(60)), None);
    // A second trip while ejected changes nothing.
    assert_eq!(machine.step(trip, rules, now), None);
    let change = machine.step(Event::Probe { ok: true, detail: "" }, rules, now).unwrap();
    assert!(change.healthy && !change.was_healthy);
    assert_eq!(change.passive_before, Passive::Ejected { until: now + Duration::from_secs(10) });
    assert!(machine.is_healthy());
    // The probe that ended the ejection also counts towards the active streak.
    assert_eq!(machine.probe_passes, 1);
}

#[test]
fn multiplier_decays_one_per_base_ejection_spent_clear() {
    let start = Instant::now();
    let config = passive(10, 300);
    let rules = Rules { probes: None, passive: &config, slow_start: None };
    let mut machine = Machine::new(start);
    let trip = Event::Trip { failures: 5, kinds: Cause::Reset.bit() };
    let mut now = start;
    // Three ejections in a row: each trial fails.
    machine.step(trip, rules, now).unwrap();
    for n in 2..=3 {
        now = machine.deadline(rules).unwrap();
        machine.step(Event::Timer, rules, now).unwrap();
        let failed = Event::Trial { ok: false, cause: Some(Cause::Reset) };
        let change = machine.step(failed, rules, now).unwrap();
        assert!(change.reason.ends_with(&format!("for {}s", 10 * n)), "{}", change.reason);
    }
    now = machine.deadline(rules).unwrap();
    machine.step(Event::Timer, rules, now).unwrap();
    machine.step(Event::Trial { ok: true, cause: None }, rules, now).unwrap();
    assert_eq!(machine.ejections, 3);
    // 25 s clear takes two off: the next ejection is the second in a row.
    now += Duration::from_secs(25);
    let change = machine.step(trip, rules, now).unwrap();
    assert_eq!(change.reason, "5 consecutive resets, for 20s");
}

#[test]
fn failures_are_described_by_kind() {
    assert_eq!(describe_failures(1, Cause::Timeout.bit()), "1 response timeout");
    let mixed = Cause::Reset.bit() | Cause::Status(503).bit();
    assert_eq!(describe_failures(3, mixed), "3 consecutive failures (reset, failure status)");
}
