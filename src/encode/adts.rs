//! ADTS, the framing of an AAC stream over HTTP: a 7-byte header (9 with a CRC) before each
//! access unit, carrying its length. What the AAC encoder emits is split on these headers, so
//! the ring holds whole frames and a listener starts on one.

use bytes::{Bytes, BytesMut};

/// The shortest header (no CRC).
pub const HEADER_LEN: usize = 7;

/// The frame length an ADTS header at the start of `b` gives (header included), or `None` when
/// `b` does not start with one.
pub fn frame_len(b: &[u8]) -> Option<usize> {
    let h = b.get(..HEADER_LEN)?;
    // Sync word (12 bits of ones), then layer 0.
    if h[0] != 0xFF || h[1] & 0xF6 != 0xF0 {
        return None;
    }
    let len = (usize::from(h[3] & 0x03) << 11) | (usize::from(h[4]) << 3) | usize::from(h[5] >> 5);
    (len >= HEADER_LEN).then_some(len)
}

/// Cuts a byte stream of ADTS frames into frames. Bytes before a sync (none, from a sane
/// encoder) are dropped.
#[derive(Default)]
pub struct AdtsSplitter {
    pending: BytesMut,
}

impl AdtsSplitter {
    /// Appends `data` and moves every whole frame now buffered into `out`.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<Bytes>) {
        self.pending.extend_from_slice(data);
        loop {
            match frame_len(&self.pending) {
                Some(len) if self.pending.len() >= len => {
                    out.push(self.pending.split_to(len).freeze());
                }
                Some(_) => return,
                None if self.pending.len() < HEADER_LEN => return,
                None => {
                    // Resynchronise on the next 0xFF.
                    let skip = self.pending[1..]
                        .iter()
                        .position(|&b| b == 0xFF)
                        .map_or(self.pending.len(), |i| i + 1);
                    let _ = self.pending.split_to(skip);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ADTS header for a frame of `len` bytes (AAC LC, 44.1 kHz, stereo, no CRC).
    fn header(len: usize) -> [u8; 7] {
        [
            0xFF,
            0xF1,
            0x50,
            0x80 | ((len >> 11) & 0x03) as u8,
            ((len >> 3) & 0xFF) as u8,
            (((len & 0x07) << 5) as u8) | 0x1F,
            0xFC,
        ]
    }

    fn frame(len: usize, fill: u8) -> Vec<u8> {
        let mut f = header(len).to_vec();
        f.resize(len, fill);
        f
    }

    #[test]
    fn reads_the_length_and_refuses_what_is_not_a_header() {
        assert_eq!(frame_len(&header(371)), Some(371));
        assert_eq!(frame_len(&header(8191)), Some(8191));
        assert_eq!(frame_len(&header(3)), None, "shorter than its own header");
        assert_eq!(frame_len(b"ID3\x04\0\0\0"), None);
        assert_eq!(
            frame_len(&[0xFF, 0xFB, 0x90, 0, 0, 0, 0]),
            None,
            "an MP3 header"
        );
        assert_eq!(frame_len(&header(300)[..6]), None);
    }

    #[test]
    fn splits_across_pushes_and_skips_garbage_before_a_sync() {
        let mut stream = b"\x00\x12".to_vec();
        stream.extend(frame(200, 1));
        stream.extend(frame(9, 2));
        stream.extend(frame(300, 3));
        let mut splitter = AdtsSplitter::default();
        let mut out = Vec::new();
        for piece in stream.chunks(50) {
            splitter.push(piece, &mut out);
        }
        let lens: Vec<usize> = out.iter().map(|f| f.len()).collect();
        assert_eq!(lens, [200, 9, 300]);
        assert!(out.iter().all(|f| frame_len(f) == Some(f.len())));
    }
}
