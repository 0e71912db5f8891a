//! Coalescing planner: the fewest read requests that cover a register map.
//!
//! Planned once at startup from the configuration; pure and deterministic.
//! Entries of one table whose addresses lie within `max_gap` of each other
//! share a request as long as the request stays within the protocol's (or the
//! device's) limit: 125 registers or 2000 bits per read.

use super::register::Table;

/// The most registers one read (0x03/0x04) may return (Modbus Application
/// Protocol 1.1b3, §6.3/§6.4: quantity 1 to 125).
pub const MAX_REGISTERS_PER_READ: u16 = 125;
/// The most coils or discrete inputs one read (0x01/0x02) may return (§6.1/§6.2: 1 to 2000).
pub const MAX_BITS_PER_READ: u16 = 2000;

/// Where one map entry lives: its table, first address and length (registers or bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub table: Table,
    pub address: u16,
    pub len: u16,
}

impl Span {
    /// One past the last address (may be 65536).
    fn end(self) -> u32 {
        u32::from(self.address) + u32::from(self.len)
    }
}

/// How far the planner may stretch a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanLimits {
    /// Unmapped addresses a request may read through to join two entries.
    /// 0 reads only mapped addresses (for devices that reject the others).
    pub max_gap: u16,
    /// At most this many registers per request (1..=125).
    pub max_registers: u16,
    /// At most this many bits per request (1..=2000).
    pub max_bits: u16,
}

impl Default for PlanLimits {
    fn default() -> Self {
        Self {
            max_gap: 8,
            max_registers: MAX_REGISTERS_PER_READ,
            max_bits: MAX_BITS_PER_READ,
        }
    }
}

/// One read request and the entries it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadBlock {
    pub table: Table,
    pub start: u16,
    pub count: u16,
    /// Indices into the planned spans, each with its offset from `start`.
    pub members: Vec<(usize, u16)>,
}

