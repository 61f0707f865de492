//! Every Prometheus metric name in one place. One [`Metrics`] is created per `run()` with its own
//! registry (no globals), so tests can run several radios in one process. Most values are pushed
//! by the stage that sees them; the disk cache and storage state of an S3 library are read at
//! each scrape instead ([`Metrics::watch_cache`]), since their owner keeps its own counters.

use std::sync::Mutex;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Why a listener's stream ended (label `reason` of `onair_listener_disconnects_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disconnect {
    /// The client closed the connection.
    Client,
    /// It fell further behind than the mount's queue.
    Lagged,
    /// Refused because the mount was at `max_listeners`.
    Full,
    /// Refused because the client's address was at the mount's `max_listeners_per_ip`.
    IpLimit,
    /// The server is shutting down.
    Shutdown,
    /// Disconnected by an operator (`/admin/killclient`).
    Admin,
}

impl Disconnect {
    /// Every reason, in declaration order (`reason as usize` indexes it).
    pub const ALL: [Disconnect; 6] = [
        Disconnect::Client,
        Disconnect::Lagged,
        Disconnect::Full,
        Disconnect::IpLimit,
        Disconnect::Shutdown,
        Disconnect::Admin,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Disconnect::Client => "client",
            Disconnect::Lagged => "lagged",
            Disconnect::Full => "full",
            Disconnect::IpLimit => "ip_limit",
            Disconnect::Shutdown => "shutdown",
            Disconnect::Admin => "admin",
        }
    }
}

/// Handles to every metric of one radio.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub listeners: IntGaugeVec,
    pub listener_connections: IntCounterVec,
    pub listener_disconnects: IntCounterVec,
    pub sent_bytes: IntCounterVec,
    pub hls_requests: IntCounterVec,
    pub time_to_first_byte: HistogramVec,
    pub tracks_played: IntCounter,
    pub tracks_skipped: IntCounterVec,
    pub decode_errors: IntCounter,
    pub encoded_seconds: prometheus::CounterVec,
    pub silence_seconds: prometheus::Counter,
    pub library_tracks: IntGauge,
    pub storage_fetch_duration: Histogram,
    pub storage_errors: IntCounterVec,
    pub start_time: prometheus::Gauge,
    pub ready: IntGauge,
    pub accept_errors: IntCounterVec,
    pub connections_rejected: IntCounterVec,
    pub open_connections: IntGauge,
    pub event_subscribers: IntGauge,
    pub access_log_dropped: IntCounter,
    pub analysis_total: IntCounterVec,
    pub analysis_seconds: Histogram,
    pub analysis_queue: IntGauge,
    pub sidecars_in_cache: IntCounter,
    pub track_gain_db: Histogram,
    pub transitions: IntCounterVec,
    pub transition_overlap_seconds: Histogram,
    pub silence_trimmed_seconds: prometheus::CounterVec,
    pub limiter_gain_reduction_db: prometheus::Gauge,
    pub clip_samples: IntCounter,
    pub output_loudness_lufs: prometheus::GaugeVec,
    pub output_true_peak_dbtp: prometheus::Gauge,
    pub live_connected: IntGauge,
    pub live_connects: IntCounterVec,
    pub live_takeover_seconds: Histogram,
    pub live_input_bytes: IntCounter,
    pub live_buffer_seconds: prometheus::Gauge,
    pub live_underruns: IntCounter,
    pub live_fallbacks: IntCounterVec,
    pub live_decode_errors: IntCounter,
    pub live_metadata_updates: IntCounterVec,
    pub live_recordings: IntCounterVec,
    pub live_recorded_bytes: IntCounter,
    pub live_recording_dropped_bytes: IntCounter,
}

/// Outcomes of a source's login (label `result` of `onair_live_connects_total`).
pub const LIVE_CONNECT_RESULTS: [&str; 7] =
    ["ok", "auth", "busy", "type", "probe", "malformed", "closed"];
