//! Live shows (issue 13): a DJ's source client goes on air through the mixer's live deck while
//! every listener keeps its connection. Built in steps; so far `handshake.rs`, which reads what
//! source clients send before their audio and holds the answers they expect.

pub mod auth;
mod chunked;
pub mod feed;
pub mod handshake;
pub mod session;
