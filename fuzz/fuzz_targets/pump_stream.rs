#![no_main]
//! Any bytes, cut into any chunks, through the infusion pump's streaming
//! frame decoder (what a serial port delivers), and every frame it yields
//! through the status and VTBI reply parsers.
//!
//! Asserts, beyond "no panic":
//! - the buffer never holds more than `MAX_FRAME_LEN` bytes;
//! - the frames, the error counts and the bytes left over do not depend on
//!   how the input was chunked: the streaming decoder agrees with the pure
//!   `decode` run over the whole input at once;
//! - a decoded frame encodes back to exactly the bytes it was read from;
//! - a parsed status or VTBI reply holds only finite, non-negative numbers.

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use wardgate_drivers::pump::codec::{self, DecodeError, Decoded, MAX_FRAME_LEN};
use wardgate_drivers::pump::state::{parse_status, parse_vtbi};
use wardgate_drivers::pump::{DecoderStats, Frame, FrameDecoder};

#[derive(Arbitrary, Debug)]
struct Input {
    /// Chunk lengths, used in turn (0 feeds an empty chunk, then one byte).
    cuts: Vec<u16>,
    data: Vec<u8>,
}

fn count(stats: &mut DecoderStats, error: &DecodeError) {
    match error {
        DecodeError::Garbage { len } => stats.garbage_bytes += *len as u64,
        DecodeError::Truncated { .. } => stats.truncated += 1,
        DecodeError::Overlong { .. } => stats.overlong += 1,
        DecodeError::BadCrc { .. } => stats.crc_errors += 1,
        DecodeError::Malformed(_) => stats.malformed += 1,
    }
}

fn check_numbers(values: &[Option<f64>]) {
    for v in values.iter().flatten() {
        assert!(v.is_finite() && *v >= 0.0, "reply value {v}");
    }
}

fuzz_target!(|input: Input| {
    let data = &input.data;

    // The whole input at once, through the pure decoder.
    let mut expected: Vec<Frame> = Vec::new();
    let mut expected_stats = DecoderStats::default();
    let mut rest: &[u8] = data;
    loop {
        match codec::decode(rest) {
            Decoded::NeedMore => break,
            Decoded::Frame { frame, consumed } => {
                assert!(consumed >= 1 && consumed <= rest.len().min(MAX_FRAME_LEN));
                assert_eq!(frame.encode(), &rest[..consumed], "frame {frame}");
                expected_stats.frames += 1;
                expected.push(frame);
                rest = &rest[consumed..];
            }
            Decoded::Skip { consumed, error } => {
                assert!(consumed >= 1 && consumed <= rest.len(), "{error}");
                count(&mut expected_stats, &error);
                rest = &rest[consumed..];
            }
        }
    }
    assert!(rest.len() < MAX_FRAME_LEN);

    // The same bytes in chunks, through the streaming decoder.
    let mut decoder = FrameDecoder::new();
    let mut frames = Vec::new();
    let mut input_left: &[u8] = data;
    let mut cuts = input.cuts.iter().copied().cycle();
    while !input_left.is_empty() {
        let cut = cuts.next().map_or(input_left.len(), usize::from);
        if cut == 0 {
            // An empty read changes nothing.
            decoder.feed(&[], |r| frames.extend(r.ok()));
        }
        let (chunk, tail) = input_left.split_at(cut.clamp(1, input_left.len()));
        input_left = tail;
        decoder.feed(chunk, |r| frames.extend(r.ok()));
        assert!(decoder.buffered() <= MAX_FRAME_LEN);
    }
    assert_eq!(frames, expected);
    assert_eq!(decoder.stats(), expected_stats);
    assert_eq!(decoder.buffered(), rest.len());

    for frame in &frames {
        if let Ok(s) = parse_status(frame) {
            check_numbers(&[s.rate, s.volume_infused, s.line_pressure, s.time_remaining]);
        }
        if let Ok(v) = parse_vtbi(frame) {
            check_numbers(&[v.vtbi, v.remaining]);
            assert!(v.active || (v.vtbi.is_none() && v.remaining.is_none()));
        }
    }
});
