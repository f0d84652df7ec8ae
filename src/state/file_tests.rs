//! Saving the state file: size bound, temporary file, directory sync.

use std::io;
use std::path::{Path, PathBuf};

use super::{fits, temp_name, write_atomically, MAX_STATE_BYTES};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-file-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn failing_sync(_: &Path) -> io::Result<()> {
    Err(io::Error::other("injected directory sync failure"))
}

#[test]
fn a_failed_directory_sync_after_the_rename_still_counts_as_saved() {
    let dir = scratch("sync");
    let path = dir.join("weir.state.json");
    std::fs::write(&path, "old").unwrap();
    write_atomically(&path, "new", failing_sync).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
    assert!(!dir.join(temp_name("weir.state.json")).exists(), "the temporary file was renamed");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_failed_rename_removes_the_temporary_file_and_keeps_the_old_state() {
    let dir = scratch("rename");
    // A non-empty directory where the state file goes: the rename fails, even as root.
    let path = dir.join("weir.state.json");
    std::fs::create_dir_all(path.join("x")).unwrap();
    let error = write_atomically(&path, "new", failing_sync).unwrap_err();
    assert_ne!(error.kind(), io::ErrorKind::FileTooLarge);
    assert!(path.join("x").is_dir(), "nothing replaced");
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["weir.state.json"], "no temporary file left behind");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn temporary_file_name_holds_the_pid() {
    let name = temp_name("weir.state.json");
    assert_eq!(name, format!(".weir.state.json.{}.tmp", std::process::id()));
}

#[test]
fn a_state_file_weir_would_not_read_back_is_refused() {
    assert!(fits(1024, MAX_STATE_BYTES).is_ok());
    let limit = usize::try_from(MAX_STATE_BYTES).unwrap();
    assert!(fits(limit, MAX_STATE_BYTES).is_ok(), "the limit itself is read back");
    let error = fits(limit + 1, MAX_STATE_BYTES).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::FileTooLarge);
    assert!(error.to_string().contains("more than the 67108864"), "{error}");
}
