//! `[server]` settings that bound connections: the request-head timeout, `max_connections`,
//! `max_event_subscribers` and `admin_listen`, validated with the field and the reason in every
//! error.

use std::net::SocketAddr;
use std::time::Duration;

use super::units::parse_duration;

/// Longest `server.head_timeout`: a client that takes longer to send a request head is not one
/// worth holding a connection for.
const MAX_HEAD_TIMEOUT: Duration = Duration::from_secs(60);

/// The `[server]` fields that bound connections, as the file gives them.
pub(super) struct RawLimits<'a> {
    pub head_timeout: &'a str,
    pub max_connections: usize,
    pub max_event_subscribers: usize,
    pub admin_listen: Option<&'a str>,
}

/// The same, validated.
pub(super) struct Limits {
    pub head_timeout: Duration,
    pub max_connections: usize,
    pub max_event_subscribers: usize,
    pub admin_listen: Option<SocketAddr>,
}

/// Checks the limits, pushing one error per problem, each with its field and reason.
pub(super) fn validate(
    raw: &RawLimits<'_>,
    listen: Option<SocketAddr>,
    errors: &mut Vec<String>,
) -> Limits {
    let head_timeout = match parse_duration(raw.head_timeout) {
        Ok(d) if d.is_zero() || d > MAX_HEAD_TIMEOUT => {
            errors.push(format!(
                "server.head_timeout = {:?}: must be more than zero and at most {}s",
                raw.head_timeout,
                MAX_HEAD_TIMEOUT.as_secs()
            ));
            d
        }
        Ok(d) => d,
        Err(e) => {
            errors.push(format!("server.head_timeout = {:?}: {e}", raw.head_timeout));
            Duration::from_secs(5)
        }
    };
    if raw.max_connections == 0 {
        errors.push(
            "server.max_connections = 0: must be at least 1 (every request but a listener's needs one)"
                .into(),
        );
    }
    if raw.max_event_subscribers == 0 {
        errors.push("server.max_event_subscribers = 0: must be at least 1".into());
    } else if raw.max_event_subscribers > raw.max_connections {
        errors.push(format!(
            "server.max_event_subscribers = {}: must not exceed server.max_connections ({}), \
             since each event stream holds one of those connections",
            raw.max_event_subscribers, raw.max_connections
        ));
    }
    let admin_listen = raw.admin_listen.and_then(|text| {
        match text.parse::<SocketAddr>() {
            Ok(addr) if Some(addr) == listen => {
                errors.push(format!(
                    "server.admin_listen = {text:?}: must differ from server.listen"
                ));
                None
            }
            Ok(addr) => Some(addr),
            Err(e) => {
                errors.push(format!(
                    "server.admin_listen = {text:?}: {e} (expected IP:PORT, e.g. \"127.0.0.1:8001\")"
                ));
                None
            }
        }
    });
    Limits {
        head_timeout,
        max_connections: raw.max_connections,
        max_event_subscribers: raw.max_event_subscribers,
        admin_listen,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::{ParseError, Secrets, parse};

    fn errors(text: &str) -> String {
        match parse(text, Secrets::default()) {
            Err(ParseError::Invalid(errors)) => errors.join("\n"),
            other => panic!("expected validation errors, got {other:?}"),
        }
    }

    #[test]
    fn connection_limits_have_defaults() {
        let c = parse("[[mount]]\npath = \"/a\"\n", Secrets::default()).unwrap();
        let s = &c.server;
        assert_eq!(s.head_timeout, Duration::from_secs(5));
        assert_eq!((s.max_connections, s.max_event_subscribers), (1024, 256));
        assert_eq!(s.admin_listen, None);
        assert_eq!(c.mounts[0].max_listeners_per_ip, None);
        let c = parse(
            "[server]\nhead_timeout = \"2s\"\nmax_connections = 10\nmax_event_subscribers = 3\n\
             admin_listen = \"127.0.0.1:8001\"\n[[mount]]\npath = \"/a\"\nmax_listeners_per_ip = 4\n",
            Secrets::default(),
        )
        .unwrap();
        let s = &c.server;
        assert_eq!(s.head_timeout, Duration::from_secs(2));
        assert_eq!((s.max_connections, s.max_event_subscribers), (10, 3));
        assert_eq!(s.admin_listen, Some("127.0.0.1:8001".parse().unwrap()));
        assert_eq!(c.mounts[0].max_listeners_per_ip, Some(4));
    }

    #[test]
    fn every_limit_error_names_its_field_and_reason() {
        let joined = errors(
            "[server]\nlisten = \"127.0.0.1:8000\"\nhead_timeout = \"0s\"\nmax_connections = 0\n\
             admin_listen = \"127.0.0.1:8000\"\n[[mount]]\npath = \"/a\"\nmax_listeners_per_ip = 0\n",
        );
        for needle in [
            "server.head_timeout = \"0s\": must be more than zero",
            "server.max_connections = 0: must be at least 1",
            "server.max_event_subscribers = 256: must not exceed server.max_connections (0)",
            "server.admin_listen = \"127.0.0.1:8000\": must differ from server.listen",
            "mount[0].max_listeners_per_ip = 0: must be at least 1",
        ] {
            assert!(joined.contains(needle), "missing {needle:?} in:\n{joined}");
        }
        let joined = errors(
            "[server]\nhead_timeout = \"2h\"\nmax_event_subscribers = 0\nadmin_listen = \"admin\"\n\
             [[mount]]\npath = \"/a\"\n",
        );
        for needle in [
            "server.head_timeout = \"2h\": must be more than zero and at most 60s",
            "server.max_event_subscribers = 0: must be at least 1",
            "server.admin_listen = \"admin\": invalid socket address syntax",
        ] {
            assert!(joined.contains(needle), "missing {needle:?} in:\n{joined}");
        }
    }
}
