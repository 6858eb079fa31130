//! Listening sockets. A listener keeps several smoltcp sockets in LISTEN on its port (smoltcp
//! turns the listening socket itself into the connection on a SYN), and delivers each
//! established connection to the program as one message on a SOCK_SEQPACKET socketpair: the
//! program's stream end as SCM_RIGHTS, plus the local and remote addresses.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use netcon_control::wire::AcceptMessage;
use netcon_control::{WireAddr, fdpass};
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp::{self, State};
use smoltcp::wire::IpListenEndpoint;

use super::conn::Conn;
use super::stack::socket_addr;
use super::{LISTENER_TOKEN, ListenJob, Worker};
use crate::limits;
use crate::mapped;
use crate::options::ConnectionOptions;
use crate::registry::{Inode, LimitReached, SocketEntry, SocketState};
use crate::stats;
use crate::sys::socket::{epoll_add, inode, set_nonblocking, socketpair};
use crate::tos::{Flow, ListenerMarks};

/// Stands in for an accepted connection's remote endpoint when smoltcp reports none (it
/// always has one once established).
const UNKNOWN: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::UNSPECIFIED,
    0,
));

/// Returns the TOS byte and traffic class a listener with `options` puts on its port's packets.
fn marks(options: &ConnectionOptions) -> ListenerMarks {
    ListenerMarks {
        tos: options.tos,
        tclass: options.tclass,
    }
}

/// Fewest and most smoltcp sockets kept in LISTEN per port and address (the program's
/// backlog, within these bounds): the number of handshakes that can start between two
/// wake-ups. smoltcp
/// answers a SYN beyond them with a reset, where Linux would drop it and let the client
/// retry, so the floor is well above the small backlogs programs pass (5 for Python).
// TODO: a burst of more SYNs than this between two wake-ups is still refused — dropping
// SYNs for a port whose LISTEN sockets are all taken would match Linux.
const MIN_LISTENING: usize = 128;
const MAX_LISTENING: usize = 512;

/// A port this worker listens on for one program socket.
pub struct Listener {
    inode: Inode,
    fd: OwnedFd,
    /// The listening address as the program named it.
    local: SocketAddr,
    /// AF_INET or AF_INET6: accepted connections report their addresses for it.
    domain: i32,
    /// Sockets in LISTEN, each with the stack address it listens on (`None`: every one).
    listening: Vec<(SocketHandle, Option<IpAddr>)>,
    /// Sockets past LISTEN whose handshake has not finished.
    handshaking: Vec<SocketHandle>,
    /// Established connections the program has not had room to receive yet.
    ready: VecDeque<SocketHandle>,
    /// The options accepted connections inherit.
    options: ConnectionOptions,
    /// Set by EPOLLOUT: the seqpacket queue has room again.
    writable: bool,
    /// Set by EPOLLHUP: every copy of the program's listening fd is closed.
    closed: bool,
}

