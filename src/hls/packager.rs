//! One HLS mount's packed-audio objects: the mount's frames, as its encoder makes them, cut into
//! parts on the [`Grid`], a segment closed every [`PARTS_PER_SEGMENT`] parts, and a window of
//! recent segments kept. A part or segment body is its ID3 tag followed by the very `Bytes` the
//! ring holds: no audio is copied, and a request clones one `Arc`.
//!
//! A part is complete, and published, when the first frame of the next part arrives. Only the
//! newest segments keep their parts (HLS2 §6.2.2 lists them for 3 target durations and keeps them
//! downloadable 3 more); older segments keep only their own body.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use super::grid::{Grid, PARTS_PER_SEGMENT, TARGET_DURATION, segment_and_index};
use super::id3;
use crate::ring::Frame;
use crate::title::StreamTitle;

/// Segments that keep their parts: the segment being built's 3 predecessors and 3 more.
const SEGMENTS_WITH_PARTS: usize = 6;

/// A complete part.
#[derive(Debug, Clone)]
pub struct Part {
    /// Its number on the grid; [`segment_and_index`] gives its name.
    pub number: u64,
    /// Timeline sample of its first frame.
    pub start: u64,
    pub samples: u64,
    /// ID3 tag, then whole frames.
    pub body: Arc<[Bytes]>,
    /// The title in force at its first frame.
    pub title: Arc<StreamTitle>,
    /// The newest title that begins in this part.
    pub new_title: Option<Arc<StreamTitle>>,
}

/// A complete segment.
#[derive(Debug, Clone)]
pub struct Segment {
    /// Media sequence number.
    pub msn: u64,
    pub start: u64,
    pub samples: u64,
    pub body: Arc<[Bytes]>,
    /// Its parts while it is among the newest segments; empty after.
    pub parts: Vec<Part>,
}

/// The part being filled.
struct Filling {
    number: u64,
    start: u64,
    frames: Vec<Bytes>,
    /// The title of its first frame, and the newest title begun in it.
    first_title: Arc<StreamTitle>,
    new_title: Option<Arc<StreamTitle>>,
}

/// Cuts one mount's frames into parts and segments.
pub struct Packager {
    grid: Grid,
    frame_samples: u64,
    /// Timeline sample of the next frame's first sample.
    next_sample: u64,
    /// No part before this one is published: the timeline starts on a segment.
    first_part: u64,
    filling: Option<Filling>,
    /// Complete parts of the segment being built.
    building: Vec<Part>,
    segments: VecDeque<Segment>,
    /// Segments kept: the playlist window and a target duration more, so a segment that just
    /// left the playlist can still be fetched by a client that read the previous one.
    keep: usize,
    last_title: Option<Arc<StreamTitle>>,
}

impl Packager {
    /// A packager whose first frame starts at timeline sample `origin`, keeping `window` of
    /// segments (at least 6, Apple's minimum).
    pub fn new(grid: Grid, frame_samples: u32, origin: u64, window: std::time::Duration) -> Self {
        let segments = (window.as_secs() / TARGET_DURATION).max(6) as usize;
        Packager {
            grid,
            frame_samples: u64::from(frame_samples),
            next_sample: origin,
            first_part: grid.first_part(origin),
            filling: None,
            building: Vec::new(),
            segments: VecDeque::with_capacity(segments + 2),
            keep: segments + 1,
            last_title: None,
        }
    }

    /// Takes the next frames of the mount; true when a part was completed.
    pub fn push(&mut self, frames: &[Frame]) -> bool {
        let mut published = false;
        for frame in frames {
            let start = self.next_sample;
            self.next_sample += self.frame_samples;
            let begins = !self
                .last_title
                .as_ref()
                .is_some_and(|t| t.same_as(&frame.title));
            if begins {
                self.last_title = Some(Arc::clone(&frame.title));
            }
            let number = self.grid.part_of(start);
            if number < self.first_part {
                continue;
            }
            if self.filling.as_ref().is_some_and(|f| f.number != number) {
                published |= self.complete();
            }
            let filling = self.filling.get_or_insert_with(|| Filling {
                number,
                start,
                frames: Vec::with_capacity(48),
                first_title: Arc::clone(&frame.title),
                new_title: None,
            });
            if begins {
                filling.new_title = Some(Arc::clone(&frame.title));
            }
            filling.frames.push(frame.data.clone());
        }
        published
    }

