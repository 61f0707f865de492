//! AAC CBR in ADTS frames through Fraunhofer FDK AAC (the `fdk-aac` crate builds it from
//! source): LC, HE-AAC (SBR) and HE-AAC v2 (SBR and parametric stereo). FDK takes interleaved
//! 16-bit PCM and gives one access unit per frame's worth (1024 samples a channel for LC, 2048
//! with SBR); what it returns is split on ADTS headers so the ring stores whole frames.
//!
//! FDK is handed exactly one frame of input a call. Given part of a frame, it places the rest
//! by the core's channel count, which parametric stereo halves: the second part of a frame then
//! lands past its buffer (a crash in `FDKaacEnc_EncodeFrame`).

use std::sync::Arc;

use bytes::Bytes;
use fdk_aac::enc::{AudioObjectType, BitRate, ChannelMode, EncoderParams, Transport};

use super::adts::AdtsSplitter;
use super::{EncodeError, Encoder};
use crate::config::{AacProfile, Audio};
use crate::ring::Frame;
use crate::title::StreamTitle;

const CODEC: &str = "aac";
/// The output buffer: an access unit is at most 6144 bits a channel; room to spare.
const OUTPUT_BYTES: usize = 8192;

/// A live AAC encoder for one mount.
pub struct AacEncoder {
    fdk: fdk_aac::enc::Encoder,
    /// Station PCM as 16-bit samples, not yet a whole frame.
    pcm: Vec<i16>,
    /// Samples (all channels) in one frame of input.
    frame_samples: usize,
    output: Vec<u8>,
    splitter: AdtsSplitter,
    /// Whole ADTS frames of one call.
    frames: Vec<Bytes>,
}

impl AacEncoder {
    pub fn new(
        audio: Audio,
        profile: AacProfile,
        bitrate_kbps: u32,
    ) -> Result<AacEncoder, EncodeError> {
        let setup = |reason: String| EncodeError::Setup {
            codec: CODEC,
            reason,
        };
        let channels = match audio.channels {
            1 => ChannelMode::Mono,
            2 => ChannelMode::Stereo,
            n => return Err(setup(format!("{n} channels: AAC mounts carry 1 or 2"))),
        };
        let audio_object_type = match profile {
            AacProfile::Lc => AudioObjectType::Mpeg4LowComplexity,
            AacProfile::He => AudioObjectType::Mpeg4HeAac,
            AacProfile::HeV2 => AudioObjectType::Mpeg4HeAacV2,
        };
        let fdk = fdk_aac::enc::Encoder::new(EncoderParams {
            bit_rate: BitRate::Cbr(bitrate_kbps * 1000),
            sample_rate: audio.sample_rate,
            transport: Transport::Adts,
            channels,
            audio_object_type,
        })
        .map_err(|e| {
            setup(format!(
                "{} at {bitrate_kbps} kbps, {} Hz, {} channel(s): {e}",
                profile.name(),
                audio.sample_rate,
                audio.channels
            ))
        })?;
        let info = fdk
            .info()
            .map_err(|e| setup(format!("reading the encoder's frame length: {e}")))?;
        let frame_samples = info.frameLength as usize * usize::from(audio.channels);
        if frame_samples == 0 {
            return Err(setup("the encoder reports no frame length".into()));
        }
        Ok(AacEncoder {
            fdk,
            pcm: Vec::with_capacity(frame_samples * 2),
            frame_samples,
            output: vec![0; OUTPUT_BYTES],
            splitter: AdtsSplitter::default(),
            frames: Vec::new(),
        })
    }
}

