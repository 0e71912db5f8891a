//! Engineering value -> register words or bits, written from the byte-order
//! table in docs/devices/modbus.md alone (it does not share code with the
//! driver's decoder, so a bug in one cannot hide in the other).

use super::{SimDataType, SimTable};

/// Byte order names, spelled out per width: position i on the wire carries
/// value byte `letter - 'A'` (A = most significant).
fn pattern(order: &str, width: usize) -> &'static str {
    match (order, width) {
        ("DCBA" | "BADC", 2) => "BA",
        (_, 2) => "AB",
        ("DCBA", 4) => "DCBA",
        ("BADC", 4) => "BADC",
        ("CDAB", 4) => "CDAB",
        (_, 4) => "ABCD",
        ("DCBA", _) => "HGFEDCBA",
        ("BADC", _) => "BADCFEHG",
        ("CDAB", _) => "GHEFCDAB",
        _ => "ABCDEFGH",
    }
}

/// Big-endian bytes of `value` in `order` on the wire, as 16-bit registers.
fn wire_words(big_endian: &[u8], order: &str) -> Vec<u16> {
    let pat = pattern(order, big_endian.len());
    let wire: Vec<u8> = pat
        .bytes()
        .map(|letter| big_endian[usize::from(letter - b'A')])
        .collect();
    wire.chunks(2)
        .map(|pair| u16::from(pair[0]) << 8 | u16::from(pair[1]))
        .collect()
}

/// The raw number a device stores for engineering `value`, given the map's
/// `value = raw * scale + offset`.
fn raw(value: f64, scale: f64, offset: f64) -> f64 {
    (value - offset) / scale
}

/// The registers a device holds for `value` (register tables only).
/// Integers are rounded and saturate at the type's range, as device firmware does.
pub(crate) fn encode_words(
    data_type: SimDataType,
    order: &str,
    bit: Option<u8>,
    value: f64,
    scale: f64,
    offset: f64,
) -> Vec<u16> {
    let r = raw(value, scale, offset);
    match data_type {
        SimDataType::Bool => {
            let on = r != 0.0;
            match bit {
                Some(b) if b < 16 => vec![u16::from(on) << b],
                _ => vec![u16::from(on)],
            }
        }
        // `as` from f64 rounds toward zero and saturates; round first.
        SimDataType::U16 => wire_words(&(r.round() as u16).to_be_bytes(), order),
        SimDataType::I16 => wire_words(&(r.round() as i16).to_be_bytes(), order),
        SimDataType::U32 => wire_words(&(r.round() as u32).to_be_bytes(), order),
        SimDataType::I32 => wire_words(&(r.round() as i32).to_be_bytes(), order),
        SimDataType::U64 => wire_words(&(r.round() as u64).to_be_bytes(), order),
        SimDataType::I64 => wire_words(&(r.round() as i64).to_be_bytes(), order),
        SimDataType::F32 => wire_words(&(r as f32).to_be_bytes(), order),
        SimDataType::F64 => wire_words(&r.to_be_bytes(), order),
    }
}

/// Registers one entry occupies.
pub(crate) fn width(data_type: SimDataType, table: SimTable) -> u16 {
    if matches!(table, SimTable::Coil | SimTable::DiscreteInput) {
        return 1;
    }
    match data_type {
        SimDataType::Bool | SimDataType::U16 | SimDataType::I16 => 1,
        SimDataType::U32 | SimDataType::I32 | SimDataType::F32 => 2,
        SimDataType::U64 | SimDataType::I64 | SimDataType::F64 => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirty_two_bit_orders_place_bytes_as_the_table_says() {
        // 0x12345678: A=12 B=34 C=56 D=78.
        let be = 0x1234_5678_u32.to_be_bytes();
        assert_eq!(wire_words(&be, "ABCD"), [0x1234, 0x5678]);
        assert_eq!(wire_words(&be, "DCBA"), [0x7856, 0x3412]);
        assert_eq!(wire_words(&be, "BADC"), [0x3412, 0x7856]);
        assert_eq!(wire_words(&be, "CDAB"), [0x5678, 0x1234]);
    }

    #[test]
    fn scaled_values_round_to_the_stored_integer() {
        // 21.46 Cel in tenths: 214.6 -> 215 = 0x00D7.
        assert_eq!(
            encode_words(SimDataType::I16, "ABCD", None, 21.46, 0.1, 0.0),
            [0x00D7]
        );
        // -12.5 Pa as f32 CDAB: -12.5 = 0xC1480000 -> words C D A B = 0000 C148.
        assert_eq!(
            encode_words(SimDataType::F32, "CDAB", None, -12.5, 1.0, 0.0),
            [0x0000, 0xC148]
        );
        // bool on bit 4.
        assert_eq!(
            encode_words(SimDataType::Bool, "ABCD", Some(4), 1.0, 1.0, 0.0),
            [0x0010]
        );
    }
}
