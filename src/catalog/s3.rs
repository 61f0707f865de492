//! The library in an S3 bucket (Ceph RADOS Gateway or any S3 endpoint): listing with
//! ListObjectsV2 and whole-object fetches with GetObject, through aws-sdk-s3 built without
//! aws-config. This module owns the S3 client setup (endpoint, path-style addressing, region,
//! credentials from the standard `AWS_*` variables, one hyper + rustls/ring HTTP client, timeouts,
//! retries with backoff and jitter, checksums only "when required" as Ceph 16 needs) and the
//! mapping of SDK errors to [`CatalogError`]: `NotFound` for a missing object, `Unavailable`
//! with a `"<kind>: <detail>"` message otherwise, whose kind ([`error_kind`]) is a metric label.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
use bytes::Bytes;

use super::{Catalog, CatalogError, TrackRef, is_ignored_name};

/// Where the library lives and how patiently to talk to it (`[library] kind = "s3"`).
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// `http://host:port` or `https://host[:port]`, e.g. `http://127.0.0.1:7480` for Ceph RGW.
    pub endpoint: String,
    /// Signing region; Ceph accepts any, `us-east-1` (used when empty) is customary.
    pub region: String,
    /// The bucket holding the tracks.
    pub bucket: String,
    /// Key prefix of the library, e.g. `tracks/`; a missing trailing `/` is added. Empty: whole bucket.
    pub prefix: String,
    /// PEM bundle of the CA(s) to trust for an `https` endpoint instead of the system roots
    /// (a private Ceph CA). `None`: the system's roots (`ca-certificates` must be installed).
    pub ca_file: Option<PathBuf>,
    /// Timeouts of every request.
    pub timeouts: S3Timeouts,
    /// Attempts per request, the first included (standard retry mode: exponential backoff with
    /// jitter, 1 s base, only for transient errors: timeouts, I/O, 5xx, throttling).
    pub max_attempts: u32,
}

/// Timeouts of S3 requests. Defaults: connect 3 s, attempt 10 s, operation 30 s, body 30 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct S3Timeouts {
    /// TCP (and TLS) connection establishment.
    pub connect: Duration,
    /// One attempt, until the response headers (a frozen gateway accepts connections but never
    /// answers: this is what ends such an attempt).
    pub attempt: Duration,
    /// One operation, all attempts and backoff included: the longest a caller waits for headers.
    pub operation: Duration,
    /// Reading the body of a fetched object once the headers have arrived.
    pub body: Duration,
}

impl Default for S3Timeouts {
    fn default() -> Self {
        S3Timeouts {
            connect: Duration::from_secs(3),
            attempt: Duration::from_secs(10),
            operation: Duration::from_secs(30),
            body: Duration::from_secs(30),
        }
    }
}

impl S3Settings {
    /// Settings with the default timeouts, 3 attempts and no extra CA.
    pub fn new(endpoint: &str, region: &str, bucket: &str, prefix: &str) -> S3Settings {
        S3Settings {
            endpoint: endpoint.to_owned(),
            region: region.to_owned(),
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            ca_file: None,
            timeouts: S3Timeouts::default(),
            max_attempts: 3,
        }
    }
}

