//! Who may use `/admin/*`: HTTP Basic credentials compared in constant time, a per-address
//! budget of failed logins (each failure answered late, every failure logged), and the refusal
//! of state-changing commands that a browser marks as coming from another site.
//!
//! Icecast's admin API changes state with plain GETs (`/admin/metadata`, `/admin/killclient`),
//! so any page an operator visits could trigger them with an `<img>` once the browser holds the
//! Basic credentials. Browsers say where a request comes from (`Sec-Fetch-Site`, `Origin`);
//! panels and scripts send neither header and keep working.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;
use http::Request;
use http::header::{self, HeaderValue};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::status::host_without_port;

/// How long the answer to a failed login waits: a guesser on one connection gets two tries a
/// second. The wait is a timer, not a worker: other requests are served meanwhile.
pub const FAILED_LOGIN_DELAY: Duration = Duration::from_millis(500);
/// Failed logins an address may make per [`FAILURE_WINDOW`]; then every admin request from it
/// is refused (429) until the window ends, whatever its credentials, so that guessing in
/// parallel gains nothing.
pub const FAILURE_BUDGET: u32 = 20;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(600);
/// Addresses tracked at most; beyond, the oldest record goes (memory stays bounded when many
/// addresses fail).
const MAX_TRACKED: usize = 4096;
/// Longest user name written to the log.
const MAX_LOGGED_USER: usize = 64;

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

/// Checks the request's Basic credentials against `user:password`. SHA-256 digests of the two
/// are compared, in constant time, so neither where they differ nor the password's length shows
/// in the timing.
pub fn login<B>(req: &Request<B>, user: &str, password: &str) -> Login {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Login::Missing;
    };
    let given = value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        })
        .and_then(|b64| {
            base64::engine::general_purpose::STANDARD_PAD_INDIFFERENT
                .decode(b64.trim())
                .ok()
        });
    let Some(given) = given else {
        return Login::Failed { user: None };
    };
    let expected = format!("{user}:{password}");
    let same: bool = Sha256::digest(&given)
        .as_slice()
        .ct_eq(Sha256::digest(expected.as_bytes()).as_slice())
        .into();
    if same {
        return Login::Granted;
    }
    let sent_user = given.split(|&b| b == b':').next().unwrap_or_default();
    let sent_user = String::from_utf8_lossy(sent_user);
    Login::Failed {
        user: Some(sent_user.chars().take(MAX_LOGGED_USER).collect()),
    }
}

/// Admin commands that change something: the ones a cross-site request must not reach.
pub fn changes_state(path: &str) -> bool {
    matches!(
        path,
        "/admin/metadata" | "/admin/metadata.xml" | "/admin/killclient" | "/admin/next"
    )
}

/// True when the browser says the request comes from another site: `Sec-Fetch-Site:
/// cross-site`, or an `Origin` whose host is not the host the request was sent to (`null`, the
/// origin of sandboxed frames and `data:` pages, is another site too). `same-site` (another
/// port or subdomain of the same site) is allowed, as the same host with another port is.
pub fn cross_site<B>(req: &Request<B>) -> bool {
    let h = req.headers();
    if h.get("sec-fetch-site").is_some_and(|v| {
        v.as_bytes()
            .trim_ascii()
            .eq_ignore_ascii_case(b"cross-site")
    }) {
        return true;
    }
    let Some(origin) = h.get(header::ORIGIN) else {
        return false;
    };
    let host = h
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(host_without_port);
    match (origin_host(origin), host) {
        (Some(origin), Some(host)) => !origin.eq_ignore_ascii_case(host),
        _ => true,
    }
}

/// `https://radio.example:8443` → `radio.example`; `None` for `null` or anything not a URL.
fn origin_host(origin: &HeaderValue) -> Option<&str> {
    let (_, rest) = origin.to_str().ok()?.split_once("://")?;
    let authority = rest.split('/').next()?;
    Some(host_without_port(authority)).filter(|h| !h.is_empty())
}

