//! ICMP errors about UDP datagrams this stack sent. smoltcp reads ICMP destination unreachable
//! messages but passes them to no socket, so the worker parses them itself. It reports them
//! the way Linux does to a connected UDP socket (ECONNREFUSED after a port unreachable, among
//! others).
//!
//! An ICMP error quotes the IP header and the first 8 bytes of the datagram that caused it,
//! which is enough to find the UDP socket: the quoted source is our local address and port,
//! the quoted destination is the peer. Pure functions on byte slices; the worker acts on them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMPV6: u8 = 58;
const IPV6_HEADER_LEN: usize = 40;
const ICMP_HEADER_LEN: usize = 8;
const UDP_PORTS_LEN: usize = 4;

const ICMP_DEST_UNREACH: u8 = 3;
const ICMPV6_DEST_UNREACH: u8 = 1;

/// The UDP datagram an ICMP error is about, and the error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpError {
    /// Our address and port, the source of the datagram the error is about.
    pub local: SocketAddr,
    /// The peer the datagram was sent to.
    pub remote: SocketAddr,
    /// The errno Linux converts the error to.
    pub errno: i32,
    /// Whether Linux reports it to a connected socket without IP_RECVERR (a "hard" error).
    pub hard: bool,
}

/// Linux's conversion of ICMP destination unreachable codes 0 to 15 (`icmp_err_convert` in
/// net/ipv4/icmp.c): the errno and whether the error is hard.
const ICMP_UNREACH_ERRORS: [(i32, bool); 16] = [
    (libc::ENETUNREACH, false),  // network unreachable
    (libc::EHOSTUNREACH, false), // host unreachable
    (libc::ENOPROTOOPT, true),   // protocol unreachable
    (libc::ECONNREFUSED, true),  // port unreachable
    (libc::EMSGSIZE, false),     // fragmentation needed
    (libc::EOPNOTSUPP, false),   // source route failed
    (libc::ENETUNREACH, true),   // destination network unknown
    (libc::EHOSTDOWN, true),     // destination host unknown
    (libc::ENONET, true),        // source host isolated
    (libc::ENETUNREACH, true),   // network administratively prohibited
    (libc::EHOSTUNREACH, true),  // host administratively prohibited
    (libc::ENETUNREACH, false),  // network unreachable for the TOS
    (libc::EHOSTUNREACH, false), // host unreachable for the TOS
    (libc::EHOSTUNREACH, true),  // communication administratively prohibited
    (libc::EHOSTUNREACH, true),  // host precedence violation
    (libc::EHOSTUNREACH, true),  // precedence cut-off in effect
];

/// Linux's conversion of ICMPv6 destination unreachable codes 0 to 6 (`tab_unreach` in
/// net/ipv6/icmp.c).
const ICMPV6_UNREACH_ERRORS: [(i32, bool); 7] = [
    (libc::ENETUNREACH, false),  // no route to destination
    (libc::EACCES, true),        // administratively prohibited
    (libc::EHOSTUNREACH, false), // beyond the scope of the source address
    (libc::EHOSTUNREACH, false), // address unreachable
    (libc::ECONNREFUSED, true),  // port unreachable
    (libc::EACCES, true),        // source address failed ingress policy
    (libc::EACCES, true),        // reject route to destination
];

/// Parses `frame` (`l2_len` 14 on a TAP, 0 on a TUN) as an ICMP or ICMPv6 destination
/// unreachable error about a UDP datagram. Returns `None` for any other frame.
pub fn parse_udp_error(frame: &[u8], l2_len: usize) -> Option<UdpError> {
    let ip = frame.get(l2_len..)?;
    if l2_len == 14 {
        let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
        match (ethertype, ip.first()? >> 4) {
            (ETHERTYPE_IPV4, 4) | (ETHERTYPE_IPV6, 6) => {}
            _ => return None,
        }
    }
    match ip.first()? >> 4 {
        4 => parse_ipv4(ip),
        6 => parse_ipv6(ip),
        _ => None,
    }
}