/// Why an [`S3Catalog`] cannot be built (a configuration or environment mistake).
#[derive(Debug, thiserror::Error)]
pub enum S3SetupError {
    /// A required environment variable is unset or empty.
    #[error("environment variable {0} is not set (S3 credentials come from AWS_* variables)")]
    MissingEnv(&'static str),
    /// The endpoint is not an `http://` or `https://` URL.
    #[error("S3 endpoint {0:?} must start with http:// or https://")]
    BadEndpoint(String),
    /// No bucket name.
    #[error("S3 bucket name is empty")]
    NoBucket,
    /// The CA file cannot be read or holds no usable certificate.
    #[error("CA file {path}: {reason}")]
    CaFile {
        /// The configured `ca_file`.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// A library in one bucket under one prefix. Cheap to clone (the SDK client is shared).
#[derive(Debug, Clone)]
pub struct S3Catalog {
    client: Client,
    bucket: Arc<str>,
    prefix: Arc<str>,
    endpoint: Arc<str>,
    body_timeout: Duration,
}

impl S3Catalog {
    /// Builds the client with credentials from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
    /// the optional `AWS_SESSION_TOKEN`. No request is made: a down gateway is not an error here.
    pub fn from_env(settings: &S3Settings) -> Result<S3Catalog, S3SetupError> {
        let var = |name: &'static str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let key = var("AWS_ACCESS_KEY_ID").ok_or(S3SetupError::MissingEnv("AWS_ACCESS_KEY_ID"))?;
        let secret = var("AWS_SECRET_ACCESS_KEY")
            .ok_or(S3SetupError::MissingEnv("AWS_SECRET_ACCESS_KEY"))?;
        let credentials = Credentials::new(key, secret, var("AWS_SESSION_TOKEN"), None, "env");
        S3Catalog::new(settings, credentials)
    }

    /// Builds the client with the given credentials.
    pub fn new(settings: &S3Settings, credentials: Credentials) -> Result<S3Catalog, S3SetupError> {
        let endpoint = settings.endpoint.trim_end_matches('/');
        let https = endpoint.starts_with("https://");
        if !https && !endpoint.starts_with("http://") {
            return Err(S3SetupError::BadEndpoint(settings.endpoint.clone()));
        }
        if settings.bucket.is_empty() {
            return Err(S3SetupError::NoBucket);
        }
        let trust = match (&settings.ca_file, https) {
            (Some(path), _) => TrustStore::empty().with_pem_certificate(read_ca(path)?),
            (None, true) => TrustStore::default(), // the system roots
            // Plain http: no roots needed, and loading none avoids a debug assertion in the SDK
            // on machines without ca-certificates (slim images).
            (None, false) => TrustStore::empty(),
        };
        let tls_context = TlsContext::builder()
            .with_trust_store(trust)
            .build()
            .map_err(|e| S3SetupError::CaFile {
                path: settings.ca_file.clone().unwrap_or_default(),
                reason: e.to_string(),
            })?;
        // One HTTP stack: hyper 1 + rustls with the ring provider (no aws-lc, no hyper 0.14).
        // It serves http:// as well as https:// endpoints.
        let http_client = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .tls_context(tls_context)
            .build_https();
        let t = settings.timeouts;
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(match settings.region.as_str() {
                "" => "us-east-1".to_owned(),
                region => region.to_owned(),
            }))
            .endpoint_url(endpoint)
            .force_path_style(true)
            .credentials_provider(credentials)
            .http_client(http_client)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(t.connect)
                    .operation_attempt_timeout(t.attempt)
                    .operation_timeout(t.operation)
                    .build(),
            )
            .retry_config(RetryConfig::standard().with_max_attempts(settings.max_attempts.max(1)))
            // Ceph 16 RGW rejects the aws-chunked bodies with trailing checksums that the SDK
            // sends by default; only send and check checksums where an operation requires them.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        let prefix = normalize_prefix(&settings.prefix);
        Ok(S3Catalog {
            client: Client::from_conf(config),
            bucket: Arc::from(settings.bucket.as_str()),
            prefix: Arc::from(prefix),
            endpoint: Arc::from(endpoint),
            body_timeout: t.body,
        })
    }

    /// The SDK client, for tools and tests (uploading, deleting). The catalog only reads.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The bucket name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The object key of a track: the prefix joined with the track key.
    pub fn object_key(&self, track_key: &str) -> String {
        format!("{}{track_key}", self.prefix)
    }
}

impl Catalog for S3Catalog {
    async fn list(&self) -> Result<Vec<TrackRef>, CatalogError> {
        let prefix = (!self.prefix.is_empty()).then(|| self.prefix.to_string());
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&*self.bucket)
            .set_prefix(prefix)
            .into_paginator()
            .send();
        let mut found = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                unavailable(
                    &e,
                    "ListObjectsV2",
                    &format!("{}/{}", self.bucket, self.prefix),
                )
            })?;
            for object in page.contents() {
                let Some(rel) = object.key().and_then(|k| k.strip_prefix(&*self.prefix)) else {
                    continue;
                };
                // "Folder" placeholders, hidden and obviously non-audio names (in any segment,
                // as the local folder skips hidden directories) are left out.
                if rel.is_empty() || rel.ends_with('/') || rel.split('/').any(is_ignored_name) {
                    continue;
                }
                found.push(TrackRef {
                    key: Arc::from(rel),
                    version: Arc::from(object.e_tag().map_or("", unquote)),
                });
            }
        }
        found.sort();
        Ok(found)
    }

    async fn fetch(&self, track: &TrackRef) -> Result<Bytes, CatalogError> {
        let key = self.object_key(&track.key);
        let mut request = self.client.get_object().bucket(&*self.bucket).key(&key);
        if !track.version.is_empty() {
            // Only the listed version: a changed object answers 412 and is treated as gone
            // (the next listing brings its new ETag), so a cache never files new bytes under
            // an old ETag.
            request = request.if_match(format!("\"{}\"", track.version));
        }
        let output = match request.send().await {
            Ok(output) => output,
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16());
                let no_such_key = e.as_service_error().is_some_and(|s| s.is_no_such_key());
                if no_such_key || matches!(status, Some(404 | 412)) {
                    return Err(CatalogError::NotFound(track.key.to_string()));
                }
                return Err(unavailable(
                    &e,
                    "GetObject",
                    &format!("{}/{key}", self.bucket),
                ));
            }
        };
        match tokio::time::timeout(self.body_timeout, output.body.collect()).await {
            Ok(Ok(body)) => Ok(body.into_bytes()),
            Ok(Err(e)) => Err(CatalogError::Unavailable(format!(
                "body: GetObject {}/{key}: {}",
                self.bucket,
                innermost(&e)
            ))),
            Err(_) => Err(CatalogError::Unavailable(format!(
                "timeout: GetObject {}/{key}: body not read within {:?}",
                self.bucket, self.body_timeout
            ))),
        }
    }

    fn describe(&self) -> String {
        format!("s3://{}/{} at {}", self.bucket, self.prefix, self.endpoint)
    }
}

