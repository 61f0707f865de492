//! The only file that speaks symphonia: a track's bytes in, interleaved f32 PCM out, with the track's
//! tags. The format is found by probing the content, never by the file name.
//!
//! Error policy: a damaged packet is counted and skipped and decoding goes on (a track that is cut
//! short plays its valid part); a track with no decodable audio at all is refused when it is opened,
//! so the scheduler skips it before it reaches the air.

use std::io::Cursor;
use std::time::Duration;

use bytes::Bytes;
use symphonia::core::codecs::audio::well_known::CODEC_ID_OPUS;
use symphonia::core::codecs::audio::{AudioDecoder, AudioDecoderOptions};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::{MetadataOptions, MetadataRevision, StandardTag};

/// Why a track cannot be played.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Damaged or not audio: skip this track.
    #[error("unreadable track: {0}")]
    Corrupt(String),
    /// A container or codec we do not decode: skip this track.
    #[error("unsupported codec or container: {0}")]
    Unsupported(String),
    /// Zero bytes.
    #[error("empty file")]
    Empty,
    /// No known container or stream header anywhere in the content: not an audio file.
    #[error("not audio: no known format found in the content")]
    NotAudio,
}

impl DecodeError {
    /// Label for `onair_tracks_skipped_total{reason}`.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Corrupt(_) => "corrupt",
            DecodeError::Unsupported(_) => "unsupported",
            DecodeError::Empty => "empty",
            DecodeError::NotAudio => "not_audio",
        }
    }
}

fn classify(e: SymError) -> DecodeError {
    match e {
        SymError::Unsupported(what) => DecodeError::Unsupported(what.to_string()),
        other => DecodeError::Corrupt(other.to_string()),
    }
}

/// What the tags and the stream header say about a track.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrackTags {
    pub title: Option<String>,
    pub artist: Option<String>,
    /// Codec name for logs ("mp3", "flac", …).
    pub codec: String,
    pub sample_rate: u32,
    pub channels: usize,
    pub duration: Option<Duration>,
}

/// An open track, decoding packet by packet.
pub struct TrackDecoder {
    format: Box<dyn FormatReader>,
    codec: Codec,
    track_id: u32,
    sample_rate: u32,
    channels: usize,
    /// Damaged packets met so far in this track.
    errors: u64,
    /// Damaged packets in a row; too many means the rest of the file is garbage.
    errors_in_row: u32,
}

enum Codec {
    Symphonia(Box<dyn AudioDecoder>),
    /// symphonia 0.6 demuxes Ogg Opus but has no Opus decoder.
    Opus(Box<OpusDecoder>),
}

/// Ogg Opus packets to PCM with ropus, a pure-Rust port of the reference (xiph) decoder.
struct OpusDecoder {
    decoder: ropus::Decoder,
    channels: usize,
    /// Room for the longest packet (120 ms).
    scratch: Vec<f32>,
    /// Pre-skip frames still to drop. symphonia 0.6 gives the OpusHead pre-skip only as the
    /// track's delay, not as packet trims; a `trim_start` that does carry it counts towards it.
    skip: usize,
}

impl OpusDecoder {
    /// `head` is the OpusHead packet, whose output gain RFC 7845 says a player must apply.
    fn new(
        channels: usize,
        pre_skip: usize,
        head: Option<&[u8]>,
    ) -> Result<OpusDecoder, DecodeError> {
        let layout = if channels == 1 {
            ropus::Channels::Mono
        } else {
            ropus::Channels::Stereo
        };
        let mut decoder = ropus::Decoder::new(48_000, layout)
            .map_err(|e| DecodeError::Corrupt(format!("opus: {e}")))?;
        let gain = head.map_or(0, opus_output_gain);
        if gain != 0 {
            decoder
                .set_gain(i32::from(gain))
                .map_err(|e| DecodeError::Corrupt(format!("opus output gain {gain}: {e}")))?;
        }
        Ok(OpusDecoder {
            decoder,
            channels,
            scratch: vec![0.0; OPUS_MAX_FRAMES * channels],
            skip: pre_skip,
        })
    }

