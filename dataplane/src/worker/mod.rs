//! A worker: one pinned thread that owns a TAP queue, an io_uring, a smoltcp `Interface` and
//! the connections assigned to it. Each wake-up it reaps completions, runs smoltcp, moves bytes
//! between smoltcp sockets and the socketpairs, and submits the resulting TAP writes in one
//! batch.

mod command;
mod conn;
mod datagram;
mod device;
mod listener;
mod pair;
mod ring;
mod schedule;
mod stack;

pub use command::{
    Command, Completion, ConnectJob, DatagramJob, DatagramPeerJob, ListenJob, OptionJob, ReplyTo,
    Snapshot,
};
pub use pair::prepare_pair;
pub use stack::StackConfig;

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam::channel::{Receiver, Sender};
use slab::Slab;
use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp;

use crate::hairpin;
use crate::registry::{Inode, Registry};
use crate::stats::{self, LatencySet, WorkerStats};
use crate::steer::{Steer, TcpFlow, steer};
use crate::sys::socket::{epoll_create, epoll_wait, eventfd, eventfd_drain, eventfd_signal};
use crate::tos::{Flow, TosTable};
use conn::Conn;
use device::RingDevice;
use listener::Listener;
use ring::{Ring, Token};

pub use crate::steer::WorkerId;

/// TAP reads kept posted. Enough to absorb a burst of full-size segments between two
/// wake-ups without the kernel dropping frames for lack of a reader.
const RX_FRAMES: usize = 64;

/// Transmit buffers; bounds how many frames one wake-up can emit.
const TX_FRAMES: usize = 256;

/// Rounds of ingress, pumps and egress per wake-up before the worker checks its ring again.
/// Each round feeds what the previous one produced, such as frames turned around inside
/// netcon-dp or connections a listener delivered. The bound keeps TAP completions and
/// commands from waiting behind a busy stack.
const SERVICE_ROUNDS: usize = 4;

/// Epoll events handled per wake-up; more stay queued for the next one.
const EPOLL_BATCH: usize = 256;

/// How long an aborted socket may wait for its reset to be sent before it is dropped anyway
/// (when no transmit buffer or no neighbour entry comes free).
const RESET_GRACE: Duration = Duration::from_secs(1);

/// Epoll tokens at or above this value name listeners; below it, connections.
const LISTENER_TOKEN: u64 = 1 << 40;

/// Epoll tokens at or above this value name UDP sockets.
const UDP_TOKEN: u64 = 1 << 41;

/// A way to hand replies to the control thread and wake it.
#[derive(Clone)]
pub struct CompletionSender {
    pub channel: Sender<Completion>,
    pub wake: Arc<OwnedFd>,
}

impl CompletionSender {
    /// Queues `completion` and wakes the control thread.
    pub fn send(&self, completion: Completion) {
        if self.channel.send(completion).is_ok() {
            eventfd_signal(self.wake.as_raw_fd());
        }
    }
}