/// No leading '/', and a trailing one when not empty, so that `prefix + key` is the object key.
pub fn normalize_prefix(prefix: &str) -> String {
    match prefix.trim().trim_start_matches('/') {
        "" => String::new(),
        p if p.ends_with('/') => p.to_owned(),
        p => format!("{p}/"),
    }
}

/// The metric label of an `Unavailable` message made here: the text before the first `": "`
/// (`timeout`, `connect`, `http_503`, `body`, `response`, `request`), or `other`.
pub fn error_kind(message: &str) -> &str {
    match message.split_once(": ") {
        Some((kind, _)) if !kind.is_empty() && !kind.contains(' ') => kind,
        _ => "other",
    }
}

/// `Unavailable("<kind>: <operation> <key>: <detail>")` for an SDK error.
fn unavailable<E>(err: &SdkError<E, HttpResponse>, operation: &str, key: &str) -> CatalogError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let (kind, detail) = match err {
        SdkError::TimeoutError(_) => ("timeout".to_owned(), "no answer in time".to_owned()),
        SdkError::DispatchFailure(f) if f.is_timeout() => ("timeout".to_owned(), innermost(err)),
        SdkError::DispatchFailure(f) if f.is_user() => ("request".to_owned(), innermost(err)),
        SdkError::DispatchFailure(_) => ("connect".to_owned(), innermost(err)),
        SdkError::ResponseError(_) => ("response".to_owned(), innermost(err)),
        SdkError::ServiceError(s) => {
            let status = err.raw_response().map_or(0, |r| r.status().as_u16());
            let code = s.err().code().unwrap_or("no error code");
            (format!("http_{status}"), code.to_owned())
        }
        SdkError::ConstructionFailure(_) => ("request".to_owned(), innermost(err)),
        _ => ("other".to_owned(), innermost(err)),
    };
    CatalogError::Unavailable(format!("{kind}: {operation} {key}: {detail}"))
}

/// The deepest cause's message: the SDK's outer layers say little ("dispatch failure").
fn innermost(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

fn unquote(etag: &str) -> &str {
    etag.trim_matches('"')
}

/// Reads a PEM bundle and checks it now: the SDK panics on an unparsable one at first use.
fn read_ca(path: &Path) -> Result<Vec<u8>, S3SetupError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let bad = |reason: String| S3SetupError::CaFile {
        path: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not a PEM certificate bundle: {e}")))?;
    if certs.is_empty() {
        return Err(bad("no certificate in it".to_owned()));
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| bad(format!("unusable certificate: {e}")))?;
    }
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kind_is_the_label_before_the_colon() {
        assert_eq!(
            error_kind("timeout: GetObject a.mp3: no answer in time"),
            "timeout"
        );
        assert_eq!(
            error_kind("http_503: ListObjectsV2 x/: SlowDown"),
            "http_503"
        );
        assert_eq!(error_kind("something else entirely"), "other");
    }

    #[test]
    fn settings_are_checked_and_the_prefix_normalized() {
        let creds = Credentials::new("a", "b", None, None, "test");
        let bad = S3Settings::new("127.0.0.1:7480", "us-east-1", "b", "");
        assert!(matches!(
            S3Catalog::new(&bad, creds.clone()),
            Err(S3SetupError::BadEndpoint(_))
        ));
        let s = S3Settings::new("http://127.0.0.1:7480/", "us-east-1", "b", "/tracks");
        let cat = S3Catalog::new(&s, creds).unwrap();
        assert_eq!(cat.object_key("a.mp3"), "tracks/a.mp3");
        assert_eq!(cat.describe(), "s3://b/tracks/ at http://127.0.0.1:7480");
        assert_eq!(normalize_prefix("a/b/"), "a/b/");
        assert_eq!(normalize_prefix("/"), "");
    }

    #[test]
    fn a_bad_ca_file_is_a_setup_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate").unwrap();
        let mut s = S3Settings::new("https://127.0.0.1:7443", "us-east-1", "b", "");
        s.ca_file = Some(path);
        let creds = Credentials::new("a", "b", None, None, "test");
        assert!(matches!(
            S3Catalog::new(&s, creds),
            Err(S3SetupError::CaFile { .. })
        ));
    }
}