/// Why the AutoDJ came back (label `reason` of `onair_live_fallbacks_total`).
pub const LIVE_FALLBACK_REASONS: [&str; 3] = ["underrun", "timeout", "eof"];
/// How a show recording ended (label `result` of `onair_live_recordings_total`).
pub const LIVE_RECORDING_RESULTS: [&str; 4] = ["saved", "partial", "failed", "empty"];

/// Results of a track analysis (label `result` of `onair_analysis_total`).
pub const ANALYSIS_RESULTS: [&str; 3] = ["ok", "error", "cached"];

/// Skip reasons, created at zero so that `increase()` sees the first one.
pub const SKIP_REASONS: [&str; 8] = [
    "corrupt",
    "unsupported",
    "empty",
    "not_audio",
    "missing",
    "forbidden",
    "too_large",
    "stalled",
];
/// Kinds of storage errors, created at zero for the same reason.
pub const STORAGE_ERROR_KINDS: [&str; 2] = ["list", "fetch"];
/// Kinds of failed `accept()` calls: the first four mean the process or the machine is out of
/// something, and the accept loop backs off; any other is about one connection only.
pub const ACCEPT_ERROR_KINDS: [&str; 5] = ["emfile", "enfile", "enobufs", "enomem", "other"];
/// Why a connection was turned away or closed before its request was answered.
pub const REJECT_REASONS: [&str; 5] = [
    "max_connections",
    "max_event_subscribers",
    "head_too_large",
    "head_timeout",
    "evicted",
];

/// The counter of log lines dropped because stdout could not take them. It is made before any
/// radio runs (logging starts first), so it is not in [`Metrics::new`]: `main` makes it, gives
/// it to the log writer, and each `run()` registers it ([`Metrics::register_log_dropped`]).
pub fn log_lines_dropped() -> IntCounter {
    must(IntCounter::new(
        "onair_log_lines_dropped_total",
        "Log lines dropped because stdout did not take them fast enough (never waited for)",
    ))
}

