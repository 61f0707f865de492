//! Decodes what a listener received with symphonia, as a player would.

use std::io::Cursor;

use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::errors::Error;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

/// What the decoded stream holds.
#[derive(Debug)]
pub struct Decoded {
    pub codec: String,
    pub sample_rate: u32,
    pub channels: usize,
    /// Frames (samples per channel) decoded.
    pub frames: u64,
    pub decode_errors: u64,
    /// Interleaved samples.
    pub pcm: Vec<f32>,
}

impl Decoded {
    pub fn seconds(&self) -> f64 {
        self.frames as f64 / f64::from(self.sample_rate)
    }

    /// RMS level of a stretch of audio, in frames.
    pub fn rms(&self, from_frame: usize, to_frame: usize) -> f64 {
        let ch = self.channels;
        let s =
            &self.pcm[(from_frame * ch).min(self.pcm.len())..(to_frame * ch).min(self.pcm.len())];
        if s.is_empty() {
            return 0.0;
        }
        (s.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>() / s.len() as f64).sqrt()
    }
}

/// Decodes a whole byte buffer; panics when it is not audio at all.
pub fn decode(bytes: Vec<u8>) -> Decoded {
    let mss = MediaSourceStream::new(Box::new(Cursor::new(bytes)), Default::default());
    let mut hint = Hint::new();
    hint.with_extension("mp3");
    let mut format = symphonia::default::get_probe()
        .probe(
            &hint,
            mss,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .expect("stream probes as audio");
    let track = format.default_track(TrackType::Audio).expect("audio track");
    let track_id = track.id;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .expect("audio params")
        .clone();
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .expect("decoder");
    let mut out = Decoded {
        codec: decoder.codec_info().short_name.to_string(),
        sample_rate: params.sample_rate.unwrap_or(0),
        channels: params.channels.as_ref().map_or(0, |c| c.count()),
        frames: 0,
        decode_errors: 0,
        pcm: Vec::new(),
    };
    loop {
        let packet = match format.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(Error::DecodeError(_)) => {
                out.decode_errors += 1;
                continue;
            }
            Err(_) => break,
        };
        if packet.track_id != track_id {
            continue;
        }
        match decoder.decode(&packet) {
            Ok(buf) => {
                out.sample_rate = buf.spec().rate();
                out.channels = buf.spec().channels().count();
                out.frames += buf.frames() as u64;
                let mut v: Vec<f32> = Vec::new();
                buf.copy_to_vec_interleaved(&mut v);
                out.pcm.extend_from_slice(&v);
            }
            Err(_) => out.decode_errors += 1,
        }
    }
    out
}
