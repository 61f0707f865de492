//! The HLS paths: `/hls/master.m3u8`, and for each HLS mount `/hls<mount>/live.m3u8` (with the
//! Low-Latency directives `_HLS_msn`, `_HLS_part`, `_HLS_skip`), its segments `<msn>.<ext>` and
//! parts `<msn>.<part>.<ext>`. A playlist request for a part not yet published waits for it
//! (HLS2 §6.2.5.2), and so does a request for the hinted next part (§6.2.6); both wait on the
//! rendition's watch, holding no lock, and give up after 3 target durations with 503.
//!
//! Cache lifetimes follow HLS2 Appendix B.1: objects never change and are never renamed, so
//! caches keep them for the window; a blocking playlist names a future state and is kept 6 target
//! durations; a plain playlist half a target duration; errors one second.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Response, StatusCode};

use super::Body;
use crate::hls::grid::{PARTS_PER_SEGMENT, TARGET_DURATION};
use crate::hls::station::{Hls, Rendition, parts_between};
use crate::metrics::HlsRequest;

/// How long a request waits for a part: 3 target durations (HLS2 §6.2.5.2).
const BLOCK_LIMIT: Duration = Duration::from_secs(3 * TARGET_DURATION);
/// How far ahead of the newest part a blocking request may ask (the Advance Part Limit for a
/// 1 s part target), and how many segments.
const ADVANCE_PARTS: i128 = 3;
const ADVANCE_SEGMENTS: u64 = 2;

const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";
const CACHE_OBJECT: &str = "public, max-age=960";
const CACHE_BLOCKING: &str = "public, max-age=24";
const CACHE_PLAYLIST: &str = "public, max-age=1";
const CACHE_MASTER: &str = "public, max-age=60";
const CACHE_ERROR: &str = "max-age=1";

/// What a request under `/hls/` asks for.
#[derive(Debug, PartialEq, Eq)]
enum Target<'a> {
    Master,
    Playlist(&'a str),
    Segment(&'a str, u64),
    Part(&'a str, u64, u64),
}

/// `/hls/radio.aac/123.2.aac` → the mount path and the object.
fn target(path: &str) -> Option<Target<'_>> {
    let rest = path.strip_prefix("/hls")?;
    if rest == "/master.m3u8" {
        return Some(Target::Master);
    }
    let (mount, name) = rest.rsplit_once('/')?;
    if mount.len() < 2 || !mount.starts_with('/') {
        return None;
    }
    if name == "live.m3u8" {
        return Some(Target::Playlist(mount));
    }
    let (stem, _ext) = name.rsplit_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit());
    match stem.split_once('.') {
        None if digits(stem) => Some(Target::Segment(mount, stem.parse().ok()?)),
        Some((msn, part)) if digits(msn) && digits(part) => {
            Some(Target::Part(mount, msn.parse().ok()?, part.parse().ok()?))
        }
        _ => None,
    }
}

/// The delivery directives of a playlist request.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Directives {
    msn: Option<u64>,
    part: Option<u64>,
    skip: bool,
}

fn directives(query: &str) -> Result<Directives, &'static str> {
    let mut d = Directives::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| "_HLS_msn and _HLS_part are numbers")
        };
        match name {
            "_HLS_msn" => d.msn = Some(number()?),
            "_HLS_part" => d.part = Some(number()?),
            "_HLS_skip" => d.skip = matches!(value, "YES" | "v2"),
            _ => {}
        }
    }
    if d.part.is_some() && d.msn.is_none() {
        return Err("_HLS_part needs _HLS_msn");
    }
    Ok(d)
}

/// A request under `/hls/`, read: what it asks for, owning nothing of the request. A blocked
/// request waits thousands at a time; holding its head would keep each connection's read buffer
/// pinned beside the one hyper takes for the next read (8 KiB more per waiting client).
pub enum Prepared<'h> {
    Ready(Response<Body>),
    Playlist {
        hls: &'h Hls,
        rendition: &'h Rendition,
        directives: Result<Directives, &'static str>,
        gzip: bool,
    },
    Part {
        rendition: &'h Rendition,
        msn: u64,
        index: u64,
    },
}

