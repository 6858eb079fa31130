//! The framing of UDP datagrams between a program and `netcon-dp`.
//!
//! A netcon UDP socket is the program's end of a SOCK_SEQPACKET socketpair, so each datagram
//! stays one message and the program keeps an fd that poll, epoll, fork and exec treat as
//! usual. Every message, in both directions and whether the socket is connected or not,
//! starts with a [`DatagramHeader`] of [`HEADER_LEN`] bytes, and the payload follows:
//!
//! - program → netcon-dp: the destination, or no address to send to the connected peer;
//! - netcon-dp → program: the source of a received datagram, or an error that the next call
//!   on the socket reports (ECONNREFUSED after an ICMP port unreachable from the peer of a
//!   connected socket).
//!
//! The preload adds the header in its `send*`/`write*` and strips it in its `recv*`/`read*`
//! for UDP fds, with one extra iovec so the payload is never copied.
//!
//! Why a header on connected sockets too: each message names its own address, so `connect`
//! and `connect(AF_UNSPEC)` switch nothing in the byte stream. Datagrams queued before the
//! switch keep the addresses they were sent with, whichever thread or forked process is
//! reading, and an error message can sit in the same queue as the data. A mode switch
//! without headers would have to know where in each queue the switch happened.
//!
//! All integers are little endian. Decoding takes untrusted bytes and returns `None` for
//! anything malformed (`decode_never_panics_on_noise` feeds it random bytes).

use std::net::SocketAddr;

use crate::addr::{WIRE_ADDR_LEN, WireAddr};

/// First two bytes of every header, so a message that is not one is rejected.
pub const MAGIC: u16 = 0x6e64;

/// Encoded size of a [`DatagramHeader`].
pub const HEADER_LEN: usize = 12 + WIRE_ADDR_LEN;

/// Largest UDP payload over IPv4: 65535 less the IPv4 and UDP headers.
pub const MAX_PAYLOAD_IPV4: usize = 65507;

/// Largest UDP payload over IPv6 without jumbograms: 65535 less the UDP header.
pub const MAX_PAYLOAD_IPV6: usize = 65527;

const KIND_DATA: u8 = 0;
const KIND_ERROR: u8 = 1;

/// The header that precedes the payload of each message on a datagram socketpair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatagramHeader {
    /// A datagram: its destination (towards netcon-dp, `None` for the connected peer) or its
    /// source (towards the program).
    Data(Option<SocketAddr>),
    /// No datagram: the next call on the socket fails with this errno (towards the program
    /// only).
    Error(i32),
}

impl DatagramHeader {
    /// Encodes the header into its fixed layout.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..2].copy_from_slice(&MAGIC.to_le_bytes());
        match *self {
            DatagramHeader::Data(addr) => {
                out[2] = KIND_DATA;
                if let Some(SocketAddr::V6(v6)) = addr {
                    out[8..12].copy_from_slice(&v6.scope_id().to_le_bytes());
                }
                let mut wire = [0u8; WIRE_ADDR_LEN];
                WireAddr(addr).encode(&mut wire);
                out[12..].copy_from_slice(&wire);
            }
            DatagramHeader::Error(errno) => {
                out[2] = KIND_ERROR;
                out[4..8].copy_from_slice(&(errno as u32).to_le_bytes());
            }
        }
        out
    }

    /// Decodes the first [`HEADER_LEN`] bytes of a message; `None` when they are not a
    /// header (too short, wrong magic, unknown kind or address family).
    pub fn decode(bytes: &[u8]) -> Option<DatagramHeader> {
        let bytes = bytes.get(..HEADER_LEN)?;
        if u16::from_le_bytes([bytes[0], bytes[1]]) != MAGIC {
            return None;
        }
        match bytes[2] {
            KIND_DATA => {
                let wire: &[u8; WIRE_ADDR_LEN] = bytes[12..].try_into().ok()?;
                let mut addr = WireAddr::decode(wire)?.0;
                if let Some(SocketAddr::V6(v6)) = &mut addr {
                    v6.set_scope_id(u32::from_le_bytes(bytes[8..12].try_into().ok()?));
                }
                Some(DatagramHeader::Data(addr))
            }
            KIND_ERROR => {
                let errno = u32::from_le_bytes(bytes[4..8].try_into().ok()?);
                Some(DatagramHeader::Error(errno as i32))
            }
            _ => None,
        }
    }
}

/// Returns the largest payload one datagram to or from `addr`'s family can carry.
pub fn max_payload(addr: &SocketAddr) -> usize {
    match addr {
        SocketAddr::V4(_) => MAX_PAYLOAD_IPV4,
        SocketAddr::V6(_) => MAX_PAYLOAD_IPV6,
    }
}

/// The parts of a UDP socket's options that the preload checks before a datagram leaves the
/// program. They say whether broadcast destinations are allowed (SO_BROADCAST), and whether a
/// datagram larger than the link's MTU fails with EMSGSIZE instead of being fragmented.
/// netcon-dp computes the flags from a socket's stored options for an
/// [`crate::Op::Identify`] reply, and the preload updates them as the program sets options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendFlags(pub u8);

impl SendFlags {
    /// SO_BROADCAST is set.
    const BROADCAST: u8 = 1;
    /// IP_MTU_DISCOVER is IP_PMTUDISC_DO or IP_PMTUDISC_PROBE: no fragments over IPv4.
    const IPV4_DONT_FRAGMENT: u8 = 2;
    /// IPV6_MTU_DISCOVER is IPV6_PMTUDISC_DO or IPV6_PMTUDISC_PROBE.
    const IPV6_PMTUDISC_DO: u8 = 4;
    /// IPV6_DONTFRAG is set.
    const IPV6_DONTFRAG: u8 = 8;

