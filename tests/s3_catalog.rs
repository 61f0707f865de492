//! S3Catalog against the real Ceph RGW (scripts/ceph.sh): listing, pagination, fetches, errors.
//! Nothing here freezes or kills the gateway (that is tests/rgw_outage.rs, run on its own).

mod s3_support;

use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use onair::catalog::s3::{S3Catalog, S3Settings, error_kind};
use onair::catalog::{Catalog, CatalogError};
use s3_support::*;

#[tokio::test]
async fn lists_and_fetches_the_shared_media() {
    let Some(settings) = settings(&unique_prefix("media")) else {
        return;
    };
    let cat = catalog(&settings);
    let media = media();
    let mut uploads = media.clone();
    uploads.push(("sub/dir/Ünïcödé & space.mp3".into(), media[0].1.clone()));
    uploads.push(("notes.txt".into(), Bytes::from_static(b"not audio")));
    uploads.push(("cover.JPG".into(), Bytes::from_static(b"not audio")));
    uploads.push((".hidden.mp3".into(), Bytes::from_static(b"hidden")));
    uploads.push((".trash/x.mp3".into(), Bytes::from_static(b"hidden dir")));
    uploads.push(("folder/".into(), Bytes::new())); // a "directory" placeholder
    put_many(&cat, uploads).await;

    let started = Instant::now();
    let list = cat.list().await.expect("list");
    eprintln!(
        "listed {} tracks in {}",
        list.len(),
        secs(started.elapsed())
    );
    let keys: Vec<&str> = list.iter().map(|t| &*t.key).collect();
    // What is_ignored_name leaves out of the shared media (notes and READMEs).
    let audio_like = |n: &&str| !n.ends_with(".txt") && !n.ends_with(".md");
    let mut expected: Vec<&str> = media
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(audio_like)
        .collect();
    expected.push("sub/dir/Ünïcödé & space.mp3");
    expected.sort();
    assert_eq!(keys, expected);
    for t in &list {
        // Single-part uploads: the ETag is the MD5, without the quotes.
        assert_eq!(t.version.len(), 32, "{t:?}");
        assert!(t.version.chars().all(|c| c.is_ascii_hexdigit()), "{t:?}");
    }

    let started = Instant::now();
    let (mut total, mut count) = (0, 0);
    for (name, data) in media.iter().filter(|(n, _)| audio_like(&n.as_str())) {
        let t = list.iter().find(|t| &*t.key == name).unwrap();
        let got = cat.fetch(t).await.expect("fetch");
        assert_eq!(got, data, "{name}");
        total += got.len();
        count += 1;
    }
    eprintln!(
        "fetched {count} tracks, {total} bytes, in {}",
        secs(started.elapsed())
    );
    let odd = list.iter().find(|t| t.key.starts_with("sub/")).unwrap();
    assert_eq!(cat.fetch(odd).await.unwrap(), media[0].1);
    assert!(
        cat.describe()
            .starts_with(&format!("s3://{}/test-media-", settings.bucket))
    );
}

#[tokio::test]
async fn a_prefix_with_1100_objects_is_listed_completely() {
    let Some(settings) = settings(&unique_prefix("many")) else {
        return;
    };
    let cat = catalog(&settings);
    let items: Vec<(String, Bytes)> = (0..1100)
        .map(|i| (format!("t{i:05}.mp3"), Bytes::from(format!("{i}"))))
        .collect();
    let started = Instant::now();
    put_many(&cat, items).await;
    eprintln!("uploaded 1100 objects in {}", secs(started.elapsed()));
    // An object beside the prefix must not show up.
    let outside = S3Settings {
        prefix: settings.prefix.trim_end_matches('/').to_owned() + "-x/",
        ..settings.clone()
    };
    put(&catalog(&outside), "t99999.mp3", "x").await;

    let started = Instant::now();
    let list = cat.list().await.expect("list");
    eprintln!(
        "listed 1100 objects (2 pages) in {}",
        secs(started.elapsed())
    );
    assert_eq!(list.len(), 1100);
    assert_eq!(&*list[0].key, "t00000.mp3");
    assert_eq!(&*list[1099].key, "t01099.mp3");
    assert!(list.windows(2).all(|w| w[0] < w[1]));
}

