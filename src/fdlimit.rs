//! The process's file-descriptor limit. Every listener is a socket, and a systemd host starts
//! services with a soft limit of 1,024 while allowing far more: the soft limit is raised to the
//! hard one at start, and the configured limits are compared with what is left.

use crate::config::Config;

/// Descriptors the radio needs besides connections: the listening sockets, library files being
/// read, the log and access-log files, the runtime's own (epoll, eventfd, signal pipe).
const RESERVED: u64 = 64;

/// The soft limit before and after [`raise`], and the hard limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    pub was: u64,
    pub soft: u64,
    pub hard: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (raising the soft limit needs no privilege)
/// and logs both. On a failure the limit stays as it was, with a warning.
pub fn raise() -> std::io::Result<FdLimit> {
    let (was, hard) = rlimit::Resource::NOFILE.get()?;
    let mut soft = was;
    if was < hard {
        match rlimit::Resource::NOFILE.set(hard, hard) {
            Ok(()) => soft = hard,
            Err(e) => {
                tracing::warn!(error = %e, soft = was, hard, "cannot raise the file descriptor limit")
            }
        }
    }
    tracing::info!(
        soft,
        hard,
        was,
        "file descriptor limit{}",
        if soft > was { " raised" } else { "" }
    );
    Ok(FdLimit { was, soft, hard })
}

/// Descriptors the config may ask for at most: every mount full, every other connection slot
/// taken, and the fixed ones.
pub fn needed(config: &Config) -> u64 {
    let listeners: u64 = config.mounts.iter().map(|m| m.max_listeners as u64).sum();
    listeners + config.server.max_connections as u64 + RESERVED
}

/// Warns when the config's limits cannot all be reached under `limit`: past it, `accept()` fails
/// and new clients wait in the listen queue, whatever `max_listeners` says.
pub fn check(config: &Config, limit: FdLimit) {
    let needed = needed(config);
    if needed > limit.soft {
        tracing::warn!(
            needed,
            soft = limit.soft,
            max_listeners = config.mounts.iter().map(|m| m.max_listeners).sum::<usize>(),
            max_connections = config.server.max_connections,
            "the mounts' max_listeners plus server.max_connections exceed the file descriptor limit; \
             lower them or raise the hard limit (LimitNOFILE, ulimit -Hn)"
        );
    }
}
