//! Which destinations the stack reaches and how, decided as Linux decides for a host with one
//! link: its own and loopback addresses stay local, the link's prefixes are on the link, the
//! link's broadcast addresses are broadcast, and everything else needs a default gateway
//! (ENETUNREACH without one). netcon-dp checks `connect` with it and the preload checks each
//! `sendto`, which never reaches netcon-dp as a request.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The way a packet to a destination leaves the stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// To one of the stack's own addresses or a loopback address: it never reaches the link,
    /// so the link's MTU does not limit it.
    Local,
    /// Onto the link, to a neighbour or through a gateway.
    Link,
    /// To every host of the link: the subnet's broadcast address or 255.255.255.255. Linux
    /// sends there only from a socket with SO_BROADCAST set.
    Broadcast,
}

/// The stack's addresses and routes, as `netcon-dp` was started with them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Routes {
    /// The IPv4 address and its prefix length.
    pub ipv4: Ipv4Addr,
    pub prefix4: u8,
    /// A default IPv4 gateway exists (`--gateway`).
    pub gateway4: bool,
    /// The IPv6 address and its prefix length (`--address6`), if any.
    pub ipv6: Option<(Ipv6Addr, u8)>,
    /// The link-local IPv6 address, present with `--address6` on a TAP.
    pub link_local: Option<Ipv6Addr>,
    /// A default IPv6 gateway exists (`--gateway6`).
    pub gateway6: bool,
    /// The link's MTU in bytes.
    pub mtu: u32,
}

impl Routes {
    /// Returns how a packet to `destination` leaves the stack, or ENETUNREACH when no route
    /// leads there. An IPv4-mapped IPv6 address is taken as the IPv4 address it maps.
    pub fn path(&self, destination: IpAddr) -> Result<Path, i32> {
        match destination {
            IpAddr::V4(ip) => self.path_v4(ip),
            IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
                Some(v4) => self.path_v4(v4),
                None => self.path_v6(ip),
            },
        }
    }

    fn path_v4(&self, ip: Ipv4Addr) -> Result<Path, i32> {
        if ip.is_loopback() || ip.is_unspecified() || ip == self.ipv4 {
            return Ok(Path::Local);
        }
        let on_link = same_prefix(ip.octets(), self.ipv4.octets(), self.prefix4);
        // A /31 or /32 has no broadcast address (RFC 3021).
        let subnet_broadcast = on_link && self.prefix4 < 31 && host_bits_set(ip, self.prefix4);
        if subnet_broadcast {
            return Ok(Path::Broadcast);
        }
        if on_link {
            return Ok(Path::Link);
        }
        // Linux has no route for the limited broadcast address or multicast groups besides
        // the default route, so both need the gateway as any other address does.
        match (self.gateway4, ip.is_broadcast()) {
            (true, true) => Ok(Path::Broadcast),
            (true, false) => Ok(Path::Link),
            (false, _) => Err(libc::ENETUNREACH),
        }
    }

    fn path_v6(&self, ip: Ipv6Addr) -> Result<Path, i32> {
        let own = self.ipv6.map(|(address, _)| address);
        if ip.is_loopback() || ip.is_unspecified() || Some(ip) == own {
            return Ok(Path::Local);
        }
        if Some(ip) == self.link_local {
            return Ok(Path::Local);
        }
        // Linux routes fe80::/64 and ff00::/8 on every link that has IPv6.
        if ip.is_unicast_link_local() || ip.is_multicast() {
            return match self.link_local.or(own) {
                Some(_) => Ok(Path::Link),
                None => Err(libc::ENETUNREACH),
            };
        }
        match self.ipv6 {
            Some((address, prefix)) if same_prefix(ip.octets(), address.octets(), prefix) => {
                Ok(Path::Link)
            }
            Some(_) if self.gateway6 => Ok(Path::Link),
            _ => Err(libc::ENETUNREACH),
        }
    }

    /// Returns the largest UDP payload that leaves for `destination` on `path` without IP
    /// fragmentation: the link's MTU less the IP and UDP headers, and no limit below the
    /// protocol's own for a local destination.
    pub fn unfragmented_payload(&self, path: Path, destination: IpAddr) -> usize {
        let ipv4 = match destination {
            IpAddr::V4(_) => true,
            IpAddr::V6(ip) => ip.to_ipv4_mapped().is_some(),
        };
        let headers = if ipv4 { 20 + 8 } else { 40 + 8 };
        match path {
            Path::Local => usize::from(u16::MAX) - headers,
            Path::Link | Path::Broadcast => (self.mtu as usize).saturating_sub(headers),
        }
    }
}

