//! Flow steering between workers: which worker owns a TCP connection, decided by a hash of its
//! 4-tuple, which worker owns the UDP sockets of a local port, decided by a hash of the port,
//! and what to do with a frame that arrived on some worker's TAP queue. Every fragment of one
//! IP packet goes to the worker a hash of its addresses and identification names, which
//! reassembles the packet and then steers it like any other (see [`crate::reassembly`]). The control thread uses
//! the same hashes to pick local ports for outgoing connections and UDP sockets, so their
//! frames land on the worker that owns them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::reassembly::{FragmentKey, fragment_key};

/// Index of a worker, 0-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkerId(pub usize);

/// Where a received frame goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Steer {
    /// The worker that read it handles it.
    Here,
    /// The worker that owns its connection handles it.
    To(WorkerId),
    /// Every worker needs it (ARP and neighbour discovery: each worker keeps its own
    /// neighbour cache).
    Everyone,
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_ICMPV6: u8 = 58;
const IPV6_HEADER_LEN: usize = 40;
/// The more-fragments flag and the fragment offset of the IPv4 header's flags field: a packet
/// with any of them set is a fragment.
const IPV4_FRAGMENT_BITS: u16 = 0x3fff;

/// ICMPv6 types of neighbour discovery (RFC 4861): router solicitation and advertisement,
/// neighbour solicitation and advertisement, redirect.
const NDP_TYPES: std::ops::RangeInclusive<u8> = 133..=137;

/// The worker owning the connection between our `local_port` and `remote`:`remote_port`.
/// All workers share one address per family, so the local address does not enter the hash.
pub fn owner(
    remote: impl Into<IpAddr>,
    remote_port: u16,
    local_port: u16,
    workers: usize,
) -> WorkerId {
    if workers <= 1 {
        return WorkerId(0);
    }
    let ports = remote_port
        .to_be_bytes()
        .into_iter()
        .chain(local_port.to_be_bytes());
    let hash = match remote.into() {
        IpAddr::V4(ip) => fnv1a(ip.octets().into_iter().chain(ports)),
        IpAddr::V6(ip) => fnv1a(ip.octets().into_iter().chain(ports)),
    };
    WorkerId(hash as usize % workers)
}

/// The worker owning every UDP socket bound to `local_port`. One worker holds all sockets of
/// a port, so it alone decides which of them receives a datagram (the one connected to the
/// sender, else one bound to the port) without asking the others.
pub fn udp_owner(local_port: u16, workers: usize) -> WorkerId {
    if workers <= 1 {
        return WorkerId(0);
    }
    WorkerId(fnv1a(local_port.to_be_bytes().into_iter()) as usize % workers)
}

/// Returns the worker that reassembles the IP packet whose fragments carry `key`.
pub fn fragment_owner(key: &FragmentKey, workers: usize) -> WorkerId {
    if workers <= 1 {
        return WorkerId(0);
    }
    let address = |ip: IpAddr| match ip {
        IpAddr::V4(ip) => ip.to_ipv6_mapped().octets(),
        IpAddr::V6(ip) => ip.octets(),
    };
    let bytes = address(key.source)
        .into_iter()
        .chain(address(key.destination))
        .chain(key.id.to_be_bytes())
        .chain([key.protocol]);
    WorkerId(fnv1a(bytes) as usize % workers)
}

