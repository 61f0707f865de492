//! The live state of the radio, split by what changes together: the mounts and their audiences
//! (`mounts`), what is on air (`on_air`), and whether the radio is well (`health`). [`Station`]
//! bundles the three with the config, the metrics and the operators' command channel for the
//! HTTP side, which shows all of it; the pipeline, the scheduler and the fan-out keep only the
//! parts they use.

mod health;
mod mounts;
mod on_air;

use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Instant, SystemTime};

pub use health::{Health, LibraryState, READY_WINDOW};
pub use mounts::{Audience, Client, ListenerSlot, Mount, Mounts, Refusal};
pub use on_air::{HISTORY_LEN, LiveShow, NowPlaying, OnAir, Played, TrackInfo};

use crate::config::Config;
use crate::live::feed::LiveFeed;
use crate::metrics::Metrics;

/// Live audio buffered beyond the pre-roll before the oldest is dropped: a source sending
/// faster than real time must not push the show further and further behind.
const LIVE_HEADROOM: std::time::Duration = std::time::Duration::from_secs(4);

/// What an operator asks of the programme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `/admin/next`: the track on air fades out over a second while the next one starts.
    Skip,
    /// `/admin/metadata`: the title listeners see until the next track starts.
    SetTitle(String),
}

/// One running radio's state, as the HTTP side sees it.
pub struct Station {
    pub config: Arc<Config>,
    pub metrics: Metrics,
    pub mounts: Arc<Mounts>,
    pub on_air: Arc<OnAir>,
    pub health: Arc<Health>,
    /// The mounts served as HLS too, and their playlists.
    pub hls: Arc<crate::hls::station::Hls>,
    /// The live show's audio on its way to the pipeline, and who is on it.
    pub live: Arc<LiveFeed>,
    /// When the radio started (`server_start` in the status pages).
    pub started: SystemTime,
    /// Operator commands for the pipeline, which takes them between two blocks.
    commands: mpsc::Sender<Command>,
}

impl Station {
    /// The station, and the receiving end of its operator commands (for the pipeline).
    pub fn new(config: Arc<Config>, metrics: Metrics) -> (Arc<Station>, mpsc::Receiver<Command>) {
        let (commands, received) = mpsc::channel();
        let started = SystemTime::now();
        let uptime = Uptime::start();
        let mounts = Mounts::new(&config.mounts, &metrics, started, uptime);
        let station = Station {
            hls: Arc::new(crate::hls::station::Hls::new(
                config.audio,
                config.hls.epoch,
                &mounts,
            )),
            mounts: Arc::new(mounts),
            on_air: Arc::new(OnAir::new()),
            health: Arc::new(Health::new(uptime)),
            live: Arc::new(LiveFeed::new(
                usize::from(config.audio.channels),
                ((config.live.preroll + LIVE_HEADROOM).as_secs_f64()
                    * f64::from(config.audio.sample_rate)) as usize,
            )),
            config,
            metrics,
            started,
            commands,
        };
        (Arc::new(station), received)
    }

    /// Hands an operator command to the pipeline (`/admin/next`, `/admin/metadata`). It is
    /// applied at the next block; a pipeline that is gone (shutting down) drops it.
    pub fn command(&self, command: Command) {
        let _ = self.commands.send(command);
    }

    /// Ready when every mount published audio lately and that audio is music, not filler;
    /// otherwise the reasons (see [`Health::readiness`]).
    pub fn readiness(&self) -> Result<(), Vec<String>> {
        self.health.readiness(&self.mounts)
    }
}

/// Milliseconds since the radio started, the clock of the mounts' and the health's "last
/// audio" stamps (kept as atomics, so the pipeline thread stamps them without a lock).
#[derive(Debug, Clone, Copy)]
pub struct Uptime(Instant);

impl Uptime {
    /// A clock that starts now.
    pub fn start() -> Uptime {
        Uptime(Instant::now())
    }

    /// Now, never 0: 0 means "never" in a stamp.
    fn now_ms(self) -> u64 {
        self.0.elapsed().as_millis() as u64 + 1
    }
}