/// Returns whether `frame` may be an ICMP error about a UDP datagram, by its protocol field
/// alone: a cheap test for the per-frame path before [`parse_udp_error`].
pub fn may_be_udp_error(frame: &[u8], l2_len: usize) -> bool {
    let Some(ip) = frame.get(l2_len..) else {
        return false;
    };
    match ip.first().map(|b| b >> 4) {
        Some(4) => ip.get(9) == Some(&IPPROTO_ICMP),
        Some(6) => ip.get(6) == Some(&IPPROTO_ICMPV6),
        _ => false,
    }
}

fn parse_ipv4(ip: &[u8]) -> Option<UdpError> {
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    if ihl < 20 || *ip.get(9)? != IPPROTO_ICMP || *ip.get(ihl)? != ICMP_DEST_UNREACH {
        return None;
    }
    let code = usize::from(*ip.get(ihl + 1)?);
    let (errno, hard) = *ICMP_UNREACH_ERRORS.get(code)?;

    let quoted = ip.get(ihl + ICMP_HEADER_LEN..)?;
    let quoted_ihl = usize::from(quoted.first()? & 0x0f) * 4;
    if quoted.first()? >> 4 != 4 || quoted_ihl < 20 || *quoted.get(9)? != IPPROTO_UDP {
        return None;
    }
    let source = Ipv4Addr::from(<[u8; 4]>::try_from(quoted.get(12..16)?).ok()?);
    let destination = Ipv4Addr::from(<[u8; 4]>::try_from(quoted.get(16..20)?).ok()?);
    let ports = quoted.get(quoted_ihl..quoted_ihl + UDP_PORTS_LEN)?;
    Some(udp_error(
        source.into(),
        destination.into(),
        ports,
        errno,
        hard,
    ))
}

fn parse_ipv6(ip: &[u8]) -> Option<UdpError> {
    let icmp = ip.get(IPV6_HEADER_LEN..)?;
    if *ip.get(6)? != IPPROTO_ICMPV6 || *icmp.first()? != ICMPV6_DEST_UNREACH {
        return None;
    }
    let (errno, hard) = *ICMPV6_UNREACH_ERRORS.get(usize::from(*icmp.get(1)?))?;

    // TODO: a quoted packet with extension headers before its UDP header is not recognised —
    // walking the extension header chain would find it. The kernel adds none to UDP.
    let quoted = icmp.get(ICMP_HEADER_LEN..)?;
    if quoted.first()? >> 4 != 6 || *quoted.get(6)? != IPPROTO_UDP {
        return None;
    }
    let source = Ipv6Addr::from(<[u8; 16]>::try_from(quoted.get(8..24)?).ok()?);
    let destination = Ipv6Addr::from(<[u8; 16]>::try_from(quoted.get(24..40)?).ok()?);
    let ports = quoted.get(IPV6_HEADER_LEN..IPV6_HEADER_LEN + UDP_PORTS_LEN)?;
    Some(udp_error(
        source.into(),
        destination.into(),
        ports,
        errno,
        hard,
    ))
}

