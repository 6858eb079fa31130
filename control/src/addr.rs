//! Socket addresses in two encodings: the fixed 20-byte form carried in RPC messages, and the C
//! `sockaddr_in`/`sockaddr_in6` bytes that programs pass to `connect`, `bind` and `accept`.
//!
//! Both decoders take untrusted bytes and reject what the kernel would reject, with the errno
//! the kernel would return.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Encoded size of a [`WireAddr`].
pub const WIRE_ADDR_LEN: usize = 20;

const SOCKADDR_IN_LEN: usize = 16;
const SOCKADDR_IN6_LEN: usize = 28;
/// The shortest `sockaddr_in6` Linux accepts: the RFC 2133 layout, without `sin6_scope_id`.
const SOCKADDR_IN6_MIN_LEN: usize = 24;

/// An optional socket address in the RPC's fixed layout: family (u16), port (u16, host order),
/// 16 address bytes (IPv4 uses the first 4). Family 0 means "no address".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WireAddr(pub Option<SocketAddr>);

impl WireAddr {
    /// Writes the 20-byte encoding into `out`.
    pub fn encode(&self, out: &mut [u8; WIRE_ADDR_LEN]) {
        *out = [0; WIRE_ADDR_LEN];
        let Some(addr) = self.0 else { return };
        let family = match addr.ip() {
            IpAddr::V4(ip) => {
                out[4..8].copy_from_slice(&ip.octets());
                libc::AF_INET as u16
            }
            IpAddr::V6(ip) => {
                out[4..20].copy_from_slice(&ip.octets());
                libc::AF_INET6 as u16
            }
        };
        out[0..2].copy_from_slice(&family.to_le_bytes());
        out[2..4].copy_from_slice(&addr.port().to_le_bytes());
    }

    /// Decodes the 20-byte encoding; returns `None` for an unknown family.
    pub fn decode(bytes: &[u8; WIRE_ADDR_LEN]) -> Option<WireAddr> {
        let family = u16::from_le_bytes([bytes[0], bytes[1]]);
        let port = u16::from_le_bytes([bytes[2], bytes[3]]);
        let ip: IpAddr = match i32::from(family) {
            0 => return Some(WireAddr(None)),
            libc::AF_INET => Ipv4Addr::new(bytes[4], bytes[5], bytes[6], bytes[7]).into(),
            libc::AF_INET6 => {
                let octets: [u8; 16] = bytes[4..20].try_into().ok()?;
                Ipv6Addr::from(octets).into()
            }
            _ => return None,
        };
        Some(WireAddr(Some(SocketAddr::new(ip, port))))
    }
}

/// Why a C socket address was rejected, with the errno Linux returns for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SockaddrError {
    /// The length is shorter than the family's struct (EINVAL).
    TooShort,
    /// The family is not AF_INET or AF_INET6 (EAFNOSUPPORT).
    UnsupportedFamily(u16),
}

impl SockaddrError {
    /// The errno Linux reports for this fault.
    pub fn errno(self) -> i32 {
        match self {
            SockaddrError::TooShort => libc::EINVAL,
            SockaddrError::UnsupportedFamily(_) => libc::EAFNOSUPPORT,
        }
    }
}

impl std::fmt::Display for SockaddrError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SockaddrError::TooShort => write!(f, "socket address shorter than its family's struct"),
            SockaddrError::UnsupportedFamily(family) => {
                write!(f, "address family {family} is not supported")
            }
        }
    }
}

/// Parses the bytes of a `sockaddr_in` or `sockaddr_in6` (network byte order fields).
pub fn decode_sockaddr(bytes: &[u8]) -> Result<SocketAddr, SockaddrError> {
    if bytes.len() < 2 {
        return Err(SockaddrError::TooShort);
    }
    let family = u16::from_ne_bytes([bytes[0], bytes[1]]);
    match i32::from(family) {
        libc::AF_INET => {
            if bytes.len() < SOCKADDR_IN_LEN {
                return Err(SockaddrError::TooShort);
            }
            let port = u16::from_be_bytes([bytes[2], bytes[3]]);
            let ip = Ipv4Addr::new(bytes[4], bytes[5], bytes[6], bytes[7]);
            Ok(SocketAddrV4::new(ip, port).into())
        }
        libc::AF_INET6 => {
            if bytes.len() < SOCKADDR_IN6_MIN_LEN {
                return Err(SockaddrError::TooShort);
            }
            let port = u16::from_be_bytes([bytes[2], bytes[3]]);
            let flowinfo = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
            let octets: [u8; 16] = bytes[8..24].try_into().expect("slice of 16 bytes");
            let scope_id = match bytes.get(24..28) {
                Some(id) => u32::from_ne_bytes(id.try_into().expect("slice of 4 bytes")),
                None => 0,
            };
            Ok(SocketAddrV6::new(Ipv6Addr::from(octets), port, flowinfo, scope_id).into())
        }
        _ => Err(SockaddrError::UnsupportedFamily(family)),
    }
}

