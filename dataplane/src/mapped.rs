//! IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, RFC 4291 section 2.5.5.2). An AF_INET6 socket
//! names IPv4 peers and its own IPv4 address that way, while the stack carries such
//! connections as IPv4. The service and the workers convert at that boundary.

use std::net::{SocketAddr, SocketAddrV6};

/// Returns the address the stack uses for `addr`: IPv4 for an IPv4-mapped IPv6 address,
/// `addr` itself otherwise.
pub fn unmap(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

/// Returns the address a socket of `domain` (AF_INET or AF_INET6) reports for `addr`: IPv4
/// addresses become IPv4-mapped on an AF_INET6 socket.
pub fn for_domain(addr: SocketAddr, domain: i32) -> SocketAddr {
    match addr {
        SocketAddr::V4(v4) if domain == libc::AF_INET6 => {
            SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0).into()
        }
        _ => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_round_trip() {
        let v4: SocketAddr = "10.77.0.1:5201".parse().unwrap();
        let mapped = for_domain(v4, libc::AF_INET6);
        assert_eq!(mapped, "[::ffff:10.77.0.1]:5201".parse().unwrap());
        assert_eq!(unmap(mapped), v4);
        assert_eq!(for_domain(v4, libc::AF_INET), v4);
    }

    #[test]
    fn plain_ipv6_unchanged() {
        let v6: SocketAddr = "[fd00::1]:80".parse().unwrap();
        assert_eq!(unmap(v6), v6);
        assert_eq!(for_domain(v6, libc::AF_INET6), v6);
        // ::a.b.c.d (IPv4-compatible, deprecated) is not a mapped address.
        let compatible: SocketAddr = "[::10.77.0.1]:80".parse().unwrap();
        assert_eq!(unmap(compatible), compatible);
    }
}
