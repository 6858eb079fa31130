//! A worker: one pinned thread that owns a TAP queue, an io_uring, a smoltcp `Interface` and
//! the connections assigned to it. Each wake-up it reaps completions, runs smoltcp, moves bytes
//! between smoltcp sockets and the socketpairs, and submits the resulting TAP writes in one
//! batch.

mod command;
mod conn;
mod device;
mod listener;
mod offload;
mod ring;
mod stack;

pub use command::{Command, Completion, ConnectJob, ListenJob, OptionJob, ReplyTo};
pub use conn::prepare_pair;
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
use smoltcp::iface::{Interface, SocketSet};

use crate::registry::{Inode, Registry};
use crate::sys::socket::{epoll_create, epoll_wait, eventfd, eventfd_drain, eventfd_signal};
use conn::Conn;
use device::RingDevice;
use listener::Listener;
use ring::{Ring, Token};

/// Index of a worker, 0-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WorkerId(pub usize);

/// TAP reads kept posted. Enough to absorb a burst of full-size segments between two
/// wake-ups without the kernel dropping frames for lack of a reader.
const RX_FRAMES: usize = 64;

/// Transmit buffers; bounds how many frames one wake-up can emit.
const TX_FRAMES: usize = 256;

/// Epoll events handled per wake-up; more stay queued for the next one.
const EPOLL_BATCH: usize = 256;

/// Epoll tokens at or above this value name listeners; below it, connections.
const LISTENER_TOKEN: u64 = 1 << 40;

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

    /// Asks the worker to stop and waits for its thread.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        eventfd_signal(self.wake.as_raw_fd());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts a worker thread on `tap`, pinned to `core` when given.
pub fn spawn(
    id: WorkerId,
    tap: OwnedFd,
    stack: StackConfig,
    core: Option<core_affinity::CoreId>,
    registry: Arc<Registry>,
    completions: CompletionSender,
) -> io::Result<WorkerHandle> {
    let (commands_tx, commands_rx) = crossbeam::channel::unbounded();
    let wake = Arc::new(eventfd()?);
    let stop = Arc::new(AtomicBool::new(false));
    let mut worker = Worker::new(
        id,
        tap,
        stack,
        registry,
        completions,
        commands_rx,
        wake.clone(),
        stop.clone(),
    )?;
    let thread = std::thread::Builder::new()
        .name(format!("netcon-worker-{}", id.0))
        .spawn(move || {
            if let Some(core) = core
                && !core_affinity::set_for_current(core)
            {
                log::warn!("worker {}: could not pin to core {}", id.0, core.id);
            }
            if let Err(e) = worker.run() {
                log::error!("worker {} stopped: {e}", id.0);
            }
        })?;
    Ok(WorkerHandle {
        id,
        commands: commands_tx,
        wake,
        stop,
        thread: Some(thread),
    })
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
    conns: Slab<Conn>,
    by_inode: HashMap<Inode, usize>,
    listeners: Slab<Listener>,
    epoll: OwnedFd,
    wake: Arc<OwnedFd>,
    stop: Arc<AtomicBool>,
    commands: Receiver<Command>,
    registry: Arc<Registry>,
    completions: CompletionSender,
    clock: stack::Clock,
    /// Where bytes already forwarded from a socketpair are read to, to discard them.
    scratch: Box<[u8]>,
}

impl Worker {
    #[allow(clippy::too_many_arguments)] // one call site, each argument a distinct resource
    fn new(
        id: WorkerId,
        tap: OwnedFd,
        stack: StackConfig,
        registry: Arc<Registry>,
        completions: CompletionSender,
        commands: Receiver<Command>,
        wake: Arc<OwnedFd>,
        stop: Arc<AtomicBool>,
    ) -> io::Result<Worker> {
        let mut device =
            RingDevice::new(stack.medium, stack.mtu, stack.offload, RX_FRAMES, TX_FRAMES);
        let clock = stack::Clock::new();
        let iface = stack.interface(&mut device, clock.now());
        Ok(Worker {
            id,
            ring: Ring::new(tap.as_raw_fd())?,
            _tap: tap,
            device,
            iface,
            sockets: SocketSet::new(Vec::new()),
            stack,
            conns: Slab::new(),
            by_inode: HashMap::new(),
            listeners: Slab::new(),
            epoll: epoll_create()?,
            wake,
            stop,
            commands,
            registry,
            completions,
            clock,
            scratch: vec![0u8; conn::SCRATCH_LEN].into_boxed_slice(),
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
            let busy = self.service();
            self.ring.post_reads(&mut self.device);
            self.ring.post_writes(&mut self.device);
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

    /// Runs smoltcp and the byte pumps until nothing moves; returns whether work is left that
    /// needs no new event (frames still queued, or sockets with more to move).
    fn service(&mut self) -> bool {
        for _ in 0..4 {
            let now = self.clock.now();
            self.iface.poll(now, &mut self.device, &mut self.sockets);
            let moved = self.pump_all();
            if !moved && self.device.ingress.ready.is_empty() {
                let now = self.clock.now();
                self.iface.poll(now, &mut self.device, &mut self.sockets);
                return false;
            }
        }
        true
    }

    fn next_timeout(&mut self) -> Option<Duration> {
        let now = self.clock.now();
        self.iface
            .poll_delay(now, &self.sockets)
            .map(|d| Duration::from_micros(d.total_micros()))
    }

    fn reap_completions(&mut self) {
        let mut epoll_ready = false;
        let mut rearm = Vec::new();
        for cqe in self.ring.uring.completion() {
            let more = io_uring::cqueue::more(cqe.flags());
            match Token::decode(cqe.user_data()) {
                Some(Token::TapRead(index)) => {
                    self.ring.reads_in_flight -= 1;
                    match usize::try_from(cqe.result()) {
                        Ok(len) if len > 0 => self.device.ingress.ready.push_back((index, len)),
                        _ => self.device.ingress.consumed.push(index),
                    }
                }
                Some(Token::TapWrite(index)) => self.device.egress.free.push(index),
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
    }

    fn take_socket_events(&mut self) {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; EPOLL_BATCH];
        let count = epoll_wait(self.epoll.as_raw_fd(), &mut events, 0).unwrap_or(0);
        for event in &events[..count] {
            let (flags, token) = (event.events, event.u64);
            if token >= LISTENER_TOKEN {
                if let Some(listener) = self.listeners.get_mut((token - LISTENER_TOKEN) as usize) {
                    listener.note_events(flags);
                }
            } else if let Some(conn) = self.conns.get_mut(token as usize) {
                conn.note_events(flags);
            }
        }
    }

    fn take_commands(&mut self) {
        while let Ok(command) = self.commands.try_recv() {
            match command {
                Command::Connect(job) => self.start_connect(job),
                Command::Listen(job) => self.start_listen(job),
                Command::SetOptions(job) => self.apply_options(job),
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
