//! Titles on arbitrary text: `clean_title`, the ICY block of `StreamTitle`, XML escaping, and the
//! interleaving of blocks into a listener's stream (`StreamPos`).
//!
//! The input is a title (UTF-8, lossily), optionally followed by a 0xFF byte (never in UTF-8) and
//! stream parameters: metaint, bytes per write, frame sizes and which title each frame carries.
//!
//! Properties: the block is well formed as a player reads it (length byte × 16 is the block's
//! length, NUL padding, UTF-8, `StreamTitle='…';` with no `';` inside the value, no control
//! character); cleaning is idempotent; escaped text parses as XML and gives the text back; and
//! the stream a listener gets, however the socket splits the writes, is exactly the head, the
//! audio, and after every `metaint` audio bytes the block of the title in force (or 0 when it
//! is unchanged).
#![no_main]

use std::io::{self, IoSlice, Write};
use std::sync::Arc;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use onair::fanout::position::{Flow, StreamPos};
use onair::http::escape;
use onair::title::{MAX_METADATA_LEN, StreamTitle, clean_title};
use onair::ring::{Frame, FrameRing, Window};

const PREFIX: &[u8] = b"StreamTitle='";

fn check_title(raw: &str) -> Arc<StreamTitle> {
    let title = StreamTitle::new(raw);
    let text = title.text();
    assert_eq!(clean_title(raw), text);
    assert_eq!(clean_title(text), text, "cleaning twice changes {text:?}");
    assert!(!text.chars().any(|c| c.is_control()), "{text:?}");
    assert!(!text.contains("';"), "{text:?}");
    assert!(!text.contains(['\u{FFFE}', '\u{FFFF}']), "{text:?}");
    assert_eq!(text.trim(), text);

    let block = title.block();
    let len = usize::from(block[0]) * 16;
    assert_eq!(block.len(), 1 + len, "length byte");
    assert!((16..=MAX_METADATA_LEN).contains(&len));
    let body = &block[1..];
    let end = body.iter().position(|&b| b == 0).unwrap_or(len);
    assert!(body[end..].iter().all(|&b| b == 0), "padding must be NULs");
    assert!(len - end < 16, "more padding than needed");
    let shown = std::str::from_utf8(&body[..end]).expect("metadata must be UTF-8");
    // What a player reads: from the field name to the first `';`, and nothing after it.
    let value = shown
        .strip_prefix("StreamTitle='")
        .expect("StreamTitle=' first");
    assert_eq!(value.find("';"), Some(value.len() - 2), "{shown:?}");
    let value = &value[..value.len() - 2];
    assert!(text.starts_with(value), "block value is not the title");
    if value.len() < text.len() {
        // Cut only as far as needed to fit, on a character boundary.
        assert!(MAX_METADATA_LEN - (PREFIX.len() + value.len() + 2) < 4);
    }
    title
}

/// Escaped text parses as XML, in content and in an attribute, and reads back as the text less
/// the characters XML 1.0 cannot hold.
fn check_xml(s: &str) {
    let e = escape::xml(s);
    assert!(!e.contains(['<', '>', '"', '\'']), "{e:?}");
    for (i, _) in e.match_indices('&') {
        let entity = &e[i..e[i..].find(';').map_or(e.len(), |j| i + j + 1)];
        assert!(
            matches!(
                entity,
                "&amp;" | "&lt;" | "&gt;" | "&quot;" | "&#39;" | "&#9;" | "&#10;" | "&#13;"
            ),
            "{entity:?}"
        );
    }
    assert!(
        !e.chars().any(|c| c < ' '),
        "raw C0 control character in {e:?}"
    );
    let doc = format!("<r a=\"{e}\">{e}</r>");
    let parsed = roxmltree::Document::parse(&doc).expect("escaped text is valid XML");
    let expected: String = s
        .chars()
        .filter(|&c| c >= ' ' || matches!(c, '\t' | '\n' | '\r'))
        .filter(|&c| c != '\u{FFFE}' && c != '\u{FFFF}')
        .collect();
    let root = parsed.root_element();
    assert_eq!(root.text().unwrap_or(""), expected);
    assert_eq!(root.attribute("a"), Some(expected.as_str()));
    // JSON documents go through serde_json: the text must survive it too.
    let json = serde_json::to_string(s).unwrap();
    assert!(!json.bytes().any(|b| b < 0x20));
    assert_eq!(serde_json::from_str::<String>(&json).unwrap(), s);
}

