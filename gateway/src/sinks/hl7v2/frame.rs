//! MLLP framing (HL7 v2 Minimal Lower Layer Protocol, release 1 as every
//! interface engine speaks it): a message travels as `0x0B` + message +
//! `0x1C 0x0D`.
//!
//! Pure functions over bytes plus a streaming decoder owning a bounded
//! buffer, in the shape of the pump's codec: [`decode`] looks at the front of
//! a buffer and says "need more", "a frame of n bytes" or "drop n bytes";
//! [`MllpDecoder`] keeps the buffer and counts what it dropped. Nothing here
//! does I/O or reads a clock, and nothing panics on any input.

/// Start block.
pub const SB: u8 = 0x0B;
/// End block; followed by [`CR`].
pub const EB: u8 = 0x1C;
pub const CR: u8 = 0x0D;

/// Longest frame accepted, framing included. An ACK is a few hundred bytes;
/// the longest message this sink sends is a few kilobytes. A peer sending
/// more than this without an end block is out of step, not framing.
pub const MAX_FRAME_LEN: usize = 64 * 1024;

/// Frames `message` for the wire.
pub fn encode(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 3);
    out.push(SB);
    out.extend_from_slice(message);
    out.extend_from_slice(&[EB, CR]);
    out
}

/// Why bytes were dropped instead of yielding a frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("{len} bytes outside any MLLP frame")]
    Garbage { len: usize },
    #[error("MLLP frame of {len} bytes cut short by a new start block")]
    Truncated { len: usize },
    #[error("no MLLP end block within {len} bytes of the start block")]
    Overlong { len: usize },
}

/// What [`decode`] made of the front of a buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// The buffer holds at most the start of a frame; keep it and read more.
    NeedMore,
    /// A message (framing removed) and how many bytes it took from the front.
    Frame { message: &'a [u8], consumed: usize },
    /// Drop `consumed` bytes from the front: they were not a frame.
    Skip { consumed: usize, error: FrameError },
}

/// Decodes the front of `buf`. Pure: the caller removes `consumed` bytes.
///
/// Never returns [`Decoded::NeedMore`] for a buffer of [`MAX_FRAME_LEN`]
/// bytes or more, so a caller with a buffer that size always makes progress.
pub fn decode(buf: &[u8]) -> Decoded<'_> {
    let Some(start) = buf.iter().position(|&b| b == SB) else {
        return if buf.is_empty() {
            Decoded::NeedMore
        } else {
            Decoded::Skip {
                consumed: buf.len(),
                error: FrameError::Garbage { len: buf.len() },
            }
        };
    };
    if start > 0 {
        return Decoded::Skip {
            consumed: start,
            error: FrameError::Garbage { len: start },
        };
    }
    let window = &buf[..buf.len().min(MAX_FRAME_LEN)];
    let mut i = 1;
    while i < window.len() {
        match window[i] {
            // A second start block before the end: this frame lost its tail.
            SB => {
                return Decoded::Skip {
                    consumed: i,
                    error: FrameError::Truncated { len: i },
                };
            }
            // `0x1C` not followed by `0x0D` is data (it cannot be in ER7
            // text, but MLLP only frames bytes); at the end of the buffer
            // the `0x0D` may be on its way.
            EB if window.get(i + 1) == Some(&CR) => {
                return Decoded::Frame {
                    message: &window[1..i],
                    consumed: i + 2,
                };
            }
            _ => {}
        }
        i += 1;
    }
    if buf.len() >= MAX_FRAME_LEN {
        Decoded::Skip {
            consumed: MAX_FRAME_LEN,
            error: FrameError::Overlong { len: MAX_FRAME_LEN },
        }
    } else {
        Decoded::NeedMore
    }
}

/// What the streaming decoder has dropped, for logs and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecoderStats {
    pub frames: u64,
    pub truncated: u64,
    pub overlong: u64,
    pub garbage_bytes: u64,
}

/// Streaming decoder over a buffer of at most [`MAX_FRAME_LEN`] bytes.
#[derive(Debug, Default)]
pub struct MllpDecoder {
    buf: Vec<u8>,
    stats: DecoderStats,
}

