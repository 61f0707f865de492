//! Opus in Ogg (RFC 7845) through ropus, the Rust port of libopus that also decodes the live
//! Opus sources: station PCM resampled to 48 kHz, 20 ms packets, one Ogg page per call (about
//! every 100 ms), so the ring holds whole pages and a listener starts on a page boundary.
//!
//! Each title is its own chained logical stream: a title change ends the current stream with an
//! end-of-stream page and begins a new one, with a new serial, whose `OpusTags` hold the title.
//! That is how Ogg players learn titles (an Ogg stream carries no ICY blocks). Every ring frame
//! carries its chain's header pages, which a listener joining mid-chain is sent first.
//!
//! The change is seamless: the old stream encodes one more packet and ends there, and the new
//! stream's encoder starts the encoder's lookahead earlier, on samples the old one already
//! played, which its pre-skip then discards. Decoded end to end, no sample is lost or repeated.

use std::sync::Arc;

use bytes::Bytes;
use ogg::writing::{PacketWriteEndInfo, PacketWriter};
use ropus::{Application, Bitrate, Channels, Signal};

use super::{EncodeError, Encoder};
use crate::audio::resample::Converter;
use crate::config::Audio;
use crate::ring::Frame;
use crate::title::StreamTitle;

const CODEC: &str = "opus";
/// The rate every Opus mount is encoded at (Ogg Opus granules count 48 kHz samples).
pub const OPUS_RATE: u32 = 48_000;
/// Samples a channel in one packet: 20 ms.
const PACKET_FRAMES: usize = 960;
/// Largest packet libopus writes (RFC 6716 §3.4: 1275 bytes a frame); room to spare.
const MAX_PACKET: usize = 4000;

/// A live Opus encoder for one mount.
pub struct OpusEncoder {
    channels: usize,
    bitrate_kbps: u32,
    /// Station rate → 48 kHz; none when the station already runs at 48 kHz.
    resampler: Option<Converter>,
    /// 48 kHz PCM not yet encoded (less than a packet between calls).
    pcm: Vec<f32>,
    packet: Vec<u8>,
    chain: Option<Chain>,
    /// A title change waiting for the current stream's last packet.
    next_title: Option<Arc<StreamTitle>>,
    /// Serial of the next logical stream.
    next_serial: u32,
}

/// One logical stream of the chain.
struct Chain {
    opus: ropus::Encoder,
    /// A writer per stream: the `ogg` crate keeps every serial's state for the writer's life.
    writer: PacketWriter<'static, Vec<u8>>,
    serial: u32,
    /// The granule position: where the stream started, plus the 48 kHz samples encoded since,
    /// pre-skip included.
    granule: u64,
    /// Samples the encoder delays its output by (the `OpusHead` pre-skip).
    lookahead: usize,
    title: Arc<StreamTitle>,
    /// Its `OpusHead` and `OpusTags` pages.
    header: Bytes,
}

impl OpusEncoder {
    pub fn new(audio: Audio, bitrate_kbps: u32) -> Result<OpusEncoder, EncodeError> {
        let channels = usize::from(audio.channels);
        if !(1..=2).contains(&channels) {
            return Err(setup(format!(
                "{channels} channels: Opus mounts carry 1 or 2"
            )));
        }
        let resampler = if audio.sample_rate == OPUS_RATE {
            None
        } else {
            Some(
                Converter::new(audio.sample_rate, channels, OPUS_RATE, channels)
                    .map_err(|e| setup(e.to_string()))?,
            )
        };
        let encoder = OpusEncoder {
            channels,
            bitrate_kbps,
            resampler,
            pcm: Vec::with_capacity(PACKET_FRAMES * channels * 8),
            packet: vec![0; MAX_PACKET],
            chain: None,
            next_title: None,
            // Serials only need to differ between neighbouring streams; a random start keeps a
            // restarted radio's streams apart from the ones a player saw before.
            next_serial: fastrand::u32(..),
        };
        // Fail at start, not on the first block, when libopus refuses the settings.
        encoder.opus()?;
        Ok(encoder)
    }

