//! onair: one process, one web radio. The AutoDJ, the encoder and the Icecast-compatible server in
//! one binary.
//!
//! ```text
//!  catalog (local folder | S3 primary + backup site, streamed into a disk cache)
//!        ──list, fetch onto disk──▶ scheduler (order, tracks ready ahead, probe, playout state)
//!        ──mpsc(1) LoadedTrack──▶ pipeline thread: decode → convert → every encoder → pace
//!        ──▶ one FrameRing per mount ──Window──▶ fan-out thread: batched writev to every listener
//!  accept loop: request head ──listener──▶ head + burst, then the fan-out thread; else ──▶ hyper
//!  + /status-json.xsl, /healthz, /readyz, /metrics
//! ```
//!
//! [`run`] is the whole radio: `main.rs` calls it with a socket and a shutdown signal, and so do
//! the integration tests.
#![forbid(unsafe_code)]

pub mod analysis;
pub mod app;
pub mod audio;
pub mod catalog;
pub mod config;
pub mod dates;
pub mod encode;
pub mod fanout;
pub mod fdlimit;
pub mod hls;
pub mod http;
pub mod live;
pub mod logging;
pub mod login;
pub mod metrics;
pub mod pipeline;
pub mod ring;
pub mod scheduler;
pub mod station;
pub mod supervise;
pub mod title;

pub use app::{Options, Reopen, run, run_with};
pub use config::Config;
