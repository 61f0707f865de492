//! One storage site in an S3 bucket (Ceph RADOS Gateway or any S3 endpoint): listing with
//! ListObjectsV2, a one-key listing as the health probe, objects streamed piece by piece with
//! GetObject, and small state objects with GetObject/PutObject, through aws-sdk-s3 built without
//! aws-config. This module owns the S3 client setup (endpoint, path-style addressing, region,
//! credentials from the environment, one hyper + rustls/ring HTTP client, timeouts, retries with
//! backoff and jitter, checksums only "when required" as Ceph 16 needs) and the mapping of SDK
//! errors to [`CatalogError`] by what they mean: about one object (404, 412, 403) or about the
//! service (connect, timeout, 5xx, throttling).

use std::path::Path;
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
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
use bytes::Bytes;

use super::store::{Object, ObjectBody, ObjectStore};
use super::{CatalogError, StorageErrorKind, TrackRef, is_ignored_name};
use crate::config::storage::normalize_prefix;
pub use crate::config::storage::{CredentialsEnv, S3Settings, S3Timeouts};

/// Why an [`S3Catalog`] cannot be built (a configuration or environment mistake).
#[derive(Debug, thiserror::Error)]
pub enum S3SetupError {
    /// A required environment variable is unset or empty.
    #[error("environment variable {0} is not set (S3 credentials come from the environment)")]
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
        path: std::path::PathBuf,
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
    stall: Duration,
}

impl S3Catalog {
    /// Builds the client with credentials from the variables `settings.credentials_env` names
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, optional `AWS_SESSION_TOKEN` for the
    /// primary site). No request is made: a down gateway is not an error here.
    pub fn from_env(settings: &S3Settings) -> Result<S3Catalog, S3SetupError> {
        let var = |name: &'static str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let env = settings.credentials_env;
        let key = var(env.access_key_id).ok_or(S3SetupError::MissingEnv(env.access_key_id))?;
        let secret =
            var(env.secret_access_key).ok_or(S3SetupError::MissingEnv(env.secret_access_key))?;
        let credentials = Credentials::new(key, secret, var(env.session_token), None, "env");
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
                    // An attempt ends when no response head came within the stall timeout: a
                    // frozen gateway is noticed per request, not when the operation gives up.
                    .operation_attempt_timeout(t.stall)
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
            stall: t.stall,
        })
    }

    /// The SDK client, for tools and tests (uploading, deleting). The catalog only reads
    /// tracks.
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

    fn list_request(
        &self,
    ) -> aws_sdk_s3::operation::list_objects_v2::builders::ListObjectsV2FluentBuilder {
        let prefix = (!self.prefix.is_empty()).then(|| self.prefix.to_string());
        self.client
            .list_objects_v2()
            .bucket(&*self.bucket)
            .set_prefix(prefix)
    }
}

impl ObjectStore for S3Catalog {
    type Body = S3Body;

