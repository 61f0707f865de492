//! MPEG audio Layer III frame headers and the splitter that cuts encoder
//! output into whole frames. A listener that joins mid-stream must be handed
//! bytes that start on a frame boundary, or its decoder has to hunt for sync
//! and may lock onto a false one; so the broadcast ring stores whole frames
//! only, and this module is the one place that knows where frames begin and
//! end. LAME hands out its output in pieces that ignore frame boundaries, so
//! the splitter buffers until a frame is complete.

use bytes::{Buf, Bytes, BytesMut};

const HEADER_LEN: usize = 4;

/// What one MPEG audio frame header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Sampling rate in Hz; it also identifies the MPEG version.
    pub sample_rate: u32,
    /// Bitrate of this frame in kbit/s.
    pub bitrate_kbps: u32,
    /// 1 for mono, 2 for stereo, joint stereo and dual channel.
    pub channels: u8,
    /// PCM samples per channel that the frame decodes to.
    pub samples_per_frame: u32,
    /// Length of the whole frame in bytes, header and padding included.
    pub frame_len: usize,
}

impl FrameHeader {
    /// Parses the 4 header bytes; None when they are not a valid Layer III
    /// header (bad sync, reserved version/layer/bitrate/sample-rate/emphasis,
    /// free-format bitrate).
    pub fn parse(b: [u8; 4]) -> Option<FrameHeader> {
        if b[0] != 0xFF || b[1] & 0xE0 != 0xE0 {
            return None;
        }
        // Layer bits 0b01 mean Layer III.
        if (b[1] >> 1) & 0b11 != 0b01 {
            return None;
        }
        let (mpeg1, rates) = match (b[1] >> 3) & 0b11 {
            0b11 => (true, [44_100, 48_000, 32_000]),
            0b10 => (false, [22_050, 24_000, 16_000]),
            0b00 => (false, [11_025, 12_000, 8_000]),
            _ => return None,
        };
        const MPEG1_KBPS: [u32; 15] = [
            0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
        ];
        const MPEG2_KBPS: [u32; 15] =
            [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160];
        // Index 0 is free format (length unknowable from the header) and 15 is
        // reserved; both are rejected.
        let bitrate_kbps = match usize::from(b[2] >> 4) {
            i @ 1..=14 if mpeg1 => MPEG1_KBPS[i],
            i @ 1..=14 => MPEG2_KBPS[i],
            _ => return None,
        };
        let sample_rate = *rates.get(usize::from((b[2] >> 2) & 0b11))?;
        // Reserved emphasis never occurs in real streams, so rejecting it
        // filters out more false syncs for free.
        if b[3] & 0b11 == 0b10 {
            return None;
        }
        let padding = u32::from((b[2] >> 1) & 1);
        let (samples_per_frame, coeff) = if mpeg1 { (1152, 144) } else { (576, 72) };
        let frame_len = coeff * 1000 * bitrate_kbps / sample_rate + padding;
        Some(FrameHeader {
            sample_rate,
            bitrate_kbps,
            channels: if b[3] >> 6 == 0b11 { 1 } else { 2 },
            samples_per_frame,
            frame_len: usize::try_from(frame_len).ok()?,
        })
    }

    /// Duration of the frame in seconds.
    pub fn duration_secs(&self) -> f64 {
        f64::from(self.samples_per_frame) / f64::from(self.sample_rate)
    }
}

fn header_at(buf: &[u8], at: usize) -> Option<FrameHeader> {
    let bytes = buf.get(at..at.checked_add(HEADER_LEN)?)?;
    FrameHeader::parse(bytes.try_into().ok()?)
}

/// Accumulates encoder output and hands out whole frames as separate `Bytes`,
/// each an allocation-free slice of a shared buffer.
#[derive(Default)]
pub struct FrameSplitter {
    buf: BytesMut,
    /// Whether `buf` starts on a frame boundary that follows a frame we
    /// already accepted; then the header there is trusted without a check of
    /// the frame after it.
    in_sync: bool,
    discarded: u64,
}

impl FrameSplitter {
    /// Creates an empty splitter that is not yet in sync.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes thrown away so far because they did not belong to any frame.
    pub fn discarded(&self) -> u64 {
        self.discarded
    }

