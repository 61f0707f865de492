//! The soak's report: one row per minute (printed on stderr as it is taken, and as a whole
//! Markdown table on stdout at the end) and the verdict, with the limits it applies.

use std::fmt::Write as _;

use crate::cli::Config;
use crate::proc_stats::Fds;
use crate::slot::st;

/// RSS may grow less than this from the end of the warm-up to the end: 2 MB.
const RSS_GROWTH_LIMIT_KIB: f64 = 2_000_000.0 / 1024.0;
/// Spread allowed after the warm-up in the server's descriptors less the listeners connected:
/// at a sample a few reconnected listeners' old sockets may still be open on the server (it
/// sees a close at its next write to them), and a poll may be in flight.
const FD_SLACK: u64 = 8;
/// Threads allowed after the warm-up above the most seen during it. A runtime's blocking pool
/// (tokio's, onair's file work) starts threads on demand and lets them go after 10 s idle, so
/// the count moves by a few from minute to minute; the warm-up shows how far, and a leak climbs
/// past it.
const THREAD_SLACK: u64 = 2;

/// One sample, at the end of a minute (minute 0: once every listener has connected).
pub struct Row {
    pub minute: u32,
    /// Listeners streaming at the sample, as the load generator sees them.
    pub streaming: usize,
    /// In this minute: connections closed and reopened; connections that never streamed; and
    /// connections the server ended.
    pub reconnects: usize,
    pub failed: usize,
    pub dropped: usize,
    /// Listeners judged over the minute (one connection all through it, its burst behind it),
    /// those below 99 % of `--expect-kbps`, and their lowest and median bitrate.
    pub measured: usize,
    pub below: usize,
    pub kbps_min: f64,
    pub kbps_median: f64,
    /// The server's.
    pub rss_kib: u64,
    pub fds: Fds,
    pub threads: u64,
    /// Over the minute, % of a core (NaN for minute 0).
    pub cpu_pct: f64,
    /// Polls and title changes since the start: answered 200, and not.
    pub polls_ok: u64,
    pub polls_failed: u64,
}

impl Row {
    /// The server's descriptors that are not a listener connected at the sample.
    fn fds_base(&self) -> i64 {
        self.fds.total as i64 - self.streaming as i64
    }
}

/// Figures of the whole run, beside the rows.
pub struct Totals {
    pub minutes: u32,
    pub warmup: u32,
    pub listeners: usize,
    pub reconnects: usize,
    /// Connections still connecting at the end.
    pub unresolved: usize,
    /// Distinct failure kinds (`st::FAIL_*`, detail).
    pub failures: Vec<(u8, u32)>,
    /// Whether the admin calls ran (a password was given).
    pub admin: bool,
    pub titles_set: u64,
    pub titles_seen: u64,
    /// Slowest answer, ms: status, admin stats, title change.
    pub poll_max_ms: [u64; 3],
    /// The server's RSS before the first listener connected.
    pub rss_before_kib: u64,
    pub server_alive: bool,
    pub self_cpu_pct: f64,
    pub nofile: u64,
}

fn opt(x: f64, decimals: usize) -> String {
    if x.is_finite() {
        format!("{x:.decimals$}")
    } else {
        "–".into()
    }
}

const HEADER: &str = "| min | listeners | reconnects | failed | dropped | judged | below 99 % | min kbps | median kbps | RSS MiB | fds (sockets) | fds − listeners | threads | CPU % | polls ok / failed |\n\
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|";

fn line(r: &Row) -> String {
    format!(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {} ({}) | {} | {} | {} | {} / {} |",
        r.minute,
        r.streaming,
        r.reconnects,
        r.failed,
        r.dropped,
        r.measured,
        r.below,
        opt(r.kbps_min, 1),
        opt(r.kbps_median, 1),
        r.rss_kib as f64 / 1024.0,
        r.fds.total,
        r.fds.sockets,
        r.fds_base(),
        r.threads,
        opt(r.cpu_pct, 1),
        r.polls_ok,
        r.polls_failed
    )
}

/// One row on stderr as it is taken (the header with the first).
pub fn progress(r: &Row) {
    if r.minute == 0 {
        eprintln!("{HEADER}");
    }
    eprintln!("{}", line(r));
}

fn failure_kind(&(state, detail): &(u8, u32)) -> String {
    match state {
        st::FAIL_REFUSED => "refused".into(),
        st::FAIL_RESET => "reset".into(),
        st::FAIL_TIMEOUT => "timeout".into(),
        st::FAIL_CLOSED => "closed unanswered".into(),
        st::FAIL_HTTP => format!("http {detail}"),
        _ => format!("errno {detail}"),
    }
}

