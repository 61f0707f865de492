//! Sample-rate and channel conversion of decoded PCM into the station format.
//! This module owns the per-track [`Converter`]: it buffers interleaved f32 input
//! into fixed-size chunks for the FFT resampler, maps channel layouts (downmixing
//! before resampling, upmixing after, so the resampler handles as few channels as
//! possible), trims the resampler's start-up delay and flushes its tail at the end
//! of a track. It is meant to run on the pipeline's dedicated thread and reuses its
//! scratch buffers, so steady-state processing does not allocate.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};
use std::f32::consts::FRAC_1_SQRT_2;

/// Input frames per resampler call; a compromise between latency and FFT efficiency.
const CHUNK_FRAMES: usize = 1024;

/// Why a conversion could not be set up or carried out.
#[derive(Debug, thiserror::Error)]
pub enum ResampleError {
    /// The requested rate or channel combination cannot be converted.
    #[error("cannot resample {from} Hz to {to} Hz: {reason}")]
    Unsupported {
        /// Input sample rate in Hz.
        from: u32,
        /// Output sample rate in Hz.
        to: u32,
        /// Human-readable explanation.
        reason: String,
    },
    /// The resampler or the input data was inconsistent while processing.
    #[error("resampler failed: {0}")]
    Failed(String),
}

/// How interleaved frames are mapped from one channel count to another.
#[derive(Debug)]
enum Mix {
    Copy,
    /// Mono to `n` channels.
    Duplicate(usize),
    /// `n` channels to mono.
    Mean(usize),
    /// `gains.len()` channels to stereo, one `[left, right]` gain pair per input channel.
    Stereo(Vec<[f32; 2]>),
}

impl Mix {
    fn new(from: usize, to: usize) -> Option<Mix> {
        match (from, to) {
            _ if from == to => Some(Mix::Copy),
            (1, n) => Some(Mix::Duplicate(n)),
            (n, 1) => Some(Mix::Mean(n)),
            (n, 2) => Some(Mix::Stereo(stereo_gains(n))),
            _ => None,
        }
    }

    fn apply(&self, input: &[f32], out: &mut Vec<f32>) {
        match self {
            Mix::Copy => out.extend_from_slice(input),
            Mix::Duplicate(n) => {
                for &s in input {
                    out.extend(std::iter::repeat_n(s, *n));
                }
            }
            Mix::Mean(n) => {
                let scale = 1.0 / *n as f32;
                out.extend(
                    input
                        .chunks_exact(*n)
                        .map(|f| f.iter().sum::<f32>() * scale),
                );
            }
            Mix::Stereo(gains) => {
                for frame in input.chunks_exact(gains.len()) {
                    let (mut l, mut r) = (0.0, 0.0);
                    for (s, g) in frame.iter().zip(gains) {
                        l += s * g[0];
                        r += s * g[1];
                    }
                    out.extend_from_slice(&[l, r]);
                }
            }
        }
    }
}

/// Downmix gains for `n` >= 2 channels in WAV/FLAC/SMPTE order, normalised per side
/// so that full-scale input can never clip.
fn stereo_gains(n: usize) -> Vec<[f32; 2]> {
    const H: f32 = FRAC_1_SQRT_2;
    let (l, r, c, lfe) = ([1.0, 0.0], [0.0, 1.0], [H, H], [0.0, 0.0]);
    let (sl, sr) = ([H, 0.0], [0.0, H]);
    let mut gains = match n {
        3 => vec![l, r, c],
        4 => vec![l, r, sl, sr],
        5 => vec![l, r, c, sl, sr],
        6 => vec![l, r, c, lfe, sl, sr],
        // 6.1: the back centre feeds both sides at -6 dB.
        7 => vec![l, r, c, lfe, [0.5, 0.5], sl, sr],
        8 => vec![l, r, c, lfe, sl, sr, sl, sr],
        _ => (0..n).map(|i| if i % 2 == 0 { l } else { r }).collect(),
    };
    for side in 0..2 {
        let sum: f32 = gains.iter().map(|g| g[side]).sum();
        if sum > 0.0 {
            gains.iter_mut().for_each(|g| g[side] /= sum);
        }
    }
    gains
}

/// The rubato side of a [`Converter`], absent when the rates are equal.
#[derive(Debug)]
struct Rate {
    fft: Fft<f32>,
    /// Channels seen by the resampler: the smaller of input and output counts.
    channels: usize,
    /// Mapped input waiting for a full chunk; capacity is one chunk.
    pending: Vec<f32>,
    /// Resampler output scratch, sized for the largest possible chunk.
    scratch: Vec<f32>,
    /// Output frames still to be dropped to compensate the resampler delay.
    delay_left: usize,
    in_frames: u64,
    out_frames: u64,
    in_rate: u64,
    out_rate: u64,
}

