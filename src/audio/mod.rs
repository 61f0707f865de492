//! PCM stages of the pipeline: decoding tracks (`decode`), converting them to the station format
//! (`resample`) and pacing the output to the wall clock (`clock`). All of it is synchronous code that
//! runs on the pipeline thread.

pub mod clock;
pub mod decode;
pub mod resample;

/// How a track's title reads on air: `Artist - Title` when both tags exist, else the title, else the
/// file name without its extension.
pub fn display_title(artist: Option<&str>, title: Option<&str>, key: &str) -> String {
    match (artist, title) {
        (Some(a), Some(t)) => format!("{a} - {t}"),
        (None, Some(t)) => t.to_string(),
        _ => {
            let name = key.rsplit('/').next().unwrap_or(key);
            match name.rsplit_once('.') {
                Some((stem, _)) if !stem.is_empty() => stem.to_string(),
                _ => name.to_string(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::display_title;

    #[test]
    fn title_falls_back_to_the_file_name() {
        assert_eq!(display_title(Some("A"), Some("T"), "x.mp3"), "A - T");
        assert_eq!(display_title(None, Some("T"), "x.mp3"), "T");
        assert_eq!(
            display_title(Some("A"), None, "d/08-untagged.wav"),
            "08-untagged"
        );
        assert_eq!(display_title(None, None, "noext"), "noext");
    }
}
