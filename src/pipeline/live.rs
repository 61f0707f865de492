//! The live deck: a DJ's audio from the live feed into the programme, and the decisions about
//! when the show is on air. The switch happens at the next block once the pre-roll is buffered
//! (never at a track boundary); a dry feed plays silence for up to `underrun_grace` before the
//! AutoDJ comes back, and the show returns once the pre-roll has filled again; a show that ends
//! plays out what is buffered first.

use std::sync::Arc;
use std::time::SystemTime;

use super::mixer::Segment;
use crate::config::Live;
use crate::live::feed::{LiveFeed, SessionInfo};
use crate::metrics::Metrics;
use crate::station::{LiveShow, OnAir, Station};
use crate::title::StreamTitle;

/// What the mixer is to do at this block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    /// The show goes on air: the AutoDJ fades out under it.
    ToLive,
    /// The show is over or has stalled: the AutoDJ plays again.
    ToAutoDj,
}

enum State {
    Off,
    /// On air; `dry` frames of silence in a row so far (an underrun).
    OnAir {
        session: Arc<SessionInfo>,
        dry: u64,
    },
    /// Fell back after an underrun: goes on air again once the pre-roll has refilled.
    Waiting {
        session: Arc<SessionInfo>,
    },
}

pub struct LiveInput {
    feed: Arc<LiveFeed>,
    settings: Live,
    metrics: Metrics,
    on_air: Arc<OnAir>,
    rate: u32,
    channels: usize,
    state: State,
    /// Frames of fade-in still to apply to the live audio, and its length.
    declick: (usize, usize),
    scratch: Vec<f32>,
}

/// The live audio starts with this ramp: it comes in at full level, but not on a step.
const LIVE_DECLICK_MS: u32 = 20;

impl LiveInput {
    /// The live deck of `station`'s pipeline.
    pub fn new(station: &Station) -> LiveInput {
        let audio = station.config.audio;
        LiveInput {
            feed: Arc::clone(&station.live),
            settings: station.config.live.clone(),
            metrics: station.metrics.clone(),
            on_air: Arc::clone(&station.on_air),
            rate: audio.sample_rate,
            channels: usize::from(audio.channels),
            state: State::Off,
            declick: (0, 0),
            scratch: Vec::new(),
        }
    }

    fn frames(&self, d: std::time::Duration) -> u64 {
        (d.as_secs_f64() * f64::from(self.rate)) as u64
    }

    /// Whether the show is on air (its audio replaces the AutoDJ's in [`LiveInput::fill`]).
    pub fn on_air(&self) -> bool {
        matches!(self.state, State::OnAir { .. })
    }

    /// Looks at the feed before a block and says whether the programme switches.
    pub fn step(&mut self) -> Option<Switch> {
        let feed = self.feed.snapshot();
        self.metrics
            .live_buffer_seconds
            .set(feed.buffered as f64 / f64::from(self.rate));
        let preroll = self.frames(self.settings.preroll) as usize;
        let ready = |session: &Arc<SessionInfo>| {
            feed.buffered >= preroll
                || (feed.ended
                    && feed.buffered > 0
                    && feed.session.as_ref().is_some_and(|s| s.id == session.id))
        };
        match std::mem::replace(&mut self.state, State::Off) {
            State::Off => match feed.session {
                Some(session) if ready(&session) => {
                    self.go_on_air(session);
                    Some(Switch::ToLive)
                }
                _ => None,
            },
            State::Waiting { session } => match feed.session {
                // The same show (or the same DJ's new connection) has refilled.
                Some(now) if ready(&now) => {
                    tracing::info!(user = %now.user, "the live audio is back: on air again");
                    self.go_on_air(now);
                    Some(Switch::ToLive)
                }
                Some(now) if now.id == session.id && feed.ended && feed.buffered == 0 => {
                    self.feed.close(session.id);
                    None
                }
                Some(now) => {
                    self.state = State::Waiting { session: now };
                    None
                }
                None => None,
            },
            State::OnAir { session, dry } => {
                let same = feed.session.as_ref().is_some_and(|s| s.id == session.id);
                if !same && let Some(now) = feed.session {
                    // The same DJ's new connection replaced a dead one: the show goes on.
                    tracing::info!(user = %now.user, "live session replaced; staying on air");
                    self.set_title(&now);
                    self.state = State::OnAir {
                        session: now,
                        dry: 0,
                    };
                    return None;
                }
                if !same || (feed.ended && feed.buffered == 0) {
                    tracing::info!(user = %session.user, "the live show ended: back to the AutoDJ");
                    self.metrics
                        .live_fallbacks
                        .with_label_values(&["eof"])
                        .inc();
                    self.feed.close(session.id);
                    return Some(Switch::ToAutoDj);
                }
                if dry >= self.frames(self.settings.underrun_grace) {
                    tracing::warn!(user = %session.user, grace_s = self.settings.underrun_grace.as_secs_f64(),
                        "the live audio stalled: the AutoDJ plays until the pre-roll refills");
                    self.metrics
                        .live_fallbacks
                        .with_label_values(&["underrun"])
                        .inc();
                    self.state = State::Waiting { session };
                    return Some(Switch::ToAutoDj);
                }
                self.state = State::OnAir { session, dry };
                None
            }
        }
    }

