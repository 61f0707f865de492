//! HLS (issue 14, in progress): packed-audio HLS cut from the frames the MP3 and AAC encoders
//! already make. This holds the parts that do not depend on the server: the timeline every HLS
//! mount is cut on ([`grid`]) and the ID3 tag that starts each packed-audio part and segment
//! ([`id3`]). The packager, the playlists and the HTTP routes build on them.

pub mod grid;
pub mod id3;
pub mod packager;
pub mod playlist;
