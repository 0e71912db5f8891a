//! Asena-style framing: `!` + fields joined by `^` + `|` + CRC + `\r`.
//!
//! Pure functions over bytes plus a streaming decoder that owns a bounded
//! buffer. Nothing here does I/O or reads a clock. The decoder never panics,
//! never grows beyond [`MAX_FRAME_LEN`] bytes, and counts (never acts on)
//! every frame it has to drop.

use std::fmt;

use crc::{CRC_16_IBM_3740, Crc};

/// CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, unreflected, no final XOR);
/// the catalogue calls it CRC-16/IBM-3740.
const CCITT_FALSE: Crc<u16> = Crc::<u16>::new(&CRC_16_IBM_3740);

/// Longest frame accepted, `!` and `\r` included. A status reply is about
/// 100 bytes; anything longer than this is a line fault, not a frame.
pub const MAX_FRAME_LEN: usize = 512;

const START: u8 = b'!';
const END: u8 = b'\r';
const FIELD_SEP: u8 = b'^';
const CRC_SEP: u8 = b'|';

/// The CRC the protocol puts after `|`, over the text between `!` and `|`.
pub fn crc16(text: &[u8]) -> u16 {
    CCITT_FALSE.checksum(text)
}

/// One frame: its fields in order; the first is the command name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Frame {
    fields: Vec<String>,
}

/// Why a frame cannot be built from the given fields.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("a frame needs at least one field (the command name)")]
    Empty,
    #[error("field {index} contains {byte:#04x}; fields are printable ASCII without `!`, `^`, `|`")]
    BadByte { index: usize, byte: u8 },
    #[error("the encoded frame would be {len} bytes, more than the {MAX_FRAME_LEN} allowed")]
    TooLong { len: usize },
}

/// Allowed inside a field: printable ASCII except the three delimiters.
fn is_field_byte(b: u8) -> bool {
    (0x20..=0x7E).contains(&b) && b != START && b != FIELD_SEP && b != CRC_SEP
}

impl Frame {
    pub fn new<I, S>(fields: I) -> Result<Self, FrameError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let fields: Vec<String> = fields.into_iter().map(Into::into).collect();
        if fields.is_empty() {
            return Err(FrameError::Empty);
        }
        for (index, f) in fields.iter().enumerate() {
            if let Some(&byte) = f.as_bytes().iter().find(|&&b| !is_field_byte(b)) {
                return Err(FrameError::BadByte { index, byte });
            }
        }
        // `!` + text + `|` + 4 hex + `\r`
        let len = fields.iter().map(String::len).sum::<usize>() + fields.len() - 1 + 7;
        if len > MAX_FRAME_LEN {
            return Err(FrameError::TooLong { len });
        }
        Ok(Self { fields })
    }

    /// A frame with just a command name, such as `INF`.
    pub fn command(name: &str) -> Result<Self, FrameError> {
        Self::new([name])
    }

    pub fn fields(&self) -> &[String] {
        &self.fields
    }

    /// The command name (field 0).
    pub fn name(&self) -> &str {
        &self.fields[0]
    }

    /// Field `i` (0 is the command name), if present.
    pub fn field(&self, i: usize) -> Option<&str> {
        self.fields.get(i).map(String::as_str)
    }

    /// The text between `!` and `|`.
    fn text(&self) -> String {
        self.fields.join("^")
    }

    /// The bytes on the wire, `!` to `\r`.
    pub fn encode(&self) -> Vec<u8> {
        let text = self.text();
        let mut out = Vec::with_capacity(text.len() + 7);
        out.push(START);
        out.extend_from_slice(text.as_bytes());
        out.push(CRC_SEP);
        out.extend_from_slice(format!("{:04X}", crc16(text.as_bytes())).as_bytes());
        out.push(END);
        out
    }
}

impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "!{}", self.text())
    }
}

/// Why bytes were dropped instead of yielding a frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{len} bytes outside any frame")]
    Garbage { len: usize },
    #[error("frame of {len} bytes cut short by a new `!`")]
    Truncated { len: usize },
    #[error("no `\\r` within {len} bytes of `!`")]
    Overlong { len: usize },
    #[error("CRC mismatch: frame says {received:04X}, text gives {computed:04X}")]
    BadCrc { received: u16, computed: u16 },
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
}

