//! The rules Linux applies to each option of a TCP socket, so that `getsockopt` and
//! `setsockopt` on a netcon socket fail, succeed and read back as on a kernel socket. They
//! say which names exist at each level, how long a value must be, which values are valid and
//! how they are stored, and what an option that was never set reads as. They were measured on
//! Linux 6.18, and the semantics test `option_table_matches_kernel` compares them with the
//! running kernel.

/// SO_RCVTIMEO_NEW and SO_SNDTIMEO_NEW, which the libc crate does not export.
pub const SO_RCVTIMEO_NEW: i32 = 66;
pub const SO_SNDTIMEO_NEW: i32 = 67;

/// Linux's `TCP_MSS_DEFAULT`: what TCP_MAXSEG reads as before a connection negotiates one.
pub const TCP_MSS_DEFAULT: i32 = 536;

/// `SOCK_MIN_SNDBUF` and `SOCK_MIN_RCVBUF` of a 64-bit Linux: the floor of a buffer size.
const MIN_SNDBUF: i32 = 4608;
const MIN_RCVBUF: i32 = 2304;

/// The most IP options a packet carries (`IP_OPTIONS` takes at most this many bytes).
const MAX_IP_OPTIONS: usize = 40;

/// The kernel's limits on buffer sizes a program may ask for: `SO_SNDBUF` and `SO_RCVBUF` are
/// clamped to `net.core.wmem_max` and `rmem_max` before they are doubled, and SO_RCVLOWAT to
/// half the largest receive buffer (the last value of `net.ipv4.tcp_rmem`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferLimits {
    pub wmem_max: i32,
    pub rmem_max: i32,
    pub tcp_rmem_max: i32,
}

impl Default for BufferLimits {
    /// Linux's defaults for the three sysctls.
    fn default() -> BufferLimits {
        BufferLimits {
            wmem_max: 212_992,
            rmem_max: 212_992,
            tcp_rmem_max: 6_291_456,
        }
    }
}

/// The kind of value an option takes, which decides how it is checked and stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// An int that reads back as 0 or 1. With `binary`, values other than 0 and 1 are EINVAL.
    Flag { default: i32, binary: bool },
    /// An int in `min..=max`; anything else is EINVAL.
    Int { default: i32, min: i32, max: i32 },
    /// SO_SNDBUF or SO_RCVBUF: clamped to the sysctl limit, then doubled, with a floor.
    Buffer { receive: bool },
    /// SO_RCVLOWAT: 0 reads as 1, and values are capped at half the largest receive buffer.
    LowWater,
    /// SO_LINGER: `l_onoff` reads back as 0 or 1, and turning linger off keeps the time.
    Linger,
    /// IP_TOS: stored as one byte with the two ECN bits cleared.
    TypeOfService,
    /// IP_TTL: 1 to 255, or -1 for the default of 64.
    TimeToLive,
    /// IPV6_TCLASS: 0 to 255 with the two ECN bits cleared, or -1 for the default of 0.
    TrafficClass,
    /// TCP_MAXSEG: 0 (back to the default) or 88 to 32767 (TCP_MIN_MSS to MAX_TCP_WINDOW).
    MaxSegment,
    /// Bytes stored as given, `min` to `max` of them (SO_BINDTODEVICE, TCP_CONGESTION).
    Bytes { min: usize, max: usize },
    /// IP_OPTIONS: up to 40 bytes of IP options, stored padded to a multiple of four.
    IpOptions,
    /// A struct of `len` bytes (`struct linger`, `struct timeval`); shorter values are EINVAL.
    Struct { len: usize },
    /// An option Linux has that netcon does not model: an int stored as given.
    Other,
    /// Only readable: `setsockopt` fails with ENOPROTOOPT (EINVAL when shorter than an int).
    ReadOnly,
    /// Not supported on a TCP socket: both calls fail with EOPNOTSUPP.
    Unsupported,
}

