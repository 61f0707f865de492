//! `[server] admin_listen`: the ops paths (`/admin/*`, `/metrics`, `/readyz`) on their own
//! address, and no longer on the public one.

use std::time::Duration;

use crate::support::{ADMIN_PASSWORD, RawStream, TestServer, admin_config_for, library_with};

async fn status(url: String) -> u16 {
    reqwest::Client::new()
        .get(url)
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn ops_paths_are_served_on_the_admin_address_only() {
    let lib = library_with(&["01-cbr128.mp3"]);
    let admin = onair::http::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let admin_addr = admin.local_addr().unwrap();
    let mut config = admin_config_for(lib.path(), "");
    config.server.admin_listen = Some(admin_addr);
    let server = TestServer::start_options(
        config,
        onair::Options {
            admin_listener: Some(admin),
            ..onair::Options::default()
        },
    )
    .await;
    server.wait_ready_at("/healthz").await;
    let on_admin = |p: &str| format!("http://{admin_addr}{p}");
    crate::support::until(
        Duration::from_secs(10),
        "ready on the admin address",
        || async { (status(on_admin("/readyz")).await == 200).then_some(()) },
    )
    .await;
    for path in ["/metrics", "/admin/stats", "/admin/listmounts"] {
        assert_eq!(status(on_admin(path)).await, 200, "admin address: {path}");
        assert_eq!(
            status(server.url(path)).await,
            404,
            "public address: {path}"
        );
    }
    assert_eq!(status(server.url("/readyz")).await, 404);
    for path in ["/healthz", "/status-json.xsl", "/api/nowplaying", "/"] {
        assert_eq!(
            status(server.url(path)).await,
            200,
            "public address: {path}"
        );
        assert_eq!(status(on_admin(path)).await, 404, "admin address: {path}");
    }
    // Listeners are served on the public address only.
    let mut l = RawStream::get(server.addr, "/radio.mp3", "").await;
    assert_eq!(l.status_line, "HTTP/1.0 200 OK");
    assert!(!l.read(1000, Duration::from_secs(5)).await.is_empty());
    let not_there = RawStream::get(admin_addr, "/radio.mp3", "").await;
    assert!(
        not_there.status_line.contains(" 404 "),
        "{}",
        not_there.status_line
    );
    let metrics = reqwest::get(on_admin("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("onair_listeners{mount=\"/radio.mp3\",protocol=\"http\"} 1"));
    drop(l);
    server.shutdown().await.unwrap();
    assert!(
        tokio::net::TcpStream::connect(admin_addr).await.is_err(),
        "the admin address closes with the rest"
    );
}
