//! Times on the command line, as nanoseconds since the Unix epoch:
//!
//! - before now: `-1h`, `1h ago`, `30m`, `2d`, `1h30m` (a bare duration
//!   has always meant "before now"), and `now`;
//! - `today`, `yesterday`: local midnight;
//! - local dates and times: `2026-12-01` (its midnight), `2026-12-01 18:00`,
//!   `2026-12-01 18:00:05` (or with `T`, with a fraction of a second);
//! - RFC 3339 with `Z` or an offset: `2026-11-22T18:00:00Z`,
//!   `2026-11-22T19:00:00.5+01:00`.
//!
//! "Local" is the time zone of the TZ variable, else /etc/localtime (jiff's
//! system zone), else UTC. A local time a DST change skips or repeats takes
//! the compatible reading (RFC 5545): the later offset in a gap, the earlier
//! in a fold.
use jiff::{civil, tz::TimeZone, Timestamp};

use super::CtlError;

/// The accepted forms, for error messages and `--help`.
pub const FORMS: &str = "a duration before now (-1h, 1h ago, 30m, 2d), now, today, yesterday, \
     a local date or time (2026-12-01, \"2026-12-01 18:00\", \"2026-12-01 18:00:05\") \
     or RFC 3339 with an offset (2026-12-01T18:00:00Z)";

/// Parses `text` (the value of `flag`) relative to `now_ns`, local forms in
/// the system time zone.
pub fn parse_time(flag: &str, text: &str, now_ns: u64) -> Result<u64, CtlError> {
    parse_time_in(flag, text, now_ns, &TimeZone::system())
}

/// Parses `text` (the value of `flag`) relative to `now_ns`, local forms in
/// `tz`.
pub fn parse_time_in(flag: &str, text: &str, now_ns: u64, tz: &TimeZone) -> Result<u64, CtlError> {
    let bad = |why: &str| CtlError::Usage(format!("{flag} {text:?}: {why}; expected {FORMS}"));
    let text = text.trim();
    if text.is_empty() {
        return Err(bad("empty"));
    }
    let lower = text.to_ascii_lowercase();
    match lower.as_str() {
        "now" => return Ok(now_ns),
        "today" | "yesterday" => {
            let now = Timestamp::from_nanosecond(i128::from(now_ns))
                .map_err(|e| bad(&e.to_string()))?
                .to_zoned(tz.clone());
            let mut day = now.date();
            if lower == "yesterday" {
                day = day.yesterday().map_err(|e| bad(&e.to_string()))?;
            }
            return local_ns(tz, day.to_datetime(civil::Time::midnight())).map_err(|e| bad(&e));
        }
        _ => {}
    }
    if starts_with_date(text) {
        if has_offset(text) {
            return parse_rfc3339(text).ok_or_else(|| bad("not a valid RFC 3339 time"));
        }
        let dt = parse_local(text).ok_or_else(|| bad("not a valid local date or time"))?;
        return local_ns(tz, dt).map_err(|e| bad(&e));
    }
    // A duration before now: `-1h`, `1h ago`, or bare `1h`.
    let duration = lower
        .strip_prefix('-')
        .or_else(|| lower.strip_suffix("ago").map(str::trim_end))
        .unwrap_or(&lower);
    let d = humantime::parse_duration(duration).map_err(|e| bad(&e.to_string()))?;
    let ns = u64::try_from(d.as_nanos()).map_err(|_| bad("too long ago"))?;
    now_ns.checked_sub(ns).ok_or_else(|| bad("before 1970"))
}

/// `YYYY-MM-DD` at the start: an absolute time, never a duration.
fn starts_with_date(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() >= 10
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..7].iter().all(u8::is_ascii_digit)
        && b[7] == b'-'
        && b[8..10].iter().all(u8::is_ascii_digit)
}

/// A `Z` or a numeric offset after the time of day: RFC 3339, not local.
fn has_offset(text: &str) -> bool {
    let time = &text[10..];
    time.ends_with(['z', 'Z']) || time.contains(['+', '-'])
}

/// `YYYY-MM-DD`, or it followed by a space or `T` and `HH:MM`,
/// `HH:MM:SS` or `HH:MM:SS.fraction`. Shapes are checked here because
/// jiff also reads forms a person would not mean (`2026-12-01T18`).
fn parse_local(text: &str) -> Option<civil::DateTime> {
    let date: civil::Date = text[..10].parse().ok()?;
    let rest = &text[10..];
    if rest.is_empty() {
        return Some(date.to_datetime(civil::Time::midnight()));
    }
    let time = rest
        .strip_prefix(' ')
        .or_else(|| rest.strip_prefix(['T', 't']))?
        .trim_start();
    let b = time.as_bytes();
    let hh_mm = b.len() >= 5 && b[2] == b':';
    let seconds = b.len() == 5 || (b.len() >= 8 && b[5] == b':');
    let fraction = b.len() <= 8 || b[8] == b'.';
    if !(hh_mm && seconds && fraction) {
        return None;
    }
    let time: civil::Time = time.parse().ok()?;
    Some(date.to_datetime(time))
}

