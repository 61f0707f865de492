//! The hand-off of a live show's audio: a session's decoder thread pushes PCM in the station
//! format, the pipeline thread takes it block by block. One show is on the feed at a time; a new
//! session (a DJ replacing their dead connection) takes it over. The buffer is bounded: a source
//! that sends faster than real time loses its oldest audio, so the delay to listeners stays
//! near the pre-roll instead of growing.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use super::handshake::{Method, ShowInfo};
use crate::title::StreamTitle;

/// Who is on the feed.
#[derive(Debug)]
pub struct SessionInfo {
    pub id: u64,
    /// `source`, or the DJ's account name.
    pub user: String,
    pub peer: SocketAddr,
    pub method: Method,
    pub show: ShowInfo,
    pub since: SystemTime,
    pub connected_at: Instant,
    /// What listeners see while this show is on air.
    pub title: Mutex<Arc<StreamTitle>>,
}

impl SessionInfo {
    pub fn title(&self) -> Arc<StreamTitle> {
        Arc::clone(&self.title.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn set_title(&self, text: &str) {
        *self.title.lock().unwrap_or_else(|e| e.into_inner()) = StreamTitle::new(text);
    }

    /// The name shown for the show: the DJ's account, else the stream name it sent.
    pub fn streamer(&self) -> &str {
        if self.user != super::auth::SOURCE_USER {
            return &self.user;
        }
        self.show
            .name
            .as_deref()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or("DJ")
    }
}

/// What the pipeline sees of the feed at the start of a block.
pub struct Snapshot {
    pub session: Option<Arc<SessionInfo>>,
    /// Frames waiting.
    pub buffered: usize,
    /// The session sent its last audio: what is buffered is all there is.
    pub ended: bool,
}

pub struct LiveFeed {
    inner: Mutex<Inner>,
    channels: usize,
    max_frames: usize,
}

struct Inner {
    session: Option<Arc<SessionInfo>>,
    pcm: VecDeque<f32>,
    ended: bool,
    /// Frames of the session pushed and taken so far: the time line titles are placed on.
    pushed: u64,
    taken: u64,
    /// Titles sent with the audio, each with the frame it begins at.
    titles: VecDeque<(u64, String)>,
}

impl Inner {
    fn reset(&mut self, session: Option<Arc<SessionInfo>>) {
        self.session = session;
        self.pcm.clear();
        self.ended = false;
        self.pushed = 0;
        self.taken = 0;
        self.titles.clear();
    }
}

/// Titles waiting for their audio, at most: a DJ tool that sends a title a second (some do)
/// cannot grow the queue.
const MAX_PENDING_TITLES: usize = 16;

impl LiveFeed {
    /// A feed of `channels`-channel frames holding at most `max_frames`.
    pub fn new(channels: usize, max_frames: usize) -> LiveFeed {
        LiveFeed {
            inner: Mutex::new(Inner {
                session: None,
                pcm: VecDeque::new(),
                ended: false,
                pushed: 0,
                taken: 0,
                titles: VecDeque::new(),
            }),
            channels: channels.max(1),
            max_frames: max_frames.max(1),
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // Plain buffers updated in single statements: a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A session takes the feed; whatever an earlier one left is dropped.
    pub fn begin(&self, session: Arc<SessionInfo>) {
        self.inner().reset(Some(session));
    }

    /// Appends a session's audio; false when the session no longer holds the feed (its
    /// decoder should stop). Returns the frames dropped from the front to stay bounded.
    pub fn push(&self, id: u64, samples: &[f32]) -> Option<usize> {
        let mut inner = self.inner();
        if inner.session.as_ref().is_none_or(|s| s.id != id) {
            return None;
        }
        inner.pcm.extend(samples);
        inner.pushed += (samples.len() / self.channels) as u64;
        let over = (inner.pcm.len() / self.channels).saturating_sub(self.max_frames);
        inner.pcm.drain(..over * self.channels);
        inner.taken += over as u64;
        Some(over)
    }

    /// A title for session `id` that begins with the audio pushed next (a new Ogg chain, a
    /// metadata update): it goes on air when that audio does, not before. An update equal to
    /// the last one is no change. False when the session no longer holds the feed.
    pub fn push_title(&self, id: u64, title: &str) -> bool {
        let mut inner = self.inner();
        let Some(session) = inner.session.clone().filter(|s| s.id == id) else {
            return false;
        };
        let last = inner
            .titles
            .back()
            .map(|(_, t)| t.clone())
            .unwrap_or_else(|| session.title().text().to_owned());
        if last == title {
            return true;
        }
        if inner.titles.len() == MAX_PENDING_TITLES {
            inner.titles.pop_front();
        }
        let at = inner.pushed;
        inner.titles.push_back((at, title.to_owned()));
        true
    }

    /// The session sent its last audio.
    pub fn end(&self, id: u64) {
        let mut inner = self.inner();
        if inner.session.as_ref().is_some_and(|s| s.id == id) {
            inner.ended = true;
        }
    }

    /// The session on the feed, if any.
    pub fn session(&self) -> Option<Arc<SessionInfo>> {
        self.inner().session.clone()
    }

    pub fn snapshot(&self) -> Snapshot {
        let inner = self.inner();
        Snapshot {
            session: inner.session.clone(),
            buffered: inner.pcm.len() / self.channels,
            ended: inner.ended,
        }
    }

    /// Moves up to `out.len()` samples (whole frames) of session `id` into `out`: the frames,
    /// and where among them a new title began (the session's title is then the new one).
    pub fn take(&self, id: u64, out: &mut [f32]) -> (usize, Option<usize>) {
        let mut inner = self.inner();
        if inner.session.as_ref().is_none_or(|s| s.id != id) {
            return (0, None);
        }
        let start = inner.taken;
        let n = (out.len() / self.channels).min(inner.pcm.len() / self.channels) * self.channels;
        for (dst, src) in out[..n].iter_mut().zip(inner.pcm.drain(..n)) {
            *dst = src;
        }
        inner.taken += (n / self.channels) as u64;
        // Titles whose first frame has now been taken become the show's title.
        let taken = inner.taken;
        let mut began = None;
        while let Some(&(at, _)) = inner.titles.front()
            && at < taken
        {
            if let (Some((_, text)), Some(session)) = (inner.titles.pop_front(), &inner.session) {
                session.set_title(&text);
                began = Some(at.saturating_sub(start) as usize);
            }
        }
        (n / self.channels, began)
    }

    /// The pipeline is done with session `id` (it ended and played out, or was given up): the
    /// feed is free.
    pub fn close(&self, id: u64) {
        let mut inner = self.inner();
        if inner.session.as_ref().is_some_and(|s| s.id == id) {
            inner.reset(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn session(id: u64) -> Arc<SessionInfo> {
        Arc::new(SessionInfo {
            id,
            user: "source".into(),
            peer: "127.0.0.1:5000".parse().unwrap(),
            method: Method::Put,
            show: ShowInfo::default(),
            since: SystemTime::now(),
            connected_at: Instant::now(),
            title: Mutex::new(StreamTitle::new("Live: DJ")),
        })
    }

    #[test]
    fn a_session_fills_and_drains_in_whole_frames_and_stays_bounded() {
        let feed = LiveFeed::new(2, 4);
        assert_eq!(feed.push(1, &[0.1; 4]), None, "nobody holds the feed");
        feed.begin(session(1));
        assert_eq!(feed.push(1, &[0.1, 0.2, 0.3, 0.4]), Some(0));
        assert_eq!(
            feed.push(1, &[0.5; 8]),
            Some(2),
            "over 4 frames: the oldest go"
        );
        assert_eq!(feed.snapshot().buffered, 4);
        let mut out = [0.0; 6];
        assert_eq!(feed.take(1, &mut out), (3, None));
        assert_eq!(out, [0.5; 6]);
        assert_eq!(
            feed.take(2, &mut out),
            (0, None),
            "another session's audio is not taken"
        );
        feed.end(1);
        let s = feed.snapshot();
        assert!(s.ended && s.buffered == 1);
        // A replacing session starts clean; the old decoder is told to stop.
        feed.begin(session(2));
        assert_eq!(feed.push(1, &[0.1; 2]), None);
        assert_eq!(feed.snapshot().buffered, 0);
        assert!(!feed.snapshot().ended);
        feed.close(1);
        assert!(
            feed.session().is_some(),
            "closing an old session leaves the new one"
        );
        feed.close(2);
        assert!(feed.session().is_none());
    }

    #[test]
    fn a_title_goes_on_air_with_its_audio_and_a_repeat_is_no_change() {
        let feed = LiveFeed::new(1, 100);
        feed.begin(session(1));
        feed.push(1, &[0.0; 10]);
        assert!(feed.push_title(1, "Artist - Song"));
        assert!(feed.push_title(1, "Artist - Song"), "a repeat is accepted");
        feed.push(1, &[0.0; 10]);
        let mut out = [0.0; 10];
        assert_eq!(feed.take(1, &mut out[..5]), (5, None));
        let title = || feed.session().unwrap().title().text().to_owned();
        assert_eq!(feed.take(1, &mut out[..5]), (5, None));
        assert_eq!(title(), "Live: DJ", "the song's audio has not played yet");
        assert_eq!(
            feed.take(1, &mut out),
            (10, Some(0)),
            "it begins the next take"
        );
        assert_eq!(title(), "Artist - Song");
        feed.push(1, &[0.0; 10]);
        feed.push_title(1, "Next");
        feed.push(1, &[0.0; 10]);
        assert_eq!(feed.take(1, &mut [0.0; 15]), (15, Some(10)), "mid-take");
        assert!(!feed.push_title(2, "Other"), "not this session's feed");
    }

    #[test]
    fn the_streamer_is_the_dj_or_the_stream_name() {
        let mut s = Arc::try_unwrap(session(1)).unwrap();
        assert_eq!(s.streamer(), "DJ");
        s.show.name = Some("Night Shift".into());
        assert_eq!(s.streamer(), "Night Shift");
        s.user = "alice".into();
        assert_eq!(s.streamer(), "alice");
    }
}
