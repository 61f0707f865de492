//! The listener page in a real browser: Debian's Chromium, driven by playwright-core
//! (tests/browser/page-test.mjs), against onair running in this process.

use std::process::Command;

use onair::config::Secrets;

use crate::live::PASSWORD;
use crate::support::{ADMIN_PASSWORD, TestServer, config_with_library, library_with};

#[tokio::test]
async fn the_page_plays_and_follows_the_programme_in_chromium() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists()
            && root
                .join("tests/browser/node_modules/playwright-core")
                .exists(),
        "Chromium or playwright-core missing; the README's test command installs them"
    );
    let lib = library_with(&["01-cbr128.mp3", "03-mono22k.mp3", "04-flac16.flac"]);
    // Admin for the skip, a source password for the DJ the page test puts on air.
    let server = TestServer::start(config_with_library(
        &format!("kind = \"local\"\npath = \"{}\"\n", lib.path().display()),
        "[playlist]\norder = \"sequential\"\n",
        Secrets {
            admin_password: Some(ADMIN_PASSWORD.into()),
            source_password: Some(PASSWORD.into()),
        },
    ))
    .await;
    server.wait_ready().await;
    let screenshot = std::env::temp_dir().join("onair-page.png");
    let url = server.url("");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .args(["120", "node"])
            .arg(root.join("tests/browser/page-test.mjs"))
            .arg(url)
            .arg(&screenshot)
            .env("ONAIR_ADMIN_USER", "admin")
            .env("ONAIR_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("ONAIR_SOURCE_PASSWORD", PASSWORD)
            .output()
            .expect("run node")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser test failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("0 failed"), "{stdout}");
    server.shutdown().await.unwrap();
}
