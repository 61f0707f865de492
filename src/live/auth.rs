//! Who may go on air: user `source` with `ONAIR_SOURCE_PASSWORD`, or a named DJ from
//! `[live] accounts_file` (one `user:password` a line, as a Kubernetes Secret mounts it, read again
//! whenever it changes). Passwords are compared in constant time, and an address that fails five
//! times in a minute waits out the minute before its credentials are looked at again.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use super::handshake::Credentials;
use crate::config::Secret;
use crate::login::{Attempt, Budget, Login, LoginThrottle, logged_user, same_secret};

/// Failed source logins an address may make per minute.
pub const SOURCE_BUDGET: Budget = Budget {
    failures: 5,
    window: Duration::from_secs(60),
};
/// The user of the shared source password, as Icecast names it.
pub const SOURCE_USER: &str = "source";
/// Largest accounts file read: a few thousand DJs.
const MAX_ACCOUNTS_BYTES: u64 = 1 << 20;

/// What a login attempt comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// On air as this user (`source`, or the DJ's name).
    Granted { user: String },
    /// No credentials sent: asked for them (not counted as a failure).
    Missing,
    /// Wrong user or password; `failures` is this address's count in the window.
    Failed { user: Option<String>, failures: u32 },
    /// The address spent its budget: refused without a look at its credentials.
    Waiting { retry_after: Duration },
    /// Live input is off: no source password and no accounts file.
    Closed,
}

pub struct SourceAuth {
    source_password: Option<Secret>,
    accounts: Option<AccountsFile>,
    throttle: LoginThrottle,
}

impl SourceAuth {
    pub fn new(source_password: Option<Secret>, accounts_file: Option<PathBuf>) -> SourceAuth {
        SourceAuth {
            source_password,
            accounts: accounts_file.map(AccountsFile::new),
            throttle: LoginThrottle::new(SOURCE_BUDGET),
        }
    }

    /// Whether anyone can log in at all.
    pub fn enabled(&self) -> bool {
        self.source_password.is_some() || self.accounts.is_some()
    }

    /// Checks the first of `candidates` that is right (the ICY password line may mean several
    /// things), counting one failure for the attempt when none is.
    pub fn check(&self, peer: IpAddr, candidates: &[Credentials]) -> Verdict {
        if !self.enabled() {
            return Verdict::Closed;
        }
        let mut granted = None;
        let attempt = self.throttle.attempt(peer, || {
            if candidates.is_empty() {
                return Login::Missing;
            }
            for c in candidates {
                if self.is_right(c) {
                    granted = Some(c.user.clone());
                    return Login::Granted;
                }
            }
            Login::Failed {
                user: candidates.first().map(|c| logged_user(c.user.as_bytes())),
            }
        });
        match attempt {
            Attempt::Granted => Verdict::Granted {
                user: granted.unwrap_or_else(|| SOURCE_USER.to_owned()),
            },
            Attempt::Missing => Verdict::Missing,
            Attempt::Failed { user, failures } => Verdict::Failed { user, failures },
            Attempt::Refused { retry_after, .. } => Verdict::Waiting { retry_after },
        }
    }

    fn is_right(&self, c: &Credentials) -> bool {
        let given = c.password.expose().as_bytes();
        if c.user == SOURCE_USER
            && let Some(expected) = &self.source_password
            && same_secret(given, expected.expose().as_bytes())
        {
            return true;
        }
        self.accounts.as_ref().is_some_and(|accounts| {
            accounts.with_current(|list| {
                list.iter()
                    .filter(|(user, _)| *user == c.user)
                    .fold(false, |ok, (_, expected)| {
                        same_secret(given, expected.expose().as_bytes()) | ok
                    })
            })
        })
    }
}

/// The accounts file and what it held when last read.
struct AccountsFile {
    path: PathBuf,
    loaded: Mutex<Loaded>,
}

#[derive(Default)]
struct Loaded {
    /// Modification time and length when read: a change of either reads it again.
    stamp: Option<(SystemTime, u64)>,
    accounts: Vec<(String, Secret)>,
}

impl AccountsFile {
    fn new(path: PathBuf) -> AccountsFile {
        let file = AccountsFile {
            path,
            loaded: Mutex::new(Loaded::default()),
        };
        file.with_current(|_| ());
        file
    }

