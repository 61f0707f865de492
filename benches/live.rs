//! Live takeover and delay: how long a DJ waits from connecting to being heard, and how far
//! behind the DJ a listener hears them. Run: `cargo bench --bench live` (about 2 minutes; the
//! Liquidsoap rows need Debian's `liquidsoap`, and are left out without it).
//!
//! A source made here sends MP3 at real time over `SOURCE` (a 1 kHz bed with 3 kHz beeps), as a
//! DJ's tool does; a listener reads the radio's stream from the same machine. Both sides note
//! when each MP3 frame left or arrived; decoding both streams finds the first bed audio and
//! each beep, and so the frame that carries it. The figures:
//! - **heard after connect**: the source's TCP connect to the first bed audio at the listener.
//! - **beep delay**: a beep's frame leaving the source to the frame carrying it arriving at
//!   the listener (the radio's buffers, codec delays and its fan-out; loopback adds nothing).
//! - onair's own `onair_live_takeover_seconds` (connect to on air, in the pipeline).
//!
//! The same source and listener measure onair at pre-roll 0.3 s and 1 s, with the listener
//! writes batched as by default (`write_interval` 750 ms) and at 200 ms, and Liquidsoap's
//! `input.harbor` (default `buffer` 12 s, and 1.5 s) in a `fallback` to an `output.harbor`.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use onair::config::{Audio, Secrets};
use onair::encode::{Encoder, Mp3Encoder};
use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

const RATE: u32 = 44_100;
const FRAME: usize = 1152;
const PASSWORD: &str = "hackme";
/// Bytes of one MP3 frame at 128 kbps and 44.1 kHz, on average.
const FRAME_BYTES: f64 = 144.0 * 128_000.0 / RATE as f64;
const BED_HZ: f64 = 1000.0;
/// The beeps: when each starts, in seconds of the source's stream (the AutoDJ is long faded
/// out by then), and its pitch, a different one each, so that a beep heard late is never taken
/// for the next.
const BEEPS: [(f64, f64); 4] = [(4.0, 2000.0), (5.5, 2600.0), (7.0, 3200.0), (8.5, 3800.0)];
const SHOW_SECONDS: f64 = 10.0;
/// Shows per configuration.
const SHOWS: usize = 3;
/// Liquidsoap's harbor needs `buffer` seconds queued: a show must outlast it to be heard.
const LIQUIDSOAP_SHOW_EXTRA: f64 = 14.0;

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_tone_wav(&dir.path().join("autodj.wav"), 440.0, 120.0);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut rows = Vec::new();
    for write_interval in ["750ms", "200ms"] {
        for preroll in ["0.3s", "1s"] {
            rows.push(runtime.block_on(onair_row(dir.path(), preroll, write_interval)));
        }
    }
    if which("liquidsoap") {
        for buffer in [12.0, 1.5] {
            rows.push(liquidsoap_row(dir.path(), buffer));
        }
    } else {
        eprintln!("liquidsoap is not installed: its rows are left out");
    }
    println!();
    println!(
        "| server | heard after connect (s) | beep delay min / median / max (s) | takeover metric (s) |"
    );
    println!("|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
}

/// What one configuration measured.
struct Row {
    name: String,
    heard: Vec<f64>,
    delays: Vec<f64>,
    takeover: Option<f64>,
}

impl std::fmt::Display for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let heard = self
            .heard
            .iter()
            .map(|h| format!("{h:.2}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut d = self.delays.clone();
        d.sort_by(f64::total_cmp);
        let delays = match d.len() {
            0 => "none heard".to_owned(),
            n => format!("{:.2} / {:.2} / {:.2}", d[0], d[n / 2], d[n - 1]),
        };
        let takeover = self
            .takeover
            .map_or("—".to_owned(), |t| format!("{t:.2} (mean)"));
        write!(f, "| {} | {heard} | {delays} | {takeover} |", self.name)
    }
}

async fn onair_row(library: &Path, preroll: &str, write_interval: &str) -> Row {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[library]\nkind = \"local\"\npath = \"{}\"\n\
         [[mount]]\npath = \"/radio.mp3\"\nbitrate = 128\nwrite_interval = \"{write_interval}\"\n[live]\npreroll = \"{preroll}\"\nicy_port = 0\n",
        library.display()
    );
    let secrets = Secrets {
        admin_password: None,
        source_password: Some(PASSWORD.into()),
    };
    let config = onair::config::parse(&text, secrets).expect("bench config");
    let listener = onair::http::bind("127.0.0.1:0".parse().unwrap()).expect("bind");
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(onair::run_with(
        config,
        listener,
        async {
            let _ = stopped.await;
        },
        onair::Options::default(),
    ));
    let name = format!("onair, pre-roll {preroll}, write_interval {write_interval}");
    let row = tokio::task::spawn_blocking(move || {
        wait_for_stream(addr, "/radio.mp3");
        let mut row = measure(&name, addr, "/radio.mp3", addr, 0.0);
        let metrics = http_get(addr, "/metrics");
        let sum = metric(&metrics, "onair_live_takeover_seconds_sum");
        let count = metric(&metrics, "onair_live_takeover_seconds_count");
        row.takeover = (count > 0.0).then(|| sum / count);
        row
    })
    .await
    .expect("measure");
    let _ = stop.send(());
    let _ = server.await;
    row
}

