//! Show recordings (`[live] record = true`): each live show's bytes, exactly as the DJ's tool
//! sent them, written to the library's storage under `recordings/` while the show runs: a file
//! in the library folder, or an object in the bucket by a multipart upload of 5 MiB parts, so
//! a show is never held whole in memory. One recording per show, named by its start time and
//! DJ; the same DJ reconnecting within `underrun_grace` continues it (an MP3 tool's new ID3
//! tag is left out there, so the file stays one clean stream; an Ogg show becomes a chain).
//!
//! The session's socket task hands its chunks over without waiting (a reference to the bytes
//! it read, no copy). When storage falls behind by more than [`QUEUE_BYTES`], bytes are left
//! out of the recording and counted, never held up on air.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::handshake::Format;
use crate::catalog::s3::{MIN_PART_BYTES, Upload};
use crate::catalog::{RECORDINGS_DIR, S3Catalog};
use crate::config::{Config, LibraryKind};
use crate::metrics::Metrics;

/// Bytes a show may have queued ahead of its recording's writes: minutes of audio at broadcast
/// bitrates, so only a storage outage, not a slow write, loses any.
const QUEUE_BYTES: usize = 4 << 20;
/// Buffer of a recording file: writes reach the disk in pieces of this size.
const FILE_BUFFER: usize = 64 << 10;

/// Where recordings go.
enum Store {
    /// `recordings/` in the library folder.
    Folder(PathBuf),
    /// `recordings/` under the library's prefix in its (primary) bucket.
    Bucket(S3Catalog),
}

/// Records the radio's live shows. One per radio, shared by every source session.
pub struct Recorder {
    store: Store,
    /// How long a show's recording waits for its DJ to come back.
    rejoin: Duration,
    metrics: Metrics,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    /// The show being recorded (or waiting for its DJ), if any.
    open: Mutex<Option<OpenShow>>,
    next_id: AtomicU64,
}

struct OpenShow {
    id: u64,
    user: String,
    format: Format,
    tx: mpsc::UnboundedSender<Event>,
    /// Sessions of this show that are connected.
    sessions: usize,
    backlog: Arc<Backlog>,
}

/// What a show's sessions queued for its recording and could not.
#[derive(Default)]
struct Backlog {
    queued: AtomicUsize,
    dropped: AtomicU64,
}

enum Event {
    Data(Bytes),
    Joined,
    Left,
}

/// A session's feed into its show's recording. Dropping it tells the recording the session
/// ended.
pub struct Tap {
    recorder: Arc<Recorder>,
    show: u64,
    tx: mpsc::UnboundedSender<Event>,
    backlog: Arc<Backlog>,
    /// What came before the stream was known to be audio: kept back, so that a connection
    /// that never decodes leaves no recording.
    held: Vec<Bytes>,
    held_bytes: usize,
}

