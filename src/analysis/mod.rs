//! Per-track analysis, computed once per track version and kept beside the track: loudness
//! facts measured in one decode pass (`facts.rs`), the small JSON sidecar that records them
//! (`sidecar.rs`), and the cue points derived from them at play time (`cues.rs`), so that a
//! change of settings never asks for a decode again.

pub mod cues;
pub mod facts;
pub mod sidecar;

pub use cues::{CueSettings, Cues, Ending};
pub use facts::{ANALYSER_VERSION, AnalysisError, Envelope, Facts, Pace, analyse};
