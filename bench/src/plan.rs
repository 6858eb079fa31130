//! The plan of a run: the contenders, the MTUs, the workloads and their durations.

use std::fmt;
use std::time::Duration;

use crate::contender::{Contender, Stack};

/// The MTUs of a full run: Ethernet's, and the largest every contender accepts (slirp4netns and
/// pasta default to it, since large frames cut per-packet costs).
pub const FULL_MTUS: [u32; 2] = [1500, 65520];

/// The netcon worker counts of a run.
pub const NETCON_WORKERS: [usize; 3] = [1, 2, 4];

/// The worker counts, on both ends, of the instance-to-instance comparison.
pub const INSTANCE_WORKERS: [usize; 2] = [1, 2];

/// The size of the latency and connection-rate messages, in bytes.
pub const MESSAGE_SIZE: usize = 64;

/// The direction bulk data flows in a throughput test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the client (the program on the contender's stack) to the server.
    Upload,
    /// From the server to the client (`iperf3 -R`).
    Download,
}

/// One measurement taken on every contender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Workload {
    /// Bulk TCP with iperf3 over `streams` parallel connections.
    Throughput { streams: u32, direction: Direction },
    /// Round trips of small messages on one connection (netcon-ctl pingpong).
    Latency,
    /// Short connections one after another (netcon-bench connect-rate).
    ConnectRate,
}

impl Workload {
    /// Returns a stable identifier, such as `up-1` or `latency`, used as the JSON key.
    pub fn key(&self) -> String {
        match self {
            Workload::Throughput { streams, direction } => {
                format!("{}-{streams}", direction_word(*direction))
            }
            Workload::Latency => "latency".to_owned(),
            Workload::ConnectRate => "connect-rate".to_owned(),
        }
    }
}

fn direction_word(direction: Direction) -> &'static str {
    match direction {
        Direction::Upload => "up",
        Direction::Download => "down",
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Workload::Throughput { streams, direction } => {
                let direction = match direction {
                    Direction::Upload => "upload",
                    Direction::Download => "download",
                };
                let plural = if *streams == 1 { "" } else { "s" };
                write!(f, "iperf3 {direction}, {streams} stream{plural}")
            }
            Workload::Latency => write!(f, "round trips of {MESSAGE_SIZE} B"),
            Workload::ConnectRate => write!(f, "connection rate"),
        }
    }
}

/// Everything a run measures.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub contenders: Vec<Contender>,
    pub mtus: Vec<u32>,
    pub workloads: Vec<Workload>,
    /// The time of each iperf3 test and each connection-rate run, in seconds.
    pub seconds: u64,
    /// The measured round trips of each latency run.
    pub rounds: u64,
    /// Whether this is the `--quick` subset.
    pub quick: bool,
    /// The worker counts of the instance-to-instance comparison, which runs after the
    /// contenders; empty to leave it out.
    pub instance_workers: Vec<usize>,
}

impl Plan {
    /// Returns the full plan: every contender at both MTUs, throughput with 1 and 4 streams
    /// both ways, latency and connection rate, then instance to instance.
    pub fn full() -> Plan {
        let mut workloads = Vec::new();
        for streams in [1, 4] {
            for direction in [Direction::Upload, Direction::Download] {
                workloads.push(Workload::Throughput { streams, direction });
            }
        }
        workloads.extend([Workload::Latency, Workload::ConnectRate]);
        Plan {
            contenders: all_contenders(),
            mtus: FULL_MTUS.to_vec(),
            workloads,
            seconds: 5,
            rounds: 20_000,
            quick: false,
            instance_workers: INSTANCE_WORKERS.to_vec(),
        }
    }

    /// Returns the `--quick` plan: every contender at MTU 1500, 2 s runs, one stream each way,
    /// 2000 round trips and 2 s of connections, without instance to instance. It takes about
    /// a minute.
    pub fn quick() -> Plan {
        Plan {
            contenders: all_contenders(),
            mtus: vec![1500],
            workloads: vec![
                Workload::Throughput {
                    streams: 1,
                    direction: Direction::Upload,
                },
                Workload::Throughput {
                    streams: 1,
                    direction: Direction::Download,
                },
                Workload::Latency,
                Workload::ConnectRate,
            ],
            seconds: 2,
            rounds: 2_000,
            quick: true,
            instance_workers: Vec::new(),
        }
    }

    /// Returns the time limit of one latency run: twice the test time, at least 4 s.
    pub fn latency_limit(&self) -> Duration {
        Duration::from_secs(self.seconds.max(2) * 2)
    }

    /// Returns an upper bound, with every client's grace time, on how long one contender's
    /// workloads take at one MTU.
    pub fn site_time_limit(&self) -> Duration {
        let per_workload = Duration::from_secs(self.seconds) + self.latency_limit() + CLIENT_GRACE;
        per_workload * self.workloads.len() as u32
    }
}

/// How much longer than its own time limit a client may take to start, report and exit.
pub const CLIENT_GRACE: Duration = Duration::from_secs(15);

/// Returns kernel veth, slirp4netns, pasta and netcon with 1, 2 and 4 workers, in that order.
pub fn all_contenders() -> Vec<Contender> {
    let mut contenders = vec![
        Contender::new(Stack::Veth),
        Contender::new(Stack::Slirp4netns),
        Contender::new(Stack::Pasta),
    ];
    contenders.extend(NETCON_WORKERS.map(Contender::netcon));
    contenders
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_keys_unique() {
        let plan = Plan::full();
        let mut keys: Vec<String> = plan.workloads.iter().map(Workload::key).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), plan.workloads.len());
        assert!(keys.contains(&"down-4".to_owned()), "{keys:?}");
    }

    #[test]
    fn quick_plan_is_subset() {
        let full = Plan::full();
        let quick = Plan::quick();
        assert!(quick.workloads.iter().all(|w| full.workloads.contains(w)));
        assert!(quick.mtus.iter().all(|m| full.mtus.contains(m)));
        assert_eq!(quick.contenders, full.contenders);
    }

    #[test]
    fn contenders_start_with_references() {
        let contenders = all_contenders();
        assert_eq!(contenders[0], Contender::new(Stack::Veth));
        assert_eq!(contenders[1], Contender::new(Stack::Slirp4netns));
    }

    #[test]
    fn workload_names_read_well() {
        let workload = Workload::Throughput {
            streams: 4,
            direction: Direction::Download,
        };
        assert_eq!(workload.to_string(), "iperf3 download, 4 streams");
    }
}