    /// Publishes the part being filled, and closes its segment after its last part.
    fn complete(&mut self) -> bool {
        let Some(f) = self.filling.take() else {
            return false;
        };
        let (_, index) = segment_and_index(f.number);
        // A segment's first part repeats the title in force, for players that join there.
        let announced = f
            .new_title
            .clone()
            .or_else(|| (index == 0).then(|| Arc::clone(&f.first_title)));
        let samples = f.frames.len() as u64 * self.frame_samples;
        let tag = id3::tag(self.grid.pts(f.start), announced.as_deref());
        let body: Arc<[Bytes]> = std::iter::once(tag).chain(f.frames).collect();
        self.building.push(Part {
            number: f.number,
            start: f.start,
            samples,
            body,
            title: f.first_title,
            new_title: f.new_title,
        });
        if index + 1 == PARTS_PER_SEGMENT {
            self.close_segment();
        }
        true
    }

    fn close_segment(&mut self) {
        let parts = std::mem::take(&mut self.building);
        let Some(first) = parts.first() else {
            return;
        };
        let (msn, _) = segment_and_index(first.number);
        let start = first.start;
        let title = parts
            .iter()
            .rev()
            .find_map(|p| p.new_title.as_ref())
            .unwrap_or(&first.title);
        let tag = id3::tag(self.grid.pts(start), Some(title));
        let body: Arc<[Bytes]> = std::iter::once(tag)
            .chain(parts.iter().flat_map(|p| p.body[1..].iter().cloned()))
            .collect();
        let segment = Segment {
            msn,
            start,
            samples: parts.iter().map(|p| p.samples).sum(),
            body,
            parts,
        };
        self.segments.push_back(segment);
        while self.segments.len() > self.keep {
            self.segments.pop_front();
        }
        for old in self.segments.iter_mut().rev().skip(SEGMENTS_WITH_PARTS) {
            if old.parts.is_empty() {
                break;
            }
            old.parts = Vec::new();
        }
    }

    /// Complete segments, oldest first.
    pub fn segments(&self) -> &VecDeque<Segment> {
        &self.segments
    }

    /// Complete parts of the segment being built.
    pub fn building(&self) -> &[Part] {
        &self.building
    }

    /// The newest complete part's (msn, index).
    pub fn last_part(&self) -> Option<(u64, u64)> {
        self.building
            .last()
            .or_else(|| self.segments.back().and_then(|s| s.parts.last()))
            .map(|p| segment_and_index(p.number))
    }

    /// The complete segment numbered `msn`, while it is kept.
    fn kept(&self, msn: u64) -> Option<&Segment> {
        let first = self.segments.front()?.msn;
        let i = usize::try_from(msn.checked_sub(first)?).ok()?;
        self.segments.get(i)
    }

    /// A segment's body, while it is kept.
    pub fn segment(&self, msn: u64) -> Option<&Arc<[Bytes]>> {
        self.kept(msn).map(|s| &s.body)
    }

