//! Show recordings: ffmpeg goes on air with `[live] record = true`, and the show's bytes land
//! under `recordings/` in the library (a folder, or the real Ceph bucket by a multipart upload),
//! decode, last as long as the show, and stay out of the AutoDJ's rotation.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use onair::config::Secrets;

use crate::live::{PASSWORD, ffmpeg_source, library, live_config};
use crate::support::s3::S3Library;
use crate::support::{TestServer, decode, require, until};

const SAVED: &str = "onair_live_recordings_total{result=\"saved\"}";

/// What ffmpeg makes of a recording: its duration, and any decoding error it reports.
fn ffmpeg_reads(path: &Path) -> (f64, String) {
    let out = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-nostats", "-v", "error", "-i"])
        .arg(path)
        .args(["-f", "wav", "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "ffmpeg reads {}", path.display());
    // A WAV of 16-bit samples: its data size gives the duration at the header's rate.
    let wav = out.stdout;
    let rate = u32::from_le_bytes(wav[24..28].try_into().unwrap()) as f64;
    let channels = u16::from_le_bytes(wav[22..24].try_into().unwrap()) as f64;
    let seconds = (wav.len() - 44) as f64 / (rate * channels * 2.0);
    (seconds, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn recordings(library: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(library.join("recordings"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

fn assert_lasts(what: &str, seconds: f64, expected: f64) {
    assert!(
        (seconds - expected).abs() <= 1.0,
        "{what}: {seconds:.2} s recorded of a {expected:.2} s show"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_show_is_recorded_as_sent_and_a_reconnect_within_the_grace_continues_it() {
    require("ffmpeg");
    let lib = library();
    let extra = "[live]\nrecord = true\nunderrun_grace = \"4s\"\n";
    let server = TestServer::start(live_config(lib.path(), extra, Some(PASSWORD))).await;
    server.wait_ready().await;
    let tracks = server.metric("onair_library_tracks").await;
    let url = format!(
        "icecast://source:{PASSWORD}@127.0.0.1:{}/live",
        server.addr.port()
    );

    // A show of 4 s, its DJ's link drops, and they are back at once for 3 s more.
    ffmpeg_source(1250, 4, &[], &url).await;
    ffmpeg_source(1250, 3, &[], &url).await;
    until(
        Duration::from_secs(15),
        "the show's recording saved",
        || async { (server.metric(SAVED).await >= 1.0).then_some(()) },
    )
    .await;
    let files = recordings(lib.path());
    assert_eq!(files.len(), 1, "one recording of the show: {files:?}");
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.ends_with("-source.mp3"),
        "named by start time and DJ: {name}"
    );
    let (seconds, errors) = ffmpeg_reads(&files[0]);
    assert_eq!(errors, "", "ffmpeg decodes the recording without an error");
    assert_lasts("ffmpeg", seconds, 7.0);
    let decoded = decode::decode(std::fs::read(&files[0]).unwrap());
    assert_lasts("symphonia", decoded.seconds(), 7.0);

    // After the grace, the same DJ's next show is a recording of its own.
    tokio::time::sleep(Duration::from_secs(5)).await;
    ffmpeg_source(1250, 2, &[], &url).await;
    until(Duration::from_secs(15), "the second show saved", || async {
        (server.metric(SAVED).await >= 2.0).then_some(())
    })
    .await;
    let files = recordings(lib.path());
    assert_eq!(files.len(), 2, "a recording for each show: {files:?}");
    let (seconds, errors) = ffmpeg_reads(&files[1]);
    assert_eq!(errors, "");
    assert_lasts("the second show", seconds, 2.0);
    assert!(
        !files
            .iter()
            .any(|f| f.extension().is_some_and(|e| e == "partial")),
        "no recording left half-written: {files:?}"
    );
    // Rescans (every second) leave the recordings out of the rotation.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(server.metric("onair_library_tracks").await, tracks);
    assert_eq!(
        server
            .metric("onair_live_recordings_total{result=\"failed\"}")
            .await,
        0.0
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shows_are_uploaded_to_the_bucket_and_a_show_cut_by_shutdown_is_kept() {
    require("ffmpeg");
    let Some(lib) = S3Library::upload("recording", &[("a.mp3", "01-cbr128.mp3")]).await else {
        return;
    };
    let secrets = Secrets {
        admin_password: None,
        source_password: Some(PASSWORD.into()),
    };
    let extra = "[live]\nrecord = true\nunderrun_grace = \"1s\"\n";
    let server = TestServer::start(lib.config_with("", extra, secrets)).await;
    server.wait_ready().await;
    let url = format!(
        "icecast://source:{PASSWORD}@127.0.0.1:{}/live",
        server.addr.port()
    );
    ffmpeg_source(1250, 5, &[], &url).await;
    until(
        Duration::from_secs(15),
        "the show's upload completed",
        || async { (server.metric(SAVED).await >= 1.0).then_some(()) },
    )
    .await;

    // A show still on air when the radio is told to stop is completed before it exits.
    let cut = tokio::spawn(ffmpeg_cut(url.clone()));
    until(
        Duration::from_secs(10),
        "the second show on air",
        || async { (server.metric("onair_live_connected").await == 1.0).then_some(()) },
    )
    .await;
    let on_air = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    server.shutdown().await.unwrap();
    let cut_after = on_air.elapsed().as_secs_f64();
    cut.await.unwrap();

    let client = lib.catalog.client();
    let prefix = format!("{}recordings/", lib.settings.prefix);
    let listed = client
        .list_objects_v2()
        .bucket(&lib.settings.bucket)
        .prefix(&prefix)
        .send()
        .await
        .unwrap();
    let mut keys: Vec<String> = listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect();
    keys.sort();
    assert_eq!(keys.len(), 2, "both shows in the bucket: {keys:?}");
    let dir = tempfile::tempdir().unwrap();
    for (key, expected) in keys.iter().zip([5.0, cut_after]) {
        assert!(key.ends_with("-source.mp3"), "{key}");
        let body = object_body(&lib, key).await;
        let file = dir.path().join("show.mp3");
        std::fs::write(&file, &body).unwrap();
        let (seconds, errors) = ffmpeg_reads(&file);
        assert_eq!(errors, "", "{key} decodes without an error");
        assert_lasts(key, seconds, expected);
    }
    let uploads = client
        .list_multipart_uploads()
        .bucket(&lib.settings.bucket)
        .prefix(&prefix)
        .send()
        .await
        .unwrap();
    assert!(
        uploads.uploads().is_empty(),
        "no upload left open: {:?}",
        uploads.uploads()
    );
}

#[tokio::test]
async fn an_upload_of_several_parts_is_one_object_in_the_bucket() {
    let Some(lib) = S3Library::upload("upload-parts", &[]).await else {
        return;
    };
    let first: Vec<u8> = (0..onair::catalog::s3::MIN_PART_BYTES)
        .map(|i| (i % 251) as u8)
        .collect();
    let mut upload = lib
        .catalog
        .start_upload("recordings/parts.bin", "application/octet-stream")
        .await
        .unwrap();
    upload.part(first.clone().into()).await.unwrap();
    upload.part(b"the end".to_vec().into()).await.unwrap();
    assert_eq!(upload.bytes(), first.len() as u64 + 7);
    assert!(upload.complete().await.unwrap());
    let body = object_body(&lib, &lib.catalog.object_key("recordings/parts.bin")).await;
    assert_eq!(body.len(), first.len() + 7);
    assert_eq!(&body[..first.len()], &first[..]);
    assert_eq!(&body[first.len()..], b"the end");

    // An upload with no part makes no object.
    let empty = lib
        .catalog
        .start_upload("recordings/empty.bin", "application/octet-stream")
        .await
        .unwrap();
    assert!(!empty.complete().await.unwrap());
}

/// The whole body of the object `key` (a key in the bucket, prefix included).
async fn object_body(lib: &S3Library, key: &str) -> bytes::Bytes {
    lib.catalog
        .client()
        .get_object()
        .bucket(&lib.settings.bucket)
        .key(key)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes()
}

/// ffmpeg on air until the radio stops under it.
async fn ffmpeg_cut(url: String) {
    let mut ffmpeg = std::process::Command::new("ffmpeg");
    ffmpeg
        .args(["-hide_banner", "-loglevel", "quiet", "-re", "-f", "lavfi"])
        .args(["-i", "sine=frequency=1250:sample_rate=44100", "-t", "30"])
        .args([
            "-ac",
            "2",
            "-c:a",
            "libmp3lame",
            "-b:a",
            "128k",
            "-f",
            "mp3",
        ])
        .arg(url);
    // It fails when the radio goes: that is the point.
    let _ = tokio::task::spawn_blocking(move || ffmpeg.status()).await;
}