fn must<T>(r: prometheus::Result<T>) -> T {
    // Only fails on an invalid name or a duplicate registration: a bug in this file, caught by the
    // unit test below on every build.
    r.unwrap_or_else(|e| panic!("metric definition: {e}"))
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let r = &registry;
        macro_rules! reg {
            ($m:expr) => {{
                let m = must($m);
                must(r.register(Box::new(m.clone())));
                m
            }};
        }
        let secs_buckets = vec![
            0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        ];
        let m = Metrics {
            listeners: reg!(IntGaugeVec::new(
                Opts::new(
                    "onair_listeners",
                    "Listeners now: connected streams (protocol=\"http\") and HLS sessions seen in the last 8 s (protocol=\"hls\")"
                ),
                &["mount", "protocol"]
            )),
            listener_connections: reg!(IntCounterVec::new(
                Opts::new(
                    "onair_listener_connections_total",
                    "Listener streams started"
                ),
                &["mount"]
            )),
            listener_disconnects: reg!(IntCounterVec::new(
                Opts::new(
                    "onair_listener_disconnects_total",
                    "Listener streams ended or refused, by reason (client, lagged, full, ip_limit, shutdown, admin)"
                ),
                &["mount", "reason"]
            )),
            sent_bytes: reg!(IntCounterVec::new(
                Opts::new(
                    "onair_sent_bytes_total",
                    "Stream bytes handed to listener sockets"
                ),
                &["mount"]
            )),
            hls_requests: reg!(IntCounterVec::new(
                Opts::new(
                    "onair_hls_requests_total",
                    "HLS requests answered, by kind (playlist, blocking_playlist, part, segment): behind a cache, what reaches the origin"
                ),
                &["mount", "kind"]
            )),
            time_to_first_byte: reg!(HistogramVec::new(
                HistogramOpts::new(
                    "onair_time_to_first_byte_seconds",
                    "From request parsed to first audio byte handed to the socket"
                )
                .buckets(secs_buckets.clone()),
                &["mount"]
            )),
            tracks_played: reg!(IntCounter::new(
                "onair_tracks_played_total",
                "Tracks that started playing"
            )),
            tracks_skipped: reg!(IntCounterVec::new(
                Opts::new(
                    "onair_tracks_skipped_total",
                    "Tracks skipped instead of played, by reason"
                ),
                &["reason"]
            )),
            decode_errors: reg!(IntCounter::new(
                "onair_decode_errors_total",
                "Damaged packets skipped while decoding"
            )),
            encoded_seconds: reg!(prometheus::CounterVec::new(
                Opts::new(
                    "onair_encoder_audio_seconds_total",
                    "Seconds of audio encoded per mount; its rate is 1.0 when the pipeline keeps real time"
                ),
                &["mount", "codec"]
            )),
            silence_seconds: reg!(prometheus::Counter::new(
                "onair_silence_seconds_total",
                "Seconds of filler silence sent because no track was ready"
            )),
            library_tracks: reg!(IntGauge::new(
                "onair_library_tracks",
                "Tracks found in the library at the last scan"
            )),
            storage_fetch_duration: reg!(Histogram::with_opts(
                HistogramOpts::new(
                    "onair_storage_fetch_duration_seconds",
                    "Time to fetch one whole track from the library"
                )
                .buckets(vec![
                    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0
                ])
            )),
            storage_errors: reg!(IntCounterVec::new(
                Opts::new(
                    "onair_storage_errors_total",
                    "Failed library operations, by kind"
                ),
                &["kind"]
            )),
            start_time: reg!(prometheus::Gauge::new(
                "onair_start_time_seconds",
                "Unix time the radio started"
            )),
            ready: reg!(IntGauge::new(
                "onair_ready",
                "1 when every mount plays music (what /readyz answers 200 for), else 0"
            )),
            analysis_total: reg!(IntCounterVec::new(
                Opts::new(
                    "onair_analysis_total",
                    "Track analyses: ok (measured now), error (not measurable), cached (its sidecar was valid)"
                ),
                &["result"]
            )),
            analysis_seconds: reg!(Histogram::with_opts(
                HistogramOpts::new(
                    "onair_analysis_seconds",
                    "Time to analyse one track (decode and measure, paced at analysis.max_speed)"
                )
                .buckets(vec![0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0])
            )),
            analysis_queue: reg!(IntGauge::new(
                "onair_analysis_queue",
                "Listed track versions with no analysis yet"
            )),
            sidecars_in_cache: reg!(IntCounter::new(
                "onair_sidecars_in_cache_total",
                "Analysis sidecars the library refused, kept in the disk cache instead"
            )),
            track_gain_db: reg!(Histogram::with_opts(
                HistogramOpts::new(
                    "onair_track_gain_db",
                    "The gain each track played with (dB), from its loudness"
                )
                .buckets(vec![
                    -20.0, -15.0, -10.0, -6.0, -3.0, -1.0, 0.0, 1.0, 3.0, 6.0, 10.0
                ])
            )),
            transitions: reg!(IntCounterVec::new(
                Opts::new(
                    "onair_transitions_total",
                    "Transitions between tracks, by kind (crossfade, sequence, jingle, skip)"
                ),
                &["kind"]
            )),
            transition_overlap_seconds: reg!(Histogram::with_opts(
                HistogramOpts::new(
                    "onair_transition_overlap_seconds",
                    "How long two tracks overlapped in a transition"
                )
                .buckets(vec![0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 10.0])
            )),
            silence_trimmed_seconds: reg!(prometheus::CounterVec::new(
                Opts::new(
                    "onair_silence_trimmed_seconds_total",
                    "Leading (head) and trailing (tail) silence cut through the cue points"
                ),
                &["edge"]
            )),
            limiter_gain_reduction_db: reg!(prometheus::Gauge::new(
                "onair_limiter_gain_reduction_db",
                "The limiter's deepest gain reduction in the last block (dB)"
            )),
            clip_samples: reg!(IntCounter::new(
                "onair_clip_samples_total",
                "Samples clipped after the limiter (a last resort; should stay 0)"
            )),
            output_loudness_lufs: reg!(prometheus::GaugeVec::new(
                Opts::new(
                    "onair_output_loudness_lufs",
                    "Loudness of the programme as sent, momentary (400 ms) and short-term (3 s)"
                ),
                &["window"]
            )),
            output_true_peak_dbtp: reg!(prometheus::Gauge::new(
                "onair_output_true_peak_dbtp",
                "True peak of the programme as sent, over the last second (dBTP)"
            )),
            live_connected: reg!(IntGauge::new(
                "onair_live_connected",
                "Live sources connected now (0 or 1)"
            )),
            live_connects: reg!(IntCounterVec::new(
                Opts::new(
                    "onair_live_connects_total",
                    "Source logins, by result (ok, auth, busy, type, probe, malformed, closed)"
                ),
                &["result"]
            )),
            live_takeover_seconds: reg!(Histogram::with_opts(
                HistogramOpts::new(
                    "onair_live_takeover_seconds",
                    "From a source's login to its audio on air"
                )
                .buckets(vec![0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0]),
            )),
            live_input_bytes: reg!(IntCounter::new(
                "onair_live_input_bytes_total",
                "Bytes received from live sources"
            )),
            live_buffer_seconds: reg!(prometheus::Gauge::new(
                "onair_live_buffer_seconds",
                "Decoded live audio waiting to go on air"
            )),
            live_underruns: reg!(IntCounter::new(
                "onair_live_underruns_total",
                "Times the live audio ran dry while on air"
            )),
            live_fallbacks: reg!(IntCounterVec::new(
                Opts::new(
                    "onair_live_fallbacks_total",
                    "Times the AutoDJ came back from a live source, by reason (underrun, timeout, eof)"
                ),
                &["reason"]
            )),
            live_decode_errors: reg!(IntCounter::new(
                "onair_live_decode_errors_total",
                "Damaged packets skipped in live audio"
            )),
            live_metadata_updates: reg!(IntCounterVec::new(
                Opts::new(
                    "onair_live_metadata_updates_total",
                    "Titles of the live show, by where they came from (admin, admincgi, ogg)"
                ),
                &["via"]
            )),
            live_recordings: reg!(IntCounterVec::new(
                Opts::new(
                    "onair_live_recordings_total",
                    "Show recordings closed, by result (saved; partial: kept up to a storage failure; failed: nothing kept; empty: no audio came)"
                ),
                &["result"]
            )),
            live_recorded_bytes: reg!(IntCounter::new(
                "onair_live_recorded_bytes_total",
                "Bytes of live shows written to recordings"
            )),
            live_recording_dropped_bytes: reg!(IntCounter::new(
                "onair_live_recording_dropped_bytes_total",
                "Bytes of live shows left out of their recording because storage fell behind or failed"
            )),
            accept_errors: reg!(IntCounterVec::new(
                Opts::new(
                    "onair_accept_errors_total",
                    "Failed accept() calls, by errno (emfile, enfile, enobufs, enomem back off; other is skipped)"
                ),
                &["kind"]
            )),
            connections_rejected: reg!(IntCounterVec::new(
                Opts::new(
                    "onair_connections_rejected_total",
                    "Connections turned away or closed before their request was answered, by reason"
                ),
                &["reason"]
            )),
            open_connections: reg!(IntGauge::new(
                "onair_open_connections",
                "Connections held that are not admitted listeners (heads being read, requests, event streams), of server.max_connections"
            )),
            event_subscribers: reg!(IntGauge::new(
                "onair_event_subscribers",
                "/api/events streams open, of server.max_event_subscribers"
            )),
            access_log_dropped: reg!(IntCounter::new(
                "onair_access_log_dropped_total",
                "Access-log records dropped because the writer could not keep up (never waited for)"
            )),
            registry,
        };
        let build = must(IntGaugeVec::new(
            Opts::new("onair_build_info", "Version of the running onair"),
            &["version"],
        ));
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        must(m.registry.register(Box::new(build)));
        for reason in SKIP_REASONS {
            m.tracks_skipped.with_label_values(&[reason]);
        }
        for kind in STORAGE_ERROR_KINDS {
            m.storage_errors.with_label_values(&[kind]);
        }
        for result in ANALYSIS_RESULTS {
            m.analysis_total.with_label_values(&[result]);
        }
        for kind in crate::pipeline::planner::Kind::ALL {
            m.transitions.with_label_values(&[kind.label()]);
        }
        for edge in ["head", "tail"] {
            m.silence_trimmed_seconds.with_label_values(&[edge]);
        }
        for result in LIVE_CONNECT_RESULTS {
            m.live_connects.with_label_values(&[result]);
        }
        for reason in LIVE_FALLBACK_REASONS {
            m.live_fallbacks.with_label_values(&[reason]);
        }
        for via in ["admin", "admincgi", "ogg"] {
            m.live_metadata_updates.with_label_values(&[via]);
        }
        for result in LIVE_RECORDING_RESULTS {
            m.live_recordings.with_label_values(&[result]);
        }
        for kind in ACCEPT_ERROR_KINDS {
            m.accept_errors.with_label_values(&[kind]);
        }
        for reason in REJECT_REASONS {
            m.connections_rejected.with_label_values(&[reason]);
        }
        #[cfg(target_os = "linux")]
        must(m.registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        )));
        if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            m.start_time.set(d.as_secs_f64());
        }
        m
    }

    /// Exports the process's dropped-log-lines counter (see [`log_lines_dropped`]) with this
    /// radio's metrics.
    pub fn register_log_dropped(&self, counter: &IntCounter) {
        // Fails only if registered twice into this registry, which `run()` never does.
        if let Err(e) = self.registry.register(Box::new(counter.clone())) {
            tracing::warn!(error = %e, "cannot export the dropped log lines counter");
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail on I/O; a failure would be an invalid metric family.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "encoding metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }

    /// Creates the per-mount series at zero so dashboards see them before the first listener.
    /// The handles of one mount's metrics, bound to its labels once (every series created at
    /// zero, so that `increase()` sees the first event): the listener path and the pipeline
    /// touch them without a label lookup.
    pub fn for_mount(&self, mount: &str, codec: &str, hls: bool) -> MountMetrics {
        let listeners = self.listeners.with_label_values(&[mount, "http"]);
        listeners.set(0);
        let sent_bytes = self.sent_bytes.with_label_values(&[mount]);
        let hls = hls.then(|| {
            let listeners = self.listeners.with_label_values(&[mount, "hls"]);
            listeners.set(0);
            HlsMetrics {
                listeners,
                requests: HlsRequest::ALL
                    .map(|k| self.hls_requests.with_label_values(&[mount, k.label()])),
                sent_bytes: sent_bytes.clone(),
            }
        });
        MountMetrics {
            listeners,
            hls,
            connections: self.listener_connections.with_label_values(&[mount]),
            disconnects: Disconnect::ALL.map(|r| {
                self.listener_disconnects
                    .with_label_values(&[mount, r.label()])
            }),
            sent_bytes,
            time_to_first_byte: self.time_to_first_byte.with_label_values(&[mount]),
            encoded_seconds: self.encoded_seconds.with_label_values(&[mount, codec]),
        }
    }
}

/// One mount's series of the listener and encoder metrics.
#[derive(Clone)]
pub struct MountMetrics {
    pub listeners: IntGauge,
    /// The mount's HLS series, when it is served as HLS.
    pub hls: Option<HlsMetrics>,
    pub connections: IntCounter,
    disconnects: [IntCounter; Disconnect::ALL.len()],
    pub sent_bytes: IntCounter,
    pub time_to_first_byte: Histogram,
    pub encoded_seconds: prometheus::Counter,
}

/// What an HLS request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HlsRequest {
    Playlist,
    /// A playlist request with `_HLS_msn`, which may wait for its part.
    BlockingPlaylist,
    Part,
    Segment,
}

