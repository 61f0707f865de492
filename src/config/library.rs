//! The `[library]` section (and `[library.backup]`): its serde mirror and its validation into
//! [`Library`], for a local folder and for an S3 bucket read through the disk cache, with an
//! optional backup site. Every error names its field and says why; S3 credentials are not fields
//! at all (they come from the environment only: `AWS_*` for the primary site,
//! `ONAIR_BACKUP_AWS_*` for the backup).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::storage::{CredentialsEnv, S3Settings, S3Timeouts, normalize_prefix};
use super::units::{RawBytes, parse_bytes, parse_duration};
use super::{Library, LibraryKind, S3Library};

/// Tracks ready (on local disk and probed) ahead of the one playing when the file says nothing.
const DEFAULT_PREFETCH: usize = 2;
/// Ready tracks sit on disk, not in memory; more than this only delays library changes.
const MAX_PREFETCH: usize = 16;
const DEFAULT_CACHE_MAX_BYTES: u64 = 2 << 30;
/// Below this the cache cannot hold the handful of tracks an outage needs to rotate.
const MIN_CACHE_MAX_BYTES: u64 = 16 << 20;
/// Below this a limit would refuse ordinary songs.
const MIN_TRACK_BYTES: u64 = 1 << 20;
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);
const DEFAULT_MAX_ATTEMPTS: u32 = 3;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLibrary {
    kind: String,
    path: Option<String>,
    rescan: String,
    prefetch: usize,
    max_track_bytes: Option<RawBytes>,
    endpoint: Option<String>,
    bucket: Option<String>,
    prefix: Option<String>,
    region: Option<String>,
    cache_dir: Option<String>,
    cache_max_bytes: Option<RawBytes>,
    retry_after: Option<String>,
    connect_timeout: Option<String>,
    stall_timeout: Option<String>,
    operation_timeout: Option<String>,
    max_attempts: Option<u32>,
    ca_file: Option<String>,
    backup: Option<RawSite>,
}

/// `[library.backup]`: where the same library is copied at another site. Timeouts and attempts
/// are the primary's.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSite {
    endpoint: Option<String>,
    bucket: Option<String>,
    prefix: Option<String>,
    region: Option<String>,
    ca_file: Option<String>,
}

impl Default for RawLibrary {
    fn default() -> Self {
        RawLibrary {
            kind: "local".into(),
            path: None,
            rescan: "60s".into(),
            prefetch: DEFAULT_PREFETCH,
            max_track_bytes: None,
            endpoint: None,
            bucket: None,
            prefix: None,
            region: None,
            cache_dir: None,
            cache_max_bytes: None,
            retry_after: None,
            connect_timeout: None,
            stall_timeout: None,
            operation_timeout: None,
            max_attempts: None,
            ca_file: None,
            backup: None,
        }
    }
}

impl RawLibrary {
    pub(super) fn validate(self, errors: &mut Vec<String>) -> Library {
        let rescan = parse_duration(&self.rescan)
            .map_err(|e| {
                errors.push(format!(
                    "library.rescan = {:?}: {e} (\"0s\" turns rescans off)",
                    self.rescan
                ))
            })
            .unwrap_or(Duration::from_secs(60));
        if !(1..=MAX_PREFETCH).contains(&self.prefetch) {
            errors.push(format!(
                "library.prefetch = {}: expected 1..={MAX_PREFETCH} tracks ready ahead of the one playing",
                self.prefetch
            ));
        }
        let prefetch = self.prefetch.clamp(1, MAX_PREFETCH);
        let max_track_bytes = match &self.max_track_bytes {
            None => None,
            Some(raw) => match parse_bytes(raw) {
                Ok(n) if n >= MIN_TRACK_BYTES => Some(n),
                Ok(n) => {
                    errors.push(format!(
                        "library.max_track_bytes = {n}: at least 1 MiB (leave it out for no limit)"
                    ));
                    None
                }
                Err(e) => {
                    errors.push(format!("library.max_track_bytes = {raw}: {e}"));
                    None
                }
            },
        };
        let kind = match self.kind.as_str() {
            "local" => self.local(errors),
            "s3" => self.s3(errors),
            other => {
                errors.push(format!(
                    "library.kind = {other:?}: expected \"local\" or \"s3\""
                ));
                LibraryKind::Local {
                    path: PathBuf::new(),
                }
            }
        };
        Library {
            kind,
            rescan,
            prefetch,
            max_track_bytes,
        }
    }

