//! `netcon-ctl show`, `status` and `perf` against known traffic: show lists exactly the sockets
//! the test opened, with their pids, fds and states; status counters move by the bytes sent;
//! perf --run percentiles rise by a delay the peer adds.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    PEER_IP, PYTHON, Process, Topology, run_bounded, start_socat_echo, wait_for_listener,
    wait_for_stdout,
};
use netcon_tools::topology::{binary_path, netcon_command, require_root};
use serde_json::Value;

const HTTP_PORT: u16 = 7300;
const ECHO_PORT: u16 = 7301;

/// Serves HTTP on HOST:PORT with a slow body (4 KiB every 50 ms for up to 60 s), so a download
/// stays open however much the buffers on the path can store.
const PACED_HTTP_SERVER: &str = r#"
import socket, sys, threading, time
def serve(conn):
    with conn:
        conn.recv(4096)
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n")
        end = time.monotonic() + 60
        while time.monotonic() < end:
            try:
                conn.sendall(b"x" * 4096)
            except OSError:
                return
            time.sleep(0.05)
listener = socket.create_server((sys.argv[1], int(sys.argv[2])))
while True:
    conn, _ = listener.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"#;

/// Connects to HOST:PORT, prints its socket's fd, then sleeps (an idle connection).
const IDLE_CLIENT: &str = r#"
import socket, sys, time
conn = socket.create_connection((sys.argv[1], int(sys.argv[2])))
print(conn.fileno(), flush=True)
time.sleep(60)
"#;

/// Connects to HOST:PORT, sends BYTES bytes, reads them back, prints "done", then sleeps.
const SEND_CLIENT: &str = r#"
import socket, sys, time
conn = socket.create_connection((sys.argv[1], int(sys.argv[2])))
size = int(sys.argv[3])
conn.sendall(b"x" * size)
got = 0
while got < size:
    got += len(conn.recv(1 << 16))
print("done", flush=True)
time.sleep(60)
"#;

fn ctl(socket: &Path, args: &[&str]) -> Value {
    let mut command = Command::new(binary_path("netcon-ctl"));
    command.args(args).arg("--socket").arg(socket).arg("--json");
    let run = run_bounded(command, "netcon-ctl", Duration::from_secs(20));
    run.assert_success();
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {run}"))
}

/// The first line `process` prints, waiting up to 15 s for it.
fn first_line(process: &Process) -> String {
    let stdout = wait_for_stdout(process, "\n", Duration::from_secs(15));
    stdout.lines().next().unwrap_or_default().trim().to_string()
}

/// The parent pid of `pid`, from /proc/PID/stat.
fn parent_pid(pid: i64) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the parenthesised command name: state, then ppid.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[test]
fn show_lists_exactly_the_open_sockets() {
    if !require_root("show_lists_exactly_the_open_sockets") {
        return;
    }
    let topology = Topology::start("ncshow");
    let mut http = topology.netns.command(PYTHON);
    http.args(["-c", PACED_HTTP_SERVER, PEER_IP, &HTTP_PORT.to_string()]);
    let mut http = Process::spawn(http, "paced HTTP server in the namespace");
    wait_for_listener(&topology.netns, HTTP_PORT, &mut http);
    let _echo = start_socat_echo(&topology, ECHO_PORT);

    let url = format!("http://{PEER_IP}:{HTTP_PORT}/file");
    let downloads: Vec<Process> = (0..3)
        .map(|_| {
            let mut curl = netcon_command(topology.socket(), "curl");
            curl.args(["-s", "-o", "/dev/null", &url]);
            Process::spawn(curl, "slow curl download through netcon")
        })
        .collect();
    let mut idle = netcon_command(topology.socket(), PYTHON);
    idle.args(["-c", IDLE_CLIENT, PEER_IP, &ECHO_PORT.to_string()]);
    let idle = Process::spawn(idle, "idle connection through netcon");
    let idle_fd: i64 = first_line(&idle).parse().expect("an fd number");

    // Give the downloads time to connect.
    let deadline = Instant::now() + Duration::from_secs(15);
    let rows = loop {
        let document = ctl(topology.socket(), &["show"]);
        let rows: Vec<Value> = document["sockets"].as_array().cloned().unwrap_or_default();
        let established = rows
            .iter()
            .filter(|r| r["tcp_state"] == "ESTABLISHED")
            .count();
        if established >= 4 || Instant::now() > deadline {
            break rows;
        }
        std::thread::sleep(Duration::from_millis(200));
    };

    assert_eq!(
        rows.len(),
        4,
        "expected 3 downloads and 1 idle connection: {rows:#?}"
    );
    // netcon-ctl run is the spawned process; the program is its child.
    let child_of =
        |row: &Value, parent: u32| row["pid"].as_i64().and_then(parent_pid) == Some(parent);
    for download in &downloads {
        let matching: Vec<&Value> = rows
            .iter()
            .filter(|r| child_of(r, download.pid()))
            .collect();
        assert_eq!(
            matching.len(),
            1,
            "curl under {} should hold one socket: {rows:#?}",
            download.pid()
        );
        let row = matching[0];
        assert_eq!(row["remote"], format!("{PEER_IP}:{HTTP_PORT}"), "{row}");
        assert_eq!(row["tcp_state"], "ESTABLISHED", "{row}");
        assert_eq!(row["program"], "curl", "{row}");
    }
    let idle_row = rows
        .iter()
        .find(|r| child_of(r, idle.pid()))
        .unwrap_or_else(|| panic!("the idle connection is missing: {rows:#?}"));
    assert_eq!(idle_row["fd"], idle_fd, "{idle_row}");
    assert_eq!(
        idle_row["remote"],
        format!("{PEER_IP}:{ECHO_PORT}"),
        "{idle_row}"
    );
    assert_eq!(idle_row["bytes_in"], 0, "{idle_row}");

    let only_idle = {
        let idle_pid = idle_row["pid"].to_string();
        let mut command = Command::new(binary_path("netcon-ctl"));
        command.args(["show", "--json", "--pid", &idle_pid, "--socket"]);
        command.arg(topology.socket());
        let run = run_bounded(command, "netcon-ctl show --pid", Duration::from_secs(20));
        run.assert_success();
        serde_json::from_str::<Value>(&run.stdout).expect("JSON")
    };
    assert_eq!(
        only_idle["sockets"].as_array().map(Vec::len),
        Some(1),
        "{only_idle}"
    );
}

