//! `netcon-ctl demo`: measures netcon on a namespace it makes itself, with iperf3 for
//! throughput and `pingpong` for round trips, and removes everything it made when it ends.

mod report;

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::child_process::{Process, run_bounded, start_server};
use crate::iperf::{IperfTotals, parse_iperf_json};
use crate::pingpong::LatencySummary;
use crate::program_check::find_program;
use crate::signals;
use crate::topology::{Dataplane, DataplaneOptions, Netns, binary_path, netcon_command};
pub use report::DemoReport;

/// The port of the echo server inside the namespace.
const ECHO_PORT: u16 = 7777;

/// How long servers get to print their ready line.
const SERVER_READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The time limit of one `pingpong` run, and how much longer its process may take to exit.
const PINGPONG_LIMIT: Duration = Duration::from_secs(10);
const PINGPONG_GRACE: Duration = Duration::from_secs(10);

/// How much longer than its test time an iperf3 client may take (connect, report, exit).
const IPERF_GRACE: Duration = Duration::from_secs(15);

/// Settings of one demo run.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The link MTU in bytes.
    pub mtu: u32,
    /// The iperf3 test time per direction, in seconds.
    pub seconds: u64,
    /// The measured round trips per path.
    pub rounds: u64,
    /// The round-trip message size in bytes.
    pub size: usize,
    /// Whether to run the iperf3 throughput tests (`netcon-ctl perf --run` measures round
    /// trips only).
    pub throughput: bool,
    /// The time the echo server waits before each reply.
    pub echo_delay: Duration,
    /// The command's name in progress lines, such as "demo" or "perf --run".
    pub command: &'static str,
}

/// A reason the demo stopped before its report.
#[derive(Debug)]
pub enum DemoError {
    /// The demo creates namespaces and TAP devices, which needs root.
    NotRoot,
    /// A program the demo runs is not installed.
    MissingProgram {
        program: &'static str,
        install: &'static str,
    },
    /// A workspace binary is not built.
    MissingBinary { path: PathBuf },
    /// SIGINT, SIGTERM or SIGHUP arrived.
    Interrupted,
    /// A step failed.
    Step { step: &'static str, message: String },
}

impl DemoError {
    /// Returns the exit status for this error: 130 when interrupted, else 1.
    pub fn exit_code(&self) -> i32 {
        match self {
            DemoError::Interrupted => 130,
            _ => 1,
        }
    }
}

impl fmt::Display for DemoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DemoError::NotRoot => write!(
                f,
                "the demo needs root to create a network namespace and a TAP device; run it \
                 with sudo"
            ),
            DemoError::MissingProgram { program, install } => {
                write!(f, "{program} is not installed; install it with `{install}`")
            }
            DemoError::MissingBinary { path } => write!(
                f,
                "{} not found; build the workspace with `cargo build --release --workspace`",
                path.display()
            ),
            DemoError::Interrupted => write!(f, "interrupted; everything the demo made is removed"),
            DemoError::Step { step, message } => write!(f, "{step} failed: {message}"),
        }
    }
}

/// Runs the demo and prints progress and the result table on stdout.
///
/// Blocks for about twice `seconds` plus the round-trip runs. Everything it created (namespace,
/// netcon-dp, servers) is removed before it returns, also on error and on SIGINT.
pub fn demo(options: &DemoOptions) -> Result<DemoReport, DemoError> {
    check_prerequisites()?;
    signals::install_flag().map_err(step_error("installing signal handlers"))?;
    let _ = PROGRESS_COMMAND.set(options.command);
    // A reader that goes away (`netcon-ctl demo | head`) must not kill the demo before it
    // removes what it made, so progress lines ignore a closed stdout until the report.
    let _pipe = IgnoredSigpipe::install();
    let exe = std::env::current_exe().map_err(step_error("finding netcon-ctl's own path"))?;

    progress("creating a network namespace for the peer");
    let netns = Netns::create("netcon-demo").map_err(step_error("creating the namespace"))?;
    progress(&format!("  namespace {}", netns.name()));
    check_interrupted()?;

    let mut dataplane_options = DataplaneOptions::for_netns(&netns);
    dataplane_options.mtu = options.mtu;
    progress(&format!(
        "starting netcon-dp (TAP {}, {} for the stack, {} for the peer, MTU {})",
        dataplane_options.tap,
        dataplane_options.address,
        dataplane_options.peer_address,
        options.mtu
    ));
    let dataplane = Dataplane::start(&dataplane_options).map_err(|err| {
        if signals::interrupted() {
            return DemoError::Interrupted;
        }
        DemoError::Step {
            step: "starting netcon-dp",
            message: err.to_string(),
        }
    })?;
    progress(&format!("  netcon-dp ready (pid {})", dataplane.pid()));
    let peer = peer_ip(&dataplane_options.peer_address);

    let result = measure(options, &exe, &netns, &dataplane, &peer);
    let failed_with_dataplane_log = matches!(result, Err(DemoError::Step { .. }));
    if failed_with_dataplane_log {
        print_dataplane_stderr(&dataplane);
    }

    progress("removing netcon-dp and the namespace");
    drop(dataplane);
    drop(netns);
    result
}

