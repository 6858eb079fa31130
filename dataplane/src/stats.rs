//! What netcon-dp measures about itself: per-worker counters, per-connection counters, and
//! latency histograms. Counters are atomics written by one thread (the worker or the control
//! thread that owns them) and read by `netcon-ctl`, so the packet path takes no lock.
//! Histograms belong to one worker each and are copied out on request.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Instant;

use hdrhistogram::Histogram;

/// Adds `n` to a counter.
pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Reads a counter.
pub fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// Counters of one worker.
#[derive(Debug, Default)]
pub struct WorkerStats {
    pub frames_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub frames_out: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Frames smoltcp produced while every transmit buffer was in flight.
    pub tx_dropped: AtomicU64,
    /// Packets whose fragments were dropped before they could be reassembled: overlapping,
    /// too large, incomplete after the reassembly timeout, or pushed out for room.
    pub fragments_dropped: AtomicU64,
    /// TAP reads or writes that completed with an error.
    pub tap_errors: AtomicU64,
    /// Frames read here that belonged to another worker's connection.
    pub handed_out: AtomicU64,
    /// Frames another worker read for this worker's connections.
    pub handed_in: AtomicU64,
    pub sqes: AtomicU64,
    pub cqes: AtomicU64,
    /// Times the submission queue was full and had to be flushed before queueing more.
    pub ring_full: AtomicU64,
    pub connections: AtomicU64,
    /// Connections to a listener that were reset once their handshake ended, because
    /// `--max-connections` sockets were open or netcon-dp had no fd left for them.
    pub connections_rejected: AtomicU64,
    pub listeners: AtomicU64,
    pub udp_sockets: AtomicU64,
    /// UDP datagrams written to programs' sockets.
    pub udp_datagrams_in: AtomicU64,
    /// UDP datagrams dropped because the program's socket had no room, as Linux drops them
    /// when a socket's receive buffer is full.
    pub udp_rx_dropped: AtomicU64,
    /// UDP datagrams to a port with sockets of which none accepts them (all connected to
    /// other peers, or bound to another address).
    pub udp_rx_unmatched: AtomicU64,
    /// Times a UDP socket's receive buffer in the stack filled during one poll, so the stack
    /// may have dropped datagrams it could not queue.
    pub udp_rx_overflows: AtomicU64,
    /// UDP datagrams from programs that could not be sent: no destination on an unconnected
    /// socket, an unaddressable one, or a malformed message.
    pub udp_tx_dropped: AtomicU64,
    /// ICMP errors reported to connected UDP sockets (ECONNREFUSED and the like).
    pub udp_errors_reported: AtomicU64,
}

/// Counters of one connection, shared between its worker and `netcon-ctl show`.
#[derive(Debug)]
pub struct ConnStats {
    /// Bytes the peer sent that reached the program.
    pub bytes_in: AtomicU64,
    /// Bytes the program wrote that entered the stack.
    pub bytes_out: AtomicU64,
    pub send_queue: AtomicU64,
    pub recv_queue: AtomicU64,
    /// smoltcp TCP state, as [`tcp_state_name`] numbers it.
    pub state: AtomicU8,
    /// Worker that owns the connection, once it has one.
    pub worker: AtomicU64,
    pub created: Instant,
}

impl Default for ConnStats {
    fn default() -> Self {
        ConnStats {
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            send_queue: AtomicU64::new(0),
            recv_queue: AtomicU64::new(0),
            state: AtomicU8::new(0),
            worker: AtomicU64::new(u64::MAX),
            created: Instant::now(),
        }
    }
}

/// Names of the TCP states in `ConnStats::state` (0 = no connection yet).
pub fn tcp_state_name(state: u8) -> &'static str {
    const NAMES: [&str; 12] = [
        "NONE",
        "CLOSED",
        "LISTEN",
        "SYN_SENT",
        "SYN_RECEIVED",
        "ESTABLISHED",
        "FIN_WAIT_1",
        "FIN_WAIT_2",
        "CLOSE_WAIT",
        "CLOSING",
        "LAST_ACK",
        "TIME_WAIT",
    ];
    NAMES.get(usize::from(state)).copied().unwrap_or("UNKNOWN")
}

