//! IP_TOS and IPV6_TCLASS on egress. smoltcp 0.14 has no setting for the TOS byte of IPv4 or
//! the traffic class of IPv6 (DSCP and ECN bits) on a TCP socket. The worker therefore writes
//! the value into every TCP packet of a connection whose program set one. In IPv4 the header
//! checksum is updated incrementally (RFC 1624). IPv6 has no header checksum, and neither
//! field is part of the TCP checksum. A listener's value applies to the packets sent from its
//! port before an accepted connection has its own entry (the SYN-ACK among them), because
//! Linux sends those with the listener's value. Pure functions on byte slices; the worker owns
//! the table and the frames.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const IPPROTO_TCP: u8 = 6;
const MIN_IPV4_HEADER_LEN: usize = 20;
const IPV6_HEADER_LEN: usize = 40;

/// A TCP connection seen from the stack: its local port and the remote endpoint.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct Flow {
    pub local_port: u16,
    pub remote: IpAddr,
    pub remote_port: u16,
}

/// The values a listening port sends with: IP_TOS for IPv4, IPV6_TCLASS for IPv6.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListenerMarks {
    pub tos: u8,
    pub tclass: u8,
}

/// The TOS byte or traffic class each connection and listening port sends with.
#[derive(Debug, Default)]
pub struct TosTable {
    /// A connection's own entry, 0 included (a program that sets IP_TOS back to 0 gets 0,
    /// not its listener's value).
    flows: HashMap<Flow, u8>,
    listeners: HashMap<u16, ListenerMarks>,
}

impl TosTable {
    /// Whether no packet needs marking, so the worker can skip the lookup.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty() && self.listeners.is_empty()
    }

    /// Records the value `flow` sends with (the TOS byte for an IPv4 remote, the traffic
    /// class for an IPv6 one). A value of 0 is recorded only over an existing entry or on a
    /// marked listener's port, which keeps the table to the connections that set one.
    pub fn set_flow(&mut self, flow: Flow, value: u8) {
        let known = self.flows.contains_key(&flow) || self.listeners.contains_key(&flow.local_port);
        if value != 0 || known {
            self.flows.insert(flow, value);
        }
    }

    /// Removes the entry of `flow`, whose connection ended.
    pub fn remove_flow(&mut self, flow: Flow) {
        self.flows.remove(&flow);
    }

    /// Records what the listener on `port` sends with; all zero removes the entry.
    pub fn set_listener(&mut self, port: u16, marks: ListenerMarks) {
        if marks == ListenerMarks::default() {
            self.listeners.remove(&port);
        } else {
            self.listeners.insert(port, marks);
        }
    }

    /// Writes the value recorded for the connection of `packet` (an IPv4 or IPv6 packet from
    /// its first byte) into its header. Other packets are left alone.
    pub fn mark(&self, packet: &mut [u8]) {
        let Some(flow) = tcp_flow(packet) else {
            return;
        };
        let listener = || {
            let marks = self.listeners.get(&flow.local_port)?;
            Some(match flow.remote {
                IpAddr::V4(_) => marks.tos,
                IpAddr::V6(_) => marks.tclass,
            })
        };
        let Some(value) = self.flows.get(&flow).copied().or_else(listener) else {
            return;
        };
        match flow.remote {
            IpAddr::V4(_) => set_tos(packet, value),
            IpAddr::V6(_) => set_traffic_class(packet, value),
        }
    }
}

/// The flow of a TCP packet the stack sends, or `None` for anything else (other protocols,
/// truncated headers, IPv4 fragments after the first, IPv6 with extension headers, which
/// smoltcp does not put on TCP segments).
pub fn tcp_flow(packet: &[u8]) -> Option<Flow> {
    let (remote, header_len) = match packet.first()? >> 4 {
        4 => ipv4_remote(packet)?,
        6 => ipv6_remote(packet)?,
        _ => return None,
    };
    let ports = packet.get(header_len..header_len + 4)?;
    Some(Flow {
        local_port: u16::from_be_bytes([ports[0], ports[1]]),
        remote,
        remote_port: u16::from_be_bytes([ports[2], ports[3]]),
    })
}

