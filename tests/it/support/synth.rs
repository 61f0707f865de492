//! Test tracks made to measure: tones in their own bands, with known loudness, peaks, silences
//! and endings, written as WAV; and the meters that read them back (BS.1770 with the `ebur128`
//! crate, a tone's level by Goertzel) on the programme tap or on a decoded stream.

use std::f64::consts::TAU;
use std::path::Path;

use ebur128::{EbuR128, Mode};

/// A mono track being composed, sample by sample.
#[derive(Clone)]
pub struct Synth {
    pub rate: u32,
    pub samples: Vec<f32>,
    phase: f64,
}

impl Synth {
    pub fn new(rate: u32) -> Synth {
        Synth {
            rate,
            samples: Vec::new(),
            phase: 0.0,
        }
    }

    fn frames(&self, seconds: f64) -> usize {
        (seconds * f64::from(self.rate)).round() as usize
    }

    pub fn silence(mut self, seconds: f64) -> Synth {
        let n = self.frames(seconds);
        self.samples.extend(std::iter::repeat_n(0.0, n));
        self
    }

    /// A sine of `freq` Hz whose level goes from `from_db` to `to_db` (dBFS of its peaks,
    /// linearly in dB) over `seconds`; the phase carries on from what came before.
    pub fn ramp(mut self, freq: f64, seconds: f64, from_db: f64, to_db: f64) -> Synth {
        let n = self.frames(seconds);
        let step = TAU * freq / f64::from(self.rate);
        for i in 0..n {
            let db = from_db + (to_db - from_db) * i as f64 / n.max(1) as f64;
            self.samples
                .push((10f64.powf(db / 20.0) * self.phase.sin()) as f32);
            self.phase = (self.phase + step) % TAU;
        }
        self
    }

    /// A steady sine at `db` dBFS.
    pub fn tone(self, freq: f64, seconds: f64, db: f64) -> Synth {
        self.ramp(freq, seconds, db, db)
    }

    /// A quiet bed at `bed_db` with a loud burst `burst_s` long at `burst_db` every `every`
    /// seconds: a dynamic track (low loudness, high peaks).
    pub fn bursts(
        mut self,
        freq: f64,
        seconds: f64,
        (bed_db, burst_db): (f64, f64),
        every: f64,
        burst_s: f64,
    ) -> Synth {
        let n = self.frames(seconds);
        let period = self.frames(every).max(1);
        let burst = self.frames(burst_s);
        let step = TAU * freq / f64::from(self.rate);
        for i in 0..n {
            let db = if i % period < burst { burst_db } else { bed_db };
            self.samples
                .push((10f64.powf(db / 20.0) * self.phase.sin()) as f32);
            self.phase = (self.phase + step) % TAU;
        }
        self
    }

    /// Every sample times `db`.
    pub fn gain(mut self, db: f64) -> Synth {
        let g = 10f32.powf(db as f32 / 20.0);
        self.samples.iter_mut().for_each(|s| *s *= g);
        self
    }

    /// Integrated loudness and true peak as the station hears it (both channels).
    pub fn loudness(&self) -> Loudness {
        let stereo: Vec<f32> = self.samples.iter().flat_map(|&s| [s, s]).collect();
        Loudness::of(&stereo, self.rate, 2)
    }

    /// Scaled so that its integrated loudness is `lufs`.
    pub fn at_lufs(self, lufs: f64) -> Synth {
        let now = self.loudness().integrated;
        self.gain(lufs - now)
    }

    /// Writes it as a 16-bit mono WAV file.
    pub fn write_wav(&self, path: &Path) {
        let mut v = Vec::with_capacity(44 + self.samples.len() * 2);
        let data_len = (self.samples.len() * 2) as u32;
        v.extend_from_slice(b"RIFF");
        v.extend_from_slice(&(36 + data_len).to_le_bytes());
        v.extend_from_slice(b"WAVEfmt ");
        v.extend_from_slice(&16u32.to_le_bytes());
        v.extend_from_slice(&1u16.to_le_bytes()); // PCM
        v.extend_from_slice(&1u16.to_le_bytes()); // mono
        v.extend_from_slice(&self.rate.to_le_bytes());
        v.extend_from_slice(&(self.rate * 2).to_le_bytes());
        v.extend_from_slice(&2u16.to_le_bytes());
        v.extend_from_slice(&16u16.to_le_bytes());
        v.extend_from_slice(b"data");
        v.extend_from_slice(&data_len.to_le_bytes());
        for &s in &self.samples {
            let q = (s.clamp(-1.0, 1.0) * 32767.0).round() as i16;
            v.extend_from_slice(&q.to_le_bytes());
        }
        std::fs::write(path, v).unwrap();
    }
}

/// BS.1770 measures of a stretch of audio.
#[derive(Debug, Clone, Copy)]
pub struct Loudness {
    /// Integrated loudness, LUFS (−70 for silence).
    pub integrated: f64,
    /// True peak, dBTP (the crate's 4× estimate).
    pub true_peak: f64,
}

