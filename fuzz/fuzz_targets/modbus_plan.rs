#![no_main]
//! The Modbus request planner on an arbitrary register map and limits, and,
//! when the map passes the configuration's validation, one poll cycle of the
//! device answered with arbitrary register words and bits.
//!
//! Asserts, beyond "no panic":
//! - every map entry is read by exactly one request, of its own table, at its
//!   own address, wholly inside the request;
//! - for a valid configuration every request stays within the per-request
//!   limit (registers or bits) and inside the 65536-address space;
//! - one poll cycle answered in full reports each entry exactly once, as a
//!   finite value or as a `NotFinite` decode error (nothing else can fail
//!   when every reply has the right length).

use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use wardgate_drivers::modbus::plan::{PlanLimits, Span, plan};
use wardgate_drivers::modbus::poller::{Outcome, PollerEvent};
use wardgate_drivers::modbus::{
    ByteOrder, DataType, DecodeError, ModbusConfig, Parity, RegisterConfig, Table,
};
use wardgate_model::MetricRegistry;
use wardgate_model::config::Validate;

const TABLES: [Table; 4] = [
    Table::Coil,
    Table::DiscreteInput,
    Table::InputRegister,
    Table::HoldingRegister,
];
const TYPES: [DataType; 9] = DataType::ALL;
const ORDERS: [ByteOrder; 4] = ByteOrder::ALL;

#[derive(Arbitrary, Debug)]
struct Register {
    table: u8,
    address: u16,
    data_type: u8,
    order: u8,
    bit: Option<u8>,
    scale: f64,
    offset: f64,
}

#[derive(Arbitrary, Debug)]
struct Input {
    max_gap: u16,
    max_registers: u16,
    max_bits: u16,
    registers: Vec<Register>,
    /// Register words and bits the device answers with, used in turn.
    words: Vec<u16>,
    bits: Vec<bool>,
}

fn config(input: &Input) -> ModbusConfig {
    let registers = input
        .registers
        .iter()
        .map(|r| RegisterConfig {
            table: TABLES[usize::from(r.table) % TABLES.len()],
            address: r.address,
            data_type: TYPES[usize::from(r.data_type) % TYPES.len()],
            order: ORDERS[usize::from(r.order) % ORDERS.len()],
            scale: r.scale,
            offset: r.offset,
            bit: r.bit,
            metric: "room_temp".to_owned(),
            unit: None,
        })
        .collect();
    ModbusConfig {
        address: Some("127.0.0.1:502".to_owned()),
        port: None,
        baud_rate: 9600,
        parity: Parity::Even,
        stop_bits: 1,
        unit_id: 1,
        poll_interval: Duration::from_secs(5),
        jitter: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        retries: 1,
        failures_before_unreachable: 3,
        backoff_min: Duration::from_secs(1),
        backoff_max: Duration::from_secs(60),
        exceptions_alarm_after: Duration::from_secs(60),
        max_gap: input.max_gap,
        max_registers_per_read: input.max_registers,
        max_bits_per_read: input.max_bits,
        registers,
    }
}

fuzz_target!(|input: Input| {
    let config = config(&input);
    let metrics = MetricRegistry::default();
    let valid = config.validate(&metrics).is_empty();
    let spans: Vec<Span> = config.registers.iter().map(RegisterConfig::span).collect();
    let limits: PlanLimits = config.plan_limits();
    let blocks = plan(&spans, limits);

    let mut seen = vec![0u32; spans.len()];
    for b in &blocks {
        assert!(!b.members.is_empty());
        let end = u32::from(b.start) + u32::from(b.count);
        for &(i, offset) in &b.members {
            let s = spans[i];
            seen[i] += 1;
            assert_eq!(b.table, s.table);
            assert_eq!(u32::from(b.start) + u32::from(offset), u32::from(s.address));
            assert!(
                u32::from(s.address) + u32::from(s.len) <= end,
                "{b:?} {s:?}"
            );
        }
        if valid {
            let limit = if b.table.is_bits() {
                limits.max_bits
            } else {
                limits.max_registers
            };
            assert!(b.count >= 1 && b.count <= limit, "{b:?} limit {limit}");
            assert!(end <= 65_536, "{b:?}");
        }
    }
    assert!(seen.iter().all(|&n| n == 1), "{seen:?}");

    if !valid {
        return;
    }
    // One poll cycle, every request answered in full.
    let mut poller = config.poller("fuzz", &metrics, Instant::now()).unwrap();
    // The first cycle is due at the device's phase (its jitter).
    let now = poller.poll_timeout();
    assert_eq!(poller.plan(), &blocks[..]);
    let mut words = input.words.iter().copied().cycle();
    let mut bits = input.bits.iter().copied().cycle();
    let mut reported = vec![0u32; spans.len()];
    for _ in 0..blocks.len() {
        let block = poller.poll_request(now).expect("a request is due").clone();
        let n = usize::from(block.count);
        let outcome = if block.table.is_bits() {
            Outcome::Bits((0..n).map(|_| bits.next().unwrap_or(false)).collect())
        } else {
            Outcome::Words((0..n).map(|_| words.next().unwrap_or(0)).collect())
        };
        poller.handle_outcome(now, outcome);
        while let Some(event) = poller.poll_event() {
            match event {
                PollerEvent::Value { entry, value, .. } => {
                    assert!(value.is_finite());
                    reported[entry] += 1;
                }
                PollerEvent::DecodeFailed { entry, error } => {
                    assert_eq!(error, DecodeError::NotFinite, "entry {entry}");
                    reported[entry] += 1;
                }
                PollerEvent::Online => {}
                other => panic!("unexpected {other:?} in a fully answered cycle"),
            }
        }
    }
    assert!(poller.poll_request(now).is_none(), "the cycle is over");
    assert!(reported.iter().all(|&n| n == 1), "{reported:?}");
});