impl HlsRequest {
    pub const ALL: [HlsRequest; 4] = [
        HlsRequest::Playlist,
        HlsRequest::BlockingPlaylist,
        HlsRequest::Part,
        HlsRequest::Segment,
    ];

    fn label(self) -> &'static str {
        match self {
            HlsRequest::Playlist => "playlist",
            HlsRequest::BlockingPlaylist => "blocking_playlist",
            HlsRequest::Part => "part",
            HlsRequest::Segment => "segment",
        }
    }
}

/// One HLS mount's series.
#[derive(Clone)]
pub struct HlsMetrics {
    /// Set when the HLS sessions are counted (at every scrape and status read).
    pub listeners: IntGauge,
    requests: [IntCounter; HlsRequest::ALL.len()],
    /// The mount's `onair_sent_bytes_total`: parts and segments are listeners' audio too.
    pub sent_bytes: IntCounter,
}

impl HlsMetrics {
    pub fn requested(&self, kind: HlsRequest) {
        self.requests[kind as usize].inc();
    }
}

impl MountMetrics {
    /// Counts a listener's end (or refusal) for `reason`.
    pub fn disconnected(&self, reason: Disconnect) {
        self.disconnects[reason as usize].inc();
    }
}

/// What an S3 library's disk cache and storage sites report, read at every scrape.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub served_bytes: u64,
    pub fetched_bytes: u64,
    pub size_bytes: u64,
    pub sites: Vec<SiteStats>,
}

