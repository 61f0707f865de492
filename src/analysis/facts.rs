//! The analyser: one decode pass of a track through the `ebur128` crate (BS.1770 / EBU R128),
//! at the track's own sample rate, giving its integrated loudness, loudness range, true peak,
//! loudest 3 s, and the 100 ms series of momentary loudness from which cues are derived. Memory
//! is the envelope (two bytes per 100 ms: 72 KB for an hour), never the audio.
//!
//! It is CPU work for a thread of its own: [`Pace`] caps its speed so that a burst of new tracks
//! never starves the pipeline.

use std::time::{Duration, Instant};

use ebur128::{Channel, EbuR128, Mode};

use crate::audio::decode::{DecodeError, TrackDecoder};
use crate::catalog::TrackData;

/// Bumped whenever what [`analyse`] measures changes: sidecars of another version are redone.
pub const ANALYSER_VERSION: u32 = 1;
/// Momentary loudness is read this often.
pub const STEP: Duration = Duration::from_millis(100);
/// What the envelope stores for silence (and anything quieter): -70 LUFS, the absolute gate.
pub const FLOOR_LUFS: f64 = -70.0;

/// Why a track could not be analysed.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    /// Not decodable: the track is skipped where it plays anyway.
    #[error("cannot decode: {0}")]
    Decode(#[from] DecodeError),
    /// The meter refused the stream's parameters.
    #[error("loudness meter: {0}")]
    Meter(String),
}

/// What one pass measures: raw facts, not decisions.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    pub sample_rate: u32,
    pub channels: usize,
    /// Seconds of audio decoded.
    pub duration_s: f64,
    /// Integrated loudness (LUFS); `None` for a track that is silence.
    pub integrated_lufs: Option<f64>,
    /// Loudness range (LU).
    pub range_lu: Option<f64>,
    /// True peak over every channel (dBTP); `None` for digital silence.
    pub true_peak_dbtp: Option<f64>,
    /// Loudest short-term (3 s) loudness (LUFS): the measure for short items.
    pub max_short_term_lufs: Option<f64>,
    /// Momentary loudness every [`STEP`].
    pub momentary: Envelope,
}

/// Momentary loudness every 100 ms, in tenths of a LU, floored at [`FLOOR_LUFS`]. The value at
/// index `i` is the loudness of the 400 ms that end at `(i + 1) × 100 ms`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope(pub Vec<i16>);

impl Envelope {
    fn push(&mut self, lufs: f64) {
        let v = if lufs.is_finite() {
            lufs.max(FLOOR_LUFS)
        } else {
            FLOOR_LUFS
        };
        self.0.push((v * 10.0).round() as i16);
    }

    /// Loudness (LUFS) of block `i`.
    pub fn at(&self, i: usize) -> f64 {
        f64::from(self.0[i]) / 10.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// When block `i` ends.
    pub fn end_of(i: usize) -> Duration {
        STEP * (i as u32 + 1)
    }
}

/// Keeps an analysis at or under `max_speed` × real time by sleeping between blocks.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    started: Instant,
    max_speed: f64,
}

impl Pace {
    /// `max_speed` × real time; 0 or less means no cap.
    pub fn new(max_speed: f64) -> Pace {
        Pace {
            started: Instant::now(),
            max_speed,
        }
    }

    /// Called with the audio done so far: sleeps until that much audio is due at the cap.
    pub fn wait(&self, audio: Duration) {
        if self.max_speed <= 0.0 {
            return;
        }
        let due = audio.div_f64(self.max_speed);
        if let Some(ahead) = due.checked_sub(self.started.elapsed()) {
            std::thread::sleep(ahead);
        }
    }
}

