//! Socket options as the program set them: stored per socket so `getsockopt` reads back what
//! `setsockopt` wrote, with Linux's defaults for the rest. The subset the stack honours
//! (TCP_NODELAY, the keepalive family, IP_TOS, IPV6_TCLASS, IP_TTL and an abortive SO_LINGER)
//! is applied by the worker that owns the connection, as [`ConnectionOptions`].

use std::collections::BTreeMap;
use std::time::Duration;

use crate::option_rules::{self, BufferLimits, Rule};

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

/// The part of a socket's options that the stack carries out for its connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectionOptions {
    /// TCP_NODELAY: Nagle's algorithm is off.
    pub nodelay: bool,
    /// SO_KEEPALIVE with its timing, see [`SocketOptions::keepalive`].
    pub keepalive: Option<KeepAlive>,
    /// TCP_USER_TIMEOUT: how long sent data may stay unacknowledged before the connection is
    /// aborted, or `None` when unset or 0.
    pub user_timeout: Option<Duration>,
    /// IP_TOS: the TOS byte (DSCP and ECN bits) of every IPv4 packet sent; 0 leaves it 0.
    pub tos: u8,
    /// IPV6_TCLASS: the traffic class of every IPv6 packet sent; 0 leaves it 0.
    pub tclass: u8,
    /// IP_TTL: the TTL of every IPv4 packet sent, or `None` for the default of 64.
    pub ttl: Option<u8>,
    /// SO_LINGER with `l_onoff` set and `l_linger` 0: closing the socket resets the
    /// connection instead of ending it with a FIN.
    pub reset_on_close: bool,
}

