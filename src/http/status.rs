//! `/status-json.xsl` in Icecast's shape, which monitoring tools and directories already parse:
//! `source` is an object for one mount and an array for several, numbers are numbers, and the
//! JSON is valid (Icecast's XSLT sometimes is not). Also what `/admin/stats` shares with it (one
//! list of a mount's Icecast fields, the host a client reached us by).

use serde_json::{Value, json};

use crate::config::{Audio, MountConfig};
use crate::dates::{iso8601, rfc822};
use crate::live::handshake::ShowInfo;
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
    let live = station.live.session();
    // While a show is on, the mount says what the DJ's tool sent (its `ice-*` headers), as
    // Icecast does for the mount a source feeds; the station's own where it sent nothing.
    let show = |sent: fn(&ShowInfo) -> &Option<String>, own: &str| {
        live.as_ref()
            .and_then(|l| sent(&l.show).clone())
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| own.to_owned())
    };
    let mut fields = vec![
        ("audio_info", json!(audio_info(audio, c))),
        ("bitrate", json!(c.bitrate_kbps)),
        ("channels", json!(audio.channels)),
    ];
    // The DJ's source, as Icecast shows a mount's source to its admins.
    let source = live.as_ref().filter(|_| admin);
    if let Some(session) = source {
        fields.push(("connected", json!(session.connected_at.elapsed().as_secs())));
    }
    fields.extend([("genre", json!(show(|s| &s.genre, &s.genre)))]);
    // HLS listeners count in `listeners` too: directories read that one number.
    let hls = m.hls_sessions().map(|_| m.hls_listeners());
    if let Some(n) = hls {
        fields.push(("hls_listeners", json!(n)));
    }
    fields.extend([
        ("listener_peak", json!(m.peak())),
        ("listeners", json!(m.listeners() + hls.unwrap_or(0))),
        ("listenurl", json!(listen_url(host, &c.path))),
    ]);
    if admin {
        fields.push(("max_listeners", json!(c.max_listeners)));
        fields.push(("public", json!(0)));
    }
    fields.extend([
        ("samplerate", json!(c.codec.output_rate(audio))),
        (
            "server_description",
            json!(show(|s| &s.description, &s.description)),
        ),
        ("server_name", json!(show(|s| &s.name, &s.name))),
        ("server_type", json!(m.content_type)),
        ("server_url", json!(show(|s| &s.url, &s.url))),
    ]);
    if let Some(session) = source {
        fields.push(("source_ip", json!(session.peer.ip().to_string())));
    }
    fields.extend([
        ("stream_start", json!(rfc822(m.started))),
        ("stream_start_iso8601", json!(iso8601(m.started))),
        ("title", json!(station.on_air.title().text())),
    ]);
    if admin {
        fields.push(("total_bytes_sent", json!(m.metrics.sent_bytes.get())));
    }
    if let Some(session) = source {
        let agent = session.show.user_agent.as_deref().unwrap_or("");
        fields.push(("user_agent", json!(agent)));
    }
    fields
}

/// `channels=2;samplerate=44100;bitrate=128`: the `ice-audio-info` header and the
/// `audio_info` stat.
pub fn audio_info(audio: Audio, mount: &MountConfig) -> String {
    format!(
        "channels={};samplerate={};bitrate={}",
        audio.channels,
        mount.codec.output_rate(audio),
        mount.bitrate_kbps
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

#[cfg(test)]
mod tests {
    use super::*;

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
