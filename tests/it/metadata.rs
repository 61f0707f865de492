//! ICY titles: what a metadata-aware player sees, for tags in every container and script.

use std::time::Duration;

use onair::audio::clock::Clock;

use crate::support::{HARD_CUTS, RawStream, TestServer, config_for, icy, library_with, manifest};

/// Plays each tagged file alone and checks the title a listener gets at the first boundary.
#[tokio::test]
async fn titles_come_from_the_tags_of_every_format() {
    let entries: Vec<_> = manifest()
        .into_iter()
        .filter(|e| e.status == "ok")
        .collect();
    let files: Vec<&str> = entries.iter().map(|e| e.file.as_str()).collect();
    let lib = library_with(&files);
    // Sequential and unpaced: every track plays in key order, fast. The long queue keeps the
    // whole run in the ring so one listener from the start sees every title.
    let server = TestServer::start_with(
        config_for(
            lib.path(),
            &format!("[playlist]\norder = \"sequential\"\n{HARD_CUTS}[[mount]]\npath = \"/radio.mp3\"\nburst = \"599s\"\nqueue = \"600s\"\nicy_metaint = 8192\n"),
        ),
        Clock::Unpaced,
    )
    .await;
    let mut s = RawStream::get(server.addr, "/radio.mp3", "Icy-MetaData: 1\r\n").await;
    assert_eq!(s.header("icy-metaint"), Some("8192"));
    let total: f64 = entries.iter().map(|e| e.seconds).sum();
    let bytes = s
        .read(((total - 1.0) * 16_000.0) as usize, Duration::from_secs(60))
        .await;
    let split = icy::split(&bytes, 8192);
    let titles: Vec<String> = split.titles.iter().map(|t| t.title.clone()).collect();
    server.shutdown().await.unwrap();

    for e in &entries {
        let want = e.display_title();
        if want.len() > 4000 {
            // Over-long: cut on a character boundary to fit one ICY block.
            let seen = titles
                .iter()
                .find(|t| want.starts_with(t.as_str()) && t.len() > 3000)
                .unwrap_or_else(|| panic!("{}: no truncated title in {titles:?}", e.file));
            assert!(seen.len() + "StreamTitle='';".len() <= 255 * 16);
        } else {
            assert!(
                titles.contains(&want),
                "{}: {want:?} not in {titles:?}",
                e.file
            );
        }
    }
    for raw in &split.raw_blocks {
        assert!(raw.len() <= 4080);
    }
    // Titles change in play order, each once.
    let mut expected: Vec<String> = entries.iter().map(|e| e.display_title()).collect();
    expected.dedup();
    assert_eq!(titles.len(), expected.len(), "{titles:?}");
}

#[tokio::test]
async fn unchanged_title_is_a_single_zero_byte_and_no_metadata_without_the_header() {
    let lib = library_with(&["01-cbr128.mp3"]);
    let server = TestServer::start(config_for(
        lib.path(),
        "[[mount]]\npath = \"/radio.mp3\"\nicy_metaint = 4000\n",
    ))
    .await;
    server.wait_ready().await;
    let mut s = RawStream::get(server.addr, "/radio.mp3", "Icy-MetaData: 1\r\n").await;
    let data = s.read(5 * 4001 + 200, Duration::from_secs(10)).await;
    let split = icy::split(&data, 4000);
    assert_eq!(split.titles.len(), 1);
    assert_eq!(split.titles[0].title, "The Testers - Morning Drive");
    assert_eq!(
        split.titles[0].audio_offset, 4000,
        "title at the first boundary"
    );
    assert!(split.empty_blocks >= 3);

    // Without Icy-MetaData the same stream is plain MP3.
    let mut plain = RawStream::get(server.addr, "/radio.mp3", "").await;
    let audio = plain.read(20_000, Duration::from_secs(10)).await;
    assert!(!audio.windows(12).any(|w| w == b"StreamTitle="));
    server.shutdown().await.unwrap();
}