    fn opus(&self) -> Result<ropus::Encoder, EncodeError> {
        let layout = if self.channels == 1 {
            Channels::Mono
        } else {
            Channels::Stereo
        };
        ropus::Encoder::builder(OPUS_RATE, layout, Application::Audio)
            .bitrate(Bitrate::Bits(self.bitrate_kbps * 1000))
            .signal(Signal::Music)
            // Constrained VBR: the quality of VBR, with the bitrate the burst and the queue
            // are sized by.
            .vbr(true)
            .vbr_constraint(true)
            .complexity(10)
            .build()
            .map_err(|e| setup(format!("{} kbps: {e:?}", self.bitrate_kbps)))
    }

    /// Begins a logical stream titled `title` whose first kept sample is at `start` (48 kHz
    /// samples since the first stream began): its header pages go to `out` as a frame of their
    /// own. Chained streams go on counting from where the one before ended, so the timestamps a
    /// player derives from granule positions run on across a title change (RFC 7845 §4.5 lets a
    /// stream start at a later position, as it does for a listener joining mid-stream).
    fn begin(
        &mut self,
        title: &Arc<StreamTitle>,
        start: u64,
        out: &mut Vec<Frame>,
    ) -> Result<(), EncodeError> {
        let opus = self.opus()?;
        let lookahead = opus.lookahead() as usize;
        let serial = self.next_serial;
        self.next_serial = self.next_serial.wrapping_add(1);
        let mut writer = PacketWriter::new(Vec::new());
        let head = opus_head(self.channels, lookahead);
        let tags = opus_tags(title);
        // RFC 7845 §3: the identification header alone on the first page, the comments on
        // their own page(s), audio from a fresh page.
        writer
            .write_packet(head, serial, PacketWriteEndInfo::EndPage, 0)
            .and_then(|()| writer.write_packet(tags, serial, PacketWriteEndInfo::EndPage, 0))
            .map_err(|e| failed(format!("writing the Ogg headers: {e}")))?;
        let header = Bytes::from(std::mem::take(writer.inner_mut()));
        out.push(Frame {
            data: header.clone(),
            title: Arc::clone(title),
            header: Bytes::new(),
        });
        self.chain = Some(Chain {
            opus,
            writer,
            serial,
            granule: start,
            lookahead,
            title: Arc::clone(title),
            header,
        });
        Ok(())
    }

    /// Encodes every whole packet in `self.pcm`, ending the page at the last one; `pad_to_end`
    /// (at shutdown) pads the rest with silence and ends the stream after the real samples.
    fn drain(&mut self, out: &mut Vec<Frame>, pad_to_end: bool) -> Result<(), EncodeError> {
        let packet_len = PACKET_FRAMES * self.channels;
        let mut end_granule = None;
        if pad_to_end && let Some(chain) = &self.chain {
            // The real samples end `lookahead` after what was fed, so that much silence more
            // is encoded, and the last page's granule trims the decoder's output to them.
            let real = self.pcm.len() / self.channels;
            end_granule = Some(chain.granule + (real + chain.lookahead) as u64);
            let padded = (real + chain.lookahead).div_ceil(PACKET_FRAMES) * packet_len;
            self.pcm.resize(padded.max(packet_len), 0.0);
        }
        let mut start = 0;
        while self.pcm.len() - start >= packet_len {
            let Some(chain) = self.chain.as_mut() else {
                return Ok(());
            };
            let input = &self.pcm[start..start + packet_len];
            let n = chain
                .opus
                .encode_float(input, &mut self.packet)
                .map_err(|e| failed(format!("{e:?}")))?;
            start += packet_len;
            chain.granule += PACKET_FRAMES as u64;
            let switching = self.next_title.is_some();
            let last = self.pcm.len() - start < packet_len;
            let (end, granule) = match (switching, last, end_granule) {
                (_, true, Some(g)) => (PacketWriteEndInfo::EndStream, g),
                (true, _, _) => (PacketWriteEndInfo::EndStream, chain.granule),
                (false, true, None) => (PacketWriteEndInfo::EndPage, chain.granule),
                _ => (PacketWriteEndInfo::NormalPacket, chain.granule),
            };
            chain
                .writer
                .write_packet(self.packet[..n].to_vec(), chain.serial, end, granule)
                .map_err(|e| failed(format!("writing an Ogg page: {e}")))?;
            if end != PacketWriteEndInfo::NormalPacket {
                let page = Bytes::from(std::mem::take(chain.writer.inner_mut()));
                out.push(Frame {
                    data: page,
                    title: Arc::clone(&chain.title),
                    header: chain.header.clone(),
                });
            }
            if let Some(title) = self.next_title.take() {
                // The new stream starts `lookahead` samples back, on the tail of the packet
                // just encoded: its pre-skip discards them, and its first kept sample is the
                // one after the old stream's last.
                let replay = chain.lookahead * self.channels;
                start -= replay.min(packet_len);
                let kept = chain.granule - chain.lookahead as u64;
                self.begin(&title, kept, out)?;
            }
        }
        self.pcm.drain(..start.min(self.pcm.len()));
        Ok(())
    }
}

