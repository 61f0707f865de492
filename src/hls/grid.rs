//! The HLS timeline: where parts and segments begin, what they are numbered and what timestamp
//! they carry, all from one count of samples since a per-station epoch.
//!
//! Parts start every [`PART`] (0.96 s) of station time and a segment is [`PARTS_PER_SEGMENT`]
//! parts. A frame belongs to the part its first sample falls in, so a part holds whole frames and
//! lasts a frame more or less than 0.96 s: under the 1 s `PART-TARGET` (a true maximum, as Apple
//! players require) and over 85 % of it, for every frame length [`fits`] accepts. Because the
//! grid is in time, not in frames, an MP3 and an AAC mount of the same station get the same part
//! and segment numbers for the same audio, and a restarted or replacement process, counting
//! from the same epoch, carries the numbering on instead of reusing names a cache still holds.

use std::time::{Duration, SystemTime};

/// One part of the grid: 24/25 s.
pub const PART: Duration = Duration::from_millis(960);
/// `PART-TARGET`: no part lasts longer.
pub const PART_TARGET: Duration = Duration::from_secs(1);
pub const PARTS_PER_SEGMENT: u64 = 4;
/// `EXT-X-TARGETDURATION`, seconds: a segment (3.84 s, a frame more or less) rounds to it.
pub const TARGET_DURATION: u64 = 4;
/// `PART` as a fraction of a second.
const PART_NUM: u128 = 24;
const PART_DEN: u128 = 25;
/// MPEG timestamps (the ID3 `PRIV` of packed audio) tick at 90 kHz and wrap at 33 bits.
const PTS_HZ: u128 = 90_000;
const PTS_WRAP: u128 = 1 << 33;
/// A new timeline starts at a segment boundary at least this far after its first sample: the
/// process it replaces ran up to its 200 ms lead ahead of the wall clock, and its last parts'
/// names must not be reused.
const RESTART_MARGIN_MS: u128 = 1_000;

/// The grid of one station at one sample rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    pub rate: u32,
    /// Sample 0 of the timeline.
    pub epoch: SystemTime,
}

impl Grid {
    /// Samples from the epoch to `t` (0 before it).
    pub fn sample_at(&self, t: SystemTime) -> u64 {
        let d = t.duration_since(self.epoch).unwrap_or_default();
        (d.as_nanos() * u128::from(self.rate) / 1_000_000_000) as u64
    }

