//! One integration test binary: onair runs in-process on 127.0.0.1:0 and is read over real sockets
//! by a real HTTP client, by raw ICY-aware readers and by real players.

mod admin;
mod admin_guard;
mod admin_listen;
mod api;
mod binary;
mod browser;
mod corpus;
mod flood;
mod hls;
mod icecast;
mod limits;
mod listen;
mod live;
mod metadata;
mod players;
mod programme;
mod recording;
mod s3;
#[path = "../s3_support/mod.rs"]
mod s3_support;
mod storage;
mod supervision;
mod support;
mod surface;
mod titles;