impl Encoder for OpusEncoder {
    fn encode(
        &mut self,
        pcm: &[f32],
        title: &Arc<StreamTitle>,
        out: &mut Vec<Frame>,
    ) -> Result<(), EncodeError> {
        match &self.chain {
            None => self.begin(title, 0, out)?,
            Some(chain) if !Arc::ptr_eq(&chain.title, title) => {
                self.next_title = Some(Arc::clone(title));
            }
            Some(_) => {}
        }
        match self.resampler.as_mut() {
            Some(r) => r
                .process(pcm, &mut self.pcm)
                .map_err(|e| failed(e.to_string()))?,
            None => self.pcm.extend_from_slice(pcm),
        }
        self.drain(out, false)
    }

    fn flush(
        &mut self,
        _title: &Arc<StreamTitle>,
        out: &mut Vec<Frame>,
    ) -> Result<(), EncodeError> {
        if let Some(r) = self.resampler.as_mut() {
            r.finish(&mut self.pcm).map_err(|e| failed(e.to_string()))?;
        }
        // A title change still waiting has no audio of its own left: the stream just ends.
        self.next_title = None;
        self.drain(out, true)
    }
}

/// The identification header (RFC 7845 §5.1): version 1, channels, pre-skip, the input rate,
/// no gain, channel mapping family 0.
fn opus_head(channels: usize, pre_skip: usize) -> Vec<u8> {
    let mut h = Vec::with_capacity(19);
    h.extend_from_slice(b"OpusHead");
    h.push(1);
    h.push(channels as u8);
    h.extend_from_slice(&(pre_skip.min(u16::MAX as usize) as u16).to_le_bytes());
    h.extend_from_slice(&OPUS_RATE.to_le_bytes());
    h.extend_from_slice(&0i16.to_le_bytes());
    h.push(0);
    h
}

/// The comment header (RFC 7845 §5.2) with the title: `ARTIST` and `TITLE` when it reads
/// "Artist - Title", as players show Ogg titles; `TITLE` alone otherwise.
fn opus_tags(title: &StreamTitle) -> Vec<u8> {
    let text = title.text();
    let vendor = concat!("onair ", env!("CARGO_PKG_VERSION"));
    let comments: Vec<String> = match title.artist_and_title() {
        Some((artist, title)) => vec![format!("ARTIST={artist}"), format!("TITLE={title}")],
        None if text.is_empty() => Vec::new(),
        None => vec![format!("TITLE={text}")],
    };
    let mut t = Vec::with_capacity(64 + text.len());
    t.extend_from_slice(b"OpusTags");
    t.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
    t.extend_from_slice(vendor.as_bytes());
    t.extend_from_slice(&(comments.len() as u32).to_le_bytes());
    for c in &comments {
        t.extend_from_slice(&(c.len() as u32).to_le_bytes());
        t.extend_from_slice(c.as_bytes());
    }
    t
}

fn setup(reason: String) -> EncodeError {
    EncodeError::Setup {
        codec: CODEC,
        reason,
    }
}

