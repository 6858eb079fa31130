//! `netcon-bench idle`: how idle connections through netcon-dp weigh on new ones. A program
//! through netcon opens connections to a server that keeps them open, in steps, and after
//! each step the run measures the connection rate and netcon-dp's resident memory.
//!
//! Also the two helper programs it runs: `hold-server`, which accepts connections and keeps
//! them, and `hold-connections`, which opens connections one after another and keeps them.

use std::fmt;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::StepError;
use crate::connect_rate::ConnectRateSummary;
use crate::contender::{Contender, Site};
use netcon_tools::child_process::{Process, one_line, run_bounded, start_server};

/// Port of the server that keeps the idle connections, in the server namespace.
const HOLD_PORT: u16 = 7779;

/// Port of the serial echo server the connection rate is measured against.
const SERIAL_ECHO_PORT: u16 = 7778;

/// How long a server gets to print its ready line.
const SERVER_READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest one step of connections may take to open: 10,000 connections at 10 ms each.
const HOLD_STEP_TIMEOUT: Duration = Duration::from_secs(100);

/// How much longer than its own time a connection-rate client may take.
const CLIENT_GRACE: Duration = Duration::from_secs(15);

/// What `netcon-bench idle` measures.
#[derive(Debug, Clone)]
pub struct IdleOptions {
    /// netcon-dp's worker count.
    pub workers: usize,
    /// The link MTU.
    pub mtu: u32,
    /// The idle connection counts to measure at, in increasing order.
    pub counts: Vec<u32>,
    /// The time of each connection-rate run, in seconds.
    pub seconds: u64,
}

/// The figures taken with one number of idle connections open.
#[derive(Debug, Clone)]
pub struct IdleRow {
    /// Idle connections open during the measurement.
    pub idle: u32,
    /// Connections opened to reach `idle`, and the time that took in seconds.
    pub opened: u32,
    pub open_seconds: f64,
    pub rate: ConnectRateSummary,
    /// netcon-dp's resident memory, in bytes.
    pub rss_bytes: Option<u64>,
}

impl fmt::Display for IdleRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let per_open = if self.opened > 0 {
            format!(
                "{:.0} µs each",
                self.open_seconds * 1e6 / f64::from(self.opened)
            )
        } else {
            "–".to_owned()
        };
        let rss = self.rss_bytes.map_or("unknown".to_owned(), |b| {
            format!("{:.0} MiB", b as f64 / 1048576.0)
        });
        write!(
            f,
            "| {} | {} | {:.2} | {per_open} | {:.0} | {:.0} | {:.0} | {rss} |",
            self.idle,
            self.opened,
            self.open_seconds,
            self.rate.per_second,
            self.rate.p50_us,
            self.rate.p99_us
        )
    }
}

/// The header of the table [`IdleRow`]'s `Display` writes rows of.
pub const TABLE_HEADER: &str = "| idle connections | opened | open time (s) | per connection \
                                | conn/s | p50 (µs) | p99 (µs) | netcon-dp RSS |\n\
                                |---:|---:|---:|---:|---:|---:|---:|---:|";

