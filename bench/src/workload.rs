//! Running the plan's workloads on one contender: the servers in the server namespace, and
//! the clients (iperf3, netcon-ctl pingpong, netcon-bench connect-rate) on the contender's
//! stack.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use netcon_tools::iperf::{IperfTotals, parse_iperf_json};
use netcon_tools::pingpong::LatencySummary;
use netcon_tools::topology::binary_path;
use serde_json::Value;

use crate::StepError;
use crate::connect_rate::ConnectRateSummary;
use crate::contender::Site;
use crate::plan::{CLIENT_GRACE, Direction, MESSAGE_SIZE, Plan, Workload};
use netcon_tools::child_process::{Process, one_line, run_bounded, start_server};

/// The echo server's port in the server namespace.
const ECHO_PORT: u16 = 7777;

/// The serial echo server's port in the server namespace.
const SERIAL_ECHO_PORT: u16 = 7778;

/// iperf3's default port, free in the server namespace made for the run.
const IPERF_PORT: u16 = 5201;

/// How long a server gets to print its ready line.
const SERVER_READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The connection-rate run also stops after this many connections, so a very fast stack
/// cannot fill the server's TIME_WAIT table without bound.
const MAX_CONNECTIONS: u64 = 1_000_000;

/// The measurement of one workload.
#[derive(Debug, Clone, PartialEq)]
pub enum Figure {
    Throughput(IperfTotals),
    Latency(LatencySummary),
    ConnectRate(ConnectRateSummary),
}

impl Figure {
    /// Returns the figure in one line, for progress output.
    pub fn summary(&self) -> String {
        match self {
            Figure::Throughput(totals) => format!(
                "{:.2} Gbit/s received, {} retransmits",
                totals.received_bits_per_second / 1e9,
                totals
                    .retransmits
                    .map_or_else(|| "unknown".to_owned(), |r| r.to_string())
            ),
            Figure::Latency(summary) => summary.to_string(),
            Figure::ConnectRate(summary) => summary.to_string(),
        }
    }
}

/// One workload's outcome on one contender: a figure, or why there is none.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub workload: Workload,
    pub outcome: Result<Figure, String>,
}

/// The servers a site's workloads need, started on first use and stopped on drop.
struct Servers<'a> {
    site: &'a Site,
    plan: &'a Plan,
    iperf: Option<Result<Process, String>>,
    echo: Option<Result<Process, String>>,
    serial_echo: Option<Result<Process, String>>,
}

impl Servers<'_> {
    /// Returns the iperf3 server, or why it did not start.
    fn iperf(&mut self) -> Result<&Process, StepError> {
        if self.iperf.is_none() {
            let mut command = self.site.server_command("iperf3");
            let address = self.site.server_ip.to_string();
            command.args(["-s", "-4", "-B", &address, "-p", &IPERF_PORT.to_string()]);
            command.arg("--forceflush");
            self.iperf = Some(start(&mut command, "Server listening", "iperf3 -s")?);
        }
        as_ref(self.iperf.as_ref())
    }

    /// Returns the echo server, or why it did not start.
    fn echo(&mut self) -> Result<&Process, StepError> {
        if self.echo.is_none() {
            let mut command = self.site.server_command(binary_path("netcon-ctl"));
            let listen = format!("{}:{ECHO_PORT}", self.site.server_ip);
            let seconds = self.plan.site_time_limit().as_secs().to_string();
            command.args(["echo-server", "--listen", &listen, "--seconds", &seconds]);
            self.echo = Some(start(
                &mut command,
                "listening on",
                "netcon-ctl echo-server",
            )?);
        }
        as_ref(self.echo.as_ref())
    }

    /// Returns the serial echo server (netcon-bench's own), or why it did not start.
    fn serial_echo(&mut self) -> Result<&Process, StepError> {
        if self.serial_echo.is_none() {
            let mut command = self.site.server_command(own_path()?);
            let listen = format!("{}:{SERIAL_ECHO_PORT}", self.site.server_ip);
            let seconds = self.plan.site_time_limit().as_secs().to_string();
            command.args([
                "serial-echo-server",
                "--listen",
                &listen,
                "--seconds",
                &seconds,
            ]);
            let name = "netcon-bench serial-echo-server";
            self.serial_echo = Some(start(&mut command, "listening on", name)?);
        }
        as_ref(self.serial_echo.as_ref())
    }
}

