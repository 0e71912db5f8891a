//! IEEE 11073-20601 SFLOAT (16 bit) and FLOAT (32 bit), as the health
//! profiles carry them. Special values (NaN, NRes, ±INF, reserved) are not
//! numbers: they become [`Unavailability`], never an `f64`.

/// Why a measured value is not a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unavailability {
    /// IEEE 11073 NaN: the device has no value.
    NaN,
    /// IEEE 11073 NRes: not at this resolution.
    NRes,
    /// IEEE 11073 +INF: above the device's range.
    PositiveInfinity,
    /// IEEE 11073 −INF: below the device's range.
    NegativeInfinity,
    /// The IEEE 11073 reserved special value.
    ReservedSpecial,
    /// 0xFFFF in a weight-scale or body-composition field: measurement unsuccessful.
    Unsuccessful,
    /// A glucose control-solution test: not a patient sample.
    ControlSolution,
    /// The device itself flagged the measurement as unavailable or invalid.
    FlaggedByDevice,
}

impl Unavailability {
    pub const fn as_str(self) -> &'static str {
        match self {
            Unavailability::NaN => "nan",
            Unavailability::NRes => "nres",
            Unavailability::PositiveInfinity => "positive_infinity",
            Unavailability::NegativeInfinity => "negative_infinity",
            Unavailability::ReservedSpecial => "reserved_special_value",
            Unavailability::Unsuccessful => "measurement_unsuccessful",
            Unavailability::ControlSolution => "control_solution",
            Unavailability::FlaggedByDevice => "flagged_by_device",
        }
    }
}

/// `m × 10^exponent`, rounded once for negative exponents (36.5 is
/// `365 / 10`, not `365 × 0.1`).
fn scale(m: f64, exponent: i32) -> f64 {
    if exponent >= 0 {
        m * 10f64.powi(exponent)
    } else {
        m / 10f64.powi(-exponent)
    }
}

/// A decoded number as sent: `mantissa × 10^exponent`. Unit conversions are
/// applied before the decimal scaling so that exact ones stay exact
/// (52 × 10⁻⁵ kg/L is 52 mg/dL, not 51.99999999999999).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decimal {
    pub mantissa: i32,
    pub exponent: i32,
}

impl Decimal {
    pub fn to_f64(self) -> f64 {
        scale(f64::from(self.mantissa), self.exponent)
    }

    /// `self × factor`.
    pub fn times(self, factor: f64) -> f64 {
        scale(f64::from(self.mantissa) * factor, self.exponent)
    }

    /// `(self − 32) × 5/9`, for a temperature in °F.
    pub fn fahrenheit_to_celsius(self) -> f64 {
        let m = f64::from(self.mantissa);
        if self.exponent >= 0 {
            (scale(m, self.exponent) - 32.0) * 5.0 / 9.0
        } else {
            let p = 10f64.powi(-self.exponent);
            (m - 32.0 * p) * 5.0 / (9.0 * p)
        }
    }
}

/// Decodes a little-endian-read SFLOAT: 4-bit signed exponent, 12-bit signed mantissa.
pub fn sfloat(raw: u16) -> Result<f64, Unavailability> {
    sfloat_decimal(raw).map(Decimal::to_f64)
}

/// Decodes a FLOAT: 8-bit signed exponent, 24-bit signed mantissa.
pub fn float(raw: u32) -> Result<f64, Unavailability> {
    float_decimal(raw).map(Decimal::to_f64)
}

/// [`sfloat`], keeping mantissa and exponent.
pub fn sfloat_decimal(raw: u16) -> Result<Decimal, Unavailability> {
    match raw {
        0x07FF => return Err(Unavailability::NaN),
        0x0800 => return Err(Unavailability::NRes),
        0x07FE => return Err(Unavailability::PositiveInfinity),
        0x0802 => return Err(Unavailability::NegativeInfinity),
        0x0801 => return Err(Unavailability::ReservedSpecial),
        _ => {}
    }
    // Sign-extend by shifting into the top of an i16/i32 and back.
    let exponent = i32::from((raw as i16) >> 12);
    let mantissa = i32::from(((raw << 4) as i16) >> 4);
    Ok(Decimal { mantissa, exponent })
}

