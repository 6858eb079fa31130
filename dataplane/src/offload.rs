//! Segmentation offload on the TAP (IFF_VNET_HDR with TSO4 and TSO6): every frame is preceded
//! by a `virtio_net_hdr`. The kernel hands us TCP segments of up to 64 KiB and cuts the ones we
//! send to the link MSS itself, so smoltcp works with large segments while the link keeps its
//! MTU.
//!
//! smoltcp caps its segments at the MSS the peer announced in its SYN. When that MSS is only
//! the link's limit (the peer is the kernel on the other side of the TAP), the ingress path
//! raises it to the largest value a 64 KiB packet allows, and the egress path asks the kernel
//! to cut segments to the link MSS. A smaller announced MSS (a peer behind a narrower path) is
//! left alone. IPv6 headers are 20 bytes longer than IPv4's without options, so its link MSS is
//! 20 bytes smaller.
//!
//! Everything here works on byte slices: no I/O, no allocation.

/// Size of `struct virtio_net_hdr` (without the mergeable-buffers field).
pub const VNET_HDR_LEN: usize = 10;

/// Largest IP packet; with offload the stack may build packets up to this size.
pub const MAX_IP_PACKET: usize = 65535;

const VNET_F_NEEDS_CSUM: u8 = 1;
const VNET_GSO_NONE: u8 = 0;
const VNET_GSO_TCPV4: u8 = 1;
const VNET_GSO_TCPV6: u8 = 4;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const IPPROTO_TCP: u8 = 6;
const IPV4_HEADER_LEN: usize = 20;
const IPV6_HEADER_LEN: usize = 40;
const TCP_FLAG_SYN: u8 = 0x02;
const TCP_OPTION_END: u8 = 0;
const TCP_OPTION_NOP: u8 = 1;
const TCP_OPTION_MSS: u8 = 2;

/// The IP version of a TCP frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    /// Returns how much smaller the MSS of a link is for this family than for IPv4 without
    /// options.
    fn mss_reduction(self) -> u16 {
        match self {
            Family::V4 => 0,
            Family::V6 => (IPV6_HEADER_LEN - IPV4_HEADER_LEN) as u16,
        }
    }
}

/// Where the IP and TCP headers of a frame are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TcpFrame {
    family: Family,
    ip_start: usize,
    tcp_start: usize,
    tcp_header_len: usize,
    /// End of the IP packet inside the frame.
    ip_end: usize,
}

/// Finds the TCP header of an IPv4 or IPv6 frame; `l2_len` is 14 on a TAP and 0 on a TUN.
/// IPv6 packets with extension headers are not recognised.
fn locate_tcp(frame: &[u8], l2_len: usize) -> Option<TcpFrame> {
    let ip = frame.get(l2_len..)?;
    let version = *ip.first()? >> 4;
    if l2_len == 14 {
        let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
        let expected = if version == 6 {
            ETHERTYPE_IPV6
        } else {
            ETHERTYPE_IPV4
        };
        if ethertype != expected {
            return None;
        }
    }
    let (family, header_len, total_len) = match version {
        4 => {
            if *ip.get(9)? != IPPROTO_TCP {
                return None;
            }
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let total_len = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
            if ihl < IPV4_HEADER_LEN {
                return None;
            }
            (Family::V4, ihl, total_len)
        }
        6 => {
            if *ip.get(6)? != IPPROTO_TCP {
                return None;
            }
            let payload_len = usize::from(u16::from_be_bytes([*ip.get(4)?, *ip.get(5)?]));
            (Family::V6, IPV6_HEADER_LEN, IPV6_HEADER_LEN + payload_len)
        }
        _ => return None,
    };
    if total_len < header_len + 20 || total_len > ip.len() {
        return None;
    }
    let tcp_start = l2_len + header_len;
    let tcp_header_len = usize::from(frame.get(tcp_start + 12)? >> 4) * 4;
    if tcp_header_len < 20 || header_len + tcp_header_len > total_len {
        return None;
    }
    Some(TcpFrame {
        family,
        ip_start: l2_len,
        tcp_start,
        tcp_header_len,
        ip_end: l2_len + total_len,
    })
}

