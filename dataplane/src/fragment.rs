//! IP fragmentation of egress packets that do not fit the link. With segmentation offload
//! smoltcp builds packets of up to 64 KiB: the kernel cuts TCP segments to the link's MTU
//! itself, but a larger UDP datagram (or ICMP message) would reach the link whole. Such a
//! packet is cut here into fragments, as Linux cuts the datagrams of a socket that allows
//! fragmentation: IPv4 fragments with the don't-fragment bit cleared, and IPv6 fragments with a
//! fragment header (RFC 8200, section 4.5).
//!
//! Everything here works on byte slices: no I/O, no allocation.

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const IPPROTO_TCP: u8 = 6;
/// IPv6 next-header values of the extension headers that must stay in front of a fragment
/// header: hop-by-hop options, routing, and destination options.
const UNFRAGMENTABLE_HEADERS: [u8; 3] = [0, 43, 60];
/// IPv6 next-header value of a fragment header.
pub const IPV6_FRAGMENT_HEADER: u8 = 44;
const IPV4_MIN_HEADER_LEN: usize = 20;
const IPV6_HEADER_LEN: usize = 40;
const FRAGMENT_HEADER_LEN: usize = 8;
/// The IPv4 flags and fragment offset field: don't fragment, more fragments, offset.
const IPV4_DONT_FRAGMENT: u16 = 0x4000;
const IPV4_MORE_FRAGMENTS: u16 = 0x2000;
const IPV4_OFFSET_MASK: u16 = 0x1fff;

/// The IP version of a packet to cut, with what its fragments need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Version {
    /// IPv4 with a header of `header_len` bytes.
    V4 { header_len: usize },
    /// IPv6 whose fixed header is followed by the payload with next header `next_header`.
    V6 { next_header: u8 },
}

/// One packet to cut into fragments: [`Fragments::plan`] decides whether it needs cutting and
/// [`Fragments::write`] writes each fragment as a frame.
#[derive(Clone, Copy, Debug)]
pub struct Fragments {
    version: Version,
    /// Link-layer header length: 14 on a TAP, 0 on a TUN.
    l2_len: usize,
    /// Length of the whole IP packet.
    packet_len: usize,
    /// Payload bytes each fragment carries (a multiple of 8), the last one possibly fewer.
    chunk: usize,
    /// The identification all fragments share.
    id: u32,
}