/// Runs the servers and measurements once netcon-dp is up.
fn measure(
    options: &DemoOptions,
    exe: &Path,
    netns: &Netns,
    dataplane: &Dataplane,
    peer: &str,
) -> Result<DemoReport, DemoError> {
    // netcon-dp brings lo up too, but the kernel reference depends on it, so make sure.
    let mut lo_up = netns.command("ip");
    lo_up.args(["link", "set", "lo", "up"]);
    run_checked(
        &mut lo_up,
        Duration::from_secs(5),
        "bringing up lo in the namespace",
    )?;

    let socket = dataplane.socket_path();
    let (upload, download) = if options.throughput {
        let (upload, download) = measure_throughput(options, netns, socket, peer)?;
        (Some(upload), Some(download))
    } else {
        (None, None)
    };

    progress(&format!(
        "starting the echo server on port {ECHO_PORT} in the namespace"
    ));
    let echo_seconds = (PINGPONG_LIMIT + PINGPONG_GRACE).as_secs() * 3;
    let mut echo_server = netns.command(&exe.to_string_lossy());
    echo_server.args(["echo-server", "--listen", &format!("0.0.0.0:{ECHO_PORT}")]);
    echo_server.args(["--seconds", &echo_seconds.to_string()]);
    echo_server.args(["--delay-ms", &options.echo_delay.as_millis().to_string()]);
    let echo_server = start_step(&mut echo_server, "listening on", "starting the echo server")?;
    progress(&format!("  echo server pid {}", echo_server.pid()));

    progress(&format!("round trips through netcon to {peer}:{ECHO_PORT}"));
    let target = format!("{peer}:{ECHO_PORT}");
    let mut through_netcon = netcon_command(socket, &exe.to_string_lossy());
    pingpong_args(&mut through_netcon, &target, options);
    let netcon_latency = run_pingpong(&mut through_netcon, &echo_server)?;

    progress("round trips over the namespace's loopback (kernel reference)");
    let mut kernel = netns.command(&exe.to_string_lossy());
    pingpong_args(&mut kernel, &format!("127.0.0.1:{ECHO_PORT}"), options);
    let kernel_latency = run_pingpong(&mut kernel, &echo_server)?;

    Ok(DemoReport {
        mtu: options.mtu,
        seconds: options.seconds,
        upload,
        download,
        netcon_latency,
        kernel_latency,
    })
}

/// Runs iperf3 through netcon against a server in the namespace, upload then download.
fn measure_throughput(
    options: &DemoOptions,
    netns: &Netns,
    socket: &Path,
    peer: &str,
) -> Result<(IperfTotals, IperfTotals), DemoError> {
    progress(&format!(
        "starting the iperf3 server on {peer} in the namespace"
    ));
    let mut iperf_server = netns.command("iperf3");
    iperf_server.args(["-s", "-4", "-B", peer, "--forceflush"]);
    let iperf_server = start_step(&mut iperf_server, "Server listening", "starting iperf3 -s")?;
    progress(&format!("  iperf3 server pid {}", iperf_server.pid()));

    progress(&format!(
        "upload: iperf3 through netcon for {} s",
        options.seconds
    ));
    let upload = run_iperf(socket, peer, options.seconds, false, &iperf_server)?;
    progress(&format!(
        "download: iperf3 -R through netcon for {} s",
        options.seconds
    ));
    let download = run_iperf(socket, peer, options.seconds, true, &iperf_server)?;
    Ok((upload, download))
}

fn check_prerequisites() -> Result<(), DemoError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(DemoError::NotRoot);
    }
    for (program, install) in [
        ("iperf3", "apt-get install iperf3"),
        ("ip", "apt-get install iproute2"),
    ] {
        if find_program(OsStr::new(program)).is_none() {
            return Err(DemoError::MissingProgram { program, install });
        }
    }
    for name in ["netcon-dp", "libnetcon_preload.so"] {
        let path = binary_path(name);
        if !path.exists() {
            return Err(DemoError::MissingBinary { path });
        }
    }
    Ok(())
}

