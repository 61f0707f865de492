//! Hostile titles, from a track's tags and from `/admin/metadata`: control characters, NUL,
//! quotes, markup and a `';` that tries to end `StreamTitle` and inject a `StreamUrl`. Each must
//! give a well-formed ICY block with one field, strictly valid XML and valid JSON everywhere the
//! title is shown.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::{
    ADMIN_PASSWORD, RawStream, TestServer, admin_config_for, icy, media_dir, require, until,
};

/// The injection the issue reported, and what it becomes: the quote of each `';` turns into
/// U+2019, so no player can read the semicolon as the end of the field.
const EVIL: &str = "Bad';StreamUrl='http://evil.example/';";
const EVIL_CLEAN: &str = "Bad\u{2019};StreamUrl='http://evil.example/\u{2019};";

/// A user agent with everything an HTTP header may carry that XML needs escaped: a tab, markup,
/// quotes and non-ASCII text.
const NASTY_AGENT: &str = "Evil\t<UA> & \"q\" 'x' \u{ff}";

const METAINT: usize = 4000;

/// The fields of an ICY metadata text as a player splits them: `key='value';` pairs, each value
/// ending at the first `';`.
fn icy_fields(text: &str) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    let mut rest = text;
    while let Some(eq) = rest.find("='") {
        let key = rest[..eq].to_string();
        let after = &rest[eq + 2..];
        let Some(end) = after.find("';") else {
            fields.push((key, after.to_string()));
            break;
        };
        fields.push((key, after[..end].to_string()));
        rest = &after[end + 2..];
    }
    assert!(
        rest.trim_end_matches('\0').is_empty() || !rest.contains("='"),
        "{text:?}"
    );
    fields
}

/// Reads the stream until a metadata block whose title contains `needle` arrives, and returns
/// that block's text. `data` holds everything read from the stream so far (blocks are found
/// by their offset from its start).
async fn block_with(stream: &mut RawStream, data: &mut Vec<u8>, needle: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        data.extend(stream.read(METAINT + 1, Duration::from_secs(5)).await);
        let split = icy::split(data, METAINT);
        if let Some(block) = split.raw_blocks.iter().find(|b| b.contains(needle)) {
            return block.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no block with {needle:?} in {:?}",
            split.raw_blocks
        );
    }
}

async fn admin(server: &TestServer, path: &str, json: bool) -> String {
    let mut req = reqwest::Client::new()
        .get(server.url(path))
        .basic_auth("admin", Some(ADMIN_PASSWORD));
    if json {
        req = req.header("Accept", "application/json");
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.text().await.unwrap()
}

fn child_text<'a>(node: roxmltree::Node<'a, 'a>, name: &str) -> String {
    node.children()
        .find(|c| c.has_tag_name(name))
        .and_then(|c| c.text())
        .unwrap_or_default()
        .to_string()
}

