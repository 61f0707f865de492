//! ICY (SHOUTcast/Icecast) in-band metadata framing: builds the `StreamTitle='…';` block a
//! title is announced with, and interleaves those blocks into a listener's audio bytes every
//! `icy-metaint` bytes. It owns only the byte layout; HTTP headers and I/O live elsewhere.

use bytes::Bytes;
use std::sync::Arc;

/// Largest metadata payload an ICY length byte can announce (255 × 16).
pub const MAX_METADATA_LEN: usize = 255 * 16;

const PREFIX: &str = "StreamTitle='";
const SUFFIX: &str = "';";

/// One title as listeners see it, with its ICY block built once and shared by every listener.
#[derive(Debug)]
pub struct StreamTitle {
    text: Arc<str>,
    block: Bytes,
}

impl StreamTitle {
    /// Builds the shared title; a title too long for one ICY block is truncated in the block
    /// (on a UTF-8 character boundary) but kept whole in [`StreamTitle::text`].
    pub fn new(title: &str) -> Arc<StreamTitle> {
        let max_title = MAX_METADATA_LEN - PREFIX.len() - SUFFIX.len();
        // Cutting mid-character would hand players invalid UTF-8, so back off to a boundary.
        let cut = (0..=max_title.min(title.len()))
            .rev()
            .find(|&i| title.is_char_boundary(i))
            .unwrap_or(0);
        let text_len = PREFIX.len() + cut + SUFFIX.len();
        let padded = text_len.div_ceil(16) * 16;
        let mut block = Vec::with_capacity(1 + padded);
        // padded <= MAX_METADATA_LEN, so the quotient always fits the length byte.
        block.push(u8::try_from(padded / 16).unwrap_or(u8::MAX));
        block.extend_from_slice(PREFIX.as_bytes());
        block.extend_from_slice(&title.as_bytes()[..cut]);
        block.extend_from_slice(SUFFIX.as_bytes());
        block.resize(1 + padded, 0);
        Arc::new(StreamTitle {
            text: Arc::from(title),
            block: Bytes::from(block),
        })
    }

    /// The title as given, untruncated.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The full metadata block: length byte followed by the NUL-padded `StreamTitle='…';`.
    pub fn block(&self) -> &Bytes {
        &self.block
    }
}

/// Per-listener state that interleaves metadata blocks into the audio byte stream every `metaint` bytes.
#[derive(Debug)]
pub struct IcyInterleaver {
    metaint: usize,
    until_block: usize,
    last_sent: Option<Arc<StreamTitle>>,
}

impl IcyInterleaver {
    /// Starts a listener's stream; `metaint` is the `icy-metaint` value announced to it
    /// (0 is treated as 1, since a zero interval cannot be framed).
    pub fn new(metaint: usize) -> Self {
        let metaint = metaint.max(1);
        IcyInterleaver {
            metaint,
            until_block: metaint,
            last_sent: None,
        }
    }

    /// Appends `audio` to `out`, split at metadata boundaries, with a metadata block at each boundary.
    /// `title` is the title in force for these bytes. Audio is sliced with `Bytes::slice` (no copy);
    /// the changed-title block is a clone of the shared `StreamTitle::block`; an unchanged title gets a
    /// static single zero byte (`Bytes::from_static(&[0])`). Nothing is allocated except pushes into `out`.
    pub fn push(&mut self, audio: &Bytes, title: &Arc<StreamTitle>, out: &mut Vec<Bytes>) {
        let mut pos = 0;
        while pos < audio.len() {
            let take = self.until_block.min(audio.len() - pos);
            out.push(audio.slice(pos..pos + take));
            pos += take;
            self.until_block -= take;
            if self.until_block == 0 {
                // The block goes out as soon as the boundary is reached, so a client that
                // has read exactly `metaint` bytes never waits on the next audio chunk.
                out.push(self.block_for(title));
                self.until_block = self.metaint;
            }
        }
    }

