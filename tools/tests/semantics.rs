//! Socket semantics through netcon, measured against the kernel. Each scenario runs a probe
//! program twice against the same peer in the namespace: once inside the namespace (kernel TCP
//! over its loopback) and once through netcon, and both runs must report the same observations.
//! Covered: half-close in both directions, close right after the last write, connect outcomes
//! (blocking and non-blocking), addresses from accept and getsockname, listeners and streams
//! shared by fork, dup and exec, flow control with a slow reader, a connect burst against a small
//! backlog, socket options, and receive and send timeouts.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{
    CProgram, Finished, NETCON_IP, PEER_IP, PYTHON, Process, Topology, load_nft_rules, run_bounded,
    sha256_file, wait_for_output, wait_until, write_random_file,
};
use netcon_tools::topology::{netcon_command, require_root};

/// The probe program; its modes are listed in `main` at the end of the file.
const PROBE_SOURCE: &str = include_str!("programs/semantics_probe.c");

/// How long one probe or peer run may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a listening program may take to print its "listening" line.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(15);

/// The probe's peer in the namespace, always on the kernel's TCP. ROLE is `listen` (bind
/// HOST:PORT, print "listening", accept one connection) or `connect`. SCENARIO mirrors the
/// probe's scenario of the same name; SEND and RECV are the files it sends and receives into.
const PEER: &str = r#"
import select, socket, sys, time

role, host, port, scenario = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
send_path = sys.argv[5] if len(sys.argv) > 5 else ""
recv_path = sys.argv[6] if len(sys.argv) > 6 else ""

def receive_all(conn):
    total = 0
    with open(recv_path, "wb") as out:
        while chunk := conn.recv(1 << 16):
            out.write(chunk)
            total += len(chunk)
    return total

def send_all(conn):
    with open(send_path, "rb") as source:
        while block := source.read(1 << 16):
            conn.sendall(block)

def send_reporting_stall(conn):
    # Prints "stalled" once nothing could be sent for 1 s: the receiver's window is closed.
    with open(send_path, "rb") as source:
        view = memoryview(source.read())
    conn.setblocking(False)
    stalled, last_progress = False, time.monotonic()
    while view:
        try:
            sent = conn.send(view[: 1 << 16])
            view = view[sent:]
            last_progress = time.monotonic()
        except BlockingIOError:
            if not stalled and time.monotonic() - last_progress >= 1.0:
                stalled = True
                print("stalled", flush=True)
            select.select([], [conn], [], 0.1)
    conn.setblocking(True)

if role == "listen":
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((host, port))
    server.listen(8)
    print("listening", flush=True)
    conn, address = server.accept()
else:
    conn = socket.create_connection((host, port), timeout=30)
    address = conn.getpeername()
conn.settimeout(90)

if scenario == "shutdown-write":
    print(f"eof-after {receive_all(conn)}", flush=True)
    send_all(conn)
elif scenario == "peer-fin":
    send_all(conn)
    conn.shutdown(socket.SHUT_WR)
    print(f"received-after-fin {receive_all(conn)}", flush=True)
elif scenario == "close-after-write":
    print(f"received {receive_all(conn)}", flush=True)
elif scenario == "receive-all":
    send_all(conn)
elif scenario == "source-stall":
    send_reporting_stall(conn)
elif scenario == "slow-sink":
    time.sleep(3)
    print(f"received {receive_all(conn)}", flush=True)
elif scenario == "tell-address":
    conn.sendall(f"{address[0]}:{address[1]}\n".encode())
    conn.recv(1)
elif scenario == "hold":
    time.sleep(30)
else:
    sys.exit(f"unknown scenario {scenario}")
conn.close()
"#;

/// Connects to HOST:PORT COUNT times, one after the other. Each time it sends its own
/// getsockname and getpeername as "LOCAL REMOTE\n", prints the server's one-line reply and
/// closes.
const NAMES_CLIENT: &str = r#"
import socket, sys

host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for _ in range(count):
    with socket.create_connection((host, port), timeout=15) as conn:
        conn.settimeout(15)
        local, remote = conn.getsockname(), conn.getpeername()
        conn.sendall(f"{local[0]}:{local[1]} {remote[0]}:{remote[1]}\n".encode())
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = conn.recv(256)
            if not chunk:
                break
            reply += chunk
        print(reply.decode().strip() or "no reply", flush=True)
"#;

/// Tries one connection to HOST:PORT and prints "refused" or "connected".
const CONNECT_ONCE: &str = r#"
import socket, sys

try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10).close()
    print("connected")
except ConnectionRefusedError:
    print("refused")
"#;

/// Serves COUNT connections on 0.0.0.0:PORT with a listen backlog of BACKLOG: it accepts them
/// one after another and answers each on a thread of its own, so a client whose first byte is
/// late holds up nobody else. Each sends one byte and gets one back. Prints "served COUNT"
/// when every one was answered.
const BURST_SERVER: &str = r#"
import socket, sys, threading

port, backlog, count = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("0.0.0.0", port))
server.listen(backlog)
print("listening", flush=True)
answered = []

def answer(conn):
    with conn:
        conn.settimeout(60)
        if conn.recv(1):
            conn.sendall(b"k")
            answered.append(1)

threads = []
for _ in range(count):
    conn, _ = server.accept()
    thread = threading.Thread(target=answer, args=(conn,))
    thread.start()
    threads.append(thread)
for thread in threads:
    thread.join()
print(f"served {len(answered)}", flush=True)
"#;

/// Starts COUNT threads that connect to HOST:PORT at once; each sends a byte and waits for the
/// reply. Prints how many were served and exits 1 when any failed.
const BURST_CLIENT: &str = r#"
import socket, sys, threading

host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
start = threading.Barrier(count)
failures, served = [], []

def one(index):
    start.wait()
    try:
        with socket.create_connection((host, port), timeout=60) as conn:
            conn.settimeout(60)
            conn.sendall(b"x")
            if conn.recv(1) == b"k":
                served.append(index)
            else:
                failures.append(f"connection {index}: no reply")
    except OSError as err:
        failures.append(f"connection {index}: {err!r}")

threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(f"served {len(served)} of {count}", flush=True)
if failures:
    sys.exit("; ".join(failures[:5]))
"#;

/// Where the probe runs: inside the namespace on the kernel's TCP, or through netcon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Kernel,
    Netcon,
}

impl Side {
    const BOTH: [Side; 2] = [Side::Kernel, Side::Netcon];

    /// Returns a command that runs `program` on this side.
    fn command(self, topology: &Topology, program: &str) -> Command {
        match self {
            Side::Kernel => topology.netns.command(program),
            Side::Netcon => netcon_command(topology.socket(), program),
        }
    }

    /// Returns the address a peer in the namespace connects to when the probe listens.
    fn listen_address(self) -> &'static str {
        match self {
            Side::Kernel => PEER_IP,
            Side::Netcon => NETCON_IP,
        }
    }

    /// Returns `base` for the kernel run and `base + 1` for the netcon run, so the two runs
    /// never meet each other's connections.
    fn port(self, base: u16) -> u16 {
        match self {
            Side::Kernel => base,
            Side::Netcon => base + 1,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Side::Kernel => "kernel",
            Side::Netcon => "netcon",
        }
    }
}

/// A namespace with its netcon-dp, the compiled probe and a directory for data files.
struct Fixture {
    topology: Topology,
    probe: CProgram,
    dir: tempfile::TempDir,
}

impl Fixture {
    fn start(prefix: &str) -> Fixture {
        Fixture {
            topology: Topology::start(prefix),
            probe: CProgram::compile("semantics-probe", PROBE_SOURCE),
            dir: tempfile::tempdir().expect("cannot create a temporary directory"),
        }
    }

    /// Returns the probe command on `side`, with `args` appended.
    fn probe(&self, side: Side, args: &[&str]) -> Command {
        let mut command = side.command(&self.topology, self.probe.program());
        command.args(args);
        command
    }

    /// Returns a command running a Python program inside the namespace.
    fn peer_python(&self, script: &str, args: &[&str]) -> Command {
        let mut command = self.topology.netns.command(PYTHON);
        command.arg("-c").arg(script).args(args);
        command
    }

