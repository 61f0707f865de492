//! Encoders: station PCM in, whole compressed frames out, one encoder per mount. Adding a codec means
//! one file here and one arm in [`for_mount`].

#[cfg(feature = "aac")]
mod aac;
pub mod adts;
mod mp3;
pub mod mp3_frame;
mod opus;

use std::sync::Arc;

use crate::config::{Audio, Codec, MountConfig};
use crate::ring::Frame;
use crate::title::StreamTitle;

#[cfg(feature = "aac")]
pub use aac::AacEncoder;
pub use mp3::Mp3Encoder;
pub use opus::{OPUS_RATE, OpusEncoder};

/// Why an encoder failed.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The encoder could not be set up with these parameters: fatal at start.
    #[error("cannot set up the {codec} encoder: {reason}")]
    Setup { codec: &'static str, reason: String },
    /// The encoder rejected input mid-stream.
    #[error("{codec} encoder failed: {reason}")]
    Failed { codec: &'static str, reason: String },
}

/// One output format. Implementations are synchronous and run on the pipeline thread.
pub trait Encoder: Send {
    /// Consumes interleaved f32 PCM at the station rate, produced while `title` was on air,
    /// and appends complete frames to `out` as the ring stores them.
    fn encode(
        &mut self,
        pcm: &[f32],
        title: &Arc<StreamTitle>,
        out: &mut Vec<Frame>,
    ) -> Result<(), EncodeError>;
    /// Pushes out what the encoder still buffers (at shutdown).
    fn flush(&mut self, title: &Arc<StreamTitle>, out: &mut Vec<Frame>) -> Result<(), EncodeError>;
}

/// Builds the encoder a mount asks for.
pub fn for_mount(mount: &MountConfig, audio: Audio) -> Result<Box<dyn Encoder>, EncodeError> {
    match mount.codec {
        Codec::Mp3 => Ok(Box::new(Mp3Encoder::new(audio, mount.bitrate_kbps)?)),
        #[cfg(feature = "aac")]
        Codec::Aac(profile) => Ok(Box::new(AacEncoder::new(
            audio,
            profile,
            mount.bitrate_kbps,
        )?)),
        Codec::Opus => Ok(Box::new(OpusEncoder::new(audio, mount.bitrate_kbps)?)),
        // The config refuses AAC mounts in a build without the encoder.
        #[cfg(not(feature = "aac"))]
        Codec::Aac(_) => Err(EncodeError::Setup {
            codec: "aac",
            reason: "this build has no AAC encoder (the `aac` feature)".into(),
        }),
    }
}

/// MIME type a codec's stream is served with, known before any encoder exists.
pub fn content_type(codec: Codec) -> &'static str {
    match codec {
        Codec::Mp3 => "audio/mpeg",
        Codec::Aac(_) => "audio/aac",
        Codec::Opus => "audio/ogg",
    }
}
