//! The `[programme]` section (what listeners hear: loudness, crossfades, silence trimming) and
//! `[analysis]` (how tracks are measured), validated with the field and the reason in every
//! error.

use std::time::Duration;

use serde::Deserialize;

use super::units::parse_duration;
use super::{AnalysisSettings, Crossfade, Curve, Loudness, Programme};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawProgramme {
    loudness_target: f64,
    true_peak: f64,
    max_boost: f64,
    max_cut: f64,
    crossfade: RawCrossfade,
    silence: RawSilence,
}

impl Default for RawProgramme {
    fn default() -> Self {
        RawProgramme {
            loudness_target: -16.0,
            true_peak: -1.0,
            max_boost: 10.0,
            max_cut: 20.0,
            crossfade: RawCrossfade::default(),
            silence: RawSilence::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawCrossfade {
    enabled: bool,
    max_overlap: String,
    fade_out: String,
    curve: String,
}

impl Default for RawCrossfade {
    fn default() -> Self {
        RawCrossfade {
            enabled: true,
            max_overlap: "6s".into(),
            fade_out: "2.5s".into(),
            curve: "equal_power".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSilence {
    trim: bool,
}

impl Default for RawSilence {
    fn default() -> Self {
        RawSilence { trim: true }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawAnalysis {
    enabled: bool,
    max_speed: f64,
}

impl Default for RawAnalysis {
    fn default() -> Self {
        RawAnalysis {
            enabled: true,
            max_speed: 50.0,
        }
    }
}

impl RawProgramme {
    pub(super) fn validate(self, errors: &mut Vec<String>) -> Programme {
        let mut within =
            |field: &str, value: f64, range: std::ops::RangeInclusive<f64>, unit: &str| {
                if !(value.is_finite() && range.contains(&value)) {
                    errors.push(format!(
                        "programme.{field} = {value}: expected {} to {} {unit}",
                        range.start(),
                        range.end()
                    ));
                }
            };
        within(
            "loudness_target",
            self.loudness_target,
            -40.0..=-5.0,
            "LUFS",
        );
        within("true_peak", self.true_peak, -9.0..=0.0, "dBTP");
        within("max_boost", self.max_boost, 0.0..=30.0, "dB");
        within("max_cut", self.max_cut, 0.0..=40.0, "dB");
        let c = self.crossfade;
        let mut duration = |field: &str, text: &str, max: Duration| match parse_duration(text) {
            Ok(d) if d <= max => d,
            Ok(_) => {
                errors.push(format!(
                    "programme.crossfade.{field} = {text:?}: at most {}s",
                    max.as_secs()
                ));
                max
            }
            Err(e) => {
                errors.push(format!("programme.crossfade.{field} = {text:?}: {e}"));
                Duration::ZERO
            }
        };
        let max_overlap = duration("max_overlap", &c.max_overlap, Duration::from_secs(30));
        let fade_out = duration("fade_out", &c.fade_out, Duration::from_secs(30));
        let curve = match c.curve.as_str() {
            "equal_power" => Curve::EqualPower,
            "linear" => Curve::Linear,
            "sine" => Curve::Sine,
            other => {
                errors.push(format!(
                    "programme.crossfade.curve = {other:?}: expected \"equal_power\", \"linear\" or \"sine\""
                ));
                Curve::EqualPower
            }
        };
        if fade_out > max_overlap && c.enabled {
            errors.push(format!(
                "programme.crossfade.fade_out ({fade_out:?}) is longer than max_overlap \
                 ({max_overlap:?}): a fade ends where the next track has taken over"
            ));
        }
        Programme {
            loudness: Loudness {
                target_lufs: self.loudness_target,
                true_peak_dbtp: self.true_peak,
                max_boost_db: self.max_boost,
                max_cut_db: self.max_cut,
            },
            crossfade: Crossfade {
                enabled: c.enabled,
                max_overlap,
                fade_out,
                curve,
            },
            trim_silence: self.silence.trim,
        }
    }
}

impl RawAnalysis {
    pub(super) fn validate(self, errors: &mut Vec<String>) -> AnalysisSettings {
        if !(self.max_speed.is_finite() && (1.0..=10_000.0).contains(&self.max_speed)) {
            errors.push(format!(
                "analysis.max_speed = {}: expected 1 to 10000 (times real time)",
                self.max_speed
            ));
        }
        AnalysisSettings {
            enabled: self.enabled,
            max_speed: self.max_speed.clamp(1.0, 10_000.0),
        }
    }
}
