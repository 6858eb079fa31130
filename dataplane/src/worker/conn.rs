//! One TCP connection and the pump that moves its bytes between the smoltcp socket and the
//! service end of its socketpair.
//!
//! The program's end was handed over with one sentinel byte already written into it, and the
//! service end reads with MSG_PEEK at SO_PEEK_OFF 1. After forwarding n bytes the pump consumes
//! n, so one already-forwarded byte always stays queued. Closing the service end with that
//! byte unread makes Linux report ECONNRESET to the program, which is how a TCP reset reaches
//! it; before a clean close the pump drains the queue so the program sees EOF after the data.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use netcon_control::{Reply, WireAddr};
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp::{self, State};
use smoltcp::time::Duration;

use super::stack::{endpoint, socket_addr};
use super::{ConnectJob, OptionJob, ReplyTo, Worker};
use crate::connect_gate::HeldEnd;
use crate::mapped;
use crate::neighbour::RESOLUTION_TIMEOUT;
use crate::options::{ConnectionOptions, KeepAlive};
use crate::registry::{Inode, SocketState};
use crate::stats::{ConnStats, LatencySet, Sampler};
use crate::sys::socket::{epoll_add, is_hung_up, recv, send, set_int_option, shutdown};
use crate::tos::Flow;
use std::sync::Arc;

/// Largest chunk peeked from a socketpair at once, and the size of the discard buffer.
pub const SCRATCH_LEN: usize = 256 * 1024;

/// How long a handshake may take before connect fails with ETIMEDOUT (Linux gives up after
/// about 127 s with its default of 6 SYN retries; a shorter bound keeps failures prompt).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a connection whose program has closed may take to finish its FIN exchange.
const ORPHAN_TIMEOUT: Duration = Duration::from_secs(60);

/// SO_PEEK_OFF: Linux's option number, which the libc crate does not export.
const SO_PEEK_OFF: libc::c_int = 42;

/// Where the connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Handshake running; `filler` bytes wait in the socketpair to be read back.
    Connecting {
        filler: usize,
    },
    Open,
}

/// A connection owned by this worker.
pub struct Conn {
    pub handle: SocketHandle,
    pub fd: OwnedFd,
    pub inode: Inode,
    phase: Phase,
    reply: Option<ReplyTo>,
    /// The socketpair had data or EOF at the last event and has not hit EAGAIN since.
    readable: bool,
    /// The socketpair had room at the last event and has not hit EAGAIN since.
    writable: bool,
    /// The program closed or shut down its sending side; a FIN was queued.
    app_eof: bool,
    /// The program's end is gone entirely (EPOLLHUP, EPIPE or ECONNRESET).
    app_gone: bool,
    /// The peer's FIN was passed on as `shutdown(SHUT_WR)`.
    peer_eof_sent: bool,
    started: std::time::Instant,
    /// Bytes moved from the program into the stack, and from the stack to the program.
    to_stack: u64,
    to_app: u64,
    stats: Arc<ConnStats>,
    /// This connection's latencies, made on its first sample.
    pub latency: Option<Box<LatencySet>>,
    ack_sampler: Sampler,
    ingress_sampler: Sampler,
    /// The socket options the stack carries out; keepalive starts once the handshake ends.
    options: ConnectionOptions,
    /// The program closed its socket with SO_LINGER {1, 0}: what it wrote before goes out
    /// with the next poll of the interface, then the connection is reset.
    reset_armed: bool,
    /// The program's end of a non-blocking connect, until the handshake ends.
    held: Option<HeldEnd>,
    /// Local port and remote endpoint, the key of the worker's TOS table.
    flow: Flow,
}

