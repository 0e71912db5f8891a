//! Register map entries and their decoding: pure functions from the words or
//! bits a Modbus read returned to one finite `f64` in the metric's unit.
//!
//! Owns the meaning of data types and byte/word orders. Never does I/O and
//! never panics on any input: a short or odd answer is a [`DecodeError`].

use serde::Deserialize;

/// The four Modbus data tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    /// Read/write single bits, function code 0x01.
    Coil,
    /// Read-only single bits, function code 0x02.
    DiscreteInput,
    /// Read-only 16-bit registers, function code 0x04.
    InputRegister,
    /// Read/write 16-bit registers, function code 0x03.
    HoldingRegister,
}

impl Table {
    /// Bit tables hold coils/inputs; the others hold 16-bit words.
    pub fn is_bits(self) -> bool {
        matches!(self, Table::Coil | Table::DiscreteInput)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Table::Coil => "coil",
            Table::DiscreteInput => "discrete_input",
            Table::InputRegister => "input_register",
            Table::HoldingRegister => "holding_register",
        }
    }
}

/// How the bits or registers of one entry are interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataType {
    Bool,
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F32,
    F64,
}

impl DataType {
    /// Every type, in declaration order.
    pub const ALL: [DataType; 9] = [
        DataType::Bool,
        DataType::U16,
        DataType::I16,
        DataType::U32,
        DataType::I32,
        DataType::U64,
        DataType::I64,
        DataType::F32,
        DataType::F64,
    ];

    /// Registers the type occupies in a register table (a `bool` reads one
    /// register, or one coil in a bit table).
    pub fn words(self) -> u16 {
        match self {
            DataType::Bool | DataType::U16 | DataType::I16 => 1,
            DataType::U32 | DataType::I32 | DataType::F32 => 2,
            DataType::U64 | DataType::I64 | DataType::F64 => 4,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Bool => "bool",
            DataType::U16 => "u16",
            DataType::I16 => "i16",
            DataType::U32 => "u32",
            DataType::I32 => "i32",
            DataType::U64 => "u64",
            DataType::I64 => "i64",
            DataType::F32 => "f32",
            DataType::F64 => "f64",
        }
    }
}

/// Where the value's most significant byte (A) travels, named for a 32-bit
/// value. Bytes on the wire come in register order, high byte of each
/// register first; the letters say which value byte sits in each position.
///
/// | order | 16 bit | 32 bit on the wire | 64 bit on the wire |
/// | --- | --- | --- | --- |
/// | `ABCD` (big endian, Modbus default) | AB | A B C D | A B C D E F G H |
/// | `DCBA` (little endian) | BA | D C B A | H G F E D C B A |
/// | `BADC` (bytes swapped in each word) | BA | B A D C | B A D C F E H G |
/// | `CDAB` (words swapped, "word swap") | AB | C D A B | G H E F C D A B |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
pub enum ByteOrder {
    #[default]
    #[serde(rename = "ABCD")]
    Abcd,
    #[serde(rename = "DCBA")]
    Dcba,
    #[serde(rename = "BADC")]
    Badc,
    #[serde(rename = "CDAB")]
    Cdab,
}

impl ByteOrder {
    /// Every order, in declaration order.
    pub const ALL: [ByteOrder; 4] = [
        ByteOrder::Abcd,
        ByteOrder::Dcba,
        ByteOrder::Badc,
        ByteOrder::Cdab,
    ];

    fn swaps_bytes(self) -> bool {
        matches!(self, ByteOrder::Dcba | ByteOrder::Badc)
    }

    fn reverses_words(self) -> bool {
        matches!(self, ByteOrder::Dcba | ByteOrder::Cdab)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ByteOrder::Abcd => "ABCD",
            ByteOrder::Dcba => "DCBA",
            ByteOrder::Badc => "BADC",
            ByteOrder::Cdab => "CDAB",
        }
    }
}

/// How to turn one entry's raw bits or words into a value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decoding {
    pub data_type: DataType,
    pub order: ByteOrder,
    /// For `bool` in a register table: which bit (0 = least significant) of
    /// the register; without it, the register's being non-zero.
    pub bit: Option<u8>,
    pub scale: f64,
    pub offset: f64,
}