fn failed(reason: String) -> EncodeError {
    EncodeError::Failed {
        codec: CODEC,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ogg::reading::PacketReader;

    fn tone(rate: u32, seconds: f32) -> Vec<f32> {
        let frames = (rate as f32 * seconds) as usize;
        (0..frames * 2)
            .map(|i| ((i / 2) as f32 * 1000.0 * std::f32::consts::TAU / rate as f32).sin() * 0.5)
            .collect()
    }

    /// Runs `seconds` of tone through an encoder in 100 ms blocks, changing the title at each
    /// of `changes` (block numbers), and returns the ring frames.
    fn encode(rate: u32, seconds: f32, changes: &[usize]) -> Vec<Frame> {
        let audio = Audio {
            sample_rate: rate,
            channels: 2,
        };
        let mut enc = OpusEncoder::new(audio, 96).unwrap();
        let mut title = StreamTitle::new("Artist - First");
        let mut out = Vec::new();
        let block = rate as usize / 10 * 2;
        for (i, chunk) in tone(rate, seconds).chunks(block).enumerate() {
            if changes.contains(&i) {
                title = StreamTitle::new(&format!("Artist - Song {i}"));
            }
            enc.encode(chunk, &title, &mut out).unwrap();
        }
        enc.flush(&title, &mut out).unwrap();
        out
    }

    struct Stream {
        serial: u32,
        tags: Vec<u8>,
        pre_skip: u64,
        last_granule: u64,
        packets: usize,
    }

    fn read(bytes: &[u8]) -> Vec<Stream> {
        let mut reader = PacketReader::new(std::io::Cursor::new(bytes));
        let mut streams: Vec<Stream> = Vec::new();
        while let Some(p) = reader.read_packet().unwrap() {
            if p.first_in_stream() {
                assert!(p.data.starts_with(b"OpusHead"));
                streams.push(Stream {
                    serial: p.stream_serial(),
                    tags: Vec::new(),
                    pre_skip: u64::from(u16::from_le_bytes([p.data[10], p.data[11]])),
                    last_granule: 0,
                    packets: 0,
                });
                continue;
            }
            let s = streams.last_mut().unwrap();
            assert_eq!(
                p.stream_serial(),
                s.serial,
                "streams are chained, never interleaved"
            );
            if p.data.starts_with(b"OpusTags") {
                s.tags = p.data.clone();
            } else {
                s.packets += 1;
                s.last_granule = p.absgp_page();
            }
        }
        streams
    }

    fn has(tags: &[u8], comment: &str) -> bool {
        tags.windows(comment.len()).any(|w| w == comment.as_bytes())
    }

    #[test]
    fn a_title_change_chains_a_stream_and_loses_no_sample() {
        let frames = encode(44_100, 4.0, &[15, 28]);
        let bytes: Vec<u8> = frames.iter().flat_map(|f| f.data.to_vec()).collect();
        let streams = read(&bytes);
        assert_eq!(streams.len(), 3);
        assert!(has(&streams[0].tags, "TITLE=First"));
        assert!(has(&streams[0].tags, "ARTIST=Artist"));
        assert!(has(&streams[1].tags, "TITLE=Song 15"));
        assert!(has(&streams[2].tags, "TITLE=Song 28"));
        assert_ne!(streams[0].serial, streams[1].serial);
        // Each stream starts where the one before ended, and all of them together play the 4 s
        // given, at 48 kHz (the resampler's rounding aside).
        let played = streams[2].last_granule - streams[2].pre_skip;
        assert!(
            played.abs_diff(4 * 48_000) <= 2,
            "{played} samples played for 4 s"
        );
        // The first stream ends on the packet after the change at 1.5 s, which the resampler
        // holds back by up to a chunk (1024 frames at 44.1 kHz) and its delay.
        let first = streams[0].last_granule - streams[0].pre_skip;
        assert!(
            (72_000 - 1_500..72_000 + 2 * 960).contains(&first),
            "first stream plays {first} samples"
        );
    }

    #[test]
    fn every_frame_is_whole_pages_and_knows_its_chain_header() {
        let frames = encode(48_000, 3.0, &[10]);
        let mut header = Bytes::new();
        for f in &frames {
            assert!(f.data.starts_with(b"OggS"), "a frame starts a page");
            if f.header.is_empty() {
                // A chain's header frame: BOS page with OpusHead.
                assert_eq!(f.data[5] & 0x02, 0x02);
                header = f.data.clone();
            } else {
                assert_eq!(
                    f.header, header,
                    "audio carries the header of its own chain"
                );
            }
            // Joining here: the header then the rest decodes as Ogg Opus.
            let start = frames.iter().position(|g| std::ptr::eq(g, f)).unwrap();
            let mut joined = f.header.to_vec();
            for g in &frames[start..] {
                joined.extend_from_slice(&g.data);
            }
            assert!(!read(&joined).is_empty());
        }
    }

    #[test]
    fn the_bitrate_is_the_one_asked_for() {
        let frames = encode(48_000, 10.0, &[]);
        let audio: usize = frames
            .iter()
            .filter(|f| !f.header.is_empty())
            .map(|f| f.data.len())
            .sum();
        let kbps = audio as f64 * 8.0 / 10.0 / 1000.0;
        assert!((80.0..110.0).contains(&kbps), "{kbps:.1} kbps for 96");
    }
}
