//! What the kernel tells about a process: CPU time, RSS, threads and open descriptors from /proc
//! (the server's and our own), whether it is still alive, and raising our open-file limit.

/// One reading of a process's cost so far.
#[derive(Clone, Copy, Default)]
pub struct ProcSample {
    /// utime + stime, seconds.
    pub cpu: f64,
    /// Resident set size, KiB (0 when /proc does not say).
    pub rss_kib: u64,
    /// Threads (0 when /proc does not say).
    pub threads: u64,
}

/// A process's open descriptors, by kind.
#[derive(Clone, Copy, Default)]
pub struct Fds {
    pub total: u64,
    /// Sockets (TCP connections and listening sockets, Unix sockets).
    pub sockets: u64,
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// Reads `/proc/<pid>/stat` and `status`; `pid` may be `"self"`. `None` when the process is gone
/// or unreadable.
pub fn sample(pid: &str) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at state (field 3).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Some(ProcSample {
        cpu: (utime + stime) / clock_ticks(),
        rss_kib: field("VmRSS:"),
        threads: field("Threads:"),
    })
}

/// Counts the entries of `/proc/<pid>/fd`; `None` when the process is gone or unreadable. A
/// descriptor closed while the directory is read is simply not counted.
pub fn fds(pid: &str) -> Option<Fds> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    let mut n = Fds::default();
    for entry in dir.flatten() {
        n.total += 1;
        if std::fs::read_link(entry.path())
            .is_ok_and(|t| t.as_os_str().as_encoded_bytes().starts_with(b"socket:"))
        {
            n.sockets += 1;
        }
    }
    Some(n)
}

/// The process exists and has not exited (a zombie or a dead task counts as gone).
pub fn alive(pid: &str) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next());
    !matches!(state, None | Some("Z" | "X" | "x"))
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the limit now in force (0 if unknown).
pub fn raise_nofile() -> u64 {
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 0;
        }
        if r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        }
        r.rlim_cur
    }
}
