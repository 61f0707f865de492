//! BS.1770-4 loudness, as the on-air meter needs it and no more: the K-weighting filter, the
//! momentary (400 ms) and short-term (3 s) windows, and gated integrated loudness.
//!
//! The `ebur128` crate measures the same (the analyser uses it), but it sums each window afresh
//! whenever it is read: read every 100 ms, the 3 s window alone costs thirty passes over the
//! audio. Here each sample is filtered and squared once, into the energy of its block; windows
//! are sums of block energies. The tests check every figure against `ebur128`.

use std::collections::VecDeque;

/// Blocks in the short-term window (3 s of 100 ms blocks), the longest one.
const SHORT_TERM_BLOCKS: usize = 30;
const MOMENTARY_BLOCKS: usize = 4;
/// Filter states under this are flushed to zero: after a track fades out, the filters would
/// otherwise decay into subnormal numbers, which are slow on every CPU.
const SUBNORMAL_GUARD: f64 = 1e-30;

/// One second-order section, transposed direct form II.
#[derive(Clone, Copy)]
struct Biquad {
    b: [f64; 3],
    /// `a[0]` is 1 and left out.
    a: [f64; 2],
}

/// The two filters of BS.1770's K-weighting (a high shelf for the head, then a high-pass, the
/// "RLB" curve), designed for `rate` from the analogue prototypes the standard's 48 kHz
/// coefficients come from.
fn k_weighting(rate: u32) -> [Biquad; 2] {
    let rate = f64::from(rate.max(1));
    let shelf = {
        let (f0, gain_db, q) = (
            1_681.974_450_955_533,
            3.999_843_853_973_347,
            0.707_175_236_955_419_6,
        );
        let k = (std::f64::consts::PI * f0 / rate).tan();
        let vh = 10f64.powf(gain_db / 20.0);
        let vb = vh.powf(0.499_666_774_154_541_6);
        let a0 = 1.0 + k / q + k * k;
        Biquad {
            b: [
                (vh + vb * k / q + k * k) / a0,
                2.0 * (k * k - vh) / a0,
                (vh - vb * k / q + k * k) / a0,
            ],
            a: [2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0],
        }
    };
    let high_pass = {
        let (f0, q) = (38.135_470_876_024_44, 0.500_327_037_323_877_3);
        let k = (std::f64::consts::PI * f0 / rate).tan();
        let a0 = 1.0 + k / q + k * k;
        Biquad {
            b: [1.0, -2.0, 1.0],
            a: [2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0],
        }
    };
    [shelf, high_pass]
}

/// The loudness of a programme, block by block.
pub struct Loudness {
    channels: usize,
    filters: [Biquad; 2],
    /// Per channel, the two sections' two state values each.
    state: Vec<[[f64; 2]; 2]>,
    /// (sum of weighted squares, frames) of the latest blocks, oldest first.
    blocks: VecDeque<(f64, usize)>,
}

impl Loudness {
    /// A meter for interleaved frames of `channels` samples (left and right weigh the same; a
    /// mono programme is measured as its one channel).
    pub fn new(rate: u32, channels: usize) -> Loudness {
        let channels = channels.max(1);
        Loudness {
            channels,
            filters: k_weighting(rate),
            state: vec![[[0.0; 2]; 2]; channels],
            blocks: VecDeque::with_capacity(SHORT_TERM_BLOCKS + 1),
        }
    }

    /// Adds one block of audio (100 ms, for the windows to mean what BS.1770 says).
    pub fn add_block(&mut self, pcm: &[f32]) {
        let mut energy = 0.0;
        for (c, state) in self.state.iter_mut().enumerate() {
            for &x in pcm.iter().skip(c).step_by(self.channels) {
                let mut y = f64::from(x);
                for (f, s) in self.filters.iter().zip(state.iter_mut()) {
                    let out = f.b[0] * y + s[0];
                    s[0] = f.b[1] * y - f.a[0] * out + s[1];
                    s[1] = f.b[2] * y - f.a[1] * out;
                    y = out;
                }
                energy += y * y;
            }
            for v in state.iter_mut().flatten() {
                if v.abs() < SUBNORMAL_GUARD {
                    *v = 0.0;
                }
            }
        }
        if self.blocks.len() == SHORT_TERM_BLOCKS {
            self.blocks.pop_front();
        }
        self.blocks.push_back((energy, pcm.len() / self.channels));
    }

    /// Momentary loudness (the last 400 ms), LUFS; −∞ for silence, `None` before any audio.
    pub fn momentary(&self) -> Option<f64> {
        self.over(MOMENTARY_BLOCKS)
    }

    /// Short-term loudness (the last 3 s), LUFS.
    pub fn short_term(&self) -> Option<f64> {
        self.over(SHORT_TERM_BLOCKS)
    }

    fn over(&self, blocks: usize) -> Option<f64> {
        let (energy, frames) = self
            .blocks
            .iter()
            .rev()
            .take(blocks)
            .fold((0.0, 0), |(e, n), &(be, bn)| (e + be, n + bn));
        (frames > 0).then(|| lufs(energy / frames as f64))
    }
}

fn lufs(mean_square: f64) -> f64 {
    -0.691 + 10.0 * mean_square.log10()
}

/// Lowest and highest block loudness the histogram holds, LUFS; its bins are 0.1 LU wide.
const FLOOR_LUFS: f64 = -70.0;
const TOP_LUFS: f64 = 5.0;
const BINS: usize = ((TOP_LUFS - FLOOR_LUFS) * 10.0) as usize;