/// Returns the rule for (`level`, `name`) on a socket of `domain`. For an option the socket
/// does not have it returns the errnos of `getsockopt` and of `setsockopt`: ENOPROTOOPT for
/// both when the name is unknown, and EOPNOTSUPP and ENOPROTOOPT when the level is.
pub fn rule(domain: i32, level: i32, name: i32) -> Result<Rule, (i32, i32)> {
    let unknown = (libc::ENOPROTOOPT, libc::ENOPROTOOPT);
    let found = match level {
        libc::SOL_SOCKET => socket_rule(name),
        libc::IPPROTO_TCP => tcp_rule(name),
        libc::IPPROTO_IP => ip_rule(name),
        libc::IPPROTO_IPV6 if domain == libc::AF_INET6 => ipv6_rule(name),
        _ => return Err((libc::EOPNOTSUPP, libc::ENOPROTOOPT)),
    };
    found.ok_or(unknown)
}

/// SOL_SOCKET options (asm-generic/socket.h).
fn socket_rule(name: i32) -> Option<Rule> {
    let flag = Rule::Flag {
        default: 0,
        binary: false,
    };
    let int = |default| Rule::Int {
        default,
        min: i32::MIN,
        max: i32::MAX,
    };
    Some(match name {
        libc::SO_DEBUG
        | libc::SO_REUSEADDR
        | libc::SO_DONTROUTE
        | libc::SO_BROADCAST
        | libc::SO_KEEPALIVE
        | libc::SO_OOBINLINE
        | libc::SO_REUSEPORT
        | libc::SO_TIMESTAMP
        | libc::SO_TIMESTAMPNS
        | libc::SO_RXQ_OVFL
        | libc::SO_WIFI_STATUS
        | libc::SO_NOFCS
        | libc::SO_SELECT_ERR_QUEUE => flag,
        libc::SO_ZEROCOPY => Rule::Flag {
            default: 0,
            binary: true,
        },
        libc::SO_SNDBUF => Rule::Buffer { receive: false },
        libc::SO_RCVBUF => Rule::Buffer { receive: true },
        libc::SO_PRIORITY | libc::SO_MARK => int(0),
        libc::SO_BUSY_POLL => Rule::Int {
            default: 0,
            min: 0,
            max: i32::MAX,
        },
        libc::SO_RCVLOWAT => Rule::LowWater,
        libc::SO_PEEK_OFF | libc::SO_INCOMING_CPU => int(-1),
        // NOTE: Linux fails with ENODEV for a device that does not exist; netcon stores any
        // name, and sends through its own interface whatever it is.
        libc::SO_BINDTODEVICE => Rule::Bytes {
            min: 0,
            max: usize::MAX,
        },
        libc::SO_LINGER => Rule::Linger,
        libc::SO_RCVTIMEO | libc::SO_SNDTIMEO | SO_RCVTIMEO_NEW | SO_SNDTIMEO_NEW => Rule::Struct {
            len: size_of::<libc::timeval>(),
        },
        // SO_TYPE, SO_ERROR, SO_PEERCRED, SO_SNDLOWAT, SO_PEERNAME, SO_ACCEPTCONN,
        // SO_PROTOCOL, SO_DOMAIN, SO_BPF_EXTENSIONS, SO_MEMINFO, SO_INCOMING_NAPI_ID,
        // SO_COOKIE, SO_PEERGROUPS, SO_NETNS_COOKIE, SO_PEERPIDFD.
        3 | 4 | 17 | 19 | 28 | 30 | 38 | 39 | 48 | 55 | 56 | 57 | 59 | 71 | 77 => Rule::ReadOnly,
        // SO_PASSCRED, SO_PASSSEC, SO_RESERVE_MEM, SO_PASSPIDFD, SO_PASSRIGHTS: Unix and
        // memory-accounting options a TCP socket rejects.
        16 | 34 | 73 | 76 | 83 => Rule::Unsupported,
        // Every other name Linux 6.18 defines for SOL_SOCKET. 22 to 24 and 31 are security
        // labels, which TCP sockets do not support.
        1..=21 | 25..=30 | 32..=53 | 59..=77 | 80 | 82 => Rule::Other,
        _ => return None,
    })
}

