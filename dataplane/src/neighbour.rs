//! Failed neighbour resolution, seen from the frames the stack exchanges: an ARP request or
//! neighbour solicitation the stack sent for an address, and no ARP message or neighbour
//! advertisement from that address since. Linux gives up on a neighbour after three
//! unanswered probes a second apart and fails a connect to it with EHOSTUNREACH. smoltcp 0.14
//! keeps its neighbour cache to itself and retries until the connect times out, so the worker
//! watches the frames instead.
//!
//! Everything here takes frames and the time: no I/O.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use smoltcp::time::{Duration, Instant};

/// How long requests for a neighbour go unanswered before it counts as unreachable: Linux's
/// three probes (`mcast_solicit`) one second apart (`retrans_time_ms`).
pub const RESOLUTION_TIMEOUT: Duration = Duration::from_secs(3);

/// Most addresses watched at once; the oldest request is forgotten first.
const MAX_WATCHED: usize = 1024;

const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ARP_REQUEST: u16 = 1;
const IPPROTO_ICMPV6: u8 = 58;
const NEIGHBOUR_SOLICITATION: u8 = 135;
const NEIGHBOUR_ADVERTISEMENT: u8 = 136;

/// Returns the address an egress frame asks the link to resolve: the target of an ARP request
/// or of a neighbour solicitation. Only Ethernet frames carry either.
pub fn requested_address(frame: &[u8], l2_len: usize) -> Option<IpAddr> {
    if l2_len != 14 {
        return None;
    }
    match ethertype(frame)? {
        ETHERTYPE_ARP => {
            let operation = u16::from_be_bytes(frame.get(20..22)?.try_into().ok()?);
            (operation == ARP_REQUEST)
                .then(|| ipv4_at(frame, 38))
                .flatten()
        }
        ETHERTYPE_IPV6 => {
            let (kind, _) = icmpv6(frame)?;
            (kind == NEIGHBOUR_SOLICITATION)
                .then(|| ipv6_at(frame, 14 + 48))
                .flatten()
        }
        _ => None,
    }
}

/// Returns the address an ingress frame shows to be on the link: the sender of any ARP
/// message, the target of a neighbour advertisement, or the source of a neighbour
/// solicitation.
pub fn answering_address(frame: &[u8], l2_len: usize) -> Option<IpAddr> {
    if l2_len != 14 {
        return None;
    }
    match ethertype(frame)? {
        ETHERTYPE_ARP => ipv4_at(frame, 28),
        ETHERTYPE_IPV6 => match icmpv6(frame)? {
            (NEIGHBOUR_ADVERTISEMENT, _) => ipv6_at(frame, 14 + 48),
            (NEIGHBOUR_SOLICITATION, source) if !source.is_unspecified() => Some(source.into()),
            _ => None,
        },
        _ => None,
    }
}

fn ethertype(frame: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(frame.get(12..14)?.try_into().ok()?))
}

/// Returns the ICMPv6 type and the IPv6 source of a frame without extension headers.
fn icmpv6(frame: &[u8]) -> Option<(u8, Ipv6Addr)> {
    let ip = frame.get(14..)?;
    if *ip.get(6)? != IPPROTO_ICMPV6 {
        return None;
    }
    let source: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
    Some((*ip.get(40)?, source.into()))
}

fn ipv4_at(frame: &[u8], at: usize) -> Option<IpAddr> {
    let octets: [u8; 4] = frame.get(at..at + 4)?.try_into().ok()?;
    Some(Ipv4Addr::from(octets).into())
}

fn ipv6_at(frame: &[u8], at: usize) -> Option<IpAddr> {
    let octets: [u8; 16] = frame.get(at..at + 16)?.try_into().ok()?;
    Some(Ipv6Addr::from(octets).into())
}

/// The neighbours the stack asked for that have not answered, with the time of the first
/// request since their last answer.
#[derive(Default)]
pub struct NeighbourWatch {
    unanswered: HashMap<IpAddr, Instant>,
}

