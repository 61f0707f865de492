//! The whole shared media corpus through the radio: every file behaves as the manifest says, and
//! broken files leave no gap in the stream.

use std::time::Duration;

use onair::audio::clock::Clock;
use onair::audio::decode::TrackDecoder;
use onair::catalog::TrackData;

use crate::support::{
    HARD_CUTS, RawStream, TestServer, config_for, decode, icy, library_with, manifest,
};

/// ICY block every 0.1 s of 128 kbps audio, so title changes are placed to a tenth of a second.
const METAINT: usize = 1600;
const BYTES_PER_SEC: f64 = 16_000.0;

/// Seconds of audio a file decodes to (its valid part, for a damaged file).
fn decoded_seconds(file: &str) -> f64 {
    let data = TrackData::open(&crate::support::media_dir().join(file)).unwrap();
    let (mut d, _) = TrackDecoder::open(&data).unwrap();
    let mut pcm = Vec::new();
    let mut samples = 0;
    while d.next_packet(&mut pcm) {
        samples += pcm.len();
        pcm.clear();
    }
    samples as f64 / d.channels() as f64 / f64::from(d.sample_rate())
}

#[test]
fn files_decode_to_the_length_the_manifest_gives() {
    for e in manifest()
        .iter()
        .filter(|e| e.status == "ok" || e.status == "partial")
    {
        let secs = decoded_seconds(&e.file);
        // The manifest rounds down to whole seconds.
        assert!(
            secs >= e.seconds - 0.05 && secs < e.seconds + 1.0,
            "{}: decoded {secs:.2} s, manifest says {}",
            e.file,
            e.seconds
        );
    }
}

#[tokio::test]
async fn every_file_plays_or_is_skipped_as_the_manifest_says_without_gaps() {
    let files: Vec<String> = manifest().into_iter().map(|e| e.file).collect();
    let files: Vec<&str> = files.iter().map(String::as_str).collect();
    let lib = library_with(&files);
    assert_corpus_plays(config_for(lib.path(), &corpus_playlist_and_mount())).await;
}

/// Sequential order and a mount that keeps the whole corpus in its history, so that a listener
/// can read it from the start (TOML for the end of a test config).
pub fn corpus_playlist_and_mount() -> String {
    // Hard cuts and no trimming: each track then lasts exactly as long as its audio.
    format!(
        "[playlist]\norder = \"sequential\"\n{HARD_CUTS}[[mount]]\npath = \"/radio.mp3\"\nburst = \"599s\"\nqueue = \"600s\"\nicy_metaint = {METAINT}\n"
    )
}

/// Runs a radio on `config` (a library holding the whole corpus, under the file names, with
/// [`corpus_playlist_and_mount`]) and checks that every file plays or is skipped as the manifest
/// says: titles in key order, each track as long as its audio, no gap where broken files sat,
/// a stream that decodes cleanly.
pub async fn assert_corpus_plays(config: onair::config::Config) {
    let entries = manifest();
    let server = TestServer::start_with(config, Clock::Unpaced).await;
    let playing: Vec<_> = entries
        .iter()
        .filter(|e| e.status == "ok" || e.status == "partial")
        .collect();
    let total: f64 = playing.iter().map(|e| decoded_seconds(&e.file)).sum();
    let mut s = RawStream::get(server.addr, "/radio.mp3", "Icy-MetaData: 1\r\n").await;
    let data = s
        .read(
            ((total - 0.5) * BYTES_PER_SEC * (1.0 + 1.0 / METAINT as f64)) as usize,
            Duration::from_secs(90),
        )
        .await;
    let metrics = reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    server.shutdown().await.unwrap();

    let split = icy::split(&data, METAINT);
    let titles: Vec<_> = split
        .titles
        .iter()
        .filter(|t| !t.title.is_empty())
        .cloned()
        .collect();
    let seen: Vec<&str> = titles.iter().map(|t| t.title.as_str()).collect();

    // Every playable file shows up in key order; skipped and ignored files never do.
    let expected: Vec<String> = playing.iter().map(|e| e.display_title()).collect();
    assert_eq!(seen.len(), expected.len(), "titles seen: {seen:#?}");
    for (got, want) in seen.iter().zip(&expected) {
        assert!(want.starts_with(got), "{got:?} should be {want:?}");
    }

    // Each track lasts as long as its audio: a skipped file in between adds no silence.
    for (i, e) in playing.iter().enumerate().take(playing.len() - 1) {
        let on_air = (titles[i + 1].audio_offset - titles[i].audio_offset) as f64 / BYTES_PER_SEC;
        let audio = decoded_seconds(&e.file);
        // Title changes land on 0.1 s metadata boundaries and 26 ms MP3 frames.
        assert!(
            (on_air - audio).abs() < 0.25,
            "{} ({}) lasted {on_air:.2} s on air for {audio:.2} s of audio",
            e.file,
            e.status,
        );
    }

    // The stream decodes cleanly from start to end.
    let audio_len = split.audio.len();
    let d = decode::decode(split.audio);
    assert_eq!(d.decode_errors, 0);
    assert_eq!((d.sample_rate, d.channels), (44100, 2));
    assert!((d.seconds() - audio_len as f64 / BYTES_PER_SEC).abs() < 0.2);

    // Where the broken files sat (between the truncated file and the FLAC named .mp3) there is
    // sound right up to the change: no filler silence was inserted.
    let idx = playing
        .iter()
        .position(|e| e.file == "94-flac-named.mp3")
        .unwrap();
    let at = titles[idx].audio_offset as f64 / BYTES_PER_SEC;
    let frame = |t: f64| (t * 44100.0) as usize;
    assert!(
        d.rms(frame(at - 1.0), frame(at - 0.3)) > 0.005,
        "sound before the skipped files"
    );
    assert!(
        d.rms(frame(at + 0.3), frame(at + 1.0)) > 0.005,
        "sound after the skipped files"
    );

    for reason in ["not_audio", "empty"] {
        assert!(
            metrics.lines().any(|l| l.starts_with(&format!(
                "onair_tracks_skipped_total{{reason=\"{reason}\"}}"
            )) && !l.ends_with(" 0")),
            "skip reason {reason} counted:\n{metrics}"
        );
    }
}