    /// A part's body, while its segment keeps it.
    pub fn part(&self, msn: u64, index: u64) -> Option<&Arc<[Bytes]>> {
        if index >= PARTS_PER_SEGMENT {
            return None;
        }
        let number = msn.checked_mul(PARTS_PER_SEGMENT)?.checked_add(index)?;
        let is_it = |p: &&Part| p.number == number;
        self.building
            .iter()
            .find(is_it)
            .or_else(|| self.kept(msn)?.parts.iter().find(is_it))
            .map(|p| &p.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    const RATE: u32 = 44100;
    const AAC: u32 = 1024;

    fn grid() -> Grid {
        Grid {
            rate: RATE,
            epoch: UNIX_EPOCH,
        }
    }

    /// `n` frames numbered from `from` (each body is its number, 8 bytes), with `title`.
    fn frames(from: u64, n: u64, title: &Arc<StreamTitle>) -> Vec<Frame> {
        (from..from + n)
            .map(|k| Frame::new(Bytes::copy_from_slice(&k.to_be_bytes()), title))
            .collect()
    }

    fn frame_numbers(body: &[Bytes]) -> Vec<u64> {
        body[1..]
            .iter()
            .map(|b| u64::from_be_bytes(b[..8].try_into().unwrap()))
            .collect()
    }

    fn packager(window: Duration) -> (Packager, u64) {
        let origin = grid().sample_at(UNIX_EPOCH + Duration::from_secs(1_764_000_000));
        (Packager::new(grid(), AAC, origin, window), origin)
    }

    #[test]
    fn frames_become_parts_and_segments_of_the_same_bytes() {
        let (mut p, origin) = packager(Duration::from_secs(60));
        let t = StreamTitle::new("Artist - Song");
        // 20 s in blocks of 4 or 5 frames, as the pipeline's 100 ms blocks give them.
        let total = u64::from(RATE) * 20 / u64::from(AAC);
        let mut published = 0;
        for from in (0..total).step_by(4) {
            published += usize::from(p.push(&frames(from, 4, &t)));
        }
        let segments = p.segments();
        assert!(segments.len() >= 3, "{} segments", segments.len());
        assert!(published >= segments.len() * 4);
        let first = &segments[0];
        assert_eq!(first.msn * PARTS_PER_SEGMENT, p.first_part);
        for s in segments {
            assert_eq!(s.parts.len(), 4);
            let from_parts: Vec<u64> = s
                .parts
                .iter()
                .flat_map(|p| frame_numbers(&p.body))
                .collect();
            assert_eq!(
                frame_numbers(&s.body),
                from_parts,
                "a segment is its parts' frames"
            );
            assert_eq!(s.samples, from_parts.len() as u64 * u64::from(AAC));
            for part in &s.parts {
                let k = frame_numbers(&part.body)[0];
                assert_eq!(part.start, origin + k * u64::from(AAC));
                assert_eq!(grid().part_of(part.start), part.number);
                // The PRIV payload's last 8 bytes: header 10, frame header 10, owner 45.
                let pts = grid().pts(part.start).to_be_bytes();
                assert_eq!(
                    part.body[0][65..73],
                    pts,
                    "the tag carries the part's own PTS"
                );
                assert!(p.part(s.msn, part.number % 4).is_some());
            }
        }
        let numbers: Vec<u64> = segments.iter().map(|s| s.msn).collect();
        assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1));
        assert_eq!(
            p.segment(first.msn).map(|b| b.len()),
            Some(first.body.len())
        );
        assert!(p.segment(first.msn - 1).is_none() && p.part(first.msn, 4).is_none());
        let (msn, index) = p.last_part().unwrap();
        assert!(msn >= segments.back().unwrap().msn);
        assert!(p.part(msn, index).is_some() && p.part(msn, index + 1).is_none());
    }

    #[test]
    fn a_title_is_announced_in_the_part_it_begins_in_and_at_every_segment() {
        let (mut p, _) = packager(Duration::from_secs(60));
        let a = StreamTitle::new("Artist - First");
        let b = StreamTitle::new("Artist - Second");
        p.push(&frames(0, 400, &a));
        p.push(&frames(400, 400, &b));
        let parts: Vec<&Part> = p.segments().iter().flat_map(|s| &s.parts).collect();
        let began: Vec<&str> = parts
            .iter()
            .filter_map(|p| p.new_title.as_ref().map(|t| t.text()))
            .collect();
        // The first title began before the timeline's first segment, which announces it.
        assert_eq!(began, ["Artist - Second"]);
        let changed = parts
            .iter()
            .position(|p| p.new_title.is_some())
            .expect("a part where the second title begins");
        assert_eq!(parts[changed].title.text(), "Artist - First");
        let has_title =
            |body: &[Bytes], text: &[u8]| body[0].windows(text.len()).any(|w| w == text);
        assert!(has_title(&parts[changed].body, b"Second"));
        for s in p.segments() {
            assert!(
                has_title(&s.body, b"TIT2"),
                "every segment replays the title"
            );
            assert!(has_title(&s.parts[0].body, b"TIT2"));
        }
        let quiet = parts
            .iter()
            .filter(|p| p.number % 4 != 0 && p.new_title.is_none());
        assert!(quiet.clone().count() > 5);
        assert!(
            quiet.clone().all(|p| !has_title(&p.body, b"TIT2")),
            "no cue every second"
        );
    }

    #[test]
    fn the_window_is_bounded_and_only_the_newest_segments_keep_parts() {
        let (mut p, _) = packager(Duration::from_secs(24));
        let t = StreamTitle::new("x");
        let total = u64::from(RATE) * 120 / u64::from(AAC);
        p.push(&frames(0, total, &t));
        let segments = p.segments();
        assert_eq!(segments.len(), 24 / 4 + 1);
        let with_parts = segments.iter().filter(|s| !s.parts.is_empty()).count();
        assert_eq!(with_parts, SEGMENTS_WITH_PARTS);
        assert!(
            segments
                .iter()
                .rev()
                .take(SEGMENTS_WITH_PARTS)
                .all(|s| s.parts.len() == 4)
        );
        let oldest = segments[0].msn;
        assert!(p.part(oldest, 0).is_none() && p.segment(oldest).is_some());
    }
}