impl ConnectionOptions {
    /// Returns the TOS byte or traffic class a connection to `remote` sends with. As on
    /// Linux, IP_TOS marks IPv4 packets (IPv4-mapped peers of AF_INET6 sockets too) and
    /// IPV6_TCLASS marks IPv6 ones.
    pub fn mark_for(&self, remote: std::net::IpAddr) -> u8 {
        match remote {
            std::net::IpAddr::V4(_) => self.tos,
            std::net::IpAddr::V6(_) => self.tclass,
        }
    }
}

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
    /// Stores `value` for (`level`, `name`) on a socket of `domain` after checking it as
    /// Linux does (see [`option_rules`]). Fails with the errno Linux gives: ENOPROTOOPT for
    /// an option a TCP socket does not have, EINVAL for a value too short or out of range.
    pub fn set(
        &mut self,
        domain: i32,
        level: i32,
        name: i32,
        value: &[u8],
        limits: BufferLimits,
    ) -> Result<SetOutcome, i32> {
        // At these two levels Linux checks the length before it looks the name up.
        let int_level = matches!(level, libc::SOL_SOCKET | libc::IPPROTO_TCP);
        let rule = match option_rules::rule(domain, level, name) {
            Ok(rule) => rule,
            Err(_) if int_level && value.len() < 4 => return Err(libc::EINVAL),
            Err((_, set_errno)) => return Err(set_errno),
        };
        let previous = self.values.get(&(level, name)).map(Vec::as_slice);
        match rule.store(level, name, value, previous, limits)? {
            Some(stored) => self.values.insert((level, name), stored),
            None => self.values.remove(&(level, name)),
        };
        let outcome = match (level, name) {
            (libc::IPPROTO_TCP, libc::TCP_NODELAY)
            | (libc::SOL_SOCKET, libc::SO_KEEPALIVE)
            | (libc::IPPROTO_IP, libc::IP_TOS | libc::IP_TTL)
            | (libc::IPPROTO_IPV6, libc::IPV6_TCLASS)
            | (
                libc::IPPROTO_TCP,
                libc::TCP_KEEPIDLE
                | libc::TCP_KEEPINTVL
                | libc::TCP_KEEPCNT
                | libc::TCP_USER_TIMEOUT,
            )
            // Applied when the socket binds, connects or listens.
            | (libc::IPPROTO_IPV6, libc::IPV6_V6ONLY) => SetOutcome::Applied,
            // The preload sets both timeouts on the program's end, where they take effect.
            (
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO
                | libc::SO_SNDTIMEO
                | option_rules::SO_RCVTIMEO_NEW
                | option_rules::SO_SNDTIMEO_NEW,
            ) => SetOutcome::Applied,
            // TODO: a close with a linger time above 0 returns at once, where Linux waits up to
            // that time for the data to be sent. Blocking close in the preload until the
            // worker reports the send queue empty would fix it.
            (libc::SOL_SOCKET, libc::SO_LINGER) if !self.lingers_with_timeout() => {
                SetOutcome::Applied
            }
            _ => SetOutcome::StoredOnly,
        };
        if outcome == SetOutcome::StoredOnly {
            self.unhonoured += 1;
        }
        Ok(outcome)
    }

    /// Returns the value last stored for (`level`, `name`), or Linux's default for an option
    /// never set, with the rule that describes it. The value is `None` for read-only options
    /// whose value comes from the socket's state (SO_TYPE, SO_ERROR, TCP_INFO…). Fails with
    /// the errno Linux gives for an option the socket does not have.
    pub fn get(&self, domain: i32, level: i32, name: i32) -> Result<(Rule, Option<Vec<u8>>), i32> {
        let rule = option_rules::rule(domain, level, name).map_err(|(get_errno, _)| get_errno)?;
        if rule == Rule::Unsupported {
            return Err(libc::EOPNOTSUPP);
        }
        let value = self
            .values
            .get(&(level, name))
            .cloned()
            .or_else(|| rule.default_value(level, name));
        Ok((rule, value))
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
        let give_up = self
            .user_timeout()
            .unwrap_or(Duration::from_secs(idle + interval * count));
        Some(KeepAlive {
            idle: Duration::from_secs(idle),
            give_up,
        })
    }

    /// TCP_USER_TIMEOUT, or `None` when it was never set or set to 0 (the system default).
    fn user_timeout(&self) -> Option<Duration> {
        let ms = self
            .int(libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT)
            .filter(|v| *v > 0)?;
        Some(Duration::from_millis(ms as u64))
    }

    /// SO_LINGER as (`l_onoff`, `l_linger`), or `None` when it was never set.
    fn linger(&self) -> Option<(i32, i32)> {
        let value = self
            .values
            .get(&(libc::SOL_SOCKET, libc::SO_LINGER))?
            .get(..8)?;
        let on = i32::from_ne_bytes(value[..4].try_into().expect("4 bytes"));
        let seconds = i32::from_ne_bytes(value[4..].try_into().expect("4 bytes"));
        Some((on, seconds))
    }

    /// Whether SO_LINGER makes close wait for unsent data.
    fn lingers_with_timeout(&self) -> bool {
        self.linger()
            .is_some_and(|(on, seconds)| on != 0 && seconds != 0)
    }

    /// Returns the options the worker owning this socket's connection carries out.
    pub fn connection(&self) -> ConnectionOptions {
        let reset_on_close = self
            .linger()
            .is_some_and(|(on, seconds)| on != 0 && seconds == 0);
        let byte = |level, name| self.int(level, name).and_then(|v| u8::try_from(v).ok());
        ConnectionOptions {
            nodelay: self.flag(libc::IPPROTO_TCP, libc::TCP_NODELAY),
            keepalive: self.keepalive(),
            user_timeout: self.user_timeout(),
            tos: byte(libc::IPPROTO_IP, libc::IP_TOS).unwrap_or(0),
            tclass: byte(libc::IPPROTO_IPV6, libc::IPV6_TCLASS).unwrap_or(0),
            ttl: byte(libc::IPPROTO_IP, libc::IP_TTL),
            reset_on_close,
        }
    }

    /// Returns every option the program set, as (level, name, stored value).
    pub fn stored(&self) -> impl Iterator<Item = (i32, i32, &[u8])> {
        self.values
            .iter()
            .map(|(&(level, name), value)| (level, name, value.as_slice()))
    }

    /// Returns the int stored for (`level`, `name`), if the program set one.
    pub fn int(&self, level: i32, name: i32) -> Option<i32> {
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

#[cfg(test)]
mod tests {
    use super::*;

    const INET: i32 = libc::AF_INET;

    fn int(v: i32) -> Vec<u8> {
        v.to_ne_bytes().to_vec()
    }

    fn set(options: &mut SocketOptions, level: i32, name: i32, value: &[u8]) -> SetOutcome {
        options
            .set(INET, level, name, value, BufferLimits::default())
            .unwrap_or_else(|errno| panic!("set ({level}, {name}) failed with {errno}"))
    }

    fn get(options: &SocketOptions, level: i32, name: i32) -> Option<Vec<u8>> {
        options.get(INET, level, name).expect("a known option").1
    }

    #[test]
    fn nodelay_reads_back() {
        let mut options = SocketOptions::default();
        assert_eq!(
            get(&options, libc::IPPROTO_TCP, libc::TCP_NODELAY),
            Some(int(0))
        );
        let outcome = set(&mut options, libc::IPPROTO_TCP, libc::TCP_NODELAY, &int(1));
        assert_eq!(outcome, SetOutcome::Applied);
        assert_eq!(
            get(&options, libc::IPPROTO_TCP, libc::TCP_NODELAY),
            Some(int(1))
        );
        assert!(options.flag(libc::IPPROTO_TCP, libc::TCP_NODELAY));
    }

    #[test]
    fn rcvbuf_doubles_like_linux() {
        let mut options = SocketOptions::default();
        set(&mut options, libc::SOL_SOCKET, libc::SO_RCVBUF, &int(65536));
        assert_eq!(
            get(&options, libc::SOL_SOCKET, libc::SO_RCVBUF),
            Some(int(131072))
        );
        assert_eq!(options.unhonoured, 1);
    }

    #[test]
    fn unset_device_and_ip_options_are_empty() {
        let options = SocketOptions::default();
        assert_eq!(
            get(&options, libc::SOL_SOCKET, libc::SO_BINDTODEVICE),
            Some(Vec::new())
        );
        assert_eq!(
            get(&options, libc::IPPROTO_IP, libc::IP_OPTIONS),
            Some(Vec::new())
        );
    }

    #[test]
    fn unset_linger_is_off() {
        let options = SocketOptions::default();
        assert_eq!(
            get(&options, libc::SOL_SOCKET, libc::SO_LINGER),
            Some(vec![0u8; 8])
        );
    }

    #[test]
    fn linux_defaults_for_unset_options() {
        let options = SocketOptions::default();
        let tcp = |name| get(&options, libc::IPPROTO_TCP, name);
        assert_eq!(tcp(libc::TCP_KEEPIDLE), Some(int(7200)));
        assert_eq!(tcp(libc::TCP_KEEPINTVL), Some(int(75)));
        assert_eq!(tcp(libc::TCP_KEEPCNT), Some(int(9)));
        assert_eq!(tcp(libc::TCP_MAXSEG), Some(int(536)));
        assert_eq!(get(&options, libc::IPPROTO_IP, libc::IP_TTL), Some(int(64)));
        assert_eq!(
            get(&options, libc::SOL_SOCKET, libc::SO_RCVLOWAT),
            Some(int(1))
        );
        assert_eq!(get(&options, libc::SOL_SOCKET, libc::SO_TYPE), None);
    }

    #[test]
    fn unknown_option_is_rejected() {
        let mut options = SocketOptions::default();
        let limits = BufferLimits::default();
        let value = int(1);
        assert_eq!(
            options.set(INET, libc::SOL_SOCKET, 9999, &value, limits),
            Err(libc::ENOPROTOOPT)
        );
        assert_eq!(
            options.get(INET, libc::SOL_SOCKET, 9999),
            Err(libc::ENOPROTOOPT)
        );
        assert_eq!(options.get(INET, 4242, 1), Err(libc::EOPNOTSUPP));
        assert_eq!(options.unhonoured, 0);
    }

    #[test]
    fn tos_and_ttl_reach_the_connection() {
        let mut options = SocketOptions::default();
        assert_eq!(options.connection(), ConnectionOptions::default());
        let outcome = set(&mut options, libc::IPPROTO_IP, libc::IP_TOS, &int(0x83));
        assert_eq!(outcome, SetOutcome::Applied);
        set(&mut options, libc::IPPROTO_IP, libc::IP_TTL, &int(7));
        let applied = options.connection();
        assert_eq!(applied.tos, 0x80);
        assert_eq!(applied.ttl, Some(7));
        set(&mut options, libc::IPPROTO_IP, libc::IP_TTL, &int(-1));
        assert_eq!(options.connection().ttl, None);
        assert_eq!(options.unhonoured, 0);
    }

    #[test]
    fn tclass_reads_back_without_ecn() {
        let mut options = SocketOptions::default();
        let limits = BufferLimits::default();
        let inet6 = libc::AF_INET6;
        let level = libc::IPPROTO_IPV6;
        let outcome = options.set(inet6, level, libc::IPV6_TCLASS, &int(0xb9), limits);
        assert_eq!(outcome, Ok(SetOutcome::Applied));
        let read = options.get(inet6, level, libc::IPV6_TCLASS).unwrap().1;
        assert_eq!(read, Some(int(0xb8)));
        assert_eq!(options.connection().tclass, 0xb8);
        options
            .set(inet6, level, libc::IPV6_TCLASS, &int(-1), limits)
            .unwrap();
        assert_eq!(options.connection().tclass, 0);
        assert_eq!(
            options.set(inet6, level, libc::IPV6_TCLASS, &int(256), limits),
            Err(libc::EINVAL)
        );
        assert_eq!(
            options.set(inet6, level, libc::IPV6_TCLASS, &int(-2), limits),
            Err(libc::EINVAL)
        );
    }

    #[test]
    fn zero_linger_resets_on_close() {
        let mut options = SocketOptions::default();
        let linger = |on: i32, seconds: i32| [on.to_ne_bytes(), seconds.to_ne_bytes()].concat();
        let outcome = set(
            &mut options,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger(1, 5),
        );
        assert_eq!(outcome, SetOutcome::StoredOnly);
        assert!(!options.connection().reset_on_close);
        let outcome = set(
            &mut options,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger(1, 0),
        );
        assert_eq!(outcome, SetOutcome::Applied);
        assert!(options.connection().reset_on_close);
        assert_eq!(
            get(&options, libc::SOL_SOCKET, libc::SO_LINGER),
            Some(linger(1, 0))
        );
        set(
            &mut options,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger(0, 0),
        );
        assert!(!options.connection().reset_on_close);
    }

    #[test]
    fn keepalive_from_linux_knobs() {
        let mut options = SocketOptions::default();
        assert_eq!(options.keepalive(), None);
        set(&mut options, libc::SOL_SOCKET, libc::SO_KEEPALIVE, &int(1));
        let defaults = options.keepalive().unwrap();
        assert_eq!(defaults.idle, Duration::from_secs(7200));
        assert_eq!(defaults.give_up, Duration::from_secs(7200 + 75 * 9));
        set(&mut options, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, &int(2));
        set(
            &mut options,
            libc::IPPROTO_TCP,
            libc::TCP_KEEPINTVL,
            &int(1),
        );
        set(&mut options, libc::IPPROTO_TCP, libc::TCP_KEEPCNT, &int(3));
        assert_eq!(options.keepalive().unwrap().give_up, Duration::from_secs(5));
        set(
            &mut options,
            libc::IPPROTO_TCP,
            libc::TCP_USER_TIMEOUT,
            &int(1500),
        );
        assert_eq!(
            options.keepalive().unwrap().give_up,
            Duration::from_millis(1500)
        );
        assert_eq!(options.unhonoured, 0);
    }

    #[test]
    fn user_timeout_without_keepalive() {
        let mut options = SocketOptions::default();
        assert_eq!(options.connection().user_timeout, None);
        set(
            &mut options,
            libc::IPPROTO_TCP,
            libc::TCP_USER_TIMEOUT,
            &int(0),
        );
        assert_eq!(options.connection().user_timeout, None);
        set(
            &mut options,
            libc::IPPROTO_TCP,
            libc::TCP_USER_TIMEOUT,
            &int(2000),
        );
        let connection = options.connection();
        assert_eq!(connection.user_timeout, Some(Duration::from_secs(2)));
        assert_eq!(connection.keepalive, None);
    }

    #[test]
    fn short_int_value_is_invalid() {
        let mut options = SocketOptions::default();
        assert_eq!(
            options.set(
                INET,
                libc::SOL_SOCKET,
                libc::SO_REUSEADDR,
                &[1],
                BufferLimits::default()
            ),
            Err(libc::EINVAL)
        );
    }
}
