//! Live shows: a DJ's source client goes on air through the mixer while every listener keeps
//! its connection. `handshake` reads what source clients send before their audio and holds the
//! answers they expect; `auth` decides who may log in; `session` serves a source from its head
//! to its last byte, and its `decoder` thread turns the bytes into station PCM on the `feed`,
//! which the pipeline's live input plays; `record` keeps each show's bytes in the library's
//! storage.

pub mod auth;
mod chunked;
mod decoder;
pub mod feed;
pub mod handshake;
pub mod record;
pub mod session;