fn liquidsoap_row(library: &Path, buffer: f64) -> Row {
    let (harbor, out) = (free_port(), free_port());
    let script = library.join("bench.liq");
    std::fs::write(
        &script,
        format!(
            r#"settings.init.allow_root.set(true)
settings.log.stdout.set(false)
settings.log.file.set(false)
live = input.harbor("live", port={harbor}, password="{PASSWORD}", buffer={buffer:.1}, max={max:.1})
autodj = single("{wav}")
radio = fallback(track_sensitive=false, [live, autodj])
output.harbor(%mp3(bitrate=128, samplerate=44100, stereo=true), port={out}, mount="radio", radio)
"#,
            max = (buffer + 8.0).max(20.0),
            wav = library.join("autodj.wav").display()
        ),
    )
    .expect("script");
    let mut child = std::process::Command::new("liquidsoap")
        .arg(&script)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("liquidsoap");
    let listen: SocketAddr = format!("127.0.0.1:{out}").parse().unwrap();
    let source: SocketAddr = format!("127.0.0.1:{harbor}").parse().unwrap();
    wait_for_stream(listen, "/radio");
    let row = measure(
        &format!("Liquidsoap 2.1 harbor, buffer {buffer} s"),
        listen,
        "/radio",
        source,
        if buffer > 5.0 {
            LIQUIDSOAP_SHOW_EXTRA
        } else {
            0.0
        },
    );
    let _ = child.kill();
    let _ = child.wait();
    row
}

/// Runs [`SHOWS`] shows from `source` while a listener on `listen` hears the result.
fn measure(name: &str, listen: SocketAddr, path: &str, source: SocketAddr, extra: f64) -> Row {
    let show = Show::make(extra);
    let capture = Capture::start(listen, path);
    std::thread::sleep(Duration::from_secs(2));
    let mut sent = Vec::new();
    for _ in 0..SHOWS {
        sent.push(show.send(source));
        // The AutoDJ back between shows, as it would be.
        std::thread::sleep(Duration::from_secs(4));
    }
    let heard = capture.stop();
    let (bed, beeps) = find_sounds(&heard.bytes);
    let mut row = Row {
        name: name.to_owned(),
        heard: Vec::new(),
        delays: Vec::new(),
        takeover: None,
    };
    for sent in &sent {
        let Some(connected) = sent.connected else {
            continue;
        };
        let end = sent.frames.last().copied().unwrap_or(connected) + Duration::from_secs(3);
        // This show's bed: the first bed frame that arrived after its connect.
        if let Some(at) = bed
            .iter()
            .map(|&frame| heard.arrival(frame))
            .find(|&at| at > connected && at < end)
        {
            row.heard.push((at - connected).as_secs_f64());
        }
        for (&beep, heard_onsets) in show.beep_frames.iter().zip(&beeps) {
            let left = sent.frames[beep];
            if let Some(at) = heard_onsets
                .iter()
                .map(|&frame| heard.arrival(frame))
                .find(|&at| at > left && at < left + Duration::from_secs(20))
            {
                row.delays.push((at - left).as_secs_f64());
            }
        }
    }
    eprintln!("{row}");
    row
}

/// A DJ's show: MP3 frames, and which of them carry the start of a beep.
struct Show {
    frames: Vec<Bytes>,
    beep_frames: Vec<usize>,
}

/// When each frame of one show left.
struct Sent {
    connected: Option<Instant>,
    frames: Vec<Instant>,
}

