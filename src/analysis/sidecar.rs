//! The sidecar: a track's [`Facts`] as a small JSON document kept beside the track (an object
//! `<key>.onair.json` in the bucket, or under `.onair/` in a local folder), so restarts and
//! replacement pods never analyse a track twice. It names the analyser's version and the track
//! version it was made from (the ETag, or size and mtime): valid while both match, with no
//! expiry; anything else (another version, a damaged or foreign file) is no sidecar.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::facts::{ANALYSER_VERSION, Envelope, Facts};

/// Format of the JSON itself.
const FORMAT: u32 = 1;
/// What a sidecar's name adds to its track's key.
pub const SUFFIX: &str = ".onair.json";

#[derive(Debug, Serialize, Deserialize)]
struct Document {
    format: u32,
    analyser: u32,
    key: String,
    version: String,
    sample_rate: u32,
    channels: usize,
    duration_s: f64,
    integrated_lufs: Option<f64>,
    range_lu: Option<f64>,
    true_peak_dbtp: Option<f64>,
    max_short_term_lufs: Option<f64>,
    /// Momentary loudness every 100 ms, in tenths of a LU, as little-endian i16 in base64:
    /// about 27 KB of text for an hour, a third of a JSON array's size.
    momentary_b64: String,
}

/// The sidecar of `facts` for this version of `key`.
pub fn encode(key: &str, version: &str, facts: &Facts) -> Vec<u8> {
    let raw: Vec<u8> = facts
        .momentary
        .0
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let doc = Document {
        format: FORMAT,
        analyser: ANALYSER_VERSION,
        key: key.to_owned(),
        version: version.to_owned(),
        sample_rate: facts.sample_rate,
        channels: facts.channels,
        duration_s: facts.duration_s,
        integrated_lufs: facts.integrated_lufs,
        range_lu: facts.range_lu,
        true_peak_dbtp: facts.true_peak_dbtp,
        max_short_term_lufs: facts.max_short_term_lufs,
        momentary_b64: base64::engine::general_purpose::STANDARD.encode(raw),
    };
    // Plain data: serialising it cannot fail.
    serde_json::to_vec(&doc).unwrap_or_default()
}

/// The facts in `json` if it is a sidecar of this analyser for this version of `key`.
pub fn decode(json: &[u8], key: &str, version: &str) -> Option<Facts> {
    let doc: Document = serde_json::from_slice(json).ok()?;
    if doc.format != FORMAT
        || doc.analyser != ANALYSER_VERSION
        || doc.key != key
        || doc.version != version
    {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(doc.momentary_b64)
        .ok()?;
    if raw.len() % 2 != 0 {
        return None;
    }
    let momentary = raw
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let plausible =
        |v: Option<f64>| v.is_none_or(|v| v.is_finite() && (-120.0..=30.0).contains(&v));
    let levels = [
        doc.integrated_lufs,
        doc.true_peak_dbtp,
        doc.max_short_term_lufs,
    ];
    let sane =
        doc.duration_s.is_finite() && doc.duration_s >= 0.0 && levels.into_iter().all(plausible);
    if !sane {
        return None;
    }
    Some(Facts {
        sample_rate: doc.sample_rate,
        channels: doc.channels,
        duration_s: doc.duration_s,
        integrated_lufs: doc.integrated_lufs,
        range_lu: doc.range_lu,
        true_peak_dbtp: doc.true_peak_dbtp,
        max_short_term_lufs: doc.max_short_term_lufs,
        momentary: Envelope(momentary),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            sample_rate: 44_100,
            channels: 2,
            duration_s: 201.5,
            integrated_lufs: Some(-11.2),
            range_lu: Some(6.1),
            true_peak_dbtp: Some(0.4),
            max_short_term_lufs: Some(-8.9),
            momentary: Envelope(vec![-700, -230, -112, -98]),
        }
    }

    #[test]
    fn round_trips_for_its_own_track_version_only() {
        let json = encode("a/b.mp3", "etag-1", &facts());
        assert_eq!(decode(&json, "a/b.mp3", "etag-1"), Some(facts()));
        assert_eq!(
            decode(&json, "a/b.mp3", "etag-2"),
            None,
            "the track changed"
        );
        assert_eq!(decode(&json, "a/c.mp3", "etag-1"), None, "another track's");
        assert!(json.len() < 400, "small: {} bytes", json.len());
    }

    #[test]
    fn damaged_or_foreign_files_are_no_sidecar() {
        assert_eq!(decode(b"{\"format\":1,", "k", "v"), None);
        assert_eq!(decode(b"not json", "k", "v"), None);
        let mut other =
            serde_json::from_slice::<serde_json::Value>(&encode("k", "v", &facts())).unwrap();
        other["analyser"] = serde_json::json!(ANALYSER_VERSION + 1);
        assert_eq!(decode(other.to_string().as_bytes(), "k", "v"), None);
        other["analyser"] = serde_json::json!(ANALYSER_VERSION);
        other["integrated_lufs"] = serde_json::json!(1e300);
        assert_eq!(decode(other.to_string().as_bytes(), "k", "v"), None);
    }
}
