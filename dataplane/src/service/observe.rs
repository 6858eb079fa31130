//! The answers to `netcon-ctl show`, `status` and `perf`. Each request is served on a thread of
//! its own, which writes a JSON document into a pipe whose read end goes back with the reply,
//! so a large table or a slow reader never holds up the control thread.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use netcon_control::Op;
use serde_json::{Value, json};

use crate::registry::{Inode, Protocol, Registry, SocketState};
use crate::stats::{self, Latency, LatencySet, WorkerStats, tcp_state_name};
use crate::steer::WorkerId;
use crate::worker::{Command, RemoteWorker, Snapshot};

/// How long a `perf` request waits for the workers' histograms.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(2);

/// What an observation thread needs, copied or shared from the control thread.
pub struct Observation {
    pub registry: Arc<Registry>,
    pub workers: Vec<(WorkerId, Arc<WorkerStats>, RemoteWorker)>,
    pub started: Instant,
    /// RPCs served per kind (indexed like `Op::ALL`) and their round trips as the shim saw them.
    pub rpcs: Vec<(Op, u64, Latency)>,
    pub clients: usize,
    /// Sockets the control thread rejected at `--max-connections`.
    pub sockets_rejected: u64,
}

impl Observation {
    /// Builds the document for `op` and writes it into `out`, then closes it.
    pub fn serve(self, op: Op, out: OwnedFd) {
        let document = match op {
            Op::Show => self.show(),
            Op::Status => self.status(),
            _ => self.perf(),
        };
        let mut file = fs::File::from(out);
        // The reader may have gone away; there is nobody left to tell.
        let _ = file.write_all(document.to_string().as_bytes());
    }

    fn show(&self) -> Value {
        let holders = socket_holders();
        let table = self.registry.lock();
        let mut rows = Vec::new();
        for (inode, entry) in &table.sockets {
            let Some(held_by) = holders.get(&inode.0) else {
                continue;
            };
            let conn = &entry.stats;
            let worker = conn.worker.load(Ordering::Relaxed);
            // UDP sockets are named as `ss` names them.
            let tcp_state = match (entry.protocol, entry.state) {
                (Protocol::Udp, SocketState::Connected) => "ESTAB",
                (Protocol::Udp, _) => "UNCONN",
                (_, SocketState::Listening) => "LISTEN",
                (_, SocketState::Fresh | SocketState::Bound) => "CLOSED",
                _ => tcp_state_name(conn.state.load(Ordering::Relaxed)),
            };
            let protocol = match entry.protocol {
                Protocol::Tcp => "tcp",
                Protocol::Udp => "udp",
            };
            for &(pid, fd) in held_by {
                rows.push(json!({
                    "pid": pid,
                    "program": program_name(pid),
                    "fd": fd,
                    "inode": inode.0,
                    "protocol": protocol,
                    "local": entry.local.map(|a| a.to_string()),
                    "remote": entry.remote.map(|a| a.to_string()),
                    "socket_state": format!("{:?}", entry.state).to_lowercase(),
                    "tcp_state": tcp_state,
                    "worker": (worker != u64::MAX).then_some(worker),
                    "bytes_in": stats::read(&conn.bytes_in),
                    "bytes_out": stats::read(&conn.bytes_out),
                    "send_queue": stats::read(&conn.send_queue),
                    "recv_queue": stats::read(&conn.recv_queue),
                    "age_seconds": conn.created.elapsed().as_secs_f64(),
                    "unhonoured_options": entry.options.unhonoured,
                }));
            }
        }
        rows.sort_by_key(|row| (row["pid"].as_i64(), row["fd"].as_i64()));
        json!({ "sockets": rows })
    }

