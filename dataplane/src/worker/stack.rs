//! How a worker's smoltcp `Interface` and TCP sockets are configured.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Instant as StdInstant;

use smoltcp::iface::{Config, Interface};
use smoltcp::phy::Medium;
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, IpEndpoint, Ipv4Cidr, Ipv6Cidr};

use super::device::RingDevice;
use crate::hairpin::OwnIpv6;

/// The addresses and sizes every worker's stack uses.
#[derive(Clone, Debug)]
pub struct StackConfig {
    pub medium: Medium,
    pub mtu: usize,
    pub mac: [u8; 6],
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    /// The IPv6 address and prefix length, when the stack has one besides ::1.
    pub address6: Option<(Ipv6Addr, u8)>,
    /// Default IPv6 gateway for destinations outside that prefix.
    pub gateway6: Option<Ipv6Addr>,
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
        let own = self.own_ipv6();
        let mut cidrs = vec![
            IpCidr::Ipv4(Ipv4Cidr::new(self.address, self.prefix_len)),
            // 127.0.0.1/8 and ::1 too: frames to them never leave netcon-dp (see
            // `crate::hairpin`).
            IpCidr::Ipv4(Ipv4Cidr::new(Ipv4Addr::LOCALHOST, 8)),
            IpCidr::Ipv6(Ipv6Cidr::new(Ipv6Addr::LOCALHOST, 128)),
        ];
        if let Some((address, prefix_len)) = self.address6 {
            cidrs.push(IpCidr::Ipv6(Ipv6Cidr::new(address, prefix_len)));
        }
        if let Some(link_local) = own.link_local {
            cidrs.push(IpCidr::Ipv6(Ipv6Cidr::new(link_local, 64)));
        }
        iface.update_ip_addrs(|addrs| {
            for cidr in cidrs {
                addrs.push(cidr).expect("room for five addresses");
            }
        });
        if let Some(gateway) = self.gateway {
            iface
                .routes_mut()
                .add_default_ipv4_route(gateway)
                .expect("room for two routes");
        }
        if let Some(gateway) = self.gateway6 {
            iface
                .routes_mut()
                .add_default_ipv6_route(gateway)
                .expect("room for two routes");
        }
        iface
    }

    /// Returns the stack's IPv6 addresses besides ::1: the `--address6` one and, with it, the
    /// link-local address of the MAC (on a TAP).
    pub fn own_ipv6(&self) -> OwnIpv6 {
        let global = self.address6.map(|(address, _)| address);
        let link_local = match self.medium {
            Medium::Ethernet => global.map(|_| link_local(self.mac)),
            _ => None,
        };
        OwnIpv6 { global, link_local }
    }

    /// Returns the stack's addresses and routes, which decide the destinations it reaches.
    pub fn routes(&self) -> netcon_control::route::Routes {
        netcon_control::route::Routes {
            ipv4: self.address,
            prefix4: self.prefix_len,
            gateway4: self.gateway.is_some(),
            ipv6: self.address6,
            link_local: self.own_ipv6().link_local,
            gateway6: self.gateway6.is_some(),
            mtu: self.mtu as u32,
        }
    }

    /// Returns the neighbour a packet to `remote` goes to: `remote` itself on the link, the
    /// default gateway of its family otherwise (or `remote` when there is none).
    pub fn next_hop(&self, remote: IpAddr) -> IpAddr {
        let on_link = match remote {
            IpAddr::V4(ip) => Ipv4Cidr::new(self.address, self.prefix_len).contains_addr(&ip),
            IpAddr::V6(ip) => {
                ip.is_unicast_link_local()
                    || self
                        .address6
                        .is_some_and(|(own, prefix)| Ipv6Cidr::new(own, prefix).contains_addr(&ip))
            }
        };
        let gateway = match remote {
            IpAddr::V4(_) => self.gateway.map(IpAddr::from),
            IpAddr::V6(_) => self.gateway6.map(IpAddr::from),
        };
        match gateway {
            Some(gateway) if !on_link => gateway,
            _ => remote,
        }
    }

    /// A TCP socket with this config's buffer sizes.
    // TODO: a lost segment waits at least 1 s for its retransmission, Linux's 200 ms, so
    // clients whose first data a full accept queue dropped may time out — smoltcp 0.14 has
    // no way to lower its minimum RTO (RTTE_MIN_RTO); it needs a setter or a build option.
    pub fn tcp_socket(&self) -> tcp::Socket<'static> {
        let rx = tcp::SocketBuffer::new(vec![0u8; self.tcp_buffer]);
        let tx = tcp::SocketBuffer::new(vec![0u8; self.tcp_buffer]);
        let mut socket = tcp::Socket::new(rx, tx);
        socket.set_tsval_generator(Some(timestamp_now));
        socket
    }
}