/// IPPROTO_TCP options (linux/tcp.h).
fn tcp_rule(name: i32) -> Option<Rule> {
    let flag = |default, binary| Rule::Flag { default, binary };
    let range = |default, min, max| Rule::Int { default, min, max };
    Some(match name {
        libc::TCP_NODELAY | libc::TCP_CORK | libc::TCP_THIN_LINEAR_TIMEOUTS => flag(0, false),
        libc::TCP_FASTOPEN_CONNECT | libc::TCP_INQ => flag(0, true),
        libc::TCP_QUICKACK => flag(1, false),
        libc::TCP_MAXSEG => Rule::MaxSegment,
        // NOTE: Linux fails with ENOENT for an algorithm it does not have; netcon stores any
        // name and runs Reno whatever it is.
        libc::TCP_CONGESTION => Rule::Bytes {
            min: 1,
            max: usize::MAX,
        },
        // MAX_TCP_KEEPIDLE, MAX_TCP_KEEPINTVL, MAX_TCP_KEEPCNT and MAX_TCP_SYNCNT.
        libc::TCP_KEEPIDLE => range(7200, 1, 32767),
        libc::TCP_KEEPINTVL => range(75, 1, 32767),
        libc::TCP_KEEPCNT => range(9, 1, 127),
        libc::TCP_SYNCNT => range(6, 1, 127),
        libc::TCP_USER_TIMEOUT | libc::TCP_FASTOPEN => range(0, 0, i32::MAX),
        // TCP_INFO, TCP_CC_INFO, TCP_SAVED_SYN, TCP_ZEROCOPY_RECEIVE and TCP_AO_INFO.
        11 | 26 | 28 | 35 | 43 => Rule::ReadOnly,
        1..=14 | 16..=37 | 44..=46 => Rule::Other,
        _ => return None,
    })
}

/// IPPROTO_IP options (linux/in.h).
fn ip_rule(name: i32) -> Option<Rule> {
    let flag = |default, binary| Rule::Flag { default, binary };
    Some(match name {
        libc::IP_TOS => Rule::TypeOfService,
        libc::IP_TTL => Rule::TimeToLive,
        libc::IP_OPTIONS => Rule::IpOptions,
        // IP_RECVOPTS, IP_RETOPTS, IP_PKTINFO, IP_RECVERR, IP_RECVTTL, IP_RECVTOS,
        // IP_FREEBIND, IP_PASSSEC, IP_TRANSPARENT, IP_RECVORIGDSTADDR, IP_CHECKSUM,
        // IP_BIND_ADDRESS_NO_PORT, IP_RECVFRAGSIZE and IP_RECVERR_RFC4884.
        6 | 7 | 8 | 11 | 12 | 13 | 15 | 18 | 19 | 20 | 23 | 24 | 25 => flag(0, false),
        26 => flag(0, true),
        // IP_MULTICAST_LOOP and IP_MULTICAST_ALL.
        34 => flag(1, false),
        49 => flag(1, true),
        libc::IP_MTU_DISCOVER => Rule::Int {
            default: libc::IP_PMTUDISC_WANT,
            min: 0,
            max: libc::IP_PMTUDISC_OMIT,
        },
        libc::IP_MINTTL => Rule::Int {
            default: 0,
            min: 0,
            max: 255,
        },
        // IP_HDRINCL and IP_NODEFRAG are for raw sockets; IP_PKTOPTIONS, IP_MTU and
        // IP_PROTOCOL can only be read.
        3 | 9 | 14 | 22 | 52 => Rule::ReadOnly,
        1..=26 | 32..=51 => Rule::Other,
        _ => return None,
    })
}