impl Conn {
    fn new(
        handle: SocketHandle,
        fd: OwnedFd,
        inode: Inode,
        phase: Phase,
        stats: Arc<ConnStats>,
        flow: Flow,
    ) -> Conn {
        let open = phase == Phase::Open;
        Conn {
            handle,
            fd,
            inode,
            phase,
            reply: None,
            readable: open,
            writable: open,
            app_eof: false,
            app_gone: false,
            peer_eof_sent: false,
            started: std::time::Instant::now(),
            to_stack: 0,
            to_app: 0,
            stats,
            latency: None,
            ack_sampler: Sampler::default(),
            ingress_sampler: Sampler::default(),
            options: ConnectionOptions::default(),
            reset_armed: false,
            held: None,
            flow,
        }
    }

    /// A connection a listener accepted: established, with the program's end already sent,
    /// and the listener's options.
    pub fn accepted(
        handle: SocketHandle,
        fd: OwnedFd,
        inode: Inode,
        stats: Arc<ConnStats>,
        flow: Flow,
        options: ConnectionOptions,
    ) -> Conn {
        let mut conn = Conn::new(handle, fd, inode, Phase::Open, stats, flow);
        conn.options = options;
        conn
    }

    /// Publishes counters and takes latency samples after a pump.
    fn record(&mut self, socket: &tcp::Socket, total: &mut LatencySet) {
        use std::sync::atomic::Ordering::Relaxed;
        let (send_queue, recv_queue) = (socket.send_queue() as u64, socket.recv_queue() as u64);
        self.stats.bytes_out.store(self.to_stack, Relaxed);
        self.stats.bytes_in.store(self.to_app, Relaxed);
        self.stats.send_queue.store(send_queue, Relaxed);
        self.stats.recv_queue.store(recv_queue, Relaxed);
        self.stats
            .state
            .store(state_number(socket.state()), Relaxed);

        let now = std::time::Instant::now();
        let acked = self.to_stack.saturating_sub(send_queue);
        if let Some(micros) = self.ack_sampler.observe(self.to_stack, acked, now) {
            total.ack.record(micros);
            self.own_latency().ack.record(micros);
        }
        let arrived = self.to_app + recv_queue;
        if let Some(micros) = self.ingress_sampler.observe(arrived, self.to_app, now) {
            total.ingress_wait.record(micros);
            self.own_latency().ingress_wait.record(micros);
        }
    }

    fn own_latency(&mut self) -> &mut LatencySet {
        self.latency
            .get_or_insert_with(|| Box::new(LatencySet::new(1)))
    }
}

/// The TCP state as `stats::tcp_state_name` numbers it.
fn state_number(state: State) -> u8 {
    match state {
        State::Closed => 1,
        State::Listen => 2,
        State::SynSent => 3,
        State::SynReceived => 4,
        State::Established => 5,
        State::FinWait1 => 6,
        State::FinWait2 => 7,
        State::CloseWait => 8,
        State::Closing => 9,
        State::LastAck => 10,
        State::TimeWait => 11,
    }
}

impl Conn {
    /// Records what epoll reported for the socketpair.
    pub fn note_events(&mut self, flags: u32) {
        let hangup = (libc::EPOLLHUP | libc::EPOLLERR) as u32;
        if flags & (libc::EPOLLIN | libc::EPOLLRDHUP) as u32 != 0 || flags & hangup != 0 {
            self.readable = true;
        }
        if flags & libc::EPOLLOUT as u32 != 0 || flags & hangup != 0 {
            self.writable = true;
        }
        if flags & libc::EPOLLHUP as u32 != 0 {
            self.app_gone = true;
        }
    }
}

/// What one step of a pump found.
enum Step {
    Moved,
    Idle,
    /// The connection is finished; `errno` is 0 for a clean end.
    Finished {
        errno: i32,
        reset_app: bool,
    },
}

