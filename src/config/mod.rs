//! The validated, typed configuration the rest of the program sees, and [`load`], which reads the TOML
//! file and the secrets from the environment. Parsing and validation live in `raw.rs` (and
//! `library.rs` for the `[library]` section, `playout.rs` for `[playout]`, `limits.rs` for the
//! connection limits); `storage.rs` holds
//! the settings of an S3 site, `units.rs` durations and byte counts.

mod hls;
mod library;
mod limits;
mod live;
mod playout;
mod programme;
mod raw;
mod secret;
pub mod storage;
mod units;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use live::{After, Live};
pub use raw::Secrets;
pub use secret::Secret;
pub use storage::S3Settings;
#[cfg(test)]
use units::parse_duration;

/// Everything one radio needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// What listeners and directories see (icy-* headers, status pages).
    pub station: Station,
    /// Listening socket and credentials.
    pub server: Server,
    /// Where tracks come from.
    pub library: Library,
    /// AutoDJ order.
    pub playlist: Playlist,
    /// Carrying the programme across restarts.
    pub playout: Playout,
    /// DJs going on air from their own source clients.
    pub live: Live,
    /// What the HLS mounts share.
    pub hls: Hls,
    /// What listeners hear: loudness, crossfades, silence trimming.
    pub programme: Programme,
    /// How tracks are measured.
    pub analysis: AnalysisSettings,
    /// The PCM format every track is converted to before encoding.
    pub audio: Audio,
    /// One output stream each.
    pub mounts: Vec<MountConfig>,
}

/// `[hls]`
#[derive(Debug, Clone)]
pub struct Hls {
    /// Sample 0 of the HLS timeline: segment and part numbers and timestamps count from it, so
    /// every pod of the station (a restart, a replacement) names the same audio the same way.
    pub epoch: std::time::SystemTime,
}

/// `[station]`
#[derive(Debug, Clone)]
pub struct Station {
    pub name: String,
    pub description: String,
    pub genre: String,
    pub url: String,
}

/// `[server]`
#[derive(Debug, Clone)]
pub struct Server {
    pub listen: SocketAddr,
    pub admin_user: String,
    /// From `ONAIR_ADMIN_PASSWORD`; admin endpoints stay closed without it.
    pub admin_password: Option<Secret>,
    /// From `ONAIR_SOURCE_PASSWORD`: the password of user `source` for live sources.
    pub source_password: Option<Secret>,
    /// How long listeners get to drain after SIGTERM before their sockets are dropped.
    pub shutdown_grace: Duration,
    /// File that gets one Icecast combined-format line per finished listener; without it the
    /// line goes to the log on stdout.
    pub access_log: Option<PathBuf>,
    /// Time a client has to send its whole request head (every request, listeners' included).
    pub head_timeout: Duration,
    /// Connections that are not admitted listeners (heads being read, hyper requests, event
    /// streams) held at once, on every port.
    pub max_connections: usize,
    /// `/api/events` streams open at once.
    pub max_event_subscribers: usize,
    /// A second address serving only `/admin/*`, `/metrics` and `/readyz`; when set, the public
    /// port answers 404 for them.
    pub admin_listen: Option<SocketAddr>,
}

/// `[library]`
#[derive(Debug, Clone)]
pub struct Library {
    pub kind: LibraryKind,
    /// How often the library is listed again; zero turns rescans off.
    pub rescan: Duration,
    /// Tracks kept ready (on local disk and probed) ahead of the one playing.
    pub prefetch: usize,
    /// Tracks larger than this are skipped (`too_large`); `None`: no limit.
    pub max_track_bytes: Option<u64>,
}

/// Which storage holds the tracks.
#[derive(Debug, Clone)]
pub enum LibraryKind {
    /// A local folder, read recursively.
    Local { path: PathBuf },
    /// An S3 bucket (Ceph RGW or any S3 endpoint), read through a disk cache.
    S3(Box<S3Library>),
}

/// `[library] kind = "s3"`. Credentials are not here: they come from the `AWS_*` environment.
#[derive(Debug, Clone)]
pub struct S3Library {
    /// Endpoint, bucket, prefix (normalized: no leading '/', a trailing one), region, timeouts.
    pub storage: S3Settings,
    /// `[library.backup]`: a copy of the library at another site, used while the primary is down.
    pub backup: Option<S3Settings>,
    /// Where fetched tracks are kept; must survive restarts for a warm start during an outage.
    pub cache_dir: PathBuf,
    pub cache_max_bytes: u64,
    /// While storage is down, how often it is asked again.
    pub retry_after: Duration,
}