/// IPPROTO_IPV6 options of an AF_INET6 socket (linux/in6.h). Only IPV6_V6ONLY, IPV6_TCLASS,
/// IPV6_MTU_DISCOVER and IPV6_DONTFRAG are modelled; the others are stored as given.
fn ipv6_rule(name: i32) -> Option<Rule> {
    Some(match name {
        libc::IPV6_V6ONLY => Rule::Flag {
            default: 0,
            binary: false,
        },
        libc::IPV6_TCLASS => Rule::TrafficClass,
        libc::IPV6_MTU_DISCOVER => Rule::Int {
            default: libc::IPV6_PMTUDISC_WANT,
            min: 0,
            max: libc::IPV6_PMTUDISC_OMIT,
        },
        libc::IPV6_DONTFRAG => Rule::Flag {
            default: 0,
            binary: false,
        },
        1..=80 => Rule::Other,
        _ => return None,
    })
}

impl Rule {
    /// Checks `value` for `setsockopt` (`name` at `level`) and returns the bytes to store,
    /// `None` when the option goes back to its default, or the errno. `previous` is the value
    /// stored before, if any.
    pub fn store(
        self,
        level: i32,
        name: i32,
        value: &[u8],
        previous: Option<&[u8]>,
        limits: BufferLimits,
    ) -> Result<Option<Vec<u8>>, i32> {
        match self {
            Rule::ReadOnly if level == libc::IPPROTO_IP => return Err(libc::ENOPROTOOPT),
            Rule::ReadOnly if value.len() < 4 => return Err(libc::EINVAL),
            Rule::ReadOnly => return Err(libc::ENOPROTOOPT),
            Rule::Unsupported if level == libc::SOL_SOCKET && value.len() < 4 => {
                return Err(libc::EINVAL);
            }
            Rule::Unsupported => return Err(libc::EOPNOTSUPP),
            Rule::Struct { len } if value.len() < len => return Err(libc::EINVAL),
            Rule::Struct { len } => return Ok(Some(value[..len].to_vec())),
            Rule::Linger => return linger(value, previous).map(Some),
            Rule::Bytes { min, max } if !(min..=max).contains(&value.len()) => {
                return Err(libc::EINVAL);
            }
            Rule::Bytes { .. } => return Ok(Some(value.to_vec())),
            Rule::IpOptions => return ip_options(value).map(Some),
            _ => {}
        }
        if level == libc::IPPROTO_IP && value.is_empty() && ip_needs_value(name) {
            return Err(libc::EINVAL);
        }
        let int = read_int(level, value)?;
        let stored = match self {
            Rule::Flag { binary: true, .. } if !(0..=1).contains(&int) => {
                return Err(libc::EINVAL);
            }
            Rule::Flag { .. } => i32::from(int != 0),
            Rule::Int { min, max, .. } if !(min..=max).contains(&int) => {
                return Err(libc::EINVAL);
            }
            Rule::Int { .. } | Rule::Other => int,
            Rule::Buffer { receive } => buffer_size(int, receive, limits),
            Rule::LowWater => low_water(int, limits),
            Rule::MaxSegment => match int {
                0 => return Ok(None),
                88..=32767 => int,
                _ => return Err(libc::EINVAL),
            },
            Rule::TypeOfService => int & 0xfc,
            Rule::TimeToLive => match int {
                -1 => return Ok(None),
                1..=255 => int,
                _ => return Err(libc::EINVAL),
            },
            Rule::TrafficClass => match int {
                -1 => return Ok(None),
                0..=255 => int & 0xfc,
                _ => return Err(libc::EINVAL),
            },
            Rule::Struct { .. }
            | Rule::Linger
            | Rule::Bytes { .. }
            | Rule::IpOptions
            | Rule::ReadOnly
            | Rule::Unsupported => unreachable!("returned above"),
        };
        Ok(Some(stored.to_ne_bytes().to_vec()))
    }

