//! The mixer: where the AutoDJ's tracks meet. It holds the deck playing, the deck coming in
//! during a transition, and the next track with the plan to reach it; each block it sums the
//! decks (each at its own gain, the outgoing one faded as planned) into one programme, and
//! says which title every stretch of the block carries. The live input of the live-shows issue
//! is meant to be a third deck here.
//!
//! The next track is taken from the scheduler's channel as soon as a track starts, so its plan
//! (the planner's pure function of both tracks' cues) is known long before the transition: a
//! crossfade needs the next track decoded from the moment it comes in. Decoder calls run under
//! `catch_unwind`: a panic skips that track (kept out until it changes) and the other deck plays
//! on.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::{self, error::TryRecvError};

use super::deck::Deck;
use super::planner::{self, Plan};
use crate::analysis::{CueSettings, Cues, derive_cues};
use crate::audio::clock::Clock;
use crate::catalog::TrackRef;
use crate::config::{Config, Programme};
use crate::metrics::Metrics;
use crate::scheduler::LoadedTrack;
use crate::station::OnAir;
use crate::supervise::{fault, panic_message};
use crate::title::StreamTitle;

/// A stretch of one block and the title listeners should see for it.
pub struct Segment {
    /// Sample index (interleaved) where it ends.
    pub end: usize,
    pub title: Arc<StreamTitle>,
    /// Music (a track), not filler silence.
    pub music: bool,
}

/// The next track, readied on a deck-to-be, and how the mixer goes to it.
struct Next {
    track: LoadedTrack,
    cues: Cues,
    gain_db: f64,
    plan: Plan,
}

pub struct Mixer {
    config: Arc<Config>,
    metrics: Metrics,
    /// Where what goes on air is told.
    on_air: Arc<OnAir>,
    tracks: mpsc::Receiver<LoadedTrack>,
    bad: mpsc::Sender<TrackRef>,
    clock: Clock,
    rate: u32,
    channels: usize,
    cue_settings: CueSettings,
    current: Option<Deck>,
    incoming: Option<Deck>,
    next: Option<Next>,
    /// The scheduler hung up (shutting down).
    disconnected: bool,
    /// A skip came with no next track known: where the track was then, for the plan to it.
    skipped_at: Option<Duration>,
    /// Title shown while nothing plays (an operator's title holds over filler silence).
    idle_title: Arc<StreamTitle>,
    /// The track that just ended with nothing overlapping it (a sequence, or a next track that
    /// came late): its key and whether it was a jingle, so that the track that follows is
    /// counted and logged as their transition.
    ended: Option<(Arc<str>, bool)>,
    /// A live show is on: the decks fade out and no track starts.
    held: bool,
    /// The track a live show interrupted, to go on with after it (`[live] after = "resume"`).
    interrupted: Option<Interrupted>,
    /// The fade-in of the first track after a live show.
    fade_in_next: Option<Duration>,
}

/// A track taken off air by a live show, and where it was when its fade ended.
struct Interrupted {
    track: LoadedTrack,
    cues: Cues,
    gain_db: f64,
    at: Duration,
}

/// How the AutoDJ comes back after a live show: a short fade-in, so its first track does not
/// start on a step after the DJ's last word.
pub const AFTER_LIVE_FADE_IN: Duration = Duration::from_millis(500);

impl Mixer {
    pub fn new(
        config: Arc<Config>,
        metrics: Metrics,
        on_air: Arc<OnAir>,
        tracks: mpsc::Receiver<LoadedTrack>,
        bad: mpsc::Sender<TrackRef>,
        clock: Clock,
    ) -> Mixer {
        let audio = config.audio;
        Mixer {
            rate: audio.sample_rate,
            channels: usize::from(audio.channels),
            cue_settings: CueSettings::default(),
            config,
            metrics,
            on_air,
            tracks,
            bad,
            clock,
            current: None,
            incoming: None,
            next: None,
            disconnected: false,
            skipped_at: None,
            idle_title: StreamTitle::new(""),
            ended: None,
            held: false,
            interrupted: None,
            fade_in_next: None,
        }
    }

