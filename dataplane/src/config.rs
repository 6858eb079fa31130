//! The command line of `netcon-dp` and its validation.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use smoltcp::wire::{Ipv4Cidr, Ipv6Cidr};

use crate::sys::tap::MAX_NAME_LEN;

/// Smallest MTU accepted: IPv4 hosts must handle 576-byte datagrams.
pub const MIN_MTU: u32 = 576;
/// Largest MTU accepted: the most a TAP frame can carry, as slirp4netns and pasta also use.
pub const MAX_MTU: u32 = 65520;

/// Link layer of the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MediumArg {
    /// A TAP device carrying Ethernet frames (ARP on the link).
    Ethernet,
    /// A TUN device carrying bare IP packets.
    Ip,
}

/// The destination of connections to loopback addresses (127.0.0.0/8 and ::1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Loopback {
    /// Inside netcon-dp, as in a container with a loopback of its own: programs behind this
    /// netcon-dp reach each other's loopback servers, and neither the host's loopback nor the
    /// TAP sees the traffic.
    #[default]
    Stack,
    /// To the kernel: a TCP socket that binds or connects to a loopback address becomes a
    /// kernel socket, with the options the program set, in the network namespace the program
    /// runs in. It reaches and is reached from that namespace's loopback, and netcon no longer
    /// carries it.
    Kernel,
}

/// An on/off setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    On,
    Off,
}

impl Switch {
    pub fn enabled(self) -> bool {
        self == Switch::On
    }
}

/// How to run netcon-dp without privileges, shown after the options in `--help`.
const ROOTLESS_HELP: &str = "\
Without root: netcon-dp needs CAP_NET_ADMIN to create, move or configure interfaces, but not to
attach to a TAP its user owns. Have root prepare one for user U (uid), then run netcon-dp as U:
    ip tuntap add dev NAME mode tap user U multi_queue
    ip link set dev NAME up            (and `master BRIDGE` to join a bridge)
    netcon-dp --tap NAME --socket PATH
/dev/net/tun must be readable and writable by U (udev gives it mode 0666).";

/// netcon-dp: the netcon data plane. Runs a user-space TCP/IP stack on a TAP device and serves
/// the sockets of programs started with `netcon-ctl run`.
#[derive(Clone, Debug, Parser)]
#[command(name = "netcon-dp", version, after_help = ROOTLESS_HELP)]
pub struct Args {
    /// TAP (or TUN) interface to create, or to attach to when it exists.
    #[arg(long, default_value = "netcon0", value_name = "NAME")]
    pub tap: String,

    /// Link layer of the interface.
    #[arg(long, value_enum, default_value_t = MediumArg::Ethernet)]
    pub medium: MediumArg,

    /// The stack's IPv4 address and prefix length.
    #[arg(long, default_value = "10.77.0.2/24", value_name = "CIDR", value_parser = parse_cidr)]
    pub address: Ipv4Cidr,

    /// Default gateway for destinations outside the address's subnet.
    #[arg(long, value_name = "ADDR")]
    pub gateway: Option<Ipv4Addr>,

    /// The stack's IPv6 address and prefix length, such as fd00::2/64. The stack adds the
    /// link-local address of its MAC and replies to neighbour discovery and ping on both
    /// [default: none, so AF_INET6 sockets reach only ::1, the programs behind this
    /// netcon-dp].
    #[arg(long, value_name = "CIDR", value_parser = parse_cidr6)]
    pub address6: Option<Ipv6Cidr>,

    /// Default IPv6 gateway for destinations outside the --address6 prefix.
    #[arg(long, value_name = "ADDR", requires = "address6")]
    pub gateway6: Option<Ipv6Addr>,