/// Sets up netcon, then opens idle connections in the steps `options.counts` names and
/// measures the connection rate and netcon-dp's memory at each.
///
/// Calls `progress` with each row as it is measured. Fails when the set-up, a step or a
/// connection-rate run fails.
pub fn run_idle(
    options: &IdleOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<IdleRow>, StepError> {
    let site = Contender::netcon(options.workers).set_up(options.mtu)?;
    let pid = site
        .dataplane_pid()
        .ok_or_else(|| StepError::failed("the netcon site has no netcon-dp"))?;
    let limit = HOLD_STEP_TIMEOUT * options.counts.len() as u32 + Duration::from_secs(60);
    let hold_server = start_helper(&site, "hold-server", HOLD_PORT, limit)?;
    let echo = start_helper(&site, "serial-echo-server", SERIAL_ECHO_PORT, limit)?;

    let mut holders = Vec::new();
    let mut rows = Vec::new();
    let mut open = 0;
    for &count in &options.counts {
        let opened = count.saturating_sub(open);
        let mut open_seconds = 0.0;
        if opened > 0 {
            let (holder, seconds) = open_step(&site, opened, limit, &hold_server)?;
            holders.push(holder);
            open_seconds = seconds;
            open = count;
        }
        let rate = measure_rate(&site, options.seconds, &echo)?;
        let row = IdleRow {
            idle: open,
            opened,
            open_seconds,
            rate,
            rss_bytes: rss_bytes(pid),
        };
        progress(&row.to_string());
        rows.push(row);
    }
    Ok(rows)
}

/// Starts `netcon-bench SUBCOMMAND --listen IP:PORT` in the server namespace for `limit`.
fn start_helper(
    site: &Site,
    subcommand: &str,
    port: u16,
    limit: Duration,
) -> Result<Process, StepError> {
    let mut command = site.server_command(own_path()?);
    let listen = format!("{}:{port}", site.server_ip);
    command.args([subcommand, "--listen", &listen]);
    command.args(["--seconds", &limit.as_secs().to_string()]);
    start_server(&mut command, "listening on", SERVER_READY_TIMEOUT)
        .map_err(|err| StepError::failed(format!("{subcommand} did not start: {err}")))
}

/// Opens `count` connections through netcon to the hold server; returns the process keeping
/// them and the seconds opening them took.
fn open_step(
    site: &Site,
    count: u32,
    limit: Duration,
    server: &Process,
) -> Result<(Process, f64), StepError> {
    let mut command = site.client_command(own_path()?);
    let target = format!("{}:{HOLD_PORT}", site.target_ip);
    command.args(["hold-connections", "--connect", &target]);
    command.args(["--count", &count.to_string()]);
    command.args(["--seconds", &limit.as_secs().to_string()]);
    let holder = start_server(&mut command, "\"held\"", HOLD_STEP_TIMEOUT).map_err(|err| {
        StepError::failed(format!(
            "holding {count} connections failed: {err}; server stderr: {}",
            one_line(&server.stderr_text())
        ))
    })?;
    let line = holder.stdout_text();
    let seconds = serde_json::from_str::<Value>(line.trim())
        .ok()
        .and_then(|value| value.get("seconds")?.as_f64())
        .ok_or_else(|| StepError::failed(format!("hold-connections printed {line:?}")))?;
    Ok((holder, seconds))
}

fn measure_rate(
    site: &Site,
    seconds: u64,
    server: &Process,
) -> Result<ConnectRateSummary, StepError> {
    let mut client = site.client_command(own_path()?);
    let target = format!("{}:{SERIAL_ECHO_PORT}", site.target_ip);
    client.args(["connect-rate", "--connect", &target, "--json"]);
    client.args(["--seconds", &seconds.to_string()]);
    let output = run_bounded(&mut client, Duration::from_secs(seconds) + CLIENT_GRACE)?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str::<Value>(stdout.trim())
        .ok()
        .and_then(|value| ConnectRateSummary::from_json(&value))
        .ok_or_else(|| {
            StepError::failed(format!(
                "connect-rate exited ({}) without a summary; stderr: {}; server stderr: {}",
                output.status,
                one_line(&String::from_utf8_lossy(&output.stderr)),
                one_line(&server.stderr_text())
            ))
        })
}

/// Returns the resident memory of process `pid` (VmRSS of `/proc/PID/status`), in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn own_path() -> Result<std::path::PathBuf, StepError> {
    std::env::current_exe()
        .map_err(|err| StepError::failed(format!("cannot find netcon-bench's own path: {err}")))
}

/// Raises the soft limit on open files to the hard limit, for thousands of connections.
fn raise_file_limit() -> io::Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: limit is a valid rlimit for getrlimit to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: limit is a valid rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Listens on `listen`, prints `hold-server listening on ADDR`, and keeps every connection it
/// accepts open without reading from it. Returns after `duration`.
///
/// Returns an error when `listen` cannot be bound.
pub fn hold_server(listen: SocketAddr, duration: Duration) -> io::Result<()> {
    raise_file_limit()?;
    let listener = TcpListener::bind(listen)?;
    println!("hold-server listening on {}", listener.local_addr()?);
    io::stdout().flush()?;
    thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            match stream {
                Ok(stream) => held.push(stream),
                Err(err) => eprintln!("hold-server: accept failed: {err}"),
            }
        }
    });
    thread::sleep(duration);
    Ok(())
}

/// Opens `count` connections to `connect` one after another, prints
/// `{"held": COUNT, "seconds": TIME}` and keeps them open for `duration`.
///
/// Returns an error when a connection fails.
pub fn hold_connections(connect: SocketAddr, count: u32, duration: Duration) -> io::Result<()> {
    raise_file_limit()?;
    let started = Instant::now();
    let mut held = Vec::with_capacity(count as usize);
    for index in 0..count {
        let stream = TcpStream::connect(connect).map_err(|err| {
            io::Error::new(err.kind(), format!("connection {index} failed: {err}"))
        })?;
        held.push(stream);
    }
    let seconds = started.elapsed().as_secs_f64();
    println!("{}", json!({ "held": count, "seconds": seconds }));
    io::stdout().flush()?;
    thread::sleep(duration);
    Ok(())
}
