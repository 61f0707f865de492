//! Drill 5: the onair process SIGKILLed mid-track (no shutdown, no last save) and started again
//! with an empty cache directory, as a replacement pod would be. The same track must resume
//! within 2 s of where the programme should be by now, and the shuffle round must go on without
//! playing again what it had played. The position is read from the audio itself: the track is
//! a "clock" whose tone steps up by 25 Hz every second, so the listener's decoded audio says
//! which second of the track it is.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use crate::harness::*;
use crate::support::decode;

const CLOCK_SECONDS: u32 = 45;
const BASE_HZ: f64 = 300.0;
const STEP_HZ: f64 = 25.0;

/// A 45 s MP3 whose second `n` is a tone of 300 + 25·n Hz.
fn clock_track(dir: &Path) -> bytes::Bytes {
    let path = dir.join("clock.mp3");
    let expr = format!("0.5*sin(2*PI*({BASE_HZ}+{STEP_HZ}*floor(t))*t)");
    let ok = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("aevalsrc={expr}:s=44100:d={CLOCK_SECONDS}"))
        .args(["-ac", "2", "-c:a", "libmp3lame", "-b:a", "128k"])
        .args(["-metadata", "title=Clock", "-metadata", "artist=Drill"])
        .arg(&path)
        .status()
        .expect("ffmpeg")
        .success();
    assert!(ok, "ffmpeg made no clock track");
    bytes::Bytes::from(std::fs::read(path).unwrap())
}

