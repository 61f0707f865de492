//! The pipeline thread: decks (decode → convert to the station format, `deck.rs`) → the mixer
//! (gains, transitions planned by `planner.rs`, `mixer.rs`) → one true-peak limiter
//! (`limiter.rs`) → the meter (`meter.rs`, BS.1770 in `loudness.rs`) → every encoder → every ring, paced to the wall
//! clock. It is one dedicated OS thread because all of it is CPU work that must never stall the
//! async workers serving listeners, and one programme feeds every mount: encoding cost grows
//! with the number of mounts, never with listeners.
//!
//! The thread never waits for the scheduler either: when no track is ready it sends silence, so
//! listeners stay connected through an empty or unreachable library.

pub mod deck;
pub mod limiter;
pub mod live;
pub mod loudness;
pub mod meter;
pub mod mixer;
pub mod planner;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::audio::clock::{Clock, Pacer};
use crate::catalog::TrackRef;
use crate::config::After;
use crate::encode::{self, EncodeError, Encoder};
use crate::hls::station::Hls;
use crate::metrics::Metrics;
use crate::ring::Frame;
use crate::scheduler::LoadedTrack;
use crate::station::{Command, Health, Mount, OnAir, Station};
use crate::supervise::Watchdog;
use crate::title::StreamTitle;
use limiter::{Limiter, LimiterSettings};
use live::{LiveInput, Switch};
use meter::Meter;
use mixer::{Mixer, Segment};

/// Audio produced per step. 100 ms keeps listener wake-ups to ten a second while the burst and
/// title changes stay precise enough.
const BLOCK: Duration = Duration::from_millis(100);
/// How far audio may run ahead of the wall clock, to absorb thread scheduling jitter.
const LEAD: Duration = Duration::from_millis(200);

/// The running pipeline thread.
pub struct Pipeline {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Pipeline {
    /// Builds every encoder (failing fast on a bad setup) and starts the thread. Tracks that
    /// turn out unplayable while they play (a decoder panic) are sent back on `bad`, so the
    /// scheduler keeps them out; the thread's own end, unless asked for, goes to `watchdog`.
    pub fn spawn(
        station: &Station,
        tracks: mpsc::Receiver<LoadedTrack>,
        bad: mpsc::Sender<TrackRef>,
        commands: std::sync::mpsc::Receiver<Command>,
        clock: Clock,
        tap: Option<std::sync::mpsc::Sender<Vec<f32>>>,
        watchdog: Watchdog,
    ) -> Result<Pipeline, EncodeError> {
        let outputs = station
            .mounts
            .iter()
            .enumerate()
            .map(|(index, m)| {
                Ok(Output {
                    index,
                    mount: Arc::clone(m),
                    encoder: encode::for_mount(&m.config, station.config.audio)?,
                })
            })
            .collect::<Result<Vec<_>, EncodeError>>()?;
        let stop = Arc::new(AtomicBool::new(false));
        let (asked, health) = (Arc::clone(&stop), Arc::clone(&station.health));
        let mut worker = Worker::new(
            station,
            (tracks, bad, commands),
            outputs,
            clock,
            Arc::clone(&stop),
        );
        worker.tap = tap;
        let thread = std::thread::Builder::new()
            .name("onair-pipeline".into())
            .spawn(move || {
                // It ends when asked, or when the scheduler hangs up during a shutdown.
                let expected = || asked.load(Ordering::Relaxed) || health.is_draining();
                watchdog.run("pipeline thread", expected, move || worker.run());
            })
            .map_err(|e| EncodeError::Setup {
                codec: "pipeline",
                reason: format!("cannot start the pipeline thread: {e}"),
            })?;
        Ok(Pipeline {
            stop,
            thread: Some(thread),
        })
    }

