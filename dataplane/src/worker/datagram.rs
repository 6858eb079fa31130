//! UDP sockets and the pump that moves their datagrams between smoltcp and the socketpairs.
//!
//! A program's UDP socket is the service end of a SOCK_SEQPACKET socketpair whose messages
//! each start with a [`DatagramHeader`] (see `netcon_control::datagram`). Every socket bound to
//! one local port lives on the worker that [`crate::steer::udp_owner`] names for that port, so
//! the frames of a port always reach the worker that has its sockets. The worker keeps one
//! smoltcp UDP socket per port and picks the receiving program socket itself, as Linux does.
//! The connected socket whose peer sent the datagram comes first, then an unconnected one
//! bound to the datagram's destination address, then one bound to the wildcard address.
//! (smoltcp alone would hand every datagram of a port to the first socket bound to it, and it
//! filters by no peer.)
//!
//! Like a kernel socket whose receive buffer is full, a program that does not read loses
//! datagrams: those that find its socketpair full are dropped and counted. A program that sends
//! faster than the link takes is held back by its socketpair filling up.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use netcon_control::Reply;
use netcon_control::datagram::{DatagramHeader, HEADER_LEN};
use slab::Slab;
use smoltcp::iface::SocketHandle;
use smoltcp::phy::PacketMeta;
use smoltcp::socket::udp;
use smoltcp::wire::{IpAddress, IpEndpoint, IpListenEndpoint};

use super::{Completion, DatagramJob, DatagramPeerJob, ReplyTo, UDP_TOKEN, Worker};
use crate::icmp_error::UdpError;
use crate::mapped;
use crate::registry::Inode;
use crate::stats::{self, ConnStats};
use crate::sys::datagram::{recv_message, send_message};
use crate::sys::socket::epoll_add;

/// Datagrams moved from one program socket into the stack per pump: bounded so that one busy
/// socket cannot hold the worker, and as many as the transmit buffers one poll can fill.
const DATAGRAM_BATCH: usize = 256;

/// Datagrams each smoltcp UDP socket buffers per direction. The receive side must hold all that
/// one poll can deliver before the pump empties it: up to 64 frames read from the TAP, plus
/// those handed over by other workers and those turned around inside the stack.
const BUFFER_PACKETS: usize = 1024;

/// Payload bytes each smoltcp UDP socket buffers per direction: 16 datagrams of the largest
/// size, or the packets above at 1 KiB each. Pages are touched only as they are used.
const BUFFER_BYTES: usize = 1 << 20;

/// How long the datagrams a closed socket left in the stack may take to leave before they
/// are dropped (and counted as such).
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Largest message on a datagram socketpair: the header and the largest UDP payload.
const MESSAGE_MAX: usize = HEADER_LEN + 65535;

/// A program's UDP socket owned by this worker.
pub struct DatagramSocket {
    inode: Inode,
    fd: OwnedFd,
    /// The local address as the stack uses it; an unspecified IP stands for every address of
    /// the families the socket receives.
    local: SocketAddr,
    peer: Option<SocketAddr>,
    /// AF_INET or AF_INET6: the family the program names addresses in.
    domain: i32,
    receives_ipv4: bool,
    receives_ipv6: bool,
    /// The socketpair had messages or EOF at the last event and has not hit EAGAIN since.
    readable: bool,
    /// The socketpair had room at the last event and has not hit EAGAIN since.
    writable: bool,
    /// The program shut down its sending side: nothing more will come.
    app_eof: bool,
    /// Every copy of the program's end is closed.
    app_gone: bool,
    /// A datagram read from the program that smoltcp had no room for yet: its destination and
    /// payload.
    unsent: Option<(IpEndpoint, Vec<u8>)>,
    stats: Arc<ConnStats>,
}

impl DatagramSocket {
    /// Records what epoll reported for the socketpair.
    pub fn note_events(&mut self, flags: u32) {
        let hangup = (libc::EPOLLHUP | libc::EPOLLERR) as u32;
        if flags & (libc::EPOLLIN | libc::EPOLLRDHUP) as u32 != 0 || flags & hangup != 0 {
            self.readable = true;
        }
        if flags & libc::EPOLLOUT as u32 != 0 {
            self.writable = true;
        }
        if flags & libc::EPOLLHUP as u32 != 0 {
            self.app_gone = true;
        }
    }

