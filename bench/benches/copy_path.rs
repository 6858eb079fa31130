//! Micro-benchmark of the egress copy path on an in-process device: bytes a program wrote to
//! its socketpair end are peeked into a smoltcp socket's send buffer and consumed from the
//! socketpair, as a worker does, then carried over smoltcp's loopback device to a second
//! socket and read out. One iteration moves 64 KiB.

mod support;

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::phy::{Loopback, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};
use support::criterion_config;

const CHUNK: usize = 64 * 1024;

fn tcp_socket() -> tcp::Socket<'static> {
    tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 1 << 20]),
        tcp::SocketBuffer::new(vec![0; 1 << 20]),
    )
}

fn copy_path(c: &mut Criterion) {
    let mut device = Loopback::new(Medium::Ip);
    let mut iface = Interface::new(Config::new(HardwareAddress::Ip), &mut device, Instant::ZERO);
    iface.update_ip_addrs(|addrs| {
        addrs
            .push(IpCidr::new(IpAddress::v4(127, 0, 0, 1), 8))
            .unwrap()
    });
    let mut sockets = SocketSet::new(Vec::new());
    let server = sockets.add(tcp_socket());
    let client = sockets.add(tcp_socket());
    sockets.get_mut::<tcp::Socket>(server).listen(7000).unwrap();
    let cx = iface.context();
    sockets
        .get_mut::<tcp::Socket>(client)
        .connect(cx, (IpAddress::v4(127, 0, 0, 1), 7000), 40000)
        .unwrap();
    let mut now = Instant::ZERO;
    for _ in 0..10 {
        iface.poll(now, &mut device, &mut sockets);
        now += smoltcp::time::Duration::from_millis(1);
    }
    assert!(
        sockets.get::<tcp::Socket>(client).may_send(),
        "the loopback handshake did not finish"
    );

    let (app, service) = UnixStream::pair().unwrap();
    let payload = vec![0x5au8; CHUNK];
    let mut scratch = vec![0u8; CHUNK];
    let fd = service.as_raw_fd();

    let mut group = c.benchmark_group("copy path");
    group.throughput(Throughput::Bytes(CHUNK as u64));
    group.bench_function("socketpair to smoltcp to peer, 64 KiB", |b| {
        b.iter(|| {
            std::io::Write::write_all(&mut &app, &payload).unwrap();
            let mut moved = 0;
            while moved < CHUNK {
                let socket = sockets.get_mut::<tcp::Socket>(client);
                let peeked = socket
                    .send(|buf| {
                        // SAFETY: buf is a valid writable slice of the length given.
                        let n = unsafe {
                            libc::recv(
                                fd,
                                buf.as_mut_ptr().cast(),
                                buf.len(),
                                libc::MSG_PEEK | libc::MSG_DONTWAIT,
                            )
                        };
                        let n = n.max(0) as usize;
                        (n, n)
                    })
                    .unwrap();
                // SAFETY: scratch is a valid writable slice of at least `peeked` bytes.
                unsafe { libc::recv(fd, scratch.as_mut_ptr().cast(), peeked, libc::MSG_DONTWAIT) };
                moved += peeked;
                iface.poll(now, &mut device, &mut sockets);
                let peer = sockets.get_mut::<tcp::Socket>(server);
                while peer.can_recv() {
                    peer.recv(|buf| (buf.len(), ())).unwrap();
                }
                iface.poll(now, &mut device, &mut sockets);
                now += smoltcp::time::Duration::from_micros(10);
            }
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = criterion_config();
    targets = copy_path
}
criterion_main!(benches);