impl NeighbourWatch {
    /// Records that the stack asked for `address` at `now`.
    pub fn requested(&mut self, address: IpAddr, now: Instant) {
        if !self.unanswered.contains_key(&address) && self.unanswered.len() >= MAX_WATCHED {
            let oldest = self
                .unanswered
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(a, _)| *a);
            if let Some(oldest) = oldest {
                self.unanswered.remove(&oldest);
            }
        }
        self.unanswered.entry(address).or_insert(now);
    }

    /// Records that `address` showed itself on the link.
    pub fn answered(&mut self, address: IpAddr) {
        self.unanswered.remove(&address);
    }

    /// Returns whether requests for `address` have gone unanswered for at least
    /// [`RESOLUTION_TIMEOUT`] at `now`.
    pub fn is_unreachable(&self, address: IpAddr, now: Instant) -> bool {
        self.unanswered
            .get(&address)
            .is_some_and(|&first| now - first >= RESOLUTION_TIMEOUT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arp(operation: u16, sender: [u8; 4], target: [u8; 4]) -> Vec<u8> {
        let mut frame = vec![0u8; 42];
        frame[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
        frame[20..22].copy_from_slice(&operation.to_be_bytes());
        frame[28..32].copy_from_slice(&sender);
        frame[38..42].copy_from_slice(&target);
        frame
    }

    fn ndp(kind: u8, source: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
        let mut frame = vec![0u8; 14 + 40 + 24];
        frame[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
        frame[14] = 0x60;
        frame[20] = IPPROTO_ICMPV6;
        frame[22..38].copy_from_slice(&source.octets());
        frame[54] = kind;
        frame[62..78].copy_from_slice(&target.octets());
        frame
    }

    #[test]
    fn arp_request_and_reply() {
        let request = arp(1, [10, 77, 0, 2], [10, 77, 0, 99]);
        let reply = arp(2, [10, 77, 0, 99], [10, 77, 0, 2]);
        let absent = IpAddr::from([10, 77, 0, 99]);
        assert_eq!(requested_address(&request, 14), Some(absent));
        assert_eq!(requested_address(&reply, 14), None);
        assert_eq!(answering_address(&reply, 14), Some(absent));
        assert_eq!(requested_address(&request, 0), None, "a TUN has no ARP");
    }

    #[test]
    fn neighbour_solicitation_and_advertisement() {
        let own: Ipv6Addr = "fd00::2".parse().unwrap();
        let absent: Ipv6Addr = "fd00::99".parse().unwrap();
        let solicitation = ndp(NEIGHBOUR_SOLICITATION, own, absent);
        assert_eq!(requested_address(&solicitation, 14), Some(absent.into()));
        let advertisement = ndp(NEIGHBOUR_ADVERTISEMENT, absent, absent);
        assert_eq!(answering_address(&advertisement, 14), Some(absent.into()));
        let their_solicitation = ndp(NEIGHBOUR_SOLICITATION, absent, own);
        assert_eq!(
            answering_address(&their_solicitation, 14),
            Some(absent.into())
        );
        let probe = ndp(NEIGHBOUR_SOLICITATION, Ipv6Addr::UNSPECIFIED, own);
        assert_eq!(answering_address(&probe, 14), None);
    }

    #[test]
    fn unanswered_requests_time_out() {
        let mut watch = NeighbourWatch::default();
        let absent = IpAddr::from([10, 77, 0, 99]);
        let start = Instant::from_secs(10);
        watch.requested(absent, start);
        watch.requested(absent, start + Duration::from_secs(1));
        assert!(!watch.is_unreachable(absent, start + Duration::from_millis(2999)));
        assert!(watch.is_unreachable(absent, start + Duration::from_secs(3)));
        watch.answered(absent);
        assert!(!watch.is_unreachable(absent, start + Duration::from_secs(10)));
    }

    #[test]
    fn watch_is_bounded() {
        let mut watch = NeighbourWatch::default();
        for index in 0..(MAX_WATCHED as u32 + 10) {
            let address = IpAddr::from(Ipv4Addr::from(index));
            watch.requested(address, Instant::from_millis(i64::from(index)));
        }
        assert_eq!(watch.unanswered.len(), MAX_WATCHED);
        let late = Instant::from_secs(100);
        assert!(!watch.is_unreachable(IpAddr::from(Ipv4Addr::from(0)), late));
    }
}
