//! The smoltcp `Device` of one worker: frames read from the TAP by io_uring wait in `rx`, and
//! frames smoltcp emits go to `tx` until the worker submits them as TAP writes. Buffers are
//! allocated once at start-up and recycled, so the packet path allocates nothing.

use std::collections::VecDeque;

use smoltcp::phy::{self, Checksum, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// Index of a frame buffer inside its pool.
pub type FrameIndex = u16;

/// Ethernet header length, added to the MTU for frame buffers on a TAP.
const ETHERNET_HEADER_LEN: usize = 14;

/// A fixed set of equally sized frame buffers.
pub struct FramePool {
    buffers: Vec<Box<[u8]>>,
}

impl FramePool {
    fn new(count: usize, size: usize) -> FramePool {
        FramePool {
            buffers: (0..count)
                .map(|_| vec![0u8; size].into_boxed_slice())
                .collect(),
        }
    }

    /// The buffer at `index`, for io_uring to read into or write from.
    pub fn buffer_mut(&mut self, index: FrameIndex) -> &mut [u8] {
        &mut self.buffers[index as usize]
    }
}

/// Ingress side: filled buffers waiting for smoltcp, and consumed ones waiting to be re-posted
/// as TAP reads.
pub struct Ingress {
    pub pool: FramePool,
    pub ready: VecDeque<(FrameIndex, usize)>,
    pub consumed: Vec<FrameIndex>,
}

/// Egress side: free buffers, and frames smoltcp has written that await a TAP write.
pub struct Egress {
    pub pool: FramePool,
    pub free: Vec<FrameIndex>,
    pub queued: Vec<(FrameIndex, usize)>,
    /// Frames smoltcp wanted to send while every buffer was in flight.
    pub dropped: u64,
}

/// The device handed to smoltcp on every poll.
pub struct RingDevice {
    pub ingress: Ingress,
    pub egress: Egress,
    medium: Medium,
    mtu: usize,
}

impl RingDevice {
    /// Allocates `rx_count` receive and `tx_count` transmit buffers sized for `mtu`.
    pub fn new(medium: Medium, mtu: usize, rx_count: usize, tx_count: usize) -> RingDevice {
        let frame_len = Self::frame_len(medium, mtu);
        RingDevice {
            ingress: Ingress {
                pool: FramePool::new(rx_count, frame_len),
                ready: VecDeque::with_capacity(rx_count),
                consumed: (0..rx_count as FrameIndex).collect(),
            },
            egress: Egress {
                pool: FramePool::new(tx_count, frame_len),
                free: (0..tx_count as FrameIndex).rev().collect(),
                queued: Vec::with_capacity(tx_count),
                dropped: 0,
            },
            medium,
            mtu,
        }
    }

    /// The largest frame on this medium for `mtu`.
    pub fn frame_len(medium: Medium, mtu: usize) -> usize {
        match medium {
            Medium::Ethernet => mtu + ETHERNET_HEADER_LEN,
            _ => mtu,
        }
    }
}

impl phy::Device for RingDevice {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        let (index, len) = self.ingress.ready.pop_front()?;
        Some((
            RxToken {
                ingress: &mut self.ingress,
                index,
                len,
            },
            TxToken {
                egress: &mut self.egress,
            },
        ))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_>> {
        if self.egress.free.is_empty() {
            return None;
        }
        Some(TxToken {
            egress: &mut self.egress,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = self.medium;
        caps.max_transmission_unit = Self::frame_len(self.medium, self.mtu);
        // Frames from the local kernel through a TAP without offloads carry checksums the
        // kernel computed itself, so verifying them again only costs time.
        let mut checksum = ChecksumCapabilities::default();
        checksum.ipv4 = Checksum::Tx;
        checksum.tcp = Checksum::Tx;
        checksum.udp = Checksum::Tx;
        checksum.icmpv4 = Checksum::Tx;
        caps.checksum = checksum;
        caps
    }
}

/// One received frame; consuming it returns its buffer for the next TAP read.
pub struct RxToken<'a> {
    ingress: &'a mut Ingress,
    index: FrameIndex,
    len: usize,
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let result = f(&self.ingress.pool.buffers[self.index as usize][..self.len]);
        self.ingress.consumed.push(self.index);
        result
    }
}

/// Room for one frame to send.
pub struct TxToken<'a> {
    egress: &'a mut Egress,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        match self.egress.free.pop() {
            Some(index) => {
                let result = f(&mut self.egress.pool.buffers[index as usize][..len]);
                self.egress.queued.push((index, len));
                result
            }
            None => {
                // Only a reply produced while receiving gets here with no buffer free; build it
                // in a throwaway buffer and count it as dropped, since smoltcp needs the closure
                // run to keep its state consistent.
                self.egress.dropped += 1;
                let mut scratch = vec![0u8; len];
                f(&mut scratch)
            }
        }
    }
}
