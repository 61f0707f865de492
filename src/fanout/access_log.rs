//! The access log: one line per finished listener in Icecast's combined format, with the seconds
//! connected at the end, so existing log analysers (listener hours, user agents) work unchanged.
//! Lines go to a file when the config names one, else into the JSON log as the `access` field.
//!
//! A listener ends on the fan-out thread, which must never wait on a disk: its record is handed
//! over a bounded queue (moved, not copied) to a writer thread that formats it and writes the
//! whole line with one `write`. A full queue drops the record and counts it
//! (`onair_access_log_dropped_total`). [`AccessLog::reopen`] (SIGHUP) makes the writer open the
//! file again by name, for logrotate.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use prometheus::IntCounter;
use tokio::sync::mpsc;

use crate::dates::clf_date;

/// Records held for a slow disk; the queue allocates as it fills, not up front.
const QUEUE_RECORDS: usize = 4096;

/// Where access lines go.
pub struct AccessLog {
    tx: mpsc::Sender<Msg>,
    reopen: Arc<AtomicBool>,
    dropped: IntCounter,
}

/// What the access log records of one listener.
#[derive(Debug, Clone)]
pub struct AccessRecord {
    pub ip: IpAddr,
    pub request_line: String,
    pub status: u16,
    pub bytes: u64,
    pub referer: String,
    pub user_agent: Arc<str>,
    pub connected_at: SystemTime,
    pub duration: Duration,
}

enum Msg {
    Record(AccessRecord),
    /// Look at the reopen flag now.
    Wake,
    /// Answered once every record queued before it is written.
    Flush(std::sync::mpsc::SyncSender<()>),
}

enum Target {
    File { path: PathBuf, file: File },
    Log,
}

impl AccessLog {
    /// Opens (appending) the file, or logs to stdout when there is none, and starts the writer.
    pub fn open(path: Option<&Path>, dropped: IntCounter) -> std::io::Result<AccessLog> {
        let target = match path {
            Some(p) => Target::File {
                path: p.to_owned(),
                file: append(p)?,
            },
            None => Target::Log,
        };
        let (tx, rx) = mpsc::channel(QUEUE_RECORDS);
        let reopen = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&reopen);
        std::thread::Builder::new()
            .name("onair-access-log".into())
            .spawn(move || write_records(rx, target, &flag))?;
        Ok(AccessLog {
            tx,
            reopen,
            dropped,
        })
    }

    /// Queues one record; never waits. A failing disk never stops a stream either: the writer
    /// logs the error instead.
    pub fn record(&self, record: AccessRecord) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(Msg::Record(record)) {
            self.dropped.inc();
        }
    }

    /// Makes the writer open the file again by its name (after logrotate moved it away).
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Release);
        // A full queue is being worked through, and the flag is looked at after every record.
        let _ = self.tx.try_send(Msg::Wake);
    }

    /// Waits, at most `limit`, until every record queued so far is written.
    pub async fn flush(&self, limit: Duration) {
        let (ack_tx, ack_rx) = std::sync::mpsc::sync_channel(1);
        let _ = tokio::time::timeout(limit, async {
            if self.tx.send(Msg::Flush(ack_tx)).await.is_ok() {
                // The writer answers as soon as it reaches the message; waiting for it blocks,
                // so it waits on the blocking pool.
                let _ = tokio::task::spawn_blocking(move || ack_rx.recv()).await;
            }
        })
        .await;
    }
}

fn append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn write_records(mut rx: mpsc::Receiver<Msg>, mut target: Target, reopen: &AtomicBool) {
    let mut line = Vec::with_capacity(512);
    while let Some(msg) = rx.blocking_recv() {
        if reopen.swap(false, Ordering::AcqRel)
            && let Target::File { path, file } = &mut target
        {
            match append(path) {
                Ok(f) => {
                    *file = f;
                    tracing::info!(path = %path.display(), "access log reopened");
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot reopen the access log; writing to the old file")
                }
            }
        }
        match msg {
            Msg::Record(r) => {
                line.clear();
                format_line(&r, &mut line);
                match &mut target {
                    // One write for the whole line: a reader never sees half of one, and two
                    // processes appending to the same file cannot interleave inside it.
                    Target::File { file, .. } => {
                        line.push(b'\n');
                        if let Err(e) = file.write_all(&line) {
                            tracing::warn!(error = %e, "cannot write the access log");
                        }
                    }
                    Target::Log => {
                        let text = String::from_utf8_lossy(&line);
                        tracing::info!(target: "onair::access", access = %text, "listener access");
                    }
                }
            }
            Msg::Wake => {}
            Msg::Flush(ack) => {
                let _ = ack.send(());
            }
        }
    }
}