impl Encoder for AacEncoder {
    fn encode(
        &mut self,
        pcm: &[f32],
        title: &Arc<StreamTitle>,
        out: &mut Vec<Frame>,
    ) -> Result<(), EncodeError> {
        // The mixer's limiter keeps samples within ±1; the clamp is for the rounding.
        self.pcm.extend(
            pcm.iter()
                .map(|&s| (s * 32767.0).clamp(-32768.0, 32767.0) as i16),
        );
        let mut start = 0;
        while self.pcm.len() - start >= self.frame_samples {
            let frame = &self.pcm[start..start + self.frame_samples];
            let info =
                self.fdk
                    .encode(frame, &mut self.output)
                    .map_err(|e| EncodeError::Failed {
                        codec: CODEC,
                        reason: e.to_string(),
                    })?;
            if info.input_consumed != frame.len() {
                return Err(EncodeError::Failed {
                    codec: CODEC,
                    reason: format!(
                        "took {} of a {}-sample frame",
                        info.input_consumed,
                        frame.len()
                    ),
                });
            }
            self.splitter
                .push(&self.output[..info.output_size], &mut self.frames);
            start += self.frame_samples;
        }
        self.pcm.drain(..start);
        out.extend(self.frames.drain(..).map(|f| Frame::new(f, title)));
        Ok(())
    }

    fn flush(
        &mut self,
        _title: &Arc<StreamTitle>,
        _out: &mut Vec<Frame>,
    ) -> Result<(), EncodeError> {
        // The crate has no call for FDK's end of stream; what FDK still holds at shutdown is
        // under two frames (50–100 ms), after which the stream ends anyway.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::adts;

    fn tone(seconds: usize) -> Vec<f32> {
        (0..44100 * seconds * 2)
            .map(|i| ((i / 2) as f32 * 440.0 * std::f32::consts::TAU / 44100.0).sin() * 0.5)
            .collect()
    }

    #[test]
    fn each_profile_gives_whole_adts_frames_at_its_rate() {
        let audio = Audio {
            sample_rate: 44100,
            channels: 2,
        };
        // (profile, kbps, samples per channel in a frame)
        for (profile, kbps, frame_samples) in [
            (AacProfile::Lc, 128, 1024),
            (AacProfile::He, 48, 2048),
            (AacProfile::HeV2, 32, 2048),
        ] {
            let mut enc = AacEncoder::new(audio, profile, kbps).unwrap();
            let mut out = Vec::new();
            for chunk in tone(4).chunks(4410 * 2) {
                enc.encode(chunk, &StreamTitle::new("t"), &mut out).unwrap();
            }
            let out: Vec<Bytes> = out.into_iter().map(|f| f.data).collect();
            assert!(out.iter().all(|f| adts::frame_len(f) == Some(f.len())));
            let expected = 4 * 44100 / frame_samples;
            assert!(
                out.len() + 3 >= expected && out.len() <= expected,
                "{profile:?}: {} frames for 4 s, expected about {expected}",
                out.len()
            );
            // CBR: the bytes match the bitrate within a few percent.
            let bytes: usize = out.iter().map(|f| f.len()).sum();
            let kbps_out = bytes as f64 * 8.0 / (out.len() * frame_samples) as f64 * 44.1;
            assert!(
                (kbps_out - f64::from(kbps)).abs() < f64::from(kbps) * 0.05,
                "{profile:?}: {kbps_out:.1} kbps"
            );
        }
    }

    #[test]
    fn the_limits_the_config_allows_are_ones_fdk_takes() {
        for (sample_rate, channels) in [(22050, 2), (44100, 1), (44100, 2), (48000, 2)] {
            let audio = Audio {
                sample_rate,
                channels,
            };
            for profile in [AacProfile::Lc, AacProfile::He, AacProfile::HeV2] {
                if profile == AacProfile::HeV2 && channels != 2 {
                    continue; // refused by the config
                }
                if profile != AacProfile::Lc && sample_rate < 32000 {
                    continue; // refused by the config
                }
                let range = profile.bitrates(audio);
                for kbps in [*range.start(), *range.end()] {
                    let made = AacEncoder::new(audio, profile, kbps);
                    assert!(
                        made.is_ok(),
                        "{profile:?} {channels} ch {kbps} kbps: {:?}",
                        made.err()
                    );
                }
            }
        }
    }
}