/// FNV-1a over `bytes`: cheap, and it spreads sequential ports evenly.
fn fnv1a(bytes: impl Iterator<Item = u8>) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in bytes {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// Decides where an ingress `frame` goes. `l2_len` is 14 on a TAP and 0 on a TUN; frames that
/// cannot be parsed stay where they are (the stack drops them).
pub fn steer(frame: &[u8], l2_len: usize, workers: usize) -> Steer {
    if workers <= 1 {
        return Steer::Here;
    }
    if l2_len == 14 {
        let Some(ethertype) = frame.get(12..14).map(|b| u16::from_be_bytes([b[0], b[1]])) else {
            return Steer::Here;
        };
        match ethertype {
            ETHERTYPE_ARP => return Steer::Everyone,
            ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => {}
            _ => return Steer::Here,
        }
    }
    if let Some(key) = fragment_key(frame, l2_len) {
        return Steer::To(fragment_owner(&key, workers));
    }
    let Some(ip) = frame.get(l2_len..) else {
        return Steer::Here;
    };
    let Some(&version_ihl) = ip.first() else {
        return Steer::Here;
    };
    if version_ihl >> 4 == 6 {
        return steer_ipv6(ip, workers);
    }
    if version_ihl >> 4 != 4 {
        return Steer::Here;
    }
    let ihl = usize::from(version_ihl & 0x0f) * 4;
    match ip.get(9) {
        Some(&IPPROTO_TCP) => {}
        Some(&IPPROTO_UDP) => return steer_udp(ip, ihl, workers),
        Some(&IPPROTO_ICMP) => return steer_icmp_error(ip, workers),
        _ => return Steer::Here,
    }
    let (Some(src), Some(ports)) = (ip.get(12..16), ip.get(ihl..ihl + 4)) else {
        return Steer::Here;
    };
    let remote = Ipv4Addr::new(src[0], src[1], src[2], src[3]);
    let remote_port = u16::from_be_bytes([ports[0], ports[1]]);
    let local_port = u16::from_be_bytes([ports[2], ports[3]]);
    Steer::To(owner(remote, remote_port, local_port, workers))
}

/// The 4-tuple of a TCP segment from the receiving stack's side, so `local` is the
/// destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TcpFlow {
    pub local: IpAddr,
    pub local_port: u16,
    pub remote: IpAddr,
    pub remote_port: u16,
}

/// The kind of an ingress frame, for routing it to the sockets it can change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ingress {
    /// A TCP segment of this flow.
    Tcp(TcpFlow),
    /// ARP or IPv6 neighbour discovery, which can fill the neighbour cache that sockets wait on.
    Neighbour,
    /// Anything else: UDP, ICMP, and frames that cannot be parsed.
    Other,
}

/// Classifies an ingress `frame`; `l2_len` is 14 on a TAP and 0 on a TUN.
pub fn classify_ingress(frame: &[u8], l2_len: usize) -> Ingress {
    if l2_len == 14 {
        match frame.get(12..14).map(|b| u16::from_be_bytes([b[0], b[1]])) {
            Some(ETHERTYPE_ARP) => return Ingress::Neighbour,
            Some(ETHERTYPE_IPV4 | ETHERTYPE_IPV6) => {}
            _ => return Ingress::Other,
        }
    }
    let ip = frame.get(l2_len..).unwrap_or_default();
    match ip.first().map(|b| b >> 4) {
        Some(4) => classify_ipv4(ip),
        Some(6) => classify_ipv6(ip),
        _ => Ingress::Other,
    }
}

fn classify_ipv4(ip: &[u8]) -> Ingress {
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let fragment = ip.get(6..8).map(|b| u16::from_be_bytes([b[0], b[1]]));
    if ip.get(9) != Some(&IPPROTO_TCP) || fragment.is_none_or(|f| f & IPV4_FRAGMENT_BITS != 0) {
        return Ingress::Other;
    }
    let (Some(src), Some(dst), Some(ports)) =
        (ip.get(12..16), ip.get(16..20), ip.get(ihl..ihl + 4))
    else {
        return Ingress::Other;
    };
    let address = |b: &[u8]| IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]));
    Ingress::Tcp(TcpFlow {
        local: address(dst),
        local_port: u16::from_be_bytes([ports[2], ports[3]]),
        remote: address(src),
        remote_port: u16::from_be_bytes([ports[0], ports[1]]),
    })
}

fn classify_ipv6(ip: &[u8]) -> Ingress {
    let payload = ip.get(IPV6_HEADER_LEN..).unwrap_or_default();
    match ip.get(6) {
        Some(&IPPROTO_ICMPV6) if payload.first().is_some_and(|t| NDP_TYPES.contains(t)) => {
            return Ingress::Neighbour;
        }
        Some(&IPPROTO_TCP) => {}
        _ => return Ingress::Other,
    }
    let (Some(src), Some(dst), Some(ports)) = (ip.get(8..24), ip.get(24..40), payload.get(..4))
    else {
        return Ingress::Other;
    };
    let address = |b: &[u8]| IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(b).expect("16 bytes")));
    Ingress::Tcp(TcpFlow {
        local: address(dst),
        local_port: u16::from_be_bytes([ports[2], ports[3]]),
        remote: address(src),
        remote_port: u16::from_be_bytes([ports[0], ports[1]]),
    })
}