    /// Returns the value an option that was never set reads as, before it is cut to the
    /// caller's length. Returns `None` for an option whose value comes from the socket's state.
    pub fn default_value(self, level: i32, name: i32) -> Option<Vec<u8>> {
        let int = match self {
            Rule::Flag { default, .. } | Rule::Int { default, .. } => default,
            Rule::Buffer { receive: false } => 16_384,
            Rule::Buffer { receive: true } => 131_072,
            Rule::LowWater => 1,
            Rule::Linger => return Some(vec![0; size_of::<libc::linger>()]),
            Rule::TypeOfService | Rule::TrafficClass | Rule::Other => 0,
            Rule::MaxSegment => TCP_MSS_DEFAULT,
            Rule::TimeToLive => 64,
            Rule::Bytes { .. } | Rule::IpOptions => return Some(Vec::new()),
            Rule::Struct { len } => return Some(vec![0; len]),
            Rule::ReadOnly => return read_only_default(level, name),
            Rule::Unsupported => return None,
        };
        Some(int.to_ne_bytes().to_vec())
    }
}

/// Returns the values of read-only options that do not depend on the connection.
fn read_only_default(level: i32, name: i32) -> Option<Vec<u8>> {
    let int = match (level, name) {
        (libc::SOL_SOCKET, libc::SO_SNDLOWAT) => 1,
        (libc::IPPROTO_IP, libc::IP_HDRINCL | 22) => 0,
        (libc::IPPROTO_IP, 52) => libc::IPPROTO_TCP,
        (libc::IPPROTO_IP, 9) => return Some(Vec::new()),
        _ => return None,
    };
    Some(int.to_ne_bytes().to_vec())
}

/// Reads the int a `setsockopt` value carries. SOL_SOCKET and IPPROTO_TCP need all four
/// bytes; IPPROTO_IP also takes a single byte (`unsigned char`), and no bytes as 0.
fn read_int(level: i32, value: &[u8]) -> Result<i32, i32> {
    if let Some(bytes) = value.get(..4) {
        return Ok(i32::from_ne_bytes(bytes.try_into().expect("4 bytes")));
    }
    if level != libc::IPPROTO_IP {
        return Err(libc::EINVAL);
    }
    Ok(value.first().map_or(0, |&byte| i32::from(byte)))
}

/// Returns what SO_SNDBUF or SO_RCVBUF reads as after a program requested `requested` bytes:
/// the request (as unsigned) clamped to the sysctl limit, doubled for the kernel's
/// bookkeeping, and raised to the floor.
fn buffer_size(requested: i32, receive: bool, limits: BufferLimits) -> i32 {
    let (limit, floor) = if receive {
        (limits.rmem_max, MIN_RCVBUF)
    } else {
        (limits.wmem_max, MIN_SNDBUF)
    };
    let clamped = (requested as u32).min(limit.max(0) as u32) as i32;
    clamped.saturating_mul(2).max(floor)
}

/// Returns what SO_RCVLOWAT reads as after a program set `requested`. 0 means 1 byte, a
/// negative value means as much as possible, and the cap is half the largest receive buffer.
fn low_water(requested: i32, limits: BufferLimits) -> i32 {
    let bytes = if requested < 0 { i32::MAX } else { requested };
    bytes.min(limits.tcp_rmem_max / 2).max(1)
}

/// Checks a `struct linger` and returns it as Linux stores it: `l_onoff` as 0 or 1, and the
/// previous time kept when linger is turned off.
fn linger(value: &[u8], previous: Option<&[u8]>) -> Result<Vec<u8>, i32> {
    let field = |bytes: &[u8], at: usize| {
        i32::from_ne_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
    };
    if value.len() < size_of::<libc::linger>() {
        return Err(libc::EINVAL);
    }
    let on = field(value, 0) != 0;
    let time = if on {
        field(value, 4)
    } else {
        previous.map_or(0, |old| field(old, 4))
    };
    let mut stored = i32::from(on).to_ne_bytes().to_vec();
    stored.extend_from_slice(&time.to_ne_bytes());
    Ok(stored)
}

