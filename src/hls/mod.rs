//! HLS and Low-Latency HLS: packed-audio parts and segments cut from the frames the MP3 and AAC
//! encoders already make, with no copy and no disk. The timeline every HLS mount is cut on
//! ([`grid`]), the ID3 tag that starts each part and segment ([`id3`]), the packager that cuts
//! one mount's frames ([`packager`]), the playlists ([`playlist`]), the station's renditions fed
//! by the pipeline and read by the HTTP side ([`station`]), and who listens ([`sessions`]). The
//! HTTP paths are `crate::http::hls`.

pub mod grid;
pub mod id3;
pub mod packager;
pub mod playlist;
pub mod sessions;
pub mod station;
