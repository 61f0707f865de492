//! A radio whose library is a unique prefix in the real Ceph RGW bucket that scripts/ceph.sh
//! starts, with its own disk cache; without a cluster the test fails unless ONAIR_SKIP_S3=1,
//! as `tests/s3_support` decides.

use bytes::Bytes;
use onair::catalog::s3::{S3Catalog, S3Settings};
use onair::config::{Config, Secrets};
use tempfile::TempDir;

use crate::s3_support;

/// Objects under a fresh prefix, and a cache directory for the radio that plays them.
pub struct S3Library {
    pub catalog: S3Catalog,
    pub settings: S3Settings,
    pub cache: TempDir,
}

impl S3Library {
    /// Uploads fixture files (`(object key, file in tests/fixtures/media)`) under a new prefix;
    /// `None` when there is no cluster and S3 is not required.
    pub async fn upload(name: &str, files: &[(&str, &str)]) -> Option<S3Library> {
        let settings = s3_support::settings(&s3_support::unique_prefix(name))?;
        let catalog = s3_support::catalog(&settings);
        let items = files
            .iter()
            .map(|(key, file)| (key.to_string(), fixture(file)))
            .collect();
        s3_support::put_many(&catalog, items).await;
        Some(S3Library {
            catalog,
            settings,
            cache: tempfile::tempdir().unwrap(),
        })
    }

    pub async fn put(&self, key: &str, file: &str) {
        s3_support::put(&self.catalog, key, fixture(file)).await;
    }

    pub async fn delete(&self, key: &str) {
        s3_support::delete(&self.catalog, key).await;
    }

    /// A radio config on this library: rescans every second, probes a down storage every
    /// second, with timeouts short enough that a frozen gateway is an outage within seconds;
    /// the admin interface is open with `ADMIN_PASSWORD`.
    /// `library` adds lines to `[library]`; `extra` is appended as in `config_for`.
    pub fn config(&self, library: &str, extra: &str) -> Config {
        let secrets = Secrets {
            admin_password: Some(super::ADMIN_PASSWORD.into()),
            source_password: None,
        };
        self.config_with(library, extra, secrets)
    }

    /// [`S3Library::config`] with other secrets.
    pub fn config_with(&self, library: &str, extra: &str, secrets: Secrets) -> Config {
        let s = &self.settings;
        let section = format!(
            r#"kind = "s3"
endpoint = "{}"
bucket = "{}"
prefix = "{}"
cache_dir = "{}"
cache_max_bytes = "64MiB"
retry_after = "1s"
connect_timeout = "1s"
stall_timeout = "2s"
operation_timeout = "4s"
max_attempts = 2
{library}"#,
            s.endpoint,
            s.bucket,
            s.prefix,
            self.cache.path().display()
        );
        super::config_with_library(&section, extra, secrets)
    }
}

fn fixture(file: &str) -> Bytes {
    Bytes::from(std::fs::read(super::media_dir().join(file)).unwrap())
}

/// The value of an unlabelled series in a `/metrics` text, if present.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}