    /// Asks the thread to flush its encoders and close every ring, and waits for it.
    pub async fn stop_and_join(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            // Joining blocks; at most one block of audio (100 ms) plus the flush.
            let joined = tokio::task::spawn_blocking(move || thread.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                tracing::error!("pipeline thread ended abnormally");
            }
        }
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

struct Output {
    /// The mount's index in `Mounts`.
    index: usize,
    mount: Arc<Mount>,
    encoder: Box<dyn Encoder>,
}

struct Worker {
    metrics: Metrics,
    /// The DJ's audio, when a show is on.
    live: LiveInput,
    /// `[live] fade`: how long the AutoDJ fades out under a show.
    live_fade: Duration,
    /// `[live] after = "resume"`.
    resume_after_live: bool,
    on_air: Arc<OnAir>,
    health: Arc<Health>,
    mixer: Mixer,
    limiter: Limiter,
    meter: Meter,
    outputs: Vec<Output>,
    pacer: Pacer,
    stop: Arc<AtomicBool>,
    rate: u32,
    channels: usize,
    block: Vec<f32>,
    segments: Vec<Segment>,
    frames: Vec<Frame>,
    /// Where a copy of each limited block goes, if anyone asked (see `Options::programme_tap`).
    tap: Option<std::sync::mpsc::Sender<Vec<f32>>>,
    /// The operators' commands, taken between two blocks.
    commands: std::sync::mpsc::Receiver<Command>,
    hls: Arc<Hls>,
    /// HLS timeline sample of the next block's first sample.
    timeline: u64,
    /// The title of the last block's end, to tell HLS when a new one begins.
    last_title: Option<Arc<StreamTitle>>,
}

impl Worker {
    fn new(
        station: &Station,
        (tracks, bad, commands): (
            mpsc::Receiver<LoadedTrack>,
            mpsc::Sender<TrackRef>,
            std::sync::mpsc::Receiver<Command>,
        ),
        outputs: Vec<Output>,
        clock: Clock,
        stop: Arc<AtomicBool>,
    ) -> Worker {
        let audio = station.config.audio;
        let channels = usize::from(audio.channels);
        let limiter = Limiter::new(
            audio.sample_rate,
            channels,
            LimiterSettings {
                // Half a dB under the ceiling: the MP3 encoder's own overs (up to +0.2 dB, as
                // measured in the audio-quality note) must not take the decoded output over it.
                ceiling_dbtp: station.config.programme.loudness.true_peak_dbtp as f32 - 0.5,
                ..LimiterSettings::default()
            },
        );
        let hls = Arc::clone(&station.hls);
        let timeline = hls.origin(std::time::SystemTime::now());
        hls.start(timeline);
        Worker {
            hls,
            timeline,
            last_title: None,
            pacer: Pacer::new(clock, audio.sample_rate, LEAD),
            rate: audio.sample_rate,
            channels,
            mixer: Mixer::new(
                Arc::clone(&station.config),
                station.metrics.clone(),
                Arc::clone(&station.on_air),
                tracks,
                bad,
                clock,
            ),
            meter: Meter::new(audio.sample_rate, channels),
            limiter,
            live: LiveInput::new(station),
            live_fade: station.config.live.fade,
            resume_after_live: station.config.live.after == After::Resume,
            metrics: station.metrics.clone(),
            on_air: Arc::clone(&station.on_air),
            health: Arc::clone(&station.health),
            outputs,
            stop,
            block: Vec::new(),
            segments: Vec::new(),
            frames: Vec::new(),
            tap: None,
            commands,
        }
    }

    fn run(mut self) {
        let block_frames = (u128::from(self.rate) * BLOCK.as_millis() / 1000) as usize;
        let block_len = block_frames * self.channels;
        tracing::info!(
            rate = self.rate,
            channels = self.channels,
            mounts = self.outputs.len(),
            "pipeline started"
        );
        while !self.stop.load(Ordering::Relaxed) && !self.mixer.disconnected() {
            self.fill_block(block_len);
            self.encode_block();
            self.pacer.produced(block_frames as u64);
        }
        self.finish();
    }