impl Worker {
    /// Opens a TCP connection for a `connect` call.
    pub(super) fn start_connect(&mut self, job: ConnectJob) {
        let mut socket = self.stack.tcp_socket();
        apply_to_socket(&mut socket, &job.options, job.remote.is_ipv4());
        socket.set_timeout(Some(CONNECT_TIMEOUT));

        let remote = endpoint(job.remote);
        let local = endpoint(job.local);
        let result = socket.connect(self.iface.context(), remote, local);
        if let Err(e) = result {
            log::trace!("connect to {} failed at once: {e}", job.remote);
            self.fail_connect(job.inode, job.reply, libc::ENETUNREACH);
            return;
        }
        let handle = self.sockets.add(socket);
        job.stats
            .worker
            .store(self.id.0 as u64, std::sync::atomic::Ordering::Relaxed);
        let filler = job.held.as_ref().map_or(0, |held| held.filler);
        let phase = Phase::Connecting { filler };
        let flow = Flow {
            local_port: job.local.port(),
            remote: job.remote.ip(),
            remote_port: job.remote.port(),
        };
        let mut conn = Conn::new(handle, job.fd, job.inode, phase, job.stats, flow);
        conn.reply = job.reply;
        conn.options = job.options;
        conn.held = job.held;
        self.insert_conn(conn);
    }

    /// Takes a connection into the pump, watching its socketpair with edge-triggered epoll.
    pub(super) fn insert_conn(&mut self, conn: Conn) -> usize {
        let fd = conn.fd.as_raw_fd();
        let inode = conn.inode;
        self.tos
            .set_flow(conn.flow, conn.options.mark_for(conn.flow.remote));
        let key = self.conns.insert(conn);
        let events = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
        if let Err(e) = epoll_add(self.epoll.as_raw_fd(), fd, events, key as u64) {
            log::warn!("worker {}: cannot watch socket {}: {e}", self.id.0, inode.0);
        }
        self.by_inode.insert(inode, key);
        key
    }

    fn fail_connect(&mut self, inode: Inode, reply: Option<ReplyTo>, errno: i32) {
        self.registry.lock().mark_closed(inode, errno);
        if let Some(to) = reply {
            self.completions.send(super::Completion {
                to,
                reply: Reply::error(errno),
            });
        }
    }

    /// Applies option changes made after the connection started.
    pub(super) fn apply_options(&mut self, job: OptionJob) {
        let Some(&key) = self.by_inode.get(&job.inode) else {
            self.apply_listener_options(job.inode, job.options);
            return;
        };
        let conn = &mut self.conns[key];
        let socket = self.sockets.get_mut::<tcp::Socket>(conn.handle);
        apply_to_socket(socket, &job.options, conn.flow.remote.is_ipv4());
        conn.options = job.options;
        if conn.phase == Phase::Open {
            apply_keepalive(socket, job.options.keepalive);
        }
        self.tos
            .set_flow(conn.flow, job.options.mark_for(conn.flow.remote));
    }

    /// Pumps every connection once; returns whether any bytes or states moved.
    pub(super) fn pump_all(&mut self) -> bool {
        let mut moved = self.pump_listeners();
        // TODO: every connection is visited on every wake-up, so set-up slows as idle
        // connections pile up (about 2 ms per connect at 8,000 open) — visiting only those
        // named by epoll events and by the 4-tuples of received frames would fix it.
        let mut keys = std::mem::take(&mut self.conn_keys);
        keys.clear();
        keys.extend(self.conns.iter().map(|(key, _)| key));
        for &key in &keys {
            match self.pump(key) {
                Step::Moved => moved = true,
                Step::Idle => {}
                Step::Finished { errno, reset_app } => {
                    self.finish_conn(key, errno, reset_app);
                    moved = true;
                }
            }
        }
        self.conn_keys = keys;
        moved
    }