/// A [`Converter`] that follows its input: when the rate or layout changes mid-stream (chained
/// Ogg, odd MP3s, a DJ switching encoders), the old converter is flushed into the output and a
/// new one built, so no audio is lost at the change.
#[derive(Debug)]
pub struct Reformatter {
    out_rate: u32,
    out_channels: usize,
    current: Option<(Converter, u32, usize)>,
}

impl Reformatter {
    pub fn new(out_rate: u32, out_channels: usize) -> Reformatter {
        Reformatter {
            out_rate,
            out_channels,
            current: None,
        }
    }

    /// Converts `input` (interleaved, `in_rate` and `in_channels`) and appends it to `out`.
    pub fn process(
        &mut self,
        in_rate: u32,
        in_channels: usize,
        input: &[f32],
        out: &mut Vec<f32>,
    ) -> Result<(), ResampleError> {
        if self
            .current
            .as_ref()
            .is_some_and(|(_, r, c)| (*r, *c) != (in_rate, in_channels))
            && let Some((mut old, _, _)) = self.current.take()
        {
            let _ = old.finish(out);
        }
        let converter = match &mut self.current {
            Some((c, _, _)) => c,
            None => {
                let c = Converter::new(in_rate, in_channels, self.out_rate, self.out_channels)?;
                &mut self.current.insert((c, in_rate, in_channels)).0
            }
        };
        converter.process(input, out)
    }

    /// Flushes what the converter still holds (at the end of the stream).
    pub fn finish(&mut self, out: &mut Vec<f32>) -> Result<(), ResampleError> {
        match self.current.as_mut() {
            Some((c, _, _)) => c.finish(out),
            None => Ok(()),
        }
    }
}

/// Converts one track's PCM (input rate and channel count fixed for the track) to the
/// station rate and channel count.
#[derive(Debug)]
pub struct Converter {
    in_channels: usize,
    mix: Mix,
    /// True when the mix reduces channels, so it runs before resampling.
    mix_first: bool,
    rate: Option<Rate>,
}

impl Converter {
    /// Creates a converter from `in_rate`/`in_channels` to `out_rate`/`out_channels`.
    ///
    /// Fails with [`ResampleError::Unsupported`] for zero rates or channel counts and
    /// for channel layouts other than to mono, to stereo or from mono.
    pub fn new(
        in_rate: u32,
        in_channels: usize,
        out_rate: u32,
        out_channels: usize,
    ) -> Result<Converter, ResampleError> {
        let unsupported = |reason: String| {
            let (from, to) = (in_rate, out_rate);
            ResampleError::Unsupported { from, to, reason }
        };
        if in_rate == 0 || out_rate == 0 || in_channels == 0 || out_channels == 0 {
            return Err(unsupported("sample rate or channel count is zero".into()));
        }
        let mix = Mix::new(in_channels, out_channels).ok_or_else(|| {
            unsupported(format!(
                "cannot map {in_channels} to {out_channels} channels"
            ))
        })?;
        let rate = if in_rate == out_rate {
            None
        } else {
            let channels = in_channels.min(out_channels);
            let (from, to) = (in_rate as usize, out_rate as usize);
            let fft = Fft::<f32>::new(from, to, CHUNK_FRAMES, channels, FixedSync::Input)
                .map_err(|e| unsupported(e.to_string()))?;
            Some(Rate {
                channels,
                pending: Vec::with_capacity(CHUNK_FRAMES * channels),
                scratch: vec![0.0; fft.output_frames_max() * channels],
                delay_left: fft.output_delay(),
                in_frames: 0,
                out_frames: 0,
                in_rate: u64::from(in_rate),
                out_rate: u64::from(out_rate),
                fft,
            })
        };
        Ok(Converter {
            in_channels,
            mix,
            mix_first: in_channels > out_channels,
            rate,
        })
    }

    /// Consumes interleaved input samples (any number of whole frames; the last call of a
    /// track may be short) and appends converted interleaved output to `out`.
    ///
    /// Output lags input by up to one chunk plus the resampler delay; [`Converter::finish`]
    /// flushes the remainder. Fails if `input` is not a whole number of frames.
    pub fn process(&mut self, input: &[f32], out: &mut Vec<f32>) -> Result<(), ResampleError> {
        if !input.len().is_multiple_of(self.in_channels) {
            return Err(ResampleError::Failed(format!(
                "{} samples is not a whole number of {}-channel frames",
                input.len(),
                self.in_channels
            )));
        }
        let Some(rate) = self.rate.as_mut() else {
            self.mix.apply(input, out);
            return Ok(());
        };
        rate.in_frames += (input.len() / self.in_channels) as u64;
        let mut rest = input;
        while !rest.is_empty() {
            let room = CHUNK_FRAMES - rate.pending.len() / rate.channels;
            let (piece, tail) = rest.split_at(rest.len().min(room * self.in_channels));
            rest = tail;
            if self.mix_first {
                self.mix.apply(piece, &mut rate.pending);
            } else {
                rate.pending.extend_from_slice(piece);
            }
            if rate.pending.len() == CHUNK_FRAMES * rate.channels {
                rate.run_chunk(&self.mix, self.mix_first, u64::MAX, out)?;
            }
        }
        Ok(())
    }