impl Show {
    fn make(extra: f64) -> Show {
        let seconds = SHOW_SECONDS + extra;
        let n = (seconds * RATE as f64) as usize;
        let mut pcm = Vec::with_capacity(n * 2);
        for i in 0..n {
            let t = i as f64 / RATE as f64;
            let mut s = 0.1 * (std::f64::consts::TAU * BED_HZ * t).sin();
            for (at, hz) in BEEPS {
                if t >= at + extra && t < at + extra + 0.1 {
                    s += 0.3 * (std::f64::consts::TAU * hz * t).sin();
                }
            }
            pcm.extend([s as f32, s as f32]);
        }
        let audio = Audio {
            sample_rate: RATE,
            channels: 2,
        };
        let mut encoder = Mp3Encoder::new(audio, 128).expect("encoder");
        let mut frames = Vec::new();
        let title = onair::title::StreamTitle::new("beeps");
        encoder.encode(&pcm, &title, &mut frames).expect("encode");
        encoder.flush(&title, &mut frames).expect("flush");
        let bytes: Vec<u8> = frames.iter().flat_map(|f| f.data.iter().copied()).collect();
        let (_, beeps) = find_sounds(&bytes);
        let beep_frames = beeps
            .iter()
            .map(|onsets| match onsets[..] {
                [frame] => frame,
                _ => panic!("each beep is found once in the source: {beeps:?}"),
            })
            .collect();
        Show {
            frames: frames.into_iter().map(|f| f.data).collect(),
            beep_frames,
        }
    }

    /// Sends the show by `SOURCE`, each frame at its time, and notes when each left.
    fn send(&self, addr: SocketAddr) -> Sent {
        let mut sent = Sent {
            connected: None,
            frames: Vec::new(),
        };
        let Ok(mut stream) = TcpStream::connect(addr) else {
            return sent;
        };
        let connected = Instant::now();
        sent.connected = Some(connected);
        let _ = stream.set_nodelay(true);
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("source:{PASSWORD}"));
        let head = format!(
            "SOURCE /live HTTP/1.0\r\nAuthorization: Basic {auth}\r\nContent-Type: audio/mpeg\r\n\
             ice-name: bench\r\n\r\n"
        );
        if stream.write_all(head.as_bytes()).is_err() {
            return sent;
        }
        let mut answer = [0u8; 512];
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        match stream.read(&mut answer) {
            Ok(n) if answer[..n].windows(3).any(|w| w == b"200") => {}
            _ => return sent,
        }
        let frame_time = Duration::from_secs_f64(FRAME as f64 / RATE as f64);
        let start = Instant::now();
        for (i, frame) in self.frames.iter().enumerate() {
            let due = start + frame_time * i as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if stream.write_all(frame).is_err() {
                break;
            }
            sent.frames.push(Instant::now());
        }
        sent
    }
}

/// A listener that notes when its bytes arrived.
struct Capture {
    shared: Arc<Mutex<Heard>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

#[derive(Default)]
struct Heard {
    bytes: Vec<u8>,
    /// (total bytes so far, when they arrived), one per read.
    reads: Vec<(usize, Instant)>,
}

impl Heard {
    /// When MP3 frame `frame` of the stream had fully arrived.
    fn arrival(&self, frame: usize) -> Instant {
        let end = ((frame + 1) as f64 * FRAME_BYTES).ceil() as usize;
        let i = self.reads.partition_point(|&(total, _)| total < end);
        self.reads
            .get(i)
            .or(self.reads.last())
            .map(|&(_, at)| at)
            .expect("bytes arrived")
    }
}

impl Capture {
    fn start(addr: SocketAddr, path: &str) -> Capture {
        let mut stream = TcpStream::connect(addr).expect("listener connects");
        write!(stream, "GET {path} HTTP/1.0\r\nHost: bench\r\n\r\n").expect("request");
        // Past the head: the body starts at a frame boundary.
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).expect("head");
            head.push(byte[0]);
        }
        let shared = Arc::new(Mutex::new(Heard::default()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s, halt) = (Arc::clone(&shared), Arc::clone(&stop));
        let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 << 10];
            while !halt.load(std::sync::atomic::Ordering::Relaxed) {
                match stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        let at = Instant::now();
                        let mut heard = s.lock().unwrap();
                        heard.bytes.extend_from_slice(&buf[..n]);
                        let total = heard.bytes.len();
                        heard.reads.push((total, at));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(_) => break,
                }
            }
        });
        Capture {
            shared,
            stop,
            thread,
        }
    }

    fn stop(self) -> Heard {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.thread.join();
        std::mem::take(&mut *self.shared.lock().unwrap())
    }
}

/// Decodes an MP3 stream and finds, by MP3 frame index: every frame where the bed starts after
/// a second without it, and for each beep every frame where it starts.
fn find_sounds(mp3: &[u8]) -> (Vec<usize>, Vec<Vec<usize>>) {
    let (pcm, packet_frames) = decode_mono(mp3);
    let window = 882; // 20 ms
    let mut bed_on = Vec::new();
    let mut beep_on = vec![Vec::new(); BEEPS.len()];
    let mut bed_quiet = usize::MAX / 2;
    let mut beep_quiet = [usize::MAX / 2; BEEPS.len()];
    for (w, chunk) in pcm.chunks_exact(window).enumerate() {
        let sample = w * window;
        let frame = packet_frames.partition_point(|&start| start <= sample) - 1;
        if power_db(chunk, BED_HZ) > -40.0 {
            if bed_quiet >= 50 {
                bed_on.push(frame);
            }
            bed_quiet = 0;
        } else {
            bed_quiet += 1;
        }
        for (i, (_, hz)) in BEEPS.iter().enumerate() {
            if power_db(chunk, *hz) > -30.0 {
                if beep_quiet[i] >= 25 {
                    beep_on[i].push(frame);
                }
                beep_quiet[i] = 0;
            } else {
                beep_quiet[i] += 1;
            }
        }
    }
    (bed_on, beep_on)
}

