//! What the control thread does for UDP sockets: create them, bind them (explicitly, or on
//! the first send as the kernel does), connect them and dissolve the connection, and answer
//! their names and options.
//!
//! A UDP socket stays with the control thread until it has a local port. From then on it
//! belongs to the worker that [`steer::udp_owner`] names for the port, which receives every
//! datagram of that port. Ephemeral ports are picked so that new sockets spread over the
//! workers in turn. `connect` and `connect(AF_UNSPEC)` get their reply from that worker once
//! it follows the change, so a send right after them goes where the program now expects.

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use netcon_control::datagram::SendFlags;
use netcon_control::{Op, Reply, Request, WireAddr};

use super::Service;
use super::addressing::{address_scope, ipv6_option_error, is_v6only, unspecified};
use super::handlers::Handled;
use crate::mapped;
use crate::option_rules;
use crate::registry::{Inode, PortScope, Protocol, SocketEntry, SocketState};
use crate::steer::{self, WorkerId};
use crate::sys::datagram::force_send_buffer;
use crate::sys::socket::{inode, set_nonblocking, socketpair};
use crate::worker::{Command, DatagramJob, DatagramPeerJob, ReplyTo};

/// Linux's default SO_SNDBUF and SO_RCVBUF of a UDP socket (`net.core.wmem_default` and
/// `net.core.rmem_default`).
const DEFAULT_BUFFER: i32 = 212_992;

/// Send buffer of the program's end of a UDP socketpair: what the program can queue before
/// its sends block, while the worker has not read them yet. A kernel UDP socket blocks only
/// while its datagrams wait for the device, which for a local link is never long. This holds
/// about 1,400 datagrams of 1.4 KB (4 ms at 4 Gbit/s), so a worker that is descheduled for a
/// few milliseconds does not block the sender. `getsockopt` still reports Linux's default.
const APP_SEND_BUFFER: i32 = 4 << 20;

/// The options that decide a UDP socket's [`SendFlags`].
const SEND_FLAG_OPTIONS: [(i32, i32); 4] = [
    (libc::SOL_SOCKET, libc::SO_BROADCAST),
    (libc::IPPROTO_IP, libc::IP_MTU_DISCOVER),
    (libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER),
    (libc::IPPROTO_IPV6, libc::IPV6_DONTFRAG),
];

fn error(errno: i32) -> Handled {
    Some((Reply::error(errno), None))
}

fn ok(reply: Reply) -> Handled {
    Some((reply, None))
}

/// Where a socket's local port comes from when it binds.
enum PortChoice {
    /// The port the program asked for.
    Given(u16),
    /// A free ephemeral port, picked so that it lands on this worker.
    Ephemeral(WorkerId),
}

impl Service {
    /// Creates a UDP socket of `domain`: the program gets one end of a SOCK_SEQPACKET pair.
    pub(super) fn create_datagram_socket(&mut self, domain: i32) -> Handled {
        if let Err(errno) = self.check_room() {
            return error(errno);
        }
        let made = (|| {
            let (app, service) = socketpair(libc::SOCK_SEQPACKET)?;
            set_nonblocking(service.as_fd(), true)?;
            let number = inode(app.as_fd())?;
            std::io::Result::Ok((app, service, Inode(number)))
        })();
        let (app, service, inode) = match made {
            Ok(parts) => parts,
            Err(e) => return error(self.creation_failed(&e)),
        };
        if let Err(e) = force_send_buffer(app.as_raw_fd(), APP_SEND_BUFFER) {
            log::debug!("cannot size a new UDP socket: {e}");
        }
        let mut entry = SocketEntry::fresh();
        entry.protocol = Protocol::Udp;
        entry.domain = domain;
        if let Err(errno) = self.admit(inode, entry) {
            return error(errno);
        }
        if let Err(e) = self.watch_pending(inode, service) {
            self.registry.lock().remove(inode);
            return error(e.raw_os_error().unwrap_or(libc::ENOMEM));
        }
        Some((Reply::ok(0), Some(app)))
    }