/// Decodes `data` whole and measures it, paced by `pace`. Blocking: for the analysis thread.
pub fn analyse(data: &TrackData, pace: &Pace) -> Result<Facts, AnalysisError> {
    let (mut decoder, _) = TrackDecoder::open(data)?;
    let mut pcm = Vec::new();
    // The first packet says what the stream really is (a header may be wrong).
    let mut more = decoder.next_packet(&mut pcm);
    let (rate, channels) = (decoder.sample_rate(), decoder.channels().max(1));
    let meter_err = |e: ebur128::Error| AnalysisError::Meter(e.to_string());
    let mode = Mode::I | Mode::LRA | Mode::TRUE_PEAK | Mode::M | Mode::S;
    let mut meter = EbuR128::new(channels as u32, rate, mode).map_err(meter_err)?;
    if channels == 1 {
        // A mono track plays on both channels: measure it as it is heard.
        meter.set_channel(0, Channel::DualMono).map_err(meter_err)?;
    }
    let step = (rate as usize * STEP.as_millis() as usize / 1000).max(1) * channels;
    let (mut block, mut envelope, mut frames) =
        (Vec::with_capacity(step), Envelope::default(), 0u64);
    let mut max_short = f64::NEG_INFINITY;
    loop {
        let mut taken = 0;
        while taken < pcm.len() {
            let room = step - block.len();
            let take = room.min(pcm.len() - taken);
            block.extend_from_slice(&pcm[taken..taken + take]);
            taken += take;
            if block.len() == step {
                meter.add_frames_f32(&block).map_err(meter_err)?;
                frames += (block.len() / channels) as u64;
                envelope.push(meter.loudness_momentary().map_err(meter_err)?);
                if frames >= u64::from(rate) * 3 {
                    max_short = max_short.max(meter.loudness_shortterm().map_err(meter_err)?);
                }
                block.clear();
                if envelope.len() % 10 == 0 {
                    pace.wait(Duration::from_secs_f64(frames as f64 / f64::from(rate)));
                }
            }
        }
        pcm.clear();
        if !more {
            break;
        }
        more = decoder.next_packet(&mut pcm);
        if (decoder.sample_rate(), decoder.channels().max(1)) != (rate, channels) {
            // A chained stream that changes format: what came before is measured.
            tracing::debug!(
                rate,
                channels,
                "stream parameters changed mid-track; analysis stops there"
            );
            break;
        }
    }
    let whole = block.len() - block.len() % channels;
    if whole > 0 {
        meter.add_frames_f32(&block[..whole]).map_err(meter_err)?;
        frames += (whole / channels) as u64;
    }
    let finite = |v: f64| (v.is_finite() && v > FLOOR_LUFS - 1.0).then_some(v);
    let peak = (0..channels as u32)
        .map(|c| meter.true_peak(c).unwrap_or(0.0))
        .fold(0.0, f64::max);
    Ok(Facts {
        sample_rate: rate,
        channels,
        duration_s: frames as f64 / f64::from(rate),
        integrated_lufs: finite(meter.loudness_global().map_err(meter_err)?),
        range_lu: meter.loudness_range().ok().filter(|v| v.is_finite()),
        true_peak_dbtp: (peak > 0.0).then(|| 20.0 * peak.log10()),
        max_short_term_lufs: finite(max_short),
        momentary: envelope,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A 16-bit PCM WAV: `sample(frame)` for each channel.
    pub fn wav(rate: u32, channels: u16, seconds: f64, sample: impl Fn(usize) -> f64) -> Vec<u8> {
        let frames = (f64::from(rate) * seconds) as usize;
        let data_len = (frames * usize::from(channels) * 2) as u32;
        let mut v = Vec::new();
        v.extend_from_slice(b"RIFF");
        v.extend_from_slice(&(36 + data_len).to_le_bytes());
        v.extend_from_slice(b"WAVEfmt ");
        v.extend_from_slice(&16u32.to_le_bytes());
        v.extend_from_slice(&1u16.to_le_bytes());
        v.extend_from_slice(&channels.to_le_bytes());
        v.extend_from_slice(&rate.to_le_bytes());
        v.extend_from_slice(&(rate * u32::from(channels) * 2).to_le_bytes());
        v.extend_from_slice(&(channels * 2).to_le_bytes());
        v.extend_from_slice(&16u16.to_le_bytes());
        v.extend_from_slice(b"data");
        v.extend_from_slice(&data_len.to_le_bytes());
        for i in 0..frames {
            let s = (sample(i).clamp(-1.0, 1.0) * 32767.0) as i16;
            for _ in 0..channels {
                v.extend_from_slice(&s.to_le_bytes());
            }
        }
        v
    }

    /// A 1 kHz tone whose amplitude is `amp(t)` (t in seconds).
    pub fn tone(rate: u32, seconds: f64, amp: impl Fn(f64) -> f64) -> Vec<u8> {
        wav(rate, 2, seconds, |i| {
            let t = i as f64 / f64::from(rate);
            amp(t) * (std::f64::consts::TAU * 1000.0 * t).sin()
        })
    }

    pub fn facts_of(bytes: Vec<u8>) -> Facts {
        analyse(&TrackData::from_bytes(bytes), &Pace::new(0.0)).unwrap()
    }

    #[test]
    fn a_full_scale_sine_measures_as_the_standard_says() {
        // EBU Tech 3341: a 1 kHz sine on both channels reads as many LUFS as its peak has dBFS
        // (-23 dBFS reads -23 LUFS); 0.5 is -6.02 dBFS.
        let f = facts_of(tone(48_000, 10.0, |_| 0.5));
        let i = f.integrated_lufs.unwrap();
        assert!((i + 6.0).abs() < 0.2, "I = {i}");
        let tp = f.true_peak_dbtp.unwrap();
        assert!((tp + 6.0).abs() < 0.2, "TP = {tp}");
        assert!((f.duration_s - 10.0).abs() < 0.01);
        assert_eq!(f.momentary.len(), 100);
        // Steady: every block after the first 400 ms reads the same.
        assert!((f.momentary.at(50) - i).abs() < 0.3);
        assert!(f.range_lu.unwrap() < 0.5);
    }

    #[test]
    fn silence_has_no_loudness_and_a_mono_track_counts_on_both_sides() {
        let f = facts_of(wav(44_100, 2, 2.0, |_| 0.0));
        assert_eq!((f.integrated_lufs, f.true_peak_dbtp), (None, None));
        assert!(f.momentary.0.iter().all(|&v| v == -700));
        let stereo = facts_of(tone(44_100, 5.0, |_| 0.25))
            .integrated_lufs
            .unwrap();
        let mono = facts_of(wav(44_100, 1, 5.0, |i| {
            0.25 * (std::f64::consts::TAU * 1000.0 * i as f64 / 44_100.0).sin()
        }))
        .integrated_lufs
        .unwrap();
        assert!((stereo - mono).abs() < 0.1, "stereo {stereo}, mono {mono}");
    }

    #[test]
    fn the_pace_caps_the_speed() {
        let pace = Pace::new(50.0);
        let started = Instant::now();
        pace.wait(Duration::from_secs(5));
        // 5 s of audio at 50x real time is due after 100 ms.
        assert!(started.elapsed() >= Duration::from_millis(95));
        Pace::new(0.0).wait(Duration::from_secs(3600));
    }
}
