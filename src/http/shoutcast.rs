//! The Shoutcast-dialect status that DJ tools poll every couple of seconds during a show (butt
//! in Shoutcast mode, SAM, the old panels): `/7.html` (and `/7.xsl`, its Icecast-side twin) and
//! Shoutcast 2's `/stats` (XML, or JSON with `json=1`). They are reads of what the station keeps
//! anyway: no listener slot, no stream, one pass over the mount's listener list at most.
//!
//! `sid=N` picks the N-th mount (1 is the first, as a Shoutcast server's first stream), `mount=`
//! picks one by path; without either, the first mount. The figures are the mount's, with the
//! live DJ's name, genre and URL while a show is on (as `/status-json.xsl` shows them).

use std::collections::HashMap;

use serde_json::{Value, json};

use super::escape;
use super::status::{self, Detail, SERVER_ID};
use crate::station::{Mount, Station};

/// Which document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// `/7.html`, `/7.xsl`: Shoutcast 1's one line of comma-separated figures.
    Seven,
    /// `/stats`: Shoutcast 2's stream statistics.
    Stats,
}

/// The answer's content type and body, or `None` when the query names no mount of the station.
pub fn answer(station: &Station, page: Page, query: &str) -> Option<(&'static str, String)> {
    let args = super::admin::query(query);
    let mount = pick(station, &args)?;
    let figures = Figures::of(station, mount);
    Some(match page {
        Page::Seven => ("text/html; charset=utf-8", figures.seven()),
        Page::Stats if args.get("json").is_some_and(|v| v == "1") => (
            "application/json; charset=utf-8",
            figures.json().to_string(),
        ),
        Page::Stats => ("text/xml; charset=utf-8", figures.xml()),
    })
}

fn pick<'a>(station: &'a Station, args: &HashMap<String, String>) -> Option<&'a Mount> {
    if let Some(path) = args.get("mount") {
        return station.mounts.find(path).map(|m| &**m);
    }
    let sid = match args.get("sid") {
        Some(sid) => sid.trim().parse::<usize>().ok().filter(|&n| n >= 1)?,
        None => 1,
    };
    station.mounts.get(sid - 1).map(|m| &**m)
}

/// One mount's figures, in Shoutcast's names.
struct Figures {
    current: u64,
    peak: u64,
    max: u64,
    unique: u64,
    average_time: u64,
    hits: u64,
    status: u8,
    uptime: u64,
    bitrate: u64,
    sample_rate: u64,
    path: String,
    content: String,
    title: String,
    server_title: String,
    genre: String,
    url: String,
}

impl Figures {
    fn of(station: &Station, mount: &Mount) -> Figures {
        // The public status's fields, so a show's `ice-*` name, genre and URL appear here too.
        let fields = status::source_fields(station, mount, "", Detail::Public);
        let field = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| *k == name)
                .map_or(Value::Null, |(_, v)| v.clone())
        };
        let text = |name: &str| field(name).as_str().unwrap_or_default().to_owned();
        let number = |name: &str| field(name).as_u64().unwrap_or_default();
        let audience = mount.audience();
        Figures {
            current: mount.listeners() as u64,
            peak: mount.peak() as u64,
            max: mount.config.max_listeners as u64,
            unique: audience.unique as u64,
            average_time: audience.average_seconds,
            hits: mount.metrics.connections.get(),
            status: u8::from(station.readiness().is_ok()),
            uptime: mount.started.elapsed().map_or(0, |d| d.as_secs()),
            bitrate: number("bitrate"),
            sample_rate: number("samplerate"),
            path: mount.config.path.clone(),
            content: mount.content_type.to_owned(),
            title: text("title"),
            server_title: text("server_name"),
            genre: text("genre"),
            url: text("server_url"),
        }
    }

    /// `CURRENTLISTENERS,STREAMSTATUS,PEAKLISTENERS,MAXLISTENERS,UNIQUELISTENERS,BITRATE,
    /// SONGTITLE`: the title last, so its commas do not shift the figures.
    fn seven(&self) -> String {
        format!(
            "<html><body>{},{},{},{},{},{},{}</body></html>",
            self.current,
            self.status,
            self.peak,
            self.max,
            self.unique,
            self.bitrate,
            escape::xml(&self.title)
        )
    }

    fn xml(&self) -> String {
        let e = |s: &str| escape::xml(s).into_owned();
        format!(
            concat!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\" ?>\n",
                "<SHOUTCASTSERVER>",
                "<CURRENTLISTENERS>{}</CURRENTLISTENERS>",
                "<PEAKLISTENERS>{}</PEAKLISTENERS>",
                "<MAXLISTENERS>{}</MAXLISTENERS>",
                "<UNIQUELISTENERS>{}</UNIQUELISTENERS>",
                "<AVERAGETIME>{}</AVERAGETIME>",
                "<SERVERGENRE>{}</SERVERGENRE>",
                "<SERVERURL>{}</SERVERURL>",
                "<SERVERTITLE>{}</SERVERTITLE>",
                "<SONGTITLE>{}</SONGTITLE>",
                "<STREAMHITS>{}</STREAMHITS>",
                "<STREAMSTATUS>{}</STREAMSTATUS>",
                "<STREAMPATH>{}</STREAMPATH>",
                "<STREAMUPTIME>{}</STREAMUPTIME>",
                "<BITRATE>{}</BITRATE>",
                "<SAMPLERATE>{}</SAMPLERATE>",
                "<CONTENT>{}</CONTENT>",
                "<VERSION>{}</VERSION>",
                "</SHOUTCASTSERVER>\n"
            ),
            self.current,
            self.peak,
            self.max,
            self.unique,
            self.average_time,
            e(&self.genre),
            e(&self.url),
            e(&self.server_title),
            e(&self.title),
            self.hits,
            self.status,
            e(&self.path),
            self.uptime,
            self.bitrate,
            self.sample_rate,
            e(&self.content),
            e(SERVER_ID),
        )
    }

    fn json(&self) -> Value {
        json!({
            "currentlisteners": self.current,
            "peaklisteners": self.peak,
            "maxlisteners": self.max,
            "uniquelisteners": self.unique,
            "averagetime": self.average_time,
            "servergenre": self.genre,
            "serverurl": self.url,
            "servertitle": self.server_title,
            "songtitle": self.title,
            "streamhits": self.hits,
            "streamstatus": self.status,
            "streampath": self.path,
            "streamuptime": self.uptime,
            "bitrate": self.bitrate,
            "samplerate": self.sample_rate,
            "content": self.content,
            "version": SERVER_ID,
        })
    }
}