/// Plans the requests for `spans`: grouped by table (in [`Table`] order),
/// then greedily by address. Greedy is optimal here: after sorting by
/// address, extending the current request as far as the limits allow never
/// forces more requests later. A span longer than the per-request limit
/// (impossible for the types this driver knows) gets a request of its own.
pub fn plan(spans: &[Span], limits: PlanLimits) -> Vec<ReadBlock> {
    let mut order: Vec<usize> = (0..spans.len()).collect();
    order.sort_by_key(|&i| (spans[i].table, spans[i].address, spans[i].len));
    let mut blocks: Vec<ReadBlock> = Vec::new();
    // End (exclusive) of the open block, tracked wide to allow address 65535 + len.
    let mut open_end = 0u32;
    for i in order {
        let s = spans[i];
        let max = u32::from(if s.table.is_bits() {
            limits.max_bits
        } else {
            limits.max_registers
        })
        .max(1);
        if let Some(b) = blocks.last_mut() {
            let new_end = open_end.max(s.end());
            let fits = b.table == s.table
                && u32::from(s.address) <= open_end + u32::from(limits.max_gap)
                && new_end - u32::from(b.start) <= max;
            if fits {
                open_end = new_end;
                b.count = (new_end - u32::from(b.start)) as u16;
                b.members.push((i, s.address - b.start));
                continue;
            }
        }
        open_end = s.end();
        blocks.push(ReadBlock {
            table: s.table,
            start: s.address,
            count: s.len,
            members: vec![(i, 0)],
        });
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;
    use Table::{Coil, DiscreteInput, HoldingRegister, InputRegister};

    fn span(table: Table, address: u16, len: u16) -> Span {
        Span {
            table,
            address,
            len,
        }
    }

    #[test]
    fn realistic_ward_map_needs_five_requests() {
        // A ward room controller as vendors document them (addresses 0-based):
        let spans = [
            // input registers 0..=9: temperature (i16), humidity (u16),
            // CO2 (u16), O2 flow (f32, 2 regs at 4-5), diff pressure (f32 at 8-9).
            span(InputRegister, 0, 1),
            span(InputRegister, 1, 1),
            span(InputRegister, 2, 1),
            span(InputRegister, 4, 2),
            span(InputRegister, 8, 2),
            // energy counter (u64) at 100..=103: 90 registers past the last, so apart.
            span(InputRegister, 100, 4),
            // holding registers: setpoints at 200 (i16) and 203 (i16).
            span(HoldingRegister, 200, 1),
            span(HoldingRegister, 203, 1),
            // discrete inputs: door contact 0, alarm 1, bed exit 12.
            span(DiscreteInput, 0, 1),
            span(DiscreteInput, 1, 1),
            span(DiscreteInput, 12, 1),
        ];
        let blocks = plan(&spans, PlanLimits::default());
        // Expected by hand with max_gap 8:
        //   discrete inputs 0..=12 (gap 10 > 8? 1 -> 12 leaves addresses 2..=11 = 10 unmapped)
        //     -> two requests: [0,2) and [12,13)
        //   input registers [0,10) (gaps 3, 6..=7 are within 8) and [100,104)
        //   holding registers [200,204) (gap 201..=202 = 2)
        // Tables are planned in Table order: coil, discrete input, input, holding.
        let got: Vec<(Table, u16, u16)> =
            blocks.iter().map(|b| (b.table, b.start, b.count)).collect();
        assert_eq!(
            got,
            [
                (DiscreteInput, 0, 2),
                (DiscreteInput, 12, 1),
                (InputRegister, 0, 10),
                (InputRegister, 100, 4),
                (HoldingRegister, 200, 4),
            ]
        );
        // 11 entries in 5 requests instead of 11.
        assert_eq!(blocks.len(), 5);
        // The f32 at input register 8 is read at offset 8 of the first input request.
        assert!(blocks[2].members.contains(&(4, 8)));
    }

    #[test]
    fn a_gap_of_zero_reads_only_adjacent_entries() {
        let spans = [
            span(HoldingRegister, 0, 2),
            span(HoldingRegister, 2, 1),
            span(HoldingRegister, 4, 1),
        ];
        let limits = PlanLimits {
            max_gap: 0,
            ..PlanLimits::default()
        };
        let got: Vec<(u16, u16)> = plan(&spans, limits)
            .iter()
            .map(|b| (b.start, b.count))
            .collect();
        assert_eq!(got, [(0, 3), (4, 1)]);
    }

    #[test]
    fn requests_stop_at_the_protocol_limit() {
        // 130 consecutive u16 registers: 125 in the first request, 5 in the second.
        let spans: Vec<Span> = (0..130).map(|a| span(InputRegister, a, 1)).collect();
        let got: Vec<(u16, u16)> = plan(&spans, PlanLimits::default())
            .iter()
            .map(|b| (b.start, b.count))
            .collect();
        assert_eq!(got, [(0, 125), (125, 5)]);
        // 2001 coils: 2000 then 1.
        let spans: Vec<Span> = (0..2001).map(|a| span(Coil, a, 1)).collect();
        let got: Vec<(u16, u16)> = plan(&spans, PlanLimits::default())
            .iter()
            .map(|b| (b.start, b.count))
            .collect();
        assert_eq!(got, [(0, 2000), (2000, 1)]);
        // A u32 straddling register 124/125 must not be split: it starts the next request.
        let mut spans: Vec<Span> = (0..124).map(|a| span(InputRegister, a, 1)).collect();
        spans.push(span(InputRegister, 124, 2));
        let got: Vec<(u16, u16)> = plan(&spans, PlanLimits::default())
            .iter()
            .map(|b| (b.start, b.count))
            .collect();
        assert_eq!(got, [(0, 124), (124, 2)]);
    }

    #[test]
    fn overlapping_entries_and_the_top_of_the_address_space() {
        // A bool on bit 3 of register 10 and a u16 of the same register share it.
        let spans = [
            span(HoldingRegister, 65_532, 4),
            span(HoldingRegister, 10, 1),
            span(HoldingRegister, 10, 1),
        ];
        let blocks = plan(&spans, PlanLimits::default());
        let got: Vec<(u16, u16, usize)> = blocks
            .iter()
            .map(|b| (b.start, b.count, b.members.len()))
            .collect();
        assert_eq!(got, [(10, 1, 2), (65_532, 4, 1)]);
    }
}
