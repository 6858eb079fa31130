//! Reassembly of ingress IP fragments into whole packets, for IPv4 and IPv6 alike, before they
//! reach the stack. smoltcp 0.14 cannot reassemble IPv6, and one worker could not reassemble a
//! datagram whose fragments reached several workers. Steering sends every fragment of one
//! packet to one worker, whose reassembler returns the whole packet once the last piece is in;
//! the worker then steers that packet like any other.
//!
//! As Linux does, a packet whose fragments overlap is dropped (RFC 5722), one whose pieces do
//! not all arrive within [`REASSEMBLY_TIMEOUT`] is forgotten, and the bytes held at once are
//! bounded ([`MAX_HELD_BYTES`]); the oldest packet makes room for a new one.
//!
//! Everything here takes bytes and the time, and returns bytes: no I/O.

use std::net::IpAddr;

use smoltcp::time::{Duration, Instant};

use crate::fragment::{IPV6_FRAGMENT_HEADER, ipv4_checksum};

/// How long the fragments of one packet are kept: Linux's `net.ipv4.ipfrag_time` and
/// `net.ipv6.ip6frag_time` default.
pub const REASSEMBLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Most bytes of fragments one worker holds: Linux's `ipfrag_high_thresh` default (4 MiB).
pub const MAX_HELD_BYTES: usize = 4 << 20;

/// Most packets one worker reassembles at once.
const MAX_PACKETS: usize = 256;

/// Largest IP packet, which a reassembled one may not exceed.
const MAX_PACKET: usize = 65535;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const IPV4_MORE_FRAGMENTS: u16 = 0x2000;
const IPV4_OFFSET_MASK: u16 = 0x1fff;
const IPV6_HEADER_LEN: usize = 40;
const FRAGMENT_HEADER_LEN: usize = 8;

/// The identity of one packet's fragments: the addresses, the identification and, for IPv4,
/// the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FragmentKey {
    pub source: IpAddr,
    pub destination: IpAddr,
    pub id: u32,
    pub protocol: u8,
}

/// The parts of one fragment and their places inside its frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fragment {
    key: FragmentKey,
    /// Offset of this fragment's data in the whole packet's payload.
    offset: usize,
    /// Whether more fragments follow this one.
    more: bool,
    /// Length of the header the whole packet keeps: the IPv4 header, or the fixed IPv6
    /// header.
    header_len: usize,
    /// Start and end of this fragment's data in the frame.
    data: (usize, usize),
    /// The protocol of the whole packet's payload (IPv6: the fragment header's next header).
    next_header: u8,
}

/// Returns the key of `frame`'s IP packet when it is a fragment (after `l2_len` bytes of
/// link-layer header), for steering all fragments of one packet to one worker.
pub fn fragment_key(frame: &[u8], l2_len: usize) -> Option<FragmentKey> {
    parse(frame, l2_len).map(|fragment| fragment.key)
}

fn parse(frame: &[u8], l2_len: usize) -> Option<Fragment> {
    let ip = frame.get(l2_len..)?;
    let ethertype = if l2_len == 14 {
        Some(u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]))
    } else {
        None
    };
    match *ip.first()? >> 4 {
        4 if ethertype.is_none_or(|e| e == ETHERTYPE_IPV4) => parse_v4(ip, l2_len),
        6 if ethertype.is_none_or(|e| e == ETHERTYPE_IPV6) => parse_v6(ip, l2_len),
        _ => None,
    }
}

fn parse_v4(ip: &[u8], l2_len: usize) -> Option<Fragment> {
    let header_len = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    let field = u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]);
    let more = field & IPV4_MORE_FRAGMENTS != 0;
    let offset = usize::from(field & IPV4_OFFSET_MASK) * 8;
    if (!more && offset == 0) || header_len < 20 || total < header_len || total > ip.len() {
        return None;
    }
    let octets = |at: usize| -> Option<[u8; 4]> { ip.get(at..at + 4)?.try_into().ok() };
    let key = FragmentKey {
        source: IpAddr::from(octets(12)?),
        destination: IpAddr::from(octets(16)?),
        id: u32::from(u16::from_be_bytes([ip[4], ip[5]])),
        protocol: ip[9],
    };
    Some(Fragment {
        key,
        offset,
        more,
        header_len,
        data: (l2_len + header_len, l2_len + total),
        next_header: ip[9],
    })
}

