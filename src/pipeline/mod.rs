//! The pipeline thread: decode → convert to the station format → every encoder → every ring, paced to
//! the wall clock. It is one dedicated OS thread because all of it is CPU work that must never stall
//! the async workers serving listeners, and one decode feeds every mount: encoding cost grows with
//! the number of mounts, never with listeners.
//!
//! The thread never waits for the scheduler either: when no track is ready it sends silence, so
//! listeners stay connected through an empty or unreachable library.

pub mod limiter;
pub mod planner;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc::{self, error::TryRecvError};

use crate::audio::clock::{Clock, Pacer};
use crate::audio::decode::{DecodeError, TrackDecoder};
use crate::audio::resample::Converter;
use crate::catalog::TrackRef;
use crate::encode::{self, EncodeError, Encoder};
use crate::http::icy::StreamTitle;
use crate::ring::Frame;
use crate::scheduler::LoadedTrack;
use crate::station::{Mount, Station};
use crate::supervise::{Watchdog, fault, panic_message};

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
        station: Arc<Station>,
        tracks: mpsc::Receiver<LoadedTrack>,
        bad: mpsc::Sender<TrackRef>,
        clock: Clock,
        watchdog: Watchdog,
    ) -> Result<Pipeline, EncodeError> {
        let outputs = station
            .mounts
            .iter()
            .map(|m| {
                Ok(Output {
                    mount: Arc::clone(m),
                    encoder: encode::for_mount(&m.config, station.config.audio)?,
                })
            })
            .collect::<Result<Vec<_>, EncodeError>>()?;
        let stop = Arc::new(AtomicBool::new(false));
        let (asked, draining) = (Arc::clone(&stop), Arc::clone(&station));
        let worker = Worker::new(station, tracks, bad, outputs, clock, Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name("onair-pipeline".into())
            .spawn(move || {
                // It ends when asked, or when the scheduler hangs up during a shutdown.
                let expected = || asked.load(Ordering::Relaxed) || draining.is_draining();
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
    mount: Arc<Mount>,
    encoder: Box<dyn Encoder>,
}

/// The track being decoded.
struct Playing {
    decoder: TrackDecoder,
    converter: Option<(Converter, u32, usize)>,
    title: Arc<StreamTitle>,
    track: TrackRef,
    /// Decoded PCM waiting for conversion.
    decoded: Vec<f32>,
    /// Station-format PCM not yet put into a block.
    ready: Vec<f32>,
    ready_pos: usize,
    ended: bool,
}

/// A stretch of one block and the title listeners should see for it.
struct Segment {
    end: usize,
    title: Arc<StreamTitle>,
    music: bool,
}

struct Worker {
    station: Arc<Station>,
    tracks: mpsc::Receiver<LoadedTrack>,
    /// Tracks found unplayable on air, back to the scheduler.
    bad: mpsc::Sender<TrackRef>,
    outputs: Vec<Output>,
    pacer: Pacer,
    clock: Clock,
    stop: Arc<AtomicBool>,
    rate: u32,
    channels: usize,
    playing: Option<Playing>,
    /// Title shown while nothing plays.
    idle_title: Arc<StreamTitle>,
    block: Vec<f32>,
    segments: Vec<Segment>,
    encoded: Vec<Bytes>,
    frames: Vec<Frame>,
}

impl Worker {
    fn new(
        station: Arc<Station>,
        tracks: mpsc::Receiver<LoadedTrack>,
        bad: mpsc::Sender<TrackRef>,
        outputs: Vec<Output>,
        clock: Clock,
        stop: Arc<AtomicBool>,
    ) -> Worker {
        let audio = station.config.audio;
        Worker {
            idle_title: StreamTitle::new(""),
            pacer: Pacer::new(clock, audio.sample_rate, LEAD),
            clock,
            rate: audio.sample_rate,
            channels: usize::from(audio.channels),
            station,
            tracks,
            bad,
            outputs,
            stop,
            playing: None,
            block: Vec::new(),
            segments: Vec::new(),
            encoded: Vec::new(),
            frames: Vec::new(),
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
        while !self.stop.load(Ordering::Relaxed) {
            if !self.fill_block(block_len) {
                break;
            }
            self.encode_block();
            self.pacer.produced(block_frames as u64);
        }
        self.finish();
    }

    /// Fills one block from the current and following tracks, then silence. False when the
    /// scheduler is gone (shutdown).
    fn fill_block(&mut self, block_len: usize) -> bool {
        self.block.clear();
        self.segments.clear();
        self.operator_commands();
        while self.block.len() < block_len {
            if self.playing.is_none() {
                match self.next_track() {
                    Ok(track) => self.start(track),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return false,
                }
                continue;
            }
            let Some(p) = self.playing.as_mut() else {
                break;
            };
            let want = block_len - self.block.len();
            let avail = &p.ready[p.ready_pos..];
            let take = want.min(avail.len());
            self.block.extend_from_slice(&avail[..take]);
            p.ready_pos += take;
            if take > 0 {
                push_segment(&mut self.segments, self.block.len(), &p.title, true);
            }
            if p.ready_pos == p.ready.len() {
                p.ready.clear();
                p.ready_pos = 0;
                if p.ended {
                    self.end_track();
                } else {
                    self.decode_more();
                }
            }
        }
        if self.block.len() < block_len {
            self.station.end_track();
            let missing = block_len - self.block.len();
            self.block.resize(block_len, 0.0);
            let title = Arc::clone(&self.idle_title);
            push_segment(&mut self.segments, block_len, &title, false);
            self.station
                .metrics
                .silence_seconds
                .inc_by(missing as f64 / (self.rate as f64 * self.channels as f64));
        }
        true
    }

    /// Applies `/admin/next` and `/admin/metadata` between two blocks.
    fn operator_commands(&mut self) {
        if self.station.take_skip()
            && let Some(p) = &self.playing
        {
            tracing::info!(track = %p.track.key, "skipping to the next track at the operator's request");
            self.end_track();
        }
        if let Some(text) = self.station.take_title_override() {
            let title = StreamTitle::new(&text);
            tracing::info!(title = %text, "title set by the operator");
            match self.playing.as_mut() {
                Some(p) => p.title = Arc::clone(&title),
                // Holds over filler silence too, until a track starts.
                None => self.idle_title = Arc::clone(&title),
            }
            self.station
                .now_playing
                .send_modify(|now| now.title = title);
        }
    }

    /// The next prepared track, if one is ready. Unpaced (tests), the pipeline outruns the
    /// scheduler, so it waits a while instead of filling the gap with silence.
    fn next_track(&mut self) -> Result<LoadedTrack, TryRecvError> {
        let patience = match self.clock {
            Clock::Realtime => Duration::ZERO,
            Clock::Unpaced => Duration::from_secs(1),
        };
        let deadline = std::time::Instant::now() + patience;
        loop {
            match self.tracks.try_recv() {
                Err(TryRecvError::Empty) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                other => return other,
            }
        }
    }

    fn start(&mut self, track: LoadedTrack) {
        // Outside the per-track guard: proves that a fault of the thread itself is noticed.
        fault("pipeline-panic", &track.track.key);
        // Opening (and seeking) runs foreign decoder code on bytes from outside: a panic there is
        // this track's, not the radio's.
        let opened = std::panic::catch_unwind(AssertUnwindSafe(|| open_at(&track)));
        let (decoder, offset) = match opened {
            Ok(Ok(Some(open))) => open,
            Ok(Ok(None)) => return, // a resumed track that has ended meanwhile
            Ok(Err(e)) => {
                self.station
                    .metrics
                    .tracks_skipped
                    .with_label_values(&[e.reason()])
                    .inc();
                tracing::warn!(track = %track.track.key, reason = e.reason(), error = %e, "skipping track");
                self.report_bad(&track.track);
                return;
            }
            Err(panic) => {
                self.decoder_panicked(&track.track, &*panic);
                return;
            }
        };
        let title = StreamTitle::new(&track.display);
        tracing::info!(track = %track.track.key, title = %track.display, codec = %track.tags.codec, "now playing");
        self.station.metrics.tracks_played.inc();
        self.station
            .begin_track(Arc::clone(&title), track.info(), offset);
        // An operator's title holds until a track starts; silence after it shows nothing.
        self.idle_title = StreamTitle::new("");
        self.playing = Some(Playing {
            decoder,
            converter: None,
            title,
            track: track.track,
            decoded: Vec::new(),
            ready: Vec::new(),
            ready_pos: 0,
            ended: false,
        });
    }

    /// A track whose decoder panicked: skipped as corrupt and kept out until it changes.
    fn decoder_panicked(&self, track: &TrackRef, panic: &(dyn std::any::Any + Send)) {
        self.station
            .metrics
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

    /// Decodes one packet of the current track into `ready`, or marks the track ended. A panic
    /// in the decoder or the converter ends the track (its state is not to be trusted) and
    /// keeps it out.
    fn decode_more(&mut self) {
        let (rate, channels) = (self.rate, self.channels);
        let Some(p) = self.playing.as_mut() else {
            return;
        };
        let metrics = &self.station.metrics;
        let decoded = std::panic::catch_unwind(AssertUnwindSafe(|| {
            fault("decode-panic", &p.track.key);
            decode_packet(p, rate, channels, metrics);
        }));
        if let Err(panic) = decoded
            && let Some(p) = self.playing.take()
        {
            self.decoder_panicked(&p.track, &*panic);
        }
    }

    fn end_track(&mut self) {
        if let Some(p) = self.playing.take() {
            let errors = p.decoder.errors();
            if errors > 0 {
                self.station.metrics.decode_errors.inc_by(errors);
                tracing::warn!(track = %p.track.key, damaged_packets = errors, "track had damaged packets; played what was readable");
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
                self.encoded.clear();
                if let Err(e) = out
                    .encoder
                    .encode(&self.block[start..seg.end], &mut self.encoded)
                {
                    tracing::error!(mount = %out.mount.config.path, error = %e, "encoder failed");
                }
                start = seg.end;
                self.frames.extend(self.encoded.drain(..).map(|data| Frame {
                    data,
                    title: Arc::clone(&seg.title),
                }));
            }
            out.mount.ring.publish(self.frames.drain(..));
            self.station.mark_published(&out.mount, music);
            self.station
                .metrics
                .encoded_seconds
                .with_label_values(&[&out.mount.config.path, out.mount.config.codec.name()])
                .inc_by(seconds);
        }
    }

    /// Flushes every encoder into its ring and closes the rings, which ends every listener stream.
    fn finish(mut self) {
        let title = self
            .playing
            .as_ref()
            .map_or_else(|| Arc::clone(&self.idle_title), |p| Arc::clone(&p.title));
        for out in &mut self.outputs {
            self.encoded.clear();
            if let Err(e) = out.encoder.flush(&mut self.encoded) {
                tracing::warn!(mount = %out.mount.config.path, error = %e, "encoder flush failed");
            }
            out.mount
                .ring
                .publish(self.encoded.drain(..).map(|data| Frame {
                    data,
                    title: Arc::clone(&title),
                }));
            out.mount.ring.close();
        }
        tracing::info!("pipeline stopped");
    }
}

/// Opens a track, and moves a resumed one to where the programme is by now (it started at
/// `resume_from` in the saved programme); `None` when a resumed track has ended meanwhile.
fn open_at(track: &LoadedTrack) -> Result<Option<(TrackDecoder, Duration)>, DecodeError> {
    let (mut decoder, _) = TrackDecoder::open(&track.data)?;
    let Some(started) = track.resume_from else {
        return Ok(Some((decoder, Duration::ZERO)));
    };
    let offset = std::time::SystemTime::now()
        .duration_since(started)
        .unwrap_or_default();
    if track.tags.duration.is_some_and(|d| offset >= d) {
        tracing::info!(track = %track.track.key, "the resumed track has ended meanwhile; moving on");
        return Ok(None);
    }
    match decoder.seek(offset) {
        Ok(()) => {
            tracing::info!(track = %track.track.key, offset_s = offset.as_secs_f64(),
                "resuming the track where the programme is");
            Ok(Some((decoder, offset)))
        }
        Err(e) => {
            tracing::warn!(track = %track.track.key, error = %e, "cannot resume mid-track; playing it from the start");
            // The failed seek may have moved the reader: start over cleanly.
            let (decoder, _) = TrackDecoder::open(&track.data)?;
            Ok(Some((decoder, Duration::ZERO)))
        }
    }
}

/// One packet of `p` decoded and converted into its `ready` PCM.
fn decode_packet(p: &mut Playing, rate: u32, channels: usize, metrics: &crate::metrics::Metrics) {
    p.decoded.clear();
    let more = p.decoder.next_packet(&mut p.decoded);
    let (in_rate, in_ch) = (p.decoder.sample_rate(), p.decoder.channels());
    if !p.decoded.is_empty() && in_ch > 0 {
        // A stream may change rate or layout mid-file (chained Ogg, odd MP3s): start a new
        // converter, flushing the old one first so no audio is lost.
        if p.converter
            .as_ref()
            .is_some_and(|(_, r, c)| (*r, *c) != (in_rate, in_ch))
            && let Some((mut old, _, _)) = p.converter.take()
        {
            let _ = old.finish(&mut p.ready);
        }
        if p.converter.is_none() {
            match Converter::new(in_rate, in_ch, rate, channels) {
                Ok(c) => p.converter = Some((c, in_rate, in_ch)),
                Err(e) => {
                    tracing::warn!(track = %p.track.key, error = %e, "cannot convert track; skipping");
                    metrics
                        .tracks_skipped
                        .with_label_values(&["unsupported"])
                        .inc();
                    p.ended = true;
                    return;
                }
            }
        }
        if let Some((c, _, _)) = p.converter.as_mut()
            && let Err(e) = c.process(&p.decoded, &mut p.ready)
        {
            tracing::warn!(track = %p.track.key, error = %e, "resampling failed; ending track");
            p.ended = true;
        }
    }
    if !more {
        if let Some((c, _, _)) = p.converter.as_mut() {
            let _ = c.finish(&mut p.ready);
        }
        p.ended = true;
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
