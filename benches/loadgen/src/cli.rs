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
}

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
    };
    let mut args = std::env::args().skip(1);
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
    Ok(c)
}
