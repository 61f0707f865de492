//! The true-peak limiter: one, stereo-linked, after the mix and before every encoder, so what
//! listeners decode stays at or under the station's true-peak ceiling however loud a track or a
//! crossfade sums. No crate fits the toolchain (the note in shared/notes/audio-quality.md §4
//! compares them), so it is written here, in the design that note measured:
//!
//! 1. the peak of each frame is estimated 8× oversampled (a polyphase windowed-sinc FIR, 32 taps a
//!    phase), so peaks between samples count, as a true-peak meter sees them;
//! 2. the gain each frame needs, `ceiling / peak` (at most 1), is held at its minimum over the
//!    look-ahead window (a monotonic queue), released upwards with a one-pole, and smoothed by a
//!    box filter over the same window: a linear ramp that has reached the needed gain by the time
//!    that frame leaves the delay line;
//! 3. the audio, delayed by the look-ahead (plus the FIR's group delay), is multiplied by it.
//!
//! The peak estimate, delayed likewise and times that gain, is the true peak of what comes out:
//! the on-air meter reads it from here instead of oversampling the programme a second time.
//! A last-resort clip at −0.1 dBFS catches what no ramp could (counted: it should never happen).
//! Latency about 5.4 ms.

use std::collections::VecDeque;

/// Interpolation factor of the peak estimate.
const OVERSAMPLE: usize = 8;
/// Taps per polyphase branch; the estimate lags its input by half of them.
const TAPS: usize = 32;
/// Last resort: no sample leaves louder than this, whatever the ramps did.
const CLIP: f32 = 0.988_553_1; // -0.1 dBFS

/// How the limiter behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimiterSettings {
    /// The true-peak ceiling, dBTP.
    pub ceiling_dbtp: f32,
    /// How far ahead it looks (and how long its attack ramp is).
    pub lookahead_ms: f32,
    /// How fast the gain comes back up after a peak.
    pub release_ms: f32,
}

impl Default for LimiterSettings {
    fn default() -> Self {
        LimiterSettings {
            // -1.5 inside, so that the MP3 codec's own overs (up to +0.2 dB) stay under -1.0.
            ceiling_dbtp: -1.5,
            lookahead_ms: 5.0,
            release_ms: 100.0,
        }
    }
}

/// The limiter's state for one programme (interleaved frames of `channels` samples).
pub struct Limiter {
    channels: usize,
    ceiling: f32,
    /// `taps[k][p]`: tap `k` of the branch that interpolates at `p / OVERSAMPLE`. Laid out by
    /// tap, so the eight branches advance side by side in one vector of eight lanes.
    taps: [[f32; OVERSAMPLE]; TAPS],
    /// The last `TAPS` input frames per channel, written twice (at `i` and `i + TAPS`) so the
    /// window, oldest first, is always the contiguous `[history_at + 1, history_at + 1 + TAPS)`.
    history: Vec<[f32; 2 * TAPS]>,
    history_at: usize,
    /// The frames not yet output, oldest first.
    delay: VecDeque<f32>,
    /// The peak estimates of the frames between the estimator and the output, oldest first.
    peaks: VecDeque<f32>,
    /// Highest true peak output since the last [`Limiter::take_output_peak`], linear.
    output_peak: f32,
    /// Frames held back: the look-ahead plus the estimator's lag.
    latency: usize,
    window: usize,
    /// (frame number, required gain): a monotonic queue for the minimum over the window.
    minima: VecDeque<(u64, f32)>,
    frame: u64,
    /// The held gain after release, per frame of the last `window`, for the box filter.
    held: VecDeque<f32>,
    held_sum: f64,
    released: f32,
    release_coef: f32,
    /// Deepest gain reduction since the last [`Limiter::take_reduction_db`], as a gain.
    lowest: f32,
    clipped: u64,
}

