//! Soak mode (`--soak MINUTES`): the N listeners opened at `--rate` and held for MINUTES, while
//! a tenth of them (`--reconnect`) are closed and reopened every minute, one at a time spread
//! over the minute, in turn so that every listener gets a new connection every ten minutes; the
//! pollers (`poller`) run beside them. At the end of every minute it samples the server (RSS,
//! descriptors, threads, CPU) and every listener's bitrate over the minute, and at the end
//! `soak_report` prints the table and the verdict.
//!
//! A listener is judged in a minute when the same connection streamed through it and had been
//! streaming for [`SETTLE_MS`] when it began (its burst is behind it): about 85 % of them each
//! minute, the others being reconnected.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::task::AbortHandle;

use crate::cli::Config;
use crate::held::{self, Arrival, Conn, Ctx, state};
use crate::listener;
use crate::poller::{self, Polls};
use crate::proc_stats;
use crate::soak_report::{self, Row, Totals};

const MINUTE: Duration = Duration::from_secs(60);
/// How long a connection must have streamed before a minute for its bitrate to count in it.
const SETTLE_MS: u32 = 5_000;
/// Minute 0 is taken this long after every listener has connected: longer than `SETTLE_MS` plus
/// a listener's longest gap between reads (about 1.5 s with the default `--lowat`), so that every
/// listener is judged in minute 1.
const FIRST_SAMPLE_AFTER: Duration = Duration::from_secs(10);

/// One listener's current connection.
struct Held {
    conn: Arc<Conn>,
    task: AbortHandle,
    /// Connections opened before this one in the run: tells a reconnected listener's edges apart.
    generation: u64,
    /// Its failure or drop is already in a row.
    counted: bool,
}

/// A listener's state at one sample.
#[derive(Clone, Copy)]
struct Edge {
    generation: u64,
    streaming: bool,
    since_ms: u32,
    arrival: Arrival,
}

/// What happened to connections between two samples.
#[derive(Default)]
struct Tally {
    reconnects: usize,
    /// Connections that never streamed (refused, timed out…), and those the server ended.
    failed: usize,
    dropped: usize,
}

/// The soak's own state: the connections and the counters of the current minute.
struct Soak {
    ctx: Arc<Ctx>,
    held: Vec<Held>,
    opened: u64,
    tally: Tally,
    /// Distinct failure kinds seen (`st::FAIL_*` state, detail), for the report.
    failures: Vec<(u8, u32)>,
}

impl Soak {
    fn open(&mut self, i: usize) -> Held {
        let conn = Arc::new(Conn::default());
        let task =
            tokio::spawn(held::run(Arc::clone(&self.ctx), i, Arc::clone(&conn))).abort_handle();
        self.opened += 1;
        Held {
            conn,
            task,
            generation: self.opened,
            counted: false,
        }
    }

    /// Counts a connection's failure or drop, once.
    fn settle(tally: &mut Tally, failures: &mut Vec<(u8, u32)>, h: &mut Held) {
        if h.counted {
            return;
        }
        match h.conn.state.load(Ordering::Acquire) {
            state::FAILED => {
                tally.failed += 1;
                let kind = (
                    h.conn.failure.load(Ordering::Relaxed),
                    h.conn.detail.load(Ordering::Relaxed),
                );
                if !failures.contains(&kind) {
                    failures.push(kind);
                }
            }
            state::DROPPED | state::BROKEN => tally.dropped += 1,
            _ => return,
        }
        h.counted = true;
    }

    /// Closes listener `i`'s connection (dropping its socket with its aborted task) and opens a
    /// new one.
    fn reconnect(&mut self, i: usize) {
        let mut new = self.open(i);
        std::mem::swap(&mut self.held[i], &mut new);
        let mut old = new;
        old.task.abort();
        Self::settle(&mut self.tally, &mut self.failures, &mut old);
        self.tally.reconnects += 1;
    }

    fn edges(&mut self) -> Vec<Edge> {
        let (tally, failures) = (&mut self.tally, &mut self.failures);
        self.held
            .iter_mut()
            .map(|h| {
                Self::settle(tally, failures, h);
                Edge {
                    generation: h.generation,
                    streaming: h.conn.state.load(Ordering::Acquire) == state::STREAMING,
                    since_ms: h.conn.since_ms.load(Ordering::Relaxed),
                    arrival: Arrival::unpack(h.conn.arrival.load(Ordering::Relaxed)),
                }
            })
            .collect()
    }
}