    /// Answers an `Identify` for a UDP socket: its kind, its addresses so the preload knows
    /// whether it is bound and connected, and in `opt` the [`SendFlags`] of its options.
    pub(super) fn identify_datagram(entry: &SocketEntry) -> Reply {
        let flags = SEND_FLAG_OPTIONS
            .iter()
            .fold(SendFlags::default(), |flags, &(level, name)| {
                match entry.options.int(level, name) {
                    Some(value) => flags.with_option(level, name, value),
                    None => flags,
                }
            });
        let mut reply = Reply::with_opt(&[flags.0]);
        reply.value = netcon_control::SocketKind::Datagram as i64;
        // An unbound socket reports the unspecified address of its family, so the preload
        // learns the family too.
        let local = entry.local.unwrap_or(unspecified(entry.domain, 0));
        reply.local = WireAddr(Some(local));
        reply.remote = WireAddr(entry.remote);
        reply
    }

    /// Serves a request about a UDP socket; `app` is the program's end, which came with it.
    pub(super) fn handle_datagram(
        &mut self,
        inode: Inode,
        request: &Request,
        app: &OwnedFd,
        to: ReplyTo,
    ) -> Handled {
        match request.op {
            Op::Bind => self.bind_datagram(inode, request.addr),
            Op::AutoBind => {
                let fresh = self.registry.lock().sockets[&inode].state == SocketState::Fresh;
                if !fresh {
                    return ok(Reply::ok(0));
                }
                let domain = self.registry.lock().sockets[&inode].domain;
                let wildcard = unspecified(domain, 0);
                self.bind_datagram(inode, WireAddr(Some(wildcard)))
            }
            Op::Connect => self.connect_datagram(inode, request.addr, to),
            Op::Disconnect => self.disconnect_datagram(inode, to),
            Op::Listen => error(libc::EOPNOTSUPP),
            Op::GetSockName => self.datagram_name(inode, false),
            Op::GetPeerName => self.datagram_name(inode, true),
            Op::GetSockOpt => self.get_datagram_option(inode, request),
            Op::SetSockOpt => self.set_datagram_option(inode, request, app),
            Op::Socket
            | Op::Identify
            | Op::Show
            | Op::Status
            | Op::Perf
            | Op::Info
            | Op::NewConnection => unreachable!("handled before the socket is looked up"),
        }
    }

    fn bind_datagram(&mut self, inode: Inode, addr: WireAddr) -> Handled {
        let (local, scope) = {
            let table = self.registry.lock();
            let entry = &table.sockets[&inode];
            if entry.state != SocketState::Fresh {
                return error(libc::EINVAL);
            }
            match self.check_bind(entry, addr) {
                Ok(checked) => checked,
                Err(errno) => return error(errno),
            }
        };
        let choice = match local.port() {
            0 => PortChoice::Ephemeral(self.next_worker_for_connect()),
            port => PortChoice::Given(port),
        };
        match self.claim_datagram_port(inode, local, scope, choice) {
            Ok(_) => {}
            Err(errno) => return error(errno),
        }
        match self.hand_to_worker(inode, None, None) {
            Ok(()) => ok(Reply::ok(0)),
            Err(errno) => error(errno),
        }
    }

    /// Takes the local port for a socket and records it as bound to `local` (as the program
    /// named it, port replaced by the one taken). Returns the port.
    fn claim_datagram_port(
        &mut self,
        inode: Inode,
        local: SocketAddr,
        scope: PortScope,
        choice: PortChoice,
    ) -> Result<u16, i32> {
        let workers = self.workers.len();
        let mut table = self.registry.lock();
        let entry = &table.sockets[&inode];
        // Linux lets UDP sockets share a port when all set SO_REUSEADDR, or all SO_REUSEPORT.
        let shared = entry.options.flag(libc::SOL_SOCKET, libc::SO_REUSEADDR)
            || entry.options.flag(libc::SOL_SOCKET, libc::SO_REUSEPORT);
        let (port, scope) = match choice {
            PortChoice::Given(port) if table.udp_ports.claim_in(port, scope, shared) => {
                (port, scope)
            }
            PortChoice::Given(_) => return Err(libc::EADDRINUSE),
            PortChoice::Ephemeral(target) => {
                let lands = |port| steer::udp_owner(port, workers) == target;
                match table.udp_ports.claim_ephemeral_where(shared, lands) {
                    Some(port) => (port, PortScope::Both),
                    None => return Err(libc::EAGAIN),
                }
            }
        };
        let entry = table.sockets.get_mut(&inode).expect("checked above");
        entry.state = SocketState::Bound;
        entry.local = Some(SocketAddr::new(local.ip(), port));
        entry.address_bound = !mapped::unmap(local).ip().is_unspecified();
        entry.port_scope = scope;
        entry.owns_port = true;
        Ok(port)
    }