    /// A live show goes on air: whatever plays fades out over `fade` (equal power) and no track
    /// starts until [`Mixer::release`]. With `keep`, the track on air is kept to go on with.
    pub fn hold(&mut self, fade: Duration, keep: bool) {
        if self.held {
            return;
        }
        self.held = true;
        self.skipped_at = None;
        // The incoming track of a transition under way is the one on air.
        let on_air = self.incoming.as_ref().or(self.current.as_ref());
        self.interrupted = on_air.filter(|_| keep).map(|d| Interrupted {
            track: d.source.clone(),
            cues: d.cues,
            gain_db: d.gain_db,
            at: d.position() + fade,
        });
        for deck in [self.current.as_mut(), self.incoming.as_mut()]
            .into_iter()
            .flatten()
        {
            let at = deck.position();
            deck.set_end(
                at + fade,
                Some(planner::Fade {
                    start: at,
                    length: fade,
                    curve: crate::config::Curve::EqualPower,
                }),
            );
        }
        if let Some(next) = self.next.as_mut() {
            // Planned against the track now fading: it comes in at once when the show ends.
            next.plan = planner::skip(
                Duration::ZERO,
                &next.cues,
                self.config.programme.trim_silence,
            );
        }
        self.ended = None;
        self.on_air.end_track();
    }

    /// The live show is over: the AutoDJ plays again, from the interrupted track if it was
    /// kept, else from the next one, faded in.
    pub fn release(&mut self) {
        if !self.held {
            return;
        }
        self.held = false;
        // Whatever still fades goes now (its stop is de-clicked).
        self.current = None;
        self.incoming = None;
        self.fade_in_next = Some(AFTER_LIVE_FADE_IN);
        if let Some(i) = self.interrupted.take()
            && let Some(deck) = self.open(i.track, i.cues, i.gain_db, i.at, planner::DECLICK)
        {
            tracing::info!(track = %deck.track.key, at_s = i.at.as_secs_f64(), "the AutoDJ goes on with the track the live show interrupted");
            self.current = Some(deck);
            if let (Some(current), Some(next)) = (self.current.as_mut(), self.next.as_mut()) {
                let programme = &self.config.programme;
                next.plan = planner::plan(
                    &current.cues,
                    &next.cues,
                    &programme.crossfade,
                    programme.trim_silence,
                );
                current.set_end(next.plan.out_end, next.plan.fade);
            }
        }
    }

    /// Whether the scheduler is gone: nothing more will come.
    pub fn disconnected(&self) -> bool {
        self.disconnected
    }

    /// The track on air now (the incoming one once a transition has begun).
    pub fn on_air(&self) -> Option<&TrackRef> {
        self.incoming
            .as_ref()
            .or(self.current.as_ref())
            .map(|d| &d.track)
    }

    /// The title on air now.
    pub fn title(&self) -> Arc<StreamTitle> {
        self.incoming
            .as_ref()
            .or(self.current.as_ref())
            .map_or_else(|| Arc::clone(&self.idle_title), |d| Arc::clone(&d.title))
    }

    /// `/admin/next`: the track on air fades out over a second while the next one comes in.
    pub fn skip(&mut self) {
        // A transition already under way: the incoming track is the one on air.
        if let Some(incoming) = self.incoming.take() {
            self.current = Some(incoming);
        }
        let Some(current) = self.current.as_mut() else {
            return;
        };
        tracing::info!(track = %current.track.key, "skipping to the next track at the operator's request");
        let at = current.position();
        let trim = self.config.programme.trim_silence;
        match self.next.as_mut() {
            Some(next) => {
                let plan = planner::skip(at, &next.cues, trim);
                current.set_end(plan.out_end, plan.fade);
                next.plan = plan;
            }
            None => {
                // It fades out now; the next track, when it comes, comes in at once.
                let plan = planner::skip(at, &Cues::whole(Duration::ZERO, false), trim);
                current.set_end(plan.out_end, plan.fade);
                self.skipped_at = Some(at);
            }
        }
    }

    /// `/admin/metadata`: the title listeners see until the next track starts.
    pub fn set_title(&mut self, title: Arc<StreamTitle>) {
        match self.incoming.as_mut().or(self.current.as_mut()) {
            Some(deck) => deck.title = Arc::clone(&title),
            None => self.idle_title = Arc::clone(&title),
        }
    }