/// What [`decode`] made of the front of a buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// The buffer holds at most the start of a frame; keep it and read more.
    NeedMore,
    /// A frame, and how many bytes it took from the front.
    Frame { frame: Frame, consumed: usize },
    /// Drop `consumed` bytes from the front: they were not a valid frame.
    Skip { consumed: usize, error: DecodeError },
}

/// Decodes the front of `buf`. Pure: the caller removes `consumed` bytes.
///
/// Never returns [`Decoded::NeedMore`] for a buffer of [`MAX_FRAME_LEN`] or
/// more bytes, so a caller with a buffer of that size always makes progress.
pub fn decode(buf: &[u8]) -> Decoded {
    let Some(start) = buf.iter().position(|&b| b == START) else {
        return if buf.is_empty() {
            Decoded::NeedMore
        } else {
            Decoded::Skip {
                consumed: buf.len(),
                error: DecodeError::Garbage { len: buf.len() },
            }
        };
    };
    if start > 0 {
        return Decoded::Skip {
            consumed: start,
            error: DecodeError::Garbage { len: start },
        };
    }
    let window = &buf[..buf.len().min(MAX_FRAME_LEN)];
    // A second `!` before `\r` means this frame lost its tail: resync there.
    match window[1..].iter().position(|&b| b == END || b == START) {
        Some(i) if window[i + 1] == START => Decoded::Skip {
            consumed: i + 1,
            error: DecodeError::Truncated { len: i + 1 },
        },
        Some(i) => {
            let consumed = i + 2;
            match parse_body(&buf[1..=i]) {
                Ok(frame) => Decoded::Frame { frame, consumed },
                Err(error) => Decoded::Skip { consumed, error },
            }
        }
        None if buf.len() >= MAX_FRAME_LEN => Decoded::Skip {
            consumed: MAX_FRAME_LEN,
            error: DecodeError::Overlong { len: MAX_FRAME_LEN },
        },
        None => Decoded::NeedMore,
    }
}

/// `body` is everything between `!` and `\r`: `text|CRC4`.
fn parse_body(body: &[u8]) -> Result<Frame, DecodeError> {
    let bar = body
        .iter()
        .rposition(|&b| b == CRC_SEP)
        .ok_or(DecodeError::Malformed("no `|` before the CRC"))?;
    let (text, crc_part) = (&body[..bar], &body[bar + 1..]);
    if crc_part.len() != 4 {
        return Err(DecodeError::Malformed("CRC is not 4 hex digits"));
    }
    let received =
        parse_hex4(crc_part).ok_or(DecodeError::Malformed("CRC is not 4 upper-case hex digits"))?;
    if text.contains(&CRC_SEP) {
        return Err(DecodeError::Malformed("`|` inside the frame text"));
    }
    if text.iter().any(|&b| b != FIELD_SEP && !is_field_byte(b)) {
        return Err(DecodeError::Malformed(
            "non-printable byte in the frame text",
        ));
    }
    let computed = crc16(text);
    if computed != received {
        return Err(DecodeError::BadCrc { received, computed });
    }
    // Checked above: printable ASCII is valid UTF-8.
    let text = std::str::from_utf8(text).map_err(|_| DecodeError::Malformed("not ASCII"))?;
    Ok(Frame {
        fields: text.split('^').map(str::to_owned).collect(),
    })
}

fn parse_hex4(digits: &[u8]) -> Option<u16> {
    digits.iter().try_fold(0u16, |acc, &d| {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'A'..=b'F' => d - b'A' + 10,
            _ => return None,
        };
        Some(acc << 4 | u16::from(v))
    })
}

/// What the streaming decoder has seen, for logs and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecoderStats {
    pub frames: u64,
    pub crc_errors: u64,
    pub malformed: u64,
    pub truncated: u64,
    pub overlong: u64,
    pub garbage_bytes: u64,
}

impl DecoderStats {
    fn count(&mut self, error: &DecodeError) {
        match error {
            DecodeError::Garbage { len } => self.garbage_bytes += *len as u64,
            DecodeError::Truncated { .. } => self.truncated += 1,
            DecodeError::Overlong { .. } => self.overlong += 1,
            DecodeError::BadCrc { .. } => self.crc_errors += 1,
            DecodeError::Malformed(_) => self.malformed += 1,
        }
    }
}