impl Limiter {
    pub fn new(rate: u32, channels: usize, settings: LimiterSettings) -> Limiter {
        let rate = rate.max(1) as f32;
        let window = ((settings.lookahead_ms / 1000.0 * rate).round() as usize).max(1);
        let latency = window - 1 + TAPS / 2;
        let release_frames = (settings.release_ms / 1000.0 * rate).max(1.0);
        let mut delay = VecDeque::with_capacity((latency + 1) * channels);
        delay.extend(std::iter::repeat_n(0.0, latency * channels));
        let mut peaks = VecDeque::with_capacity(window);
        peaks.extend(std::iter::repeat_n(0.0, window - 1));
        let mut held = VecDeque::with_capacity(window + 1);
        held.extend(std::iter::repeat_n(1.0, window));
        Limiter {
            channels: channels.max(1),
            ceiling: 10f32.powf(settings.ceiling_dbtp / 20.0),
            taps: by_tap(&polyphase()),
            history: vec![[0.0; 2 * TAPS]; channels.max(1)],
            history_at: 0,
            delay,
            peaks,
            output_peak: 0.0,
            latency,
            window,
            minima: VecDeque::with_capacity(window + 1),
            frame: 0,
            held,
            held_sum: window as f64,
            released: 1.0,
            release_coef: (-1.0 / release_frames).exp(),
            lowest: 1.0,
            clipped: 0,
        }
    }

    /// Frames of delay between input and output.
    pub fn latency(&self) -> usize {
        self.latency
    }

    /// Limits `pcm` (interleaved) in place: what comes out is what went in `latency` frames ago.
    pub fn process(&mut self, pcm: &mut [f32]) {
        let ch = self.channels;
        for frame in pcm.chunks_exact_mut(ch) {
            let peak = self.estimate_peak(frame);
            let needed = if peak > self.ceiling {
                self.ceiling / peak
            } else {
                1.0
            };
            let gain = self.gain_for(needed);
            self.lowest = self.lowest.min(gain);
            self.peaks.push_back(peak);
            let leaving = self.peaks.pop_front().unwrap_or(0.0);
            self.output_peak = self.output_peak.max(leaving * gain);
            for s in frame.iter_mut() {
                self.delay.push_back(*s);
                // The queue holds `latency` frames before this one: never empty here.
                let out = self.delay.pop_front().unwrap_or(0.0) * gain;
                *s = if out.abs() > CLIP {
                    self.clipped += 1;
                    CLIP.copysign(out)
                } else {
                    out
                };
            }
        }
    }

    /// The deepest gain reduction since the last call, in dB (0 when it did nothing).
    pub fn take_reduction_db(&mut self) -> f32 {
        let lowest = std::mem::replace(&mut self.lowest, 1.0);
        -20.0 * lowest.max(1e-6).log10()
    }

    /// The highest true peak output since the last call, linear (1.0 is full scale).
    pub fn take_output_peak(&mut self) -> f32 {
        std::mem::take(&mut self.output_peak)
    }

    /// Samples clipped at -0.1 dBFS so far.
    pub fn clipped(&self) -> u64 {
        self.clipped
    }

    /// The true peak (linear) of the frame `TAPS / 2` frames back, over every channel.
    fn estimate_peak(&mut self, frame: &[f32]) -> f32 {
        self.history_at = (self.history_at + 1) % TAPS;
        // Lane by lane, as the sums come out; `>` rather than `f32::max`, whose NaN rules would
        // keep the compiler from using vector instructions (a NaN sample never gets here).
        let mut lanes = [0f32; OVERSAMPLE];
        for (c, &s) in frame.iter().enumerate() {
            let h = &mut self.history[c];
            h[self.history_at] = s;
            h[self.history_at + TAPS] = s;
            let window = &h[self.history_at + 1..self.history_at + 1 + TAPS];
            // Each branch sums its taps in order, as a plain dot product would: the same result,
            // but the compiler can keep the eight sums in vector registers.
            let mut acc = [0f32; OVERSAMPLE];
            for (taps, &x) in self.taps.iter().zip(window) {
                for (a, t) in acc.iter_mut().zip(taps) {
                    *a += t * x;
                }
            }
            for (l, a) in lanes.iter_mut().zip(acc) {
                let a = a.abs();
                if a > *l {
                    *l = a;
                }
            }
        }
        lanes
            .into_iter()
            .fold(0.0, |m, l| if l > m { l } else { m })
    }