/// Runs the soak; true when its verdict passes.
pub async fn run(cfg: Config, nofile: u64) -> bool {
    let (Some(minutes), Some(pid)) = (cfg.soak, cfg.pid) else {
        eprintln!("loadgen: --soak needs --pid");
        return false;
    };
    let pid = pid.to_string();
    let Some(server_start) = proc_stats::sample(&pid) else {
        eprintln!("loadgen: cannot read /proc/{pid}: is the server running?");
        return false;
    };
    let n = cfg.listeners;
    if cfg.admin.is_none() {
        eprintln!(
            "loadgen: warning: no ONAIR_ADMIN_PASSWORD: /admin/stats and /admin/metadata are skipped"
        );
    }
    let ctx = Arc::new(Ctx {
        request: listener::request(&cfg),
        epoch: Instant::now(),
        cfg,
    });
    let cfg = &ctx.cfg;
    let mut soak = Soak {
        ctx: Arc::clone(&ctx),
        held: Vec::with_capacity(n),
        opened: 0,
        tally: Tally::default(),
        failures: Vec::new(),
    };

    // Ramp, as for a window: paced, then wait until every connection has resolved.
    let ramp_start = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / cfg.rate);
    for i in 0..n {
        tokio::time::sleep_until((ramp_start + interval.mul_f64(i as f64)).into()).await;
        let h = soak.open(i);
        soak.held.push(h);
    }
    let resolve_by = Instant::now() + cfg.timeout + Duration::from_secs(2);
    while Instant::now() < resolve_by
        && soak
            .held
            .iter()
            .any(|h| h.conn.state.load(Ordering::Acquire) == state::PENDING)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "loadgen: soak: {n} listeners opened in {:.1} s; {minutes} minutes, {:.0} % reconnected per minute",
        ramp_start.elapsed().as_secs_f64(),
        cfg.reconnect * 100.0
    );

    let pollers = poller::spawn(cfg);
    tokio::time::sleep(FIRST_SAMPLE_AFTER).await;
    let t0 = Instant::now();
    let self_t0 = proc_stats::sample("self").unwrap_or_default();
    let mut prev = soak.edges();
    let rows0 = row(0, &mut soak, &prev, &[], &pid, &pollers.polls);
    let mut last_cpu = proc_stats::sample(&pid).map_or(server_start.cpu, |s| s.cpu);
    let mut last_at = t0;
    soak_report::progress(&rows0);
    let mut rows = vec![rows0];

    let per_minute = (n as f64 * cfg.reconnect).round() as usize;
    let mut next = 0usize;
    for minute in 1..=minutes {
        let start = t0 + MINUTE * (minute - 1);
        for j in 0..per_minute {
            let at = start + MINUTE.mul_f64((j as f64 + 0.5) / per_minute as f64);
            tokio::time::sleep_until(at.into()).await;
            soak.reconnect(next);
            next = (next + 1) % n;
        }
        tokio::time::sleep_until((start + MINUTE).into()).await;
        let now = Instant::now();
        let edges = soak.edges();
        let mut r = row(minute, &mut soak, &edges, &prev, &pid, &pollers.polls);
        if let Some(s) = proc_stats::sample(&pid) {
            r.cpu_pct = (s.cpu - last_cpu) / (now - last_at).as_secs_f64() * 100.0;
            last_cpu = s.cpu;
        }
        last_at = now;
        soak_report::progress(&r);
        rows.push(r);
        prev = edges;
    }
    let self_t1 = proc_stats::sample("self").unwrap_or_default();
    let polls = &pollers.polls;
    let unresolved = soak
        .held
        .iter()
        .filter(|h| h.conn.state.load(Ordering::Acquire) == state::PENDING)
        .count();
    let totals = Totals {
        minutes,
        warmup: cfg.warmup,
        listeners: n,
        reconnects: rows.iter().map(|r| r.reconnects).sum(),
        unresolved,
        failures: soak.failures.clone(),
        admin: cfg.admin.is_some(),
        titles_set: polls.titles.ok.load(Ordering::Relaxed),
        titles_seen: polls.titles_seen.load(Ordering::Relaxed),
        poll_max_ms: [
            polls.status.max_ms.load(Ordering::Relaxed),
            polls.stats.max_ms.load(Ordering::Relaxed),
            polls.titles.max_ms.load(Ordering::Relaxed),
        ],
        rss_before_kib: server_start.rss_kib,
        server_alive: proc_stats::alive(&pid),
        self_cpu_pct: (self_t1.cpu - self_t0.cpu) / t0.elapsed().as_secs_f64() * 100.0,
        nofile,
    };
    drop(pollers);
    soak_report::print(cfg, &rows, &totals)
}

/// The row of one sample: the server's figures, the minute's counts, and the bitrate of every
/// listener that streamed through the whole minute on one connection (none for the first row).
fn row(
    minute: u32,
    soak: &mut Soak,
    edges: &[Edge],
    prev: &[Edge],
    pid: &str,
    polls: &Polls,
) -> Row {
    let tally = std::mem::take(&mut soak.tally);
    let expect = soak.ctx.cfg.expect_kbps;
    let mut kbps: Vec<f64> = edges
        .iter()
        .zip(prev)
        .filter(|(e, p)| {
            e.generation == p.generation
                && e.streaming
                && p.streaming
                && p.arrival.ms >= e.since_ms.saturating_add(SETTLE_MS)
        })
        .map(|(e, p)| e.arrival.kbps_since(p.arrival))
        .collect();
    kbps.sort_by(|a, b| a.total_cmp(b));
    let server = proc_stats::sample(pid).unwrap_or_default();
    let fds = proc_stats::fds(pid).unwrap_or_default();
    let ok = |c: &poller::Counts| c.ok.load(Ordering::Relaxed);
    let failed = |c: &poller::Counts| c.failed.load(Ordering::Relaxed);
    Row {
        minute,
        streaming: edges.iter().filter(|e| e.streaming).count(),
        reconnects: tally.reconnects,
        failed: tally.failed,
        dropped: tally.dropped,
        measured: kbps.len(),
        below: kbps.iter().filter(|&&k| k < expect * 0.99).count(),
        kbps_min: kbps.first().copied().unwrap_or(f64::NAN),
        kbps_median: kbps.get(kbps.len() / 2).copied().unwrap_or(f64::NAN),
        rss_kib: server.rss_kib,
        fds,
        threads: server.threads,
        cpu_pct: f64::NAN,
        polls_ok: ok(&polls.status) + ok(&polls.stats) + ok(&polls.titles),
        polls_failed: failed(&polls.status) + failed(&polls.stats) + failed(&polls.titles),
    }
}
