//! A deck: one track being played, decoded and converted to the station format as the mixer
//! pulls it, with its gain, and the plan's part that concerns it: where it stops, how it fades
//! out, how it comes in (a de-click ramp when it starts mid-signal). Positions are counted in
//! station frames from the start of the track's file, so plans (made in track time) apply
//! exactly. Everything here runs foreign decoder code on bytes from outside: the mixer calls it
//! under `catch_unwind`.

use std::sync::Arc;
use std::time::Duration;

use crate::analysis::Cues;
use crate::audio::decode::{DecodeError, TrackDecoder};
use crate::audio::resample::{Reformatter, ResampleError};
use crate::catalog::TrackRef;
use crate::config::Curve;
use crate::metrics::Metrics;
use crate::scheduler::LoadedTrack;
use crate::title::StreamTitle;

use super::planner::{self, Fade, curve_out};

/// One track on a deck.
pub struct Deck {
    pub track: TrackRef,
    /// What it was opened from, to open again (a track a live show interrupted).
    pub source: LoadedTrack,
    pub title: Arc<StreamTitle>,
    /// Where its music is (its analysis, or the whole file).
    pub cues: Cues,
    /// Where the deck started in the track (its cue-in, or a resume point).
    pub started_at: Duration,
    pub gain_db: f64,
    decoder: TrackDecoder,
    converter: Reformatter,
    rate: u32,
    channels: usize,
    gain: f32,
    decoded: Vec<f32>,
    ready: Vec<f32>,
    ready_pos: usize,
    /// The decoder has given everything.
    drained: bool,
    /// Station frames since the start of the track's file.
    position: u64,
    /// Frames (of the track) where it stops.
    stop_at: Option<u64>,
    fade: Option<(u64, u64, Curve)>,
    /// Frames of de-click ramp still to apply, and its length.
    declick: (u64, u64),
    /// Frames of the ramp down that ends at `stop_at`: a track stopped while it sounds (a hard
    /// ending, a cue-out) would otherwise end on a step, which is a click.
    stop_declick: u64,
}

impl Deck {
    /// Opens `track` at `start` (seeking when past the beginning), to play at `gain_db`.
    pub fn open(
        track: &LoadedTrack,
        cues: Cues,
        start: Duration,
        gain_db: f64,
        declick: Duration,
        rate: u32,
        channels: usize,
    ) -> Result<Deck, DecodeError> {
        let (mut decoder, _) = TrackDecoder::open(&track.data)?;
        let started_at = if start.is_zero() {
            Duration::ZERO
        } else {
            match decoder.seek(start) {
                Ok(()) => start,
                Err(e) => {
                    tracing::warn!(track = %track.track.key, error = %e, "cannot start mid-track; playing it from the start");
                    // The failed seek may have moved the reader: start over cleanly.
                    decoder = TrackDecoder::open(&track.data)?.0;
                    Duration::ZERO
                }
            }
        };
        let frames = |d: Duration| (d.as_secs_f64() * f64::from(rate)) as u64;
        let declick = if started_at.is_zero() {
            0
        } else {
            frames(declick)
        };
        Ok(Deck {
            track: track.track.clone(),
            source: track.clone(),
            title: StreamTitle::new(&track.display),
            cues,
            started_at,
            gain_db,
            decoder,
            converter: Reformatter::new(rate, channels),
            rate,
            channels,
            gain: 10f32.powf(gain_db as f32 / 20.0),
            decoded: Vec::new(),
            ready: Vec::new(),
            ready_pos: 0,
            drained: false,
            position: frames(started_at),
            stop_at: None,
            fade: None,
            declick: (declick, declick),
            stop_declick: frames(planner::DECLICK).max(1),
        })
    }

    /// Ramps its start up over `length` (a track coming back after a live show).
    pub fn fade_in(&mut self, length: Duration) {
        let n = self.frames(length).max(1);
        self.declick = (n, n);
    }

