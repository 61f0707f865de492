//! `/status-json.xsl` in Icecast's shape, which monitoring tools and directories already parse:
//! `source` is an object for one mount and an array for several, numbers are numbers, and the
//! JSON is valid (Icecast's XSLT sometimes is not).

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::station::Station;

/// The whole `{"icestats": …}` document. `host` is the Host header the client used.
pub fn icestats(station: &Station, host: String) -> Value {
    let s = &station.config.station;
    let audio = station.config.audio;
    let title = station.now_playing.borrow().title.text().to_string();
    let mut sources: Vec<Value> = station
        .mounts
        .iter()
        .map(|m| {
            let c = &m.config;
            // serde_json's map is sorted, which gives Icecast's alphabetical key order.
            json!({
                "audio_info": format!("channels={};samplerate={};bitrate={}", audio.channels, audio.sample_rate, c.bitrate_kbps),
                "bitrate": c.bitrate_kbps,
                "channels": audio.channels,
                "genre": s.genre,
                "listener_peak": m.peak(),
                "listeners": m.listeners(),
                "listenurl": format!("http://{host}{}", c.path),
                "samplerate": audio.sample_rate,
                "server_description": s.description,
                "server_name": s.name,
                "server_type": m.content_type,
                "server_url": s.url,
                "stream_start": rfc822(m.started),
                "stream_start_iso8601": iso8601(m.started),
                "title": title,
            })
        })
        .collect();
    let source = if sources.len() == 1 {
        sources.pop().unwrap_or(Value::Null)
    } else {
        Value::Array(sources)
    };
    let hostname = host
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host.as_str(), |(h, _)| h)
        .to_string();
    json!({
        "icestats": {
            "admin": "",
            "host": hostname,
            "location": "",
            "server_id": concat!("onair ", env!("CARGO_PKG_VERSION")),
            "server_start": rfc822(station.started),
            "server_start_iso8601": iso8601(station.started),
            "source": source,
        }
    })
}

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
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    let (y, m, d, hh, mm, ss, wd) = civil(t);
    format!(
        "{}, {d:02} {} {y} {hh:02}:{mm:02}:{ss:02} +0000",
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

/// Escapes text for HTML element content and attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
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
    fn html_is_escaped() {
        assert_eq!(
            escape_html("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
