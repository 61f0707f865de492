//! Who may use `/admin/*`: HTTP Basic credentials compared in constant time, a per-address
//! budget of failed logins (each failure answered late, every failure logged), and the refusal
//! of state-changing commands that a browser marks as coming from another site.
//!
//! Icecast's admin API changes state with plain GETs (`/admin/metadata`, `/admin/killclient`),
//! so any page an operator visits could trigger them with an `<img>` once the browser holds the
//! Basic credentials. Browsers say where a request comes from (`Sec-Fetch-Site`, `Origin`);
//! panels and scripts send neither header and keep working.

use std::time::Duration;

use base64::Engine as _;
use http::Request;
use http::header::{self, HeaderValue};

pub use crate::login::{Attempt, Budget, Login, LoginThrottle};
use crate::login::{logged_user, same_secret};

use super::status::host_without_port;

/// How long the answer to a failed login waits: a guesser on one connection gets two tries a
/// second. The wait is a timer, not a worker: other requests are served meanwhile.
pub const FAILED_LOGIN_DELAY: Duration = Duration::from_millis(500);
/// Failed logins an address may make in ten minutes; then every admin request from it is
/// refused (429) until the window ends, whatever its credentials, so that guessing in parallel
/// gains nothing.
pub const ADMIN_BUDGET: Budget = Budget {
    failures: 20,
    window: Duration::from_secs(600),
};

/// Checks the request's Basic credentials against `user:password`. SHA-256 digests of the two
/// are compared, in constant time, so neither where they differ nor the password's length shows
/// in the timing.
pub fn login<B>(req: &Request<B>, user: &str, password: &str) -> Login {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Login::Missing;
    };
    let given = value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        })
        .and_then(|b64| {
            base64::engine::general_purpose::STANDARD_PAD_INDIFFERENT
                .decode(b64.trim())
                .ok()
        });
    let Some(given) = given else {
        return Login::Failed { user: None };
    };
    let expected = format!("{user}:{password}");
    if same_secret(&given, expected.as_bytes()) {
        return Login::Granted;
    }
    let sent_user = given.split(|&b| b == b':').next().unwrap_or_default();
    Login::Failed {
        user: Some(logged_user(sent_user)),
    }
}

/// Admin commands that change something: the ones a cross-site request must not reach.
pub fn changes_state(path: &str) -> bool {
    matches!(
        path,
        "/admin/metadata" | "/admin/metadata.xml" | "/admin/killclient" | "/admin/next"
    )
}

/// True when the browser says the request comes from another site: `Sec-Fetch-Site:
/// cross-site`, or an `Origin` whose host is not the host the request was sent to (`null`, the
/// origin of sandboxed frames and `data:` pages, is another site too). `same-site` (another
/// port or subdomain of the same site) is allowed, as the same host with another port is.
pub fn cross_site<B>(req: &Request<B>) -> bool {
    let h = req.headers();
    if h.get("sec-fetch-site").is_some_and(|v| {
        v.as_bytes()
            .trim_ascii()
            .eq_ignore_ascii_case(b"cross-site")
    }) {
        return true;
    }
    let Some(origin) = h.get(header::ORIGIN) else {
        return false;
    };
    let host = h
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(host_without_port);
    match (origin_host(origin), host) {
        (Some(origin), Some(host)) => !origin.eq_ignore_ascii_case(host),
        _ => true,
    }
}

/// `https://radio.example:8443` → `radio.example`; `None` for `null` or anything not a URL.
fn origin_host(origin: &HeaderValue) -> Option<&str> {
    let (_, rest) = origin.to_str().ok()?.split_once("://")?;
    let authority = rest.split('/').next()?;
    Some(host_without_port(authority)).filter(|h| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().uri("/admin/next");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    fn basic(credentials: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        )
    }

    #[test]
    fn credentials() {
        let ok = |h: &str| login(&req(&[("authorization", h)]), "admin", "hunter2");
        assert!(matches!(ok(&basic("admin:hunter2")), Login::Granted));
        // Unpadded base64 from lenient clients still works.
        assert!(matches!(ok("Basic YWRtaW46aHVudGVyMg"), Login::Granted));
        assert!(
            matches!(ok(&basic("admin:hunter3")), Login::Failed { user: Some(u) } if u == "admin")
        );
        assert!(
            matches!(ok(&basic("root:hunter2")), Login::Failed { user: Some(u) } if u == "root")
        );
        assert!(matches!(ok(&basic("admin:hunter2x")), Login::Failed { .. }));
        assert!(matches!(ok("Basic !!!"), Login::Failed { user: None }));
        assert!(matches!(ok("Bearer x"), Login::Failed { user: None }));
        assert!(matches!(
            login(&req(&[]), "admin", "hunter2"),
            Login::Missing
        ));
        let long = format!("{}:x", "u".repeat(500));
        assert!(
            matches!(ok(&basic(&long)), Login::Failed { user: Some(u) } if u.len() == crate::login::MAX_LOGGED_USER)
        );
    }

    #[test]
    fn cross_site_requests_are_recognised() {
        let host = ("host", "radio.example:8000");
        for (headers, cross) in [
            (vec![host], false),
            (vec![host, ("sec-fetch-site", "same-origin")], false),
            (vec![host, ("sec-fetch-site", "same-site")], false),
            (vec![host, ("sec-fetch-site", "none")], false),
            (vec![host, ("sec-fetch-site", "cross-site")], true),
            (vec![host, ("origin", "http://radio.example:8000")], false),
            (vec![host, ("origin", "https://RADIO.example")], false),
            (vec![host, ("origin", "https://evil.example")], true),
            (vec![host, ("origin", "null")], true),
            (vec![("origin", "http://radio.example")], true),
            (
                vec![("host", "[::1]:8000"), ("origin", "http://[::1]:8000")],
                false,
            ),
            (
                vec![("host", "[::1]:8000"), ("origin", "http://[::2]:8000")],
                true,
            ),
        ] {
            assert_eq!(cross_site(&req(&headers)), cross, "{headers:?}");
        }
    }
}