impl Recorder {
    /// The radio's recorder, or `None` when `[live] record` is off. A library folder must be
    /// able to take `recordings/`; a bucket is not asked until the first show.
    pub fn open(
        config: &Config,
        metrics: Metrics,
        tasks: TaskTracker,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Option<Arc<Recorder>>> {
        if !config.live.record {
            return Ok(None);
        }
        let store = match &config.library.kind {
            LibraryKind::Local { path } => {
                let dir = path.join(RECORDINGS_DIR);
                std::fs::create_dir_all(&dir).with_context(|| {
                    format!("live.record = true: cannot create {}", dir.display())
                })?;
                Store::Folder(dir)
            }
            LibraryKind::S3(s3) => Store::Bucket(
                S3Catalog::from_env(&s3.storage)
                    .context("live.record = true: the library's bucket")?,
            ),
        };
        Ok(Some(Arc::new(Recorder {
            store,
            rejoin: config.live.underrun_grace,
            metrics,
            tasks,
            shutdown,
            open: Mutex::new(None),
            next_id: AtomicU64::new(1),
        })))
    }

    fn open_show(&self) -> MutexGuard<'_, Option<OpenShow>> {
        // Plain field updates under the lock: a panic cannot leave it half-written.
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The recording a session of `user` sending `format` feeds: their show's, when it is
    /// still open, else a new one (which closes any other show's).
    pub fn join(self: &Arc<Self>, user: &str, format: Format) -> Tap {
        let mut open = self.open_show();
        if let Some(show) = open.as_mut()
            && show.user == user
            && show.format == format
        {
            show.sessions += 1;
            let _ = show.tx.send(Event::Joined);
            tracing::info!(user, "the DJ is back: their show's recording goes on");
            return Tap::new(self, show.id, show.tx.clone(), Arc::clone(&show.backlog));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        let backlog = Arc::new(Backlog::default());
        // Replacing the open show drops its sender: that recording ends once its last
        // session has.
        *open = Some(OpenShow {
            id,
            user: user.to_owned(),
            format,
            tx: tx.clone(),
            sessions: 1,
            backlog: Arc::clone(&backlog),
        });
        let recording = Recording {
            recorder: Arc::clone(self),
            id,
            name: recording_name(SystemTime::now(), user),
            format,
            backlog: Arc::clone(&backlog),
            writer: Writer::Unopened,
            written: 0,
            lost: false,
            tag_cut: TagCut::Off,
        };
        self.tasks.spawn(recording.run(rx));
        Tap::new(self, id, tx, backlog)
    }

    /// A session of show `id` ended.
    fn left(&self, id: u64) {
        let mut open = self.open_show();
        if let Some(show) = open.as_mut().filter(|s| s.id == id) {
            show.sessions = show.sessions.saturating_sub(1);
        }
    }

    /// Whether show `id` is over: no session of it is connected and it stays so (no longer
    /// the open show), or another show holds the recorder.
    fn close_if_idle(&self, id: u64) -> bool {
        let mut open = self.open_show();
        match open.as_ref() {
            Some(show) if show.id == id && show.sessions > 0 => false,
            Some(show) if show.id == id => {
                *open = None;
                true
            }
            _ => true,
        }
    }
}

impl Tap {
    fn new(
        recorder: &Arc<Recorder>,
        show: u64,
        tx: mpsc::UnboundedSender<Event>,
        backlog: Arc<Backlog>,
    ) -> Tap {
        Tap {
            recorder: Arc::clone(recorder),
            show,
            tx,
            backlog,
            held: Vec::new(),
            held_bytes: 0,
        }
    }

    /// Records `chunk`, as received. Until `decodes`, chunks are held back.
    pub fn record(&mut self, chunk: &Bytes, decodes: bool) {
        if !decodes {
            if self.held_bytes + chunk.len() <= QUEUE_BYTES {
                self.held_bytes += chunk.len();
                self.held.push(chunk.clone());
            } else {
                self.drop_bytes(chunk.len());
            }
            return;
        }
        for held in std::mem::take(&mut self.held) {
            self.send(held);
        }
        self.held_bytes = 0;
        self.send(chunk.clone());
    }

    fn send(&mut self, chunk: Bytes) {
        let len = chunk.len();
        let queued = &self.backlog.queued;
        if queued.load(Ordering::Relaxed) + len > QUEUE_BYTES {
            return self.drop_bytes(len);
        }
        queued.fetch_add(len, Ordering::Relaxed);
        if self.tx.send(Event::Data(chunk)).is_err() {
            // The recording is closed (only after its last session left).
            queued.fetch_sub(len, Ordering::Relaxed);
        }
    }

    fn drop_bytes(&mut self, len: usize) {
        if self
            .backlog
            .dropped
            .fetch_add(len as u64, Ordering::Relaxed)
            == 0
        {
            tracing::warn!(
                "the show's recording cannot keep up with storage: leaving bytes out of it"
            );
        }
        self.recorder
            .metrics
            .live_recording_dropped_bytes
            .inc_by(len as u64);
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.recorder.left(self.show);
        let _ = self.tx.send(Event::Left);
    }
}

/// One show's recording, written by its own task.
struct Recording {
    recorder: Arc<Recorder>,
    id: u64,
    /// File or object name in `recordings/`, without extension.
    name: String,
    format: Format,
    backlog: Arc<Backlog>,
    writer: Writer,
    written: u64,
    /// Some of the show is missing: a write failed or storage fell behind.
    lost: bool,
    tag_cut: TagCut,
}

/// A rejoining MP3 session's leading ID3v2 tag, left out of the recording: in the middle of a
/// file, players take it for damage (ffmpeg: "Header missing").
enum TagCut {
    Off,
    /// The session's first bytes, until there are enough to see a tag.
    Head(Vec<u8>),
    /// Bytes of the tag still to leave out.
    Skip(usize),
}

impl TagCut {
    /// What of `chunk` goes into the recording.
    fn cut(&mut self, chunk: Bytes) -> Option<Bytes> {
        match self {
            TagCut::Off => Some(chunk),
            TagCut::Skip(left) => {
                let n = (*left).min(chunk.len());
                *left -= n;
                if *left == 0 {
                    *self = TagCut::Off;
                }
                Some(chunk.slice(n..)).filter(|rest| !rest.is_empty())
            }
            TagCut::Head(head) => {
                head.extend_from_slice(&chunk);
                if head.len() < 10 {
                    return None;
                }
                let head = Bytes::from(std::mem::take(head));
                match id3v2_len(&head) {
                    None => {
                        *self = TagCut::Off;
                        Some(head)
                    }
                    Some(len) => {
                        *self = TagCut::Skip(len);
                        self.cut(head)
                    }
                }
            }
        }
    }
}

/// The length of the ID3v2 tag `head` starts with (header, body and footer).
fn id3v2_len(head: &[u8]) -> Option<usize> {
    let [b'I', b'D', b'3', major, _, flags, s0, s1, s2, s3, ..] = *head else {
        return None;
    };
    if major == 0xff || [s0, s1, s2, s3].iter().any(|b| b & 0x80 != 0) {
        return None;
    }
    let size = [s0, s1, s2, s3]
        .iter()
        .fold(0usize, |n, &b| (n << 7) | usize::from(b));
    let footer = if flags & 0x10 != 0 { 10 } else { 0 };
    Some(10 + size + footer)
}

enum Writer {
    /// No byte came yet.
    Unopened,
    File {
        file: tokio::io::BufWriter<tokio::fs::File>,
        partial: PathBuf,
        done: PathBuf,
    },
    Upload {
        upload: Upload,
        part: BytesMut,
    },
    /// Storage refused the recording; the rest of the show is not recorded.
    Failed,
}

impl Recording {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Event>) {
        let recorder = Arc::clone(&self.recorder);
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            let event = match deadline {
                None => rx.recv().await,
                Some(at) => tokio::select! {
                    event = rx.recv() => event,
                    _ = tokio::time::sleep_until(at) => {
                        if recorder.close_if_idle(self.id) {
                            break;
                        }
                        deadline = None;
                        continue;
                    }
                    _ = recorder.shutdown.cancelled() => {
                        if recorder.close_if_idle(self.id) {
                            break;
                        }
                        deadline = None;
                        continue;
                    }
                },
            };
            match event {
                None => break,
                Some(Event::Data(chunk)) => {
                    self.backlog
                        .queued
                        .fetch_sub(chunk.len(), Ordering::Relaxed);
                    self.write(chunk).await;
                }
                Some(Event::Joined) => {
                    deadline = None;
                    if self.format == Format::Mp3 && !matches!(self.writer, Writer::Unopened) {
                        self.tag_cut = TagCut::Head(Vec::new());
                    }
                }
                Some(Event::Left) => {
                    deadline = Some(tokio::time::Instant::now() + recorder.rejoin);
                    if recorder.shutdown.is_cancelled() && recorder.close_if_idle(self.id) {
                        break;
                    }
                }
            }
        }
        // Whatever a last session queued before the recording closed.
        while let Ok(event) = rx.try_recv() {
            if let Event::Data(chunk) = event {
                self.write(chunk).await;
            }
        }
        self.finish().await;
    }