    /// The gain for the frame leaving the delay line, given what the newest frame needs.
    fn gain_for(&mut self, needed: f32) -> f32 {
        let n = self.frame;
        self.frame += 1;
        while self.minima.back().is_some_and(|&(_, g)| g >= needed) {
            self.minima.pop_back();
        }
        self.minima.push_back((n, needed));
        while self
            .minima
            .front()
            .is_some_and(|&(at, _)| at + self.window as u64 <= n)
        {
            self.minima.pop_front();
        }
        let hold = self.minima.front().map_or(1.0, |&(_, g)| g);
        // Down at once (the box filter makes the ramp); up with the release.
        self.released = if hold < self.released {
            hold
        } else {
            hold + (self.released - hold) * self.release_coef
        };
        self.held.push_back(self.released);
        self.held_sum += f64::from(self.released);
        if let Some(old) = self.held.pop_front() {
            self.held_sum -= f64::from(old);
        }
        ((self.held_sum / self.window as f64) as f32).min(1.0)
    }
}

/// The branches of [`polyphase`], tap by tap.
fn by_tap(phases: &[[f32; TAPS]]) -> [[f32; OVERSAMPLE]; TAPS] {
    let mut taps = [[0f32; OVERSAMPLE]; TAPS];
    for (p, branch) in phases.iter().enumerate() {
        for (k, &t) in branch.iter().enumerate() {
            taps[k][p] = t;
        }
    }
    taps
}