    /// Hands a socket that just got its port to the worker owning the port, connected to
    /// `peer` (in stack form) when given. With `reply` the worker answers the waiting request
    /// once the socket is in place.
    fn hand_to_worker(
        &mut self,
        inode: Inode,
        peer: Option<SocketAddr>,
        reply: Option<ReplyTo>,
    ) -> Result<(), i32> {
        let Some(fd) = self.take_pending(inode) else {
            return Err(libc::EBADF);
        };
        let job = {
            let table = self.registry.lock();
            let entry = &table.sockets[&inode];
            let local = entry.local.expect("bound sockets have an address");
            let (receives_ipv4, receives_ipv6) = receiving_families(entry, local);
            DatagramJob {
                inode,
                fd,
                local: mapped::unmap(local),
                peer,
                domain: entry.domain,
                receives_ipv4,
                receives_ipv6,
                stats: entry.stats.clone(),
                reply,
            }
        };
        let owner = steer::udp_owner(job.local.port(), self.workers.len());
        self.workers[owner.0].send(Command::OpenDatagram(job));
        Ok(())
    }

    /// Connects a UDP socket: binds it first when it has no port, fixes its local address to
    /// the source address towards the peer, and lets the owning worker reply.
    fn connect_datagram(&mut self, inode: Inode, addr: WireAddr, to: ReplyTo) -> Handled {
        let (remote, state, domain, local) = {
            let table = self.registry.lock();
            let entry = &table.sockets[&inode];
            let remote = match self.check_datagram_connect(entry, addr) {
                Ok(remote) => remote,
                Err(errno) => return error(errno),
            };
            (remote, entry.state, entry.domain, entry.local)
        };
        let source = match self.local_ip_for(remote.ip()) {
            Ok(ip) => ip,
            Err(errno) => return error(errno),
        };
        let fresh = state == SocketState::Fresh;
        if fresh {
            let target = self.next_worker_for_connect();
            let wildcard = unspecified(domain, 0);
            let scope = {
                let table = self.registry.lock();
                address_scope(domain, is_v6only(&table.sockets[&inode]), wildcard)
            };
            let choice = PortChoice::Ephemeral(target);
            if let Err(errno) = self.claim_datagram_port(inode, wildcard, scope, choice) {
                return error(errno);
            }
        }

        let local = {
            let mut table = self.registry.lock();
            let entry = table.sockets.get_mut(&inode).expect("checked above");
            let bound = entry.local.or(local).expect("bound above");
            let ip = if mapped::unmap(bound).ip().is_unspecified() {
                mapped::for_domain(SocketAddr::new(source, 0), domain).ip()
            } else {
                bound.ip()
            };
            let local = SocketAddr::new(ip, bound.port());
            entry.local = Some(local);
            entry.remote = Some(mapped::for_domain(remote, domain));
            entry.state = SocketState::Connected;
            local
        };
        if fresh {
            return match self.hand_to_worker(inode, Some(remote), Some(to)) {
                Ok(()) => None,
                Err(errno) => error(errno),
            };
        }
        let job = DatagramPeerJob {
            inode,
            peer: Some(remote),
            local: mapped::unmap(local),
            reply: to,
        };
        self.send_to_owner(local.port(), Command::SetDatagramPeer(job));
        None
    }

