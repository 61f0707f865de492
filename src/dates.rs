//! How onair writes times: the civil calendar from a `SystemTime`, in the formats of Icecast's
//! status pages, HTTP's `Date`, ISO 8601 and the combined access log. Written here rather than
//! taken from a crate: five formats, all UTC.

use std::time::{SystemTime, UNIX_EPOCH};

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Civil date and time (UTC) from a `SystemTime`.
fn civil(t: SystemTime) -> (i64, u32, u32, u32, u32, u32, usize) {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u32;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    let weekday = (days + 4).rem_euclid(7) as usize; // 1970-01-01 was a Thursday
    (y, m, d, sod / 3600, sod / 60 % 60, sod % 60, weekday)
}

/// "Fri, 27 Nov 2026 14:33:00 +0000", as Icecast writes dates.
pub fn rfc822(t: SystemTime) -> String {
    day_date(t, "+0000")
}

/// "Fri, 27 Nov 2026 14:33:00 GMT": the `Date` header (IMF-fixdate, as Icecast and hyper write it).
pub fn http_date(t: SystemTime) -> String {
    day_date(t, "GMT")
}

/// "Fri, 27 Nov 2026 14:33:00 " and then `zone`.
fn day_date(t: SystemTime, zone: &str) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    let (y, m, d, hh, mm, ss, wd) = civil(t);
    format!(
        "{}, {d:02} {} {y} {hh:02}:{mm:02}:{ss:02} {zone}",
        DAYS[wd],
        MONTHS[(m - 1) as usize]
    )
}

/// "27/Nov/2026:14:33:00 +0000", the date in a combined-format access log line.
pub fn clf_date(t: SystemTime) -> String {
    let (y, m, d, hh, mm, ss, _) = civil(t);
    format!(
        "{d:02}/{}/{y}:{hh:02}:{mm:02}:{ss:02} +0000",
        MONTHS[(m - 1) as usize]
    )
}

/// "2026-11-27T14:33:00+0000"
pub fn iso8601(t: SystemTime) -> String {
    let (y, m, d, hh, mm, ss, _) = civil(t);
    format!("{y}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}+0000")
}

/// "2026-11-27T14:33:00Z", what browsers' `Date` parses everywhere.
pub fn iso8601_utc(t: SystemTime) -> String {
    let (y, m, d, hh, mm, ss, _) = civil(t);
    format!("{y}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

/// "2026-11-27T14:33:00Z" (optionally with a fraction of a second), the form `iso8601_utc`
/// writes; `None` for anything else, or a time before 1970.
pub fn parse_rfc3339_utc(text: &str) -> Option<SystemTime> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let (time, fraction) = match time.split_once('.') {
        Some((_, "")) => return None,
        Some((time, fraction)) => (time, fraction),
        None => (time, ""),
    };
    let number = |s: &str, len: usize| {
        (s.len() == len && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<i64>().ok())
            .flatten()
    };
    let mut d = date.split('-');
    let (y, m, day) = (
        number(d.next()?, 4)?,
        number(d.next()?, 2)?,
        number(d.next()?, 2)?,
    );
    let mut t = time.split(':');
    let (hh, mm, ss) = (
        number(t.next()?, 2)?,
        number(t.next()?, 2)?,
        number(t.next()?, 2)?,
    );
    if d.next().is_some() || t.next().is_some() {
        return None;
    }
    let days_in_month = match m {
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => return None,
    };
    if !(1..=days_in_month).contains(&day) || hh > 23 || mm > 59 || ss > 59 {
        return None;
    }
    let nanos = if fraction.is_empty() {
        0
    } else if fraction.len() <= 9 && fraction.bytes().all(|b| b.is_ascii_digit()) {
        fraction.parse::<u32>().ok()? * 10u32.pow(9 - fraction.len() as u32)
    } else {
        return None;
    };
    // Howard Hinnant's days-from-civil algorithm.
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()?;
    Some(UNIX_EPOCH + std::time::Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn utc_times_parse_back_and_bad_ones_are_refused() {
        for secs in [0, 951_782_400, 1_764_000_000, 1_800_000_123] {
            let t = UNIX_EPOCH + Duration::from_secs(secs);
            assert_eq!(parse_rfc3339_utc(&iso8601_utc(t)), Some(t), "{secs}");
        }
        assert_eq!(
            parse_rfc3339_utc("2026-12-03T12:19:33.563Z"),
            Some(UNIX_EPOCH + Duration::from_millis(1_796_300_373_563))
        );
        for bad in [
            "2026-12-03 12:19:33Z",
            "2026-12-03T12:19:33",
            "2026-12-03T12:19:33+01:00",
            "2026-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-12-03T24:00:00Z",
            "1969-12-31T23:59:59Z",
            "26-12-03T12:19:33Z",
            "2026-12-03T12:19:33.Z",
        ] {
            assert_eq!(parse_rfc3339_utc(bad), None, "{bad}");
        }
    }

    #[test]
    fn dates_format_like_icecast() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_790_000);
        assert_eq!(rfc822(t), "Fri, 27 Nov 2026 14:33:20 +0000");
        assert_eq!(iso8601(t), "2026-11-27T14:33:20+0000");
        assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00+0000");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc822(leap), "Tue, 29 Feb 2000 00:00:00 +0000");
    }

    #[test]
    fn http_dates_are_imf_fixdate() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_790_000);
        assert_eq!(http_date(t), "Fri, 27 Nov 2026 14:33:20 GMT");
    }

    #[test]
    fn access_log_and_api_dates() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_790_000);
        assert_eq!(clf_date(t), "27/Nov/2026:14:33:20 +0000");
        assert_eq!(iso8601_utc(t), "2026-11-27T14:33:20Z");
    }
}
