//! Splits an ICY stream back into audio and metadata, as a player does.

/// A title seen in the stream and the audio byte offset at which its block arrived.
#[derive(Debug, Clone, PartialEq)]
pub struct TitleAt {
    pub audio_offset: usize,
    pub title: String,
}

/// The result of de-interleaving.
#[derive(Debug, Default)]
pub struct Split {
    pub audio: Vec<u8>,
    pub titles: Vec<TitleAt>,
    /// Blocks that carried nothing (a single zero length byte).
    pub empty_blocks: usize,
    /// Raw metadata texts, NUL padding removed.
    pub raw_blocks: Vec<String>,
}

/// De-interleaves `data` with `metaint`; stops at an incomplete block at the end.
pub fn split(data: &[u8], metaint: usize) -> Split {
    let mut out = Split::default();
    let mut pos = 0;
    loop {
        let take = metaint.min(data.len() - pos);
        out.audio.extend_from_slice(&data[pos..pos + take]);
        pos += take;
        if take < metaint || pos >= data.len() {
            break;
        }
        let len = data[pos] as usize * 16;
        pos += 1;
        if len == 0 {
            out.empty_blocks += 1;
            continue;
        }
        if pos + len > data.len() {
            break;
        }
        let block = &data[pos..pos + len];
        pos += len;
        let text = std::str::from_utf8(block)
            .expect("metadata is UTF-8")
            .trim_end_matches('\0')
            .to_string();
        let title = text
            .strip_prefix("StreamTitle='")
            .and_then(|t| t.strip_suffix("';"))
            .unwrap_or_else(|| panic!("unexpected metadata {text:?}"))
            .to_string();
        out.raw_blocks.push(text);
        out.titles.push(TitleAt {
            audio_offset: out.audio.len(),
            title,
        });
    }
    out
}