    fn status(&self) -> Value {
        let workers: Vec<Value> = self
            .workers
            .iter()
            .map(|(id, s, _)| {
                json!({
                    "worker": id.0,
                    "frames_in": stats::read(&s.frames_in),
                    "bytes_in": stats::read(&s.bytes_in),
                    "frames_out": stats::read(&s.frames_out),
                    "bytes_out": stats::read(&s.bytes_out),
                    "tx_dropped": stats::read(&s.tx_dropped),
                    "fragments_dropped": stats::read(&s.fragments_dropped),
                    "tap_errors": stats::read(&s.tap_errors),
                    "handed_out": stats::read(&s.handed_out),
                    "handed_in": stats::read(&s.handed_in),
                    "sqes": stats::read(&s.sqes),
                    "cqes": stats::read(&s.cqes),
                    "ring_full": stats::read(&s.ring_full),
                    "connections": stats::read(&s.connections),
                    "connections_rejected": stats::read(&s.connections_rejected),
                    "listeners": stats::read(&s.listeners),
                    "udp_sockets": stats::read(&s.udp_sockets),
                    "udp_datagrams_in": stats::read(&s.udp_datagrams_in),
                    "udp_rx_dropped": stats::read(&s.udp_rx_dropped),
                    "udp_rx_unmatched": stats::read(&s.udp_rx_unmatched),
                    "udp_rx_overflows": stats::read(&s.udp_rx_overflows),
                    "udp_tx_dropped": stats::read(&s.udp_tx_dropped),
                    "udp_errors_reported": stats::read(&s.udp_errors_reported),
                })
            })
            .collect();
        let rpcs: serde_json::Map<String, Value> = self
            .rpcs
            .iter()
            .map(|(op, served, _)| (op.name().to_string(), json!(served)))
            .collect();
        let (sockets, open, max_open) = {
            let table = self.registry.lock();
            (table.sockets.len(), table.open_sockets(), table.max_open())
        };
        json!({
            "uptime_seconds": self.started.elapsed().as_secs_f64(),
            "clients": self.clients,
            "sockets": sockets,
            "open_sockets": open,
            "max_connections": max_open,
            "sockets_rejected": self.sockets_rejected,
            "rpcs": rpcs,
            "workers": workers,
        })
    }

    fn perf(&self) -> Value {
        let (reply_tx, reply_rx) = crossbeam::channel::unbounded::<Snapshot>();
        for (_, _, remote) in &self.workers {
            remote.send(Command::Snapshot(reply_tx.clone()));
        }
        drop(reply_tx);
        let deadline = Instant::now() + SNAPSHOT_TIMEOUT;
        let mut total = LatencySet::new(3);
        let mut connections = Vec::new();
        for _ in &self.workers {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(snapshot) = reply_rx.recv_timeout(left) else {
                break;
            };
            total.merge(&snapshot.total);
            for (inode, latency) in snapshot.connections {
                connections.push(connection_latency(inode, snapshot.worker, &latency));
            }
        }
        let rpc: serde_json::Map<String, Value> = self
            .rpcs
            .iter()
            .filter(|(_, _, latency)| !latency.histogram().is_empty())
            .map(|(op, _, latency)| (op.name().to_string(), histogram_json(latency)))
            .collect();
        json!({
            "unit": "microseconds",
            "rpc_round_trip": rpc,
            "connect": histogram_json(&total.connect),
            "ack": histogram_json(&total.ack),
            "ingress_wait": histogram_json(&total.ingress_wait),
            "connections": connections,
        })
    }
}

fn connection_latency(inode: Inode, worker: WorkerId, latency: &LatencySet) -> Value {
    json!({
        "inode": inode.0,
        "worker": worker.0,
        "connect": histogram_json(&latency.connect),
        "ack": histogram_json(&latency.ack),
        "ingress_wait": histogram_json(&latency.ingress_wait),
    })
}

/// Percentiles and the recorded values (for export and plots) of one histogram.
fn histogram_json(latency: &Latency) -> Value {
    let h = latency.histogram();
    let values: Vec<[u64; 2]> = h
        .iter_recorded()
        .map(|v| [v.value_iterated_to(), v.count_at_value().into()])
        .collect();
    json!({
        "count": h.len(),
        "p50": h.value_at_quantile(0.5),
        "p90": h.value_at_quantile(0.9),
        "p99": h.value_at_quantile(0.99),
        "p99.9": h.value_at_quantile(0.999),
        "max": h.max(),
        "values": values,
    })
}

/// Maps socket inode → every (pid, fd) that holds it, from /proc/*/fd. Processes this
/// process may not inspect are skipped.
fn socket_holders() -> HashMap<u64, Vec<(i32, i32)>> {
    let mut holders: HashMap<u64, Vec<(i32, i32)>> = HashMap::new();
    let Ok(processes) = fs::read_dir("/proc") else {
        return holders;
    };
    for process in processes.flatten() {
        let Some(pid) = process
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(fds) = fs::read_dir(process.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Some(number) = fd.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            let Ok(target) = fs::read_link(fd.path()) else {
                continue;
            };
            let target = target.to_string_lossy();
            let inode = target
                .strip_prefix("socket:[")
                .and_then(|t| t.strip_suffix(']'));
            if let Some(inode) = inode.and_then(|i| i.parse::<u64>().ok()) {
                holders.entry(inode).or_default().push((pid, number));
            }
        }
    }
    holders
}

fn program_name(pid: i32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|n| n.trim().to_string())
        .unwrap_or_default()
}
