//! [`Analyses`]: what is known of each track's analysis, shared by the scheduler (which asks
//! when it readies a track) and the background worker (which fills it in). A version's facts
//! come from memory, else from its sidecar (one small storage request, then remembered); a
//! track whose sidecar is missing or stale is remembered as such until the worker analyses it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use prometheus::IntCounter;

use super::facts::Facts;
use super::sidecar;
use crate::catalog::{Catalog, TrackRef};

/// The longest the scheduler waits for a sidecar before it readies a track without it.
const SIDECAR_WAIT: Duration = Duration::from_secs(2);

/// What is known of one track key.
#[derive(Debug, Clone)]
enum Known {
    Facts(Arc<str>, Arc<Facts>),
    /// This version has no valid sidecar (yet).
    Missing(Arc<str>),
}

/// The analyses of one library. Cheap to share (`Arc`).
pub struct Analyses<C> {
    catalog: Arc<C>,
    known: Mutex<HashMap<Arc<str>, Known>>,
    /// Valid sidecars read, whoever asked first (scheduler or worker).
    sidecars_read: IntCounter,
}

/// Whether a version's analysis is known, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Nothing asked yet.
    Unknown,
    /// Analysed (facts at hand).
    Analysed,
    /// Asked: there is no valid sidecar.
    Missing,
}

impl<C: Catalog> Analyses<C> {
    pub fn new(catalog: Arc<C>, sidecars_read: IntCounter) -> Analyses<C> {
        Analyses {
            catalog,
            known: Mutex::new(HashMap::new()),
            sidecars_read,
        }
    }

    fn known(&self) -> MutexGuard<'_, HashMap<Arc<str>, Known>> {
        // Inserts and lookups only: a panic elsewhere cannot leave the map half-written.
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What is known of this version without asking storage.
    pub fn status(&self, track: &TrackRef) -> Status {
        match self.known().get(&track.key) {
            Some(Known::Facts(v, _)) if *v == track.version => Status::Analysed,
            Some(Known::Missing(v)) if *v == track.version => Status::Missing,
            _ => Status::Unknown,
        }
    }

    /// The facts of this version: from memory, else from its sidecar (asked once, within
    /// [`SIDECAR_WAIT`]); `None` while it is not analysed.
    pub async fn facts(&self, track: &TrackRef) -> Option<Arc<Facts>> {
        match self.known().get(&track.key) {
            Some(Known::Facts(v, f)) if *v == track.version => return Some(Arc::clone(f)),
            Some(Known::Missing(v)) if *v == track.version => return None,
            _ => {}
        }
        let loaded = tokio::time::timeout(SIDECAR_WAIT, self.catalog.load_sidecar(track)).await;
        let facts = match loaded {
            Ok(Ok(Some(json))) => sidecar::decode(&json, &track.key, &track.version),
            Ok(Ok(None)) => None,
            // Storage slow or failing: not known either way; asked again next time.
            Ok(Err(_)) | Err(_) => return None,
        };
        let mut known = self.known();
        match facts {
            Some(f) => {
                let f = Arc::new(f);
                let before = known.insert(
                    Arc::clone(&track.key),
                    Known::Facts(Arc::clone(&track.version), Arc::clone(&f)),
                );
                // The scheduler and the worker may both have asked: one read counts once.
                if !matches!(before, Some(Known::Facts(v, _)) if v == track.version) {
                    self.sidecars_read.inc();
                }
                Some(f)
            }
            None => {
                known.insert(
                    Arc::clone(&track.key),
                    Known::Missing(Arc::clone(&track.version)),
                );
                None
            }
        }
    }

    /// Records a fresh analysis of this version.
    pub fn insert(&self, track: &TrackRef, facts: Arc<Facts>) {
        self.known().insert(
            Arc::clone(&track.key),
            Known::Facts(Arc::clone(&track.version), facts),
        );
    }

    /// Forgets keys no longer in the library.
    pub fn retain(&self, listed: &std::collections::HashSet<Arc<str>>) {
        self.known().retain(|k, _| listed.contains(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::facts::tests::{facts_of, tone};
    use crate::catalog::local::LocalCatalog;

    #[tokio::test]
    async fn a_sidecar_counts_once_whoever_reads_it_first() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.wav"), tone(8_000, 1.0, |_| 0.5)).unwrap();
        let catalog = Arc::new(LocalCatalog::new(dir.path().to_path_buf(), None));
        let track = catalog.list().await.unwrap()[0].clone();
        let facts = facts_of(tone(8_000, 1.0, |_| 0.5));
        let json = sidecar::encode(&track.key, &track.version, &facts);
        catalog.save_sidecar(&track, json.into()).await.unwrap();

        let read = IntCounter::new("sidecars", "read").unwrap();
        let analyses = Analyses::new(Arc::clone(&catalog), read.clone());
        assert_eq!(analyses.status(&track), Status::Unknown);
        // The scheduler readies the track first; the worker finds it known afterwards.
        assert!(analyses.facts(&track).await.is_some());
        assert_eq!(analyses.status(&track), Status::Analysed);
        assert!(analyses.facts(&track).await.is_some());
        assert_eq!(read.get(), 1);

        // A fresh pod (a new store) reads it again, and counts it again.
        let again = Analyses::new(Arc::clone(&catalog), read.clone());
        assert!(again.facts(&track).await.is_some());
        assert_eq!(read.get(), 2);
    }
}