/// Returns the TCP timestamp value to send (RFC 7323): milliseconds of the system's monotonic
/// clock, shared by every connection and every netcon-dp started since boot. A new connection
/// then carries values above those of an earlier one on the same 4-tuple. So a Linux peer
/// accepts its SYN while that tuple is still in TIME_WAIT, where it would otherwise reply with
/// an ACK that costs a reset and a 1 s SYN retransmission.
fn timestamp_now() -> u32 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for clock_gettime to fill in.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    (now.tv_sec as u64 * 1000 + now.tv_nsec as u64 / 1_000_000) as u32
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

/// Returns the link-local IPv6 address of `mac`: fe80::/64 with the modified EUI-64
/// interface identifier (RFC 4291, appendix A).
pub fn link_local(mac: [u8; 6]) -> Ipv6Addr {
    let [a, b, c, d, e, f] = mac;
    let id = [a ^ 0x02, b, c, 0xff, 0xfe, d, e, f];
    let mut octets = [0u8; 16];
    octets[0..2].copy_from_slice(&[0xfe, 0x80]);
    octets[8..16].copy_from_slice(&id);
    Ipv6Addr::from(octets)
}

/// A std socket address as a smoltcp endpoint.
pub fn endpoint(addr: SocketAddr) -> IpEndpoint {
    IpEndpoint::new(addr.ip().into(), addr.port())
}

/// A smoltcp endpoint as a std socket address.
pub fn socket_addr(endpoint: IpEndpoint) -> Option<SocketAddr> {
    Some(SocketAddr::new(endpoint.addr.into(), endpoint.port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_local_from_mac() {
        let address = link_local([0x02, 0x6e, 0x63, 0x01, 0x02, 0x03]);
        assert_eq!(
            address,
            "fe80::6e:63ff:fe01:203".parse::<Ipv6Addr>().unwrap()
        );
    }

    fn config(medium: Medium) -> StackConfig {
        StackConfig {
            medium,
            mtu: 1500,
            mac: [0x02, 0x6e, 0x63, 0x01, 0x02, 0x03],
            address: Ipv4Addr::new(10, 77, 0, 2),
            prefix_len: 24,
            gateway: None,
            address6: Some(("fd00::2".parse().unwrap(), 64)),
            gateway6: None,
            tcp_buffer: 4096,
            offload: false,
        }
    }

    /// Returns the addresses the interface of `config` gets.
    fn interface_addresses(config: &StackConfig) -> Vec<IpCidr> {
        let mut device = RingDevice::new(config.medium, config.mtu, false, 1, 1);
        let iface = config.interface(&mut device, Instant::from_micros(0));
        iface.ip_addrs().to_vec()
    }

    #[test]
    fn tap_interface_addresses() {
        let addresses = interface_addresses(&config(Medium::Ethernet));
        for expected in ["10.77.0.2/24", "127.0.0.1/8", "::1/128", "fd00::2/64"] {
            let cidr: IpCidr = expected.parse().unwrap();
            assert!(
                addresses.contains(&cidr),
                "{expected} missing: {addresses:?}"
            );
        }
        let link_local: IpCidr = "fe80::6e:63ff:fe01:203/64".parse().unwrap();
        assert!(addresses.contains(&link_local), "{addresses:?}");
    }

    #[test]
    fn tun_interface_has_no_link_local() {
        let addresses = interface_addresses(&config(Medium::Ip));
        let global: IpCidr = "fd00::2/64".parse().unwrap();
        assert!(addresses.contains(&global), "{addresses:?}");
        let link_local = addresses
            .iter()
            .any(|cidr| matches!(cidr, IpCidr::Ipv6(v6) if v6.address().is_unicast_link_local()));
        assert!(!link_local, "{addresses:?}");
    }

    #[test]
    fn no_ipv6_address_by_default() {
        let mut plain = config(Medium::Ethernet);
        plain.address6 = None;
        let addresses = interface_addresses(&plain);
        let ipv6: Vec<&IpCidr> = addresses
            .iter()
            .filter(|cidr| matches!(cidr, IpCidr::Ipv6(_)))
            .collect();
        assert_eq!(ipv6, [&"::1/128".parse::<IpCidr>().unwrap()]);
    }

    #[test]
    fn next_hop_is_the_gateway_off_link() {
        let mut config = config(Medium::Ethernet);
        config.gateway = Some("10.77.0.1".parse().unwrap());
        let hop = |text: &str| config.next_hop(text.parse().unwrap()).to_string();
        assert_eq!(hop("10.77.0.9"), "10.77.0.9");
        assert_eq!(hop("192.0.2.1"), "10.77.0.1");
        assert_eq!(hop("fd00::9"), "fd00::9");
        assert_eq!(hop("fd99::1"), "fd99::1", "no IPv6 gateway");
        assert_eq!(hop("fe80::1"), "fe80::1");
    }

    #[test]
    fn endpoints_round_trip() {
        for text in ["10.77.0.2:80", "[fd00::2]:443", "[::1]:1"] {
            let addr: SocketAddr = text.parse().unwrap();
            assert_eq!(socket_addr(endpoint(addr)), Some(addr), "{text}");
        }
    }
}
