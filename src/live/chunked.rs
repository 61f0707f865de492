//! `Transfer-Encoding: chunked` bodies (Liquidsoap `chunked=true`), undone incrementally as the
//! bytes arrive in any split. A malformed size line ends the body, as a closed connection does.

use bytes::{Bytes, BytesMut};

/// Longest chunk-size line taken (hex digits and extensions).
const MAX_SIZE_LINE: usize = 256;

#[derive(Debug, Default)]
pub struct Dechunker {
    state: State,
    line: Vec<u8>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    #[default]
    Size,
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// After the last (zero) chunk: trailer lines up to a blank one.
    Trailer,
    Finished,
}

impl Dechunker {
    /// The payload bytes in `input`.
    pub fn feed(&mut self, input: &[u8]) -> Bytes {
        let mut out = BytesMut::new();
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Finished => break,
                State::Data(left) => {
                    let n = (input.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                    out.extend_from_slice(&input[i..i + n]);
                    i += n;
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                }
                State::Size | State::DataEnd | State::Trailer => {
                    let b = input[i];
                    i += 1;
                    if b != b'\n' {
                        if self.line.len() >= MAX_SIZE_LINE {
                            self.state = State::Finished;
                        } else if b != b'\r' {
                            self.line.push(b);
                        }
                        continue;
                    }
                    let line = std::mem::take(&mut self.line);
                    self.state = match self.state {
                        State::DataEnd if line.is_empty() => State::Size,
                        State::Trailer if line.is_empty() => State::Finished,
                        State::Trailer => State::Trailer,
                        State::Size => match size_of(&line) {
                            Some(0) => State::Trailer,
                            Some(n) => State::Data(n),
                            None => State::Finished,
                        },
                        _ => State::Finished,
                    };
                }
            }
        }
        out.freeze()
    }

    /// The last chunk came (or the framing broke): the body is over.
    pub fn finished(&self) -> bool {
        self.state == State::Finished
    }
}

fn size_of(line: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(line).ok()?;
    let hex = text.split(';').next()?.trim();
    if hex.is_empty() || hex.len() > 15 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_come_out_whole_in_any_split() {
        let body = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: 1\r\n\r\nignored";
        for split in 1..body.len() {
            let mut d = Dechunker::default();
            let mut out = Vec::new();
            for piece in body.chunks(split) {
                out.extend_from_slice(&d.feed(piece));
            }
            assert_eq!(out, b"hello, world", "split {split}");
            assert!(d.finished());
        }
    }

    #[test]
    fn a_bad_size_line_ends_the_body() {
        let mut d = Dechunker::default();
        assert_eq!(&d.feed(b"3\r\nabc\r\nzz\r\nmore")[..], b"abc");
        assert!(d.finished());
        let mut d = Dechunker::default();
        assert!(d.feed(&[b'1'; 300]).is_empty());
        assert!(d.finished(), "an endless size line is not buffered");
    }
}