impl MllpDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn stats(&self) -> DecoderStats {
        self.stats
    }

    /// Bytes held waiting for the rest of a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Forgets a partial frame (after a reconnect the rest will never come).
    pub fn clear(&mut self) {
        self.buf.clear();
    }

    /// Feeds `input` and calls `on` with every message or dropped chunk, in
    /// order. Any amount of input is fine: the buffer stays bounded.
    pub fn feed(&mut self, mut input: &[u8], mut on: impl FnMut(Result<&[u8], FrameError>)) {
        loop {
            let take = (MAX_FRAME_LEN - self.buf.len()).min(input.len());
            self.buf.extend_from_slice(&input[..take]);
            input = &input[take..];
            loop {
                let consumed = match decode(&self.buf) {
                    Decoded::NeedMore => break,
                    Decoded::Frame { message, consumed } => {
                        self.stats.frames += 1;
                        on(Ok(message));
                        consumed
                    }
                    Decoded::Skip { consumed, error } => {
                        match error {
                            FrameError::Garbage { len } => self.stats.garbage_bytes += len as u64,
                            FrameError::Truncated { .. } => self.stats.truncated += 1,
                            FrameError::Overlong { .. } => self.stats.overlong += 1,
                        }
                        on(Err(error));
                        consumed
                    }
                };
                self.buf.drain(..consumed);
            }
            if input.is_empty() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(input: &[u8], expected: &Decoded<'_>) {
        assert_eq!(&decode(input), expected, "input {input:02x?}");
    }

    #[test]
    fn a_frame_is_start_block_message_end_block_cr() {
        // 0B | "MSH|^~\&|A" | 1C 0D
        let wire = b"\x0bMSH|^~\\&|A\x1c\x0d";
        assert_eq!(encode(b"MSH|^~\\&|A"), wire);
        check(
            wire,
            &Decoded::Frame {
                message: b"MSH|^~\\&|A",
                consumed: wire.len(),
            },
        );
    }

    #[test]
    fn partial_frame_needs_more_at_every_cut() {
        let wire = encode(b"MSH|^~\\&|A\rMSA|AA|1");
        for cut in 0..wire.len() {
            check(&wire[..cut], &Decoded::NeedMore);
        }
    }

    #[test]
    fn garbage_before_a_frame_is_skipped_up_to_the_start_block() {
        check(
            b"HTTP/1.1\r\n\x0bx\x1c\r",
            &Decoded::Skip {
                consumed: 10,
                error: FrameError::Garbage { len: 10 },
            },
        );
        check(
            b"\x1c\x0d",
            &Decoded::Skip {
                consumed: 2,
                error: FrameError::Garbage { len: 2 },
            },
        );
    }

    #[test]
    fn a_new_start_block_cuts_a_partial_frame() {
        check(
            b"\x0bMSH|\x0bMSH|x\x1c\r",
            &Decoded::Skip {
                consumed: 5,
                error: FrameError::Truncated { len: 5 },
            },
        );
    }

    #[test]
    fn an_end_block_without_cr_is_data() {
        check(
            b"\x0ba\x1cb\x1c\r",
            &Decoded::Frame {
                message: b"a\x1cb",
                consumed: 6,
            },
        );
    }

    #[test]
    fn no_end_block_within_the_bound_is_dropped() {
        let mut buf = vec![b'x'; MAX_FRAME_LEN + 10];
        buf[0] = SB;
        check(
            &buf,
            &Decoded::Skip {
                consumed: MAX_FRAME_LEN,
                error: FrameError::Overlong { len: MAX_FRAME_LEN },
            },
        );
    }

    #[test]
    fn the_stream_decoder_resynchronises_and_counts() {
        let mut d = MllpDecoder::new();
        let mut got = Vec::new();
        let mut wire = b"junk".to_vec();
        wire.extend(encode(b"one"));
        wire.extend(b"\x0bcut");
        wire.extend(encode(b"two"));
        d.feed(&wire, |r| got.push(r.map(<[u8]>::to_vec)));
        assert_eq!(
            got,
            [
                Err(FrameError::Garbage { len: 4 }),
                Ok(b"one".to_vec()),
                Err(FrameError::Truncated { len: 4 }),
                Ok(b"two".to_vec()),
            ]
        );
        assert_eq!(
            d.stats(),
            DecoderStats {
                frames: 2,
                truncated: 1,
                overlong: 0,
                garbage_bytes: 4
            }
        );
    }

    /// Messages as this sink and its peers send them: no framing bytes inside.
    fn message() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            any::<u8>().prop_filter("no framing", |b| *b != SB && *b != EB),
            0..300,
        )
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_and_the_buffer_stays_bounded(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 0..8)
        ) {
            let mut d = MllpDecoder::new();
            for c in &chunks {
                d.feed(c, |r| {
                    if let Ok(m) = r {
                        assert!(m.len() < MAX_FRAME_LEN);
                    }
                });
                prop_assert!(d.buffered() < MAX_FRAME_LEN);
            }
        }

        #[test]
        fn valid_frames_round_trip_whatever_the_chunking(
            messages in proptest::collection::vec(message(), 1..6),
            noise in proptest::collection::vec(any::<u8>().prop_filter("not a start block", |b| *b != SB), 0..20),
            cuts in proptest::collection::vec(any::<usize>(), 0..10),
        ) {
            let mut wire = noise.clone();
            for m in &messages {
                wire.extend(encode(m));
            }
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (wire.len() + 1)).collect();
            cuts.sort_unstable();
            let mut d = MllpDecoder::new();
            let mut got = Vec::new();
            let mut from = 0;
            for cut in cuts.into_iter().chain([wire.len()]) {
                d.feed(&wire[from..cut], |r| {
                    if let Ok(m) = r {
                        got.push(m.to_vec());
                    }
                });
                from = cut;
            }
            prop_assert_eq!(got, messages);
            prop_assert_eq!(d.stats().garbage_bytes, noise.len() as u64);
        }
    }
}
