//! The command line: the `--help` text, [`Config`], and parsing and validating the arguments.

use std::net::SocketAddr;
use std::time::Duration;

const USAGE: &str = "\
loadgen: open N listeners on an Icecast-style stream and measure what they get

usage: loadgen [options] [URL]

  URL                    stream to load (default http://127.0.0.1:8000/radio.mp3); the host must be
                         an IPv4 address
  -n, --listeners N      connections to open (default 1000)
  --rate R               connections started per second (default 500)
  --storm                start all N connections at the same instant instead
  --seconds S            measurement window once all are connected (default 30)
  --timeout S            per connection: connect + response head + first byte (default 15)
  --icy                  send `Icy-MetaData: 1`
  --slow-fraction F      this fraction of listeners read slowly (default 0)
  --slow-bps B           slow listeners read at most B bytes/s (default 4000)
  --expect-kbps K        stream bitrate, to count listeners below 99 % of it (default 128)
  --burst-bytes B        also time how long the first B body bytes take (default 31000: just
                         under a 2 s burst at 128 kbps, which ends on a frame boundary)
  --lowat B              SO_RCVLOWAT once streaming: wake per B bytes (default 16384; 0 = off)
  --threads T            tokio worker threads (default: number of CPUs, at most 2)
  --pid PID              the server's pid: report its CPU and RSS cost per listener
  --no-spread            do not bind to 127.0.0.2..254 (use for a non-loopback server)
  --label TEXT           a name for this run, echoed in the report
  --json                 print one JSON line on stdout (the human table then goes to stderr)
  -h, --help             this text

soak (--soak MINUTES, needs --pid): hold the N listeners for MINUTES instead of a window
  --warmup M             minutes before the server's RSS, descriptors and threads are judged
                         (default 5)
  --reconnect F          fraction of the listeners closed and reopened each minute, spread over
                         the minute (default 0.1)
  --poll S               GET /status-json.xsl and /admin/stats every S seconds (default 2)
  --title-every S        set a new title through /admin/metadata on the URL's mount every S
                         seconds (default 10)
  --admin-user U         admin user for Basic auth (default admin); the password comes from the
                         environment, ONAIR_ADMIN_PASSWORD (without it the admin calls are skipped)

  Every minute it samples the server's RSS, open descriptors, threads and CPU, and each
  listener's bitrate over the minute, and prints a row (on stderr as it goes, and the whole
  table on stdout at the end) and a verdict. It passes when RSS grew less than 2 MB from the end
  of the warm-up to the end; the descriptors less the listeners connected stayed within 8 of
  each other after the warm-up, and the threads at most 2 above the warm-up's highest count;
  every listener judged in every minute (one connection through it, connected 5 s before it
  began) got at least 99 % of --expect-kbps; no listener was dropped and every reconnect was
  served; and every poll and title change was answered 200. The exit status is 1 when it does
  not pass.

