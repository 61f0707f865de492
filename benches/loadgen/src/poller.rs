//! The soak's traffic beside the listeners, as monitoring and a studio make it: `/status-json.xsl`
//! and `/admin/stats` polled every `--poll`, and a new title set through `/admin/metadata` every
//! `--title-every`. Three tasks, each counting its answers; the status poll also notes when it
//! first shows the latest title set.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::task::AbortHandle;
use tokio::time::MissedTickBehavior;

use crate::cli::Config;
use crate::probe;

/// Longest a poll or title change may take before it counts as failed.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The answers of one kind of request.
#[derive(Default)]
pub struct Counts {
    /// Answered 200.
    pub ok: AtomicU64,
    /// Any other status, an error or a timeout.
    pub failed: AtomicU64,
    /// Slowest answer, ms.
    pub max_ms: AtomicU64,
}

impl Counts {
    fn record(&self, answer: &std::io::Result<probe::Answer>) -> bool {
        if let Ok(a) = answer {
            self.max_ms
                .fetch_max(a.took.as_millis() as u64, Ordering::Relaxed);
            if a.status == 200 {
                self.ok.fetch_add(1, Ordering::Relaxed);
                return true;
            }
        }
        self.failed.fetch_add(1, Ordering::Relaxed);
        false
    }
}

/// Everything the three tasks count.
#[derive(Default)]
pub struct Polls {
    pub status: Counts,
    pub stats: Counts,
    pub titles: Counts,
    /// Titles the status poll showed after they were set (each counted once).
    pub titles_seen: AtomicU64,
    /// The number of the latest title set (0 = none yet), and of the latest one seen.
    latest_title: AtomicU64,
    seen_title: AtomicU64,
}

/// The running tasks; dropping it stops them.
pub struct Pollers {
    pub polls: Arc<Polls>,
    tasks: Vec<AbortHandle>,
}

impl Drop for Pollers {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The title set the `n`th time.
fn title(n: u64) -> String {
    format!("loadgen soak {n}")
}

/// Where the requests go, and as whom.
struct Server {
    addr: std::net::SocketAddr,
    host: String,
    /// The mount whose title is changed.
    mount: String,
    /// `user:password`.
    auth: Option<String>,
}

/// Starts the polls; the admin ones only when `cfg.admin` has credentials.
pub fn spawn(cfg: &Config) -> Pollers {
    let polls = Arc::new(Polls::default());
    let server = Arc::new(Server {
        addr: cfg.addr,
        host: cfg.host.clone(),
        mount: cfg.path.clone(),
        auth: cfg.admin.as_ref().map(|a| a.0.clone()),
    });
    let mut tasks = Vec::new();

    let (p, s) = (Arc::clone(&polls), Arc::clone(&server));
    tasks.push(every(cfg.poll, move || {
        let (p, s) = (Arc::clone(&p), Arc::clone(&s));
        async move {
            let a = probe::get(s.addr, &s.host, "/status-json.xsl", None, TIMEOUT).await;
            if p.status.record(&a)
                && let Ok(a) = a
            {
                let n = p.latest_title.load(Ordering::Relaxed);
                // The title as a whole JSON string, so that "… 1" is not found in "… 12".
                let needle = format!("\"{}\"", title(n));
                if n > 0
                    && p.seen_title.load(Ordering::Relaxed) < n
                    && a.body.windows(needle.len()).any(|w| w == needle.as_bytes())
                {
                    p.seen_title.store(n, Ordering::Relaxed);
                    p.titles_seen.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }));
    if server.auth.is_none() {
        return Pollers { polls, tasks };
    }

    let (p, s) = (Arc::clone(&polls), Arc::clone(&server));
    tasks.push(every(cfg.poll, move || {
        let (p, s) = (Arc::clone(&p), Arc::clone(&s));
        async move {
            let a = probe::get(s.addr, &s.host, "/admin/stats", s.auth.as_deref(), TIMEOUT).await;
            p.stats.record(&a);
        }
    }));

    let (p, s) = (Arc::clone(&polls), Arc::clone(&server));
    let sent = Arc::new(AtomicU64::new(0));
    tasks.push(every(cfg.title_every, move || {
        let (p, s, sent) = (Arc::clone(&p), Arc::clone(&s), Arc::clone(&sent));
        async move {
            let n = sent.fetch_add(1, Ordering::Relaxed) + 1;
            let target = format!(
                "/admin/metadata?mode=updinfo&mount={}&song={}",
                probe::query_encode(&s.mount),
                probe::query_encode(&title(n))
            );
            let a = probe::get(s.addr, &s.host, &target, s.auth.as_deref(), TIMEOUT).await;
            if p.titles.record(&a) {
                p.latest_title.store(n, Ordering::Relaxed);
            }
        }
    }));
    Pollers { polls, tasks }
}

/// Runs `f` every `period` (the first time after one period), one at a time: a slow answer
/// delays the next request instead of piling requests up.
fn every<F, Fut>(period: Duration, mut f: F) -> AbortHandle
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            f().await;
        }
    })
    .abort_handle()
}