    /// Sums the decks into `block` (interleaved, station format, zeroed by the caller) and
    /// returns how much of it is music; `segments` gets the title of every stretch.
    pub fn fill(&mut self, block: &mut [f32], segments: &mut Vec<Segment>) -> usize {
        let ch = self.channels;
        let frames = block.len() / ch;
        let mut at = 0;
        let mut music = 0;
        while at < frames {
            if self.current.is_none() && (self.held || !self.start_next_as_current()) {
                break; // nothing to play (or a live show on): the rest is silence
            }
            self.plan_ahead();
            // Up to the next event: the incoming track's entry.
            let mut n = frames - at;
            if self.incoming.is_none()
                && !self.held
                && let (Some(cur), Some(next)) = (self.current.as_ref(), self.next.as_ref())
            {
                let until = cur.frames_until(next.plan.next_at);
                if until == 0 {
                    self.bring_in_next();
                    continue;
                }
                n = n.min(usize::try_from(until).unwrap_or(n));
            }
            let range = at * ch..(at + n) * ch;
            let got_current = self.mix(Which::Current, &mut block[range.clone()]);
            let got_incoming = self.mix(Which::Incoming, &mut block[range]);
            let got = got_current.max(got_incoming);
            if got > 0 {
                push_segment(segments, (at + got) * ch, &self.title(), true);
                at += got;
                music += got;
            }
            if self.current.as_ref().is_some_and(Deck::done) {
                self.end_current();
            } else if got == 0 {
                break;
            }
        }
        if at < frames {
            push_segment(segments, frames * ch, &Arc::clone(&self.idle_title), false);
        }
        music
    }

    /// Mixes one deck into `dst` under the panic guard; the frames it gave.
    fn mix(&mut self, which: Which, dst: &mut [f32]) -> usize {
        let metrics = self.metrics.clone();
        let deck = match which {
            Which::Current => self.current.as_mut(),
            Which::Incoming => self.incoming.as_mut(),
        };
        let Some(deck) = deck else {
            return 0;
        };
        let got = std::panic::catch_unwind(AssertUnwindSafe(|| {
            fault("decode-panic", &deck.track.key);
            deck.mix_into(dst, &metrics)
        }));
        match got {
            Ok(n) => n,
            Err(panic) => {
                let track = deck.track.clone();
                // Its state is not to be trusted: the deck goes, the other one plays on.
                match which {
                    Which::Current => self.current = None,
                    Which::Incoming => self.incoming = None,
                }
                self.decoder_panicked(&track, &*panic);
                0
            }
        }
    }

    /// The outgoing deck is over: the incoming one (if any) becomes the one playing.
    fn end_current(&mut self) {
        let ended = self
            .current
            .as_ref()
            .map(|d| (Arc::clone(&d.track.key), d.cues.jingle));
        if let Some(old) = self.current.take() {
            let errors = old.errors();
            if errors > 0 {
                self.metrics.decode_errors.inc_by(errors);
                tracing::warn!(track = %old.track.key, damaged_packets = errors, "track had damaged packets; played what was readable");
            }
        }
        self.current = self.incoming.take();
        if self.current.is_none() {
            // It ended before its plan (an unanalysed track, a decode that stopped early, a
            // next track that came late): the next one, if ready, starts at once.
            self.skipped_at = None;
            self.ended = ended;
            self.on_air.end_track();
        }
    }

    /// Takes the next track from the channel when none is planned yet, and plans the way to it.
    fn plan_ahead(&mut self) {
        if self.next.is_some() || self.incoming.is_some() || self.disconnected || self.held {
            return;
        }
        let Some(current) = self.current.as_mut() else {
            return;
        };
        let track = match self.tracks.try_recv() {
            Ok(track) => track,
            Err(TryRecvError::Empty) => return,
            Err(TryRecvError::Disconnected) => {
                self.disconnected = true;
                return;
            }
        };
        let (cues, gain_db) = facts_of(&track, &self.config.programme, &self.cue_settings);
        let programme = &self.config.programme;
        let plan = match self.skipped_at.take() {
            Some(at) => planner::skip(at, &cues, programme.trim_silence),
            None => planner::plan(
                &current.cues,
                &cues,
                &programme.crossfade,
                programme.trim_silence,
            ),
        };
        current.set_end(plan.out_end, plan.fade);
        self.on_air.set_up_next(Some(track.info()));
        self.next = Some(Next {
            track,
            cues,
            gain_db,
            plan,
        });
    }