/// The 8 branches of a Kaiser-windowed sinc low-pass at the input's Nyquist frequency, each
/// normalised to unity gain at DC: branch 0 reproduces the samples themselves.
fn polyphase() -> Vec<[f32; TAPS]> {
    let len = OVERSAMPLE * TAPS;
    // On a sample position (a multiple of OVERSAMPLE), so that branch 0 is the sample itself.
    let centre = (len / 2) as f64;
    let beta = 8.0;
    let bessel = |x: f64| {
        // I0 by its series: converges quickly for the arguments used here.
        let (mut sum, mut term, mut k) = (1.0, 1.0, 1.0);
        while term > 1e-12 * sum {
            term *= (x / (2.0 * k)).powi(2);
            sum += term;
            k += 1.0;
        }
        sum
    };
    let norm = bessel(beta);
    let mut phases = vec![[0f32; TAPS]; OVERSAMPLE];
    for (p, branch) in phases.iter_mut().enumerate() {
        let mut taps = [0f64; TAPS];
        for (k, tap) in taps.iter_mut().enumerate() {
            let i = (k * OVERSAMPLE + p) as f64;
            let t = (i - centre) / OVERSAMPLE as f64;
            let sinc = if t.abs() < 1e-12 {
                1.0
            } else {
                (std::f64::consts::PI * t).sin() / (std::f64::consts::PI * t)
            };
            let w = 2.0 * (i + 0.5) / len as f64 - 1.0;
            *tap = sinc * bessel(beta * (1.0 - w * w).max(0.0).sqrt()) / norm;
        }
        let dc: f64 = taps.iter().sum();
        // The ring is read oldest first, so the taps run backwards in time.
        for (k, tap) in taps.iter().enumerate() {
            branch[TAPS - 1 - k] = (tap / dc) as f32;
        }
    }
    phases
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 44_100;

    fn tone(freq: f32, amp: f32, phase: f32, seconds: f32) -> Vec<f32> {
        let n = (RATE as f32 * seconds) as usize;
        (0..n)
            .flat_map(|i| {
                let s = amp * (std::f32::consts::TAU * freq * i as f32 / RATE as f32 + phase).sin();
                [s, s]
            })
            .collect()
    }

    /// True peak as an independent meter (the `ebur128` crate, 4× oversampled) reads it, dBTP,
    /// from frame `from` on. The meter hears the frames before too: a meter that started
    /// mid-signal would see a step, whose ringing it would take for a peak.
    fn true_peak(pcm: &[f32], from: usize) -> f32 {
        let mut m = ebur128::EbuR128::new(2, RATE, ebur128::Mode::TRUE_PEAK).expect("meter");
        m.add_frames_f32(&pcm[..2 * from]).expect("frames");
        m.add_frames_f32(&pcm[2 * from..]).expect("frames");
        let peak = (0..2)
            .map(|c| m.prev_true_peak(c).unwrap())
            .fold(0.0, f64::max);
        20.0 * peak.log10() as f32
    }

    fn limited(mut pcm: Vec<f32>) -> (Vec<f32>, Limiter) {
        let mut l = Limiter::new(RATE, 2, LimiterSettings::default());
        // In uneven pieces, as the pipeline hands them over.
        for chunk in pcm.chunks_mut(2 * 733) {
            l.process(chunk);
        }
        (pcm, l)
    }

    #[test]
    fn a_loud_tone_comes_out_at_the_ceiling() {
        let (out, l) = limited(tone(997.0, 1.0, 0.0, 2.0));
        let tp = true_peak(&out, 4410);
        assert!(tp <= -1.5 + 0.05, "true peak {tp} dBTP");
        assert!(tp >= -2.5, "not squashed far below the ceiling: {tp} dBTP");
        assert_eq!(l.clipped(), 0);
    }

    #[test]
    fn peaks_between_samples_count() {
        // A quarter of the sample rate at 45°: the samples sit at 0.707 of the true peak, so a
        // sample-peak limiter would let +3 dB of overs through.
        let (out, _) = limited(tone(
            RATE as f32 / 4.0,
            1.0,
            std::f32::consts::FRAC_PI_4,
            1.0,
        ));
        let sample_peak = out[2 * 4410..].iter().fold(0f32, |m, s| m.max(s.abs()));
        assert!(
            20.0 * sample_peak.log10() < -4.0,
            "sample peak {sample_peak}"
        );
        let tp = true_peak(&out, 4410);
        assert!(tp <= -1.45, "true peak {tp} dBTP");
    }

    #[test]
    fn quiet_audio_passes_untouched_only_delayed() {
        let input = tone(440.0, 0.25, 0.3, 0.5);
        let (out, mut l) = limited(input.clone());
        let lat = l.latency() * 2;
        // 5 ms of look-ahead and the estimator's 16 frames.
        assert!((235..=237).contains(&l.latency()), "{}", l.latency());
        for (a, b) in out[lat..].iter().zip(&input) {
            assert!((a - b).abs() < 1e-6);
        }
        assert!(l.take_reduction_db() < 1e-4);
    }

    #[test]
    fn a_transient_is_caught_and_the_gain_comes_back() {
        // Quiet music with one loud click in the middle.
        let mut pcm = tone(440.0, 0.2, 0.0, 2.0);
        for s in &mut pcm[2 * 44_100..2 * 44_100 + 20] {
            *s = 2.0;
        }
        let (out, mut l) = limited(pcm);
        let tp = true_peak(&out, 0);
        assert!(tp <= -1.45, "true peak {tp} dBTP");
        assert!(l.take_reduction_db() > 6.0);
        // A second later the music is at its own level again.
        let late = &out[2 * (44_100 + 44_100 * 3 / 4)..];
        let peak = late.iter().fold(0f32, |m, s| m.max(s.abs()));
        assert!((peak - 0.2).abs() < 0.01, "peak {peak}");
        assert!(l.take_reduction_db() < 0.1 || peak > 0.19);
    }

    #[test]
    fn the_output_peak_is_what_a_true_peak_meter_reads() {
        // Loud music (limited), then quiet (untouched): both read as an independent meter does.
        for (amp, phase) in [(1.0, 0.0), (0.3, 0.7)] {
            let mut l = Limiter::new(RATE, 2, LimiterSettings::default());
            let mut out = tone(
                RATE as f32 / 4.0,
                amp,
                phase + std::f32::consts::FRAC_PI_4,
                1.0,
            );
            l.process(&mut out[..2 * 4410]);
            l.take_output_peak();
            l.process(&mut out[2 * 4410..]);
            let ours = 20.0 * l.take_output_peak().log10();
            let meter = true_peak(&out, 4410);
            assert!(
                (ours - meter).abs() < 0.2,
                "limiter {ours} dBTP, meter {meter} dBTP"
            );
        }
        let mut l = Limiter::new(RATE, 2, LimiterSettings::default());
        l.process(&mut vec![0.0; 2 * 4410]);
        assert_eq!(l.take_output_peak(), 0.0, "silence peaks at nothing");
    }

    #[test]
    fn the_polyphase_branches_pass_dc_and_branch_zero_is_the_sample() {
        let phases = polyphase();
        for branch in &phases {
            let sum: f32 = branch.iter().sum();
            assert!((sum - 1.0).abs() < 1e-5);
        }
        let centre = phases[0].iter().cloned().fold(0f32, f32::max);
        assert!(centre > 0.99, "branch 0 is nearly a pure delay: {centre}");
    }
}
