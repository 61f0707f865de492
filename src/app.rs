//! Builds every stage from the config, runs them, and shuts them down in order: stop taking
//! listeners and tracks, let the pipeline flush and close the rings, let the fan-out thread write
//! the rest and end every listener, write the last access-log records, then wait for other
//! connections within the grace period.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use prometheus::IntCounter;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::audio::clock::Clock;
use crate::catalog::{Catalog as _, Library};
use crate::config::Config;
use crate::fanout::Fanout;
use crate::fanout::access_log::AccessLog;
use crate::http::Port;
use crate::metrics::{CacheStats, Metrics};
use crate::pipeline::Pipeline;
use crate::station::Station;

/// How long shutdown waits for queued access-log records to reach the file.
const ACCESS_LOG_FLUSH: Duration = Duration::from_secs(2);
/// After a stage died, the longest the rest gets to close before `run` returns its error.
const DEATH_CLEANUP: Duration = Duration::from_millis(800);

/// Knobs that are not part of the operator's config.
pub struct Options {
    /// Real-time pacing in production; tests may run unpaced.
    pub clock: Clock,
    /// Reopens the access-log file each time it is triggered (`main` does on SIGHUP).
    pub reopen: Reopen,
    /// Log lines the process dropped (made by `metrics::log_lines_dropped`, counted by the
    /// stdout writer in `main`), exported on `/metrics`.
    pub log_dropped: IntCounter,
    /// A socket already bound for the ops paths (tests bind port 0). Without it, `run` binds
    /// `server.admin_listen` when that is set.
    pub admin_listener: Option<TcpListener>,
    /// Gets the programme as every encoder does (after the limiter), block by block:
    /// interleaved samples in the station format. Tests measure what listeners hear on it.
    pub programme_tap: Option<std::sync::mpsc::Sender<Vec<f32>>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            clock: Clock::Realtime,
            reopen: Reopen::default(),
            log_dropped: crate::metrics::log_lines_dropped(),
            admin_listener: None,
            programme_tap: None,
        }
    }
}

/// A handle that asks a running radio to reopen its access log (for logrotate).
#[derive(Debug, Clone, Default)]
pub struct Reopen(Arc<Notify>);

impl Reopen {
    /// Asks for a reopen; one pending request is kept if the radio is busy.
    pub fn trigger(&self) {
        self.0.notify_one();
    }
}

/// Runs the radio on `listener` until `shutdown` completes, then shuts down cleanly.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    run_with(config, listener, shutdown, Options::default()).await
}

