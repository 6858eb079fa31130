//! Micro-benchmarks of frame parsing as a worker does it for every ingress frame: the
//! Ethernet, IPv4 and TCP headers of a full-sized data segment and of a bare ACK, with and
//! without checksum verification.

mod support;

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpAddress, IpProtocol,
    Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber, TcpTimestampRepr,
};
use support::criterion_config;

const SRC_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const DST_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);

/// The TCP payload of a full segment at MTU 1500 with the timestamp option: 1500 minus 20 B
/// of IPv4 header, 20 B of TCP header and 12 B of options.
const FULL_PAYLOAD: usize = 1448;

/// Builds an Ethernet frame carrying an IPv4 TCP segment with `payload_len` bytes, with valid
/// checksums, as the kernel peer would send it.
fn build_frame(payload_len: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..payload_len).map(|i| i as u8).collect();
    let tcp = TcpRepr {
        src_port: 5201,
        dst_port: 49152,
        control: if payload_len > 0 {
            TcpControl::Psh
        } else {
            TcpControl::None
        },
        seq_number: TcpSeqNumber(0x1234_5678),
        ack_number: Some(TcpSeqNumber(0x0abc_def0)),
        window_len: 64_240,
        window_scale: None,
        max_seg_size: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: Some(TcpTimestampRepr::new(1_000, 2_000)),
        payload: &payload,
    };
    let ip = Ipv4Repr {
        src_addr: SRC_IP,
        dst_addr: DST_IP,
        next_header: IpProtocol::Tcp,
        payload_len: tcp.buffer_len(),
        hop_limit: 64,
    };
    let ethernet = EthernetRepr {
        src_addr: EthernetAddress([0x02, 0, 0, 0, 0, 1]),
        dst_addr: EthernetAddress([0x02, 0, 0, 0, 0, 2]),
        ethertype: EthernetProtocol::Ipv4,
    };

    let caps = ChecksumCapabilities::default();
    let mut bytes = vec![0u8; ethernet.buffer_len() + ip.buffer_len() + tcp.buffer_len()];
    let mut frame = EthernetFrame::new_unchecked(&mut bytes[..]);
    ethernet.emit(&mut frame);
    let mut packet = Ipv4Packet::new_unchecked(frame.payload_mut());
    ip.emit(&mut packet, &caps);
    let mut segment = TcpPacket::new_unchecked(packet.payload_mut());
    tcp.emit(
        &mut segment,
        &IpAddress::Ipv4(SRC_IP),
        &IpAddress::Ipv4(DST_IP),
        &caps,
    );
    bytes
}

/// Checks the three headers' lengths and returns the TCP payload length, as the cheapest
/// check before steering a frame.
fn parse_headers(bytes: &[u8]) -> Option<usize> {
    let frame = EthernetFrame::new_checked(bytes).ok()?;
    if frame.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let packet = Ipv4Packet::new_checked(frame.payload()).ok()?;
    if packet.next_header() != IpProtocol::Tcp {
        return None;
    }
    let segment = TcpPacket::new_checked(packet.payload()).ok()?;
    Some(segment.payload().len())
}

/// Parses the frame into smoltcp's high-level representations, verifying the IPv4 and TCP
/// checksums, as the interface does before it hands the segment to a socket.
fn parse_reprs(bytes: &[u8], caps: &ChecksumCapabilities) -> Option<usize> {
    let frame = EthernetFrame::new_checked(bytes).ok()?;
    EthernetRepr::parse(&frame).ok()?;
    let packet = Ipv4Packet::new_checked(frame.payload()).ok()?;
    let ip = Ipv4Repr::parse(&packet, caps).ok()?;
    let segment = TcpPacket::new_checked(packet.payload()).ok()?;
    let src = IpAddress::Ipv4(ip.src_addr);
    let dst = IpAddress::Ipv4(ip.dst_addr);
    let tcp = TcpRepr::parse(&segment, &src, &dst, caps).ok()?;
    Some(tcp.payload.len())
}

fn frame_parsing(c: &mut Criterion) {
    let caps = ChecksumCapabilities::default();
    let no_checksums = ChecksumCapabilities::ignored();

    for (name, payload_len) in [("full segment", FULL_PAYLOAD), ("bare ack", 0)] {
        let bytes = build_frame(payload_len);
        assert_eq!(parse_headers(&bytes), Some(payload_len));
        assert_eq!(parse_reprs(&bytes, &caps), Some(payload_len));

        let mut group = c.benchmark_group(format!("frame parse, {name}"));
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function("header checks", |b| {
            b.iter(|| parse_headers(black_box(&bytes)))
        });
        group.bench_function("reprs with checksums", |b| {
            b.iter(|| parse_reprs(black_box(&bytes), &caps))
        });
        group.bench_function("reprs without checksums", |b| {
            b.iter(|| parse_reprs(black_box(&bytes), &no_checksums))
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = criterion_config();
    targets = frame_parsing
}
criterion_main!(benches);
