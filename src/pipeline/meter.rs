//! The on-air meter: BS.1770 loudness of the programme as it leaves the limiter (what every
//! encoder gets), exported as momentary and short-term loudness and the true peak of the last
//! second; and each track's integrated loudness as heard, logged when it leaves the air — the
//! production twin of the tests that check the programme's evenness.
//!
//! One K-weighted measurement (`loudness.rs`) serves all of it. The pipeline's blocks are
//! 100 ms, so the momentary loudness after each block is one of BS.1770's gating blocks (400 ms,
//! 75 % overlap): a track's integrated loudness is gated from those, with no second meter. The
//! true peak comes from the limiter, which has oversampled the programme already.

use std::collections::VecDeque;

use super::loudness::{Gated, Loudness};
use crate::catalog::TrackRef;
use crate::metrics::Metrics;

/// Blocks of 100 ms the true-peak gauge looks back over.
const PEAK_BLOCKS: usize = 10;

pub struct Meter {
    programme: Loudness,
    /// The track on air and the gating blocks heard of it.
    track: Option<TrackRef>,
    blocks: Gated,
    peaks: VecDeque<f32>,
}

impl Meter {
    pub fn new(rate: u32, channels: usize) -> Meter {
        Meter {
            programme: Loudness::new(rate, channels),
            track: None,
            blocks: Gated::default(),
            peaks: VecDeque::with_capacity(PEAK_BLOCKS + 1),
        }
    }

    /// Measures one 100 ms block of programme, whose true peak (linear) the limiter gave;
    /// `on_air` is the track it belongs to.
    pub fn add(&mut self, pcm: &[f32], true_peak: f32, on_air: Option<&TrackRef>, m: &Metrics) {
        self.peaks.push_back(true_peak);
        if self.peaks.len() > PEAK_BLOCKS {
            self.peaks.pop_front();
        }
        let recent = self.peaks.iter().copied().fold(0.0, f32::max);
        if recent > 0.0 {
            m.output_true_peak_dbtp
                .set(20.0 * f64::from(recent).log10());
        }
        if self.track.as_ref() != on_air {
            self.finish_track(m);
            self.track = on_air.cloned();
        }
        self.programme.add_block(pcm);
        let gauge = |window: &str, lufs: Option<f64>| {
            if let Some(lufs) = lufs {
                m.output_loudness_lufs
                    .with_label_values(&[window])
                    .set(lufs.max(-70.0));
            }
        };
        let momentary = self.programme.momentary();
        if self.track.is_some()
            && let Some(lufs) = momentary
        {
            self.blocks.add(lufs);
        }
        gauge("momentary", momentary);
        gauge("short", self.programme.short_term());
    }

    /// Logs and exports the loudness of the track leaving the air.
    fn finish_track(&mut self, metrics: &Metrics) {
        let integrated = self.blocks.integrated();
        self.blocks.clear();
        let (Some(track), Some(lufs)) = (self.track.take(), integrated) else {
            return;
        };
        metrics
            .output_loudness_lufs
            .with_label_values(&["track"])
            .set(lufs);
        tracing::info!(track = %track.key, lufs = (lufs * 10.0).round() / 10.0, "track as heard");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ebur128::{EbuR128, Mode};
    use std::sync::Arc;

    const RATE: u32 = 44_100;

    fn tone(amp: f32, seconds: f32) -> Vec<f32> {
        let n = (RATE as f32 * seconds) as usize;
        (0..n)
            .flat_map(|i| {
                let s = amp * (std::f32::consts::TAU * 997.0 * i as f32 / RATE as f32).sin();
                [s, s]
            })
            .collect()
    }

    fn track(key: &str) -> TrackRef {
        TrackRef {
            key: Arc::from(key),
            version: Arc::from("1"),
        }
    }

    /// What ebur128's own gated integrated loudness says of `pcm`.
    fn reference(pcm: &[f32]) -> f64 {
        let mut m = EbuR128::new(2, RATE, Mode::I).unwrap();
        m.add_frames_f32(pcm).unwrap();
        m.loudness_global().unwrap()
    }

    /// Runs `pcm` through a meter in 100 ms blocks as `key`, then ends the track; returns the
    /// "track" gauge.
    fn as_heard(pcm: &[f32]) -> f64 {
        let metrics = Metrics::new();
        let mut meter = Meter::new(RATE, 2);
        let t = track("a.mp3");
        for block in pcm.chunks(4410 * 2) {
            meter.add(block, 0.5, Some(&t), &metrics);
        }
        meter.add(&[0.0; 4410 * 2], 0.0, None, &metrics);
        metrics
            .output_loudness_lufs
            .with_label_values(&["track"])
            .get()
    }

    #[test]
    fn a_tracks_loudness_is_gated_as_bs1770_says() {
        // Loud and quiet passages, and silence the absolute gate drops: the relative gate keeps
        // the -26 dBFS part (6 dB under) and drops the -46 dBFS one (26 dB under).
        let mut pcm = tone(0.1, 6.0);
        pcm.extend(tone(0.05, 4.0));
        pcm.extend(vec![0.0; 2 * RATE as usize * 3]);
        pcm.extend(tone(0.005, 4.0));
        pcm.extend(tone(0.1, 2.0));
        let (ours, theirs) = (as_heard(&pcm), reference(&pcm));
        assert!(
            (ours - theirs).abs() < 0.1,
            "meter {ours} LUFS, ebur128 {theirs} LUFS"
        );
        assert!((-24.0..-20.0).contains(&ours), "{ours}");
    }

    #[test]
    fn silence_gives_no_track_loudness_and_the_peak_gauge_follows_the_limiter() {
        let metrics = Metrics::new();
        let mut meter = Meter::new(RATE, 2);
        let t = track("silent.mp3");
        for _ in 0..20 {
            meter.add(&[0.0; 4410 * 2], 0.0, Some(&t), &metrics);
        }
        meter.add(&[0.0; 4410 * 2], 0.5, None, &metrics);
        let track = metrics.output_loudness_lufs.with_label_values(&["track"]);
        assert_eq!(track.get(), 0.0, "nothing heard, nothing set");
        let peak = metrics.output_true_peak_dbtp.get();
        assert!((peak - -6.02).abs() < 0.01, "{peak}");
    }
}