    fn local(self, errors: &mut Vec<String>) -> LibraryKind {
        for (field, set) in [
            ("endpoint", self.endpoint.is_some()),
            ("bucket", self.bucket.is_some()),
            ("prefix", self.prefix.is_some()),
            ("region", self.region.is_some()),
            ("cache_dir", self.cache_dir.is_some()),
            ("cache_max_bytes", self.cache_max_bytes.is_some()),
            ("retry_after", self.retry_after.is_some()),
            ("connect_timeout", self.connect_timeout.is_some()),
            ("stall_timeout", self.stall_timeout.is_some()),
            ("operation_timeout", self.operation_timeout.is_some()),
            ("max_attempts", self.max_attempts.is_some()),
            ("ca_file", self.ca_file.is_some()),
            ("backup", self.backup.is_some()),
        ] {
            if set {
                errors.push(format!(
                    "library.{field}: only used with kind = \"s3\" (kind is \"local\")"
                ));
            }
        }
        let path = self.path.unwrap_or_else(|| "config/media".into());
        if path.is_empty() {
            errors.push("library.path: must not be empty".into());
        }
        LibraryKind::Local {
            path: PathBuf::from(path),
        }
    }

    fn s3(self, errors: &mut Vec<String>) -> LibraryKind {
        if self.path.is_some() {
            errors.push(
                "library.path: only used with kind = \"local\" (for \"s3\" give bucket and prefix)"
                    .into(),
            );
        }
        let cache_dir = match self.cache_dir {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => {
                errors.push(
                    "library.cache_dir: required with kind = \"s3\": a directory that survives \
                     restarts (what is cached there plays during a storage outage), e.g. \
                     \"/var/cache/onair\""
                        .into(),
                );
                PathBuf::new()
            }
        };
        let cache_max_bytes = match &self.cache_max_bytes {
            None => DEFAULT_CACHE_MAX_BYTES,
            Some(raw) => match parse_bytes(raw) {
                Ok(n) if n >= MIN_CACHE_MAX_BYTES => n,
                Ok(n) => {
                    errors.push(format!(
                        "library.cache_max_bytes = {n}: at least 16 MiB, so that an outage has \
                         several tracks to rotate"
                    ));
                    DEFAULT_CACHE_MAX_BYTES
                }
                Err(e) => {
                    errors.push(format!("library.cache_max_bytes = {raw}: {e}"));
                    DEFAULT_CACHE_MAX_BYTES
                }
            },
        };
        let defaults = S3Timeouts::default();
        let mut duration = |field: &str, value: Option<String>, default: Duration| match value {
            None => default,
            Some(text) => match parse_duration(&text) {
                Ok(d) if !d.is_zero() => d,
                Ok(_) => {
                    errors.push(format!(
                        "library.{field} = {text:?}: must be more than zero"
                    ));
                    default
                }
                Err(e) => {
                    errors.push(format!("library.{field} = {text:?}: {e}"));
                    default
                }
            },
        };
        let retry_after = duration("retry_after", self.retry_after, DEFAULT_RETRY_AFTER);
        let timeouts = S3Timeouts {
            connect: duration("connect_timeout", self.connect_timeout, defaults.connect),
            stall: duration("stall_timeout", self.stall_timeout, defaults.stall),
            operation: duration(
                "operation_timeout",
                self.operation_timeout,
                defaults.operation,
            ),
        };
        if timeouts.stall > timeouts.operation {
            errors.push(format!(
                "library.stall_timeout ({:?}): must not exceed operation_timeout ({:?}), \
                 which covers every attempt",
                timeouts.stall, timeouts.operation
            ));
        }
        let max_attempts = self.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS);
        if !(1..=10).contains(&max_attempts) {
            errors.push(format!(
                "library.max_attempts = {max_attempts}: expected 1..=10 (the first attempt included)"
            ));
        }
        let primary = RawSite {
            endpoint: self.endpoint,
            bucket: self.bucket,
            prefix: self.prefix,
            region: self.region,
            ca_file: self.ca_file,
        };
        let common = SiteCommon {
            timeouts,
            max_attempts: max_attempts.clamp(1, 10),
        };
        let storage = primary.validate("library", common, CredentialsEnv::PRIMARY, errors);
        let backup = self.backup.map(|b| {
            let backup = b.validate("library.backup", common, CredentialsEnv::BACKUP, errors);
            if backup.endpoint == storage.endpoint
                && backup.bucket == storage.bucket
                && backup.prefix == storage.prefix
            {
                errors.push(
                    "library.backup: names the same endpoint, bucket and prefix as the primary \
                     site; a backup must be another copy"
                        .into(),
                );
            }
            backup
        });
        LibraryKind::S3(Box::new(S3Library {
            storage,
            backup,
            cache_dir,
            cache_max_bytes,
            retry_after,
        }))
    }
}

