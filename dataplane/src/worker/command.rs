//! Messages between the control thread and the workers: jobs handed to a worker, and the
//! replies a worker sends back when a blocking `connect` finishes.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;

use netcon_control::Reply;

use crate::connect_gate::HeldEnd;
use crate::options::ConnectionOptions;
use crate::registry::Inode;
use crate::stats::{ConnStats, LatencySet};
use crate::steer::WorkerId;
use std::sync::Arc;

/// Which control client waits for a reply, and which request of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyTo {
    pub client: usize,
    pub serial: u64,
}

/// Connect a socket: the worker opens the TCP connection and, once it is established or has
/// failed, updates the registry and (for a blocking connect) replies.
pub struct ConnectJob {
    pub inode: Inode,
    /// The service end of the socketpair.
    pub fd: OwnedFd,
    /// The addresses as the stack uses them: IPv4 for IPv4-mapped ones.
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// The program's end, kept unwritable by filler until the handshake ends (non-blocking
    /// connects); the worker reads the filler back once it succeeds.
    pub held: Option<HeldEnd>,
    pub options: ConnectionOptions,
    /// Counters `netcon-ctl show` reads.
    pub stats: Arc<ConnStats>,
    /// Set for a blocking connect.
    pub reply: Option<ReplyTo>,
}

/// Listen on a port: connections accepted there are sent as messages on `fd`.
pub struct ListenJob {
    pub inode: Inode,
    /// The service end of the listener's SOCK_SEQPACKET pair.
    pub fd: OwnedFd,
    /// The listening address as the program named it.
    pub local: SocketAddr,
    /// The stack addresses to listen on, `None` for every address.
    pub addresses: Vec<Option<IpAddr>>,
    /// The listening socket's AF_INET or AF_INET6: accepted connections report their
    /// addresses for it.
    pub domain: i32,
    pub backlog: usize,
    /// Accepted connections inherit the listener's options, as on Linux.
    pub options: ConnectionOptions,
}

/// Hand a bound UDP socket to the worker that owns its port.
pub struct DatagramJob {
    pub inode: Inode,
    /// The service end of the socket's SOCK_SEQPACKET pair.
    pub fd: OwnedFd,
    /// The bound address as the stack uses it (IPv4 for an IPv4-mapped one); the IP may be
    /// unspecified.
    pub local: std::net::SocketAddr,
    /// The peer, when the socket was connected before it was bound.
    pub peer: Option<std::net::SocketAddr>,
    /// AF_INET or AF_INET6: the family the program names addresses in.
    pub domain: i32,
    pub receives_ipv4: bool,
    pub receives_ipv6: bool,
    /// Counters `netcon-ctl show` reads.
    pub stats: Arc<ConnStats>,
    /// Set when a request waits for the socket to be in place (a connect).
    pub reply: Option<ReplyTo>,
}

/// Connect a UDP socket the worker owns to `peer`, or dissolve its peer (`None`); the worker
/// replies once datagrams follow the change.
pub struct DatagramPeerJob {
    pub inode: Inode,
    pub peer: Option<std::net::SocketAddr>,
    /// The local address from now on, in stack form: connect fixes an unspecified IP to the
    /// source address towards the peer, and a disconnect may reset it.
    pub local: std::net::SocketAddr,
    pub reply: ReplyTo,
}

/// An option change on a connection a worker already owns.
#[derive(Clone, Copy)]
pub struct OptionJob {
    pub inode: Inode,
    pub options: ConnectionOptions,
}

/// A copy of a worker's latency histograms, in total and per connection.
pub struct Snapshot {
    pub worker: WorkerId,
    pub total: LatencySet,
    pub connections: Vec<(Inode, LatencySet)>,
}

/// Work for one worker.
pub enum Command {
    Connect(ConnectJob),
    Listen(ListenJob),
    SetOptions(OptionJob),
    /// Send a [`Snapshot`] on the channel.
    Snapshot(crossbeam::channel::Sender<Snapshot>),
    OpenDatagram(DatagramJob),
    SetDatagramPeer(DatagramPeerJob),
    /// Size the queue towards the program of a UDP socket to this many bytes (SO_RCVBUF).
    SetDatagramBuffer(Inode, i32),
}

/// A reply a worker produced for a waiting client.
pub struct Completion {
    pub to: ReplyTo,
    pub reply: Reply,
}