    /// Dissolves a UDP socket's connection (`connect` with AF_UNSPEC). Like Linux, the socket
    /// forgets the local address the connection chose unless the program bound it to that
    /// address, and returns 0 when it was not connected, too.
    // TODO: Linux also gives back a port the program did not bind explicitly, so the socket
    // reads as unbound (port 0) until its next send; here it keeps the port, because the
    // socket lives on the worker that owns the port until it closes.
    fn disconnect_datagram(&mut self, inode: Inode, to: ReplyTo) -> Handled {
        let local = {
            let mut table = self.registry.lock();
            let entry = table
                .sockets
                .get_mut(&inode)
                .expect("checked by the caller");
            if entry.state != SocketState::Connected {
                return ok(Reply::ok(0));
            }
            entry.remote = None;
            entry.state = SocketState::Bound;
            let bound = entry.local.expect("connected sockets have an address");
            if !entry.address_bound {
                entry.local = Some(unspecified(entry.domain, bound.port()));
            }
            entry.local.expect("set above")
        };
        let job = DatagramPeerJob {
            inode,
            peer: None,
            local: mapped::unmap(local),
            reply: to,
        };
        self.send_to_owner(local.port(), Command::SetDatagramPeer(job));
        None
    }

    fn send_to_owner(&self, port: u16, command: Command) {
        let owner = steer::udp_owner(port, self.workers.len());
        self.workers[owner.0].send(command);
    }

    /// Answers `getsockname` (or, with `peer`, `getpeername`) for a UDP socket.
    fn datagram_name(&self, inode: Inode, peer: bool) -> Handled {
        let table = self.registry.lock();
        let entry = &table.sockets[&inode];
        let mut reply = Reply::ok(0);
        if peer {
            // A socket connected to port 0 has a peer to send to but, as on Linux, no name.
            let Some(remote) = entry.remote.filter(|remote| remote.port() != 0) else {
                return error(libc::ENOTCONN);
            };
            reply.remote = WireAddr(Some(remote));
        } else {
            let local = entry.local.unwrap_or(unspecified(entry.domain, 0));
            reply.local = WireAddr(Some(local));
        }
        ok(reply)
    }

    fn get_datagram_option(&self, inode: Inode, request: &Request) -> Handled {
        let (level, name) = (request.arg0 as i32, request.arg1 as i32);
        let mut table = self.registry.lock();
        let entry = table
            .sockets
            .get_mut(&inode)
            .expect("checked by the caller");
        if let Some(errno) = datagram_option_error(entry, level, name, false) {
            return error(errno);
        }
        let (rule, stored) = match entry.options.get(entry.domain, level, name) {
            Ok(found) => found,
            Err(errno) => return error(errno),
        };
        let int = |v: i32| v.to_ne_bytes().to_vec();
        let value = match (level, name) {
            (libc::SOL_SOCKET, libc::SO_TYPE) => int(libc::SOCK_DGRAM),
            (libc::SOL_SOCKET, libc::SO_DOMAIN) => int(entry.domain),
            (libc::SOL_SOCKET, libc::SO_PROTOCOL) => int(libc::IPPROTO_UDP),
            (libc::SOL_SOCKET, libc::SO_ACCEPTCONN) => int(0),
            (libc::SOL_SOCKET, libc::SO_ERROR) => int(std::mem::take(&mut entry.pending_error)),
            (libc::SOL_SOCKET, libc::SO_SNDBUF | libc::SO_RCVBUF)
                if !entry.options.is_set(level, name) =>
            {
                int(DEFAULT_BUFFER)
            }
            (libc::IPPROTO_IP, libc::IP_MTU) if entry.remote.is_some() => int(self.mss as i32 + 40),
            (libc::IPPROTO_IP, libc::IP_MTU) | (libc::SOL_SOCKET, libc::SO_PEERNAME) => {
                return error(libc::ENOTCONN);
            }
            _ => stored.unwrap_or_else(|| vec![0; 4]),
        };
        // The preload sends the length of the program's buffer, which the value is cut to.
        let len = request.opt_len as usize;
        ok(Reply::with_opt(&option_rules::truncate(
            level, rule, value, len,
        )))
    }

