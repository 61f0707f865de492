//! `/status-json.xsl` in Icecast's shape, which monitoring tools and directories already parse:
//! `source` is an object for one mount and an array for several, numbers are numbers, and the
//! JSON is valid (Icecast's XSLT sometimes is not). Also what `/admin/stats` shares with it (one
//! list of a mount's Icecast fields, the host a client reached us by) and the date formats.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::config::{Audio, MountConfig};
use crate::station::{Mount, Station};

/// The whole `{"icestats": …}` document. `host` is the Host header the client used.
pub fn icestats(station: &Station, host: String) -> Value {
    let mut sources: Vec<Value> = station
        .mounts
        .iter()
        .map(|m| {
            // serde_json's map is sorted, which gives Icecast's alphabetical key order.
            Value::Object(
                source_fields(station, m, &host, Detail::Public)
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
            )
        })
        .collect();
    let source = if sources.len() == 1 {
        sources.pop().unwrap_or(Value::Null)
    } else {
        Value::Array(sources)
    };
    json!({
        "icestats": {
            "admin": "",
            "host": host_without_port(&host),
            "location": "",
            "server_id": SERVER_ID,
            "server_start": rfc822(station.started),
            "server_start_iso8601": iso8601(station.started),
            "source": source,
        }
    })
}

/// What Icecast puts in `server_id`.
pub const SERVER_ID: &str = concat!("onair ", env!("CARGO_PKG_VERSION"));

/// How much of a source a document shows.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// `/status-json.xsl`: what Icecast's public status shows.
    Public,
    /// `/admin/stats`: also the limits and byte counts.
    Admin,
}

/// One mount's fields as Icecast's stats name them, in alphabetical order (the order Icecast
/// writes them in), for `/status-json.xsl` and `/admin/stats` alike.
pub fn source_fields(
    station: &Station,
    m: &Mount,
    host: &str,
    detail: Detail,
) -> Vec<(&'static str, Value)> {
    let s = &station.config.station;
    let audio = station.config.audio;
    let c = &m.config;
    let admin = detail == Detail::Admin;
    let mut fields = vec![
        ("audio_info", json!(audio_info(audio, c))),
        ("bitrate", json!(c.bitrate_kbps)),
        ("channels", json!(audio.channels)),
        ("genre", json!(s.genre)),
        ("listener_peak", json!(m.peak())),
        ("listeners", json!(m.listeners())),
        ("listenurl", json!(listen_url(host, &c.path))),
    ];
    if admin {
        fields.push(("max_listeners", json!(c.max_listeners)));
        fields.push(("public", json!(0)));
    }
    fields.extend([
        ("samplerate", json!(audio.sample_rate)),
        ("server_description", json!(s.description)),
        ("server_name", json!(s.name)),
        ("server_type", json!(m.content_type)),
        ("server_url", json!(s.url)),
        ("stream_start", json!(rfc822(m.started))),
        ("stream_start_iso8601", json!(iso8601(m.started))),
        ("title", json!(station.now_playing.borrow().title.text())),
    ]);
    if admin {
        let sent = station
            .metrics
            .sent_bytes
            .with_label_values(&[&c.path])
            .get();
        fields.push(("total_bytes_sent", json!(sent)));
    }
    fields
}

/// `channels=2;samplerate=44100;bitrate=128`: the `ice-audio-info` header and the
/// `audio_info` stat.
pub fn audio_info(audio: Audio, mount: &MountConfig) -> String {
    format!(
        "channels={};samplerate={};bitrate={}",
        audio.channels, audio.sample_rate, mount.bitrate_kbps
    )
}

/// The URL a listener plays `path` at, through the host it reached us by.
pub fn listen_url(host: &str, path: &str) -> String {
    format!("http://{host}{path}")
}

/// The host part of a `Host` header (or of an origin's authority): `radio.example:8000` →
/// `radio.example`, `[::1]:8000` → `[::1]`, `radio.example` unchanged.
pub fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        // An IPv6 literal keeps its brackets, as it is written in a URL.
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
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

/// "Fri, 27 Nov 2026 14:33:00 GMT": the `Date` header (IMF-fixdate, as Icecast and hyper write it).
pub fn http_date(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    let (y, m, d, hh, mm, ss, wd) = civil(t);
    format!(
        "{}, {d:02} {} {y} {hh:02}:{mm:02}:{ss:02} GMT",
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
    fn host_without_port_handles_names_ipv4_and_ipv6() {
        for (host, name) in [
            ("radio.example:8000", "radio.example"),
            ("radio.example", "radio.example"),
            ("127.0.0.1:8000", "127.0.0.1"),
            ("[::1]:8000", "[::1]"),
            ("[::1]", "[::1]"),
            ("[2001:db8::1]:80", "[2001:db8::1]"),
            ("::1", "::1"),
            ("[oops", "[oops"),
            ("radio.example:http", "radio.example:http"),
        ] {
            assert_eq!(host_without_port(host), name, "{host}");
        }
    }
}
