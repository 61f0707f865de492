//! The `[live]` section: where DJs' source clients connect, who may, and how the programme hands
//! over to them and back.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::units::parse_duration;

/// `[live]`
#[derive(Debug, Clone, PartialEq)]
pub struct Live {
    /// The path DJs send to; a source on any listener mount is taken as the same thing.
    pub mount: String,
    /// Shoutcast v1 sources (`[live] icy_port`, default the listen port + 1); `None` = off.
    pub icy_listen: Option<SocketAddr>,
    /// Named DJs, one `user:password` a line (a mounted Kubernetes Secret), re-read on change.
    pub accounts_file: Option<PathBuf>,
    /// Decoded live audio buffered before the switch.
    pub preroll: Duration,
    /// How long the AutoDJ fades out under the live audio.
    pub fade: Duration,
    /// Silence played while a live source stalls, before the AutoDJ comes back.
    pub underrun_grace: Duration,
    /// A source that sends nothing for this long is disconnected.
    pub source_timeout: Duration,
    /// What the AutoDJ plays when the show ends.
    pub after: After,
    /// Each show's bytes, as sent, are kept under `recordings/` in the library's storage.
    pub record: bool,
}

/// What follows a live show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// A fresh track, faded in: an interrupted song never comes back as a fragment.
    Next,
    /// The interrupted track, from where it stopped.
    Resume,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLive {
    mount: String,
    icy_port: Option<u16>,
    accounts_file: Option<String>,
    preroll: String,
    fade: String,
    underrun_grace: String,
    source_timeout: String,
    after: String,
    record: bool,
}

impl Default for RawLive {
    fn default() -> Self {
        RawLive {
            mount: "/live".into(),
            icy_port: None,
            accounts_file: None,
            preroll: "1s".into(),
            fade: "1.5s".into(),
            underrun_grace: "3s".into(),
            source_timeout: "10s".into(),
            after: "next".into(),
            record: false,
        }
    }
}

/// A duration field checked against its range; the default stands in for a bad one, so every
/// other field is still checked.
fn bounded(
    errors: &mut Vec<String>,
    name: &str,
    text: &str,
    range: (Duration, Duration),
    default: Duration,
) -> Duration {
    match parse_duration(text) {
        Ok(d) if d >= range.0 && d <= range.1 => d,
        Ok(_) => {
            errors.push(format!(
                "live.{name} = {text:?}: expected {:?} to {:?}",
                range.0, range.1
            ));
            default
        }
        Err(e) => {
            errors.push(format!("live.{name} = {text:?}: {e}"));
            default
        }
    }
}

impl RawLive {
    pub(super) fn has_accounts_file(&self) -> bool {
        self.accounts_file.as_deref().is_some_and(|f| !f.is_empty())
    }