/// BS.1770-4 integrated loudness from gating blocks (the momentary loudness every 100 ms), kept
/// as a histogram of their loudness as libebur128 does, so a track of any length takes the same
/// memory: blocks under −70 LUFS are left out (the absolute gate), then those more than 10 LU
/// under the mean of the rest (the relative gate). Reading bins at their centres costs under
/// 0.05 LU.
pub struct Gated {
    counts: Box<[u32; BINS]>,
}

impl Default for Gated {
    fn default() -> Self {
        Gated {
            counts: Box::new([0; BINS]),
        }
    }
}

impl Gated {
    pub fn add(&mut self, block_lufs: f64) {
        if block_lufs >= FLOOR_LUFS {
            let bin = ((block_lufs - FLOOR_LUFS) * 10.0) as usize;
            self.counts[bin.min(BINS - 1)] += 1;
        }
    }

    pub fn clear(&mut self) {
        self.counts.fill(0);
    }

    /// The integrated loudness, LUFS; `None` when no block passed the absolute gate.
    pub fn integrated(&self) -> Option<f64> {
        let relative_gate = mean_lufs(&self.counts[..], 0)? - 10.0;
        let first = ((relative_gate - FLOOR_LUFS) * 10.0).max(0.0) as usize;
        mean_lufs(self.counts.get(first..)?, first)
    }
}

/// The loudness of the mean energy of the blocks counted in `counts`, the bins of the
/// histogram from bin `first` on.
fn mean_lufs(counts: &[u32], first: usize) -> Option<f64> {
    let (mut energy, mut blocks) = (0.0, 0u64);
    for (i, &n) in counts.iter().enumerate() {
        if n > 0 {
            let centre = FLOOR_LUFS + ((first + i) as f64 + 0.5) / 10.0;
            energy += f64::from(n) * 10f64.powf((centre + 0.691) / 10.0);
            blocks += u64::from(n);
        }
    }
    (blocks > 0).then(|| lufs(energy / blocks as f64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ebur128::{EbuR128, Mode};

    /// Stereo audio with a different tone and level in each channel, changing every second:
    /// pink-ish enough that the K-weighting's shelf and high-pass both matter.
    fn programme(rate: u32, seconds: usize, levels: &[f32]) -> Vec<f32> {
        let n = rate as usize * seconds;
        (0..n)
            .flat_map(|i| {
                let t = i as f32 / rate as f32;
                let level = levels[(i / rate as usize) % levels.len()];
                let l = (std::f32::consts::TAU * 60.0 * t).sin() * 0.6
                    + (std::f32::consts::TAU * 3_000.0 * t).sin() * 0.3;
                let r = (std::f32::consts::TAU * 997.0 * t).sin() * 0.5
                    + (std::f32::consts::TAU * 25.0 * t).sin() * 0.4;
                [l * level, r * level]
            })
            .collect()
    }

    #[test]
    fn every_window_reads_as_ebur128_reads_it() {
        for rate in [44_100, 48_000, 22_050] {
            let pcm = programme(rate, 12, &[1.0, 0.5, 0.05, 0.0, 0.8]);
            let block = rate as usize / 10 * 2;
            let mut ours = Loudness::new(rate, 2);
            let mut gated = Gated::default();
            let mut theirs =
                EbuR128::new(2, rate, Mode::M | Mode::S | Mode::I | Mode::HISTOGRAM).unwrap();
            for (i, b) in pcm.chunks(block).enumerate() {
                ours.add_block(b);
                theirs.add_frames_f32(b).unwrap();
                let m = ours.momentary().unwrap();
                if i >= 30 {
                    // Once both windows are full (ebur128 counts the time before as silence).
                    let (tm, ts) = (
                        theirs.loudness_momentary().unwrap(),
                        theirs.loudness_shortterm().unwrap(),
                    );
                    let s = ours.short_term().unwrap();
                    for (what, a, b) in [("momentary", m, tm), ("short-term", s, ts)] {
                        // Under -70 LUFS is silence to both (filter tails differ down there).
                        let (a, b) = (a.max(-70.0), b.max(-70.0));
                        assert!(
                            (a - b).abs() < 0.01,
                            "{rate} Hz block {i} {what}: ours {a}, ebur128 {b}"
                        );
                    }
                }
                if i >= 3 {
                    gated.add(m);
                }
            }
            let (i, ti) = (
                gated.integrated().unwrap(),
                theirs.loudness_global().unwrap(),
            );
            assert!(
                (i - ti).abs() < 0.1,
                "{rate} Hz integrated: ours {i}, ebur128 {ti}"
            );
        }
    }

    #[test]
    fn the_relative_gate_drops_quiet_passages_and_silence_reads_as_nothing() {
        let mut g = Gated::default();
        assert_eq!(g.integrated(), None);
        for _ in 0..10 {
            g.add(f64::NEG_INFINITY);
            g.add(-80.0);
        }
        assert_eq!(g.integrated(), None, "under the absolute gate");
        for _ in 0..10 {
            g.add(-20.0);
            g.add(-40.0);
        }
        let i = g.integrated().unwrap();
        assert!(
            (i - -20.0).abs() < 0.06,
            "the -40 LUFS blocks are gated out: {i}"
        );
        let mut l = Loudness::new(44_100, 2);
        l.add_block(&[0.0; 8820]);
        assert_eq!(l.momentary(), Some(f64::NEG_INFINITY));
    }
}
