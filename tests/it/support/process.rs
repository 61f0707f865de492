//! The real `onair` binary as a child process, for what only a process has: its stdout, its file
//! descriptor limit, its signals. It listens on port 0 and the test learns the address from the
//! "radio on air" log line, so no port is guessed.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `onair` and what it logged so far.
pub struct Onair {
    child: Child,
    pub addr: SocketAddr,
    /// JSON log lines read from its stdout (only while the test keeps reading it).
    pub logs: Arc<Mutex<Vec<serde_json::Value>>>,
    /// The stdout pipe, held open but never read again (see [`Stdout::StopReading`]).
    _unread: Option<BufReader<ChildStdout>>,
}

/// What happens to the child's stdout once it is up.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Stdout {
    /// Keep reading every line into [`Onair::logs`].
    Read,
    /// Never read again: the pipe fills, as when a log collector stops reading.
    StopReading,
}

impl Onair {
    /// Runs `prefix… onair --config <dir>/radio.toml --listen 127.0.0.1:0` (with `prefix`, e.g.
    /// `prlimit --nofile=256:4096`), `config` written to `dir`, and waits for it to listen.
    pub fn spawn(dir: &Path, config: &str, prefix: &[&str], stdout: Stdout) -> Onair {
        let file = dir.join("radio.toml");
        std::fs::write(&file, config).unwrap();
        let binary = env!("CARGO_BIN_EXE_onair");
        let (program, args): (&str, Vec<&str>) = match prefix.split_first() {
            Some((p, rest)) => (p, rest.iter().copied().chain([binary]).collect()),
            None => (binary, Vec::new()),
        };
        let mut child = Command::new(program)
            .args(args)
            .arg("--config")
            .arg(&file)
            .args(["--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("running {program}: {e}"));
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (up_tx, up_rx) = mpsc::channel();
        let shared = Arc::clone(&logs);
        std::thread::spawn(move || {
            let mut line = String::new();
            loop {
                line.clear();
                if out.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                let on_air = v["message"] == "radio on air";
                if on_air {
                    let addr: SocketAddr = v["addr"].as_str().unwrap().parse().unwrap();
                    shared.lock().unwrap().push(v);
                    if stdout == Stdout::StopReading {
                        let _ = up_tx.send((addr, Some(out)));
                        return;
                    }
                    let _ = up_tx.send((addr, None));
                } else {
                    shared.lock().unwrap().push(v);
                }
            }
        });
        let (addr, unread) = up_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("onair logs \"radio on air\" within 30 s");
        Onair {
            child,
            addr,
            logs,
            _unread: unread,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Sends a signal by name (`TERM`, `HUP`) with kill(1).
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name}");
    }

    /// Whether a log line with this message came (only with [`Stdout::Read`]).
    pub fn logged(&self, message: &str) -> Option<serde_json::Value> {
        let logs = self.logs.lock().unwrap();
        logs.iter().find(|l| l["message"] == message).cloned()
    }

    /// Waits for the process to end by itself: its exit code (`None`: killed by a signal), and
    /// how long that took; panics after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> (Option<i32>, Duration) {
        let t = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code(), t.elapsed());
            }
            assert!(t.elapsed() < limit, "still running after {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then waits for the exit code, for at most `limit`.
    pub fn stop(mut self, limit: Duration) -> Option<i32> {
        self.signal("TERM");
        let t = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(t.elapsed() < limit, "still running {limit:?} after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Onair {
    fn drop(&mut self) {
        // A test that failed half-way must not leave the radio running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A config for the binary with the test library, `server` lines added to `[server]`.
pub fn config(library: &Path, server: &str) -> String {
    format!(
        "[station]\nname = \"Process Radio\"\n[server]\nshutdown_grace = \"1s\"\n{server}\n\
         [library]\nkind = \"local\"\npath = \"{}\"\n[[mount]]\npath = \"/radio.mp3\"\n",
        library.display()
    )
}
