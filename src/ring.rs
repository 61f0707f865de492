//! `FrameRing`: the byte-bounded history of encoded frames of one mount, written by the pipeline thread
//! and read by every listener through its own [`Cursor`].
//!
//! The ring never waits for a listener. A listener that falls further behind than the history holds
//! (the mount's `queue`) finds its next frame evicted and is told it lagged, so one slow client can never
//! slow the broadcast. Frames are `Bytes`, so handing a frame to a listener is a reference-count
//! increment, never a copy of audio.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;

use crate::http::icy::StreamTitle;

/// One encoded frame and the title in force when it was produced.
#[derive(Clone, Debug)]
pub struct Frame {
    pub data: Bytes,
    pub title: Arc<StreamTitle>,
}

/// What a cursor found.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Frames were appended to the caller's buffer.
    Frames,
    /// The cursor fell out of the history; `missed` frames are gone.
    Lagged { missed: u64 },
    /// The ring was closed (shutdown) and everything before the close has been read.
    Closed,
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
    /// Listeners that found nothing to read and wait for the next publish.
    waiting: Vec<Waker>,
    /// Spare vector swapped with `waiting` on publish, so waking never allocates.
    spare: Vec<Waker>,
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
                waiting: Vec::new(),
                spare: Vec::new(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock can only come from a bug in this file; the state stays
        // consistent between statements, so continuing with it is safe.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends frames and wakes the listeners waiting for them. Called only by the pipeline thread,
    /// about every 100 ms: one wake-up per batch, not per frame, keeps thousands of listeners cheap.
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
        let mut wake = std::mem::take(&mut s.spare);
        std::mem::swap(&mut wake, &mut s.waiting);
        drop(s);
        // Wake outside the lock: woken listeners immediately try to take it.
        for w in wake.drain(..) {
            w.wake();
        }
        self.lock().spare = wake;
    }

    /// Ends the stream: cursors read what is left, then get [`Next::Closed`].
    pub fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        let wake = std::mem::take(&mut s.waiting);
        drop(s);
        wake.into_iter().for_each(Waker::wake);
    }

    /// A cursor that starts about `burst_bytes` back from the live edge, on a frame boundary.
    pub fn cursor(self: &Arc<Self>, burst_bytes: usize) -> Cursor {
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
        let next = s.first_seq + (s.frames.len() - back) as u64;
        Cursor {
            ring: Arc::clone(self),
            next,
        }
    }

    /// Bytes of history currently held.
    pub fn held_bytes(&self) -> usize {
        self.lock().bytes
    }
}

/// One listener's read position in a [`FrameRing`].
pub struct Cursor {
    ring: Arc<FrameRing>,
    next: u64,
}

impl Cursor {
    /// Appends up to `max` frames to `out` without waiting; registers the task's waker when there
    /// is nothing to read so that the next publish wakes it.
    pub fn poll_batch(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Vec<Frame>,
        max: usize,
    ) -> Poll<Next> {
        let mut s = self.ring.lock();
        if self.next < s.first_seq {
            let missed = s.first_seq - self.next;
            return Poll::Ready(Next::Lagged { missed });
        }
        let start = (self.next - s.first_seq) as usize;
        if start < s.frames.len() {
            let before = out.len();
            out.extend(s.frames.range(start..).take(max).cloned());
            self.next += (out.len() - before) as u64;
            return Poll::Ready(Next::Frames);
        }
        if s.closed {
            return Poll::Ready(Next::Closed);
        }
        // Registering under the same lock that saw "nothing new" means no publish can slip between
        // the check and the registration, so no wake-up is lost.
        s.waiting.push(cx.waker().clone());
        Poll::Pending
    }

    /// Async form of [`Cursor::poll_batch`].
    pub async fn next_batch(&mut self, out: &mut Vec<Frame>, max: usize) -> Next {
        std::future::poll_fn(|cx| self.poll_batch(cx, out, max)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(n: usize, size: usize, title: &Arc<StreamTitle>) -> Vec<Frame> {
        (0..n)
            .map(|i| Frame {
                data: Bytes::from(vec![i as u8; size]),
                title: Arc::clone(title),
            })
            .collect()
    }

    #[tokio::test]
    async fn burst_starts_the_given_bytes_back_on_a_frame_boundary() {
        let t = StreamTitle::new("a");
        let ring = FrameRing::new(10_000);
        ring.publish(frames(20, 100, &t));
        let mut c = ring.cursor(450);
        let mut out = Vec::new();
        assert_eq!(c.next_batch(&mut out, 100).await, Next::Frames);
        assert_eq!(
            out.len(),
            4,
            "450 bytes of burst is 4 whole 100-byte frames"
        );
        assert_eq!(out[0].data[0], 16);

        let mut none = ring.cursor(0);
        out.clear();
        ring.publish(frames(1, 100, &t));
        assert_eq!(none.next_batch(&mut out, 100).await, Next::Frames);
        assert_eq!(out.len(), 1);
    }

    #[tokio::test]
    async fn history_is_bounded_and_a_slow_cursor_lags() {
        let t = StreamTitle::new("a");
        let ring = FrameRing::new(1_000);
        let mut slow = ring.cursor(0);
        ring.publish(frames(5, 100, &t));
        ring.publish(frames(10, 100, &t));
        assert_eq!(ring.held_bytes(), 1_000);
        let mut out = Vec::new();
        assert_eq!(
            slow.next_batch(&mut out, 100).await,
            Next::Lagged { missed: 5 }
        );
        assert!(out.is_empty());
    }

    #[tokio::test]
    async fn a_waiting_cursor_wakes_on_publish_and_ends_on_close() {
        let t = StreamTitle::new("a");
        let ring = FrameRing::new(1_000);
        let mut c = ring.cursor(0);
        let reader = tokio::spawn(async move {
            let mut got = 0;
            let mut out = Vec::new();
            loop {
                out.clear();
                match c.next_batch(&mut out, 2).await {
                    Next::Frames => got += out.len(),
                    Next::Closed => return got,
                    Next::Lagged { .. } => panic!("lagged"),
                }
            }
        });
        tokio::task::yield_now().await;
        ring.publish(frames(3, 10, &t));
        tokio::task::yield_now().await;
        ring.publish(frames(2, 10, &t));
        ring.close();
        assert_eq!(reader.await.unwrap(), 5);
    }

    #[test]
    fn oversized_frame_is_kept_alone() {
        let t = StreamTitle::new("a");
        let ring = FrameRing::new(50);
        ring.publish(frames(3, 100, &t));
        assert_eq!(ring.held_bytes(), 100);
    }
}