    fn pump(&mut self, key: usize) -> Step {
        let conn = &mut self.conns[key];
        let socket = self.sockets.get_mut::<tcp::Socket>(conn.handle);
        let state = socket.state();

        if let Phase::Connecting { filler } = conn.phase {
            return match state {
                // As on Linux, a handshake whose next hop never answered ARP or neighbour
                // discovery fails with EHOSTUNREACH.
                State::SynSent
                    if conn.started.elapsed() >= RESOLUTION_TIMEOUT.into()
                        && self.device.is_unreachable(
                            self.stack.next_hop(conn.flow.remote),
                            self.clock.now(),
                        ) =>
                {
                    Step::Finished {
                        errno: libc::EHOSTUNREACH,
                        reset_app: true,
                    }
                }
                State::SynSent | State::SynReceived => Step::Idle,
                State::Closed | State::TimeWait => {
                    // smoltcp does not say why a handshake ended: one that ran out its timer
                    // timed out, an earlier end was a reset from the peer.
                    let timed_out = conn.started.elapsed() >= CONNECT_TIMEOUT.into();
                    let errno = if timed_out {
                        libc::ETIMEDOUT
                    } else {
                        libc::ECONNREFUSED
                    };
                    Step::Finished {
                        errno,
                        reset_app: true,
                    }
                }
                _ => {
                    apply_keepalive(socket, conn.options.keepalive);
                    let local = socket.local_endpoint().and_then(socket_addr);
                    // Record the connection first: reading the filler back makes the
                    // program's end writable, and the program may ask about it at once.
                    self.report_connected(key, local);
                    match complete_handshake(&mut self.conns[key], filler) {
                        Ok(()) => Step::Moved,
                        Err(_) => Step::Finished {
                            errno: libc::ECONNABORTED,
                            reset_app: true,
                        },
                    }
                }
            };
        }

        let mut moved = false;
        match forward_to_app(conn, socket) {
            Ok(progress) => moved |= progress,
            Err(_) => conn.app_gone = true,
        }
        if conn.app_gone && !conn.app_eof {
            // Nothing more can come from a program that is gone, except what it already wrote.
            conn.readable = true;
        }
        match forward_to_peer(conn, socket, &mut self.scratch) {
            Ok(progress) => moved |= progress,
            Err(_) => {
                socket.abort();
                return Step::Finished {
                    errno: libc::ECONNRESET,
                    reset_app: true,
                };
            }
        }
        if conn.app_gone && conn.options.reset_on_close {
            // SO_LINGER {1, 0}: Linux resets at close. What the program wrote first goes out
            // with the next poll of the interface, as far as the window allows. The reset
            // follows, and as on Linux nothing waits for the data to be acknowledged.
            // NOTE: a program that shuts down its write side after the peer's FIN looks
            // closed from here too (the socketpair reports a hang-up either way), so it
            // resets where Linux would send a FIN.
            if conn.reset_armed {
                socket.abort();
                return Step::Finished {
                    errno: libc::ECONNRESET,
                    reset_app: true,
                };
            }
            conn.reset_armed = true;
            moved = true;
        }
        if conn.app_gone {
            if socket.can_recv() {
                // Data for a program that closed its socket: Linux answers with a reset.
                socket.abort();
                return Step::Finished {
                    errno: libc::ECONNRESET,
                    reset_app: true,
                };
            }
            if socket.timeout().is_none() {
                socket.set_timeout(Some(ORPHAN_TIMEOUT));
            }
        }

        conn.record(socket, &mut self.latency);

        if !conn.peer_eof_sent && !socket.may_recv() && !socket.can_recv() && peer_sent_fin(state) {
            let _ = shutdown(conn.fd.as_raw_fd(), libc::SHUT_WR);
            conn.peer_eof_sent = true;
            moved = true;
        }

        // Closed after both FINs is an orderly end; reaching Closed any other way was a reset
        // or a timeout, which the program must see as an error, not as EOF.
        match state {
            State::Closed if !(conn.peer_eof_sent && conn.app_eof) => Step::Finished {
                errno: libc::ECONNRESET,
                reset_app: true,
            },
            State::Closed | State::TimeWait if conn.app_eof || conn.app_gone => Step::Finished {
                errno: 0,
                reset_app: false,
            },
            _ if moved => Step::Moved,
            _ => Step::Idle,
        }
    }