    /// End of track: pushes out whatever is still buffered, padding with silence, so that
    /// the track's total output is `input_frames * out_rate / in_rate` frames (rounded) with
    /// the resampler's delay removed from the start. Call once, then drop the converter.
    pub fn finish(&mut self, out: &mut Vec<f32>) -> Result<(), ResampleError> {
        let Some(rate) = self.rate.as_mut() else {
            return Ok(());
        };
        let target = (rate.in_frames * rate.out_rate + rate.in_rate / 2) / rate.in_rate;
        // Silence has to push the pending frames, the FFT block rubato holds back and
        // the delay through; bounding the loop guards against a resampler that stalls.
        let held = rate.fft.fft_size_in() * 3 + rate.pending.len() / rate.channels;
        let mut calls_left = held.div_ceil(CHUNK_FRAMES) + 2;
        while rate.out_frames < target {
            if calls_left == 0 {
                return Err(ResampleError::Failed("resampler did not drain".into()));
            }
            calls_left -= 1;
            rate.pending.resize(CHUNK_FRAMES * rate.channels, 0.0);
            rate.run_chunk(&self.mix, self.mix_first, target, out)?;
        }
        rate.pending.clear();
        Ok(())
    }
}

impl Rate {
    /// Resamples the full `pending` chunk and appends at most `limit` total output frames.
    fn run_chunk(
        &mut self,
        mix: &Mix,
        mix_first: bool,
        limit: u64,
        out: &mut Vec<f32>,
    ) -> Result<(), ResampleError> {
        let ch = self.channels;
        let input = InterleavedSlice::new(&self.pending[..], ch, CHUNK_FRAMES).map_err(failed)?;
        let frames_out = self.scratch.len() / ch;
        let mut output =
            InterleavedSlice::new_mut(&mut self.scratch[..], ch, frames_out).map_err(failed)?;
        let (_, produced) = self
            .fft
            .process_into_buffer(&input, &mut output, None)
            .map_err(failed)?;
        self.pending.clear();
        let skip = produced.min(self.delay_left);
        self.delay_left -= skip;
        let wanted = limit.saturating_sub(self.out_frames);
        let keep = (produced - skip).min(usize::try_from(wanted).unwrap_or(usize::MAX));
        self.out_frames += keep as u64;
        let samples = self
            .scratch
            .get(skip * ch..(skip + keep) * ch)
            .ok_or_else(|| failed("resampler reported more output than its buffer holds"))?;
        if mix_first {
            out.extend_from_slice(samples);
        } else {
            mix.apply(samples, out);
        }
        Ok(())
    }
}

