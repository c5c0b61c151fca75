//! Times on the command line: RFC 3339 (`2026-11-22T18:00:00Z`,
//! `2026-11-22T19:00:00.5+01:00`) or a duration before now (`90s`, `30m`,
//! `1h`, `2d`, `1h30m`), as nanoseconds since the Unix epoch.
use super::CtlError;

/// Parses `text` (the value of `flag`) relative to `now_ns`.
pub fn parse_time(flag: &str, text: &str, now_ns: u64) -> Result<u64, CtlError> {
    let bad = |why: &str| {
        CtlError::Usage(format!(
            "{flag} {text:?}: {why}; expected RFC 3339 (2026-11-22T18:00:00Z) or a duration before now (30m, 1h, 2d)"
        ))
    };
    let text = text.trim();
    if text.is_empty() {
        return Err(bad("empty"));
    }
    if text.as_bytes()[0].is_ascii_digit() && text.contains('T') || text.contains('-') {
        return parse_rfc3339(text).ok_or_else(|| bad("not a valid RFC 3339 time"));
    }
    let d = humantime::parse_duration(text).map_err(|e| bad(&e.to_string()))?;
    let ns = u64::try_from(d.as_nanos()).map_err(|_| bad("too long ago"))?;
    now_ns.checked_sub(ns).ok_or_else(|| bad("before 1970"))
}

/// RFC 3339 with `Z` or a numeric offset, into ns since the epoch.
fn parse_rfc3339(text: &str) -> Option<u64> {
    let upper = text.to_ascii_uppercase();
    let (local, offset_s): (&str, i64) = if let Some(l) = upper.strip_suffix('Z') {
        (l, 0)
    } else {
        // A trailing +HH:MM or -HH:MM after the time part.
        let t = upper.find('T')?;
        let pos = upper[t..].rfind(['+', '-'])? + t;
        let (l, off) = upper.split_at(pos);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (h, m) = off[1..].split_once(':')?;
        let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
        if h > 23 || m > 59 || off.len() != 6 {
            return None;
        }
        (l, sign * (h * 3600 + m * 60))
    };
    let t = humantime::parse_rfc3339(&format!("{local}Z")).ok()?;
    let ns = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos() as i128;
    let utc = ns - offset_s as i128 * 1_000_000_000;
    u64::try_from(utc).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000_000_000;

    #[test]
    fn relative_and_absolute() {
        assert_eq!(
            parse_time("--since", "1h", NOW).unwrap(),
            NOW - 3_600_000_000_000
        );
        assert_eq!(
            parse_time("--since", "30m", NOW).unwrap(),
            NOW - 1_800_000_000_000
        );
        assert_eq!(
            parse_time("--since", "2d", NOW).unwrap(),
            NOW - 172_800_000_000_000
        );
        assert_eq!(
            parse_time("--since", "2026-11-22T18:00:00Z", NOW).unwrap(),
            1_795_370_400_000_000_000
        );
        assert_eq!(
            parse_time("--since", "2026-11-22T19:30:00.25+01:30", NOW).unwrap(),
            1_795_370_400_250_000_000
        );
        assert_eq!(
            parse_time("--until", "2026-11-22T16:00:00-02:00", NOW).unwrap(),
            1_795_370_400_000_000_000
        );
    }

    #[test]
    fn bad_times_name_the_flag() {
        for bad in [
            "yesterday",
            "",
            "2026-13-01T00:00:00Z",
            "1h-",
            "2026-11-22T18:00:00+25:00",
        ] {
            let e = parse_time("--since", bad, NOW).unwrap_err().to_string();
            assert!(e.starts_with("--since"), "{e}");
        }
    }
}
