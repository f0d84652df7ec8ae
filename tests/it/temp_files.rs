//! The test helpers' scratch files go away: a test's directory when the test ends, the
//! shared kubeconfig when no test uses the fake Kubernetes API, and what earlier runs
//! left in Cargo's scratch directory when the next run starts.

use std::path::Path;

use crate::support::process::{sweep_dead_runs, temp_dir, SharedFile};

#[test]
fn a_temp_dir_goes_with_its_contents_when_dropped() {
    let dir = temp_dir("goes");
    let path = dir.to_path_buf();
    std::fs::write(dir.join("weir.toml"), "x").unwrap();
    std::fs::create_dir(dir.join("state")).unwrap();
    std::fs::write(dir.join("state").join("weir.state.json"), "{}").unwrap();
    drop(dir);
    assert!(!path.exists(), "{} left behind", path.display());
}

#[test]
fn a_shared_file_exists_while_held_and_goes_with_the_last_holder() {
    let file = SharedFile::new("shared.conf", "contents".to_string());
    assert!(!file.path().exists(), "written before anyone held it");
    let (first, second) = (file.hold(), file.hold());
    assert_eq!(std::fs::read_to_string(file.path()).unwrap(), "contents");
    drop(first);
    assert!(file.path().exists(), "a holder is left");
    drop(second);
    let dir = file.path().parent().unwrap();
    assert!(!dir.exists(), "{} left behind", dir.display());
    let again = file.hold();
    assert_eq!(std::fs::read_to_string(file.path()).unwrap(), "contents", "written again");
    drop(again);
    assert!(!file.path().exists());
}

#[test]
fn a_dead_runs_leftovers_are_swept_and_a_live_ones_kept() {
    let dir = temp_dir("sweep");
    // No process has PID u32::MAX (Linux's pid_max is at most 2^22).
    let dead_dir = dir.join(format!("weir-{}-0-fleet-process", u32::MAX));
    let dead_file = dir.join(format!("weir-{}-1-fleet-cache.json", u32::MAX));
    let live = dir.join(format!("weir-{}-2-live", std::process::id()));
    let unrelated = dir.join("weir-bench");
    for made in [&dead_dir, &live, &unrelated] {
        std::fs::create_dir(made).unwrap();
    }
    std::fs::write(dead_dir.join("weir.toml"), "x").unwrap();
    std::fs::write(&dead_file, "{}").unwrap();
    // A dead-looking run touched recently may be another PID namespace's live one.
    let recent = dir.join(format!("weir-{}-3-recent", u32::MAX));
    std::fs::write(&recent, "{}").unwrap();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 3600);
    for aged in [&dead_dir, &dead_file] {
        std::fs::File::open(aged).unwrap().set_modified(old).unwrap();
    }
    sweep_dead_runs(&dir, "weir-");
    assert!(!dead_dir.exists() && !dead_file.exists(), "a dead run's entries stay");
    assert!(live.exists() && unrelated.exists(), "a live run's or another name went");
    assert!(recent.exists(), "an entry touched within the hour went");
    assert!(Path::new(&*dir).exists());
}
