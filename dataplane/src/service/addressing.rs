//! Address rules for AF_INET and AF_INET6 sockets: what they may bind and connect to, the local
//! address a connection takes, and the stack addresses a listener listens on. The rules and
//! errnos are Linux's (`inet_bind`, `inet6_bind`, `tcp_v6_connect`), including dual-stack
//! AF_INET6 sockets that carry IPv4 through IPv4-mapped addresses unless IPV6_V6ONLY is set.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

use netcon_control::WireAddr;
use netcon_control::route::Path;

use super::Service;
use crate::hairpin;
use crate::mapped;
use crate::registry::{PortScope, SocketEntry, SocketState};

/// Returns the port scope of a socket of `domain` whose local address is `local` (as the
/// program names it): the addresses of the port it takes, and so the families it accepts.
pub fn address_scope(domain: i32, v6only: bool, local: SocketAddr) -> PortScope {
    match local {
        SocketAddr::V4(_) => PortScope::Ipv4,
        SocketAddr::V6(v6) if v6.ip().to_ipv4_mapped().is_some() => PortScope::Ipv4,
        SocketAddr::V6(v6) if v6.ip().is_unspecified() && domain == libc::AF_INET6 && !v6only => {
            PortScope::Both
        }
        SocketAddr::V6(_) => PortScope::Ipv6,
    }
}

/// Returns the unspecified address of `domain` with `port`, as `getsockname` reports an
/// unbound or wildcard socket.
pub fn unspecified(domain: i32, port: u16) -> SocketAddr {
    if domain == libc::AF_INET6 {
        SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0).into()
    } else {
        SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port)
    }
}

/// Returns whether the socket has IPV6_V6ONLY set.
pub fn is_v6only(entry: &SocketEntry) -> bool {
    entry.options.flag(libc::IPPROTO_IPV6, libc::IPV6_V6ONLY)
}

/// Returns the errno with which Linux rejects getting (or, with `setting`, setting) option
/// `level`/`name` on this socket, if it does. An AF_INET socket fails IPPROTO_IPV6 options with
/// EOPNOTSUPP on get and ENOPROTOOPT on set (`ip_getsockopt` and `ip_setsockopt`), and
/// IPV6_V6ONLY is EINVAL once the socket is bound, connected or listening.
pub fn ipv6_option_error(entry: &SocketEntry, level: i32, name: i32, setting: bool) -> Option<i32> {
    if level != libc::IPPROTO_IPV6 {
        return None;
    }
    if entry.domain != libc::AF_INET6 {
        return Some(if setting {
            libc::ENOPROTOOPT
        } else {
            libc::EOPNOTSUPP
        });
    }
    let has_port = entry.state != SocketState::Fresh;
    (setting && name == libc::IPV6_V6ONLY && has_port).then_some(libc::EINVAL)
}

/// Returns the TCP MSS of a socket of `domain` on a link whose IPv4 MSS is `ipv4_mss`: IPv6
/// headers are 20 bytes longer.
pub fn mss_for(ipv4_mss: u32, domain: i32) -> u32 {
    if domain == libc::AF_INET6 {
        ipv4_mss - 20
    } else {
        ipv4_mss
    }
}

impl Service {
    /// Checks a `bind` address for a socket of `entry`'s family. Returns the address as the
    /// program named it (port still as given) and the port scope it takes, or the errno.
    pub(super) fn check_bind(
        &self,
        entry: &SocketEntry,
        addr: WireAddr,
    ) -> Result<(SocketAddr, PortScope), i32> {
        let addr = family_addr(entry.domain, addr)?;
        let v6only = is_v6only(entry);
        let own = match mapped::unmap(addr).ip() {
            IpAddr::V4(ip) => ip.is_unspecified() || hairpin::is_own(ip, self.local_ip),
            IpAddr::V6(ip) => ip.is_unspecified() || self.ipv6.contains(ip),
        };
        if v6only && mapped::unmap(addr).is_ipv4() {
            return Err(libc::EINVAL);
        }
        if !own {
            return Err(libc::EADDRNOTAVAIL);
        }
        let addr = match addr {
            SocketAddr::V6(v6) => SocketAddrV6::new(*v6.ip(), v6.port(), 0, 0).into(),
            SocketAddr::V4(_) => addr,
        };
        Ok((addr, address_scope(entry.domain, v6only, addr)))
    }