/// Failed admin logins per address, for the delay and the budget. Shared by every connection;
/// the lock is held for a map update only, never across an await.
#[derive(Default)]
pub struct LoginThrottle {
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
    fn map(&self) -> MutexGuard<'_, HashMap<IpAddr, Failures>> {
        // Plain counters updated in single statements: a panic elsewhere cannot leave them
        // half-written, so a poisoned lock is still usable.
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `check` (the credential comparison) for a request from `ip`, unless the address has
    /// used its budget, and counts a failure. Budget, check and count happen under one lock, so
    /// parallel guesses cannot slip past the budget; the check is two SHA-256 digests of a few
    /// bytes, and nothing here waits.
    pub fn attempt(&self, ip: IpAddr, check: impl FnOnce() -> Login) -> Attempt {
        let now = Instant::now();
        let k = key(ip);
        let mut map = self.map();
        if map
            .get(&k)
            .is_some_and(|f| now.saturating_duration_since(f.since) >= FAILURE_WINDOW)
        {
            map.remove(&k);
        }
        if let Some(f) = map.get_mut(&k)
            && f.count >= FAILURE_BUDGET
        {
            let first = f.count == FAILURE_BUDGET;
            // Counted once past the budget, so only the first refusal says `first`.
            f.count = f.count.saturating_add(u32::from(first));
            return Attempt::Refused {
                retry_after: FAILURE_WINDOW.saturating_sub(now.saturating_duration_since(f.since)),
                first,
            };
        }
        let user = match check() {
            Login::Granted => return Attempt::Granted,
            Login::Missing => return Attempt::Missing,
            Login::Failed { user } => user,
        };
        if map.len() >= MAX_TRACKED && !map.contains_key(&k) {
            map.retain(|_, f| now.saturating_duration_since(f.since) < FAILURE_WINDOW);
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

    fn req(headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().uri("/admin/next");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    fn basic(credentials: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        )
    }

    #[test]
    fn credentials() {
        let ok = |h: &str| login(&req(&[("authorization", h)]), "admin", "hunter2");
        assert!(matches!(ok(&basic("admin:hunter2")), Login::Granted));
        // Unpadded base64 from lenient clients still works.
        assert!(matches!(ok("Basic YWRtaW46aHVudGVyMg"), Login::Granted));
        assert!(
            matches!(ok(&basic("admin:hunter3")), Login::Failed { user: Some(u) } if u == "admin")
        );
        assert!(
            matches!(ok(&basic("root:hunter2")), Login::Failed { user: Some(u) } if u == "root")
        );
        assert!(matches!(ok(&basic("admin:hunter2x")), Login::Failed { .. }));
        assert!(matches!(ok("Basic !!!"), Login::Failed { user: None }));
        assert!(matches!(ok("Bearer x"), Login::Failed { user: None }));
        assert!(matches!(
            login(&req(&[]), "admin", "hunter2"),
            Login::Missing
        ));
        let long = format!("{}:x", "u".repeat(500));
        assert!(
            matches!(ok(&basic(&long)), Login::Failed { user: Some(u) } if u.len() == MAX_LOGGED_USER)
        );
    }

    #[test]
    fn cross_site_requests_are_recognised() {
        let host = ("host", "radio.example:8000");
        for (headers, cross) in [
            (vec![host], false),
            (vec![host, ("sec-fetch-site", "same-origin")], false),
            (vec![host, ("sec-fetch-site", "same-site")], false),
            (vec![host, ("sec-fetch-site", "none")], false),
            (vec![host, ("sec-fetch-site", "cross-site")], true),
            (vec![host, ("origin", "http://radio.example:8000")], false),
            (vec![host, ("origin", "https://RADIO.example")], false),
            (vec![host, ("origin", "https://evil.example")], true),
            (vec![host, ("origin", "null")], true),
            (vec![("origin", "http://radio.example")], true),
            (
                vec![("host", "[::1]:8000"), ("origin", "http://[::1]:8000")],
                false,
            ),
            (
                vec![("host", "[::1]:8000"), ("origin", "http://[::2]:8000")],
                true,
            ),
        ] {
            assert_eq!(cross_site(&req(&headers)), cross, "{headers:?}");
        }
    }

    #[test]
    fn the_budget_is_per_address() {
        let t = LoginThrottle::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let wrong = || Login::Failed { user: None };
        for n in 1..=FAILURE_BUDGET {
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
            Attempt::Refused { first: false, retry_after } if retry_after <= FAILURE_WINDOW
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
        let t = LoginThrottle::default();
        for i in 0..(MAX_TRACKED as u32 + 10) {
            t.attempt(IpAddr::V4(i.into()), || Login::Failed { user: None });
        }
        assert!(t.map().len() <= MAX_TRACKED);
    }
}