fn own_path() -> Result<std::path::PathBuf, StepError> {
    std::env::current_exe()
        .map_err(|err| StepError::failed(format!("cannot find netcon-bench's own path: {err}")))
}

/// Starts a server, keeping a failure as its reason so later workloads report it too.
fn start(
    command: &mut Command,
    ready: &str,
    name: &str,
) -> Result<Result<Process, String>, StepError> {
    match start_server(command, ready, SERVER_READY_TIMEOUT) {
        Ok(process) => Ok(Ok(process)),
        Err(err) => match StepError::from(err) {
            StepError::Interrupted => Err(StepError::Interrupted),
            StepError::Failed(message) => Ok(Err(format!("{name} did not start: {message}"))),
        },
    }
}

fn as_ref(server: Option<&Result<Process, String>>) -> Result<&Process, StepError> {
    match server.expect("started above") {
        Ok(process) => Ok(process),
        Err(message) => Err(StepError::Failed(message.clone())),
    }
}

/// Runs every workload of `plan` on `site`, calling `progress` before each and with each
/// outcome.
///
/// A failed workload becomes a cell with its reason and the next one runs. Returns
/// [`StepError::Interrupted`] when a signal arrives, after stopping the servers.
pub fn run_workloads(
    site: &Site,
    plan: &Plan,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Cell>, StepError> {
    let mut servers = Servers {
        site,
        plan,
        iperf: None,
        echo: None,
        serial_echo: None,
    };
    let mut cells = Vec::new();
    for workload in &plan.workloads {
        progress(&format!("{workload} ..."));
        let cpu_before = site.dataplane_pid().and_then(cpu_seconds);
        let outcome = match run_one(&mut servers, *workload) {
            Ok(figure) => Ok(figure),
            Err(StepError::Interrupted) => return Err(StepError::Interrupted),
            Err(StepError::Failed(message)) => Err(message),
        };
        match &outcome {
            Ok(figure) => progress(&format!("  {}", figure.summary())),
            Err(message) => progress(&format!("  failed: {message}")),
        }
        let cpu_after = site.dataplane_pid().and_then(cpu_seconds);
        if let (Some(before), Some(after), Ok(Figure::Throughput(totals))) =
            (cpu_before, cpu_after, &outcome)
        {
            progress(&cpu_summary(after - before, totals.received_bytes));
        }
        cells.push(Cell {
            workload: *workload,
            outcome,
        });
    }
    Ok(cells)
}

/// Returns the user plus system CPU time process `pid` has used, in seconds, from
/// `/proc/PID/stat`.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces, so fields are counted after its closing bracket:
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // SAFETY: sysconf has no memory preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then(|| (utime + stime) as f64 / ticks as f64)
}

/// Describes netcon-dp's CPU use over a throughput test that moved `bytes`.
fn cpu_summary(seconds: f64, bytes: u64) -> String {
    let gigabytes = bytes as f64 / 1e9;
    let per_gigabyte = if gigabytes > 0.0 {
        format!("{:.3}", seconds / gigabytes)
    } else {
        "–".to_owned()
    };
    format!("  netcon-dp used {seconds:.2} s of CPU, {per_gigabyte} s per GB received")
}

fn run_one(servers: &mut Servers<'_>, workload: Workload) -> Result<Figure, StepError> {
    let (site, plan) = (servers.site, servers.plan);
    match workload {
        Workload::Throughput { streams, direction } => {
            let server = servers.iperf()?;
            let totals = run_iperf(site, plan, streams, direction, server)?;
            Ok(Figure::Throughput(totals))
        }
        Workload::Latency => {
            let summary = run_pingpong(site, plan, servers.echo()?)?;
            Ok(Figure::Latency(summary))
        }
        Workload::ConnectRate => {
            let summary = run_connect_rate(site, plan, servers.serial_echo()?)?;
            Ok(Figure::ConnectRate(summary))
        }
    }
}

