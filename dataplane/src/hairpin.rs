//! Loopback through the stack: frames the stack sends to one of its own addresses (its TAP
//! address, or 127.0.0.0/8) are turned around inside netcon-dp instead of going out on the TAP,
//! so a program can reach a server of its own netcon-dp by that address, and 127.0.0.1 means
//! the programs behind this netcon-dp, as it would in a container of their own.
//!
//! smoltcp resolves every destination on the link with ARP, its own address included, so an
//! ARP request for one of our addresses is answered here with our own MAC. Pure functions on
//! byte slices; the worker moves the frames.

use std::net::Ipv4Addr;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
const ARP_REQUEST: u16 = 1;
const ARP_REPLY: u16 = 2;

/// Length of an Ethernet frame carrying an IPv4-over-Ethernet ARP packet.
pub const ARP_FRAME_LEN: usize = 42;

/// Whether `ip` is one of the stack's own addresses.
pub fn is_own(ip: Ipv4Addr, address: Ipv4Addr) -> bool {
    ip == address || ip.is_loopback()
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
}

/// Classifies an egress frame (`l2_len` 14 on a TAP, 0 on a TUN) for a stack at `address`.
pub fn classify(frame: &[u8], l2_len: usize, address: Ipv4Addr) -> Egress {
    let ethertype = if l2_len == 14 {
        match frame.get(12..14) {
            Some(b) => u16::from_be_bytes([b[0], b[1]]),
            None => return Egress::Wire,
        }
    } else {
        ETHERTYPE_IPV4
    };
    match ethertype {
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
            classify(&ipv4_to([10, 77, 0, 2]), 14, OURS),
            Egress::TurnAround
        );
        assert_eq!(
            classify(&ipv4_to([127, 0, 0, 1]), 14, OURS),
            Egress::TurnAround
        );
        assert_eq!(classify(&ipv4_to([10, 77, 0, 1]), 14, OURS), Egress::Wire);
    }

    #[test]
    fn tun_frames_start_at_ip() {
        let frame = ipv4_to([127, 0, 0, 1]);
        assert_eq!(classify(&frame[14..], 0, OURS), Egress::TurnAround);
    }

    #[test]
    fn arp_for_ourselves_answered() {
        let request = arp_request_for([127, 0, 0, 1]);
        assert_eq!(classify(&request, 14, OURS), Egress::AnswerArp);
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
            classify(&arp_request_for([10, 77, 0, 1]), 14, OURS),
            Egress::Wire
        );
    }

    #[test]
    fn short_frames_go_out() {
        for len in 0..42 {
            let request = arp_request_for([127, 0, 0, 1]);
            let _ = classify(&request[..len], 14, OURS);
            let _ = arp_reply(&request[..len], MAC);
        }
    }
}