impl Listener {
    pub fn note_events(&mut self, flags: u32) {
        if flags & libc::EPOLLOUT as u32 != 0 {
            self.writable = true;
        }
        if flags & (libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0 {
            self.closed = true;
        }
    }
}

impl Worker {
    pub(super) fn start_listen(&mut self, job: ListenJob) {
        let count = job.backlog.clamp(MIN_LISTENING, MAX_LISTENING);
        let mut listener = Listener {
            inode: job.inode,
            fd: job.fd,
            local: job.local,
            domain: job.domain,
            listening: Vec::with_capacity(count * job.addresses.len()),
            handshaking: Vec::new(),
            ready: VecDeque::new(),
            options: job.options,
            writable: true,
            closed: false,
        };
        self.tos.set_listener(job.local.port(), marks(&job.options));
        for &addr in &job.addresses {
            for _ in 0..count {
                match self.listening_socket(addr, listener.local.port(), &listener.options) {
                    Some(handle) => listener.listening.push((handle, addr)),
                    None => break,
                }
            }
        }
        let fd = listener.fd.as_raw_fd();
        let key = self.listeners.insert(listener);
        let events = (libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
        if let Err(e) = epoll_add(
            self.epoll.as_raw_fd(),
            fd,
            events,
            LISTENER_TOKEN + key as u64,
        ) {
            log::warn!(
                "worker {}: cannot watch listener {}: {e}",
                self.id.0,
                job.inode.0
            );
        }
    }

    /// Adds a smoltcp socket in LISTEN on `addr` (every address for `None`) and `port`, whose
    /// SYN-ACKs carry the listener's TTL.
    fn listening_socket(
        &mut self,
        addr: Option<IpAddr>,
        port: u16,
        options: &ConnectionOptions,
    ) -> Option<SocketHandle> {
        let mut socket = self.stack.tcp_socket();
        // NOTE: a socket listening on every address sends its IPv6 SYN-ACKs with IP_TTL too;
        // the connection itself drops it once it is accepted.
        let ipv4 = addr.is_none_or(|a| a.is_ipv4());
        super::conn::apply_to_socket(&mut socket, options, ipv4);
        let endpoint = IpListenEndpoint {
            addr: addr.map(Into::into),
            port,
        };
        if let Err(e) = socket.listen(endpoint) {
            log::warn!("worker {}: cannot listen on {endpoint}: {e}", self.id.0);
            return None;
        }
        Some(self.sockets.add(socket))
    }

    /// Moves sockets through LISTEN → handshake → delivered; returns whether anything moved.
    pub(super) fn pump_listeners(&mut self) -> bool {
        let mut keys = std::mem::take(&mut self.listener_keys);
        keys.clear();
        keys.extend(self.listeners.iter().map(|(key, _)| key));
        let mut moved = false;
        for &key in &keys {
            if self.listeners[key].closed {
                self.close_listener(key);
                moved = true;
                continue;
            }
            moved |= self.refill_listening(key);
            moved |= self.promote_handshakes(key);
            moved |= self.deliver_ready(key);
        }
        self.listener_keys = keys;
        moved
    }

    /// Replaces every socket that left LISTEN with a fresh one.
    fn refill_listening(&mut self, key: usize) -> bool {
        let mut moved = false;
        let mut index = 0;
        while index < self.listeners[key].listening.len() {
            let (handle, addr) = self.listeners[key].listening[index];
            if self.sockets.get::<tcp::Socket>(handle).state() == State::Listen {
                index += 1;
                continue;
            }
            let (port, options) = (
                self.listeners[key].local.port(),
                self.listeners[key].options,
            );
            let listener = &mut self.listeners[key];
            listener.listening.swap_remove(index);
            listener.handshaking.push(handle);
            if let Some(fresh) = self.listening_socket(addr, port, &options) {
                self.listeners[key].listening.push((fresh, addr));
            }
            moved = true;
        }
        moved
    }

    fn promote_handshakes(&mut self, key: usize) -> bool {
        let mut moved = false;
        let mut index = 0;
        while index < self.listeners[key].handshaking.len() {
            let handle = self.listeners[key].handshaking[index];
            let state = self.sockets.get::<tcp::Socket>(handle).state();
            match state {
                State::SynReceived => index += 1,
                State::Closed | State::Listen => {
                    self.listeners[key].handshaking.swap_remove(index);
                    self.sockets.remove(handle);
                    moved = true;
                }
                _ => {
                    self.listeners[key].handshaking.swap_remove(index);
                    let target = self.reuseport_target(key);
                    self.listeners[target].ready.push_back(handle);
                    moved = true;
                }
            }
        }
        moved
    }

    /// The listener that gets the next connection made on `key`'s address: `key` itself, or,
    /// when several SO_REUSEPORT listeners share the address, each of them in turn (smoltcp
    /// hands every SYN to the first listening socket it finds, which would starve the rest).
    /// An IPv4 and an IPv6-only listener on one port take their own families' connections.
    fn reuseport_target(&mut self, key: usize) -> usize {
        let local = self.listeners[key].local;
        let sharing = self
            .listeners
            .iter()
            .filter(|(_, l)| l.local == local && !l.closed);
        let count = sharing.clone().count();
        if count <= 1 {
            return key;
        }
        self.reuseport_turn = self.reuseport_turn.wrapping_add(1);
        let pick = self.reuseport_turn % count;
        sharing.map(|(k, _)| k).nth(pick).unwrap_or(key)
    }

    /// Sends established connections to the program until its queue is full.
    fn deliver_ready(&mut self, key: usize) -> bool {
        let mut moved = false;
        while self.listeners[key].writable {
            let Some(&handle) = self.listeners[key].ready.front() else {
                break;
            };
            match self.deliver(key, handle) {
                Ok(()) => {
                    self.listeners[key].ready.pop_front();
                    moved = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.listeners[key].writable = false
                }
                Err(e) => {
                    self.note_rejected(&e);
                    self.listeners[key].ready.pop_front();
                    self.sockets.get_mut::<tcp::Socket>(handle).abort();
                    self.retire(handle, None);
                    moved = true;
                }
            }
        }
        moved
    }

    /// Counts and reports an accepted connection that is reset instead of delivered. At
    /// `--max-connections`, or when netcon-dp has no fd for the socketpair, the connection
    /// is reset as Linux resets it when a listener's accept queue overflows with
    /// `net.ipv4.tcp_abort_on_overflow` set. Linux's default, dropping the SYN so the client
    /// retries, is out of reach: smoltcp completes the handshake before the worker sees the
    /// connection, and queueing established connections would hold memory without bound.
    fn note_rejected(&self, error: &io::Error) {
        let limit = error
            .get_ref()
            .and_then(|e| e.downcast_ref::<LimitReached>());
        if limit.is_none() && !limits::is_fd_exhaustion(error) {
            log::debug!("worker {}: accept delivery failed: {error}", self.id.0);
            return;
        }
        stats::add(&self.stats.connections_rejected, 1);
        let warnings = &self.registry.warnings;
        match limit {
            Some(reached) => warnings.limit_reached.warn(|| {
                format!(
                    "worker {}: {reached}: resetting connections to listeners until programs \
                     close sockets",
                    self.id.0
                )
            }),
            None => warnings.out_of_fds.warn(|| {
                format!(
                    "worker {}: cannot hand an accepted connection to its program: {error}; \
                     resetting it; raise netcon-dp's fd limit (RLIMIT_NOFILE) or lower \
                     --max-connections",
                    self.id.0
                )
            }),
        }
    }

    /// Makes the socketpair for one accepted connection and sends the program its end.
    /// Fails with a [`LimitReached`] error when `--max-connections` sockets are open.
    fn deliver(&mut self, key: usize, handle: SocketHandle) -> io::Result<()> {
        let full = {
            let table = self.registry.lock();
            table.is_full().then(|| table.max_open())
        };
        if let Some(max) = full {
            return Err(io::Error::other(LimitReached { max }));
        }
        let socket = self.sockets.get_mut::<tcp::Socket>(handle);
        let domain = self.listeners[key].domain;
        let program_view = |addr| mapped::for_domain(addr, domain);
        let stack_remote = socket.remote_endpoint().and_then(socket_addr);
        let local_port = socket.local_endpoint().map_or(0, |l| l.port);
        let local = socket
            .local_endpoint()
            .and_then(socket_addr)
            .map(program_view);
        let remote = stack_remote.map(program_view);
        let options = self.listeners[key].options;
        let ipv4 = stack_remote.is_none_or(|r| r.is_ipv4());
        super::conn::apply_to_socket(socket, &options, ipv4);
        super::conn::apply_keepalive(socket, options.keepalive);

        let (app, service) = socketpair(libc::SOCK_STREAM)?;
        super::pair::prepare_pair(app.as_fd(), service.as_fd())?;
        let app_inode = Inode(inode(app.as_fd())?);

        let mut entry = SocketEntry::fresh();
        entry.state = SocketState::Connected;
        entry.domain = domain;
        entry.local = local;
        entry.remote = remote;
        let stats = entry.stats.clone();
        stats
            .worker
            .store(self.id.0 as u64, std::sync::atomic::Ordering::Relaxed);
        {
            let mut table = self.registry.lock();
            // An accepted socket starts with its listener's options, as on Linux.
            if let Some(listening) = table.sockets.get(&self.listeners[key].inode) {
                entry.options = listening.options.clone();
                entry.options.unhonoured = 0;
            }
            table.admit(app_inode, entry).map_err(io::Error::other)?;
        }

        let message = AcceptMessage {
            local: WireAddr(local),
            remote: WireAddr(remote),
        };
        let listener_fd = self.listeners[key].fd.as_raw_fd();
        let sent = fdpass::send(listener_fd, &message.encode(), Some(app.as_raw_fd()));
        if let Err(e) = sent {
            self.registry.lock().remove(app_inode);
            return Err(e);
        }
        drop(app);
        set_nonblocking(service.as_fd(), true)?;
        let remote = stack_remote.unwrap_or(UNKNOWN);
        let flow = Flow {
            local_port,
            remote: remote.ip(),
            remote_port: remote.port(),
        };
        // The connection's socket leaves the shared set for one of its own.
        let socket = self.sockets.remove(handle);
        let (set, handle) = super::schedule::own_set_of(socket);
        let conn = Conn::accepted(set, handle, service, app_inode, stats, flow, options);
        self.insert_conn(conn);
        Ok(())
    }

    fn close_listener(&mut self, key: usize) {
        let listener = self.listeners.remove(key);
        let handles = listener
            .listening
            .iter()
            .map(|(handle, _)| handle)
            .chain(&listener.handshaking)
            .chain(&listener.ready);
        for &handle in handles {
            // Connections the program never accepted get a reset, as on Linux.
            self.sockets.get_mut::<tcp::Socket>(handle).abort();
            self.retire(handle, None);
        }
        let port = listener.local.port();
        let port_still_listening = self.listeners.iter().any(|(_, l)| l.local.port() == port);
        if !port_still_listening {
            self.tos.set_listener(port, ListenerMarks::default());
        }
        self.registry.lock().remove(listener.inode);
    }

    /// Applies option changes made on a listening socket: to its sockets in LISTEN and to
    /// the connections it accepts from now on. Does nothing when no listener has `inode`.
    pub(super) fn apply_listener_options(&mut self, inode: Inode, options: ConnectionOptions) {
        let Some(key) = self
            .listeners
            .iter()
            .find(|(_, l)| l.inode == inode)
            .map(|(k, _)| k)
        else {
            return;
        };
        let listener = &mut self.listeners[key];
        listener.options = options;
        for &(handle, addr) in &listener.listening {
            let socket = self.sockets.get_mut::<tcp::Socket>(handle);
            let ipv4 = addr.is_none_or(|a| a.is_ipv4());
            super::conn::apply_to_socket(socket, &options, ipv4);
        }
        self.tos
            .set_listener(listener.local.port(), marks(&options));
    }
}
