//! The `[playout]` section: whether a restarted or replacement pod carries on the programme
//! where it should be by now, and how often the playout state is saved.

use std::time::Duration;

use serde::Deserialize;

use super::Playout;
use super::units::parse_duration;

const DEFAULT_SAVE_INTERVAL: Duration = Duration::from_secs(5);
/// Saving more often than this buys no accuracy (positions come from start times) and costs
/// storage requests.
const MIN_SAVE_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawPlayout {
    resume: bool,
    save_interval: String,
}

impl Default for RawPlayout {
    fn default() -> Self {
        RawPlayout {
            resume: true,
            save_interval: "5s".into(),
        }
    }
}

impl RawPlayout {
    pub(super) fn validate(self, errors: &mut Vec<String>) -> Playout {
        let save_interval = match parse_duration(&self.save_interval) {
            Ok(d) if d >= MIN_SAVE_INTERVAL && d <= Duration::from_secs(600) => d,
            Ok(_) => {
                errors.push(format!(
                    "playout.save_interval = {:?}: expected 1s to 10m",
                    self.save_interval
                ));
                DEFAULT_SAVE_INTERVAL
            }
            Err(e) => {
                errors.push(format!(
                    "playout.save_interval = {:?}: {e}",
                    self.save_interval
                ));
                DEFAULT_SAVE_INTERVAL
            }
        };
        Playout {
            resume: self.resume,
            save_interval,
        }
    }
}
