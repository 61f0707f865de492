//! The playlists: a mount's media playlist (Low-Latency HLS: parts, a preload hint, server
//! control, rendition reports, delta updates, a `PROGRAM-DATE-TIME` on every segment, titles as
//! `DATERANGE`s) and the station's multivariant playlist. Text only: the HTTP side decides when
//! to render (blocking reloads) and how to send it (gzip, cache lifetimes).
//!
//! The rules Apple's players enforce and no Debian tool checks are the tests below, a module
//! each.

use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use super::grid::{Grid, PART_TARGET, PARTS_PER_SEGMENT, TARGET_DURATION, segment_and_index};
use super::packager::Packager;
use crate::title::StreamTitle;

/// `PART-HOLD-BACK`: 3 part targets, what Apple requires.
pub const PART_HOLD_BACK: Duration = Duration::from_secs(3);
/// `CAN-SKIP-UNTIL`: 6 target durations, the least HLS2 §4.4.3.8 allows.
pub const SKIP_UNTIL: Duration = Duration::from_secs(6 * TARGET_DURATION);
/// Complete segments whose parts the playlist lists, besides the one being built: parts more
/// than three target durations from the end must go (HLS2 §4.4.4.9). Strict parsers count the
/// preload hint's segment among the three even before it has a part, so two it is: 7.7 s of
/// parts at least, past PART-HOLD-BACK.
const PARTS_LISTED_SEGMENTS: usize = 2;
/// `DATERANGE` class of the titles.
pub const TITLE_CLASS: &str = "net.onair.title";

/// Where another rendition is, for `EXT-X-RENDITION-REPORT`.
#[derive(Debug, Clone)]
pub struct Report {
    /// Relative to this playlist: `../radio.mp3/live.m3u8`.
    pub uri: String,
    pub last_msn: u64,
    pub last_part: u64,
}

/// A title change on the station's timeline (the same for every mount).
#[derive(Debug, Clone)]
pub struct TitleChange {
    pub sample: u64,
    pub title: Arc<StreamTitle>,
}

/// What a media playlist is rendered from.
pub struct Media<'a> {
    pub grid: Grid,
    pub packager: &'a Packager,
    /// Object file extension: `aac` or `mp3`.
    pub ext: &'static str,
    pub reports: &'a [Report],
    pub titles: &'a [TitleChange],
    /// `_HLS_skip=YES`: a delta update.
    pub skip: bool,
}

fn secs(samples: u64, rate: u32) -> f64 {
    samples as f64 / f64::from(rate)
}

/// A media playlist, or `None` before its first part.
pub fn media(m: &Media) -> Option<String> {
    let (last_msn, last_part) = m.packager.last_part()?;
    let segments = m.packager.segments();
    let rate = m.grid.rate;
    let mut out = String::with_capacity(4096 + segments.len() * 160);
    let first_msn = segments.front().map_or(last_msn, |s| s.msn);
    let _ = writeln!(out, "#EXTM3U");
    let _ = writeln!(out, "#EXT-X-VERSION:9");
    let _ = writeln!(out, "#EXT-X-TARGETDURATION:{TARGET_DURATION}");
    let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{first_msn}");
    let _ = writeln!(
        out,
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL={:.1},PART-HOLD-BACK={:.1}",
        SKIP_UNTIL.as_secs_f64(),
        PART_HOLD_BACK.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "#EXT-X-PART-INF:PART-TARGET={:.1}",
        PART_TARGET.as_secs_f64()
    );
    let _ = writeln!(out, "#EXT-X-INDEPENDENT-SEGMENTS");
    // A delta update leaves out the oldest segments while what stays lasts SKIP_UNTIL or more.
    let mut skipped = 0;
    if m.skip {
        let total: u64 = segments.iter().map(|s| s.samples).sum();
        let mut left = total;
        for s in segments {
            if secs(left - s.samples, rate) < SKIP_UNTIL.as_secs_f64() {
                break;
            }
            left -= s.samples;
            skipped += 1;
        }
        if skipped > 0 {
            let _ = writeln!(out, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}");
        }
    }
    let window_start = segments
        .front()
        .map(|s| s.start)
        .or_else(|| m.packager.building().first().map(|p| p.start))
        .unwrap_or(0);
    // Titles begun in the window, and the one in force where it starts.
    let in_force = m.titles.iter().rposition(|t| t.sample <= window_start);
    for t in &m.titles[in_force.unwrap_or(0)..] {
        let _ = writeln!(
            out,
            "#EXT-X-DATERANGE:ID=\"title-{}\",CLASS=\"{TITLE_CLASS}\",START-DATE=\"{}\",END-ON-NEXT=YES,X-TITLE=\"{}\"",
            t.sample,
            pdt(m.grid, t.sample),
            quoted(t.title.text())
        );
    }
    // The packager keeps parts downloadable longer than they are listed.
    let parts_from = segments.len().saturating_sub(PARTS_LISTED_SEGMENTS);
    for (i, s) in segments.iter().enumerate().skip(skipped) {
        let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", pdt(m.grid, s.start));
        for p in s.parts.iter().filter(|_| i >= parts_from) {
            part_line(&mut out, m, p.number, p.samples);
        }
        let _ = writeln!(out, "#EXTINF:{:.5},", secs(s.samples, rate));
        let _ = writeln!(out, "{}.{}", s.msn, m.ext);
    }
    let building = m.packager.building();
    if let Some(first) = building.first() {
        let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", pdt(m.grid, first.start));
    }
    for p in building {
        part_line(&mut out, m, p.number, p.samples);
    }
    let next = last_msn * PARTS_PER_SEGMENT + last_part + 1;
    let (msn, index) = segment_and_index(next);
    let _ = writeln!(
        out,
        "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{msn}.{index}.{}\"",
        m.ext
    );
    for r in m.reports {
        let _ = writeln!(
            out,
            "#EXT-X-RENDITION-REPORT:URI=\"{}\",LAST-MSN={},LAST-PART={}",
            r.uri, r.last_msn, r.last_part
        );
    }
    Some(out)
}

