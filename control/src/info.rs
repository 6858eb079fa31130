//! The reply to [`Op::Info`](crate::Op::Info): the addresses, routes and link facts of
//! netcon's interface, and the DNS server programs' names are resolved through. The preload
//! uses them for AI_ADDRCONFIG, to list netcon's interface in `getifaddrs`, and to check each
//! `sendto` against the routes.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use crate::addr::{WIRE_ADDR_LEN, WireAddr};
use crate::route::Routes;
use crate::wire::Reply;

/// Encoded size of the option bytes of an info reply: the IPv6 address and the link-local
/// address as [`WireAddr`]s, the two prefix lengths, the gateway flags, a MAC flag, the MAC
/// and the MTU.
const INFO_OPT_LEN: usize = 2 * WIRE_ADDR_LEN + 2 + 1 + 1 + 6 + 4;

/// Gateway flag: a default IPv4 gateway exists.
const GATEWAY4: u8 = 1;

/// Gateway flag: a default IPv6 gateway exists.
const GATEWAY6: u8 = 2;

/// netcon's interface, routes and DNS server, as `netcon-dp` was configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetconInfo {
    /// The stack's addresses with their prefix lengths, its gateways and the link's MTU.
    pub routes: Routes,
    /// The stack's MAC address; `None` on an IP link (`--medium ip`).
    pub mac: Option<[u8; 6]>,
    /// The DNS server given to `netcon-dp --dns`, with its port.
    pub dns: Option<SocketAddr>,
}

impl NetconInfo {
    /// Encodes the info into a reply: `local` is the IPv4 address, `remote` the DNS server,
    /// and `opt` the rest in [`INFO_OPT_LEN`] bytes.
    pub fn to_reply(&self) -> Reply {
        let routes = &self.routes;
        let mut opt = [0u8; INFO_OPT_LEN];
        let ipv6 = routes.ipv6.map(|(ip, _)| SocketAddr::new(ip.into(), 0));
        let link_local = routes.link_local.map(|ip| SocketAddr::new(ip.into(), 0));
        let (first, rest) = opt.split_at_mut(WIRE_ADDR_LEN);
        WireAddr(ipv6).encode(first.try_into().expect("one address"));
        let (second, rest) = rest.split_at_mut(WIRE_ADDR_LEN);
        WireAddr(link_local).encode(second.try_into().expect("one address"));
        rest[0] = routes.prefix4;
        rest[1] = routes.ipv6.map_or(0, |(_, prefix)| prefix);
        rest[2] =
            if routes.gateway4 { GATEWAY4 } else { 0 } | if routes.gateway6 { GATEWAY6 } else { 0 };
        if let Some(mac) = self.mac {
            rest[3] = 1;
            rest[4..10].copy_from_slice(&mac);
        }
        rest[10..14].copy_from_slice(&routes.mtu.to_le_bytes());

        let mut reply = Reply::with_opt(&opt);
        reply.local = WireAddr(Some(SocketAddr::new(routes.ipv4.into(), 0)));
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
        let link_local = decode_ipv6(second)?;
        let (prefix4, prefix6, gateways) = (rest[0], rest[1], rest[2]);
        if !(1..=32).contains(&prefix4) || prefix6 > 128 {
            return None;
        }
        let mac = match rest[3] {
            0 => None,
            1 => Some(rest[4..10].try_into().expect("six bytes")),
            _ => return None,
        };
        let routes = Routes {
            ipv4,
            prefix4,
            gateway4: gateways & GATEWAY4 != 0,
            ipv6: ipv6.map(|ip| (ip, prefix6)),
            link_local,
            gateway6: gateways & GATEWAY6 != 0,
            mtu: u32::from_le_bytes(rest[10..14].try_into().expect("four bytes")),
        };
        Some(NetconInfo {
            routes,
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

    fn routes(prefix4: u8, ipv6: Option<(&str, u8)>) -> Routes {
        Routes {
            ipv4: "10.77.0.2".parse().unwrap(),
            prefix4,
            gateway4: true,
            ipv6: ipv6.map(|(ip, prefix)| (ip.parse().unwrap(), prefix)),
            link_local: ipv6.map(|_| "fe80::6e:63ff:fe01:203".parse().unwrap()),
            gateway6: false,
            mtu: 9000,
        }
    }

    #[test]
    fn info_round_trip() {
        let full = NetconInfo {
            routes: routes(24, Some(("fd00:77::2", 64))),
            mac: Some([0x02, 0x6e, 0x63, 0x01, 0x02, 0x03]),
            dns: Some("[fd00:77::1]:5353".parse().unwrap()),
        };
        let reply = Reply::decode(&full.to_reply().encode()).unwrap();
        assert_eq!(NetconInfo::from_reply(&reply), Some(full));

        let bare = NetconInfo {
            routes: Routes {
                gateway4: false,
                gateway6: true,
                mtu: 1500,
                ..routes(30, None)
            },
            mac: None,
            dns: None,
        };
        assert_eq!(NetconInfo::from_reply(&bare.to_reply()), Some(bare));
        assert_eq!(NetconInfo::from_reply(&Reply::ok(0)), None);
    }

    #[test]
    fn info_prefix_out_of_range() {
        let info = NetconInfo {
            routes: routes(33, None),
            mac: None,
            dns: None,
        };
        assert_eq!(NetconInfo::from_reply(&info.to_reply()), None);
        let info = NetconInfo {
            routes: routes(24, Some(("fd00::2", 129))),
            ..info
        };
        assert_eq!(NetconInfo::from_reply(&info.to_reply()), None);
    }
}