/// On ingress: if `frame` is a SYN announcing an MSS of at least the link's, raises the MSS to
/// the largest multiple of the link's MSS that a 64 KiB packet allows. `link_mss` is the MSS of
/// IPv4 on the link; IPv6 SYNs are compared with the 20 bytes smaller IPv6 MSS. Returns
/// whether it changed the frame. The TCP checksum is left stale, which is sound because the
/// kernel marked such frames as already verified (or partial) and the stack does not check
/// ingress checksums.
pub fn raise_syn_mss(frame: &mut [u8], l2_len: usize, link_mss: u16) -> bool {
    let Some(tcp) = locate_tcp(frame, l2_len) else {
        return false;
    };
    let link_mss = link_mss.saturating_sub(tcp.family.mss_reduction());
    if frame[tcp.tcp_start + 13] & TCP_FLAG_SYN == 0 {
        return false;
    }
    let options_end = tcp.tcp_start + tcp.tcp_header_len;
    let mut at = tcp.tcp_start + 20;
    while at < options_end {
        match frame[at] {
            TCP_OPTION_END => break,
            TCP_OPTION_NOP => at += 1,
            kind => {
                let Some(&len) = frame.get(at + 1) else {
                    return false;
                };
                let len = usize::from(len);
                if len < 2 || at + len > options_end {
                    return false;
                }
                if kind == TCP_OPTION_MSS && len == 4 {
                    let mss = u16::from_be_bytes([frame[at + 2], frame[at + 3]]);
                    if mss < link_mss {
                        return false;
                    }
                    let raised = raised_mss(link_mss, tcp.family);
                    frame[at + 2..at + 4].copy_from_slice(&raised.to_be_bytes());
                    return true;
                }
                at += len;
            }
        }
    }
    false
}

/// The MSS announced to the stack instead of `link_mss`: the largest whole multiple of it
/// that fits in a 64 KiB packet of `family`, so the kernel cuts each segment into full-size
/// pieces with no runt at the end.
fn raised_mss(link_mss: u16, family: Family) -> u16 {
    let headers = match family {
        Family::V4 => IPV4_HEADER_LEN + 20,
        Family::V6 => IPV6_HEADER_LEN + 20,
    };
    let max = (MAX_IP_PACKET - headers) as u16;
    if link_mss == 0 || link_mss >= max {
        return link_mss.min(max);
    }
    max / link_mss * link_mss
}

