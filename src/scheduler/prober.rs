//! The probe thread: one long-lived thread that probes the tracks the scheduler readies, one at
//! a time. Probing is CPU work (a decoder is set up and a few packets decoded), so it stays off
//! the async workers; it is not on tokio's blocking pool either, because that pool starts and
//! ends threads as it likes, and each new thread may take another of glibc's malloc arenas: the
//! ~1.3 MB a Vorbis decoder allocates for its codebooks then stays behind in up to sixteen of them,
//! and RSS creeps up for hours (seen in the one-hour soak of benches/README.md).
//!
//! A probe that runs past [`PROBE_TIMEOUT`] (a decoder stuck in a loop on a damaged file) is
//! abandoned with its thread: the track is skipped as corrupt and a new thread probes the next
//! ones.

use std::sync::mpsc;
use std::time::Duration;

use tokio::sync::{Mutex, oneshot};

use crate::audio::decode::{self, DecodeError, TrackTags};
use crate::catalog::TrackData;
use crate::supervise::panic_message;

/// Longer than any real probe takes (milliseconds, a second for a cold disk).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

type Job = (TrackData, oneshot::Sender<Result<TrackTags, DecodeError>>);

/// Why a track was not probed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The track is not playable audio (or the decoder panicked or hung on it): skip it.
    #[error(transparent)]
    Undecodable(#[from] DecodeError),
    /// No thread could probe it, through no fault of the track: it keeps its turn.
    #[error("cannot probe: {0}")]
    NoThread(String),
}

/// Hands tracks to the probe thread, one at a time.
pub struct Prober {
    /// The thread's job queue; `None` after its thread could not be started. Held while a probe
    /// runs, so a timeout measures that probe alone, never the wait behind another.
    thread: Mutex<Option<mpsc::Sender<Job>>>,
}

impl Default for Prober {
    fn default() -> Self {
        Prober::new()
    }
}

impl Prober {
    /// A prober; its thread starts with the first probe.
    pub fn new() -> Prober {
        Prober {
            thread: Mutex::new(None),
        }
    }

    /// Probes `data` on the probe thread.
    pub async fn probe(&self, data: TrackData) -> Result<TrackTags, ProbeError> {
        let mut thread = self.thread.lock().await;
        let jobs = match thread.as_ref() {
            Some(jobs) => jobs.clone(),
            None => {
                let jobs = start().map_err(|e| {
                    ProbeError::NoThread(format!("cannot start the probe thread: {e}"))
                })?;
                thread.insert(jobs).clone()
            }
        };
        let (reply, result) = oneshot::channel();
        if jobs.send((data, reply)).is_err() {
            *thread = None;
            return Err(ProbeError::NoThread("the probe thread is gone".into()));
        }
        match tokio::time::timeout(PROBE_TIMEOUT, result).await {
            Ok(Ok(result)) => Ok(result?),
            Ok(Err(_)) => {
                *thread = None;
                Err(ProbeError::NoThread("the probe thread is gone".into()))
            }
            Err(_) => {
                // Dropping the queue lets the stuck thread end if it ever comes back.
                *thread = None;
                tracing::warn!(
                    timeout_s = PROBE_TIMEOUT.as_secs(),
                    "a probe is stuck; its thread is left behind and a new one takes over"
                );
                Err(DecodeError::Corrupt(format!(
                    "the decoder did not finish probing it within {} s",
                    PROBE_TIMEOUT.as_secs()
                ))
                .into())
            }
        }
    }
}

fn start() -> std::io::Result<mpsc::Sender<Job>> {
    let (jobs, queue) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("onair-probe".into())
        .spawn(move || {
            for (data, reply) in queue {
                let _ = reply.send(probe_guarded(&data));
            }
        })?;
    Ok(jobs)
}

/// [`decode::probe`], with a panic inside the decoder turned into a corrupt track.
pub fn probe_guarded(data: &TrackData) -> Result<TrackTags, DecodeError> {
    // The decoder state dies with the panic; nothing outlives this call.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decode::probe(data))).unwrap_or_else(
        |panic| {
            Err(DecodeError::Corrupt(format!(
                "the decoder panicked: {}",
                panic_message(&*panic)
            )))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> TrackData {
        let path = format!("{}/tests/fixtures/media/{name}", env!("CARGO_MANIFEST_DIR"));
        TrackData::open(std::path::Path::new(&path)).unwrap()
    }

    #[tokio::test]
    async fn tracks_are_probed_and_bad_ones_are_undecodable() {
        let prober = Prober::new();
        let vorbis = prober.probe(fixture("06-vorbis.ogg")).await.unwrap();
        assert_eq!((vorbis.codec.as_str(), vorbis.channels), ("vorbis", 2));
        match prober.probe(fixture("91-garbage.mp3")).await {
            Err(ProbeError::Undecodable(e)) => assert_ne!(e.reason(), "", "{e}"),
            other => panic!("garbage probed as {other:?}"),
        }
        // The thread outlives a bad track.
        let mp3 = prober.probe(fixture("01-cbr128.mp3")).await.unwrap();
        assert_eq!(mp3.codec, "mp3");
        assert!(prober.thread.lock().await.is_some());
    }
}
