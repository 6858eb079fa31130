//! Loopback through the stack: frames the stack sends to one of its own addresses (its TAP
//! addresses, 127.0.0.0/8 or ::1) are turned around inside netcon-dp instead of going out on
//! the TAP. So a program can reach a server of its own netcon-dp by that address, and
//! 127.0.0.1 and ::1 mean the programs behind this netcon-dp, as in a container of their own.
//!
//! smoltcp resolves every destination on the link with ARP or IPv6 neighbour discovery, its own
//! addresses included, so an ARP request or a neighbour solicitation for one of our addresses is
//! answered here with our own MAC. Pure functions on byte slices; the worker moves the frames.

use std::net::{Ipv4Addr, Ipv6Addr};

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ARP_REQUEST: u16 = 1;
const ARP_REPLY: u16 = 2;
const IPPROTO_ICMPV6: u8 = 58;
const ICMPV6_NEIGHBOUR_SOLICITATION: u8 = 135;
const ICMPV6_NEIGHBOUR_ADVERTISEMENT: u8 = 136;
/// Neighbour advertisement flags: solicited and override (RFC 4861, section 4.4).
const ADVERTISEMENT_FLAGS: u8 = 0x60;
const NDP_OPTION_TARGET_LINK_ADDRESS: u8 = 2;
/// Hop limit of every neighbour discovery packet; receivers drop others.
const NDP_HOP_LIMIT: u8 = 255;
const ETHERNET_HEADER_LEN: usize = 14;
const IPV6_HEADER_LEN: usize = 40;

/// Length of an Ethernet frame carrying an IPv4-over-Ethernet ARP packet.
pub const ARP_FRAME_LEN: usize = 42;

/// Length of the ICMPv6 neighbour advertisement [`neighbour_advertisement`] builds: type,
/// code, checksum, flags, target and a target link-layer address option.
const ADVERTISEMENT_LEN: usize = 32;

/// Length of the Ethernet frame carrying that advertisement.
pub const ADVERTISEMENT_FRAME_LEN: usize =
    ETHERNET_HEADER_LEN + IPV6_HEADER_LEN + ADVERTISEMENT_LEN;

/// Whether `ip` is one of the stack's own addresses.
pub fn is_own(ip: Ipv4Addr, address: Ipv4Addr) -> bool {
    ip == address || ip.is_loopback()
}

/// The stack's own IPv6 addresses besides ::1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OwnIpv6 {
    /// The address `--address6` sets.
    pub global: Option<Ipv6Addr>,
    /// The link-local address derived from the MAC, present with a global address.
    pub link_local: Option<Ipv6Addr>,
}

impl OwnIpv6 {
    /// Returns whether `ip` is ::1 or one of these addresses.
    pub fn contains(&self, ip: Ipv6Addr) -> bool {
        ip.is_loopback() || Some(ip) == self.global || Some(ip) == self.link_local
    }
}

/// What to do with a frame the stack wants to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Egress {
    /// Out on the TAP.
    Wire,
    /// Back into the stack: it is addressed to the stack itself.
    TurnAround,
    /// An ARP request for one of our addresses: answer it with [`arp_reply`].
    AnswerArp,
    /// A neighbour solicitation for one of our IPv6 addresses: answer it with
    /// [`neighbour_advertisement`].
    AnswerSolicitation,
}

/// Classifies an egress frame (`l2_len` 14 on a TAP, 0 on a TUN) for a stack at `address` and
/// `ipv6`.
pub fn classify(frame: &[u8], l2_len: usize, address: Ipv4Addr, ipv6: &OwnIpv6) -> Egress {
    let ethertype = if l2_len == 14 {
        match frame.get(12..14) {
            Some(b) => u16::from_be_bytes([b[0], b[1]]),
            None => return Egress::Wire,
        }
    } else {
        match frame.first().map(|b| b >> 4) {
            Some(6) => ETHERTYPE_IPV6,
            _ => ETHERTYPE_IPV4,
        }
    };
    match ethertype {
        ETHERTYPE_IPV6 => classify_ipv6(frame.get(l2_len..).unwrap_or_default(), l2_len, ipv6),
        ETHERTYPE_IPV4 => match frame.get(l2_len + 16..l2_len + 20) {
            Some(d) if is_own(Ipv4Addr::new(d[0], d[1], d[2], d[3]), address) => Egress::TurnAround,
            _ => Egress::Wire,
        },
        ETHERTYPE_ARP if l2_len == 14 => {
            let (Some(operation), Some(target)) = (frame.get(20..22), frame.get(38..42)) else {
                return Egress::Wire;
            };
            let target = Ipv4Addr::new(target[0], target[1], target[2], target[3]);
            let is_request = u16::from_be_bytes([operation[0], operation[1]]) == ARP_REQUEST;
            if is_request && is_own(target, address) {
                Egress::AnswerArp
            } else {
                Egress::Wire
            }
        }
        _ => Egress::Wire,
    }
}

