//! Settings of one S3 storage site (the library's primary bucket, or its backup), as validated
//! from `[library]` and `[library.backup]`. Plain data: the client built from them is
//! `catalog::s3`'s business.

use std::path::PathBuf;
use std::time::Duration;

/// Where a library lives and how patiently to talk to it.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// Attempts per request, the first included (retries are for transient errors: timeouts,
    /// I/O, 5xx, throttling).
    pub max_attempts: u32,
    /// Environment variables holding this site's access key id and secret key.
    pub credentials_env: CredentialsEnv,
}

/// Timeouts of S3 requests. Defaults: connect 3 s, stall 5 s, operation 30 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct S3Timeouts {
    /// TCP (and TLS) connection establishment.
    pub connect: Duration,
    /// The longest wait for the next byte of an answer: for the response head (one attempt), and
    /// between two pieces of a body. A frozen gateway accepts connections but never answers;
    /// this is what notices it, per request, however long the object.
    pub stall: Duration,
    /// One operation until its response head, all attempts and backoff included.
    pub operation: Duration,
}

impl Default for S3Timeouts {
    fn default() -> Self {
        S3Timeouts {
            connect: Duration::from_secs(3),
            stall: Duration::from_secs(5),
            operation: Duration::from_secs(30),
        }
    }
}

/// Names of the environment variables that hold a site's credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CredentialsEnv {
    pub access_key_id: &'static str,
    pub secret_access_key: &'static str,
    pub session_token: &'static str,
}

impl CredentialsEnv {
    /// The standard `AWS_*` variables, for the primary site.
    pub const PRIMARY: CredentialsEnv = CredentialsEnv {
        access_key_id: "AWS_ACCESS_KEY_ID",
        secret_access_key: "AWS_SECRET_ACCESS_KEY",
        session_token: "AWS_SESSION_TOKEN",
    };
    /// `ONAIR_BACKUP_AWS_*`, for the backup site.
    pub const BACKUP: CredentialsEnv = CredentialsEnv {
        access_key_id: "ONAIR_BACKUP_AWS_ACCESS_KEY_ID",
        secret_access_key: "ONAIR_BACKUP_AWS_SECRET_ACCESS_KEY",
        session_token: "ONAIR_BACKUP_AWS_SESSION_TOKEN",
    };
}

impl S3Settings {
    /// Settings with the default timeouts, 3 attempts, no extra CA and the `AWS_*` credentials.
    pub fn new(endpoint: &str, region: &str, bucket: &str, prefix: &str) -> S3Settings {
        S3Settings {
            endpoint: endpoint.to_owned(),
            region: region.to_owned(),
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            ca_file: None,
            timeouts: S3Timeouts::default(),
            max_attempts: 3,
            credentials_env: CredentialsEnv::PRIMARY,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_normalized() {
        assert_eq!(normalize_prefix("a/b/"), "a/b/");
        assert_eq!(normalize_prefix("/tracks"), "tracks/");
        assert_eq!(normalize_prefix("/"), "");
    }
}
