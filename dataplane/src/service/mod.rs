//! The control thread: serves the RPCs of every preloaded process on the control socket,
//! creates socketpairs, and hands connections and listeners to the workers. One thread, one
//! epoll loop; it never waits for a worker, because a blocking `connect` gets its reply from
//! the worker through a completion queue.

mod addressing;
mod admission;
mod clients;
mod datagram;
mod handlers;
mod kernel_loopback;
mod listen_socket;
mod observe;
mod peer;

pub use listen_socket::{ControlSocket, ControlSocketError, clear_stale_socket};

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam::channel::Receiver;
use netcon_control::wire::REQUEST_LEN;
use netcon_control::wire::unpack_previous;
use netcon_control::{Op, Reply, Request, fdpass};

use crate::stats::Latency;
use slab::Slab;

use crate::registry::{Inode, Registry};
use crate::sys::socket::{epoll_add, epoll_delete, epoll_wait, eventfd_drain};
use crate::worker::{Completion, WorkerHandle};
use peer::PeerProcess;

const TOKEN_LISTENER: u64 = 0;
const TOKEN_COMPLETIONS: u64 = 1;
/// Tokens from here up name clients (`CLIENT_BASE + key`).
const CLIENT_BASE: u64 = 1 << 20;
/// Tokens from here up name unconnected sockets (`PENDING_BASE + inode`).
const PENDING_BASE: u64 = 1 << 62;

/// Events handled per loop turn.
const EVENT_BATCH: usize = 128;

/// A connected preloaded process (one per thread of it) or `netcon-ctl`.
struct Client {
    fd: OwnedFd,
    peer: PeerProcess,
    /// Increments per request, so a late reply never reaches a new client in the same slot.
    serial: u64,
}

/// A socket the program holds but has not connected or made listen yet: the service keeps its
/// end and watches it, so closing the program's end frees it.
pub struct PendingSocket {
    pub fd: OwnedFd,
}

/// The facts about the stack's interface that [`Op::Info`] reports besides its routes.
#[derive(Clone, Copy, Debug, Default)]
pub struct LinkFacts {
    /// The MAC address, on an Ethernet link.
    pub mac: Option<[u8; 6]>,
}

/// Everything the control thread owns.
pub struct Service {
    control: ControlSocket,
    epoll: OwnedFd,
    clients: Slab<Client>,
    pending: HashMap<Inode, PendingSocket>,
    registry: Arc<Registry>,
    workers: Vec<WorkerHandle>,
    completions: Receiver<Completion>,
    completion_wake: Arc<OwnedFd>,
    allowed_uids: Vec<u32>,
    local_ip: std::net::Ipv4Addr,
    /// The stack's IPv6 addresses besides ::1.
    ipv6: crate::hairpin::OwnIpv6,
    /// The prefix lengths and MAC that [`Op::Info`] reports with the addresses.
    link: LinkFacts,
    /// The DNS server given to `--dns`, passed on to the preload's resolver.
    dns: Option<std::net::SocketAddr>,
    /// Where binds and connects to loopback addresses go (`--loopback`).
    loopback: crate::config::Loopback,
    /// TCP maximum segment size on the link (MTU less IPv4 and TCP headers).
    mss: u32,
    /// The stack's addresses and routes, which decide whether a destination is reachable.
    routes: netcon_control::route::Routes,
    /// The host's limits on socket buffer sizes, which SO_SNDBUF and SO_RCVBUF follow.
    buffer_limits: crate::option_rules::BufferLimits,
    started: std::time::Instant,
    /// Requests served per kind, indexed like `Op::ALL`.
    rpc_counts: [u64; Op::ALL.len()],
    /// Round trips the shims reported per kind, indexed like `Op::ALL`.
    rpc_latency: Vec<Latency>,
    next_worker: usize,
    /// Sockets refused because `--max-connections` sockets were open.
    sockets_rejected: u64,
    /// An fd held back so that a waiting client can be accepted and closed when netcon-dp
    /// has no other fd left.
    reserve_fd: Option<OwnedFd>,
    /// Set while the control socket goes unwatched after netcon-dp ran out of fds.
    accept_paused_until: Option<std::time::Instant>,
}

