//! The `--hls` report: from every client's samples, the delay of each blocked playlist request's
//! answer after its part was published, how long the whole audience took to get each part, the
//! requests and errors, and the server's CPU and RSS per client; printed as a table (and one
//! JSON line with `--json`).
//!
//! A part's publication is taken as the first answer for it among all clients. At that instant
//! the server is idle, every client blocked on that very part (the part before has been fetched
//! by all of them, which the "audience served" figure shows), so the first answer goes out
//! within one task's wake-up; the delay of every other answer is counted from it. What this
//! leaves out, the first answer's own wake-up, is the same at 1 client as at 5,000: a run with
//! `-n 1` shows it as the floor.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use crate::hls::{HlsShared, cst};
use crate::proc_stats::ProcSample;
use crate::report::{jnum, jstr, pct, sorted};

/// What the orchestrator measured around the window.
pub struct HlsMeasure {
    pub ramp_secs: f64,
    /// The server's CPU (% of a core) over a few seconds before the first client.
    pub idle_cpu_pct: Option<f64>,
    /// The window, microseconds since the run began.
    pub w0_us: u64,
    pub w1_us: u64,
    pub server_before: Option<ProcSample>,
    pub server_t0: Option<ProcSample>,
    pub server_t1: Option<ProcSample>,
    pub self_t0: ProcSample,
    pub self_t1: ProcSample,
    /// `200` answers (playlists and parts) and body bytes inside the window.
    pub requests: u64,
    pub bytes: u64,
    pub nofile: u64,
    pub server_alive: Option<bool>,
}

struct Summary {
    clients: usize,
    running: usize,
    failed: usize,
    broken: usize,
    parts: usize,
    /// Answers per part, fewest (a client more than the tail late, or gone, shows here).
    fewest_answers: usize,
    /// Milliseconds after the part's first answer: every answer (sorted).
    delay_ms: Vec<f64>,
    /// Per part, milliseconds from its first answer to the last client holding the part.
    served_ms: Vec<f64>,
    statuses: Vec<(u32, u64)>,
    timeouts: u64,
    io_errors: u64,
    window_secs: f64,
    server_cpu_pct: Option<f64>,
    self_cpu_pct: f64,
    rss_mib: Option<(f64, f64)>,
}

fn summarize(shared: &HlsShared, m: &HlsMeasure) -> Summary {
    let count = |state| {
        shared
            .clients
            .iter()
            .filter(|c| c.state.load(Ordering::Acquire) == state)
            .count()
    };
    // Per part: (first answer, last part fetched, answers); the window's parts are those first
    // answered inside it.
    let mut parts: HashMap<u64, (u64, u64, usize)> = HashMap::new();
    let all: Vec<_> = shared
        .clients
        .iter()
        .flat_map(|c| c.samples.lock().map(|s| s.clone()).unwrap_or_default())
        .collect();
    for s in &all {
        let e = parts.entry(s.seq).or_insert((u64::MAX, 0, 0));
        e.0 = e.0.min(s.answered_us);
        e.1 = e.1.max(s.fetched_us);
        e.2 += 1;
    }
    parts.retain(|_, (first, _, _)| (m.w0_us..m.w1_us).contains(first));
    let delay_ms = sorted(
        all.iter()
            .filter_map(|s| {
                let (first, _, _) = parts.get(&s.seq)?;
                Some((s.answered_us - first) as f64 / 1000.0)
            })
            .collect(),
    );
    let served_ms = sorted(
        parts
            .values()
            .map(|(first, last, _)| last.saturating_sub(*first) as f64 / 1000.0)
            .collect(),
    );
    let window_secs = (m.w1_us - m.w0_us) as f64 / 1e6;
    let cpu = |a: Option<ProcSample>, b: Option<ProcSample>| {
        Some(100.0 * (b?.cpu - a?.cpu) / window_secs)
    };
    let c = &shared.counters;
    Summary {
        clients: shared.clients.len(),
        running: count(cst::RUNNING),
        failed: count(cst::FAILED) + count(cst::PENDING),
        broken: count(cst::BROKEN),
        parts: parts.len(),
        fewest_answers: parts.values().map(|p| p.2).min().unwrap_or(0),
        delay_ms,
        served_ms,
        statuses: c
            .statuses
            .lock()
            .map(|s| s.iter().map(|(k, v)| (*k, *v)).collect())
            .unwrap_or_default(),
        timeouts: c.timeouts.load(Ordering::Relaxed),
        io_errors: c.io_errors.load(Ordering::Relaxed),
        window_secs,
        server_cpu_pct: cpu(m.server_t0, m.server_t1),
        self_cpu_pct: cpu(Some(m.self_t0), Some(m.self_t1)).unwrap_or(f64::NAN),
        rss_mib: m
            .server_before
            .zip(m.server_t1)
            .map(|(a, b)| (a.rss_kib as f64 / 1024.0, b.rss_kib as f64 / 1024.0)),
    }
}

/// The clients' share of the server's CPU, per 1,000 clients.
fn per_1000(cpu: f64, idle: f64, clients: usize) -> f64 {
    (cpu - idle) * 1000.0 / clients.max(1) as f64
}

