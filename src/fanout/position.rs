//! What one listener has been sent: the rest of its response head, its place in the mount's
//! frames, and its ICY metadata position. [`StreamPos::write_to`] turns everything pending into
//! vectored writes and advances by what the socket took, however little.
//!
//! No audio is copied: the slices point into the window's shared frames and the titles' shared
//! metadata blocks, and the only state kept per listener is a few counters and reference counts.

use std::io::{self, IoSlice, Write};
use std::sync::Arc;

use bytes::{Buf, Bytes};

use crate::ring::{Frame, Window};
use crate::title::StreamTitle;

/// Slices per `writev`: a couple of seconds of 128 kbps audio with its metadata blocks, far
/// below the kernel's `IOV_MAX` (1024).
pub const MAX_SLICES: usize = 64;

/// The block announcing "title unchanged".
static NO_CHANGE: [u8; 1] = [0];

/// One listener's position in its stream.
#[derive(Debug)]
pub struct StreamPos {
    /// The part of the response head not yet written.
    head: Option<Bytes>,
    /// The frame the next audio byte comes from, and how much of it is already written.
    seq: u64,
    offset: usize,
    icy: Option<IcyPos>,
    /// Every byte written so far, head and metadata included.
    sent: u64,
}

#[derive(Debug)]
struct IcyPos {
    metaint: usize,
    /// Audio bytes before the next metadata block.
    until_block: usize,
    /// The title last announced, compared by identity (one `StreamTitle` per change).
    last: Option<Arc<StreamTitle>>,
    /// A boundary was reached and its block not started: the title in force there.
    due: Option<Arc<StreamTitle>>,
    /// The rest of a block a write stopped in the middle of.
    rest: Option<Bytes>,
}

/// How a [`StreamPos::write_to`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Everything in the window was written.
    Drained,
    /// The socket took less than offered (its buffer is full) or the write budget ran out.
    Blocked,
}

#[derive(Clone, Copy)]
enum Seg<'a> {
    Head,
    BlockRest,
    Audio(&'a Frame),
    Block {
        title: &'a Arc<StreamTitle>,
        unchanged: bool,
    },
}

impl StreamPos {
    /// A stream that starts with `head`, then audio from frame `seq`, with a metadata block every
    /// `metaint` audio bytes when the listener asked for ICY metadata.
    pub fn new(head: Bytes, seq: u64, metaint: Option<usize>) -> StreamPos {
        StreamPos {
            head: (!head.is_empty()).then_some(head),
            seq,
            offset: 0,
            icy: metaint.map(|m| IcyPos {
                // A zero interval cannot be framed; config validation rejects it anyway.
                metaint: m.max(1),
                until_block: m.max(1),
                last: None,
                due: None,
                rest: None,
            }),
            sent: 0,
        }
    }

    /// Bytes written so far, head and metadata included.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// True when the next frame to send has left the window: the listener fell further behind
    /// than the mount's queue.
    pub fn lagged(&self, window: &Window) -> bool {
        self.seq < window.first_seq()
    }

    /// Frames published and not yet (completely) written.
    pub fn frames_behind(&self, window: &Window) -> u64 {
        window.end_seq().saturating_sub(self.seq)
    }