    /// MTU of the link in bytes (576 to 65520).
    #[arg(long, default_value_t = 1500, value_name = "BYTES",
          value_parser = clap::value_parser!(u32).range(MIN_MTU as i64..=MAX_MTU as i64))]
    pub mtu: u32,

    /// Path of the control socket that preloaded programs and netcon-ctl connect to
    /// [default: $XDG_RUNTIME_DIR/netcon/control.sock; without XDG_RUNTIME_DIR,
    /// /run/netcon/control.sock for root and /tmp/netcon-UID/control.sock for other users].
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// Move the TAP into this existing network namespace after opening it (needs
    /// CAP_NET_ADMIN).
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,

    /// With --netns: address and prefix for the kernel side of the TAP inside the namespace.
    #[arg(long, value_name = "CIDR", requires = "netns", value_parser = parse_cidr)]
    pub peer_address: Option<Ipv4Cidr>,

    /// With --netns and --address6: IPv6 address and prefix for the kernel side of the TAP
    /// inside the namespace, added without duplicate address detection so it works at once.
    #[arg(long, value_name = "CIDR", requires_all = ["netns", "address6"],
          value_parser = parse_cidr6)]
    pub peer_address6: Option<Ipv6Cidr>,

    /// Make the TAP a port of this existing bridge (inside --netns when given), so the stack
    /// shares a layer-2 segment with the bridge's other ports. The kernel side's address then
    /// belongs on the bridge, not on the TAP (needs CAP_NET_ADMIN).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["peer_address", "peer_address6"])]
    pub bridge: Option<String>,

    /// Segmentation offload: exchange TCP segments of up to 64 KiB with the kernel, which
    /// cuts them to the link MTU (IFF_VNET_HDR with TSO4 and TSO6).
    #[arg(long, value_enum, default_value_t = Switch::On)]
    pub offload: Switch,

    /// Number of worker threads, each with its own TAP queue, io_uring and stack (1 to 64)
    /// [default: the number of usable cores].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,

    /// Cores to pin workers to, comma-separated (worker i gets the i-th); default: none, the
    /// kernel places the workers.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub cpus: Vec<usize>,

    /// Size of each TCP connection's receive buffer and of its send buffer, in bytes.
    #[arg(long, default_value_t = 1024 * 1024, value_name = "BYTES",
          value_parser = clap::value_parser!(u32).range(4096..=(64 << 20)))]
    pub tcp_buffer: u32,

    /// Maximum number of sockets netcon-dp holds for programs at once: TCP and UDP sockets,
    /// listeners and accepted connections. At the limit socket() fails with ENFILE and
    /// connections to listeners are reset once their handshake ends, until sockets close
    /// [default: netcon-dp's limit on open fds less 4096, at least half of it, at most
    /// 65536].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,

    /// Also allow this user id to use the control socket (repeatable); netcon-dp's own uid and
    /// root are always allowed.
    #[arg(long = "allow-uid", value_name = "UID")]
    pub allow_uids: Vec<u32>,

    /// DNS server that programs run through netcon resolve names with, reached over netcon
    /// (IPv4 or IPv6 address, with an optional port: 10.77.0.1, 10.77.0.1:5353, [fd00::1]:53)
    /// [default: none, so only /etc/hosts and numeric addresses resolve].
    #[arg(long, value_name = "ADDR", value_parser = parse_dns_server)]
    pub dns: Option<SocketAddr>,

    /// Where connections to loopback addresses (127.0.0.0/8 and ::1) go.
    #[arg(long, value_enum, default_value_t = Loopback::Stack)]
    pub loopback: Loopback,
}