    /// Checks a TCP `connect` target for a socket of `entry`'s family and returns it as the
    /// stack reaches it (IPv4 for an IPv4-mapped address), or the errno. Like Linux, a target
    /// without a route fails with ENETUNREACH at once, and so does a broadcast address.
    pub(super) fn check_connect(
        &self,
        entry: &SocketEntry,
        addr: WireAddr,
    ) -> Result<SocketAddr, i32> {
        let addr = family_addr(entry.domain, addr)?;
        let remote = mapped::unmap(addr);
        if remote.is_ipv4() && addr.is_ipv6() && is_v6only(entry) {
            return Err(libc::ENETUNREACH);
        }
        if remote.ip().is_unspecified() || remote.port() == 0 {
            return Err(libc::ECONNREFUSED);
        }
        match self.routes.path(remote.ip())? {
            Path::Broadcast => Err(libc::ENETUNREACH),
            Path::Local | Path::Link => Ok(remote),
        }
    }

    /// Checks a UDP `connect` target as Linux's `ip4_datagram_connect` and
    /// `ip6_datagram_connect` do, and returns it as the stack reaches it. The unspecified
    /// address means the loopback address, and port 0 is allowed (the socket then has no peer
    /// name). A target without a route fails with ENETUNREACH, and a broadcast address needs
    /// SO_BROADCAST (EACCES otherwise).
    // NOTE: datagrams to a peer of port 0 are dropped (smoltcp cannot address port 0), where
    // Linux sends them.
    pub(super) fn check_datagram_connect(
        &self,
        entry: &SocketEntry,
        addr: WireAddr,
    ) -> Result<SocketAddr, i32> {
        let addr = family_addr(entry.domain, addr)?;
        let remote = mapped::unmap(addr);
        if remote.is_ipv4() && addr.is_ipv6() && is_v6only(entry) {
            return Err(libc::ENETUNREACH);
        }
        let remote = match remote.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => {
                SocketAddr::new(Ipv4Addr::LOCALHOST.into(), remote.port())
            }
            IpAddr::V6(ip) if ip.is_unspecified() => {
                SocketAddr::new(Ipv6Addr::LOCALHOST.into(), remote.port())
            }
            _ => remote,
        };
        let broadcast_allowed = entry.options.flag(libc::SOL_SOCKET, libc::SO_BROADCAST);
        match self.routes.path(remote.ip())? {
            Path::Broadcast if !broadcast_allowed => Err(libc::EACCES),
            _ => Ok(remote),
        }
    }

    /// Returns the local address of a connection to `remote` (as the stack reaches it), or
    /// ENETUNREACH when the stack has no address of that kind. Like Linux, a connection to
    /// 127.0.0.0/8 comes from 127.0.0.1 and one to ::1 from ::1.
    pub(super) fn local_ip_for(&self, remote: IpAddr) -> Result<IpAddr, i32> {
        match remote {
            IpAddr::V4(ip) if ip.is_loopback() => Ok(Ipv4Addr::LOCALHOST.into()),
            IpAddr::V4(_) => Ok(self.local_ip.into()),
            IpAddr::V6(ip) if ip.is_loopback() => Ok(Ipv6Addr::LOCALHOST.into()),
            IpAddr::V6(ip) if ip.is_unicast_link_local() => self
                .ipv6
                .link_local
                .map(Into::into)
                .ok_or(libc::ENETUNREACH),
            IpAddr::V6(_) => self.ipv6.global.map(Into::into).ok_or(libc::ENETUNREACH),
        }
    }

    /// Returns the stack addresses a listener on `local` (as the program names it) listens
    /// on, `None` meaning every address. A wildcard of one family becomes that family's
    /// addresses, because a smoltcp socket listening on every address would take the other
    /// family's connections too.
    // TODO: such a wildcard keeps a set of LISTEN sockets per address (two for IPv4, up to
    // three for IPv6), and smoltcp scans every socket for each frame, so connection set-up
    // costs more than with one set. An ingress filter that resets the other family's SYNs
    // would let a listener that shares its port with no other family keep one set.
    pub(super) fn listen_addresses(
        &self,
        scope: PortScope,
        local: SocketAddr,
    ) -> Vec<Option<IpAddr>> {
        let ip = mapped::unmap(local).ip();
        if !ip.is_unspecified() {
            return vec![Some(ip)];
        }
        match scope {
            PortScope::Both => vec![None],
            PortScope::Ipv4 => vec![Some(self.local_ip.into()), Some(Ipv4Addr::LOCALHOST.into())],
            PortScope::Ipv6 => [
                Some(Ipv6Addr::LOCALHOST),
                self.ipv6.global,
                self.ipv6.link_local,
            ]
            .into_iter()
            .flatten()
            .map(|ip| Some(ip.into()))
            .collect(),
        }
    }
}

