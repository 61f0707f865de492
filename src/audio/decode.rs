//! The only file that speaks symphonia: a track's bytes in, interleaved f32 PCM out, with the track's
//! tags. The format is found by probing the content, never by the file name. Tracks are read from
//! their [`TrackData`] (a file on local disk, usually) through symphonia's bounded read-ahead
//! buffer, so decoding a two-hour mix costs the same memory as a three-minute song.
//!
//! Error policy: a damaged packet is counted and skipped and decoding goes on (a track that is cut
//! short plays its valid part); a track with no decodable audio at all, or with stream parameters
//! outside what a radio plays (sample rates outside 8–384 kHz, more than 8 channels, multichannel
//! Opus), is refused when it is opened, so the scheduler skips it before it reaches the air.

use std::time::Duration;

use symphonia::core::codecs::audio::well_known::CODEC_ID_OPUS;
use symphonia::core::codecs::audio::{AudioDecoder, AudioDecoderOptions};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader, SeekMode, SeekTo, TrackType};
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::{MetadataOptions, MetadataRevision, RawValue, StandardTag};
use symphonia::core::units::{Time, TimeBase};

use crate::catalog::{TrackData, TrackReader};

/// Sample rates a track may have: anything else is a damaged or hostile header (rubato sizes
/// its buffers by the rate ratio).
pub const SAMPLE_RATES: std::ops::RangeInclusive<u32> = 8_000..=384_000;
/// The most channels a track may have.
pub const MAX_CHANNELS: usize = 8;

impl MediaSource for TrackReader {
    fn is_seekable(&self) -> bool {
        true
    }

    fn byte_len(&self) -> Option<u64> {
        Some(self.len())
    }
}

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
    /// The integrated loudness (LUFS) its ReplayGain or R128 tags imply, when they hold a
    /// plausible one: a provisional gain until the track is analysed.
    pub tag_loudness_lufs: Option<f64>,
}

