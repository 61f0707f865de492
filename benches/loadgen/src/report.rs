//! The report: aggregates every connection's slot into counts, bitrates and latencies, with the
//! server's and our own /proc cost, and prints the human table and the `--json` line; for a
//! `--storm`, also its verdict.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use crate::cli::Config;
use crate::proc_stats::ProcSample;
use crate::slot::{Shared, st};

/// The `p`th percentile of sorted values, nearest rank; NaN when empty.
pub(crate) fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub(crate) fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

/// A JSON number with at most three decimals and no trailing zeros; `null` when not finite.
pub(crate) fn jnum(x: f64) -> String {
    if x.is_finite() {
        let s = format!("{x:.3}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        if s.is_empty() || s == "-" {
            "0".into()
        } else {
            s.to_string()
        }
    } else {
        "null".into()
    }
}

/// A JSON string literal.
pub(crate) fn jstr(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// What the orchestrator measured around the window, beside the per-connection slots.
pub struct Measure {
    pub ramp_secs: f64,
    pub window_secs: f64,
    /// The server's /proc sample before the ramp (`None` without `--pid`).
    pub server_before: Option<ProcSample>,
    /// The server's and our own samples at the window's start (t0) and end (t1).
    pub server_t0: Option<ProcSample>,
    pub server_t1: Option<ProcSample>,
    pub self_t0: ProcSample,
    pub self_t1: ProcSample,
    /// `RLIMIT_NOFILE` in force.
    pub nofile: u64,
    /// After the window: the server's process still alive (`None` without `--pid`), and the
    /// status it answered `GET /healthz` with (`None`: no answer).
    pub server_alive: Option<bool>,
    pub healthz: Option<u32>,
}

/// A storm's connection must get its first body byte within this, or a 503 with `Retry-After`.
const STORM_SERVED_WITHIN_MS: f64 = 5_000.0;

/// Prints the human table (to stderr with `--json`) and, with `--json`, the JSON line on stdout.
/// False when a storm's verdict fails (true for any other run).
pub fn print(shared: &Shared, slow_set: &[bool], m: &Measure) -> bool {
    let cfg = &shared.cfg;
    let s = summarize(shared, slow_set, m);
    let t = table(cfg, m, &s);
    if cfg.json {
        eprint!("{t}");
        println!("{}", json_line(cfg, m, &s));
    } else {
        print!("{t}");
    }
    !cfg.storm || s.storm_pass
}

/// Every figure the report prints, aggregated from the slots and the /proc samples.
struct Summary {
    /// Listeners asked for.
    n: usize,
    refused: usize,
    reset: usize,
    timeout: usize,
    http: usize,
    other: usize,
    /// Closed by the server with no answer (or a 200 head and no body).
    closed: usize,
    /// Never streamed: the sum of the six failure counts above it.
    failed: usize,
    /// Non-200 answers that were 503, the `Retry-After` seconds of those that had one (sorted),
    /// and how many had none.
    http_503: usize,
    retry_after: Vec<f64>,
    retry_missing: usize,
    /// Answered with a first body byte within [`STORM_SERVED_WITHIN_MS`].
    served_in_time: usize,
    /// A storm's verdict: every connection served in time or answered 503 with `Retry-After`,
    /// none dropped after admission, the server alive and answering.
    storm_pass: bool,
    /// Normal listeners still streaming when the window ended.
    held: usize,
    slow_held: usize,
    /// Normal and slow listeners held.
    all_held: usize,
    /// Normal listeners the server dropped after they had started streaming.
    dropped: usize,
    slow_dropped: usize,
    /// Still streaming after the grace period: never recorded the window's end.
    pending: usize,
    /// Listeners picked to read slowly.
    slow_n: usize,
    /// Distinct non-200 statuses, and distinct errnos of other failures, in order of first sight.
    http_codes: Vec<u32>,
    other_errnos: Vec<u32>,
    /// Per held normal listener, sorted: bitrate between arrivals (or edge to edge when the arrivals
    /// span too little of the window), and edge to edge; `below` counts those under 99 % of `--expect-kbps`.
    kbps: Vec<f64>,
    edge_kbps: Vec<f64>,
    below: usize,
    /// Per held slow listener, sorted.
    slow_kbps: Vec<f64>,
    /// Per dropped slow listener, ms after the window's start, sorted.
    slow_drop_ms: Vec<f64>,
    /// Per answered listener, ms, sorted: to the first body byte, and to `--burst-bytes`.
    ttfb: Vec<f64>,
    burst: Vec<f64>,
    /// Server CPU over the window, % of a core (and per 1,000 held); CPU seconds during the ramp.
    server_cpu: Option<f64>,
    per_1k: Option<f64>,
    server_ramp_cpu: Option<f64>,
    /// Server RSS, KiB, before the ramp and at the window's end; growth per held listener, bytes.
    rss_before: Option<u64>,
    rss_during: Option<u64>,
    rss_per: Option<f64>,
    /// Our own CPU over the window, % of a core.
    self_cpu: f64,
}

/// Aggregates every connection's slot and the /proc samples.
fn summarize(shared: &Shared, slow_set: &[bool], m: &Measure) -> Summary {
    let cfg = &shared.cfg;
    let n = cfg.listeners;
    let (mut refused, mut reset, mut timeout, mut http, mut other, mut closed) = (0, 0, 0, 0, 0, 0);
    let (mut http_503, mut retry_missing) = (0usize, 0usize);
    let mut retry_after = Vec::new();
    let (mut held, mut dropped, mut pending) = (0usize, 0usize, 0usize);
    let (mut slow_n, mut slow_held, mut slow_dropped) = (0usize, 0usize, 0usize);
    let mut slow_drop_ms = Vec::new();
    let mut http_codes: Vec<u32> = Vec::new();
    let mut other_errnos: Vec<u32> = Vec::new();
    let mut kbps = Vec::new();
    let mut edge_kbps = Vec::new();
    let mut slow_kbps = Vec::new();
    let mut ttfb = Vec::new();
    let mut burst = Vec::new();
    let expect = cfg.expect_kbps;
    let mut below = 0usize;
    for (i, s) in shared.slots.iter().enumerate() {
        let state = s.state.load(Ordering::Acquire);
        let slow = slow_set[i];
        let t = s.ttfb_us.load(Ordering::Relaxed);
        if t > 0 {
            ttfb.push(t as f64 / 1000.0);
        }
        let b = s.burst_us.load(Ordering::Relaxed);
        if b > 0 {
            burst.push(b as f64 / 1000.0);
        }
        if slow {
            slow_n += 1;
        }
        match state {
            st::HELD => {
                let w0 = s.win0.load(Ordering::Relaxed);
                let w1 = s.win1.load(Ordering::Relaxed);
                let secs = s
                    .win1_us
                    .load(Ordering::Relaxed)
                    .saturating_sub(s.win0_us.load(Ordering::Relaxed))
                    as f64
                    / 1e6;
                let edge_k = if w0 == u64::MAX || w1 == u64::MAX || w1 < w0 || secs <= 0.0 {
                    0.0
                } else {
                    (w1 - w0) as f64 * 8.0 / 1000.0 / secs
                };
                let (a0, a1) = (
                    s.arr0.load(Ordering::Relaxed),
                    s.arr1.load(Ordering::Relaxed),
                );
                let arr_secs = s
                    .arr1_us
                    .load(Ordering::Relaxed)
                    .saturating_sub(s.arr0_us.load(Ordering::Relaxed))
                    as f64
                    / 1e6;
                // Between arrivals when they span at least half the window; a listener that got
                // little or nothing in the window is judged by the edges.
                let k = if a0 != u64::MAX && a1 != u64::MAX && a1 >= a0 && arr_secs >= secs / 2.0 {
                    (a1 - a0) as f64 * 8.0 / 1000.0 / arr_secs
                } else {
                    edge_k
                };
                if slow {
                    slow_held += 1;
                    slow_kbps.push(k);
                    continue;
                }
                held += 1;
                if k < expect * 0.99 {
                    below += 1;
                }
                kbps.push(k);
                edge_kbps.push(edge_k);
            }
            st::CLOSED | st::BROKEN => {
                if slow {
                    slow_dropped += 1;
                    slow_drop_ms.push(s.dropped_after_ms.load(Ordering::Relaxed) as f64);
                } else {
                    dropped += 1;
                }
            }
            st::FAIL_REFUSED => refused += 1,
            st::FAIL_RESET => reset += 1,
            st::FAIL_TIMEOUT => timeout += 1,
            st::FAIL_HTTP => {
                http += 1;
                let c = s.detail.load(Ordering::Relaxed);
                if !http_codes.contains(&c) {
                    http_codes.push(c);
                }
                if c == 503 {
                    http_503 += 1;
                    match s.retry_after.load(Ordering::Relaxed) {
                        0 => retry_missing += 1,
                        r => retry_after.push(r as f64),
                    }
                }
            }
            st::FAIL_CLOSED => closed += 1,
            st::FAIL_OTHER => {
                other += 1;
                let c = s.detail.load(Ordering::Relaxed);
                if !other_errnos.contains(&c) {
                    other_errnos.push(c);
                }
            }
            // Still "streaming" after the grace period: it never recorded the window's end.
            _ => pending += 1,
        }
    }
    let failed = refused + reset + timeout + http + other + closed;
    let retry_after = sorted(retry_after);
    let served_in_time = ttfb
        .iter()
        .filter(|&&t| t <= STORM_SERVED_WITHIN_MS)
        .count();
    let kbps = sorted(kbps);
    let edge_kbps = sorted(edge_kbps);
    let slow_kbps = sorted(slow_kbps);
    let ttfb = sorted(ttfb);
    let burst = sorted(burst);
    let slow_drop_ms = sorted(slow_drop_ms);
    let all_held = held + slow_held;

    let server_cpu = match (m.server_t0, m.server_t1) {
        (Some(a), Some(b)) => Some((b.cpu - a.cpu) / m.window_secs * 100.0),
        _ => None,
    };
    let server_ramp_cpu = match (m.server_before, m.server_t0) {
        (Some(a), Some(b)) => Some(b.cpu - a.cpu),
        _ => None,
    };
    let per_1k = server_cpu.map(|c| {
        if all_held > 0 {
            c / all_held as f64 * 1000.0
        } else {
            f64::NAN
        }
    });
    let rss_before = m.server_before.map(|s| s.rss_kib);
    let rss_during = m.server_t1.map(|s| s.rss_kib);
    let rss_per = match (rss_before, rss_during) {
        (Some(a), Some(b)) if all_held > 0 => {
            Some((b as f64 - a as f64) * 1024.0 / all_held as f64)
        }
        _ => None,
    };
    let self_cpu = (m.self_t1.cpu - m.self_t0.cpu) / m.window_secs * 100.0;
    // A 503 without Retry-After, like any other failure, fails the verdict.
    let storm_pass = served_in_time + retry_after.len() == n
        && dropped + slow_dropped == 0
        && m.server_alive != Some(false)
        && m.healthz.is_some();
    Summary {
        n,
        refused,
        reset,
        timeout,
        http,
        other,
        closed,
        failed,
        http_503,
        retry_after,
        retry_missing,
        served_in_time,
        storm_pass,
        held,
        slow_held,
        all_held,
        dropped,
        slow_dropped,
        pending,
        slow_n,
        http_codes,
        other_errnos,
        kbps,
        edge_kbps,
        below,
        slow_kbps,
        slow_drop_ms,
        ttfb,
        burst,
        server_cpu,
        per_1k,
        server_ramp_cpu,
        rss_before,
        rss_during,
        rss_per,
        self_cpu,
    }
}

/// The human table.
fn table(cfg: &Config, m: &Measure, s: &Summary) -> String {
    let &Summary {
        n,
        refused,
        reset,
        timeout,
        http,
        other,
        closed,
        failed,
        held,
        slow_held,
        all_held,
        dropped,
        slow_dropped,
        pending,
        slow_n,
        ref http_codes,
        ref other_errnos,
        ref kbps,
        ref edge_kbps,
        below,
        ref slow_kbps,
        ref slow_drop_ms,
        ref ttfb,
        ref burst,
        server_cpu,
        per_1k,
        server_ramp_cpu,
        rss_before,
        rss_during,
        rss_per,
        self_cpu,
        ..
    } = s;
    let expect = cfg.expect_kbps;
    let mut t = String::new();
    let title = if cfg.label.is_empty() {
        format!("http://{}{}", cfg.host, cfg.path)
    } else {
        format!("{} (http://{}{})", cfg.label, cfg.host, cfg.path)
    };
    let _ = writeln!(t, "== loadgen: {title}");
    let _ = writeln!(
        t,
        "   {} listeners, {}, window {:.0} s{}{}",
        n,
        if cfg.storm {
            "all at once (storm)".to_string()
        } else {
            format!("{:.0}/s", cfg.rate)
        },
        m.window_secs,
        if cfg.icy { ", Icy-MetaData: 1" } else { "" },
        if slow_n > 0 {
            format!(", {slow_n} slow readers at {} B/s", cfg.slow_bps)
        } else {
            String::new()
        }
    );
    let _ = writeln!(t, "   ramp (connect phase)         {:>10.1} s", m.ramp_secs);
    let _ = writeln!(
        t,
        "   held at the window's end     {all_held:>10}   (normal {held}, slow {slow_held})"
    );
    let _ = writeln!(
        t,
        "   dropped during the window    {dropped:>10}   (slow readers dropped: {slow_dropped})"
    );
    let _ = writeln!(
        t,
        "   failed                       {failed:>10}   (refused {refused}, reset {reset}, closed unanswered {closed}, timeout {timeout}, http {http} {:?}, other {other} {:?})",
        http_codes, other_errnos
    );
    if pending > 0 {
        let _ = writeln!(t, "   unresolved                   {pending:>10}");
    }
    let _ = writeln!(
        t,
        "   bitrate kbps (held, normal)  min {:.1}  p1 {:.1}  median {:.1}   below 99 % of {:.0}: {}",
        pct(kbps, 0.0),
        pct(kbps, 1.0),
        pct(kbps, 50.0),
        expect,
        below
    );
    let _ = writeln!(
        t,
        "     (between each listener's first and last arrival in the window; edge to edge, which\n      \
         cuts the server's write batches: min {:.1}  p1 {:.1}  median {:.1})",
        pct(edge_kbps, 0.0),
        pct(edge_kbps, 1.0),
        pct(edge_kbps, 50.0),
    );
    let _ = writeln!(
        t,
        "   first byte ms                p50 {:.1}  p99 {:.1}  max {:.1}   ({} answered)",
        pct(ttfb, 50.0),
        pct(ttfb, 99.0),
        pct(ttfb, 100.0),
        ttfb.len()
    );
    if cfg.burst_bytes > 0 {
        let _ = writeln!(
            t,
            "   first {} bytes ms         p50 {:.1}  p99 {:.1}  max {:.1}",
            cfg.burst_bytes,
            pct(burst, 50.0),
            pct(burst, 99.0),
            pct(burst, 100.0)
        );
    }
    if !slow_kbps.is_empty() {
        let _ = writeln!(
            t,
            "   bitrate kbps (held, slow)    min {:.1}  median {:.1}  max {:.1}",
            pct(slow_kbps, 0.0),
            pct(slow_kbps, 50.0),
            pct(slow_kbps, 100.0)
        );
    }
    if slow_dropped > 0 {
        let _ = writeln!(
            t,
            "   slow readers dropped after   p50 {:.1} s  max {:.1} s (from the window's start)",
            pct(slow_drop_ms, 50.0) / 1000.0,
            pct(slow_drop_ms, 100.0) / 1000.0
        );
    }
    if let Some(pid) = cfg.pid {
        let _ = writeln!(
            t,
            "   server pid {pid}: CPU {} % of a core over the window = {} % per 1,000 listeners; {} CPU s during the ramp",
            server_cpu.map_or("?".into(), |c| format!("{c:.1}")),
            per_1k.map_or("?".into(), |c| format!("{c:.2}")),
            server_ramp_cpu.map_or("?".into(), |c| format!("{c:.2}"))
        );
        let _ = writeln!(
            t,
            "   server RSS {} MiB before, {} MiB during = {} KiB per listener",
            rss_before.map_or("?".into(), |r| format!("{:.1}", r as f64 / 1024.0)),
            rss_during.map_or("?".into(), |r| format!("{:.1}", r as f64 / 1024.0)),
            rss_per.map_or("?".into(), |r| format!("{:.2}", r / 1024.0))
        );
    }
    if cfg.storm {
        storm_verdict(&mut t, m, s);
    }
    let _ = writeln!(
        t,
        "   loadgen itself: CPU {:.1} % of a core over the window, RSS {:.1} MiB, {} threads, nofile {}",
        self_cpu,
        m.self_t1.rss_kib as f64 / 1024.0,
        cfg.threads,
        m.nofile
    );
    t
}

/// The `--json` line, without its newline.
fn json_line(cfg: &Config, m: &Measure, s: &Summary) -> String {
    let &Summary {
        n,
        refused,
        reset,
        timeout,
        http,
        other,
        closed,
        failed,
        http_503,
        ref retry_after,
        retry_missing,
        served_in_time,
        storm_pass,
        held,
        slow_held,
        all_held,
        dropped,
        slow_dropped,
        pending,
        slow_n,
        ref kbps,
        below,
        ref slow_kbps,
        ref slow_drop_ms,
        ref ttfb,
        ref burst,
        server_cpu,
        per_1k,
        server_ramp_cpu,
        rss_before,
        rss_during,
        rss_per,
        self_cpu,
        ..
    } = s;
    let expect = cfg.expect_kbps;
    let o = |x: Option<f64>| x.map_or("null".to_string(), jnum);
    let mut j = String::new();
    let _ = write!(
        j,
        "{{\"label\":{},\"url\":{},\"asked\":{},\"storm\":{},\"rate\":{},\"window_s\":{},\"icy\":{},\
\"ramp_s\":{},\"held\":{},\"held_normal\":{},\"held_slow\":{},\"dropped\":{},\"slow\":{},\"slow_dropped\":{},\
\"failed\":{},\"refused\":{},\"reset\":{},\"timeout\":{},\"http_error\":{},\"other_error\":{},\"unresolved\":{},\
\"kbps_min\":{},\"kbps_p1\":{},\"kbps_median\":{},\"below_99pct\":{},\"expect_kbps\":{},\
\"answered\":{},\"ttfb_ms_p50\":{},\"ttfb_ms_p99\":{},\"ttfb_ms_max\":{},\
\"burst_bytes\":{},\"burst_ms_p50\":{},\"burst_ms_p99\":{},\"burst_ms_max\":{},\
\"slow_drop_s_p50\":{},\"slow_kbps_median\":{},\
\"server_cpu_pct\":{},\"server_cpu_pct_per_1k\":{},\"server_ramp_cpu_s\":{},\
\"server_rss_before_kib\":{},\"server_rss_during_kib\":{},\"server_rss_per_listener_b\":{},\
\"self_cpu_pct\":{},\"self_rss_kib\":{},\
\"closed\":{},\"http_503\":{},\"retry_after_min\":{},\"retry_after_median\":{},\"retry_after_max\":{},\
\"retry_after_missing\":{},\"served_5s\":{},\"server_alive\":{},\"healthz\":{},\"storm_pass\":{}}}",
        jstr(&cfg.label),
        jstr(&format!("http://{}{}", cfg.host, cfg.path)),
        n,
        cfg.storm,
        jnum(cfg.rate),
        jnum(m.window_secs),
        cfg.icy,
        jnum(m.ramp_secs),
        all_held,
        held,
        slow_held,
        dropped,
        slow_n,
        slow_dropped,
        failed,
        refused,
        reset,
        timeout,
        http,
        other,
        pending,
        jnum(pct(kbps, 0.0)),
        jnum(pct(kbps, 1.0)),
        jnum(pct(kbps, 50.0)),
        below,
        jnum(expect),
        ttfb.len(),
        jnum(pct(ttfb, 50.0)),
        jnum(pct(ttfb, 99.0)),
        jnum(pct(ttfb, 100.0)),
        cfg.burst_bytes,
        jnum(pct(burst, 50.0)),
        jnum(pct(burst, 99.0)),
        jnum(pct(burst, 100.0)),
        jnum(pct(slow_drop_ms, 50.0) / 1000.0),
        jnum(pct(slow_kbps, 50.0)),
        o(server_cpu),
        o(per_1k),
        o(server_ramp_cpu),
        rss_before.map_or("null".into(), |r| r.to_string()),
        rss_during.map_or("null".into(), |r| r.to_string()),
        o(rss_per),
        jnum(self_cpu),
        m.self_t1.rss_kib,
        closed,
        http_503,
        jnum(pct(retry_after, 0.0)),
        jnum(pct(retry_after, 50.0)),
        jnum(pct(retry_after, 100.0)),
        retry_missing,
        served_in_time,
        m.server_alive.map_or("null".into(), |a| a.to_string()),
        m.healthz.map_or("null".into(), |c| c.to_string()),
        cfg.storm && storm_pass,
    );
    j
}

/// The storm's lines: who was served in time, who was told to come back and when, who was
/// dropped or lost, whether the server survived.
fn storm_verdict(t: &mut String, m: &Measure, s: &Summary) {
    let late = s.ttfb.len() - s.served_in_time;
    let lost = s.n - s.ttfb.len() - s.http;
    let _ = writeln!(
        t,
        "   storm verdict: {}",
        if s.storm_pass { "PASS" } else { "FAIL" }
    );
    let _ = writeln!(
        t,
        "     served within {:.0} s           {:>6} of {}   (max first byte {:.0} ms; {late} served later)",
        STORM_SERVED_WITHIN_MS / 1000.0,
        s.served_in_time,
        s.n,
        pct(&s.ttfb, 100.0),
    );
    let mut spread = String::new();
    if !s.retry_after.is_empty() {
        let mut counts: Vec<(f64, usize)> = Vec::new();
        for &r in &s.retry_after {
            match counts.last_mut() {
                Some((v, c)) if *v == r => *c += 1,
                _ => counts.push((r, 1)),
            }
        }
        let each: Vec<String> = counts
            .iter()
            .map(|(v, c)| format!("{v:.0} s ×{c}"))
            .collect();
        spread = format!(
            "; Retry-After {:.0}–{:.0} s, median {:.0}: {}",
            pct(&s.retry_after, 0.0),
            pct(&s.retry_after, 100.0),
            pct(&s.retry_after, 50.0),
            each.join(", ")
        );
    }
    let _ = writeln!(
        t,
        "     answered 503              {:>6}   ({} with Retry-After, {} without{spread})",
        s.http_503,
        s.retry_after.len(),
        s.retry_missing,
    );
    let _ = writeln!(
        t,
        "     other non-200 answers     {:>6}",
        s.http - s.http_503
    );
    let _ = writeln!(
        t,
        "     dropped after admission   {:>6}",
        s.dropped + s.slow_dropped
    );
    let _ = writeln!(
        t,
        "     never answered            {lost:>6}   (refused {}, reset {}, closed unanswered {}, timeout {}, other {})",
        s.refused, s.reset, s.closed, s.timeout, s.other
    );
    let _ = writeln!(
        t,
        "     server after the window   {}, GET /healthz {}",
        match m.server_alive {
            Some(true) => "alive",
            Some(false) => "GONE",
            None => "pid not given",
        },
        m.healthz
            .map_or("not answered".into(), |c| format!("answered {c}")),
    );
}