/// Classifies an IPv6 packet the stack sends.
fn classify_ipv6(packet: &[u8], l2_len: usize, ipv6: &OwnIpv6) -> Egress {
    let Some(destination) = packet.get(24..40).map(ipv6_at) else {
        return Egress::Wire;
    };
    let solicitation_target = match (packet.get(6), packet.get(IPV6_HEADER_LEN)) {
        (Some(&IPPROTO_ICMPV6), Some(&ICMPV6_NEIGHBOUR_SOLICITATION)) => packet
            .get(IPV6_HEADER_LEN + 8..IPV6_HEADER_LEN + 24)
            .map(ipv6_at),
        _ => None,
    };
    match solicitation_target {
        Some(target) if l2_len == ETHERNET_HEADER_LEN && ipv6.contains(target) => {
            Egress::AnswerSolicitation
        }
        _ if ipv6.contains(destination) => Egress::TurnAround,
        _ => Egress::Wire,
    }
}

/// Reads the IPv6 address in 16 bytes.
fn ipv6_at(bytes: &[u8]) -> Ipv6Addr {
    let octets: [u8; 16] = bytes.try_into().expect("16 bytes");
    Ipv6Addr::from(octets)
}

/// Builds the neighbour advertisement that answers `solicitation` (an Ethernet frame
/// [`classify`] marked [`Egress::AnswerSolicitation`]): it maps the solicited target to `mac`
/// and goes back to the soliciting address. Returns `None` for a solicitation from the
/// unspecified address (duplicate address detection, which smoltcp does not run).
pub fn neighbour_advertisement(
    solicitation: &[u8],
    mac: [u8; 6],
) -> Option<[u8; ADVERTISEMENT_FRAME_LEN]> {
    let ip = solicitation.get(ETHERNET_HEADER_LEN..)?;
    let source = ip.get(8..24)?;
    let target = ip.get(IPV6_HEADER_LEN + 8..IPV6_HEADER_LEN + 24)?;
    if ipv6_at(source).is_unspecified() {
        return None;
    }
    let mut frame = [0u8; ADVERTISEMENT_FRAME_LEN];
    frame[0..6].copy_from_slice(&solicitation[6..12]);
    frame[6..12].copy_from_slice(&mac);
    frame[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());

    let ip_out = &mut frame[ETHERNET_HEADER_LEN..];
    ip_out[0] = 0x60;
    ip_out[4..6].copy_from_slice(&(ADVERTISEMENT_LEN as u16).to_be_bytes());
    ip_out[6] = IPPROTO_ICMPV6;
    ip_out[7] = NDP_HOP_LIMIT;
    ip_out[8..24].copy_from_slice(target);
    ip_out[24..40].copy_from_slice(source);

    let icmp = &mut ip_out[IPV6_HEADER_LEN..];
    icmp[0] = ICMPV6_NEIGHBOUR_ADVERTISEMENT;
    icmp[4] = ADVERTISEMENT_FLAGS;
    icmp[8..24].copy_from_slice(target);
    icmp[24] = NDP_OPTION_TARGET_LINK_ADDRESS;
    icmp[25] = 1; // option length in units of 8 bytes
    icmp[26..32].copy_from_slice(&mac);

    let checksum = icmpv6_checksum(&frame[ETHERNET_HEADER_LEN..]);
    frame[ETHERNET_HEADER_LEN + IPV6_HEADER_LEN + 2..][..2]
        .copy_from_slice(&checksum.to_be_bytes());
    Some(frame)
}