    /// Returns the flags after `setsockopt(level, name)` stored the int `value`; options that
    /// concern none of the flags leave them as they are.
    pub fn with_option(self, level: i32, name: i32, value: i32) -> SendFlags {
        let (bit, on) = match (level, name) {
            (libc::SOL_SOCKET, libc::SO_BROADCAST) => (Self::BROADCAST, value != 0),
            (libc::IPPROTO_IP, libc::IP_MTU_DISCOVER) => (
                Self::IPV4_DONT_FRAGMENT,
                matches!(value, libc::IP_PMTUDISC_DO | libc::IP_PMTUDISC_PROBE),
            ),
            (libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER) => (
                Self::IPV6_PMTUDISC_DO,
                matches!(value, libc::IPV6_PMTUDISC_DO | libc::IPV6_PMTUDISC_PROBE),
            ),
            (libc::IPPROTO_IPV6, libc::IPV6_DONTFRAG) => (Self::IPV6_DONTFRAG, value != 0),
            _ => return self,
        };
        if on {
            SendFlags(self.0 | bit)
        } else {
            SendFlags(self.0 & !bit)
        }
    }

    /// Returns whether the socket may send to a broadcast address.
    pub fn allows_broadcast(self) -> bool {
        self.0 & Self::BROADCAST != 0
    }

    /// Returns whether a datagram too large for the link fails with EMSGSIZE, sent over IPv4
    /// (`ipv4`, also for an IPv4-mapped destination of an AF_INET6 socket) or IPv6. Linux
    /// checks IP_MTU_DISCOVER for the first and IPV6_MTU_DISCOVER and IPV6_DONTFRAG for the
    /// second.
    pub fn forbids_fragments(self, ipv4: bool) -> bool {
        let bits = if ipv4 {
            Self::IPV4_DONT_FRAGMENT
        } else {
            Self::IPV6_PMTUDISC_DO | Self::IPV6_DONTFRAG
        };
        self.0 & bits != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_flags_follow_options() {
        let flags = SendFlags::default();
        assert!(!flags.allows_broadcast());
        assert!(!flags.forbids_fragments(true));
        let flags = flags.with_option(libc::SOL_SOCKET, libc::SO_BROADCAST, 1);
        assert!(flags.allows_broadcast());
        let flags = flags.with_option(
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_DO,
        );
        assert!(flags.forbids_fragments(true));
        assert!(!flags.forbids_fragments(false));
        let flags = flags.with_option(
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_WANT,
        );
        assert!(!flags.forbids_fragments(true));
        let flags = flags.with_option(libc::IPPROTO_IPV6, libc::IPV6_DONTFRAG, 1);
        assert!(flags.forbids_fragments(false));
        assert!(!flags.forbids_fragments(true));
        let flags = flags.with_option(libc::IPPROTO_IPV6, libc::IPV6_DONTFRAG, 0);
        assert!(!flags.forbids_fragments(false));
        let flags = flags.with_option(
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_PROBE,
        );
        assert!(flags.forbids_fragments(false));
        let flags = flags.with_option(libc::SOL_SOCKET, libc::SO_BROADCAST, 0);
        assert!(!flags.allows_broadcast());
        assert!(flags.forbids_fragments(false), "other bits stay");
    }

    #[test]
    fn data_header_round_trip() {
        for text in [
            "10.77.0.1:53",
            "127.0.0.1:40000",
            "[fd00::1]:5201",
            "[fe80::1%3]:9",
        ] {
            let header = DatagramHeader::Data(Some(text.parse().unwrap()));
            assert_eq!(
                DatagramHeader::decode(&header.encode()),
                Some(header),
                "{text}"
            );
        }
        let to_peer = DatagramHeader::Data(None);
        assert_eq!(DatagramHeader::decode(&to_peer.encode()), Some(to_peer));
    }

    #[test]
    fn error_header_round_trip() {
        let header = DatagramHeader::Error(libc::ECONNREFUSED);
        assert_eq!(DatagramHeader::decode(&header.encode()), Some(header));
    }

    #[test]
    fn header_rejects_short_and_foreign_bytes() {
        let bytes = DatagramHeader::Data(None).encode();
        assert_eq!(DatagramHeader::decode(&bytes[..HEADER_LEN - 1]), None);
        let mut wrong_magic = bytes;
        wrong_magic[0] ^= 0xff;
        assert_eq!(DatagramHeader::decode(&wrong_magic), None);
        let mut wrong_kind = bytes;
        wrong_kind[2] = 9;
        assert_eq!(DatagramHeader::decode(&wrong_kind), None);
        let mut wrong_family = bytes;
        wrong_family[12] = 99;
        assert_eq!(DatagramHeader::decode(&wrong_family), None);
    }

    #[test]
    fn payload_follows_header() {
        let mut message = DatagramHeader::Data(None).encode().to_vec();
        message.extend_from_slice(b"payload");
        assert_eq!(
            DatagramHeader::decode(&message),
            Some(DatagramHeader::Data(None))
        );
        assert_eq!(&message[HEADER_LEN..], b"payload");
    }

    #[test]
    fn decode_never_panics_on_noise() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for len in 0..HEADER_LEN + 4 {
            for _ in 0..256 {
                let mut bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        state as u8
                    })
                    .collect();
                if bytes.len() >= 2 {
                    bytes[..2].copy_from_slice(&MAGIC.to_le_bytes());
                }
                let _ = DatagramHeader::decode(&bytes);
            }
        }
    }
}
