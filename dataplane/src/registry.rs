//! The table of every socket the service has handed out, keyed by the inode of the program's
//! end. The control thread reads it to answer socket calls; workers update it when a
//! connection is established, accepted or closed. It is locked only on those events, never per
//! packet.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};

use crate::limits::Warnings;
use crate::options::SocketOptions;
use crate::stats::ConnStats;
use std::sync::Arc;

/// Inode number of the program's end of a socket; the identity of a netcon socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Inode(pub u64);

/// Lifecycle of a netcon socket as the program sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketState {
    /// Created, not bound.
    Fresh,
    /// Bound to a local address, neither connecting nor listening.
    Bound,
    Listening,
    Connecting,
    Connected,
    /// The connection attempt failed or the connection ended; the program still holds the fd.
    Closed,
}

/// The transport protocol of a socket, which decides its port space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
}

/// What the service keeps about one socket.
#[derive(Clone, Debug)]
pub struct SocketEntry {
    pub state: SocketState,
    pub protocol: Protocol,
    /// AF_INET or AF_INET6, as the program created the socket.
    pub domain: i32,
    /// The addresses as the program sees them: IPv4 peers of an AF_INET6 socket are
    /// IPv4-mapped (see [`crate::mapped`]).
    pub local: Option<SocketAddr>,
    pub remote: Option<SocketAddr>,
    /// The program bound the socket to a specific address (not the wildcard), which a UDP
    /// socket keeps when its connection is dissolved.
    pub address_bound: bool,
    /// Which addresses of its local port the socket holds while it owns the port.
    pub port_scope: PortScope,
    pub options: SocketOptions,
    /// The errno `getsockopt(SO_ERROR)` returns next (then 0), as the kernel does.
    pub pending_error: i32,
    /// The local port was claimed for this socket (bound, listening or connecting), so closing
    /// it gives the port back. Accepted connections share their listener's port.
    pub owns_port: bool,
    /// A non-blocking connect filled the program's end, which stays unwritable until the
    /// handshake succeeds.
    pub filled_for_connect: bool,
    /// Counters the owning worker updates, for `netcon-ctl show`.
    pub stats: Arc<ConnStats>,
    /// Whether a `connect` call has returned success for this connection. Linux returns 0 from
    /// the first `connect` after a non-blocking handshake ended, and EISCONN after that.
    pub connect_reported: bool,
}

impl SocketEntry {
    /// An entry for a socket that was just created.
    pub fn fresh() -> SocketEntry {
        SocketEntry {
            state: SocketState::Fresh,
            protocol: Protocol::Tcp,
            domain: libc::AF_INET,
            local: None,
            remote: None,
            address_bound: false,
            port_scope: PortScope::Both,
            options: SocketOptions::default(),
            pending_error: 0,
            owns_port: false,
            filled_for_connect: false,
            stats: Arc::new(ConnStats::default()),
            connect_reported: false,
        }
    }
}

/// Range Linux uses for ephemeral ports by default (`net.ipv4.ip_local_port_range`).
const EPHEMERAL_PORTS: std::ops::RangeInclusive<u16> = 32768..=60999;

/// Closed entries kept so a program can still read SO_ERROR after a failed connect; the
/// oldest are forgotten first.
const CLOSED_ENTRIES_KEPT: usize = 4096;

/// Which addresses of a local port a socket holds. As on Linux, an IPv4 socket and an IPv6
/// socket with IPV6_V6ONLY may hold the same port, and a dual-stack IPv6 socket holds both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortScope {
    /// The port on IPv4 addresses (AF_INET sockets, and AF_INET6 ones bound to an IPv4-mapped
    /// address).
    Ipv4,
    /// The port on IPv6 addresses only.
    Ipv6,
    /// The port on every address (dual-stack AF_INET6 sockets, and ephemeral ports).
    Both,
}

impl PortScope {
    fn overlaps(self, other: PortScope) -> bool {
        self == PortScope::Both || other == PortScope::Both || self == other
    }
}

/// The local ports of one transport protocol and who holds them.
#[derive(Default)]
pub struct PortSpace {
    holders: BTreeMap<u16, Vec<PortHolder>>,
    /// Picks where the search for a free ephemeral port starts.
    rng: fastrand::Rng,
}

impl PortSpace {
    /// Takes `port` on the addresses of `scope`, shared with other SO_REUSEPORT sockets when
    /// `shared` is set; false when a socket whose scope overlaps holds the port and the two do
    /// not both share it.
    // TODO: Linux also requires the same effective uid for every socket on a shared port; the
    // registry does not record uids, so any allowed client may join a shared port.
    pub fn claim_in(&mut self, port: u16, scope: PortScope, shared: bool) -> bool {
        let holders = self.holders.entry(port).or_default();
        let conflict = holders
            .iter()
            .any(|held| held.scope.overlaps(scope) && !(held.shared && shared));
        if conflict {
            return false;
        }
        holders.push(PortHolder { scope, shared });
        true
    }

