//! Config text on arbitrary input: `config::parse` (TOML, then validation) must answer `Ok` or an
//! error that says something, never panic.
//!
//! Properties: a validation error lists at least one problem; an accepted config keeps what
//! validation promises (mount paths, metadata interval, burst below queue, station fields free of
//! control characters); and the listener heads built from it parse as HTTP with no header line
//! broken by a value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onair::config::{self, Config, ParseError};
use onair::http::head::StreamHead;

fn check_accepted(config: &Config) {
    assert!(!config.mounts.is_empty());
    let mut paths = std::collections::HashSet::new();
    for m in &config.mounts {
        assert!(m.path.starts_with('/') && m.path.len() >= 2, "{:?}", m.path);
        assert!(!m.path.contains(['?', '#', '%', ' ']), "{:?}", m.path);
        assert!(paths.insert(&m.path), "{:?} twice", m.path);
        assert!((256..=65_535).contains(&m.icy_metaint));
        assert!(m.max_listeners >= 1);
        let bps = m.bytes_per_sec();
        assert!(m.burst.bytes(bps) < m.queue.bytes(bps));
        assert!(m.queue.bytes(bps) <= 64 << 20);
    }
    let s = &config.station;
    for v in [&s.name, &s.description, &s.genre, &s.url] {
        assert!(!v.chars().any(char::is_control), "{v:?}");
    }
    assert!((1..=2).contains(&config.audio.channels));

    for m in &config.mounts {
        let head = StreamHead::new(&config.station, config.audio, m, "audio/mpeg");
        for (bytes, metaint) in [(head.ok(false), false), (head.ok(true), true)] {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            let parsed = resp.parse(&bytes).expect("listener head parses");
            assert_eq!(parsed, httparse::Status::Complete(bytes.len()));
            let lines = bytes.split(|&b| b == b'\n').count();
            // Status line, headers, blank line, and the empty rest after the last LF.
            assert_eq!(resp.headers.len() + 3, lines, "a value broke a header line");
            let icy = resp.headers.iter().find(|h| h.name == "icy-metaint");
            assert_eq!(icy.is_some(), metaint);
            if let Some(h) = icy {
                assert_eq!(h.value, m.icy_metaint.to_string().as_bytes());
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match config::parse(text, Default::default()) {
        Ok(config) => check_accepted(&config),
        Err(ParseError::Syntax(message)) => assert!(!message.is_empty()),
        Err(ParseError::Invalid(errors)) => {
            assert!(!errors.is_empty(), "invalid, but no error given");
            assert!(errors.iter().all(|e| !e.is_empty()));
        }
    }
});
