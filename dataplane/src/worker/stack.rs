//! How a worker's smoltcp `Interface` and TCP sockets are configured.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Instant as StdInstant;

use smoltcp::iface::{Config, Interface};
use smoltcp::phy::Medium;
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpEndpoint, Ipv4Cidr};

use super::device::RingDevice;

/// The addresses and sizes every worker's stack uses.
#[derive(Clone, Debug)]
pub struct StackConfig {
    pub medium: Medium,
    pub mtu: usize,
    pub mac: [u8; 6],
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    /// Size of each TCP socket's receive and of its send buffer, in bytes.
    pub tcp_buffer: usize,
    /// The TAP queues carry a `virtio_net_hdr` and exchange 64 KiB TCP segments.
    pub offload: bool,
}

impl StackConfig {
    /// Builds the interface with this config's addresses.
    pub fn interface(&self, device: &mut RingDevice, now: Instant) -> Interface {
        let hardware = match self.medium {
            Medium::Ethernet => HardwareAddress::Ethernet(EthernetAddress(self.mac)),
            _ => HardwareAddress::Ip,
        };
        let mut config = Config::new(hardware);
        config.random_seed = seed();
        let mut iface = Interface::new(config, device, now);
        let cidr = Ipv4Cidr::new(self.address, self.prefix_len);
        // 127.0.0.1/8 too: frames to it never leave netcon-dp (see `crate::hairpin`).
        let loopback = Ipv4Cidr::new(Ipv4Addr::LOCALHOST, 8);
        iface.update_ip_addrs(|addrs| {
            addrs
                .push(IpCidr::Ipv4(cidr))
                .expect("room for two addresses");
            addrs
                .push(IpCidr::Ipv4(loopback))
                .expect("room for two addresses");
        });
        if let Some(gateway) = self.gateway {
            iface
                .routes_mut()
                .add_default_ipv4_route(gateway)
                .expect("room for one route");
        }
        iface
    }

    /// A TCP socket with this config's buffer sizes.
    pub fn tcp_socket(&self) -> tcp::Socket<'static> {
        let rx = tcp::SocketBuffer::new(vec![0u8; self.tcp_buffer]);
        let tx = tcp::SocketBuffer::new(vec![0u8; self.tcp_buffer]);
        tcp::Socket::new(rx, tx)
    }
}

/// A seed for initial sequence numbers and ports, different on every start.
fn seed() -> u64 {
    let nanos = StdInstant::now().elapsed().as_nanos() as u64;
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() } as u64;
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    time ^ (pid << 32) ^ nanos
}

/// Monotonic time in smoltcp's units, counted from the worker's start.
pub struct Clock {
    start: StdInstant,
}

impl Clock {
    pub fn new() -> Clock {
        Clock {
            start: StdInstant::now(),
        }
    }

    pub fn now(&self) -> Instant {
        Instant::from_micros(self.start.elapsed().as_micros() as i64)
    }
}

/// A std socket address as a smoltcp endpoint.
pub fn endpoint(addr: SocketAddrV4) -> IpEndpoint {
    IpEndpoint::new(IpAddress::Ipv4(*addr.ip()), addr.port())
}

/// A smoltcp endpoint as a std IPv4 socket address.
pub fn socket_addr(endpoint: IpEndpoint) -> Option<SocketAddrV4> {
    match endpoint.addr {
        IpAddress::Ipv4(ip) => Some(SocketAddrV4::new(ip, endpoint.port)),
        #[allow(unreachable_patterns)] // reachable once proto-ipv6 is enabled
        _ => None,
    }
}
