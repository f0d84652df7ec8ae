//! Access-log line formats: nginx's `combined` with weir's fields appended, and JSON.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Entry, Format};
use crate::json::JsonWriter;

const MONTHS: [&str; 12] =
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// A UTC calendar time.
#[derive(Debug, PartialEq, Eq)]
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    millis: u32,
}

/// Converts to UTC date and time (Howard Hinnant's `civil_from_days`). Times before
/// 1970 print as 1970-01-01.
fn civil(time: SystemTime) -> Civil {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let of_day = secs % 86_400;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    Civil {
        year,
        month: u32::try_from(month).unwrap_or(1),
        day: u32::try_from(day).unwrap_or(1),
        hour: (of_day / 3_600) as u32,
        minute: (of_day % 3_600 / 60) as u32,
        second: (of_day % 60) as u32,
        millis: since.subsec_millis(),
    }
}

/// `2024-05-01T12:00:00.123Z`.
fn rfc3339(time: SystemTime) -> String {
    let c = civil(time);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second, c.millis
    )
}

/// `01/May/2024:12:00:00 +0000`, nginx's `$time_local` in UTC.
fn clf_time(out: &mut String, time: SystemTime) {
    let c = civil(time);
    let month = MONTHS[(c.month.clamp(1, 12) - 1) as usize];
    let _ = write!(
        out,
        "{:02}/{month}/{:04}:{:02}:{:02}:{:02} +0000",
        c.day, c.year, c.hour, c.minute, c.second
    );
}

/// Appends `value` escaped as nginx does inside quotes: `"`, `\`, control and non-ASCII
/// bytes become `\xHH`, so a line never breaks and never lets a client forge a field.
fn escape_clf(out: &mut String, value: &str) {
    for byte in value.bytes() {
        if !(0x20..0x7f).contains(&byte) || byte == b'"' || byte == b'\\' {
            let _ = write!(out, "\\x{byte:02X}");
        } else {
            out.push(char::from(byte));
        }
    }
}

fn quoted(out: &mut String, value: Option<&str>) {
    out.push('"');
    escape_clf(out, value.unwrap_or("-"));
    out.push('"');
}

/// Seconds with millisecond precision, as nginx's `$request_time`.
fn seconds(duration: Duration) -> String {
    format!("{}.{:03}", duration.as_secs(), duration.subsec_millis())
}

/// Milliseconds with microsecond precision.
fn millis(duration: Duration) -> f64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX) as f64 / 1000.0
}

/// Writes `entry` as one line in `format`, without the newline.
pub fn write_line(out: &mut String, entry: &Entry, format: Format) {
    match format {
        Format::Combined => combined(out, entry),
        Format::Json => json(out, entry),
    }
}

/// nginx `combined`, then `key=value` fields for the balancer's part of the story:
/// `1.2.3.4 - - [time] "GET / HTTP/1.1" 200 12 "referer" "agent" in=0 rt=0.002
/// urt=0.001 pool="web" backend="10.0.0.1:80" retries=0 error="-"`.
fn combined(out: &mut String, entry: &Entry) {
    let _ = write!(out, "{} - - [", entry.client.ip());
    clf_time(out, entry.time);
    out.push_str("] \"");
    escape_clf(out, &entry.method);
    out.push(' ');
    escape_clf(out, &entry.path);
    let _ = write!(out, " {}\" {} {} ", entry.protocol(), entry.status, entry.bytes_out);
    quoted(out, entry.referer.as_deref());
    out.push(' ');
    quoted(out, entry.user_agent.as_deref());
    let _ = write!(out, " in={} rt={} urt=", entry.bytes_in, seconds(entry.total));
    match entry.upstream {
        Some(upstream) => out.push_str(&seconds(upstream)),
        None => out.push('-'),
    }
    out.push_str(" pool=");
    quoted(out, entry.pool.as_deref());
    out.push_str(" backend=");
    quoted(out, entry.backend.as_deref());
    let _ = write!(out, " retries={} error=", entry.retries);
    quoted(out, entry.error);
    // Only with ids on, so lines keep their shape for parsers written before.
    if let Some(id) = &entry.request_id {
        out.push_str(" request_id=");
        quoted(out, Some(id));
    }
}