/// Every document that shows the title or a listener's user agent: XML parsed strictly, JSON
/// with serde_json, and the page; each must show `title` exactly.
async fn documents_show(server: &TestServer, title: &str) {
    let xml = admin(server, "/admin/stats", false).await;
    let doc = roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("{e}: {xml:?}"));
    let source = doc
        .root_element()
        .children()
        .find(|c| c.has_tag_name("source"))
        .unwrap();
    assert_eq!(child_text(source, "title"), title);

    let xml = admin(server, "/admin/listclients?mount=/radio.mp3", false).await;
    let doc = roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("{e}: {xml:?}"));
    let agents: Vec<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name("UserAgent"))
        .map(|n| n.text().unwrap_or_default().to_string())
        .collect();
    assert_eq!(agents, [NASTY_AGENT]);

    let xml = admin(server, "/admin/listmounts", false).await;
    roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("{e}: {xml:?}"));

    let stats: Value = serde_json::from_str(&admin(server, "/admin/stats", true).await).unwrap();
    assert_eq!(stats["icestats"]["source"][0]["title"], title);
    let clients: Value =
        serde_json::from_str(&admin(server, "/admin/listclients?mount=/radio.mp3", true).await)
            .unwrap();
    assert_eq!(clients["clients"][0]["user_agent"], NASTY_AGENT);

    let status = reqwest::get(server.url("/status-json.xsl"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let status: Value = serde_json::from_str(&status).unwrap_or_else(|e| panic!("{e}: {status}"));
    assert_eq!(status["icestats"]["source"]["title"], title);
    let now = reqwest::get(server.url("/api/nowplaying"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let now: Value = serde_json::from_str(&now).unwrap_or_else(|e| panic!("{e}: {now}"));
    assert_eq!(now["now_playing"]["title"], title);

    let page = reqwest::get(server.url("/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let shown = title
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;");
    assert!(
        page.contains(&format!(">{shown}</h2>")),
        "the page shows the escaped title"
    );
}

/// A track whose tags hold the injection and control characters plays with a clean title.
#[tokio::test]
async fn hostile_tags_give_one_icy_field_and_valid_documents() {
    require("ffmpeg");
    let lib = tempfile::tempdir().unwrap();
    let file = lib.path().join("hostile.mp3");
    let artist = "\u{1}A\u{2}<b>&\"c\"\tz\u{1b}";
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(media_dir().join("01-cbr128.mp3"))
        .args(["-map", "0:a", "-c", "copy", "-map_metadata", "-1"])
        .args(["-metadata", &format!("title={EVIL}")])
        .args(["-metadata", &format!("artist={artist}")])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let title = format!("A<b>&\"c\" z - {EVIL_CLEAN}");

    let server = TestServer::start(admin_config_for(
        lib.path(),
        &format!("[[mount]]\npath = \"/radio.mp3\"\nicy_metaint = {METAINT}\n"),
    ))
    .await;
    server.wait_ready().await;
    let mut l = RawStream::get(
        server.addr,
        "/radio.mp3",
        &format!("Icy-MetaData: 1\r\nUser-Agent: {NASTY_AGENT}\r\n"),
    )
    .await;
    let block = block_with(&mut l, &mut Vec::new(), "Bad").await;
    assert_eq!(
        icy_fields(&block),
        [("StreamTitle".to_string(), title.clone())],
        "one field, no StreamUrl: {block:?}"
    );
    documents_show(&server, &title).await;
    server.shutdown().await.unwrap();
}

/// The same through `/admin/metadata`, with a NUL and every C0 character the URL can carry.
#[tokio::test]
async fn hostile_admin_titles_give_one_icy_field_and_valid_documents() {
    let lib = crate::support::library_with(&["01-cbr128.mp3"]);
    let server = TestServer::start(admin_config_for(
        lib.path(),
        &format!("[[mount]]\npath = \"/radio.mp3\"\nicy_metaint = {METAINT}\n"),
    ))
    .await;
    server.wait_ready().await;
    let mut l = RawStream::get(
        server.addr,
        "/radio.mp3",
        &format!("Icy-MetaData: 1\r\nUser-Agent: {NASTY_AGENT}\r\n"),
    )
    .await;
    let mut data = Vec::new();
    block_with(&mut l, &mut data, "Morning Drive").await;

    let controls: String = (0u8..0x20).map(|b| format!("%{b:02X}")).collect();
    let song = format!(
        "%00Live%01 %3Cb%3E %26 %27q%27 %22dq%22 {controls}{}",
        EVIL.replace('&', "%26")
            .replace('\'', "%27")
            .replace(';', "%3B")
    );
    let xml = admin(
        &server,
        &format!("/admin/metadata?mode=updinfo&mount=/radio.mp3&song={song}"),
        false,
    )
    .await;
    roxmltree::Document::parse(&xml).unwrap();
    // Tab, LF and CR among the controls become one space; the rest disappear.
    let title = format!("Live <b> & 'q' \"dq\" {EVIL_CLEAN}");
    let block = block_with(&mut l, &mut data, "Bad").await;
    assert_eq!(
        icy_fields(&block),
        [("StreamTitle".to_string(), title.clone())],
        "one field, no StreamUrl: {block:?}"
    );
    until(
        Duration::from_secs(5),
        "the title in the status",
        || async {
            let v: Value = reqwest::get(server.url("/status-json.xsl"))
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (v["icestats"]["source"]["title"] == title.as_str()).then_some(())
        },
    )
    .await;
    documents_show(&server, &title).await;

    // A title of nothing but control characters is no title.
    let r = reqwest::Client::new()
        .get(server.url(&format!(
            "/admin/metadata?mode=updinfo&mount=/radio.mp3&song={controls}"
        )))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    server.shutdown().await.unwrap();
}