fn part_line(out: &mut String, m: &Media, number: u64, samples: u64) {
    let (msn, index) = segment_and_index(number);
    let _ = writeln!(
        out,
        "#EXT-X-PART:DURATION={:.5},URI=\"{msn}.{index}.{}\",INDEPENDENT=YES",
        secs(samples, m.grid.rate),
        m.ext
    );
}

/// `2026-12-03T07:40:00.123Z`
fn pdt(grid: Grid, sample: u64) -> String {
    let t = grid.time_of(sample);
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_millis());
    let base = crate::dates::iso8601_utc(t);
    format!("{}.{ms:03}Z", base.trim_end_matches('Z'))
}

/// Text for a quoted-string attribute, which may hold neither `"` nor a line break.
fn quoted(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' => '\'',
            '\r' | '\n' => ' ',
            c => c,
        })
        .collect()
}

/// One HLS mount as the multivariant playlist lists it.
#[derive(Debug, Clone)]
pub struct Variant {
    /// Relative to `/hls/master.m3u8`: `radio.aac/live.m3u8`.
    pub uri: String,
    /// `CODECS`: `mp4a.40.2`, `mp4a.40.5`, `mp4a.40.29`, `mp4a.40.34`.
    pub codecs: &'static str,
    /// Peak and average bits a second, container overhead included.
    pub bandwidth: u64,
    pub average_bandwidth: u64,
}

/// The multivariant playlist.
pub fn multivariant(variants: &[Variant]) -> String {
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    for v in variants {
        let _ = writeln!(
            out,
            "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={},CODECS=\"{}\"\n{}",
            v.bandwidth, v.average_bandwidth, v.codecs, v.uri
        );
    }
    out
}

#[cfg(test)]
mod tests {
    //! One module per rule of HLS2 (draft-pantos-hls-rfc8216bis) and Apple's authoring
    //! specification that a player enforces, checked on playlists of a packager fed real frame
    //! lengths.
    use super::*;
    use crate::ring::Frame;
    use bytes::Bytes;
    use std::collections::HashMap;
    use std::time::{SystemTime, UNIX_EPOCH};

    pub(super) const START: u64 = 1_764_000_000;

    /// A packager fed `seconds` of frames of `frame_samples` at `rate`, starting at `start`
    /// (Unix seconds), with a title change every 10 s; and the station's title list.
    pub(super) fn fed(
        rate: u32,
        frame_samples: u32,
        start: u64,
        seconds: u64,
    ) -> (Grid, Packager, Vec<TitleChange>) {
        let grid = Grid {
            rate,
            epoch: UNIX_EPOCH,
        };
        let origin = grid.sample_at(UNIX_EPOCH + Duration::from_secs(start));
        let mut p = Packager::new(grid, frame_samples, origin, Duration::from_secs(900));
        let mut titles = Vec::new();
        let frames = seconds * u64::from(rate) / u64::from(frame_samples);
        let per_title = 10 * u64::from(rate) / u64::from(frame_samples);
        let mut title = StreamTitle::new("Artist - Song 0");
        for k in 0..frames {
            if k % per_title == 0 {
                title = StreamTitle::new(&format!("Artist - \"Song\" {}", k / per_title));
                titles.push(TitleChange {
                    sample: origin + k * u64::from(frame_samples),
                    title: Arc::clone(&title),
                });
            }
            p.push(&[Frame::new(Bytes::from_static(&[0; 8]), &title)]);
        }
        (grid, p, titles)
    }