/// One storage site of a library (`primary` or `backup`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteStats {
    pub site: &'static str,
    pub up: bool,
    /// Tracks fetched whole from this site.
    pub fetches: u64,
    /// Failed requests by kind label.
    pub failures: Vec<(&'static str, u64)>,
}

impl Metrics {
    /// Exports the cache and storage series, reading them from `read` at every scrape. Only an
    /// S3 library has them, so a local radio does not show series that would stay at zero.
    pub fn watch_cache(&self, read: impl Fn() -> CacheStats + Send + Sync + 'static) {
        let counter = |name: &str, help: &str| must(IntCounter::new(name, help));
        let gauge = |name: &str, help: &str| must(IntGauge::new(name, help));
        let collector = CacheCollector {
            read: Box::new(read),
            scrape: Mutex::new(()),
            hits: counter(
                "onair_cache_hits_total",
                "Track fetches served from the disk cache",
            ),
            misses: counter(
                "onair_cache_misses_total",
                "Track fetches not in the disk cache (sent to storage, or refused while it is down)",
            ),
            served_bytes: counter(
                "onair_cache_served_bytes_total",
                "Track bytes served from the disk cache",
            ),
            fetched_bytes: counter(
                "onair_cache_fetched_bytes_total",
                "Track bytes fetched from storage (and then cached)",
            ),
            size_bytes: gauge(
                "onair_cache_size_bytes",
                "Bytes of tracks in the disk cache",
            ),
            storage_up: must(IntGaugeVec::new(
                Opts::new(
                    "onair_storage_up",
                    "1 while a storage site answers; 0 while it is down (the backup site serves, or the radio plays from its disk cache)",
                ),
                &["site"],
            )),
            storage_fetches: must(IntCounterVec::new(
                Opts::new(
                    "onair_storage_fetches_total",
                    "Tracks fetched whole from a storage site (cache misses it served)",
                ),
                &["site"],
            )),
            storage_failures: must(IntCounterVec::new(
                Opts::new(
                    "onair_storage_failed_requests_total",
                    "Storage requests that failed for the service's fault (listings, fetches, probes), by site and kind",
                ),
                &["site", "kind"],
            )),
        };
        must(self.registry.register(Box::new(collector)));
    }
}