    /// Returns the path of `name` in the data directory.
    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// The data files of one scenario: what each end sends, and where each end stores what it
/// received on one side.
struct Files {
    program_sends: PathBuf,
    peer_sends: PathBuf,
    program_received: PathBuf,
    peer_received: PathBuf,
}

impl Files {
    /// Writes random files of the given sizes; the received files are named after `side`.
    fn create(fixture: &Fixture, side: Side, program_len: u64, peer_len: u64) -> Files {
        let program_sends = fixture.file("program-sends.bin");
        let peer_sends = fixture.file("peer-sends.bin");
        if !program_sends.exists() {
            write_random_file(&program_sends, program_len);
            write_random_file(&peer_sends, peer_len);
        }
        Files {
            program_sends,
            peer_sends,
            program_received: fixture.file(&format!("program-received-{}.bin", side.name())),
            peer_received: fixture.file(&format!("peer-received-{}.bin", side.name())),
        }
    }
}

/// A probe run and its peer's run.
struct Outcome {
    side: Side,
    program: Finished,
    peer: Finished,
}

impl Outcome {
    /// Panics unless both ends exited 0 by themselves.
    fn assert_succeeded(&self) {
        assert!(
            self.program.succeeded() && self.peer.succeeded(),
            "{} run failed\nprobe:\n{}\npeer:\n{}",
            self.side.name(),
            self.program,
            self.peer
        );
    }
}

fn text(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// Runs the probe as a client of a listening peer.
fn run_client(fixture: &Fixture, side: Side, port: u16, scenario: &str, files: &Files) -> Outcome {
    let port = side.port(port).to_string();
    let peer_args = [
        "listen",
        PEER_IP,
        &port,
        scenario,
        text(&files.peer_sends),
        text(&files.peer_received),
    ];
    let mut peer = Process::spawn(fixture.peer_python(PEER, &peer_args), "peer");
    wait_for_output(&mut peer, "listening", LISTEN_TIMEOUT);

    let probe_args = [
        "client",
        PEER_IP,
        &port,
        scenario,
        text(&files.program_sends),
        text(&files.program_received),
    ];
    let label = format!("probe client on the {} side", side.name());
    let program = run_bounded(fixture.probe(side, &probe_args), &label, RUN_TIMEOUT);
    Outcome {
        side,
        program,
        peer: peer.finish(RUN_TIMEOUT),
    }
}

/// Runs the probe as a server that a peer connects to.
fn run_server(fixture: &Fixture, side: Side, port: u16, scenario: &str, files: &Files) -> Outcome {
    let port = side.port(port).to_string();
    let probe_args = [
        "server",
        &port,
        scenario,
        text(&files.program_sends),
        text(&files.program_received),
    ];
    let label = format!("probe server on the {} side", side.name());
    let mut program = Process::spawn(fixture.probe(side, &probe_args), &label);
    wait_for_output(&mut program, "listening", LISTEN_TIMEOUT);

    let peer_args = [
        "connect",
        side.listen_address(),
        &port,
        scenario,
        text(&files.peer_sends),
        text(&files.peer_received),
    ];
    let peer = run_bounded(fixture.peer_python(PEER, &peer_args), "peer", RUN_TIMEOUT);
    Outcome {
        side,
        program: program.finish(RUN_TIMEOUT),
        peer,
    }
}

/// Panics unless `netcon` printed the same lines as `kernel`, naming the first difference.
fn assert_same_lines(what: &str, kernel: &Finished, netcon: &Finished) {
    let kernel_lines: Vec<&str> = kernel.stdout.lines().collect();
    let netcon_lines: Vec<&str> = netcon.stdout.lines().collect();
    if kernel_lines == netcon_lines {
        return;
    }
    let index = kernel_lines
        .iter()
        .zip(&netcon_lines)
        .position(|(k, n)| k != n)
        .unwrap_or(kernel_lines.len().min(netcon_lines.len()));
    panic!(
        "{what}: netcon differs from the kernel at line {}: kernel {:?}, netcon {:?}\n\
         kernel run:\n{kernel}\nnetcon run:\n{netcon}",
        index + 1,
        kernel_lines.get(index),
        netcon_lines.get(index),
    );
}

/// Panics unless the file at `copy` has the content of `source`.
fn assert_same_file(what: &str, copy: &Path, source: &Path) {
    assert!(copy.exists(), "{what}: {} was not written", copy.display());
    let copy_len = std::fs::metadata(copy).map(|m| m.len()).unwrap_or(0);
    let source_len = std::fs::metadata(source).map(|m| m.len()).unwrap_or(0);
    assert_eq!(copy_len, source_len, "{what}: the received length differs");
    assert_eq!(
        sha256_file(copy),
        sha256_file(source),
        "{what}: the received content differs"
    );
}

/// Runs `scenario` on both sides in the probe role `run` gives, and checks that both ends
/// printed what they did against the kernel and that the files they exchanged arrived whole.
fn check_stream_scenario(
    fixture: &Fixture,
    port: u16,
    scenario: &str,
    sizes: (u64, u64),
    run: fn(&Fixture, Side, u16, &str, &Files) -> Outcome,
    exchanged: (bool, bool),
) {
    let mut outcomes = Vec::new();
    for side in Side::BOTH {
        let files = Files::create(fixture, side, sizes.0, sizes.1);
        let outcome = run(fixture, side, port, scenario, &files);
        outcome.assert_succeeded();
        let (program_sends, peer_sends) = exchanged;
        if program_sends {
            let what = format!("{scenario} ({}): bytes the probe sent", side.name());
            assert_same_file(&what, &files.peer_received, &files.program_sends);
        }
        if peer_sends {
            let what = format!("{scenario} ({}): bytes the peer sent", side.name());
            assert_same_file(&what, &files.program_received, &files.peer_sends);
        }
        outcomes.push(outcome);
    }
    assert_same_lines(
        &format!("{scenario}: probe"),
        &outcomes[0].program,
        &outcomes[1].program,
    );
    assert_same_lines(
        &format!("{scenario}: peer"),
        &outcomes[0].peer,
        &outcomes[1].peer,
    );
}

/// 1 MiB and 2 MiB: more than one socket buffer, so a half-close must wait for queued data.
const HALF_CLOSE_SIZES: (u64, u64) = (1 << 20, 2 << 20);

#[test]
fn half_close_by_program() {
    if !require_root("half_close_by_program") {
        return;
    }
    let fixture = Fixture::start("ncsem");
    // The probe sends, shuts down its sending side and then receives the peer's whole reply.
    check_stream_scenario(
        &fixture,
        7300,
        "shutdown-write",
        HALF_CLOSE_SIZES,
        run_client,
        (true, true),
    );
    check_stream_scenario(
        &fixture,
        7310,
        "shutdown-write",
        HALF_CLOSE_SIZES,
        run_server,
        (true, true),
    );
}

#[test]
fn half_close_by_peer() {
    if !require_root("half_close_by_peer") {
        return;
    }
    let fixture = Fixture::start("ncsem");
    // The peer sends and shuts down; the probe reads to EOF and only then sends its part.
    check_stream_scenario(
        &fixture,
        7320,
        "peer-fin",
        HALF_CLOSE_SIZES,
        run_client,
        (true, true),
    );
    check_stream_scenario(
        &fixture,
        7330,
        "peer-fin",
        HALF_CLOSE_SIZES,
        run_server,
        (true, true),
    );
}

/// 8 MiB: more than the buffers between the program and the wire hold (about 4 MiB in netcon:
/// 1 MiB of TCP buffer and the socketpair), so a close that dropped queued bytes would show.
const CLOSE_SIZES: (u64, u64) = (8 << 20, 8 << 20);

#[test]
fn close_after_last_write() {
    if !require_root("close_after_last_write") {
        return;
    }
    let fixture = Fixture::start("ncsem");
    // The probe writes everything and closes at once; then the same with the peer writing.
    check_stream_scenario(
        &fixture,
        7340,
        "close-after-write",
        CLOSE_SIZES,
        run_client,
        (true, false),
    );
    check_stream_scenario(
        &fixture,
        7350,
        "close-after-write",
        CLOSE_SIZES,
        run_server,
        (true, false),
    );
    check_stream_scenario(
        &fixture,
        7360,
        "receive-all",
        CLOSE_SIZES,
        run_client,
        (false, true),
    );
    check_stream_scenario(
        &fixture,
        7370,
        "receive-all",
        CLOSE_SIZES,
        run_server,
        (false, true),
    );
}

/// Runs the non-blocking connect probe against PEER_IP:`port` on `side`, waiting up to
/// `wait_ms` for the result. With `again`, the probe calls connect twice more afterwards.
fn nonblocking_connect(
    fixture: &Fixture,
    side: Side,
    port: u16,
    wait_ms: u32,
    again: bool,
) -> Finished {
    let port = port.to_string();
    let wait = wait_ms.to_string();
    let mut args = vec!["connect-nonblocking", PEER_IP, &port, &wait];
    if again {
        args.push("again");
    }
    let label = format!("non-blocking connect on the {} side", side.name());
    let run = run_bounded(fixture.probe(side, &args), &label, RUN_TIMEOUT);
    run.assert_success();
    run
}

/// Starts a peer that accepts one connection on PEER_IP:`port` and holds it.
fn start_holding_peer(fixture: &Fixture, port: u16) -> Process {
    let port = port.to_string();
    let command = fixture.peer_python(PEER, &["listen", PEER_IP, &port, "hold"]);
    let mut peer = Process::spawn(command, "holding peer");
    wait_for_output(&mut peer, "listening", LISTEN_TIMEOUT);
    peer
}

#[test]
fn nonblocking_connect_succeeds() {
    if !require_root("nonblocking_connect_succeeds") {
        return;
    }
    let fixture = Fixture::start("ncsem");
    let mut runs = Vec::new();
    for side in Side::BOTH {
        let port = side.port(7400);
        let _peer = start_holding_peer(&fixture, port);
        runs.push(nonblocking_connect(&fixture, side, port, 10_000, false));
    }
    assert!(
        runs[0].stdout.contains("so-error 0"),
        "the kernel run did not connect\n{}",
        runs[0]
    );
    assert_same_lines("non-blocking connect to a listener", &runs[0], &runs[1]);
}

#[test]
fn connect_again_reports_success() {
    if !require_root("connect_again_reports_success") {
        return;
    }
    let fixture = Fixture::start("ncsem");
    let mut runs = Vec::new();
    for side in Side::BOTH {
        let port = side.port(7402);
        let _peer = start_holding_peer(&fixture, port);
        runs.push(nonblocking_connect(&fixture, side, port, 10_000, true));
    }
    assert!(
        runs[0].stdout.contains("connect-again 0"),
        "the kernel run did not report the connection on the second connect\n{}",
        runs[0]
    );
    assert_same_lines("connect again after success", &runs[0], &runs[1]);
}

/// Returns `run` without its "poll" line, whose events `refused_connect_polls_writable`
/// checks on its own.
fn without_poll_line(mut run: Finished) -> Finished {
    run.stdout = run
        .stdout
        .lines()
        .filter(|line| !line.starts_with("poll "))
        .map(|line| format!("{line}\n"))
        .collect();
    run
}

#[test]
fn nonblocking_connect_refused() {
    if !require_root("nonblocking_connect_refused") {
        return;
    }
    let fixture = Fixture::start("ncsem");
    // Nothing listens on the port, so the kernel in the namespace answers with a reset.
    let runs: Vec<Finished> = Side::BOTH
        .iter()
        .map(|&side| nonblocking_connect(&fixture, side, 7410, 10_000, false))
        .map(without_poll_line)
        .collect();
    assert!(
        runs[0].stdout.contains("so-error ECONNREFUSED"),
        "the kernel run was not refused\n{}",
        runs[0]
    );
    assert_same_lines("non-blocking connect to a closed port", &runs[0], &runs[1]);
}

/// How often the refused-connect readiness test connects through netcon, per wait method.
const REFUSED_ATTEMPTS: usize = 20;

/// Checks what a refused non-blocking connect's first wake-up reports on the netcon side.
/// POLLERR must come with it every time, so the socket never polls writable without an
/// error. POLLOUT must come with it or with the very next poll. Returns whether
/// the first wake-up lacked POLLOUT.
fn check_refused_wakeup(method: &str, attempt: usize, run: &Finished) -> bool {
    let first = format!("{method} out=1 err=1");
    let error_only = format!("{method} out=0 err=1");
    let then_writable = format!("{method} again out=1 err=1");
    let stdout = &run.stdout;
    assert!(
        !stdout.contains(&format!("{method} out=1 err=0")),
        "{method} attempt {attempt}: the socket polled writable without an error\n{run}"
    );
    assert!(
        stdout.contains(&first) || stdout.contains(&error_only),
        "{method} attempt {attempt}: the first wake-up did not report POLLERR\n{run}"
    );
    assert!(
        stdout.contains(&first) || stdout.contains(&then_writable),
        "{method} attempt {attempt}: POLLOUT did not follow the error\n{run}"
    );
    assert!(
        stdout.contains("so-error ECONNREFUSED"),
        "{method} attempt {attempt}: SO_ERROR is not ECONNREFUSED\n{run}"
    );
    !stdout.contains(&first)
}

#[test]
fn refused_connect_polls_writable() {
    if !require_root("refused_connect_polls_writable") {
        return;
    }
    let fixture = Fixture::start("ncsem");
    let kernel = nonblocking_connect(&fixture, Side::Kernel, 7412, 10_000, false);
    assert!(
        kernel.stdout.contains("poll out=1 err=1"),
        "the kernel run does not report POLLOUT and POLLERR\n{kernel}"
    );
    let epoll_args = ["connect-epoll", PEER_IP, "7412"];
    let label = "epoll connect on the kernel side";
    let kernel = run_bounded(fixture.probe(Side::Kernel, &epoll_args), label, RUN_TIMEOUT);
    kernel.assert_success();
    assert!(
        kernel.stdout.contains("epoll out=1 err=1"),
        "the kernel run does not report EPOLLOUT and EPOLLERR\n{kernel}"
    );

    // The outcome varies from run to run, so each wait method is tried twenty times.
    let mut without_out = 0;
    for attempt in 1..=REFUSED_ATTEMPTS {
        let run = nonblocking_connect(&fixture, Side::Netcon, 7412, 10_000, false);
        without_out += usize::from(check_refused_wakeup("poll", attempt, &run));
        let label = "epoll connect on the netcon side";
        let run = run_bounded(fixture.probe(Side::Netcon, &epoll_args), label, RUN_TIMEOUT);
        run.assert_success();
        without_out += usize::from(check_refused_wakeup("epoll", attempt, &run));
    }
    println!(
        "{without_out} of {} first wake-ups through netcon lacked POLLOUT",
        2 * REFUSED_ATTEMPTS
    );
}

/// Drops every segment to `port` on the namespace's input hook, so SYNs go unanswered.
fn drop_segments_to(fixture: &Fixture, port: u16) {
    let rules = format!(
        "table inet ncsem_drop {{\n  chain input {{\n    type filter hook input priority 0;\n    \
         tcp dport {port} drop\n  }}\n}}\n"
    );
    load_nft_rules(&fixture.topology.netns, &rules);
}

#[test]
fn nonblocking_connect_stays_pending() {
    if !require_root("nonblocking_connect_stays_pending") {
        return;
    }
    let fixture = Fixture::start("ncsem");
    drop_segments_to(&fixture, 7420);
    // Within 3 s neither side may report the connection as done or refused.
    let runs: Vec<Finished> = Side::BOTH
        .iter()
        .map(|&side| nonblocking_connect(&fixture, side, 7420, 3000, true))
        .collect();
    assert!(
        runs[0].stdout.contains("poll timeout"),
        "the kernel run did not stay pending\n{}",
        runs[0]
    );
    assert_same_lines("non-blocking connect with SYNs dropped", &runs[0], &runs[1]);
}

#[test]
fn blocking_connect_refused() {
    if !require_root("blocking_connect_refused") {
        return;
    }
    let fixture = Fixture::start("ncsem");
    for side in Side::BOTH {
        let port = "7430";
        let label = format!("blocking connect on the {} side", side.name());
        let args = ["connect-blocking", PEER_IP, port];
        let run = run_bounded(fixture.probe(side, &args), &label, RUN_TIMEOUT);
        run.assert_success();
        assert_eq!(
            run.stdout.trim(),
            "connect ECONNREFUSED",
            "{label}: wrong outcome\n{run}"
        );
    }
}

#[test]
fn blocking_connect_times_out() {
    if !require_root("blocking_connect_times_out") {
        return;
    }
    let fixture = Fixture::start("ncsem");
    drop_segments_to(&fixture, 7440);
    // One SYN retry makes the kernel give up after about 3 s instead of about 127 s. netcon's
    // own limit is 60 s, so its run gets 90 s.
    let mut sysctl = fixture.topology.netns.command("sysctl");
    sysctl.args(["-w", "net.ipv4.tcp_syn_retries=1"]);
    run_bounded(sysctl, "sysctl in the namespace", Duration::from_secs(10)).assert_success();

    for side in Side::BOTH {
        let label = format!("blocking connect on the {} side", side.name());
        let args = ["connect-blocking", PEER_IP, "7440"];
        let run = run_bounded(fixture.probe(side, &args), &label, Duration::from_secs(90));
        run.assert_success();
        assert_eq!(
            run.stdout.trim(),
            "connect ETIMEDOUT",
            "{label}: wrong outcome\n{run}"
        );
    }
}

/// Runs a listening probe mode on both sides; the peer runs NAMES_CLIENT for `connections`
/// connections. Returns the probe's and the client's runs per side.
fn run_listening_mode(
    fixture: &Fixture,
    mode: &str,
    port: u16,
    connections: u32,
) -> Vec<(Finished, Finished)> {
    let mut runs = Vec::new();
    for side in Side::BOTH {
        let port = side.port(port).to_string();
        let probe_path = fixture.probe.program().to_owned();
        let args: Vec<&str> = if mode == "exec-keeps" {
            vec![mode, &port, &probe_path]
        } else {
            vec![mode, &port]
        };
        let label = format!("{mode} probe on the {} side", side.name());
        let mut program = Process::spawn(fixture.probe(side, &args), &label);
        wait_for_output(&mut program, "listening", LISTEN_TIMEOUT);

        let count = connections.to_string();
        let client_args = [side.listen_address(), &port, &count];
        let client = run_bounded(
            fixture.peer_python(NAMES_CLIENT, &client_args),
            "names client",
            RUN_TIMEOUT,
        );
        let program = program.finish(RUN_TIMEOUT);
        assert!(
            program.succeeded() && client.succeeded(),
            "{label} failed\nprobe:\n{program}\nclient:\n{client}"
        );
        runs.push((program, client));
    }
    runs
}

/// Panics unless both the probe and the client printed the same on both sides.
fn assert_same_runs(what: &str, runs: &[(Finished, Finished)]) {
    assert_same_lines(&format!("{what}: probe"), &runs[0].0, &runs[1].0);
    assert_same_lines(&format!("{what}: client"), &runs[0].1, &runs[1].1);
}

#[test]
fn accept_fills_addresses() {
    if !require_root("accept_fills_addresses") {
        return;
    }
    let fixture = Fixture::start("ncsem");
    // One connection per accept variant in the probe: accept, accept4 with and without flags,
    // syscall(SYS_accept4), syscall(SYS_accept), a null address and a short address buffer.
    let runs = run_listening_mode(&fixture, "accept-names", 7500, 7);
    let kernel = &runs[0].0.stdout;
    assert!(
        kernel.contains("accept peer-address matches")
            && kernel.contains("syscall-accept4 nonblock 1"),
        "the kernel run does not show the expected addresses and flags\n{}",
        runs[0].0
    );
    assert_same_runs("accept variants", &runs);
}

#[test]
fn connect_fills_local_address() {
    if !require_root("connect_fills_local_address") {
        return;
    }
    let fixture = Fixture::start("ncsem");
    let mut runs = Vec::new();
    for side in Side::BOTH {
        let port = side.port(7510).to_string();
        let peer_args = ["listen", PEER_IP, &port, "tell-address"];
        let mut peer = Process::spawn(fixture.peer_python(PEER, &peer_args), "peer");
        wait_for_output(&mut peer, "listening", LISTEN_TIMEOUT);
        let label = format!("connect-names probe on the {} side", side.name());
        let args = ["connect-names", PEER_IP, &port];
        let run = run_bounded(fixture.probe(side, &args), &label, RUN_TIMEOUT);
        run.assert_success();
        peer.finish(RUN_TIMEOUT).assert_success();
        runs.push(run);
    }
    assert_same_lines("names of a connected socket", &runs[0], &runs[1]);
}

#[test]
fn forked_listener_survives_child_close() {
    if !require_root("forked_listener_survives_child_close") {
        return;
    }
    let fixture = Fixture::start("ncsem");
    // One connection for the parent after its child closed its copy, then three for each of
    // two forked workers that accept on the shared listener.
    let runs = run_listening_mode(&fixture, "fork-listener", 7520, 7);
    assert_same_runs("listener shared by fork", &runs);
}

#[test]
fn dup_copies_keep_listener_open() {
    if !require_root("dup_copies_keep_listener_open") {
        return;
    }
    let fixture = Fixture::start("ncsem");
    let mut refusals = Vec::new();
    for side in Side::BOTH {
        let port = side.port(7530).to_string();
        let label = format!("dup-listener probe on the {} side", side.name());
        let mut program = Process::spawn(fixture.probe(side, &["dup-listener", &port]), &label);
        wait_for_output(&mut program, "listening", LISTEN_TIMEOUT);
        // One connection per copy (dup, dup2, F_DUPFD, F_DUPFD_CLOEXEC); the probe closes each
        // copy after it accepted on it.
        let client_args = [side.listen_address(), &port, "4"];
        let client = run_bounded(
            fixture.peer_python(NAMES_CLIENT, &client_args),
            "names client",
            RUN_TIMEOUT,
        );
        let closed = wait_until(LISTEN_TIMEOUT, || {
            program.output_so_far().0.contains("all-copies-closed")
        });
        let program = program.finish(RUN_TIMEOUT);
        assert!(
            closed,
            "{label} did not close every copy\nprobe:\n{program}\nclient:\n{client}"
        );
        assert!(
            program.succeeded() && client.succeeded(),
            "{label} failed\nprobe:\n{program}\nclient:\n{client}"
        );
        assert_eq!(
            client
                .stdout
                .lines()
                .filter(|l| *l == "served-by-copy")
                .count(),
            4,
            "{label}: not every copy served a connection\n{client}"
        );

        // With the last copy closed, the listener must be gone.
        let once = fixture.peer_python(CONNECT_ONCE, &[side.listen_address(), &port]);
        let refusal = run_bounded(once, "connect after the last close", RUN_TIMEOUT);
        refusal.assert_success();
        refusals.push((program, refusal));
    }
    assert_same_lines("dup copies", &refusals[0].0, &refusals[1].0);
    assert_same_lines("after the last copy", &refusals[0].1, &refusals[1].1);
}

#[test]
fn dup_copies_keep_stream_open() {
    if !require_root("dup_copies_keep_stream_open") {
        return;
    }
    let fixture = Fixture::start("ncsem");
    for side in Side::BOTH {
        let port = side.port(7540).to_string();
        let received = fixture.file(&format!("dup-stream-{}.txt", side.name()));
        let peer_args = [
            "listen",
            PEER_IP,
            &port,
            "close-after-write",
            "",
            text(&received),
        ];
        let mut peer = Process::spawn(fixture.peer_python(PEER, &peer_args), "peer");
        wait_for_output(&mut peer, "listening", LISTEN_TIMEOUT);
        let label = format!("dup-stream probe on the {} side", side.name());
        let args = ["dup-stream", PEER_IP, &port];
        let run = run_bounded(fixture.probe(side, &args), &label, RUN_TIMEOUT);
        let peer = peer.finish(RUN_TIMEOUT);
        assert!(
            run.succeeded() && peer.succeeded(),
            "{label} failed\nprobe:\n{run}\npeer:\n{peer}"
        );
        // Writes after closing the original fd, and after closing the first copy, must arrive:
        // the connection ends only with the last copy.
        let content = std::fs::read_to_string(&received).unwrap_or_default();
        assert_eq!(
            content, "after-close\nvia-dup2\n",
            "{label}: the peer received the wrong bytes\npeer:\n{peer}"
        );
    }
}

#[test]
fn exec_keeps_sockets() {
    if !require_root("exec_keeps_sockets") {
        return;
    }
    let fixture = Fixture::start("ncsem");
    // The probe accepts one connection and execs itself with the listener and the connection
    // as fd numbers; the new image serves that connection and accepts one more.
    let runs = run_listening_mode(&fixture, "exec-keeps", 7550, 2);
    assert!(
        runs[0].1.stdout.contains("accepted-after-exec"),
        "the kernel run did not accept after exec\n{}",
        runs[0].1
    );
    assert_same_runs("sockets kept across exec", &runs);
}

/// 24 MiB: more than the buffers between the peer and the probe hold while the receiver does
/// not read (about 4 MiB in netcon, and the kernel grows its buffers only while data is read),
/// so the sender has to stall.
const FLOW_CONTROL_LEN: u64 = 24 << 20;

#[test]
fn slow_reader_resumes() {
    if !require_root("slow_reader_resumes") {
        return;
    }
    let fixture = Fixture::start("ncsem");
    for side in Side::BOTH {
        let files = Files::create(&fixture, side, 0, FLOW_CONTROL_LEN);
        let port = side.port(7600).to_string();
        let peer_args = [
            "listen",
            PEER_IP,
            &port,
            "source-stall",
            text(&files.peer_sends),
            "",
        ];
        let mut peer = Process::spawn(fixture.peer_python(PEER, &peer_args), "peer");
        wait_for_output(&mut peer, "listening", LISTEN_TIMEOUT);
        let label = format!("slow reader on the {} side", side.name());
        let args = ["slow-reader", PEER_IP, &port, text(&files.program_received)];
        let program = run_bounded(fixture.probe(side, &args), &label, RUN_TIMEOUT);
        let peer = peer.finish(RUN_TIMEOUT);
        let outcome = Outcome {
            side,
            program,
            peer,
        };
        outcome.assert_succeeded();
        assert!(
            outcome.peer.stdout.contains("stalled"),
            "{label}: the sender never stalled, so the window did not close\n{}",
            outcome.peer
        );
        assert_same_file(&label, &files.program_received, &files.peer_sends);
    }
}

#[test]
fn slow_peer_resumes() {
    if !require_root("slow_peer_resumes") {
        return;
    }
    let fixture = Fixture::start("ncsem");
    for side in Side::BOTH {
        let files = Files::create(&fixture, side, FLOW_CONTROL_LEN, 0);
        let port = side.port(7610).to_string();
        let peer_args = [
            "listen",
            PEER_IP,
            &port,
            "slow-sink",
            "",
            text(&files.peer_received),
        ];
        let mut peer = Process::spawn(fixture.peer_python(PEER, &peer_args), "peer");
        wait_for_output(&mut peer, "listening", LISTEN_TIMEOUT);
        let label = format!("writer to a slow peer on the {} side", side.name());
        let args = ["fast-writer", PEER_IP, &port, text(&files.program_sends)];
        let program = run_bounded(fixture.probe(side, &args), &label, RUN_TIMEOUT);
        let peer = peer.finish(RUN_TIMEOUT);
        let outcome = Outcome {
            side,
            program,
            peer,
        };
        outcome.assert_succeeded();
        assert!(
            outcome.program.stdout.contains("stalled"),
            "{label}: the writer never stalled, so nothing pushed back\n{}",
            outcome.program
        );
        assert_same_file(&label, &files.peer_received, &files.program_sends);
    }
}

/// Connections in the burst, and the listen backlog they meet.
const BURST_CONNECTIONS: &str = "100";
const BURST_BACKLOG: &str = "4";

/// Runs BURST_SERVER with `server` and BURST_CLIENT with `client` against `address`, and
/// panics unless every connection was served.
fn run_burst(label: &str, mut server: Command, mut client: Command, address: &str, port: u16) {
    let port = port.to_string();
    server
        .args(["-c", BURST_SERVER, &port, BURST_BACKLOG])
        .arg(BURST_CONNECTIONS);
    let mut server = Process::spawn(server, &format!("{label}: server"));
    wait_for_output(&mut server, "listening", LISTEN_TIMEOUT);
    client
        .args(["-c", BURST_CLIENT, address, &port])
        .arg(BURST_CONNECTIONS);
    let client = run_bounded(client, &format!("{label}: client"), Duration::from_secs(90));
    let server = server.finish(Duration::from_secs(30));
    assert!(
        client.succeeded() && server.succeeded(),
        "{label}: not every connection was served\nclient:\n{client}\nserver:\n{server}"
    );
    assert_eq!(
        server.stdout.lines().last(),
        Some(format!("served {BURST_CONNECTIONS}").as_str()),
        "{label}: the server's count is off\n{server}"
    );
}

#[test]
#[ignore = "a kernel listener with backlog 4 answers the burst with SYN cookies and drops the \
            final ACK and first segment while its accept queue is full; smoltcp 0.14 resends \
            them with a minimum RTO of 1 s (Linux: 200 ms), a constant with no setter, and \
            from 2 s after a resent SYN, so 5 rounds fit in 60 s where kernel clients get about 8: \
            84 to 100 of 100 netcon clients were served"]
fn connect_burst_from_netcon_clients() {
    if !require_root("connect_burst_from_netcon_clients") {
        return;
    }
    let fixture = Fixture::start("ncsem");
    let topology = &fixture.topology;
    let in_namespace = || topology.netns.command(PYTHON);
    let through_netcon = || netcon_command(topology.socket(), PYTHON);
    run_burst(
        "kernel to kernel",
        in_namespace(),
        in_namespace(),
        PEER_IP,
        7700,
    );
    run_burst(
        "from netcon clients",
        in_namespace(),
        through_netcon(),
        PEER_IP,
        7701,
    );
}

#[test]
fn connect_burst_to_netcon_server() {
    if !require_root("connect_burst_to_netcon_server") {
        return;
    }
    let fixture = Fixture::start("ncsem");
    let topology = &fixture.topology;
    run_burst(
        "to a netcon server",
        netcon_command(topology.socket(), PYTHON),
        topology.netns.command(PYTHON),
        NETCON_IP,
        7702,
    );
}

/// Runs a probe mode that needs no peer on both sides and compares what they printed.
fn compare_peerless_mode(fixture: &Fixture, mode: &str) -> Vec<Finished> {
    let runs: Vec<Finished> = Side::BOTH
        .iter()
        .map(|&side| {
            let label = format!("{mode} probe on the {} side", side.name());
            let run = run_bounded(fixture.probe(side, &[mode]), &label, RUN_TIMEOUT);
            run.assert_success();
            run
        })
        .collect();
    assert_same_lines(mode, &runs[0], &runs[1]);
    runs
}

#[test]
fn options_read_back() {
    if !require_root("options_read_back") {
        return;
    }
    let fixture = Fixture::start("ncsem");
    let mut runs = Vec::new();
    for side in Side::BOTH {
        let port = side.port(7800);
        let _peer = start_holding_peer(&fixture, port);
        let label = format!("options probe on the {} side", side.name());
        let args = ["options", PEER_IP, &port.to_string()];
        let run = run_bounded(fixture.probe(side, &args), &label, RUN_TIMEOUT);
        run.assert_success();
        runs.push(run);
    }
    assert_same_lines("socket options", &runs[0], &runs[1]);
}

#[test]
fn option_errors_match_kernel() {
    if !require_root("option_errors_match_kernel") {
        return;
    }
    let fixture = Fixture::start("ncsem");
    compare_peerless_mode(&fixture, "option-errors");
}

#[test]
fn option_defaults_match_kernel() {
    if !require_root("option_defaults_match_kernel") {
        return;
    }
    let fixture = Fixture::start("ncsem");
    compare_peerless_mode(&fixture, "option-defaults");
}

#[test]
fn option_table_matches_kernel() {
    if !require_root("option_table_matches_kernel") {
        return;
    }
    let fixture = Fixture::start("ncsem");
    // About 60 options at SOL_SOCKET, IPPROTO_TCP and IPPROTO_IP, names Linux does not have,
    // and foreign levels. Each is read into buffers of 0 to 64 bytes, and set with values of 0
    // to 16 bytes and with twelve edge values, on fresh sockets.
    let runs = compare_peerless_mode(&fixture, "option-table");
    let lines = runs[0].stdout.lines().count();
    assert!(
        lines > 2000,
        "the kernel run printed only {lines} lines\n{}",
        runs[0]
    );
}

#[test]
fn ipv6_only_reads_back() {
    if !require_root("ipv6_only_reads_back") {
        return;
    }
    let fixture = Fixture::start("ncsem");
    compare_peerless_mode(&fixture, "ipv6-only");
}

/// Runs the io-timeout probe for `which` ("receive" or "send") on both sides against a peer
/// that neither sends nor reads.
fn check_io_timeout(which: &str, port: u16) {
    let fixture = Fixture::start("ncsem");
    let mut runs = Vec::new();
    for side in Side::BOTH {
        let port = side.port(port);
        let _peer = start_holding_peer(&fixture, port);
        let label = format!("{which} timeout on the {} side", side.name());
        let args = ["io-timeout", PEER_IP, &port.to_string(), which];
        // A timeout that is not applied blocks for good, so the run is cut short.
        let run = run_bounded(fixture.probe(side, &args), &label, Duration::from_secs(15));
        run.assert_success();
        runs.push(run);
    }
    assert!(
        runs[0].stdout.contains(&format!("{which} EAGAIN")),
        "the kernel run did not time out\n{}",
        runs[0]
    );
    assert_same_lines(&format!("{which} timeout"), &runs[0], &runs[1]);
}

#[test]
fn receive_timeout_expires() {
    if !require_root("receive_timeout_expires") {
        return;
    }
    check_io_timeout("receive", 7810);
}

#[test]
fn send_timeout_expires() {
    if !require_root("send_timeout_expires") {
        return;
    }
    check_io_timeout("send", 7820);
}

#[test]
fn accept_timeout_expires() {
    if !require_root("accept_timeout_expires") {
        return;
    }
    let fixture = Fixture::start("ncsem");
    // The probe's accept times out once; then one client connects, and a read on the accepted
    // connection, which inherited the timeout, times out as well.
    let runs = run_listening_mode(&fixture, "accept-timeout", 7830, 1);
    assert!(
        runs[0].0.stdout.contains("read-after-line EAGAIN"),
        "the kernel run did not time out on the accepted connection\n{}",
        runs[0].0
    );
    assert_same_runs("receive timeout on a listener", &runs);
}

/// A Python program that connects TCP sockets to destinations no route leads to, blocking and
/// non-blocking, over IPv4 and IPv6, and to the subnet's broadcast address. It prints each
/// outcome and whether it came within a second.
const NO_ROUTE_PROBE: &str = r#"
import errno, socket, time

def attempt(label, family, address, blocking):
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(blocking)
    started = time.monotonic()
    try:
        sock.connect(address)
        outcome = "connected"
    except OSError as error:
        outcome = errno.errorcode.get(error.errno, str(error.errno))
    quick = time.monotonic() - started < 1.0
    print(f"{label} {'blocking' if blocking else 'non-blocking'}: {outcome}, quick: {quick}", flush=True)
    sock.close()

for blocking in (True, False):
    attempt("outside the subnet", socket.AF_INET, ("192.0.2.1", 9), blocking)
    attempt("IPv6 without a route", socket.AF_INET6, ("fd99::1", 9), blocking)
    attempt("IPv4-mapped outside the subnet", socket.AF_INET6, ("::ffff:192.0.2.1", 9), blocking)
    attempt("subnet broadcast", socket.AF_INET, ("10.77.0.255", 9), blocking)
"#;

#[test]
fn connect_without_route_fails_at_once() {
    if !require_root("connect_without_route_fails_at_once") {
        return;
    }
    let fixture = Fixture::start("ncsem");
    let runs: Vec<Finished> = Side::BOTH
        .iter()
        .map(|&side| {
            let mut command = side.command(&fixture.topology, PYTHON);
            command.args(["-c", NO_ROUTE_PROBE]);
            let label = format!("connects without a route on the {} side", side.name());
            let run = run_bounded(command, &label, RUN_TIMEOUT);
            run.assert_success();
            run
        })
        .collect();
    assert!(
        runs[0]
            .stdout
            .contains("outside the subnet blocking: ENETUNREACH, quick: True"),
        "the kernel run did not fail at once\n{}",
        runs[0]
    );
    assert_same_lines("connects without a route", &runs[0], &runs[1]);
}

/// A Python program that connects TCP sockets, blocking and non-blocking, to addresses on the
/// link that no host has, over IPv4 and IPv6. It prints each outcome and whether it came after
/// 2 to 10 s, the span in which Linux gives up on an unanswered neighbour (about 3 s).
const ABSENT_HOST_PROBE: &str = r#"
import errno, select, socket, time

def name(number):
    return errno.errorcode.get(number, str(number))

def attempt(label, family, address, blocking):
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(blocking)
    started = time.monotonic()
    try:
        sock.connect(address)
        outcome = "connected"
    except BlockingIOError:
        poller = select.poll()
        poller.register(sock, select.POLLOUT)
        events = poller.poll(20_000)
        outcome = "pending" if not events else name(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
    except OSError as error:
        outcome = name(error.errno)
    took = time.monotonic() - started
    mode = "blocking" if blocking else "non-blocking"
    print(f"{label} {mode}: {outcome}, after 2 to 10 s: {2.0 <= took <= 10.0}", flush=True)
    sock.close()

for blocking in (True, False):
    attempt("absent IPv4 host", socket.AF_INET, ("10.77.0.99", 9), blocking)
    attempt("absent IPv6 host", socket.AF_INET6, ("fd00::99", 9), blocking)
"#;

#[test]
fn connect_to_absent_host_fails() {
    if !require_root("connect_to_absent_host_fails") {
        return;
    }
    let fixture = Fixture::start("ncsem");
    let runs: Vec<Finished> = Side::BOTH
        .iter()
        .map(|&side| {
            let mut command = side.command(&fixture.topology, PYTHON);
            command.args(["-c", ABSENT_HOST_PROBE]);
            let label = format!("connects to an absent host on the {} side", side.name());
            let run = run_bounded(command, &label, Duration::from_secs(120));
            run.assert_success();
            run
        })
        .collect();
    assert!(
        runs[0]
            .stdout
            .contains("absent IPv4 host blocking: EHOSTUNREACH, after 2 to 10 s: True"),
        "the kernel run did not give up on the absent host\n{}",
        runs[0]
    );
    assert_same_lines("connects to an absent host", &runs[0], &runs[1]);
}