    /// `listen` is the main port's address (`None` when it did not parse: reported already),
    /// `admin_listen` the admin port's; `enabled` says whether anyone could log in (a source
    /// password or an accounts file), without which no ICY port is opened.
    pub(super) fn validate(
        self,
        listen: Option<SocketAddr>,
        admin_listen: Option<SocketAddr>,
        enabled: bool,
        errors: &mut Vec<String>,
    ) -> Live {
        let secs = Duration::from_secs_f64;
        if !self.mount.starts_with('/')
            || self.mount.len() < 2
            || self.mount.contains(['?', '#', ' '])
            || self.mount.chars().any(char::is_control)
        {
            errors.push(format!(
                "live.mount = {:?}: expected a path such as \"/live\"",
                self.mount
            ));
        }
        let icy_listen = match (self.icy_port, listen) {
            (Some(0), _) | (_, None) => None,
            (Some(port), Some(addr)) => Some(SocketAddr::new(addr.ip(), port)),
            (None, Some(addr)) => match addr.port() {
                // Port 0 (tests, "any free port") has no "next" port: the ICY port is off.
                0 => None,
                p => match p.checked_add(1) {
                    Some(next) => Some(SocketAddr::new(addr.ip(), next)),
                    None => {
                        errors.push(
                            "live.icy_port: the listen port is 65535, so set one, or 0 for none"
                                .into(),
                        );
                        None
                    }
                },
            },
        };
        let icy_listen = icy_listen.filter(|_| enabled || self.icy_port.is_some());
        if let Some(icy) = icy_listen {
            if listen.is_some_and(|l| l.port() == icy.port()) {
                errors.push(format!(
                    "live.icy_port = {}: the same port as server.listen",
                    icy.port()
                ));
            }
            if admin_listen.is_some_and(|a| a.port() == icy.port()) {
                errors.push(format!(
                    "live.icy_port{}: port {} is server.admin_listen's; set another, or 0 to \
                     accept no Shoutcast v1 sources",
                    if self.icy_port.is_none() {
                        " (default: the listen port + 1)"
                    } else {
                        ""
                    },
                    icy.port()
                ));
            }
        }
        let accounts_file = match self.accounts_file.as_deref() {
            Some("") => {
                errors.push("live.accounts_file: give a file path, or leave it out".into());
                None
            }
            other => other.map(PathBuf::from),
        };
        let after = match self.after.as_str() {
            "next" => After::Next,
            "resume" => After::Resume,
            other => {
                errors.push(format!(
                    "live.after = {other:?}: expected \"next\" or \"resume\""
                ));
                After::Next
            }
        };
        Live {
            preroll: bounded(
                errors,
                "preroll",
                &self.preroll,
                (secs(0.3), secs(5.0)),
                secs(1.0),
            ),
            fade: bounded(
                errors,
                "fade",
                &self.fade,
                (secs(0.0), secs(10.0)),
                secs(1.5),
            ),
            underrun_grace: bounded(
                errors,
                "underrun_grace",
                &self.underrun_grace,
                (secs(0.0), secs(60.0)),
                secs(3.0),
            ),
            source_timeout: bounded(
                errors,
                "source_timeout",
                &self.source_timeout,
                (secs(1.0), secs(300.0)),
                secs(10.0),
            ),
            mount: self.mount,
            icy_listen,
            accounts_file,
            after,
            record: self.record,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ParseError, Secret, Secrets, parse};

    const MOUNT: &str = "[[mount]]\npath = \"/a.mp3\"\n";

    fn with_password() -> Secrets {
        Secrets {
            source_password: Some(Secret::from("hackme".to_string())),
            ..Secrets::default()
        }
    }

    #[test]
    fn defaults_put_the_icy_port_next_to_the_listen_port_only_when_sources_can_log_in() {
        let text = format!("[server]\nlisten = \"0.0.0.0:8000\"\n{MOUNT}");
        let live = parse(&text, with_password()).unwrap().live;
        assert_eq!(live.mount, "/live");
        assert_eq!(live.icy_listen, Some("0.0.0.0:8001".parse().unwrap()));
        assert_eq!(live.preroll, Duration::from_secs(1));
        assert_eq!(live.fade, Duration::from_millis(1500));
        assert_eq!(live.underrun_grace, Duration::from_secs(3));
        assert_eq!(live.source_timeout, Duration::from_secs(10));
        assert_eq!(live.after, After::Next);
        let closed = parse(&text, Secrets::default()).unwrap().live;
        assert_eq!(closed.icy_listen, None, "nobody can log in: no port opened");
        let off = format!("[server]\nlisten = \"0.0.0.0:8000\"\n[live]\nicy_port = 0\n{MOUNT}");
        assert_eq!(parse(&off, with_password()).unwrap().live.icy_listen, None);
    }

    #[test]
    fn every_bad_field_is_reported_with_its_name() {
        let text = format!(
            "[server]\nlisten = \"0.0.0.0:8000\"\nadmin_listen = \"127.0.0.1:8001\"\n\
             [live]\nmount = \"live\"\npreroll = \"10s\"\nfade = \"soon\"\nafter = \"later\"\n\
             source_timeout = \"0s\"\naccounts_file = \"\"\n{MOUNT}"
        );
        let Err(ParseError::Invalid(errors)) = parse(&text, with_password()) else {
            panic!("expected errors");
        };
        for field in [
            "live.mount",
            "live.preroll",
            "live.fade",
            "live.after",
            "live.source_timeout",
            "live.accounts_file",
            "live.icy_port (default: the listen port + 1)",
        ] {
            assert!(
                errors.iter().any(|e| e.starts_with(field)),
                "{field} missing from {errors:#?}"
            );
        }
    }
}