/// `[playlist]`
#[derive(Debug, Clone, Copy)]
pub struct Playlist {
    pub order: Order,
}

/// `[playout]`
#[derive(Debug, Clone, Copy)]
pub struct Playout {
    /// A restarted or replacement pod resumes the saved programme (the current track where it
    /// should be by now, the rest of the shuffle round, the history).
    pub resume: bool,
    /// How often the playout state is checked and, when it changed, saved.
    pub save_interval: Duration,
}

/// `[programme]`
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Programme {
    pub loudness: Loudness,
    pub crossfade: Crossfade,
    /// Leading and trailing silence is cut through the cue points.
    pub trim_silence: bool,
}

/// Track loudness: gain = clamp(target − I, −max_cut, +max_boost), held so the track's true
/// peak plus the gain stays within 3 dB of limiting above `true_peak`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Loudness {
    pub target_lufs: f64,
    pub true_peak_dbtp: f64,
    pub max_boost_db: f64,
    pub max_cut_db: f64,
}

/// `[programme.crossfade]`
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Crossfade {
    pub enabled: bool,
    /// The longest two tracks overlap (and at most half of the shorter one).
    pub max_overlap: std::time::Duration,
    /// How long the outgoing track fades.
    pub fade_out: std::time::Duration,
    pub curve: Curve,
}

/// The shape of a fade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    /// Quarter-sine/cosine: the sum of two uncorrelated tracks keeps its loudness.
    EqualPower,
    Linear,
    /// Half-sine S-curve (Liquidsoap's `sin`).
    Sine,
}

/// `[analysis]`
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnalysisSettings {
    /// Tracks are analysed in the background; off, they play with their tags' gain only.
    pub enabled: bool,
    /// The analysis runs at most this many times real time.
    pub max_speed: f64,
}

/// AutoDJ ordering rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Every track once per round in random order, never the same track twice in a row.
    Shuffle,
    /// By key, then again from the start.
    Sequential,
}

/// `[audio]`: the station format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Audio {
    pub sample_rate: u32,
    pub channels: u16,
}

/// Output codec of a mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Mp3,
    /// AAC in ADTS frames.
    Aac(AacProfile),
    /// Opus in Ogg, at 48 kHz whatever the station rate.
    Opus,
}

impl Codec {
    /// The name used in the config file and in metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Mp3 => "mp3",
            Codec::Aac(_) => "aac",
            Codec::Opus => "opus",
        }
    }

    /// Whether listeners may get ICY metadata blocks. Ogg streams carry their titles in the
    /// stream itself (Icecast sends no `icy-metaint` on them either).
    pub fn carries_icy(self) -> bool {
        !matches!(self, Codec::Opus)
    }

    /// Samples (a channel) in one frame of a codec HLS can pack; `None` for Opus, whose HLS
    /// form (fMP4) is not built.
    pub fn frame_samples(self, audio: Audio) -> Option<u32> {
        match self {
            Codec::Mp3 if audio.sample_rate >= 32000 => Some(1152),
            Codec::Mp3 => Some(576),
            Codec::Aac(AacProfile::Lc) => Some(1024),
            // SBR: 1024 core samples at half the rate.
            Codec::Aac(_) => Some(2048),
            Codec::Opus => None,
        }
    }

    /// The `CODECS` value of the multivariant playlist (RFC 6381; MP3 as Apple writes it).
    pub fn hls_codecs(self) -> &'static str {
        match self {
            Codec::Mp3 => "mp4a.40.34",
            Codec::Aac(AacProfile::Lc) => "mp4a.40.2",
            Codec::Aac(AacProfile::He) => "mp4a.40.5",
            Codec::Aac(AacProfile::HeV2) => "mp4a.40.29",
            Codec::Opus => "opus",
        }
    }

    /// The sample rate the mount's stream is encoded at.
    pub fn output_rate(self, audio: Audio) -> u32 {
        match self {
            Codec::Opus => crate::encode::OPUS_RATE,
            _ => audio.sample_rate,
        }
    }
}