    fn report_connected(&mut self, key: usize, local: Option<SocketAddr>) {
        let conn = &mut self.conns[key];
        let micros = conn.started.elapsed().as_micros() as u64;
        self.latency.connect.record(micros);
        conn.own_latency().connect.record(micros);
        conn.phase = Phase::Open;
        conn.readable = true;
        conn.writable = true;
        let reply_to = conn.reply.take();
        let inode = conn.inode;
        let mut local = local;
        {
            let mut table = self.registry.lock();
            if let Some(entry) = table.sockets.get_mut(&inode) {
                entry.state = SocketState::Connected;
                local = local.map(|addr| mapped::for_domain(addr, entry.domain));
                if local.is_some() {
                    entry.local = local;
                }
            }
        }
        if let Some(to) = reply_to {
            let mut reply = Reply::ok(0);
            reply.local = WireAddr(local);
            self.completions.send(super::Completion { to, reply });
        }
    }

    /// Ends a connection: replies to a waiting connect, updates the registry and closes the
    /// socketpair. With `reset_app` one byte stays queued, so the program reads ECONNRESET.
    fn finish_conn(&mut self, key: usize, errno: i32, reset_app: bool) {
        let mut conn = self.conns.remove(key);
        self.by_inode.remove(&conn.inode);
        self.tos.remove_flow(conn.flow);
        self.retire(conn.handle);
        if let Some(to) = conn.reply {
            self.completions.send(super::Completion {
                to,
                reply: Reply::error(errno),
            });
        }
        self.registry.lock().mark_closed(conn.inode, errno);
        // A failed connect closes its end with the filler unread, so the program's end shows
        // the error before it turns writable (see `crate::connect_gate`).
        drop(conn.held.take());
        if !reset_app {
            drain(conn.fd.as_raw_fd(), &mut self.scratch);
        }
        drop(conn.fd);
    }

    /// Resets a connection from this side (worker shutdown).
    pub(super) fn abort_conn(&mut self, key: usize, errno: i32) {
        let handle = self.conns[key].handle;
        self.sockets.get_mut::<tcp::Socket>(handle).abort();
        self.finish_conn(key, errno, true);
    }
}

/// Size of the service end's send buffer: how much the worker can queue towards the program
/// before the socketpair pushes back and the TCP window closes.
const SERVICE_SNDBUF: libc::c_int = 2 * 1024 * 1024;

/// Readies a fresh stream socketpair: the sentinel byte goes into the program's end, the
/// service end peeks past it and gets a larger send buffer.
pub fn prepare_pair(app: BorrowedFd<'_>, service: BorrowedFd<'_>) -> io::Result<()> {
    send(
        app.as_raw_fd(),
        &[0],
        libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
    )?;
    set_int_option(service, libc::SOL_SOCKET, SO_PEEK_OFF, 1)?;
    set_int_option(service, libc::SOL_SOCKET, libc::SO_SNDBUF, SERVICE_SNDBUF)?;
    Ok(())
}

/// Sets what a smoltcp socket carries out itself: Nagle's algorithm, and the TTL when it
/// sends `ipv4` packets (IP_TTL does not apply to IPv6). Keepalive waits for the handshake
/// ([`apply_keepalive`]) and the TOS is written on egress.
pub fn apply_to_socket(socket: &mut tcp::Socket, options: &ConnectionOptions, ipv4: bool) {
    socket.set_nagle_enabled(!options.nodelay);
    socket.set_hop_limit(if ipv4 { options.ttl } else { None });
}

/// Starts or stops keepalive probes; the abort timer only runs with them, so an idle
/// connection without keepalive is never cut.
pub fn apply_keepalive(socket: &mut tcp::Socket, keepalive: Option<KeepAlive>) {
    socket.set_keep_alive(keepalive.map(|k| k.idle.into()));
    socket.set_timeout(keepalive.map(|k| k.give_up.into()));
}

/// Gives the program's end its send buffer back, reads back the filler that kept it
/// unwritable, and restores the peek offset.
fn complete_handshake(conn: &mut Conn, filler: usize) -> io::Result<()> {
    if let Some(held) = conn.held.take() {
        held.release()?;
    }
    read_back_filler(conn, filler)?;
    if filler > 0 {
        set_int_option(conn.fd.as_fd(), libc::SOL_SOCKET, SO_PEEK_OFF, 1)?;
    }
    Ok(())
}