    /// Decodes one packet and appends its interleaved samples to `out`, less the frames cut by
    /// the packet's trims and by the pre-skip. `false` for a damaged packet.
    fn decode(
        &mut self,
        data: &[u8],
        trim_start: usize,
        trim_end: usize,
        out: &mut Vec<f32>,
    ) -> bool {
        // ropus takes an empty packet as a lost one and conceals a whole buffer (120 ms) of it.
        if data.is_empty() {
            return false;
        }
        let Ok(frames) =
            self.decoder
                .decode_float(data, &mut self.scratch, ropus::DecodeMode::Normal)
        else {
            return false;
        };
        let ch = self.channels;
        let frames = frames.min(self.scratch.len() / ch);
        let start = trim_start.max(self.skip).min(frames);
        self.skip = self.skip.saturating_sub(start);
        let end = frames.saturating_sub(trim_end).max(start);
        out.extend_from_slice(&self.scratch[start * ch..end * ch]);
        true
    }
}

/// The output gain of an OpusHead packet, in Q7.8 dB (bytes 16–17, little-endian); 0 when the
/// packet is too short to hold one.
fn opus_output_gain(head: &[u8]) -> i16 {
    match head.get(16..18) {
        Some(&[lo, hi]) => i16::from_le_bytes([lo, hi]),
        _ => 0,
    }
}

/// Consecutive damaged packets after which the rest of a track is treated as garbage.
const MAX_ERRORS_IN_ROW: u32 = 64;
/// Opus packets are at most 120 ms: 5760 frames at 48 kHz.
const OPUS_MAX_FRAMES: usize = 5760;

impl TrackDecoder {
    /// Probes the bytes and prepares a decoder for the first audio track.
    pub fn open(bytes: Bytes) -> Result<(TrackDecoder, TrackTags), DecodeError> {
        if bytes.is_empty() {
            return Err(DecodeError::Empty);
        }
        let mss = MediaSourceStream::new(Box::new(Cursor::new(bytes)), Default::default());
        let mut format = symphonia::default::get_probe()
            .probe(
                &Hint::new(),
                mss,
                FormatOptions::default(),
                // Cover art can be megabytes; it is of no use on air.
                MetadataOptions::default(),
            )
            .map_err(|e| match e {
                SymError::Unsupported(_) => DecodeError::NotAudio,
                other => classify(other),
            })?;
        let track = format
            .default_track(TrackType::Audio)
            .ok_or_else(|| DecodeError::Unsupported("no audio track".into()))?;
        let track_id = track.id;
        let params = track
            .codec_params
            .as_ref()
            .and_then(|p| p.audio())
            .ok_or_else(|| DecodeError::Unsupported("audio track without codec parameters".into()))?
            .clone();
        // An Ogg Opus stream's length counts the encoder's pre-skip, which is not played.
        let pre_skip = if params.codec == CODEC_ID_OPUS {
            track.delay.unwrap_or(0)
        } else {
            0
        };
        let duration = match (track.num_frames, params.sample_rate) {
            (Some(n), Some(rate)) if rate > 0 => Some(Duration::from_secs_f64(
                n.saturating_sub(u64::from(pre_skip)) as f64 / f64::from(rate),
            )),
            _ => None,
        };

        let (codec, codec_name, sample_rate, channels) = if params.codec == CODEC_ID_OPUS {
            let channels = params
                .channels
                .as_ref()
                .map_or(2, |c| c.count())
                .clamp(1, 2);
            let decoder =
                OpusDecoder::new(channels, pre_skip as usize, params.extra_data.as_deref())?;
            (
                Codec::Opus(Box::new(decoder)),
                "opus".to_string(),
                48_000,
                channels,
            )
        } else {
            let decoder = symphonia::default::get_codecs()
                .make_audio_decoder(&params, &AudioDecoderOptions::default())
                .map_err(classify)?;
            let name = decoder.codec_info().short_name.to_string();
            let rate = params
                .sample_rate
                .ok_or_else(|| DecodeError::Corrupt("no sample rate".into()))?;
            let channels = params.channels.as_ref().map_or(0, |c| c.count());
            (Codec::Symphonia(decoder), name, rate, channels)
        };

        let mut tags = TrackTags {
            codec: codec_name,
            sample_rate,
            channels,
            duration,
            ..TrackTags::default()
        };
        read_tags(&mut *format, track_id, &mut tags);

        let decoder = TrackDecoder {
            format,
            codec,
            track_id,
            sample_rate,
            channels,
            errors: 0,
            errors_in_row: 0,
        };
        Ok((decoder, tags))
    }

    /// Sample rate of the PCM this decoder yields.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Channel count of the PCM this decoder yields (known for sure after the first packet).
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Damaged packets skipped so far.
    pub fn errors(&self) -> u64 {
        self.errors
    }

