//! Throughput between two instances on one segment next to the kernel path over the same
//! bridge, measured with iperf3 (one stream) and reported as ratios.

use std::fmt;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use netcon_tools::iperf::parse_iperf_json;
use netcon_tools::topology::ChildGuard;

use super::{Instance, InstanceOptions, KERNEL_IP, KernelHost, Segment, User, UserDir};

/// The iperf3 port every measurement uses.
const IPERF_PORT: &str = "5201";

/// How long a client keeps retrying while its server starts.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// One stream's throughput, from the client's `end.sum_received`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throughput {
    pub bits_per_second: f64,
    pub received_bytes: u64,
}

impl fmt::Display for Throughput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.2} Gbit/s", self.bits_per_second / 1e9)
    }
}

/// The figures of one comparison: the kernel path, then instance to instance for each worker
/// count on both ends.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub seconds: u32,
    pub kernel: Throughput,
    /// `(workers, throughput)`, in the order measured.
    pub instances: Vec<(usize, Throughput)>,
}

impl Comparison {
    /// Returns the JSON object the benchmark runner reads: bits per second per path and each
    /// instance figure as a ratio of the kernel's.
    pub fn to_json(&self) -> serde_json::Value {
        let instances: Vec<serde_json::Value> = self
            .instances
            .iter()
            .map(|(workers, throughput)| {
                serde_json::json!({
                    "workers": workers,
                    "bits_per_second": throughput.bits_per_second,
                    "ratio_to_kernel": throughput.bits_per_second / self.kernel.bits_per_second,
                })
            })
            .collect();
        serde_json::json!({
            "seconds": self.seconds,
            "streams": 1,
            "kernel_bits_per_second": self.kernel.bits_per_second,
            "instances": instances,
        })
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "iperf3, 1 stream, {} s: kernel {}",
            self.seconds, self.kernel
        )?;
        for (workers, throughput) in &self.instances {
            let ratio = throughput.bits_per_second / self.kernel.bits_per_second;
            write!(
                f,
                "; instance to instance, --workers {workers}: {throughput} ({ratio:.3} of kernel)"
            )?;
        }
        Ok(())
    }
}

/// Measures the kernel path, then two instances (run as `server_user` and `client_user`) with
/// each of `worker_counts` on both ends, each for `seconds`.
pub fn compare(
    segment: &Segment,
    server_user: &User,
    client_user: &User,
    worker_counts: &[usize],
    seconds: u32,
) -> Result<Comparison, String> {
    let kernel = kernel_path(segment, seconds)?;
    let mut instances = Vec::new();
    for &workers in worker_counts {
        let server = Instance::start(segment, server_user, &InstanceOptions { host: 31, workers });
        let client = Instance::start(segment, client_user, &InstanceOptions { host: 32, workers });
        let throughput = between_instances(&server, &client, seconds)
            .map_err(|err| format!("--workers {workers}: {err}"))?;
        instances.push((workers, throughput));
    }
    Ok(Comparison {
        seconds,
        kernel,
        instances,
    })
}

/// Measures iperf3 from a kernel host on the bridge to the segment's kernel side: the kernel's
/// TCP on both ends of the same bridge.
pub fn kernel_path(segment: &Segment, seconds: u32) -> Result<Throughput, String> {
    let host = KernelHost::attach(segment, 21);
    let mut server = segment.command("iperf3");
    server.args(["-s", "-4", "-1", "-B", KERNEL_IP, "-p", IPERF_PORT]);
    let client = || {
        let mut client = host.command("iperf3");
        client.args(client_args(KERNEL_IP, seconds));
        client
    };
    measure(server, client, seconds)
}

/// Measures iperf3 from a program behind `client` to a program behind `server`.
pub fn between_instances(
    server: &Instance,
    client: &Instance,
    seconds: u32,
) -> Result<Throughput, String> {
    let server_home = UserDir::create(server.user());
    let client_home = UserDir::create(client.user());
    let mut server_command = server.command(server_home.path(), "iperf3");
    server_command.args(["-s", "-4", "-1", "-p", IPERF_PORT]);
    let client_command = || {
        let mut command = client.command(client_home.path(), "iperf3");
        command.args(client_args(server.ip(), seconds));
        command
    };
    measure(server_command, client_command, seconds)
}

fn client_args(server_ip: &str, seconds: u32) -> Vec<String> {
    [
        "-4",
        "-c",
        server_ip,
        "-p",
        IPERF_PORT,
        "-J",
        "--connect-timeout",
        "3000",
        "-t",
    ]
    .iter()
    .map(|arg| arg.to_string())
    .chain([seconds.to_string()])
    .collect()
}

/// Starts the one-shot iperf3 `server`, runs clients from `make_client` until one connects
/// (for up to 15 s), and returns its throughput.
fn measure(
    mut server: Command,
    make_client: impl Fn() -> Command,
    seconds: u32,
) -> Result<Throughput, String> {
    let server = server
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|err| format!("cannot start the iperf3 server: {err}"))?;
    let _server = ChildGuard::new(server, "iperf3 server");

    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let output = run_client(make_client(), Duration::from_secs(u64::from(seconds) + 20))?;
        // iperf3 3.12 with -J exits with status 0 even when it could not connect.
        let refused = output.contains("Connection refused") || output.contains("unable to connect");
        if refused && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(200));
            continue;
        }
        let totals = parse_iperf_json(&output).map_err(|err| format!("{err}\n{output}"))?;
        return Ok(Throughput {
            bits_per_second: totals.received_bits_per_second,
            received_bytes: totals.received_bytes,
        });
    }
}

/// Runs one client to its end, stopping it after `timeout`, and returns its stdout.
fn run_client(mut client: Command, timeout: Duration) -> Result<String, String> {
    let child = client
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| format!("cannot start the iperf3 client: {err}"))?;

    let mut guard = ChildGuard::new(child, "iperf3 client");
    let mut stdout = guard.child_mut().stdout.take().expect("stdout is piped");
    let mut stderr = guard.child_mut().stderr.take().expect("stderr is piped");
    let reader = thread::spawn(move || read_lossy(&mut stdout));
    let error_reader = thread::spawn(move || read_lossy(&mut stderr));

    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = guard.child_mut().try_wait().ok().flatten() {
            break status;
        }
        if Instant::now() >= deadline {
            drop(guard);
            return Err(format!("the iperf3 client ran past {timeout:?}"));
        }
        thread::sleep(Duration::from_millis(50));
    };
    drop(guard);

    let stdout = reader.join().unwrap_or_default();
    let stderr = error_reader.join().unwrap_or_default();
    if stdout.trim().is_empty() {
        return Err(format!(
            "the iperf3 client printed nothing ({status}); stderr:\n{stderr}"
        ));
    }
    Ok(stdout)
}

/// Reads `stream` to EOF, replacing invalid UTF-8, so stray bytes cannot hide the report.
fn read_lossy(stream: &mut impl std::io::Read) -> String {
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}
