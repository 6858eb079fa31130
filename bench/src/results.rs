//! A run's results: one row per contender and MTU, the ratios against the references, and the
//! JSON file kept for later comparison.

use std::time::SystemTime;

use serde_json::{Map, Value, json};

use crate::contender::{Contender, Stack};
use crate::instances::Comparison;
use crate::machine::{Machine, utc_text};
use crate::metric::{Metric, metrics};
use crate::plan::{MESSAGE_SIZE, Plan};
use crate::workload::{Cell, Figure};

/// The version of the JSON layout, raised when a field changes meaning.
pub const JSON_FORMAT: u64 = 1;

/// One contender at one MTU.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub contender: Contender,
    pub mtu: u32,
    /// The workloads' cells, or why the contender could not be set up.
    pub outcome: Result<Vec<Cell>, String>,
}

impl Row {
    /// Returns the row's value of `metric`, or why it has none.
    pub fn value(&self, metric: &Metric) -> Result<f64, String> {
        let cells = self
            .outcome
            .as_ref()
            .map_err(|reason| format!("not run: {reason}"))?;
        let cell = cells
            .iter()
            .find(|cell| cell.workload == metric.workload)
            .ok_or("not measured")?;
        let figure = cell.outcome.as_ref().map_err(Clone::clone)?;
        metric
            .value(figure)
            .ok_or_else(|| "no such value".to_owned())
    }

    /// Returns whether the row has at least one figure.
    pub fn has_figure(&self) -> bool {
        self.outcome
            .as_ref()
            .is_ok_and(|cells| cells.iter().any(|cell| cell.outcome.is_ok()))
    }
}

/// Everything a run produced.
#[derive(Debug, Clone)]
pub struct Report {
    pub machine: Machine,
    pub started: SystemTime,
    pub finished: SystemTime,
    /// The command line the run was started with.
    pub command: String,
    pub plan: Plan,
    pub rows: Vec<Row>,
    /// Instance to instance next to the kernel path, or why it has no figures; `None` when the
    /// plan leaves it out or the run was interrupted before it.
    pub instances: Option<Result<Comparison, String>>,
    /// Whether a signal cut the run short, so rows are missing.
    pub interrupted: bool,
}

impl Report {
    /// Returns the row of `stack` (with one worker) at `mtu`, the reference for ratios.
    pub fn reference(&self, stack: Stack, mtu: u32) -> Option<&Row> {
        self.rows
            .iter()
            .find(|row| row.contender == Contender::new(stack) && row.mtu == mtu)
    }

    /// Returns `row`'s value of `metric` divided by the reference's at the same MTU, when
    /// both exist and the reference is not zero.
    pub fn ratio(&self, row: &Row, metric: &Metric, reference: Stack) -> Option<f64> {
        let value = row.value(metric).ok()?;
        let base = self.reference(reference, row.mtu)?.value(metric).ok()?;
        (base > 0.0).then(|| value / base)
    }

    /// Returns the report as JSON: the machine, the plan, and per row every figure, every
    /// metric with its ratios, and every reason a figure is missing.
    pub fn to_json(&self) -> Value {
        let rows: Vec<Value> = self.rows.iter().map(|row| self.row_json(row)).collect();
        json!({
            "format": JSON_FORMAT,
            "started": utc_text(self.started),
            "finished": utc_text(self.finished),
            "command": self.command,
            "interrupted": self.interrupted,
            "machine": self.machine.to_json(),
            "plan": {
                "quick": self.plan.quick,
                "seconds": self.plan.seconds,
                "rounds": self.plan.rounds,
                "message_size": MESSAGE_SIZE,
                "mtus": self.plan.mtus,
                "contenders": self.plan.contenders.iter().map(Contender::key).collect::<Vec<_>>(),
                "workloads": self.plan.workloads.iter().map(|w| w.key()).collect::<Vec<_>>(),
                "instance_workers": self.plan.instance_workers,
            },
            "rows": rows,
            "instances": match &self.instances {
                None => Value::Null,
                Some(Ok(comparison)) => comparison.to_json(),
                Some(Err(reason)) => json!({ "error": reason }),
            },
        })
    }

    fn row_json(&self, row: &Row) -> Value {
        let mut value = json!({
            "contender": row.contender.key(),
            "name": row.contender.to_string(),
            "mtu": row.mtu,
        });
        let cells = match &row.outcome {
            Ok(cells) => cells,
            Err(reason) => {
                value["setup_error"] = Value::from(reason.as_str());
                return value;
            }
        };

        let mut workloads = Map::new();
        for cell in cells {
            let entry = match &cell.outcome {
                Ok(figure) => figure_json(figure),
                Err(reason) => json!({ "error": reason }),
            };
            workloads.insert(cell.workload.key(), entry);
        }
        value["workloads"] = Value::Object(workloads);

        let mut metric_values = Map::new();
        for metric in metrics(&self.plan.workloads) {
            let Ok(number) = row.value(&metric) else {
                continue;
            };
            let entry = json!({
                "value": number,
                "unit": metric.unit(),
                "ratio_to_veth": self.ratio(row, &metric, Stack::Veth),
                "ratio_to_slirp4netns": self.ratio(row, &metric, Stack::Slirp4netns),
            });
            metric_values.insert(metric.key(), entry);
        }
        value["metrics"] = Value::Object(metric_values);
        value
    }
}

