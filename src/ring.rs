//! `FrameRing`: the byte-bounded history of encoded frames of one mount, written by the pipeline thread
//! and read through [`Window`]s, the readers' own copies of its recent frames.
//!
//! The ring never waits for a reader. A listener that falls further behind than the history holds
//! (the mount's `queue`) finds its next frame gone from the window and is dropped as lagged, so one
//! slow client can never slow the broadcast. Frames are `Bytes`, so copying a frame into a window is
//! a reference-count increment, never a copy of audio, and a window is refreshed under the ring's
//! lock only for the frames published since the last refresh.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::Thread;

use bytes::Bytes;

use crate::title::StreamTitle;

/// One encoded frame (an MP3 or ADTS frame, or whole Ogg pages) and the title in force when it
/// was produced.
#[derive(Clone, Debug)]
pub struct Frame {
    pub data: Bytes,
    pub title: Arc<StreamTitle>,
    /// What a reader whose stream starts at this frame must be sent before it: the header pages
    /// of the Ogg logical stream the frame belongs to. Empty for MP3 and ADTS, and for the
    /// header pages themselves, which are frames of their own.
    pub header: Bytes,
}

impl Frame {
    /// A frame that needs nothing before it (MP3, ADTS).
    pub fn new(data: Bytes, title: &Arc<StreamTitle>) -> Frame {
        Frame {
            data,
            title: Arc::clone(title),
            header: Bytes::new(),
        }
    }
}

/// The broadcast history of one mount.
pub struct FrameRing {
    state: Mutex<State>,
}

struct State {
    frames: VecDeque<Frame>,
    /// Sequence number of `frames[0]`; frames are numbered from 0 since the ring was made.
    first_seq: u64,
    bytes: usize,
    max_bytes: usize,
    closed: bool,
    /// Threads unparked on every publish and on close (the fan-out thread).
    subscribers: Vec<Thread>,
}

