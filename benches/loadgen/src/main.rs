//! Listener load generator for Icecast-compatible servers (onair, Icecast).
//!
//! Opens N listener connections to one stream URL on 127.0.0.1, spread over source addresses
//! 127.0.0.2..=127.0.0.254 (so more than one ephemeral port range fits), at a fixed connect rate or
//! all at once (`--storm`). Once every connection has resolved (streaming, or failed), it reads every
//! stream for a fixed window and reports: listeners held and failed, per-listener bitrate over the
//! window, time to first byte, and, given the server's pid, the server's CPU and memory cost per
//! listener (from /proc). Every phase is bounded in time; the program always stops by itself.
//!
//! Cheap by construction: one small task per connection, no per-connection read buffer (each worker
//! thread has one 64 KiB buffer that every read on that thread goes through), and `SO_RCVLOWAT` so a
//! fast listener wakes about once per `--lowat` bytes instead of once per server write. The byte count
//! is exact at the window's edges anyway: at each edge every task drains its socket before recording.
//!
//! Run `loadgen --help` for the options.
//!
//! `--soak MINUTES` holds the listeners for that long instead, reconnecting some every minute,
//! and judges the server minute by minute (`soak`).
//!
//! This file runs the phases in order (ramp, window, snapshot, report). The rest: `cli` (options),
//! `listener` (one connection's task), `slot` (what each task records, shared through atomics),
//! `proc_stats` (CPU, RSS, threads, descriptors from /proc), `probe` (one-shot HTTP requests),
//! `report` (aggregation, the table, the storm's verdict and the JSON line); for a soak, `soak`
//! (its phases and minute samples), `held` (one soak connection's task), `poller` (status and
//! admin polls, title changes) and `soak_report` (the minute table and the verdict).
//!
//! `--hls` loads a Low-Latency HLS playlist instead: N clients each asking for part after part
//! with blocking playlist requests (`hls`), reported as the answers' delay after each part's
//! publication and the server's cost per client (`hls_report`).

mod cli;
mod held;
mod hls;
mod hls_report;
mod listener;
mod poller;
mod probe;
mod proc_stats;
mod report;
mod slot;
mod soak;
mod soak_report;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::cli::Config;
use crate::report::Measure;
use crate::slot::{Shared, Slot, phase, st};

/// How long the window's closing snapshot may take before the report is made anyway: a base, plus
/// a little per listener (each drains its socket), at most a minute.
const SNAPSHOT_GRACE: Duration = Duration::from_secs(5);
const SNAPSHOT_GRACE_PER_LISTENER: Duration = Duration::from_millis(2);
const SNAPSHOT_GRACE_MAX: Duration = Duration::from_secs(60);
/// How long the server may take to answer `GET /healthz` after the window.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);

fn main() {
    let cfg = match cli::parse_args() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(2);
        }
    };
    let nofile = proc_stats::raise_nofile();
    if (nofile as usize) < cfg.listeners + 32 {
        eprintln!(
            "loadgen: warning: RLIMIT_NOFILE is {nofile}, too low for {} connections",
            cfg.listeners
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.threads)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let pass = if cfg.soak.is_some() {
        rt.block_on(soak::run(cfg, nofile))
    } else if cfg.hls {
        rt.block_on(hls::run(cfg, nofile))
    } else {
        rt.block_on(run(cfg, nofile))
    };
    // Do not wait for thousands of sockets to be torn down one by one by the runtime's drop.
    std::process::exit(if pass { 0 } else { 1 });
}