fn udp_error(
    source: IpAddr,
    destination: IpAddr,
    ports: &[u8],
    errno: i32,
    hard: bool,
) -> UdpError {
    UdpError {
        local: SocketAddr::new(source, u16::from_be_bytes([ports[0], ports[1]])),
        remote: SocketAddr::new(destination, u16::from_be_bytes([ports[2], ports[3]])),
        errno,
        hard,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds an Ethernet frame carrying an ICMP destination unreachable with `code` about a
    /// UDP datagram from 10.77.0.2:40000 to 10.77.0.1:9.
    fn unreachable_v4(code: u8) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 8 + 20 + 8];
        f[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        f[14] = 0x45;
        f[23] = IPPROTO_ICMP;
        f[34] = ICMP_DEST_UNREACH;
        f[35] = code;
        let quoted = 42;
        f[quoted] = 0x45;
        f[quoted + 9] = IPPROTO_UDP;
        f[quoted + 12..quoted + 16].copy_from_slice(&[10, 77, 0, 2]);
        f[quoted + 16..quoted + 20].copy_from_slice(&[10, 77, 0, 1]);
        f[quoted + 20..quoted + 22].copy_from_slice(&40000u16.to_be_bytes());
        f[quoted + 22..quoted + 24].copy_from_slice(&9u16.to_be_bytes());
        f
    }

    fn unreachable_v6(code: u8) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 40 + 8 + 40 + 8];
        f[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
        f[14] = 0x60;
        f[20] = IPPROTO_ICMPV6;
        f[54] = ICMPV6_DEST_UNREACH;
        f[55] = code;
        let quoted = 62;
        f[quoted] = 0x60;
        f[quoted + 6] = IPPROTO_UDP;
        let ours: Ipv6Addr = "fd00::2".parse().unwrap();
        let peer: Ipv6Addr = "fd00::1".parse().unwrap();
        f[quoted + 8..quoted + 24].copy_from_slice(&ours.octets());
        f[quoted + 24..quoted + 40].copy_from_slice(&peer.octets());
        f[quoted + 40..quoted + 42].copy_from_slice(&40000u16.to_be_bytes());
        f[quoted + 42..quoted + 44].copy_from_slice(&9u16.to_be_bytes());
        f
    }

    #[test]
    fn port_unreachable_v4_is_refused() {
        let frame = unreachable_v4(3);
        assert!(may_be_udp_error(&frame, 14));
        let error = parse_udp_error(&frame, 14).unwrap();
        assert_eq!(error.local, "10.77.0.2:40000".parse().unwrap());
        assert_eq!(error.remote, "10.77.0.1:9".parse().unwrap());
        assert_eq!(error.errno, libc::ECONNREFUSED);
        assert!(error.hard);
    }

    #[test]
    fn port_unreachable_v6_is_refused() {
        let frame = unreachable_v6(4);
        assert!(may_be_udp_error(&frame, 14));
        let error = parse_udp_error(&frame, 14).unwrap();
        assert_eq!(error.local, "[fd00::2]:40000".parse().unwrap());
        assert_eq!(error.remote, "[fd00::1]:9".parse().unwrap());
        assert_eq!(error.errno, libc::ECONNREFUSED);
        assert!(error.hard);
    }

    #[test]
    fn soft_errors_are_marked() {
        let error = parse_udp_error(&unreachable_v4(1), 14).unwrap();
        assert_eq!(error.errno, libc::EHOSTUNREACH);
        assert!(!error.hard);
        assert_eq!(parse_udp_error(&unreachable_v4(16), 14), None);
    }

    #[test]
    fn tun_frames_start_at_ip() {
        let frame = unreachable_v4(3);
        assert!(parse_udp_error(&frame[14..], 0).is_some());
        let frame = unreachable_v6(4);
        assert!(parse_udp_error(&frame[14..], 0).is_some());
    }

    #[test]
    fn errors_about_tcp_and_other_icmp_are_ignored() {
        let mut tcp = unreachable_v4(3);
        tcp[42 + 9] = 6;
        assert_eq!(parse_udp_error(&tcp, 14), None);
        let mut echo = unreachable_v4(3);
        echo[34] = 0;
        assert_eq!(parse_udp_error(&echo, 14), None);
        let mut udp = unreachable_v4(3);
        udp[23] = IPPROTO_UDP;
        assert!(!may_be_udp_error(&udp, 14));
    }

    #[test]
    fn truncated_frames_are_ignored() {
        for frame in [unreachable_v4(3), unreachable_v6(4)] {
            // The last 4 bytes are the quoted destination port and the UDP length, unread.
            for len in 0..frame.len() - 4 {
                assert_eq!(parse_udp_error(&frame[..len], 14), None, "length {len}");
            }
        }
    }
}