    /// Scores how well this socket matches a datagram from `source` to `destination`: `None`
    /// when it must not receive it, higher for a better match (connected to the source, then
    /// bound to the destination address, then to the wildcard).
    fn match_score(&self, source: SocketAddr, destination: IpAddr) -> Option<u8> {
        let family_ok = match source {
            SocketAddr::V4(_) => self.receives_ipv4,
            SocketAddr::V6(_) => self.receives_ipv6,
        };
        let local_ip = self.local.ip();
        if !family_ok || !(local_ip.is_unspecified() || local_ip == destination) {
            return None;
        }
        let specific = u8::from(!local_ip.is_unspecified());
        match self.peer {
            Some(peer) if peer == source => Some(4 + specific),
            Some(_) => None,
            None => Some(1 + specific),
        }
    }

    /// Returns the source address of this socket's datagrams, `None` to let the stack choose
    /// one of its addresses for each destination.
    fn source_ip(&self) -> Option<IpAddress> {
        let ip = self.local.ip();
        (!ip.is_unspecified()).then(|| IpAddress::from(ip))
    }
}

/// The sockets of one local port and the smoltcp socket that receives for all of them.
struct PortBinding {
    handle: SocketHandle,
    members: Vec<usize>,
}

/// Every UDP socket of a worker.
pub struct DatagramTable {
    pub sockets: Slab<DatagramSocket>,
    by_inode: HashMap<Inode, usize>,
    ports: HashMap<u16, PortBinding>,
    /// ICMP errors read since the last pump, reported to the sockets they concern.
    pub errors: Vec<UdpError>,
    /// Ports whose last program socket closed while their smoltcp socket still had datagrams
    /// to send, with the time by which it must have sent them.
    draining: Vec<(u16, std::time::Instant)>,
    /// Slab keys of one pump round, kept to reuse their allocation.
    keys: Vec<usize>,
    /// The buffer one message from a program is read into.
    message: Box<[u8]>,
}

impl DatagramTable {
    /// Stores the UDP error an ingress frame carries, if any, for the next pump to report.
    pub fn note_error(&mut self, frame: &[u8], l2_len: usize) {
        if self.ports.is_empty() || !crate::icmp_error::may_be_udp_error(frame, l2_len) {
            return;
        }
        if let Some(error) = crate::icmp_error::parse_udp_error(frame, l2_len) {
            self.errors.push(error);
        }
    }

    pub fn new() -> DatagramTable {
        DatagramTable {
            sockets: Slab::new(),
            by_inode: HashMap::new(),
            ports: HashMap::new(),
            errors: Vec::new(),
            draining: Vec::new(),
            keys: Vec::new(),
            message: vec![0u8; MESSAGE_MAX].into_boxed_slice(),
        }
    }
}

/// The outcome of one pass over a socket's outgoing messages.
enum Outgoing {
    Moved(bool),
    /// The program's end is gone or broken: close the socket.
    Gone,
}

impl Worker {
    /// Takes a bound UDP socket into the pump, with the peer it is connected to if any.
    pub(super) fn open_datagram(&mut self, job: DatagramJob) {
        let port = job.local.port();
        let handle = match self.datagram_port(port) {
            Ok(handle) => handle,
            Err(e) => {
                log::warn!("worker {}: cannot bind UDP port {port}: {e}", self.id.0);
                return self.reply_datagram(job.reply, Reply::error(libc::EADDRNOTAVAIL));
            }
        };
        job.stats.worker.store(self.id.0 as u64, Relaxed);
        let socket = DatagramSocket {
            inode: job.inode,
            fd: job.fd,
            local: job.local,
            peer: job.peer,
            domain: job.domain,
            receives_ipv4: job.receives_ipv4,
            receives_ipv6: job.receives_ipv6,
            readable: true,
            writable: true,
            app_eof: false,
            app_gone: false,
            unsent: None,
            stats: job.stats,
        };
        let fd = socket.fd.as_raw_fd();
        let key = self.datagrams.sockets.insert(socket);
        self.datagrams.by_inode.insert(job.inode, key);
        let binding = self.datagrams.ports.get_mut(&port).expect("made above");
        debug_assert_eq!(binding.handle, handle);
        binding.members.push(key);

        let events = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
        if let Err(e) = epoll_add(self.epoll.as_raw_fd(), fd, events, UDP_TOKEN + key as u64) {
            log::warn!(
                "worker {}: cannot watch UDP socket {}: {e}",
                self.id.0,
                job.inode.0
            );
        }
        self.reply_datagram(job.reply, Reply::ok(0));
    }

