//! The reply to [`Op::Info`](crate::Op::Info): the addresses and link facts of netcon's
//! interface, and the DNS server programs' names are resolved through. The preload uses them
//! for AI_ADDRCONFIG and to list netcon's interface in `getifaddrs`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::addr::{WIRE_ADDR_LEN, WireAddr};
use crate::wire::Reply;

/// Encoded size of the option bytes of an info reply: the IPv6 address and the link-local
/// address as [`WireAddr`]s, the two prefix lengths, a MAC flag and the MAC.
const INFO_OPT_LEN: usize = 2 * WIRE_ADDR_LEN + 2 + 1 + 6;

/// netcon's interface and DNS server, as `netcon-dp` was configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetconInfo {
    /// The stack's IPv4 address.
    pub ipv4: Ipv4Addr,
    /// The prefix length of the IPv4 address (`--address`), 1 to 32.
    pub ipv4_prefix: u8,
    /// The stack's IPv6 address on the link and its prefix length (`--address6`), when it
    /// has one.
    pub ipv6: Option<(Ipv6Addr, u8)>,
    /// The link-local address derived from the MAC, which an Ethernet link has together with
    /// `ipv6`.
    pub ipv6_link_local: Option<Ipv6Addr>,
    /// The stack's MAC address; `None` on an IP link (`--medium ip`).
    pub mac: Option<[u8; 6]>,
    /// The DNS server given to `netcon-dp --dns`, with its port.
    pub dns: Option<SocketAddr>,
}

impl NetconInfo {
    /// Encodes the info into a reply: `local` is the IPv4 address, `remote` the DNS server,
    /// and `opt` the rest in [`INFO_OPT_LEN`] bytes.
    pub fn to_reply(&self) -> Reply {
        let mut opt = [0u8; INFO_OPT_LEN];
        let ipv6 = self.ipv6.map(|(ip, _)| SocketAddr::new(ip.into(), 0));
        let link_local = self.ipv6_link_local.map(|ip| SocketAddr::new(ip.into(), 0));
        let (first, rest) = opt.split_at_mut(WIRE_ADDR_LEN);
        WireAddr(ipv6).encode(first.try_into().expect("one address"));
        let (second, rest) = rest.split_at_mut(WIRE_ADDR_LEN);
        WireAddr(link_local).encode(second.try_into().expect("one address"));
        rest[0] = self.ipv4_prefix;
        rest[1] = self.ipv6.map_or(0, |(_, prefix)| prefix);
        if let Some(mac) = self.mac {
            rest[2] = 1;
            rest[3..9].copy_from_slice(&mac);
        }

        let mut reply = Reply::with_opt(&opt);
        reply.local = WireAddr(Some(SocketAddr::new(self.ipv4.into(), 0)));
        reply.remote = WireAddr(self.dns);
        reply
    }

    /// Decodes the info from a reply made by [`NetconInfo::to_reply`]; `None` when the fields
    /// do not have that shape or a prefix length is out of range.
    pub fn from_reply(reply: &Reply) -> Option<NetconInfo> {
        let ipv4 = match reply.local.0?.ip() {
            IpAddr::V4(ip) => ip,
            IpAddr::V6(_) => return None,
        };
        let opt: &[u8; INFO_OPT_LEN] = reply.opt_bytes().try_into().ok()?;
        let (first, rest) = opt.split_at(WIRE_ADDR_LEN);
        let (second, rest) = rest.split_at(WIRE_ADDR_LEN);
        let ipv6 = decode_ipv6(first)?;
        let ipv6_link_local = decode_ipv6(second)?;
        let (ipv4_prefix, ipv6_prefix) = (rest[0], rest[1]);
        if !(1..=32).contains(&ipv4_prefix) || ipv6_prefix > 128 {
            return None;
        }
        let mac = match rest[2] {
            0 => None,
            1 => Some(rest[3..9].try_into().expect("six bytes")),
            _ => return None,
        };
        Some(NetconInfo {
            ipv4,
            ipv4_prefix,
            ipv6: ipv6.map(|ip| (ip, ipv6_prefix)),
            ipv6_link_local,
            mac,
            dns: reply.remote.0,
        })
    }
}

/// Decodes an optional IPv6 address; the outer `None` means the bytes are not one.
fn decode_ipv6(bytes: &[u8]) -> Option<Option<Ipv6Addr>> {
    let bytes: &[u8; WIRE_ADDR_LEN] = bytes.try_into().ok()?;
    match WireAddr::decode(bytes)?.0.map(|addr| addr.ip()) {
        None => Some(None),
        Some(IpAddr::V6(ip)) => Some(Some(ip)),
        Some(IpAddr::V4(_)) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_round_trip() {
        let full = NetconInfo {
            ipv4: "10.77.0.2".parse().unwrap(),
            ipv4_prefix: 24,
            ipv6: Some(("fd00:77::2".parse().unwrap(), 64)),
            ipv6_link_local: Some("fe80::6e:63ff:fe01:203".parse().unwrap()),
            mac: Some([0x02, 0x6e, 0x63, 0x01, 0x02, 0x03]),
            dns: Some("[fd00:77::1]:5353".parse().unwrap()),
        };
        let reply = Reply::decode(&full.to_reply().encode()).unwrap();
        assert_eq!(NetconInfo::from_reply(&reply), Some(full));

        let bare = NetconInfo {
            ipv4: "10.77.0.2".parse().unwrap(),
            ipv4_prefix: 30,
            ipv6: None,
            ipv6_link_local: None,
            mac: None,
            dns: None,
        };
        assert_eq!(NetconInfo::from_reply(&bare.to_reply()), Some(bare));
        assert_eq!(NetconInfo::from_reply(&Reply::ok(0)), None);
    }

    #[test]
    fn info_prefix_out_of_range() {
        let info = NetconInfo {
            ipv4: "10.77.0.2".parse().unwrap(),
            ipv4_prefix: 33,
            ipv6: None,
            ipv6_link_local: None,
            mac: None,
            dns: None,
        };
        assert_eq!(NetconInfo::from_reply(&info.to_reply()), None);
        let info = NetconInfo {
            ipv4_prefix: 24,
            ipv6: Some(("fd00::2".parse().unwrap(), 129)),
            ..info
        };
        assert_eq!(NetconInfo::from_reply(&info.to_reply()), None);
    }
}
