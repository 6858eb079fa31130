//! The numbers a figure is reported as: one per throughput test, four percentiles per latency
//! run and the rate of a connection-rate run, each with its unit and which way is better.

use crate::plan::{Direction, Workload};
use crate::workload::Figure;

/// The number a metric takes from a figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantity {
    /// Bits per second received, reported in Gbit/s.
    Throughput,
    /// A round-trip percentile (50, 90, 99 or 99.9), in microseconds.
    RoundTrip(Percentile),
    /// Completed connections per second.
    ConnectionsPerSecond,
}

/// A latency percentile the report shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Percentile {
    P50,
    P90,
    P99,
    P999,
}

/// One column of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    pub workload: Workload,
    pub quantity: Quantity,
}

impl Metric {
    /// Returns the column's short name, such as `up 1`, `p99.9` or `conn/s`.
    pub fn label(&self) -> String {
        match (self.workload, self.quantity) {
            (Workload::Throughput { streams, direction }, _) => {
                let word = match direction {
                    Direction::Upload => "up",
                    Direction::Download => "down",
                };
                format!("{word} {streams}")
            }
            (_, Quantity::RoundTrip(percentile)) => percentile_label(percentile).to_owned(),
            _ => "conn/s".to_owned(),
        }
    }

    /// Returns a stable identifier, such as `up-1`, `latency-p99` or `connect-rate`.
    pub fn key(&self) -> String {
        match self.quantity {
            Quantity::RoundTrip(percentile) => {
                format!("latency-{}", percentile_label(percentile).replace('.', ""))
            }
            _ => self.workload.key(),
        }
    }

    /// Returns the unit of [`Metric::value`].
    pub fn unit(&self) -> &'static str {
        match self.quantity {
            Quantity::Throughput => "Gbit/s",
            Quantity::RoundTrip(_) => "µs",
            Quantity::ConnectionsPerSecond => "connections/s",
        }
    }

    /// Returns whether a larger value is better (throughput, rate) or worse (latency).
    pub fn higher_is_better(&self) -> bool {
        !matches!(self.quantity, Quantity::RoundTrip(_))
    }

    /// Returns this metric's value in `figure`, or `None` when the figure is of another
    /// workload.
    pub fn value(&self, figure: &Figure) -> Option<f64> {
        match (self.quantity, figure) {
            (Quantity::Throughput, Figure::Throughput(totals)) => {
                Some(totals.received_bits_per_second / 1e9)
            }
            (Quantity::RoundTrip(percentile), Figure::Latency(summary)) => Some(match percentile {
                Percentile::P50 => summary.p50_us,
                Percentile::P90 => summary.p90_us,
                Percentile::P99 => summary.p99_us,
                Percentile::P999 => summary.p999_us,
            }),
            (Quantity::ConnectionsPerSecond, Figure::ConnectRate(summary)) => {
                Some(summary.per_second)
            }
            _ => None,
        }
    }
}

fn percentile_label(percentile: Percentile) -> &'static str {
    match percentile {
        Percentile::P50 => "p50",
        Percentile::P90 => "p90",
        Percentile::P99 => "p99",
        Percentile::P999 => "p99.9",
    }
}

/// Returns the metrics of `workloads`, in their order.
pub fn metrics(workloads: &[Workload]) -> Vec<Metric> {
    let mut metrics = Vec::new();
    for &workload in workloads {
        let quantities = match workload {
            Workload::Throughput { .. } => vec![Quantity::Throughput],
            Workload::Latency => [
                Percentile::P50,
                Percentile::P90,
                Percentile::P99,
                Percentile::P999,
            ]
            .map(Quantity::RoundTrip)
            .to_vec(),
            Workload::ConnectRate => vec![Quantity::ConnectionsPerSecond],
        };
        metrics.extend(
            quantities
                .into_iter()
                .map(|quantity| Metric { workload, quantity }),
        );
    }
    metrics
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Plan;

    #[test]
    fn full_plan_metric_columns() {
        let labels: Vec<String> = metrics(&Plan::full().workloads)
            .iter()
            .map(Metric::label)
            .collect();
        assert_eq!(
            labels,
            [
                "up 1", "down 1", "up 4", "down 4", "p50", "p90", "p99", "p99.9", "conn/s"
            ]
        );
    }

    #[test]
    fn metric_keys_unique() {
        let mut keys: Vec<String> = metrics(&Plan::full().workloads)
            .iter()
            .map(Metric::key)
            .collect();
        let count = keys.len();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), count);
    }

    #[test]
    fn latency_is_lower_better() {
        let latency = metrics(&[Workload::Latency])[0];
        assert!(!latency.higher_is_better());
        assert!(metrics(&[Workload::ConnectRate])[0].higher_is_better());
    }
}
