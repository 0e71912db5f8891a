#![no_main]
//! Modbus register decoding with every data type and byte/word order the
//! configuration offers, on arbitrary words, bits, bit index, scale and offset.
//!
//! Asserts, beyond "no panic":
//! - a decoded value is finite; a wrong number of words or bits is an error;
//! - round trip: a value's bytes laid on the wire in each order as the table
//!   in docs/devices/modbus.md says decode (scale 1, offset 0) to exactly the
//!   number the big-endian bytes are, or to `NotFinite` for NaN and infinity.

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use wardgate_drivers::modbus::{ByteOrder, DataType, DecodeError, Decoding};

const TYPES: [DataType; 9] = DataType::ALL;
const ORDERS: [ByteOrder; 4] = ByteOrder::ALL;

#[derive(Arbitrary, Debug)]
struct Input {
    data_type: u8,
    order: u8,
    bit: Option<u8>,
    scale: f64,
    offset: f64,
    words: Vec<u16>,
    bits: Vec<bool>,
    /// A value's bytes, most significant first.
    value: [u8; 8],
}

/// Which value byte (0 = A, the most significant) travels in each wire
/// position: the table in docs/devices/modbus.md, written out.
fn wire_pattern(order: ByteOrder, width: usize) -> &'static [usize] {
    use ByteOrder::{Abcd, Badc, Cdab, Dcba};
    match (order, width) {
        (Abcd | Cdab, 2) => &[0, 1],
        (Dcba | Badc, 2) => &[1, 0],
        (Abcd, 4) => &[0, 1, 2, 3],
        (Dcba, 4) => &[3, 2, 1, 0],
        (Badc, 4) => &[1, 0, 3, 2],
        (Cdab, 4) => &[2, 3, 0, 1],
        (Abcd, _) => &[0, 1, 2, 3, 4, 5, 6, 7],
        (Dcba, _) => &[7, 6, 5, 4, 3, 2, 1, 0],
        (Badc, _) => &[1, 0, 3, 2, 5, 4, 7, 6],
        (Cdab, _) => &[6, 7, 4, 5, 2, 3, 0, 1],
    }
}

/// The number the big-endian bytes `be` are, read as `data_type`.
fn big_endian_value(data_type: DataType, be: &[u8]) -> f64 {
    let b2 = || <[u8; 2]>::try_from(be).unwrap();
    let b4 = || <[u8; 4]>::try_from(be).unwrap();
    let b8 = || <[u8; 8]>::try_from(be).unwrap();
    match data_type {
        DataType::Bool => unreachable!("bools are checked apart"),
        DataType::U16 => f64::from(u16::from_be_bytes(b2())),
        DataType::I16 => f64::from(i16::from_be_bytes(b2())),
        DataType::U32 => f64::from(u32::from_be_bytes(b4())),
        DataType::I32 => f64::from(i32::from_be_bytes(b4())),
        DataType::F32 => f64::from(f32::from_be_bytes(b4())),
        DataType::U64 => u64::from_be_bytes(b8()) as f64,
        DataType::I64 => i64::from_be_bytes(b8()) as f64,
        DataType::F64 => f64::from_be_bytes(b8()),
    }
}

fuzz_target!(|input: Input| {
    let data_type = TYPES[usize::from(input.data_type) % TYPES.len()];
    let order = ORDERS[usize::from(input.order) % ORDERS.len()];
    let d = Decoding {
        data_type,
        order,
        bit: input.bit,
        scale: input.scale,
        offset: input.offset,
    };

    // Arbitrary words and bits with arbitrary scaling.
    match d.decode_words(&input.words) {
        Ok(v) => assert!(v.is_finite()),
        Err(e) => {
            if input.words.len() != usize::from(data_type.words()) {
                assert!(matches!(e, DecodeError::WrongLength { .. }), "{e}");
            }
        }
    }
    match d.decode_bits(&input.bits) {
        Ok(v) => {
            assert!(v.is_finite());
            assert_eq!(data_type, DataType::Bool);
            assert_eq!(input.bits.len(), 1);
        }
        Err(e) if data_type != DataType::Bool => {
            assert_eq!(e, DecodeError::NotABitType(data_type));
        }
        Err(_) => {}
    }

    // Round trip through the documented wire layout, every order.
    for order in ORDERS {
        let exact = Decoding {
            data_type,
            order,
            bit: input.bit,
            scale: 1.0,
            offset: 0.0,
        };
        if data_type == DataType::Bool {
            let w = u16::from_be_bytes([input.value[0], input.value[1]]);
            let expected = match input.bit {
                Some(b) if b >= 16 => Err(DecodeError::BitOutOfRange(b)),
                Some(b) => Ok(f64::from(w >> b & 1)),
                None => Ok(f64::from(u8::from(w != 0))),
            };
            assert_eq!(exact.decode_words(&[w]), expected);
            continue;
        }
        let width = usize::from(data_type.words()) * 2;
        let be = &input.value[..width];
        let wire: Vec<u8> = wire_pattern(order, width).iter().map(|&i| be[i]).collect();
        let words: Vec<u16> = wire
            .chunks(2)
            .map(|p| u16::from_be_bytes([p[0], p[1]]))
            .collect();
        let expected = big_endian_value(data_type, be);
        let got = exact.decode_words(&words);
        if expected.is_finite() {
            assert_eq!(got, Ok(expected), "{data_type:?} {order:?} {words:04X?}");
        } else {
            assert_eq!(got, Err(DecodeError::NotFinite), "{data_type:?} {order:?}");
        }
    }
});