impl Fragments {
    /// Plans cutting the IP packet in `frame` (after `l2_len` bytes of link-layer header) into
    /// frames whose IP packets are at most `mtu` bytes, all with identification `id`. Returns
    /// `None` when the packet fits, is TCP (the kernel cuts segments itself), goes to a
    /// loopback address, is no IP packet this code reads, or cannot be cut (an IPv6 packet
    /// with extension headers).
    pub fn plan(frame: &[u8], l2_len: usize, mtu: usize, id: u32) -> Option<Fragments> {
        let ip = frame.get(l2_len..)?;
        let version = match *ip.first()? >> 4 {
            4 if ethertype_is(frame, l2_len, ETHERTYPE_IPV4) => {
                let header_len = usize::from(ip[0] & 0x0f) * 4;
                (header_len >= IPV4_MIN_HEADER_LEN && *ip.get(9)? != IPPROTO_TCP)
                    .then_some(Version::V4 { header_len })?
            }
            6 if ethertype_is(frame, l2_len, ETHERTYPE_IPV6) => {
                let next_header = *ip.get(6)?;
                let plain = next_header != IPPROTO_TCP
                    && next_header != IPV6_FRAGMENT_HEADER
                    && !UNFRAGMENTABLE_HEADERS.contains(&next_header);
                plain.then_some(Version::V6 { next_header })?
            }
            _ => return None,
        };
        // Packets to a loopback address never reach the link (see `crate::hairpin`).
        let loopback = match version {
            Version::V4 { .. } => *ip.get(16)? == 127,
            Version::V6 { .. } => ip.get(24..40)? == std::net::Ipv6Addr::LOCALHOST.octets(),
        };
        if loopback {
            return None;
        }
        let packet_len = match version {
            Version::V4 { .. } => usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?])),
            Version::V6 { .. } => {
                IPV6_HEADER_LEN + usize::from(u16::from_be_bytes([*ip.get(4)?, *ip.get(5)?]))
            }
        };
        if packet_len <= mtu || packet_len > ip.len() {
            return None;
        }
        let room = match version {
            Version::V4 { header_len } => mtu.checked_sub(header_len)?,
            Version::V6 { .. } => mtu.checked_sub(IPV6_HEADER_LEN + FRAGMENT_HEADER_LEN)?,
        };
        let chunk = room & !7;
        if chunk == 0 {
            return None;
        }
        Some(Fragments {
            version,
            l2_len,
            packet_len,
            chunk,
            id,
        })
    }

    /// Returns the number of fragments.
    pub fn count(&self) -> usize {
        self.payload_len().div_ceil(self.chunk)
    }

    /// Returns the length of the largest fragment's frame.
    pub fn max_frame_len(&self) -> usize {
        self.l2_len + self.fragment_header_len() + self.chunk
    }

    fn fragment_header_len(&self) -> usize {
        match self.version {
            Version::V4 { header_len } => header_len,
            Version::V6 { .. } => IPV6_HEADER_LEN + FRAGMENT_HEADER_LEN,
        }
    }

    fn payload_len(&self) -> usize {
        self.packet_len - self.header_len()
    }

    fn header_len(&self) -> usize {
        match self.version {
            Version::V4 { header_len } => header_len,
            Version::V6 { .. } => IPV6_HEADER_LEN,
        }
    }

    /// Writes fragment `index` of the packet in `frame` (the frame given to
    /// [`Fragments::plan`]) as a frame into `out`, which must hold
    /// [`Fragments::max_frame_len`] bytes. Returns the frame's length.
    pub fn write(&self, frame: &[u8], index: usize, out: &mut [u8]) -> usize {
        let ip = &frame[self.l2_len..];
        let header_len = self.header_len();
        let start = index * self.chunk;
        let len = self.chunk.min(self.payload_len() - start);
        let last = start + len == self.payload_len();
        let data = &ip[header_len + start..header_len + start + len];

        out[..self.l2_len].copy_from_slice(&frame[..self.l2_len]);
        let packet = &mut out[self.l2_len..];
        match self.version {
            Version::V4 { header_len } => {
                packet[..header_len].copy_from_slice(&ip[..header_len]);
                let field = u16::from_be_bytes([ip[6], ip[7]]);
                // A packet that is itself a fragment keeps its offset and its more-fragments
                // bit on the last piece.
                let offset = (field & IPV4_OFFSET_MASK) + (start / 8) as u16;
                let more = !last || field & IPV4_MORE_FRAGMENTS != 0;
                let flags = (field
                    & !(IPV4_DONT_FRAGMENT | IPV4_MORE_FRAGMENTS | IPV4_OFFSET_MASK))
                    | if more { IPV4_MORE_FRAGMENTS } else { 0 };
                packet[2..4].copy_from_slice(&((header_len + len) as u16).to_be_bytes());
                packet[4..6].copy_from_slice(&(self.id as u16).to_be_bytes());
                packet[6..8].copy_from_slice(&(flags | offset).to_be_bytes());
                packet[10..12].copy_from_slice(&[0, 0]);
                let checksum = ipv4_checksum(&packet[..header_len]);
                packet[10..12].copy_from_slice(&checksum.to_be_bytes());
                packet[header_len..header_len + len].copy_from_slice(data);
                self.l2_len + header_len + len
            }
            Version::V6 { next_header } => {
                packet[..IPV6_HEADER_LEN].copy_from_slice(&ip[..IPV6_HEADER_LEN]);
                let payload = (FRAGMENT_HEADER_LEN + len) as u16;
                packet[4..6].copy_from_slice(&payload.to_be_bytes());
                packet[6] = IPV6_FRAGMENT_HEADER;
                let fragment = &mut packet[IPV6_HEADER_LEN..IPV6_HEADER_LEN + FRAGMENT_HEADER_LEN];
                fragment[0] = next_header;
                fragment[1] = 0;
                let offset_field = start as u16 | u16::from(!last);
                fragment[2..4].copy_from_slice(&offset_field.to_be_bytes());
                fragment[4..8].copy_from_slice(&self.id.to_be_bytes());
                let data_start = IPV6_HEADER_LEN + FRAGMENT_HEADER_LEN;
                packet[data_start..data_start + len].copy_from_slice(data);
                self.l2_len + data_start + len
            }
        }
    }
}

/// Returns whether the frame's EtherType is `expected`; a frame without a link-layer header
/// (TUN) passes.
fn ethertype_is(frame: &[u8], l2_len: usize, expected: u16) -> bool {
    if l2_len != 14 {
        return true;
    }
    frame.get(12..14) == Some(&expected.to_be_bytes()[..])
}

