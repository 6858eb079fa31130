//! Flow steering between workers: which worker owns a TCP connection, decided by a hash of its
//! 4-tuple, and what to do with a frame that arrived on some worker's TAP queue. The control
//! thread uses the same hash to pick local ports for outgoing connections, so their frames
//! land on the worker that owns them.

use std::net::Ipv4Addr;

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
    /// Every worker needs it (ARP: each worker keeps its own neighbour cache).
    Everyone,
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
const IPPROTO_TCP: u8 = 6;

/// The worker owning the connection between our `local_port` and `remote`:`remote_port`.
/// All workers share one address, so the local address does not enter the hash.
pub fn owner(remote: Ipv4Addr, remote_port: u16, local_port: u16, workers: usize) -> WorkerId {
    if workers <= 1 {
        return WorkerId(0);
    }
    // FNV-1a over the tuple's bytes: cheap, and it spreads sequential ports evenly.
    let mut hash: u32 = 0x811c_9dc5;
    let bytes = remote
        .octets()
        .into_iter()
        .chain(remote_port.to_be_bytes())
        .chain(local_port.to_be_bytes());
    for byte in bytes {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    WorkerId(hash as usize % workers)
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
            ETHERTYPE_IPV4 => {}
            _ => return Steer::Here,
        }
    }
    let Some(ip) = frame.get(l2_len..) else {
        return Steer::Here;
    };
    let Some(&version_ihl) = ip.first() else {
        return Steer::Here;
    };
    if version_ihl >> 4 != 4 || ip.get(9) != Some(&IPPROTO_TCP) {
        return Steer::Here;
    }
    let ihl = usize::from(version_ihl & 0x0f) * 4;
    let (Some(src), Some(ports)) = (ip.get(12..16), ip.get(ihl..ihl + 4)) else {
        return Steer::Here;
    };
    let remote = Ipv4Addr::new(src[0], src[1], src[2], src[3]);
    let remote_port = u16::from_be_bytes([ports[0], ports[1]]);
    let local_port = u16::from_be_bytes([ports[2], ports[3]]);
    Steer::To(owner(remote, remote_port, local_port, workers))
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
    fn frame_goes_to_tuple_owner() {
        let frame = tcp_frame([10, 77, 0, 1], 5201, 40000);
        let expected = owner(Ipv4Addr::new(10, 77, 0, 1), 5201, 40000, 4);
        assert_eq!(steer(&frame, 14, 4), Steer::To(expected));
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
        let mut udp = tcp_frame([10, 77, 0, 1], 53, 40000);
        udp[23] = 17;
        assert_eq!(steer(&udp, 14, 2), Steer::Here);
        let mut short = tcp_frame([10, 77, 0, 1], 1, 2);
        short.truncate(36);
        assert_eq!(steer(&short, 14, 2), Steer::Here);
    }
}