    /// The wall-clock time of `sample` (`EXT-X-PROGRAM-DATE-TIME`).
    pub fn time_of(&self, sample: u64) -> SystemTime {
        let nanos = u128::from(sample) * 1_000_000_000 / u128::from(self.rate);
        self.epoch + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// The part `sample` falls in, counted from the epoch.
    pub fn part_of(&self, sample: u64) -> u64 {
        (u128::from(sample) * PART_DEN / (u128::from(self.rate) * PART_NUM)) as u64
    }

    /// The first sample of `part`.
    pub fn part_start(&self, part: u64) -> u64 {
        (u128::from(part) * u128::from(self.rate) * PART_NUM).div_ceil(PART_DEN) as u64
    }

    /// The 90 kHz, 33-bit timestamp of `sample`.
    pub fn pts(&self, sample: u64) -> u64 {
        (u128::from(sample) * PTS_HZ / u128::from(self.rate) % PTS_WRAP) as u64
    }

    /// The first part (a segment's first) a timeline whose first sample is `origin` publishes.
    pub fn first_part(&self, origin: u64) -> u64 {
        let margin = (RESTART_MARGIN_MS * u128::from(self.rate) / 1000) as u64;
        let part = self.part_of(origin + margin) + 1;
        part.div_ceil(PARTS_PER_SEGMENT) * PARTS_PER_SEGMENT
    }
}

/// Media sequence number and part index of a grid part.
pub fn segment_and_index(part: u64) -> (u64, u64) {
    (part / PARTS_PER_SEGMENT, part % PARTS_PER_SEGMENT)
}

/// Whether frames of `frame_samples` at `rate` make parts inside [85 %, 100 %] of `PART_TARGET`:
/// frames over 40 ms (AAC-LC at 8 kHz, say) cannot.
pub fn fits(frame_samples: u32, rate: u32) -> bool {
    let frame = f64::from(frame_samples) / f64::from(rate);
    let part = PART.as_secs_f64();
    let target = PART_TARGET.as_secs_f64();
    (part / frame).ceil() * frame <= target && (part / frame).floor() * frame >= 0.85 * target
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn grid(rate: u32) -> Grid {
        Grid {
            rate,
            epoch: UNIX_EPOCH,
        }
    }

    /// Cuts `frames` frames of `frame_samples`, starting at `origin`, into grid parts; returns
    /// (part number, frames in it) for every complete part.
    fn cut(g: Grid, origin: u64, frame_samples: u32, frames: u64) -> Vec<(u64, u64)> {
        let first = g.first_part(origin);
        let mut parts: Vec<(u64, u64)> = Vec::new();
        for k in 0..frames {
            let part = g.part_of(origin + k * u64::from(frame_samples));
            if part < first {
                continue;
            }
            match parts.last_mut() {
                Some((p, n)) if *p == part => *n += 1,
                _ => parts.push((part, 1)),
            }
        }
        parts.pop(); // the last may be incomplete
        parts
    }

    /// The frame lengths of every MP3 and AAC mount the config accepts with HLS.
    fn mounts() -> Vec<(u32, u32)> {
        let mut m = Vec::new();
        for rate in [16000, 22050, 24000] {
            m.push((576, rate));
            m.push((1024, rate));
        }
        for rate in [32000, 44100, 48000] {
            m.extend([(1152, rate), (1024, rate), (2048, rate)]);
        }
        m
    }

    #[test]
    fn every_part_is_within_85_and_100_percent_of_the_part_target() {
        for (frame_samples, rate) in mounts() {
            assert!(fits(frame_samples, rate), "{frame_samples} at {rate}");
            let g = grid(rate);
            let origin = g.sample_at(UNIX_EPOCH + Duration::from_secs(1_764_000_000));
            let parts = cut(
                g,
                origin,
                frame_samples,
                u64::from(rate * 60 / frame_samples),
            );
            assert!(
                parts.len() > 50,
                "{frame_samples} at {rate}: {}",
                parts.len()
            );
            for (part, n) in &parts {
                let secs = (n * u64::from(frame_samples)) as f64 / f64::from(rate);
                assert!(
                    (0.85..=1.0).contains(&secs),
                    "{frame_samples} at {rate}: part {part} lasts {secs} s"
                );
            }
            assert_eq!(parts[0].0 % PARTS_PER_SEGMENT, 0, "starts on a segment");
            assert!(parts.windows(2).all(|w| w[1].0 == w[0].0 + 1), "no gaps");
        }
        assert!(!fits(1024, 8000), "128 ms frames make 1.024 s parts");
    }

    #[test]
    fn mounts_of_one_station_share_numbers_and_timestamps_for_the_same_audio() {
        let g = grid(44100);
        let t = UNIX_EPOCH + Duration::from_secs(1_764_000_000);
        let origin = g.sample_at(t);
        // A minute of each, and a frame more of AAC so that both end in the same part.
        let aac = cut(g, origin, 1024, 44100 * 60 / 1024 + 1);
        let mp3 = cut(g, origin, 1152, 44100 * 60 / 1152);
        assert_eq!(aac[0].0, mp3[0].0);
        assert_eq!(aac.last().map(|p| p.0), mp3.last().map(|p| p.0));
        // A part's first frame starts within one frame of the part's grid time in both.
        let part = aac[10].0;
        let start = g.part_start(part);
        assert!(g.part_of(start) == part && g.part_of(start - 1) == part - 1);
    }

    #[test]
    fn a_restarted_timeline_carries_the_numbering_on_and_reuses_no_name() {
        let g = grid(48000);
        let started = UNIX_EPOCH + Duration::from_secs(1_764_000_000);
        let died = started + Duration::from_secs(10);
        // The old process's audio ran its 200 ms lead ahead of the wall clock: the part that
        // sample falls in may have been announced (a preload hint) or even published.
        let old_newest = g.part_of(g.sample_at(died + Duration::from_millis(200)));
        assert!(old_newest > g.first_part(g.sample_at(started)));
        // The replacement starts the instant the old one died.
        let restarted = g.first_part(g.sample_at(died));
        assert!(restarted > old_newest, "{restarted} after {old_newest}");
        assert_eq!(restarted % PARTS_PER_SEGMENT, 0);
        assert!(segment_and_index(restarted).0 > segment_and_index(old_newest).0);
    }

    #[test]
    fn timestamps_are_90_khz_and_wrap_at_33_bits() {
        let g = grid(48000);
        assert_eq!(g.pts(48000), 90_000);
        // 2^33 ticks of 90 kHz = 95443.7176888 s.
        let wrap = (PTS_WRAP * 48000 / PTS_HZ) as u64;
        assert!(g.pts(wrap - 1) > (1 << 33) - 3);
        assert!(g.pts(wrap + 48000) < 90_001);
        let t = UNIX_EPOCH + Duration::from_millis(1_764_000_000_123);
        let s = g.sample_at(t);
        let back = g.time_of(s);
        assert!(t.duration_since(back).unwrap_or_default() < Duration::from_micros(21));
    }
}