/// Steers an IPv4 UDP datagram (never a fragment: those are steered before) to the owner of
/// its destination port.
fn steer_udp(ip: &[u8], ihl: usize, workers: usize) -> Steer {
    match ip.get(ihl + 2..ihl + 4) {
        Some(port) => Steer::To(udp_owner(u16::from_be_bytes([port[0], port[1]]), workers)),
        None => Steer::Here,
    }
}

/// Steers an ICMP or ICMPv6 error about a UDP datagram to the owner of the datagram's source
/// port, whose socket it concerns; other ICMP stays where it is.
fn steer_icmp_error(ip: &[u8], workers: usize) -> Steer {
    match crate::icmp_error::parse_udp_error(ip, 0) {
        Some(error) => Steer::To(udp_owner(error.local.port(), workers)),
        None => Steer::Here,
    }
}

/// Steers an IPv6 packet: TCP by its 4-tuple, neighbour discovery to every worker. Packets
/// with extension headers stay where they are, because the kernel adds none to TCP or NDP.
fn steer_ipv6(ip: &[u8], workers: usize) -> Steer {
    let Some(&next_header) = ip.get(6) else {
        return Steer::Here;
    };
    let payload = ip.get(IPV6_HEADER_LEN..).unwrap_or_default();
    match next_header {
        IPPROTO_ICMPV6 => match payload.first() {
            Some(kind) if NDP_TYPES.contains(kind) => Steer::Everyone,
            _ => steer_icmp_error(ip, workers),
        },
        IPPROTO_UDP => match payload.get(2..4) {
            Some(port) => Steer::To(udp_owner(u16::from_be_bytes([port[0], port[1]]), workers)),
            None => Steer::Here,
        },
        IPPROTO_TCP => {
            let (Some(src), Some(ports)) = (ip.get(8..24), payload.get(..4)) else {
                return Steer::Here;
            };
            let octets: [u8; 16] = src.try_into().expect("16 bytes");
            let remote_port = u16::from_be_bytes([ports[0], ports[1]]);
            let local_port = u16::from_be_bytes([ports[2], ports[3]]);
            Steer::To(owner(
                Ipv6Addr::from(octets),
                remote_port,
                local_port,
                workers,
            ))
        }
        _ => Steer::Here,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp_frame(src: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let mut f = vec![0u8; 54];
        f[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        f[14] = 0x45;
        f[23] = IPPROTO_TCP;
        f[26..30].copy_from_slice(&src);
        f[34..36].copy_from_slice(&sport.to_be_bytes());
        f[36..38].copy_from_slice(&dport.to_be_bytes());
        f
    }

    #[test]
    fn tcp_frame_classified_by_flow() {
        let mut frame = tcp_frame([10, 77, 0, 1], 5201, 40000);
        frame[30..34].copy_from_slice(&[10, 77, 0, 2]);
        let expected = TcpFlow {
            local: IpAddr::V4(Ipv4Addr::new(10, 77, 0, 2)),
            local_port: 40000,
            remote: IpAddr::V4(Ipv4Addr::new(10, 77, 0, 1)),
            remote_port: 5201,
        };
        assert_eq!(classify_ingress(&frame, 14), Ingress::Tcp(expected));
        assert_eq!(classify_ingress(&frame[14..], 0), Ingress::Tcp(expected));
    }

    #[test]
    fn tcp6_frame_classified_by_flow() {
        let remote: Ipv6Addr = "fd00::1".parse().unwrap();
        let frame = tcp6_frame(remote, 443, 50000);
        let Ingress::Tcp(flow) = classify_ingress(&frame, 14) else {
            panic!("not classified as TCP");
        };
        assert_eq!(flow.remote, IpAddr::V6(remote));
        assert_eq!((flow.remote_port, flow.local_port), (443, 50000));
    }

    #[test]
    fn neighbour_frames_classified() {
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
        assert_eq!(classify_ingress(&arp, 14), Ingress::Neighbour);
        let mut solicitation = tcp6_frame("fe80::1".parse().unwrap(), 0, 0);
        solicitation[14 + 6] = IPPROTO_ICMPV6;
        solicitation[14 + IPV6_HEADER_LEN] = 135;
        assert_eq!(classify_ingress(&solicitation, 14), Ingress::Neighbour);
    }

    #[test]
    fn fragments_and_short_frames_classified_other() {
        let mut fragment = tcp_frame([10, 77, 0, 1], 1, 2);
        fragment[20] = 0x00;
        fragment[21] = 0x10;
        assert_eq!(classify_ingress(&fragment, 14), Ingress::Other);
        assert_eq!(classify_ingress(&fragment[..20], 14), Ingress::Other);
        assert_eq!(classify_ingress(&[], 14), Ingress::Other);
    }

    #[test]
    fn frame_goes_to_tuple_owner() {
        let frame = tcp_frame([10, 77, 0, 1], 5201, 40000);
        let expected = owner(Ipv4Addr::new(10, 77, 0, 1), 5201, 40000, 4);
        assert_eq!(steer(&frame, 14, 4), Steer::To(expected));
    }

    fn tcp6_frame(src: Ipv6Addr, sport: u16, dport: u16) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 40 + 20];
        f[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
        f[14] = 0x60;
        f[20] = IPPROTO_TCP;
        f[22..38].copy_from_slice(&src.octets());
        f[54..56].copy_from_slice(&sport.to_be_bytes());
        f[56..58].copy_from_slice(&dport.to_be_bytes());
        f
    }

    #[test]
    fn ipv6_frame_goes_to_tuple_owner() {
        let src: Ipv6Addr = "fd00::1".parse().unwrap();
        let frame = tcp6_frame(src, 5201, 40000);
        assert_eq!(steer(&frame, 14, 4), Steer::To(owner(src, 5201, 40000, 4)));
        assert_eq!(
            steer(&frame[14..], 0, 4),
            Steer::To(owner(src, 5201, 40000, 4))
        );
    }

    #[test]
    fn ipv6_ports_spread_over_workers() {
        let src: Ipv6Addr = "fd00::1".parse().unwrap();
        let mut counts = [0usize; 4];
        for port in 32768..33768 {
            counts[owner(src, 5201, port, 4).0] += 1;
        }
        for count in counts {
            assert!((150..=350).contains(&count), "uneven spread: {counts:?}");
        }
    }

    #[test]
    fn neighbour_discovery_goes_everywhere() {
        let mut frame = tcp6_frame("fe80::1".parse().unwrap(), 0, 0);
        frame[20] = IPPROTO_ICMPV6;
        for kind in NDP_TYPES {
            frame[54] = kind;
            assert_eq!(steer(&frame, 14, 2), Steer::Everyone, "type {kind}");
        }
        // An echo request is answered by whichever worker read it.
        frame[54] = 128;
        assert_eq!(steer(&frame, 14, 2), Steer::Here);
        frame.truncate(54);
        assert_eq!(steer(&frame, 14, 2), Steer::Here);
    }

    #[test]
    fn udp_goes_to_port_owner() {
        let mut udp = tcp_frame([10, 77, 0, 1], 53, 40000);
        udp[23] = IPPROTO_UDP;
        assert_eq!(steer(&udp, 14, 4), Steer::To(udp_owner(40000, 4)));
        // Any peer reaches the same worker: the port alone decides.
        udp[26..30].copy_from_slice(&[10, 77, 0, 9]);
        udp[34..36].copy_from_slice(&5353u16.to_be_bytes());
        assert_eq!(steer(&udp, 14, 4), Steer::To(udp_owner(40000, 4)));
    }

    #[test]
    fn fragments_of_one_packet_meet() {
        let frame = crate::fragment::tests::udp4_frame(9000);
        let plan = crate::fragment::Fragments::plan(&frame, 14, 1500, 99).unwrap();
        let key = fragment_key(
            &{
                let mut out = vec![0u8; plan.max_frame_len()];
                let len = plan.write(&frame, 1, &mut out);
                out.truncate(len);
                out
            },
            14,
        )
        .unwrap();
        let owner = fragment_owner(&key, 4);
        for index in 0..plan.count() {
            let mut out = vec![0u8; plan.max_frame_len()];
            let len = plan.write(&frame, index, &mut out);
            assert_eq!(
                steer(&out[..len], 14, 4),
                Steer::To(owner),
                "fragment {index}"
            );
        }
        let frame = crate::fragment::tests::udp6_frame(9000);
        let plan = crate::fragment::Fragments::plan(&frame, 14, 1500, 99).unwrap();
        let owners: Vec<Steer> = (0..plan.count())
            .map(|index| {
                let mut out = vec![0u8; plan.max_frame_len()];
                let len = plan.write(&frame, index, &mut out);
                steer(&out[..len], 14, 4)
            })
            .collect();
        assert!(
            owners.iter().all(|owner| *owner == owners[0]),
            "IPv6 fragments went to {owners:?}"
        );
    }

    #[test]
    fn fragment_owners_spread() {
        let mut counts = [0usize; 4];
        for id in 0..1000u32 {
            let key = FragmentKey {
                source: Ipv4Addr::new(10, 77, 0, 1).into(),
                destination: Ipv4Addr::new(10, 77, 0, 2).into(),
                id,
                protocol: IPPROTO_UDP,
            };
            counts[fragment_owner(&key, 4).0] += 1;
        }
        for count in counts {
            assert!((150..=350).contains(&count), "uneven spread: {counts:?}");
        }
    }

    #[test]
    fn udp_ports_spread_over_workers() {
        let mut counts = [0usize; 4];
        for port in 32768..33768 {
            counts[udp_owner(port, 4).0] += 1;
        }
        for count in counts {
            assert!((150..=350).contains(&count), "uneven spread: {counts:?}");
        }
    }

    #[test]
    fn icmp_error_goes_to_quoted_port_owner() {
        let mut f = vec![0u8; 14 + 20 + 8 + 20 + 8];
        f[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        f[14] = 0x45;
        f[23] = IPPROTO_ICMP;
        f[34] = 3;
        f[35] = 3;
        f[42] = 0x45;
        f[42 + 9] = IPPROTO_UDP;
        f[62..64].copy_from_slice(&40001u16.to_be_bytes());
        f[64..66].copy_from_slice(&9u16.to_be_bytes());
        assert_eq!(steer(&f, 14, 4), Steer::To(udp_owner(40001, 4)));
        // An echo request is answered where it arrived.
        f[34] = 8;
        assert_eq!(steer(&f, 14, 4), Steer::Here);
    }

    #[test]
    fn arp_goes_everywhere() {
        let mut frame = vec![0u8; 42];
        frame[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
        assert_eq!(steer(&frame, 14, 2), Steer::Everyone);
    }

    #[test]
    fn one_worker_keeps_everything() {
        let frame = tcp_frame([10, 77, 0, 1], 5201, 40000);
        assert_eq!(steer(&frame, 14, 1), Steer::Here);
    }

    #[test]
    fn ports_spread_over_workers() {
        let mut counts = [0usize; 4];
        for port in 32768..33768 {
            counts[owner(Ipv4Addr::new(10, 77, 0, 1), 5201, port, 4).0] += 1;
        }
        for count in counts {
            assert!((150..=350).contains(&count), "uneven spread: {counts:?}");
        }
    }

    #[test]
    fn short_and_foreign_frames_stay() {
        assert_eq!(steer(&[], 14, 2), Steer::Here);
        assert_eq!(steer(&[0u8; 20], 14, 2), Steer::Here);
        let mut gre = tcp_frame([10, 77, 0, 1], 53, 40000);
        gre[23] = 47;
        assert_eq!(steer(&gre, 14, 2), Steer::Here);
        let mut short = tcp_frame([10, 77, 0, 1], 1, 2);
        short.truncate(36);
        assert_eq!(steer(&short, 14, 2), Steer::Here);
    }
}