fn failed(e: impl std::fmt::Display) -> ResampleError {
    ResampleError::Failed(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f32::consts::TAU;

    fn sine(rate: u32, channels: usize, frames: usize, amp: f32) -> Vec<f32> {
        let at = |i: usize| amp * (TAU * 1000.0 * i as f32 / rate as f32).sin();
        (0..frames)
            .flat_map(|i| std::iter::repeat_n(at(i), channels))
            .collect()
    }

    /// Converts to 44.1 kHz stereo, feeding `input` in pieces of the given frame counts.
    fn convert(input: &[f32], in_rate: u32, in_ch: usize, pieces: &[usize]) -> Vec<f32> {
        let mut conv = Converter::new(in_rate, in_ch, 44100, 2).unwrap();
        let mut out = Vec::new();
        let mut rest = input;
        let mut sizes = pieces.iter().cycle();
        while let (false, Some(&frames)) = (rest.is_empty(), sizes.next()) {
            let (piece, tail) = rest.split_at(frames.saturating_mul(in_ch).min(rest.len()));
            conv.process(piece, &mut out).unwrap();
            rest = tail;
        }
        conv.finish(&mut out).unwrap();
        out
    }

    #[test]
    fn sines_keep_length_pitch_level_and_phase() {
        for (rate, ch) in [(22050, 1), (48000, 2), (96000, 2)] {
            let frames = rate as usize * 2;
            let out = convert(&sine(rate, ch, frames, 0.5), rate, ch, &[usize::MAX]);
            let (got, want) = (out.len() / 2, frames * 44100 / rate as usize);
            assert!(got.abs_diff(want) <= 2, "{rate}: {got} frames, want {want}");

            let (start, end) = (got / 4, got * 3 / 4);
            let left: Vec<f32> = out[start * 2..end * 2].iter().step_by(2).copied().collect();
            let flips = left.windows(2).filter(|w| (w[0] < 0.0) != (w[1] < 0.0));
            let freq = flips.count() as f32 / 2.0 / (left.len() as f32 / 44100.0);
            assert!((freq - 1000.0).abs() < 10.0, "{rate}: {freq} Hz");
            let peak = left.iter().fold(0.0f32, |m, s| m.max(s.abs()));
            assert!((peak - 0.5).abs() < 0.025, "{rate}: peak {peak}");

            // With the delay trimmed, output lines up with the ideal sine to within half a
            // frame (rubato rounds the delay down when its FFT size is odd, e.g. for 96 kHz);
            // a whole-frame shift would give an error of about 0.07 here.
            let ideal = &sine(44100, 1, end, 0.5)[start..];
            let err = left.iter().zip(ideal).map(|(a, b)| (a - b).abs());
            let err = err.fold(0.0f32, f32::max);
            assert!(err < 0.04, "{rate}: phase error {err}");
            if ch == 1 {
                assert!(out.chunks_exact(2).all(|f| f[0] == f[1]));
            }
        }
    }

    #[test]
    fn equal_rate_stereo_is_bit_exact() {
        let input: Vec<f32> = (0..10_000)
            .map(|i| (i * 7919 % 2001) as f32 / 1000.0 - 1.0)
            .collect();
        assert_eq!(convert(&input, 44100, 2, &[1, 333, 4096]), input);
    }

    #[test]
    fn six_channel_downmix_stays_in_range() {
        let square: Vec<f32> = (0..6 * 5000)
            .map(|i| if i * 31 % 7 < 3 { -1.0 } else { 1.0 })
            .collect();
        let out = convert(&square, 44100, 6, &[4096]);
        assert_eq!(out.len(), 2 * 5000);
        assert!(out.iter().all(|s| s.is_finite() && s.abs() <= 1.0));
        let out = convert(&sine(48000, 6, 48000, 0.9), 48000, 6, &[4096]);
        assert!(out.iter().all(|s| s.is_finite() && s.abs() <= 1.0));
    }

    #[test]
    fn channel_maps_follow_the_standard_downmix() {
        let mut out = Vec::new();
        // FL and the (ignored) LFE on one frame, C and SR on the next.
        Mix::new(6, 2)
            .unwrap()
            .apply(&[1., 0., 0., 1., 0., 0., 0., 0., 1., 0., 0., 1.], &mut out);
        let n = 1.0 + 2.0 * FRAC_1_SQRT_2;
        let want = [1.0 / n, 0.0, FRAC_1_SQRT_2 / n, 2.0 * FRAC_1_SQRT_2 / n];
        assert!(
            out.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6),
            "{out:?}"
        );
        out.clear();
        Mix::new(2, 1).unwrap().apply(&[1.0, 0.5], &mut out);
        Mix::new(1, 2).unwrap().apply(&[0.25], &mut out);
        assert_eq!(out, [0.75, 0.25, 0.25]);
    }

    #[test]
    fn uneven_pieces_match_one_piece() {
        for (rate, ch) in [(48000, 2), (22050, 1), (96000, 6)] {
            let input = sine(rate, ch, 30_000, 0.5);
            let whole = convert(&input, rate, ch, &[usize::MAX]);
            assert_eq!(convert(&input, rate, ch, &[1, 333, 4096]), whole);
        }
    }

    #[test]
    fn short_tracks_have_expected_length() {
        assert_eq!(
            convert(&sine(48000, 2, 100, 0.5), 48000, 2, &[7]).len(),
            2 * 92
        );
        assert!(convert(&[], 48000, 2, &[1]).is_empty());
    }

    #[test]
    fn rejects_bad_setup_and_input() {
        let unsupported = |r| matches!(r, Err(ResampleError::Unsupported { .. }));
        assert!(unsupported(Converter::new(0, 2, 44100, 2)));
        assert!(unsupported(Converter::new(48000, 0, 44100, 2)));
        assert!(unsupported(Converter::new(48000, 2, 44100, 6)));
        let mut conv = Converter::new(48000, 2, 44100, 2).unwrap();
        let res = conv.process(&[0.0; 3], &mut Vec::new());
        assert!(matches!(res, Err(ResampleError::Failed(_))));
    }
}
