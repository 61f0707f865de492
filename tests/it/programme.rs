//! What listeners hear: even loudness, crossfades where the planner put them, no gap where
//! silences were trimmed, jingles untouched, peaks held by the limiter. Measured on the PCM tap
//! after the limiter (±0.5 LU) and end to end on the decoded MP3 (±1 LU: LAME at 128 kbps lowers
//! measured loudness by up to 0.7 LU). Tracks are made at test time with known loudness, peaks
//! and silences (`support::synth`), each tone in its own band so that overlaps can be seen.

use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use onair::analysis::{CueSettings, Cues, Pace, analyse, derive_cues};
use onair::audio::clock::Clock;
use onair::catalog::TrackData;
use onair::config::Config;
use onair::pipeline::planner;

use crate::support::synth::{FRAME_S, Loudness, Programme, Synth, present};
use crate::support::{
    ADMIN_PASSWORD, RawStream, TestServer, admin_config_for, config_for, decode, icy, require,
    until,
};

const RATE: u32 = 44_100;
const TARGET: f64 = -16.0;
/// A band counts as present down to this far under its loudest frame: the tap is float, and
/// bands far apart do not leak into each other's Goertzel filter.
const PRESENT_DB: f64 = 90.0;

/// A library folder holding these tracks as WAV files (the names give the order).
fn library(tracks: &[(&str, &Synth)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, track) in tracks {
        track.write_wav(&dir.path().join(name));
    }
    dir
}

/// Sequential order and fast analysis, plus `extra` (TOML for the end of a test config).
fn settings(extra: &str) -> String {
    format!("[playlist]\norder = \"sequential\"\n[analysis]\nmax_speed = 10000.0\n{extra}")
}

/// A mount whose history holds the whole test, so that a listener reads it from the start.
const LONG_MOUNT: &str = "[[mount]]\npath = \"/radio.mp3\"\nburst = \"299s\"\nqueue = \"300s\"\n";

/// Runs a radio on `lib` until its `n` tracks are analysed and their sidecars kept, then
/// stops it: the radios a test then starts find every analysis beside its track.
async fn analyse_all(lib: &Path, n: usize) {
    let server = TestServer::start(config_for(lib, &settings(""))).await;
    until(Duration::from_secs(120), "every track analysed", || async {
        (server.metric("onair_analysis_total{result=\"ok\"}").await >= n as f64).then_some(())
    })
    .await;
    server.shutdown().await.unwrap();
}

/// The programme after the limiter, as the pipeline hands it over, first `keep_s` seconds.
struct Tap {
    pcm: Arc<Mutex<Vec<f32>>>,
}

impl Tap {
    fn new(keep_s: f64) -> (Tap, mpsc::Sender<Vec<f32>>) {
        let (tx, rx) = mpsc::channel::<Vec<f32>>();
        let pcm = Arc::new(Mutex::new(Vec::new()));
        let keep = (keep_s * f64::from(RATE)) as usize * 2;
        let sink = Arc::clone(&pcm);
        std::thread::spawn(move || {
            for block in rx {
                let mut pcm = sink.lock().unwrap();
                let room = keep.saturating_sub(pcm.len()).min(block.len());
                pcm.extend_from_slice(&block[..room]);
            }
        });
        (Tap { pcm }, tx)
    }

    fn seconds(&self) -> f64 {
        self.pcm.lock().unwrap().len() as f64 / 2.0 / f64::from(RATE)
    }

    async fn wait(&self, seconds: f64) {
        until(Duration::from_secs(180), "programme on the tap", || async {
            (self.seconds() >= seconds).then_some(())
        })
        .await;
    }

    fn programme(&self) -> Programme {
        Programme {
            rate: RATE,
            pcm: self.pcm.lock().unwrap().clone(),
        }
    }
}

/// A radio on `config` with its programme tapped (the first `keep_s` seconds).
async fn tapped(config: Config, clock: Clock, keep_s: f64) -> (TestServer, Tap) {
    let (tap, tx) = Tap::new(keep_s);
    let server = TestServer::start_options(
        config,
        onair::Options {
            clock,
            programme_tap: Some(tx),
            ..onair::Options::default()
        },
    )
    .await;
    (server, tap)
}

