//! Stage benchmarks. Throughput is in seconds of audio, so criterion's "elem/s" reads as
//! "× real time". Run: `cargo bench --bench pipeline`.

use std::hint::black_box;
use std::path::Path;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use onair::analysis::{Pace, analyse};
use onair::audio::decode::TrackDecoder;
use onair::audio::resample::Converter;
use onair::catalog::TrackData;
use onair::config::Audio;
use onair::encode::{Encoder, Mp3Encoder};
use onair::fanout::position::StreamPos;
use onair::metrics::Metrics;
use onair::pipeline::limiter::{Limiter, LimiterSettings};
use onair::pipeline::meter::Meter;
use onair::ring::{Frame, FrameRing, Window};
use onair::title::StreamTitle;

/// A fixture read from its file, as the pipeline reads tracks (through a bounded buffer).
fn fixture(name: &str) -> TrackData {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/media")
        .join(name);
    TrackData::open(&path).expect("fixture")
}

fn sine(rate: u32, channels: usize, seconds: f64) -> Vec<f32> {
    let frames = (f64::from(rate) * seconds) as usize;
    (0..frames * channels)
        .map(|i| ((i / channels) as f32 * 440.0 * std::f32::consts::TAU / rate as f32).sin() * 0.5)
        .collect()
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    for (name, file, secs) in [
        ("mp3_44k", "01-cbr128.mp3", 20.0),
        ("flac_44k", "04-flac16.flac", 12.0),
        ("opus_48k", "07-opus.opus", 15.0),
    ] {
        let bytes = fixture(file);
        g.throughput(Throughput::Elements(secs as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let (mut d, _) = TrackDecoder::open(&bytes).expect("opens");
                let mut pcm = Vec::new();
                while d.next_packet(&mut pcm) {
                    pcm.clear();
                }
                black_box(d.errors())
            })
        });
    }
    g.finish();
}