    /// Runs `f` on the accounts as the file holds them now. A file that cannot be read keeps
    /// the accounts last read (a Secret being swapped is briefly absent), with a warning.
    fn with_current<T>(&self, f: impl FnOnce(&[(String, Secret)]) -> T) -> T {
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        let stamp = std::fs::metadata(&self.path)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())));
        if stamp.is_some() && stamp != loaded.stamp {
            match read_accounts(&self.path) {
                Ok(accounts) => {
                    tracing::info!(file = %self.path.display(), accounts = accounts.len(), "DJ accounts read");
                    loaded.accounts = accounts;
                    loaded.stamp = stamp;
                }
                Err(e) => {
                    tracing::warn!(file = %self.path.display(), error = %e, "cannot read the DJ accounts; keeping the ones read before");
                }
            }
        } else if stamp.is_none() && loaded.stamp.is_some() {
            tracing::warn!(file = %self.path.display(), "the DJ accounts file is gone; keeping the accounts read before");
            loaded.stamp = None;
        }
        f(&loaded.accounts)
    }
}

/// `user:password` lines; blank lines and `#` comments are skipped, and a line without a colon
/// is an error naming its number (never its content, which holds a password).
fn read_accounts(path: &Path) -> std::io::Result<Vec<(String, Secret)>> {
    use std::io::Read as _;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_ACCOUNTS_BYTES)
        .read_to_string(&mut text)?;
    let mut accounts = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        match line.split_once(':') {
            Some((user, password)) if !user.trim().is_empty() && !password.is_empty() => {
                accounts.push((user.trim().to_owned(), Secret::from(password)));
            }
            _ => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("line {}: expected user:password", n + 1),
                ));
            }
        }
    }
    Ok(accounts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(user: &str, password: &str) -> Credentials {
        Credentials {
            user: user.into(),
            password: Secret::from(password),
        }
    }

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));

    #[test]
    fn the_source_password_and_named_djs_log_in_and_the_file_is_read_again_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("accounts");
        std::fs::write(&file, "# DJs\nalice:wonder:land\n\nbob:builder\r\n").unwrap();
        let auth = SourceAuth::new(Some(Secret::from("hackme")), Some(file.clone()));
        let granted = |user: &str| Verdict::Granted { user: user.into() };
        assert_eq!(
            auth.check(PEER, &[creds("source", "hackme")]),
            granted("source")
        );
        assert_eq!(
            auth.check(PEER, &[creds("alice", "wonder:land")]),
            granted("alice")
        );
        assert_eq!(auth.check(PEER, &[creds("bob", "builder")]), granted("bob"));
        assert_eq!(auth.check(PEER, &[]), Verdict::Missing);
        // The ICY line "bob:builder" is tried as a DJ, then as the source password.
        let icy = [creds("bob", "builder"), creds("source", "bob:builder")];
        assert_eq!(auth.check(PEER, &icy), granted("bob"));
        assert!(matches!(
            auth.check(PEER, &[creds("alice", "wonder")]),
            Verdict::Failed { user: Some(u), failures: 1 } if u == "alice"
        ));
        // Bob's password is rotated in the Secret: the old one stops working at once.
        std::fs::write(&file, "alice:wonder:land\nbob:new-password-longer\n").unwrap();
        assert!(matches!(
            auth.check(PEER, &[creds("bob", "builder")]),
            Verdict::Failed { .. }
        ));
        assert_eq!(
            auth.check(PEER, &[creds("bob", "new-password-longer")]),
            granted("bob")
        );
        // A damaged file keeps the accounts read before.
        std::fs::write(&file, "alice wonder\n").unwrap();
        assert_eq!(
            auth.check(PEER, &[creds("alice", "wonder:land")]),
            granted("alice")
        );
    }

    #[test]
    fn five_failures_in_a_minute_make_an_address_wait_even_with_the_right_password() {
        let auth = SourceAuth::new(Some(Secret::from("hackme")), None);
        for n in 1..=SOURCE_BUDGET.failures {
            assert!(matches!(
                auth.check(PEER, &[creds("source", "guess")]),
                Verdict::Failed { failures, .. } if failures == n
            ));
        }
        assert!(matches!(
            auth.check(PEER, &[creds("source", "hackme")]),
            Verdict::Waiting { retry_after } if retry_after <= SOURCE_BUDGET.window
        ));
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        assert!(matches!(
            auth.check(other, &[creds("source", "hackme")]),
            Verdict::Granted { .. }
        ));
    }

    #[test]
    fn without_a_password_or_accounts_live_input_is_closed() {
        let auth = SourceAuth::new(None, None);
        assert!(!auth.enabled());
        assert_eq!(auth.check(PEER, &[creds("source", "")]), Verdict::Closed);
        let only_djs = SourceAuth::new(None, Some(PathBuf::from("/nonexistent/accounts")));
        assert!(matches!(
            only_djs.check(PEER, &[creds("source", "")]),
            Verdict::Failed { .. }
        ));
    }
}
