//! Who listens to a mount over HLS. HLS has no connection to count: a client is a session, known
//! by its address and User-Agent, and it listens while it asks for a playlist or an object at
//! least once in two target durations (a player reloads the playlist every target duration at
//! most, every part in low-latency mode).
//!
//! Behind a shared cache every client of the cache is one session: the origin sees the cache's
//! requests only, as Icecast sees a relay as one listener.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::grid::TARGET_DURATION;

/// A session counts while it was seen this recently.
pub const SESSION_TTL: Duration = Duration::from_secs(2 * TARGET_DURATION);
/// Sessions kept at most: past this, new clients are not counted until old ones expire, so a
/// flood of addresses cannot grow the table without bound.
const MAX_SESSIONS: usize = 200_000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain state updated in single statements; a panic elsewhere cannot leave it half-written.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The HLS sessions of one mount.
pub struct Sessions {
    hasher: RandomState,
    seen: Mutex<Seen>,
}

struct Seen {
    /// Session key → when it was last seen.
    last: HashMap<u64, Instant>,
    /// When expired sessions were last dropped.
    pruned: Instant,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            hasher: RandomState::new(),
            seen: Mutex::new(Seen {
                last: HashMap::new(),
                pruned: Instant::now(),
            }),
        }
    }
}

impl Seen {
    fn prune(&mut self, now: Instant) {
        self.last
            .retain(|_, at| now.saturating_duration_since(*at) < SESSION_TTL);
        self.pruned = now;
    }
}

impl Sessions {
    /// A request of the session of `ip` and `user_agent` at `now`.
    pub fn seen(&self, ip: IpAddr, user_agent: &[u8], now: Instant) {
        let key = self.hasher.hash_one((ip, user_agent));
        let mut seen = lock(&self.seen);
        // Expired sessions go once a TTL, so a request costs one insert, not a scan.
        if now.saturating_duration_since(seen.pruned) >= SESSION_TTL {
            seen.prune(now);
        }
        if seen.last.len() < MAX_SESSIONS || seen.last.contains_key(&key) {
            seen.last.insert(key, now);
        }
    }

    /// Sessions seen within [`SESSION_TTL`] of `now`.
    pub fn count(&self, now: Instant) -> usize {
        let mut seen = lock(&self.seen);
        seen.prune(now);
        seen.last.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_an_address_and_user_agent_seen_within_two_target_durations() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        s.seen(a, b"hls.js", t0);
        s.seen(a, b"hls.js", t0 + Duration::from_secs(1));
        s.seen(a, b"AppleCoreMedia", t0 + Duration::from_secs(1));
        s.seen(b, b"hls.js", t0 + Duration::from_secs(2));
        assert_eq!(s.count(t0 + Duration::from_secs(2)), 3);
        // Each expires two target durations after its own last request.
        assert_eq!(s.count(t0 + Duration::from_millis(8_900)), 3);
        assert_eq!(s.count(t0 + Duration::from_millis(9_500)), 1);
        assert_eq!(s.count(t0 + Duration::from_secs(10)), 0);
    }
}