fn resample(c: &mut Criterion) {
    let mut g = c.benchmark_group("resample");
    let input = sine(48_000, 2, 10.0);
    g.throughput(Throughput::Elements(10));
    g.bench_function("48k_to_44k1", |b| {
        b.iter_batched(
            || Converter::new(48_000, 2, 44_100, 2).expect("converter"),
            |mut conv| {
                let mut out = Vec::with_capacity(input.len());
                for chunk in input.chunks(4800 * 2) {
                    conv.process(chunk, &mut out).expect("process");
                }
                black_box(out.len())
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    let pcm = sine(44_100, 2, 10.0);
    let audio = Audio {
        sample_rate: 44_100,
        channels: 2,
    };
    g.throughput(Throughput::Elements(10));
    let title = StreamTitle::new("bench");
    let run = |enc: &mut dyn Encoder| {
        let mut out = Vec::new();
        for block in pcm.chunks(4410 * 2) {
            enc.encode(block, &title, &mut out).expect("encode");
        }
        black_box(out.len())
    };
    g.bench_function("mp3_128k", |b| {
        b.iter_batched(
            || Mp3Encoder::new(audio, 128).expect("encoder"),
            |mut enc| run(&mut enc),
            BatchSize::SmallInput,
        )
    });
    // Opus includes the resampling to 48 kHz that a 44.1 kHz station needs.
    g.bench_function("opus_96k", |b| {
        b.iter_batched(
            || onair::encode::OpusEncoder::new(audio, 96).expect("encoder"),
            |mut enc| run(&mut enc),
            BatchSize::SmallInput,
        )
    });
    #[cfg(feature = "aac")]
    for (name, profile, kbps) in [
        ("aac_lc_128k", onair::config::AacProfile::Lc, 128),
        ("aac_he_48k", onair::config::AacProfile::He, 48),
        ("aac_he2_32k", onair::config::AacProfile::HeV2, 32),
    ] {
        g.bench_function(name, |b| {
            b.iter_batched(
                || onair::encode::AacEncoder::new(audio, profile, kbps).expect("encoder"),
                |mut enc| run(&mut enc),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

/// The whole chain one mount costs the pipeline thread: decode, convert to the station's
/// 44.1 kHz stereo (a no-op for the 44.1 kHz file, a resample for the 48 kHz one), encode 128k.
fn chain(c: &mut Criterion) {
    let mut g = c.benchmark_group("chain");
    let audio = Audio {
        sample_rate: 44_100,
        channels: 2,
    };
    for (name, file, secs) in [
        ("mp3_44k_to_mp3_128k", "01-cbr128.mp3", 20.0),
        ("mp3_48k_to_mp3_128k", "02-vbr48k-utf8.mp3", 18.0),
    ] {
        let bytes = fixture(file);
        g.throughput(Throughput::Elements(secs as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let (mut d, _) = TrackDecoder::open(&bytes).expect("opens");
                let mut conv =
                    Converter::new(d.sample_rate(), d.channels(), 44_100, 2).expect("converter");
                let mut enc = Mp3Encoder::new(audio, 128).expect("encoder");
                let (mut pcm, mut converted, mut frames) = (Vec::new(), Vec::new(), Vec::new());
                let title = StreamTitle::new("bench");
                while d.next_packet(&mut pcm) {
                    conv.process(&pcm, &mut converted).expect("convert");
                    enc.encode(&converted, &title, &mut frames).expect("encode");
                    pcm.clear();
                    converted.clear();
                    frames.clear();
                }
                black_box(d.errors())
            })
        });
    }
    g.finish();
}

/// One fan-out turn for 1,000 listeners with ICY metadata: half a second of 128 kbps frames
/// (19 × 418 bytes) published, the window refreshed, and each listener's vectored write planned
/// and "written" to a sink. The user-space cost per listener per write, without the syscall.
fn fanout(c: &mut Criterion) {
    let mut g = c.benchmark_group("fanout");
    let title = StreamTitle::new("bench");
    let frame = Bytes::from(vec![0u8; 418]);
    let ring = FrameRing::new(160_000);
    let mut window = Window::starting_at(0);
    let mut listeners: Vec<_> = (0..1000)
        .map(|_| StreamPos::new(Bytes::new(), 0, Some(16_000)))
        .collect();
    let mut sink = std::io::sink();
    g.throughput(Throughput::Elements(1000));
    g.bench_function("turn_1000_listeners", |b| {
        b.iter(|| {
            ring.publish((0..19).map(|_| Frame::new(frame.clone(), &title)));
            window.sync(&ring);
            for l in &mut listeners {
                black_box(l.write_to(&mut sink, &window, 4).ok());
            }
        })
    });
    g.finish();
}

/// One track's analysis (decode + BS.1770 integrated, range, true peak, momentary series), uncapped:
/// how many times real time one core analyses a library.
fn analysis(c: &mut Criterion) {
    let mut g = c.benchmark_group("analysis");
    for (name, file, secs) in [
        ("mp3_44k", "01-cbr128.mp3", 20.0),
        ("flac_44k", "04-flac16.flac", 12.0),
    ] {
        let bytes = fixture(file);
        g.throughput(Throughput::Elements(secs as u64));
        g.bench_function(name, |b| {
            b.iter(|| black_box(analyse(&bytes, &Pace::new(0.0)).expect("analyses")))
        });
    }
    g.finish();
}

/// What the programme adds per station, per second of audio: the two-deck sum with a fade,
/// the true-peak limiter (8x oversampled) and the on-air meter, in the pipeline's 100 ms
/// blocks of 44.1 kHz stereo.
fn programme(c: &mut Criterion) {
    let mut g = c.benchmark_group("programme");
    let seconds = 10.0;
    let a = sine(44_100, 2, seconds);
    let b: Vec<f32> = a.iter().rev().copied().collect();
    let block = 4_410 * 2;
    g.throughput(Throughput::Elements(seconds as u64));
    g.bench_function("mix_limit_meter_44k_stereo", |bench| {
        let metrics = Metrics::new();
        let mut limiter = Limiter::new(44_100, 2, LimiterSettings::default());
        let mut meter = Meter::new(44_100, 2);
        let mut out = vec![0.0f32; block];
        bench.iter(|| {
            for (i, (x, y)) in a.chunks(block).zip(b.chunks(block)).enumerate() {
                let out = &mut out[..x.len()];
                // Gains as in a crossfade (both decks sound), louder than full scale: the
                // limiter works on every block.
                let fade = 1.0 - (i as f32 / 100.0).min(1.0);
                for ((o, x), y) in out.iter_mut().zip(x).zip(y) {
                    *o = x * 1.6 * fade + y * 1.6;
                }
                limiter.process(out);
                meter.add(out, limiter.take_output_peak(), None, &metrics);
            }
            black_box(limiter.take_reduction_db())
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(3));
    targets = decode, resample, encode, chain, fanout, analysis, programme
}
criterion_main!(benches);
