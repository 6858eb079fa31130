//! The smoltcp `Device` of one worker: frames read from the TAP by io_uring wait in `ingress`,
//! and frames smoltcp emits go to `egress` until the worker submits them as TAP writes.
//! Buffers are allocated once at start-up and recycled, so the packet path allocates nothing
//! but for IP fragments: ingress fragments are reassembled here before smoltcp sees them (see
//! [`crate::reassembly`]), and egress packets larger than the link's MTU are cut into
//! fragments (see [`crate::fragment`]).

use std::collections::VecDeque;

use smoltcp::phy::{self, Checksum, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use crate::fragment::Fragments;
use crate::neighbour::{self, NeighbourWatch};
use crate::offload::{self, MAX_IP_PACKET, VNET_HDR_LEN};
use crate::reassembly::{Reassembled, Reassembler};
use crate::steer::{Steer, WorkerId, steer};

/// Index of a frame buffer inside its pool.
pub type FrameIndex = u16;

/// Ethernet header length, added to the MTU for frame buffers on a TAP.
const ETHERNET_HEADER_LEN: usize = 14;

/// A fixed set of equally sized frame buffers in one allocation (io_uring's provided buffers
/// are handed over as base address plus index times size).
pub struct FramePool {
    memory: Box<[u8]>,
    size: usize,
}

impl FramePool {
    fn new(count: usize, size: usize) -> FramePool {
        FramePool {
            memory: vec![0u8; count * size].into_boxed_slice(),
            size,
        }
    }

    /// The buffer at `index`, for io_uring to read into or write from.
    pub fn buffer_mut(&mut self, index: FrameIndex) -> &mut [u8] {
        let start = usize::from(index) * self.size;
        &mut self.memory[start..start + self.size]
    }
}

/// Ingress side: filled buffers waiting for smoltcp, consumed ones waiting to be re-posted as
/// TAP reads, and frames other workers handed over.
pub struct Ingress {
    pub pool: FramePool,
    pub ready: VecDeque<(FrameIndex, usize)>,
    pub consumed: Vec<FrameIndex>,
    /// Frames (with their `virtio_net_hdr` when offload is on) read by another worker.
    pub handed: VecDeque<Vec<u8>>,
    /// Emptied handoff buffers, reused for the next frames this worker hands over.
    pub spare: Vec<Vec<u8>>,
    /// The packets whose fragments steering sent to this worker, being put together.
    pub reassembler: Reassembler,
    /// Reassembled packets (with their `virtio_net_hdr` when offload is on) that belong to
    /// another worker, for the worker to hand over.
    pub rerouted: Vec<Vec<u8>>,
    /// This worker and the number of workers, to steer reassembled packets.
    steering: (WorkerId, usize),
    /// Addresses that showed themselves on the link since the last look at `neighbours`.
    answered: Vec<std::net::IpAddr>,
}

/// Most addresses noted as answering between two looks at the neighbour watch. Each frame
/// notes at most one and the next frame's receive looks, so the bound only guards memory.
const MAX_ANSWERED: usize = 256;

/// Most emptied handoff buffers a worker keeps for reuse.
const MAX_SPARE: usize = 256;

impl Ingress {
    /// A spare buffer holding a copy of `bytes`.
    pub fn copy_bytes(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut buffer = self.spare.pop().unwrap_or_default();
        buffer.clear();
        buffer.extend_from_slice(bytes);
        buffer
    }

    /// A copy of the first `len` bytes of pool buffer `index`, in a spare buffer when one is
    /// left (so steady handoff traffic does not allocate).
    pub fn copy_for_handoff(&mut self, index: FrameIndex, len: usize) -> Vec<u8> {
        let mut buffer = self.spare.pop().unwrap_or_default();
        buffer.clear();
        buffer.extend_from_slice(&self.pool.buffer_mut(index)[..len]);
        buffer
    }

    fn recycle(&mut self, buffer: Vec<u8>) {
        if self.spare.len() < MAX_SPARE {
            self.spare.push(buffer);
        }
    }

    /// Returns the frame at the front of the queue for the stack. A fragment goes to the
    /// reassembler instead and `None` is returned; a packet it completes takes the front of
    /// the queue when it belongs to this worker, so the next call returns it (and the worker
    /// routes it by its own header first), and goes to `rerouted` otherwise. Taking only the
    /// front frame keeps the frame the worker looked at through [`RingDevice::next_ingress`]
    /// the one the stack gets.
    fn next_frame(&mut self, start: usize, l2_len: usize, now: Instant) -> Option<Source> {
        let source = match self.handed.pop_front() {
            Some(frame) => Source::Handed(frame),
            None => {
                let (index, len) = self.ready.pop_front()?;
                Source::Pool { index, len }
            }
        };
        let bytes = match &source {
            Source::Pool { index, len } => &self.pool.buffer_mut(*index)[..*len],
            Source::Handed(frame) => &frame[..],
        };
        let frame = bytes.get(start..).unwrap_or_default();
        let whole = match self.reassembler.add(frame, l2_len, now) {
            Reassembled::NotFragment => return Some(source),
            Reassembled::Held => None,
            Reassembled::Complete(whole) => Some(whole),
        };
        let header = bytes[..start.min(bytes.len())].len();
        match source {
            Source::Pool { index, .. } => self.consumed.push(index),
            Source::Handed(frame) => self.recycle(frame),
        }
        let whole = whole?;
        // The virtio_net_hdr of a whole packet is all zeros: no offload asked for.
        let mut packet = vec![0u8; header];
        packet.extend_from_slice(&whole);
        let (worker, workers) = self.steering;
        match steer(&whole, l2_len, workers) {
            Steer::To(owner) if owner != worker => self.rerouted.push(packet),
            _ => self.handed.push_front(packet),
        }
        None
    }
}

/// Egress side: free buffers, and frames smoltcp has written that await a TAP write.
pub struct Egress {
    pub pool: FramePool,
    pub free: Vec<FrameIndex>,
    pub queued: Vec<(FrameIndex, usize)>,
    /// Frames smoltcp wanted to send while every buffer was in flight.
    pub dropped: u64,
    /// The identification of the next packet cut into fragments.
    next_fragment_id: u32,
    /// A packet being cut into fragments (a copy, so its buffer could take the first one),
    /// with the fragments still to queue once buffers come free.
    cutting: Option<(Fragments, usize)>,
    /// The copy of the packet being cut.
    fragment_scratch: Vec<u8>,
    /// The neighbours smoltcp asked for that have not answered.
    neighbours: NeighbourWatch,
}

/// Segmentation offload settings (see [`offload`]).
#[derive(Clone, Copy, Debug)]
pub struct Offload {
    /// Link-layer header length: 14 on a TAP, 0 on a TUN.
    pub l2_len: usize,
    /// TCP MSS the link's MTU allows; the kernel cuts larger segments to it.
    link_mss: u16,
    /// The link's MTU, which other packets are cut into fragments for.
    link_mtu: usize,
}

/// The device handed to smoltcp on every poll.
pub struct RingDevice {
    pub ingress: Ingress,
    pub egress: Egress,
    medium: Medium,
    mtu: usize,
    pub offload: Option<Offload>,
}

impl RingDevice {
    /// Allocates `rx_count` receive and `tx_count` transmit buffers sized for `mtu`, or for
    /// 64 KiB segments plus the `virtio_net_hdr` when `offload` is set.
    pub fn new(
        medium: Medium,
        mtu: usize,
        offload: bool,
        rx_count: usize,
        tx_count: usize,
    ) -> RingDevice {
        let offload = offload.then(|| Offload {
            l2_len: Self::frame_len(medium, 0),
            link_mss: (mtu - 40).min(usize::from(u16::MAX)) as u16,
            link_mtu: mtu,
        });
        let frame_len = match offload {
            Some(_) => VNET_HDR_LEN + Self::frame_len(medium, MAX_IP_PACKET),
            None => Self::frame_len(medium, mtu),
        };
        RingDevice {
            ingress: Ingress {
                pool: FramePool::new(rx_count, frame_len),
                ready: VecDeque::with_capacity(rx_count),
                consumed: (0..rx_count as FrameIndex).collect(),
                handed: VecDeque::new(),
                spare: Vec::new(),
                reassembler: Reassembler::default(),
                rerouted: Vec::new(),
                steering: (WorkerId(0), 1),
                answered: Vec::new(),
            },
            egress: Egress {
                pool: FramePool::new(tx_count, frame_len),
                free: (0..tx_count as FrameIndex).rev().collect(),
                queued: Vec::with_capacity(tx_count),
                dropped: 0,
                next_fragment_id: fastrand::u32(..),
                cutting: None,
                fragment_scratch: Vec::new(),
                neighbours: NeighbourWatch::default(),
            },
            medium,
            mtu,
            offload,
        }
    }

    /// Sets which worker this device belongs to among `workers`, so that packets reassembled
    /// from fragments reach the worker that owns them.
    pub fn with_steering(mut self, worker: WorkerId, workers: usize) -> RingDevice {
        self.ingress.steering = (worker, workers);
        self
    }

    /// Returns whether smoltcp's requests to resolve `address` on the link have gone
    /// unanswered long enough for Linux to give up on it (see [`crate::neighbour`]).
    pub fn is_unreachable(&mut self, address: std::net::IpAddr, now: Instant) -> bool {
        self.note_answers();
        self.egress.neighbours.is_unreachable(address, now)
    }

    /// Moves the addresses that showed themselves on the link into the neighbour watch.
    fn note_answers(&mut self) {
        for answered in self.ingress.answered.drain(..) {
            self.egress.neighbours.answered(answered);
        }
    }

    /// The largest frame on this medium for an IP packet of `mtu` bytes.
    pub fn frame_len(medium: Medium, mtu: usize) -> usize {
        match medium {
            Medium::Ethernet => mtu + ETHERNET_HEADER_LEN,
            _ => mtu,
        }
    }

    /// Link-layer header length of this medium: 14 on a TAP, 0 on a TUN.
    pub fn l2_len(&self) -> usize {
        Self::frame_len(self.medium, 0)
    }

    /// The frame the next `receive` hands to smoltcp (without its `virtio_net_hdr`), if any.
    pub fn next_ingress(&mut self) -> Option<&[u8]> {
        let start = self.header_len();
        let bytes = match self.ingress.handed.front() {
            Some(frame) => frame.as_slice(),
            None => {
                let &(index, len) = self.ingress.ready.front()?;
                &self.ingress.pool.buffer_mut(index)[..len]
            }
        };
        Some(&bytes[start.min(bytes.len())..])
    }

    /// Bytes before the frame in every buffer.
    pub fn header_len(&self) -> usize {
        if self.offload.is_some() {
            VNET_HDR_LEN
        } else {
            0
        }
    }
}

impl phy::Device for RingDevice {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, now: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        // The frame taken last may have been an answer.
        self.note_answers();
        // smoltcp receives first on every poll, so fragments left over for lack of buffers
        // go out as soon as buffers come back.
        self.egress.queue_cut_fragments();
        let start = self.header_len();
        let offload = self.offload;
        let l2_len = self.l2_len();
        let source = self.ingress.next_frame(start, l2_len, now)?;
        let rx = RxToken {
            ingress: &mut self.ingress,
            source,
            start,
            offload,
            l2_len,
        };
        Some((
            rx,
            TxToken {
                egress: &mut self.egress,
                offload,
                l2_len,
                now,
            },
        ))
    }

    fn transmit(&mut self, now: Instant) -> Option<TxToken<'_>> {
        // A packet still being cut holds the next one back, as a full device queue does.
        self.egress.queue_cut_fragments();
        if self.egress.free.is_empty() || self.egress.cutting.is_some() {
            return None;
        }
        let l2_len = self.l2_len();
        Some(TxToken {
            egress: &mut self.egress,
            offload: self.offload,
            l2_len,
            now,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = self.medium;
        caps.max_transmission_unit = match self.offload {
            Some(_) => Self::frame_len(self.medium, MAX_IP_PACKET),
            None => Self::frame_len(self.medium, self.mtu),
        };
        // Frames from the local kernel through a TAP carry checksums the kernel computed or
        // vouched for (partial checksums with offload), so verifying them only costs time.
        let mut checksum = ChecksumCapabilities::default();
        checksum.ipv4 = Checksum::Tx;
        checksum.udp = Checksum::Tx;
        checksum.icmpv4 = Checksum::Tx;
        checksum.icmpv6 = Checksum::Tx;
        // With offload the kernel completes TCP checksums from the pseudo-header sum that
        // `offload::prepare_egress` writes.
        checksum.tcp = if self.offload.is_some() {
            Checksum::None
        } else {
            Checksum::Tx
        };
        caps.checksum = checksum;
        caps
    }
}

/// Where a received frame's bytes are.
enum Source {
    /// A pool buffer filled by a TAP read: `len` bytes including the `virtio_net_hdr`.
    Pool { index: FrameIndex, len: usize },
    /// A copy another worker handed over.
    Handed(Vec<u8>),
}

/// One received frame; consuming it returns its buffer for reuse.
pub struct RxToken<'a> {
    ingress: &'a mut Ingress,
    source: Source,
    /// Where the frame starts (after the `virtio_net_hdr` with offload).
    start: usize,
    offload: Option<Offload>,
    /// Link-layer header length: 14 on a TAP, 0 on a TUN.
    l2_len: usize,
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let (offload, start, l2_len) = (self.offload, self.start, self.l2_len);
        let answered = &mut self.ingress.answered;
        let process = |bytes: &mut [u8]| {
            let from = start.min(bytes.len());
            let frame = &mut bytes[from..];
            if let Some(offload) = offload {
                offload::raise_syn_mss(frame, offload.l2_len, offload.link_mss);
            }
            if let Some(address) = neighbour::answering_address(frame, l2_len)
                && answered.len() < MAX_ANSWERED
            {
                answered.push(address);
            }
            f(frame)
        };
        match self.source {
            Source::Pool { index, len } => {
                let result = process(&mut self.ingress.pool.buffer_mut(index)[..len]);
                self.ingress.consumed.push(index);
                result
            }
            Source::Handed(mut frame) => {
                let result = process(&mut frame);
                self.ingress.recycle(frame);
                result
            }
        }
    }
}