fn run_iperf(
    socket: &Path,
    peer: &str,
    seconds: u64,
    reverse: bool,
    server: &Process,
) -> Result<IperfTotals, DemoError> {
    let step = if reverse {
        "the download test"
    } else {
        "the upload test"
    };
    let mut client = netcon_command(socket, "iperf3");
    client.args(["-4", "-c", peer, "-t", &seconds.to_string(), "-J"]);
    if reverse {
        client.arg("-R");
    }
    let timeout = Duration::from_secs(seconds) + IPERF_GRACE;
    let output = run_bounded(&mut client, timeout).map_err(step_error(step))?;

    let stdout = String::from_utf8_lossy(&output.stdout);
    parse_iperf_json(&stdout).map_err(|message| DemoError::Step {
        step,
        message: format!(
            "{message} (client {}; client stderr: {}; server stderr: {})",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim(),
            server.stderr_text().trim()
        ),
    })
}

fn pingpong_args(command: &mut Command, target: &str, options: &DemoOptions) {
    command.args(["pingpong", "--connect", target, "--json"]);
    command.args(["--rounds", &options.rounds.to_string()]);
    command.args(["--size", &options.size.to_string()]);
    command.args(["--seconds", &PINGPONG_LIMIT.as_secs().to_string()]);
}

fn run_pingpong(command: &mut Command, server: &Process) -> Result<LatencySummary, DemoError> {
    let step = "the round-trip test";
    let output = run_bounded(command, PINGPONG_LIMIT + PINGPONG_GRACE).map_err(step_error(step))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = serde_json::from_str(&stdout)
        .ok()
        .and_then(|value| LatencySummary::from_json(&value));
    summary.ok_or_else(|| DemoError::Step {
        step,
        message: format!(
            "pingpong exited ({}) without a JSON summary; stderr: {}; echo server stderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim(),
            server.stderr_text().trim()
        ),
    })
}

fn start_step(
    command: &mut Command,
    ready: &str,
    step: &'static str,
) -> Result<Process, DemoError> {
    start_server(command, ready, SERVER_READY_TIMEOUT).map_err(step_error(step))
}

fn run_checked(
    command: &mut Command,
    timeout: Duration,
    step: &'static str,
) -> Result<(), DemoError> {
    let output = run_bounded(command, timeout).map_err(step_error(step))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let message = format!("{}: {}", output.status, stderr.trim());
    Err(DemoError::Step { step, message })
}

/// Returns a mapper that turns an I/O error of `step` into a [`DemoError`].
fn step_error(step: &'static str) -> impl Fn(io::Error) -> DemoError {
    move |err| {
        if err.kind() == io::ErrorKind::Interrupted || signals::interrupted() {
            DemoError::Interrupted
        } else {
            DemoError::Step {
                step,
                message: err.to_string(),
            }
        }
    }
}

fn check_interrupted() -> Result<(), DemoError> {
    if signals::interrupted() {
        return Err(DemoError::Interrupted);
    }
    Ok(())
}

/// Returns the address part of a CIDR such as `10.77.0.1/24`.
fn peer_ip(cidr: &str) -> String {
    cidr.split('/').next().unwrap_or(cidr).to_owned()
}

fn print_dataplane_stderr(dataplane: &Dataplane) {
    let stderr = dataplane.stderr_text();
    if stderr.trim().is_empty() {
        return;
    }
    eprintln!("netcon-dp stderr (pid {}):", dataplane.pid());
    for line in stderr
        .lines()
        .rev()
        .take(20)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
    {
        eprintln!("  {line}");
    }
}

/// The command name [`progress`] prints, set by [`demo`].
static PROGRESS_COMMAND: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

/// Prints one progress line, or nothing once stdout is closed.
fn progress(line: &str) {
    use std::io::Write;
    let command = PROGRESS_COMMAND.get().copied().unwrap_or("demo");
    let _ = writeln!(io::stdout().lock(), "netcon {command}: {line}");
}

/// A guard that ignores SIGPIPE while it lives. Dropping it restores the default, so a report
/// written to a closed stdout ends the process quietly once everything is removed.
struct IgnoredSigpipe;

impl IgnoredSigpipe {
    fn install() -> IgnoredSigpipe {
        // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        IgnoredSigpipe
    }
}

impl Drop for IgnoredSigpipe {
    fn drop(&mut self) {
        // SAFETY: restoring the default disposition of SIGPIPE has no preconditions.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_ip_strips_prefix() {
        assert_eq!(peer_ip("10.77.0.1/24"), "10.77.0.1");
        assert_eq!(peer_ip("10.77.0.1"), "10.77.0.1");
    }
}