/// The clock's position at the last sample of `pcm` (mono-mixed at `rate`), from the last step
/// of its tone found in the audio: a step from second n-1 to n is where the track was at n s.
fn clock_position_at_end(pcm: &[f32], channels: usize, rate: u32) -> Option<f64> {
    let mono: Vec<f32> = pcm
        .chunks(channels)
        .map(|f| f.iter().sum::<f32>())
        .collect();
    let window = (rate / 8) as usize; // 125 ms
    let second_of = |from: usize| -> Option<i64> {
        let w = mono.get(from..from + window)?;
        let rms = (w.iter().map(|s| s * s).sum::<f32>() / w.len() as f32).sqrt();
        if rms < 0.05 {
            return None; // silence, not the clock
        }
        let crossings = w
            .windows(2)
            .filter(|p| (p[0] < 0.0) != (p[1] < 0.0))
            .count();
        let hz = crossings as f64 / 2.0 / (window as f64 / f64::from(rate));
        Some(((hz - BASE_HZ) / STEP_HZ).round() as i64)
    };
    // Walk back from the end: the last window whose second differs from the one after it.
    let mut at = mono.len().checked_sub(window)?;
    let last = second_of(at)?;
    while at >= window {
        at -= window / 4;
        match second_of(at) {
            Some(s) if s == last => continue,
            Some(s) if s == last - 1 => {
                // The step lies within [at, at + window): take its middle.
                let step = at + window / 2;
                let after = (mono.len() - step) as f64 / f64::from(rate);
                return Some(last as f64 + after);
            }
            _ => return None,
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_process_resumes_the_programme() {
    let _turn = GATEWAYS.lock().await;
    let name = "onair SIGKILLed mid-track, empty cache";
    let site = Site::primary();
    let prefix = unique_prefix("resume");
    let cat = site.catalog(&prefix);
    let work = tempfile::tempdir().unwrap();
    put(&cat, "clock.mp3", clock_track(work.path())).await;
    upload(
        &cat,
        &[
            ("a.mp3", "14-long-title.mp3"),
            ("b.flac", "04-flac16.flac"),
            ("c.mp3", "10-cover-art.mp3"),
        ],
    )
    .await;
    let library_keys = ["a.mp3", "b.flac", "c.mp3", "clock.mp3"];
    let first_cache = tempfile::tempdir().unwrap();
    let first = Radio::start(
        &config(
            &s3_library(&site, &site.endpoint, &prefix, first_cache.path()),
            "[playout]\nsave_interval = \"2s\"\n",
        ),
        &[&site],
    );
    // Until the clock has played 8 s.
    let (elapsed, seen_at) = until(Duration::from_secs(120), "the clock on air", || async {
        now_playing(&first)
            .await
            .filter(|(key, elapsed, _)| key == "clock.mp3" && *elapsed >= 8.0)
            .map(|(_, elapsed, _)| (elapsed, SystemTime::now()))
    })
    .await;
    let started = seen_at - Duration::from_secs_f64(elapsed);
    let before = history(&first).await;
    eprintln!("{name}: round so far {before:?}, then the clock since {elapsed:.1} s");
    tokio::time::sleep(Duration::from_secs(3)).await;
    first.kill9();

    // The replacement: a new cache, the state from storage only.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second_cache = tempfile::tempdir().unwrap();
    let restarted = Instant::now();
    let second = Radio::start(
        &config(
            &s3_library(&site, &site.endpoint, &prefix, second_cache.path()),
            "",
        ),
        &[&site],
    );
    let (key, resumed_elapsed, _) =
        until(Duration::from_secs(30), "a track on air again", || async {
            now_playing(&second).await
        })
        .await;
    let on_air_after = restarted.elapsed().as_secs_f64();
    assert_eq!(key, "clock.mp3", "{name}: the same track resumes");
    let expected = SystemTime::now()
        .duration_since(started)
        .unwrap()
        .as_secs_f64();
    eprintln!(
        "{name}: resumed at {resumed_elapsed:.1} s (programme at {expected:.1} s), on air {on_air_after:.1} s after the start"
    );
    assert!(
        (resumed_elapsed - expected).abs() <= 2.0,
        "{name}: the radio says {resumed_elapsed:.1} s, the programme is at {expected:.1} s"
    );

    // What a listener hears is that position, read from the tone.
    let silence_before = metrics(&second)
        .await
        .get("onair_silence_seconds_total")
        .unwrap_or(0.0);
    let listener = Recorder::connect(second.addr).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let programme = SystemTime::now()
        .duration_since(started)
        .unwrap()
        .as_secs_f64();
    let capture = listener.finish().await;
    let analysis = capture.analyse();
    assert!(analysis.errors.is_empty(), "{name}: {:?}", analysis.errors);
    let pcm = decode::decode(capture.split.audio.clone());
    let heard = clock_position_at_end(&pcm.pcm, pcm.channels, pcm.sample_rate)
        .expect("the clock's tone in the capture");
    eprintln!("{name}: the listener hears second {heard:.1}, the programme is at {programme:.1}");
    // The listener's last bytes are the live edge, which leads the wall clock by up to the
    // pipeline's lead and lags it by up to one write interval.
    let offset = heard - programme;

    // The round goes on: the tracks not yet played in it, then a new round.
    let mut round: Vec<String> = before.clone();
    round.push("clock.mp3".into());
    let rest = library_keys.len() - round.len();
    for _ in 0..rest {
        let next = until(Duration::from_secs(90), "the next track", || async {
            now_playing(&second)
                .await
                .map(|(k, _, _)| k)
                .filter(|k| round.last() != Some(k))
        })
        .await;
        round.push(next);
    }
    let mut sorted = round.clone();
    sorted.sort();
    let m = metrics(&second).await;
    let silence = m.get("onair_silence_seconds_total").unwrap_or(0.0) - silence_before;
    let dead = analysis.dead_air(1.0);
    report(
        name,
        dead,
        None,
        &format!("resumed {offset:+.1} s off the programme; {}", sources(&m)),
    );
    assert_eq!(
        dead, 0.0,
        "{name}: dead air after the restart: {:?}",
        analysis.silences
    );
    assert_eq!(
        silence, 0.0,
        "{name}: filler silence after the resumed track started"
    );
    assert!(
        offset.abs() <= 2.0,
        "{name}: heard {heard:.1} s, programme at {programme:.1} s"
    );
    assert_eq!(
        sorted, library_keys,
        "{name}: the round {round:?} repeats a track"
    );
    assert!(second.stop().success());
}