    pub(super) fn render(grid: Grid, p: &Packager, titles: &[TitleChange], skip: bool) -> String {
        let reports = [Report {
            uri: "../radio.mp3/live.m3u8".into(),
            last_msn: 7,
            last_part: 2,
        }];
        media(&Media {
            grid,
            packager: p,
            ext: "aac",
            reports: &reports,
            titles,
            skip,
        })
        .expect("a playlist")
    }

    /// The attribute list of the first line starting with `tag:`.
    pub(super) fn attrs(line: &str) -> HashMap<String, String> {
        let list = line.split_once(':').map_or("", |(_, a)| a);
        let mut out = HashMap::new();
        let mut rest = list;
        while !rest.is_empty() {
            let Some((name, after)) = rest.split_once('=') else {
                break;
            };
            let (value, next) = if let Some(q) = after.strip_prefix('"') {
                let end = q.find('"').expect("closing quote");
                (q[..end].to_string(), q[end + 1..].trim_start_matches(','))
            } else {
                let end = after.find(',').unwrap_or(after.len());
                (
                    after[..end].to_string(),
                    after[end..].trim_start_matches(','),
                )
            };
            out.insert(name.to_string(), value);
            rest = next;
        }
        out
    }

    pub(super) fn tag_lines<'a>(text: &'a str, tag: &str) -> Vec<&'a str> {
        text.lines()
            .filter(|l| l.starts_with(&format!("{tag}:")))
            .collect()
    }

    pub(super) fn value(text: &str, tag: &str) -> f64 {
        tag_lines(text, tag)[0]
            .split_once(':')
            .and_then(|(_, v)| v.trim_end_matches(',').parse().ok())
            .expect("a number")
    }

    /// Every MP3/AAC frame length at the common rates.
    pub(super) fn flavours() -> [(u32, u32); 5] {
        [
            (44100, 1024),
            (48000, 1024),
            (44100, 1152),
            (48000, 2048),
            (22050, 576),
        ]
    }

    mod part_duration_is_at_most_the_part_target {
        use super::*;

        #[test]
        fn every_part_of_every_flavour() {
            for (rate, frame) in flavours() {
                let (g, p, t) = fed(rate, frame, START, 60);
                let text = render(g, &p, &t, false);
                let target = attrs(tag_lines(&text, "#EXT-X-PART-INF")[0])["PART-TARGET"]
                    .parse::<f64>()
                    .unwrap();
                let parts = tag_lines(&text, "#EXT-X-PART");
                assert!(parts.len() >= 8, "{rate}/{frame}: {} parts", parts.len());
                // Parts more than three target durations from the end are no longer listed.
                let listed: f64 = parts
                    .iter()
                    .map(|l| attrs(l)["DURATION"].parse::<f64>().unwrap())
                    .sum();
                assert!(
                    listed <= 3.0 * TARGET_DURATION as f64,
                    "{rate}/{frame}: {listed} s"
                );
                for line in parts {
                    let d: f64 = attrs(line)["DURATION"].parse().unwrap();
                    assert!(d <= target, "{rate}/{frame}: {line}");
                    assert!(d >= 0.85 * target, "{rate}/{frame}: {line}");
                    assert_eq!(attrs(line)["INDEPENDENT"], "YES");
                }
            }
        }
    }

    mod segment_durations_round_to_at_most_the_target_duration {
        use super::*;

        #[test]
        fn every_segment_of_every_flavour() {
            for (rate, frame) in flavours() {
                let (g, p, t) = fed(rate, frame, START, 60);
                let text = render(g, &p, &t, false);
                let target = value(&text, "#EXT-X-TARGETDURATION");
                let extinf = tag_lines(&text, "#EXTINF");
                assert!(extinf.len() >= 14);
                for line in extinf {
                    let d = value(line, "#EXTINF");
                    assert!(d.round() <= target && d > 3.5, "{rate}/{frame}: {line}");
                }
            }
        }
    }

    mod part_hold_back_is_three_part_targets {
        use super::*;

        #[test]
        fn server_control() {
            let (g, p, t) = fed(44100, 1024, START, 20);
            let text = render(g, &p, &t, false);
            let control = attrs(tag_lines(&text, "#EXT-X-SERVER-CONTROL")[0]);
            let target: f64 = attrs(tag_lines(&text, "#EXT-X-PART-INF")[0])["PART-TARGET"]
                .parse()
                .unwrap();
            let hold: f64 = control["PART-HOLD-BACK"].parse().unwrap();
            assert!(hold >= 3.0 * target);
            assert_eq!(control["CAN-BLOCK-RELOAD"], "YES");
            let skip: f64 = control["CAN-SKIP-UNTIL"].parse().unwrap();
            assert!(skip >= 6.0 * value(&text, "#EXT-X-TARGETDURATION"));
        }
    }

    mod one_preload_hint_for_the_next_part {
        use super::*;

        #[test]
        fn names_the_part_after_the_last() {
            let (g, p, t) = fed(48000, 1024, START, 30);
            let text = render(g, &p, &t, false);
            let hints = tag_lines(&text, "#EXT-X-PRELOAD-HINT");
            assert_eq!(hints.len(), 1);
            assert_eq!(attrs(hints[0])["TYPE"], "PART");
            let last = attrs(tag_lines(&text, "#EXT-X-PART").last().unwrap())["URI"].clone();
            let (msn, index) = last.trim_end_matches(".aac").split_once('.').unwrap();
            let (msn, index): (u64, u64) = (msn.parse().unwrap(), index.parse().unwrap());
            let expected = if index == 3 {
                format!("{}.0.aac", msn + 1)
            } else {
                format!("{msn}.{}.aac", index + 1)
            };
            assert_eq!(attrs(hints[0])["URI"], expected);
            assert!(
                text.lines()
                    .last()
                    .unwrap()
                    .starts_with("#EXT-X-RENDITION-REPORT")
            );
        }
    }

    mod program_date_time_on_every_segment {
        use super::*;

        fn parse_pdt(v: &str) -> SystemTime {
            // 2026-12-03T07:40:00.123Z → seconds since the epoch, by the dates module's inverse.
            let (date, time) = v.split_once('T').unwrap();
            let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
            let t: Vec<f64> = time
                .trim_end_matches('Z')
                .split(':')
                .map(|x| x.parse().unwrap())
                .collect();
            let (y, m) = if d[1] <= 2 {
                (d[0] - 1, d[1] + 9)
            } else {
                (d[0], d[1] - 3)
            };
            let era = y.div_euclid(400);
            let yoe = y - era * 400;
            let doy = (153 * m + 2) / 5 + d[2] - 1;
            let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
            let days = era * 146_097 + doe - 719_468;
            let secs = days as f64 * 86_400.0 + t[0] * 3600.0 + t[1] * 60.0 + t[2];
            UNIX_EPOCH + Duration::from_secs_f64(secs)
        }

        #[test]
        fn each_segment_starts_where_the_previous_ended() {
            let (g, p, t) = fed(44100, 1152, START, 60);
            let text = render(g, &p, &t, false);
            let lines: Vec<&str> = text.lines().collect();
            let mut expected: Option<SystemTime> = None;
            let mut segments = 0;
            for (i, line) in lines.iter().enumerate() {
                if let Some(v) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
                    let at = parse_pdt(v);
                    if let Some(e) = expected {
                        let off = at.duration_since(e).unwrap_or_else(|e| e.duration());
                        assert!(off <= Duration::from_millis(1), "line {i}: {v}");
                    }
                    let next_extinf = lines[i..].iter().find(|l| l.starts_with("#EXTINF"));
                    expected =
                        next_extinf.map(|l| at + Duration::from_secs_f64(value(l, "#EXTINF")));
                } else if line.starts_with("#EXTINF") {
                    segments += 1;
                    let before = lines[..i]
                        .iter()
                        .rev()
                        .find(|l| l.starts_with("#EXT-X-PROGRAM-DATE-TIME") || l.ends_with(".aac"));
                    assert!(
                        before.is_some_and(|l| l.starts_with("#EXT-X-PROGRAM-DATE-TIME")),
                        "segment at line {i} has no PDT"
                    );
                }
            }
            assert!(segments >= 14);
            // The first segment's PDT is its first sample's wall-clock time.
            let first = tag_lines(&text, "#EXT-X-PROGRAM-DATE-TIME")[0];
            let at = parse_pdt(first.split_once(':').unwrap().1);
            let start = UNIX_EPOCH + Duration::from_secs(START);
            assert!(at > start && at < start + Duration::from_secs(6), "{first}");
        }
    }

    mod numbering_is_monotonic_across_a_restart {
        use super::*;

        #[test]
        fn the_replacement_continues_the_media_sequence() {
            let (g, old, t) = fed(44100, 1024, START, 40);
            let old_text = render(g, &old, &t, false);
            let old_last = old.last_part().unwrap();
            // The replacement starts the moment the old one stopped (40 s later).
            let (g, new, t) = fed(44100, 1024, START + 40, 20);
            let new_text = render(g, &new, &t, false);
            let (old_seq, new_seq) = (
                value(&old_text, "#EXT-X-MEDIA-SEQUENCE"),
                value(&new_text, "#EXT-X-MEDIA-SEQUENCE"),
            );
            assert!(new_seq > old_seq);
            assert!(
                new.segments()[0].msn > old_last.0,
                "no segment name is reused"
            );
            let old_uris: Vec<String> = tag_lines(&old_text, "#EXT-X-PART")
                .iter()
                .map(|l| attrs(l)["URI"].clone())
                .collect();
            for l in tag_lines(&new_text, "#EXT-X-PART") {
                assert!(!old_uris.contains(&attrs(l)["URI"]), "{l} reused");
            }
        }
    }

    mod delta_updates_skip_only_what_the_skip_boundary_allows {
        use super::*;

        #[test]
        fn skipped_plus_listed_is_the_whole_window() {
            let (g, p, t) = fed(44100, 1024, START, 120);
            let full = render(g, &p, &t, false);
            let delta = render(g, &p, &t, true);
            let skipped: usize = attrs(tag_lines(&delta, "#EXT-X-SKIP")[0])["SKIPPED-SEGMENTS"]
                .parse()
                .unwrap();
            let (all, listed) = (
                tag_lines(&full, "#EXTINF").len(),
                tag_lines(&delta, "#EXTINF").len(),
            );
            assert!(skipped > 0);
            assert_eq!(skipped + listed, all);
            let kept: f64 = tag_lines(&delta, "#EXTINF")
                .iter()
                .map(|l| value(l, "#EXTINF"))
                .sum();
            assert!(kept >= SKIP_UNTIL.as_secs_f64());
            assert_eq!(
                value(&full, "#EXT-X-MEDIA-SEQUENCE"),
                value(&delta, "#EXT-X-MEDIA-SEQUENCE")
            );
            assert!(tag_lines(&full, "#EXT-X-SKIP").is_empty());
        }
    }

    mod titles_are_date_ranges_with_unique_ids {
        use super::*;

        #[test]
        fn one_per_title_in_the_window() {
            let (g, p, t) = fed(44100, 1024, START, 60);
            let text = render(g, &p, &t, false);
            let ranges = tag_lines(&text, "#EXT-X-DATERANGE");
            // 60 s with a title every 10 s (the 7th 0.1 s before the end): the window starts
            // past the first, which is in force there and listed too.
            assert_eq!(ranges.len(), 7, "{ranges:?}");
            assert!(ranges[0].contains("Song' 0\""), "{}", ranges[0]);
            let mut ids = std::collections::HashSet::new();
            for r in &ranges {
                let a = attrs(r);
                assert!(ids.insert(a["ID"].clone()));
                assert_eq!(a["CLASS"], TITLE_CLASS);
                assert_eq!(a["END-ON-NEXT"], "YES");
                assert!(a["X-TITLE"].starts_with("Artist - 'Song' "), "{r}");
            }
        }
    }

    mod the_multivariant_playlist_lists_codecs_and_bandwidths {
        use super::*;

        #[test]
        fn each_variant() {
            let text = multivariant(&[Variant {
                uri: "radio.aac/live.m3u8".into(),
                codecs: "mp4a.40.5",
                bandwidth: 52_000,
                average_bandwidth: 50_000,
            }]);
            let inf = attrs(tag_lines(&text, "#EXT-X-STREAM-INF")[0]);
            assert_eq!(inf["CODECS"], "mp4a.40.5");
            assert_eq!(inf["BANDWIDTH"], "52000");
            assert_eq!(inf["AVERAGE-BANDWIDTH"], "50000");
            assert_eq!(text.lines().last(), Some("radio.aac/live.m3u8"));
        }
    }
}