/// Mono PCM, and the first sample of each decoded packet (one per MP3 frame).
fn decode_mono(mp3: &[u8]) -> (Vec<f32>, Vec<usize>) {
    let mss = MediaSourceStream::new(
        Box::new(std::io::Cursor::new(mp3.to_vec())),
        Default::default(),
    );
    let mut hint = Hint::new();
    hint.with_extension("mp3");
    let mut format = symphonia::default::get_probe()
        .probe(
            &hint,
            mss,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .expect("the stream probes as MP3");
    let track = format.default_track(TrackType::Audio).expect("audio track");
    let track_id = track.id;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .expect("audio params")
        .clone();
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .expect("decoder");
    let (mut pcm, mut starts) = (Vec::new(), Vec::new());
    let mut samples: Vec<f32> = Vec::new();
    loop {
        let packet = match format.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(symphonia::core::errors::Error::DecodeError(_)) => continue,
            Err(_) => break,
        };
        if packet.track_id != track_id {
            continue;
        }
        let Ok(buf) = decoder.decode(&packet) else {
            continue;
        };
        let channels = buf.spec().channels().count().max(1);
        samples.clear();
        buf.copy_to_vec_interleaved(&mut samples);
        starts.push(pcm.len());
        pcm.extend(
            samples
                .chunks_exact(channels)
                .map(|c| c.iter().sum::<f32>() / channels as f32),
        );
    }
    (pcm, starts)
}

/// Power of `hz` in `x` (Hann window, Goertzel), in dB of a full-scale sine.
fn power_db(x: &[f32], hz: f64) -> f64 {
    let n = x.len() as f64;
    let k = 2.0 * (std::f64::consts::TAU * hz / RATE as f64).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for (i, &v) in x.iter().enumerate() {
        let w = 0.5 - 0.5 * (std::f64::consts::TAU * i as f64 / n).cos();
        let s = f64::from(v) * w + k * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let power = s1 * s1 + s2 * s2 - k * s1 * s2;
    // A full-scale sine gives (n/4)^2 through a Hann window.
    10.0 * (power / (n / 4.0).powi(2)).max(1e-20).log10()
}

fn write_tone_wav(path: &Path, hz: f64, seconds: f64) {
    let n = (seconds * RATE as f64) as usize;
    let mut data = Vec::with_capacity(n * 4 + 44);
    let size = (n * 4) as u32;
    data.extend_from_slice(b"RIFF");
    data.extend_from_slice(&(36 + size).to_le_bytes());
    data.extend_from_slice(b"WAVEfmt ");
    data.extend_from_slice(&16u32.to_le_bytes());
    data.extend_from_slice(&1u16.to_le_bytes());
    data.extend_from_slice(&2u16.to_le_bytes());
    data.extend_from_slice(&RATE.to_le_bytes());
    data.extend_from_slice(&(RATE * 4).to_le_bytes());
    data.extend_from_slice(&4u16.to_le_bytes());
    data.extend_from_slice(&16u16.to_le_bytes());
    data.extend_from_slice(b"data");
    data.extend_from_slice(&size.to_le_bytes());
    for i in 0..n {
        let s =
            (0.2 * (std::f64::consts::TAU * hz * i as f64 / RATE as f64).sin() * 32767.0) as i16;
        data.extend_from_slice(&s.to_le_bytes());
        data.extend_from_slice(&s.to_le_bytes());
    }
    std::fs::write(path, data).expect("wav");
}

/// Waits until `path` streams (a server still starting refuses or answers 503).
fn wait_for_stream(addr: SocketAddr, path: &str) {
    let until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < until {
        if let Ok(mut s) = TcpStream::connect(addr) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = write!(s, "GET {path} HTTP/1.0\r\n\r\n");
            let mut buf = [0u8; 64];
            if let Ok(n) = s.read(&mut buf)
                && buf[..n].windows(3).any(|w| w == b"200")
            {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{addr}{path} did not start streaming");
}

fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    write!(s, "GET {path} HTTP/1.0\r\n\r\n").expect("request");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn which(program: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
