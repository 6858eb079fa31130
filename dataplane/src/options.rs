//! Socket options as the program set them: stored per socket so `getsockopt` reads back what
//! `setsockopt` wrote, with Linux's defaults for the rest. The subset the stack honours
//! (TCP_NODELAY and the keepalive family) is applied by the worker that owns the connection.

use std::collections::BTreeMap;
use std::time::Duration;

/// Linux's keepalive defaults (`net.ipv4.tcp_keepalive_time`, `_intvl`, `_probes`).
const DEFAULT_KEEPIDLE_SECONDS: u64 = 7200;
const DEFAULT_KEEPINTVL_SECONDS: u64 = 75;
const DEFAULT_KEEPCNT: u64 = 9;

/// How a connection with SO_KEEPALIVE probes its peer (see [`SocketOptions::keepalive`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeepAlive {
    /// Idle time before the first probe, and between probes.
    pub idle: Duration,
    /// Time without any packet from the peer after which the connection is aborted.
    pub give_up: Duration,
}

/// Linux's default SO_SNDBUF for TCP (`net.ipv4.tcp_wmem` middle value).
const DEFAULT_SNDBUF: i32 = 16384;
/// Linux's default SO_RCVBUF for TCP (`net.ipv4.tcp_rmem` middle value).
const DEFAULT_RCVBUF: i32 = 131072;

/// The options of one socket.
#[derive(Clone, Debug, Default)]
pub struct SocketOptions {
    values: BTreeMap<(i32, i32), Vec<u8>>,
    /// How many `setsockopt` calls asked for something the stack does not carry out.
    pub unhonoured: u32,
}

/// How `setsockopt` went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetOutcome {
    /// Stored, and the stack acts on it.
    Applied,
    /// Stored and readable, but the stack does not act on it.
    StoredOnly,
}

impl SocketOptions {
    /// Stores `value` for (`level`, `name`). Errors with EINVAL for a value shorter than an int
    /// where the option takes an int, as Linux does.
    pub fn set(&mut self, level: i32, name: i32, value: &[u8]) -> Result<SetOutcome, i32> {
        if takes_int(level, name) && value.len() < 4 {
            return Err(libc::EINVAL);
        }
        let stored = match (level, name) {
            // Linux doubles the requested size to leave room for bookkeeping.
            (libc::SOL_SOCKET, libc::SO_SNDBUF | libc::SO_RCVBUF) => {
                let asked = i32::from_ne_bytes(value[..4].try_into().expect("4 bytes"));
                asked.saturating_mul(2).to_ne_bytes().to_vec()
            }
            _ => value.to_vec(),
        };
        self.values.insert((level, name), stored);
        let outcome = match (level, name) {
            (libc::IPPROTO_TCP, libc::TCP_NODELAY)
            | (libc::SOL_SOCKET, libc::SO_KEEPALIVE)
            | (
                libc::IPPROTO_TCP,
                libc::TCP_KEEPIDLE
                | libc::TCP_KEEPINTVL
                | libc::TCP_KEEPCNT
                | libc::TCP_USER_TIMEOUT,
            )
            // Applied when the socket binds, connects or listens.
            | (libc::IPPROTO_IPV6, libc::IPV6_V6ONLY) => SetOutcome::Applied,
            _ => SetOutcome::StoredOnly,
        };
        if outcome == SetOutcome::StoredOnly {
            self.unhonoured += 1;
        }
        Ok(outcome)
    }

    /// The value last stored, or Linux's default for options that have one.
    pub fn get(&self, level: i32, name: i32) -> Option<Vec<u8>> {
        if let Some(value) = self.values.get(&(level, name)) {
            return Some(value.clone());
        }
        let default = match (level, name) {
            (libc::SOL_SOCKET, libc::SO_SNDBUF) => DEFAULT_SNDBUF,
            (libc::SOL_SOCKET, libc::SO_RCVBUF) => DEFAULT_RCVBUF,
            _ if takes_int(level, name) => 0,
            _ => return default_struct(level, name).map(|len| vec![0u8; len]),
        };
        Some(default.to_ne_bytes().to_vec())
    }