/// Returns whether `a` and `b` agree in their first `prefix` bits.
fn same_prefix<const N: usize>(a: [u8; N], b: [u8; N], prefix: u8) -> bool {
    let prefix = usize::from(prefix).min(N * 8);
    let (whole, rest) = (prefix / 8, prefix % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    a[whole] & mask == b[whole] & mask
}

/// Returns whether every bit of `ip` after the first `prefix` is set.
fn host_bits_set(ip: Ipv4Addr, prefix: u8) -> bool {
    let host_mask = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
    u32::from(ip) & host_mask == host_mask
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> Routes {
        Routes {
            ipv4: "10.77.0.2".parse().unwrap(),
            prefix4: 24,
            gateway4: false,
            ipv6: Some(("fd00::2".parse().unwrap(), 64)),
            link_local: Some("fe80::1:2".parse().unwrap()),
            gateway6: false,
            mtu: 1500,
        }
    }

    fn path(routes: &Routes, text: &str) -> Result<Path, i32> {
        routes.path(text.parse().unwrap())
    }

    #[test]
    fn ipv4_paths_without_gateway() {
        let routes = routes();
        assert_eq!(path(&routes, "127.0.0.1"), Ok(Path::Local));
        assert_eq!(path(&routes, "127.8.9.10"), Ok(Path::Local));
        assert_eq!(path(&routes, "10.77.0.2"), Ok(Path::Local));
        assert_eq!(path(&routes, "10.77.0.1"), Ok(Path::Link));
        assert_eq!(path(&routes, "10.77.0.255"), Ok(Path::Broadcast));
        assert_eq!(path(&routes, "255.255.255.255"), Err(libc::ENETUNREACH));
        assert_eq!(path(&routes, "192.0.2.1"), Err(libc::ENETUNREACH));
        assert_eq!(path(&routes, "224.0.0.1"), Err(libc::ENETUNREACH));
        assert_eq!(path(&routes, "::ffff:192.0.2.1"), Err(libc::ENETUNREACH));
        assert_eq!(path(&routes, "::ffff:10.77.0.1"), Ok(Path::Link));
    }

    #[test]
    fn ipv4_paths_with_gateway() {
        let routes = Routes {
            gateway4: true,
            ..routes()
        };
        assert_eq!(path(&routes, "192.0.2.1"), Ok(Path::Link));
        assert_eq!(path(&routes, "255.255.255.255"), Ok(Path::Broadcast));
        assert_eq!(path(&routes, "10.77.0.255"), Ok(Path::Broadcast));
    }

    #[test]
    fn point_to_point_prefix_has_no_broadcast() {
        let routes = Routes {
            ipv4: "10.0.0.0".parse().unwrap(),
            prefix4: 31,
            ..routes()
        };
        assert_eq!(path(&routes, "10.0.0.1"), Ok(Path::Link));
    }

    #[test]
    fn ipv6_paths() {
        let routes = routes();
        assert_eq!(path(&routes, "::1"), Ok(Path::Local));
        assert_eq!(path(&routes, "fd00::2"), Ok(Path::Local));
        assert_eq!(path(&routes, "fe80::1:2"), Ok(Path::Local));
        assert_eq!(path(&routes, "fd00::1"), Ok(Path::Link));
        assert_eq!(path(&routes, "fe80::9"), Ok(Path::Link));
        assert_eq!(path(&routes, "ff02::1"), Ok(Path::Link));
        assert_eq!(path(&routes, "fd99::1"), Err(libc::ENETUNREACH));
        let with_gateway = Routes {
            gateway6: true,
            ..routes
        };
        assert_eq!(path(&with_gateway, "fd99::1"), Ok(Path::Link));
    }

    #[test]
    fn ipv6_needs_an_address() {
        let routes = Routes {
            ipv6: None,
            link_local: None,
            gateway6: true,
            ..routes()
        };
        assert_eq!(path(&routes, "::1"), Ok(Path::Local));
        assert_eq!(path(&routes, "fd00::1"), Err(libc::ENETUNREACH));
        assert_eq!(path(&routes, "fe80::1"), Err(libc::ENETUNREACH));
    }

    #[test]
    fn payload_limits() {
        let routes = routes();
        let peer4: IpAddr = "10.77.0.1".parse().unwrap();
        let peer6: IpAddr = "fd00::1".parse().unwrap();
        assert_eq!(routes.unfragmented_payload(Path::Link, peer4), 1472);
        assert_eq!(routes.unfragmented_payload(Path::Link, peer6), 1452);
        assert_eq!(routes.unfragmented_payload(Path::Local, peer4), 65507);
    }
}