impl Service {
    /// Wires the control thread to its socket, the workers and their completion queue.
    pub fn new(
        control: ControlSocket,
        registry: Arc<Registry>,
        workers: Vec<WorkerHandle>,
        completions: (Receiver<Completion>, Arc<OwnedFd>),
        allowed_uids: Vec<u32>,
        local_ip: std::net::Ipv4Addr,
        mtu: u32,
    ) -> io::Result<Service> {
        let epoll = crate::sys::socket::epoll_create()?;
        epoll_add(
            epoll.as_raw_fd(),
            control.fd().as_raw_fd(),
            libc::EPOLLIN as u32,
            TOKEN_LISTENER,
        )?;
        epoll_add(
            epoll.as_raw_fd(),
            completions.1.as_raw_fd(),
            libc::EPOLLIN as u32,
            TOKEN_COMPLETIONS,
        )?;
        Ok(Service {
            control,
            epoll,
            clients: Slab::new(),
            pending: HashMap::new(),
            registry,
            workers,
            completions: completions.0,
            completion_wake: completions.1,
            allowed_uids,
            local_ip,
            ipv6: crate::hairpin::OwnIpv6::default(),
            link: LinkFacts::default(),
            dns: None,
            loopback: crate::config::Loopback::Stack,
            mss: mtu - 40,
            routes: netcon_control::route::Routes {
                ipv4: local_ip,
                prefix4: 32,
                gateway4: false,
                ipv6: None,
                link_local: None,
                gateway6: false,
                mtu,
            },
            buffer_limits: crate::sys::buffer_limits(),
            started: std::time::Instant::now(),
            rpc_counts: [0; Op::ALL.len()],
            rpc_latency: Op::ALL.iter().map(|_| Latency::new(2)).collect(),
            next_worker: 0,
            sockets_rejected: 0,
            reserve_fd: clients::open_reserve_fd(),
            accept_paused_until: None,
        })
    }

    /// Sets the DNS server that [`Op::Info`] reports (none until set).
    pub fn with_dns(mut self, dns: Option<std::net::SocketAddr>) -> Service {
        self.dns = dns;
        self
    }

    /// Sets where binds and connects to loopback addresses go (the stack until set).
    pub fn with_loopback(mut self, loopback: crate::config::Loopback) -> Service {
        self.loopback = loopback;
        self
    }

    /// Sets the stack's routes (until set, only its own IPv4 address and loopback are
    /// reachable).
    pub fn with_routes(mut self, routes: netcon_control::route::Routes) -> Service {
        self.routes = routes;
        self
    }

    /// Sets the stack's IPv6 addresses besides ::1 (none until set).
    pub fn with_ipv6(mut self, ipv6: crate::hairpin::OwnIpv6) -> Service {
        self.ipv6 = ipv6;
        self
    }

    /// Sets the MAC that [`Op::Info`] reports (none until set).
    pub fn with_link(mut self, link: LinkFacts) -> Service {
        self.link = link;
        self
    }