    /// The keepalive a connection with these options runs, or `None` without SO_KEEPALIVE.
    ///
    /// smoltcp probes at one fixed interval and aborts a connection that received nothing for
    /// a set time, so Linux's idle/interval/count become: a probe after TCP_KEEPIDLE of idleness
    /// (and every TCP_KEEPIDLE after), and abort after TCP_KEEPIDLE + TCP_KEEPINTVL ×
    /// TCP_KEEPCNT without a packet from the peer, or after TCP_USER_TIMEOUT when that is set.
    /// A peer that is gone is detected when Linux would detect it; a live one answers each
    /// probe, so its connection is kept.
    pub fn keepalive(&self) -> Option<KeepAlive> {
        if !self.flag(libc::SOL_SOCKET, libc::SO_KEEPALIVE) {
            return None;
        }
        let seconds = |name, default: u64| {
            self.int(libc::IPPROTO_TCP, name)
                .filter(|v| *v > 0)
                .map_or(default, |v| v as u64)
        };
        let idle = seconds(libc::TCP_KEEPIDLE, DEFAULT_KEEPIDLE_SECONDS);
        let interval = seconds(libc::TCP_KEEPINTVL, DEFAULT_KEEPINTVL_SECONDS);
        let count = seconds(libc::TCP_KEEPCNT, DEFAULT_KEEPCNT);
        let user_timeout_ms = self
            .int(libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT)
            .filter(|v| *v > 0);
        let give_up = match user_timeout_ms {
            Some(ms) => Duration::from_millis(ms as u64),
            None => Duration::from_secs(idle + interval * count),
        };
        Some(KeepAlive {
            idle: Duration::from_secs(idle),
            give_up,
        })
    }

    fn int(&self, level: i32, name: i32) -> Option<i32> {
        let value = self.values.get(&(level, name))?.get(..4)?;
        Some(i32::from_ne_bytes(value.try_into().expect("4 bytes")))
    }

    /// Whether the program set (`level`, `name`) at all.
    pub fn is_set(&self, level: i32, name: i32) -> bool {
        self.values.contains_key(&(level, name))
    }

    /// Whether an int option is set to a non-zero value.
    pub fn flag(&self, level: i32, name: i32) -> bool {
        self.values
            .get(&(level, name))
            .and_then(|v| v.get(..4))
            .is_some_and(|v| i32::from_ne_bytes(v.try_into().expect("4 bytes")) != 0)
    }
}

/// Name of the congestion control every connection uses, as `TCP_CONGESTION` reports it:
/// NUL-padded to Linux's TCP_CA_NAME_MAX (16 bytes), since callers print the buffer as a C
/// string.
pub const CONGESTION_CONTROL: &[u8; 16] = b"reno\0\0\0\0\0\0\0\0\0\0\0\0";

/// Length of the `struct tcp_info` prefix that [`tcp_info`] fills: the fields up to
/// `tcpi_total_retrans`, which every Linux since 2.6 has.
pub const TCP_INFO_LEN: usize = 104;

/// Linux's `TCP_ESTABLISHED` … `TCP_LISTEN` numbering of connection states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinuxTcpState {
    Established = 1,
    SynSent = 2,
    Close = 7,
    Listen = 10,
}

/// Builds the `struct tcp_info` prefix for `getsockopt(TCP_INFO)`.
// TODO: only state and MSS are filled in; round trip time, window and retransmission counts
// read as 0 until workers publish per-connection statistics.
pub fn tcp_info(state: LinuxTcpState, mss: u32) -> [u8; TCP_INFO_LEN] {
    let mut info = [0u8; TCP_INFO_LEN];
    info[0] = state as u8;
    // tcpi_snd_mss at offset 16, tcpi_rcv_mss at 20, tcpi_advmss at 84.
    for offset in [16, 20, 84] {
        info[offset..offset + 4].copy_from_slice(&mss.to_ne_bytes());
    }
    info
}

/// The length of the all-zero value Linux returns for an option that is not an int and was
/// never set: an empty device name or IP options, no linger, no timeouts.
fn default_struct(level: i32, name: i32) -> Option<usize> {
    match (level, name) {
        // sshd reads both on every connection and logs an error when they fail.
        (libc::SOL_SOCKET, libc::SO_BINDTODEVICE) | (libc::IPPROTO_IP, libc::IP_OPTIONS) => Some(0),
        (libc::SOL_SOCKET, libc::SO_LINGER) => Some(size_of::<libc::linger>()),
        (libc::SOL_SOCKET, libc::SO_RCVTIMEO | libc::SO_SNDTIMEO) => {
            Some(size_of::<libc::timeval>())
        }
        _ => None,
    }
}