/// What the primary and the backup site share.
#[derive(Debug, Clone, Copy)]
struct SiteCommon {
    timeouts: S3Timeouts,
    max_attempts: u32,
}

impl RawSite {
    /// `section` is where the fields are, for errors: `library` or `library.backup`.
    fn validate(
        self,
        section: &str,
        common: SiteCommon,
        credentials_env: CredentialsEnv,
        errors: &mut Vec<String>,
    ) -> S3Settings {
        let endpoint = self.endpoint.unwrap_or_default();
        if endpoint.is_empty() {
            errors.push(format!(
                "{section}.endpoint: required with kind = \"s3\", e.g. \"http://127.0.0.1:7480\""
            ));
        } else if !valid_endpoint(&endpoint) {
            errors.push(format!(
                "{section}.endpoint = {endpoint:?}: expected an http:// or https:// URL with a \
                 host and no path, e.g. \"https://s3.example.net\""
            ));
        }
        let bucket = self.bucket.unwrap_or_default();
        if bucket.is_empty() {
            errors.push(format!("{section}.bucket: required with kind = \"s3\""));
        } else if bucket.contains(['/', ' ']) {
            errors.push(format!(
                "{section}.bucket = {bucket:?}: a bucket name has no '/' or spaces (put folders in prefix)"
            ));
        }
        let region = match self.region {
            Some(r) if r.trim().is_empty() => {
                errors.push(format!(
                    "{section}.region: must not be empty (leave it out for us-east-1)"
                ));
                "us-east-1".to_owned()
            }
            Some(r) => r,
            None => "us-east-1".to_owned(),
        };
        let ca_file = match self.ca_file {
            Some(f) if f.is_empty() => {
                errors.push(format!(
                    "{section}.ca_file: give a PEM file, or leave it out"
                ));
                None
            }
            Some(_) if endpoint.starts_with("http://") => {
                errors.push(format!(
                    "{section}.ca_file: only used with an https:// endpoint (endpoint is http://)"
                ));
                None
            }
            other => other.map(PathBuf::from),
        };
        S3Settings {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            region,
            bucket,
            prefix: normalize_prefix(self.prefix.as_deref().unwrap_or("")),
            ca_file,
            timeouts: common.timeouts,
            max_attempts: common.max_attempts,
            credentials_env,
        }
    }
}

/// `http://host[:port]` or `https://…`, with nothing after the authority but an optional '/'.
fn valid_endpoint(url: &str) -> bool {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest.map(|r| r.strip_suffix('/').unwrap_or(r)) {
        Some(authority) => !authority.is_empty() && !authority.contains(['/', '?', '#', ' ', '@']),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_http_urls_without_a_path() {
        assert!(valid_endpoint("http://127.0.0.1:7480"));
        assert!(valid_endpoint("https://s3.example.net/"));
        assert!(!valid_endpoint("127.0.0.1:7480"));
        assert!(!valid_endpoint("https://"));
        assert!(!valid_endpoint("http://host/bucket"));
        assert!(!valid_endpoint("ftp://host"));
    }
}
