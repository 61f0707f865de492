//! Amounts as an operator writes them: durations ("2s", "500ms", "1m") and byte counts (a number,
//! or a text with a unit such as "2GiB" or "500MB").

use std::time::Duration;

use serde::Deserialize;

/// A duration: a number with an optional unit (`ms`, `s` (default), `m`/`min`, `h`), at most a week.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (num, unit) = match t.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let value: f64 = num
        .parse()
        .map_err(|_| "expected a duration such as \"2s\", \"500ms\" or \"1m\"".to_string())?;
    let scale = match unit.trim() {
        "ms" => 0.001,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => return Err(format!("unknown unit {other:?} (use ms, s, m or h)")),
    };
    let secs = value * scale;
    if !secs.is_finite() || secs > 7.0 * 86_400.0 {
        return Err("out of range".into());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A byte count as written in the file: a number of bytes or a text with a unit.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub(crate) enum RawBytes {
    Bytes(u64),
    Text(String),
}

impl std::fmt::Display for RawBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RawBytes::Bytes(n) => write!(f, "{n}"),
            RawBytes::Text(t) => write!(f, "{t:?}"),
        }
    }
}

pub(crate) fn parse_bytes(raw: &RawBytes) -> Result<u64, String> {
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
    fn durations_take_units() {
        assert_eq!(
            parse_duration("1500ms").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("2 weeks").is_err());
    }
}
