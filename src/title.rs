//! The title on air: a programme fact (the pipeline sets it, the ring carries it, the web layer
//! shows it), with its ICY (SHOUTcast/Icecast) in-band form, the `StreamTitle='…';` block, built
//! once per title and shared by every listener. Where the blocks go in a listener's stream
//! (every `icy-metaint` audio bytes) is `fanout::position`'s business.
//!
//! [`StreamTitle::new`] is the one door every title goes through (tags, file names,
//! `/admin/metadata`, later live sources), so it is also where a title is made safe: what it
//! holds can neither break an ICY block nor make the XML and JSON documents that show it invalid.

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
    /// Builds the shared title from raw text, cleaned by [`clean_title`]. A title too long for one
    /// ICY block is truncated in the block (on a UTF-8 character boundary) but kept whole in
    /// [`StreamTitle::text`].
    pub fn new(raw: &str) -> Arc<StreamTitle> {
        let title = clean_title(raw);
        let title = title.as_str();
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

    /// The cleaned title, untruncated: what the status pages, the API and the page show.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The same title: the same `Arc`, or one made again with the same text.
    pub fn same_as(&self, other: &StreamTitle) -> bool {
        std::ptr::eq(self, other) || self.text == other.text
    }

    /// "Artist - Title" split on its first " - " into (artist, title), as Ogg comments and ID3
    /// frames carry them; `None` when the text does not read that way.
    pub fn artist_and_title(&self) -> Option<(&str, &str)> {
        self.text
            .split_once(" - ")
            .filter(|(artist, title)| !artist.is_empty() && !title.is_empty())
    }

    /// The full metadata block: length byte followed by the NUL-padded `StreamTitle='…';`.
    pub fn block(&self) -> &Bytes {
        &self.block
    }
}

/// A title as every consumer may show it:
/// - Control characters (C0, DEL, C1) are dropped: a NUL ends the ICY text early in players, and
///   XML 1.0 cannot carry C0 at all. Tab, CR and LF become one space, so words stay apart.
///   U+FFFE and U+FFFF go too (not XML characters).
/// - `';` cannot appear: players (VLC, FFmpeg, Icecast relaying a stream) take the first `';` as
///   the end of `StreamTitle`, so a tag could end the field and add `StreamUrl='…'` of its own.
///   Icecast and Liquidsoap copy titles verbatim and have exactly that problem. The quote of
///   such a pair becomes U+2019 (’), the typographic apostrophe: every visible character stays,
///   players show what reads as the same text, and the bytes no longer close the field.
/// - Leading and trailing whitespace is trimmed.
pub fn clean_title(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '\t' | '\n' | '\r' => {
                if !out.is_empty() && !out.ends_with(' ') {
                    out.push(' ');
                }
            }
            c if c.is_control() => {}
            '\u{FFFE}' | '\u{FFFF}' => {}
            // Checked on the output, not the input, so a control character dropped between the
            // quote and the semicolon cannot bring the pair back together.
            ';' if out.ends_with('\'') => {
                out.pop();
                out.push('\u{2019}');
                out.push(';');
            }
            c => out.push(c),
        }
    }
    let trimmed = out.trim();
    if trimmed.len() == out.len() {
        out
    } else {
        trimmed.to_string()
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
    fn control_characters_are_dropped_and_whitespace_kept_apart() {
        let t = StreamTitle::new("\u{0}A\u{1}rtist\t-\r\nTi\u{7f}tle\u{85}\u{1b}[31m\u{FFFF} ");
        assert_eq!(t.text(), "Artist - Title[31m");
        assert_eq!(block_text(t.block()), wrapped("Artist - Title[31m"));
        assert_eq!(StreamTitle::new("\u{0}\u{1}\t").text(), "");
    }

    #[test]
    fn a_title_cannot_end_the_stream_title_field() {
        for (raw, clean) in [
            (
                "Bad';StreamUrl='http://evil.example/';",
                "Bad\u{2019};StreamUrl='http://evil.example/\u{2019};",
            ),
            ("a'\u{0};b", "a\u{2019};b"),
            ("a'\u{1}\u{2};b", "a\u{2019};b"),
            ("a';;'", "a\u{2019};;'"),
            ("x'", "x'"),
            ("';", "\u{2019};"),
        ] {
            let t = StreamTitle::new(raw);
            assert_eq!(t.text(), clean, "{raw:?}");
            let text = block_text(t.block());
            // What a player reads: up to the first `';` after the field name, then nothing more.
            let body = text.strip_prefix("StreamTitle='").unwrap();
            let end = body.find("';").unwrap();
            assert_eq!(&body[..end], clean, "{raw:?}");
            assert_eq!(&body[end..], "';", "{raw:?}: nothing after the field");
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
}
