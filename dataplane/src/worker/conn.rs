//! One TCP connection and the pump that moves its bytes between the smoltcp socket and the
//! service end of its socketpair (see [`super::pair`] for how the bytes move).

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};

use netcon_control::{Reply, WireAddr};
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp::{self, State};
use smoltcp::time::{Duration, Instant};

use super::pair::{complete_handshake, drain, forward_to_app, forward_to_peer};
use super::schedule::own_set;
use super::stack::{endpoint, socket_addr};
use super::{ConnectJob, OptionJob, ReplyTo, Worker};
use crate::connect_gate::HeldEnd;
use crate::mapped;
use crate::neighbour::RESOLUTION_TIMEOUT;
use crate::options::{ConnectionOptions, KeepAlive};
use crate::registry::{Inode, SocketState};
use crate::stats::{ConnStats, LatencySet, Sampler};
use crate::steer::TcpFlow;
use crate::sys::socket::{epoll_add, shutdown};
use crate::tos::Flow;
use std::sync::Arc;

/// How long a handshake may take before connect fails with ETIMEDOUT (Linux gives up after
/// about 127 s with its default of 6 SYN retries; a shorter bound keeps failures prompt).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a connection whose program has closed may take to finish its FIN exchange.
const ORPHAN_TIMEOUT: Duration = Duration::from_secs(60);

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
    /// The set holding only this connection's smoltcp socket (see [`super::schedule`]).
    pub set: SocketSet<'static>,
    pub handle: SocketHandle,
    pub fd: OwnedFd,
    pub inode: Inode,
    phase: Phase,
    reply: Option<ReplyTo>,
    /// The socketpair had data or EOF at the last event and has not hit EAGAIN since.
    pub(super) readable: bool,
    /// The socketpair had room at the last event and has not hit EAGAIN since.
    pub(super) writable: bool,
    /// The program closed or shut down its sending side; a FIN was queued.
    pub(super) app_eof: bool,
    /// The program's end is gone entirely (EPOLLHUP, EPIPE or ECONNRESET).
    pub(super) app_gone: bool,
    /// The socketpair reported that the program shut down its sending side or closed
    /// (EPOLLRDHUP, EPOLLHUP or EPOLLERR), so a read past the queued bytes can find EOF.
    pub(super) shut_seen: bool,
    /// The peer's FIN was passed on as `shutdown(SHUT_WR)`.
    peer_eof_sent: bool,
    started: std::time::Instant,
    /// Bytes moved from the program into the stack, and from the stack to the program.
    pub(super) to_stack: u64,
    pub(super) to_app: u64,
    stats: Arc<ConnStats>,
    /// This connection's latencies, made on its first sample.
    pub latency: Option<Box<LatencySet>>,
    ack_sampler: Sampler,
    ingress_sampler: Sampler,
    /// The socket options the stack carries out; keepalive starts once the handshake ends.
    pub(super) options: ConnectionOptions,
    /// The program closed its socket with SO_LINGER {1, 0}: what it wrote before goes out
    /// with the next poll of the interface, then the connection is reset.
    reset_armed: bool,
    /// The program's end of a non-blocking connect, until the handshake ends.
    pub(super) held: Option<HeldEnd>,
    /// Local port and remote endpoint, the key of the worker's TOS table.
    flow: Flow,
    /// The 4-tuple its ingress segments carry, the key of the worker's flow table.
    tcp_flow: Option<TcpFlow>,
    /// A segment from the peer closed the connection (a reset). Anything else that closes it
    /// is a smoltcp timer (keepalive, TCP_USER_TIMEOUT), which Linux reports as ETIMEDOUT.
    closed_by_peer: bool,
    /// Marked for the next visit (see [`super::schedule`]).
    pub dirty: bool,
    /// When its smoltcp timer fires, as scheduled.
    pub timer_at: Option<Instant>,
}

impl Conn {
    fn new(
        set: SocketSet<'static>,
        handle: SocketHandle,
        fd: OwnedFd,
        inode: Inode,
        phase: Phase,
        stats: Arc<ConnStats>,
        flow: Flow,
    ) -> Conn {
        let open = phase == Phase::Open;
        Conn {
            set,
            handle,
            fd,
            inode,
            phase,
            reply: None,
            readable: open,
            writable: open,
            app_eof: false,
            app_gone: false,
            shut_seen: false,
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
            tcp_flow: None,
            closed_by_peer: false,
            dirty: false,
            timer_at: None,
        }
    }