    async fn write(&mut self, chunk: Bytes) {
        let Some(chunk) = self.tag_cut.cut(chunk) else {
            return;
        };
        if matches!(self.writer, Writer::Unopened) {
            self.writer = self.start(&chunk).await;
        }
        let len = chunk.len();
        let failed = match &mut self.writer {
            Writer::Unopened | Writer::Failed => {
                self.recorder
                    .metrics
                    .live_recording_dropped_bytes
                    .inc_by(len as u64);
                return;
            }
            Writer::File { file, partial, .. } => match file.write_all(&chunk).await {
                Ok(()) => None,
                Err(e) => Some(format!("{}: {e}", partial.display())),
            },
            Writer::Upload { upload, part } => {
                part.extend_from_slice(&chunk);
                if part.len() < MIN_PART_BYTES {
                    None
                } else {
                    let data = std::mem::replace(part, BytesMut::with_capacity(MIN_PART_BYTES));
                    upload
                        .part(data.freeze())
                        .await
                        .err()
                        .map(|e| e.to_string())
                }
            }
        };
        match failed {
            None => {
                self.written += len as u64;
                self.recorder.metrics.live_recorded_bytes.inc_by(len as u64);
            }
            Some(reason) => {
                tracing::error!(recording = %self.name, error = %reason,
                    "cannot write the show's recording: the rest of the show is not recorded");
                self.lost = true;
                self.recorder
                    .metrics
                    .live_recording_dropped_bytes
                    .inc_by(len as u64);
                // What reached storage is kept: a file as written, an upload's parts so far.
                let writer = std::mem::replace(&mut self.writer, Writer::Failed);
                self.keep(writer).await;
            }
        }
    }