    fn set_datagram_option(&mut self, inode: Inode, request: &Request, app: &OwnedFd) -> Handled {
        let (level, name) = (request.arg0 as i32, request.arg1 as i32);
        let limits = self.buffer_limits;
        let mut table = self.registry.lock();
        let entry = table
            .sockets
            .get_mut(&inode)
            .expect("checked by the caller");
        if let Some(errno) = datagram_option_error(entry, level, name, true) {
            return error(errno);
        }
        let domain = entry.domain;
        let value = request.opt_bytes();
        if let Err(errno) = entry.options.set(domain, level, name, value, limits) {
            return error(errno);
        }
        if (level, name) == (libc::SOL_SOCKET, libc::SO_RCVBUF) {
            let bytes = stored_buffer(entry, name).expect("set just now");
            let port = entry.local.map(|local| local.port());
            drop(table);
            self.apply_receive_buffer(inode, port, bytes);
        } else if (level, name) == (libc::SOL_SOCKET, libc::SO_SNDBUF) {
            // What a program may queue before its sends block: the program's own end's send
            // buffer, kept at least at the size every socket starts with.
            let bytes = stored_buffer(entry, name).expect("set just now");
            if let Err(e) = force_send_buffer(app.as_raw_fd(), bytes.max(APP_SEND_BUFFER)) {
                log::debug!("cannot size UDP socket {}: {e}", inode.0);
            }
        }
        ok(Reply::ok(0))
    }

    /// Sizes the queue towards the program, which is what SO_RCVBUF bounds on a kernel
    /// socket: the send buffer of the service end. The control thread sets it while it holds
    /// that end, the owning worker afterwards.
    fn apply_receive_buffer(&mut self, inode: Inode, port: Option<u16>, bytes: i32) {
        if let Some(pending) = self.pending.get(&inode) {
            if let Err(e) = force_send_buffer(pending.fd.as_raw_fd(), bytes) {
                log::debug!("cannot size UDP socket {}: {e}", inode.0);
            }
        } else if let Some(port) = port {
            self.send_to_owner(port, Command::SetDatagramBuffer(inode, bytes));
        }
    }
}

/// Returns the size the program set with SO_RCVBUF or SO_SNDBUF (`name`), as Linux stores it
/// (doubled), if it set one.
fn stored_buffer(entry: &SocketEntry, name: i32) -> Option<i32> {
    let set = entry.options.is_set(libc::SOL_SOCKET, name);
    set.then(|| entry.options.int(libc::SOL_SOCKET, name))
        .flatten()
}

/// Returns the errno with which Linux rejects an option on a UDP socket, if it does. The
/// IPPROTO_TCP level is unknown to UDP: EOPNOTSUPP for `getsockopt` and ENOPROTOOPT for
/// `setsockopt`, as for any level IP does not know. The IPv6 rules hold as for TCP.
// TODO: SOL_UDP options (UDP_CORK, UDP_SEGMENT, UDP_GRO) are rejected the same way, where
// Linux accepts them — the option rules describe a TCP socket's levels only.
fn datagram_option_error(entry: &SocketEntry, level: i32, name: i32, setting: bool) -> Option<i32> {
    if level == libc::IPPROTO_TCP || level == libc::IPPROTO_UDP {
        return Some(if setting {
            libc::ENOPROTOOPT
        } else {
            libc::EOPNOTSUPP
        });
    }
    ipv6_option_error(entry, level, name, setting)
}

/// Returns which families a UDP socket bound to `local` (as the program named it) receives:
/// an AF_INET socket IPv4, an AF_INET6 one IPv6, and IPv4 too unless IPV6_V6ONLY is set or it
/// is bound to a specific IPv6 address.
fn receiving_families(entry: &SocketEntry, local: SocketAddr) -> (bool, bool) {
    match address_scope(entry.domain, is_v6only(entry), local) {
        PortScope::Ipv4 => (true, false),
        PortScope::Ipv6 => (false, true),
        PortScope::Both => (true, true),
    }
}