    fn block_for(&mut self, title: &Arc<StreamTitle>) -> Bytes {
        // Identity, not text equality: the broadcaster makes one StreamTitle per change,
        // and a pointer compare keeps the per-boundary cost constant.
        if self
            .last_sent
            .as_ref()
            .is_some_and(|t| Arc::ptr_eq(t, title))
        {
            Bytes::from_static(&[0])
        } else {
            self.last_sent = Some(Arc::clone(title));
            title.block.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes a block the way a player does: length byte, then text up to the first NUL.
    fn block_text(block: &[u8]) -> String {
        let len = usize::from(block[0]) * 16;
        assert_eq!(block.len(), 1 + len);
        let body = &block[1..];
        let end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
        assert!(body[end..].iter().all(|&b| b == 0), "padding must be NULs");
        String::from_utf8(body[..end].to_vec()).expect("metadata must be UTF-8")
    }

    /// Parses an ICY stream as a client would: `metaint` audio bytes, then a length byte and block.
    /// Returns the audio and one entry per boundary (`None` for a zero-length block).
    fn parse(stream: &[u8], metaint: usize) -> (Vec<u8>, Vec<Option<String>>) {
        let (mut audio, mut metas, mut rest) = (Vec::new(), Vec::new(), stream);
        while !rest.is_empty() {
            let take = metaint.min(rest.len());
            audio.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if take < metaint {
                break;
            }
            let len = usize::from(*rest.first().expect("block after full interval")) * 16;
            metas.push((len > 0).then(|| block_text(&rest[..1 + len])));
            rest = &rest[1 + len..];
        }
        (audio, metas)
    }

    fn wrapped(title: &str) -> String {
        format!("StreamTitle='{title}';")
    }

    #[test]
    fn short_title_block_layout() {
        let t = StreamTitle::new("Artist - Song");
        let b = t.block();
        assert_eq!((b.len() - 1) % 16, 0);
        assert_eq!(usize::from(b[0]) * 16, b.len() - 1);
        let text = b"StreamTitle='Artist - Song';";
        assert_eq!(&b[1..1 + text.len()], text);
        assert!(b[1 + text.len()..].iter().all(|&x| x == 0));
        assert_eq!(b.len(), 1 + 32);
        assert_eq!(t.text(), "Artist - Song");
    }

    #[test]
    fn utf8_and_quotes_kept_verbatim() {
        for title in [
            "Zoë & Łukasz - Été à Paris — Café",
            "O'Brien - Don't Stop 'Til Dawn",
        ] {
            let t = StreamTitle::new(title);
            assert_eq!(block_text(t.block()), wrapped(title));
        }
    }

    #[test]
    fn empty_title() {
        let t = StreamTitle::new("");
        assert_eq!(t.block()[0], 1);
        assert_eq!(block_text(t.block()), "StreamTitle='';");
    }

    #[test]
    fn long_titles_truncated_to_fit() {
        // "é" is 2 bytes and 4065 title bytes fit, so that cut must back off one byte.
        for title in ["a".repeat(5000), "東".repeat(2000), "é".repeat(3000)] {
            let t = StreamTitle::new(&title);
            assert_eq!(t.block().len() - 1, MAX_METADATA_LEN);
            let text = block_text(t.block());
            assert!(text.len() <= MAX_METADATA_LEN);
            assert!(text.starts_with("StreamTitle='") && text.ends_with("';"));
            let inner = &text[13..text.len() - 2];
            assert!(title.starts_with(inner));
            assert!(
                MAX_METADATA_LEN - 15 - inner.len() < 4,
                "cut no more than needed"
            );
            assert_eq!(t.text(), title);
        }
    }

    #[test]
    fn interleaves_at_boundaries_with_title_changes() {
        let metaint = 16_000;
        let a = StreamTitle::new("First");
        let b = StreamTitle::new("Second");
        let plan: [(usize, &Arc<StreamTitle>); 7] = [
            (1, &a),
            (7, &a),
            (417, &a),
            (16_000, &a),
            (33_000, &a),
            (16_000, &b),
            (16_000, &b),
        ];
        let mut il = IcyInterleaver::new(metaint);
        let (mut out, mut sent, mut n) = (Vec::new(), Vec::new(), 0u32);
        for (size, title) in plan {
            // A period of 251 never aligns with metaint, so misplaced bytes would show.
            let chunk: Bytes = (0..size)
                .map(|_| {
                    n += 1;
                    (n % 251) as u8
                })
                .collect();
            sent.extend_from_slice(&chunk);
            il.push(&chunk, title, &mut out);
        }
        // Changed-title blocks must be the shared block itself, not a copy.
        assert!(out.iter().any(|o| o.as_ptr() == a.block().as_ptr()));
        let stream: Vec<u8> = out.iter().flat_map(|b| b.iter().copied()).collect();
        let (audio, metas) = parse(&stream, metaint);
        assert_eq!(audio, sent);
        // Boundaries at 16000, 32000, 48000 (title A), 64000, 80000 (title B); 81425 bytes sent.
        let expected = [
            Some(wrapped("First")),
            None,
            None,
            Some(wrapped("Second")),
            None,
        ];
        assert_eq!(metas, expected);
    }
}
