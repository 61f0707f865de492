//! The `[library]` section: its serde mirror and its validation into [`Library`], for a local
//! folder and for an S3 bucket read through the disk cache. Every error names its field and says
//! why; S3 credentials are not fields at all (they come from the `AWS_*` environment only).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::raw::parse_duration;
use super::{Library, LibraryKind, S3Library};
use crate::catalog::s3::{S3Settings, S3Timeouts, normalize_prefix};

/// Prefetch depth when the file says nothing: one track ready while another is prepared.
const DEFAULT_PREFETCH: usize = 2;
/// Deeper prefetch only holds more tracks in memory; storage outages are ridden out by the
/// disk cache, not by this queue.
const MAX_PREFETCH: usize = 16;
const DEFAULT_CACHE_MAX_BYTES: u64 = 2 << 30;
/// Below this the cache cannot hold the handful of tracks an outage needs to rotate.
const MIN_CACHE_MAX_BYTES: u64 = 16 << 20;
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);
const DEFAULT_MAX_ATTEMPTS: u32 = 3;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLibrary {
    kind: String,
    path: Option<String>,
    rescan: String,
    prefetch: usize,
    endpoint: Option<String>,
    bucket: Option<String>,
    prefix: Option<String>,
    region: Option<String>,
    cache_dir: Option<String>,
    cache_max_bytes: Option<RawBytes>,
    retry_after: Option<String>,
    connect_timeout: Option<String>,
    attempt_timeout: Option<String>,
    operation_timeout: Option<String>,
    body_timeout: Option<String>,
    max_attempts: Option<u32>,
    ca_file: Option<String>,
}

impl Default for RawLibrary {
    fn default() -> Self {
        RawLibrary {
            kind: "local".into(),
            path: None,
            rescan: "60s".into(),
            prefetch: DEFAULT_PREFETCH,
            endpoint: None,
            bucket: None,
            prefix: None,
            region: None,
            cache_dir: None,
            cache_max_bytes: None,
            retry_after: None,
            connect_timeout: None,
            attempt_timeout: None,
            operation_timeout: None,
            body_timeout: None,
            max_attempts: None,
            ca_file: None,
        }
    }
}

/// `cache_max_bytes` takes a number of bytes or a text with a unit ("2GiB", "500MB").
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawBytes {
    Bytes(u64),
    Text(String),
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
            ("attempt_timeout", self.attempt_timeout.is_some()),
            ("operation_timeout", self.operation_timeout.is_some()),
            ("body_timeout", self.body_timeout.is_some()),
            ("max_attempts", self.max_attempts.is_some()),
            ("ca_file", self.ca_file.is_some()),
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
        let endpoint = self.endpoint.unwrap_or_default();
        if endpoint.is_empty() {
            errors.push(
                "library.endpoint: required with kind = \"s3\", e.g. \"http://127.0.0.1:7480\""
                    .into(),
            );
        } else if !valid_endpoint(&endpoint) {
            errors.push(format!(
                "library.endpoint = {endpoint:?}: expected an http:// or https:// URL with a host \
                 and no path, e.g. \"https://s3.example.net\""
            ));
        }
        let bucket = self.bucket.unwrap_or_default();
        if bucket.is_empty() {
            errors.push("library.bucket: required with kind = \"s3\"".into());
        } else if bucket.contains(['/', ' ']) {
            errors.push(format!(
                "library.bucket = {bucket:?}: a bucket name has no '/' or spaces (put folders in prefix)"
            ));
        }
        let region = match self.region {
            Some(r) if r.trim().is_empty() => {
                errors
                    .push("library.region: must not be empty (leave it out for us-east-1)".into());
                "us-east-1".to_owned()
            }
            Some(r) => r,
            None => "us-east-1".to_owned(),
        };
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
                    let shown = match raw {
                        RawBytes::Bytes(n) => n.to_string(),
                        RawBytes::Text(t) => format!("{t:?}"),
                    };
                    errors.push(format!("library.cache_max_bytes = {shown}: {e}"));
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
            attempt: duration("attempt_timeout", self.attempt_timeout, defaults.attempt),
            operation: duration(
                "operation_timeout",
                self.operation_timeout,
                defaults.operation,
            ),
            body: duration("body_timeout", self.body_timeout, defaults.body),
        };
        if timeouts.attempt > timeouts.operation {
            errors.push(format!(
                "library.attempt_timeout ({:?}): must not exceed operation_timeout ({:?}), \
                 which covers every attempt",
                timeouts.attempt, timeouts.operation
            ));
        }
        let max_attempts = self.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS);
        if !(1..=10).contains(&max_attempts) {
            errors.push(format!(
                "library.max_attempts = {max_attempts}: expected 1..=10 (the first attempt included)"
            ));
        }
        let ca_file = match self.ca_file {
            Some(f) if f.is_empty() => {
                errors.push("library.ca_file: give a PEM file, or leave it out".into());
                None
            }
            Some(_) if endpoint.starts_with("http://") => {
                errors.push(
                    "library.ca_file: only used with an https:// endpoint (endpoint is http://)"
                        .into(),
                );
                None
            }
            other => other.map(PathBuf::from),
        };
        LibraryKind::S3(Box::new(S3Library {
            storage: S3Settings {
                endpoint: endpoint.trim_end_matches('/').to_owned(),
                region,
                bucket,
                prefix: normalize_prefix(self.prefix.as_deref().unwrap_or("")),
                ca_file,
                timeouts,
                max_attempts: max_attempts.clamp(1, 10),
            },
            cache_dir,
            cache_max_bytes,
            retry_after,
        }))
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

fn parse_bytes(raw: &RawBytes) -> Result<u64, String> {
    let text = match raw {
        RawBytes::Bytes(n) => return Ok(*n),
        RawBytes::Text(t) => t.trim(),
    };
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| "expected bytes, e.g. 2147483648, \"2GiB\" or \"500MB\"".to_string())?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        other => {
            return Err(format!(
                "unknown unit {other:?} (use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)"
            ));
        }
    };
    let bytes = value * scale as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err("out of range".into());
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_amounts_take_units() {
        let text = |t: &str| parse_bytes(&RawBytes::Text(t.into()));
        assert_eq!(text("2GiB"), Ok(2 << 30));
        assert_eq!(text("500 MB"), Ok(500_000_000));
        assert_eq!(text("1048576"), Ok(1 << 20));
        assert_eq!(parse_bytes(&RawBytes::Bytes(7)), Ok(7));
        assert!(text("2 gigs").is_err());
        assert!(text("lots").is_err());
    }

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