/// An open track, decoding packet by packet.
pub struct TrackDecoder {
    format: Box<dyn FormatReader>,
    codec: Codec,
    track_id: u32,
    time_base: Option<TimeBase>,
    sample_rate: u32,
    channels: usize,
    /// Frames still to drop after a seek (the reader lands before the asked position).
    discard: u64,
    /// Damaged packets met so far in this track.
    errors: u64,
    /// Damaged packets in a row; too many means the rest of the file is garbage.
    errors_in_row: u32,
    /// The tags of a new Ogg chain, until taken.
    chain_tags: Option<TrackTags>,
    /// A live stream, which has no end whatever its first bytes declare ([`Self::open_live`]).
    endless: bool,
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
    /// The OpusHead output gain (Q7.8 dB), kept for a reset.
    gain: i16,
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
            gain,
            scratch: vec![0.0; OPUS_MAX_FRAMES * channels],
            skip: pre_skip,
        })
    }

    /// Forgets the decoding state (after a seek); the pre-skip belongs to the stream's start.
    fn reset(&mut self) -> Result<(), DecodeError> {
        let layout = if self.channels == 1 {
            ropus::Channels::Mono
        } else {
            ropus::Channels::Stereo
        };
        let mut decoder = ropus::Decoder::new(48_000, layout)
            .map_err(|e| DecodeError::Corrupt(format!("opus: {e}")))?;
        if self.gain != 0 {
            decoder
                .set_gain(i32::from(self.gain))
                .map_err(|e| DecodeError::Corrupt(format!("opus output gain: {e}")))?;
        }
        self.decoder = decoder;
        self.skip = 0;
        Ok(())
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

/// The codec of a format's first audio stream, and what it plays.
struct Stream {
    codec: Codec,
    codec_name: String,
    track_id: u32,
    time_base: Option<TimeBase>,
    sample_rate: u32,
    channels: usize,
    duration: Option<Duration>,
}

impl Stream {
    /// What the stream itself says; the container's tags are read on top.
    fn tags(&self) -> TrackTags {
        TrackTags {
            codec: self.codec_name.clone(),
            sample_rate: self.sample_rate,
            channels: self.channels,
            duration: self.duration,
            ..TrackTags::default()
        }
    }
}

/// Prepares a decoder for the first audio stream of `format` (at its start, or after a new Ogg
/// chain began), refusing parameters outside what a radio plays.
fn open_stream(format: &dyn FormatReader) -> Result<Stream, DecodeError> {
    let track = format
        .default_track(TrackType::Audio)
        .ok_or_else(|| DecodeError::Unsupported("no audio track".into()))?;
    let track_id = track.id;
    let time_base = track.time_base;
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
        // A container may claim any frame count: one too large for a Duration is no duration.
        (Some(n), Some(rate)) if rate > 0 => Duration::try_from_secs_f64(
            n.saturating_sub(u64::from(pre_skip)) as f64 / f64::from(rate),
        )
        .ok(),
        _ => None,
    };

    if let Some(rate) = params.sample_rate
        && !SAMPLE_RATES.contains(&rate)
    {
        return Err(DecodeError::Unsupported(format!(
            "sample rate {rate} Hz (8 to 384 kHz are played)"
        )));
    }
    if let Some(n) = params.channels.as_ref().map(|c| c.count())
        && n > MAX_CHANNELS
    {
        return Err(DecodeError::Unsupported(format!(
            "{n} channels (at most {MAX_CHANNELS} are played)"
        )));
    }
    let (codec, codec_name, sample_rate, channels) = if params.codec == CODEC_ID_OPUS {
        let channels = params.channels.as_ref().map_or(2, |c| c.count());
        if channels > 2 {
            // Multistream (surround) Opus needs a channel mapping this decoder does not do:
            // refused rather than decoded as garbage.
            return Err(DecodeError::Unsupported(format!(
                "Opus with {channels} channels (multistream)"
            )));
        }
        let channels = channels.max(1);
        let decoder = OpusDecoder::new(channels, pre_skip as usize, params.extra_data.as_deref())?;
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

    Ok(Stream {
        codec,
        codec_name,
        track_id,
        time_base,
        sample_rate,
        channels,
        duration,
    })
}

impl TrackDecoder {
    /// Probes the track and prepares a decoder for its first audio stream.
    pub fn open(data: &TrackData) -> Result<(TrackDecoder, TrackTags), DecodeError> {
        if data.is_empty() {
            return Err(DecodeError::Empty);
        }
        TrackDecoder::open_source(Box::new(data.reader()), &Hint::new())
    }

    /// A live stream, probed as [`Self::open_source`] does, decoded as having no end. A source
    /// that sends files one after another (ezstream, ices, a DJ's playlist) sends each file's
    /// Xing/Info frame count; the first one would otherwise mark everything after that first
    /// file as padding, to be trimmed away.
    pub fn open_live(
        source: Box<dyn MediaSource>,
        hint: &Hint,
    ) -> Result<(TrackDecoder, TrackTags), DecodeError> {
        let (mut decoder, tags) = TrackDecoder::open_source(source, hint)?;
        decoder.endless = true;
        Ok((decoder, tags))
    }

    /// Probes any byte source (a live stream: not seekable, no length) the same way; `hint`
    /// says what the sender claims, which the content may overrule.
    pub fn open_source(
        source: Box<dyn MediaSource>,
        hint: &Hint,
    ) -> Result<(TrackDecoder, TrackTags), DecodeError> {
        let mss = MediaSourceStream::new(source, Default::default());
        let mut format = symphonia::default::get_probe()
            .probe(
                hint,
                mss,
                FormatOptions::default(),
                // Cover art can be megabytes; it is of no use on air.
                MetadataOptions::default(),
            )
            .map_err(|e| match e {
                SymError::Unsupported(_) => DecodeError::NotAudio,
                other => classify(other),
            })?;
        let stream = open_stream(&*format)?;
        let mut tags = stream.tags();
        read_tags(&mut *format, stream.track_id, &mut tags);

        let decoder = TrackDecoder {
            format,
            codec: stream.codec,
            track_id: stream.track_id,
            time_base: stream.time_base,
            sample_rate: stream.sample_rate,
            channels: stream.channels,
            discard: 0,
            errors: 0,
            errors_in_row: 0,
            endless: false,
            chain_tags: None,
        };
        Ok((decoder, tags))
    }

    /// Moves to `position` from the start of the track, exactly: the reader lands on a packet
    /// at or before it, and the frames in between are dropped as they are decoded. Fails (the
    /// track then plays from where it was) when the container cannot seek.
    pub fn seek(&mut self, position: Duration) -> Result<(), DecodeError> {
        let time = Time::try_from_secs_f64(position.as_secs_f64())
            .ok_or_else(|| DecodeError::Unsupported(format!("seek to {position:?}")))?;
        let seeked = self
            .format
            .seek(
                SeekMode::Accurate,
                SeekTo::Time {
                    time,
                    track_id: Some(self.track_id),
                },
            )
            .map_err(|e| DecodeError::Unsupported(format!("seek to {position:?}: {e}")))?;
        let ticks = seeked
            .required_ts
            .get()
            .saturating_sub(seeked.actual_ts.get())
            .max(0) as u64;
        self.discard = match self.time_base {
            Some(tb) => {
                let (numer, denom) = (u64::from(tb.numer.get()), u64::from(tb.denom.get()));
                ticks
                    .saturating_mul(numer)
                    .saturating_mul(u64::from(self.sample_rate))
                    / denom
            }
            None => ticks,
        };
        match &mut self.codec {
            Codec::Symphonia(decoder) => decoder.reset(),
            Codec::Opus(decoder) => decoder.reset()?,
        }
        Ok(())
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

    /// Switches to the stream of a new Ogg chain, keeping its tags for [`Self::take_chain_tags`].
    fn next_chain(&mut self) -> Result<(), DecodeError> {
        let stream = open_stream(&*self.format)?;
        let mut tags = stream.tags();
        read_latest_tags(&mut *self.format, stream.track_id, &mut tags);
        self.codec = stream.codec;
        self.track_id = stream.track_id;
        self.time_base = stream.time_base;
        self.sample_rate = stream.sample_rate;
        self.channels = stream.channels;
        self.chain_tags = Some(tags);
        Ok(())
    }

    /// The tags of the chain that began since the last call, if one did.
    pub fn take_chain_tags(&mut self) -> Option<TrackTags> {
        self.chain_tags.take()
    }

    /// Decodes the next packet, appending interleaved samples to `out`. Returns `false` at the end
    /// of the track (including the point where a truncated file stops making sense).
    pub fn next_packet(&mut self, out: &mut Vec<f32>) -> bool {
        let start = out.len();
        loop {
            let mut packet = match self.format.next_packet() {
                Ok(Some(p)) => p,
                Ok(None) => return false,
                // A cut-off file ends with an unexpected EOF: the valid part has played.
                Err(SymError::IoError(_)) => return false,
                // A new Ogg chain (a live source's next song): a decoder for its stream.
                Err(SymError::ResetRequired) => match self.next_chain() {
                    Ok(()) => continue,
                    Err(_) => return false,
                },
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
            if self.endless {
                packet.trim_end = symphonia::core::units::Duration::ZERO;
            }
            let ok = match &mut self.codec {
                Codec::Symphonia(decoder) => match decoder.decode(&packet) {
                    Ok(buf) => {
                        let channels = buf.spec().channels().count();
                        let rate = buf.spec().rate();
                        // A stream may change its parameters mid-file (chained Ogg); ones outside
                        // what a radio plays are damage, not audio.
                        if channels == 0 || channels > MAX_CHANNELS || !SAMPLE_RATES.contains(&rate)
                        {
                            false
                        } else {
                            self.channels = channels;
                            self.sample_rate = rate;
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
                silence_non_finite(&mut out[start..]);
                self.drop_discarded(out, start);
                return true;
            }
            if self.damaged() {
                return false;
            }
        }
    }

    /// Drops what a seek still owes from the frames appended after `start`.
    fn drop_discarded(&mut self, out: &mut Vec<f32>, start: usize) {
        if self.discard == 0 || self.channels == 0 {
            return;
        }
        let frames = ((out.len() - start) / self.channels) as u64;
        let drop = frames.min(self.discard);
        self.discard -= drop;
        out.drain(start..start + drop as usize * self.channels);
    }

    /// Records one damaged packet; true when the track should be given up.
    fn damaged(&mut self) -> bool {
        self.errors += 1;
        self.errors_in_row += 1;
        self.errors_in_row >= MAX_ERRORS_IN_ROW
    }
}

/// Float PCM (a WAV of IEEE floats) carries any bit pattern. A NaN or an infinity would go on into
/// the resampler and the encoders, whose filter state carries it from one block to the next, so
/// such samples become silence here.
fn silence_non_finite(samples: &mut [f32]) {
    for s in samples.iter_mut().filter(|s| !s.is_finite()) {
        *s = 0.0;
    }
}

/// Opens a track and decodes its first packets, so that a file that probes as audio but holds
/// none (random bytes with a false MP3 sync) is refused before it is scheduled.
pub fn probe(data: &TrackData) -> Result<TrackTags, DecodeError> {
    let (mut decoder, tags) = TrackDecoder::open(data)?;
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
    read_revisions(format, track_id, tags, false);
}

/// The tags of the newest metadata revision only: a new Ogg chain's comments.
fn read_latest_tags(format: &mut dyn FormatReader, track_id: u32, tags: &mut TrackTags) {
    read_revisions(format, track_id, tags, true);
}

fn read_revisions(
    format: &mut dyn FormatReader,
    track_id: u32,
    tags: &mut TrackTags,
    latest_only: bool,
) {
    let mut revisions: Vec<MetadataRevision> = Vec::new();
    let mut log = format.metadata();
    while let Some(rev) = log.pop() {
        revisions.push(rev);
    }
    if let Some(rev) = log.current() {
        revisions.push(rev.clone());
    }
    if latest_only && revisions.len() > 1 {
        revisions.drain(..revisions.len() - 1);
    }
    let (mut rg_gain, mut rg_reference, mut r128_gain) = (None, None, None);
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
                Some(StandardTag::ReplayGainTrackGain(v)) => rg_gain = rg_gain.or(decibels(v)),
                Some(StandardTag::ReplayGainReferenceLoudness(v)) => {
                    rg_reference = rg_reference.or(decibels(v))
                }
                _ if tag.raw.key.eq_ignore_ascii_case("R128_TRACK_GAIN") => {
                    if let RawValue::String(v) = &tag.raw.value {
                        r128_gain = r128_gain.or(v.trim().parse::<i32>().ok());
                    } else if let RawValue::SignedInt(v) = tag.raw.value {
                        r128_gain = r128_gain.or(i32::try_from(v).ok());
                    }
                }
                _ => {}
            }
        }
    }
    tags.tag_loudness_lufs = tag_loudness(rg_gain, rg_reference, r128_gain);
}

/// A level as tags write it: "-6.54 dB", "+3.2", "89 dB".
fn decibels(text: &str) -> Option<f64> {
    let t = text.trim();
    let t = t
        .strip_suffix("dB")
        .or_else(|| t.strip_suffix("db"))
        .or_else(|| t.strip_suffix("LUFS"))
        .unwrap_or(t)
        .trim();
    t.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// The loudness the tags imply. ReplayGain 2 gains are relative to -18 LUFS (or to the
/// reference they name; a positive one such as mp3gain's "89 dB" is the same -18); R128 gains
/// (Ogg Opus, Q7.8 dB) to -23 LUFS. Gains beyond ±20 dB are not trusted.
fn tag_loudness(rg_gain: Option<f64>, rg_reference: Option<f64>, r128: Option<i32>) -> Option<f64> {
    let plausible = |g: &f64| g.abs() <= 20.0;
    if let Some(gain) = rg_gain.filter(plausible) {
        let reference = match rg_reference {
            Some(r) if (-30.0..=-5.0).contains(&r) => r,
            _ => -18.0,
        };
        return Some(reference - gain);
    }
    r128.map(|q| f64::from(q) / 256.0)
        .filter(plausible)
        .map(|gain| -23.0 - gain)
}

fn non_blank(s: &str) -> Option<String> {
    let t = s.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    (!t.is_empty()).then(|| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem(bytes: Vec<u8>) -> TrackData {
        TrackData::from_bytes(bytes)
    }

    /// A PCM WAV file of a 440 Hz tone.
    fn wav(rate: u32, channels: u16, seconds: f32) -> Vec<u8> {
        wav_of(rate, channels, seconds, |i, rate| {
            (i as f32 * 440.0 * std::f32::consts::TAU / rate as f32).sin() * 16000.0
        })
    }

    /// A PCM WAV file whose frame `i` has the value `sample(i, rate)`.
    fn wav_of(rate: u32, channels: u16, seconds: f32, sample: impl Fn(u32, u32) -> f32) -> Vec<u8> {
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
            let s = sample(i, rate) as i16;
            for _ in 0..channels {
                v.extend_from_slice(&s.to_le_bytes());
            }
        }
        v
    }

    #[test]
    fn decodes_a_wav_whole() {
        let (mut d, tags) = TrackDecoder::open(&mem(wav(22050, 1, 1.5))).unwrap();
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
        assert!(matches!(probe(&mem(Vec::new())), Err(DecodeError::Empty)));
        let mut rng = fastrand::Rng::with_seed(3);
        let garbage: Vec<u8> = (0..100_000).map(|_| rng.u8(..)).collect();
        let err = probe(&mem(garbage)).unwrap_err();
        assert!(
            matches!(err, DecodeError::NotAudio | DecodeError::Corrupt(_)),
            "{err:?}"
        );
        assert!(matches!(
            probe(&mem(b"just some text, not a song".to_vec())),
            Err(DecodeError::NotAudio)
        ));
    }

    #[test]
    fn decodes_ogg_opus_to_its_exact_length() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/media/07-opus.opus"
        );
        let (mut d, tags) = TrackDecoder::open(&mem(std::fs::read(path).unwrap())).unwrap();
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

    #[test]
    fn a_chained_ogg_stream_plays_every_chain_and_gives_each_chains_tags() {
        let media = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/media/");
        for file in ["06-vorbis.ogg", "07-opus.opus"] {
            // Two Ogg streams back to back are a chained stream (what ices2 and ezstream send);
            // the second one's title differs by a letter.
            let one = std::fs::read(format!("{media}{file}")).unwrap();
            let title = if file.contains("opus") {
                "Overture"
            } else {
                "Valley"
            };
            let renamed = format!("{}X", &title[..title.len() - 1]);
            let two = rewrite_ogg(one.clone(), title.as_bytes(), renamed.as_bytes());
            let chained = [one, two].concat();
            let (mut d, tags) = TrackDecoder::open(&mem(chained)).unwrap();
            let mut pcm = Vec::new();
            let mut chains = Vec::new();
            while d.next_packet(&mut pcm) {
                chains.extend(d.take_chain_tags());
            }
            assert_eq!(d.errors(), 0, "{file}");
            let seconds = pcm.len() as f64 / f64::from(tags.sample_rate) / 2.0;
            assert!(
                (seconds - 30.0).abs() < 0.1,
                "{file}: {seconds} s, not both chains"
            );
            assert_eq!(chains.len(), 1, "{file}: one new chain");
            let second = tags.title.as_deref().map(|t| t.replace(title, &renamed));
            assert_ne!(second, tags.title);
            assert_eq!(chains[0].title, second, "{file}: the second chain's title");
        }
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
        fix_page_crc(&mut ogg[..page_len]);
        ogg
    }

    /// Recomputes the CRC of one whole Ogg page, after its bytes were changed.
    fn fix_page_crc(page: &mut [u8]) {
        page[22..26].fill(0);
        // Ogg's CRC-32: polynomial 0x04c11db7, no reflection, initial 0, no final xor.
        let mut crc = 0u32;
        for &b in page.iter() {
            crc ^= u32::from(b) << 24;
            for _ in 0..8 {
                crc = if crc & 0x8000_0000 != 0 {
                    (crc << 1) ^ 0x04c1_1db7
                } else {
                    crc << 1
                };
            }
        }
        page[22..26].copy_from_slice(&crc.to_le_bytes());
    }

    /// Replaces `from` with `to` (as long) in an Ogg stream, fixing the CRC of its page.
    fn rewrite_ogg(mut ogg: Vec<u8>, from: &[u8], to: &[u8]) -> Vec<u8> {
        assert_eq!(from.len(), to.len());
        let at = ogg.windows(from.len()).position(|w| w == from).unwrap();
        let mut page = 0;
        loop {
            assert_eq!(&ogg[page..page + 4], b"OggS");
            let segments = usize::from(ogg[page + 26]);
            let body = page + 27 + segments;
            let end = body
                + ogg[page + 27..body]
                    .iter()
                    .map(|&l| usize::from(l))
                    .sum::<usize>();
            if at < end {
                ogg[at..at + to.len()].copy_from_slice(to);
                fix_page_crc(&mut ogg[page..end]);
                return ogg;
            }
            page = end;
        }
    }

    #[test]
    fn opus_output_gain_is_applied() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/media/07-opus.opus"
        );
        let original = std::fs::read(path).unwrap();
        let rms = |bytes: Vec<u8>| {
            let (mut d, _) = TrackDecoder::open(&mem(bytes)).unwrap();
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
    fn non_finite_float_samples_become_silence() {
        // Found by the `decode` fuzz target: an IEEE-float WAV (8 kHz mono) whose samples are
        // NaN, +inf, -inf and 0.5.
        let wav = b"RIFF\x34\0\0\0WAVEfmt \x10\0\0\0\x03\0\x01\0\x40\x1f\0\0\0\x7d\0\0\x04\0\x20\0\
data\x10\0\0\0\0\0\xc0\x7f\0\0\x80\x7f\0\0\x80\xff\0\0\0\x3f";
        let (mut d, _) = TrackDecoder::open(&mem(wav.to_vec())).unwrap();
        let mut pcm = Vec::new();
        while d.next_packet(&mut pcm) {}
        assert_eq!(pcm, [0.0, 0.0, 0.0, 0.5]);
    }

    #[test]
    fn a_cut_wav_plays_its_valid_part() {
        let mut w = wav(44100, 2, 1.0);
        w.truncate(w.len() / 2);
        let (mut d, _) = TrackDecoder::open(&mem(w)).unwrap();
        let mut pcm = Vec::new();
        while d.next_packet(&mut pcm) {}
        assert!(pcm.len() > 40_000 && pcm.len() <= 44_100, "{}", pcm.len());
    }

    #[test]
    fn seeks_exactly_to_a_position() {
        // A ramp: every frame says where it is.
        let w = wav_of(8000, 1, 3.0, |i, _| (i % 30000) as f32);
        let (mut d, _) = TrackDecoder::open(&mem(w)).unwrap();
        d.seek(Duration::from_millis(1500)).unwrap();
        let mut pcm = Vec::new();
        assert!(d.next_packet(&mut pcm));
        let first = (pcm[0] * 32768.0).round() as i32;
        assert_eq!(first, 12000, "frame 12000 is at 1.5 s");
        while d.next_packet(&mut pcm) {}
        assert_eq!(pcm.len(), 12000);
    }

    #[test]
    fn refuses_stream_parameters_a_radio_does_not_play() {
        let low = wav(8000, 1, 0.5);
        let mut one_hz = low.clone();
        one_hz[24..28].copy_from_slice(&1u32.to_le_bytes());
        assert!(matches!(
            TrackDecoder::open(&mem(one_hz)),
            Err(DecodeError::Unsupported(_))
        ));
        let nine = wav(8000, 9, 0.2);
        let err = probe(&mem(nine)).unwrap_err();
        assert_eq!(err.reason(), "unsupported", "{err}");
        assert!(probe(&mem(wav(8000, 8, 0.2))).is_ok());
    }

    #[test]
    fn tags_imply_a_loudness_on_one_reference() {
        assert_eq!(decibels("-6.54 dB"), Some(-6.54));
        assert_eq!(decibels(" +3.2 "), Some(3.2));
        assert_eq!(decibels("loud"), None);
        // ReplayGain 2: -18 LUFS reference.
        assert_eq!(tag_loudness(Some(-6.0), None, None), Some(-12.0));
        // mp3gain's "89 dB" reference is the same -18.
        assert_eq!(tag_loudness(Some(-6.0), Some(89.0), None), Some(-12.0));
        assert_eq!(tag_loudness(Some(2.0), Some(-23.0), None), Some(-25.0));
        // R128 (Opus): Q7.8 dB relative to -23 LUFS; -5 dB is -1280.
        assert_eq!(tag_loudness(None, None, Some(-1280)), Some(-18.0));
        // Implausible gains are no information.
        assert_eq!(tag_loudness(Some(40.0), None, None), None);
        assert_eq!(tag_loudness(None, None, Some(256 * 30)), None);
    }
}