    /// Returns the smoltcp socket that receives for `port`, making it on first use.
    fn datagram_port(&mut self, port: u16) -> Result<SocketHandle, udp::BindError> {
        if let Some(binding) = self.datagrams.ports.get(&port) {
            return Ok(binding.handle);
        }
        let buffer = || {
            udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; BUFFER_PACKETS],
                vec![0u8; BUFFER_BYTES],
            )
        };
        let mut socket = udp::Socket::new(buffer(), buffer());
        socket.bind(IpListenEndpoint { addr: None, port })?;
        let handle = self.sockets.add(socket);
        let members = Vec::new();
        self.datagrams
            .ports
            .insert(port, PortBinding { handle, members });
        Ok(handle)
    }

    /// Connects a UDP socket to a peer or dissolves that (`peer` `None`), then replies, so the
    /// program's next send without an address reaches the new peer.
    pub(super) fn set_datagram_peer(&mut self, job: DatagramPeerJob) {
        let Some(&key) = self.datagrams.by_inode.get(&job.inode) else {
            return self.reply_datagram(Some(job.reply), Reply::error(libc::EBADF));
        };
        let socket = &mut self.datagrams.sockets[key];
        socket.peer = job.peer;
        socket.local = job.local;
        self.reply_datagram(Some(job.reply), Reply::ok(0));
    }

    /// Sizes the queue towards the program of a UDP socket (its SO_RCVBUF).
    pub(super) fn size_datagram(&mut self, inode: Inode, bytes: i32) {
        let Some(&key) = self.datagrams.by_inode.get(&inode) else {
            return;
        };
        let fd = self.datagrams.sockets[key].fd.as_raw_fd();
        if let Err(e) = crate::sys::datagram::force_send_buffer(fd, bytes) {
            log::debug!(
                "worker {}: cannot size UDP socket {}: {e}",
                self.id.0,
                inode.0
            );
        }
    }

    fn reply_datagram(&self, to: Option<ReplyTo>, reply: Reply) {
        if let Some(to) = to {
            self.completions.send(Completion { to, reply });
        }
    }

    /// Moves datagrams both ways, reports ICMP errors and closes sockets whose program is
    /// gone; returns whether anything moved.
    pub(super) fn pump_datagrams(&mut self) -> bool {
        if !self.datagrams.draining.is_empty() {
            self.drop_drained_ports();
        }
        if self.datagrams.sockets.is_empty() {
            self.datagrams.errors.clear();
            return false;
        }
        let mut moved = self.deliver_received();
        moved |= self.report_errors();

        let mut keys = std::mem::take(&mut self.datagrams.keys);
        keys.clear();
        keys.extend(self.datagrams.sockets.iter().map(|(key, _)| key));
        for &key in &keys {
            match self.forward_outgoing(key) {
                Outgoing::Moved(progress) => moved |= progress,
                Outgoing::Gone => {
                    self.close_datagram(key);
                    moved = true;
                }
            }
        }
        self.datagrams.keys = keys;
        moved
    }

    /// Hands every datagram smoltcp received to the program socket it is for.
    fn deliver_received(&mut self) -> bool {
        let mut moved = false;
        for binding in self.datagrams.ports.values() {
            let socket = self.sockets.get_mut::<udp::Socket>(binding.handle);
            if !socket.can_recv() {
                continue;
            }
            // A buffer that filled during the poll may have made the stack drop datagrams.
            let nearly_full = socket.recv_queue() + MESSAGE_MAX > socket.payload_recv_capacity();
            let mut count = 0;
            while let Ok((payload, meta)) = socket.recv() {
                moved = true;
                count += 1;
                let source = SocketAddr::from(meta.endpoint);
                let destination = meta.local_address.map(IpAddr::from);
                let receiver = destination.and_then(|destination| {
                    pick_receiver(
                        &self.datagrams.sockets,
                        &binding.members,
                        source,
                        destination,
                    )
                });
                let Some(key) = receiver else {
                    stats::add(&self.stats.udp_rx_unmatched, 1);
                    continue;
                };
                deliver(
                    &mut self.datagrams.sockets[key],
                    source,
                    payload,
                    &self.stats,
                );
            }
            if nearly_full || count >= BUFFER_PACKETS {
                stats::add(&self.stats.udp_rx_overflows, 1);
            }
        }
        moved
    }

    /// Reports each hard ICMP error to the connected socket it concerns, as the error its
    /// next call returns.
    fn report_errors(&mut self) -> bool {
        let mut moved = false;
        for error in std::mem::take(&mut self.datagrams.errors) {
            let Some(binding) = self.datagrams.ports.get(&error.local.port()) else {
                continue;
            };
            let concerned = binding.members.iter().copied().find(|&key| {
                let socket = &self.datagrams.sockets[key];
                socket.peer == Some(error.remote)
                    && socket.match_score(error.remote, error.local.ip()).is_some()
            });
            let Some(key) = concerned.filter(|_| error.hard) else {
                continue;
            };
            let socket = &mut self.datagrams.sockets[key];
            let header = DatagramHeader::Error(error.errno).encode();
            let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
            if send_message(socket.fd.as_raw_fd(), &[&header], flags).is_ok() {
                stats::add(&self.stats.udp_errors_reported, 1);
                moved = true;
            }
        }
        moved
    }

    /// Moves what the program sent on one socket into smoltcp.
    fn forward_outgoing(&mut self, key: usize) -> Outgoing {
        let socket = &mut self.datagrams.sockets[key];
        // A program that closed its socket leaves what it sent queued in the socketpair, which
        // still goes out, as from a closed kernel socket.
        if socket.app_gone && socket.unsent.is_none() && (socket.app_eof || !socket.readable) {
            return Outgoing::Gone;
        }
        let port = socket.local.port();
        let handle = self.datagrams.ports[&port].handle;
        let udp = self.sockets.get_mut::<udp::Socket>(handle);
        let message = &mut self.datagrams.message;
        let mut moved = false;

        if let Some((destination, payload)) = socket.unsent.take() {
            match send_datagram(udp, socket, destination, &payload) {
                Sent::Yes => moved = true,
                Sent::Dropped => stats::add(&self.stats.udp_tx_dropped, 1),
                Sent::NoRoom => {
                    socket.unsent = Some((destination, payload));
                    return Outgoing::Moved(false);
                }
            }
        }

        for _ in 0..DATAGRAM_BATCH {
            if !socket.readable || socket.app_eof {
                break;
            }
            let (len, truncated) =
                match recv_message(socket.fd.as_raw_fd(), message, libc::MSG_DONTWAIT) {
                    Ok(received) => received,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        socket.readable = false;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => return Outgoing::Gone,
                };
            if len == 0 {
                // Every message carries a header, so an empty read is the end of the stream.
                socket.app_eof = true;
                break;
            }
            moved = true;
            let header = DatagramHeader::decode(&message[..len]);
            let destination = match header {
                Some(DatagramHeader::Data(to)) if !truncated => {
                    to.map(mapped::unmap).or(socket.peer)
                }
                _ => None,
            };
            let Some(destination) = destination.filter(|d| family_allowed(socket, d)) else {
                stats::add(&self.stats.udp_tx_dropped, 1);
                continue;
            };
            let endpoint = IpEndpoint::from(destination);
            let payload = &message[HEADER_LEN..len];
            match send_datagram(udp, socket, endpoint, payload) {
                Sent::Yes => {}
                Sent::Dropped => stats::add(&self.stats.udp_tx_dropped, 1),
                Sent::NoRoom => {
                    socket.unsent = Some((endpoint, payload.to_vec()));
                    break;
                }
            }
        }
        Outgoing::Moved(moved)
    }

    /// Forgets a UDP socket whose program end is gone, and its port's smoltcp socket when it
    /// was the last one there.
    fn close_datagram(&mut self, key: usize) {
        let socket = self.datagrams.sockets.remove(key);
        self.datagrams.by_inode.remove(&socket.inode);
        let port = socket.local.port();
        if let Some(binding) = self.datagrams.ports.get_mut(&port) {
            binding.members.retain(|&member| member != key);
            if binding.members.is_empty() {
                // As a closed kernel socket's datagrams still leave, the port's smoltcp socket
                // stays until it has sent what it holds (or a socket binds the port again).
                let deadline = std::time::Instant::now() + DRAIN_TIMEOUT;
                self.datagrams.draining.push((port, deadline));
                self.drop_drained_ports();
            }
        }
        self.registry.lock().remove(socket.inode);
    }

    /// Removes the smoltcp sockets of ports without program sockets once they have sent what
    /// they held, or once their time to do so ran out.
    fn drop_drained_ports(&mut self) {
        let now = std::time::Instant::now();
        let mut draining = std::mem::take(&mut self.datagrams.draining);
        draining.retain(|&(port, deadline)| {
            let Some(binding) = self.datagrams.ports.get(&port) else {
                return false;
            };
            if !binding.members.is_empty() {
                return false;
            }
            let handle = binding.handle;
            let queued = self.sockets.get::<udp::Socket>(handle).send_queue();
            if queued > 0 && now < deadline {
                return true;
            }
            if queued > 0 {
                stats::add(&self.stats.udp_tx_dropped, 1);
            }
            self.datagrams.ports.remove(&port);
            self.sockets.remove(handle);
            false
        });
        self.datagrams.draining = draining;
    }
}

