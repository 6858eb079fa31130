//! The choice of connections a wake-up visits. Each connection keeps its smoltcp socket in a socket
//! set of its own, because smoltcp looks for the socket of an ingress segment, and for
//! sockets with something to send, by walking the whole set it is given. Every event that can
//! change a connection marks it dirty: an ingress segment of its flow, epoll readiness of its
//! socketpair, a command from the control thread, and its smoltcp timer (retransmission,
//! delayed ACK, keepalive, time-outs), kept in a min-heap. A wake-up visits only the dirty
//! connections, so its cost follows the work and not the number of open connections.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use smoltcp::iface::{PollResult, SocketHandle, SocketSet};
use smoltcp::socket::{Socket, tcp};
use smoltcp::time::Instant;

use super::Worker;
use crate::steer::{self, Ingress};

/// Connections to visit and timers to fire, by slab key.
#[derive(Default)]
pub struct Schedule {
    /// Keys marked since the last visit, each once (see `Conn::dirty`).
    dirty: Vec<usize>,
    /// The previous batch's vector, kept to reuse its allocation.
    spare: Vec<usize>,
    /// Connections whose socket still had segments to send when the transmit buffers ran out.
    blocked: Vec<usize>,
    /// Deadlines of connections' smoltcp timers. An entry whose deadline is not the
    /// connection's current `timer_at` is stale and is skipped when it comes due. A
    /// connection adds an entry only when its deadline moves earlier, so the heap contains
    /// one live entry per connection with a timer, plus stale ones until they come due.
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
}

impl Schedule {
    /// Returns whether connections are marked for the next visit.
    pub fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// Returns the earliest timer deadline, possibly a stale one, which only wakes the worker
    /// early.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// Returns whether connections wait for transmit buffers.
    pub fn has_blocked(&self) -> bool {
        !self.blocked.is_empty()
    }
}

/// Returns a socket set holding only `socket`, and its handle there.
pub fn own_set(socket: tcp::Socket<'static>) -> (SocketSet<'static>, SocketHandle) {
    own_set_of(Socket::Tcp(socket))
}

/// Returns a socket set holding only `socket`, and its handle there.
pub fn own_set_of(socket: Socket<'static>) -> (SocketSet<'static>, SocketHandle) {
    let mut set = SocketSet::new(Vec::with_capacity(1));
    let handle = set.add(socket);
    (set, handle)
}

impl Worker {
    /// Marks connection `key` for the next visit.
    pub(super) fn mark_dirty(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key)
            && !conn.dirty
        {
            conn.dirty = true;
            self.schedule.dirty.push(key);
        }
    }

    /// Marks every connection with a timer set: the neighbour cache changed, and a socket
    /// waiting for a neighbour shows only as a timer at the end of its wait.
    fn mark_timed_dirty(&mut self) {
        let Worker {
            conns, schedule, ..
        } = self;
        for (key, conn) in conns.iter_mut() {
            if !conn.dirty && conn.timer_at.is_some() {
                conn.dirty = true;
                schedule.dirty.push(key);
            }
        }
    }

    /// Marks the connections whose timer is due, and those that waited for transmit buffers.
    pub(super) fn expire_timers(&mut self, now: Instant) {
        while let Some(&Reverse((at, key))) = self.schedule.timers.peek() {
            if at > now {
                break;
            }
            self.schedule.timers.pop();
            if let Some(conn) = self.conns.get_mut(key)
                && conn.timer_at == Some(at)
            {
                conn.timer_at = None;
                self.mark_dirty(key);
            }
        }
        let mut blocked = std::mem::take(&mut self.schedule.blocked);
        for &key in &blocked {
            self.mark_dirty(key);
        }
        blocked.clear();
        self.schedule.blocked = blocked;
    }

    /// Sets connection `key`'s timer to `at` unless it already fires earlier.
    fn schedule_timer(&mut self, key: usize, at: Instant) {
        let conn = &mut self.conns[key];
        if conn.timer_at.is_none_or(|current| at < current) {
            conn.timer_at = Some(at);
            self.schedule.timers.push(Reverse((at, key)));
        }
    }

    /// Hands every queued ingress frame to smoltcp, with the socket set of the connection its
    /// flow belongs to, or with the shared set (listeners, UDP, connections not yet
    /// delivered), and marks the connections it reached.
    pub(super) fn poll_ingress(&mut self, now: Instant) {
        let l2_len = self.device.l2_len();
        let mut neighbour = false;
        while let Some(frame) = self.device.next_ingress() {
            let owner = match steer::classify_ingress(frame, l2_len) {
                Ingress::Tcp(flow) => self.flows.get(&flow).copied(),
                Ingress::Neighbour => {
                    neighbour = true;
                    None
                }
                Ingress::Other => None,
            };
            match owner {
                Some(key) => {
                    self.conns[key].take_ingress(&mut self.iface, now, &mut self.device);
                    self.mark_dirty(key);
                }
                None => {
                    self.iface
                        .poll_ingress_single(now, &mut self.device, &mut self.sockets);
                }
            }
        }
        if neighbour {
            self.mark_timed_dirty();
        }
    }

    /// Sends what the shared set's sockets have queued, and drops the aborted sockets whose
    /// reset went out.
    pub(super) fn poll_shared_egress(&mut self, now: Instant) {
        while self
            .iface
            .poll_egress(now, &mut self.device, &mut self.sockets)
            == PollResult::SocketStateChanged
        {}
        if !self.retiring.is_empty() {
            self.drop_retired();
        }
    }

    /// Visits every marked connection: moves its bytes, sends its segments and sets its
    /// timer. Returns whether any was marked.
    pub(super) fn visit_dirty(&mut self, now: Instant) -> bool {
        let mut batch = std::mem::replace(
            &mut self.schedule.dirty,
            std::mem::take(&mut self.schedule.spare),
        );
        let any = !batch.is_empty();
        for &key in &batch {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            conn.dirty = false;
            self.visit(key, now);
        }
        batch.clear();
        self.schedule.spare = batch;
        any
    }

    fn visit(&mut self, key: usize, now: Instant) {
        let step = self.pump(key);

        // Segments go out before a finished connection's socket is dropped: the ACK of the
        // FIN that ended it, or the reset of an abort.
        let conn = &mut self.conns[key];
        let state = conn.set.get::<tcp::Socket>(conn.handle).state();
        while self.iface.poll_egress(now, &mut self.device, &mut conn.set)
            == PollResult::SocketStateChanged
        {}
        if let super::conn::Step::Finished { errno, reset_app } = step {
            self.finish_conn(key, errno, reset_app);
            return;
        }
        // Timers end connections on egress (time-outs, the end of TIME-WAIT), which the pump
        // must see.
        if conn.set.get::<tcp::Socket>(conn.handle).state() != state {
            self.mark_dirty(key);
        }

        let conn = &mut self.conns[key];
        match self.iface.poll_at(now, &conn.set) {
            Some(at) if at <= now => self.schedule.blocked.push(key),
            Some(at) => self.schedule_timer(key, at),
            None => {}
        }
    }
}
