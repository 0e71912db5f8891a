//! Codec throughput: `cargo bench -p wardgate-drivers --bench pump`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wardgate_drivers::pump::codec::{FrameDecoder, decode};
use wardgate_drivers::pump::state::parse_status;

const STATUS: &[u8] =
    b"!INF^8002-51740^NONE^INFUSING^125.00^ml/h^-^42.125^ml^35^mmHg^3:42^EV^1234|0000\r";

fn status_wire() -> Vec<u8> {
    // Re-encode so the CRC is right whatever the text above says.
    let body = &STATUS[1..STATUS.len() - 6];
    let fields = std::str::from_utf8(body).unwrap().split('^');
    wardgate_drivers::pump::Frame::new(fields).unwrap().encode()
}

fn codec(c: &mut Criterion) {
    let wire = status_wire();
    let mut group = c.benchmark_group("pump_codec");
    group.throughput(Throughput::Bytes(wire.len() as u64));
    group.bench_function("decode_status_frame", |b| {
        b.iter(|| decode(black_box(&wire)));
    });
    group.bench_function("decode_and_parse_status", |b| {
        b.iter(|| match decode(black_box(&wire)) {
            wardgate_drivers::pump::codec::Decoded::Frame { frame, .. } => {
                parse_status(&frame).ok()
            }
            _ => None,
        });
    });
    let frame = match decode(&wire) {
        wardgate_drivers::pump::codec::Decoded::Frame { frame, .. } => frame,
        other => panic!("bench input does not decode: {other:?}"),
    };
    group.bench_function("encode_status_frame", |b| {
        b.iter(|| black_box(&frame).encode());
    });
    // A noisy stream: 10 frames with garbage between them, fed in 7-byte chunks.
    let mut stream = Vec::new();
    for _ in 0..10 {
        stream.extend_from_slice(b"\x00\xffnoise\r");
        stream.extend_from_slice(&wire);
    }
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_function("stream_with_garbage", |b| {
        b.iter(|| {
            let mut dec = FrameDecoder::new();
            let mut n = 0;
            for chunk in stream.chunks(7) {
                dec.feed(chunk, |r| n += usize::from(r.is_ok()));
            }
            n
        });
    });
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