hls (--hls, URL = a media playlist such as http://127.0.0.1:8000/hls/mobile.aac/live.m3u8):
  N Low-Latency HLS clients, each on one keep-alive connection: it tunes in from the plain
  playlist's preload hint, then asks for every part with a blocking playlist request
  (_HLS_msn, _HLS_part, _HLS_skip=YES, gzip) followed by the part itself. The report gives the
  delay of each answer after the first answer for the same part (the part's publication), how
  long the whole audience took to hold each part, errors, and the server's CPU and RSS per
  client. --rate and --storm pace the tune-ins; --seconds is the window. The exit status is 1
  when a client failed or broke or any answer was not 200.

storm (--storm): the report adds a verdict: every connection served within 5 s or answered 503
  with a Retry-After, none dropped after admission, and the server alive afterwards (its pid,
  when given, and an answer to GET /healthz). The exit status is 1 when it does not pass.
";

/// The run's settings, validated. Every field is one option of `USAGE`.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where to connect: the URL's host, which must be an IPv4 address.
    pub addr: SocketAddr,
    /// The URL's host as written, for the `Host` header and the report.
    pub host: String,
    pub path: String,
    pub listeners: usize,
    /// Connections started per second (ignored with `storm`).
    pub rate: f64,
    pub storm: bool,
    /// The measurement window, seconds.
    pub seconds: f64,
    /// Per connection: connect + response head + first body byte.
    pub timeout: Duration,
    pub icy: bool,
    pub slow_fraction: f64,
    pub slow_bps: u64,
    pub expect_kbps: f64,
    pub burst_bytes: u64,
    /// `SO_RCVLOWAT` once streaming, bytes (0 = off).
    pub lowat: usize,
    pub threads: usize,
    pub pid: Option<u32>,
    /// Bind to 127.0.0.2..=254; forced off for a non-loopback server.
    pub spread: bool,
    pub label: String,
    pub json: bool,
    /// Low-Latency HLS clients on a media playlist instead of stream listeners.
    pub hls: bool,
    /// Soak mode: how long to hold the listeners, minutes.
    pub soak: Option<u32>,
    /// Soak: minutes before the server's figures are judged.
    pub warmup: u32,
    /// Soak: fraction of the listeners reconnected each minute.
    pub reconnect: f64,
    /// Soak: interval of the status and admin polls.
    pub poll: Duration,
    /// Soak: interval of the title changes.
    pub title_every: Duration,
    /// Soak: `user:password` for the admin calls, when the password is in the environment.
    pub admin: Option<Secret>,
}

/// A credential that `Debug` does not print.
#[derive(Clone)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The environment variable that holds the admin password (the one onair reads).
const ADMIN_PASSWORD_ENV: &str = "ONAIR_ADMIN_PASSWORD";

/// Reads the command line; prints `USAGE` and exits on `--help`.
pub fn parse_args() -> Result<Config, String> {
    let mut c = Config {
        addr: "127.0.0.1:8000".parse().unwrap(),
        host: "127.0.0.1:8000".into(),
        path: "/radio.mp3".into(),
        listeners: 1000,
        rate: 500.0,
        storm: false,
        seconds: 30.0,
        timeout: Duration::from_secs(15),
        icy: false,
        slow_fraction: 0.0,
        slow_bps: 4000,
        expect_kbps: 128.0,
        burst_bytes: 31_000,
        lowat: 16 * 1024,
        threads: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(2),
        pid: None,
        spread: true,
        label: String::new(),
        json: false,
        hls: false,
        soak: None,
        warmup: 5,
        reconnect: 0.1,
        poll: Duration::from_secs(2),
        title_every: Duration::from_secs(10),
        admin: None,
    };
    let mut admin_user = String::from("admin");
    let mut args = std::env::args().skip(1);
    fn secs(name: &str, v: f64) -> Result<Duration, String> {
        if v > 0.0 && v <= 3600.0 {
            Ok(Duration::from_secs_f64(v))
        } else {
            Err(format!("{name} must be in (0, 3600] seconds"))
        }
    }
    fn val<T: std::str::FromStr>(name: &str, v: Option<String>) -> Result<T, String> {
        let v = v.ok_or_else(|| format!("{name} needs a value"))?;
        v.parse().map_err(|_| format!("{name}: cannot parse {v:?}"))
    }
    while let Some(a) = args.next() {
        match a.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            "-n" | "--listeners" => c.listeners = val(&a, args.next())?,
            "--rate" => c.rate = val(&a, args.next())?,
            "--storm" => c.storm = true,
            "--seconds" => c.seconds = val(&a, args.next())?,
            "--timeout" => c.timeout = Duration::from_secs_f64(val(&a, args.next())?),
            "--icy" => c.icy = true,
            "--slow-fraction" => c.slow_fraction = val(&a, args.next())?,
            "--slow-bps" => c.slow_bps = val(&a, args.next())?,
            "--expect-kbps" => c.expect_kbps = val(&a, args.next())?,
            "--burst-bytes" => c.burst_bytes = val(&a, args.next())?,
            "--lowat" => c.lowat = val(&a, args.next())?,
            "--threads" => c.threads = val(&a, args.next())?,
            "--pid" => c.pid = Some(val(&a, args.next())?),
            "--no-spread" => c.spread = false,
            "--label" => c.label = val(&a, args.next())?,
            "--json" => c.json = true,
            "--hls" => c.hls = true,
            "--soak" => c.soak = Some(val(&a, args.next())?),
            "--warmup" => c.warmup = val(&a, args.next())?,
            "--reconnect" => c.reconnect = val(&a, args.next())?,
            "--poll" => c.poll = secs(&a, val(&a, args.next())?)?,
            "--title-every" => c.title_every = secs(&a, val(&a, args.next())?)?,
            "--admin-user" => admin_user = val(&a, args.next())?,
            s if s.starts_with("http://") => {
                let rest = &s["http://".len()..];
                let (host, path) = match rest.find('/') {
                    Some(i) => (&rest[..i], &rest[i..]),
                    None => (rest, "/"),
                };
                let with_port = if host.contains(':') {
                    host.to_string()
                } else {
                    format!("{host}:80")
                };
                c.addr = with_port
                    .parse()
                    .map_err(|_| format!("{s}: the host must be an IPv4 address (and port)"))?;
                c.host = host.to_string();
                c.path = path.to_string();
            }
            s => return Err(format!("unknown argument {s:?} (see --help)")),
        }
    }
    if c.listeners == 0 || c.listeners > 1_000_000 {
        return Err("--listeners must be in 1..=1000000".into());
    }
    if c.rate.is_nan() || c.rate <= 0.0 {
        return Err("--rate must be positive".into());
    }
    if !(c.seconds > 0.0 && c.seconds <= 3600.0) {
        return Err("--seconds must be in (0, 3600]".into());
    }
    if !(0.0..=1.0).contains(&c.slow_fraction) {
        return Err("--slow-fraction must be in [0, 1]".into());
    }
    if c.slow_bps == 0 || c.threads == 0 {
        return Err("--slow-bps and --threads must be positive".into());
    }
    if c.timeout.is_zero() || c.timeout > Duration::from_secs(600) {
        return Err("--timeout must be in (0, 600]".into());
    }
    if c.spread && !c.addr.ip().is_loopback() {
        c.spread = false;
    }
    if c.hls {
        crate::hls::split_playlist_path(&c.path)?;
        if c.soak.is_some() || c.slow_fraction > 0.0 || c.icy {
            return Err("--hls does not combine with --soak, --slow-fraction or --icy".into());
        }
    }
    if let Some(minutes) = c.soak {
        if minutes == 0 || minutes > 24 * 60 {
            return Err("--soak must be in 1..=1440 minutes".into());
        }
        if c.warmup >= minutes {
            return Err("--warmup must be shorter than --soak".into());
        }
        if c.pid.is_none() {
            return Err(
                "--soak needs --pid: it judges the server's RSS, descriptors and threads".into(),
            );
        }
        if c.storm || c.slow_fraction > 0.0 {
            return Err("--soak does not combine with --storm or --slow-fraction".into());
        }
        if !(0.0..=1.0).contains(&c.reconnect) {
            return Err("--reconnect must be in [0, 1]".into());
        }
        if let Ok(password) = std::env::var(ADMIN_PASSWORD_ENV)
            && !password.is_empty()
        {
            c.admin = Some(Secret(format!("{admin_user}:{password}")));
        }
    }
    Ok(c)
}
