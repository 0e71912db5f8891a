#![no_main]
//! Any bytes, cut into any chunks, as what an HL7 v2 peer sends back to the
//! hl7v2 sink over MLLP: through the streaming `MllpDecoder`, the pure
//! `frame::decode`, and every frame through the ACK parser.
//!
//! Asserts, beyond "no panic":
//! - the frames, the counts of dropped bytes and frames, and the bytes left
//!   over do not depend on the chunking (streaming equals the pure decoder
//!   over the whole input at once);
//! - a frame re-encodes to exactly the bytes it was read from;
//! - an ACK is only ever read as one for the message sent when its MSA-2
//!   is that message's control id.

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use wardgate::sinks::hl7v2::ack;
use wardgate::sinks::hl7v2::frame::{
    self, Decoded, DecoderStats, FrameError, MAX_FRAME_LEN, MllpDecoder,
};

#[derive(Arbitrary, Debug)]
struct Input {
    /// Chunk lengths, used in turn.
    cuts: Vec<u16>,
    data: Vec<u8>,
}

/// The control id of the message the sink is waiting on.
const SENT: &str = "T42-18ebdf6be8f2de00";

fuzz_target!(|input: Input| {
    let data = &input.data;

    // The whole input at once, through the pure decoder.
    let mut expected: Vec<Vec<u8>> = Vec::new();
    let mut stats = DecoderStats::default();
    let mut rest: &[u8] = data;
    loop {
        match frame::decode(rest) {
            Decoded::NeedMore => break,
            Decoded::Frame { message, consumed } => {
                assert_eq!(frame::encode(message), &rest[..consumed]);
                stats.frames += 1;
                expected.push(message.to_vec());
                rest = &rest[consumed..];
            }
            Decoded::Skip { consumed, error } => {
                assert!(consumed >= 1 && consumed <= rest.len(), "{error}");
                match error {
                    FrameError::Garbage { len } => stats.garbage_bytes += len as u64,
                    FrameError::Truncated { .. } => stats.truncated += 1,
                    FrameError::Overlong { .. } => stats.overlong += 1,
                }
                rest = &rest[consumed..];
            }
        }
    }
    assert!(rest.len() < MAX_FRAME_LEN);

    // The same bytes in chunks, through the streaming decoder.
    let mut decoder = MllpDecoder::new();
    let mut frames = Vec::new();
    let mut left: &[u8] = data;
    let mut cuts = input.cuts.iter().copied().cycle();
    while !left.is_empty() {
        let cut = cuts.next().map_or(left.len(), usize::from);
        let (chunk, tail) = left.split_at(cut.clamp(1, left.len()));
        left = tail;
        decoder.feed(chunk, |r| frames.extend(r.ok().map(<[u8]>::to_vec)));
        assert!(decoder.buffered() < MAX_FRAME_LEN);
    }
    assert_eq!(frames, expected);
    assert_eq!(decoder.stats(), stats);
    assert_eq!(decoder.buffered(), rest.len());

    for f in &frames {
        if ack::parse(f, SENT).is_ok() {
            let text = String::from_utf8_lossy(f);
            assert!(
                text.split(['\r', '\n'])
                    .any(|s| s.starts_with("MSA") && s.contains(SENT)),
                "{text:?}"
            );
        }
    }
});