/// Which AAC: plain LC for 96 kbps and up, HE-AAC (spectral band replication) for 24–64 kbps,
/// HE-AAC v2 (parametric stereo on top) for the lowest stereo bitrates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AacProfile {
    Lc,
    He,
    HeV2,
}

impl AacProfile {
    /// The name used in the config file (`profile = "…"`).
    pub fn name(self) -> &'static str {
        match self {
            AacProfile::Lc => "lc",
            AacProfile::He => "he",
            AacProfile::HeV2 => "he2",
        }
    }

    /// CBR bitrates (kbps) the encoder takes for this profile at `audio`'s rate and channels.
    pub fn bitrates(self, audio: Audio) -> std::ops::RangeInclusive<u32> {
        let stereo = audio.channels >= 2;
        // An AAC frame holds at most 6144 bits a channel for 1024 samples: 6 bits a sample.
        let most = 6 * audio.sample_rate * u32::from(audio.channels.max(1)) / 1000;
        match self {
            AacProfile::Lc if stereo => 32..=320.min(most),
            AacProfile::Lc => 16..=256.min(most),
            AacProfile::He if stereo => 24..=64,
            AacProfile::He => 12..=64,
            AacProfile::HeV2 => 16..=48,
        }
    }
}

/// An amount of stream given as time or as bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    Duration(Duration),
    Bytes(usize),
}

impl Amount {
    /// The amount in bytes for a stream of `bytes_per_sec`.
    pub fn bytes(self, bytes_per_sec: u64) -> usize {
        match self {
            Amount::Bytes(n) => n,
            Amount::Duration(d) => (d.as_secs_f64() * bytes_per_sec as f64) as usize,
        }
    }
}

/// `[[mount]]`: one output stream.
#[derive(Debug, Clone)]
pub struct MountConfig {
    /// URL path, starting with '/'.
    pub path: String,
    pub codec: Codec,
    pub bitrate_kbps: u32,
    /// How far back from the live edge a new listener starts.
    pub burst: Amount,
    /// How far a listener may fall behind before it is dropped.
    pub queue: Amount,
    pub max_listeners: usize,
    /// Listeners from one IP address at once on this mount; `None` = no limit.
    pub max_listeners_per_ip: Option<usize>,
    pub icy_metaint: usize,
    /// How often a listener that keeps up is written to: fewer, larger writes cost less CPU per
    /// listener; shorter ones bring a live DJ closer to the listeners' sockets.
    pub write_interval: Duration,
    /// Also served as HLS (`/hls<path>/live.m3u8`).
    pub hls: bool,
}

impl MountConfig {
    /// Stream bytes per second at the nominal bitrate.
    pub fn bytes_per_sec(&self) -> u64 {
        u64::from(self.bitrate_kbps) * 125
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: invalid configuration:\n  - {}", .errors.join("\n  - "))]
    Invalid { path: PathBuf, errors: Vec<String> },
}

/// Reads and validates a config file, taking secrets from the process environment.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, secrets_from_env()).map_err(|e| match e {
        ParseError::Syntax(message) => ConfigError::Syntax {
            path: path.to_owned(),
            message,
        },
        ParseError::Invalid(errors) => ConfigError::Invalid {
            path: path.to_owned(),
            errors,
        },
    })
}

/// What is wrong with a config text.
#[derive(Debug)]
pub enum ParseError {
    /// Not TOML, an unknown field or a value of the wrong type.
    Syntax(String),
    /// Well-formed but wrong: every problem, each with its field.
    Invalid(Vec<String>),
}

/// Parses and validates config text (used by [`load`] and by tests that build configs in code).
pub fn parse(text: &str, secrets: Secrets) -> Result<Config, ParseError> {
    let raw: raw::RawConfig =
        toml::from_str(text).map_err(|e| ParseError::Syntax(e.to_string().trim().to_owned()))?;
    raw.validate(secrets).map_err(ParseError::Invalid)
}

