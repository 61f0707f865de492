//! The fan-out thread: it owns every listener socket once the listener's request is answered, and
//! writes each listener its share of its mount's ring in batched, non-blocking `writev` calls.
//!
//! One OS thread, not a task per listener: a turn (on every publish, or every 100 ms) refreshes
//! one [`Window`] per mount under the ring's lock, then walks the listeners without any lock,
//! writing to those that are due (about a fifth of them per turn). No waker, no timer and no
//! buffer exist per listener, and a listener's memory is its [`Listener`] alone. A socket that
//! cannot take more is simply retried next turn; one that falls out of the window has lagged.
//! A listener that ends leaves a line in the access log (`access_log.rs`), off this thread.

pub mod access_log;
mod listener;
pub mod position;

use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use prometheus::IntCounter;

pub use listener::{Listener, ListenerRequest};

use crate::metrics::Disconnect;
use crate::ring::Window;
use crate::station::Mounts;
use crate::supervise::{Watchdog, fault};

/// Longest sleep between turns when nothing is published: how soon a kicked listener goes.
const IDLE_TURN: Duration = Duration::from_millis(100);

/// The running fan-out thread.
pub struct Fanout {
    handle: FanoutHandle,
    thread: Option<JoinHandle<()>>,
}

/// Hands listeners to the fan-out thread.
#[derive(Clone)]
pub struct FanoutHandle {
    shared: Arc<Shared>,
    thread: Thread,
}

struct Shared {
    inbox: Mutex<Inbox>,
}

#[derive(Default)]
struct Inbox {
    arrivals: Vec<Listener>,
    /// Set by [`Fanout::finish`]: end every listener after one last turn.
    finishing: bool,
    /// Set by the thread when it is gone: arrivals are refused.
    stopped: bool,
}

impl Shared {
    fn inbox(&self) -> MutexGuard<'_, Inbox> {
        // Pushes and swaps only; a panic elsewhere cannot leave the inbox half-updated.
        self.inbox.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Fanout {
    /// Starts the thread and subscribes it to every mount's ring. A panic of the thread, or an
    /// end before [`Fanout::finish`], is reported to `watchdog`.
    pub fn start(mounts: Arc<Mounts>, watchdog: Watchdog) -> std::io::Result<Fanout> {
        let shared = Arc::new(Shared {
            inbox: Mutex::new(Inbox::default()),
        });
        let thread = std::thread::Builder::new()
            .name("onair-fanout".into())
            .spawn({
                let shared = Arc::clone(&shared);
                let mounts = Arc::clone(&mounts);
                move || {
                    watchdog.run(
                        "fan-out thread",
                        || shared.inbox().finishing,
                        || run(&mounts, &shared),
                    );
                    // However it ended, nobody reads the inbox any more: refuse arrivals, so
                    // a socket handed over now is closed instead of leaking.
                    let late = {
                        let mut inbox = shared.inbox();
                        inbox.stopped = true;
                        std::mem::take(&mut inbox.arrivals)
                    };
                    late.into_iter().for_each(|l| l.end(Disconnect::Shutdown));
                }
            })?;
        for mount in mounts.iter() {
            mount.ring.subscribe(thread.thread().clone());
        }
        Ok(Fanout {
            handle: FanoutHandle {
                shared,
                thread: thread.thread().clone(),
            },
            thread: Some(thread),
        })
    }

    /// A handle for the accept path.
    pub fn handle(&self) -> FanoutHandle {
        self.handle.clone()
    }

    /// Writes what the rings still hold to every listener once more, ends them all (reason
    /// `shutdown`), and waits for the thread. Call after the rings are closed.
    pub fn finish(mut self) {
        self.stop();
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("the fan-out thread panicked");
        }
    }

    fn stop(&self) {
        self.handle.shared.inbox().finishing = true;
        self.handle.thread.unpark();
    }
}

impl Drop for Fanout {
    fn drop(&mut self) {
        // Reached without `finish` only when the radio fails to start: let the thread end.
        self.stop();
    }
}

impl FanoutHandle {
    /// Passes `listener` to the thread; ends it (reason `shutdown`) when the thread is stopping.
    pub fn add(&self, listener: Listener) {
        let mut inbox = self.shared.inbox();
        if inbox.stopped || inbox.finishing {
            drop(inbox);
            listener.end(Disconnect::Shutdown);
            return;
        }
        inbox.arrivals.push(listener);
        drop(inbox);
        self.thread.unpark();
    }
}

fn run(mounts: &Mounts, shared: &Shared) {
    // Empty windows: the first sync copies each ring from its oldest frame.
    let mut windows: Vec<Window> = mounts.iter().map(|_| Window::default()).collect();
    let sent: Vec<&IntCounter> = mounts.iter().map(|m| &m.metrics.sent_bytes).collect();
    let mut sent_now = vec![0u64; windows.len()];
    let mut listeners: Vec<Listener> = Vec::new();
    loop {
        let finishing = {
            let mut inbox = shared.inbox();
            for l in &inbox.arrivals {
                fault("fanout-panic", l.user_agent());
            }
            listeners.append(&mut inbox.arrivals);
            inbox.finishing
        };
        for (w, m) in windows.iter_mut().zip(mounts) {
            w.sync(&m.ring);
        }
        let now = Instant::now();
        let mut i = 0;
        while i < listeners.len() {
            let l = &mut listeners[i];
            let ended = l.turn(&windows[l.mount_index], now, finishing);
            sent_now[l.mount_index] += l.take_uncounted();
            match ended.or(finishing.then_some(Disconnect::Shutdown)) {
                Some(reason) => listeners.swap_remove(i).end(reason),
                None => i += 1,
            }
        }
        for (counter, n) in sent.iter().zip(sent_now.iter_mut()) {
            if *n > 0 {
                counter.inc_by(*n);
                *n = 0;
            }
        }
        if finishing {
            let late = {
                let mut inbox = shared.inbox();
                inbox.stopped = true;
                std::mem::take(&mut inbox.arrivals)
            };
            late.into_iter().for_each(|l| l.end(Disconnect::Shutdown));
            return;
        }
        std::thread::park_timeout(IDLE_TURN);
    }
}
