//! Who gets into `/admin/*`: cross-site commands refused while tools and the server's own pages
//! keep working; failed logins answered late, budgeted per address and logged without the
//! password.

use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{ADMIN_PASSWORD, TestServer, admin_config_for, library_with, until};

/// `admin_auth::FAILED_LOGIN_DELAY` and `FAILURE_BUDGET`.
const DELAY: Duration = Duration::from_millis(500);
const BUDGET: usize = 20;

async fn title(server: &TestServer) -> String {
    let v: Value = reqwest::get(server.url("/status-json.xsl"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["icestats"]["source"]["title"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn cross_site_admin_commands_are_refused_and_tools_keep_working() {
    let lib = library_with(&["01-cbr128.mp3"]);
    let server = TestServer::start(admin_config_for(lib.path(), "")).await;
    server.wait_ready().await;
    let client = reqwest::Client::new();
    let own = format!("http://{}", server.addr);
    let send = |path: String, headers: Vec<(&'static str, String)>| {
        let mut r = client
            .get(server.url(&path))
            .basic_auth("admin", Some(ADMIN_PASSWORD));
        for (k, v) in headers {
            r = r.header(k, v);
        }
        async move { r.send().await.unwrap().status().as_u16() }
    };
    let metadata =
        |song: &str| format!("/admin/metadata?mode=updinfo&mount=/radio.mp3&song={song}");

    // What a browser says for a request from a page on another site.
    let cross: Vec<Vec<(&'static str, String)>> = vec![
        vec![("Sec-Fetch-Site", "cross-site".into())],
        vec![("Origin", "https://evil.example".into())],
        vec![("Origin", "null".into())],
        vec![
            ("Origin", "https://evil.example".into()),
            ("Sec-Fetch-Site", "cross-site".into()),
        ],
    ];
    for headers in &cross {
        for path in [
            metadata("forged"),
            "/admin/next?mount=/radio.mp3".into(),
            "/admin/killclient?mount=/radio.mp3&id=1".into(),
        ] {
            assert_eq!(
                send(path.clone(), headers.clone()).await,
                403,
                "{path} {headers:?}"
            );
        }
        // Reads are not refused: the browser keeps the answer from the page anyway.
        assert_eq!(send("/admin/stats".into(), headers.clone()).await, 200);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        title(&server).await,
        "The Testers - Morning Drive",
        "nothing changed"
    );

    // The server's own pages, the same site, and tools that send neither header.
    let allowed: Vec<Vec<(&'static str, String)>> = vec![
        vec![],
        vec![
            ("Sec-Fetch-Site", "same-origin".into()),
            ("Origin", own.clone()),
        ],
        vec![("Sec-Fetch-Site", "same-site".into())],
        vec![("Sec-Fetch-Site", "none".into())],
        // The same host on another port: the same site, as `same-site` is.
        vec![(
            "Origin",
            format!("http://127.0.0.1:{}", server.addr.port() + 1),
        )],
    ];
    for (i, headers) in allowed.into_iter().enumerate() {
        let song = format!("allowed-{i}");
        assert_eq!(
            send(metadata(&song), headers.clone()).await,
            200,
            "{headers:?}"
        );
        until(Duration::from_secs(5), "the title set", || {
            let song = song.clone();
            let server = &server;
            async move { (title(server).await == song).then_some(()) }
        })
        .await;
    }
    // A forged request does not learn whether its credentials were right, nor count as a
    // failed login.
    let status = client
        .get(server.url(&metadata("x")))
        .basic_auth("admin", Some("wrong"))
        .header("Sec-Fetch-Site", "cross-site")
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 403);
    server.shutdown().await.unwrap();
}

async fn stats_as(client: &reqwest::Client, server: &TestServer, password: &str) -> u16 {
    client
        .get(server.url("/admin/stats"))
        .basic_auth("admin", Some(password))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn failed_logins_are_slowed_and_budgeted_per_address() {
    let lib = library_with(&["01-cbr128.mp3"]);
    let server = TestServer::start(admin_config_for(lib.path(), "")).await;
    let client = reqwest::Client::new();

    // A failure is answered late, and the wait holds nobody else up: the same address's other
    // requests, its right password included, are answered at once meanwhile.
    let t = Instant::now();
    let wrong = tokio::spawn({
        let (client, url) = (client.clone(), server.url("/admin/stats"));
        async move {
            let r = client
                .get(url)
                .basic_auth("admin", Some("guess"))
                .send()
                .await;
            (r.unwrap().status().as_u16(), t.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let quick = Instant::now();
    assert_eq!(stats_as(&client, &server, ADMIN_PASSWORD).await, 200);
    let health = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(
        quick.elapsed() < Duration::from_millis(300),
        "{:?}",
        quick.elapsed()
    );
    let (status, took) = wrong.await.unwrap();
    assert_eq!(status, 401);
    assert!(took >= DELAY, "a failed login answered after {took:?}");

    // Guessing in parallel gains nothing: the budget is exact, and once it is spent every
    // admin request from that address is refused, the right password too.
    let guesses: Vec<_> = (0..BUDGET + 5)
        .map(|i| {
            let (client, url) = (client.clone(), server.url("/admin/stats"));
            tokio::spawn(async move {
                let r = client
                    .get(url)
                    .basic_auth("admin", Some(format!("guess-{i}")))
                    .send()
                    .await;
                r.unwrap().status().as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for g in guesses {
        statuses.push(g.await.unwrap());
    }
    let refused = statuses.iter().filter(|&&s| s == 429).count();
    let failed = statuses.iter().filter(|&&s| s == 401).count();
    assert_eq!((failed, refused), (BUDGET - 1, 6), "{statuses:?}");
    let r = client
        .get(server.url("/admin/stats"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(
        r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 500
    );

    // Another address is not affected.
    let other: IpAddr = "127.0.0.2".parse().unwrap();
    let elsewhere = reqwest::Client::builder()
        .local_address(other)
        .build()
        .unwrap();
    assert_eq!(stats_as(&elsewhere, &server, ADMIN_PASSWORD).await, 200);
    assert_eq!(stats_as(&elsewhere, &server, "guess").await, 401);
    server.shutdown().await.unwrap();
}

/// The binary, as deployed: a failed login is logged with the peer and the user name, and no
/// password (tried or real) appears anywhere in the log.
#[tokio::test]
async fn failed_logins_are_logged_without_passwords() {
    let lib = library_with(&["01-cbr128.mp3"]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("radio.toml");
    std::fs::write(
        &config,
        format!(
            "[library]\nkind = \"local\"\npath = \"{}\"\n[[mount]]\npath = \"/radio.mp3\"\n",
            lib.path().display()
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let real = "real-secret-4711";
    let tried = "tried-guess-0815";
    let mut child = Command::new(env!("CARGO_BIN_EXE_onair"))
        .arg("--config")
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("ONAIR_ADMIN_PASSWORD", real)
        .env("ONAIR_SOURCE_PASSWORD", "source-secret-1234")
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read as it comes, so a full pipe never holds the server up.
    let read = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = read(Box::new(child.stdout.take().unwrap()));
    let stderr = read(Box::new(child.stderr.take().unwrap()));
    let base = format!("http://127.0.0.1:{port}");
    until(Duration::from_secs(10), "onair listening", || async {
        reqwest::get(format!("{base}/healthz"))
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    let r = reqwest::Client::new()
        .get(format!("{base}/admin/stats"))
        .basic_auth("mallory\n{\"forged\"}", Some(tried))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
    let stdout = stdout.join().unwrap();
    let log = format!("{stdout}{}", stderr.join().unwrap());
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect();
    let failed = lines
        .iter()
        .find(|l| l["message"] == "admin login failed")
        .unwrap_or_else(|| panic!("no failed-login line in:\n{log}"));
    assert_eq!(failed["level"], "WARN");
    assert!(
        failed["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{failed}"
    );
    assert_eq!(failed["user"], "mallory\\n{\\\"forged\\\"}", "{failed}");
    assert_eq!(failed["path"], "/admin/stats");
    for secret in [real, tried, "source-secret-1234"] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
}