/// A local date-time in `tz`, into ns since the epoch.
fn local_ns(tz: &TimeZone, dt: civil::DateTime) -> Result<u64, String> {
    let ts = tz
        .to_ambiguous_timestamp(dt)
        .compatible()
        .map_err(|e| e.to_string())?;
    u64::try_from(ts.as_nanosecond()).map_err(|_| "before 1970".to_string())
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
    let utc = ns - i128::from(offset_s) * 1_000_000_000;
    u64::try_from(utc).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000_000_000;

    /// New York with its DST rules written out, so the tests need no tz
    /// database on the machine.
    fn new_york() -> TimeZone {
        TimeZone::posix("EST5EDT,M3.2.0,M11.1.0").unwrap()
    }

    /// `text` in New York at 2026-12-04 10:30 local (15:30 UTC).
    fn ny(text: &str) -> Result<u64, CtlError> {
        let now = ns("2026-12-04T15:30:00Z");
        parse_time_in("--since", text, now, &new_york())
    }

    fn ns(rfc3339: &str) -> u64 {
        parse_rfc3339(rfc3339).unwrap()
    }

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
    fn minus_and_ago_are_before_now() {
        // The old parser read a leading '-' as a date and refused it.
        let hour = 3_600_000_000_000;
        assert_eq!(parse_time("--since", "-1h", NOW).unwrap(), NOW - hour);
        assert_eq!(parse_time("--since", "1h ago", NOW).unwrap(), NOW - hour);
        assert_eq!(
            parse_time("--since", "1h30m ago", NOW).unwrap(),
            NOW - hour * 3 / 2
        );
        assert_eq!(parse_time("--since", "-30m", NOW).unwrap(), NOW - hour / 2);
        assert_eq!(parse_time("--since", "-2d", NOW).unwrap(), NOW - 48 * hour);
        assert_eq!(parse_time("--until", "now", NOW).unwrap(), NOW);
    }

    #[test]
    fn today_and_yesterday_are_local_midnights() {
        assert_eq!(ny("today").unwrap(), ns("2026-12-04T05:00:00Z"));
        assert_eq!(ny("Yesterday").unwrap(), ns("2026-12-03T05:00:00Z"));
        // At 23:30 in New York it is already the next day in UTC: today is
        // still the New York day.
        let late = ns("2026-12-05T04:30:00Z");
        assert_eq!(
            parse_time_in("--since", "today", late, &new_york()).unwrap(),
            ns("2026-12-04T05:00:00Z")
        );
        // Yesterday across the spring DST change was 23 hours long.
        let after_dst = ns("2026-03-09T12:00:00Z");
        assert_eq!(
            parse_time_in("--since", "yesterday", after_dst, &new_york()).unwrap(),
            ns("2026-03-08T05:00:00Z")
        );
        assert_eq!(
            parse_time_in("--since", "today", after_dst, &new_york()).unwrap(),
            ns("2026-03-09T04:00:00Z")
        );
    }

    #[test]
    fn local_dates_and_times() {
        assert_eq!(ny("2026-12-01").unwrap(), ns("2026-12-01T05:00:00Z"));
        assert_eq!(ny("2026-12-01 18:00").unwrap(), ns("2026-12-01T23:00:00Z"));
        assert_eq!(
            ny("2026-12-01 18:00:05").unwrap(),
            ns("2026-12-01T23:00:05Z")
        );
        assert_eq!(
            ny("2026-07-01T18:00:05.5").unwrap(),
            ns("2026-07-01T22:00:05.5Z")
        );
        // 02:30 does not exist on 2026-03-08 in New York: the later offset.
        assert_eq!(ny("2026-03-08 02:30").unwrap(), ns("2026-03-08T07:30:00Z"));
        // An offset still wins over the local zone.
        assert_eq!(
            ny("2026-12-01T18:00:00Z").unwrap(),
            ns("2026-12-01T18:00:00Z")
        );
    }

    #[test]
    fn bad_times_name_the_flag_and_the_forms() {
        for bad in [
            "",
            "2026-13-01T00:00:00Z",
            "2026-13-01",
            "2026-12-01 18",
            "2026-12-01 18:00:5",
            "2026-12-01x",
            "1h-",
            "tomorrow",
            "2026-11-22T18:00:00+25:00",
        ] {
            let e = ny(bad).unwrap_err().to_string();
            assert!(e.starts_with("--since"), "{e}");
            assert!(
                e.contains("yesterday") && e.contains("2026-12-01 18:00"),
                "{e}"
            );
        }
    }
}
