//! What the control thread does for each request kind.

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use netcon_control::wire::FLAG_NONBLOCK;
use netcon_control::{NetconInfo, Op, Reply, Request, SocketKind, WireAddr};

use super::Service;
use super::addressing::{address_scope, ipv6_option_error, is_v6only, mss_for, unspecified};
use super::kernel_loopback::kernel_socket_reply;
use crate::connect_gate::{self, HeldEnd};
use crate::mapped;
use crate::option_rules;
use crate::options::{CONGESTION_CONTROL, LinuxTcpState, SetOutcome, tcp_info};
use crate::registry::{Inode, PortScope, Protocol, SocketEntry, SocketState, Table};
use crate::steer;
use crate::sys::socket::{inode, set_nonblocking, socketpair};
use crate::worker::{Command, ConnectJob, ListenJob, OptionJob, ReplyTo, prepare_pair};

/// The outcome of one request: the reply to send now (with an fd attached when given), or
/// `None` when a worker replies later (blocking connect).
pub type Handled = Option<(Reply, Option<OwnedFd>)>;

fn error(errno: i32) -> Handled {
    Some((Reply::error(errno), None))
}

fn ok(reply: Reply) -> Handled {
    Some((reply, None))
}

impl Service {
    pub(super) fn handle(&mut self, request: Request, fd: Option<OwnedFd>, to: ReplyTo) -> Handled {
        match request.op {
            Op::Socket => return self.create_socket(&request),
            Op::Show | Op::Status | Op::Perf => return self.observe(request.op),
            Op::Info => return ok(self.info().to_reply()),
            _ => {}
        }
        let Some(fd) = fd else {
            return error(libc::EBADF);
        };
        let number = match inode(fd.as_fd()) {
            Ok(number) => number,
            Err(e) => return error(e.raw_os_error().unwrap_or(libc::EBADF)),
        };
        let inode = Inode(number);
        if request.op == Op::Identify {
            return ok(self.identify(inode));
        }
        let protocol = self.registry.lock().sockets.get(&inode).map(|e| e.protocol);
        match protocol {
            Some(Protocol::Tcp) => {}
            Some(Protocol::Udp) => return self.handle_datagram(inode, &request, &fd, to),
            // Not a socket this service made: the shim passes the call to libc.
            None => return error(libc::ENOTSOCK),
        }
        match request.op {
            Op::Bind => self.bind(inode, &request),
            Op::Listen => self.listen(inode, &request),
            Op::Connect => self.connect(inode, &request, &fd, to),
            Op::GetSockName => self.local_name(inode),
            Op::GetPeerName => self.peer_name(inode, &fd),
            Op::GetSockOpt => self.get_option(inode, &request),
            Op::SetSockOpt => self.set_option(inode, &request),
            // Only datagram sockets bind on first send or drop their peer.
            Op::AutoBind | Op::Disconnect => error(libc::EOPNOTSUPP),
            Op::Socket
            | Op::Identify
            | Op::Show
            | Op::Status
            | Op::Perf
            | Op::Info
            | Op::NewConnection => unreachable!("handled above or by the caller"),
        }
    }

