//! netcon-bench runs the same workloads through the kernel's veth, slirp4netns, pasta and
//! netcon on one machine and reports each figure with its ratio to the kernel and to
//! slirp4netns. Criterion micro-benchmarks of hot functions live in `benches/`.

pub mod connect_rate;
pub mod contender;
pub mod idle;
pub mod instances;
pub mod machine;
pub mod metric;
pub mod plan;
pub mod plot;
pub mod results;
pub mod runner;
pub mod serial_echo;
pub mod table;
pub mod workload;

use std::fmt;
use std::io;

use netcon_tools::signals;

/// A reason a step of a run produced no figure.
#[derive(Debug, Clone, PartialEq)]
pub enum StepError {
    /// SIGINT, SIGTERM or SIGHUP arrived, so the whole run stops.
    Interrupted,
    /// The step failed for the reason given, and the run goes on with the next step.
    Failed(String),
}

impl StepError {
    /// Returns a [`StepError::Failed`] with `message`, or [`StepError::Interrupted`] when a
    /// signal arrived meanwhile (a child killed by Ctrl-C fails in some unrelated way).
    pub fn failed(message: impl Into<String>) -> StepError {
        if signals::interrupted() {
            return StepError::Interrupted;
        }
        StepError::Failed(message.into())
    }
}

impl From<io::Error> for StepError {
    fn from(err: io::Error) -> StepError {
        if err.kind() == io::ErrorKind::Interrupted {
            return StepError::Interrupted;
        }
        StepError::failed(err.to_string())
    }
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StepError::Interrupted => write!(f, "interrupted by a signal"),
            StepError::Failed(message) => write!(f, "{message}"),
        }
    }
}