    /// Serves until `stop` is set, then stops the workers.
    pub fn run(mut self, stop: &AtomicBool) -> io::Result<()> {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; EVENT_BATCH];
        while !stop.load(Ordering::Acquire) {
            let count = epoll_wait(self.epoll.as_raw_fd(), &mut events, 200)?;
            self.resume_accepting();
            for event in &events[..count] {
                let (flags, token) = (event.events, event.u64);
                match token {
                    TOKEN_LISTENER => self.accept_clients(),
                    TOKEN_COMPLETIONS => self.deliver_completions(),
                    t if t >= PENDING_BASE => self.drop_pending(Inode(t - PENDING_BASE)),
                    t => self.serve_client((t - CLIENT_BASE) as usize, flags),
                }
            }
        }
        for worker in self.workers.drain(..) {
            worker.stop();
        }
        Ok(())
    }

    fn serve_client(&mut self, key: usize, flags: u32) {
        let Some(client) = self.clients.get(key) else {
            return;
        };
        let mut buf = [0u8; REQUEST_LEN + 1];
        let received = fdpass::recv(client.fd.as_raw_fd(), &mut buf);
        let (len, fd) = match received {
            Ok((0, _)) => return self.drop_client(key),
            Ok(message) => message,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if flags & (libc::EPOLLHUP | libc::EPOLLRDHUP) as u32 != 0 {
                    self.drop_client(key);
                }
                return;
            }
            Err(_) => return self.drop_client(key),
        };
        let request = match Request::decode(&buf[..len]) {
            Ok(request) => request,
            Err(e) => {
                log::warn!(
                    "control socket: malformed request from pid {}: {e}; dropping it",
                    client.peer.pid
                );
                let _ = fdpass::send(
                    client.fd.as_raw_fd(),
                    &Reply::error(libc::EPROTO).encode(),
                    None,
                );
                return self.drop_client(key);
            }
        };
        self.count_request(&request);
        if request.op == Op::NewConnection {
            return self.new_connection(key, fd);
        }
        let client = &mut self.clients[key];
        client.serial += 1;
        let to = crate::worker::ReplyTo {
            client: key,
            serial: client.serial,
        };
        if let Some((reply, fd)) = self.handle(request, fd, to) {
            self.send_reply(key, &reply, fd);
        }
    }

    fn count_request(&mut self, request: &Request) {
        let index = |op: Op| {
            Op::ALL
                .iter()
                .position(|o| *o == op)
                .expect("every kind is in ALL")
        };
        self.rpc_counts[index(request.op)] += 1;
        if let Some((op, nanos)) = unpack_previous(request.previous) {
            self.rpc_latency[index(op)].record(nanos / 1000);
        }
    }

    /// Answers `netcon-ctl show`, `status` or `perf`: a thread writes the JSON document into a
    /// pipe whose read end goes back with the reply.
    fn observe(&self, op: Op) -> Option<(Reply, Option<OwnedFd>)> {
        let (read, write) = match crate::sys::socket::pipe() {
            Ok(ends) => ends,
            Err(e) => return Some((Reply::error(e.raw_os_error().unwrap_or(libc::EMFILE)), None)),
        };
        let observation = observe::Observation {
            registry: self.registry.clone(),
            workers: self
                .workers
                .iter()
                .map(|w| (w.id, w.stats.clone(), w.remote()))
                .collect(),
            started: self.started,
            rpcs: Op::ALL
                .iter()
                .zip(self.rpc_counts)
                .zip(&self.rpc_latency)
                .map(|((op, count), latency)| (*op, count, latency.clone()))
                .collect(),
            clients: self.clients.len(),
            sockets_rejected: self.sockets_rejected,
        };
        let spawned = std::thread::Builder::new()
            .name("netcon-observe".into())
            .spawn(move || observation.serve(op, write));
        match spawned {
            Ok(_) => Some((Reply::ok(0), Some(read))),
            Err(e) => Some((Reply::error(e.raw_os_error().unwrap_or(libc::EAGAIN)), None)),
        }
    }

    fn send_reply(&mut self, key: usize, reply: &Reply, fd: Option<OwnedFd>) {
        let Some(client) = self.clients.get(key) else {
            return;
        };
        let raw = fd.as_ref().map(|fd| fd.as_raw_fd());
        if let Err(e) = fdpass::send(client.fd.as_raw_fd(), &reply.encode(), raw) {
            log::debug!(
                "control socket: reply to pid {} failed: {e}",
                client.peer.pid
            );
            self.drop_client(key);
        }
    }

    fn deliver_completions(&mut self) {
        eventfd_drain(self.completion_wake.as_raw_fd());
        while let Ok(completion) = self.completions.try_recv() {
            let current = self.clients.get(completion.to.client).map(|c| c.serial);
            if current == Some(completion.to.serial) {
                self.send_reply(completion.to.client, &completion.reply, None);
            }
        }
    }

    fn drop_client(&mut self, key: usize) {
        if let Some(client) = self.clients.try_remove(key) {
            let _ = epoll_delete(self.epoll.as_raw_fd(), client.fd.as_raw_fd());
        }
    }

    /// The program closed a socket it never connected: forget it.
    fn drop_pending(&mut self, inode: Inode) {
        if let Some(pending) = self.pending.remove(&inode) {
            let _ = epoll_delete(self.epoll.as_raw_fd(), pending.fd.as_raw_fd());
        }
        self.registry.lock().remove(inode);
    }

    /// Starts watching a socket's service end until it connects or listens.
    fn watch_pending(&mut self, inode: Inode, fd: OwnedFd) -> io::Result<()> {
        let events = (libc::EPOLLRDHUP | libc::EPOLLHUP) as u32;
        epoll_add(
            self.epoll.as_raw_fd(),
            fd.as_raw_fd(),
            events,
            PENDING_BASE + inode.0,
        )?;
        self.pending.insert(inode, PendingSocket { fd });
        Ok(())
    }

    /// Stops watching a pending socket and returns its service end.
    fn take_pending(&mut self, inode: Inode) -> Option<OwnedFd> {
        let pending = self.pending.remove(&inode)?;
        let _ = epoll_delete(self.epoll.as_raw_fd(), pending.fd.as_raw_fd());
        Some(pending.fd)
    }

    /// The worker whose turn it is to own the next outgoing connection (round robin).
    fn next_worker_for_connect(&mut self) -> crate::steer::WorkerId {
        let index = self.next_worker % self.workers.len();
        self.next_worker += 1;
        crate::steer::WorkerId(index)
    }
}
