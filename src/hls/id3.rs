//! The ID3v2.4 tag that starts every packed-audio part and segment (HLS2 §3.1.3): a `PRIV` frame
//! owned by `com.apple.streaming.transportStreamTimestamp` with the 33-bit MPEG timestamp of
//! the first frame after it, and, where a title is announced, `TIT2` (title) and `TPE1`
//! (artist), which hls.js raises as metadata cues and players show. About 100 bytes, written by
//! hand rather than with a crate.

use bytes::Bytes;

use crate::title::StreamTitle;

const TIMESTAMP_OWNER: &[u8] = b"com.apple.streaming.transportStreamTimestamp\0";
/// Text frames' encoding byte: UTF-8.
const UTF8: u8 = 3;

/// The tag for an object whose first frame has timestamp `pts`; with `title`, the title frames.
pub fn tag(pts: u64, title: Option<&StreamTitle>) -> Bytes {
    let mut frames = Vec::with_capacity(128);
    let mut payload = Vec::with_capacity(TIMESTAMP_OWNER.len() + 8);
    payload.extend_from_slice(TIMESTAMP_OWNER);
    payload.extend_from_slice(&(pts & ((1 << 33) - 1)).to_be_bytes());
    frame(&mut frames, b"PRIV", &payload);
    if let Some(title) = title.filter(|t| !t.text().is_empty()) {
        let (artist, name) = title.artist_and_title().unwrap_or(("", title.text()));
        text_frame(&mut frames, b"TIT2", name);
        if !artist.is_empty() {
            text_frame(&mut frames, b"TPE1", artist);
        }
    }
    let mut tag = Vec::with_capacity(10 + frames.len());
    tag.extend_from_slice(b"ID3\x04\x00\x00");
    tag.extend_from_slice(&synchsafe(frames.len()));
    tag.extend_from_slice(&frames);
    Bytes::from(tag)
}

fn text_frame(out: &mut Vec<u8>, id: &[u8; 4], text: &str) {
    let mut payload = Vec::with_capacity(1 + text.len());
    payload.push(UTF8);
    payload.extend_from_slice(text.as_bytes());
    frame(out, id, &payload);
}

fn frame(out: &mut Vec<u8>, id: &[u8; 4], payload: &[u8]) {
    out.extend_from_slice(id);
    out.extend_from_slice(&synchsafe(payload.len()));
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(payload);
}

/// A size as ID3v2.4 writes it: 7 bits a byte, so no byte of it looks like an MPEG sync. Titles
/// are bounded far below the 256 MiB this can say.
fn synchsafe(n: usize) -> [u8; 4] {
    let n = n.min((1 << 28) - 1) as u32;
    [
        (n >> 21) as u8 & 0x7f,
        (n >> 14) as u8 & 0x7f,
        (n >> 7) as u8 & 0x7f,
        n as u8 & 0x7f,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unsynch(b: &[u8]) -> usize {
        b.iter().fold(0, |n, &x| (n << 7) | usize::from(x))
    }

    /// (frame id, payload) of every frame of a tag, read the way an ID3v2.4 reader does.
    fn frames(tag: &[u8]) -> Vec<(String, Vec<u8>)> {
        assert_eq!(&tag[..6], b"ID3\x04\x00\x00");
        let size = unsynch(&tag[6..10]);
        assert_eq!(size + 10, tag.len());
        let mut at = 10;
        let mut out = Vec::new();
        while at < tag.len() {
            let id = String::from_utf8(tag[at..at + 4].to_vec()).unwrap();
            let len = unsynch(&tag[at + 4..at + 8]);
            out.push((id, tag[at + 10..at + 10 + len].to_vec()));
            at += 10 + len;
        }
        out
    }

    #[test]
    fn the_timestamp_is_the_apple_priv_frame_with_33_bits_big_endian() {
        let tag = tag((1 << 33) + 0x1_2345_6789, None);
        let f = frames(&tag);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].0, "PRIV");
        let (owner, pts) = f[0].1.split_at(TIMESTAMP_OWNER.len());
        assert_eq!(owner, TIMESTAMP_OWNER);
        assert_eq!(pts, 0x1_2345_6789u64.to_be_bytes());
    }

    #[test]
    fn a_title_is_split_into_tit2_and_tpe1() {
        let t = StreamTitle::new("Night Artist - Late Song – été");
        let f = frames(&tag(0, Some(&t)));
        let ids: Vec<&str> = f.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["PRIV", "TIT2", "TPE1"]);
        assert_eq!(f[1].1, [&[UTF8][..], "Late Song – été".as_bytes()].concat());
        assert_eq!(f[2].1, [&[UTF8][..], b"Night Artist"].concat());
        let plain = frames(&tag(0, Some(&StreamTitle::new("Jingle"))));
        assert_eq!(plain.len(), 2);
        assert_eq!(plain[1].1, [&[UTF8][..], b"Jingle"].concat());
        assert_eq!(frames(&tag(0, Some(&StreamTitle::new("")))).len(), 1);
    }
}
