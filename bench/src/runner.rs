//! The run itself: every contender at every MTU, set up, measured and torn down in turn, with
//! progress lines on stderr, then the Markdown table, the JSON file and the plot.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use netcon_tools::program_check::find_program;
use netcon_tools::signals;
use netcon_tools::topology::binary_path;

use crate::StepError;
use crate::instances;
use crate::machine::{Machine, utc_stamp};
use crate::plan::Plan;
use crate::plot;
use crate::results::{Report, Row};
use crate::table::markdown;
use crate::workload::run_workloads;

/// A reason a run could not start.
#[derive(Debug)]
pub enum RunError {
    /// Namespaces, veth pairs and TAP devices need root.
    NotRoot,
    /// A program every contender needs is not installed or not built.
    Missing(String),
    /// The signal handlers could not be installed.
    Signals(io::Error),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::NotRoot => write!(
                f,
                "netcon-bench creates network namespaces and TAP devices, which needs root; \
                 run it with sudo"
            ),
            RunError::Missing(what) => write!(f, "{what}"),
            RunError::Signals(err) => write!(f, "cannot install signal handlers: {err}"),
        }
    }
}

/// The paths of a run's output files.
#[derive(Debug)]
pub struct Outputs {
    pub markdown: PathBuf,
    pub json: PathBuf,
    /// The plot, or why it was not drawn.
    pub plot: Result<PathBuf, String>,
}

/// Checks that the run can start: root, iperf3 and the workspace binaries. Peer stacks that
/// are missing only fail their own rows.
pub fn check_prerequisites() -> Result<(), RunError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(RunError::NotRoot);
    }
    for (program, package) in [
        ("iperf3", "iperf3"),
        ("ip", "iproute2"),
        ("sysctl", "procps"),
    ] {
        if find_program(OsStr::new(program)).is_none() {
            return Err(RunError::Missing(format!(
                "{program} is not installed; install it with `apt-get install {package}`"
            )));
        }
    }
    for name in ["netcon-ctl", "netcon-dp", "libnetcon_preload.so"] {
        let path = binary_path(name);
        if !path.exists() {
            return Err(RunError::Missing(format!(
                "{} not found; build the workspace with `cargo build --release --workspace` \
                 (or without --release for a debug build)",
                path.display()
            )));
        }
    }
    Ok(())
}

/// Runs `plan` and returns the report, complete or, after SIGINT, SIGTERM or SIGHUP, with the
/// rows measured so far and `interrupted` set.
///
/// Each contender's namespaces and processes are removed before the next one starts, and on
/// interruption before this returns.
pub fn run(plan: &Plan, command: String) -> Result<Report, RunError> {
    check_prerequisites()?;
    signals::install_flag().map_err(RunError::Signals)?;
    let started = SystemTime::now();
    let clock = Instant::now();
    let machine = Machine::describe();
    progress(&format!("machine: {}", machine.summary()));

    let total = plan.contenders.len() * plan.mtus.len();
    let mut rows = Vec::new();
    let mut interrupted = false;
    'contenders: for contender in &plan.contenders {
        for &mtu in &plan.mtus {
            let step = rows.len() + 1;
            let elapsed = clock.elapsed().as_secs();
            progress(&format!(
                "[{step}/{total}, {elapsed} s] {contender}, MTU {mtu}: setting up"
            ));
            let outcome = match contender.set_up(mtu) {
                Ok(site) => {
                    progress(&format!("  {}", site.describe()));
                    let mut report_line = |line: &str| progress(&format!("  {line}"));
                    let cells = run_workloads(&site, plan, &mut report_line);
                    progress("  tearing down");
                    drop(site);
                    cells
                }
                Err(err) => Err(err),
            };
            let outcome = match outcome {
                Ok(cells) => Ok(cells),
                Err(StepError::Interrupted) => {
                    interrupted = true;
                    break 'contenders;
                }
                Err(StepError::Failed(reason)) => {
                    progress(&format!("  not run: {reason}"));
                    Err(reason)
                }
            };
            rows.push(Row {
                contender: *contender,
                mtu,
                outcome,
            });
        }
    }
    let mut instances = None;
    if !interrupted && !plan.instance_workers.is_empty() {
        let elapsed = clock.elapsed().as_secs();
        progress(&format!(
            "[{elapsed} s] instance to instance, --workers {:?} on both ends, next to the \
             kernel path over the same bridge",
            plan.instance_workers
        ));
        let seconds = u32::try_from(plan.seconds).unwrap_or(u32::MAX);
        let outcome = instances::measure(&plan.instance_workers, seconds);
        match &outcome {
            Ok(comparison) => progress(&format!("  {comparison}")),
            Err(reason) => progress(&format!("  not run: {reason}")),
        }
        interrupted = signals::interrupted();
        instances = Some(outcome);
    }
    if interrupted {
        progress("interrupted; every namespace and process of the run is removed");
    }

    Ok(Report {
        machine,
        started,
        finished: SystemTime::now(),
        command,
        plan: plan.clone(),
        rows,
        instances,
        interrupted,
    })
}

/// Writes the report into `dir` as `netcon-bench-STAMP.md`, `.json` and `.png`, where STAMP
/// is the run's start time in UTC. A plot that cannot be drawn is reported, not fatal.
pub fn write_outputs(report: &Report, dir: &Path, font: &Path) -> io::Result<Outputs> {
    fs::create_dir_all(dir).map_err(|err| with_path(err, "cannot create", dir))?;
    let stem = format!("netcon-bench-{}", utc_stamp(report.started));

    let markdown_path = dir.join(format!("{stem}.md"));
    fs::write(&markdown_path, markdown(report))
        .map_err(|err| with_path(err, "cannot write", &markdown_path))?;

    let json_path = dir.join(format!("{stem}.json"));
    let json = serde_json::to_string_pretty(&report.to_json()).map_err(io::Error::other)?;
    fs::write(&json_path, json + "\n").map_err(|err| with_path(err, "cannot write", &json_path))?;

    let plot_path = dir.join(format!("{stem}.png"));
    let plot = plot::load_font(font)
        .and_then(|()| plot::draw(report, &plot_path))
        .map(|()| plot_path)
        .map_err(|err| err.to_string());
    Ok(Outputs {
        markdown: markdown_path,
        json: json_path,
        plot,
    })
}

fn with_path(err: io::Error, action: &str, path: &Path) -> io::Error {
    io::Error::new(err.kind(), format!("{action} {}: {err}", path.display()))
}

/// Prints one progress line on stderr, so stdout holds only the table.
pub fn progress(line: &str) {
    eprintln!("netcon-bench: {line}");
}
