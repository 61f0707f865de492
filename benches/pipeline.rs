//! Stage benchmarks. Throughput is in seconds of audio, so criterion's "elem/s" reads as
//! "× real time". Run: `cargo bench --bench pipeline`.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Waker};

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use onair::audio::decode::TrackDecoder;
use onair::audio::resample::Converter;
use onair::config::Audio;
use onair::encode::{Encoder, Mp3Encoder};
use onair::http::icy::StreamTitle;
use onair::ring::{Frame, FrameRing};

fn fixture(name: &str) -> Bytes {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/media")
        .join(name);
    Bytes::from(std::fs::read(path).expect("fixture"))
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
                let (mut d, _) = TrackDecoder::open(bytes.clone()).expect("opens");
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
    g.bench_function("mp3_128k", |b| {
        b.iter_batched(
            || Mp3Encoder::new(audio, 128).expect("encoder"),
            |mut enc| {
                let mut out = Vec::new();
                for block in pcm.chunks(4410 * 2) {
                    enc.encode(block, &mut out).expect("encode");
                }
                black_box(out.len())
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// One 100 ms publish of four 128 kbps frames, read by 1000 cursors.
fn ring(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring");
    let title = StreamTitle::new("bench");
    let frame = Bytes::from(vec![0u8; 418]);
    let ring = FrameRing::new(160_000);
    let mut cursors: Vec<_> = (0..1000).map(|_| ring.cursor(0)).collect();
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = Vec::with_capacity(64);
    g.throughput(Throughput::Elements(1000));
    g.bench_function("fanout_1000", |b| {
        b.iter(|| {
            ring.publish((0..4).map(|_| Frame {
                data: frame.clone(),
                title: Arc::clone(&title),
            }));
            for c in &mut cursors {
                out.clear();
                let _ = c.poll_batch(&mut cx, &mut out, 64);
                black_box(out.len());
            }
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(3));
    targets = decode, resample, encode, ring
}
criterion_main!(benches);
