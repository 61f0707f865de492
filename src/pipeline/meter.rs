//! The on-air meter: BS.1770 loudness of the programme as it leaves the limiter (what every
//! encoder gets), exported as momentary and short-term loudness and the true peak of the last
//! second; and each track's integrated loudness as heard, logged when it leaves the air — the
//! production twin of the tests that check the programme's evenness.

use std::collections::VecDeque;

use ebur128::{EbuR128, Mode};

use crate::catalog::TrackRef;
use crate::metrics::Metrics;

/// Blocks of 100 ms the true-peak gauge looks back over.
const PEAK_BLOCKS: usize = 10;

pub struct Meter {
    rate: u32,
    channels: usize,
    programme: Option<EbuR128>,
    /// The track on air and its own meter.
    track: Option<(TrackRef, EbuR128)>,
    peaks: VecDeque<f64>,
}

impl Meter {
    pub fn new(rate: u32, channels: usize) -> Meter {
        let programme = EbuR128::new(
            channels as u32,
            rate,
            Mode::M | Mode::S | Mode::TRUE_PEAK | Mode::HISTOGRAM,
        )
        .inspect_err(|e| tracing::warn!(error = %e, "no on-air loudness meter"))
        .ok();
        Meter {
            rate,
            channels,
            programme,
            track: None,
            peaks: VecDeque::with_capacity(PEAK_BLOCKS + 1),
        }
    }

    /// Measures one block of programme; `on_air` is the track it belongs to.
    pub fn add(&mut self, pcm: &[f32], on_air: Option<&TrackRef>, metrics: &Metrics) {
        if let Some(m) = self.programme.as_mut()
            && m.add_frames_f32(pcm).is_ok()
        {
            let gauge = |w: &str, v: Result<f64, ebur128::Error>| {
                if let Ok(v) = v.map(|v| v.max(-70.0)) {
                    metrics.output_loudness_lufs.with_label_values(&[w]).set(v);
                }
            };
            gauge("momentary", m.loudness_momentary());
            gauge("short", m.loudness_shortterm());
            let peak = (0..self.channels as u32)
                .filter_map(|c| m.prev_true_peak(c).ok())
                .fold(0.0, f64::max);
            self.peaks.push_back(peak);
            if self.peaks.len() > PEAK_BLOCKS {
                self.peaks.pop_front();
            }
            let recent = self.peaks.iter().copied().fold(0.0, f64::max);
            if recent > 0.0 {
                metrics.output_true_peak_dbtp.set(20.0 * recent.log10());
            }
        }
        let same = match (&self.track, on_air) {
            (Some((t, _)), Some(now)) => t == now,
            (None, None) => true,
            _ => false,
        };
        if !same {
            self.finish_track(metrics);
            self.track = on_air.and_then(|t| {
                EbuR128::new(self.channels as u32, self.rate, Mode::I | Mode::HISTOGRAM)
                    .ok()
                    .map(|m| (t.clone(), m))
            });
        }
        if let Some((_, m)) = self.track.as_mut() {
            let _ = m.add_frames_f32(pcm);
        }
    }

    /// Logs and exports the loudness of the track leaving the air.
    fn finish_track(&mut self, metrics: &Metrics) {
        let Some((track, m)) = self.track.take() else {
            return;
        };
        if let Ok(lufs) = m.loudness_global()
            && lufs.is_finite()
        {
            metrics
                .output_loudness_lufs
                .with_label_values(&["track"])
                .set(lufs);
            tracing::info!(track = %track.key, lufs = (lufs * 10.0).round() / 10.0, "track as heard");
        }
    }
}
