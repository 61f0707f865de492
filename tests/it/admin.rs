//! The Icecast admin interface: auth, XML and JSON answers, and what each command does to real
//! listeners.

use std::time::{Duration, Instant};

use crate::support::{
    ADMIN_PASSWORD, RawStream, TestServer, admin_config_for, config_for, icy, library_with,
};

const TWO_TRACKS: &[&str] = &["01-cbr128.mp3", "03-mono22k.mp3"];
const SEQUENTIAL: &str = "[playlist]\norder = \"sequential\"\n";

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn admin_get(server: &TestServer, path_and_query: &str) -> reqwest::Response {
    client()
        .get(server.url(path_and_query))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap()
}

async fn admin_xml(server: &TestServer, path_and_query: &str) -> String {
    let r = admin_get(server, path_and_query).await;
    assert_eq!(r.status(), 200, "{path_and_query}");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/xml")
    );
    r.text().await.unwrap()
}

fn child_text<'a>(node: roxmltree::Node<'a, 'a>, name: &str) -> &'a str {
    node.children()
        .find(|c| c.has_tag_name(name))
        .and_then(|c| c.text())
        .unwrap_or_else(|| panic!("<{name}> missing under <{}>", node.tag_name().name()))
}

#[tokio::test]
async fn every_admin_endpoint_demands_credentials() {
    let lib = library_with(&["01-cbr128.mp3"]);
    let server = TestServer::start(admin_config_for(lib.path(), "")).await;
    for path in [
        "/admin/stats",
        "/admin/listclients?mount=/radio.mp3",
        "/admin/listmounts",
        "/admin/metadata?mode=updinfo&mount=/radio.mp3&song=x",
        "/admin/killclient?mount=/radio.mp3&id=1",
        "/admin/next?mount=/radio.mp3",
    ] {
        let none = client().get(server.url(path)).send().await.unwrap();
        assert_eq!(none.status(), 401, "{path} without credentials");
        assert_eq!(
            none.headers()["www-authenticate"],
            "Basic realm=\"Icecast2 Server\""
        );
        let wrong = client()
            .get(server.url(path))
            .basic_auth("admin", Some("wrong"))
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401, "{path} with a wrong password");
        let user = client()
            .get(server.url(path))
            .basic_auth("root", Some(ADMIN_PASSWORD))
            .send()
            .await
            .unwrap();
        assert_eq!(user.status(), 401, "{path} with a wrong user");
        let ok = admin_get(&server, path).await;
        assert!(
            ok.status() == 200 || ok.status() == 404,
            "{path}: {}",
            ok.status()
        );
    }
    server.shutdown().await.unwrap();

    // Without ONAIR_ADMIN_PASSWORD nothing answers, whatever the credentials.
    let server = TestServer::start(config_for(lib.path(), "")).await;
    let r = client()
        .get(server.url("/admin/stats"))
        .basic_auth("admin", Some(""))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn stats_listclients_and_killclient() {
    let lib = library_with(&["01-cbr128.mp3"]);
    let server = TestServer::start(admin_config_for(
        lib.path(),
        "[[mount]]\npath = \"/radio.mp3\"\n[[mount]]\npath = \"/low.mp3\"\nbitrate = 64\n",
    ))
    .await;
    server.wait_ready().await;
    let mut l = RawStream::get(server.addr, "/radio.mp3", "User-Agent: TestPlayer/2.1\r\n").await;
    l.read(1000, Duration::from_secs(5)).await;

    let xml = admin_xml(&server, "/admin/stats").await;
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "icestats");
    assert_eq!(child_text(root, "listeners"), "1");
    assert_eq!(child_text(root, "sources"), "2");
    assert_eq!(
        child_text(root, "server_id"),
        concat!("onair ", env!("CARGO_PKG_VERSION"))
    );
    assert!(child_text(root, "server_start_iso8601").ends_with("+0000"));
    let sources: Vec<_> = root
        .children()
        .filter(|c| c.has_tag_name("source"))
        .collect();
    assert_eq!(sources.len(), 2);
    let src = sources[0];
    assert_eq!(src.attribute("mount"), Some("/radio.mp3"));
    assert_eq!(child_text(src, "listeners"), "1");
    assert_eq!(child_text(src, "listener_peak"), "1");
    assert_eq!(child_text(src, "bitrate"), "128");
    assert_eq!(child_text(src, "samplerate"), "44100");
    assert_eq!(child_text(src, "channels"), "2");
    assert_eq!(child_text(src, "server_name"), "Test Radio");
    assert_eq!(child_text(src, "server_type"), "audio/mpeg");
    assert_eq!(child_text(src, "title"), "The Testers - Morning Drive");
    assert_eq!(
        child_text(src, "audio_info"),
        "channels=2;samplerate=44100;bitrate=128"
    );
    assert_eq!(
        child_text(src, "listenurl"),
        format!("http://{}/radio.mp3", server.addr)
    );
    assert_eq!(child_text(sources[1], "listeners"), "0");
    assert_eq!(child_text(sources[1], "bitrate"), "64");

    let xml = admin_xml(&server, "/admin/listmounts").await;
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let mounts: Vec<_> = doc
        .root_element()
        .children()
        .filter(|c| c.has_tag_name("source"))
        .collect();
    assert_eq!(mounts[0].attribute("mount"), Some("/radio.mp3"));
    assert_eq!(child_text(mounts[0], "listeners"), "1");
    assert_eq!(child_text(mounts[0], "content-type"), "audio/mpeg");

    let xml = admin_xml(&server, "/admin/listclients?mount=/radio.mp3").await;
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let src = doc.root_element().first_element_child().unwrap();
    assert_eq!(src.attribute("mount"), Some("/radio.mp3"));
    assert_eq!(child_text(src, "Listeners"), "1");
    assert_eq!(child_text(src, "listeners"), "1");
    let listener = src.children().find(|c| c.has_tag_name("listener")).unwrap();
    assert_eq!(child_text(listener, "IP"), "127.0.0.1");
    assert_eq!(child_text(listener, "UserAgent"), "TestPlayer/2.1");
    assert!(child_text(listener, "Connected").parse::<u64>().unwrap() < 60);
    let id = child_text(listener, "ID").to_string();
    assert_eq!(listener.attribute("id"), Some(id.as_str()));

    // JSON on request.
    let j: serde_json::Value = client()
        .get(server.url("/admin/listclients?mount=/radio.mp3"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(j["clients"][0]["user_agent"], "TestPlayer/2.1");
    assert_eq!(j["clients"][0]["id"].to_string(), id);

    let unknown = admin_get(&server, "/admin/killclient?mount=/radio.mp3&id=999999").await;
    assert_eq!(unknown.status(), 404);
    let xml = admin_xml(
        &server,
        &format!("/admin/killclient?mount=/radio.mp3&id={id}"),
    )
    .await;
    let doc = roxmltree::Document::parse(&xml).unwrap();
    assert_eq!(child_text(doc.root_element(), "return"), "1");
    let t = Instant::now();
    assert!(
        l.read_to_end(Duration::from_secs(3)).await.is_some(),
        "killed listener's stream ends"
    );
    assert!(t.elapsed() < Duration::from_secs(2));
    let xml = admin_xml(&server, "/admin/listclients?mount=/radio.mp3").await;
    assert!(xml.contains("<listeners>0</listeners>"), "{xml}");
    let metrics = reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .contains("onair_listener_disconnects_total{mount=\"/radio.mp3\",reason=\"admin\"} 1")
    );

    assert_eq!(
        admin_get(&server, "/admin/listclients?mount=/nope.mp3")
            .await
            .status(),
        404
    );
    assert_eq!(admin_get(&server, "/admin/listclients").await.status(), 400);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn metadata_update_reaches_icy_listeners_and_holds_until_the_next_track() {
    let lib = library_with(TWO_TRACKS);
    let metaint = 4000;
    let server = TestServer::start(admin_config_for(
        lib.path(),
        &format!("{SEQUENTIAL}[[mount]]\npath = \"/radio.mp3\"\nburst = \"0s\"\nicy_metaint = {metaint}\n"),
    ))
    .await;
    server.wait_ready().await;
    let mut l = RawStream::get(server.addr, "/radio.mp3", "Icy-MetaData: 1\r\n").await;
    // Catch up with the live edge.
    let mut before = l
        .read(2 * (metaint + 1) + 500, Duration::from_secs(5))
        .await;

    let xml = admin_xml(
        &server,
        "/admin/metadata?mode=updinfo&mount=%2Fradio.mp3&song=Live%20%E2%80%94%20Caf%C3%A9+Session",
    )
    .await;
    assert_eq!(
        xml.trim(),
        "<?xml version=\"1.0\"?>\n<iceresponse><message>Metadata update successful</message><return>1</return></iceresponse>"
    );
    // Within one metadata interval of the audio produced after the update (plus the pipeline's
    // 0.3 s lead, 4800 bytes at 128 kbps), the new title arrives.
    let after = l
        .read(2 * (metaint + 1) + 4800 + 4096, Duration::from_secs(10))
        .await;
    before.extend_from_slice(&after);
    let split = icy::split(&before, metaint);
    let titles: Vec<&str> = split.titles.iter().map(|t| t.title.as_str()).collect();
    assert_eq!(titles.last(), Some(&"Live — Café Session"), "{titles:?}");

    let status: serde_json::Value = reqwest::get(server.url("/status-json.xsl"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["icestats"]["source"]["title"], "Live — Café Session");

    // artist + title form, then the next track replaces the operator's title.
    let r = admin_get(
        &server,
        "/admin/metadata?mode=updinfo&mount=/radio.mp3&artist=DJ&title=Hour",
    )
    .await;
    assert_eq!(r.status(), 200);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let now: serde_json::Value = reqwest::get(server.url("/api/nowplaying"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(now["now_playing"]["title"], "DJ - Hour");
    assert_eq!(
        now["now_playing"]["artist"], "The Testers",
        "tags stay the track's"
    );
    admin_get(&server, "/admin/next?mount=/radio.mp3").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let now: serde_json::Value = reqwest::get(server.url("/api/nowplaying"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        now["now_playing"]["title"],
        "O'Brien - Don't Stop 'Til Dawn"
    );

    assert_eq!(
        admin_get(&server, "/admin/metadata?mode=updinfo&mount=/radio.mp3")
            .await
            .status(),
        400
    );
    assert_eq!(
        admin_get(
            &server,
            "/admin/metadata?mode=other&mount=/radio.mp3&song=x"
        )
        .await
        .status(),
        400
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn next_moves_the_autodj_on_and_the_listener_hears_it() {
    let lib = library_with(TWO_TRACKS);
    let server = TestServer::start(admin_config_for(
        lib.path(),
        &format!(
            "{SEQUENTIAL}[[mount]]\npath = \"/radio.mp3\"\nburst = \"0s\"\nicy_metaint = 2000\n"
        ),
    ))
    .await;
    server.wait_ready().await;
    let mut l = RawStream::get(server.addr, "/radio.mp3", "Icy-MetaData: 1\r\n").await;
    let mut data = l.read(3 * 2001, Duration::from_secs(5)).await;
    let before: serde_json::Value = reqwest::get(server.url("/api/nowplaying"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(before["now_playing"]["key"], "01-cbr128.mp3");
    assert_eq!(before["next"]["key"], "03-mono22k.mp3");

    let j: serde_json::Value = client()
        .get(server.url("/admin/next?mount=/radio.mp3"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(j["return"], 1);
    data.extend(l.read(8 * 2001, Duration::from_secs(10)).await);
    let split = icy::split(&data, 2000);
    let titles: Vec<&str> = split.titles.iter().map(|t| t.title.as_str()).collect();
    assert_eq!(
        titles,
        [
            "The Testers - Morning Drive",
            "O'Brien - Don't Stop 'Til Dawn"
        ],
        "the listener hears the next track"
    );
    let after: serde_json::Value = reqwest::get(server.url("/api/nowplaying"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(after["now_playing"]["key"], "03-mono22k.mp3");
    assert_eq!(after["history"][0]["key"], "01-cbr128.mp3");
    server.shutdown().await.unwrap();
}