    fn create_socket(&mut self, request: &Request) -> Handled {
        let domain = match i32::try_from(request.arg0) {
            Ok(domain @ (libc::AF_INET | libc::AF_INET6)) => domain,
            _ => return error(libc::EAFNOSUPPORT),
        };
        if request.arg1 == libc::SOCK_DGRAM as u64 {
            return self.create_datagram_socket(domain);
        }
        if request.arg1 != libc::SOCK_STREAM as u64 {
            return error(libc::EPROTONOSUPPORT);
        }
        if let Err(errno) = self.check_room() {
            return error(errno);
        }
        let made = (|| {
            let (app, service) = socketpair(libc::SOCK_STREAM)?;
            prepare_pair(app.as_fd(), service.as_fd())?;
            set_nonblocking(service.as_fd(), true)?;
            let number = inode(app.as_fd())?;
            std::io::Result::Ok((app, service, Inode(number)))
        })();
        let (app, service, inode) = match made {
            Ok(parts) => parts,
            Err(e) => return error(self.creation_failed(&e)),
        };
        let mut entry = SocketEntry::fresh();
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

    fn info(&self) -> NetconInfo {
        NetconInfo {
            routes: self.routes,
            mac: self.link.mac,
            dns: self.dns,
        }
    }

    fn identify(&self, inode: Inode) -> Reply {
        let table = self.registry.lock();
        let kind = match table.sockets.get(&inode) {
            Some(entry) if entry.protocol == Protocol::Udp => {
                return Service::identify_datagram(entry);
            }
            Some(entry) if entry.state == SocketState::Listening => SocketKind::Listener,
            Some(_) => SocketKind::Stream,
            None => SocketKind::Foreign,
        };
        Reply::ok(kind as i64)
    }

    fn bind(&mut self, inode: Inode, request: &Request) -> Handled {
        let mut table = self.registry.lock();
        let entry = &table.sockets[&inode];
        let (addr, scope) = match self.check_bind(entry, request.addr) {
            Ok(checked) => checked,
            Err(errno) => return error(errno),
        };
        if entry.state != SocketState::Fresh {
            return error(libc::EINVAL);
        }
        if self.hands_to_kernel(addr.ip()) {
            return kernel_socket_reply(entry, None);
        }
        let reuseport = entry.options.flag(libc::SOL_SOCKET, libc::SO_REUSEPORT);
        let (port, scope) = if addr.port() == 0 {
            match table.claim_ephemeral_port() {
                Some(port) => (port, PortScope::Both),
                None => return error(libc::EADDRINUSE),
            }
        } else if table.claim_port_in(addr.port(), scope, reuseport) {
            (addr.port(), scope)
        } else {
            return error(libc::EADDRINUSE);
        };
        let entry = table.sockets.get_mut(&inode).expect("checked above");
        entry.state = SocketState::Bound;
        entry.local = Some(SocketAddr::new(addr.ip(), port));
        entry.port_scope = scope;
        entry.owns_port = true;
        ok(Reply::ok(0))
    }

    fn listen(&mut self, inode: Inode, request: &Request) -> Handled {
        let mut table = self.registry.lock();
        let entry = &table.sockets[&inode];
        let domain = entry.domain;
        let local = match entry.state {
            SocketState::Listening => return ok(Reply::ok(0)),
            SocketState::Bound => entry.local.expect("bound sockets have an address"),
            SocketState::Fresh => match table.claim_ephemeral_port() {
                Some(port) => unspecified(domain, port),
                None => return error(libc::EADDRINUSE),
            },
            _ => return error(libc::EINVAL),
        };
        let scope = address_scope(domain, is_v6only(&table.sockets[&inode]), local);
        let addresses = self.listen_addresses(scope, local);
        let made = (|| {
            let (app, service) = socketpair(libc::SOCK_SEQPACKET)?;
            set_nonblocking(service.as_fd(), true)?;
            let number = crate::sys::socket::inode(app.as_fd())?;
            std::io::Result::Ok((app, service, Inode(number)))
        })();
        let (app, service, listener_inode) = match made {
            Ok(parts) => parts,
            Err(e) => return error(self.creation_failed(&e)),
        };
        let mut entry = table.sockets.remove(&inode).expect("checked above");
        entry.state = SocketState::Listening;
        entry.local = Some(local);
        entry.owns_port = true;
        let options = entry.options.connection();
        table.sockets.insert(listener_inode, entry);
        drop(table);
        let _ = self.take_pending(inode);

        let backlog = request.arg0.clamp(1, 4096) as usize;
        for worker in &self.workers {
            let fd = match service.try_clone() {
                Ok(fd) => fd,
                Err(e) => return error(e.raw_os_error().unwrap_or(libc::ENOMEM)),
            };
            worker.send(Command::Listen(ListenJob {
                inode: listener_inode,
                fd,
                local,
                addresses: addresses.clone(),
                domain,
                backlog,
                options,
            }));
        }
        Some((Reply::ok(1), Some(app)))
    }

    fn connect(&mut self, inode: Inode, request: &Request, app: &OwnedFd, to: ReplyTo) -> Handled {
        let workers = self.workers.len();
        let target = self.next_worker_for_connect();
        let mut table = self.registry.lock();
        let entry = &table.sockets[&inode];
        let domain = entry.domain;
        let remote = match self.check_connect(entry, request.addr) {
            Ok(remote) => remote,
            Err(errno) => return error(errno),
        };
        let unconnected = matches!(entry.state, SocketState::Fresh | SocketState::Bound);
        if unconnected && self.hands_to_kernel(remote.ip()) {
            let bound = entry.local.map(|local| mapped::for_domain(local, domain));
            return kernel_socket_reply(entry, bound);
        }
        let local_ip = match self.local_ip_for(remote.ip()) {
            Ok(ip) => ip,
            Err(errno) => return error(errno),
        };
        let local_port = match entry.state {
            // The port decides which worker the connection's frames reach, so pick one that
            // lands on the worker whose turn it is.
            SocketState::Fresh => {
                let lands_on_target =
                    |port| steer::owner(remote.ip(), remote.port(), port, workers) == target;
                match table.claim_ephemeral_port_where(lands_on_target) {
                    Some(port) => port,
                    None => return error(libc::EADDRNOTAVAIL),
                }
            }
            SocketState::Bound => entry.local.expect("bound sockets have an address").port(),
            // The worker makes the program's end writable a moment before it records the
            // connection as established, and programs that poll for writability then call
            // connect again (hiredis does) must see EISCONN, as on Linux.
            SocketState::Connecting if connect_finished(entry, app) => {
                return report_connected_once(&mut table, inode);
            }
            SocketState::Connected => return report_connected_once(&mut table, inode),
            SocketState::Connecting => return error(libc::EALREADY),
            SocketState::Listening => return error(libc::EINVAL),
            // Linux reports a failed non-blocking connect's error to the next connect.
            SocketState::Closed => {
                let entry = table.sockets.get_mut(&inode).expect("checked above");
                let errno = std::mem::take(&mut entry.pending_error);
                return error(if errno != 0 {
                    errno
                } else {
                    libc::ECONNABORTED
                });
            }
        };
        let local = SocketAddr::new(local_ip, local_port);
        let entry = table.sockets.get_mut(&inode).expect("checked above");
        entry.state = SocketState::Connecting;
        // A blocking connect returns its result itself.
        entry.connect_reported = request.flags & FLAG_NONBLOCK == 0;
        entry.local = Some(mapped::for_domain(local, domain));
        entry.remote = Some(mapped::for_domain(remote, domain));
        entry.owns_port = true;
        let options = entry.options.connection();
        let stats = entry.stats.clone();
        drop(table);

        let Some(fd) = self.take_pending(inode) else {
            return error(libc::EBADF);
        };
        let nonblocking = request.flags & FLAG_NONBLOCK != 0;
        let held = if nonblocking { hold_end(app) } else { None };
        if let Some(entry) = self.registry.lock().sockets.get_mut(&inode) {
            entry.filled_for_connect = held.is_some();
        }
        let reply = (!nonblocking).then_some(to);
        let job = ConnectJob {
            inode,
            fd,
            local,
            remote,
            held,
            options,
            stats,
            reply,
        };
        let owner = steer::owner(remote.ip(), remote.port(), local.port(), workers);
        self.workers[owner.0].send(Command::Connect(job));
        if nonblocking {
            error(libc::EINPROGRESS)
        } else {
            None
        }
    }

    fn local_name(&self, inode: Inode) -> Handled {
        let table = self.registry.lock();
        let entry = &table.sockets[&inode];
        let local = entry.local.unwrap_or(unspecified(entry.domain, 0));
        let mut reply = Reply::ok(0);
        reply.local = WireAddr(Some(local));
        ok(reply)
    }

    fn peer_name(&self, inode: Inode, app: &OwnedFd) -> Handled {
        let table = self.registry.lock();
        let entry = &table.sockets[&inode];
        let connected = match entry.state {
            SocketState::Connected => true,
            SocketState::Connecting => connect_finished(entry, app),
            _ => false,
        };
        match (connected, entry.remote) {
            (true, Some(remote)) => {
                let mut reply = Reply::ok(0);
                reply.remote = WireAddr(Some(remote));
                ok(reply)
            }
            _ => error(libc::ENOTCONN),
        }
    }

    fn get_option(&self, inode: Inode, request: &Request) -> Handled {
        let (level, name) = (request.arg0 as i32, request.arg1 as i32);
        let mut table = self.registry.lock();
        let entry = table.sockets.get_mut(&inode).expect("checked by caller");
        if let Some(errno) = ipv6_option_error(entry, level, name, false) {
            return error(errno);
        }
        let (rule, stored) = match entry.options.get(entry.domain, level, name) {
            Ok(found) => found,
            Err(errno) => return error(errno),
        };
        let value = match self.state_option(entry, level, name, stored) {
            Ok(value) => value,
            Err(errno) => return error(errno),
        };
        // The preload sends the length of the program's buffer, which the value is cut to.
        let len = request.opt_len as usize;
        ok(Reply::with_opt(&option_rules::truncate(
            level, rule, value, len,
        )))
    }

    /// Returns the value of an option that depends on the socket's state, or `stored` (the
    /// value set, or the default) for the others.
    fn state_option(
        &self,
        entry: &mut SocketEntry,
        level: i32,
        name: i32,
        stored: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, i32> {
        let mss = mss_for(self.mss, entry.domain);
        let int = |v: i32| Ok(v.to_ne_bytes().to_vec());
        let connected = entry.state == SocketState::Connected;
        match (level, name) {
            (libc::SOL_SOCKET, libc::SO_TYPE) => int(libc::SOCK_STREAM),
            (libc::SOL_SOCKET, libc::SO_DOMAIN) => int(entry.domain),
            (libc::SOL_SOCKET, libc::SO_PROTOCOL) => int(libc::IPPROTO_TCP),
            (libc::SOL_SOCKET, libc::SO_ACCEPTCONN) => {
                int(i32::from(entry.state == SocketState::Listening))
            }
            (libc::SOL_SOCKET, libc::SO_ERROR) => int(std::mem::take(&mut entry.pending_error)),
            (libc::IPPROTO_TCP, libc::TCP_CONGESTION) => Ok(CONGESTION_CONTROL.to_vec()),
            // A connection sends segments of the MSS the link allows, or of the program's MSS
            // when that is smaller. Before it connects, Linux reports the program's MSS or 536.
            (libc::IPPROTO_TCP, libc::TCP_MAXSEG) if connected => {
                let requested = entry.options.int(level, name).unwrap_or(i32::MAX);
                int(requested.min(mss as i32))
            }
            (libc::IPPROTO_TCP, libc::TCP_INFO) => {
                let state = match entry.state {
                    SocketState::Connected => LinuxTcpState::Established,
                    SocketState::Connecting => LinuxTcpState::SynSent,
                    SocketState::Listening => LinuxTcpState::Listen,
                    _ => LinuxTcpState::Close,
                };
                Ok(tcp_info(state, mss).to_vec())
            }
            (libc::IPPROTO_IP, libc::IP_MTU) if connected => int(self.mss as i32 + 40),
            (libc::IPPROTO_IP, libc::IP_MTU) | (libc::SOL_SOCKET, libc::SO_PEERNAME) => {
                Err(libc::ENOTCONN)
            }
            // Read-only options about the kernel's own bookkeeping (SO_COOKIE, SO_MEMINFO…)
            // read as zero.
            _ => Ok(stored.unwrap_or_else(|| vec![0; 4])),
        }
    }

    fn set_option(&mut self, inode: Inode, request: &Request) -> Handled {
        let (level, name) = (request.arg0 as i32, request.arg1 as i32);
        let mut table = self.registry.lock();
        let entry = table.sockets.get_mut(&inode).expect("checked by caller");
        if let Some(errno) = ipv6_option_error(entry, level, name, true) {
            return error(errno);
        }
        let value = request.opt_bytes();
        let domain = entry.domain;
        let outcome = match entry
            .options
            .set(domain, level, name, value, self.buffer_limits)
        {
            Ok(outcome) => outcome,
            Err(errno) => return error(errno),
        };
        // Workers hold what connections and listeners carry out; a listener passes it on to
        // the connections it accepts later.
        let live = matches!(
            entry.state,
            SocketState::Connecting | SocketState::Connected | SocketState::Listening
        );
        let job = OptionJob {
            inode,
            options: entry.options.connection(),
        };
        drop(table);
        if outcome == SetOutcome::Applied && live {
            for worker in &self.workers {
                worker.send(Command::SetOptions(job));
            }
        }
        ok(Reply::ok(0))
    }
}

/// Answers a `connect` on a connection whose handshake is over: 0 the first time (for a
/// non-blocking connect), EISCONN after that, as Linux does.
fn report_connected_once(table: &mut Table, inode: Inode) -> Handled {
    let entry = table
        .sockets
        .get_mut(&inode)
        .expect("checked by the caller");
    if std::mem::replace(&mut entry.connect_reported, true) {
        return error(libc::EISCONN);
    }
    ok(Reply::ok(0))
}

/// Keeps the program's end of a non-blocking connect unwritable (see [`connect_gate`]), or
/// returns `None` when that fails, and the end stays writable.
fn hold_end(app: &OwnedFd) -> Option<HeldEnd> {
    match connect_gate::hold(app) {
        Ok(held) if held.filler > 0 => Some(held),
        Ok(_) => None,
        Err(e) => {
            log::debug!("cannot fill a connecting socket's end: {e}");
            None
        }
    }
}

/// Whether a non-blocking connect's handshake has succeeded, seen from the program's end: the
/// worker reads back the filler that kept it unwritable only then (on failure it closes its
/// end instead, which shows as a hang-up). A blocking connect's end was never filled, so this
/// cannot tell, and returns false.
fn connect_finished(entry: &SocketEntry, app: &OwnedFd) -> bool {
    if !entry.filled_for_connect {
        return false;
    }
    let mut poll = libc::pollfd {
        fd: app.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: poll reads and writes one valid pollfd and does not wait (timeout 0).
    let ready = unsafe { libc::poll(&mut poll, 1, 0) } == 1;
    let hung_up = poll.revents & (libc::POLLHUP | libc::POLLERR) != 0;
    ready && poll.revents & libc::POLLOUT != 0 && !hung_up
}