/// `ip - - [date] "request" status bytes "referer" "agent" seconds`, into `out`.
fn format_line(e: &AccessRecord, out: &mut Vec<u8>) {
    let quoted = |out: &mut Vec<u8>, s: &str| {
        out.push(b'"');
        if s.is_empty() {
            out.push(b'-');
        }
        escape(s, out);
        out.push(b'"');
    };
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{} - - [{}] ", e.ip, clf_date(e.connected_at));
    out.push(b'"');
    escape(&e.request_line, out);
    out.push(b'"');
    let _ = write!(out, " {} {} ", e.status, e.bytes);
    quoted(out, &e.referer);
    out.push(b' ');
    quoted(out, &e.user_agent);
    let _ = write!(out, " {}", e.duration.as_secs());
}

/// As Apache escapes quoted log fields: `"` and `\` get a backslash, control characters become
/// `\n`, `\r`, `\t` or `\xHH`, so a hostile user agent cannot end a field or forge a line.
fn escape(s: &str, out: &mut Vec<u8>) {
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f | 0x7f => {
                let _ = write!(out, "\\x{b:02x}");
            }
            _ => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn line(e: &AccessRecord) -> String {
        let mut out = Vec::new();
        format_line(e, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn record(user_agent: &str) -> AccessRecord {
        AccessRecord {
            ip: "10.0.0.7".parse().unwrap(),
            request_line: "GET /radio.mp3 HTTP/1.1".into(),
            status: 200,
            bytes: 160_000,
            referer: String::new(),
            user_agent: Arc::from(user_agent),
            connected_at: UNIX_EPOCH + Duration::from_secs(1_795_790_000),
            duration: Duration::from_millis(10_900),
        }
    }

    #[test]
    fn combined_format_with_seconds_at_the_end() {
        assert_eq!(
            line(&record("VLC/3.0.18 \"LibVLC\"")),
            "10.0.0.7 - - [27/Nov/2026:14:33:20 +0000] \"GET /radio.mp3 HTTP/1.1\" 200 160000 \"-\" \"VLC/3.0.18 \\\"LibVLC\\\"\" 10"
        );
    }

    #[test]
    fn backslashes_and_control_characters_cannot_break_a_field() {
        let mut r = record("evil\\\" 200 1 \"x\r\n1.2.3.4 - - forged\u{1}\u{7f}\tÉ");
        r.request_line = "GET /radio.mp3?\\\" HTTP/1.1".into();
        assert_eq!(
            line(&r),
            "10.0.0.7 - - [27/Nov/2026:14:33:20 +0000] \"GET /radio.mp3?\\\\\\\" HTTP/1.1\" 200 160000 \"-\" \
             \"evil\\\\\\\" 200 1 \\\"x\\r\\n1.2.3.4 - - forged\\x01\\x7f\\tÉ\" 10"
        );
    }

    #[tokio::test]
    async fn appends_to_the_file_and_reopens_it_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let log = AccessLog::open(Some(&path), IntCounter::new("t", "t").unwrap()).unwrap();
        log.record(record("a"));
        log.record(record("b"));
        log.flush(Duration::from_secs(10)).await;
        let rotated = dir.path().join("access.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        log.reopen();
        log.record(record("c"));
        log.flush(Duration::from_secs(10)).await;
        let old = std::fs::read_to_string(&rotated).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert_eq!(old.lines().count(), 2, "{old}");
        assert!(old.ends_with("\"a\" 10\n10.0.0.7 - - [27/Nov/2026:14:33:20 +0000] \"GET /radio.mp3 HTTP/1.1\" 200 160000 \"-\" \"b\" 10\n"));
        assert_eq!(new.lines().count(), 1, "{new}");
        assert!(new.contains("\"c\""));
    }
}