    /// Decodes the next packet, appending interleaved samples to `out`. Returns `false` at the end
    /// of the track (including the point where a truncated file stops making sense).
    pub fn next_packet(&mut self, out: &mut Vec<f32>) -> bool {
        loop {
            let packet = match self.format.next_packet() {
                Ok(Some(p)) => p,
                Ok(None) => return false,
                // A cut-off file ends with an unexpected EOF: the valid part has played.
                Err(SymError::IoError(_)) | Err(SymError::ResetRequired) => return false,
                Err(SymError::DecodeError(_)) => {
                    if self.damaged() {
                        return false;
                    }
                    continue;
                }
                Err(_) => return false,
            };
            if packet.track_id != self.track_id {
                continue;
            }
            let ok = match &mut self.codec {
                Codec::Symphonia(decoder) => match decoder.decode(&packet) {
                    Ok(buf) => {
                        let channels = buf.spec().channels().count();
                        if channels == 0 {
                            false
                        } else {
                            self.channels = channels;
                            self.sample_rate = buf.spec().rate();
                            // symphonia's copy_to_vec overwrites from the start; append instead.
                            let start = out.len();
                            out.resize(start + buf.samples_interleaved(), 0.0);
                            buf.copy_to_slice_interleaved(&mut out[start..]);
                            true
                        }
                    }
                    Err(_) => false,
                },
                Codec::Opus(decoder) => decoder.decode(
                    &packet.data,
                    packet.trim_start.get() as usize,
                    packet.trim_end.get() as usize,
                    out,
                ),
            };
            if ok {
                self.errors_in_row = 0;
                return true;
            }
            if self.damaged() {
                return false;
            }
        }
    }

    /// Records one damaged packet; true when the track should be given up.
    fn damaged(&mut self) -> bool {
        self.errors += 1;
        self.errors_in_row += 1;
        self.errors_in_row >= MAX_ERRORS_IN_ROW
    }
}

/// Opens a track and decodes its first packets, so that a file that probes as audio but holds
/// none (random bytes with a false MP3 sync) is refused before it is scheduled.
pub fn probe(bytes: Bytes) -> Result<TrackTags, DecodeError> {
    let (mut decoder, tags) = TrackDecoder::open(bytes)?;
    let mut pcm = Vec::new();
    let mut good = 0;
    for _ in 0..16 {
        let before = pcm.len();
        if !decoder.next_packet(&mut pcm) {
            break;
        }
        if pcm.len() > before {
            good += 1;
        }
        pcm.clear();
    }
    if good == 0 {
        return Err(DecodeError::Corrupt(format!(
            "no decodable audio ({} damaged packets)",
            decoder.errors()
        )));
    }
    // Garbage can decode a few lucky packets; real audio rarely has more damage than content.
    if decoder.errors() > good {
        return Err(DecodeError::Corrupt(format!(
            "mostly damaged: {} bad packets out of the first {}",
            decoder.errors(),
            decoder.errors() + good
        )));
    }
    Ok(tags)
}

fn read_tags(format: &mut dyn FormatReader, track_id: u32, tags: &mut TrackTags) {
    let mut revisions: Vec<MetadataRevision> = Vec::new();
    let mut log = format.metadata();
    while let Some(rev) = log.pop() {
        revisions.push(rev);
    }
    if let Some(rev) = log.current() {
        revisions.push(rev.clone());
    }
    for rev in &revisions {
        let per_track = rev
            .per_track
            .iter()
            .filter(|t| u64::from(track_id) == t.track_id)
            .flat_map(|t| t.metadata.tags.iter());
        for tag in rev.media.tags.iter().chain(per_track) {
            match &tag.std {
                Some(StandardTag::TrackTitle(v)) if tags.title.is_none() => {
                    tags.title = non_blank(v)
                }
                Some(StandardTag::Artist(v)) if tags.artist.is_none() => tags.artist = non_blank(v),
                _ => {}
            }
        }
    }
}

