//! What a live source client sends before its audio (`onair::live::handshake`), on arbitrary
//! bytes: an HTTP head (`PUT`, `SOURCE`, the `OPTIONS *` and `!POKE` probes) when the first byte
//! is even, else the ICY port's password line and the `icy-*` lines after it.
//!
//! Properties: nothing panics; a source's mount is its path without a query; every refusal and
//! every answer is a well-formed status line (or `OK2` on the ICY port); an ICY login always has
//! someone to try, and the whole line is always tried as the `source` password last.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onair::live::handshake::{
    self, Head, Method, accepted, icy_headers, icy_login, probe_response,
};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        match handshake::parse(rest) {
            Ok(Head::Source(s)) => {
                assert!(matches!(s.method, Method::Put | Method::Source));
                assert!(!s.mount.contains('?'), "{:?}", s.mount);
                let answer = accepted(&s);
                assert!(answer.starts_with(b"HTTP/1."), "{answer:?}");
                assert!(answer.ends_with(b"\r\n\r\n"));
            }
            Ok(Head::Probe(p)) => {
                let answer = probe_response(p);
                assert!(
                    answer.starts_with(b"HTTP/1.1 204 ") || answer.starts_with(b"HTTP/1.0 400 ")
                );
            }
            Ok(Head::Other) => {}
            Err(refused) => {
                let answer = refused.response();
                assert!(answer.starts_with(b"HTTP/1.0 4"), "{answer:?}");
                assert!(!refused.label().is_empty());
            }
        }
    } else {
        let text = String::from_utf8_lossy(rest);
        let (line, block) = text.split_once('\n').unwrap_or((&text, ""));
        if let Some(login) = icy_login(line) {
            let last = login.candidates.last().expect("someone to try");
            assert_eq!(last.user, "source");
            if let Some(mount) = &login.mount {
                assert!(mount.starts_with('/'));
            }
        }
        let _ = icy_headers(block);
    }
});