impl Loudness {
    /// Of interleaved `pcm`.
    pub fn of(pcm: &[f32], rate: u32, channels: usize) -> Loudness {
        let mut m = EbuR128::new(channels as u32, rate, Mode::I | Mode::TRUE_PEAK).unwrap();
        m.add_frames_f32(pcm).unwrap();
        let integrated = m.loudness_global().unwrap();
        let peak = (0..channels as u32)
            .map(|c| m.true_peak(c).unwrap())
            .fold(0.0, f64::max);
        Loudness {
            integrated: if integrated.is_finite() {
                integrated
            } else {
                -70.0
            },
            true_peak: 20.0 * peak.max(1e-9).log10(),
        }
    }
}

/// Interleaved stereo programme (the tap, or a decoded stream) and meters over its time line.
pub struct Programme {
    pub rate: u32,
    pub pcm: Vec<f32>,
}

/// 10 ms, the resolution of every time line here.
pub const FRAME_S: f64 = 0.01;

impl Programme {
    fn at(&self, seconds: f64) -> usize {
        ((seconds * f64::from(self.rate)).round() as usize * 2).min(self.pcm.len())
    }

    /// The stretch from `from` to `to` seconds.
    pub fn window(&self, from: f64, to: f64) -> &[f32] {
        &self.pcm[self.at(from)..self.at(to)]
    }

    pub fn loudness(&self, from: f64, to: f64) -> Loudness {
        Loudness::of(self.window(from, to), self.rate, 2)
    }

    /// The level (dBFS of its peaks) of a `freq` Hz tone in each 10 ms frame, by a Goertzel
    /// filter over a Hann-windowed 40 ms around it: other bands far away do not leak in.
    pub fn band(&self, freq: f64) -> Vec<f64> {
        let hop = (FRAME_S * f64::from(self.rate)) as usize;
        let len = hop * 4;
        let frames = self.pcm.len() / 2;
        let window: Vec<f64> = (0..len)
            .map(|i| 0.5 - 0.5 * (TAU * i as f64 / len as f64).cos())
            .collect();
        let norm: f64 = window.iter().sum::<f64>() / 2.0;
        let coeff = 2.0 * (TAU * freq / f64::from(self.rate)).cos();
        (0..frames / hop)
            .map(|k| {
                let start = (k * hop + hop / 2).saturating_sub(len / 2);
                let (mut s1, mut s2) = (0.0, 0.0);
                for (i, w) in window.iter().enumerate() {
                    let f = start + i;
                    let x = if f < frames {
                        0.5 * f64::from(self.pcm[2 * f] + self.pcm[2 * f + 1])
                    } else {
                        0.0
                    };
                    let s0 = x * w + coeff * s1 - s2;
                    s2 = s1;
                    s1 = s0;
                }
                let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
                20.0 * (power.max(0.0).sqrt() / norm).max(1e-12).log10()
            })
            .collect()
    }

    /// Runs of silence (every sample under `below_db` dBFS) at least `min_s` long, as (start,
    /// length) in seconds, between the first sound and the last.
    pub fn gaps(&self, below_db: f64, min_s: f64) -> Vec<(f64, f64)> {
        let limit = 10f32.powf(below_db as f32 / 20.0);
        let quiet: Vec<bool> = self
            .pcm
            .chunks_exact(2)
            .map(|f| f[0].abs() < limit && f[1].abs() < limit)
            .collect();
        let (Some(first), Some(last)) = (
            quiet.iter().position(|q| !q),
            quiet.iter().rposition(|q| !q),
        ) else {
            return Vec::new();
        };
        let rate = f64::from(self.rate);
        let mut gaps = Vec::new();
        let mut run_start = None;
        for (i, &q) in quiet.iter().enumerate().take(last + 1).skip(first) {
            match (q, run_start) {
                (true, None) => run_start = Some(i),
                (false, Some(s)) => {
                    if (i - s) as f64 / rate >= min_s {
                        gaps.push((s as f64 / rate, (i - s) as f64 / rate));
                    }
                    run_start = None;
                }
                _ => {}
            }
        }
        gaps
    }

    /// When the programme first has sound (above −60 dBFS), seconds.
    pub fn first_sound(&self) -> Option<f64> {
        self.pcm
            .chunks_exact(2)
            .position(|f| f[0].abs() > 0.001 || f[1].abs() > 0.001)
            .map(|i| i as f64 / f64::from(self.rate))
    }
}

/// The 10 ms frames where a band's level is above `floor_db`, as (first, last) seconds of each
/// run at least `min_s` long.
pub fn present(band: &[f64], floor_db: f64, min_s: f64) -> Vec<(f64, f64)> {
    let mut runs = Vec::new();
    let mut start = None;
    for (i, &db) in band.iter().chain(std::iter::once(&-300.0)).enumerate() {
        match (db > floor_db, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                if (i - s) as f64 * FRAME_S >= min_s {
                    runs.push((s as f64 * FRAME_S, i as f64 * FRAME_S));
                }
                start = None;
            }
            _ => {}
        }
    }
    runs
}