/// [`run`] with non-default [`Options`].
pub async fn run_with(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    options: Options,
) -> anyhow::Result<()> {
    let config = Arc::new(config);
    match crate::fdlimit::raise() {
        Ok(limit) => crate::fdlimit::check(&config, limit),
        Err(e) => tracing::warn!(error = %e, "cannot read the file descriptor limit"),
    }
    // Bound before anything starts, so a taken address fails the start with nothing to undo.
    let admin_listener = match (options.admin_listener, config.server.admin_listen) {
        (Some(l), _) => Some(l),
        (None, Some(addr)) => Some(
            crate::http::bind(addr)
                .with_context(|| format!("listening on server.admin_listen {addr}"))?,
        ),
        (None, None) => None,
    };
    let icy_listener =
        match config.live.icy_listen {
            Some(addr) => Some(crate::http::bind(addr).with_context(|| {
                format!("listening for Shoutcast sources on live.icy_port {addr}")
            })?),
            None => None,
        };
    let metrics = Metrics::new();
    metrics.register_log_dropped(&options.log_dropped);
    let access_log = AccessLog::open(
        config.server.access_log.as_deref(),
        metrics.access_log_dropped.clone(),
    )
    .with_context(|| format!("opening the access log {:?}", config.server.access_log))?;
    let access_log = Arc::new(access_log);
    let (station, commands) = Station::new(Arc::clone(&config), metrics);
    let catalog = Library::open(&config.library)
        .await
        .context("setting up the library")?;
    if let Library::S3(cached) = &catalog {
        let cached = cached.clone();
        station.metrics.watch_cache(move || CacheStats {
            hits: cached.hits(),
            misses: cached.misses(),
            served_bytes: cached.hit_bytes(),
            fetched_bytes: cached.fetched_bytes(),
            size_bytes: cached.cached_bytes(),
            sites: cached.site_stats(),
        });
    }
    tracing::info!(library = %catalog.describe(), prefetch = config.library.prefetch, "library");
    let cancel = CancellationToken::new();
    // Any early return (a stage that fails to start) stops what already runs.
    let _stop_on_return = cancel.clone().drop_guard();
    let tasks = TaskTracker::new();
    let watchdog = station.health.watchdog().clone();

    // The pipeline takes tracks from a channel of one, so `up next` is always the track in it;
    // the scheduler keeps the rest of the prefetch in its own queue.
    let (track_tx, track_rx) = mpsc::channel(1);
    let (bad_tx, bad_rx) = mpsc::channel(64);
    let pipeline = Pipeline::spawn(
        &station,
        track_rx,
        bad_tx,
        commands,
        options.clock,
        options.programme_tap,
        watchdog.clone(),
    )
    .context("starting the audio pipeline")?;
    let mut scheduler =
        crate::scheduler::spawn(catalog, &station, track_tx, bad_rx, cancel.child_token());

    let addr = listener
        .local_addr()
        .context("reading the listening address")?;
    tracing::info!(
        %addr,
        station = %config.station.name,
        mounts = %config.mounts.iter().map(|m| m.path.as_str()).collect::<Vec<_>>().join(" "),
        "radio on air"
    );
    let fanout = Fanout::start(Arc::clone(&station.mounts), watchdog.clone())
        .context("starting the fan-out thread")?;
    let recorder = crate::live::record::Recorder::open(
        &config,
        station.metrics.clone(),
        tasks.clone(),
        cancel.clone(),
    )?;
    let http = crate::http::Server::new(
        Arc::clone(&station),
        fanout.handle(),
        Arc::clone(&access_log),
        recorder,
        cancel.clone(),
        tasks.clone(),
    );
    let public = Port::Public {
        ops_elsewhere: admin_listener.is_some(),
    };
    let mut accept_loops = vec![tasks.spawn(Arc::clone(&http).serve(listener, public))];
    if let Some(admin) = admin_listener {
        let addr = admin
            .local_addr()
            .context("reading the admin listening address")?;
        tracing::info!(%addr, "admin, metrics and readiness on their own address");
        accept_loops.push(tasks.spawn(Arc::clone(&http).serve(admin, Port::Admin)));
    }
    if let Some(icy) = icy_listener {
        let addr = icy
            .local_addr()
            .context("reading the ICY listening address")?;
        tracing::info!(%addr, mount = %config.live.mount, "Shoutcast (ICY) sources accepted here");
        accept_loops.push(tasks.spawn(http.serve_icy(icy)));
    }
    tasks.spawn(reopen_on_request(
        options.reopen,
        Arc::clone(&access_log),
        cancel.clone(),
    ));

    // Runs until asked to stop, or until a stage it cannot go on without ends.
    let died = tokio::select! {
        _ = shutdown => None,
        stage = watchdog.wait() => Some(stage),
        _ = &mut scheduler => Some("scheduler"),
    };
    if let Some(stage) = died {
        watchdog.died(stage);
        tracing::error!(
            stage,
            "the radio cannot go on without its {stage}: exiting so that it is replaced"
        );
        station.health.set_draining();
        cancel.cancel();
        // What can still be closed cleanly is, within a bound: the process must be gone (and
        // replaced) within 2 s, not wait on a stage that is stuck.
        let _ = tokio::time::timeout(DEATH_CLEANUP, async {
            pipeline.stop_and_join().await;
            let _ = tokio::task::spawn_blocking(move || fanout.finish()).await;
        })
        .await;
        anyhow::bail!("the {stage} stopped; the radio cannot go on without it");
    }
    tracing::info!("shutting down");
    // Health first, so a load balancer stops routing new listeners here.
    station.health.set_draining();
    // Stops the accept loops and the scheduler; open connections finish their request.
    cancel.cancel();
    for accept_loop in accept_loops {
        let _ = accept_loop.await;
    }
    let _ = scheduler.await;
    // Flushes the encoders and closes every ring, then every listener gets what is left.
    pipeline.stop_and_join().await;
    if tokio::task::spawn_blocking(move || fanout.finish())
        .await
        .is_err()
    {
        tracing::error!("the fan-out thread could not be joined");
    }
    // Every listener has ended: their records are queued, and reach the file before `run` ends.
    access_log.flush(ACCESS_LOG_FLUSH).await;
    tasks.close();
    if tokio::time::timeout(config.server.shutdown_grace, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = tasks.len(),
            "grace period over, dropping remaining connections"
        );
    }
    tracing::info!("stopped");
    Ok(())
}

/// Reopens the access log each time `reopen` is triggered, until the radio stops.
async fn reopen_on_request(reopen: Reopen, access_log: Arc<AccessLog>, cancel: CancellationToken) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = reopen.0.notified() => access_log.reopen(),
        }
    }
}