/// Why the arguments cannot be used together.
#[derive(Debug, PartialEq, Eq)]
pub enum ConfigError {
    TapName(String),
    BridgeName(String),
    Workers(usize),
    Address(Ipv4Cidr),
    PeerAddress { peer: Ipv4Cidr, stack: Ipv4Cidr },
    Address6(Ipv6Cidr),
    PeerAddress6 { peer: Ipv6Cidr, stack: Ipv6Cidr },
    Gateway { gateway: Ipv4Addr, stack: Ipv4Cidr },
    Gateway6 { gateway: Ipv6Addr, stack: Ipv6Cidr },
    Cpu { id: usize, usable: Vec<usize> },
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::TapName(name) => {
                write!(
                    f,
                    "invalid --tap {name:?}: use 1 to {MAX_NAME_LEN} bytes without '/' or spaces"
                )
            }
            ConfigError::BridgeName(name) => {
                write!(
                    f,
                    "invalid --bridge {name:?}: use 1 to {MAX_NAME_LEN} bytes without '/' or spaces"
                )
            }
            ConfigError::Workers(n) => write!(f, "invalid --workers {n}: use 1 to {MAX_WORKERS}"),
            ConfigError::Address(cidr) => {
                write!(
                    f,
                    "invalid --address {cidr}: use a unicast host address with a prefix of 1 to 30 bits"
                )
            }
            ConfigError::PeerAddress { peer, stack } => {
                write!(
                    f,
                    "invalid --peer-address {peer}: it must differ from --address {stack} and be in its subnet"
                )
            }
            ConfigError::Address6(cidr) => write!(
                f,
                "invalid --address6 {cidr}: use a global or unique local unicast address (not \
                 ::1, link-local, multicast or IPv4-mapped) with a prefix of 1 to 128 bits"
            ),
            ConfigError::PeerAddress6 { peer, stack } => write!(
                f,
                "invalid --peer-address6 {peer}: it must differ from --address6 {stack} and be \
                 in its prefix"
            ),
            ConfigError::Gateway { gateway, stack } => write!(
                f,
                "invalid --gateway {gateway}: it must be a host of --address {stack}'s subnet \
                 other than the address itself"
            ),
            ConfigError::Gateway6 { gateway, stack } => write!(
                f,
                "invalid --gateway6 {gateway}: it must be in --address6 {stack}'s prefix or \
                 link-local (fe80::/10), other than the address itself"
            ),
            ConfigError::Cpu { id, usable } => write!(
                f,
                "invalid --cpus entry {id}: this process may run on cores {usable:?} only"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Most workers: frames handed between workers are tracked in a 64-bit mask.
pub const MAX_WORKERS: usize = 64;

impl Args {
    /// The number of workers: `--workers`, or one per usable core.
    pub fn worker_count(&self) -> usize {
        self.workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// Checks what clap cannot: names, counts and how the addresses relate.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !is_interface_name(&self.tap) {
            return Err(ConfigError::TapName(self.tap.clone()));
        }
        if let Some(bridge) = self.bridge.as_ref().filter(|name| !is_interface_name(name)) {
            return Err(ConfigError::BridgeName(bridge.clone()));
        }
        let workers = self.worker_count();
        if !(1..=MAX_WORKERS).contains(&workers) {
            return Err(ConfigError::Workers(workers));
        }
        let ip = self.address.address();
        let prefix = self.address.prefix_len();
        let network = self.address.network();
        let broadcast = self.address.broadcast();
        let is_edge = Some(self.address.address()) == broadcast
            || self.address.address() == network.address();
        if !(1..=30).contains(&prefix)
            || ip.is_unspecified()
            || ip.is_multicast()
            || ip.is_broadcast()
            || is_edge
        {
            return Err(ConfigError::Address(self.address));
        }
        if let Some(peer) = self.peer_address
            && (peer.address() == self.address.address()
                || !self.address.contains_addr(&peer.address()))
        {
            return Err(ConfigError::PeerAddress {
                peer,
                stack: self.address,
            });
        }
        if let Some(gateway) = self.gateway {
            let host = self.address.contains_addr(&gateway)
                && gateway != ip
                && gateway != network.address()
                && Some(gateway) != broadcast;
            if !host {
                return Err(ConfigError::Gateway {
                    gateway,
                    stack: self.address,
                });
            }
        }
        self.validate_ipv6()
    }

    /// Checks that every core of `--cpus` is one this process may run on.
    pub fn check_cpus(&self) -> Result<(), ConfigError> {
        if self.cpus.is_empty() {
            return Ok(());
        }
        let Some(usable) = core_affinity::get_core_ids() else {
            return Ok(());
        };
        let usable: Vec<usize> = usable.iter().map(|core| core.id).collect();
        match self.cpus.iter().find(|id| !usable.contains(id)) {
            Some(&id) => Err(ConfigError::Cpu { id, usable }),
            None => Ok(()),
        }
    }

    /// Checks `--address6` and `--peer-address6`.
    fn validate_ipv6(&self) -> Result<(), ConfigError> {
        let Some(stack) = self.address6 else {
            return Ok(());
        };
        let ip = stack.address();
        let reserved = ip.is_unspecified()
            || ip.is_loopback()
            || ip.is_multicast()
            || ip.is_unicast_link_local()
            || ip.to_ipv4_mapped().is_some();
        if reserved || !(1..=128).contains(&stack.prefix_len()) {
            return Err(ConfigError::Address6(stack));
        }
        if let Some(peer) = self.peer_address6
            && (peer.address() == ip || !stack.contains_addr(&peer.address()))
        {
            return Err(ConfigError::PeerAddress6 { peer, stack });
        }
        if let Some(gateway) = self.gateway6
            && (gateway == ip
                || !(stack.contains_addr(&gateway) || gateway.is_unicast_link_local()))
        {
            return Err(ConfigError::Gateway6 { gateway, stack });
        }
        Ok(())
    }
}

/// Returns true for a name Linux accepts for an interface: 1 to 15 bytes without '/' or spaces.
fn is_interface_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_LEN && !name.contains(['/', ' '])
}

/// The port a DNS server listens on unless `--dns` names another.
pub const DNS_PORT: u16 = 53;