/// The control thread's handle on a running worker.
pub struct WorkerHandle {
    pub id: WorkerId,
    pub stats: Arc<WorkerStats>,
    commands: Sender<Command>,
    wake: Arc<OwnedFd>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl WorkerHandle {
    /// Queues `command` and wakes the worker. Never blocks.
    pub fn send(&self, command: Command) {
        if self.commands.send(command).is_ok() {
            eventfd_signal(self.wake.as_raw_fd());
        }
    }

    /// A sender for commands that other threads can keep (for `netcon-ctl` requests served off
    /// the control thread).
    pub fn remote(&self) -> RemoteWorker {
        RemoteWorker {
            commands: self.commands.clone(),
            wake: self.wake.clone(),
        }
    }

    /// Asks the worker to stop and waits for its thread.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        eventfd_signal(self.wake.as_raw_fd());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A worker's command queue, usable from any thread.
#[derive(Clone)]
pub struct RemoteWorker {
    commands: Sender<Command>,
    wake: Arc<OwnedFd>,
}

impl RemoteWorker {
    /// Queues `command` and wakes the worker. Never blocks.
    pub fn send(&self, command: Command) {
        if self.commands.send(command).is_ok() {
            eventfd_signal(self.wake.as_raw_fd());
        }
    }
}

/// How a worker reaches another: frames it read for the other's connections go on `frames`,
/// and `wake` interrupts the other's wait.
struct Peer {
    frames: Sender<Vec<u8>>,
    wake: Arc<OwnedFd>,
}

/// What a worker shares with the rest of the process.
struct Links {
    peers: Arc<Vec<Peer>>,
    frames: Receiver<Vec<u8>>,
    commands: Receiver<Command>,
    wake: Arc<OwnedFd>,
    stop: Arc<AtomicBool>,
    registry: Arc<Registry>,
    completions: CompletionSender,
    stats: Arc<WorkerStats>,
}

/// Starts one worker per TAP queue, worker i pinned to `cores[i]` when given.
pub fn spawn_all(
    queues: Vec<OwnedFd>,
    stack: &StackConfig,
    cores: &[Option<core_affinity::CoreId>],
    registry: &Arc<Registry>,
    completions: &CompletionSender,
) -> io::Result<Vec<WorkerHandle>> {
    let mut peers = Vec::new();
    let mut receivers = Vec::new();
    for _ in &queues {
        let (frames_tx, frames_rx) = crossbeam::channel::unbounded();
        peers.push(Peer {
            frames: frames_tx,
            wake: Arc::new(eventfd()?),
        });
        receivers.push(frames_rx);
    }
    let peers = Arc::new(peers);

    let mut handles = Vec::new();
    for (index, (tap, frames)) in queues.into_iter().zip(receivers).enumerate() {
        let id = WorkerId(index);
        let (commands_tx, commands_rx) = crossbeam::channel::unbounded();
        let wake = peers[index].wake.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let worker_stats = Arc::new(WorkerStats::default());
        let links = Links {
            stats: worker_stats.clone(),
            peers: peers.clone(),
            frames,
            commands: commands_rx,
            wake: wake.clone(),
            stop: stop.clone(),
            registry: registry.clone(),
            completions: completions.clone(),
        };
        let mut worker = Worker::new(id, tap, stack.clone(), links)?;
        let core = cores.get(index).copied().flatten();
        let thread = std::thread::Builder::new()
            .name(format!("netcon-worker-{index}"))
            .spawn(move || {
                if let Some(core) = core
                    && !core_affinity::set_for_current(core)
                {
                    log::warn!("worker {index}: could not pin to core {}", core.id);
                }
                if let Err(e) = worker.run() {
                    log::error!("worker {index} stopped: {e}");
                }
            })?;
        handles.push(WorkerHandle {
            id,
            stats: worker_stats,
            commands: commands_tx,
            wake,
            stop,
            thread: Some(thread),
        });
    }
    Ok(handles)
}

/// Everything one worker owns.
struct Worker {
    id: WorkerId,
    _tap: OwnedFd,
    ring: Ring,
    device: RingDevice,
    iface: Interface,
    sockets: SocketSet<'static>,
    stack: StackConfig,
    /// The stack's IPv6 addresses besides ::1, for turning frames around.
    own_ipv6: hairpin::OwnIpv6,
    conns: Slab<Conn>,
    by_inode: HashMap<Inode, usize>,
    /// The connection each TCP flow belongs to, for routing ingress segments to its socket.
    flows: HashMap<TcpFlow, usize>,
    /// Connections to visit, and their timers.
    schedule: schedule::Schedule,
    listeners: Slab<Listener>,
    datagrams: datagram::DatagramTable,
    epoll: OwnedFd,
    wake: Arc<OwnedFd>,
    stop: Arc<AtomicBool>,
    commands: Receiver<Command>,
    registry: Arc<Registry>,
    completions: CompletionSender,
    peers: Arc<Vec<Peer>>,
    /// Frames other workers read for this worker's connections.
    handed: Receiver<Vec<u8>>,
    /// Bit i set: worker i was handed frames since it was last woken.
    peers_to_wake: u64,
    /// Completions of one reap (user_data, result, flags), kept to reuse its allocation.
    completed: Vec<(u64, i32, u32)>,
    stats: Arc<WorkerStats>,
    /// Latencies of every connection this worker has owned.
    latency: LatencySet,
    /// Slab keys of one listener round, kept to reuse their allocation.
    listener_keys: Vec<usize>,
    /// Rotates new connections over the SO_REUSEPORT listeners of a port.
    reuseport_turn: usize,
    clock: stack::Clock,
    /// Where bytes already forwarded from a socketpair are read to, to discard them.
    scratch: Box<[u8]>,
    /// The TOS byte written into the egress packets of each connection that set IP_TOS.
    tos: TosTable,
    /// Aborted sockets kept until smoltcp has sent their reset, with a deadline and the TOS
    /// entry of their connection.
    retiring: Vec<(SocketHandle, std::time::Instant, Option<Flow>)>,
    /// The TOS entries of finished connections, removed once the frames those connections
    /// queued last have been marked (at the end of [`Worker::turn_around`]).
    tos_ended: Vec<Flow>,
}

impl Worker {
    fn new(id: WorkerId, tap: OwnedFd, stack: StackConfig, links: Links) -> io::Result<Worker> {
        let mut device =
            RingDevice::new(stack.medium, stack.mtu, stack.offload, RX_FRAMES, TX_FRAMES)
                .with_steering(id, links.peers.len());
        let clock = stack::Clock::new();
        let iface = stack.interface(&mut device, clock.now());
        Ok(Worker {
            id,
            ring: Ring::new(tap.as_raw_fd(), links.stats.clone())?,
            _tap: tap,
            device,
            iface,
            sockets: SocketSet::new(Vec::new()),
            own_ipv6: stack.own_ipv6(),
            stack,
            conns: Slab::new(),
            by_inode: HashMap::new(),
            flows: HashMap::new(),
            schedule: schedule::Schedule::default(),
            listeners: Slab::new(),
            datagrams: datagram::DatagramTable::new(),
            epoll: epoll_create()?,
            wake: links.wake,
            stop: links.stop,
            commands: links.commands,
            registry: links.registry,
            completions: links.completions,
            peers: links.peers,
            handed: links.frames,
            peers_to_wake: 0,
            completed: Vec::with_capacity(ring::RING_ENTRIES as usize),
            stats: links.stats,
            latency: LatencySet::new(3),
            listener_keys: Vec::new(),
            reuseport_turn: 0,
            clock,
            scratch: vec![0u8; pair::SCRATCH_LEN].into_boxed_slice(),
            tos: TosTable::default(),
            retiring: Vec::new(),
            tos_ended: Vec::new(),
        })
    }

    fn run(&mut self) -> io::Result<()> {
        self.ring.arm_poll(self.epoll.as_raw_fd(), Token::Epoll);
        self.ring.arm_poll(self.wake.as_raw_fd(), Token::Wake);
        self.ring.post_reads(&mut self.device);
        log::debug!("worker {} running", self.id.0);

        while !self.stop.load(Ordering::Acquire) {
            self.reap_completions();
            self.take_commands();
            self.take_handed_frames();
            let busy = self.service();
            // Frames turned around to another worker's socket were handed over during the
            // service run; that worker must not sleep on them.
            self.wake_peers();
            self.ring.post_reads(&mut self.device);
            self.ring.post_writes(&mut self.device);
            self.publish_gauges();
            let timeout = if busy {
                Some(Duration::ZERO)
            } else {
                self.next_timeout()
            };
            self.ring.submit_and_wait(timeout)?;
        }
        self.shutdown();
        Ok(())
    }

    /// Runs smoltcp and the byte pumps of the connections that events marked, until nothing
    /// moves. Returns whether work is left that needs no new event: frames still queued, or
    /// connections marked again.
    fn service(&mut self) -> bool {
        self.expire_timers(self.clock.now());
        for _ in 0..SERVICE_ROUNDS {
            let now = self.clock.now();
            self.poll_ingress(now);
            self.hand_reassembled();
            let mut moved = self.pump_listeners();
            moved |= self.pump_datagrams();
            self.poll_shared_egress(now);
            moved |= self.visit_dirty(now);
            // Frames for the stack's own addresses go back to ingress for the next round.
            self.turn_around();
            let ingress = &self.device.ingress;
            let queued = !ingress.ready.is_empty() || !ingress.handed.is_empty();
            if !moved && !queued && !self.schedule.has_dirty() {
                return false;
            }
        }
        true
    }

    /// Removes a finished connection's socket, or keeps an aborted one until smoltcp has sent
    /// its reset (smoltcp sends it on the next poll and then clears the socket's endpoints).
    /// The connection's TOS entry, `flow`, goes when the socket does.
    fn retire(&mut self, handle: SocketHandle, flow: Option<Flow>) {
        let socket = self.sockets.get::<tcp::Socket>(handle);
        let reset_pending =
            socket.state() == tcp::State::Closed && socket.local_endpoint().is_some();
        if reset_pending {
            let deadline = std::time::Instant::now() + RESET_GRACE;
            self.retiring.push((handle, deadline, flow));
        } else {
            self.sockets.remove(handle);
            self.tos_ended.extend(flow);
        }
    }

    /// Retires a finished connection's socket, which lives in `set`: an aborted one moves to
    /// the shared set until its reset is sent, anything else is dropped with the set.
    fn retire_own(&mut self, set: &mut SocketSet<'static>, handle: SocketHandle, flow: Flow) {
        let socket = set.get::<tcp::Socket>(handle);
        if socket.state() == tcp::State::Closed && socket.local_endpoint().is_some() {
            let handle = self.sockets.add(set.remove(handle));
            self.retire(handle, Some(flow));
        } else {
            self.tos_ended.push(flow);
        }
    }

    fn drop_retired(&mut self) {
        let now = std::time::Instant::now();
        let sockets = &mut self.sockets;
        let tos_ended = &mut self.tos_ended;
        self.retiring.retain(|&(handle, deadline, flow)| {
            let sent = sockets
                .get::<tcp::Socket>(handle)
                .local_endpoint()
                .is_none();
            if sent || now >= deadline {
                sockets.remove(handle);
                tos_ended.extend(flow);
                return false;
            }
            true
        });
    }

    /// How long the worker may sleep: until the next smoltcp timer of the shared set or of a
    /// connection. Connections waiting for transmit buffers wait for the TAP writes in flight
    /// to complete, unless buffers are free already.
    fn next_timeout(&mut self) -> Option<Duration> {
        let now = self.clock.now();
        let shared = self.iface.poll_at(now, &self.sockets);
        let blocked =
            (self.schedule.has_blocked() && !self.device.egress.free.is_empty()).then_some(now);
        let at = [shared, self.schedule.next_deadline(), blocked]
            .into_iter()
            .flatten()
            .min()?;
        let delay = if at > now {
            at - now
        } else {
            Default::default()
        };
        Some(Duration::from_micros(delay.total_micros()))
    }

    fn reap_completions(&mut self) {
        let mut epoll_ready = false;
        let mut rearm = Vec::new();
        self.completed.clear();
        self.completed.extend(
            self.ring
                .uring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        stats::add(&self.stats.cqes, self.completed.len() as u64);
        for index in 0..self.completed.len() {
            let (user_data, result, flags) = self.completed[index];
            let more = io_uring::cqueue::more(flags);
            match Token::decode(user_data) {
                Some(Token::TapRead) => {
                    if !more {
                        // Out of buffers (ENOBUFS) or an error: posted again once buffers
                        // are back.
                        self.ring.read_armed = false;
                    }
                    let Some(index) = io_uring::cqueue::buffer_select(flags) else {
                        if result != -libc::ENOBUFS {
                            stats::add(&self.stats.tap_errors, 1);
                        }
                        continue;
                    };
                    match usize::try_from(result) {
                        Ok(len) if len > 0 => {
                            stats::add(&self.stats.frames_in, 1);
                            stats::add(&self.stats.bytes_in, len as u64);
                            self.route_frame(index, len);
                        }
                        _ => {
                            stats::add(&self.stats.tap_errors, 1);
                            self.device.ingress.consumed.push(index);
                        }
                    }
                }
                Some(Token::Provide) if result < 0 => stats::add(&self.stats.tap_errors, 1),
                Some(Token::Provide) => {}
                Some(Token::TapWrite(index)) => {
                    if result < 0 {
                        stats::add(&self.stats.tap_errors, 1);
                    }
                    self.device.egress.free.push(index);
                }
                Some(Token::Epoll) => {
                    epoll_ready = true;
                    if !more {
                        rearm.push(Token::Epoll);
                    }
                }
                Some(Token::Wake) => {
                    eventfd_drain(self.wake.as_raw_fd());
                    if !more {
                        rearm.push(Token::Wake);
                    }
                }
                None => {}
            }
        }
        for token in rearm {
            let fd = match token {
                Token::Epoll => self.epoll.as_raw_fd(),
                _ => self.wake.as_raw_fd(),
            };
            self.ring.arm_poll(fd, token);
        }
        if epoll_ready {
            self.take_socket_events();
        }
        self.wake_peers();
    }

    /// Queues a frame the TAP delivered for this worker, or hands it to the worker that owns
    /// its connection (to every worker, for ARP).
    fn route_frame(&mut self, index: device::FrameIndex, len: usize) {
        let workers = self.peers.len();
        let decision = if workers > 1 {
            let (start, l2_len) = (self.device.header_len(), self.device.l2_len());
            let bytes = &self.device.ingress.pool.buffer_mut(index)[..len];
            steer(&bytes[start.min(len)..], l2_len, workers)
        } else {
            Steer::Here
        };
        match decision {
            Steer::To(owner) if owner != self.id => {
                self.hand_over(owner, index, len);
                self.device.ingress.consumed.push(index);
            }
            Steer::Everyone => {
                let own = self.id;
                for other in (0..workers).map(WorkerId).filter(|w| *w != own) {
                    self.hand_over(other, index, len);
                }
                self.device.ingress.ready.push_back((index, len));
            }
            _ => {
                let (start, l2_len) = (self.device.header_len(), self.device.l2_len());
                let bytes = &self.device.ingress.pool.buffer_mut(index)[..len];
                self.datagrams.note_error(&bytes[start.min(len)..], l2_len);
                self.device.ingress.ready.push_back((index, len));
            }
        }
    }

    fn hand_over(&mut self, to: WorkerId, index: device::FrameIndex, len: usize) {
        let frame = self.device.ingress.copy_for_handoff(index, len);
        self.send_to_peer(to, frame);
    }

    fn send_to_peer(&mut self, to: WorkerId, frame: Vec<u8>) {
        if self.peers[to.0].frames.send(frame).is_ok() {
            stats::add(&self.stats.handed_out, 1);
            self.peers_to_wake |= 1 << to.0;
        }
    }

    /// Takes the frames smoltcp queued for one of its own addresses off the TAP's queue and
    /// delivers them back into the stack (to the worker owning their connection), answering
    /// ARP requests and neighbour solicitations for those addresses on the way (see
    /// [`crate::hairpin`]). Frames that stay on the queue get the TOS or traffic class of
    /// their connection (see [`crate::tos`]).
    fn turn_around(&mut self) {
        let (start, l2_len) = (self.device.header_len(), self.device.l2_len());
        let address = self.stack.address;
        let own_ipv6 = self.own_ipv6;
        let mut index = 0;
        while index < self.device.egress.queued.len() {
            let (buffer, len) = self.device.egress.queued[index];
            let bytes = &mut self.device.egress.pool.buffer_mut(buffer)[..len];
            let frame = &bytes[start.min(len)..];
            let decision = hairpin::classify(frame, l2_len, address, &own_ipv6);
            let turned = match decision {
                hairpin::Egress::Wire => {
                    if !self.tos.is_empty() {
                        let packet = bytes.get_mut(start + l2_len..).unwrap_or_default();
                        self.tos.mark(packet);
                    }
                    index += 1;
                    continue;
                }
                hairpin::Egress::TurnAround => self.device.ingress.copy_bytes(bytes),
                hairpin::Egress::AnswerArp => {
                    let Some(reply) = hairpin::arp_reply(frame, self.stack.mac) else {
                        index += 1;
                        continue;
                    };
                    let mut turned = self.device.ingress.copy_bytes(&bytes[..start.min(len)]);
                    turned.extend_from_slice(&reply);
                    turned
                }
                hairpin::Egress::AnswerSolicitation => {
                    let Some(advert) = hairpin::neighbour_advertisement(frame, self.stack.mac)
                    else {
                        index += 1;
                        continue;
                    };
                    let mut turned = self.device.ingress.copy_bytes(&bytes[..start.min(len)]);
                    turned.extend_from_slice(&advert);
                    turned
                }
            };
            // `remove`, not `swap_remove`: the frames behind keep their order, which UDP
            // datagrams of one flow must (at most TX_FRAMES entries are shifted).
            self.device.egress.queued.remove(index);
            self.device.egress.free.push(buffer);
            self.deliver_turned(turned, start, l2_len);
        }
        for flow in self.tos_ended.drain(..) {
            self.tos.remove_flow(flow);
        }
    }

    fn deliver_turned(&mut self, frame: Vec<u8>, start: usize, l2_len: usize) {
        let workers = self.peers.len();
        let decision = steer(&frame[start.min(frame.len())..], l2_len, workers);
        match decision {
            Steer::To(owner) if owner != self.id => self.send_to_peer(owner, frame),
            _ => {
                let bytes = &frame[start.min(frame.len())..];
                self.datagrams.note_error(bytes, l2_len);
                self.device.ingress.handed.push_back(frame);
            }
        }
    }

    /// Hands the packets reassembled here that belong to other workers to them.
    fn hand_reassembled(&mut self) {
        let (start, l2_len) = (self.device.header_len(), self.device.l2_len());
        for frame in std::mem::take(&mut self.device.ingress.rerouted) {
            self.deliver_turned(frame, start, l2_len);
        }
    }

    fn wake_peers(&mut self) {
        while self.peers_to_wake != 0 {
            let index = self.peers_to_wake.trailing_zeros() as usize;
            self.peers_to_wake &= !(1 << index);
            eventfd_signal(self.peers[index].wake.as_raw_fd());
        }
    }

    fn take_handed_frames(&mut self) {
        let (start, l2_len) = (self.device.header_len(), self.device.l2_len());
        while let Ok(frame) = self.handed.try_recv() {
            stats::add(&self.stats.handed_in, 1);
            let bytes = &frame[start.min(frame.len())..];
            self.datagrams.note_error(bytes, l2_len);
            self.device.ingress.handed.push_back(frame);
        }
    }

    /// Stores the counts that are kept elsewhere where `netcon-ctl status` reads them.
    fn publish_gauges(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        self.stats
            .tx_dropped
            .store(self.device.egress.dropped, Relaxed);
        self.stats
            .fragments_dropped
            .store(self.device.ingress.reassembler.dropped, Relaxed);
        self.stats
            .connections
            .store(self.conns.len() as u64, Relaxed);
        self.stats
            .listeners
            .store(self.listeners.len() as u64, Relaxed);
        self.stats
            .udp_sockets
            .store(self.datagrams.sockets.len() as u64, Relaxed);
    }

    fn send_snapshot(&self, reply: crossbeam::channel::Sender<Snapshot>) {
        let connections = self
            .conns
            .iter()
            .filter_map(|(_, conn)| Some((conn.inode, conn.latency.as_deref()?.clone())))
            .collect();
        let _ = reply.send(Snapshot {
            worker: self.id,
            total: self.latency.clone(),
            connections,
        });
    }

    fn take_socket_events(&mut self) {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; EPOLL_BATCH];
        let count = epoll_wait(self.epoll.as_raw_fd(), &mut events, 0).unwrap_or(0);
        for event in &events[..count] {
            let (flags, token) = (event.events, event.u64);
            if token >= UDP_TOKEN {
                let key = (token - UDP_TOKEN) as usize;
                if let Some(socket) = self.datagrams.sockets.get_mut(key) {
                    socket.note_events(flags);
                }
            } else if token >= LISTENER_TOKEN {
                if let Some(listener) = self.listeners.get_mut((token - LISTENER_TOKEN) as usize) {
                    listener.note_events(flags);
                }
            } else if let Some(conn) = self.conns.get_mut(token as usize) {
                conn.note_events(flags);
                self.mark_dirty(token as usize);
            }
        }
    }

    fn take_commands(&mut self) {
        while let Ok(command) = self.commands.try_recv() {
            match command {
                Command::Connect(job) => self.start_connect(job),
                Command::Listen(job) => self.start_listen(job),
                Command::SetOptions(job) => self.apply_options(job),
                Command::Snapshot(reply) => self.send_snapshot(reply),
                Command::OpenDatagram(job) => self.open_datagram(job),
                Command::SetDatagramPeer(job) => self.set_datagram_peer(job),
                Command::SetDatagramBuffer(inode, bytes) => self.size_datagram(inode, bytes),
            }
        }
    }

    fn shutdown(&mut self) {
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.abort_conn(key, libc::ECONNABORTED);
        }
        log::debug!("worker {} stopped", self.id.0);
    }
}