    /// Where in the track the deck is.
    pub fn position(&self) -> Duration {
        Duration::from_secs_f64(self.position as f64 / f64::from(self.rate))
    }

    fn frames(&self, d: Duration) -> u64 {
        (d.as_secs_f64() * f64::from(self.rate)) as u64
    }

    /// From now on it stops at `at` (track time), fading as `fade` says.
    pub fn set_end(&mut self, at: Duration, fade: Option<Fade>) {
        self.stop_at = Some(self.frames(at));
        self.fade = fade.map(|f| (self.frames(f.start), self.frames(f.length).max(1), f.curve));
    }

    /// Frames until `at` (track time): how long until it gets there.
    pub fn frames_until(&self, at: Duration) -> u64 {
        self.frames(at).saturating_sub(self.position)
    }

    /// Whether it has nothing more to play.
    pub fn done(&self) -> bool {
        let stopped = self.stop_at.is_some_and(|s| self.position >= s);
        stopped || (self.drained && self.ready_pos >= self.ready.len())
    }

    /// Adds its next frames into `dst` (interleaved, station format), at most as many as fit;
    /// the frames it added (fewer once it is done).
    pub fn mix_into(&mut self, dst: &mut [f32], metrics: &Metrics) -> usize {
        let ch = self.channels;
        let want = dst.len() / ch;
        let mut done = 0;
        while done < want && !self.done() {
            if self.ready_pos >= self.ready.len() {
                self.ready.clear();
                self.ready_pos = 0;
                if self.drained {
                    break;
                }
                self.decode(metrics);
                continue;
            }
            let mut n = ((self.ready.len() - self.ready_pos) / ch).min(want - done);
            if let Some(stop) = self.stop_at {
                n = n.min(usize::try_from(stop.saturating_sub(self.position)).unwrap_or(n));
            }
            for f in 0..n {
                let g = self.gain * self.envelope();
                let src = self.ready_pos + f * ch;
                let out = (done + f) * ch;
                for c in 0..ch {
                    dst[out + c] += self.ready[src + c] * g;
                }
                self.position += 1;
            }
            self.ready_pos += n * ch;
            done += n;
        }
        done
    }

    /// The fade and de-click gain of the frame at the current position.
    fn envelope(&mut self) -> f32 {
        let mut g = 1.0;
        if let Some((start, len, curve)) = self.fade
            && self.position >= start
        {
            g *= curve_out(curve, (self.position - start) as f32 / len as f32);
        }
        let (left, total) = self.declick;
        if left > 0 {
            g *= 1.0 - left as f32 / total as f32;
            self.declick.0 -= 1;
        }
        if let Some(stop) = self.stop_at {
            let left = stop.saturating_sub(self.position);
            if left < self.stop_declick {
                g *= left as f32 / self.stop_declick as f32;
            }
        }
        g
    }

    /// One packet decoded and converted into `ready`.
    fn decode(&mut self, metrics: &Metrics) {
        self.decoded.clear();
        let more = self.decoder.next_packet(&mut self.decoded);
        let (in_rate, in_ch) = (self.decoder.sample_rate(), self.decoder.channels());
        if !self.decoded.is_empty()
            && in_ch > 0
            && let Err(e) = self
                .converter
                .process(in_rate, in_ch, &self.decoded, &mut self.ready)
        {
            if matches!(e, ResampleError::Unsupported { .. }) {
                tracing::warn!(track = %self.track.key, error = %e, "cannot convert track; skipping");
                metrics
                    .tracks_skipped
                    .with_label_values(&["unsupported"])
                    .inc();
            } else {
                tracing::warn!(track = %self.track.key, error = %e, "resampling failed; ending track");
            }
            self.drained = true;
            return;
        }
        if !more {
            let _ = self.converter.finish(&mut self.ready);
            self.drained = true;
        }
    }

    /// Damaged packets skipped so far.
    pub fn errors(&self) -> u64 {
        self.decoder.errors()
    }
}
