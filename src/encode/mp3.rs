//! MP3 CBR through LAME (mp3lame-encoder bundles it). LAME's output arrives in pieces that do not
//! align with MPEG frames, so it goes through a [`FrameSplitter`] and the ring stores whole frames:
//! that is what lets a listener start on a frame boundary.

use std::sync::Arc;

use bytes::Bytes;
use mp3lame_encoder::{
    Bitrate, Builder, FlushNoGap, InterleavedPcm, Mode, MonoPcm, Quality, VbrMode,
};

use super::mp3_frame::{FrameHeader, FrameSplitter};
use super::{EncodeError, Encoder};
use crate::config::Audio;
use crate::ring::Frame;
use crate::title::StreamTitle;

const CODEC: &str = "mp3";

/// A live MP3 encoder for one mount.
pub struct Mp3Encoder {
    lame: mp3lame_encoder::Encoder,
    channels: u16,
    /// LAME output, reused between calls.
    scratch: Vec<u8>,
    splitter: FrameSplitter,
    frames: Vec<(FrameHeader, Bytes)>,
}

fn bitrate(kbps: u32) -> Option<Bitrate> {
    Some(match kbps {
        8 => Bitrate::Kbps8,
        16 => Bitrate::Kbps16,
        24 => Bitrate::Kbps24,
        32 => Bitrate::Kbps32,
        40 => Bitrate::Kbps40,
        48 => Bitrate::Kbps48,
        64 => Bitrate::Kbps64,
        80 => Bitrate::Kbps80,
        96 => Bitrate::Kbps96,
        112 => Bitrate::Kbps112,
        128 => Bitrate::Kbps128,
        160 => Bitrate::Kbps160,
        192 => Bitrate::Kbps192,
        224 => Bitrate::Kbps224,
        256 => Bitrate::Kbps256,
        320 => Bitrate::Kbps320,
        _ => return None,
    })
}

impl Mp3Encoder {
    pub fn new(audio: Audio, bitrate_kbps: u32) -> Result<Mp3Encoder, EncodeError> {
        let setup = |reason: String| EncodeError::Setup {
            codec: CODEC,
            reason,
        };
        let brate = bitrate(bitrate_kbps)
            .ok_or_else(|| setup(format!("{bitrate_kbps} kbps is not an MP3 bitrate")))?;
        let mut b = Builder::new().ok_or_else(|| setup("LAME could not allocate".into()))?;
        let channels =
            u8::try_from(audio.channels).map_err(|_| setup("too many channels".into()))?;
        b.set_num_channels(channels)
            .map_err(|e| setup(format!("channels: {e:?}")))?;
        b.set_sample_rate(audio.sample_rate)
            .map_err(|e| setup(format!("sample rate: {e:?}")))?;
        // LAME picks a lower output rate by itself at low bitrates; every mount must carry the
        // station rate so that one PCM stream feeds all of them.
        b.set_output_sample_rate(std::num::NonZeroU32::new(audio.sample_rate))
            .map_err(|e| setup(format!("output sample rate: {e:?}")))?;
        b.set_brate(brate)
            .map_err(|e| setup(format!("bitrate: {e:?}")))?;
        // LAME defaults to VBR; a radio stream is CBR so that players and bandwidth stay predictable.
        b.set_vbr_mode(VbrMode::Off)
            .map_err(|e| setup(format!("cbr: {e:?}")))?;
        // A Xing/LAME tag describes a finished file; in a live stream it would be a bogus first frame.
        b.set_to_write_vbr_tag(false)
            .map_err(|e| setup(format!("vbr tag: {e:?}")))?;
        b.set_mode(if channels == 1 {
            Mode::Mono
        } else {
            Mode::JointStereo
        })
        .map_err(|e| setup(format!("mode: {e:?}")))?;
        b.set_quality(Quality::Good)
            .map_err(|e| setup(format!("quality: {e:?}")))?;
        let lame = b.build().map_err(|e| setup(format!("{e:?}")))?;
        Ok(Mp3Encoder {
            lame,
            channels: audio.channels,
            scratch: Vec::new(),
            splitter: FrameSplitter::new(),
            frames: Vec::new(),
        })
    }

    fn split(&mut self, title: &Arc<StreamTitle>, out: &mut Vec<Frame>) {
        self.splitter.push(&self.scratch, &mut self.frames);
        self.scratch.clear();
        out.extend(self.frames.drain(..).map(|(_, f)| Frame::new(f, title)));
    }
}

impl Encoder for Mp3Encoder {
    fn encode(
        &mut self,
        pcm: &[f32],
        title: &Arc<StreamTitle>,
        out: &mut Vec<Frame>,
    ) -> Result<(), EncodeError> {
        let frames = pcm.len() / usize::from(self.channels.max(1));
        self.scratch
            .reserve(mp3lame_encoder::max_required_buffer_size(frames));
        let result = if self.channels == 1 {
            self.lame.encode_to_vec(MonoPcm(pcm), &mut self.scratch)
        } else {
            self.lame
                .encode_to_vec(InterleavedPcm(&pcm[..frames * 2]), &mut self.scratch)
        };
        result.map_err(|e| EncodeError::Failed {
            codec: CODEC,
            reason: format!("{e:?}"),
        })?;
        self.split(title, out);
        Ok(())
    }

    fn flush(&mut self, title: &Arc<StreamTitle>, out: &mut Vec<Frame>) -> Result<(), EncodeError> {
        self.scratch.reserve(7200);
        self.lame
            .flush_to_vec::<FlushNoGap>(&mut self.scratch)
            .map_err(|e| EncodeError::Failed {
                codec: CODEC,
                reason: format!("{e:?}"),
            })?;
        self.split(title, out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cbr_frames_come_out_whole_at_the_right_size() {
        let audio = Audio {
            sample_rate: 44100,
            channels: 2,
        };
        let mut enc = Mp3Encoder::new(audio, 128).unwrap();
        let pcm: Vec<f32> = (0..44100 * 2)
            .map(|i| ((i / 2) as f32 * 440.0 * std::f32::consts::TAU / 44100.0).sin() * 0.5)
            .collect();
        let title = StreamTitle::new("t");
        let mut out = Vec::new();
        for chunk in pcm.chunks(4410 * 2) {
            enc.encode(chunk, &title, &mut out).unwrap();
        }
        enc.flush(&title, &mut out).unwrap();
        let out: Vec<Bytes> = out.into_iter().map(|f| f.data).collect();
        assert!(
            out.len() >= 38,
            "one second is about 38 frames, got {}",
            out.len()
        );
        for f in &out {
            let h =
                FrameHeader::parse([f[0], f[1], f[2], f[3]]).expect("frame starts with a header");
            assert_eq!(
                (h.bitrate_kbps, h.sample_rate, h.frame_len),
                (128, 44100, f.len())
            );
        }
    }
}