/// Options whose value is a C int.
fn takes_int(level: i32, name: i32) -> bool {
    matches!(
        (level, name),
        (
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR
                | libc::SO_REUSEPORT
                | libc::SO_KEEPALIVE
                | libc::SO_SNDBUF
                | libc::SO_RCVBUF
                | libc::SO_BROADCAST
                | libc::SO_OOBINLINE
                | libc::SO_PRIORITY
                | libc::SO_RCVLOWAT
        ) | (
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY
                | libc::TCP_KEEPIDLE
                | libc::TCP_KEEPINTVL
                | libc::TCP_KEEPCNT
                | libc::TCP_USER_TIMEOUT
                | libc::TCP_QUICKACK
                | libc::TCP_CORK
                | libc::TCP_MAXSEG
                | libc::TCP_DEFER_ACCEPT
                | libc::TCP_FASTOPEN
        ) | (libc::IPPROTO_IP, libc::IP_TOS | libc::IP_TTL)
            | (libc::IPPROTO_IPV6, libc::IPV6_V6ONLY)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(v: i32) -> Vec<u8> {
        v.to_ne_bytes().to_vec()
    }

    #[test]
    fn nodelay_reads_back() {
        let mut options = SocketOptions::default();
        assert_eq!(
            options.get(libc::IPPROTO_TCP, libc::TCP_NODELAY),
            Some(int(0))
        );
        let outcome = options.set(libc::IPPROTO_TCP, libc::TCP_NODELAY, &int(1));
        assert_eq!(outcome, Ok(SetOutcome::Applied));
        assert_eq!(
            options.get(libc::IPPROTO_TCP, libc::TCP_NODELAY),
            Some(int(1))
        );
        assert!(options.flag(libc::IPPROTO_TCP, libc::TCP_NODELAY));
    }

    #[test]
    fn rcvbuf_doubles_like_linux() {
        let mut options = SocketOptions::default();
        options
            .set(libc::SOL_SOCKET, libc::SO_RCVBUF, &int(65536))
            .unwrap();
        assert_eq!(
            options.get(libc::SOL_SOCKET, libc::SO_RCVBUF),
            Some(int(131072))
        );
        assert_eq!(options.unhonoured, 1);
    }

    #[test]
    fn unset_device_and_ip_options_are_empty() {
        let options = SocketOptions::default();
        assert_eq!(
            options.get(libc::SOL_SOCKET, libc::SO_BINDTODEVICE),
            Some(Vec::new())
        );
        assert_eq!(
            options.get(libc::IPPROTO_IP, libc::IP_OPTIONS),
            Some(Vec::new())
        );
    }

    #[test]
    fn unset_linger_is_off() {
        let options = SocketOptions::default();
        assert_eq!(
            options.get(libc::SOL_SOCKET, libc::SO_LINGER),
            Some(vec![0u8; 8])
        );
    }

    #[test]
    fn keepalive_from_linux_knobs() {
        let mut options = SocketOptions::default();
        assert_eq!(options.keepalive(), None);
        options
            .set(libc::SOL_SOCKET, libc::SO_KEEPALIVE, &int(1))
            .unwrap();
        let defaults = options.keepalive().unwrap();
        assert_eq!(defaults.idle, Duration::from_secs(7200));
        assert_eq!(defaults.give_up, Duration::from_secs(7200 + 75 * 9));
        options
            .set(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, &int(2))
            .unwrap();
        options
            .set(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, &int(1))
            .unwrap();
        options
            .set(libc::IPPROTO_TCP, libc::TCP_KEEPCNT, &int(3))
            .unwrap();
        assert_eq!(options.keepalive().unwrap().give_up, Duration::from_secs(5));
        options
            .set(libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, &int(1500))
            .unwrap();
        assert_eq!(
            options.keepalive().unwrap().give_up,
            Duration::from_millis(1500)
        );
        assert_eq!(options.unhonoured, 0);
    }

    #[test]
    fn short_int_value_is_invalid() {
        let mut options = SocketOptions::default();
        assert_eq!(
            options.set(libc::SOL_SOCKET, libc::SO_REUSEADDR, &[1]),
            Err(libc::EINVAL)
        );
    }
}
