//! The serde mirror of the TOML file, and `validate()`, which turns it into the typed [`Config`] or
//! reports every problem at once (field and reason), so an operator fixes a file in one pass.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::hls::RawHls;
use super::library::RawLibrary;
use super::live::RawLive;
use super::playout::RawPlayout;
use super::programme::{RawAnalysis, RawProgramme};
pub(crate) use super::units::parse_duration;
use super::{
    AacProfile, Amount, Audio, Codec, Config, MountConfig, Order, Playlist, Secret, Server, Station,
};

/// Sample rates an MP3 (MPEG-1/2/2.5 Layer III) stream can carry.
const MP3_SAMPLE_RATES: [u32; 9] = [8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000];
/// Bitrates libopus accepts, in kbps.
const OPUS_BITRATES: std::ops::RangeInclusive<u32> = 6..=510;
/// Constant bitrates LAME accepts, in kbps.
const MP3_BITRATES: [u32; 16] = [
    8, 16, 24, 32, 40, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
];
/// Paths the server answers itself; a mount may not shadow them.
const RESERVED_PATHS: [&str; 8] = [
    "/status-json.xsl",
    "/hls",
    "/metrics",
    "/healthz",
    "/readyz",
    "/admin",
    "/api",
    "/",
];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    station: RawStation,
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    library: RawLibrary,
    #[serde(default)]
    playlist: RawPlaylist,
    #[serde(default)]
    playout: RawPlayout,
    #[serde(default)]
    programme: RawProgramme,
    #[serde(default)]
    analysis: RawAnalysis,
    #[serde(default)]
    audio: RawAudio,
    #[serde(default)]
    live: RawLive,
    #[serde(default)]
    hls: RawHls,
    #[serde(default, rename = "mount")]
    mounts: Vec<RawMount>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawStation {
    name: String,
    description: String,
    genre: String,
    url: String,
}