/// Parses a DNS server address: `ADDR` (port 53) or `ADDR:PORT`, IPv6 in brackets with a port.
fn parse_dns_server(text: &str) -> Result<SocketAddr, String> {
    let server = if let Ok(ip) = text.parse::<IpAddr>() {
        SocketAddr::new(ip, DNS_PORT)
    } else {
        text.parse::<SocketAddr>()
            .map_err(|_| format!("{text:?} is not an IP address, ADDR:PORT or [IPV6]:PORT"))?
    };
    let ip = server.ip();
    if ip.is_unspecified() || ip.is_multicast() || server.port() == 0 {
        return Err(format!(
            "{text:?} is not a unicast address with a port above 0"
        ));
    }
    Ok(server)
}

/// Parses `A.B.C.D/N`.
fn parse_cidr(text: &str) -> Result<Ipv4Cidr, String> {
    let (ip, prefix) = text
        .split_once('/')
        .ok_or_else(|| format!("{text:?} is not of the form A.B.C.D/PREFIX"))?;
    let ip: Ipv4Addr = ip
        .parse()
        .map_err(|_| format!("{ip:?} is not an IPv4 address"))?;
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| *p <= 32)
        .ok_or_else(|| format!("{prefix:?} is not a prefix length from 0 to 32"))?;
    Ok(Ipv4Cidr::new(ip, prefix))
}