fn total(status: &Value, key: &str) -> u64 {
    status["workers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w[key].as_u64())
        .sum()
}

#[test]
fn status_counters_follow_traffic() {
    if !require_root("status_counters_follow_traffic") {
        return;
    }
    let topology = Topology::start("ncstatus");
    let _echo = start_socat_echo(&topology, ECHO_PORT);
    let before = ctl(topology.socket(), &["status"]);

    const BYTES: u64 = 8 << 20;
    let mut client = netcon_command(topology.socket(), PYTHON);
    client.args([
        "-c",
        SEND_CLIENT,
        PEER_IP,
        &ECHO_PORT.to_string(),
        &BYTES.to_string(),
    ]);
    let client = Process::spawn(client, "sending client through netcon");
    assert_eq!(first_line(&client), "done");
    let after = ctl(topology.socket(), &["status"]);

    let sent = total(&after, "bytes_out") - total(&before, "bytes_out");
    let received = total(&after, "bytes_in") - total(&before, "bytes_in");
    // Frames carry headers, ACKs and the handshake on top of the payload: allow 10 %.
    for (what, moved) in [("bytes_out", sent), ("bytes_in", received)] {
        assert!(
            moved >= BYTES,
            "{what} grew by {moved}, less than the {BYTES} bytes echoed"
        );
        assert!(
            moved <= BYTES + BYTES / 10,
            "{what} grew by {moved} for {BYTES} bytes echoed"
        );
    }
    assert_eq!(total(&after, "connections"), 1, "{after}");
    assert!(after["rpcs"]["connect"].as_u64() >= Some(1), "{after}");
}

fn netcon_p50(output: &str) -> f64 {
    let line = output
        .lines()
        .find(|l| l.trim_start().starts_with("netcon (app"))
        .unwrap_or_else(|| panic!("no netcon row in perf --run output:\n{output}"));
    // "netcon (app -> TAP -> peer)" is six words; p50 follows.
    line.split_whitespace()
        .nth(6)
        .and_then(|v| v.parse().ok())
        .expect("a p50 figure")
}

fn perf_run(delay_ms: u64) -> String {
    let mut command = Command::new(binary_path("netcon-ctl"));
    command.args([
        "perf",
        "--run",
        "--rounds",
        "40",
        "--peer-delay-ms",
        &delay_ms.to_string(),
    ]);
    let run = run_bounded(command, "netcon-ctl perf --run", Duration::from_secs(90));
    run.assert_success();
    run.stdout
}

#[test]
fn perf_run_sees_added_delay() {
    if !require_root("perf_run_sees_added_delay") {
        return;
    }
    // This kernel has no netem qdisc, so the echo peer itself waits before each reply.
    let plain = netcon_p50(&perf_run(0));
    let delayed = netcon_p50(&perf_run(20));
    assert!(
        delayed >= plain + 19_000.0,
        "p50 {plain} µs without delay, {delayed} µs with 20 ms"
    );
    assert!(
        delayed < plain + 40_000.0,
        "p50 {delayed} µs with 20 ms: too far above {plain} µs"
    );
}