/// On egress: fills the `virtio_net_hdr` in `header` for `frame`. TCP segments get a partial
/// checksum for the kernel to complete (the TCP checksum field is set to the pseudo-header
/// sum), and those longer than the link MSS are marked for segmentation at that size.
/// `gso_mss` is the MSS of IPv4 on the link; IPv6 segments are cut 20 bytes smaller.
pub fn prepare_egress(
    header: &mut [u8; VNET_HDR_LEN],
    frame: &mut [u8],
    l2_len: usize,
    gso_mss: u16,
) {
    *header = [0; VNET_HDR_LEN];
    let Some(tcp) = locate_tcp(frame, l2_len) else {
        return;
    };

    let tcp_len = tcp.ip_end - tcp.tcp_start;
    let ip = &frame[tcp.ip_start..];
    // The source and destination addresses, as the pseudo-header sums them.
    let addresses = match tcp.family {
        Family::V4 => &ip[12..20],
        Family::V6 => &ip[8..40],
    };
    let mut sum: u32 = 0;
    for chunk in addresses.chunks_exact(2) {
        sum += u32::from(u16::from_be_bytes([chunk[0], chunk[1]]));
    }
    sum += u32::from(IPPROTO_TCP);
    sum += tcp_len as u32;
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    frame[tcp.tcp_start + 16..tcp.tcp_start + 18].copy_from_slice(&(sum as u16).to_be_bytes());

    let headers_len = tcp.tcp_start + tcp.tcp_header_len;
    let payload_len = tcp.ip_end - headers_len;
    let link_mss = gso_mss.saturating_sub(tcp.family.mss_reduction());
    let segment_mss = usize::from(link_mss).saturating_sub(tcp.tcp_header_len - 20);
    let gso = payload_len > segment_mss && segment_mss > 0;
    let gso_type = match tcp.family {
        Family::V4 => VNET_GSO_TCPV4,
        Family::V6 => VNET_GSO_TCPV6,
    };

    header[0] = VNET_F_NEEDS_CSUM;
    header[1] = if gso { gso_type } else { VNET_GSO_NONE };
    header[2..4].copy_from_slice(&(headers_len as u16).to_le_bytes());
    let gso_size = if gso { segment_mss as u16 } else { 0 };
    header[4..6].copy_from_slice(&gso_size.to_le_bytes());
    header[6..8].copy_from_slice(&(tcp.tcp_start as u16).to_le_bytes());
    header[8..10].copy_from_slice(&16u16.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ethernet + IPv4 + TCP frame with `options` after the 20-byte TCP header.
    fn frame(flags: u8, options: &[u8], payload: usize) -> Vec<u8> {
        let tcp_len = 20 + options.len();
        let total = 20 + tcp_len + payload;
        let mut f = vec![0u8; 14 + total];
        f[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        f[14] = 0x45;
        f[16..18].copy_from_slice(&(total as u16).to_be_bytes());
        f[23] = IPPROTO_TCP;
        f[26..30].copy_from_slice(&[10, 77, 0, 2]);
        f[30..34].copy_from_slice(&[10, 77, 0, 1]);
        f[34 + 12] = ((tcp_len / 4) as u8) << 4;
        f[34 + 13] = flags;
        f[54..54 + options.len()].copy_from_slice(options);
        f
    }

    fn mss_of(f: &[u8]) -> u16 {
        u16::from_be_bytes([f[56], f[57]])
    }

    #[test]
    fn syn_mss_raised_when_link_limited() {
        let mut f = frame(TCP_FLAG_SYN, &[2, 4, 0x05, 0xb4], 0);
        assert!(raise_syn_mss(&mut f, 14, 1460));
        assert_eq!(mss_of(&f), 44 * 1460);
    }

    #[test]
    fn raised_mss_is_whole_multiple() {
        assert_eq!(raised_mss(8960, Family::V4), 7 * 8960);
        assert_eq!(raised_mss(65480, Family::V4), 65480);
        assert_eq!(raised_mss(65495, Family::V4), 65495);
        assert_eq!(raised_mss(1440, Family::V6), 45 * 1440);
        assert_eq!(raised_mss(65475, Family::V6), 65475);
    }

    #[test]
    fn smaller_mss_kept() {
        let mut f = frame(TCP_FLAG_SYN, &[2, 4, 0x05, 0x00], 0);
        assert!(!raise_syn_mss(&mut f, 14, 1460));
        assert_eq!(mss_of(&f), 0x0500);
    }

    #[test]
    fn mss_found_after_nops() {
        let mut f = frame(TCP_FLAG_SYN, &[1, 1, 2, 4, 0x05, 0xb4, 0, 0], 0);
        assert!(raise_syn_mss(&mut f, 14, 1460));
        assert_eq!(u16::from_be_bytes([f[58], f[59]]), 44 * 1460);
    }

    #[test]
    fn non_syn_untouched() {
        let mut f = frame(0x10, &[2, 4, 0x05, 0xb4], 0);
        assert!(!raise_syn_mss(&mut f, 14, 1460));
    }

    #[test]
    fn malformed_options_rejected() {
        let mut f = frame(TCP_FLAG_SYN, &[2, 0, 0, 0], 0);
        assert!(!raise_syn_mss(&mut f, 14, 1460));
        let mut f = frame(TCP_FLAG_SYN, &[8, 40, 0, 0], 0);
        assert!(!raise_syn_mss(&mut f, 14, 1460));
    }

    #[test]
    fn large_segment_marked_for_gso() {
        let mut f = frame(0x18, &[], 20000);
        let mut header = [0u8; VNET_HDR_LEN];
        prepare_egress(&mut header, &mut f, 14, 1460);
        assert_eq!(header[0], VNET_F_NEEDS_CSUM);
        assert_eq!(header[1], VNET_GSO_TCPV4);
        assert_eq!(u16::from_le_bytes([header[2], header[3]]), 54);
        assert_eq!(u16::from_le_bytes([header[4], header[5]]), 1460);
        assert_eq!(u16::from_le_bytes([header[6], header[7]]), 34);
        assert_eq!(u16::from_le_bytes([header[8], header[9]]), 16);
    }

    #[test]
    fn pseudo_header_sum_in_checksum_field() {
        let mut f = frame(0x10, &[], 0);
        let mut header = [0u8; VNET_HDR_LEN];
        prepare_egress(&mut header, &mut f, 14, 1460);
        // 0x0a4d + 0x0002 + 0x0a4d + 0x0001 + 6 + 20
        let expected: u16 = 0x0a4d + 0x0002 + 0x0a4d + 0x0001 + 6 + 20;
        assert_eq!(u16::from_be_bytes([f[50], f[51]]), expected);
        assert_eq!(header[1], VNET_GSO_NONE);
    }

    #[test]
    fn arp_gets_empty_header() {
        let mut f = vec![0u8; 42];
        f[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        let mut header = [0xffu8; VNET_HDR_LEN];
        prepare_egress(&mut header, &mut f, 14, 1460);
        assert_eq!(header, [0; VNET_HDR_LEN]);
    }

    /// Builds an Ethernet + IPv6 + TCP frame from fd00::2 to fd00::1 with `options` after the
    /// TCP header.
    fn frame6(flags: u8, options: &[u8], payload: usize) -> Vec<u8> {
        let tcp_len = 20 + options.len();
        let mut f = vec![0u8; 14 + 40 + tcp_len + payload];
        f[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
        f[14] = 0x60;
        f[18..20].copy_from_slice(&((tcp_len + payload) as u16).to_be_bytes());
        f[20] = IPPROTO_TCP;
        f[21] = 64;
        f[22..24].copy_from_slice(&0xfd00u16.to_be_bytes());
        f[37] = 2;
        f[38..40].copy_from_slice(&0xfd00u16.to_be_bytes());
        f[53] = 1;
        f[54 + 12] = ((tcp_len / 4) as u8) << 4;
        f[54 + 13] = flags;
        f[74..74 + options.len()].copy_from_slice(options);
        f
    }

    #[test]
    fn ipv6_syn_mss_raised() {
        // The kernel announces MTU - 60 over IPv6.
        let mut f = frame6(TCP_FLAG_SYN, &[2, 4, 0x05, 0xa0], 0);
        assert!(raise_syn_mss(&mut f, 14, 1460));
        assert_eq!(u16::from_be_bytes([f[76], f[77]]), 45 * 1440);
        let mut smaller = frame6(TCP_FLAG_SYN, &[2, 4, 0x05, 0x00], 0);
        assert!(!raise_syn_mss(&mut smaller, 14, 1460));
    }

    #[test]
    fn ipv6_large_segment_marked_for_gso() {
        let mut f = frame6(0x18, &[], 20000);
        let mut header = [0u8; VNET_HDR_LEN];
        prepare_egress(&mut header, &mut f, 14, 1460);
        assert_eq!(header[0], VNET_F_NEEDS_CSUM);
        assert_eq!(header[1], VNET_GSO_TCPV6);
        assert_eq!(u16::from_le_bytes([header[2], header[3]]), 74);
        assert_eq!(u16::from_le_bytes([header[4], header[5]]), 1440);
        assert_eq!(u16::from_le_bytes([header[6], header[7]]), 54);
        assert_eq!(u16::from_le_bytes([header[8], header[9]]), 16);
    }

    #[test]
    fn ipv6_pseudo_header_sum_in_checksum_field() {
        let mut f = frame6(0x10, &[], 0);
        let mut header = [0u8; VNET_HDR_LEN];
        prepare_egress(&mut header, &mut f, 14, 1460);
        let sum: u32 = 0xfd00 + 0x0002 + 0xfd00 + 0x0001 + 6 + 20;
        let expected = ((sum & 0xffff) + (sum >> 16)) as u16;
        assert_eq!(u16::from_be_bytes([f[70], f[71]]), expected);
        assert_eq!(header[1], VNET_GSO_NONE);
    }

    #[test]
    fn ipv6_with_wrong_ethertype_ignored() {
        let mut f = frame6(0x18, &[], 20000);
        f[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        let mut header = [0xffu8; VNET_HDR_LEN];
        prepare_egress(&mut header, &mut f, 14, 1460);
        assert_eq!(header, [0; VNET_HDR_LEN]);
    }

    #[test]
    fn truncated_frames_ignored() {
        for len in 0..80 {
            for mut f in [
                frame(TCP_FLAG_SYN, &[2, 4, 0x05, 0xb4], 0),
                frame6(TCP_FLAG_SYN, &[2, 4, 0x05, 0xa0], 0),
            ] {
                f.truncate(len);
                let _ = raise_syn_mss(&mut f, 14, 1460);
                let mut header = [0u8; VNET_HDR_LEN];
                prepare_egress(&mut header, &mut f, 14, 1460);
            }
        }
    }
}