/// Parses `ADDRESS/N` with an IPv6 address.
fn parse_cidr6(text: &str) -> Result<Ipv6Cidr, String> {
    let (ip, prefix) = text
        .split_once('/')
        .ok_or_else(|| format!("{text:?} is not of the form ADDRESS/PREFIX"))?;
    let ip: Ipv6Addr = ip
        .parse()
        .map_err(|_| format!("{ip:?} is not an IPv6 address"))?;
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| *p <= 128)
        .ok_or_else(|| format!("{prefix:?} is not a prefix length from 0 to 128"))?;
    Ok(Ipv6Cidr::new(ip, prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("netcon-dp").chain(extra.iter().copied()))
    }

    #[test]
    fn defaults_validate() {
        let parsed = args(&[]).unwrap();
        assert_eq!(parsed.mtu, 1500);
        assert_eq!(parsed.validate(), Ok(()));
    }

    #[test]
    fn malformed_address_rejected() {
        for bad in ["10.77.0.2", "10.77.0.300/24", "10.77.0.2/33", "nonsense"] {
            assert!(args(&["--address", bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn network_and_broadcast_rejected() {
        for bad in [
            "10.77.0.0/24",
            "10.77.0.255/24",
            "10.77.0.2/32",
            "0.0.0.0/8",
        ] {
            let parsed = args(&["--address", bad]).unwrap();
            assert!(parsed.validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn mtu_bounds() {
        assert!(args(&["--mtu", "575"]).is_err());
        assert!(args(&["--mtu", "65521"]).is_err());
        assert_eq!(args(&["--mtu", "65520"]).unwrap().mtu, 65520);
    }

    #[test]
    fn peer_address_needs_netns_and_subnet() {
        assert!(args(&["--peer-address", "10.77.0.1/24"]).is_err());
        let parsed = args(&["--netns", "x", "--peer-address", "10.78.0.1/24"]).unwrap();
        assert!(parsed.validate().is_err());
        let parsed = args(&["--netns", "x", "--peer-address", "10.77.0.1/24"]).unwrap();
        assert_eq!(parsed.validate(), Ok(()));
    }

    #[test]
    fn workers_bounds() {
        assert!(matches!(
            args(&["--workers", "0"]).unwrap().validate(),
            Err(ConfigError::Workers(0))
        ));
        assert!(args(&["--workers", "65"]).unwrap().validate().is_err());
        assert_eq!(args(&["--workers", "4"]).unwrap().validate(), Ok(()));
        assert!(args(&[]).unwrap().worker_count() >= 1);
    }

    #[test]
    fn bridge_excludes_peer_address() {
        let both = [
            "--netns",
            "x",
            "--peer-address",
            "10.77.0.1/24",
            "--bridge",
            "br0",
        ];
        assert!(args(&both).is_err());
        let parsed = args(&["--netns", "x", "--bridge", "br0"]).unwrap();
        assert_eq!(parsed.bridge.as_deref(), Some("br0"));
        assert_eq!(parsed.validate(), Ok(()));
        let parsed = args(&["--bridge", "bridge/with/slashes"]).unwrap();
        assert!(matches!(parsed.validate(), Err(ConfigError::BridgeName(_))));
    }

    #[test]
    fn gateways_inside_subnet() {
        let base = ["--address", "10.77.0.2/24"];
        let with = |extra: &[&str]| {
            let all: Vec<&str> = base.iter().chain(extra).copied().collect();
            args(&all).unwrap().validate()
        };
        assert_eq!(with(&["--gateway", "10.77.0.1"]), Ok(()));
        for bad in ["10.99.0.1", "10.77.0.2", "10.77.0.0", "10.77.0.255"] {
            assert!(
                matches!(with(&["--gateway", bad]), Err(ConfigError::Gateway { .. })),
                "{bad}"
            );
        }
        let v6 = ["--address6", "fd00::2/64", "--gateway6"];
        for good in ["fd00::1", "fe80::1"] {
            let all: Vec<&str> = v6.iter().copied().chain([good]).collect();
            assert_eq!(with(&all), Ok(()), "{good}");
        }
        for bad in ["fd99::1", "fd00::2"] {
            let all: Vec<&str> = v6.iter().copied().chain([bad]).collect();
            assert!(
                matches!(with(&all), Err(ConfigError::Gateway6 { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn cpus_must_be_usable() {
        let usable = core_affinity::get_core_ids().expect("core ids are readable");
        let first = usable[0].id.to_string();
        let parsed = args(&["--cpus", &first]).unwrap();
        assert_eq!(parsed.check_cpus(), Ok(()));
        let beyond = (usable.iter().map(|core| core.id).max().unwrap() + 1).to_string();
        let parsed = args(&["--cpus", &beyond]).unwrap();
        let checked = parsed.check_cpus();
        assert!(matches!(checked, Err(ConfigError::Cpu { .. })));
    }

    #[test]
    fn dns_server_forms() {
        assert_eq!(args(&[]).unwrap().dns, None);
        let cases = [
            ("10.77.0.1", "10.77.0.1:53"),
            ("10.77.0.1:5353", "10.77.0.1:5353"),
            ("fd00::1", "[fd00::1]:53"),
            ("[fd00::1]:5353", "[fd00::1]:5353"),
        ];
        for (given, expected) in cases {
            let parsed = args(&["--dns", given]).unwrap().dns;
            assert_eq!(parsed, Some(expected.parse().unwrap()), "{given}");
        }
        for bad in [
            "resolver.example",
            "10.77.0.1:0",
            "0.0.0.0",
            "224.0.0.1",
            "fd00::1:53x",
        ] {
            assert!(args(&["--dns", bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn ipv6_absent_by_default() {
        let parsed = args(&[]).unwrap();
        assert_eq!(parsed.address6, None);
        assert_eq!(parsed.gateway6, None);
    }

    #[test]
    fn ipv6_address_checked() {
        for bad in ["fd00::2", "fd00::2/129", "10.77.0.2/24", "nonsense/64"] {
            assert!(args(&["--address6", bad]).is_err(), "{bad}");
        }
        for reserved in [
            "::1/128",
            "fe80::2/64",
            "ff02::1/64",
            "::/64",
            "::ffff:10.0.0.1/96",
        ] {
            let parsed = args(&["--address6", reserved]).unwrap();
            assert!(
                matches!(parsed.validate(), Err(ConfigError::Address6(_))),
                "{reserved}"
            );
        }
        let parsed = args(&["--address6", "fd00::2/64"]).unwrap();
        assert_eq!(parsed.validate(), Ok(()));
    }

    #[test]
    fn peer_address6_needs_netns_address6_and_prefix() {
        assert!(args(&["--netns", "x", "--peer-address6", "fd00::1/64"]).is_err());
        assert!(args(&["--address6", "fd00::2/64", "--peer-address6", "fd00::1/64"]).is_err());
        let both = [
            "--netns",
            "x",
            "--address6",
            "fd00::2/64",
            "--peer-address6",
        ];
        let outside = args(&[&both[..], &["fd01::1/64"]].concat()).unwrap();
        assert!(matches!(
            outside.validate(),
            Err(ConfigError::PeerAddress6 { .. })
        ));
        let same = args(&[&both[..], &["fd00::2/64"]].concat()).unwrap();
        assert!(same.validate().is_err());
        let good = args(&[&both[..], &["fd00::1/64"]].concat()).unwrap();
        assert_eq!(good.validate(), Ok(()));
        assert!(
            args(&["--gateway6", "fd00::1"]).is_err(),
            "needs --address6"
        );
    }

    #[test]
    fn loopback_defaults_to_stack() {
        assert_eq!(args(&[]).unwrap().loopback, Loopback::Stack);
        let parsed = args(&["--loopback", "kernel"]).unwrap();
        assert_eq!(parsed.loopback, Loopback::Kernel);
        assert!(args(&["--loopback", "host"]).is_err());
    }

    #[test]
    fn tap_name_too_long() {
        let parsed = args(&["--tap", "sixteen-chars-xx"]).unwrap();
        assert!(matches!(parsed.validate(), Err(ConfigError::TapName(_))));
    }
}