    async fn list(&self) -> Result<Vec<TrackRef>, CatalogError> {
        let mut pages = self.list_request().into_paginator().send();
        let mut found = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                listing_failed(
                    &e,
                    &format!("ListObjectsV2 {}/{}", self.bucket, self.prefix),
                )
            })?;
            for object in page.contents() {
                let Some(rel) = object.key().and_then(|k| k.strip_prefix(&*self.prefix)) else {
                    continue;
                };
                // "Folder" placeholders, hidden and obviously non-audio names (in any segment,
                // as the local folder skips hidden directories) and show recordings are left
                // out.
                if rel.is_empty()
                    || rel.ends_with('/')
                    || rel.split('/').any(is_ignored_name)
                    || super::is_recording(rel)
                {
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

    async fn probe(&self) -> Result<(), CatalogError> {
        self.list_request()
            .max_keys(1)
            .send()
            .await
            .map(drop)
            .map_err(|e| listing_failed(&e, &format!("probe of {}", self.bucket)))
    }

    async fn open(
        &self,
        track: &TrackRef,
        exact_version: bool,
    ) -> Result<Object<S3Body>, CatalogError> {
        let key = self.object_key(&track.key);
        let mut request = self.client.get_object().bucket(&*self.bucket).key(&key);
        if exact_version && !track.version.is_empty() {
            // Only the listed version: a changed object answers 412 and is treated as gone
            // (the next listing brings its new ETag), so a cache never files new bytes under
            // an old ETag.
            request = request.if_match(format!("\"{}\"", track.version));
        }
        let output = request.send().await.map_err(|e| {
            object_failed(&e, &track.key, &format!("GetObject {}/{key}", self.bucket))
        })?;
        Ok(Object {
            len: output.content_length().and_then(|n| u64::try_from(n).ok()),
            version: output.e_tag().map(|e| Arc::from(unquote(e))),
            body: S3Body {
                body: output.body,
                stall: self.stall,
                what: format!("GetObject {}/{key}", self.bucket),
            },
        })
    }

    async fn get(&self, name: &str) -> Result<Option<Bytes>, CatalogError> {
        let key = self.object_key(name);
        let what = format!("GetObject {}/{key}", self.bucket);
        let output = match self
            .client
            .get_object()
            .bucket(&*self.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(output) => output,
            Err(e) => {
                return match object_failed(&e, name, &what) {
                    CatalogError::NotFound(_) => Ok(None),
                    other => Err(other),
                };
            }
        };
        let mut body = S3Body {
            body: output.body,
            stall: self.stall,
            what,
        };
        let mut all = bytes::BytesMut::new();
        while let Some(piece) = body.next().await? {
            all.extend_from_slice(&piece);
            if all.len() > STATE_MAX_BYTES {
                return Err(CatalogError::Refused {
                    key: name.to_owned(),
                    detail: format!("larger than {STATE_MAX_BYTES} bytes: not a state object"),
                });
            }
        }
        Ok(Some(all.freeze()))
    }

    async fn put(&self, name: &str, data: Bytes) -> Result<(), CatalogError> {
        let key = self.object_key(name);
        self.client
            .put_object()
            .bucket(&*self.bucket)
            .key(&key)
            .content_type("application/json")
            .body(ByteStream::from(data))
            .send()
            .await
            .map(drop)
            .map_err(|e| object_failed(&e, name, &format!("PutObject {}/{key}", self.bucket)))
    }

    fn describe(&self) -> String {
        format!("s3://{}/{} at {}", self.bucket, self.prefix, self.endpoint)
    }
}

/// State objects are a few KiB; anything far larger is not ours.
const STATE_MAX_BYTES: usize = 4 << 20;

/// The smallest part S3 takes, but for the last one.
pub const MIN_PART_BYTES: usize = 5 << 20;
/// How long one part has to upload: far longer than the stall timeout meant for reads, which
/// a 5 MiB body over a slow link would trip.
const PART_TIMEOUT: Duration = Duration::from_secs(120);

/// An object written piece by piece (a multipart upload): nothing is visible under its key
/// until [`Upload::complete`], and an upload given up is aborted so no parts stay billed.
pub struct Upload {
    client: Client,
    bucket: Arc<str>,
    key: String,
    id: String,
    parts: Vec<aws_sdk_s3::types::CompletedPart>,
    bytes: u64,
}

impl S3Catalog {
    /// Starts writing the object `name` (relative to the library's prefix).
    pub async fn start_upload(
        &self,
        name: &str,
        content_type: &str,
    ) -> Result<Upload, CatalogError> {
        let key = self.object_key(name);
        let what = || format!("CreateMultipartUpload {}/{key}", self.bucket);
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&*self.bucket)
            .key(&key)
            .content_type(content_type)
            .send()
            .await
            .map_err(|e| object_failed(&e, name, &what()))?;
        let id = created
            .upload_id()
            .ok_or_else(|| {
                CatalogError::unavailable(
                    StorageErrorKind::Response,
                    format!("{}: no upload id", what()),
                )
            })?
            .to_owned();
        Ok(Upload {
            client: self.client.clone(),
            bucket: Arc::clone(&self.bucket),
            key,
            id,
            parts: Vec::new(),
            bytes: 0,
        })
    }
}

impl Upload {
    /// Uploads the next part: at least [`MIN_PART_BYTES`], but for the last.
    pub async fn part(&mut self, data: Bytes) -> Result<(), CatalogError> {
        let number = i32::try_from(self.parts.len() + 1).unwrap_or(i32::MAX);
        let len = data.len() as u64;
        let timeouts = TimeoutConfig::builder()
            .operation_attempt_timeout(PART_TIMEOUT)
            .operation_timeout(PART_TIMEOUT * 2)
            .build();
        let uploaded = self
            .client
            .upload_part()
            .bucket(&*self.bucket)
            .key(&self.key)
            .upload_id(&self.id)
            .part_number(number)
            .body(ByteStream::from(data))
            .customize()
            .config_override(aws_sdk_s3::config::Builder::new().timeout_config(timeouts))
            .send()
            .await
            .map_err(|e| {
                object_failed(
                    &e,
                    &self.key,
                    &format!("UploadPart {number} of {}/{}", self.bucket, self.key),
                )
            })?;
        self.parts.push(
            aws_sdk_s3::types::CompletedPart::builder()
                .part_number(number)
                .set_e_tag(uploaded.e_tag().map(str::to_owned))
                .build(),
        );
        self.bytes += len;
        Ok(())
    }