/// Returns the address of a request for a socket of `domain`: an AF_INET socket takes only
/// `sockaddr_in` and an AF_INET6 socket only `sockaddr_in6` (EAFNOSUPPORT otherwise), and a
/// missing address is EINVAL.
fn family_addr(domain: i32, addr: WireAddr) -> Result<SocketAddr, i32> {
    match (addr.0, domain) {
        (None, _) => Err(libc::EINVAL),
        (Some(addr @ SocketAddr::V4(_)), libc::AF_INET) => Ok(addr),
        (Some(addr @ SocketAddr::V6(_)), libc::AF_INET6) => Ok(addr),
        (Some(_), _) => Err(libc::EAFNOSUPPORT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(domain: i32, v6only: bool, text: &str) -> PortScope {
        address_scope(domain, v6only, text.parse().unwrap())
    }

    #[test]
    fn scopes_follow_linux() {
        assert_eq!(scope(libc::AF_INET, false, "0.0.0.0:80"), PortScope::Ipv4);
        assert_eq!(scope(libc::AF_INET6, false, "[::]:80"), PortScope::Both);
        assert_eq!(scope(libc::AF_INET6, true, "[::]:80"), PortScope::Ipv6);
        assert_eq!(scope(libc::AF_INET6, false, "[::1]:80"), PortScope::Ipv6);
        assert_eq!(
            scope(libc::AF_INET6, false, "[::ffff:0.0.0.0]:80"),
            PortScope::Ipv4
        );
    }

    #[test]
    fn wrong_family_rejected() {
        let v4 = WireAddr(Some("10.77.0.2:80".parse().unwrap()));
        let v6 = WireAddr(Some("[fd00::2]:80".parse().unwrap()));
        assert_eq!(family_addr(libc::AF_INET6, v4), Err(libc::EAFNOSUPPORT));
        assert_eq!(family_addr(libc::AF_INET, v6), Err(libc::EAFNOSUPPORT));
        assert_eq!(
            family_addr(libc::AF_INET, WireAddr(None)),
            Err(libc::EINVAL)
        );
        assert!(family_addr(libc::AF_INET6, v6).is_ok());
    }

    #[test]
    fn ipv6_options_need_an_ipv6_socket() {
        let mut entry = SocketEntry::fresh();
        let v6only = libc::IPV6_V6ONLY;
        assert_eq!(
            ipv6_option_error(&entry, libc::IPPROTO_IPV6, v6only, false),
            Some(libc::EOPNOTSUPP)
        );
        assert_eq!(
            ipv6_option_error(&entry, libc::IPPROTO_IPV6, v6only, true),
            Some(libc::ENOPROTOOPT)
        );
        entry.domain = libc::AF_INET6;
        assert_eq!(
            ipv6_option_error(&entry, libc::IPPROTO_IPV6, v6only, true),
            None
        );
        entry.state = SocketState::Bound;
        assert_eq!(
            ipv6_option_error(&entry, libc::IPPROTO_IPV6, v6only, true),
            Some(libc::EINVAL)
        );
        assert_eq!(
            ipv6_option_error(&entry, libc::IPPROTO_IPV6, v6only, false),
            None
        );
        assert_eq!(ipv6_option_error(&entry, libc::IPPROTO_TCP, 1, true), None);
    }

    #[test]
    fn unspecified_per_family() {
        assert_eq!(unspecified(libc::AF_INET, 7).to_string(), "0.0.0.0:7");
        assert_eq!(unspecified(libc::AF_INET6, 7).to_string(), "[::]:7");
    }
}
