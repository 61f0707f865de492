//! The `[hls]` section: what every HLS mount of the station shares. Today that is the epoch of
//! the timeline, from which segment and part numbers and the 33-bit timestamps count.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use super::Hls;
use crate::dates::parse_rfc3339_utc;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawHls {
    epoch: Option<String>,
}

impl RawHls {
    pub(super) fn validate(self, now: SystemTime, errors: &mut Vec<String>) -> Hls {
        let epoch = match &self.epoch {
            None => UNIX_EPOCH,
            Some(text) => match parse_rfc3339_utc(text) {
                Some(t) if t <= now => t,
                Some(_) => {
                    errors.push(format!(
                        "hls.epoch = {text:?}: must be in the past (segment numbers count from it)"
                    ));
                    UNIX_EPOCH
                }
                None => {
                    errors.push(format!(
                        "hls.epoch = {text:?}: expected a UTC time like \"2024-01-01T00:00:00Z\""
                    ));
                    UNIX_EPOCH
                }
            },
        };
        Hls { epoch }
    }
}