/// Prints the report; true when every client tuned in and stayed, and every request was
/// answered `200`.
pub fn print(shared: &HlsShared, m: &HlsMeasure) -> bool {
    let cfg = &shared.cfg;
    let s = summarize(shared, m);
    let mut t = String::new();
    let ms = |v: f64| {
        if v.is_finite() {
            format!("{v:.1}")
        } else {
            "–".into()
        }
    };
    let _ = writeln!(
        t,
        "\nloadgen --hls {} {}: {} clients ({} tuned in over {:.1} s), {:.0} s window, RLIMIT_NOFILE {}",
        cfg.host,
        cfg.path,
        s.clients,
        s.clients - s.failed,
        m.ramp_secs,
        s.window_secs,
        m.nofile
    );
    if !cfg.label.is_empty() {
        let _ = writeln!(t, "label: {}", cfg.label);
    }
    let _ = writeln!(t, "\n| what | value |\n|---|---|");
    let _ = writeln!(
        t,
        "| clients running at the end | {} (failed to tune in {}, broke {}) |",
        s.running, s.failed, s.broken
    );
    let errors: Vec<String> = s
        .statuses
        .iter()
        .map(|(k, v)| format!("{v} × {k}"))
        .collect();
    let _ = writeln!(
        t,
        "| answers other than 200 | {} ; timeouts {}, connection errors {} |",
        if errors.is_empty() {
            "none".into()
        } else {
            errors.join(", ")
        },
        s.timeouts,
        s.io_errors
    );
    let _ = writeln!(
        t,
        "| requests answered in the window | {} ({:.0}/s; playlists and parts), {:.1} MB |",
        m.requests,
        m.requests as f64 / s.window_secs,
        m.bytes as f64 / 1e6
    );
    let _ = writeln!(
        t,
        "| parts published in the window | {} (answers per part: at least {}) |",
        s.parts, s.fewest_answers
    );
    let d = &s.delay_ms;
    let _ = writeln!(
        t,
        "| blocked answer after the part's first, ms: p50 / p90 / p99 / p99.9 / max | {} / {} / {} / {} / {} ({} answers) |",
        ms(pct(d, 50.0)),
        ms(pct(d, 90.0)),
        ms(pct(d, 99.0)),
        ms(pct(d, 99.9)),
        ms(d.last().copied().unwrap_or(f64::NAN)),
        d.len()
    );
    let a = &s.served_ms;
    let _ = writeln!(
        t,
        "| audience served (first answer → last client holds the part), ms: p50 / max | {} / {} |",
        ms(pct(a, 50.0)),
        ms(a.last().copied().unwrap_or(f64::NAN))
    );
    if let Some((cpu, idle)) = s.server_cpu_pct.zip(m.idle_cpu_pct) {
        let _ = writeln!(
            t,
            "| server CPU, % of a core: with the clients / idle before them | {cpu:.1} / {idle:.1} ({:.2} per 1,000 clients) |",
            per_1000(cpu, idle, s.running)
        );
    }
    if let Some((before, end)) = s.rss_mib {
        let _ = writeln!(
            t,
            "| server RSS, MiB: before / end | {before:.1} / {end:.1} ({:.2} KiB per client) |",
            (end - before) * 1024.0 / s.running.max(1) as f64
        );
    }
    if let Some(alive) = m.server_alive {
        let _ = writeln!(t, "| server alive after | {alive} |");
    }
    let _ = writeln!(
        t,
        "| load generator's own CPU, % of a core | {:.1} |",
        s.self_cpu_pct
    );
    let pass = s.failed == 0
        && s.broken == 0
        && s.statuses.is_empty()
        && s.timeouts == 0
        && s.io_errors == 0
        && s.parts > 0;
    let _ = writeln!(
        t,
        "\nverdict: {}\n",
        if pass {
            "every client tuned in, stayed, and got every answer 200"
        } else {
            "FAIL: clients failed or broke, or answers were not 200"
        }
    );
    if cfg.json {
        eprint!("{t}");
        let mut j = String::from("{");
        let _ = write!(
            j,
            "\"mode\":\"hls\",\"label\":{},\"path\":{},\"clients\":{},\"running\":{},\"failed\":{},\"broken\":{},\
             \"timeouts\":{},\"io_errors\":{},\"non_200\":{},\"window_s\":{},\"requests\":{},\"bytes\":{},\"parts\":{},\
             \"fewest_answers\":{},\"delay_ms_p50\":{},\"delay_ms_p90\":{},\"delay_ms_p99\":{},\"delay_ms_p999\":{},\
             \"delay_ms_max\":{},\"served_ms_p50\":{},\"served_ms_max\":{},\"server_cpu_pct\":{},\"self_cpu_pct\":{},\
             \"idle_cpu_pct\":{},\"cpu_pct_per_1000\":{},\"rss_before_mib\":{},\"rss_end_mib\":{},\"pass\":{}",
            jstr(&cfg.label),
            jstr(&cfg.path),
            s.clients,
            s.running,
            s.failed,
            s.broken,
            s.timeouts,
            s.io_errors,
            s.statuses.iter().map(|(_, v)| v).sum::<u64>(),
            jnum(s.window_secs),
            m.requests,
            m.bytes,
            s.parts,
            s.fewest_answers,
            jnum(pct(d, 50.0)),
            jnum(pct(d, 90.0)),
            jnum(pct(d, 99.0)),
            jnum(pct(d, 99.9)),
            jnum(d.last().copied().unwrap_or(f64::NAN)),
            jnum(pct(a, 50.0)),
            jnum(a.last().copied().unwrap_or(f64::NAN)),
            jnum(s.server_cpu_pct.unwrap_or(f64::NAN)),
            jnum(s.self_cpu_pct),
            jnum(m.idle_cpu_pct.unwrap_or(f64::NAN)),
            jnum(
                s.server_cpu_pct
                    .zip(m.idle_cpu_pct)
                    .map_or(f64::NAN, |(c, i)| per_1000(c, i, s.running))
            ),
            jnum(s.rss_mib.map_or(f64::NAN, |r| r.0)),
            jnum(s.rss_mib.map_or(f64::NAN, |r| r.1)),
            pass
        );
        j.push('}');
        println!("{j}");
    } else {
        print!("{t}");
    }
    pass
}
