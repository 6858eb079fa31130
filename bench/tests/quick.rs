//! `netcon-bench --quick` end to end: every contender produces a figure per workload or gives
//! the reason it has none, and the table, JSON file and plot are written. One run serves all checks,
//! because it takes about a minute. Sizes of figures are not
//! checked, since they depend on the machine.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use netcon_tools::topology::{require_root, stop_child};
use serde_json::Value;

/// The quick run takes about a minute on 2 cores. A run longer than this is stopped and fails
/// the test.
const RUN_LIMIT: Duration = Duration::from_secs(150);

/// The contenders of the quick plan, by JSON key.
const CONTENDERS: [&str; 6] = [
    "veth",
    "slirp4netns",
    "pasta",
    "netcon-w1",
    "netcon-w2",
    "netcon-w4",
];

/// Contenders that must measure every workload here. pasta and netcon with several workers
/// may report a reason instead.
const MUST_MEASURE: [&str; 3] = ["veth", "slirp4netns", "netcon-w1"];

/// The metrics of the quick plan, by JSON key.
const METRICS: [&str; 7] = [
    "up-1",
    "down-1",
    "latency-p50",
    "latency-p90",
    "latency-p99",
    "latency-p999",
    "connect-rate",
];

struct Run {
    dir: tempfile::TempDir,
    stdout: String,
    stderr: String,
}

/// Runs `netcon-bench --quick --output DIR` and panics with its output unless it exits 0
/// within the limit.
fn run_quick() -> Run {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    let stdout_path = dir.path().join("stdout");
    let stderr_path = dir.path().join("stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_netcon-bench"))
        .arg("--quick")
        .arg("--output")
        .arg(&results)
        .stdin(Stdio::null())
        .stdout(File::create(&stdout_path).unwrap())
        .stderr(File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();

    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > RUN_LIMIT {
            stop_child(&mut child).unwrap();
            break None;
        }
        thread::sleep(Duration::from_millis(100));
    };
    let run = Run {
        stdout: fs::read_to_string(&stdout_path).unwrap(),
        stderr: fs::read_to_string(&stderr_path).unwrap(),
        dir,
    };
    match status {
        Some(status) if status.success() => run,
        Some(status) => panic!(
            "netcon-bench --quick failed ({status}); stderr:\n{}",
            run.stderr
        ),
        None => panic!(
            "netcon-bench --quick ran longer than {RUN_LIMIT:?}; stderr:\n{}",
            run.stderr
        ),
    }
}

/// Returns the one file in `dir` whose name ends with `suffix`.
fn output_file(dir: &Path, suffix: &str) -> PathBuf {
    let files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().ends_with(suffix))
        .collect();
    assert_eq!(
        files.len(),
        1,
        "expected one {suffix} file in {dir:?}: {files:?}"
    );
    files.into_iter().next().unwrap()
}

fn rows_by_contender(report: &Value) -> Vec<(String, &Value)> {
    report["rows"]
        .as_array()
        .expect("rows is an array")
        .iter()
        .map(|row| (row["contender"].as_str().unwrap().to_owned(), row))
        .collect()
}

/// Returns a reason why `row` has no value of `metric`, or `None` when it has a value.
fn missing_reason<'a>(row: &'a Value, metric: &str) -> Option<&'a str> {
    if let Some(reason) = row["setup_error"].as_str() {
        return Some(reason);
    }
    if row["metrics"][metric]["value"].is_number() {
        return None;
    }
    let workload = if metric.starts_with("latency") {
        "latency"
    } else {
        metric
    };
    Some(row["workloads"][workload]["error"].as_str().unwrap_or(""))
}

#[test]
fn quick_run_reports_every_contender() {
    if !require_root("quick_run_reports_every_contender") {
        return;
    }
    let run = run_quick();
    let results = run.dir.path().join("results");
    let json = fs::read_to_string(output_file(&results, ".json")).unwrap();
    let report: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["interrupted"], false);
    assert_eq!(report["plan"]["quick"], true);

    let rows = rows_by_contender(&report);
    let keys: Vec<&str> = rows.iter().map(|(key, _)| key.as_str()).collect();
    assert_eq!(keys, CONTENDERS, "rows of the quick run");

    for (key, row) in &rows {
        assert_eq!(row["mtu"], 1500, "{key}: MTU");
        for metric in METRICS {
            let Some(reason) = missing_reason(row, metric) else {
                continue;
            };
            assert!(
                !reason.trim().is_empty(),
                "{key} has neither a {metric} figure nor a reason: {row}"
            );
            assert!(
                !MUST_MEASURE.contains(&key.as_str()),
                "{key} has no {metric} figure: {reason}\nstderr:\n{}",
                run.stderr
            );
        }
    }
    check_table_and_plot(&run, &results);
}

/// Checks the Markdown table (also printed on stdout) and the PNG of a quick run.
fn check_table_and_plot(run: &Run, results: &Path) {
    let table = fs::read_to_string(output_file(results, ".md")).unwrap();
    assert_eq!(table, run.stdout, "stdout is the table");
    for name in ["kernel veth", "slirp4netns", "pasta", "netcon --workers 1"] {
        assert!(
            table.contains(&format!("| {name} | 1500 |")),
            "no {name} row in:\n{table}"
        );
    }
    assert!(table.contains("### Ratio to kernel veth"), "{table}");
    assert!(table.contains("### Ratio to slirp4netns"), "{table}");

    let png = fs::read(output_file(results, ".png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "plot is a PNG");
}