fn parse_v6(ip: &[u8], l2_len: usize) -> Option<Fragment> {
    if *ip.get(6)? != IPV6_FRAGMENT_HEADER {
        return None;
    }
    let payload = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    let end = IPV6_HEADER_LEN + payload;
    let data_start = IPV6_HEADER_LEN + FRAGMENT_HEADER_LEN;
    if end > ip.len() || end < data_start {
        return None;
    }
    let fragment = &ip[IPV6_HEADER_LEN..data_start];
    let field = u16::from_be_bytes([fragment[2], fragment[3]]);
    let address = |at: usize| -> Option<[u8; 16]> { ip.get(at..at + 16)?.try_into().ok() };
    let key = FragmentKey {
        source: IpAddr::from(address(8)?),
        destination: IpAddr::from(address(24)?),
        id: u32::from_be_bytes(fragment[4..8].try_into().ok()?),
        protocol: 0,
    };
    Some(Fragment {
        key,
        offset: usize::from(field & !7),
        more: field & 1 != 0,
        header_len: IPV6_HEADER_LEN,
        data: (l2_len + data_start, l2_len + end),
        next_header: fragment[0],
    })
}

/// The pieces of one packet received so far.
struct Pending {
    key: FragmentKey,
    expires: Instant,
    /// The link-layer and IP header of the first fragment (offset 0), once it arrived.
    head: Option<(Vec<u8>, usize, u8)>,
    /// The payload, filled in where pieces arrived.
    payload: Vec<u8>,
    /// The payload ranges that arrived, sorted and not touching each other.
    received: Vec<(usize, usize)>,
    /// The payload's length, known once the last fragment arrived.
    total: Option<usize>,
}

impl Pending {
    /// Adds one fragment's data; false when it overlaps data already received in a different
    /// way or contradicts the known length, which drops the whole packet.
    fn add(&mut self, offset: usize, data: &[u8], more: bool) -> bool {
        let end = offset + data.len();
        if !more {
            if self.total.is_some_and(|total| total != end) {
                return false;
            }
            self.total = Some(end);
        }
        if self.total.is_some_and(|total| end > total) {
            return false;
        }
        for &(start, stop) in &self.received {
            let overlaps = offset < stop && start < end;
            let duplicate = offset == start && end == stop;
            if overlaps && !duplicate {
                return false;
            }
            if duplicate {
                return true;
            }
        }
        if self.payload.len() < end {
            self.payload.resize(end, 0);
        }
        self.payload[offset..end].copy_from_slice(data);
        self.received.push((offset, end));
        self.received.sort_unstable();
        self.received.dedup();
        true
    }

    fn is_complete(&self) -> bool {
        let Some(total) = self.total else {
            return false;
        };
        let mut covered = 0;
        for &(start, stop) in &self.received {
            if start > covered {
                return false;
            }
            covered = covered.max(stop);
        }
        covered == total && self.head.is_some()
    }
}

/// The outcome of [`Reassembler::add`] for one frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Reassembled {
    /// The frame is not a fragment: it goes on as it is.
    NotFragment,
    /// The fragment is kept until the rest arrives (or was dropped as invalid).
    Held,
    /// The fragment completed its packet: the whole frame, link-layer header included.
    Complete(Vec<u8>),
}

/// The packets one worker is reassembling.
#[derive(Default)]
pub struct Reassembler {
    pending: Vec<Pending>,
    held_bytes: usize,
    /// Packets dropped: overlapping, too large, timed out or pushed out for room.
    pub dropped: u64,
}

impl Reassembler {
    /// Takes the frame `frame` read at `now` (after `l2_len` bytes of link-layer header).
    pub fn add(&mut self, frame: &[u8], l2_len: usize, now: Instant) -> Reassembled {
        let Some(fragment) = parse(frame, l2_len) else {
            return Reassembled::NotFragment;
        };
        self.expire(now);
        let data = &frame[fragment.data.0..fragment.data.1];
        if fragment.offset + data.len() + fragment.header_len > MAX_PACKET {
            self.dropped += 1;
            return Reassembled::Held;
        }

        let index = match self.pending.iter().position(|p| p.key == fragment.key) {
            Some(index) => index,
            None => self.start(fragment.key, now),
        };
        let pending = &mut self.pending[index];
        let before = pending.payload.len();
        if !pending.add(fragment.offset, data, fragment.more) {
            self.remove(index);
            self.dropped += 1;
            return Reassembled::Held;
        }
        if fragment.offset == 0 {
            let head = frame[..l2_len + fragment.header_len].to_vec();
            pending.head = Some((head, l2_len, fragment.next_header));
        }
        self.held_bytes += pending.payload.len() - before;

        if !self.pending[index].is_complete() {
            self.make_room();
            return Reassembled::Held;
        }
        let pending = self.remove(index);
        Reassembled::Complete(whole_frame(pending))
    }