    /// Opens the recording's file or upload, named with the extension the first bytes show.
    async fn start(&mut self, first: &Bytes) -> Writer {
        let (ext, content_type) = match sniff(first).unwrap_or(self.format) {
            Format::Mp3 => ("mp3", "audio/mpeg"),
            Format::Aac => ("aac", "audio/aac"),
            Format::Ogg => ("ogg", "audio/ogg"),
        };
        let started = match &self.recorder.store {
            Store::Folder(dir) => {
                open_file(dir, &self.name, ext)
                    .await
                    .map(|(file, partial, done)| {
                        self.name = file_name(&done);
                        Writer::File {
                            file,
                            partial,
                            done,
                        }
                    })
            }
            Store::Bucket(bucket) => {
                self.name = format!("{}.{ext}", self.name);
                bucket
                    .start_upload(&format!("{RECORDINGS_DIR}/{}", self.name), content_type)
                    .await
                    .map(|upload| Writer::Upload {
                        upload,
                        part: BytesMut::with_capacity(MIN_PART_BYTES),
                    })
                    .map_err(|e| e.to_string())
            }
        };
        match started {
            Ok(writer) => {
                tracing::info!(recording = %self.name, "recording the show");
                writer
            }
            Err(reason) => {
                tracing::error!(recording = %self.name, error = %reason, "cannot start the show's recording");
                self.lost = true;
                Writer::Failed
            }
        }
    }

    /// Closes what was written: the file renamed into place, the upload completed. Says
    /// whether anything was kept.
    async fn keep(&mut self, writer: Writer) -> bool {
        match writer {
            Writer::Unopened | Writer::Failed => false,
            Writer::File {
                mut file,
                partial,
                done,
            } => {
                if let Err(e) = file.flush().await {
                    tracing::error!(recording = %partial.display(), error = %e, "cannot write the end of the show's recording");
                    self.lost = true;
                }
                let _ = file.get_mut().sync_all().await;
                match tokio::fs::rename(&partial, &done).await {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::error!(recording = %partial.display(), error = %e, "cannot put the show's recording in place");
                        false
                    }
                }
            }
            Writer::Upload { mut upload, part } => {
                if !part.is_empty()
                    && let Err(e) = upload.part(part.freeze()).await
                {
                    tracing::error!(recording = %upload.key(), error = %e, "cannot upload the end of the show's recording");
                    self.lost = true;
                }
                let key = upload.key().to_owned();
                match upload.complete().await {
                    Ok(kept) => kept,
                    Err(e) => {
                        tracing::error!(recording = %key, error = %e, "cannot complete the show's recording");
                        false
                    }
                }
            }
        }
    }

    async fn finish(mut self) {
        let writer = std::mem::replace(&mut self.writer, Writer::Failed);
        let opened = !matches!(writer, Writer::Unopened);
        let kept = self.keep(writer).await;
        self.lost |= self.backlog.dropped.load(Ordering::Relaxed) > 0;
        let result = match (opened || self.lost, kept, self.lost) {
            (false, _, _) => "empty",
            (_, true, false) => "saved",
            (_, true, true) => "partial",
            (_, false, _) => "failed",
        };
        self.recorder
            .metrics
            .live_recordings
            .with_label_values(&[result])
            .inc();
        match result {
            "empty" => {}
            "saved" => {
                tracing::info!(recording = %self.name, bytes = self.written, "show recorded")
            }
            _ => tracing::warn!(recording = %self.name, bytes = self.written, result,
                "show recorded in part"),
        }
    }
}