fn non_blank(s: &str) -> Option<String> {
    let t = s.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    (!t.is_empty()).then(|| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PCM WAV file of a 440 Hz tone.
    fn wav(rate: u32, channels: u16, seconds: f32) -> Vec<u8> {
        let frames = (rate as f32 * seconds) as u32;
        let data_len = frames * u32::from(channels) * 2;
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
            let s =
                ((i as f32 * 440.0 * std::f32::consts::TAU / rate as f32).sin() * 16000.0) as i16;
            for _ in 0..channels {
                v.extend_from_slice(&s.to_le_bytes());
            }
        }
        v
    }

    #[test]
    fn decodes_a_wav_whole() {
        let (mut d, tags) = TrackDecoder::open(Bytes::from(wav(22050, 1, 1.5))).unwrap();
        assert_eq!((tags.sample_rate, tags.channels), (22050, 1));
        assert_eq!(tags.title, None);
        let mut pcm = Vec::new();
        while d.next_packet(&mut pcm) {}
        assert_eq!(pcm.len(), 33075);
        assert!(pcm.iter().all(|s| s.abs() <= 0.5));
        assert_eq!(d.errors(), 0);
    }

    #[test]
    fn refuses_what_is_not_audio() {
        assert!(matches!(probe(Bytes::new()), Err(DecodeError::Empty)));
        let mut rng = fastrand::Rng::with_seed(3);
        let garbage: Vec<u8> = (0..100_000).map(|_| rng.u8(..)).collect();
        let err = probe(Bytes::from(garbage)).unwrap_err();
        assert!(
            matches!(err, DecodeError::NotAudio | DecodeError::Corrupt(_)),
            "{err:?}"
        );
        assert!(matches!(
            probe(Bytes::from_static(b"just some text, not a song")),
            Err(DecodeError::NotAudio)
        ));
    }

    #[test]
    fn decodes_ogg_opus_to_its_exact_length() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/media/07-opus.opus"
        );
        let (mut d, tags) = TrackDecoder::open(Bytes::from(std::fs::read(path).unwrap())).unwrap();
        assert_eq!(
            (tags.codec.as_str(), tags.sample_rate, tags.channels),
            ("opus", 48_000, 2)
        );
        assert_eq!(tags.duration, Some(Duration::from_secs(15)));
        let mut pcm = Vec::new();
        while d.next_packet(&mut pcm) {}
        assert_eq!(d.errors(), 0);
        // 15 s exactly: the 312-frame pre-skip and the end padding are both cut.
        assert_eq!(pcm.len(), 15 * 48_000 * 2);
        let rms = (pcm.iter().map(|s| s * s).sum::<f32>() / pcm.len() as f32).sqrt();
        assert!(rms > 0.03 && rms < 0.12, "rms {rms}");
    }

    /// Rewrites the output gain in an Ogg Opus file's OpusHead (the first page) and fixes the
    /// page's CRC, as an encoder with `--gain` would have written it.
    fn with_opus_gain(mut ogg: Vec<u8>, gain_q8: i16) -> Vec<u8> {
        assert_eq!(&ogg[..4], b"OggS");
        let segments = usize::from(ogg[26]);
        let body = 27 + segments;
        let page_len = body + ogg[27..body].iter().map(|&l| usize::from(l)).sum::<usize>();
        assert_eq!(&ogg[body..body + 8], b"OpusHead");
        ogg[body + 16..body + 18].copy_from_slice(&gain_q8.to_le_bytes());
        ogg[22..26].fill(0);
        // Ogg's CRC-32: polynomial 0x04c11db7, no reflection, initial 0, no final xor.
        let mut crc = 0u32;
        for &b in &ogg[..page_len] {
            crc ^= u32::from(b) << 24;
            for _ in 0..8 {
                crc = if crc & 0x8000_0000 != 0 {
                    (crc << 1) ^ 0x04c1_1db7
                } else {
                    crc << 1
                };
            }
        }
        ogg[22..26].copy_from_slice(&crc.to_le_bytes());
        ogg
    }

    #[test]
    fn opus_output_gain_is_applied() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/media/07-opus.opus"
        );
        let original = std::fs::read(path).unwrap();
        let rms = |bytes: Vec<u8>| {
            let (mut d, _) = TrackDecoder::open(Bytes::from(bytes)).unwrap();
            let mut pcm = Vec::new();
            while d.next_packet(&mut pcm) {}
            assert_eq!(d.errors(), 0);
            (pcm.iter().map(|s| s * s).sum::<f32>() / pcm.len() as f32).sqrt()
        };
        let plain = rms(with_opus_gain(original.clone(), 0));
        // -6.02 dB halves the amplitude.
        let quieter = rms(with_opus_gain(original, -1541));
        let ratio = quieter / plain;
        assert!((ratio - 0.5).abs() < 0.01, "ratio {ratio}");
        assert_eq!(opus_output_gain(&[0; 10]), 0);
    }

    #[test]
    fn a_cut_wav_plays_its_valid_part() {
        let mut w = wav(44100, 2, 1.0);
        w.truncate(w.len() / 2);
        let (mut d, _) = TrackDecoder::open(Bytes::from(w)).unwrap();
        let mut pcm = Vec::new();
        while d.next_packet(&mut pcm) {}
        assert!(pcm.len() > 40_000 && pcm.len() <= 44_100, "{}", pcm.len());
    }
}