/// Why raw data gave no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("expected {expected} {what}, got {got}")]
    WrongLength {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("bit index {0} is outside a 16-bit register")]
    BitOutOfRange(u8),
    #[error("{} is not a bool; a bit table holds only bools", .0.as_str())]
    NotABitType(DataType),
    #[error("the value is not a finite number (NaN or infinity)")]
    NotFinite,
}

impl Decoding {
    /// The value of an entry in a register table: `raw * scale + offset`.
    /// `words` must be exactly the entry's registers, first address first.
    pub fn decode_words(&self, words: &[u16]) -> Result<f64, DecodeError> {
        let expected = usize::from(self.data_type.words());
        if words.len() != expected {
            return Err(DecodeError::WrongLength {
                what: "registers",
                expected,
                got: words.len(),
            });
        }
        let raw = match self.data_type {
            DataType::Bool => {
                let w = words[0];
                let on = match self.bit {
                    Some(b) if b < 16 => w >> b & 1 == 1,
                    Some(b) => return Err(DecodeError::BitOutOfRange(b)),
                    None => w != 0,
                };
                f64::from(u8::from(on))
            }
            DataType::U16 => f64::from(u16::from_be_bytes(self.ordered::<2>(words))),
            DataType::I16 => f64::from(i16::from_be_bytes(self.ordered::<2>(words))),
            DataType::U32 => f64::from(u32::from_be_bytes(self.ordered::<4>(words))),
            DataType::I32 => f64::from(i32::from_be_bytes(self.ordered::<4>(words))),
            DataType::F32 => f64::from(f32::from_be_bytes(self.ordered::<4>(words))),
            // Above 2^53 an f64 rounds; sensors on a ward count far below that.
            DataType::U64 => u64::from_be_bytes(self.ordered::<8>(words)) as f64,
            DataType::I64 => i64::from_be_bytes(self.ordered::<8>(words)) as f64,
            DataType::F64 => f64::from_be_bytes(self.ordered::<8>(words)),
        };
        self.finish(raw)
    }

    /// The value of an entry in a bit table (coil, discrete input): 0 or 1,
    /// then scaled. `bits` must be exactly one bit.
    pub fn decode_bits(&self, bits: &[bool]) -> Result<f64, DecodeError> {
        if self.data_type != DataType::Bool {
            return Err(DecodeError::NotABitType(self.data_type));
        }
        match bits {
            [b] => self.finish(f64::from(u8::from(*b))),
            _ => Err(DecodeError::WrongLength {
                what: "bits",
                expected: 1,
                got: bits.len(),
            }),
        }
    }

    fn finish(&self, raw: f64) -> Result<f64, DecodeError> {
        let v = raw * self.scale + self.offset;
        if v.is_finite() {
            Ok(v)
        } else {
            Err(DecodeError::NotFinite)
        }
    }