/// Writes `addr` as a C socket address into `out`, truncated to `out.len()` as the kernel does,
/// and returns the full length of the struct (what `*addrlen` must be set to).
pub fn encode_sockaddr(addr: &SocketAddr, out: &mut [u8]) -> usize {
    let mut full = [0u8; SOCKADDR_IN6_LEN];
    let len = match addr {
        SocketAddr::V4(v4) => {
            full[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
            full[2..4].copy_from_slice(&v4.port().to_be_bytes());
            full[4..8].copy_from_slice(&v4.ip().octets());
            SOCKADDR_IN_LEN
        }
        SocketAddr::V6(v6) => {
            full[0..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
            full[2..4].copy_from_slice(&v6.port().to_be_bytes());
            full[4..8].copy_from_slice(&v6.flowinfo().to_be_bytes());
            full[8..24].copy_from_slice(&v6.ip().octets());
            full[24..28].copy_from_slice(&v6.scope_id().to_ne_bytes());
            SOCKADDR_IN6_LEN
        }
    };
    let copied = len.min(out.len());
    out[..copied].copy_from_slice(&full[..copied]);
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_addr_round_trip() {
        for text in ["10.77.0.1:5201", "[fd00::1]:80", "0.0.0.0:0"] {
            let addr = WireAddr(Some(text.parse().unwrap()));
            let mut bytes = [0; WIRE_ADDR_LEN];
            addr.encode(&mut bytes);
            assert_eq!(WireAddr::decode(&bytes), Some(addr), "{text}");
        }
    }

    #[test]
    fn wire_addr_none_and_bad_family() {
        let mut bytes = [0; WIRE_ADDR_LEN];
        WireAddr(None).encode(&mut bytes);
        assert_eq!(WireAddr::decode(&bytes), Some(WireAddr(None)));
        bytes[0] = 99;
        assert_eq!(WireAddr::decode(&bytes), None);
    }

    #[test]
    fn sockaddr_round_trip() {
        for text in ["10.77.0.1:5201", "[fd00::1]:443"] {
            let addr: SocketAddr = text.parse().unwrap();
            let mut out = [0u8; 128];
            let len = encode_sockaddr(&addr, &mut out);
            assert_eq!(decode_sockaddr(&out[..len]), Ok(addr), "{text}");
        }
    }

    #[test]
    fn sockaddr_short_and_foreign() {
        let addr: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let mut out = [0u8; 16];
        encode_sockaddr(&addr, &mut out);
        assert_eq!(decode_sockaddr(&out[..15]), Err(SockaddrError::TooShort));
        assert_eq!(decode_sockaddr(&[]), Err(SockaddrError::TooShort));
        let unix = (libc::AF_UNIX as u16).to_ne_bytes();
        assert_eq!(
            decode_sockaddr(&[unix[0], unix[1], 0, 0]),
            Err(SockaddrError::UnsupportedFamily(libc::AF_UNIX as u16))
        );
    }

    #[test]
    fn sockaddr_in6_without_scope_id() {
        let addr: SocketAddr = "[fd00::1]:443".parse().unwrap();
        let mut out = [0u8; 28];
        encode_sockaddr(&addr, &mut out);
        assert_eq!(decode_sockaddr(&out[..24]), Ok(addr));
        assert_eq!(decode_sockaddr(&out[..23]), Err(SockaddrError::TooShort));
    }

    #[test]
    fn sockaddr_truncated_output() {
        let addr: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let mut out = [0u8; 4];
        assert_eq!(encode_sockaddr(&addr, &mut out), 16);
        assert_eq!(u16::from_be_bytes([out[2], out[3]]), 80);
    }
}