/// Checks IP options for IP_OPTIONS and returns them as Linux stores them: padded to a
/// multiple of four bytes, with everything after an end-of-list option zeroed.
// NOTE: only end-of-list (0) and no-operation (1) are accepted. Linux also accepts
// well-formed record-route, timestamp and source-route options, which netcon rejects with
// EINVAL because its stack does not send IP options.
fn ip_options(value: &[u8]) -> Result<Vec<u8>, i32> {
    if value.len() > MAX_IP_OPTIONS {
        return Err(libc::EINVAL);
    }
    let mut stored = value.to_vec();
    stored.resize(value.len().div_ceil(4) * 4, 0);
    for index in 0..stored.len() {
        match stored[index] {
            0 => {
                stored[index..].fill(0);
                break;
            }
            1 => {}
            _ => return Err(libc::EINVAL),
        }
    }
    Ok(stored)
}

/// IPPROTO_IP options for which an empty value is EINVAL: IP_FREEBIND, IP_TRANSPARENT,
/// IP_MINTTL, IP_NODEFRAG, IP_MULTICAST_LOOP and IP_MULTICAST_ALL. The others read no bytes
/// as 0.
fn ip_needs_value(name: i32) -> bool {
    matches!(name, 15 | 19 | 21 | 22 | 34 | 49)
}