    /// Starts a new packet, making room first when too many are pending.
    fn start(&mut self, key: FragmentKey, now: Instant) -> usize {
        if self.pending.len() >= MAX_PACKETS {
            self.remove(0);
            self.dropped += 1;
        }
        self.pending.push(Pending {
            key,
            expires: now + REASSEMBLY_TIMEOUT,
            head: None,
            payload: Vec::new(),
            received: Vec::new(),
            total: None,
        });
        self.pending.len() - 1
    }

    /// Forgets the oldest packets while more than [`MAX_HELD_BYTES`] are held.
    fn make_room(&mut self) {
        while self.held_bytes > MAX_HELD_BYTES && !self.pending.is_empty() {
            self.remove(0);
            self.dropped += 1;
        }
    }

    /// Forgets the packets whose time ran out.
    fn expire(&mut self, now: Instant) {
        while let Some(index) = self.pending.iter().position(|p| p.expires <= now) {
            self.remove(index);
            self.dropped += 1;
        }
    }

    fn remove(&mut self, index: usize) -> Pending {
        let pending = self.pending.remove(index);
        self.held_bytes -= pending.payload.len();
        pending
    }

    /// Returns the number of packets being reassembled.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

/// Builds the frame of a reassembled packet: the first fragment's headers, marked as a whole
/// packet, followed by the payload.
fn whole_frame(pending: Pending) -> Vec<u8> {
    let (mut frame, l2_len, next_header) = pending.head.expect("complete packets have a head");
    let header_len = frame.len() - l2_len;
    let payload_len = pending.payload.len();
    let ip = &mut frame[l2_len..];
    if ip[0] >> 4 == 4 {
        ip[2..4].copy_from_slice(&((header_len + payload_len) as u16).to_be_bytes());
        ip[6..8].copy_from_slice(&[0, 0]);
        ip[10..12].copy_from_slice(&[0, 0]);
        let checksum = ipv4_checksum(&ip[..header_len]);
        ip[10..12].copy_from_slice(&checksum.to_be_bytes());
    } else {
        ip[4..6].copy_from_slice(&(payload_len as u16).to_be_bytes());
        ip[6] = next_header;
    }
    frame.extend_from_slice(&pending.payload);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fragment::Fragments;
    use crate::fragment::tests::{udp4_frame, udp6_frame};

    fn fragments(frame: &[u8], mtu: usize, id: u32) -> Vec<Vec<u8>> {
        let plan = Fragments::plan(frame, 14, mtu, id).unwrap();
        (0..plan.count())
            .map(|index| {
                let mut out = vec![0u8; plan.max_frame_len()];
                let len = plan.write(frame, index, &mut out);
                out.truncate(len);
                out
            })
            .collect()
    }

    fn at(seconds: u64) -> Instant {
        Instant::from_secs(seconds as i64)
    }

    /// Returns `frame` as reassembly of its fragments with identification `id` gives it
    /// back: DF cleared, checksum set.
    fn expected_v4(frame: &[u8], id: u16) -> Vec<u8> {
        let mut expected = frame.to_vec();
        expected[18..20].copy_from_slice(&id.to_be_bytes());
        expected[20..22].copy_from_slice(&[0, 0]);
        expected[24..26].copy_from_slice(&[0, 0]);
        let checksum = ipv4_checksum(&expected[14..34]);
        expected[24..26].copy_from_slice(&checksum.to_be_bytes());
        expected
    }

    #[test]
    fn whole_packets_pass() {
        let mut reassembler = Reassembler::default();
        let frame = udp4_frame(100);
        assert_eq!(reassembler.add(&frame, 14, at(0)), Reassembled::NotFragment);
    }

    #[test]
    fn ipv4_fragments_in_any_order() {
        let frame = udp4_frame(9000);
        let mut pieces = fragments(&frame, 1500, 77);
        pieces.reverse();
        pieces.swap(1, 3);
        let mut reassembler = Reassembler::default();
        let last = pieces.pop().unwrap();
        for piece in &pieces {
            assert_eq!(reassembler.add(piece, 14, at(0)), Reassembled::Held);
        }
        assert_eq!(
            reassembler.add(&last, 14, at(1)),
            Reassembled::Complete(expected_v4(&frame, 77))
        );
        assert_eq!(reassembler.pending(), 0);
        assert_eq!(reassembler.held_bytes, 0);
    }

    #[test]
    fn ipv6_fragments_rebuild_the_packet() {
        let frame = udp6_frame(4000);
        let pieces = fragments(&frame, 1280, 0xdead_beef);
        let mut reassembler = Reassembler::default();
        let (last, rest) = pieces.split_last().unwrap();
        for piece in rest {
            assert_eq!(reassembler.add(piece, 14, at(0)), Reassembled::Held);
        }
        assert_eq!(
            reassembler.add(last, 14, at(0)),
            Reassembled::Complete(frame)
        );
    }

    #[test]
    fn duplicates_are_ignored() {
        let frame = udp4_frame(3000);
        let pieces = fragments(&frame, 1500, 5);
        let mut reassembler = Reassembler::default();
        assert_eq!(reassembler.add(&pieces[0], 14, at(0)), Reassembled::Held);
        assert_eq!(reassembler.add(&pieces[0], 14, at(0)), Reassembled::Held);
        assert_eq!(reassembler.add(&pieces[1], 14, at(0)), Reassembled::Held);
        assert_eq!(
            reassembler.add(&pieces[2], 14, at(0)),
            Reassembled::Complete(expected_v4(&frame, 5))
        );
    }

    #[test]
    fn overlap_drops_the_packet() {
        let frame = udp4_frame(3000);
        let pieces = fragments(&frame, 1500, 5);
        let mut overlapping = pieces[1].clone();
        // Move the second fragment 8 bytes back, into the first one's data.
        let field = u16::from_be_bytes([overlapping[20], overlapping[21]]) - 1;
        overlapping[20..22].copy_from_slice(&field.to_be_bytes());
        let mut reassembler = Reassembler::default();
        assert_eq!(reassembler.add(&pieces[0], 14, at(0)), Reassembled::Held);
        assert_eq!(reassembler.add(&overlapping, 14, at(0)), Reassembled::Held);
        assert_eq!(reassembler.pending(), 0);
        assert_eq!(reassembler.dropped, 1);
    }

    #[test]
    fn interleaved_packets_stay_apart() {
        let first = udp4_frame(3000);
        let mut second = udp4_frame(3000);
        second[34..].iter_mut().for_each(|byte| *byte ^= 0xff);
        let a = fragments(&first, 1500, 1);
        let b = fragments(&second, 1500, 2);
        let mut reassembler = Reassembler::default();
        for (x, y) in a.iter().zip(&b).take(2) {
            assert_eq!(reassembler.add(x, 14, at(0)), Reassembled::Held);
            assert_eq!(reassembler.add(y, 14, at(0)), Reassembled::Held);
        }
        assert_eq!(
            reassembler.add(&b[2], 14, at(0)),
            Reassembled::Complete(expected_v4(&second, 2))
        );
        assert_eq!(
            reassembler.add(&a[2], 14, at(0)),
            Reassembled::Complete(expected_v4(&first, 1))
        );
    }

    #[test]
    fn stale_fragments_expire() {
        let frame = udp4_frame(3000);
        let pieces = fragments(&frame, 1500, 9);
        let mut reassembler = Reassembler::default();
        assert_eq!(reassembler.add(&pieces[0], 14, at(0)), Reassembled::Held);
        assert_eq!(reassembler.add(&pieces[1], 14, at(31)), Reassembled::Held);
        assert_eq!(reassembler.dropped, 1);
        assert_eq!(reassembler.add(&pieces[2], 14, at(31)), Reassembled::Held);
        assert_eq!(reassembler.pending(), 1, "the first piece is gone");
    }

    #[test]
    fn held_bytes_are_bounded() {
        let mut reassembler = Reassembler::default();
        for id in 0..200u32 {
            let frame = udp4_frame(60_000);
            let pieces = fragments(&frame, 1500, id);
            for piece in &pieces[..pieces.len() - 1] {
                reassembler.add(piece, 14, at(0));
            }
            assert!(reassembler.held_bytes <= MAX_HELD_BYTES);
        }
        assert!(reassembler.dropped > 0);
    }

    #[test]
    fn oversized_packet_is_dropped() {
        let frame = udp4_frame(3000);
        let mut pieces = fragments(&frame, 1500, 3);
        let last = pieces.last_mut().unwrap();
        // Claim an offset past the largest packet.
        last[20..22].copy_from_slice(&(IPV4_OFFSET_MASK).to_be_bytes());
        let mut reassembler = Reassembler::default();
        assert_eq!(reassembler.add(last, 14, at(0)), Reassembled::Held);
        assert_eq!(reassembler.pending(), 0);
        assert_eq!(reassembler.dropped, 1);
    }

    #[test]
    fn fragment_key_reads_both_versions() {
        let v4 = fragments(&udp4_frame(3000), 1500, 0x42);
        let key = fragment_key(&v4[1], 14).unwrap();
        assert_eq!(key.id, 0x42);
        assert_eq!(key.source, IpAddr::from([10, 77, 0, 2]));
        let v6 = fragments(&udp6_frame(3000), 1280, 0x4242_4242);
        assert_eq!(fragment_key(&v6[2], 14).unwrap().id, 0x4242_4242);
        assert_eq!(fragment_key(&udp4_frame(10), 14), None);
    }
}