    /// The value's bytes, most significant first, from registers in wire
    /// order. The caller has checked `words.len() * 2 == N`.
    fn ordered<const N: usize>(&self, words: &[u16]) -> [u8; N] {
        let mut out = [0u8; N];
        let n = words.len();
        for (i, chunk) in out.chunks_exact_mut(2).enumerate() {
            let w = if self.order.reverses_words() {
                words[n - 1 - i]
            } else {
                words[i]
            };
            let [hi, lo] = w.to_be_bytes();
            if self.order.swaps_bytes() {
                chunk.copy_from_slice(&[lo, hi]);
            } else {
                chunk.copy_from_slice(&[hi, lo]);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dec(data_type: DataType, order: ByteOrder) -> Decoding {
        Decoding {
            data_type,
            order,
            bit: None,
            scale: 1.0,
            offset: 0.0,
        }
    }

    /// One fixed vector: registers as they arrive on the wire, and the value
    /// worked out by hand from the order table in [`ByteOrder`].
    fn check(data_type: DataType, order: ByteOrder, words: &[u16], expected: f64) {
        assert_eq!(
            dec(data_type, order).decode_words(words),
            Ok(expected),
            "{data_type:?} {order:?} {words:04X?}"
        );
    }

    use ByteOrder::{Abcd, Badc, Cdab, Dcba};
    use DataType::*;

    #[test]
    fn sixteen_bit_types_in_every_order() {
        // Value bytes A=0x12 B=0x34: 0x1234 = 4660.
        // ABCD/CDAB keep the bytes of a word: wire 12 34.
        check(U16, Abcd, &[0x1234], 4660.0);
        check(U16, Cdab, &[0x1234], 4660.0);
        // DCBA/BADC swap them: wire 34 12.
        check(U16, Dcba, &[0x3412], 4660.0);
        check(U16, Badc, &[0x3412], 4660.0);
        // i16 0xFF38 = -(0x10000 - 0xFF38) = -200.
        check(I16, Abcd, &[0xFF38], -200.0);
        check(I16, Cdab, &[0xFF38], -200.0);
        check(I16, Dcba, &[0x38FF], -200.0);
        check(I16, Badc, &[0x38FF], -200.0);
    }

    #[test]
    fn thirty_two_bit_types_in_every_order() {
        // u32 A B C D = 12 34 56 78 = 0x12345678 = 305419896.
        check(U32, Abcd, &[0x1234, 0x5678], 305_419_896.0); // wire 12 34 56 78
        check(U32, Dcba, &[0x7856, 0x3412], 305_419_896.0); // wire 78 56 34 12
        check(U32, Badc, &[0x3412, 0x7856], 305_419_896.0); // wire 34 12 78 56
        check(U32, Cdab, &[0x5678, 0x1234], 305_419_896.0); // wire 56 78 12 34
        // i32 0xFFFE7960 = -(0x1_0000_0000 - 0xFFFE7960) = -100000.
        check(I32, Abcd, &[0xFFFE, 0x7960], -100_000.0);
        check(I32, Dcba, &[0x6079, 0xFEFF], -100_000.0);
        check(I32, Badc, &[0xFEFF, 0x6079], -100_000.0);
        check(I32, Cdab, &[0x7960, 0xFFFE], -100_000.0);
        // f32 21.5 = sign 0, exponent 4+127=131=0x83, mantissa 1.34375 -> 0x41AC0000.
        check(F32, Abcd, &[0x41AC, 0x0000], 21.5);
        check(F32, Dcba, &[0x0000, 0xAC41], 21.5);
        check(F32, Badc, &[0xAC41, 0x0000], 21.5);
        check(F32, Cdab, &[0x0000, 0x41AC], 21.5);
        // f32 -4.25 = sign 1, exponent 2+127=0x81, mantissa 1.0625 -> 0xC0880000.
        check(F32, Cdab, &[0x0000, 0xC088], -4.25);
    }

    #[test]
    fn sixty_four_bit_types_in_every_order() {
        // u64 A..H = 01 23 45 67 89 AB CD EF = 0x0123456789ABCDEF = 81985529216486895.
        let v = 81_985_529_216_486_895_u64 as f64;
        check(U64, Abcd, &[0x0123, 0x4567, 0x89AB, 0xCDEF], v); // A B C D E F G H
        check(U64, Dcba, &[0xEFCD, 0xAB89, 0x6745, 0x2301], v); // H G F E D C B A
        check(U64, Badc, &[0x2301, 0x6745, 0xAB89, 0xEFCD], v); // B A D C F E H G
        check(U64, Cdab, &[0xCDEF, 0x89AB, 0x4567, 0x0123], v); // G H E F C D A B
        // i64 -2 = 0xFFFF_FFFF_FFFF_FFFE.
        check(I64, Abcd, &[0xFFFF, 0xFFFF, 0xFFFF, 0xFFFE], -2.0);
        check(I64, Dcba, &[0xFEFF, 0xFFFF, 0xFFFF, 0xFFFF], -2.0);
        check(I64, Badc, &[0xFFFF, 0xFFFF, 0xFFFF, 0xFEFF], -2.0);
        check(I64, Cdab, &[0xFFFE, 0xFFFF, 0xFFFF, 0xFFFF], -2.0);
        // f64 8.5 = sign 0, exponent 3+1023=1026=0x402, mantissa 1.0625 = .0001 binary
        // -> 0x4021_0000_0000_0000.
        check(F64, Abcd, &[0x4021, 0x0000, 0x0000, 0x0000], 8.5);
        check(F64, Dcba, &[0x0000, 0x0000, 0x0000, 0x2140], 8.5);
        check(F64, Badc, &[0x2140, 0x0000, 0x0000, 0x0000], 8.5);
        check(F64, Cdab, &[0x0000, 0x0000, 0x0000, 0x4021], 8.5);
    }

    #[test]
    fn bools_from_registers_and_bits() {
        // Register 0b0000_0000_0000_1000: bit 3 set, others clear.
        let bit = |b| Decoding {
            bit: Some(b),
            ..dec(Bool, Abcd)
        };
        assert_eq!(bit(3).decode_words(&[0x0008]), Ok(1.0));
        assert_eq!(bit(2).decode_words(&[0x0008]), Ok(0.0));
        // Bit 15 is the high byte's top bit.
        assert_eq!(bit(15).decode_words(&[0x8000]), Ok(1.0));
        assert_eq!(
            bit(16).decode_words(&[0x8000]),
            Err(DecodeError::BitOutOfRange(16))
        );
        // Without a bit index: non-zero register is true.
        assert_eq!(dec(Bool, Abcd).decode_words(&[0x0100]), Ok(1.0));
        assert_eq!(dec(Bool, Abcd).decode_words(&[0x0000]), Ok(0.0));
        assert_eq!(dec(Bool, Abcd).decode_bits(&[true]), Ok(1.0));
        assert_eq!(dec(Bool, Abcd).decode_bits(&[false]), Ok(0.0));
        assert_eq!(
            dec(U16, Abcd).decode_bits(&[true]),
            Err(DecodeError::NotABitType(U16))
        );
    }

    #[test]
    fn scale_and_offset_apply_after_decoding() {
        // i16 215 (0x00D7) tenths of a degree -> 21.5.
        let d = Decoding {
            scale: 0.1,
            ..dec(I16, Abcd)
        };
        assert!((d.decode_words(&[0x00D7]).unwrap() - 21.5).abs() < 1e-9);
        // Raw 4..20 mA as 4000..20000 µA to 0..10 L/min: (12000 * 0.000625) - 2.5 = 5.
        let d = Decoding {
            scale: 0.000_625,
            offset: -2.5,
            ..dec(U16, Abcd)
        };
        assert!((d.decode_words(&[12_000]).unwrap() - 5.0).abs() < 1e-9);
    }

    #[test]
    fn wrong_lengths_and_non_finite_values_are_errors() {
        assert_eq!(
            dec(U32, Abcd).decode_words(&[0x1234]),
            Err(DecodeError::WrongLength {
                what: "registers",
                expected: 2,
                got: 1
            })
        );
        assert!(matches!(
            dec(Bool, Abcd).decode_bits(&[]),
            Err(DecodeError::WrongLength { .. })
        ));
        // f32 NaN 0x7FC00000 and +inf 0x7F800000.
        assert_eq!(
            dec(F32, Abcd).decode_words(&[0x7FC0, 0x0000]),
            Err(DecodeError::NotFinite)
        );
        assert_eq!(
            dec(F32, Abcd).decode_words(&[0x7F80, 0x0000]),
            Err(DecodeError::NotFinite)
        );
    }

    fn any_type() -> impl Strategy<Value = DataType> {
        prop::sample::select(vec![Bool, U16, I16, U32, I32, U64, I64, F32, F64])
    }
    fn any_order() -> impl Strategy<Value = ByteOrder> {
        prop::sample::select(vec![Abcd, Dcba, Badc, Cdab])
    }

    proptest! {
        #[test]
        fn arbitrary_words_never_panic(
            data_type in any_type(),
            order in any_order(),
            bit in proptest::option::of(any::<u8>()),
            scale in any::<f64>(),
            offset in any::<f64>(),
            words in proptest::collection::vec(any::<u16>(), 0..10),
            bits in proptest::collection::vec(any::<bool>(), 0..3),
        ) {
            let d = Decoding { data_type, order, bit, scale, offset };
            if let Ok(v) = d.decode_words(&words) {
                prop_assert!(v.is_finite());
            }
            if let Ok(v) = d.decode_bits(&bits) {
                prop_assert!(v.is_finite());
            }
        }

        #[test]
        fn correct_length_integers_always_decode(
            order in any_order(),
            words in proptest::collection::vec(any::<u16>(), 2),
        ) {
            prop_assert!(dec(U32, order).decode_words(&words).is_ok());
        }
    }
}
