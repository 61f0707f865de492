//! Helpers shared by the tests that run against the real Ceph RGW started by scripts/ceph.sh.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use onair::catalog::s3::{S3Catalog, S3Settings};

/// Settings for the running test cluster. Without one (the `export` lines of
/// `scripts/ceph.sh start` are not in the environment) the test fails, unless skipping was
/// asked for with ONAIR_SKIP_S3=1: then `None`, and the test returns at once.
pub fn settings(prefix: &str) -> Option<S3Settings> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").ok();
    let bucket = std::env::var("S3_BUCKET").ok();
    match (endpoint, bucket) {
        (Some(e), Some(b)) => Some(S3Settings::new(&e, "us-east-1", &b, prefix)),
        _ => skip_or_fail("no S3 test cluster (AWS_ENDPOINT_URL, S3_BUCKET)"),
    }
}

/// The https endpoint of the test cluster and its CA file (made with openssl by ceph.sh).
pub fn https_endpoint() -> Option<(String, String)> {
    let endpoint = std::env::var("ONAIR_CEPH_HTTPS_ENDPOINT").unwrap_or_default();
    let ca = std::env::var("ONAIR_CEPH_CA_FILE").unwrap_or_default();
    if endpoint.is_empty() || ca.is_empty() {
        return skip_or_fail("the test cluster has no https endpoint (is openssl installed?)");
    }
    Some((endpoint, ca))
}

/// A test that needs something missing fails, unless ONAIR_SKIP_S3=1 says to skip it.
fn skip_or_fail<T>(what: &str) -> Option<T> {
    assert!(
        std::env::var("ONAIR_SKIP_S3").as_deref() == Ok("1"),
        "{what}: start one with `lines=$(bash scripts/ceph.sh start); eval \"$lines\"`, \
         or set ONAIR_SKIP_S3=1 to skip the S3 tests"
    );
    eprintln!("SKIPPED (ONAIR_SKIP_S3=1): {what}");
    None
}

/// A prefix no other test (or earlier run) uses.
pub fn unique_prefix(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("test-{name}-{}-{nanos}/", std::process::id())
}

pub fn catalog(settings: &S3Settings) -> S3Catalog {
    S3Catalog::from_env(settings).expect("S3 catalog")
}

pub async fn put(cat: &S3Catalog, key: &str, data: impl Into<Bytes>) {
    cat.client()
        .put_object()
        .bucket(cat.bucket())
        .key(cat.object_key(key))
        .body(ByteStream::from(data.into()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {key}: {}", aws_sdk_s3::error::DisplayErrorContext(e)));
}

pub async fn delete(cat: &S3Catalog, key: &str) {
    cat.client()
        .delete_object()
        .bucket(cat.bucket())
        .key(cat.object_key(key))
        .send()
        .await
        .expect("delete");
}

/// Uploads many objects, 32 at a time.
pub async fn put_many(cat: &S3Catalog, items: Vec<(String, Bytes)>) {
    let limit = Arc::new(tokio::sync::Semaphore::new(32));
    let mut tasks = tokio::task::JoinSet::new();
    for (key, data) in items {
        let (cat, limit) = (cat.clone(), Arc::clone(&limit));
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await.unwrap();
            put(&cat, &key, data).await;
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

pub fn media_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/media"))
}

/// (file name, bytes) of the shared test media, sorted.
pub fn media() -> Vec<(String, Bytes)> {
    let mut all: Vec<(String, Bytes)> = std::fs::read_dir(media_dir())
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name, Bytes::from(std::fs::read(e.path()).unwrap()))
        })
        .collect();
    all.sort();
    all
}

/// The radosgw pid of the running test cluster (it changes when ceph.sh restarts the gateway).
pub fn rgw_pid() -> i32 {
    let dir = std::env::var("ONAIR_CEPH_DIR").expect("ONAIR_CEPH_DIR");
    std::fs::read_to_string(format!("{dir}/pid.rgw"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Starts radosgw again with `scripts/ceph.sh start`, which restarts only the gateway when only
/// it is gone (the objects survive). Blocks for the few seconds that takes.
pub fn restart_gateway() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/ceph.sh");
    let out = std::process::Command::new("bash")
        .args([script, "start"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ceph.sh start: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sends a signal with kill(1) (no libc dependency).
pub fn signal(pid: i32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

/// SIGSTOPs the gateway; dropping the guard (also on a panic) sends SIGCONT.
pub struct Frozen(pub i32);

impl Frozen {
    pub fn gateway() -> Frozen {
        let pid = rgw_pid();
        signal(pid, "STOP");
        Frozen(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        signal(self.0, "CONT");
    }
}

pub fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

/// Installs a test log subscriber once (RUST_LOG respected, default info).
pub fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_test_writer()
        .try_init();
}