#[tokio::test]
async fn deleted_and_changed_objects_are_not_found() {
    let Some(settings) = settings(&unique_prefix("gone")) else {
        return;
    };
    let cat = catalog(&settings);
    put(&cat, "a.mp3", "first").await;
    put(&cat, "b.mp3", "bee").await;
    let list = cat.list().await.unwrap();
    assert_eq!(list.len(), 2);

    delete(&cat, "a.mp3").await;
    match cat.fetch(&list[0]).await {
        Err(CatalogError::NotFound(k)) => assert_eq!(k, "a.mp3"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    // Changed since listed: the old version is gone (If-Match answers 412 on Ceph 16 too).
    put(&cat, "b.mp3", "changed").await;
    assert!(matches!(
        cat.fetch(&list[1]).await,
        Err(CatalogError::NotFound(_))
    ));
    let relisted = cat.list().await.unwrap();
    assert_eq!(relisted.len(), 1);
    assert_ne!(relisted[0].version, list[1].version);
    assert_eq!(&cat.fetch(&relisted[0]).await.unwrap()[..], b"changed");
}

#[tokio::test]
async fn streaming_uploads_work_with_checksums_when_required() {
    // Ceph 16 rejects aws-chunked bodies with trailing checksums (the SDK default): the
    // client config sets RequestChecksumCalculation::WhenRequired, so this must pass.
    let Some(settings) = settings(&unique_prefix("stream")) else {
        return;
    };
    let cat = catalog(&settings);
    let path = s3_support::media_dir().join("01-cbr128.mp3");
    let body = ByteStream::from_path(&path).await.unwrap();
    cat.client()
        .put_object()
        .bucket(cat.bucket())
        .key(cat.object_key("streamed.mp3"))
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{}", aws_sdk_s3::error::DisplayErrorContext(e)));
    let list = cat.list().await.unwrap();
    assert_eq!(
        cat.fetch(&list[0]).await.unwrap(),
        std::fs::read(path).unwrap()
    );
}

#[tokio::test]
async fn storage_errors_are_unavailable_with_a_short_kind() {
    let Some(settings) = settings("") else { return };
    let reason = |r: Result<Vec<_>, CatalogError>| match r {
        Err(CatalogError::Unavailable(m)) => m,
        other => panic!("expected Unavailable, got {other:?}"),
    };
    let missing = S3Settings {
        bucket: "no-such-bucket-here".into(),
        ..settings.clone()
    };
    let m = reason(catalog(&missing).list().await);
    eprintln!("missing bucket: {m}");
    assert_eq!(error_kind(&m), "http_404");

    let creds = aws_sdk_s3::config::Credentials::new("onair-test", "wrong", None, None, "t");
    let m = reason(S3Catalog::new(&settings, creds).unwrap().list().await);
    eprintln!("wrong secret: {m}");
    assert_eq!(error_kind(&m), "http_403");

    // Nothing listens on port 9 of localhost: connection refused, retried 3 times with backoff.
    let closed = S3Settings {
        endpoint: "http://127.0.0.1:9".into(),
        ..settings.clone()
    };
    let started = Instant::now();
    let m = reason(catalog(&closed).list().await);
    let took = started.elapsed();
    eprintln!("refused: {m} after {}", secs(took));
    assert_eq!(error_kind(&m), "connect");
    assert!(took < Duration::from_secs(10));
}

#[tokio::test]
async fn https_endpoint_with_a_private_ca() {
    let Some(http) = settings(&unique_prefix("tls")) else {
        return;
    };
    let (Ok(endpoint), Ok(ca)) = (
        std::env::var("ONAIR_CEPH_HTTPS_ENDPOINT"),
        std::env::var("ONAIR_CEPH_CA_FILE"),
    ) else {
        eprintln!("SKIPPED: the test cluster has no https endpoint (no openssl?)");
        return;
    };
    if endpoint.is_empty() {
        eprintln!("SKIPPED: the test cluster has no https endpoint (no openssl?)");
        return;
    }
    put(&catalog(&http), "over-tls.mp3", "tls bytes").await;
    let tls = S3Settings {
        endpoint: endpoint.clone(),
        ca_file: Some(ca.into()),
        ..http.clone()
    };
    let cat = catalog(&tls);
    let list = cat.list().await.expect("list over https");
    assert_eq!(&*list[0].key, "over-tls.mp3");
    assert_eq!(&cat.fetch(&list[0]).await.unwrap()[..], b"tls bytes");

    // Without the private CA (system roots only) the certificate is refused: a connect error.
    let untrusted = S3Settings {
        endpoint,
        ca_file: None,
        ..http
    };
    match catalog(&untrusted).list().await {
        Err(CatalogError::Unavailable(m)) => {
            eprintln!("untrusted certificate: {m}");
            assert_eq!(error_kind(&m), "connect");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}