/// Room for one frame to send.
pub struct TxToken<'a> {
    egress: &'a mut Egress,
    offload: Option<Offload>,
    /// Link-layer header length: 14 on a TAP, 0 on a TUN.
    l2_len: usize,
    now: Instant,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let Some(index) = self.egress.free.pop() else {
            // Only a reply produced while receiving gets here with no buffer free; build it
            // in a throwaway buffer and count it as dropped, since smoltcp needs the closure
            // run to keep its state consistent.
            self.egress.dropped += 1;
            let mut scratch = vec![0u8; len];
            return f(&mut scratch);
        };
        let buffer = self.egress.pool.buffer_mut(index);
        let start = if self.offload.is_some() {
            VNET_HDR_LEN
        } else {
            0
        };
        let result = f(&mut buffer[start..start + len]);
        if let Some(address) =
            neighbour::requested_address(&buffer[start..start + len], self.l2_len)
        {
            self.egress.neighbours.requested(address, self.now);
        }
        // Without offload the interface's MTU is the link's, so smoltcp cuts IPv4 packets
        // itself and nothing larger gets here.
        // NOTE: without offload smoltcp 0.14 drops IPv6 packets larger than the link's MTU,
        // because it has no IPv6 fragmentation.
        let Some(offload) = self.offload else {
            self.egress.queued.push((index, len));
            return result;
        };
        let (header, frame) = buffer.split_at_mut(VNET_HDR_LEN);
        let frame = &mut frame[..len];
        // A packet larger than the link goes out in fragments; TCP segments never do, since
        // the kernel cuts them (see `offload::prepare_egress`).
        let id = self.egress.next_fragment_id;
        if let Some(fragments) = Fragments::plan(frame, offload.l2_len, offload.link_mtu, id) {
            self.egress.next_fragment_id = id.wrapping_add(1);
            self.egress.queue_fragments(index, len, &fragments);
            return result;
        }
        let header: &mut [u8; VNET_HDR_LEN] = header.try_into().expect("header length");
        offload::prepare_egress(header, frame, offload.l2_len, offload.link_mss);
        self.egress.queued.push((index, VNET_HDR_LEN + len));
        result
    }
}