    /// Appends bytes; pushes every complete frame now available to `out`
    /// (with its header). Garbage before a sync is discarded and counted in
    /// [`discarded`](Self::discarded). A frame is only emitted once its full
    /// length is buffered; a frame found while resyncing is held until the
    /// header after it is buffered too, so it can be confirmed.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<(FrameHeader, Bytes)>) {
        self.buf.extend_from_slice(data);
        loop {
            if !self.in_sync {
                let (skip, found) = find_sync(&self.buf);
                self.buf.advance(skip);
                self.discarded += skip as u64;
                self.in_sync = found;
                if !found {
                    return;
                }
            }
            match header_at(&self.buf, 0) {
                Some(h) if self.buf.len() >= h.frame_len => {
                    out.push((h, self.buf.split_to(h.frame_len).freeze()));
                }
                Some(_) => return,
                None if self.buf.len() < HEADER_LEN => return,
                // The stream broke (corruption, encoder restart): hunt again.
                None => self.in_sync = false,
            }
        }
    }
}

/// Returns how many leading bytes cannot start a frame, and whether a
/// confirmed frame starts right after them: one whose header parses and whose
/// successor, one frame later, parses with the same sample rate (which pins
/// version and layer too). A stray 0xFF in garbage is common; two consistent
/// headers exactly a frame apart are not.
fn find_sync(buf: &[u8]) -> (usize, bool) {
    let mut at = 0;
    while at + HEADER_LEN <= buf.len() {
        if let Some(h) = header_at(buf, at) {
            let next = at + h.frame_len;
            if next + HEADER_LEN > buf.len() {
                return (at, false);
            }
            if header_at(buf, next).is_some_and(|n| n.sample_rate == h.sample_rate) {
                return (at, true);
            }
        }
        at += 1;
    }
    // The last few bytes may be the start of a header split across pushes.
    (at, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mp3lame_encoder::{
        Bitrate, Builder, FlushNoGap, InterleavedPcm, MonoPcm, Quality, VbrMode,
    };
    use std::num::NonZeroU32;

    /// xorshift: deterministic piece sizes and garbage without a rand crate.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Encodes `secs` of a sine with LAME in uneven PCM blocks.
    fn lame(channels: u8, rate: u32, brate: Bitrate, secs: f64) -> (Vec<u8>, usize) {
        let mut b = Builder::new().expect("builder");
        b.set_num_channels(channels).expect("channels");
        b.set_sample_rate(rate).expect("rate");
        b.set_output_sample_rate(NonZeroU32::new(rate))
            .expect("out rate");
        b.set_brate(brate).expect("brate");
        b.set_vbr_mode(VbrMode::Off).expect("vbr");
        b.set_to_write_vbr_tag(false).expect("tag");
        b.set_quality(Quality::Good).expect("quality");
        let mut enc = b.build().expect("build");
        let n = (secs * f64::from(rate)) as usize;
        let ch = usize::from(channels);
        let pcm: Vec<f32> = (0..n * ch)
            .map(|i| 0.3 * ((i / ch) as f32 * 440.0 * std::f32::consts::TAU / rate as f32).sin())
            .collect();
        let mut mp3 = Vec::new();
        for block in pcm.chunks(1000 * ch) {
            mp3.reserve(mp3lame_encoder::max_required_buffer_size(block.len()));
            if channels == 1 {
                enc.encode_to_vec(MonoPcm(block), &mut mp3).expect("encode");
            } else {
                enc.encode_to_vec(InterleavedPcm(block), &mut mp3)
                    .expect("encode");
            }
        }
        mp3.reserve(7200);
        enc.flush_to_vec::<FlushNoGap>(&mut mp3).expect("flush");
        (mp3, n)
    }

    fn split_randomly(data: &[u8], seed: u64) -> (Vec<(FrameHeader, Bytes)>, FrameSplitter) {
        let (mut rng, mut s, mut out, mut rest) =
            (Rng(seed), FrameSplitter::new(), Vec::new(), data);
        while !rest.is_empty() {
            let n = (1 + rng.next() % 2000).min(rest.len() as u64) as usize;
            s.push(&rest[..n], &mut out);
            rest = &rest[n..];
        }
        (out, s)
    }

    fn check_stream(mp3: &[u8], pcm_len: usize, rate: u32, kbps: u32, channels: u8) {
        let (frames, s) = split_randomly(mp3, 0x9E37_79B9_7F4A_7C15);
        assert_eq!(s.discarded(), 0, "LAME output should start on a frame");
        assert_eq!(
            frames.iter().map(|(_, f)| f.len()).sum::<usize>(),
            mp3.len()
        );
        for (h, f) in &frames {
            assert_eq!(Some(*h), FrameHeader::parse([f[0], f[1], f[2], f[3]]));
            assert_eq!(
                (h.sample_rate, h.bitrate_kbps, h.channels),
                (rate, kbps, channels)
            );
            assert_eq!(f.len(), h.frame_len);
        }
        let secs: f64 = frames.iter().map(|(h, _)| h.duration_secs()).sum();
        let slack = 2.0 * frames[0].0.duration_secs();
        let want = pcm_len as f64 / f64::from(rate);
        assert!((secs - want).abs() <= slack, "{secs} vs {want}");
    }

    #[test]
    fn parses_known_headers() {
        let h = FrameHeader::parse([0xFF, 0xFB, 0x90, 0x64]);
        let (sample_rate, bitrate_kbps, channels) = (44_100, 128, 2);
        let (samples_per_frame, frame_len) = (1152, 417);
        let want = FrameHeader {
            sample_rate,
            bitrate_kbps,
            channels,
            samples_per_frame,
            frame_len,
        };
        assert_eq!(h, Some(want));
        let len = |b| FrameHeader::parse(b).map(|h| h.frame_len);
        assert_eq!(len([0xFF, 0xFB, 0x92, 0x64]), Some(418), "padding bit");
        // MPEG-2, 64 kbit/s, 22.05 kHz, mono.
        let h = FrameHeader::parse([0xFF, 0xF3, 0x80, 0xC4]).expect("valid");
        assert_eq!((h.sample_rate, h.bitrate_kbps, h.channels), (22_050, 64, 1));
        assert_eq!((h.samples_per_frame, h.frame_len), (576, 208));
        assert!((h.duration_secs() - 576.0 / 22_050.0).abs() < 1e-12);
        assert_eq!(len([0xFF, 0xE3, 0x18, 0x00]), Some(72), "MPEG-2.5 8k 8 kHz");
    }

    #[test]
    fn rejects_invalid_headers() {
        for b in [
            [0xFE, 0xFB, 0x90, 0x64], // bad sync
            [0xFF, 0xDB, 0x90, 0x64], // bad sync in second byte
            [0xFF, 0xEB, 0x90, 0x64], // reserved version
            [0xFF, 0xF9, 0x90, 0x64], // reserved layer
            [0xFF, 0xFD, 0x90, 0x64], // layer II
            [0xFF, 0xFB, 0x00, 0x64], // free format
            [0xFF, 0xFB, 0xF0, 0x64], // reserved bitrate
            [0xFF, 0xFB, 0x9C, 0x64], // reserved sample rate
            [0xFF, 0xFB, 0x90, 0x66], // reserved emphasis
        ] {
            assert_eq!(FrameHeader::parse(b), None, "{b:02X?}");
        }
    }

    #[test]
    fn splits_lame_128k_stereo() {
        let (mp3, n) = lame(2, 44_100, Bitrate::Kbps128, 3.0);
        check_stream(&mp3, n, 44_100, 128, 2);
    }

    #[test]
    fn splits_lame_64k_mono_and_mpeg2() {
        let (mp3, n) = lame(1, 44_100, Bitrate::Kbps64, 2.0);
        check_stream(&mp3, n, 44_100, 64, 1);
        let (mp3, n) = lame(2, 22_050, Bitrate::Kbps32, 2.0);
        check_stream(&mp3, n, 22_050, 32, 2);
    }

    #[test]
    fn holds_a_frame_until_it_is_confirmed() {
        let (mp3, _) = lame(2, 44_100, Bitrate::Kbps128, 0.5);
        let (mut s, mut out) = (FrameSplitter::new(), Vec::new());
        // Whole first frame plus 3 bytes of the next header: not yet trusted.
        s.push(&mp3[..420], &mut out);
        assert!(out.is_empty());
        s.push(&mp3[420..421], &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].1, &mp3[..417]);
        // In sync now: the next frame goes out as soon as its last byte is in.
        s.push(&mp3[421..417 + 418], &mut out);
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn skips_garbage_and_false_syncs() {
        let (mp3, _) = lame(2, 44_100, Bitrate::Kbps128, 1.0);
        let (clean, _) = split_randomly(&mp3, 7);
        let mut rng = Rng(42);
        // Garbage without 0xFF except for a planted header whose successor,
        // 417 bytes on, is not a header.
        let mut data: Vec<u8> = (0..700).map(|_| (rng.next() % 0xFF) as u8).collect();
        data[10..14].copy_from_slice(&[0xFF, 0xFB, 0x90, 0x64]);
        data.extend_from_slice(&mp3);
        // Mid-stream corruption: the splitter must drop it and find sync again.
        let cut = clean[..5].iter().map(|(_, f)| f.len()).sum::<usize>() + 700;
        data.splice(cut..cut, [0x00, 0xFF, 0xFB, 0x12]);
        let (frames, s) = split_randomly(&data, 3);
        assert_eq!(s.discarded(), 704);
        assert_eq!(frames.len(), clean.len());
        assert!(frames.iter().zip(&clean).all(|(a, b)| a == b));
    }
}