/// Computes the ICMPv6 checksum of `packet` (an IPv6 header followed by an ICMPv6 message
/// whose checksum field is zero): the one's complement of the one's complement sum over the
/// pseudo-header and the message (RFC 8200, section 8.1).
fn icmpv6_checksum(packet: &[u8]) -> u16 {
    let message = &packet[IPV6_HEADER_LEN..];
    let mut sum: u32 = u32::from(IPPROTO_ICMPV6) + message.len() as u32;
    for chunk in packet[8..40].chunks_exact(2).chain(message.chunks(2)) {
        let high = u32::from(chunk[0]) << 8;
        sum += high | chunk.get(1).map_or(0, |low| u32::from(*low));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Builds the ARP reply to `request` (a frame [`classify`] marked [`Egress::AnswerArp`]) that
/// maps the requested address to `mac`.
pub fn arp_reply(request: &[u8], mac: [u8; 6]) -> Option<[u8; ARP_FRAME_LEN]> {
    let request = request.get(..ARP_FRAME_LEN)?;
    let mut reply = [0u8; ARP_FRAME_LEN];
    let (sender_mac, sender_ip, target_ip) = (&request[22..28], &request[28..32], &request[38..42]);
    reply[0..6].copy_from_slice(sender_mac);
    reply[6..12].copy_from_slice(&mac);
    reply[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    reply[14..20].copy_from_slice(&request[14..20]);
    reply[20..22].copy_from_slice(&ARP_REPLY.to_be_bytes());
    reply[22..28].copy_from_slice(&mac);
    reply[28..32].copy_from_slice(target_ip);
    reply[32..38].copy_from_slice(sender_mac);
    reply[38..42].copy_from_slice(sender_ip);
    Some(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
    const MAC: [u8; 6] = [2, 0x6e, 0x63, 1, 2, 3];

    fn own6() -> OwnIpv6 {
        OwnIpv6 {
            global: Some("fd00::2".parse().unwrap()),
            link_local: Some("fe80::6e:63ff:fe01:203".parse().unwrap()),
        }
    }

    fn ipv6_to(dst: &str) -> Vec<u8> {
        let mut frame = vec![0u8; 14 + 40 + 20];
        frame[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
        frame[14] = 0x60;
        frame[20] = 6;
        frame[22..38].copy_from_slice(&"fd00::2".parse::<Ipv6Addr>().unwrap().octets());
        frame[38..54].copy_from_slice(&dst.parse::<Ipv6Addr>().unwrap().octets());
        frame
    }

    /// Builds the neighbour solicitation smoltcp sends from `source` to resolve `target`.
    fn solicitation(source: &str, target: &str) -> Vec<u8> {
        let target: Ipv6Addr = target.parse().unwrap();
        let t = target.octets();
        let prefix = u128::from(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00, 0));
        let group = Ipv6Addr::from(prefix | (u128::from(target) & 0xff_ffff));
        let mut frame = vec![0u8; 14 + 40 + 32];
        frame[0..6].copy_from_slice(&[0x33, 0x33, 0xff, t[13], t[14], t[15]]);
        frame[6..12].copy_from_slice(&MAC);
        frame[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
        frame[14] = 0x60;
        frame[18..20].copy_from_slice(&32u16.to_be_bytes());
        frame[20] = IPPROTO_ICMPV6;
        frame[21] = 255;
        frame[22..38].copy_from_slice(&source.parse::<Ipv6Addr>().unwrap().octets());
        frame[38..54].copy_from_slice(&group.octets());
        frame[54] = ICMPV6_NEIGHBOUR_SOLICITATION;
        frame[62..78].copy_from_slice(&t);
        frame[78] = 1;
        frame[79] = 1;
        frame[80..86].copy_from_slice(&MAC);
        frame
    }

    #[test]
    fn own_ipv6_and_loopback_turn_around() {
        for dst in ["fd00::2", "::1", "fe80::6e:63ff:fe01:203"] {
            assert_eq!(
                classify(&ipv6_to(dst), 14, OURS, &own6()),
                Egress::TurnAround,
                "{dst}"
            );
        }
        assert_eq!(
            classify(&ipv6_to("fd00::1"), 14, OURS, &own6()),
            Egress::Wire
        );
        let frame = ipv6_to("::1");
        assert_eq!(
            classify(&frame[14..], 0, OURS, &OwnIpv6::default()),
            Egress::TurnAround
        );
        assert_eq!(
            classify(&ipv6_to("fd00::2"), 14, OURS, &OwnIpv6::default()),
            Egress::Wire
        );
    }

    #[test]
    fn solicitation_for_ourselves_answered() {
        let request = solicitation("::1", "::1");
        assert_eq!(
            classify(&request, 14, OURS, &own6()),
            Egress::AnswerSolicitation
        );
        let advert = neighbour_advertisement(&request, MAC).unwrap();
        assert_eq!(&advert[0..6], &MAC);
        assert_eq!(&advert[6..12], &MAC);
        assert_eq!(advert[20], IPPROTO_ICMPV6);
        assert_eq!(advert[21], 255);
        assert_eq!(ipv6_at(&advert[22..38]), Ipv6Addr::LOCALHOST);
        assert_eq!(ipv6_at(&advert[38..54]), Ipv6Addr::LOCALHOST);
        assert_eq!(advert[54], ICMPV6_NEIGHBOUR_ADVERTISEMENT);
        assert_eq!(ipv6_at(&advert[62..78]), Ipv6Addr::LOCALHOST);
        assert_eq!(&advert[80..86], &MAC);
        // A correct checksum makes the sum over pseudo-header and message 0xffff.
        let mut zeroed = advert;
        zeroed[56..58].copy_from_slice(&[0, 0]);
        let expected = icmpv6_checksum(&zeroed[14..]);
        assert_eq!(u16::from_be_bytes([advert[56], advert[57]]), expected);
        assert_ne!(expected, 0);
    }

    #[test]
    fn advertisement_checksum_known_value() {
        // The advertisement goes from fd00::2 to fd00::2 for target fd00::2 and MAC
        // 02:6e:63:01:02:03. Its pseudo-header sums 0xfd00 + 2 + 0xfd00 + 2 + 32 + 58, and its
        // message 0x8800 + 0x6000 + 0xfd00 + 2 + 0x0201 + 0x026e + 0x6301 + 0x0203.
        let request = solicitation("fd00::2", "fd00::2");
        let advert = neighbour_advertisement(&request, MAC).unwrap();
        let words: [u32; 14] = [
            0xfd00, 2, 0xfd00, 2, 32, 58, 0x8800, 0x6000, 0xfd00, 2, 0x0201, 0x026e, 0x6301, 0x0203,
        ];
        let mut sum: u32 = words.iter().sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        assert_eq!(u16::from_be_bytes([advert[56], advert[57]]), !(sum as u16));
    }

    #[test]
    fn solicitation_for_peer_goes_out() {
        let request = solicitation("fd00::2", "fd00::1");
        assert_eq!(classify(&request, 14, OURS, &own6()), Egress::Wire);
    }

    #[test]
    fn duplicate_address_probe_not_answered() {
        let request = solicitation("::", "fd00::2");
        assert_eq!(neighbour_advertisement(&request, MAC), None);
    }

    fn ipv4_to(dst: [u8; 4]) -> Vec<u8> {
        let mut frame = vec![0u8; 54];
        frame[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        frame[14] = 0x45;
        frame[30..34].copy_from_slice(&dst);
        frame
    }

    fn arp_request_for(target: [u8; 4]) -> Vec<u8> {
        let mut frame = vec![0u8; ARP_FRAME_LEN];
        frame[0..6].copy_from_slice(&[0xff; 6]);
        frame[6..12].copy_from_slice(&MAC);
        frame[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
        frame[14..20].copy_from_slice(&[0, 1, 8, 0, 6, 4]);
        frame[20..22].copy_from_slice(&ARP_REQUEST.to_be_bytes());
        frame[22..28].copy_from_slice(&MAC);
        frame[28..32].copy_from_slice(&[10, 77, 0, 2]);
        frame[38..42].copy_from_slice(&target);
        frame
    }

    #[test]
    fn own_and_loopback_turn_around() {
        assert_eq!(
            classify(&ipv4_to([10, 77, 0, 2]), 14, OURS, &own6()),
            Egress::TurnAround
        );
        assert_eq!(
            classify(&ipv4_to([127, 0, 0, 1]), 14, OURS, &own6()),
            Egress::TurnAround
        );
        assert_eq!(
            classify(&ipv4_to([10, 77, 0, 1]), 14, OURS, &own6()),
            Egress::Wire
        );
    }

    #[test]
    fn tun_frames_start_at_ip() {
        let frame = ipv4_to([127, 0, 0, 1]);
        assert_eq!(classify(&frame[14..], 0, OURS, &own6()), Egress::TurnAround);
    }

    #[test]
    fn arp_for_ourselves_answered() {
        let request = arp_request_for([127, 0, 0, 1]);
        assert_eq!(classify(&request, 14, OURS, &own6()), Egress::AnswerArp);
        let reply = arp_reply(&request, MAC).unwrap();
        assert_eq!(u16::from_be_bytes([reply[20], reply[21]]), ARP_REPLY);
        assert_eq!(&reply[22..28], &MAC);
        assert_eq!(&reply[28..32], &[127, 0, 0, 1]);
        assert_eq!(&reply[38..42], &[10, 77, 0, 2]);
        assert_eq!(&reply[0..6], &MAC);
    }

    #[test]
    fn arp_for_peer_goes_out() {
        assert_eq!(
            classify(&arp_request_for([10, 77, 0, 1]), 14, OURS, &own6()),
            Egress::Wire
        );
    }

    #[test]
    fn short_frames_go_out() {
        for len in 0..42 {
            let request = arp_request_for([127, 0, 0, 1]);
            let _ = classify(&request[..len], 14, OURS, &own6());
            let _ = arp_reply(&request[..len], MAC);
        }
        for len in 0..86 {
            let request = solicitation("::1", "::1");
            let _ = classify(&request[..len], 14, OURS, &own6());
            let _ = classify(&request[14..len.max(14)], 0, OURS, &own6());
            let _ = neighbour_advertisement(&request[..len], MAC);
        }
    }
}