/// Turns a [`CacheStats`] reading into metric families at scrape time.
struct CacheCollector {
    read: Box<dyn Fn() -> CacheStats + Send + Sync>,
    /// Counters are rebuilt from the reading (reset, then incremented): two scrapes at once
    /// must not interleave that.
    scrape: Mutex<()>,
    hits: IntCounter,
    misses: IntCounter,
    served_bytes: IntCounter,
    fetched_bytes: IntCounter,
    size_bytes: IntGauge,
    storage_up: IntGaugeVec,
    storage_fetches: IntCounterVec,
    storage_failures: IntCounterVec,
}

impl CacheCollector {
    fn counters(&self) -> [&IntCounter; 4] {
        [
            &self.hits,
            &self.misses,
            &self.served_bytes,
            &self.fetched_bytes,
        ]
    }
}

impl Collector for CacheCollector {
    fn desc(&self) -> Vec<&Desc> {
        let mut descs: Vec<&Desc> = self.counters().into_iter().flat_map(|c| c.desc()).collect();
        descs.extend(self.size_bytes.desc());
        descs.extend(self.storage_up.desc());
        descs.extend(self.storage_fetches.desc());
        descs.extend(self.storage_failures.desc());
        descs
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let s = (self.read)();
        let _one = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        let values = [s.hits, s.misses, s.served_bytes, s.fetched_bytes];
        let mut families = Vec::new();
        for (counter, value) in self.counters().into_iter().zip(values) {
            counter.reset();
            counter.inc_by(value);
            families.extend(counter.collect());
        }
        self.size_bytes
            .set(i64::try_from(s.size_bytes).unwrap_or(i64::MAX));
        families.extend(self.size_bytes.collect());
        self.storage_failures.reset();
        self.storage_fetches.reset();
        for site in &s.sites {
            self.storage_up
                .with_label_values(&[site.site])
                .set(i64::from(site.up));
            self.storage_fetches
                .with_label_values(&[site.site])
                .inc_by(site.fetches);
            for (kind, n) in &site.failures {
                self.storage_failures
                    .with_label_values(&[site.site, kind])
                    .inc_by(*n);
            }
        }
        families.extend(self.storage_up.collect());
        families.extend(self.storage_fetches.collect());
        families.extend(self.storage_failures.collect());
        families
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_registers_and_renders() {
        let m = Metrics::new();
        let mount = m.for_mount("/radio.mp3", "mp3", true);
        m.tracks_skipped.with_label_values(&["corrupt"]).inc();
        mount.disconnected(Disconnect::Admin);
        let text = m.render();
        for name in [
            "onair_listeners{mount=\"/radio.mp3\",protocol=\"http\"} 0",
            "onair_listeners{mount=\"/radio.mp3\",protocol=\"hls\"} 0",
            "onair_hls_requests_total{kind=\"blocking_playlist\",mount=\"/radio.mp3\"} 0",
            "onair_tracks_skipped_total{reason=\"corrupt\"} 1",
            "onair_listener_disconnects_total{mount=\"/radio.mp3\",reason=\"lagged\"} 0",
            "onair_listener_disconnects_total{mount=\"/radio.mp3\",reason=\"admin\"} 1",
            "onair_time_to_first_byte_seconds_count{mount=\"/radio.mp3\"} 0",
            "process_resident_memory_bytes",
        ] {
            assert!(text.contains(name), "missing {name}");
        }
        // A second radio in the same process has its own registry.
        Metrics::new();
    }

    #[test]
    fn each_disconnect_reason_indexes_its_own_series() {
        for (i, reason) in Disconnect::ALL.into_iter().enumerate() {
            assert_eq!(reason as usize, i, "{}", reason.label());
        }
    }

    #[test]
    fn cache_series_are_read_at_each_scrape() {
        let m = Metrics::new();
        assert!(!m.render().contains("onair_cache_hits_total"));
        let site = |up, failures: u64| SiteStats {
            site: "primary",
            up,
            fetches: 1,
            failures: vec![("timeout", failures), ("connect", 0)],
        };
        let stats = std::sync::Arc::new(Mutex::new(CacheStats {
            hits: 3,
            size_bytes: 1000,
            sites: vec![site(true, 0)],
            ..CacheStats::default()
        }));
        let shared = std::sync::Arc::clone(&stats);
        m.watch_cache(move || shared.lock().unwrap().clone());
        let text = m.render();
        for line in [
            "onair_cache_hits_total 3",
            "onair_cache_misses_total 0",
            "onair_cache_size_bytes 1000",
            "onair_storage_up{site=\"primary\"} 1",
            "onair_storage_failed_requests_total{kind=\"timeout\",site=\"primary\"} 0",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        *stats.lock().unwrap() = CacheStats {
            hits: 5,
            sites: vec![site(false, 2)],
            ..CacheStats::default()
        };
        let text = m.render();
        for line in [
            "onair_cache_hits_total 5",
            "onair_storage_up{site=\"primary\"} 0",
            "onair_storage_failed_requests_total{kind=\"timeout\",site=\"primary\"} 2",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