/// `2026-12-02T10-15-03Z-dj_name`: sorts by start time, safe in file and object names.
fn recording_name(started: SystemTime, user: &str) -> String {
    let stamp = crate::dates::iso8601_utc(started).replace(':', "-");
    let mut dj: String = user
        .chars()
        .take(64)
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' => c,
            _ => '_',
        })
        .collect();
    if dj.is_empty() {
        dj.push_str("dj");
    }
    format!("{stamp}-{dj}")
}

/// The container the first bytes show, when they show one.
fn sniff(first: &[u8]) -> Option<Format> {
    match first {
        [b'O', b'g', b'g', b'S', ..] => Some(Format::Ogg),
        [b'I', b'D', b'3', ..] => Some(Format::Mp3),
        // ADTS: a 12-bit sync and layer 0; MPEG audio has a non-zero layer.
        [0xff, b, ..] if b & 0xf6 == 0xf0 => Some(Format::Aac),
        [0xff, b, ..] if b & 0xe0 == 0xe0 && b & 0x06 != 0 => Some(Format::Mp3),
        _ => None,
    }
}

/// Creates `<dir>/<name>.<ext>.partial`, where `<name>.<ext>` is free (a `-2`, `-3`… is added
/// when a show of the same second and DJ exists).
async fn open_file(
    dir: &Path,
    name: &str,
    ext: &str,
) -> Result<(tokio::io::BufWriter<tokio::fs::File>, PathBuf, PathBuf), String> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    for n in 1..100 {
        let stem = if n == 1 {
            name.to_owned()
        } else {
            format!("{name}-{n}")
        };
        let done = dir.join(format!("{stem}.{ext}"));
        let partial = dir.join(format!("{stem}.{ext}.partial"));
        if tokio::fs::try_exists(&done).await.unwrap_or(false) {
            continue;
        }
        match tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&partial)
            .await
        {
            Ok(file) => {
                return Ok((
                    tokio::io::BufWriter::with_capacity(FILE_BUFFER, file),
                    partial,
                    done,
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("{}: {e}", partial.display())),
        }
    }
    Err(format!("{}: no free name for {name}", dir.display()))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn names_sort_by_start_and_keep_only_safe_characters() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_790_000);
        assert_eq!(
            recording_name(t, "DJ Zoë/../x"),
            "2026-11-27T14-33-20Z-DJ_Zo_____x"
        );
        assert_eq!(recording_name(t, ""), "2026-11-27T14-33-20Z-dj");
    }

    #[test]
    fn a_rejoining_sessions_id3_tag_is_cut_across_chunks() {
        // A tag of 10 + 20 bytes, then audio, arriving in pieces of 7 bytes.
        let mut sent = b"ID3\x04\x00\x00\x00\x00\x00\x14".to_vec();
        sent.extend([0u8; 20]);
        sent.extend(b"\xff\xfbaudio");
        let mut cut = TagCut::Head(Vec::new());
        let kept: Vec<u8> = sent
            .chunks(7)
            .filter_map(|c| cut.cut(Bytes::copy_from_slice(c)))
            .flat_map(|b| b.to_vec())
            .collect();
        assert_eq!(kept, b"\xff\xfbaudio");

        // No tag: everything is kept.
        let mut cut = TagCut::Head(Vec::new());
        let kept: Vec<u8> = [&b"\xff\xfb\x90"[..], b"\x64abcdefgh"]
            .iter()
            .filter_map(|c| cut.cut(Bytes::copy_from_slice(c)))
            .flat_map(|b| b.to_vec())
            .collect();
        assert_eq!(kept, b"\xff\xfb\x90\x64abcdefgh");
    }

    #[test]
    fn the_first_bytes_name_the_container() {
        assert_eq!(sniff(b"OggS\0\x02"), Some(Format::Ogg));
        assert_eq!(sniff(b"ID3\x04\0"), Some(Format::Mp3));
        assert_eq!(sniff(&[0xff, 0xfb, 0x90, 0x64]), Some(Format::Mp3));
        assert_eq!(sniff(&[0xff, 0xf1, 0x50, 0x80]), Some(Format::Aac));
        assert_eq!(sniff(&[0xff, 0xf9, 0x50, 0x80]), Some(Format::Aac));
        assert_eq!(sniff(b"\x12\x34"), None);
    }
}