    /// Writes what is pending, in at most `max_writes` calls. Bytes written are counted even when
    /// an error ends the stream.
    pub fn write_to<W: Write>(
        &mut self,
        out: &mut W,
        window: &Window,
        max_writes: usize,
    ) -> io::Result<Flow> {
        let mut writes = 0;
        while writes < max_writes {
            // Local clones (reference counts) so the planned slices do not borrow `self`,
            // which `advance` updates.
            let head = self.head.clone();
            let rest = self.icy.as_ref().and_then(|i| i.rest.clone());
            let due = self.icy.as_ref().and_then(|i| i.due.clone());
            let mut iov = [IoSlice::new(&[]); MAX_SLICES];
            let mut segs = [(Seg::Head, 0usize); MAX_SLICES];
            let (n, planned) = self.plan(
                window,
                head.as_deref(),
                rest.as_deref(),
                due.as_ref(),
                &mut iov,
                &mut segs,
            );
            if n == 0 {
                return Ok(Flow::Drained);
            }
            if planned == 0 {
                // Only empty frames: a socket given nothing but empty slices writes 0 bytes, which
                // is not the end of the stream. Step past them without a write.
                self.advance(&segs[..n], 0);
                continue;
            }
            writes += 1;
            match out.write_vectored(&iov[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(k) => {
                    self.advance(&segs[..n], k);
                    if k < planned {
                        return Ok(Flow::Blocked);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flow::Blocked),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Flow::Blocked)
    }

    /// Fills `iov` with everything pending, in stream order, and `segs` with what each slice is.
    /// Returns the slices used and their total length.
    fn plan<'a>(
        &self,
        window: &'a Window,
        head: Option<&'a [u8]>,
        rest: Option<&'a [u8]>,
        due: Option<&'a Arc<StreamTitle>>,
        iov: &mut [IoSlice<'a>; MAX_SLICES],
        segs: &mut [(Seg<'a>, usize); MAX_SLICES],
    ) -> (usize, usize) {
        let mut n = 0;
        let mut total = 0;
        let mut push = |n: &mut usize, bytes: &'a [u8], seg: Seg<'a>| {
            iov[*n] = IoSlice::new(bytes);
            segs[*n] = (seg, bytes.len());
            total += bytes.len();
            *n += 1;
        };
        if let Some(h) = head {
            push(&mut n, h, Seg::Head);
        }
        let mut last = self.icy.as_ref().and_then(|i| i.last.as_ref());
        let mut until = self.icy.as_ref().map_or(usize::MAX, |i| i.until_block);
        if let Some(r) = rest {
            push(&mut n, r, Seg::BlockRest);
        } else if let Some(title) = due {
            let (bytes, seg) = block(title, &mut last);
            push(&mut n, bytes, seg);
        }
        let metaint = self.icy.as_ref().map(|i| i.metaint);
        let mut seq = self.seq;
        let mut offset = self.offset;
        'frames: while n < MAX_SLICES {
            let Some(frame) = window.get(seq) else { break };
            let data = &frame.data[offset.min(frame.data.len())..];
            let metaint = match metaint {
                Some(m) if !data.is_empty() => m,
                // No metadata: the frame goes whole. An empty frame still gets its (empty)
                // slice, which moves `advance` on to the next frame.
                _ => {
                    push(&mut n, data, Seg::Audio(frame));
                    seq += 1;
                    offset = 0;
                    continue;
                }
            };
            let mut pos = 0;
            while pos < data.len() {
                if n >= MAX_SLICES {
                    break 'frames;
                }
                let take = until.min(data.len() - pos);
                push(&mut n, &data[pos..pos + take], Seg::Audio(frame));
                pos += take;
                until -= take;
                if until == 0 {
                    if n >= MAX_SLICES {
                        break 'frames;
                    }
                    let (bytes, seg) = block(&frame.title, &mut last);
                    push(&mut n, bytes, seg);
                    until = metaint;
                }
            }
            seq += 1;
            offset = 0;
        }
        (n, total)
    }

    /// Moves past the first `written` bytes of the planned `segs`.
    fn advance(&mut self, segs: &[(Seg<'_>, usize)], mut written: usize) {
        self.sent += written as u64;
        for &(seg, len) in segs {
            let k = len.min(written);
            if k == 0 && len > 0 {
                break;
            }
            written -= k;
            match seg {
                Seg::Head => {
                    if let Some(h) = &mut self.head {
                        h.advance(k);
                        if h.is_empty() {
                            self.head = None;
                        }
                    }
                }
                Seg::BlockRest => {
                    if let Some(icy) = &mut self.icy
                        && let Some(r) = &mut icy.rest
                    {
                        r.advance(k);
                        if r.is_empty() {
                            icy.rest = None;
                        }
                    }
                }
                Seg::Block { title, unchanged } => {
                    if let Some(icy) = &mut self.icy {
                        icy.due = None;
                        if !unchanged {
                            icy.last = Some(Arc::clone(title));
                        }
                        if k < len {
                            // Only a title block can be cut: "unchanged" is one byte.
                            icy.rest = Some(title.block().slice(k..));
                        }
                    }
                }
                Seg::Audio(frame) => {
                    self.offset += k;
                    if let Some(icy) = &mut self.icy {
                        icy.until_block -= k;
                        if icy.until_block == 0 {
                            icy.due = Some(Arc::clone(&frame.title));
                            icy.until_block = icy.metaint;
                        }
                    }
                    if self.offset >= frame.data.len() {
                        self.seq += 1;
                        self.offset = 0;
                    }
                }
            }
            if k < len {
                break;
            }
        }
    }
}

/// The metadata block for a boundary where `title` is in force: "unchanged" when it is the
/// title `last` announced, else its block, which becomes `last`.
fn block<'a: 'l, 'l>(
    title: &'a Arc<StreamTitle>,
    last: &mut Option<&'l Arc<StreamTitle>>,
) -> (&'a [u8], Seg<'a>) {
    let unchanged = last.is_some_and(|l| Arc::ptr_eq(l, title));
    if !unchanged {
        *last = Some(title);
    }
    let bytes: &[u8] = if unchanged { &NO_CHANGE } else { title.block() };
    (bytes, Seg::Block { title, unchanged })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::FrameRing;

    /// A socket stand-in that takes at most `per_call` bytes per write and then refuses
    /// (`WouldBlock`) after `calls` writes, so partial writes land anywhere in a slice.
    struct Sink {
        data: Vec<u8>,
        per_call: usize,
        calls: usize,
        writes: usize,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            if self.calls == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.calls -= 1;
            self.writes += 1;
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

    /// Splits an ICY stream as a player does: `metaint` audio bytes, then a length byte and
    /// block. Returns the audio and one entry per boundary (`None` for "unchanged").
    fn parse(stream: &[u8], metaint: usize) -> (Vec<u8>, Vec<Option<String>>) {
        let (mut audio, mut metas, mut rest) = (Vec::new(), Vec::new(), stream);
        while !rest.is_empty() {
            let take = metaint.min(rest.len());
            audio.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if take < metaint || rest.is_empty() {
                break;
            }
            let len = usize::from(rest[0]) * 16;
            let body = &rest[1..1 + len];
            let end = body.iter().position(|&b| b == 0).unwrap_or(len);
            metas.push((len > 0).then(|| String::from_utf8(body[..end].to_vec()).unwrap()));
            rest = &rest[1 + len..];
        }
        (audio, metas)
    }

    /// Frames of the given sizes and titles; bytes follow a period of 251, which never aligns
    /// with the metadata interval, so a misplaced byte shows.
    fn publish(ring: &FrameRing, plan: &[(usize, &Arc<StreamTitle>)]) -> Vec<u8> {
        let mut sent = Vec::new();
        let mut n = 0u32;
        let frames: Vec<Frame> = plan
            .iter()
            .map(|&(size, title)| {
                let data: Bytes = (0..size)
                    .map(|_| {
                        n += 1;
                        (n % 251) as u8
                    })
                    .collect();
                sent.extend_from_slice(&data);
                Frame::new(data, title)
            })
            .collect();
        ring.publish(frames);
        sent
    }

    fn drain(pos: &mut StreamPos, window: &Window, per_call: usize) -> Sink {
        let mut sink = Sink {
            data: Vec::new(),
            per_call,
            calls: usize::MAX,
            writes: 0,
        };
        for _ in 0..100_000 {
            if pos.write_to(&mut sink, window, 3).unwrap() == Flow::Drained {
                return sink;
            }
        }
        panic!("never drained");
    }

    #[test]
    fn head_audio_and_metadata_survive_any_split_of_the_writes() {
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
        // Boundaries at 16000, 32000, 48000 (title A), 64000, 80000 (title B); 81425 bytes.
        let expected = [
            Some("StreamTitle='First';".to_string()),
            None,
            None,
            Some("StreamTitle='Second';".to_string()),
            None,
        ];
        for per_call in [1, 7, 33, 1_000, 16_001, usize::MAX] {
            let ring = FrameRing::new(1 << 20);
            let sent = publish(&ring, &plan);
            let mut window = Window::starting_at(0);
            window.sync(&ring);
            let head = Bytes::from_static(b"HTTP/1.0 200 OK\r\n\r\n");
            let mut pos = StreamPos::new(head.clone(), 0, Some(metaint));
            let sink = drain(&mut pos, &window, per_call);
            assert_eq!(&sink.data[..head.len()], &head[..], "per_call {per_call}");
            let (audio, metas) = parse(&sink.data[head.len()..], metaint);
            assert_eq!(audio, sent, "per_call {per_call}");
            assert_eq!(metas, expected, "per_call {per_call}");
            assert_eq!(pos.sent(), sink.data.len() as u64);
            assert_eq!(pos.frames_behind(&window), 0);
        }
    }

    #[test]
    fn without_metadata_the_stream_is_the_frames_in_order() {
        let t = StreamTitle::new("t");
        let ring = FrameRing::new(1 << 20);
        let sizes: Vec<(usize, &Arc<StreamTitle>)> = (0..200).map(|i| (100 + i, &t)).collect();
        let sent = publish(&ring, &sizes);
        let mut window = Window::starting_at(0);
        window.sync(&ring);
        let mut pos = StreamPos::new(Bytes::new(), 0, None);
        let sink = drain(&mut pos, &window, 5_000);
        assert_eq!(sink.data, sent);
        // 200 frames at 64 slices per write: at least 4 writes, never one per frame.
        assert!(
            sink.writes >= 4 && sink.writes < 10,
            "{} writes",
            sink.writes
        );
    }

    #[test]
    fn empty_frames_are_stepped_over_without_a_write() {
        // Found by the `icy` fuzz target: a window of empty frames only was written as empty
        // slices, the write took 0 bytes, and that ended the stream with `WriteZero`.
        let t = StreamTitle::new("O'BrSt\u{fffd}");
        for metaint in [None, Some(256)] {
            let ring = FrameRing::new(1 << 20);
            publish(&ring, &[(0, &t), (0, &t)]);
            let mut window = Window::starting_at(0);
            window.sync(&ring);
            let mut pos = StreamPos::new(Bytes::new(), 0, metaint);
            let sink = drain(&mut pos, &window, 1);
            assert!(sink.data.is_empty() && sink.writes == 0, "{metaint:?}");
            assert_eq!(pos.frames_behind(&window), 0);
            // Audio after them is sent as usual.
            let sent = publish(&ring, &[(300, &t), (0, &t)]);
            window.sync(&ring);
            let sink = drain(&mut pos, &window, 7);
            let (audio, _) = parse(&sink.data, metaint.unwrap_or(usize::MAX));
            assert_eq!(audio, sent, "{metaint:?}");
            assert_eq!(pos.frames_behind(&window), 0);
        }
    }

    #[test]
    fn a_full_socket_blocks_and_resumes_where_it_stopped() {
        let t = StreamTitle::new("t");
        let ring = FrameRing::new(1 << 20);
        let sent = publish(&ring, &[(400, &t), (400, &t), (400, &t)]);
        let mut window = Window::starting_at(0);
        window.sync(&ring);
        let mut pos = StreamPos::new(Bytes::new(), 0, Some(500));
        let mut sink = Sink {
            data: Vec::new(),
            per_call: 450,
            calls: 1,
            writes: 0,
        };
        assert_eq!(pos.write_to(&mut sink, &window, 8).unwrap(), Flow::Blocked);
        assert_eq!(sink.data.len(), 450);
        // A partial write means the socket is full: no second try in the same turn.
        assert_eq!(pos.write_to(&mut sink, &window, 8).unwrap(), Flow::Blocked);
        assert_eq!(sink.data.len(), 450);
        (sink.calls, sink.per_call) = (usize::MAX, usize::MAX);
        assert_eq!(pos.write_to(&mut sink, &window, 8).unwrap(), Flow::Drained);
        let (audio, metas) = parse(&sink.data, 500);
        assert_eq!(audio, sent);
        assert_eq!(metas, vec![Some("StreamTitle='t';".to_string()), None]);
    }

    #[test]
    fn a_listener_behind_the_window_has_lagged() {
        let t = StreamTitle::new("t");
        let ring = FrameRing::new(1_000);
        publish(&ring, &[(400, &t); 5]);
        let mut window = Window::starting_at(0);
        window.sync(&ring);
        let pos = StreamPos::new(Bytes::new(), 0, None);
        assert!(pos.lagged(&window));
        let pos = StreamPos::new(Bytes::new(), window.first_seq(), None);
        assert!(!pos.lagged(&window));
        assert_eq!(pos.frames_behind(&window), 2);
    }
}