/// The first `seconds` of `/radio.mp3` from its start, decoded as a player would.
async fn decoded_mp3(server: &TestServer, seconds: f64) -> Programme {
    let mut s = RawStream::get(server.addr, "/radio.mp3", "").await;
    let bytes = s
        .read((seconds * 16_000.0) as usize, Duration::from_secs(60))
        .await;
    let d = decode::decode(bytes);
    assert_eq!((d.channels, d.decode_errors), (2, 0), "{}", d.codec);
    Programme {
        rate: d.sample_rate,
        pcm: d.pcm,
    }
}

/// The cues the mixer derives for a track file (the same analysis, the default settings).
fn cues_of(path: &Path) -> Cues {
    let facts = analyse(&TrackData::open(path).unwrap(), &Pace::new(0.0)).unwrap();
    derive_cues(&facts, &CueSettings::default())
}

/// Where `freq` sounds on the programme: each run at least `min_s` long, within
/// [`PRESENT_DB`] of its loudest frame.
fn runs(p: &Programme, freq: f64, min_s: f64) -> Vec<(f64, f64)> {
    let band = p.band(freq);
    let max = band.iter().copied().fold(f64::MIN, f64::max);
    present(&band, max - PRESENT_DB, min_s)
}

/// The level (dB) of `freq` in 10 ms frames from `from` to `to` seconds: (min, max).
fn level_span(band: &[f64], from: f64, to: f64) -> (f64, f64) {
    let frames = &band[(from / FRAME_S) as usize..(to / FRAME_S) as usize];
    (
        frames.iter().copied().fold(f64::MAX, f64::min),
        frames.iter().copied().fold(f64::MIN, f64::max),
    )
}

fn assert_near(what: &str, got: f64, want: f64, within: f64) {
    assert!(
        (got - want).abs() <= within,
        "{what}: {got:.2}, expected {want:.2} ± {within}"
    );
}