/// Picks the socket among `members` that receives a datagram from `source` to `destination`.
/// Among equally good matches (sockets sharing the port with SO_REUSEADDR or SO_REUSEPORT) the
/// source address decides, so one peer's datagrams keep reaching the same socket.
fn pick_receiver(
    sockets: &Slab<DatagramSocket>,
    members: &[usize],
    source: SocketAddr,
    destination: IpAddr,
) -> Option<usize> {
    let scored = || {
        members
            .iter()
            .filter_map(|&key| Some((key, sockets[key].match_score(source, destination)?)))
    };
    let best = scored().map(|(_, score)| score).max()?;
    let ties: Vec<usize> = scored()
        .filter(|&(_, score)| score == best)
        .map(|(key, _)| key)
        .collect();
    if ties.len() == 1 {
        return Some(ties[0]);
    }
    let hash = crate::steer::owner(source.ip(), source.port(), 0, ties.len());
    Some(ties[hash.0])
}

/// Writes one received datagram into a program socket's socketpair, or drops and counts it
/// when the program's queue is full.
fn deliver(
    socket: &mut DatagramSocket,
    source: SocketAddr,
    payload: &[u8],
    worker: &crate::stats::WorkerStats,
) {
    if !socket.writable {
        stats::add(&worker.udp_rx_dropped, 1);
        return;
    }
    let header = DatagramHeader::Data(Some(mapped::for_domain(source, socket.domain))).encode();
    let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
    match send_message(socket.fd.as_raw_fd(), &[&header, payload], flags) {
        Ok(_) => {
            stats::add(&worker.udp_datagrams_in, 1);
            socket
                .stats
                .bytes_in
                .fetch_add(payload.len() as u64, Relaxed);
        }
        Err(e) => {
            if e.kind() == io::ErrorKind::WouldBlock {
                socket.writable = false;
            } else {
                socket.app_gone = true;
            }
            stats::add(&worker.udp_rx_dropped, 1);
        }
    }
}

/// The outcome of handing one datagram to smoltcp.
enum Sent {
    Yes,
    /// smoltcp cannot send it at all (an unaddressable destination).
    Dropped,
    /// The transmit buffer is full; try again after the next poll.
    NoRoom,
}

fn send_datagram(
    udp: &mut udp::Socket,
    socket: &mut DatagramSocket,
    destination: IpEndpoint,
    payload: &[u8],
) -> Sent {
    let meta = udp::UdpMetadata {
        endpoint: destination,
        local_address: socket.source_ip(),
        meta: PacketMeta::default(),
    };
    match udp.send_slice(payload, meta) {
        Ok(()) => {
            socket
                .stats
                .bytes_out
                .fetch_add(payload.len() as u64, Relaxed);
            Sent::Yes
        }
        Err(udp::SendError::BufferFull) => Sent::NoRoom,
        Err(udp::SendError::Unaddressable) => Sent::Dropped,
    }
}

/// Returns whether the socket may send to `destination`'s family.
fn family_allowed(socket: &DatagramSocket, destination: &SocketAddr) -> bool {
    match destination {
        SocketAddr::V4(_) => socket.receives_ipv4,
        SocketAddr::V6(_) => socket.receives_ipv6,
    }
}