/// Whether an `Accept-Encoding` value takes gzip.
pub fn takes_gzip(accept_encoding: &[u8]) -> bool {
    accept_encoding
        .split(|&b| b == b',')
        .any(|e| e.trim_ascii().starts_with(b"gzip"))
}

/// Reads a request whose path starts with `/hls/`; `None` when it names nothing of ours.
/// `agent` is its `User-Agent` (empty without one), which with `peer` makes a session.
pub fn prepare<'h>(
    hls: &'h Arc<Hls>,
    path: &str,
    query: &str,
    gzip: bool,
    agent: &[u8],
    peer: IpAddr,
) -> Option<Prepared<'h>> {
    let seen = |r: &Rendition| r.sessions.seen(peer, agent, Instant::now());
    Some(match target(path)? {
        Target::Master if !hls.is_empty() => {
            Prepared::Ready(text(Bytes::from(hls.multivariant()), None, CACHE_MASTER))
        }
        Target::Master => return None,
        Target::Playlist(mount) => {
            let rendition = hls.by_path(mount)?;
            seen(rendition);
            Prepared::Playlist {
                hls,
                rendition,
                directives: directives(query),
                gzip,
            }
        }
        Target::Segment(mount, msn) => {
            let r = hls.by_path(mount)?;
            seen(r);
            r.metrics.requested(HlsRequest::Segment);
            Prepared::Ready(object(r, r.segment(msn)))
        }
        Target::Part(mount, msn, index) => {
            let rendition = hls.by_path(mount)?;
            seen(rendition);
            rendition.metrics.requested(HlsRequest::Part);
            Prepared::Part {
                rendition,
                msn,
                index,
            }
        }
    })
}

impl Prepared<'_> {
    /// The answer, once what it waits for (a part not yet published) has come.
    pub async fn answer(self) -> Response<Body> {
        match self {
            Prepared::Ready(resp) => resp,
            Prepared::Playlist {
                hls,
                rendition,
                directives,
                gzip,
            } => playlist(hls, rendition, directives, gzip).await,
            Prepared::Part {
                rendition,
                msn,
                index,
            } => part(rendition, msn, index).await,
        }
    }
}

async fn playlist(
    hls: &Hls,
    r: &Rendition,
    directives: Result<Directives, &'static str>,
    gzip: bool,
) -> Response<Body> {
    let d = match directives {
        Ok(d) => d,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    let blocking = d.msn.is_some();
    r.metrics.requested(if blocking {
        HlsRequest::BlockingPlaylist
    } else {
        HlsRequest::Playlist
    });
    if let Some(msn) = d.msn {
        // A part past its segment's last is part 0 of the next (HLS2 §6.2.5.2).
        let part = d.part.unwrap_or(0);
        let wanted = (msn + part / PARTS_PER_SEGMENT, part % PARTS_PER_SEGMENT);
        if let Some(newest) = r.newest()
            && (wanted.0 > newest.0 + ADVANCE_SEGMENTS
                || (d.part.is_some() && parts_between(newest, wanted) > ADVANCE_PARTS))
        {
            return error(
                StatusCode::BAD_REQUEST,
                "that part is too far ahead of the live edge",
            );
        }
        if !wait_for(r, wanted).await {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the part did not come in time",
            );
        }
    }
    let Some(rendered) = hls.playlist(r) else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "no part published yet");
    };
    let (plain, zipped) = match (d.skip, gzip) {
        (false, false) => (rendered.full, None),
        (false, true) => (rendered.full, Some(rendered.full_gz)),
        (true, false) => (rendered.delta, None),
        (true, true) => (rendered.delta, Some(rendered.delta_gz)),
    };
    let cache = if blocking {
        CACHE_BLOCKING
    } else {
        CACHE_PLAYLIST
    };
    text(plain, zipped, cache)
}

