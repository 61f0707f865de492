//! Disaster-recovery drills: the radio under storage faults, against real Ceph RGWs on 127.0.0.1
//! (two clusters, for the backup site), each drill with a listener connected throughout whose
//! capture is decoded and judged: no dead air the tracks do not have, no decoder error, titles
//! that go on, the mount's bitrate, `onair_silence_seconds_total` unchanged.
//!
//! 1. `freeze`: the gateway frozen (SIGSTOP) 45 s, from 1 s before a track boundary, at a
//!    boundary, and mid-track.
//! 2. `kill`: the gateway killed for 5 minutes and restarted; tracks uploaded then are played.
//! 3. `backup`: the primary site down with a cold cache: the backup site serves; the primary
//!    back: it serves again.
//! 4. `objects`: a deleted object, one that answers 403, one whose body stalls: each skipped,
//!    storage stays up.
//! 5. `resume`: onair SIGKILLed mid-track and started again on an empty cache: the same track
//!    resumes where the programme should be, the shuffle round goes on without a repeat.
//! 6. `memory`: a 2-hour 320 kbps MP3 and a 1-hour 24-bit/96 kHz FLAC play in under 48 MB.
//!
//! And `crash`: onair SIGKILLed in the middle of a fetch leaves no torn cache entry; two pods
//! of one radio overlapping (a surge rollout) carry one programme.
//!
//! Run them with `bash scripts/drill.sh`, which starts the clusters and prints the table of
//! figures each drill reports (`harness::report`). The radio runs as its own process (the real
//! binary). Drills that touch a gateway take turns (`harness::GATEWAYS`).

mod backup;
mod crash;
mod freeze;
mod harness;
mod kill;
mod memory;
mod objects;
mod proxy;
mod resume;
#[path = "../s3_support/mod.rs"]
mod s3_support;
#[allow(dead_code)]
#[path = "../it/support/mod.rs"]
mod support;