    /// Bytes in the parts uploaded so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The object's key in the bucket.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Makes the object of the parts uploaded so far; with none, aborts instead (S3 makes no
    /// object of zero parts) and says `false`.
    pub async fn complete(self) -> Result<bool, CatalogError> {
        if self.parts.is_empty() {
            self.abort().await;
            return Ok(false);
        }
        let parts = aws_sdk_s3::types::CompletedMultipartUpload::builder()
            .set_parts(Some(self.parts.clone()))
            .build();
        self.client
            .complete_multipart_upload()
            .bucket(&*self.bucket)
            .key(&self.key)
            .upload_id(&self.id)
            .multipart_upload(parts)
            .send()
            .await
            .map_err(|e| {
                object_failed(
                    &e,
                    &self.key,
                    &format!("CompleteMultipartUpload {}/{}", self.bucket, self.key),
                )
            })?;
        Ok(true)
    }

    /// Gives the upload up, dropping its parts (best effort: the bucket's lifecycle rule for
    /// incomplete uploads is the backstop).
    pub async fn abort(self) {
        if let Err(e) = self
            .client
            .abort_multipart_upload()
            .bucket(&*self.bucket)
            .key(&self.key)
            .upload_id(&self.id)
            .send()
            .await
        {
            tracing::warn!(key = %self.key, error = %innermost(&e), "cannot abort a multipart upload");
        }
    }
}

/// A GetObject body read piece by piece, each piece within the stall timeout.
pub struct S3Body {
    body: ByteStream,
    stall: Duration,
    what: String,
}

impl ObjectBody for S3Body {
    async fn next(&mut self) -> Result<Option<Bytes>, CatalogError> {
        match tokio::time::timeout(self.stall, self.body.next()).await {
            Ok(None) => Ok(None),
            Ok(Some(Ok(piece))) => Ok(Some(piece)),
            Ok(Some(Err(e))) => Err(CatalogError::unavailable(
                StorageErrorKind::Response,
                format!("{}: body: {}", self.what, innermost(&e)),
            )),
            Err(_) => Err(CatalogError::unavailable(
                StorageErrorKind::Stall,
                format!("{}: no byte of the body for {:?}", self.what, self.stall),
            )),
        }
    }
}

/// What a failed request says about the service, when it is not about one object.
fn service_failure<E>(err: &SdkError<E, HttpResponse>) -> (StorageErrorKind, String)
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match err {
        SdkError::TimeoutError(_) => (StorageErrorKind::Timeout, "no answer in time".to_owned()),
        SdkError::DispatchFailure(f) if f.is_timeout() => {
            (StorageErrorKind::Timeout, innermost(err))
        }
        SdkError::DispatchFailure(_) => (StorageErrorKind::Connect, innermost(err)),
        SdkError::ResponseError(_) => (StorageErrorKind::Response, innermost(err)),
        SdkError::ServiceError(s) => {
            let status = err.raw_response().map_or(0, |r| r.status().as_u16());
            let code = s.err().code().unwrap_or("no error code");
            let kind = match (status, code) {
                (429, _) | (_, "SlowDown") => StorageErrorKind::Throttled,
                (500..=599, _) => StorageErrorKind::Server,
                _ => StorageErrorKind::Other,
            };
            (kind, format!("HTTP {status} {code}"))
        }
        _ => (StorageErrorKind::Other, innermost(err)),
    }
}

/// A failed listing or probe: whatever the answer, the library cannot be read from this site.
fn listing_failed<E>(err: &SdkError<E, HttpResponse>, what: &str) -> CatalogError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let (kind, detail) = service_failure(err);
    CatalogError::unavailable(kind, format!("{what}: {detail}"))
}

/// A failed request about one object: 404 and 412 mean gone, other 4xx answers are refusals of
/// that object; the rest is about the service.
fn object_failed<E>(err: &SdkError<E, HttpResponse>, key: &str, what: &str) -> CatalogError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    if let SdkError::ServiceError(s) = err {
        let status = err.raw_response().map_or(0, |r| r.status().as_u16());
        let code = s.err().code().unwrap_or("no error code");
        match status {
            404 | 412 => return CatalogError::NotFound(key.to_owned()),
            429 => {}
            400..=499 => {
                return CatalogError::Refused {
                    key: key.to_owned(),
                    detail: format!("{what}: HTTP {status} {code}"),
                };
            }
            _ => {}
        }
    }
    let (kind, detail) = service_failure(err);
    CatalogError::unavailable(kind, format!("{what}: {detail}"))
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

    #[test]
    fn backup_credentials_come_from_their_own_variables() {
        let mut s = S3Settings::new("http://127.0.0.1:7480", "us-east-1", "b", "");
        s.credentials_env = CredentialsEnv {
            access_key_id: "ONAIR_TEST_UNSET_KEY_ID_9f3a",
            secret_access_key: "ONAIR_TEST_UNSET_SECRET_9f3a",
            session_token: "ONAIR_TEST_UNSET_TOKEN_9f3a",
        };
        assert!(matches!(
            S3Catalog::from_env(&s),
            Err(S3SetupError::MissingEnv("ONAIR_TEST_UNSET_KEY_ID_9f3a"))
        ));
    }
}