/// Returns the IPv4 header checksum of `header`, whose checksum field is zero.
pub fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Returns an Ethernet + IPv4 + UDP frame carrying `payload` bytes, with DF set.
    pub fn udp4_frame(payload: usize) -> Vec<u8> {
        let total = 20 + 8 + payload;
        let mut f = vec![0u8; 14 + total];
        f[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        f[14] = 0x45;
        f[16..18].copy_from_slice(&(total as u16).to_be_bytes());
        f[20..22].copy_from_slice(&IPV4_DONT_FRAGMENT.to_be_bytes());
        f[22] = 64;
        f[23] = 17;
        f[26..30].copy_from_slice(&[10, 77, 0, 2]);
        f[30..34].copy_from_slice(&[10, 77, 0, 1]);
        for (i, byte) in f[34..].iter_mut().enumerate() {
            *byte = i as u8;
        }
        f
    }

    /// Returns an Ethernet + IPv6 + UDP frame carrying `payload` bytes.
    pub fn udp6_frame(payload: usize) -> Vec<u8> {
        let len = 8 + payload;
        let mut f = vec![0u8; 14 + 40 + len];
        f[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
        f[14] = 0x60;
        f[18..20].copy_from_slice(&(len as u16).to_be_bytes());
        f[20] = 17;
        f[21] = 64;
        f[22] = 0xfd;
        f[37] = 2;
        f[38] = 0xfd;
        f[53] = 1;
        for (i, byte) in f[54..].iter_mut().enumerate() {
            *byte = i as u8;
        }
        f
    }

    fn cut(frame: &[u8], mtu: usize) -> Vec<Vec<u8>> {
        let plan = Fragments::plan(frame, 14, mtu, 0x1234_5678).expect("needs cutting");
        (0..plan.count())
            .map(|index| {
                let mut out = vec![0u8; plan.max_frame_len()];
                let len = plan.write(frame, index, &mut out);
                out.truncate(len);
                out
            })
            .collect()
    }

    #[test]
    fn fitting_and_tcp_packets_stay_whole() {
        assert!(Fragments::plan(&udp4_frame(1472), 14, 1500, 1).is_none());
        assert!(Fragments::plan(&udp6_frame(1452), 14, 1500, 1).is_none());
        let mut tcp = udp4_frame(4000);
        tcp[23] = IPPROTO_TCP;
        assert!(Fragments::plan(&tcp, 14, 1500, 1).is_none());
        let mut loopback = udp4_frame(4000);
        loopback[30..34].copy_from_slice(&[127, 0, 0, 1]);
        assert!(Fragments::plan(&loopback, 14, 1500, 1).is_none());
    }

    #[test]
    fn ipv4_fragments_cover_the_payload() {
        let frame = udp4_frame(4000);
        let fragments = cut(&frame, 1500);
        assert_eq!(fragments.len(), 3);
        let mut joined = Vec::new();
        for (index, fragment) in fragments.iter().enumerate() {
            let ip = &fragment[14..];
            assert!(ip.len() <= 1500, "fragment {index} is {} bytes", ip.len());
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            assert_eq!(total, ip.len());
            assert_eq!(u16::from_be_bytes([ip[4], ip[5]]), 0x5678);
            let field = u16::from_be_bytes([ip[6], ip[7]]);
            assert_eq!(field & IPV4_DONT_FRAGMENT, 0, "DF is cleared");
            let more = field & IPV4_MORE_FRAGMENTS != 0;
            assert_eq!(more, index + 1 < fragments.len());
            assert_eq!(usize::from(field & IPV4_OFFSET_MASK) * 8, joined.len());
            assert_eq!(ipv4_checksum(&ip[..20]), 0, "checksum of fragment {index}");
            joined.extend_from_slice(&ip[20..]);
        }
        assert_eq!(joined, frame[34..]);
    }

    #[test]
    fn ipv6_fragments_carry_a_fragment_header() {
        let frame = udp6_frame(4000);
        let fragments = cut(&frame, 1500);
        assert_eq!(fragments.len(), 3);
        let mut joined = Vec::new();
        for (index, fragment) in fragments.iter().enumerate() {
            let ip = &fragment[14..];
            assert!(ip.len() <= 1500);
            assert_eq!(
                usize::from(u16::from_be_bytes([ip[4], ip[5]])),
                ip.len() - 40
            );
            assert_eq!(ip[6], IPV6_FRAGMENT_HEADER);
            assert_eq!(ip[40], 17, "next header of the payload");
            let field = u16::from_be_bytes([ip[42], ip[43]]);
            assert_eq!(usize::from(field & !7), joined.len());
            assert_eq!(field & 1 != 0, index + 1 < fragments.len());
            assert_eq!(ip[44..48], 0x1234_5678u32.to_be_bytes());
            assert_eq!(ip[8..40], frame[22..54], "addresses are kept");
            joined.extend_from_slice(&ip[48..]);
        }
        assert_eq!(joined, frame[54..]);
    }

    #[test]
    fn largest_datagram_is_cut_for_a_small_mtu() {
        let frame = udp4_frame(65507);
        let plan = Fragments::plan(&frame, 14, 576, 7).unwrap();
        assert_eq!(plan.count(), 65515usize.div_ceil(552));
        let frame = udp6_frame(65527);
        let plan = Fragments::plan(&frame, 14, 1280, 7).unwrap();
        assert_eq!(plan.count(), 65535usize.div_ceil(1232));
    }
}