fn run_iperf(
    site: &Site,
    plan: &Plan,
    streams: u32,
    direction: Direction,
    server: &Process,
) -> Result<IperfTotals, StepError> {
    let mut client = site.client_command("iperf3");
    let target = site.target_ip.to_string();
    client.args(["-4", "-c", &target, "-p", &IPERF_PORT.to_string(), "-J"]);
    client.args(["-t", &plan.seconds.to_string(), "-P", &streams.to_string()]);
    if direction == Direction::Download {
        client.arg("-R");
    }
    let timeout = Duration::from_secs(plan.seconds) + CLIENT_GRACE;
    let output = run_bounded(&mut client, timeout)?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    parse_iperf_json(&stdout).map_err(|message| {
        StepError::failed(format!(
            "{message} (client {}; client stderr: {}; server stderr: {})",
            output.status,
            one_line(&String::from_utf8_lossy(&output.stderr)),
            one_line(&server.stderr_text())
        ))
    })
}

fn run_pingpong(site: &Site, plan: &Plan, server: &Process) -> Result<LatencySummary, StepError> {
    let mut client = site.client_command(binary_path("netcon-ctl"));
    let target = format!("{}:{ECHO_PORT}", site.target_ip);
    client.args(["pingpong", "--connect", &target, "--json"]);
    client.args(["--rounds", &plan.rounds.to_string()]);
    client.args(["--size", &MESSAGE_SIZE.to_string()]);
    client.args(["--seconds", &plan.latency_limit().as_secs().to_string()]);
    let value = run_json_client(&mut client, plan.latency_limit(), server)?;
    LatencySummary::from_json(&value).ok_or_else(|| {
        StepError::failed(format!("pingpong printed an incomplete summary: {value}"))
    })
}

fn run_connect_rate(
    site: &Site,
    plan: &Plan,
    server: &Process,
) -> Result<ConnectRateSummary, StepError> {
    let mut client = site.client_command(own_path()?);
    let target = format!("{}:{SERIAL_ECHO_PORT}", site.target_ip);
    client.args(["connect-rate", "--connect", &target, "--json"]);
    client.args(["--seconds", &plan.seconds.to_string()]);
    client.args(["--max-connections", &MAX_CONNECTIONS.to_string()]);
    client.args(["--size", &MESSAGE_SIZE.to_string()]);
    let value = run_json_client(&mut client, Duration::from_secs(plan.seconds), server)?;
    ConnectRateSummary::from_json(&value).ok_or_else(|| {
        StepError::failed(format!(
            "connect-rate printed an incomplete summary: {value}"
        ))
    })
}

/// Runs a client that prints one JSON object on success, with `limit` plus the grace time
/// to finish.
fn run_json_client(
    client: &mut Command,
    limit: Duration,
    server: &Process,
) -> Result<Value, StepError> {
    let output = run_bounded(client, limit + CLIENT_GRACE)?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let value = serde_json::from_str::<Value>(stdout.trim()).ok();
    match value {
        Some(value) if output.status.success() => Ok(value),
        _ => Err(StepError::failed(format!(
            "{} exited ({}) without a JSON summary; stderr: {}; server stderr: {}",
            program_name(client),
            output.status,
            one_line(&String::from_utf8_lossy(&output.stderr)),
            one_line(&server.stderr_text())
        ))),
    }
}

/// Returns the client program's name, skipping the `ip netns exec NS` or `netcon-ctl run`
/// wrapper.
fn program_name(command: &Command) -> String {
    let args: Vec<String> = command
        .get_args()
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect();
    let program = match args.iter().position(|arg| arg == "--") {
        Some(separator) => args.get(separator + 1),
        None => args.get(3),
    };
    let program = program
        .cloned()
        .unwrap_or_else(|| command.get_program().to_string_lossy().into_owned());
    Path::new(&program)
        .file_name()
        .map_or(program.clone(), |name| name.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_name_skips_netns_wrapper() {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", "ns1", "/x/netcon-ctl", "pingpong"]);
        assert_eq!(program_name(&command), "netcon-ctl");
    }

    #[test]
    fn program_name_skips_netcon_wrapper() {
        let mut command = Command::new("/x/netcon-ctl");
        command.args([
            "run",
            "--socket",
            "/tmp/s",
            "--",
            "/x/netcon-bench",
            "connect-rate",
        ]);
        assert_eq!(program_name(&command), "netcon-bench");
    }
}