    fn go_on_air(&mut self, session: Arc<SessionInfo>) {
        let n = (self.rate * LIVE_DECLICK_MS / 1000) as usize;
        self.declick = (n, n);
        self.metrics
            .live_takeover_seconds
            .observe(session.connected_at.elapsed().as_secs_f64());
        tracing::info!(user = %session.user, streamer = %session.streamer(),
            after_s = session.connected_at.elapsed().as_secs_f64(), "live show on air");
        self.state = State::OnAir { session, dry: 0 };
    }

    fn set_title(&self, session: &SessionInfo) {
        self.on_air.set_title(session.title());
    }

    /// Tells what is on air that the show is (after the mixer has taken the AutoDJ's track off).
    pub fn announce(&self) {
        if let State::OnAir { session, .. } = &self.state {
            let show = LiveShow {
                streamer: session.streamer().to_owned(),
                since: SystemTime::now(),
            };
            self.on_air.go_live(session.title(), show);
        }
    }

    /// The title of the show on air, if one is.
    pub fn title(&self) -> Option<Arc<StreamTitle>> {
        match &self.state {
            State::OnAir { session, .. } => Some(session.title()),
            _ => None,
        }
    }

    /// Adds the live audio into `block` (which holds the AutoDJ fading out) and makes the
    /// block's segments the show's. Returns the frames of live audio (the rest was silence).
    pub fn fill(&mut self, block: &mut [f32], segments: &mut Vec<Segment>) -> usize {
        let State::OnAir { session, dry } = &mut self.state else {
            return 0;
        };
        let ch = self.channels;
        self.scratch.resize(block.len(), 0.0);
        let before = session.title();
        let (got, title_at) = self.feed.take(session.id, &mut self.scratch);
        let (left, total) = self.declick;
        for f in 0..got {
            let g = if f < left {
                (total - left + f) as f32 / total as f32
            } else {
                1.0
            };
            for c in 0..ch {
                block[f * ch + c] += self.scratch[f * ch + c] * g;
            }
        }
        self.declick.0 = left.saturating_sub(got);
        let frames = block.len() / ch;
        if got > 0 {
            *dry = 0;
        }
        if got < frames {
            if *dry == 0 {
                self.metrics.live_underruns.inc();
            }
            *dry += (frames - got) as u64;
        }
        segments.clear();
        let title = session.title();
        if let Some(at) = title_at {
            // The new title starts with its audio, not at the start of the block.
            if at > 0 {
                segments.push(Segment {
                    end: at * ch,
                    title: before,
                    music: true,
                });
            }
            tracing::info!(title = %title.text(), "live title");
            self.on_air.set_title(Arc::clone(&title));
        }
        segments.push(Segment {
            end: block.len(),
            title,
            music: got > 0,
        });
        got
    }
}
