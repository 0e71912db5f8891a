//! The pump's side of the Asena-style framing, written from the protocol
//! description alone (docs/devices/asena.md), not from the driver's codec.

use crc::{CRC_16_IBM_3740, Crc};

/// CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, unreflected, no final XOR.
const CRC16: Crc<u16> = Crc::<u16>::new(&CRC_16_IBM_3740);

/// A pump's receive buffer; a longer line is dropped as noise.
const MAX_REQUEST: usize = 256;

pub(crate) fn crc16(text: &str) -> u16 {
    CRC16.checksum(text.as_bytes())
}

/// `!` + fields joined by `^` + `|` + 4 upper-case hex CRC + `\r`.
pub(crate) fn encode(fields: &[String]) -> Vec<u8> {
    let text = fields.join("^");
    format!("!{text}|{:04X}\r", crc16(&text)).into_bytes()
}

/// A pump on its serial line without the line: request bytes in, reply
/// bytes out, on a clock the caller advances (`model.advance`). The server
/// runs it on a pseudo-terminal; a test can run it on a simulated clock.
#[derive(Debug)]
pub struct PumpWire {
    /// The pump itself: program, alarms, infusion progress.
    pub model: super::PumpModel,
    reader: RequestReader,
}

impl PumpWire {
    pub fn new(model: super::PumpModel) -> Self {
        Self {
            model,
            reader: RequestReader::default(),
        }
    }

    /// The well-formed requests in `bytes` (the rest of a frame is kept
    /// for the next call), as fields.
    pub fn requests(&mut self, bytes: &[u8]) -> Vec<Vec<String>> {
        self.reader.push(bytes)
    }

    /// The pump's replies to the requests in `bytes`, as it sends them.
    pub fn reply(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.requests(bytes)
            .iter()
            .filter_map(|request| self.model.answer(request))
            .flat_map(|fields| encode(&fields))
            .collect()
    }

    /// A new link (the port was reopened): half-received requests are gone
    /// and the pump waits for the handshake again.
    pub fn reset_link(&mut self) {
        self.reader = RequestReader::default();
        self.model.reset_link();
    }

    /// Requests that were not well-formed frames.
    pub fn rejected(&self) -> u64 {
        self.reader.rejected
    }
}

/// Splits the gateway's byte stream into requests. Lines that are not a
/// well-formed frame with a matching CRC are ignored, as a pump would.
#[derive(Debug, Default)]
pub(crate) struct RequestReader {
    line: Vec<u8>,
    pub(crate) rejected: u64,
}

impl RequestReader {
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        for &b in bytes {
            if b == b'\r' {
                let line = std::mem::take(&mut self.line);
                match parse(&line) {
                    Some(fields) => out.push(fields),
                    None if line.is_empty() => {}
                    None => self.rejected += 1,
                }
            } else if b == b'!' {
                // A new frame starts; whatever came before was noise.
                if !self.line.is_empty() {
                    self.rejected += 1;
                }
                self.line.clear();
                self.line.push(b);
            } else if self.line.len() < MAX_REQUEST {
                self.line.push(b);
            } else {
                self.rejected += 1;
                self.line.clear();
            }
        }
        out
    }
}

fn parse(line: &[u8]) -> Option<Vec<String>> {
    let body = std::str::from_utf8(line.strip_prefix(b"!")?).ok()?;
    let (text, crc) = body.rsplit_once('|')?;
    let crc = u16::from_str_radix(crc, 16)
        .ok()
        .filter(|_| crc.len() == 4)?;
    (crc16(text) == crc).then(|| text.split('^').map(str::to_owned).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_published_frames() {
        // From DESIGN.md.
        assert_eq!(encode(&["INF".into()]), b"!INF|4961\r");
        assert_eq!(
            encode(&["REMOTE_CTRL".into(), "ENABLED".into(), "3CC1".into()]),
            b"!REMOTE_CTRL^ENABLED^3CC1|B1F1\r"
        );
        assert_eq!(crc16("8002-51740"), 0x3CC1);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2000)) {
            let mut r = RequestReader::default();
            let _ = r.push(&bytes);
            proptest::prop_assert!(r.line.len() <= MAX_REQUEST);
        }
    }

    #[test]
    fn reads_requests_and_ignores_noise() {
        let mut r = RequestReader::default();
        let got = r.push(b"xx!INF|4961\r!INF|0000\r!INF_VTB");
        assert_eq!(got, [vec!["INF".to_owned()]]);
        assert_eq!(r.rejected, 2); // "xx" and the bad CRC
        assert_eq!(r.push(b"I|8456\r"), [vec!["INF_VTBI".to_owned()]]);
    }
}