    /// The next track comes in (at its plan's `next_at`): on its deck, beside the outgoing one.
    fn bring_in_next(&mut self) {
        let Some(next) = self.next.take() else {
            return;
        };
        let plan = next.plan;
        let metrics = &self.metrics;
        metrics
            .transitions
            .with_label_values(&[plan.kind.label()])
            .inc();
        metrics
            .transition_overlap_seconds
            .observe(plan.overlap().as_secs_f64());
        if let Some(cur) = &self.current {
            tracing::info!(from = %cur.track.key, to = %next.track.track.key, kind = plan.kind.label(),
                at_s = plan.next_at.as_secs_f64(), overlap_s = plan.overlap().as_secs_f64(),
                fade_s = plan.fade.map_or(0.0, |f| f.length.as_secs_f64()),
                in_start_s = plan.in_start.as_secs_f64(), "transition");
        }
        match self.open(
            next.track,
            next.cues,
            next.gain_db,
            plan.in_start,
            plan.declick,
        ) {
            Some(deck) => {
                self.incoming = Some(deck);
                if self.current.as_ref().is_some_and(Deck::done) {
                    self.end_current();
                }
            }
            // It cannot play: the outgoing track plays out whole (its fade had not begun: a
            // fade starts at or after the incoming track's entry), and another next is taken.
            None => {
                let trim = self.config.programme.trim_silence;
                if let Some(cur) = self.current.as_mut() {
                    let end = cur.cues.stop(trim);
                    cur.set_end(end, None);
                }
            }
        }
    }

    /// With nothing playing: the next track starts now (from its cue-in, or where a resumed
    /// programme is). False when there is none.
    fn start_next_as_current(&mut self) -> bool {
        let ended = self.ended.take();
        let next = match self.next.take() {
            Some(next) => Some((
                next.track,
                next.cues,
                next.gain_db,
                next.plan.in_start,
                next.plan.declick,
                Some(next.plan.kind),
            )),
            None => match self.receive() {
                Some(track) => {
                    let (cues, gain_db) =
                        facts_of(&track, &self.config.programme, &self.cue_settings);
                    let trim = self.config.programme.trim_silence;
                    let (start, declick) = planner::entry(&cues, trim);
                    Some((track, cues, gain_db, start, declick, None))
                }
                None => None,
            },
        };
        let Some((track, cues, gain_db, mut start, declick, planned)) = next else {
            self.ended = ended; // still waiting for a track
            return false;
        };
        if let Some(started) = track.resume_from {
            // Where the saved programme is by now.
            let offset = std::time::SystemTime::now()
                .duration_since(started)
                .unwrap_or_default();
            if track.tags.duration.is_some_and(|d| offset >= d) {
                tracing::info!(track = %track.track.key, "the resumed track has ended meanwhile; moving on");
                return true; // the next one is taken at the next turn
            }
            tracing::info!(track = %track.track.key, offset_s = offset.as_secs_f64(), "resuming the track where the programme is");
            start = offset;
        }
        let to = Arc::clone(&track.track.key);
        if let Some(deck) = self.open(track, cues, gain_db, start, declick) {
            if let Some((from, jingle)) = ended {
                // Back to back: the plan's kind, or (a next track that came late) the kind
                // the planner gives a sequence.
                let kind = planned.unwrap_or(if jingle || deck.cues.jingle {
                    planner::Kind::Jingle
                } else {
                    planner::Kind::Sequence
                });
                let metrics = &self.metrics;
                metrics.transitions.with_label_values(&[kind.label()]).inc();
                metrics.transition_overlap_seconds.observe(0.0);
                tracing::info!(%from, %to, kind = kind.label(), overlap_s = 0.0,
                    in_start_s = start.as_secs_f64(), planned = planned.is_some(), "transition");
            }
            self.current = Some(deck);
        }
        true
    }

    /// The next track from the channel, if one is ready. Unpaced (tests), the pipeline outruns
    /// the scheduler, so it waits a while instead of filling the gap with silence.
    fn receive(&mut self) -> Option<LoadedTrack> {
        let patience = match self.clock {
            Clock::Realtime => Duration::ZERO,
            Clock::Unpaced => Duration::from_secs(1),
        };
        let deadline = std::time::Instant::now() + patience;
        loop {
            match self.tracks.try_recv() {
                Ok(track) => return Some(track),
                Err(TryRecvError::Empty) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(TryRecvError::Empty) => return None,
                Err(TryRecvError::Disconnected) => {
                    self.disconnected = true;
                    return None;
                }
            }
        }
    }