impl FrameRing {
    /// A ring that keeps at least `max_bytes` of history (the newest frame is always kept).
    pub fn new(max_bytes: usize) -> Arc<FrameRing> {
        Arc::new(FrameRing {
            state: Mutex::new(State {
                frames: VecDeque::new(),
                first_seq: 0,
                bytes: 0,
                max_bytes,
                closed: false,
                subscribers: Vec::new(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock can only come from a bug in this file; the state stays
        // consistent between statements, so continuing with it is safe.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends frames and unparks the subscribers. Called only by the pipeline thread, about
    /// every 100 ms: one wake-up per batch, not per frame.
    pub fn publish(&self, frames: impl IntoIterator<Item = Frame>) {
        let mut s = self.lock();
        for frame in frames {
            s.bytes += frame.data.len();
            s.frames.push_back(frame);
        }
        while s.bytes > s.max_bytes && s.frames.len() > 1 {
            if let Some(old) = s.frames.pop_front() {
                s.bytes -= old.data.len();
                s.first_seq += 1;
            }
        }
        s.subscribers.iter().for_each(Thread::unpark);
    }

    /// Ends the stream: readers get what is left, then see the window closed.
    pub fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        s.subscribers.iter().for_each(Thread::unpark);
    }

    /// Unparks `thread` on every publish and on close.
    pub fn subscribe(&self, thread: Thread) {
        self.lock().subscribers.push(thread);
    }

    /// Sequence number of the first frame of a burst of about `burst_bytes` back from the live
    /// edge: whole frames only, so a new listener's first byte is a frame's first byte.
    pub fn burst_start(&self, burst_bytes: usize) -> u64 {
        let s = self.lock();
        let mut taken = 0;
        let mut back = 0;
        for f in s.frames.iter().rev() {
            if taken + f.data.len() > burst_bytes {
                break;
            }
            taken += f.data.len();
            back += 1;
        }
        s.first_seq + (s.frames.len() - back) as u64
    }

    /// Bytes of history currently held.
    pub fn held_bytes(&self) -> usize {
        self.lock().bytes
    }
}

/// A reader's copy of the ring's recent frames, from a starting sequence number up to the newest
/// frame seen at the last [`Window::sync`]. Readers work on it without holding the ring's lock.
#[derive(Default)]
pub struct Window {
    frames: VecDeque<Frame>,
    /// Sequence number of `frames[0]`.
    first_seq: u64,
    closed: bool,
}

impl Window {
    /// An empty window whose first sync copies the ring from `seq` on.
    pub fn starting_at(seq: u64) -> Window {
        Window {
            frames: VecDeque::new(),
            first_seq: seq,
            closed: false,
        }
    }

    /// Drops the frames the ring has evicted and copies those published since the last sync.
    /// Cost: one lock and one reference-count increment per new frame.
    pub fn sync(&mut self, ring: &FrameRing) {
        let s = ring.lock();
        while self.first_seq < s.first_seq && self.frames.pop_front().is_some() {
            self.first_seq += 1;
        }
        if self.frames.is_empty() {
            self.first_seq = self.first_seq.max(s.first_seq);
        }
        let have_until = self.first_seq + self.frames.len() as u64;
        let ring_end = s.first_seq + s.frames.len() as u64;
        if have_until < ring_end {
            let from = (have_until - s.first_seq) as usize;
            self.frames.extend(s.frames.range(from..).cloned());
        }
        self.closed = s.closed;
    }

    /// Sequence number of the oldest frame still held.
    pub fn first_seq(&self) -> u64 {
        self.first_seq
    }

    /// Sequence number the next published frame will get.
    pub fn end_seq(&self) -> u64 {
        self.first_seq + self.frames.len() as u64
    }

    /// The frame numbered `seq`, if the window holds it.
    pub fn get(&self, seq: u64) -> Option<&Frame> {
        let i = usize::try_from(seq.checked_sub(self.first_seq)?).ok()?;
        self.frames.get(i)
    }

    /// True once the ring is closed: nothing will follow the frames held.
    pub fn closed(&self) -> bool {
        self.closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(n: usize, size: usize, title: &Arc<StreamTitle>) -> Vec<Frame> {
        (0..n)
            .map(|i| Frame::new(Bytes::from(vec![i as u8; size]), title))
            .collect()
    }

    #[test]
    fn burst_starts_the_given_bytes_back_on_a_frame_boundary() {
        let t = StreamTitle::new("a");
        let ring = FrameRing::new(10_000);
        ring.publish(frames(20, 100, &t));
        let start = ring.burst_start(450);
        assert_eq!(start, 16, "450 bytes of burst is 4 whole 100-byte frames");
        let mut w = Window::starting_at(start);
        w.sync(&ring);
        assert_eq!((w.first_seq(), w.end_seq()), (16, 20));
        assert_eq!(w.get(16).map(|f| f.data[0]), Some(16));
        assert_eq!(ring.burst_start(0), 20);
    }

    #[test]
    fn a_window_follows_publishes_and_evictions() {
        let t = StreamTitle::new("a");
        let ring = FrameRing::new(1_000);
        let mut w = Window::starting_at(0);
        ring.publish(frames(5, 100, &t));
        w.sync(&ring);
        assert_eq!((w.first_seq(), w.end_seq()), (0, 5));
        ring.publish(frames(10, 100, &t));
        assert_eq!(ring.held_bytes(), 1_000);
        w.sync(&ring);
        assert_eq!(
            (w.first_seq(), w.end_seq()),
            (5, 15),
            "evicted frames leave the window too"
        );
        assert!(w.get(4).is_none(), "a reader at 4 has lagged");
        assert!(!w.closed());
        ring.close();
        w.sync(&ring);
        assert!(w.closed());
    }

    #[test]
    fn a_window_that_was_far_behind_jumps_to_the_ring() {
        let t = StreamTitle::new("a");
        let ring = FrameRing::new(300);
        ring.publish(frames(10, 100, &t));
        let mut w = Window::starting_at(2);
        w.sync(&ring);
        assert_eq!((w.first_seq(), w.end_seq()), (7, 10));
    }

    #[test]
    fn subscribers_are_unparked_on_publish() {
        let t = StreamTitle::new("a");
        let ring = FrameRing::new(1_000);
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = {
            let ring = Arc::clone(&ring);
            std::thread::spawn(move || {
                let mut w = Window::starting_at(0);
                loop {
                    w.sync(&ring);
                    if w.closed() {
                        return w.end_seq();
                    }
                    let _ = tx.send(());
                    std::thread::park();
                }
            })
        };
        ring.subscribe(reader.thread().clone());
        // The reader parks at least once before the close, so the close must wake it.
        let _ = rx.recv();
        ring.publish(frames(3, 10, &t));
        ring.close();
        assert_eq!(reader.join().unwrap(), 3);
    }

    #[test]
    fn oversized_frame_is_kept_alone() {
        let t = StreamTitle::new("a");
        let ring = FrameRing::new(50);
        ring.publish(frames(3, 100, &t));
        assert_eq!(ring.held_bytes(), 100);
    }
}