/// A socket that takes at most `per_call` bytes per write and refuses every `block_every`th.
struct Sink {
    data: Vec<u8>,
    per_call: usize,
    block_every: usize,
    calls: usize,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.calls += 1;
        if self.block_every > 0 && self.calls.is_multiple_of(self.block_every) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let mut left = self.per_call;
        for b in bufs {
            let k = left.min(b.len());
            self.data.extend_from_slice(&b[..k]);
            left -= k;
        }
        Ok(self.per_call - left)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads little-endian u16s from the parameter bytes, `default` past their end.
struct Params<'a>(&'a [u8]);

impl Params<'_> {
    fn u16(&mut self, default: u16) -> u16 {
        let v = match self.0 {
            [a, b, ..] => u16::from_le_bytes([*a, *b]),
            [a] => u16::from(*a),
            [] => default,
        };
        self.0 = &self.0[self.0.len().min(2)..];
        v
    }
}

fn check_stream(titles: &[Arc<StreamTitle>; 2], params: &[u8]) {
    let mut p = Params(params);
    // Without parameters (a plain title): a block every 100 bytes, 333 bytes per write, and
    // every third write refused. Small values are the slow ones; the fuzzer finds them.
    let metaint = usize::from(p.u16(99) % 2048) + 1;
    let icy = metaint != 2048;
    let per_call = usize::from(p.u16(333)).max(1);
    let block_every = [0, 2, 3, 7][usize::from(p.u16(2) % 4)];
    let mut frames = Vec::new();
    while !p.0.is_empty() && frames.len() < 32 {
        let v = p.u16(0);
        frames.push((usize::from(v & 0x7fff) % 1000, usize::from(v >> 15)));
    }
    if frames.is_empty() {
        frames = vec![(417, 0), (1, 1), (0, 1), (999, 0), (5, 1)];
    }

    // The expected stream, byte by byte: bytes follow a period of 251 so a misplaced one shows.
    let head = Bytes::from_static(b"HTTP/1.0 200 OK\r\nicy-metaint:1\r\n\r\n");
    let mut expected = head.to_vec();
    let mut last: Option<usize> = None;
    let mut audio = 0usize;
    let mut published = Vec::new();
    for &(size, t) in &frames {
        let data: Bytes = (0..size).map(|i| ((audio + i) % 251) as u8).collect();
        for &b in &data {
            expected.push(b);
            audio += 1;
            if icy && audio.is_multiple_of(metaint) {
                if last == Some(t) {
                    expected.push(0);
                } else {
                    expected.extend_from_slice(titles[t].block());
                    last = Some(t);
                }
            }
        }
        published.push(Frame::new(data, &titles[t]));
    }

    // Published in two batches, drained after each, as the fan-out thread does on wake-ups.
    let ring = FrameRing::new(usize::MAX);
    let mut window = Window::starting_at(0);
    let mut pos = StreamPos::new(head, 0, icy.then_some(metaint));
    let mut sink = Sink {
        data: Vec::new(),
        per_call,
        block_every,
        calls: 0,
    };
    let second = published.split_off(published.len() / 2);
    for batch in [published, second] {
        ring.publish(batch);
        window.sync(&ring);
        let mut turns = 0;
        while pos.write_to(&mut sink, &window, 4).unwrap() != Flow::Drained {
            turns += 1;
            assert!(turns < 10 * expected.len() + 100, "never drained");
        }
        assert!(!pos.lagged(&window));
    }
    assert_eq!(pos.frames_behind(&window), 0);
    assert_eq!(pos.sent(), sink.data.len() as u64);
    assert!(
        sink.data == expected,
        "stream differs (metaint {metaint}, per_call {per_call})"
    );
}

fuzz_target!(|data: &[u8]| {
    let (text, params) = match data.iter().position(|&b| b == 0xFF) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let raw = String::from_utf8_lossy(text);
    let title = check_title(&raw);
    check_xml(&raw);
    check_xml(title.text());
    let half = &raw[..raw.floor_char_boundary(raw.len() / 2)];
    let titles = [title, check_title(half)];
    check_stream(&titles, params.unwrap_or(&[]));
});