/// The destination and header length of an IPv4 packet that starts a TCP segment.
fn ipv4_remote(packet: &[u8]) -> Option<(IpAddr, usize)> {
    let header_len = usize::from(packet[0] & 0x0f) * 4;
    let fragment_offset = u16::from_be_bytes([*packet.get(6)?, *packet.get(7)?]) & 0x1fff;
    if header_len < MIN_IPV4_HEADER_LEN || *packet.get(9)? != IPPROTO_TCP || fragment_offset != 0 {
        return None;
    }
    let d = packet.get(16..20)?;
    Some((
        IpAddr::V4(Ipv4Addr::new(d[0], d[1], d[2], d[3])),
        header_len,
    ))
}

/// The destination and header length of an IPv6 packet carrying TCP.
fn ipv6_remote(packet: &[u8]) -> Option<(IpAddr, usize)> {
    if *packet.get(6)? != IPPROTO_TCP {
        return None;
    }
    let octets: [u8; 16] = packet.get(24..40)?.try_into().ok()?;
    Some((IpAddr::V6(Ipv6Addr::from(octets)), IPV6_HEADER_LEN))
}

/// Sets the TOS byte of an IPv4 header and updates its checksum incrementally: with `m` the
/// old and `m'` the new 16-bit word holding the byte, HC' = ~(~HC + ~m + m') (RFC 1624,
/// equation 3).
pub fn set_tos(packet: &mut [u8], tos: u8) {
    if packet.len() < MIN_IPV4_HEADER_LEN || packet[1] == tos {
        return;
    }
    let old_word = u16::from_be_bytes([packet[0], packet[1]]);
    let new_word = u16::from_be_bytes([packet[0], tos]);
    let checksum = u16::from_be_bytes([packet[10], packet[11]]);
    let mut sum = u32::from(!checksum) + u32::from(!old_word) + u32::from(new_word);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    packet[1] = tos;
    packet[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
}

/// Sets the traffic class of an IPv6 header: the 8 bits after the 4-bit version, which the
/// first two bytes share with the version and the flow label.
pub fn set_traffic_class(packet: &mut [u8], tclass: u8) {
    if packet.len() < IPV6_HEADER_LEN {
        return;
    }
    packet[0] = (packet[0] & 0xf0) | (tclass >> 4);
    packet[1] = (packet[1] & 0x0f) | (tclass << 4);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The IPv4 header checksum computed from scratch.
    fn full_checksum(header: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        for (index, word) in header.chunks_exact(2).enumerate() {
            if index != 5 {
                sum += u32::from(u16::from_be_bytes([word[0], word[1]]));
            }
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    /// An IPv4 TCP packet from 10.77.0.2:`local_port` to 10.77.0.1:`remote_port` with a
    /// valid header checksum.
    fn packet(local_port: u16, remote_port: u16, tos: u8) -> Vec<u8> {
        let mut packet = vec![0u8; 40];
        packet[0] = 0x45;
        packet[1] = tos;
        packet[2..4].copy_from_slice(&40u16.to_be_bytes());
        packet[4..6].copy_from_slice(&0x1c46u16.to_be_bytes());
        packet[6] = 0x40;
        packet[8] = 64;
        packet[9] = IPPROTO_TCP;
        packet[12..16].copy_from_slice(&[10, 77, 0, 2]);
        packet[16..20].copy_from_slice(&[10, 77, 0, 1]);
        packet[20..22].copy_from_slice(&local_port.to_be_bytes());
        packet[22..24].copy_from_slice(&remote_port.to_be_bytes());
        let checksum = full_checksum(&packet[..20]);
        packet[10..12].copy_from_slice(&checksum.to_be_bytes());
        packet
    }

    /// An IPv6 TCP packet from fd00::2 to fd00::1 with flow label 0x12345.
    fn packet6(local_port: u16, remote_port: u16) -> Vec<u8> {
        let mut packet = vec![0u8; 60];
        packet[0..4].copy_from_slice(&[0x60, 0x01, 0x23, 0x45]);
        packet[4..6].copy_from_slice(&20u16.to_be_bytes());
        packet[6] = IPPROTO_TCP;
        packet[7] = 64;
        packet[8..24].copy_from_slice(&"fd00::2".parse::<Ipv6Addr>().unwrap().octets());
        packet[24..40].copy_from_slice(&"fd00::1".parse::<Ipv6Addr>().unwrap().octets());
        packet[40..42].copy_from_slice(&local_port.to_be_bytes());
        packet[42..44].copy_from_slice(&remote_port.to_be_bytes());
        packet
    }

    fn flow(local_port: u16, remote_port: u16) -> Flow {
        Flow {
            local_port,
            remote: IpAddr::V4(Ipv4Addr::new(10, 77, 0, 1)),
            remote_port,
        }
    }

    #[test]
    fn incremental_checksum_matches_full() {
        for (from, to) in [(0, 0x80), (0x80, 0), (0x10, 0xb8), (0xff, 0x01), (0, 0xfc)] {
            let mut marked = packet(40000, 80, from);
            set_tos(&mut marked, to);
            assert_eq!(marked[1], to);
            let stored = u16::from_be_bytes([marked[10], marked[11]]);
            assert_eq!(stored, full_checksum(&marked[..20]), "{from:#x} to {to:#x}");
        }
    }

    #[test]
    fn traffic_class_keeps_version_and_flow_label() {
        let mut marked = packet6(40000, 80);
        set_traffic_class(&mut marked, 0xb8);
        assert_eq!(&marked[0..4], &[0x6b, 0x81, 0x23, 0x45]);
        set_traffic_class(&mut marked, 0);
        assert_eq!(&marked[0..4], &[0x60, 0x01, 0x23, 0x45]);
    }

    #[test]
    fn flow_read_from_packet() {
        assert_eq!(tcp_flow(&packet(40000, 80, 0)), Some(flow(40000, 80)));
        let remote6 = IpAddr::V6("fd00::1".parse().unwrap());
        assert_eq!(
            tcp_flow(&packet6(40000, 80)),
            Some(Flow {
                local_port: 40000,
                remote: remote6,
                remote_port: 80
            })
        );
        let mut udp = packet(40000, 80, 0);
        udp[9] = 17;
        assert_eq!(tcp_flow(&udp), None);
        let mut udp6 = packet6(40000, 80);
        udp6[6] = 17;
        assert_eq!(tcp_flow(&udp6), None);
        let mut later_fragment = packet(40000, 80, 0);
        later_fragment[7] = 1;
        assert_eq!(tcp_flow(&later_fragment), None);
        for len in 0..24 {
            assert_eq!(tcp_flow(&packet(40000, 80, 0)[..len]), None, "{len} bytes");
        }
        for len in 0..44 {
            assert_eq!(tcp_flow(&packet6(40000, 80)[..len]), None, "{len} bytes");
        }
    }

    #[test]
    fn table_marks_flow_then_listener() {
        let mut table = TosTable::default();
        assert!(table.is_empty());
        table.set_flow(flow(40000, 80), 0);
        assert!(table.is_empty(), "a value of 0 needs no entry");

        table.set_flow(flow(40000, 80), 0x80);
        let marks = ListenerMarks {
            tos: 0x20,
            tclass: 0x48,
        };
        table.set_listener(8080, marks);
        let mut outgoing = packet(40000, 80, 0);
        table.mark(&mut outgoing);
        assert_eq!(outgoing[1], 0x80);
        let mut syn_ack = packet(8080, 51000, 0);
        table.mark(&mut syn_ack);
        assert_eq!(syn_ack[1], 0x20);
        let mut syn_ack6 = packet6(8080, 51000);
        table.mark(&mut syn_ack6);
        assert_eq!(&syn_ack6[0..2], &[0x64, 0x81]);
        let mut other = packet(40001, 80, 0);
        table.mark(&mut other);
        assert_eq!(other[1], 0);

        // An accepted connection set back to 0 sends 0, not its listener's TOS.
        table.set_flow(flow(8080, 51000), 0);
        let mut accepted = packet(8080, 51000, 0);
        table.mark(&mut accepted);
        assert_eq!(accepted[1], 0);

        table.remove_flow(flow(40000, 80));
        table.remove_flow(flow(8080, 51000));
        table.set_listener(8080, ListenerMarks::default());
        assert!(table.is_empty());
    }

    #[test]
    fn short_packets_left_alone() {
        for len in 0..40 {
            let mut short = packet(40000, 80, 0)[..len].to_vec();
            let before = short.clone();
            set_tos(&mut short, if len < 20 { 0x80 } else { 0 });
            assert_eq!(short, before);
            let mut short6 = packet6(40000, 80)[..len].to_vec();
            let before6 = short6.clone();
            set_traffic_class(&mut short6, 0x80);
            assert_eq!(short6, before6);
        }
    }
}
