//! A live session's decoder thread: the bytes the socket task received, through symphonia (or
//! the Opus decoder) and the station's format conversion, onto the feed the pipeline plays. It
//! runs on its own thread, so decoding never holds a tokio worker.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use symphonia::core::formats::probe::Hint;
use symphonia::core::io::ReadOnlySource;
use tokio::sync::mpsc;

use super::feed::{LiveFeed, SessionInfo};
use super::handshake::Format;
use crate::audio::decode::{TrackDecoder, TrackTags};
use crate::audio::resample::Reformatter;
use crate::config::Audio;
use crate::metrics::Metrics;

/// A title the DJ's tool sent before its audio decoded (libshout sends the first song's title
/// right after its login): the show starts under it. Locked before the feed, by both sides.
pub(super) type EarlyTitle = Arc<Mutex<Option<String>>>;

/// A session's decoder thread: bytes from the channel in, station PCM onto the feed.
pub(super) struct Decoder {
    pub(super) feed: Arc<LiveFeed>,
    pub(super) info: Arc<SessionInfo>,
    pub(super) format: Format,
    pub(super) audio: Audio,
    pub(super) metrics: Metrics,
    pub(super) probed: Arc<AtomicBool>,
    pub(super) early_title: EarlyTitle,
}

/// The channel as a blocking reader: the end of the channel is the end of the stream.
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    chunk: Bytes,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.chunk = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

impl Decoder {
    /// The title the tags give, if they give one, for the audio pushed next.
    fn title_from(&self, tags: &TrackTags) {
        if tags.title.is_none() {
            return;
        }
        let title = crate::title::clean_title(&crate::audio::display_title(
            tags.artist.as_deref(),
            tags.title.as_deref(),
            "",
        ));
        if !title.is_empty() {
            self.feed.push_title(self.info.id, &title);
        }
    }

    pub(super) fn run(self, rx: mpsc::Receiver<Bytes>) {
        let id = self.info.id;
        let feed = Arc::clone(&self.feed);
        let decoded = std::panic::catch_unwind(AssertUnwindSafe(|| self.decode(rx)));
        if decoded.is_err() {
            tracing::error!("the decoder panicked on a live stream; ending the session");
        }
        feed.end(id);
    }

    fn decode(&self, rx: mpsc::Receiver<Bytes>) {
        let mut hint = Hint::new();
        match self.format {
            Format::Mp3 => hint.with_extension("mp3").mime_type("audio/mpeg"),
            Format::Aac => hint.with_extension("aac").mime_type("audio/aac"),
            Format::Ogg => hint.with_extension("ogg").mime_type("audio/ogg"),
        };
        let reader = ChannelReader {
            rx,
            chunk: Bytes::new(),
        };
        let (mut decoder, tags) =
            match TrackDecoder::open_live(Box::new(ReadOnlySource::new(reader)), &hint) {
                Ok(opened) => opened,
                Err(e) => {
                    self.metrics
                        .live_connects
                        .with_label_values(&["probe"])
                        .inc();
                    tracing::warn!(source = %self.info.peer, error = %e, claimed = ?self.format,
                        "the live source's audio does not decode; closing it");
                    return;
                }
            };
        self.probed.store(true, Ordering::Relaxed);
        self.metrics.live_connects.with_label_values(&["ok"]).inc();
        tracing::info!(source = %self.info.peer, codec = %tags.codec, sample_rate = tags.sample_rate,
            channels = tags.channels, "live audio decodes");
        self.feed.begin(Arc::clone(&self.info));
        // An Ogg stream's comments (or an MP3's ID3 head) name what plays first, unless the
        // tool named it already (the later word wins).
        self.title_from(&tags);
        let mut early = self.early_title.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(title) = early.take() {
            self.feed.push_title(self.info.id, &title);
        }
        drop(early);
        let mut reformat =
            Reformatter::new(self.audio.sample_rate, usize::from(self.audio.channels));
        let (mut pcm, mut station) = (Vec::new(), Vec::new());
        let mut errors = 0;
        loop {
            pcm.clear();
            station.clear();
            let more = decoder.next_packet(&mut pcm);
            if !pcm.is_empty()
                && let Err(e) = reformat.process(
                    decoder.sample_rate(),
                    decoder.channels(),
                    &pcm,
                    &mut station,
                )
            {
                tracing::warn!(source = %self.info.peer, error = %e, "cannot convert the live audio; ending the session");
                return;
            }
            if !more {
                let _ = reformat.finish(&mut station);
            }
            if let Some(tags) = decoder.take_chain_tags() {
                // A new Ogg chain: its comments carry the next song's title.
                self.title_from(&tags);
                self.metrics
                    .live_metadata_updates
                    .with_label_values(&["ogg"])
                    .inc();
            }
            let new_errors = decoder.errors() - errors;
            if new_errors > 0 {
                self.metrics.live_decode_errors.inc_by(new_errors);
                errors = decoder.errors();
            }
            if self.feed.push(self.info.id, &station).is_none() || !more {
                return;
            }
        }
    }
}