    /// A connection a listener accepted: established, with the program's end already sent,
    /// and the listener's options.
    pub fn accepted(
        set: SocketSet<'static>,
        handle: SocketHandle,
        fd: OwnedFd,
        inode: Inode,
        stats: Arc<ConnStats>,
        flow: Flow,
        options: ConnectionOptions,
    ) -> Conn {
        let mut conn = Conn::new(set, handle, fd, inode, Phase::Open, stats, flow);
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
    /// Hands one ingress frame of this connection's flow to smoltcp, and notes whether it
    /// closed the connection: only a reset does, where timers close it on egress.
    pub(super) fn take_ingress<D: smoltcp::phy::Device>(
        &mut self,
        iface: &mut smoltcp::iface::Interface,
        now: Instant,
        device: &mut D,
    ) {
        let state = |set: &SocketSet<'static>| set.get::<tcp::Socket>(self.handle).state();
        let before = state(&self.set);
        iface.poll_ingress_single(now, device, &mut self.set);
        if before != State::Closed && state(&self.set) == State::Closed {
            self.closed_by_peer = true;
        }
    }

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
        if flags & libc::EPOLLRDHUP as u32 != 0 || flags & hangup != 0 {
            self.shut_seen = true;
        }
    }
}

/// What one step of a pump found.
pub(super) enum Step {
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
        let (set, handle) = own_set(socket);
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
        let mut conn = Conn::new(set, handle, job.fd, job.inode, phase, job.stats, flow);
        conn.reply = job.reply;
        conn.options = job.options;
        conn.held = job.held;
        self.insert_conn(conn);
    }

    /// Takes a connection into the pump, watching its socketpair with edge-triggered epoll,
    /// and marks it for the next visit.
    pub(super) fn insert_conn(&mut self, mut conn: Conn) -> usize {
        let fd = conn.fd.as_raw_fd();
        let inode = conn.inode;
        self.tos
            .set_flow(conn.flow, conn.options.mark_for(conn.flow.remote));
        conn.tcp_flow = tcp_flow(conn.set.get::<tcp::Socket>(conn.handle));
        let tcp_flow = conn.tcp_flow;
        let key = self.conns.insert(conn);
        if let Some(flow) = tcp_flow {
            self.flows.insert(flow, key);
        }
        self.mark_dirty(key);
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
        let socket = conn.set.get_mut::<tcp::Socket>(conn.handle);
        apply_to_socket(socket, &job.options, conn.flow.remote.is_ipv4());
        conn.options = job.options;
        if conn.phase == Phase::Open {
            apply_keepalive(socket, job.options.keepalive);
        }
        self.tos
            .set_flow(conn.flow, job.options.mark_for(conn.flow.remote));
        self.mark_dirty(key);
    }

    /// Moves connection `key`'s bytes and states one step.
    pub(super) fn pump(&mut self, key: usize) -> Step {
        // The socket's set is taken out while the pump works, so the connection and its
        // socket can be borrowed together; an empty set allocates nothing.
        let mut set = std::mem::replace(&mut self.conns[key].set, SocketSet::new(Vec::new()));
        let handle = self.conns[key].handle;
        let step = self.pump_socket(key, set.get_mut::<tcp::Socket>(handle));
        self.conns[key].set = set;
        step
    }

    fn pump_socket(&mut self, key: usize, socket: &mut tcp::Socket<'static>) -> Step {
        let conn = &mut self.conns[key];
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
        } else {
            arm_user_timeout(socket, &conn.options);
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
                errno: if conn.closed_by_peer {
                    libc::ECONNRESET
                } else {
                    libc::ETIMEDOUT
                },
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
    pub(super) fn finish_conn(&mut self, key: usize, errno: i32, reset_app: bool) {
        let mut conn = self.conns.remove(key);
        self.by_inode.remove(&conn.inode);
        // A newer connection of the same 4-tuple may have taken the entry over.
        if let Some(flow) = conn.tcp_flow
            && self.flows.get(&flow) == Some(&key)
        {
            self.flows.remove(&flow);
        }
        self.retire_own(&mut conn.set, conn.handle, conn.flow);
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
        let conn = &mut self.conns[key];
        conn.set.get_mut::<tcp::Socket>(conn.handle).abort();
        self.finish_conn(key, errno, true);
    }
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

/// Applies TCP_USER_TIMEOUT to a connection without keepalive. Linux then aborts only when
/// sent data stays unacknowledged that long, but smoltcp's timeout also cuts a connection
/// that is merely idle, so it is set only while data waits for an acknowledgement.
fn arm_user_timeout(socket: &mut tcp::Socket, options: &ConnectionOptions) {
    if options.keepalive.is_some() {
        return;
    }
    let Some(limit) = options.user_timeout else {
        return;
    };
    let timeout = (socket.send_queue() > 0).then_some(limit.into());
    if socket.timeout() != timeout {
        socket.set_timeout(timeout);
    }
}

/// Returns the 4-tuple of `socket`'s ingress segments, once it has both endpoints.
fn tcp_flow(socket: &tcp::Socket) -> Option<TcpFlow> {
    let (local, remote) = (socket.local_endpoint()?, socket.remote_endpoint()?);
    Some(TcpFlow {
        local: local.addr.into(),
        local_port: local.port,
        remote: remote.addr.into(),
        remote_port: remote.port,
    })
}

fn peer_sent_fin(state: State) -> bool {
    matches!(
        state,
        State::CloseWait | State::LastAck | State::Closing | State::TimeWait
    )
}
