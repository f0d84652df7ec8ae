//! Access-log tests: JSON lines parse, a full channel drops instead of blocking, and
//! reopen moves writing to a new file.

use super::*;
use std::sync::atomic::AtomicUsize;
use std::sync::Mutex;
use std::time::Instant;

/// A unique file path under the system temporary directory.
fn temp_file(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    std::env::temp_dir().join(format!("weir-access-{}-{n}-{name}", std::process::id()))
}

fn entry(i: usize) -> Entry {
    let mut entry = Entry::new("127.0.0.1:40000".parse().unwrap(), "GET", &format!("/r/{i}"));
    entry.status = 200;
    entry.bytes_out = 5;
    entry.total = Duration::from_micros(1_500);
    entry.upstream = Some(Duration::from_micros(1_200));
    entry.pool = Some("web".into());
    entry.backend = Some("127.0.0.1:9001".into());
    entry.user_agent = Some("tab\there \"quoted\" \u{1}".into());
    entry
}

#[test]
fn json_lines_parse_one_by_one() {
    let path = temp_file("json.log");
    let log = AccessLog::start(Target::Path(path.clone()), Format::Json).expect("start");
    assert!(log.is_enabled());
    for i in 0..200 {
        log.log(entry(i));
    }
    assert!(log.close(Duration::from_secs(10)), "writer finished");
    let text = std::fs::read_to_string(&path).expect("read log");
    let _ = std::fs::remove_file(&path);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 200);
    for (i, line) in lines.iter().enumerate() {
        let value: serde_json::Value = serde_json::from_str(line).expect("line is JSON");
        assert_eq!(value["path"], format!("/r/{i}"));
        assert_eq!(value["status"], 200);
        assert_eq!(value["upstream_ms"], 1.2);
        assert_eq!(value["user_agent"], "tab\there \"quoted\" \u{1}");
        for key in ["time", "client", "method", "bytes_in", "bytes_out", "total_ms"] {
            assert!(value.get(key).is_some(), "{key} missing in {line}");
        }
        for key in ["pool", "backend", "retries", "error"] {
            assert!(value.get(key).is_some(), "{key} missing in {line}");
        }
    }
}

/// A writer whose first write waits for the gate, like a stalled disk.
struct Stalled {
    gate: mpsc::Receiver<()>,
    opened: bool,
    written: Arc<Mutex<Vec<u8>>>,
}

impl Write for Stalled {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.opened {
            let _ = self.gate.recv_timeout(Duration::from_secs(20));
            self.opened = true;
        }
        self.written.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn full_channel_drops_lines_without_blocking() {
    const SENT: usize = 5_000;
    let (release, gate) = mpsc::channel();
    let written = Arc::new(Mutex::new(Vec::new()));
    let stalled = Stalled { gate, opened: false, written: Arc::clone(&written) };
    let sink = Sink::new(Box::new(stalled), None);
    let log = AccessLog::start_sink(sink, Format::Combined, 8, QUEUED_BYTES).expect("start");
    let started = Instant::now();
    for i in 0..SENT {
        log.log(entry(i));
    }
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(2), "logging blocked for {elapsed:?}");
    let dropped = log.dropped();
    assert!(dropped > 0, "nothing dropped while the writer was stalled");
    release.send(()).expect("writer waits");
    assert!(log.close(Duration::from_secs(10)), "writer finished");
    let lines = written.lock().unwrap().iter().filter(|&&b| b == b'\n').count();
    assert_eq!(lines as u64 + dropped, SENT as u64, "every line written or counted");
}

#[test]
fn waiting_lines_are_bounded_in_bytes_too() {
    // 200 entries with 10 KiB targets while the writer is stalled, on a channel with
    // room for 1,000 lines but 64 KiB of strings: at most 6 wait, the rest are dropped
    // and counted, and once the writer moves every line is written or counted.
    const SENT: usize = 200;
    let (release, gate) = mpsc::channel();
    let written = Arc::new(Mutex::new(Vec::new()));
    let stalled = Stalled { gate, opened: false, written: Arc::clone(&written) };
    let log = AccessLog::start_sink(
        Sink::new(Box::new(stalled), None),
        Format::Combined,
        1000,
        64 * 1024,
    )
    .expect("start");
    for i in 0..SENT {
        let mut long = entry(i);
        long.path = format!("/{}", "a".repeat(10 * 1024));
        log.log(long);
    }
    // The writer may have taken one entry off the channel before it stalled.
    let dropped = log.dropped();
    assert!(dropped >= (SENT - 7) as u64, "{dropped} dropped");
    release.send(()).expect("writer waits");
    assert!(log.close(Duration::from_secs(10)), "writer finished");
    let lines = written.lock().unwrap().iter().filter(|&&b| b == b'\n').count();
    assert_eq!(lines as u64 + dropped, SENT as u64, "every line written or counted");
}

/// Waits up to 10 s for `path` to hold `lines` lines.
fn wait_lines(path: &Path, lines: usize) -> bool {
    for _ in 0..500 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().count() >= lines {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn reopen_writes_to_a_fresh_file() {
    let path = temp_file("rotate.log");
    let rotated = path.with_extension("log.1");
    let log = AccessLog::start(Target::Path(path.clone()), Format::Combined).expect("start");
    log.log(entry(1));
    assert!(wait_lines(&path, 1), "first line never written");
    std::fs::rename(&path, &rotated).expect("rotate");
    log.reopen();
    log.log(entry(2));
    assert!(log.close(Duration::from_secs(10)), "writer finished");
    let old = std::fs::read_to_string(&rotated).expect("rotated file");
    let new = std::fs::read_to_string(&path).expect("reopened file");
    let _ = std::fs::remove_file(&rotated);
    let _ = std::fs::remove_file(&path);
    assert!(old.contains("GET /r/1 ") && !old.contains("/r/2"), "old file: {old}");
    assert!(new.contains("GET /r/2 ") && !new.contains("/r/1"), "new file: {new}");
}

#[test]
fn off_records_nothing() {
    let log = AccessLog::start(Target::Off, Format::Json).expect("start");
    assert!(!log.is_enabled());
    log.log(entry(0));
    assert_eq!(log.dropped(), 0);
    assert!(log.close(Duration::from_secs(10)), "writer finished");
}

#[test]
fn bad_path_fails_at_start() {
    let path = PathBuf::from("/nonexistent-dir-weir/access.log");
    let error = AccessLog::start(Target::Path(path), Format::Json).expect_err("must fail");
    assert!(error.to_string().contains("access log /nonexistent-dir-weir"), "{error}");
}

#[test]
fn shared_by_reference_across_workers() {
    fn assert_shareable<T: Send + Sync>() {}
    assert_shareable::<AccessLog>();
}

#[test]
fn close_gives_up_on_a_stalled_writer() {
    let (release, gate) = mpsc::channel();
    let written = Arc::new(Mutex::new(Vec::new()));
    let stalled = Stalled { gate, opened: false, written: Arc::clone(&written) };
    let log =
        AccessLog::start_sink(Sink::new(Box::new(stalled), None), Format::Json, 4, QUEUED_BYTES)
            .expect("start");
    log.log(entry(0));
    let started = Instant::now();
    assert!(!log.close(Duration::from_millis(200)), "a stalled writer cannot finish");
    assert!(started.elapsed() < Duration::from_secs(5), "close waited too long");
    release.send(()).expect("writer waits");
    assert!(log.close(Duration::from_secs(10)), "released writer finishes");
    assert_eq!(written.lock().unwrap().iter().filter(|&&b| b == b'\n').count(), 1);
}