/// [`float`], keeping mantissa and exponent.
pub fn float_decimal(raw: u32) -> Result<Decimal, Unavailability> {
    match raw {
        0x007F_FFFF => return Err(Unavailability::NaN),
        0x0080_0000 => return Err(Unavailability::NRes),
        0x007F_FFFE => return Err(Unavailability::PositiveInfinity),
        0x0080_0002 => return Err(Unavailability::NegativeInfinity),
        0x0080_0001 => return Err(Unavailability::ReservedSpecial),
        _ => {}
    }
    let exponent = (raw as i32) >> 24;
    let mantissa = ((raw << 8) as i32) >> 8;
    Ok(Decimal { mantissa, exponent })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sfloat_values() {
        // exponent 0xF = -1, mantissa 0x16D = 365 → 36.5
        assert_eq!(sfloat(0xF16D), Ok(36.5));
        // exponent 0, mantissa 120
        assert_eq!(sfloat(0x0078), Ok(120.0));
        // exponent 0, mantissa 0xFFF = -1
        assert_eq!(sfloat(0x0FFF), Ok(-1.0));
        // exponent 2, mantissa 3 → 300
        assert_eq!(sfloat(0x2003), Ok(300.0));
        // exponent -2 (0xE), mantissa 0x800 = -2048 → -20.48 (a number: not exponent 0)
        assert_eq!(sfloat(0xE800), Ok(-20.48));
        // largest mantissa 2045 at exponent 0 is still a number
        assert_eq!(sfloat(0x07FD), Ok(2045.0));
    }

    #[test]
    fn sfloat_specials_are_unavailable() {
        assert_eq!(sfloat(0x07FF), Err(Unavailability::NaN));
        assert_eq!(sfloat(0x0800), Err(Unavailability::NRes));
        assert_eq!(sfloat(0x07FE), Err(Unavailability::PositiveInfinity));
        assert_eq!(sfloat(0x0802), Err(Unavailability::NegativeInfinity));
        assert_eq!(sfloat(0x0801), Err(Unavailability::ReservedSpecial));
    }

    #[test]
    fn float_values_and_specials() {
        // exponent 0xFE = -2, mantissa 0x000E42 = 3650 → 36.50
        assert_eq!(float(0xFE00_0E42), Ok(36.5));
        // exponent 0xFF = -1, mantissa 0xFFFFFF = -1 → -0.1
        assert_eq!(float(0xFFFF_FFFF), Ok(-0.1));
        // exponent 1, mantissa 7 → 70
        assert_eq!(float(0x0100_0007), Ok(70.0));
        assert_eq!(float(0x007F_FFFF), Err(Unavailability::NaN));
        assert_eq!(float(0x0080_0000), Err(Unavailability::NRes));
        assert_eq!(float(0x007F_FFFE), Err(Unavailability::PositiveInfinity));
        assert_eq!(float(0x0080_0002), Err(Unavailability::NegativeInfinity));
        assert_eq!(float(0x0080_0001), Err(Unavailability::ReservedSpecial));
    }

    #[test]
    fn conversions_round_once() {
        // 52 × 10^-5 kg/L → 52 mg/dL exactly
        assert_eq!(
            Decimal {
                mantissa: 52,
                exponent: -5
            }
            .times(100_000.0),
            52.0
        );
        // 98.6 °F → 37 °C exactly
        assert_eq!(
            Decimal {
                mantissa: 986,
                exponent: -1
            }
            .fahrenheit_to_celsius(),
            37.0
        );
        // 212 °F → 100 °C
        assert_eq!(
            Decimal {
                mantissa: 212,
                exponent: 0
            }
            .fahrenheit_to_celsius(),
            100.0
        );
    }

    proptest::proptest! {
        #[test]
        fn every_sfloat_is_finite_or_unavailable(raw: u16) {
            if let Ok(v) = sfloat(raw) { proptest::prop_assert!(v.is_finite()); }
        }
        #[test]
        fn every_float_is_finite_or_unavailable(raw: u32) {
            if let Ok(v) = float(raw) { proptest::prop_assert!(v.is_finite()); }
        }
    }
}
