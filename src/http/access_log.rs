//! The access log: one line per finished listener in Icecast's combined format, with the seconds
//! connected at the end, so existing log analysers (listener hours, user agents) work unchanged.
//! Lines go to a file when the config names one, else into the JSON log as the `access` field.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use super::status::clf_date;

/// Where access lines go.
pub struct AccessLog {
    file: Option<Mutex<File>>,
}

/// What the access log records of one listener.
pub struct AccessEntry<'a> {
    pub ip: IpAddr,
    pub request_line: &'a str,
    pub status: u16,
    pub bytes: u64,
    pub referer: &'a str,
    pub user_agent: &'a str,
    pub connected_at: SystemTime,
    pub duration: Duration,
}

impl AccessLog {
    /// Opens (appending) the file, or logs to stdout when there is none.
    pub fn open(path: Option<&Path>) -> std::io::Result<AccessLog> {
        let file = match path {
            Some(p) => Some(Mutex::new(
                OpenOptions::new().create(true).append(true).open(p)?,
            )),
            None => None,
        };
        Ok(AccessLog { file })
    }

    /// Writes one line. A failing disk never stops a stream: the error is logged instead.
    pub fn record(&self, e: &AccessEntry<'_>) {
        let line = format_line(e);
        match &self.file {
            Some(f) => {
                let mut f = f.lock().unwrap_or_else(|p| p.into_inner());
                if let Err(err) = writeln!(f, "{line}") {
                    tracing::warn!(error = %err, "cannot write the access log");
                }
            }
            None => tracing::info!(target: "onair::access", access = %line, "listener access"),
        }
    }
}

/// `ip - - [date] "request" status bytes "referer" "agent" seconds`
fn format_line(e: &AccessEntry<'_>) -> String {
    let q = |s: &str| {
        if s.is_empty() {
            "-".to_string()
        } else {
            s.replace('"', "\\\"")
        }
    };
    format!(
        "{} - - [{}] \"{}\" {} {} \"{}\" \"{}\" {}",
        e.ip,
        clf_date(e.connected_at),
        e.request_line.replace('"', "\\\""),
        e.status,
        e.bytes,
        q(e.referer),
        q(e.user_agent),
        e.duration.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn combined_format_with_seconds_at_the_end() {
        let line = format_line(&AccessEntry {
            ip: "10.0.0.7".parse().unwrap(),
            request_line: "GET /radio.mp3 HTTP/1.1",
            status: 200,
            bytes: 160_000,
            referer: "",
            user_agent: "VLC/3.0.18 \"LibVLC\"",
            connected_at: UNIX_EPOCH + Duration::from_secs(1_795_790_000),
            duration: Duration::from_millis(10_900),
        });
        assert_eq!(
            line,
            "10.0.0.7 - - [27/Nov/2026:14:33:20 +0000] \"GET /radio.mp3 HTTP/1.1\" 200 160000 \"-\" \"VLC/3.0.18 \\\"LibVLC\\\"\" 10"
        );
    }

    #[test]
    fn appends_to_the_configured_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let log = AccessLog::open(Some(&path)).unwrap();
        let entry = AccessEntry {
            ip: "127.0.0.1".parse().unwrap(),
            request_line: "GET /a HTTP/1.0",
            status: 200,
            bytes: 1,
            referer: "",
            user_agent: "",
            connected_at: SystemTime::now(),
            duration: Duration::ZERO,
        };
        log.record(&entry);
        log.record(&entry);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
    }
}
