//! The worker's io_uring: what each completion's `user_data` means, and helpers that queue the
//! TAP reads and writes and the readiness polls the worker keeps in flight.
//!
//! TAP ingress is one multishot read (IORING_OP_READ_MULTISHOT, Linux 6.7) into a group of
//! provided buffers: each frame completes as one CQE naming the buffer it filled, and a buffer
//! goes back to the group once smoltcp has consumed its frame. One read in flight instead of
//! one per buffer also keeps the kernel from waking every posted read for each frame.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use io_uring::{IoUring, opcode, squeue, types};

use super::device::{FrameIndex, RingDevice};
use crate::stats::{self, WorkerStats};
use std::sync::Arc;

/// Submission queue size. It covers every TAP read and write the device can have in flight
/// (one per frame buffer) plus the two readiness polls, so a push never finds the queue full.
pub const RING_ENTRIES: u32 = 1024;

/// Buffer group of the TAP read's provided buffers.
const TAP_BUFFER_GROUP: u16 = 0;

/// What a completion is for, packed into `user_data`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Token {
    /// The multishot TAP read; the CQE's flags name the buffer.
    TapRead,
    /// Buffers handed back to the read's group.
    Provide,
    TapWrite(FrameIndex),
    /// The worker's epoll fd became readable: socketpair ends have events.
    Epoll,
    /// The worker's eventfd was signalled: commands are waiting.
    Wake,
}

impl Token {
    fn encode(self) -> u64 {
        match self {
            Token::TapRead => 1 << 32,
            Token::Provide => 5 << 32,
            Token::TapWrite(i) => (2 << 32) | u64::from(i),
            Token::Epoll => 3 << 32,
            Token::Wake => 4 << 32,
        }
    }

    /// Decodes `user_data`; `None` for values this worker never submits.
    pub fn decode(value: u64) -> Option<Token> {
        let index = value as FrameIndex;
        Some(match value >> 32 {
            1 => Token::TapRead,
            5 => Token::Provide,
            2 => Token::TapWrite(index),
            3 => Token::Epoll,
            4 => Token::Wake,
            _ => return None,
        })
    }
}

/// The ring plus the fds its operations target.
pub struct Ring {
    pub uring: IoUring,
    tap: RawFd,
    /// The multishot TAP read is posted and has not ended.
    pub read_armed: bool,
    stats: Arc<WorkerStats>,
}

impl Ring {
    /// Creates the ring for a worker whose TAP queue is `tap`.
    pub fn new(tap: RawFd, stats: Arc<WorkerStats>) -> io::Result<Ring> {
        let uring = IoUring::builder().setup_clamp().build(RING_ENTRIES)?;
        Ok(Ring {
            uring,
            tap,
            read_armed: false,
            stats,
        })
    }

    fn push(&mut self, entry: &squeue::Entry) {
        // SAFETY: every buffer an entry points at lives in the worker's RingDevice pools, which
        // outlive the ring, and is not touched again until its completion arrives.
        while unsafe { self.uring.submission().push(entry) }.is_err() {
            // The queue is sized for everything in flight, so this only runs if that sizing
            // is wrong; submitting frees the slots instead of losing the entry.
            stats::add(&self.stats.ring_full, 1);
            let _ = self.uring.submit();
        }
    }

    /// Hands every consumed ingress buffer back to the read's buffer group, and posts the
    /// multishot read again if it ended.
    pub fn post_reads(&mut self, device: &mut RingDevice) {
        while let Some(index) = device.ingress.consumed.pop() {
            let buf = device.ingress.pool.buffer_mut(index);
            let (addr, len) = (buf.as_mut_ptr(), buf.len() as i32);
            let entry = opcode::ProvideBuffers::new(addr, len, 1, TAP_BUFFER_GROUP, index)
                .build()
                .user_data(Token::Provide.encode());
            self.push(&entry);
        }
        if !self.read_armed {
            let entry = opcode::ReadMulti::new(types::Fd(self.tap), 0, TAP_BUFFER_GROUP)
                .build()
                .user_data(Token::TapRead.encode());
            self.push(&entry);
            self.read_armed = true;
        }
    }

    /// Posts a TAP write for every frame smoltcp queued.
    pub fn post_writes(&mut self, device: &mut RingDevice) {
        let queued = std::mem::take(&mut device.egress.queued);
        let bytes: usize = queued.iter().map(|&(_, len)| len).sum();
        stats::add(&self.stats.frames_out, queued.len() as u64);
        stats::add(&self.stats.bytes_out, bytes as u64);
        for &(index, len) in &queued {
            let buf = device.egress.pool.buffer_mut(index);
            let entry = opcode::Write::new(types::Fd(self.tap), buf.as_ptr(), len as u32)
                .build()
                .user_data(Token::TapWrite(index).encode());
            self.push(&entry);
        }
        device.egress.queued = queued;
        device.egress.queued.clear();
    }

    /// Arms a multishot readiness poll on `fd`, reported as `token`.
    pub fn arm_poll(&mut self, fd: RawFd, token: Token) {
        let entry = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(token.encode());
        self.push(&entry);
    }

    /// Submits everything queued and waits for at least one completion, at most `timeout`
    /// (`Some(ZERO)`: do not wait).
    pub fn submit_and_wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let pending = self.uring.submission().len() as u64;
        let result = match timeout {
            Some(t) if t.is_zero() => self.uring.submit(),
            Some(t) => {
                let ts = types::Timespec::new()
                    .sec(t.as_secs())
                    .nsec(t.subsec_nanos());
                let args = types::SubmitArgs::new().timespec(&ts);
                self.uring.submitter().submit_with_args(1, &args)
            }
            None => self.uring.submit_and_wait(1),
        };
        stats::add(&self.stats.sqes, pending);
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for token in [
            Token::TapRead,
            Token::Provide,
            Token::TapWrite(7),
            Token::Epoll,
            Token::Wake,
        ] {
            assert_eq!(Token::decode(token.encode()), Some(token));
        }
        assert_eq!(Token::decode(0), None);
    }
}
