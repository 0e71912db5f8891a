//! Record Access Control Point (GLS 1.0, 0x2A52): the requests the glucose
//! driver writes and the indications a meter answers with. Pure codec.

use super::{Characteristic, DecodeError, DecodeReason};

const OP_REPORT_STORED_RECORDS: u8 = 0x01;
const OP_NUMBER_OF_RECORDS_RESPONSE: u8 = 0x05;
const OP_RESPONSE_CODE: u8 = 0x06;
const OPERATOR_NULL: u8 = 0x00;
const OPERATOR_ALL: u8 = 0x01;
const OPERATOR_GREATER_OR_EQUAL: u8 = 0x03;
const FILTER_SEQUENCE_NUMBER: u8 = 0x01;

/// "Report stored records" for every record (when nothing was seen yet) or
/// for sequence numbers ≥ `from`.
pub fn report_records_request(from: Option<u16>) -> Vec<u8> {
    match from {
        None => vec![OP_REPORT_STORED_RECORDS, OPERATOR_ALL],
        Some(seq) => {
            let [lo, hi] = seq.to_le_bytes();
            vec![
                OP_REPORT_STORED_RECORDS,
                OPERATOR_GREATER_OR_EQUAL,
                FILTER_SEQUENCE_NUMBER,
                lo,
                hi,
            ]
        }
    }
}

/// What the meter indicated on the RACP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RacpResponse {
    /// Op code 0x06: the outcome of `request` (an op code).
    Response { request: u8, code: RacpCode },
    /// Op code 0x05: how many records match.
    NumberOfRecords(u16),
}

/// RACP response code values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RacpCode {
    Success,
    OpCodeNotSupported,
    InvalidOperator,
    OperatorNotSupported,
    InvalidOperand,
    NoRecordsFound,
    AbortUnsuccessful,
    ProcedureNotCompleted,
    OperandNotSupported,
}

impl RacpCode {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0x01 => RacpCode::Success,
            0x02 => RacpCode::OpCodeNotSupported,
            0x03 => RacpCode::InvalidOperator,
            0x04 => RacpCode::OperatorNotSupported,
            0x05 => RacpCode::InvalidOperand,
            0x06 => RacpCode::NoRecordsFound,
            0x07 => RacpCode::AbortUnsuccessful,
            0x08 => RacpCode::ProcedureNotCompleted,
            0x09 => RacpCode::OperandNotSupported,
            _ => return None,
        })
    }
}

/// Decodes an RACP indication.
pub fn decode_response(payload: &[u8]) -> Result<RacpResponse, DecodeError> {
    let err = |reason| DecodeError {
        characteristic: Characteristic::RecordAccessControlPoint,
        reason,
    };
    let truncated = |field, end| {
        err(DecodeReason::Truncated {
            field,
            start: 2,
            end,
            len: payload.len(),
        })
    };
    match payload {
        [] => Err(err(DecodeReason::Empty)),
        [OP_RESPONSE_CODE, OPERATOR_NULL, request, code, ..] => RacpCode::from_u8(*code)
            .map(|code| RacpResponse::Response {
                request: *request,
                code,
            })
            .ok_or(err(DecodeReason::Reserved {
                field: "RACP response code value",
                value: u32::from(*code),
            })),
        [OP_RESPONSE_CODE, ..] => Err(truncated("request op code and response code", 4)),
        [OP_NUMBER_OF_RECORDS_RESPONSE, OPERATOR_NULL, lo, hi, ..] => {
            Ok(RacpResponse::NumberOfRecords(u16::from_le_bytes([
                *lo, *hi,
            ])))
        }
        [OP_NUMBER_OF_RECORDS_RESPONSE, ..] => Err(truncated("number of records", 4)),
        [op, ..] => Err(err(DecodeReason::Reserved {
            field: "RACP response op code",
            value: u32::from(*op),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        // op 0x01 report stored records, operator 0x01 all records
        assert_eq!(report_records_request(None), [0x01, 0x01]);
        // op 0x01, operator 0x03 ≥, filter type 0x01 sequence number, 0x012C = 300
        assert_eq!(
            report_records_request(Some(300)),
            [0x01, 0x03, 0x01, 0x2C, 0x01]
        );
    }

    #[test]
    fn responses() {
        // op 0x06 response code, operator null, request op 0x01, 0x01 success
        assert_eq!(
            decode_response(&[0x06, 0x00, 0x01, 0x01]),
            Ok(RacpResponse::Response {
                request: 0x01,
                code: RacpCode::Success
            })
        );
        // 0x06 no records found
        assert_eq!(
            decode_response(&[0x06, 0x00, 0x01, 0x06]),
            Ok(RacpResponse::Response {
                request: 0x01,
                code: RacpCode::NoRecordsFound
            })
        );
        // op 0x05 number of stored records, operator null, 0x0003
        assert_eq!(
            decode_response(&[0x05, 0x00, 0x03, 0x00]),
            Ok(RacpResponse::NumberOfRecords(3))
        );
        assert!(decode_response(&[0x06, 0x00, 0x01, 0x00]).is_err());
        assert!(decode_response(&[0x06, 0x00]).is_err());
        assert!(decode_response(&[0x02]).is_err());
        assert!(decode_response(&[]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..8)) {
            let _ = decode_response(&bytes);
        }
    }
}