    /// Gives back one hold on `port` taken with `scope`.
    pub fn release_in(&mut self, port: u16, scope: PortScope) {
        let Some(holders) = self.holders.get_mut(&port) else {
            return;
        };
        if let Some(index) = holders.iter().position(|held| held.scope == scope) {
            holders.swap_remove(index);
        }
        if holders.is_empty() {
            self.holders.remove(&port);
        }
    }

    /// Takes a free ephemeral port on every address that `accept` agrees to (for example one
    /// whose frames reach a chosen worker), or returns `None` when there is none. With
    /// `shared` other sockets that share ports may join it (see [`PortSpace::claim_in`]).
    ///
    /// The search starts at a random port of the range and goes up from there, wrapping
    /// around, so a port is hard to guess (RFC 6056, algorithm 1) and one search visits each
    /// port at most once.
    pub fn claim_ephemeral_where(
        &mut self,
        shared: bool,
        accept: impl Fn(u16) -> bool,
    ) -> Option<u16> {
        let first = *EPHEMERAL_PORTS.start();
        let span = u32::from(EPHEMERAL_PORTS.end() - first) + 1;
        let offset = self.rng.u32(0..span);
        for step in 0..span {
            let port = first + ((offset + step) % span) as u16;
            let free = !self.holders.contains_key(&port);
            if free && accept(port) && self.claim_in(port, PortScope::Both, shared) {
                return Some(port);
            }
        }
        None
    }
}

/// The tables behind the lock.
pub struct Table {
    /// Every socket, keyed by the inode of the program's end. Entries enter through
    /// [`Table::admit`] and leave through [`Table::remove`] or [`Table::mark_closed`], which
    /// keep [`Table::open_sockets`] right; re-keying an entry in place keeps it too.
    pub sockets: HashMap<Inode, SocketEntry>,
    /// TCP ports taken by bound, listening or connected sockets.
    ports: PortSpace,
    /// UDP ports taken by bound sockets. TCP and UDP ports are separate, as on Linux.
    pub udp_ports: PortSpace,
    closed_order: VecDeque<Inode>,
    /// Entries that are not closed: the sockets netcon-dp holds an end of for programs.
    open: usize,
    /// The maximum number of open entries (`--max-connections`).
    max_open: usize,
}

impl Default for Table {
    fn default() -> Table {
        Table {
            sockets: HashMap::new(),
            ports: PortSpace::default(),
            udp_ports: PortSpace::default(),
            closed_order: VecDeque::new(),
            open: 0,
            max_open: usize::MAX,
        }
    }
}

/// The socket was not entered because `--max-connections` sockets are open already.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitReached {
    /// The limit that was reached.
    pub max: usize,
}

impl std::fmt::Display for LimitReached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "--max-connections {} reached", self.max)
    }
}

impl std::error::Error for LimitReached {}

impl Table {
    /// Enters a new open socket, unless `--max-connections` open sockets exist already.
    pub fn admit(&mut self, inode: Inode, entry: SocketEntry) -> Result<(), LimitReached> {
        if self.open >= self.max_open {
            return Err(LimitReached { max: self.max_open });
        }
        let replaced = self.sockets.insert(inode, entry);
        if !replaced.is_some_and(|old| old.state != SocketState::Closed) {
            self.open += 1;
        }
        Ok(())
    }

    /// Returns whether [`Table::admit`] would reject a socket now.
    pub fn is_full(&self) -> bool {
        self.open >= self.max_open
    }

    /// Returns the number of sockets that are open (entered and not closed).
    pub fn open_sockets(&self) -> usize {
        self.open
    }

    /// Returns the maximum number of sockets [`Table::admit`] lets be open at once.
    pub fn max_open(&self) -> usize {
        self.max_open
    }

    /// Takes TCP `port` for a socket; false when it is already taken.
    pub fn claim_port(&mut self, port: u16) -> bool {
        self.claim_port_in(port, PortScope::Both, false)
    }

    /// Takes TCP `port` for a socket that set SO_REUSEPORT; false when a socket without it has
    /// the port. As on Linux, any number of SO_REUSEPORT sockets may bind the same port.
    pub fn claim_shared_port(&mut self, port: u16) -> bool {
        self.claim_port_in(port, PortScope::Both, true)
    }

    /// Takes TCP `port` on the addresses of `scope` (see [`PortSpace::claim_in`]).
    pub fn claim_port_in(&mut self, port: u16, scope: PortScope, shared: bool) -> bool {
        self.ports.claim_in(port, scope, shared)
    }