/// Starts `cfg.listeners` connections with `spawn(i)`, `cfg.rate` a second (all at once for a
/// storm), then waits until `resolved` counts them all, at most each one's timeout (plus a
/// margin) after the last start.
pub async fn ramp(cfg: &Config, resolved: &AtomicUsize, mut spawn: impl FnMut(usize)) {
    let n = cfg.listeners;
    let start = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / cfg.rate);
    for i in 0..n {
        if !cfg.storm {
            let due = start + interval.mul_f64(i as f64);
            if due > Instant::now() {
                tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
            }
        }
        spawn(i);
    }
    let resolve_by = Instant::now() + cfg.timeout + Duration::from_secs(2);
    while resolved.load(Ordering::Acquire) < n && Instant::now() < resolve_by {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The run's phases: ramp (start every listener and wait until each has resolved), window
/// (measure for `--seconds`), snapshot (let every listener record the window's end), report.
/// False when a storm's verdict fails.
async fn run(cfg: Config, nofile: u64) -> bool {
    let n = cfg.listeners;
    // Slow listeners spread evenly over the connection order.
    let slow_set: Vec<bool> = (0..n)
        .map(|i| {
            let f = cfg.slow_fraction;
            ((i + 1) as f64 * f).floor() > (i as f64 * f).floor()
        })
        .collect();
    let slots: Vec<Slot> = (0..n).map(|_| Slot::new()).collect();
    let shared = Arc::new(Shared {
        cfg: cfg.clone(),
        slots,
        resolved: AtomicUsize::new(0),
        request: listener::request(&cfg),
        window_start: OnceLock::new(),
        epoch: Instant::now(),
    });
    let pid = cfg.pid.map(|p| p.to_string());
    let server_sample = || pid.as_deref().and_then(proc_stats::sample);
    let self_sample = || proc_stats::sample("self").unwrap_or_default();
    if let Some(p) = &pid
        && server_sample().is_none()
    {
        eprintln!("loadgen: warning: cannot read /proc/{p}: no server figures");
    }

    let (phase_tx, phase_rx) = watch::channel(phase::RAMP);
    let server_before = server_sample();
    let ramp_start = Instant::now();

    ramp(&cfg, &shared.resolved, |i| {
        tokio::spawn(listener::run(
            Arc::clone(&shared),
            i,
            slow_set[i],
            phase_rx.clone(),
        ));
    })
    .await;
    drop(phase_rx);
    let ramp_secs = ramp_start.elapsed().as_secs_f64();
    if !cfg.json {
        eprintln!(
            "loadgen: {} of {n} resolved after {ramp_secs:.1} s; measuring for {:.0} s",
            shared.resolved.load(Ordering::Acquire),
            cfg.seconds
        );
    }

    // Window.
    let w0 = Instant::now();
    let _ = shared.window_start.set(w0);
    let server_t0 = server_sample();
    let self_t0 = self_sample();
    let _ = phase_tx.send(phase::WINDOW);
    tokio::time::sleep_until(tokio::time::Instant::from_std(
        w0 + Duration::from_secs_f64(cfg.seconds),
    ))
    .await;
    let server_t1 = server_sample();
    let self_t1 = self_sample();
    let window_secs = w0.elapsed().as_secs_f64();
    let _ = phase_tx.send(phase::END);

    // Every streaming task records the window's end and stops; wait for them, bounded.
    let grace = Instant::now()
        + (SNAPSHOT_GRACE + SNAPSHOT_GRACE_PER_LISTENER * n as u32).min(SNAPSHOT_GRACE_MAX);
    loop {
        let open = shared
            .slots
            .iter()
            .filter(|s| s.state.load(Ordering::Acquire) == st::STREAMING)
            .count();
        if open == 0 || Instant::now() >= grace {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Whether the server survived: its process, and an answer to a plain request.
    let server_alive = pid.as_deref().map(proc_stats::alive);
    let healthz = probe::get(cfg.addr, &cfg.host, "/healthz", None, HEALTH_TIMEOUT)
        .await
        .ok()
        .map(|a| a.status);
    report::print(
        &shared,
        &slow_set,
        &Measure {
            ramp_secs,
            window_secs,
            server_before,
            server_t0,
            server_t1,
            self_t0,
            self_t1,
            nofile,
            server_alive,
            healthz,
        },
    )
}