fn figure_json(figure: &Figure) -> Value {
    match figure {
        Figure::Throughput(totals) => json!({
            "sent_bytes": totals.sent_bytes,
            "sent_bits_per_second": totals.sent_bits_per_second,
            "received_bytes": totals.received_bytes,
            "received_bits_per_second": totals.received_bits_per_second,
            "retransmits": totals.retransmits,
        }),
        Figure::Latency(summary) => summary.to_json(),
        Figure::ConnectRate(summary) => summary.to_json(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::connect_rate::ConnectRateSummary;
    use crate::plan::{Direction, Workload};
    use netcon_tools::iperf::IperfTotals;
    use netcon_tools::pingpong::LatencySummary;

    /// Returns a row with an upload figure of `gbits`, a p50 of `p50_us` and a rate.
    pub(crate) fn sample_row(contender: Contender, gbits: f64, p50_us: f64) -> Row {
        let totals = IperfTotals {
            sent_bytes: 1,
            sent_bits_per_second: gbits * 1e9,
            received_bytes: 1,
            received_bits_per_second: gbits * 1e9,
            retransmits: Some(0),
        };
        let latency = LatencySummary {
            rounds: 100,
            size: 64,
            p50_us,
            p90_us: p50_us * 1.5,
            p99_us: p50_us * 2.0,
            p999_us: p50_us * 3.0,
            max_us: p50_us * 4.0,
        };
        let rate = ConnectRateSummary {
            connections: 1000,
            failures: 0,
            seconds: 1.0,
            per_second: 1000.0,
            p50_us: 900.0,
            p99_us: 1500.0,
        };
        Row {
            contender,
            mtu: 1500,
            outcome: Ok(vec![
                Cell {
                    workload: Workload::Throughput {
                        streams: 1,
                        direction: Direction::Upload,
                    },
                    outcome: Ok(Figure::Throughput(totals)),
                },
                Cell {
                    workload: Workload::Throughput {
                        streams: 1,
                        direction: Direction::Download,
                    },
                    outcome: Err("iperf3 reported: broken".to_owned()),
                },
                Cell {
                    workload: Workload::Latency,
                    outcome: Ok(Figure::Latency(latency)),
                },
                Cell {
                    workload: Workload::ConnectRate,
                    outcome: Ok(Figure::ConnectRate(rate)),
                },
            ]),
        }
    }

    /// Returns a report over the quick plan with veth, slirp4netns, and netcon rows (one of
    /// them not set up).
    pub(crate) fn sample_report() -> Report {
        let mut failed = sample_row(Contender::netcon(2), 0.0, 0.0);
        failed.outcome = Err("netcon-dp: error: invalid --workers 2".to_owned());
        Report {
            machine: Machine::describe(),
            started: SystemTime::UNIX_EPOCH,
            finished: SystemTime::UNIX_EPOCH,
            command: "netcon-bench --quick".to_owned(),
            plan: Plan::quick(),
            rows: vec![
                sample_row(Contender::new(Stack::Veth), 20.0, 20.0),
                sample_row(Contender::new(Stack::Slirp4netns), 4.0, 50.0),
                sample_row(Contender::netcon(1), 2.0, 100.0),
                failed,
            ],
            instances: None,
            interrupted: false,
        }
    }

    #[test]
    fn ratio_against_references() {
        let report = sample_report();
        let metric = metrics(&report.plan.workloads)[0];
        let netcon = &report.rows[2];
        assert_eq!(report.ratio(netcon, &metric, Stack::Veth), Some(0.1));
        assert_eq!(report.ratio(netcon, &metric, Stack::Slirp4netns), Some(0.5));
    }

    #[test]
    fn ratio_missing_for_failed_cell() {
        let report = sample_report();
        let download = metrics(&report.plan.workloads)[1];
        assert_eq!(report.ratio(&report.rows[2], &download, Stack::Veth), None);
    }

    #[test]
    fn json_keeps_reasons_and_ratios() {
        let report = sample_report();
        let value = report.to_json();
        let rows = value["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(
            rows[3]["setup_error"],
            "netcon-dp: error: invalid --workers 2"
        );
        assert_eq!(rows[2]["metrics"]["up-1"]["ratio_to_veth"], 0.1);
        assert_eq!(
            rows[2]["workloads"]["down-1"]["error"],
            "iperf3 reported: broken"
        );
        assert_eq!(rows[0]["metrics"]["latency-p999"]["value"], 60.0);
    }

    #[test]
    fn has_figure_needs_one_success() {
        let report = sample_report();
        assert!(report.rows[0].has_figure());
        assert!(!report.rows[3].has_figure());
    }
}
