//! Our own JSON API for web pages and apps: `/api/nowplaying` (station, mounts, the current and next
//! track, the last 20 played) and `/api/events`, a server-sent event stream that pushes the same
//! document on every title change and the listener counts when they change.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::dates::iso8601_utc;
use crate::station::{LiveShow, Station, TrackInfo};

/// How often an event stream looks at the listener counts.
const COUNT_INTERVAL: Duration = Duration::from_secs(1);
/// Comment lines keep proxies from closing an idle event stream.
const KEEPALIVE: Duration = Duration::from_secs(15);

fn track_json(t: &TrackInfo) -> serde_json::Map<String, Value> {
    let mut o = serde_json::Map::new();
    o.insert("title".into(), json!(t.title));
    o.insert("artist".into(), json!(t.artist));
    o.insert("track_title".into(), json!(t.track_title));
    o.insert("key".into(), json!(&*t.key));
    o.insert(
        "duration".into(),
        json!(t.duration.map(|d| round2(d.as_secs_f64()))),
    );
    o
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The `/api/nowplaying` document. `host` is the Host header, for stream URLs.
pub fn nowplaying(station: &Station, host: &str) -> Value {
    let s = &station.config.station;
    let now = station.on_air.now();
    let mounts: Vec<Value> = station
        .mounts
        .iter()
        .map(|m| {
            json!({
                "path": m.config.path,
                "codec": m.config.codec.name(),
                "bitrate": m.config.bitrate_kbps,
                "content_type": m.content_type,
                "listeners": m.all_listeners(),
                "hls_listeners": m.hls_sessions().map(|_| m.hls_listeners()),
                // The page plays this where the browser lacks the codec over plain HTTP.
                "hls": m.hls_sessions().map(|_| format!("/hls{}/live.m3u8", m.config.path)),
                "listener_peak": m.peak(),
                "url": super::status::listen_url(host, &m.config.path),
            })
        })
        .collect();
    let now_playing = now.track.as_ref().map(|t| {
        let mut o = track_json(t);
        // The title on air may be an operator's; the tags stay in artist/track_title.
        o.insert("title".into(), json!(now.title.text()));
        o.insert("started_at".into(), json!(iso8601_utc(now.started)));
        o.insert(
            "elapsed".into(),
            json!(round2(now.started_at.elapsed().as_secs_f64())),
        );
        Value::Object(o)
    });
    let history: Vec<Value> = station
        .on_air
        .history()
        .iter()
        .map(|p| {
            let mut o = track_json(&p.track);
            o.insert("started_at".into(), json!(iso8601_utc(p.started)));
            Value::Object(o)
        })
        .collect();
    json!({
        "station": { "name": s.name, "description": s.description, "genre": s.genre, "url": s.url },
        "live": live_json(now.live.as_ref()),
        "listeners": station.mounts.total_listeners(),
        "mounts": mounts,
        "now_playing": now_playing,
        "next": station.on_air.up_next().as_ref().map(|t| Value::Object(track_json(t))),
        "history": history,
        "generated_at": SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
    })
}

/// `live` in `/api/nowplaying` and the `live` event: whether a DJ is on air, who, since when.
fn live_json(show: Option<&LiveShow>) -> Value {
    match show {
        Some(show) => json!({
            "is_live": true,
            "streamer": show.streamer,
            "since": iso8601_utc(show.since),
        }),
        None => json!({ "is_live": false, "streamer": null, "since": null }),
    }
}

fn listener_counts(station: &Station) -> Value {
    let mounts: serde_json::Map<String, Value> = station
        .mounts
        .iter()
        .map(|m| (m.config.path.clone(), json!(m.all_listeners())))
        .collect();
    json!({ "listeners": station.mounts.total_listeners(), "mounts": mounts })
}

fn event(name: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

/// Starts an event stream for one client; the returned receiver is the response body. The task
/// ends when the client goes away or the radio shuts down.
pub fn events(station: &Arc<Station>, host: String) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel(16);
    let station = Arc::clone(station);
    tokio::spawn(async move {
        let mut titles = station.on_air.subscribe();
        let mut counts = tokio::time::interval(COUNT_INTERVAL);
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        keepalive.reset();
        let mut last_counts = listener_counts(&station);
        let mut last_live = station.on_air.now().live;
        titles.mark_unchanged();
        if tx
            .send(event("nowplaying", &nowplaying(&station, &host)))
            .await
            .is_err()
        {
            return;
        }
        loop {
            let msg = tokio::select! {
                _ = station.health.stopping().cancelled() => return,
                _ = tx.closed() => return,
                changed = titles.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let live = station.on_air.now().live;
                    if live != last_live {
                        let msg = event("live", &live_json(live.as_ref()));
                        if tx.send(msg).await.is_err() {
                            return;
                        }
                        last_live = live;
                    }
                    event("nowplaying", &nowplaying(&station, &host))
                }
                _ = counts.tick() => {
                    let c = listener_counts(&station);
                    if c == last_counts {
                        continue;
                    }
                    last_counts = c;
                    event("listeners", &last_counts)
                }
                _ = keepalive.tick() => Bytes::from_static(b": keepalive\n\n"),
            };
            if tx.send(msg).await.is_err() {
                return;
            }
        }
    });
    rx
}

/// `/radio.mp3.m3u`, `.pls` and `.xspf`: playlist files that point desktop players at a mount,
/// with the host the client used.
pub fn playlist(
    station: &Station,
    mount_path: &str,
    kind: &str,
    host: &str,
) -> Option<(&'static str, String)> {
    let url = super::status::listen_url(host, mount_path);
    let name = &station.config.station.name;
    match kind {
        "m3u" => Some((
            "audio/x-mpegurl",
            format!("#EXTM3U\n#EXTINF:-1,{name}\n{url}\n"),
        )),
        "pls" => Some((
            "audio/x-scpls",
            format!(
                "[playlist]\nNumberOfEntries=1\nFile1={url}\nTitle1={name}\nLength1=-1\nVersion=2\n"
            ),
        )),
        "xspf" => {
            let e = super::escape::xml;
            Some((
                "application/xspf+xml",
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<playlist version=\"1\" xmlns=\"http://xspf.org/ns/0/\">\n  <title>{}</title>\n  <trackList>\n    <track>\n      <location>{}</location>\n      <title>{}</title>\n    </track>\n  </trackList>\n</playlist>\n",
                    e(name),
                    e(&url),
                    e(name)
                ),
            ))
        }
        _ => None,
    }
}
