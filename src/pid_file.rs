//! The pid file (`[server] pid_file`, `--pid-file`): the running process's id, so that
//! `weir upgrade` and scripts can find it.
//!
//! It is written atomically (temp file, then rename), so a reader never sees half a
//! number, and each write makes a new file: `weir upgrade` tells "the same process wrote
//! it again" (the upgrade failed) from "nothing happened yet" by the file's identity.

use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Longest pid file weir reads: a pid and a newline, with room to spare.
const MAX_PID_FILE_BYTES: u64 = 64;

/// Writes this process's id to `path`, replacing the file.
pub fn write(path: &Path) -> io::Result<()> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(format!(".{}.tmp", std::process::id()));
    let temp = PathBuf::from(temp);
    let result = (|| {
        let mut file = std::fs::File::create(&temp)?;
        writeln!(file, "{}", std::process::id())?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result.map_err(|e| io::Error::new(e.kind(), format!("pid file {}: {e}", path.display())))
}

/// The pid in `path` and the file's identity (device, inode).
pub fn read(path: &Path) -> io::Result<(u32, (u64, u64))> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    let mut text = String::new();
    file.take(MAX_PID_FILE_BYTES).read_to_string(&mut text)?;
    let pid = text.trim().parse::<u32>().map_err(|_| {
        io::Error::new(io::ErrorKind::InvalidData, format!("{}: not a pid", path.display()))
    })?;
    Ok((pid, (meta.dev(), meta.ino())))
}

/// Removes `path` if it still names this process (after an upgrade it names the new one).
pub fn remove_if_ours(path: &Path) {
    if matches!(read(path), Ok((pid, _)) if pid == std::process::id()) {
        let _ = std::fs::remove_file(path);
    }
}