/// Waits until `wanted` (msn, part) is published; false after [`BLOCK_LIMIT`].
async fn wait_for(r: &Rendition, wanted: (u64, u64)) -> bool {
    let mut newest = r.subscribe();
    let reached = tokio::time::timeout(
        BLOCK_LIMIT,
        newest.wait_for(|n| n.is_some_and(|n| parts_between(n, wanted) <= 0)),
    )
    .await;
    matches!(reached, Ok(Ok(_)))
}

async fn part(r: &Rendition, msn: u64, index: u64) -> Response<Body> {
    if index >= PARTS_PER_SEGMENT {
        return error(StatusCode::NOT_FOUND, "no such part");
    }
    // The hinted next part may be asked for before it exists: it is sent whole once it does.
    if let Some(newest) = r.newest()
        && parts_between(newest, (msn, index)) == 1
        && !wait_for(r, (msn, index)).await
    {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the part did not come in time",
        );
    }
    object(r, r.part(msn, index))
}

fn object(r: &Rendition, body: Option<Arc<[Bytes]>>) -> Response<Body> {
    let Some(body) = body else {
        return error(StatusCode::NOT_FOUND, "not in the window");
    };
    let bytes: usize = body.iter().map(Bytes::len).sum();
    r.metrics.sent_bytes.inc_by(bytes as u64);
    let mut resp = Response::new(Body::Chunks(body, 0));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(r.content_type),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(CACHE_OBJECT),
    );
    cors(h);
    resp
}

/// A playlist; `zipped` is its gzip form, sent instead when the client takes gzip.
fn text(plain: Bytes, zipped: Option<Bytes>, cache: &'static str) -> Response<Body> {
    let gzipped = zipped.is_some();
    let mut resp = Response::new(Body::from(zipped.unwrap_or(plain)));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(PLAYLIST_TYPE),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if gzipped {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    cors(h);
    resp
}

fn error(status: StatusCode, why: &'static str) -> Response<Body> {
    let mut resp = Response::new(Body::from(why));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(CACHE_ERROR));
    cors(h);
    resp
}

/// Players on other origins must read `Age` to tune in through a cache (HLS2 Appendix C).
fn cors(h: &mut HeaderMap) {
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Age, Content-Length"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_the_master_playlists_segments_and_parts() {
        assert_eq!(target("/hls/master.m3u8"), Some(Target::Master));
        assert_eq!(
            target("/hls/radio.aac/live.m3u8"),
            Some(Target::Playlist("/radio.aac"))
        );
        assert_eq!(
            target("/hls/live/radio.mp3/459375001.mp3"),
            Some(Target::Segment("/live/radio.mp3", 459_375_001))
        );
        assert_eq!(
            target("/hls/radio.aac/459375001.3.aac"),
            Some(Target::Part("/radio.aac", 459_375_001, 3))
        );
        for bad in [
            "/hls/radio.aac/x.aac",
            "/hls/radio.aac/1.2.3.aac",
            "/hls/radio.aac/99999999999999999999.aac",
            "/hls//live.m3u8",
            "/hlsx/radio.aac/live.m3u8",
            "/hls/radio.aac/.aac",
        ] {
            assert_eq!(target(bad), None, "{bad}");
        }
    }

    #[test]
    fn directives_are_read_and_a_part_alone_is_refused() {
        assert_eq!(
            directives("_HLS_msn=12&_HLS_part=3&_HLS_skip=YES"),
            Ok(Directives {
                msn: Some(12),
                part: Some(3),
                skip: true
            })
        );
        assert_eq!(directives(""), Ok(Directives::default()));
        assert!(directives("_HLS_part=1").is_err());
        assert!(directives("_HLS_msn=-1").is_err());
        assert_eq!(directives("_HLS_skip=NO").map(|d| d.skip), Ok(false));
    }
}