/// Latencies are recorded in microseconds between 1 µs and 100 s.
const HIGHEST_MICROS: u64 = 100_000_000;

/// A latency histogram in microseconds. Values beyond the range are clamped to it.
#[derive(Clone, Debug)]
pub struct Latency {
    histogram: Histogram<u32>,
}

impl Latency {
    /// A histogram with `sigfig` significant digits (3 for totals, 1 for per-connection ones,
    /// which stay near 1.5 KiB each).
    pub fn new(sigfig: u8) -> Latency {
        let histogram =
            Histogram::new_with_bounds(1, HIGHEST_MICROS, sigfig).expect("valid bounds");
        Latency { histogram }
    }

    /// Records one latency.
    pub fn record(&mut self, micros: u64) {
        self.histogram
            .saturating_record(micros.clamp(1, HIGHEST_MICROS));
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Latency) {
        // Both share the same bounds, so adding cannot fail.
        let _ = self.histogram.add(&other.histogram);
    }

    pub fn histogram(&self) -> &Histogram<u32> {
        &self.histogram
    }
}

/// The latency histograms a worker keeps, in total and per connection.
#[derive(Clone, Debug)]
pub struct LatencySet {
    /// From the connect request reaching the worker to the handshake's end.
    pub connect: Latency,
    /// From a byte entering the stack's send buffer until the peer acknowledged it.
    pub ack: Latency,
    /// From a byte arriving from the network until it is written to the program's socketpair.
    pub ingress_wait: Latency,
}

impl LatencySet {
    pub fn new(sigfig: u8) -> LatencySet {
        LatencySet {
            connect: Latency::new(sigfig),
            ack: Latency::new(sigfig),
            ingress_wait: Latency::new(sigfig),
        }
    }

    pub fn merge(&mut self, other: &LatencySet) {
        self.connect.merge(&other.connect);
        self.ack.merge(&other.ack);
        self.ingress_wait.merge(&other.ingress_wait);
    }
}

/// Follows one byte at a time through a stage of a connection, so a latency sample costs two
/// comparisons per pump: it remembers when the byte at offset `target` of a counter was
/// entered, and yields the elapsed time once the counter that leaves the stage passes it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sampler {
    pending: Option<(u64, Instant)>,
}

impl Sampler {
    /// Called with the total bytes that entered the stage so far and the total that left it;
    /// returns a latency in microseconds when a followed byte left.
    pub fn observe(&mut self, entered: u64, left: u64, now: Instant) -> Option<u64> {
        match self.pending {
            Some((target, since)) if left >= target => {
                self.pending = None;
                Some(now.duration_since(since).as_micros() as u64)
            }
            Some(_) => None,
            None => {
                if entered > left {
                    self.pending = Some((entered, now));
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn sampler_measures_one_byte() {
        let start = Instant::now();
        let mut sampler = Sampler::default();
        assert_eq!(sampler.observe(0, 0, start), None);
        assert_eq!(sampler.observe(100, 0, start), None);
        assert_eq!(
            sampler.observe(200, 50, start + Duration::from_micros(10)),
            None
        );
        let sample = sampler.observe(200, 100, start + Duration::from_micros(30));
        assert_eq!(sample, Some(30));
    }

    #[test]
    fn latency_clamps_and_merges() {
        let mut a = Latency::new(1);
        a.record(0);
        a.record(u64::MAX);
        let mut total = Latency::new(3);
        total.merge(&a);
        assert_eq!(total.histogram().len(), 2);
        assert!(total.histogram().max() >= HIGHEST_MICROS / 2);
    }

    #[test]
    fn state_names() {
        assert_eq!(tcp_state_name(5), "ESTABLISHED");
        assert_eq!(tcp_state_name(200), "UNKNOWN");
    }
}
