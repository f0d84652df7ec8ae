//! Durations and sizes as written in the config file: `"250ms"`, `"5s"`, `"64KiB"`.

use std::time::Duration;

const DURATION_HINT: &str = r#"expected a duration such as "250ms", "5s" or "1m""#;
const SIZE_HINT: &str = r#"expected a size such as "65536", "64KiB" or "1MiB""#;

/// Parses a duration with a unit: `ms`, `s`, `m` or `h`, as in `"250ms"`, `"5s"`, `"1.5m"`.
///
/// A decimal fraction of up to nine digits is allowed. A bare number, a negative value or
/// one too large for a [`Duration`] of `u64` nanoseconds is refused, with a short message
/// saying what is expected.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = split_number(text.trim());
    if number.starts_with('-') {
        return Err("a duration cannot be negative".to_string());
    }
    let nanos_per_unit: u128 = match unit {
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "" if !number.is_empty() => return Err(format!("missing unit: {DURATION_HINT}")),
        _ => return Err(DURATION_HINT.to_string()),
    };
    let (whole, fraction) = match number.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (number, ""),
    };
    if !all_digits(whole) || (number.contains('.') && !all_digits(fraction)) {
        return Err(DURATION_HINT.to_string());
    }
    if fraction.len() > 9 {
        return Err("at most nine decimal places in a duration".to_string());
    }
    let too_large = || "duration too large".to_string();
    let whole: u128 = whole.parse().map_err(|_| too_large())?;
    let fraction_nanos = if fraction.is_empty() {
        0
    } else {
        let digits: u128 = fraction.parse().map_err(|_| too_large())?;
        let scale = 10u128.pow(u32::try_from(fraction.len()).map_err(|_| too_large())?);
        digits * nanos_per_unit / scale
    };
    let nanos = whole
        .checked_mul(nanos_per_unit)
        .and_then(|n| n.checked_add(fraction_nanos))
        .ok_or_else(too_large)?;
    let nanos = u64::try_from(nanos).map_err(|_| too_large())?;
    Ok(Duration::from_nanos(nanos))
}

/// Parses a size in bytes: a bare number (`"65536"`) or one with a unit, `B`, `KiB`, `MiB`
/// or `GiB` (powers of 1024) or `KB`, `MB` or `GB` (powers of 1000). Units ignore case.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let (number, unit) = split_number(text.trim());
    if number.starts_with('-') {
        return Err("a size cannot be negative".to_string());
    }
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => return Err(SIZE_HINT.to_string()),
    };
    if !all_digits(number) {
        return Err(SIZE_HINT.to_string());
    }
    let too_large = || "size too large".to_string();
    let value: u64 = number.parse().map_err(|_| too_large())?;
    let bytes = value.checked_mul(multiplier).ok_or_else(too_large)?;
    usize::try_from(bytes).map_err(|_| too_large())
}

/// Writes a byte count the way a config file would: `"64KiB"`, `"1MiB"`, or plain bytes.
pub fn format_size(bytes: usize) -> String {
    match bytes {
        0 => "0".to_string(),
        b if b % (1 << 30) == 0 => format!("{}GiB", b >> 30),
        b if b % (1 << 20) == 0 => format!("{}MiB", b >> 20),
        b if b % (1 << 10) == 0 => format!("{}KiB", b >> 10),
        b => b.to_string(),
    }
}

/// Splits `"12.5 ms"` into `("12.5", "ms")`: the leading sign, digits and dots, then the rest
/// with surrounding spaces removed.
fn split_number(text: &str) -> (&str, &str) {
    let end = text
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || c == '.' || (i == 0 && (c == '-' || c == '+'))))
        .map_or(text.len(), |(i, _)| i);
    let (number, unit) = text.split_at(end);
    (number, unit.trim())
}

/// Whether `text` is one or more ASCII digits.
fn all_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_with_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration(" 10 s "), Ok(Duration::from_secs(10)));
    }

    #[test]
    fn durations_with_fractions() {
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0.25m"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("1.000000001s"), Ok(Duration::from_nanos(1_000_000_001)));
        assert!(parse_duration("1.0000000001s").is_err());
        assert!(parse_duration(".5s").is_err());
        assert!(parse_duration("1.s").is_err());
        assert!(parse_duration("1.2.3s").is_err());
    }

    #[test]
    fn durations_refused() {
        let hint = DURATION_HINT.to_string();
        assert_eq!(parse_duration("5"), Err(format!("missing unit: {hint}")));
        assert_eq!(parse_duration(""), Err(hint.clone()));
        assert_eq!(parse_duration("s"), Err(hint.clone()));
        assert_eq!(parse_duration("5 seconds"), Err(hint.clone()));
        assert_eq!(parse_duration("5S"), Err(hint.clone()));
        assert_eq!(parse_duration("+5s"), Err(hint));
        assert_eq!(parse_duration("-5s"), Err("a duration cannot be negative".to_string()));
        assert_eq!(parse_duration("99999999999h"), Err("duration too large".to_string()));
        let huge = format!("{}s", "9".repeat(60));
        assert_eq!(parse_duration(&huge), Err("duration too large".to_string()));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64KiB"), Ok(64 * 1024));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("2 kib"), Ok(2048));
        assert_eq!(parse_size("8KB"), Ok(8000));
        assert_eq!(parse_size("3MB"), Ok(3_000_000));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_size("100B"), Ok(100));
    }

    #[test]
    fn sizes_formatted() {
        assert_eq!(format_size(0), "0");
        assert_eq!(format_size(1000), "1000");
        assert_eq!(format_size(1024), "1KiB");
        assert_eq!(format_size(64 * 1024), "64KiB");
        assert_eq!(format_size(1 << 20), "1MiB");
        assert_eq!(format_size(3 << 30), "3GiB");
        for bytes in [1, 1023, 1536, 65536, 1 << 20, 5 << 30] {
            assert_eq!(parse_size(&format_size(bytes)), Ok(bytes));
        }
    }

    #[test]
    fn sizes_refused() {
        let hint = SIZE_HINT.to_string();
        assert_eq!(parse_size(""), Err(hint.clone()));
        assert_eq!(parse_size("KiB"), Err(hint.clone()));
        assert_eq!(parse_size("1.5MiB"), Err(hint.clone()));
        assert_eq!(parse_size("64TiB"), Err(hint.clone()));
        assert_eq!(parse_size("64 kilobytes"), Err(hint));
        assert_eq!(parse_size("-1"), Err("a size cannot be negative".to_string()));
        assert_eq!(parse_size("99999999999999GiB"), Err("size too large".to_string()));
        assert_eq!(parse_size("99999999999999999999"), Err("size too large".to_string()));
    }
}
