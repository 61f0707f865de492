//! The `onair` command: reads the config, sets up logging and signals, and runs the radio.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use tracing_subscriber::EnvFilter;

#[derive(Parser, Debug)]
#[command(
    name = "onair",
    version,
    about = "One-process web radio: AutoDJ, encoder and Icecast-compatible server"
)]
struct Args {
    /// Config file (TOML).
    #[arg(long, env = "ONAIR_CONFIG", value_name = "FILE")]
    config: PathBuf,
    /// Overrides `server.listen`, e.g. 127.0.0.1:8000.
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
    /// Validates the config, prints every error and exits (2 when invalid).
    #[arg(long)]
    check_config: bool,
    /// Log line format on stdout.
    #[arg(long, value_enum, default_value_t = LogFormat::Json)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// One JSON object per line, for log collectors.
    Json,
    /// Human-readable lines.
    Text,
}

/// Exit code for an invalid configuration, as `--check-config` documents.
const EXIT_BAD_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let args = Args::parse();
    let mut config = match onair::config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("onair: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    if args.check_config {
        println!("{}: configuration OK", args.config.display());
        return ExitCode::SUCCESS;
    }
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    let log_dropped = onair::metrics::log_lines_dropped();
    let log = match init_logging(args.log_format, log_dropped.clone()) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("onair: starting the log writer: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match serve(config, log_dropped) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "onair stopped with an error");
            eprintln!("onair: {e:#}");
            ExitCode::FAILURE
        }
    };
    // The last lines ("stopped") are still in the queue: write them, within a bound.
    log.flush(onair::logging::EXIT_FLUSH);
    code
}

/// Logs go to stdout through a queue and a writer thread, so no thread ever waits on a pipe
/// that a log collector stopped reading (see `onair::logging`).
fn init_logging(
    format: LogFormat,
    dropped: prometheus::IntCounter,
) -> std::io::Result<onair::logging::LogGuard> {
    let (writer, guard) = onair::logging::stdout(dropped)?;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        LogFormat::Text => builder.with_ansi(false).init(),
    }
    Ok(guard)
}

fn serve(config: onair::Config, log_dropped: prometheus::IntCounter) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("onair-io")
        .thread_keep_alive(BLOCKING_KEEP_ALIVE)
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(async {
        // Before the port is bound: once a client can connect, a SIGTERM is a clean stop.
        let shutdown = shutdown_signal()?;
        let listen = config.server.listen;
        let listener =
            onair::http::bind(listen).with_context(|| format!("listening on {listen}"))?;
        let options = onair::Options {
            reopen: reopen_on_sighup()?,
            log_dropped,
            ..onair::Options::default()
        };
        onair::run_with(config, listener, shutdown, options).await
    });
    // Blocking work still running (a cache write, a stuck stage after a failure) must not hold
    // the exit: the orchestrator replaces a failed process within seconds only if it ends.
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
    result
}

/// How long an idle thread of the blocking pool (file opens and reads, cache writes, listings)
/// is kept. tokio's 10 s would end and start threads all day, as tracks come every few minutes:
/// kept, the same few threads do that work, the thread count stays flat, and no new thread
/// takes another malloc arena (where freed memory is kept for that thread's arena alone).
const BLOCKING_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(600);

/// The longest the runtime waits for blocking work when `run` has returned.
const RUNTIME_SHUTDOWN: std::time::Duration = std::time::Duration::from_millis(300);

/// SIGHUP reopens the access log (what logrotate's `postrotate` sends). Watching it also
/// replaces its default action, which would end the process.
fn reopen_on_sighup() -> anyhow::Result<onair::Reopen> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = signal(SignalKind::hangup()).context("watching SIGHUP")?;
    let reopen = onair::Reopen::default();
    let trigger = reopen.clone();
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            tracing::info!(
                signal = "SIGHUP",
                "signal received: reopening the access log"
            );
            trigger.trigger();
        }
    });
    Ok(reopen)
}

/// Completes on SIGTERM (what Kubernetes and `podman stop` send) or SIGINT (Ctrl-C). Both are
/// watched from this call on, before anything is served: a watch set up when the future is
/// first polled left a moment, with the server already answering, in which a SIGTERM took the
/// default action and killed the process (seen in CI).
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("watching SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("watching SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!(signal = "SIGTERM", "signal received"),
            _ = interrupt.recv() => tracing::info!(signal = "SIGINT", "signal received"),
        }
    })
}