    /// Gives a TCP port back (one holder's share of a shared port).
    pub fn release_port(&mut self, port: u16) {
        self.release_port_in(port, PortScope::Both);
    }

    /// Gives back one hold on TCP `port` taken with `scope`.
    pub fn release_port_in(&mut self, port: u16, scope: PortScope) {
        self.ports.release_in(port, scope);
    }

    /// Takes a free ephemeral TCP port, or returns `None` when all are taken (EADDRNOTAVAIL).
    pub fn claim_ephemeral_port(&mut self) -> Option<u16> {
        self.claim_ephemeral_port_where(|_| true)
    }

    /// Takes a free ephemeral TCP port that `accept` agrees to (for example one whose
    /// connection hashes to a chosen worker), or returns `None` when there is none.
    pub fn claim_ephemeral_port_where(&mut self, accept: impl Fn(u16) -> bool) -> Option<u16> {
        self.ports.claim_ephemeral_where(false, accept)
    }

    /// Gives back the port a socket of `protocol` holds.
    fn release_held(&mut self, protocol: Protocol, port: u16, scope: PortScope) {
        match protocol {
            Protocol::Tcp => self.ports.release_in(port, scope),
            Protocol::Udp => self.udp_ports.release_in(port, scope),
        }
    }

    /// Marks a socket closed with `errno` for SO_ERROR, releasing its port. The entry stays
    /// for a while so the program can still ask about it.
    pub fn mark_closed(&mut self, inode: Inode, errno: i32) {
        let Some(entry) = self.sockets.get_mut(&inode) else {
            return;
        };
        let port = entry
            .local
            .filter(|_| entry.owns_port)
            .map(|local| local.port());
        let (scope, protocol) = (entry.port_scope, entry.protocol);
        entry.owns_port = false;
        if entry.state != SocketState::Closed {
            self.open -= 1;
        }
        entry.state = SocketState::Closed;
        if errno != 0 {
            entry.pending_error = errno;
        }
        if let Some(port) = port {
            self.release_held(protocol, port, scope);
        }
        self.closed_order.push_back(inode);
        while self.closed_order.len() > CLOSED_ENTRIES_KEPT {
            let oldest = self.closed_order.pop_front().expect("non-empty");
            if self
                .sockets
                .get(&oldest)
                .is_some_and(|e| e.state == SocketState::Closed)
            {
                self.sockets.remove(&oldest);
            }
        }
    }

    /// Forgets a socket whose program end is gone, releasing its port.
    pub fn remove(&mut self, inode: Inode) {
        let Some(entry) = self.sockets.remove(&inode) else {
            return;
        };
        if entry.state != SocketState::Closed {
            self.open -= 1;
        }
        if entry.owns_port
            && let Some(local) = entry.local
        {
            self.release_held(entry.protocol, local.port(), entry.port_scope);
        }
    }
}

/// One socket's hold on a local port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PortHolder {
    scope: PortScope,
    /// The socket set SO_REUSEPORT.
    shared: bool,
}

/// The shared socket table.
#[derive(Default)]
pub struct Registry {
    table: Mutex<Table>,
    /// Warnings about rejected sockets, shared by the control thread and the workers.
    pub warnings: Warnings,
}

impl Registry {
    /// Returns an empty registry that lets at most `max_open` sockets be open at once.
    pub fn with_limit(max_open: usize) -> Registry {
        let registry = Registry::default();
        registry.lock().max_open = max_open;
        registry
    }

    /// Locks the table. Held only for short lookups and updates.
    pub fn lock(&self) -> MutexGuard<'_, Table> {
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ephemeral_ports_are_unique() {
        let mut table = Table::default();
        let a = table.claim_ephemeral_port().unwrap();
        let b = table.claim_ephemeral_port().unwrap();
        assert_ne!(a, b);
        assert!(EPHEMERAL_PORTS.contains(&a));
        assert!(!table.claim_port(a));
    }

    #[test]
    fn ephemeral_ports_are_not_consecutive() {
        let mut table = Table::default();
        let ports: Vec<u16> = (0..64)
            .map(|_| table.claim_ephemeral_port().unwrap())
            .collect();
        let steps_of_one = ports.windows(2).filter(|w| w[1] == w[0] + 1).count();
        assert!(steps_of_one < 4, "ports follow each other: {ports:?}");
        assert!(ports.iter().all(|port| EPHEMERAL_PORTS.contains(port)));
    }

    #[test]
    fn last_free_ephemeral_port_is_found() {
        let mut space = PortSpace::default();
        let last = 45_000;
        for port in EPHEMERAL_PORTS.filter(|&port| port != last) {
            assert!(space.claim_in(port, PortScope::Both, false));
        }
        assert_eq!(space.claim_ephemeral_where(false, |_| true), Some(last));
        assert_eq!(space.claim_ephemeral_where(false, |_| true), None);
    }

