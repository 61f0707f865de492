//! The decode chain on arbitrary bytes, from memory: `probe`, then `TrackDecoder::open`, every
//! packet to the end, a seek into the middle and the packets after it. A panic is a finding even
//! though the scheduler catches panics (a caught one still costs the track and says nothing).
//!
//! Properties: an opened track has a sample rate and channel count a radio plays; every packet
//! appends whole frames of finite samples; the decoder ends by itself (within a bound on packets).
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use onair::audio::decode::{self, MAX_CHANNELS, SAMPLE_RATES, TrackDecoder};
use onair::catalog::track::TrackData;

/// Far more packets than a few KB of input can hold; past it the decoder is looping.
const MAX_PACKETS: usize = 100_000;

fn decode_all(decoder: &mut TrackDecoder, pcm: &mut Vec<f32>) -> usize {
    let mut packets = 0;
    loop {
        let before = pcm.len();
        if !decoder.next_packet(pcm) {
            return packets;
        }
        packets += 1;
        assert!(packets < MAX_PACKETS, "the decoder never ends");
        let channels = decoder.channels();
        let added = &pcm[before..];
        assert!(
            (1..=MAX_CHANNELS).contains(&channels),
            "{channels} channels"
        );
        assert!(SAMPLE_RATES.contains(&decoder.sample_rate()));
        assert_eq!(added.len() % channels, 0, "a packet of partial frames");
        assert!(added.iter().all(|s| s.is_finite()), "non-finite sample");
        // Keeps memory flat: only the last packet is looked at.
        pcm.clear();
    }
}

fuzz_target!(|data: &[u8]| {
    let track = TrackData::from_bytes(data.to_vec());
    let _ = decode::probe(&track);
    let Ok((mut decoder, tags)) = TrackDecoder::open(&track) else {
        return;
    };
    assert!(SAMPLE_RATES.contains(&tags.sample_rate), "{tags:?}");
    assert!(tags.channels <= MAX_CHANNELS, "{tags:?}");
    let mut pcm = Vec::new();
    decode_all(&mut decoder, &mut pcm);
    let middle = tags.duration.unwrap_or(Duration::from_millis(500)) / 2;
    if decoder.seek(middle).is_ok() {
        decode_all(&mut decoder, &mut pcm);
    }
});
