//! Micro-benchmarks of the per-frame decisions a worker makes before smoltcp sees a frame:
//! which worker owns it (flow steering) and, with offload, the SYN MSS check and the egress
//! virtio header.

mod support;

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{Criterion, criterion_group, criterion_main};
use netcon_dataplane::offload::{VNET_HDR_LEN, prepare_egress, raise_syn_mss};
use netcon_dataplane::steer::{owner, steer};
use support::criterion_config;

/// An Ethernet + IPv4 + TCP data frame from 10.77.0.1:5201 to port 49152, `payload` bytes long.
fn tcp_frame(payload: usize) -> Vec<u8> {
    let total = 40 + payload;
    let mut frame = vec![0u8; 14 + total];
    frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    frame[14] = 0x45;
    frame[16..18].copy_from_slice(&(total as u16).to_be_bytes());
    frame[23] = 6;
    frame[26..30].copy_from_slice(&[10, 77, 0, 1]);
    frame[30..34].copy_from_slice(&[10, 77, 0, 2]);
    frame[34..36].copy_from_slice(&5201u16.to_be_bytes());
    frame[36..38].copy_from_slice(&49152u16.to_be_bytes());
    frame[46] = 5 << 4;
    frame[47] = 0x18;
    frame
}

fn steering(c: &mut Criterion) {
    let frame = tcp_frame(1448);
    c.bench_function("steer tcp frame, 4 workers", |b| {
        b.iter(|| steer(black_box(&frame), 14, 4))
    });
    c.bench_function("owner of a 4-tuple, 4 workers", |b| {
        b.iter(|| {
            owner(
                black_box(Ipv4Addr::new(10, 77, 0, 1)),
                5201,
                black_box(49152),
                4,
            )
        })
    });

    let mut data = tcp_frame(1448);
    c.bench_function("syn mss check on a data frame", |b| {
        b.iter(|| raise_syn_mss(black_box(&mut data), 14, 1460))
    });
    let mut large = tcp_frame(64_000);
    let mut header = [0u8; VNET_HDR_LEN];
    c.bench_function("egress virtio header, 64 KB segment", |b| {
        b.iter(|| prepare_egress(&mut header, black_box(&mut large), 14, 1460))
    });
}

criterion_group! {
    name = benches;
    config = criterion_config();
    targets = steering
}
criterion_main!(benches);