    #[test]
    fn ephemeral_port_follows_the_filter() {
        let mut space = PortSpace::default();
        for _ in 0..1000 {
            let port = space
                .claim_ephemeral_where(false, |port| port % 4 == 1)
                .unwrap();
            assert_eq!(port % 4, 1);
        }
    }

    #[test]
    fn reuseport_sockets_share_a_port() {
        let mut table = Table::default();
        assert!(table.claim_shared_port(8080));
        assert!(table.claim_shared_port(8080));
        assert!(!table.claim_port(8080));
        table.release_port(8080);
        assert!(!table.claim_port(8080), "one holder still has the port");
        table.release_port(8080);
        assert!(table.claim_port(8080));
    }

    #[test]
    fn exclusive_port_rejects_reuseport() {
        let mut table = Table::default();
        assert!(table.claim_port(8080));
        assert!(!table.claim_shared_port(8080));
    }

    #[test]
    fn ipv4_and_ipv6_only_share_a_port() {
        let mut table = Table::default();
        assert!(table.claim_port_in(6379, PortScope::Ipv4, false));
        assert!(table.claim_port_in(6379, PortScope::Ipv6, false));
        assert!(!table.claim_port_in(6379, PortScope::Ipv6, false));
        assert!(!table.claim_port_in(6379, PortScope::Both, false));
        table.release_port_in(6379, PortScope::Ipv4);
        assert!(table.claim_port_in(6379, PortScope::Ipv4, false));
    }

    #[test]
    fn dual_stack_port_excludes_both_families() {
        let mut table = Table::default();
        assert!(table.claim_port_in(80, PortScope::Both, false));
        assert!(!table.claim_port_in(80, PortScope::Ipv4, false));
        assert!(!table.claim_port_in(80, PortScope::Ipv6, false));
        table.release_port_in(80, PortScope::Both);
        assert!(table.claim_port_in(80, PortScope::Ipv6, true));
        assert!(table.claim_port_in(80, PortScope::Ipv6, true));
        assert!(!table.claim_port_in(80, PortScope::Ipv6, false));
    }

    #[test]
    fn udp_ports_are_apart_from_tcp() {
        let mut table = Table::default();
        assert!(table.claim_port(53));
        assert!(table.udp_ports.claim_in(53, PortScope::Ipv4, false));
        assert!(!table.udp_ports.claim_in(53, PortScope::Ipv4, false));

        let inode = Inode(9);
        let mut entry = SocketEntry::fresh();
        entry.protocol = Protocol::Udp;
        entry.local = Some("0.0.0.0:53".parse().unwrap());
        entry.port_scope = PortScope::Ipv4;
        entry.owns_port = true;
        table.admit(inode, entry).unwrap();
        table.remove(inode);
        assert!(table.udp_ports.claim_in(53, PortScope::Ipv4, false));
        assert!(!table.claim_port(53), "the TCP port stays taken");
    }

    #[test]
    fn closing_releases_port_once() {
        let mut table = Table::default();
        let inode = Inode(7);
        let mut entry = SocketEntry::fresh();
        entry.state = SocketState::Connected;
        entry.local = Some("10.77.0.2:40000".parse().unwrap());
        entry.owns_port = true;
        assert!(table.claim_port(40000));
        table.admit(inode, entry).unwrap();
        table.mark_closed(inode, libc::ECONNRESET);
        assert!(table.claim_port(40000));
        assert_eq!(table.sockets[&inode].pending_error, libc::ECONNRESET);
        table.remove(inode);
        assert!(
            !table.claim_port(40000),
            "a closed entry must not release the port again"
        );
    }

    #[test]
    fn limit_counts_open_sockets() {
        let registry = Registry::with_limit(2);
        let mut table = registry.lock();
        table.admit(Inode(1), SocketEntry::fresh()).unwrap();
        table.admit(Inode(2), SocketEntry::fresh()).unwrap();
        assert!(table.is_full());
        assert_eq!(
            table.admit(Inode(3), SocketEntry::fresh()),
            Err(LimitReached { max: 2 })
        );
        assert!(!table.sockets.contains_key(&Inode(3)));

        // A closed entry stays for SO_ERROR but no longer counts, and removing it later
        // does not count it twice.
        table.mark_closed(Inode(1), libc::ECONNREFUSED);
        assert_eq!(table.open_sockets(), 1);
        table.admit(Inode(3), SocketEntry::fresh()).unwrap();
        table.remove(Inode(1));
        assert_eq!(table.open_sockets(), 2);
        table.remove(Inode(2));
        table.remove(Inode(2));
        assert_eq!(table.open_sockets(), 1);
    }
}
