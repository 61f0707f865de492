//! Title updates from the DJ on air, with their own source credentials, as Icecast and
//! Shoutcast take them: `/admin/metadata?mode=updinfo` with HTTP Basic or `pass=` (and `user=`),
//! and Shoutcast's `/admin.cgi?pass=…&mode=updinfo`. A title goes on air with the audio the DJ
//! is sending now, that is after the audio already buffered, not ahead of it.

use std::collections::HashMap;
use std::net::SocketAddr;

use http::{Request, StatusCode, header};

use super::admin::{Answer, Reply, title_of};
use crate::live::handshake::{self, Credentials};
use crate::live::session::{LiveDesk, OwnerRefusal};
use crate::station::Station;

/// `/admin/metadata` from a source client: `Some` when a show is connected and the request
/// carries source credentials (Basic as a user other than the admin, or `pass=`), which it
/// then answers; `None` leaves it to the admin interface.
pub fn admin_metadata<B>(
    req: &Request<B>,
    station: &Station,
    live: &LiveDesk,
    params: &HashMap<String, String>,
    peer: SocketAddr,
    reply: Reply,
) -> Option<Answer> {
    let basic = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(handshake::basic_credentials)
        .filter(|c| c.user != station.config.server.admin_user);
    let from_query = params.get("pass").map(|pass| Credentials {
        user: params
            .get("user")
            .cloned()
            .unwrap_or_else(|| crate::live::auth::SOURCE_USER.into()),
        password: pass.as_str().into(),
    });
    let credentials = basic.or(from_query)?;
    // A connected show, decoding yet or not (libshout names its first song at once).
    live.has_source().then_some(())?;
    Some(update(
        station,
        live,
        &[credentials],
        params,
        peer,
        reply,
        "admin",
    ))
}

/// Shoutcast's `/admin.cgi?pass=…&mode=updinfo&song=…`: the password as on the ICY port.
pub fn admin_cgi(
    station: &Station,
    live: &LiveDesk,
    params: &HashMap<String, String>,
    peer: SocketAddr,
    reply: Reply,
) -> Answer {
    let candidates = params
        .get("pass")
        .and_then(|p| handshake::icy_login(p))
        .map(|login| login.candidates)
        .unwrap_or_default();
    update(station, live, &candidates, params, peer, reply, "admincgi")
}

fn update(
    station: &Station,
    live: &LiveDesk,
    candidates: &[Credentials],
    params: &HashMap<String, String>,
    peer: SocketAddr,
    reply: Reply,
    via: &str,
) -> Answer {
    if params.get("mode").map(String::as_str) != Some("updinfo") {
        return reply
            .result(StatusCode::BAD_REQUEST, "mode=updinfo required", 0)
            .into();
    }
    let id = match live.show_owner(peer, candidates) {
        Ok(id) => id,
        Err(OwnerRefusal::NoShow) => {
            return reply
                .result(StatusCode::BAD_REQUEST, "Source does not exist", 0)
                .into();
        }
        Err(OwnerRefusal::Unauthorized { delay }) => {
            return Answer {
                response: reply.result(StatusCode::UNAUTHORIZED, "Authentication failed", 0),
                delay,
            };
        }
        Err(OwnerRefusal::Waiting) => {
            return reply
                .result(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many failed logins, retry later",
                    0,
                )
                .into();
        }
    };
    let title = match title_of(params) {
        Ok(title) => title,
        Err(why) => return reply.result(StatusCode::BAD_REQUEST, why, 0).into(),
    };
    tracing::info!(title = ?title, via, "live title from the DJ");
    live.push_title(id, &title);
    station
        .metrics
        .live_metadata_updates
        .with_label_values(&[via])
        .inc();
    reply
        .result(StatusCode::OK, "Metadata update successful", 1)
        .into()
}
