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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