impl Egress {
    /// Starts cutting the packet of `len` bytes in buffer `index` (after its
    /// `virtio_net_hdr`) into fragments, the first one in that buffer, and queues as many as
    /// there are free buffers for.
    fn queue_fragments(&mut self, index: FrameIndex, len: usize, fragments: &Fragments) {
        self.fragment_scratch.clear();
        let packet = &self.pool.buffer_mut(index)[VNET_HDR_LEN..VNET_HDR_LEN + len];
        self.fragment_scratch.extend_from_slice(packet);
        self.free.push(index);
        self.cutting = Some((*fragments, 0));
        self.queue_cut_fragments();
    }

    /// Queues the next fragments of the packet being cut, one per free buffer.
    fn queue_cut_fragments(&mut self) {
        let Some((fragments, mut next)) = self.cutting.take() else {
            return;
        };
        while next < fragments.count() {
            let Some(index) = self.free.pop() else {
                self.cutting = Some((fragments, next));
                return;
            };
            let buffer = self.pool.buffer_mut(index);
            // No offload for a fragment: its checksums are complete.
            buffer[..VNET_HDR_LEN].fill(0);
            let out = &mut buffer[VNET_HDR_LEN..];
            let written = fragments.write(&self.fragment_scratch, next, out);
            self.queued.push((index, VNET_HDR_LEN + written));
            next += 1;
        }
    }
}