/// Cuts an option's value to the `len` bytes the caller's buffer has, as `getsockopt` does. At
/// IPPROTO_IP an int read into fewer than four bytes comes back as one byte when it fits.
pub fn truncate(level: i32, rule: Rule, mut value: Vec<u8>, len: usize) -> Vec<u8> {
    let is_int = !matches!(
        rule,
        Rule::Struct { .. } | Rule::Linger | Rule::Bytes { .. } | Rule::IpOptions
    ) && value.len() == 4;
    if level == libc::IPPROTO_IP && is_int && (1..4).contains(&len) {
        let int = i32::from_ne_bytes(value[..4].try_into().expect("4 bytes"));
        if let Ok(byte) = u8::try_from(int) {
            return vec![byte];
        }
    }
    value.truncate(len);
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(v: i32) -> Vec<u8> {
        v.to_ne_bytes().to_vec()
    }

    fn store(level: i32, name: i32, value: &[u8]) -> Result<Vec<u8>, i32> {
        let rule = rule(libc::AF_INET, level, name).expect("a known option");
        let stored = rule.store(level, name, value, None, BufferLimits::default())?;
        Ok(stored.unwrap_or_default())
    }

    #[test]
    fn unknown_names_and_levels() {
        let unknown = Err((libc::ENOPROTOOPT, libc::ENOPROTOOPT));
        assert_eq!(rule(libc::AF_INET, libc::SOL_SOCKET, 9999), unknown);
        assert_eq!(rule(libc::AF_INET, libc::IPPROTO_TCP, 9999), unknown);
        assert_eq!(rule(libc::AF_INET, libc::IPPROTO_IP, 9999), unknown);
        let level = Err((libc::EOPNOTSUPP, libc::ENOPROTOOPT));
        assert_eq!(rule(libc::AF_INET, 4242, 1), level);
        assert_eq!(
            rule(libc::AF_INET, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY),
            level
        );
        assert!(rule(libc::AF_INET6, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY).is_ok());
    }

    #[test]
    fn short_int_is_invalid() {
        for len in 0..4 {
            let value = vec![1u8; len];
            assert_eq!(
                store(libc::SOL_SOCKET, libc::SO_KEEPALIVE, &value),
                Err(libc::EINVAL)
            );
            assert_eq!(
                store(libc::IPPROTO_TCP, libc::TCP_NODELAY, &value),
                Err(libc::EINVAL)
            );
            assert_eq!(
                store(libc::SOL_SOCKET, libc::SO_TYPE, &value),
                Err(libc::EINVAL)
            );
        }
        assert_eq!(
            store(libc::SOL_SOCKET, libc::SO_TYPE, &int(1)),
            Err(libc::ENOPROTOOPT)
        );
    }

    #[test]
    fn flags_read_as_one() {
        assert_eq!(
            store(libc::SOL_SOCKET, libc::SO_KEEPALIVE, &int(7)),
            Ok(int(1))
        );
        assert_eq!(
            store(libc::IPPROTO_TCP, libc::TCP_NODELAY, &int(-7)),
            Ok(int(1))
        );
        assert_eq!(
            store(libc::IPPROTO_TCP, libc::TCP_NODELAY, &int(0)),
            Ok(int(0))
        );
    }

    #[test]
    fn keepalive_ranges() {
        assert_eq!(
            store(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, &int(0)),
            Err(libc::EINVAL)
        );
        assert_eq!(
            store(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, &int(32768)),
            Err(libc::EINVAL)
        );
        assert_eq!(
            store(libc::IPPROTO_TCP, libc::TCP_KEEPCNT, &int(128)),
            Err(libc::EINVAL)
        );
        assert_eq!(
            store(libc::IPPROTO_TCP, libc::TCP_KEEPCNT, &int(127)),
            Ok(int(127))
        );
    }

    #[test]
    fn buffers_double_within_limits() {
        let limits = BufferLimits::default();
        assert_eq!(buffer_size(65536, true, limits), 131072);
        assert_eq!(buffer_size(1, true, limits), MIN_RCVBUF);
        assert_eq!(buffer_size(1, false, limits), MIN_SNDBUF);
        assert_eq!(buffer_size(1 << 30, false, limits), 2 * 212_992);
        assert_eq!(buffer_size(-1, true, limits), 2 * 212_992);
    }

    #[test]
    fn ip_options_take_a_byte() {
        assert_eq!(store(libc::IPPROTO_IP, libc::IP_TTL, &[7]), Ok(int(7)));
        assert_eq!(
            store(libc::IPPROTO_IP, libc::IP_TTL, &[]),
            Err(libc::EINVAL)
        );
        assert_eq!(
            store(libc::IPPROTO_IP, libc::IP_TTL, &int(-1)),
            Ok(Vec::new())
        );
        assert_eq!(
            store(libc::IPPROTO_TCP, libc::TCP_MAXSEG, &int(87)),
            Err(libc::EINVAL)
        );
        assert_eq!(store(libc::IPPROTO_IP, libc::IP_TOS, &[]), Ok(int(0)));
        assert_eq!(
            store(libc::IPPROTO_IP, libc::IP_TOS, &int(-1)),
            Ok(int(0xfc))
        );
    }

    #[test]
    fn linger_normalised() {
        let on = [int(7), int(9)].concat();
        let stored = linger(&on, None).unwrap();
        assert_eq!(stored, [int(1), int(9)].concat());
        let off = [int(0), int(3)].concat();
        assert_eq!(linger(&off, Some(&stored)), Ok([int(0), int(9)].concat()));
        assert_eq!(linger(&int(1), None), Err(libc::EINVAL));
    }

    #[test]
    fn ip_options_padded() {
        assert_eq!(ip_options(&[1]), Ok(vec![1, 0, 0, 0]));
        assert_eq!(
            ip_options(&[1, 0, 1, 1, 1]),
            Ok(vec![1, 0, 0, 0, 0, 0, 0, 0])
        );
        assert_eq!(ip_options(&[7, 0, 0, 0]), Err(libc::EINVAL));
        assert_eq!(ip_options(&[]), Ok(Vec::new()));
    }

    #[test]
    fn low_water_bounds() {
        let limits = BufferLimits::default();
        assert_eq!(low_water(0, limits), 1);
        assert_eq!(low_water(-1, limits), 6_291_456 / 2);
        assert_eq!(low_water(100, limits), 100);
    }

    #[test]
    fn ip_int_reads_as_a_byte() {
        let ttl = Rule::TimeToLive;
        assert_eq!(truncate(libc::IPPROTO_IP, ttl, int(64), 2), vec![64]);
        assert_eq!(
            truncate(libc::IPPROTO_IP, ttl, int(64), 0),
            Vec::<u8>::new()
        );
        let flag = Rule::Flag {
            default: 0,
            binary: false,
        };
        assert_eq!(truncate(libc::SOL_SOCKET, flag, int(1), 2), vec![1, 0]);
    }
}
