//! Drill 6: bounded memory whatever the track. A 2-hour 320 kbps MP3 (288 MB) played from the
//! S3 library (streamed into the disk cache, decoded from there) and a 1-hour 24-bit/96 kHz FLAC
//! (about 700 MB) played from a local folder: the process's resident memory stays under 48 MB
//! while each plays.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::harness::*;

const RSS_LIMIT: u64 = 48 << 20;
/// How long each plays while its memory is sampled.
const PLAY: Duration = Duration::from_secs(30);

/// The two long tracks, made once per machine (about 40 s of ffmpeg) and kept for later runs.
fn long_tracks() -> (PathBuf, PathBuf) {
    let dir = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(".cache/onair/drill-media");
    std::fs::create_dir_all(&dir).unwrap();
    let mp3 = dir.join("mix-2h-320k.mp3");
    if !mp3.exists() {
        // One minute of 320 kbps frames, without a header: 120 copies are one valid stream.
        let minute = dir.join("minute-320k.mp3");
        ffmpeg(
            &[
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:sample_rate=44100:duration=60",
                "-ac",
                "2",
                "-c:a",
                "libmp3lame",
                "-b:a",
                "320k",
                "-write_xing",
                "0",
                "-id3v2_version",
                "0",
            ],
            &minute,
        );
        let one = std::fs::read(&minute).unwrap();
        let part = dir.join("mix.part");
        let mut out = std::fs::File::create(&part).unwrap();
        for _ in 0..120 {
            std::io::Write::write_all(&mut out, &one).unwrap();
        }
        std::fs::rename(&part, &mp3).unwrap();
    }
    let flac = dir.join("set-1h-24-96.flac");
    if !flac.exists() {
        let part = dir.join("set.part.flac");
        ffmpeg(
            &[
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=330:sample_rate=96000:duration=3600",
                "-f",
                "lavfi",
                "-i",
                "anoisesrc=d=3600:c=white:r=96000:a=0.002",
                "-filter_complex",
                "[0][1]amix=inputs=2:normalize=0,pan=stereo|c0=c0|c1=c0",
                "-sample_fmt",
                "s32",
                "-c:a",
                "flac",
                "-compression_level",
                "0",
            ],
            &part,
        );
        std::fs::rename(&part, &flac).unwrap();
    }
    (mp3, flac)
}

fn ffmpeg(args: &[&str], out: &Path) {
    let ok = Command::new("nice")
        .args(["-n", "19", "ffmpeg", "-v", "error", "-y"])
        .args(args)
        .arg(out)
        .status()
        .expect("ffmpeg")
        .success();
    assert!(ok, "ffmpeg could not make {}", out.display());
}

/// Plays what `radio` has for [`PLAY`] with a listener, sampling its memory; the highest RSS.
async fn peak_rss(radio: &Radio, what: &str) -> u64 {
    until(
        Duration::from_secs(120),
        "the long track on air",
        || async { now_playing(radio).await.filter(|(_, _, d)| *d > 1800.0) },
    )
    .await;
    let listener = Recorder::connect(radio.addr).await;
    let mut peak = 0;
    while listener.elapsed() < PLAY {
        peak = peak.max(radio.rss());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let capture = listener.finish().await;
    let analysis = capture.analyse();
    assert!(analysis.errors.is_empty(), "{what}: {:?}", analysis.errors);
    assert!(
        analysis.dead_air(1.0) == 0.0,
        "{what}: dead air {:?}",
        analysis.silences
    );
    eprintln!("{what}: peak RSS {:.1} MB", peak as f64 / 1048576.0);
    peak
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_tracks_play_in_bounded_memory() {
    // Made before taking a turn: the other drills go on meanwhile.
    let (mp3, flac) = tokio::task::spawn_blocking(long_tracks).await.unwrap();
    let name = "2 h MP3 (S3) and 1 h 24/96 FLAC (local)";

    let mp3_peak = {
        let _turn = GATEWAYS.lock().await;
        let site = Site::primary();
        let prefix = unique_prefix("memory");
        put_file(&site.catalog(&prefix), "mix.mp3", &mp3).await;
        let cache = tempfile::tempdir().unwrap();
        let radio = Radio::start(
            &config(
                &s3_library(&site, &site.endpoint, &prefix, cache.path()),
                "",
            ),
            &[&site],
        );
        let peak = peak_rss(&radio, "2 h MP3 from S3").await;
        assert!(radio.stop().success());
        peak
    };

    let folder = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(&flac, folder.path().join("set.flac")).unwrap();
    let radio = Radio::start(
        &config(
            &format!("kind = \"local\"\npath = \"{}\"\n", folder.path().display()),
            "",
        ),
        &[],
    );
    let flac_peak = peak_rss(&radio, "1 h 24/96 FLAC from a folder").await;
    assert!(radio.stop().success());

    let peak = mp3_peak.max(flac_peak);
    report(
        name,
        0.0,
        None,
        &format!(
            "peak RSS {:.1} MB (MP3) / {:.1} MB (FLAC), limit 48 MB",
            mp3_peak as f64 / 1048576.0,
            flac_peak as f64 / 1048576.0
        ),
    );
    assert!(
        peak < RSS_LIMIT,
        "{name}: RSS reached {:.1} MB",
        peak as f64 / 1048576.0
    );
}