/// Streaming decoder over a buffer of at most [`MAX_FRAME_LEN`] bytes.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    stats: DecoderStats,
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self {
            buf: Vec::with_capacity(MAX_FRAME_LEN),
            stats: DecoderStats::default(),
        }
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

    /// Feeds `input` and calls `on` with every frame or dropped chunk, in
    /// order. Any amount of input is fine: the buffer stays bounded.
    pub fn feed(&mut self, mut input: &[u8], mut on: impl FnMut(Result<Frame, DecodeError>)) {
        loop {
            let room = MAX_FRAME_LEN - self.buf.len();
            let take = room.min(input.len());
            self.buf.extend_from_slice(&input[..take]);
            input = &input[take..];
            loop {
                match decode(&self.buf) {
                    Decoded::NeedMore => break,
                    Decoded::Frame { frame, consumed } => {
                        self.buf.drain(..consumed);
                        self.stats.frames += 1;
                        on(Ok(frame));
                    }
                    Decoded::Skip { consumed, error } => {
                        self.buf.drain(..consumed);
                        self.stats.count(&error);
                        on(Err(error));
                    }
                }
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

    /// Every frame DESIGN.md lists, with the CRC it gives. The CRCs come from
    /// the OpenICE Asena driver's constants, not from this code.
    const KNOWN: &[(&[&str], &str)] = &[
        (&["INF"], "!INF|4961\r"),
        (&["INF_START"], "!INF_START|38F3\r"),
        (&["INF_STOP"], "!INF_STOP|CD57\r"),
        (&["INF_VTBI"], "!INF_VTBI|8456\r"),
        (&["INST_SERIALNO"], "!INST_SERIALNO|457D\r"),
        (&["COMMS_PROTOCOL"], "!COMMS_PROTOCOL|E8DA\r"),
        (
            &["REMOTE_CTRL", "ENABLED", "3CC1"],
            "!REMOTE_CTRL^ENABLED^3CC1|B1F1\r",
        ),
    ];

    fn check(input: &[u8], expected: &Decoded) {
        assert_eq!(
            &decode(input),
            expected,
            "input {:?}",
            String::from_utf8_lossy(input)
        );
    }

    #[test]
    fn known_frames_encode_to_their_published_bytes() {
        for (fields, wire) in KNOWN {
            let frame = Frame::new(fields.iter().copied()).unwrap();
            assert_eq!(String::from_utf8(frame.encode()).unwrap(), *wire);
            check(
                wire.as_bytes(),
                &Decoded::Frame {
                    frame,
                    consumed: wire.len(),
                },
            );
        }
    }

    #[test]
    fn remote_ctrl_key_is_the_crc_of_the_serial_number() {
        // DESIGN.md: 3CC1 = CRC of serial number `8002-51740`.
        assert_eq!(crc16(b"8002-51740"), 0x3CC1);
        // The catalogue check value of CRC-16/CCITT-FALSE.
        assert_eq!(crc16(b"123456789"), 0x29B1);
    }

    #[test]
    fn partial_frame_needs_more_at_every_cut() {
        let wire = b"!REMOTE_CTRL^ENABLED^3CC1|B1F1\r";
        for cut in 0..wire.len() {
            check(&wire[..cut], &Decoded::NeedMore);
        }
    }

    #[test]
    fn garbage_before_a_frame_is_skipped_up_to_the_bang() {
        check(
            b"xx\r\n!INF|4961\r",
            &Decoded::Skip {
                consumed: 4,
                error: DecodeError::Garbage { len: 4 },
            },
        );
        check(
            b"\x00\xff",
            &Decoded::Skip {
                consumed: 2,
                error: DecodeError::Garbage { len: 2 },
            },
        );
    }

    #[test]
    fn a_new_bang_cuts_a_partial_frame() {
        // `!INF|49` lost its tail; the next frame starts at byte 7.
        check(
            b"!INF|49!INF|4961\r",
            &Decoded::Skip {
                consumed: 7,
                error: DecodeError::Truncated { len: 7 },
            },
        );
    }

    #[test]
    fn crc_mismatch_is_rejected() {
        // Last CRC digit changed from 1 to 2.
        check(
            b"!INF|4962\r",
            &Decoded::Skip {
                consumed: 10,
                error: DecodeError::BadCrc {
                    received: 0x4962,
                    computed: 0x4961,
                },
            },
        );
        // Payload changed, CRC kept: INF -> INE.
        assert!(matches!(
            decode(b"!INE|4961\r"),
            Decoded::Skip {
                error: DecodeError::BadCrc { .. },
                ..
            }
        ));
    }

    #[test]
    fn malformed_crc_fields_are_rejected() {
        for (wire, why) in [
            (&b"!INF4961\r"[..], "no `|` before the CRC"),
            (b"!INF|496\r", "CRC is not 4 hex digits"),
            (b"!INF|4961A\r", "CRC is not 4 hex digits"),
            (b"!INF|49e1\r", "CRC is not 4 upper-case hex digits"),
        ] {
            check(
                wire,
                &Decoded::Skip {
                    consumed: wire.len(),
                    error: DecodeError::Malformed(why),
                },
            );
        }
    }

    #[test]
    fn endless_bytes_without_cr_do_not_grow_the_buffer() {
        let mut dec = FrameDecoder::new();
        let mut dropped = 0;
        let mut spew = vec![b'A'; 100_000];
        spew[0] = b'!';
        for _ in 0..10 {
            dec.feed(&spew, |r| {
                assert!(r.is_err());
                dropped += 1;
            });
            assert!(dec.buffered() <= MAX_FRAME_LEN);
        }
        assert!(dropped > 0);
        // And it recovers as soon as a real frame comes.
        let mut frames = Vec::new();
        dec.feed(b"\r!INF|4961\r", |r| frames.extend(r.ok()));
        assert_eq!(frames, [Frame::command("INF").unwrap()]);
    }

    #[test]
    fn streaming_counts_and_resynchronises() {
        let mut dec = FrameDecoder::new();
        let mut frames = Vec::new();
        let input = b"\x00\x01junk!INF|4961\r!INF|0000\r!INF_VTBI|8456\r";
        // Byte at a time: the buffer must carry partial frames across calls.
        for b in input {
            dec.feed(std::slice::from_ref(b), |r| frames.extend(r.ok()));
        }
        assert_eq!(
            frames,
            [
                Frame::command("INF").unwrap(),
                Frame::command("INF_VTBI").unwrap()
            ]
        );
        let stats = dec.stats();
        assert_eq!(
            (stats.frames, stats.crc_errors, stats.garbage_bytes),
            (2, 1, 6)
        );
    }

    #[test]
    fn frame_rejects_delimiters_in_fields() {
        assert_eq!(
            Frame::new(["INF", "a^b"]),
            Err(FrameError::BadByte {
                index: 1,
                byte: b'^'
            })
        );
        assert_eq!(Frame::new(Vec::<String>::new()), Err(FrameError::Empty));
        assert!(matches!(
            Frame::new(["X".repeat(600)]),
            Err(FrameError::TooLong { .. })
        ));
    }

    fn field() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[ -~&&[^!^|]]{0,20}").unwrap()
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_and_stay_bounded(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..700), 0..8)) {
            let mut dec = FrameDecoder::new();
            for c in &chunks {
                let _ = decode(c);
                dec.feed(c, |_| {});
                prop_assert!(dec.buffered() <= MAX_FRAME_LEN);
            }
        }

        #[test]
        fn valid_frames_round_trip(fields in proptest::collection::vec(field(), 1..10), noise in proptest::collection::vec(any::<u8>(), 0..40)) {
            let frame = Frame::new(fields).unwrap();
            let wire = frame.encode();
            prop_assert_eq!(decode(&wire), Decoded::Frame { frame: frame.clone(), consumed: wire.len() });
            // Also through the streaming decoder after arbitrary line noise
            // that ends in a `\r`, as a line fault would.
            let mut dec = FrameDecoder::new();
            let mut got = Vec::new();
            let mut input = noise.clone();
            input.push(b'\r');
            input.extend_from_slice(&wire);
            dec.feed(&input, |r| got.extend(r.ok()));
            prop_assert_eq!(got.last(), Some(&frame));
        }
    }
}