/// One JSON object per line; field names are listed in the README ("Access log").
fn json(out: &mut String, entry: &Entry) {
    let mut json = JsonWriter::with_capacity(320);
    json.begin_object();
    json.key("time");
    json.string(&rfc3339(entry.time));
    json.key("client");
    json.string(&entry.client.ip().to_string());
    json.key("client_port");
    json.u64(u64::from(entry.client.port()));
    json.key("method");
    json.string(&entry.method);
    json.key("path");
    json.string(&entry.path);
    json.key("protocol");
    json.string(entry.protocol());
    json.key("status");
    json.u64(u64::from(entry.status));
    json.key("bytes_in");
    json.u64(entry.bytes_in);
    json.key("bytes_out");
    json.u64(entry.bytes_out);
    json.key("total_ms");
    json.f64(millis(entry.total));
    json.key("upstream_ms");
    json.opt_f64(entry.upstream.map(millis));
    json.key("pool");
    json.opt_string(entry.pool.as_deref());
    json.key("backend");
    json.opt_string(entry.backend.as_deref());
    json.key("retries");
    json.u64(u64::from(entry.retries));
    json.key("error");
    json.opt_string(entry.error);
    json.key("referer");
    json.opt_string(entry.referer.as_deref());
    json.key("user_agent");
    json.opt_string(entry.user_agent.as_deref());
    json.key("request_id");
    json.opt_string(entry.request_id.as_deref());
    json.end_object();
    out.push_str(&json.finish());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
    }

    #[test]
    fn calendar_dates() {
        assert_eq!(rfc3339(at(0, 0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(at(951_782_400, 5)), "2000-02-29T00:00:00.005Z");
        assert_eq!(rfc3339(at(1_700_000_000, 999)), "2023-11-14T22:13:20.999Z");
        assert_eq!(rfc3339(at(4_102_444_799, 0)), "2099-12-31T23:59:59.000Z");
        let mut out = String::new();
        clf_time(&mut out, at(971_186_136, 0));
        assert_eq!(out, "10/Oct/2000:13:55:36 +0000");
    }

    fn sample() -> Entry {
        let mut entry = Entry::new("10.1.2.3:5555".parse().unwrap(), "GET", "/a \"b\"\n");
        entry.time = at(971_186_136, 250);
        entry.status = 502;
        entry.bytes_in = 10;
        entry.bytes_out = 42;
        entry.total = Duration::from_micros(12_345);
        entry.pool = Some("web".into());
        entry.backend = Some("127.0.0.1:9001".into());
        entry.retries = 1;
        entry.error = Some("upstream connect failed");
        entry.user_agent = Some("curl/8 \u{e9}".into());
        entry
    }

    #[test]
    fn combined_line() {
        let mut out = String::new();
        write_line(&mut out, &sample(), Format::Combined);
        assert_eq!(
            out,
            "10.1.2.3 - - [10/Oct/2000:13:55:36 +0000] \"GET /a \\x22b\\x22\\x0A HTTP/1.1\" \
             502 42 \"-\" \"curl/8 \\xC3\\xA9\" in=10 rt=0.012 urt=- pool=\"web\" \
             backend=\"127.0.0.1:9001\" retries=1 error=\"upstream connect failed\""
        );
    }

    #[test]
    fn json_line_parses() {
        let mut out = String::new();
        write_line(&mut out, &sample(), Format::Json);
        assert!(!out.contains('\n'));
        let value: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
        assert_eq!(value["time"], "2000-10-10T13:55:36.250Z");
        assert_eq!(value["client"], "10.1.2.3");
        assert_eq!(value["path"], "/a \"b\"\n");
        assert_eq!(value["status"], 502);
        assert_eq!(value["total_ms"], 12.345);
        assert_eq!(value["upstream_ms"], serde_json::Value::Null);
        assert_eq!(value["error"], "upstream connect failed");
        assert_eq!(value["user_agent"], "curl/8 \u{e9}");
    }
}