/// Secrets come only from the environment so that a config file can live in Git.
pub fn secrets_from_env() -> Secrets {
    let non_empty = |name: &str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .map(Secret::from)
    };
    Secrets {
        admin_password: non_empty("ONAIR_ADMIN_PASSWORD"),
        source_password: non_empty("ONAIR_SOURCE_PASSWORD"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(text: &str) -> Vec<String> {
        match parse(text, Secrets::default()) {
            Err(ParseError::Invalid(errors)) => errors,
            other => panic!("expected validation errors, got {other:?}"),
        }
    }

    #[test]
    fn example_configs_are_valid() {
        for file in ["config/radio.toml", "config/radio.example.toml"] {
            let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file))
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            let config = parse(&text, Secrets::default())
                .unwrap_or_else(|e| panic!("{file} does not validate: {e:?}"));
            assert_eq!(config.mounts[0].path, "/radio.mp3");
        }
    }

    #[test]
    fn defaults_fill_a_minimal_file() {
        let c = parse("[[mount]]\npath = \"/a.mp3\"\n", Secrets::default()).unwrap();
        assert_eq!(c.server.listen.to_string(), "0.0.0.0:8000");
        assert_eq!(c.audio.sample_rate, 44100);
        assert_eq!(c.playlist.order, Order::Shuffle);
        let m = &c.mounts[0];
        assert_eq!(
            (m.bitrate_kbps, m.icy_metaint, m.max_listeners),
            (128, 16000, 20000)
        );
        assert_eq!(m.burst, Amount::Duration(Duration::from_secs(2)));
        assert_eq!(m.burst.bytes(m.bytes_per_sec()), 32_000);
        assert_eq!(c.library.rescan, Duration::from_secs(60));
        assert_eq!(c.library.prefetch, 2);
    }

    fn s3(c: &Config) -> &S3Library {
        match &c.library.kind {
            LibraryKind::S3(s3) => s3,
            other => panic!("expected an S3 library, got {other:?}"),
        }
    }

    #[test]
    fn an_s3_library_gets_defaults_and_a_normalized_prefix() {
        let c = parse(
            r#"
            [library]
            kind = "s3"
            endpoint = "http://127.0.0.1:7480/"
            bucket = "radio"
            prefix = "/tracks"
            cache_dir = "/var/cache/onair"
            [[mount]]
            path = "/a.mp3"
            "#,
            Secrets::default(),
        )
        .unwrap();
        let s = s3(&c);
        assert_eq!(s.storage.endpoint, "http://127.0.0.1:7480");
        assert_eq!(
            (s.storage.bucket.as_str(), s.storage.prefix.as_str()),
            ("radio", "tracks/")
        );
        assert_eq!(s.storage.region, "us-east-1");
        assert_eq!(s.storage.max_attempts, 3);
        assert_eq!(s.storage.timeouts, storage::S3Timeouts::default());
        assert_eq!(s.storage.credentials_env, storage::CredentialsEnv::PRIMARY);
        assert!(s.backup.is_none());
        assert_eq!(c.library.max_track_bytes, None);
        assert!(c.playout.resume);
        assert_eq!(c.playout.save_interval, Duration::from_secs(5));
        assert_eq!(s.storage.ca_file, None);
        assert_eq!(s.cache_dir, PathBuf::from("/var/cache/onair"));
        assert_eq!(s.cache_max_bytes, 2 << 30);
        assert_eq!(s.retry_after, Duration::from_secs(5));
        assert_eq!(c.library.prefetch, 2);
    }

    #[test]
    fn s3_settings_are_all_configurable() {
        let c = parse(
            r#"
            [library]
            kind = "s3"
            endpoint = "https://s3.example.net"
            bucket = "radio"
            prefix = "a/b/"
            region = "eu-west-3"
            cache_dir = "cache"
            cache_max_bytes = "512MiB"
            prefetch = 4
            retry_after = "2s"
            connect_timeout = "1s"
            stall_timeout = "4s"
            operation_timeout = "9s"
            max_attempts = 5
            ca_file = "/etc/onair/ca.pem"
            max_track_bytes = "1GiB"
            [library.backup]
            endpoint = "http://backup.example.net:7480"
            bucket = "radio-copy"
            prefix = "copy"
            [playout]
            resume = false
            save_interval = "10s"
            [[mount]]
            path = "/a.mp3"
            "#,
            Secrets::default(),
        )
        .unwrap();
        let s = s3(&c);
        assert_eq!(s.storage.prefix, "a/b/");
        assert_eq!(s.storage.region, "eu-west-3");
        assert_eq!(s.cache_max_bytes, 512 << 20);
        assert_eq!(c.library.prefetch, 4);
        assert_eq!(s.retry_after, Duration::from_secs(2));
        let t = s.storage.timeouts;
        assert_eq!(
            (t.connect, t.stall, t.operation),
            (
                Duration::from_secs(1),
                Duration::from_secs(4),
                Duration::from_secs(9),
            )
        );
        assert_eq!(s.storage.max_attempts, 5);
        assert_eq!(s.storage.ca_file, Some(PathBuf::from("/etc/onair/ca.pem")));
        assert_eq!(c.library.max_track_bytes, Some(1 << 30));
        let b = s.backup.as_ref().unwrap();
        assert_eq!(
            (b.endpoint.as_str(), b.bucket.as_str(), b.prefix.as_str()),
            ("http://backup.example.net:7480", "radio-copy", "copy/")
        );
        assert_eq!(b.region, "us-east-1");
        assert_eq!(b.timeouts, t, "the backup has the primary's timeouts");
        assert_eq!(b.credentials_env, storage::CredentialsEnv::BACKUP);
        assert!(!c.playout.resume);
        assert_eq!(c.playout.save_interval, Duration::from_secs(10));
    }

    #[test]
    fn every_s3_error_is_reported_with_its_field() {
        let errors = invalid(
            r#"
            [library]
            kind = "s3"
            path = "config/media"
            endpoint = "127.0.0.1:7480"
            region = ""
            cache_max_bytes = 1024
            prefetch = 0
            retry_after = "0s"
            stall_timeout = "20s"
            operation_timeout = "5s"
            connect_timeout = "soon"
            max_attempts = 0
            max_track_bytes = 1000
            [library.backup]
            endpoint = "ftp://elsewhere"
            [playout]
            save_interval = "1ms"
            [hls]
            epoch = "2026-12-03 12:00"
            [[mount]]
            path = "/a.mp3"
            hls = true
            [[mount]]
            path = "/a.opus"
            codec = "opus"
            hls = true
            "#,
        );
        let joined = errors.join("\n");
        for needle in [
            "library.path: only used with kind = \"local\"",
            "library.endpoint = \"127.0.0.1:7480\": expected an http:// or https:// URL",
            "library.bucket: required",
            "library.region: must not be empty",
            "library.cache_dir: required",
            "library.cache_max_bytes = 1024: at least 16 MiB",
            "library.prefetch = 0",
            "library.retry_after = \"0s\": must be more than zero",
            "library.stall_timeout (20s): must not exceed operation_timeout",
            "library.connect_timeout = \"soon\"",
            "library.max_attempts = 0",
            "library.max_track_bytes = 1000: at least 1 MiB",
            "library.backup.endpoint = \"ftp://elsewhere\"",
            "library.backup.bucket: required",
            "playout.save_interval = \"1ms\"",
            "hls.epoch = \"2026-12-03 12:00\": expected a UTC time",
            "mount[1].hls = true: HLS packs MP3 or AAC frames",
        ] {
            assert!(joined.contains(needle), "missing {needle:?} in:\n{joined}");
        }
        let errors = invalid(
            r#"
            [library]
            kind = "s3"
            endpoint = "http://127.0.0.1:7480"
            bucket = "a/b"
            cache_dir = "c"
            cache_max_bytes = "2 gigs"
            ca_file = "ca.pem"
            [[mount]]
            path = "/a.mp3"
            "#,
        )
        .join("\n");
        for needle in [
            "library.bucket = \"a/b\"",
            "library.cache_max_bytes = \"2 gigs\": unknown unit",
            "library.ca_file: only used with an https:// endpoint",
        ] {
            assert!(errors.contains(needle), "missing {needle:?} in:\n{errors}");
        }
    }

    #[test]
    fn s3_fields_are_refused_for_a_local_library() {
        let joined = invalid(
            "[library]\nkind = \"local\"\ncache_dir = \"/tmp/x\"\nretry_after = \"1s\"\n[[mount]]\npath = \"/a\"\n",
        )
        .join("\n");
        assert!(joined.contains("library.cache_dir: only used with kind = \"s3\""));
        assert!(joined.contains("library.retry_after: only used with kind = \"s3\""));
        let joined = invalid(
            "[library]\nkind = \"local\"\n[library.backup]\nbucket = \"b\"\n[[mount]]\npath = \"/a\"\n",
        )
        .join("\n");
        assert!(joined.contains("library.backup: only used with kind = \"s3\""));
    }

    #[test]
    fn s3_credentials_never_come_from_the_file() {
        for field in [
            "access_key_id",
            "secret_access_key",
            "aws_secret_access_key",
        ] {
            let text = format!(
                "[library]\nkind = \"s3\"\nendpoint = \"http://h\"\nbucket = \"b\"\ncache_dir = \"c\"\n{field} = \"x\"\n[[mount]]\npath = \"/a\"\n"
            );
            match parse(&text, Secrets::default()) {
                Err(ParseError::Syntax(msg)) => assert!(msg.contains(field), "{msg}"),
                other => panic!("{field}: expected a syntax error, got {other:?}"),
            }
        }
    }

    #[test]
    fn every_error_is_reported_with_its_field() {
        let errors = invalid(
            r#"
            [station]
            name = "Radio\r\nX-Evil: 1"
            genre = "Jazz\tBlues"
            [server]
            listen = "nowhere"
            [library]
            rescan = "soon"
            [playlist]
            order = "random"
            [audio]
            sample_rate = 44000
            channels = 6
            [[mount]]
            path = "radio.mp3"
            bitrate = 100
            burst = "10s"
            queue = "5s"
            icy_metaint = 0
            [[mount]]
            path = "/metrics"
            [[mount]]
            path = "/x.mp3"
            [[mount]]
            path = "/x.mp3"
            max_listeners = 0
            "#,
        );
        let joined = errors.join("\n");
        for needle in [
            "station.name = \"Radio\\r\\nX-Evil: 1\": control characters",
            "station.genre = \"Jazz\\tBlues\": control characters",
            "server.listen",
            "library.rescan",
            "playlist.order",
            "audio.sample_rate",
            "audio.channels",
            "mount[0].path",
            "mount[0].bitrate",
            "mount[0].queue",
            "mount[0].icy_metaint",
            "mount[1].path = \"/metrics\": reserved",
            "mount[3].path = \"/x.mp3\": used by another mount",
            "mount[3].max_listeners",
        ] {
            assert!(joined.contains(needle), "missing {needle:?} in:\n{joined}");
        }
    }

    #[test]
    fn programme_settings_default_and_every_error_names_its_field() {
        let c = parse("[[mount]]\npath = \"/a.mp3\"\n", Secrets::default()).unwrap();
        let p = c.programme;
        assert_eq!(
            (p.loudness.target_lufs, p.loudness.true_peak_dbtp),
            (-16.0, -1.0)
        );
        assert_eq!(
            (p.loudness.max_boost_db, p.loudness.max_cut_db),
            (10.0, 20.0)
        );
        assert!(p.crossfade.enabled && p.trim_silence);
        assert_eq!(p.crossfade.max_overlap, Duration::from_secs(6));
        assert_eq!(p.crossfade.fade_out, Duration::from_millis(2500));
        assert_eq!(p.crossfade.curve, Curve::EqualPower);
        assert!(c.analysis.enabled);
        assert_eq!(c.analysis.max_speed, 50.0);
        let joined = invalid(
            "[programme]\nloudness_target = 3.0\ntrue_peak = 2.0\nmax_boost = -1.0\n\
             [programme.crossfade]\nmax_overlap = \"2s\"\nfade_out = \"4s\"\ncurve = \"wobbly\"\n\
             [analysis]\nmax_speed = 0.0\n[[mount]]\npath = \"/a\"\n",
        )
        .join("\n");
        for needle in [
            "programme.loudness_target = 3",
            "programme.true_peak = 2",
            "programme.max_boost = -1",
            "programme.crossfade.curve = \"wobbly\"",
            "programme.crossfade.fade_out (4s) is longer than max_overlap (2s)",
            "analysis.max_speed = 0",
        ] {
            assert!(joined.contains(needle), "missing {needle:?} in:\n{joined}");
        }
    }

    #[test]
    fn aac_mounts_take_their_profile_and_refuse_what_the_encoder_cannot_do() {
        let c = parse(
            "[[mount]]\npath = \"/a.aac\"\ncodec = \"aac\"\n\
             [[mount]]\npath = \"/m.aac\"\ncodec = \"aac\"\nprofile = \"he\"\nbitrate = 48\n",
            Secrets::default(),
        )
        .unwrap();
        assert_eq!(c.mounts[0].codec, Codec::Aac(AacProfile::Lc));
        assert_eq!(c.mounts[0].bitrate_kbps, 128);
        assert_eq!(c.mounts[1].codec, Codec::Aac(AacProfile::He));
        let joined = invalid(
            "[[mount]]\npath = \"/a\"\ncodec = \"aac\"\nprofile = \"he\"\nbitrate = 128\n\
             [[mount]]\npath = \"/b\"\ncodec = \"aac\"\nprofile = \"ld\"\n\
             [audio]\nchannels = 1\n\
             [[mount]]\npath = \"/c\"\ncodec = \"aac\"\nprofile = \"he2\"\nbitrate = 32\n\
             [[mount]]\npath = \"/d\"\nprofile = \"he\"\n\
             [[mount]]\npath = \"/e\"\ncodec = \"vorbis\"\n",
        )
        .join("\n");
        for needle in [
            "mount[0].bitrate = 128: AAC he at 44100 Hz, 1 channel(s) takes 12–64 kbps",
            "mount[1].profile = \"ld\": AAC profiles are [\"lc\", \"he\", \"he2\"]",
            "mount[2].profile = \"he2\": HE-AAC v2 is parametric stereo and needs [audio] channels = 2",
            "mount[3].profile: a profile is for AAC mounts",
            "mount[4].codec = \"vorbis\": supported codecs are [\"mp3\", \"aac\", \"opus\"]",
        ] {
            assert!(joined.contains(needle), "missing {needle:?} in:\n{joined}");
        }
    }

    #[test]
    fn no_mount_is_an_error() {
        assert!(invalid("")[0].contains("at least one [[mount]]"));
    }

    #[test]
    fn unknown_fields_and_wrong_types_are_syntax_errors() {
        for text in [
            "[station]\nnmae = \"x\"\n",
            "[server]\nlisten = 8000\n",
            "[[mount]]\npath = \"/a\"\nbitrate = \"fast\"\n",
        ] {
            match parse(text, Secrets::default()) {
                Err(ParseError::Syntax(msg)) => assert!(!msg.is_empty()),
                other => panic!("{text:?}: expected a syntax error, got {other:?}"),
            }
        }
    }

    #[test]
    fn amounts_take_seconds_or_bytes() {
        let c = parse(
            "[[mount]]\npath = \"/a\"\nburst = 65536\nqueue = \"1048576\"\n",
            Secrets::default(),
        )
        .unwrap();
        assert_eq!(c.mounts[0].burst, Amount::Bytes(65536));
        assert_eq!(c.mounts[0].queue, Amount::Bytes(1_048_576));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
    }

    #[test]
    fn a_mounts_write_interval_is_checked() {
        let c = parse("[[mount]]\npath = \"/a\"\n", Secrets::default()).unwrap();
        assert_eq!(c.mounts[0].write_interval, Duration::from_millis(750));
        let c = parse(
            "[[mount]]\npath = \"/a\"\nwrite_interval = \"200ms\"\n",
            Secrets::default(),
        )
        .unwrap();
        assert_eq!(c.mounts[0].write_interval, Duration::from_millis(200));
        for bad in ["10ms", "5s", "soon"] {
            let errors = invalid(&format!(
                "[[mount]]\npath = \"/a\"\nwrite_interval = \"{bad}\"\n"
            ));
            assert!(
                errors.iter().any(|e| e.contains("write_interval")),
                "{bad}: {errors:?}"
            );
        }
    }

    #[test]
    fn debug_output_shows_no_secret() {
        let c = parse(
            "[[mount]]\npath = \"/a\"\n",
            Secrets {
                admin_password: Some("admin-pw-4711".into()),
                source_password: Some("source-pw-0815".into()),
            },
        )
        .unwrap();
        for text in [
            format!("{c:?}"),
            format!("{c:#?}"),
            format!("{:?}", c.server),
        ] {
            assert!(!text.contains("admin-pw-4711") && !text.contains("source-pw-0815"));
            assert!(text.contains("Secret(<redacted>)"), "{text}");
        }
        assert_eq!(
            c.server.admin_password.as_ref().map(Secret::expose),
            Some("admin-pw-4711")
        );
    }

    #[test]
    fn secrets_never_come_from_the_file() {
        let errors = match parse(
            "[server]\nadmin_password = \"hunter2\"\n[[mount]]\npath = \"/a\"\n",
            Secrets::default(),
        ) {
            Err(ParseError::Syntax(msg)) => msg,
            other => panic!("expected a syntax error, got {other:?}"),
        };
        assert!(errors.contains("admin_password"));
    }
}