    /// Opens a deck for `track` at `start`, under the panic guard; it goes on air (its title,
    /// the now-playing state). `None` when it cannot play (counted, logged, kept out).
    fn open(
        &mut self,
        track: LoadedTrack,
        cues: Cues,
        gain_db: f64,
        start: Duration,
        declick: Duration,
    ) -> Option<Deck> {
        // Outside the per-track guard: proves that a fault of the thread itself is noticed.
        fault("pipeline-panic", &track.track.key);
        let (rate, channels) = (self.rate, self.channels);
        let opened = std::panic::catch_unwind(AssertUnwindSafe(|| {
            Deck::open(&track, cues, start, gain_db, declick, rate, channels)
        }));
        let mut deck = match opened {
            Ok(Ok(deck)) => deck,
            Ok(Err(e)) => {
                self.metrics
                    .tracks_skipped
                    .with_label_values(&[e.reason()])
                    .inc();
                tracing::warn!(track = %track.track.key, reason = e.reason(), error = %e, "skipping track");
                self.report_bad(&track.track);
                return None;
            }
            Err(panic) => {
                self.decoder_panicked(&track.track, &*panic);
                return None;
            }
        };
        let metrics = &self.metrics;
        tracing::info!(track = %track.track.key, title = %track.display, codec = %track.tags.codec,
            gain_db, analysed = track.facts.is_some(), "now playing");
        metrics.tracks_played.inc();
        metrics.track_gain_db.observe(gain_db);
        if track.resume_from.is_none() {
            metrics
                .silence_trimmed_seconds
                .with_label_values(&["head"])
                .inc_by(deck.started_at.as_secs_f64());
        }
        if let Some(duration) = track.tags.duration.filter(|_| track.facts.is_some()) {
            metrics
                .silence_trimmed_seconds
                .with_label_values(&["tail"])
                .inc_by(duration.saturating_sub(deck.cues.cue_out).as_secs_f64());
        }
        if let Some(fade) = self.fade_in_next.take() {
            deck.fade_in(fade);
        }
        self.on_air
            .begin_track(Arc::clone(&deck.title), track.info(), deck.started_at);
        // An operator's title holds until a track starts; silence after it shows nothing.
        self.idle_title = StreamTitle::new("");
        Some(deck)
    }

    /// A track whose decoder panicked: skipped as corrupt and kept out until it changes.
    fn decoder_panicked(&self, track: &TrackRef, panic: &(dyn std::any::Any + Send)) {
        self.metrics
            .tracks_skipped
            .with_label_values(&["corrupt"])
            .inc();
        tracing::error!(track = %track.key, panic = %panic_message(panic),
            "the decoder panicked on this track: skipping it until it changes");
        self.report_bad(track);
    }

    fn report_bad(&self, track: &TrackRef) {
        // The scheduler drains this at once; a full channel only delays keeping it out.
        let _ = self.bad.try_send(track.clone());
    }
}

#[derive(Clone, Copy)]
enum Which {
    Current,
    Incoming,
}

/// A track's cues and gain: from its analysis, else the whole file at its tags' gain.
fn facts_of(track: &LoadedTrack, programme: &Programme, settings: &CueSettings) -> (Cues, f64) {
    let loudness = &programme.loudness;
    match &track.facts {
        Some(facts) => (
            derive_cues(facts, settings),
            planner::gain_db(Some(facts), None, loudness),
        ),
        None => {
            let duration = track.tags.duration.unwrap_or(Duration::MAX);
            let provisional = track
                .tags
                .tag_loudness_lufs
                .map(|i| loudness.target_lufs - i);
            (
                Cues::whole(duration, duration < settings.jingle),
                planner::gain_db(None, provisional, loudness),
            )
        }
    }
}

fn push_segment(segments: &mut Vec<Segment>, end: usize, title: &Arc<StreamTitle>, music: bool) {
    match segments.last_mut() {
        Some(last) if Arc::ptr_eq(&last.title, title) && last.music == music => last.end = end,
        _ => segments.push(Segment {
            end,
            title: Arc::clone(title),
            music,
        }),
    }
}
