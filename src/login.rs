//! Logins shared by the admin API and live sources: secrets compared in constant time, and a
//! per-address budget of failed attempts, so a guesser gets a handful of tries, not thousands.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Addresses tracked at most; beyond, the oldest record goes (memory stays bounded when many
/// addresses fail).
const MAX_TRACKED: usize = 4096;
/// Longest user name written to the log.
pub const MAX_LOGGED_USER: usize = 64;

/// Whether `given` is `expected`. SHA-256 digests of the two are compared, in constant time, so
/// neither where they differ nor the secret's length shows in the timing.
pub fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    Sha256::digest(given)
        .as_slice()
        .ct_eq(Sha256::digest(expected).as_slice())
        .into()
}

/// A user name as sent, shortened and made text, for the log (never the password).
pub fn logged_user(sent: &[u8]) -> String {
    String::from_utf8_lossy(sent)
        .chars()
        .take(MAX_LOGGED_USER)
        .collect()
}

/// What the `Authorization` header says.
pub enum Login {
    /// The admin user with the right password.
    Granted,
    /// No credentials: a browser's first request, before it asks its user. Not a failure.
    Missing,
    /// Wrong user, wrong password, or a header that does not parse. `user` is what was sent as
    /// the user name, shortened, for the log (never the password).
    Failed { user: Option<String> },
}

/// How many failed logins an address may make, and over how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub failures: u32,
    pub window: Duration,
}

/// Failed logins per address, against a [`Budget`]. Shared by every connection; the lock is
/// held for a map update only, never across an await.
pub struct LoginThrottle {
    budget: Budget,
    failures: Mutex<HashMap<IpAddr, Failures>>,
}

struct Failures {
    count: u32,
    since: Instant,
}

/// The outcome of one login attempt.
pub enum Attempt {
    Granted,
    /// No credentials sent (not counted).
    Missing,
    /// Wrong credentials: the `failures`-th of this address in the current window.
    Failed {
        user: Option<String>,
        failures: u32,
    },
    /// The address has used its budget: refused for `retry_after` without looking at the
    /// credentials. `first` is true for the first refusal of the window, the one worth a log.
    Refused {
        retry_after: Duration,
        first: bool,
    },
}

impl LoginThrottle {
    pub fn new(budget: Budget) -> LoginThrottle {
        LoginThrottle {
            budget,
            failures: Mutex::new(HashMap::new()),
        }
    }

    pub fn budget(&self) -> Budget {
        self.budget
    }

    fn map(&self) -> MutexGuard<'_, HashMap<IpAddr, Failures>> {
        // Plain counters updated in single statements: a panic elsewhere cannot leave them
        // half-written, so a poisoned lock is still usable.
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `check` (the credential comparison) for an attempt from `ip`, unless the address has
    /// used its budget, and counts a failure. Budget, check and count happen under one lock, so
    /// parallel guesses cannot slip past the budget; the check is two SHA-256 digests of a few
    /// bytes, and nothing here waits.
    pub fn attempt(&self, ip: IpAddr, check: impl FnOnce() -> Login) -> Attempt {
        let now = Instant::now();
        let k = key(ip);
        let mut map = self.map();
        if map
            .get(&k)
            .is_some_and(|f| now.saturating_duration_since(f.since) >= self.budget.window)
        {
            map.remove(&k);
        }
        if let Some(f) = map.get_mut(&k)
            && f.count >= self.budget.failures
        {
            let first = f.count == self.budget.failures;
            // Counted once past the budget, so only the first refusal says `first`.
            f.count = f.count.saturating_add(u32::from(first));
            return Attempt::Refused {
                retry_after: self
                    .budget
                    .window
                    .saturating_sub(now.saturating_duration_since(f.since)),
                first,
            };
        }
        let user = match check() {
            Login::Granted => return Attempt::Granted,
            Login::Missing => return Attempt::Missing,
            Login::Failed { user } => user,
        };
        if map.len() >= MAX_TRACKED && !map.contains_key(&k) {
            map.retain(|_, f| now.saturating_duration_since(f.since) < self.budget.window);
            if map.len() >= MAX_TRACKED
                && let Some(oldest) = map.iter().min_by_key(|(_, f)| f.since).map(|(k, _)| *k)
            {
                map.remove(&oldest);
            }
        }
        let f = map.entry(k).or_insert(Failures {
            count: 0,
            since: now,
        });
        f.count = f.count.saturating_add(1);
        Attempt::Failed {
            user,
            failures: f.count,
        }
    }
}

/// The key an address is counted under: IPv4 as is, IPv6 by its /64, since one host commonly
/// holds a whole /64 and could otherwise take a fresh budget per address.
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from_bits(
                v6.to_bits() & !0xFFFF_FFFF_FFFF_FFFFu128,
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: Budget = Budget {
        failures: 20,
        window: Duration::from_secs(600),
    };

    #[test]
    fn the_budget_is_per_address() {
        let t = LoginThrottle::new(BUDGET);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let wrong = || Login::Failed { user: None };
        for n in 1..=BUDGET.failures {
            assert!(
                matches!(t.attempt(a, wrong), Attempt::Failed { failures, .. } if failures == n)
            );
        }
        // Spent: the right password is not even looked at.
        assert!(matches!(
            t.attempt(a, || Login::Granted),
            Attempt::Refused { first: true, .. }
        ));
        assert!(matches!(
            t.attempt(a, || unreachable!()),
            Attempt::Refused { first: false, retry_after } if retry_after <= BUDGET.window
        ));
        assert!(matches!(t.attempt(b, || Login::Granted), Attempt::Granted));
        assert!(matches!(t.attempt(b, || Login::Missing), Attempt::Missing));
        // The same /64 shares a budget.
        let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(key(v6("2001:db8::1")), key(v6("2001:db8::ffff:1")));
        assert_ne!(key(v6("2001:db8::1")), key(v6("2001:db8:0:1::1")));
        assert_eq!(key(v6("::ffff:192.0.2.1")), a);
    }

    #[test]
    fn tracking_is_bounded() {
        let t = LoginThrottle::new(BUDGET);
        for i in 0..(MAX_TRACKED as u32 + 10) {
            t.attempt(IpAddr::V4(i.into()), || Login::Failed { user: None });
        }
        assert!(t.map().len() <= MAX_TRACKED);
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"source:hackme", b"source:hackme"));
        assert!(!same_secret(b"source:hackm", b"source:hackme"));
        assert!(!same_secret(b"", b"source:hackme"));
        assert_eq!(
            logged_user("é".repeat(100).as_bytes()).chars().count(),
            MAX_LOGGED_USER
        );
    }
}