/// Consumes `filler` bytes from the head of the socketpair queue (the sentinel and all but the
/// last filler byte, which stays queued in the sentinel's place).
fn read_back_filler(conn: &mut Conn, filler: usize) -> io::Result<()> {
    let fd = conn.fd.as_raw_fd();
    let mut left = filler;
    let mut buf = [0u8; 4096];
    while left > 0 {
        let n = recv(fd, &mut buf[..left.min(4096)], libc::MSG_DONTWAIT)?;
        if n == 0 {
            break;
        }
        left -= n;
    }
    Ok(())
}

/// Moves bytes the peer sent from smoltcp into the socketpair. Errors mean the program's end
/// is gone.
fn forward_to_app(conn: &mut Conn, socket: &mut tcp::Socket) -> io::Result<bool> {
    let fd = conn.fd.as_raw_fd();
    let mut moved = false;
    while conn.writable && socket.can_recv() {
        let result =
            socket.recv(
                |buf| match send(fd, buf, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) {
                    Ok(n) => (n, Ok(n)),
                    Err(e) => (0, Err(e)),
                },
            );
        match result {
            Ok(Ok(n)) => {
                conn.to_app += n as u64;
                moved = true;
            }
            Ok(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => conn.writable = false,
            Ok(Err(e)) => return Err(e),
            Err(_) => break,
        }
    }
    Ok(moved)
}

/// Moves bytes the program wrote from the socketpair into smoltcp, and turns the program's
/// EOF into a FIN. Errors mean the program closed with data unread (reset the peer).
fn forward_to_peer(
    conn: &mut Conn,
    socket: &mut tcp::Socket,
    scratch: &mut [u8],
) -> io::Result<bool> {
    let fd = conn.fd.as_raw_fd();
    let mut moved = false;
    while conn.readable && !conn.app_eof && socket.can_send() {
        let result = socket.send(|buf| {
            let len = buf.len().min(scratch.len());
            match recv(fd, &mut buf[..len], libc::MSG_PEEK | libc::MSG_DONTWAIT) {
                Ok(n) => (n, Ok(n)),
                Err(e) => (0, Err(e)),
            }
        });
        match result {
            // A program that closed with SO_LINGER {1, 0} gets a reset and no FIN.
            Ok(Ok(0)) if conn.options.reset_on_close && is_hung_up(fd) => {
                conn.app_eof = true;
                conn.app_gone = true;
                moved = true;
            }
            Ok(Ok(0)) => {
                socket.close();
                conn.app_eof = true;
                moved = true;
            }
            Ok(Ok(n)) => {
                consume(fd, n, scratch)?;
                conn.to_stack += n as u64;
                moved = true;
            }
            Ok(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => conn.readable = false,
            Ok(Err(e)) => return Err(e),
            Err(_) => break,
        }
    }
    Ok(moved)
}

/// Removes `len` forwarded bytes from the head of the queue (the peek offset moves back with
/// them, so it stays one byte past the head).
fn consume(fd: RawFd, mut len: usize, scratch: &mut [u8]) -> io::Result<()> {
    while len > 0 {
        let chunk = len.min(scratch.len());
        let n = recv(fd, &mut scratch[..chunk], libc::MSG_DONTWAIT)?;
        if n == 0 {
            break;
        }
        len -= n;
    }
    Ok(())
}

/// Reads and drops everything still queued, so closing the socketpair shows EOF, not a reset.
fn drain(fd: RawFd, scratch: &mut [u8]) {
    while let Ok(n) = recv(fd, scratch, libc::MSG_DONTWAIT) {
        if n == 0 {
            break;
        }
    }
}

fn peer_sent_fin(state: State) -> bool {
    matches!(
        state,
        State::CloseWait | State::LastAck | State::Closing | State::TimeWait
    )
}
