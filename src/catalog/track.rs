//! [`TrackData`]: a fetched track's bytes, held where they can be read without storage: a file on
//! local disk (a library file, a disk-cache entry, or an unnamed scratch copy of a track too large
//! to cache) or, for small tracks only, memory. Nothing here holds a whole track in memory unless
//! it was handed over that way, so a two-hour mix costs one open file and a read buffer.
//!
//! Readers keep their own position and read with `pread`, so the scheduler's probe and the
//! pipeline can read the same track at once, and a cache entry deleted while it plays (evicted,
//! replaced) plays on: the open file keeps its bytes until the last reader is gone.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;

/// A track's bytes, ready to decode. Cheap to clone (shared file or buffer).
#[derive(Debug, Clone)]
pub struct TrackData {
    inner: Inner,
}

#[derive(Debug, Clone)]
enum Inner {
    /// `len` bytes of `file` from `start` (a cache entry's data follows its header).
    File {
        file: Arc<File>,
        start: u64,
        len: u64,
    },
    Memory(Bytes),
}

impl TrackData {
    /// The `len` bytes of `file` that start at `start`.
    pub fn from_file(file: File, start: u64, len: u64) -> TrackData {
        TrackData {
            inner: Inner::File {
                file: Arc::new(file),
                start,
                len,
            },
        }
    }

    /// A whole file (tools, tests; the catalogs open theirs under a timeout).
    pub fn open(path: &std::path::Path) -> io::Result<TrackData> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Ok(TrackData::from_file(file, 0, len))
    }

    /// Bytes already in memory (small tracks, tests).
    pub fn from_bytes(bytes: impl Into<Bytes>) -> TrackData {
        TrackData {
            inner: Inner::Memory(bytes.into()),
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        match &self.inner {
            Inner::File { len, .. } => *len,
            Inner::Memory(b) => b.len() as u64,
        }
    }

    /// Whether the track has no bytes at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the bytes are in memory rather than in a file.
    pub fn in_memory(&self) -> bool {
        matches!(self.inner, Inner::Memory(_))
    }

    /// A reader from the first byte, with a position of its own.
    pub fn reader(&self) -> TrackReader {
        TrackReader {
            data: self.clone(),
            pos: 0,
        }
    }

    /// The whole content in memory: for tests and small tools only, never on the air path.
    pub fn read_all(&self) -> io::Result<Vec<u8>> {
        let mut all = Vec::with_capacity(usize::try_from(self.len()).unwrap_or(0));
        self.reader().read_to_end(&mut all)?;
        Ok(all)
    }
}

/// Reads a [`TrackData`] from a position of its own (`Read + Seek`).
#[derive(Debug)]
pub struct TrackReader {
    data: TrackData,
    pos: u64,
}

impl TrackReader {
    /// Length of the whole track in bytes.
    pub fn len(&self) -> u64 {
        self.data.len()
    }

    /// Whether the track has no bytes.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

impl Read for TrackReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let len = self.data.len();
        if self.pos >= len || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(len - self.pos).unwrap_or(usize::MAX));
        let n = match &self.data.inner {
            Inner::File { file, start, .. } => file.read_at(&mut buf[..want], start + self.pos)?,
            Inner::Memory(bytes) => {
                // `pos < len` and `want` fits in what is left, so the range is in bounds.
                let from = self.pos as usize;
                buf[..want].copy_from_slice(&bytes[from..from + want]);
                want
            }
        };
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for TrackReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let len = self.data.len() as i128;
        let target = match to {
            SeekFrom::Start(n) => i128::from(n),
            SeekFrom::End(d) => len + i128::from(d),
            SeekFrom::Current(d) => i128::from(self.pos) + i128::from(d),
        };
        if target < 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the track",
            ));
        }
        self.pos = u64::try_from(target).unwrap_or(u64::MAX);
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn file_ranges_read_and_seek_independently() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"HEADERhello world").unwrap();
        let data = TrackData::from_file(file, 6, 11);
        assert_eq!(data.len(), 11);
        let (mut a, mut b) = (data.reader(), data.reader());
        let mut five = [0u8; 5];
        a.read_exact(&mut five).unwrap();
        assert_eq!(&five, b"hello");
        b.seek(SeekFrom::End(-5)).unwrap();
        b.read_exact(&mut five).unwrap();
        assert_eq!(&five, b"world");
        // `a` kept its own place.
        let mut rest = Vec::new();
        a.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b" world");
        assert!(b.seek(SeekFrom::Current(-100)).is_err());
        assert_eq!(data.read_all().unwrap(), b"hello world");
    }

    #[test]
    fn memory_reads_stop_at_the_end() {
        let data = TrackData::from_bytes(&b"abc"[..]);
        let mut r = data.reader();
        r.seek(SeekFrom::Start(10)).unwrap();
        assert_eq!(r.read(&mut [0u8; 4]).unwrap(), 0);
        r.seek(SeekFrom::Start(1)).unwrap();
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"bc");
        assert!(data.in_memory());
    }
}