impl Default for RawStation {
    fn default() -> Self {
        RawStation {
            name: "onair".into(),
            description: String::new(),
            genre: String::new(),
            url: String::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawServer {
    listen: String,
    admin_user: String,
    shutdown_grace: String,
    access_log: Option<String>,
    head_timeout: String,
    max_connections: usize,
    max_event_subscribers: usize,
    admin_listen: Option<String>,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: "0.0.0.0:8000".into(),
            admin_user: "admin".into(),
            shutdown_grace: "1500ms".into(),
            access_log: None,
            head_timeout: "5s".into(),
            max_connections: 1024,
            max_event_subscribers: 256,
            admin_listen: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawPlaylist {
    order: String,
}

impl Default for RawPlaylist {
    fn default() -> Self {
        RawPlaylist {
            order: "shuffle".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawAudio {
    sample_rate: u32,
    channels: u16,
}

impl Default for RawAudio {
    fn default() -> Self {
        RawAudio {
            sample_rate: 44100,
            channels: 2,
        }
    }
}

/// `burst` and `queue` take seconds ("2s") or bytes (65536 or "65536").
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
enum RawAmount {
    Bytes(u64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMount {
    path: String,
    #[serde(default = "default_codec")]
    codec: String,
    #[serde(default = "default_bitrate")]
    bitrate: u32,
    /// AAC only: `lc` (default), `he` or `he2`.
    #[serde(default)]
    profile: Option<String>,
    #[serde(default = "default_burst")]
    burst: RawAmount,
    #[serde(default = "default_queue")]
    queue: RawAmount,
    #[serde(default = "default_max_listeners")]
    max_listeners: usize,
    #[serde(default = "default_metaint")]
    icy_metaint: usize,
    #[serde(default)]
    max_listeners_per_ip: Option<usize>,
    #[serde(default = "default_write_interval")]
    write_interval: String,
    /// Also serve the mount as (Low-Latency) HLS under `/hls<path>/`.
    #[serde(default)]
    hls: bool,
}

fn default_codec() -> String {
    "mp3".into()
}
fn default_bitrate() -> u32 {
    128
}
fn default_burst() -> RawAmount {
    RawAmount::Text("2s".into())
}
fn default_queue() -> RawAmount {
    RawAmount::Text("10s".into())
}
fn default_write_interval() -> String {
    "750ms".into()
}
fn default_max_listeners() -> usize {
    20_000
}
fn default_metaint() -> usize {
    16_000
}

/// Secrets that come only from the environment, never from the file.
#[derive(Debug, Default, Clone)]
pub struct Secrets {
    /// `ONAIR_ADMIN_PASSWORD`
    pub admin_password: Option<Secret>,
    /// `ONAIR_SOURCE_PASSWORD`
    pub source_password: Option<Secret>,
}

impl RawConfig {
    /// Reports every problem at once instead of stopping at the first.
    pub(super) fn validate(self, secrets: Secrets) -> Result<Config, Vec<String>> {
        let mut errors = Vec::new();

        let listen = self
            .server
            .listen
            .parse::<SocketAddr>()
            .map_err(|e| {
                errors.push(format!(
                    "server.listen = {:?}: {e} (expected IP:PORT, e.g. \"0.0.0.0:8000\")",
                    self.server.listen
                ))
            })
            .ok();
        let shutdown_grace = parse_duration(&self.server.shutdown_grace)
            .map_err(|e| {
                errors.push(format!(
                    "server.shutdown_grace = {:?}: {e}",
                    self.server.shutdown_grace
                ))
            })
            .unwrap_or(Duration::from_millis(1500));

        let s = &self.server;
        let limits = super::limits::validate(
            &super::limits::RawLimits {
                head_timeout: &s.head_timeout,
                max_connections: s.max_connections,
                max_event_subscribers: s.max_event_subscribers,
                admin_listen: s.admin_listen.as_deref(),
            },
            listen,
            &mut errors,
        );

        if self.server.admin_user.is_empty() || self.server.admin_user.contains(':') {
            errors.push(format!(
                "server.admin_user = {:?}: must be non-empty and contain no ':'",
                self.server.admin_user
            ));
        }
        if self.server.access_log.as_deref() == Some("") {
            errors.push(
                "server.access_log: give a file path, or leave it out to log to stdout".into(),
            );
        }
        // These go into every listener's `icy-*` headers: a control character there would end
        // the header line (or be refused by a strict client), so it is refused here.
        for (field, value) in [
            ("name", &self.station.name),
            ("description", &self.station.description),
            ("genre", &self.station.genre),
            ("url", &self.station.url),
        ] {
            if value.chars().any(char::is_control) {
                errors.push(format!(
                    "station.{field} = {value:?}: control characters (tab, newline, …) are not allowed"
                ));
            }
        }
        let url = &self.station.url;
        if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
            errors.push(format!(
                "station.url = {url:?}: must start with http:// or https:// (or be empty)"
            ));
        }
        let library = self.library.validate(&mut errors);
        let playout = self.playout.validate(&mut errors);
        let hls = self.hls.validate(std::time::SystemTime::now(), &mut errors);
        let live_enabled = secrets.source_password.is_some() || self.live.has_accounts_file();
        let live = self
            .live
            .validate(listen, limits.admin_listen, live_enabled, &mut errors);
        let programme = self.programme.validate(&mut errors);
        let analysis = self.analysis.validate(&mut errors);

        let order = match self.playlist.order.as_str() {
            "shuffle" => Order::Shuffle,
            "sequential" => Order::Sequential,
            other => {
                errors.push(format!(
                    "playlist.order = {other:?}: expected \"shuffle\" or \"sequential\""
                ));
                Order::Shuffle
            }
        };

        let audio = Audio {
            sample_rate: self.audio.sample_rate,
            channels: self.audio.channels,
        };
        if !MP3_SAMPLE_RATES.contains(&audio.sample_rate) {
            errors.push(format!(
                "audio.sample_rate = {}: MP3 supports {MP3_SAMPLE_RATES:?}",
                audio.sample_rate
            ));
        }
        if !(1..=2).contains(&audio.channels) {
            errors.push(format!(
                "audio.channels = {}: expected 1 or 2",
                audio.channels
            ));
        }

        if self.mounts.is_empty() {
            errors.push("mount: at least one [[mount]] is required".into());
        }
        let mut seen = HashSet::new();
        let mounts: Vec<MountConfig> = self
            .mounts
            .into_iter()
            .enumerate()
            .filter_map(|(i, m)| m.validate(i, &audio, &mut seen, &mut errors))
            .collect();

        match listen {
            Some(listen) if errors.is_empty() => Ok(Config {
                station: Station {
                    name: self.station.name,
                    description: self.station.description,
                    genre: self.station.genre,
                    url: self.station.url,
                },
                server: Server {
                    listen,
                    admin_user: self.server.admin_user,
                    admin_password: secrets.admin_password,
                    source_password: secrets.source_password,
                    shutdown_grace,
                    access_log: self.server.access_log.map(PathBuf::from),
                    head_timeout: limits.head_timeout,
                    max_connections: limits.max_connections,
                    max_event_subscribers: limits.max_event_subscribers,
                    admin_listen: limits.admin_listen,
                },
                library,
                playlist: Playlist { order },
                playout,
                live,
                hls,
                programme,
                analysis,
                audio,
                mounts,
            }),
            _ => Err(errors),
        }
    }
}

impl RawMount {
    /// The AAC profile asked for (`lc` when none), refused when this build has no AAC encoder.
    fn aac_profile(&self, field: &dyn Fn(&str) -> String, errors: &mut Vec<String>) -> AacProfile {
        if !cfg!(feature = "aac") {
            errors.push(format!(
                "{} = \"aac\": this onair was built without the `aac` feature (the FDK AAC \
                 encoder); rebuild with default features",
                field("codec")
            ));
        }
        match self.profile.as_deref().unwrap_or("lc") {
            "lc" => AacProfile::Lc,
            "he" => AacProfile::He,
            "he2" => AacProfile::HeV2,
            other => {
                errors.push(format!(
                    "{} = {other:?}: AAC profiles are [\"lc\", \"he\", \"he2\"]",
                    field("profile")
                ));
                AacProfile::Lc
            }
        }
    }

    fn validate(
        self,
        i: usize,
        audio: &Audio,
        seen: &mut HashSet<String>,
        errors: &mut Vec<String>,
    ) -> Option<MountConfig> {
        let before = errors.len();
        let field = |name: &str| format!("mount[{i}].{name}");
        if !self.path.starts_with('/') || self.path.len() < 2 {
            errors.push(format!(
                "{} = {:?}: must start with '/' and name the mount, e.g. \"/radio.mp3\"",
                field("path"),
                self.path
            ));
        } else if self.path.contains(['?', '#', ' ', '%']) {
            errors.push(format!(
                "{} = {:?}: must not contain '?', '#', '%' or spaces",
                field("path"),
                self.path
            ));
        } else if RESERVED_PATHS
            .iter()
            .any(|r| self.path == *r || (r.len() > 1 && self.path.starts_with(&format!("{r}/"))))
        {
            errors.push(format!(
                "{} = {:?}: reserved for the server's own pages",
                field("path"),
                self.path
            ));
        }
        if !seen.insert(self.path.clone()) {
            errors.push(format!(
                "{} = {:?}: used by another mount",
                field("path"),
                self.path
            ));
        }
        let codec = match self.codec.as_str() {
            "mp3" => Codec::Mp3,
            "aac" => Codec::Aac(self.aac_profile(&field, errors)),
            "opus" => Codec::Opus,
            other => {
                errors.push(format!(
                    "{} = {other:?}: supported codecs are [\"mp3\", \"aac\", \"opus\"]",
                    field("codec")
                ));
                Codec::Mp3
            }
        };
        if !matches!(codec, Codec::Aac(_)) && self.profile.is_some() {
            errors.push(format!(
                "{}: a profile is for AAC mounts (codec = \"aac\")",
                field("profile")
            ));
        }
        if let Codec::Aac(profile) = codec {
            let allowed = profile.bitrates(*audio);
            if !allowed.contains(&self.bitrate) {
                errors.push(format!(
                    "{} = {}: AAC {} at {} Hz, {} channel(s) takes {}–{} kbps",
                    field("bitrate"),
                    self.bitrate,
                    profile.name(),
                    audio.sample_rate,
                    audio.channels,
                    allowed.start(),
                    allowed.end()
                ));
            }
            if profile == AacProfile::HeV2 && audio.channels != 2 {
                errors.push(format!(
                    "{} = \"he2\": HE-AAC v2 is parametric stereo and needs [audio] channels = 2",
                    field("profile")
                ));
            }
            if profile != AacProfile::Lc && audio.sample_rate < 32000 {
                errors.push(format!(
                    "{} = {:?}: HE-AAC needs a station rate of 32000 Hz or more, not {}",
                    field("profile"),
                    profile.name(),
                    audio.sample_rate
                ));
            }
        } else if codec == Codec::Opus {
            if !OPUS_BITRATES.contains(&self.bitrate) {
                errors.push(format!(
                    "{} = {}: Opus takes {}–{} kbps",
                    field("bitrate"),
                    self.bitrate,
                    OPUS_BITRATES.start(),
                    OPUS_BITRATES.end()
                ));
            }
            if audio.channels > 2 {
                errors.push(format!(
                    "{}: Opus mounts carry mono or stereo, not {} channels",
                    field("codec"),
                    audio.channels
                ));
            }
        } else if !MP3_BITRATES.contains(&self.bitrate) {
            errors.push(format!(
                "{} = {}: MP3 CBR bitrates are {MP3_BITRATES:?} (kbps)",
                field("bitrate"),
                self.bitrate
            ));
        } else if audio.sample_rate < 32000 && self.bitrate > 160 {
            errors.push(format!(
                "{} = {}: at {} Hz MP3 allows at most 160 kbps",
                field("bitrate"),
                self.bitrate,
                audio.sample_rate
            ));
        } else if audio.sample_rate >= 32000 && self.bitrate < 32 {
            errors.push(format!(
                "{} = {}: at {} Hz MP3 needs at least 32 kbps",
                field("bitrate"),
                self.bitrate,
                audio.sample_rate
            ));
        }
        let burst = parse_amount(&self.burst)
            .map_err(|e| errors.push(format!("{} = {:?}: {e}", field("burst"), self.burst)))
            .ok();
        let queue = parse_amount(&self.queue)
            .map_err(|e| errors.push(format!("{} = {:?}: {e}", field("queue"), self.queue)))
            .ok();
        let bytes_per_sec = u64::from(self.bitrate) * 125;
        if let (Some(b), Some(q)) = (burst, queue)
            && b.bytes(bytes_per_sec) >= q.bytes(bytes_per_sec)
        {
            errors.push(format!(
                "{}: must be larger than burst, or every new listener would start out lagging",
                field("queue")
            ));
        }
        if let Some(q) = queue
            && q.bytes(bytes_per_sec) > 64 * 1024 * 1024
        {
            errors.push(format!("{}: at most 64 MiB of history", field("queue")));
        }
        if self.max_listeners == 0 {
            errors.push(format!(
                "{} = 0: must be at least 1",
                field("max_listeners")
            ));
        }
        if self.max_listeners_per_ip == Some(0) {
            errors.push(format!(
                "{} = 0: must be at least 1 (leave it out for no limit)",
                field("max_listeners_per_ip")
            ));
        }
        if !(256..=65_535).contains(&self.icy_metaint) {
            errors.push(format!(
                "{} = {}: expected 256..=65535 (Icecast's default is 16000)",
                field("icy_metaint"),
                self.icy_metaint
            ));
        }
        let write_interval = match super::units::parse_duration(&self.write_interval) {
            Ok(d) if d >= Duration::from_millis(50) && d <= Duration::from_secs(2) => d,
            Ok(_) => {
                errors.push(format!(
                    "{} = {:?}: expected 50ms to 2s",
                    field("write_interval"),
                    self.write_interval
                ));
                Duration::ZERO
            }
            Err(e) => {
                errors.push(format!(
                    "{} = {:?}: {e}",
                    field("write_interval"),
                    self.write_interval
                ));
                Duration::ZERO
            }
        };
        if self.hls {
            match codec.frame_samples(*audio) {
                None => errors.push(format!(
                    "{} = true: HLS packs MP3 or AAC frames; an {} mount cannot be served as HLS",
                    field("hls"),
                    codec.name()
                )),
                Some(samples) if !crate::hls::grid::fits(samples, audio.sample_rate) => errors
                    .push(format!(
                        "{} = true: {samples}-sample frames at {} Hz cannot make HLS parts of \
                         0.85 to 1 s; use a station rate of 16000 Hz or more",
                        field("hls"),
                        audio.sample_rate
                    )),
                Some(_) => {}
            }
        }
        match (burst, queue) {
            (Some(burst), Some(queue)) if errors.len() == before => Some(MountConfig {
                path: self.path,
                codec,
                bitrate_kbps: self.bitrate,
                burst,
                queue,
                max_listeners: self.max_listeners,
                max_listeners_per_ip: self.max_listeners_per_ip,
                icy_metaint: self.icy_metaint,
                write_interval,
                hls: self.hls,
            }),
            _ => None,
        }
    }
}

fn parse_amount(raw: &RawAmount) -> Result<Amount, String> {
    match raw {
        RawAmount::Bytes(n) => Ok(Amount::Bytes(*n as usize)),
        RawAmount::Text(t) if !t.is_empty() && t.trim().bytes().all(|b| b.is_ascii_digit()) => t
            .trim()
            .parse::<usize>()
            .map(Amount::Bytes)
            .map_err(|e| e.to_string()),
        RawAmount::Text(t) => parse_duration(t).map(Amount::Duration),
    }
}
