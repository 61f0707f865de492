//! Per-track analysis, computed once per track version and kept beside the track: loudness
//! facts measured in one decode pass (`facts.rs`), the small JSON sidecar that records them
//! (`sidecar.rs`), the cue points derived from them at play time (`cues.rs`), so that a change
//! of settings never asks for a decode again, what is known of every track (`store.rs`), and the
//! background worker that analyses what is not (`worker.rs`).

pub mod cues;
pub mod facts;
pub mod sidecar;
pub mod store;
pub mod worker;

pub use cues::{CueSettings, Cues, Ending, cues as derive_cues};
pub use facts::{ANALYSER_VERSION, AnalysisError, Envelope, Facts, Pace, analyse};
pub use store::Analyses;