/// Prints the table and the verdict on stdout; true when every check passes.
pub fn print(cfg: &Config, rows: &[Row], t: &Totals) -> bool {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "== loadgen soak: http://{}{}{}",
        cfg.host,
        cfg.path,
        if cfg.label.is_empty() {
            String::new()
        } else {
            format!(" ({})", cfg.label)
        }
    );
    let _ = writeln!(
        o,
        "   {} listeners for {} minutes, {:.0} % reconnected per minute, polls every {:.0} s, a title every {:.0} s{}\n",
        t.listeners,
        t.minutes,
        cfg.reconnect * 100.0,
        cfg.poll.as_secs_f64(),
        cfg.title_every.as_secs_f64(),
        if cfg.icy { ", Icy-MetaData: 1" } else { "" }
    );
    let _ = writeln!(o, "{HEADER}");
    for r in rows {
        let _ = writeln!(o, "{}", line(r));
    }

    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        print!("{o}");
        return false;
    };
    let warm_i = (t.warmup as usize).min(rows.len() - 1);
    let warm = &rows[warm_i];
    let after = &rows[warm_i..];
    let mut pass = true;
    let mut check = |o: &mut String, ok: bool, what: &str, text: String| {
        pass &= ok;
        let _ = writeln!(
            o,
            "   {what:<12} {text}  {}",
            if ok { "ok" } else { "FAIL" }
        );
    };
    let mut v = String::new();

    let growth = last.rss_kib as f64 - warm.rss_kib as f64;
    check(
        &mut v,
        growth < RSS_GROWTH_LIMIT_KIB,
        "RSS",
        format!(
            "{:.2} MiB before the listeners, {:.2} at minute 0, {:.2} after the {}-minute warm-up, {:.2} at the end (max {:.2} after the warm-up): growth {:+.0} KiB (limit {:.0} KiB = 2 MB)",
            t.rss_before_kib as f64 / 1024.0,
            first.rss_kib as f64 / 1024.0,
            warm.rss_kib as f64 / 1024.0,
            t.warmup,
            last.rss_kib as f64 / 1024.0,
            after.iter().map(|r| r.rss_kib).max().unwrap_or(0) as f64 / 1024.0,
            growth,
            RSS_GROWTH_LIMIT_KIB
        ),
    );
    let (fd_lo, fd_hi) = span(after.iter().map(Row::fds_base));
    check(
        &mut v,
        (fd_hi - fd_lo) as u64 <= FD_SLACK,
        "descriptors",
        format!(
            "less the listeners connected: {fd_lo}..{fd_hi} after the warm-up ({} at minute 0, {} at the end; spread limit {FD_SLACK}); total {} at the end",
            first.fds_base(),
            last.fds_base(),
            last.fds.total
        ),
    );
    let (_, warm_hi) = span(rows[..=warm_i].iter().map(|r| r.threads as i64));
    let (th_lo, th_hi) = span(after.iter().map(|r| r.threads as i64));
    check(
        &mut v,
        th_hi <= warm_hi + THREAD_SLACK as i64,
        "threads",
        format!(
            "{th_lo}..{th_hi} after the warm-up, at most {warm_hi} during it ({} at minute 0, {} at the end; limit {warm_hi} + {THREAD_SLACK})",
            first.threads, last.threads
        ),
    );
    let judged: usize = rows.iter().map(|r| r.measured).sum();
    let below: usize = rows.iter().map(|r| r.below).sum();
    let min_kbps = rows
        .iter()
        .map(|r| r.kbps_min)
        .filter(|k| k.is_finite())
        .fold(f64::INFINITY, f64::min);
    let unjudged_minute = rows[1..].iter().any(|r| r.measured == 0);
    check(
        &mut v,
        below == 0 && judged > 0 && !unjudged_minute,
        "bitrate",
        format!(
            "{judged} listener-minutes judged, {below} below 99 % of {:.0} kbps (lowest {})",
            cfg.expect_kbps,
            opt(min_kbps, 1)
        ),
    );
    let failed: usize = rows.iter().map(|r| r.failed).sum();
    let dropped: usize = rows.iter().map(|r| r.dropped).sum();
    check(
        &mut v,
        failed == 0 && dropped == 0 && t.unresolved == 0 && last.streaming == t.listeners,
        "connections",
        format!(
            "{} reconnects; {failed} never streamed{}, {dropped} dropped by the server, {} unresolved; {} of {} streaming at the end",
            t.reconnects,
            if t.failures.is_empty() {
                String::new()
            } else {
                format!(
                    " ({})",
                    t.failures
                        .iter()
                        .map(failure_kind)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
            t.unresolved,
            last.streaming,
            t.listeners
        ),
    );
    check(
        &mut v,
        last.polls_failed == 0 && last.polls_ok > 0,
        "polls",
        format!(
            "{} answered 200, {} not{}; slowest ms: status {}, stats {}, title {}; titles set {}, seen in /status-json.xsl {}",
            last.polls_ok,
            last.polls_failed,
            if t.admin {
                ""
            } else {
                " (admin calls skipped: no ONAIR_ADMIN_PASSWORD)"
            },
            t.poll_max_ms[0],
            t.poll_max_ms[1],
            t.poll_max_ms[2],
            t.titles_set,
            t.titles_seen
        ),
    );
    check(
        &mut v,
        t.server_alive,
        "server",
        format!(
            "{} at the end; CPU {} % of a core on average after the warm-up",
            if t.server_alive { "alive" } else { "gone" },
            opt(
                after[1..].iter().map(|r| r.cpu_pct).sum::<f64>() / (after.len() - 1) as f64,
                1
            )
        ),
    );
    let _ = writeln!(o, "\nverdict: {}", if pass { "PASS" } else { "FAIL" });
    o.push_str(&v);
    let _ = writeln!(
        o,
        "   loadgen itself: CPU {:.1} % of a core on average, nofile {}",
        t.self_cpu_pct, t.nofile
    );
    print!("{o}");
    pass
}

/// Lowest and highest of `values` (0, 0 when empty).
fn span(values: impl Iterator<Item = i64>) -> (i64, i64) {
    values
        .fold(None, |acc: Option<(i64, i64)>, x| match acc {
            None => Some((x, x)),
            Some((lo, hi)) => Some((lo.min(x), hi.max(x))),
        })
        .unwrap_or((0, 0))
}
