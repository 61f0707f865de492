//! One storage site (`S3Catalog`) and the library over it (`CachedCatalog`) against the real
//! Ceph RGW that scripts/ceph.sh starts: listing, pagination, objects streamed piece by piece,
//! errors by kind (one object or the service), state objects, https with a private CA. Nothing
//! here freezes or kills the gateway: that is the drills binary (`tests/drills`), run on its own.

use std::time::Instant;

use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use onair::catalog::cached::Options;
use onair::catalog::s3::{S3Catalog, S3Settings};
use onair::catalog::store::{ObjectBody, ObjectStore};
use onair::catalog::{Cache, CachedCatalog, Catalog, CatalogError, StorageErrorKind, TrackRef};

use crate::s3_support::*;

/// An object's whole body, read the way the cache reads it.
async fn read(cat: &S3Catalog, t: &TrackRef) -> Result<Vec<u8>, CatalogError> {
    let mut object = cat.open(t, true).await?;
    let mut all = Vec::new();
    while let Some(piece) = object.body.next().await? {
        all.extend_from_slice(&piece);
    }
    assert_eq!(object.len, Some(all.len() as u64));
    Ok(all)
}

#[tokio::test]
async fn lists_and_streams_the_shared_media() {
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
    uploads.push((
        ".onair/state/playout.json".into(),
        Bytes::from_static(b"{}"),
    ));
    uploads.push(("folder/".into(), Bytes::new())); // a "directory" placeholder
    put_many(&cat, uploads).await;

    let list = cat.list().await.expect("list");
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
    for (name, data) in media.iter().filter(|(n, _)| audio_like(&n.as_str())) {
        let t = list.iter().find(|t| &*t.key == name).unwrap();
        assert_eq!(read(&cat, t).await.expect("fetch"), *data, "{name}");
    }
    let odd = list.iter().find(|t| t.key.starts_with("sub/")).unwrap();
    assert_eq!(read(&cat, odd).await.unwrap(), media[0].1);
    cat.probe().await.expect("probe");
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
    put_many(&cat, items).await;
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
async fn deleted_changed_and_refused_objects_are_errors_about_that_object() {
    let Some(settings) = settings(&unique_prefix("gone")) else {
        return;
    };
    let cat = catalog(&settings);
    put(&cat, "a.mp3", "first").await;
    put(&cat, "b.mp3", "bee").await;
    let list = cat.list().await.unwrap();
    assert_eq!(list.len(), 2);

    delete(&cat, "a.mp3").await;
    match read(&cat, &list[0]).await {
        Err(CatalogError::NotFound(k)) => assert_eq!(k, "a.mp3"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    // Changed since listed: the old version is gone (If-Match answers 412 on Ceph 16 too).
    put(&cat, "b.mp3", "changed").await;
    assert!(matches!(
        read(&cat, &list[1]).await,
        Err(CatalogError::NotFound(_))
    ));
    let relisted = cat.list().await.unwrap();
    assert_eq!(relisted.len(), 1);
    assert_ne!(relisted[0].version, list[1].version);
    assert_eq!(read(&cat, &relisted[0]).await.unwrap(), b"changed");

    // A wrong secret: every object is refused (403), and the listing fails as the service's.
    let creds = aws_sdk_s3::config::Credentials::new("onair-test", "wrong", None, None, "t");
    let wrong = S3Catalog::new(&settings, creds).unwrap();
    let e = read(&wrong, &relisted[0]).await.unwrap_err();
    assert_eq!(e.skip_reason(), Some("forbidden"), "{e}");
    let e = wrong.list().await.unwrap_err();
    assert_eq!(e.storage_kind(), Some(StorageErrorKind::Other), "{e}");
}

#[tokio::test]
async fn service_failures_have_a_kind() {
    let Some(settings) = settings("") else {
        return;
    };
    let missing = S3Settings {
        bucket: "no-such-bucket-here".into(),
        ..settings.clone()
    };
    let e = catalog(&missing).list().await.unwrap_err();
    eprintln!("missing bucket: {e}");
    assert!(e.storage_kind().is_some(), "{e}");
    // Nothing listens on port 9 of localhost: connection refused, retried 3 times with backoff.
    let closed = S3Settings {
        endpoint: "http://127.0.0.1:9".into(),
        ..settings.clone()
    };
    let started = Instant::now();
    let e = catalog(&closed).probe().await.unwrap_err();
    eprintln!("refused: {e} after {}", secs(started.elapsed()));
    assert_eq!(e.storage_kind(), Some(StorageErrorKind::Connect), "{e}");
}

#[tokio::test]
async fn streaming_uploads_work_with_checksums_when_required() {
    // Ceph 16 rejects aws-chunked bodies with trailing checksums (the SDK default): the
    // client config sets RequestChecksumCalculation::WhenRequired, so this must pass.
    let Some(settings) = settings(&unique_prefix("stream")) else {
        return;
    };
    let cat = catalog(&settings);
    let path = media_dir().join("01-cbr128.mp3");
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
        read(&cat, &list[0]).await.unwrap(),
        std::fs::read(path).unwrap()
    );
}

#[tokio::test]
async fn a_large_object_streams_into_the_cache_in_bounded_pieces() {
    let Some(settings) = settings(&unique_prefix("large")) else {
        return;
    };
    let cat = catalog(&settings);
    let mut rng = fastrand::Rng::with_seed(9);
    let big: Vec<u8> = (0..24 << 20).map(|_| rng.u8(..)).collect();
    put(&cat, "big.flac", big.clone()).await;
    put(&cat, "small.mp3", "small").await;
    let dir = tempfile::tempdir().unwrap();
    // Room for the small one only: the big one plays from a scratch file and leaves nothing.
    let cache = Cache::open(dir.path(), 16 << 20).await.unwrap();
    let lib = CachedCatalog::new(cat.clone(), None, cache, Options::default());
    let tracks = lib.list().await.unwrap();
    let data = lib.fetch(&tracks[0]).await.unwrap();
    assert!(!data.in_memory());
    assert_eq!(data.read_all().unwrap(), big);
    assert!(!lib.is_cached(&tracks[0]));
    assert_eq!(lib.cache().total_bytes(), 0);
    let small = lib.fetch(&tracks[1]).await.unwrap();
    assert_eq!(small.read_all().unwrap(), b"small");
    assert!(lib.is_cached(&tracks[1]));
    // Under a limit: skipped before a byte is stored.
    let limited = CachedCatalog::new(
        cat,
        None,
        Cache::open(dir.path(), 64 << 20).await.unwrap(),
        Options {
            max_track_bytes: Some(16 << 20),
            ..Options::default()
        },
    );
    let tracks = limited.list().await.unwrap();
    let e = limited.fetch(&tracks[0]).await.unwrap_err();
    assert_eq!(e.skip_reason(), Some("too_large"), "{e}");
}

#[tokio::test]
async fn state_objects_live_beside_the_library_and_are_not_tracks() {
    let Some(settings) = settings(&unique_prefix("state")) else {
        return;
    };
    let cat = catalog(&settings);
    put(&cat, "a.mp3", "a").await;
    let dir = tempfile::tempdir().unwrap();
    let lib = CachedCatalog::new(
        cat.clone(),
        None,
        Cache::open(dir.path(), 16 << 20).await.unwrap(),
        Options::default(),
    );
    assert!(lib.load_state("playout.json").await.unwrap().is_empty());
    lib.save_state("playout.json", Bytes::from_static(b"{\"v\":1}"))
        .await
        .unwrap();
    lib.save_state("playout.json", Bytes::from_static(b"{\"v\":2}"))
        .await
        .unwrap();
    assert_eq!(
        lib.load_state("playout.json").await.unwrap(),
        vec![Bytes::from_static(b"{\"v\":2}")]
    );
    let keys: Vec<String> = lib
        .list()
        .await
        .unwrap()
        .iter()
        .map(|t| t.key.to_string())
        .collect();
    assert_eq!(keys, ["a.mp3"]);
    // It is a real object under the prefix.
    let got = cat
        .client()
        .get_object()
        .bucket(cat.bucket())
        .key(cat.object_key(".onair/state/playout.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(got.content_type(), Some("application/json"));
}

#[tokio::test]
async fn https_endpoint_with_a_private_ca() {
    let Some(http) = settings(&unique_prefix("tls")) else {
        return;
    };
    let Some((endpoint, ca)) = https_endpoint() else {
        return;
    };
    put(&catalog(&http), "over-tls.mp3", "tls bytes").await;
    let tls = S3Settings {
        endpoint: endpoint.clone(),
        ca_file: Some(ca.into()),
        ..http.clone()
    };
    let cat = catalog(&tls);
    let list = cat.list().await.expect("list over https");
    assert_eq!(&*list[0].key, "over-tls.mp3");
    assert_eq!(read(&cat, &list[0]).await.unwrap(), b"tls bytes");

    // Without the private CA (system roots only) the certificate is refused: a connect error.
    let untrusted = S3Settings {
        endpoint,
        ca_file: None,
        ..http
    };
    let e = catalog(&untrusted).list().await.unwrap_err();
    eprintln!("untrusted certificate: {e}");
    assert_eq!(e.storage_kind(), Some(StorageErrorKind::Connect), "{e}");
}