#[tokio::test]
async fn a_loud_and_a_quiet_track_both_play_at_the_target() {
    let loud = Synth::new(RATE).tone(440.0, 20.0, -6.0).at_lufs(-8.0);
    let quiet = Synth::new(RATE).tone(660.0, 20.0, -20.0).at_lufs(-24.0);
    let lib = library(&[("01-loud.wav", &loud), ("02-quiet.wav", &quiet)]);
    analyse_all(lib.path(), 2).await;
    let (server, tap) = tapped(
        config_for(lib.path(), &settings(LONG_MOUNT)),
        Clock::Unpaced,
        42.0,
    )
    .await;
    tap.wait(42.0).await;
    let heard = tap.programme();
    for (what, from) in [("loud track", 0.0), ("quiet track", 20.0)] {
        let l = heard.loudness(from + 1.0, from + 19.0);
        assert_near(
            &format!("{what} on the tap (LUFS)"),
            l.integrated,
            TARGET,
            0.5,
        );
    }
    let mp3 = decoded_mp3(&server, 41.0).await;
    for (what, from) in [("loud track", 0.0), ("quiet track", 20.0)] {
        let l = mp3.loudness(from + 1.0, from + 19.0);
        assert_near(
            &format!("{what} in the MP3 (LUFS)"),
            l.integrated,
            TARGET,
            1.0,
        );
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_quiet_dynamic_track_brought_up_keeps_its_peaks_under_the_ceiling() {
    // A −60 dBFS bed with a 2 ms burst every second: low loudness, peaks 24 dB above it.
    let dynamic = Synth::new(RATE)
        .bursts(1000.0, 30.0, (-60.0, -6.0), 1.0, 0.002)
        .at_lufs(-26.0);
    let made = dynamic.loudness();
    // Brought to the target, its peaks would go over the ceiling (−1 dBTP) by several dB.
    assert!(
        made.true_peak + (TARGET - made.integrated).min(10.0) > 0.0,
        "{made:?}"
    );
    let lib = library(&[("01-dynamic.wav", &dynamic)]);
    analyse_all(lib.path(), 1).await;
    let (server, tap) = tapped(
        config_for(lib.path(), &settings(LONG_MOUNT)),
        Clock::Unpaced,
        60.0,
    )
    .await;
    tap.wait(60.0).await;
    let heard = tap.programme();
    // Held at the ceiling (4× oversampled here, 8× in the limiter), not crushed under it.
    let tp = Loudness::of(&heard.pcm, RATE, 2).true_peak;
    assert!(
        (-3.0..=-1.0 + 0.05).contains(&tp),
        "true peak on the tap {tp:.2} dBTP"
    );
    let gained = heard.loudness(1.0, 29.0).integrated - made.integrated;
    assert!(gained > 0.5, "brought up by {gained:.1} dB only");
    let clipped = server.metric("onair_clip_samples_total").await;
    assert_eq!(clipped, 0.0, "samples clipped after the limiter");
    let mp3 = decoded_mp3(&server, 59.0).await;
    let tp = Loudness::of(&mp3.pcm, mp3.rate, 2).true_peak;
    assert!(tp <= -0.7, "true peak of the decoded MP3 {tp:.2} dBTP");
    server.shutdown().await.unwrap();
}

/// 24 s of a steady tone, then 6 s in which it fades by itself by 40 dB: a track the next one
/// may start over.
fn fading_song(freq: f64) -> Synth {
    Synth::new(RATE)
        .tone(freq, 24.0, -10.0)
        .ramp(freq, 6.0, -10.0, -50.0)
}

#[tokio::test]
async fn two_songs_cross_where_the_planner_says_with_no_dip() {
    let a = fading_song(220.0);
    let b = Synth::new(RATE).tone(2500.0, 30.0, -10.0);
    let lib = library(&[("01-a.wav", &a), ("02-b.wav", &b)]);
    analyse_all(lib.path(), 2).await;
    let config = config_for(lib.path(), &settings(""));
    let plan = planner::plan(
        &cues_of(&lib.path().join("01-a.wav")),
        &cues_of(&lib.path().join("02-b.wav")),
        &config.programme.crossfade,
        true,
    );
    assert_eq!(plan.kind, planner::Kind::Crossfade, "{plan:?}");
    let planned = plan.overlap().as_secs_f64();
    assert!((3.0..=6.0).contains(&planned), "{plan:?}");
    let (server, tap) = tapped(config, Clock::Unpaced, 45.0).await;
    tap.wait(45.0).await;
    let heard = tap.programme();
    let a_runs = runs(&heard, 220.0, 1.0);
    let b_runs = runs(&heard, 2500.0, 1.0);
    let (a_end, b_start) = (a_runs[0].1, b_runs[0].0);
    assert_near("overlap on the tap (s)", a_end - b_start, planned, 0.1);
    assert_near(
        "the next track starts at the start-next point (s)",
        b_start,
        plan.next_at.as_secs_f64(),
        0.1,
    );
    // The incoming track is not faded in: at full level from its first frames.
    let band_b = heard.band(2500.0);
    let (_, solo_b) = level_span(&band_b, b_start + 10.0, b_start + 12.0);
    let (first_b, _) = level_span(&band_b, b_start + 0.05, b_start + 0.5);
    assert_near(
        "the incoming track's level as it starts (dB)",
        first_b,
        solo_b,
        0.5,
    );
    // Momentary loudness (400 ms) through the crossing never falls 1 LU under what follows.
    let after = heard.loudness(b_start + 8.0, b_start + 12.0).integrated;
    let mut t = b_start + 0.4;
    while t < a_end + 1.0 {
        let m = heard.loudness(t - 0.4, t).integrated;
        assert!(
            m >= after - 1.0,
            "momentary {m:.2} LUFS at {t:.1} s, {after:.2} after"
        );
        t += 0.1;
    }
    let crossfades = server
        .metric("onair_transitions_total{kind=\"crossfade\"}")
        .await;
    assert!(crossfades >= 1.0, "crossfades counted: {crossfades}");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn silences_are_trimmed_and_a_hard_ending_is_not_faded() {
    let first = Synth::new(RATE)
        .silence(3.0)
        .tone(330.0, 20.0, -12.0)
        .silence(3.0);
    let second = Synth::new(RATE)
        .silence(3.0)
        .tone(1200.0, 20.0, -12.0)
        .silence(3.0);
    let lib = library(&[("01-first.wav", &first), ("02-second.wav", &second)]);
    analyse_all(lib.path(), 2).await;
    let (server, tap) = tapped(config_for(lib.path(), &settings("")), Clock::Unpaced, 60.0).await;
    tap.wait(60.0).await;
    let heard = tap.programme();
    let start = heard.first_sound().unwrap();
    assert!(
        start < 0.25,
        "the programme starts after {start:.2} s of silence"
    );
    let gaps = heard.gaps(-50.0, 0.25);
    assert!(
        gaps.is_empty(),
        "gaps (start, length) under -50 dBFS: {gaps:?}"
    );
    // The first tone plays to its very end at full level: a hard ending is followed, not faded.
    let band = heard.band(330.0);
    let end = runs(&heard, 330.0, 1.0)[0].1;
    let (lowest, highest) = level_span(&band, end - 0.5, end - 0.05);
    let (_, solo) = level_span(&band, 5.0, 6.0);
    assert!(
        lowest > solo - 0.5 && highest < solo + 0.5,
        "the last 0.5 s at {lowest:.1}..{highest:.1} dB, the track at {solo:.1}"
    );
    assert_near("the first tone's length (s)", end, 20.0, 0.1);
    let trimmed = server
        .metric("onair_silence_trimmed_seconds_total{edge=\"head\"}")
        .await;
    assert!(trimmed >= 5.5, "leading silence trimmed: {trimmed} s");
    assert_eq!(
        server
            .metric("onair_transitions_total{kind=\"crossfade\"}")
            .await,
        0.0
    );
    assert!(
        server
            .metric("onair_transitions_total{kind=\"sequence\"}")
            .await
            >= 2.0
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_jingle_between_two_songs_is_neither_faded_nor_overlapped_past_half() {
    let a = fading_song(220.0);
    let jingle = Synth::new(RATE).silence(0.5).tone(1000.0, 2.5, -10.0);
    let b = fading_song(2500.0);
    let lib = library(&[
        ("01-a.wav", &a),
        ("02-jingle.wav", &jingle),
        ("03-b.wav", &b),
    ]);
    analyse_all(lib.path(), 3).await;
    let (server, tap) = tapped(config_for(lib.path(), &settings("")), Clock::Unpaced, 50.0).await;
    tap.wait(50.0).await;
    let heard = tap.programme();
    let a_end = runs(&heard, 220.0, 1.0)[0].1;
    let (j_start, j_end) = runs(&heard, 1000.0, 1.0)[0];
    let b_start = runs(&heard, 2500.0, 1.0)[0].0;
    // Played whole: its 0.5 s of silence is not trimmed, its tone lasts 2.5 s.
    assert_near("the jingle's tone (s)", j_end - j_start, 2.5, 0.05);
    let band = heard.band(1000.0);
    let (lowest, highest) = level_span(&band, j_start + 0.05, j_end - 0.05);
    assert!(
        highest - lowest < 0.5,
        "jingle level {lowest:.1}..{highest:.1} dB"
    );
    // The song before overlaps at most half of it (its tone starts 0.5 s into the file).
    let overlap = a_end - (j_start - 0.5);
    assert!(
        overlap <= 1.5 + 0.1,
        "the song overlaps the jingle by {overlap:.2} s"
    );
    // Nothing overlaps the jingle's end.
    assert!(
        b_start >= j_end - 0.05,
        "the next song starts at {b_start:.2}, the jingle ends at {j_end:.2}"
    );
    let (_, metrics) = crate::support::get_text(server.url("/metrics")).await;
    let jingles = server
        .metric("onair_transitions_total{kind=\"jingle\"}")
        .await;
    assert!(
        jingles >= 2.0,
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("transition"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_next_track_shorter_than_the_tail_overlaps_half_of_itself() {
    // A 14 s fade at the end: the tail from start-next is about 11 s, more than half of the
    // 10 s track that follows.
    let a = Synth::new(RATE)
        .tone(220.0, 30.0, -10.0)
        .ramp(220.0, 14.0, -10.0, -50.0);
    let short = Synth::new(RATE).tone(2500.0, 10.0, -10.0);
    let lib = library(&[("01-a.wav", &a), ("02-short.wav", &short)]);
    analyse_all(lib.path(), 2).await;
    let config = config_for(
        lib.path(),
        &settings("[programme.crossfade]\nmax_overlap = \"12s\"\n"),
    );
    let plan = planner::plan(
        &cues_of(&lib.path().join("01-a.wav")),
        &cues_of(&lib.path().join("02-short.wav")),
        &config.programme.crossfade,
        true,
    );
    assert_near(
        "planned overlap (s)",
        plan.overlap().as_secs_f64(),
        5.0,
        0.15,
    );
    let (server, tap) = tapped(config, Clock::Unpaced, 60.0).await;
    tap.wait(60.0).await;
    let heard = tap.programme();
    let a_end = runs(&heard, 220.0, 1.0)[0].1;
    let (s_start, s_end) = runs(&heard, 2500.0, 1.0)[0];
    assert_near(
        "overlap (s)",
        a_end - s_start,
        plan.overlap().as_secs_f64(),
        0.1,
    );
    assert_near(
        "the short track plays whole (s)",
        s_end - s_start,
        10.0,
        0.1,
    );
    let gaps = heard.gaps(-50.0, 0.25);
    assert!(gaps.is_empty(), "gaps: {gaps:?}");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_skip_fades_the_track_out_over_a_second() {
    let a = Synth::new(RATE).tone(220.0, 30.0, -10.0);
    let b = Synth::new(RATE).tone(2500.0, 30.0, -10.0);
    let lib = library(&[("01-a.wav", &a), ("02-b.wav", &b)]);
    analyse_all(lib.path(), 2).await;
    let (server, tap) = tapped(
        admin_config_for(lib.path(), &settings("")),
        Clock::Realtime,
        12.0,
    )
    .await;
    tap.wait(3.0).await;
    let r = reqwest::Client::new()
        .get(server.url("/admin/next?mount=/radio.mp3"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    tap.wait(12.0).await;
    let heard = tap.programme();
    let a_end = runs(&heard, 220.0, 0.5)[0].1;
    let b_start = runs(&heard, 2500.0, 0.5)[0].0;
    assert!(b_start < 10.0, "the skip took effect at {b_start:.2} s");
    assert_near("the skip's fade (s)", a_end - b_start, 1.0, 0.1);
    // Full level until the skip.
    let band = heard.band(220.0);
    let (lowest, highest) = level_span(&band, 1.0, b_start - 0.05);
    assert!(
        highest - lowest < 0.5,
        "before the skip {lowest:.1}..{highest:.1} dB"
    );
    assert_eq!(
        server
            .metric("onair_transitions_total{kind=\"skip\"}")
            .await,
        1.0
    );
    server.shutdown().await.unwrap();
}

/// A FLAC copy of `wav` made by ffmpeg, with these tags.
fn flac_with_tags(wav: &Path, flac: &Path, tags: &[&str]) {
    require("ffmpeg");
    let mut cmd = std::process::Command::new("ffmpeg");
    cmd.args(["-v", "error", "-y", "-i"]).arg(wav);
    for tag in tags {
        cmd.args(["-metadata", tag]);
    }
    let status = cmd.arg(flac).status().unwrap();
    assert!(status.success());
    std::fs::remove_file(wav).unwrap();
}

#[tokio::test]
async fn unanalysed_tracks_play_with_their_tags_gain_and_sidecars_spare_a_restart() {
    // Two quiet tracks (−26 LUFS): one tagged by a ReplayGain 2 scanner (+8 dB to its −18 LUFS
    // reference), one untagged.
    let quiet = |freq| Synth::new(RATE).tone(freq, 15.0, -20.0).at_lufs(-26.0);
    let lib = library(&[
        ("01-tagged.wav", &quiet(440.0)),
        ("02-plain.wav", &quiet(880.0)),
    ]);
    flac_with_tags(
        &lib.path().join("01-tagged.wav"),
        &lib.path().join("01-tagged.flac"),
        &["REPLAYGAIN_TRACK_GAIN=+8.00 dB"],
    );
    // Nothing analysed yet: the tagged track at its tags' gain (−26 + 8 + 2 = −16), the other
    // as it is. The analysis is off so that it cannot catch up with an unpaced programme.
    let (server, tap) = tapped(
        config_for(
            lib.path(),
            "[playlist]\norder = \"sequential\"\n[analysis]\nenabled = false\n",
        ),
        Clock::Unpaced,
        30.0,
    )
    .await;
    tap.wait(30.0).await;
    let heard = tap.programme();
    assert_near(
        "tagged, unanalysed (LUFS)",
        heard.loudness(1.0, 14.0).integrated,
        TARGET,
        0.5,
    );
    assert_near(
        "untagged, unanalysed (LUFS)",
        heard.loudness(16.0, 29.0).integrated,
        -26.0,
        0.5,
    );
    server.shutdown().await.unwrap();

    // Analysed once, in the background, and kept beside each track.
    analyse_all(lib.path(), 2).await;
    let sidecars = std::fs::read_dir(lib.path().join(".onair/analysis"))
        .unwrap()
        .count();
    assert_eq!(sidecars, 2);

    // A restarted radio reuses them: nothing analysed again, both at the target.
    let (server, tap) = tapped(config_for(lib.path(), &settings("")), Clock::Unpaced, 30.0).await;
    tap.wait(30.0).await;
    let heard = tap.programme();
    assert_near(
        "tagged, analysed (LUFS)",
        heard.loudness(1.0, 14.0).integrated,
        TARGET,
        0.5,
    );
    assert_near(
        "untagged, analysed (LUFS)",
        heard.loudness(16.0, 29.0).integrated,
        TARGET,
        0.5,
    );
    until(Duration::from_secs(10), "sidecars read", || async {
        (server
            .metric("onair_analysis_total{result=\"cached\"}")
            .await
            >= 2.0)
            .then_some(())
    })
    .await;
    assert_eq!(
        server.metric("onair_analysis_total{result=\"ok\"}").await,
        0.0
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_demo_library_plays_within_a_narrow_loudness_spread() {
    // The demo's own tracks, as they are (loudness from 12-loud.mp3 to quiet mono).
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/media");
    let lib = tempfile::tempdir().unwrap();
    let mut files: Vec<_> = std::fs::read_dir(&demo)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let mut tracks = Vec::new();
    for file in &files {
        let copy = lib.path().join(file.file_name().unwrap());
        std::fs::copy(file, &copy).unwrap();
        let facts = analyse(&TrackData::open(&copy).unwrap(), &Pace::new(0.0)).unwrap();
        tracks.push((copy, facts));
    }
    analyse_all(lib.path(), tracks.len()).await;
    // Back to back and whole, so that each track's stretch of the programme is known.
    let total: f64 = tracks.iter().map(|(_, f)| f.duration_s).sum();
    let (server, tap) = tapped(
        config_for(lib.path(), &settings(crate::support::HARD_CUTS)),
        Clock::Unpaced,
        total + 1.0,
    )
    .await;
    tap.wait(total + 1.0).await;
    let heard = tap.programme();
    let mut start = 0.0;
    let (mut before, mut after) = (Vec::new(), Vec::new());
    for (path, facts) in &tracks {
        let end = start + facts.duration_s;
        let l = heard.loudness(start + 0.5, end - 0.5);
        eprintln!(
            "{}: {:.1} LUFS as it is, {:.1} LUFS as heard ({:.1} s)",
            path.file_name().unwrap().to_string_lossy(),
            facts.integrated_lufs.unwrap_or(-70.0),
            l.integrated,
            facts.duration_s
        );
        before.push(facts.integrated_lufs.unwrap_or(-70.0));
        after.push(l.integrated);
        start = end;
    }
    let spread = |v: &[f64]| {
        v.iter().copied().fold(f64::MIN, f64::max) - v.iter().copied().fold(f64::MAX, f64::min)
    };
    eprintln!(
        "demo library loudness spread: {:.1} LU as it is, {:.1} LU as heard",
        spread(&before),
        spread(&after)
    );
    assert!(spread(&before) > 6.0, "the demo is not a test of loudness");
    assert!(spread(&after) <= 1.0, "as heard: {after:?}");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_one_hour_show_plays_at_once_and_is_analysed_in_the_background() {
    require("ffmpeg");
    let lib = tempfile::tempdir().unwrap();
    let show = lib.path().join("show.mp3");
    let status = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-f", "lavfi", "-i"])
        .arg("sine=frequency=440:sample_rate=16000:duration=3600")
        .args(["-ac", "1", "-b:a", "24k"])
        .arg(&show)
        .status()
        .unwrap();
    assert!(status.success());
    let server =
        TestServer::start(config_for(lib.path(), "[analysis]\nmax_speed = 1000.0\n")).await;
    let started = std::time::Instant::now();
    let mut listener = RawStream::get(server.addr, "/radio.mp3", "").await;
    let first = listener.read(1, Duration::from_secs(10)).await;
    assert_eq!(first.len(), 1, "no audio");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "first audio after {:?}",
        started.elapsed()
    );
    // No duration cap, and nobody waits for it: it is on air while it is being measured.
    assert_eq!(
        server.metric("onair_analysis_total{result=\"ok\"}").await,
        0.0
    );
    until(Duration::from_secs(240), "the show analysed", || async {
        (server.metric("onair_analysis_total{result=\"ok\"}").await >= 1.0).then_some(())
    })
    .await;
    let sidecars = std::fs::read_dir(lib.path().join(".onair/analysis"))
        .unwrap()
        .count();
    assert_eq!(sidecars, 1);
    // Still the same listener, still at bitrate: the analysis took nothing from the stream.
    let more = listener.read(64_000, Duration::from_secs(10)).await;
    assert_eq!(more.len(), 64_000);
    server.shutdown().await.unwrap();
}

/// `ffmpeg -i file -af filter -f null -` and what it printed (stderr, where its filters log).
fn ffmpeg_filter(file: &Path, filter: &str) -> String {
    let out = std::process::Command::new("ffmpeg")
        .args(["-nostats", "-hide_banner", "-i"])
        .arg(file)
        .args(["-af", filter, "-f", "null", "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "ffmpeg {filter}");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn half_an_hour_of_a_mixed_playlist_stays_under_the_ceiling_with_no_gap() {
    require("ffmpeg");
    // The corpus' playable files (MP3, FLAC 16 and 24/96, Vorbis, Opus, WAV, AAC; quiet, loud,
    // silent edges) and songs made to cross: about four minutes, played round after round.
    let files: Vec<String> = crate::support::manifest()
        .into_iter()
        .filter(|e| e.status == "ok")
        .map(|e| e.file)
        .collect();
    let names: Vec<&str> = files.iter().map(String::as_str).collect();
    let lib = crate::support::library_with(&names);
    fading_song(220.0).write_wav(&lib.path().join("50-song-low.wav"));
    // A jingle is played whole, silences included: this one is cut tight, as jingles are.
    Synth::new(RATE)
        .tone(1000.0, 5.0, -12.0)
        .write_wav(&lib.path().join("51-jingle.wav"));
    Synth::new(RATE)
        .silence(3.0)
        .tone(2500.0, 25.0, -30.0)
        .ramp(2500.0, 5.0, -30.0, -70.0)
        .write_wav(&lib.path().join("52-song-high.wav"));
    analyse_all(lib.path(), names.len() + 3).await;
    let minutes = 30.0;
    // A title block every 20 ms of audio: where each track starts, to that precision.
    let metaint = 320;
    let mount = format!(
        "[[mount]]\npath = \"/radio.mp3\"\nburst = \"1850s\"\nqueue = \"1900s\"\nicy_metaint = {metaint}\n"
    );
    let server =
        TestServer::start_with(config_for(lib.path(), &settings(&mount)), Clock::Unpaced).await;
    let mut listener = RawStream::get(server.addr, "/radio.mp3", "Icy-MetaData: 1\r\n").await;
    let audio_bytes = minutes * 60.0 * 16_000.0;
    let bytes = listener
        .read(
            (audio_bytes * (1.0 + 1.0 / f64::from(metaint))) as usize + 64_000,
            Duration::from_secs(600),
        )
        .await;
    let split = icy::split(&bytes, metaint as usize);
    assert!(split.audio.len() as f64 >= audio_bytes * 0.99);
    let starts: Vec<f64> = split
        .titles
        .iter()
        .filter(|t| !t.title.is_empty())
        .map(|t| t.audio_offset as f64 / 16_000.0)
        .skip(1)
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let mp3 = dir.path().join("half-hour.mp3");
    std::fs::write(&mp3, &split.audio).unwrap();
    let mut counted = Vec::new();
    for kind in ["crossfade", "sequence", "jingle"] {
        let series = format!("onair_transitions_total{{kind=\"{kind}\"}}");
        counted.push((kind, server.metric(&series).await));
    }
    eprintln!("transitions: {counted:?}");
    assert!(counted.iter().all(|(_, n)| *n >= 5.0), "{counted:?}");

    // True peak of the whole decoded stream: the ceiling plus the MP3 codec's 0.3 dB.
    let summary = ffmpeg_filter(&mp3, "ebur128=peak=true");
    let peak: f64 = summary
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("Peak:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("ebur128 summary");
    assert!(peak <= -0.7, "true peak {peak} dBTP");
    // No gap: nothing of 0.25 s or more under -50 dBFS.
    let silences = ffmpeg_filter(&mp3, "silencedetect=noise=-50dB:d=0.25");
    let gaps: Vec<&str> = silences
        .lines()
        .filter(|l| l.contains("silence_end"))
        .collect();
    assert!(gaps.is_empty(), "gaps: {gaps:?}");
    // No click where the mixer could make one: where a track starts (and, in a sequence, the
    // one before it stops), no sample-to-sample step stands out of the music on either side.
    let steps = steps_per_frame(&mp3);
    let found = clicks(&steps, &starts);
    eprintln!(
        "{} track starts; the most suspect: {:?}",
        starts.len(),
        &found[..3]
    );
    assert!(starts.len() >= 100, "{} track starts", starts.len());
    let loud: Vec<_> = found.iter().filter(|b| b.is_click()).collect();
    assert!(loud.is_empty(), "clicks: {loud:?}");
    server.shutdown().await.unwrap();
}

/// The largest sample-to-sample step of each 10 ms of `file`, over both channels: how the
/// audio-quality note measures clicks.
fn steps_per_frame(file: &Path) -> Vec<f64> {
    let key = "lavfi.astats.Overall.Max_difference";
    ffmpeg_filter(
        file,
        &format!(
            "asetnsamples=n=441,astats=metadata=1:reset=1:measure_perchannel=none:measure_overall=Max_difference,ametadata=mode=print:key={key}:file=-"
        ),
    )
    .lines()
    .filter_map(|l| l.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
    .collect()
}

/// A track start and the steps around it.
#[derive(Debug, PartialEq)]
struct Boundary {
    at_s: f64,
    /// The largest step where the decks meet.
    step: f64,
    /// The largest step of the music in the half second on each side.
    music: f64,
}

/// Where the decks meet in the decoded stream, after the title: the new title rides on the
/// first MP3 frame that holds any of the new track's audio (the encoder keeps a frame and its
/// look-ahead, the decoder adds its delay: 70 ms, measured here with a track cut short), and
/// arrives at the next metadata block (20 ms).
const MEET_FROM_S: f64 = 0.02;
const MEET_TO_S: f64 = 0.11;
const MUSIC_S: f64 = 0.5;

impl Boundary {
    /// A step both far larger than the music's own and big enough to hear.
    fn is_click(&self) -> bool {
        self.step > 0.02 && self.step > 2.0 * self.music
    }
}

/// Every start in `starts` (seconds) with the steps around it, the most suspect first. Only
/// where the decks meet is judged: the corpus' tracks start and end abruptly and speak at once,
/// which is their music, and crossfaded endings are faded to nothing.
fn clicks(steps: &[f64], starts: &[f64]) -> Vec<Boundary> {
    let frame = |s: f64| ((s / FRAME_S).max(0.0) as usize).min(steps.len());
    let max = |from: f64, to: f64| {
        steps[frame(from)..frame(to).max(frame(from))]
            .iter()
            .copied()
            .fold(0.0, f64::max)
    };
    let mut found: Vec<Boundary> = starts
        .iter()
        .map(|&at| {
            let (from, to) = (at + MEET_FROM_S, at + MEET_TO_S);
            Boundary {
                at_s: at,
                step: max(from, to),
                music: max(from - MUSIC_S, from).max(max(to, to + MUSIC_S)),
            }
        })
        .collect();
    found.sort_by(|a, b| (b.step / b.music.max(1e-9)).total_cmp(&(a.step / a.music.max(1e-9))));
    found
}

#[test]
fn a_step_out_of_the_music_at_a_start_is_a_click_and_music_is_not() {
    // 100 s of music stepping by 0.05, starts every 20 s; one start has a step of 0.3.
    let mut steps = vec![0.05; 10_000];
    steps[4_007] = 0.3;
    // An onset 150 ms after a start, or anywhere inside a track, is music, however abrupt.
    steps[6_015] = 0.6;
    steps[7_000] = 0.6;
    let found = clicks(&steps, &[20.0, 40.0, 60.0, 80.0]);
    assert!(found[0].is_click() && found[0].at_s == 40.0, "{found:?}");
    assert!(found[1..].iter().all(|b| !b.is_click()), "{found:?}");
}
