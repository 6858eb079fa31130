//! Micro-benchmarks of the RPC message encoding, which every intercepted socket call pays twice.

mod support;

use criterion::{Criterion, criterion_group, criterion_main};
use netcon_control::{Op, Reply, Request, WireAddr};
use std::hint::black_box;
use support::criterion_config;

fn rpc_encode_decode(c: &mut Criterion) {
    let mut request = Request::new(Op::Connect);
    request.addr = WireAddr(Some("10.77.0.1:5201".parse().unwrap()));
    let bytes = request.encode();
    c.bench_function("request encode", |b| {
        b.iter(|| black_box(&request).encode())
    });
    c.bench_function("request decode", |b| {
        b.iter(|| Request::decode(black_box(&bytes)))
    });

    let reply = Reply::ok(3);
    let bytes = reply.encode();
    c.bench_function("reply decode", |b| {
        b.iter(|| Reply::decode(black_box(&bytes)))
    });
}

criterion_group! {
    name = benches;
    config = criterion_config();
    targets = rpc_encode_decode
}
criterion_main!(benches);
