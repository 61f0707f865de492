//! Log output that never waits. Every thread logs, the fan-out thread and the tokio workers
//! included, and stdout is a pipe to a log collector that may stop reading for a while: a
//! blocking write there would stop every listener. Lines go into a bounded queue instead, which
//! one writer thread drains to stdout in large writes; when the queue is full the line is dropped
//! and counted (`onair_log_lines_dropped_total`), never waited for.

use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use prometheus::IntCounter;
use tracing_subscriber::fmt::MakeWriter;

/// Lines held for a slow stdout (a few hundred bytes each: about a megabyte at most).
pub const QUEUE_LINES: usize = 4096;
/// Bytes the writer thread gathers into one write.
const BATCH_BYTES: usize = 64 * 1024;

enum Msg {
    Line(Vec<u8>),
    /// Answered once every line queued before it has been written.
    Flush(SyncSender<()>),
}

/// The [`MakeWriter`] for `tracing_subscriber`: each event is one `write` of one whole line.
#[derive(Clone)]
pub struct NonBlocking {
    tx: SyncSender<Msg>,
    dropped: IntCounter,
}

/// Keeps the writer thread's queue reachable for a final [`LogGuard::flush`] at exit.
pub struct LogGuard {
    tx: SyncSender<Msg>,
}

/// Starts the writer thread for stdout; lines that do not fit in the queue count on `dropped`.
pub fn stdout(dropped: IntCounter) -> io::Result<(NonBlocking, LogGuard)> {
    let (tx, rx) = sync_channel(QUEUE_LINES);
    std::thread::Builder::new()
        .name("onair-log".into())
        .spawn(move || write_lines(&rx, &mut io::stdout()))?;
    Ok((
        NonBlocking {
            tx: tx.clone(),
            dropped,
        },
        LogGuard { tx },
    ))
}

fn write_lines(rx: &Receiver<Msg>, out: &mut impl Write) {
    let mut batch = Vec::with_capacity(BATCH_BYTES);
    let mut acks = Vec::new();
    while let Ok(msg) = rx.recv() {
        let mut next = Some(msg);
        while let Some(msg) = next {
            match msg {
                Msg::Line(line) => batch.extend_from_slice(&line),
                Msg::Flush(ack) => acks.push(ack),
            }
            next = (batch.len() < BATCH_BYTES)
                .then(|| rx.try_recv().ok())
                .flatten();
        }
        // Nowhere to report a failing stdout: the lines are lost, as they would be anyway.
        let _ = out.write_all(&batch).and_then(|()| out.flush());
        batch.clear();
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
    }
}

/// How long [`LogGuard`]'s drop waits for the last lines to be written.
pub const EXIT_FLUSH: Duration = Duration::from_secs(2);

impl LogGuard {
    /// Waits until the lines logged so far are written, for at most `limit`: a stdout nobody
    /// reads must not keep the process from exiting.
    pub fn flush(&self, limit: Duration) {
        flush(&self.tx, limit);
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.flush(EXIT_FLUSH);
    }
}

fn flush(tx: &SyncSender<Msg>, limit: Duration) {
    let deadline = Instant::now() + limit;
    let (ack_tx, ack_rx) = sync_channel(1);
    let mut msg = Msg::Flush(ack_tx);
    loop {
        match tx.try_send(msg) {
            Ok(()) => break,
            Err(TrySendError::Full(m)) if Instant::now() < deadline => {
                msg = m;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(_) => return,
        }
    }
    // A timeout means stdout is stuck: the remaining lines go with the process.
    let _ = ack_rx.recv_timeout(deadline.saturating_duration_since(Instant::now()));
}

/// One event's line on its way to the queue.
pub struct LineWriter<'a> {
    sink: &'a NonBlocking,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.sink.tx.try_send(Msg::Line(buf.to_vec())) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.sink.dropped.inc(),
            // The writer thread is gone (it never ends while the guard lives): nothing to do.
            Err(TrySendError::Disconnected(_)) => {}
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for NonBlocking {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> LineWriter<'a> {
        LineWriter { sink: self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_written_in_order_and_flushed() {
        let (tx, rx) = sync_channel(8);
        let writer = NonBlocking {
            tx: tx.clone(),
            dropped: crate::metrics::log_lines_dropped(),
        };
        let out = std::thread::spawn(move || {
            let mut out = Vec::new();
            write_lines(&rx, &mut out);
            out
        });
        for i in 0..3 {
            writer
                .make_writer()
                .write_all(format!("line {i}\n").as_bytes())
                .unwrap();
        }
        flush(&tx, Duration::from_secs(5));
        drop((writer, tx));
        assert_eq!(out.join().unwrap(), b"line 0\nline 1\nline 2\n");
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        // Nobody drains this queue, as when stdout is a pipe nobody reads.
        let (tx, _rx) = sync_channel(2);
        let writer = NonBlocking {
            tx,
            dropped: crate::metrics::log_lines_dropped(),
        };
        for _ in 0..5 {
            writer.make_writer().write_all(b"x\n").unwrap();
        }
        assert_eq!(writer.dropped.get(), 3);
        let started = Instant::now();
        flush(&writer.tx, Duration::from_millis(200));
        assert!(started.elapsed() < Duration::from_secs(5), "flush gives up");
    }
}