    /// One block of programme: the mixer's sum of the decks (silence where nothing plays), then
    /// the limiter, then the meter.
    fn fill_block(&mut self, block_len: usize) {
        self.block.clear();
        self.block.resize(block_len, 0.0);
        self.segments.clear();
        self.operator_commands();
        match self.live.step() {
            Some(Switch::ToLive) => {
                self.mixer.hold(self.live_fade, self.resume_after_live);
                self.live.announce();
            }
            Some(Switch::ToAutoDj) => self.mixer.release(),
            None => {}
        }
        let mut music = self.mixer.fill(&mut self.block, &mut self.segments);
        if self.live.on_air() {
            music = self.live.fill(&mut self.block, &mut self.segments);
        }
        let frames = block_len / self.channels;
        if music < frames {
            self.metrics
                .silence_seconds
                .inc_by((frames - music) as f64 / f64::from(self.rate));
        }
        self.limiter.process(&mut self.block);
        let metrics = &self.metrics;
        metrics
            .limiter_gain_reduction_db
            .set(f64::from(self.limiter.take_reduction_db()));
        let clipped = self.limiter.clipped();
        if clipped > metrics.clip_samples.get() {
            metrics
                .clip_samples
                .inc_by(clipped - metrics.clip_samples.get());
        }
        let true_peak = self.limiter.take_output_peak();
        self.meter
            .add(&self.block, true_peak, self.mixer.on_air(), metrics);
        if let Some(tap) = &self.tap
            && tap.send(self.block.clone()).is_err()
        {
            self.tap = None;
        }
    }

    /// Applies the operators' commands (`/admin/next`, `/admin/metadata`) between two blocks.
    fn operator_commands(&mut self) {
        while let Ok(command) = self.commands.try_recv() {
            match command {
                Command::Skip => self.mixer.skip(),
                Command::SetTitle(text) => {
                    let title = StreamTitle::new(&text);
                    tracing::info!(title = %title.text(), "title set by the operator");
                    self.mixer.set_title(Arc::clone(&title));
                    self.on_air.set_title(title);
                }
            }
        }
    }

    fn encode_block(&mut self) {
        let music = self.segments.iter().any(|s| s.music);
        let seconds = self.block.len() as f64 / (self.rate as f64 * self.channels as f64);
        for out in &mut self.outputs {
            self.frames.clear();
            let mut start = 0;
            for seg in &self.segments {
                if let Err(e) =
                    out.encoder
                        .encode(&self.block[start..seg.end], &seg.title, &mut self.frames)
                {
                    tracing::error!(mount = %out.mount.config.path, error = %e, "encoder failed");
                }
                start = seg.end;
            }
            if let Some(rendition) = self.hls.for_mount(out.index) {
                rendition.push(&self.frames);
            }
            out.mount.ring.publish(self.frames.drain(..));
            out.mount.mark_published();
            out.mount.metrics.encoded_seconds.inc_by(seconds);
        }
        self.hls_titles();
        if music {
            self.health.track_audio_played();
        }
    }

    /// Tells HLS where each title of this block begins (the same timeline sample for every
    /// mount), and moves the timeline on by the block.
    fn hls_titles(&mut self) {
        if self.hls.is_empty() {
            return;
        }
        let mut start = 0;
        for seg in &self.segments {
            let begins = !self
                .last_title
                .as_ref()
                .is_some_and(|t| t.same_as(&seg.title));
            if begins {
                let sample = self.timeline + (start / self.channels) as u64;
                self.hls.title_changed(sample, &seg.title);
                self.last_title = Some(Arc::clone(&seg.title));
            }
            start = seg.end;
        }
        self.timeline += (self.block.len() / self.channels) as u64;
    }

    /// Flushes every encoder into its ring and closes the rings, which ends every listener stream.
    fn finish(mut self) {
        let title = self.mixer.title();
        for out in &mut self.outputs {
            self.frames.clear();
            if let Err(e) = out.encoder.flush(&title, &mut self.frames) {
                tracing::warn!(mount = %out.mount.config.path, error = %e, "encoder flush failed");
            }
            out.mount.ring.publish(self.frames.drain(..));
            out.mount.ring.close();
        }
        tracing::info!("pipeline stopped");
    }
}
