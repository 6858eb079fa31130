//! Faults: a program killed in the middle of a transfer, netcon-dp killed under programs that
//! are blocked in socket calls, and a stopped program next to busy ones. The peer must see the
//! end the kernel would give it, netcon-dp must free what the program held and go back to idle,
//! blocked calls must fail instead of hanging, and a restarted netcon-dp must serve new sockets.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    CProgram, Finished, PEER_IP, PYTHON, Process, Topology, cpu_share, describe_fds,
    load_nft_rules, run_bounded, send_signal, wait_for_output, wait_until,
};
use netcon_tools::topology::{Dataplane, netcon_command, require_root};

/// The probe program; its modes are listed in its usage line.
const PROBE_SOURCE: &str = include_str!("programs/faults_probe.c");

/// The load server and client, shared with the load tests.
const LOAD_SERVER: &str = include_str!("programs/load_server.py");
const LOAD_CLIENT: &str = include_str!("programs/load_client.py");

/// A peer on HOST:PORT for one connection. `sink` reads until the connection ends, `source`
/// writes until it fails, `hold` accepts connections and never reads or writes. Prints
/// "listening", then how the connection ended: "eof" or "reset".
const PEER: &str = r#"
import socket, sys, time

host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((host, port))
server.listen(8)
print("listening", flush=True)
if mode == "hold":
    held = []
    while True:
        held.append(server.accept()[0])
conn, _ = server.accept()
conn.settimeout(60)
try:
    if mode == "sink":
        while conn.recv(1 << 16):
            pass
        print("eof", flush=True)
    else:
        while True:
            conn.sendall(b"n" * (1 << 16))
except (ConnectionResetError, BrokenPipeError):
    # Which of the two a reset shows up as depends on whether it arrived during a send.
    print("reset", flush=True)
"#;

/// The most CPU netcon-dp may use while idle: 5% of one core, measured over 2 s.
const IDLE_CPU_SHARE: f64 = 0.05;

/// How long a fault may take to show: a peer seeing the end, a blocked call returning.
const FAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the probe runs: inside the namespace on the kernel's TCP, or through netcon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Kernel,
    Netcon,
}

impl Side {
    fn command(self, topology: &Topology, program: &str) -> Command {
        match self {
            Side::Kernel => topology.netns.command(program),
            Side::Netcon => netcon_command(topology.socket(), program),
        }
    }
}

/// Starts PEER in `mode` on PEER_IP:`port` in the namespace.
fn start_peer(topology: &Topology, port: u16, mode: &str) -> Process {
    let mut command = topology.netns.command(PYTHON);
    command.args(["-c", PEER, PEER_IP, &port.to_string(), mode]);
    let mut peer = Process::spawn(command, &format!("{mode} peer"));
    wait_for_output(&mut peer, "listening", Duration::from_secs(15));
    peer
}

/// Starts the probe in `mode` on `side` with `args`, and waits until it is ready.
fn start_probe(
    topology: &Topology,
    probe: &CProgram,
    side: Side,
    mode: &str,
    args: &[&str],
) -> Process {
    let mut command = side.command(topology, probe.program());
    command.arg(mode).args(args);
    let mut process = Process::spawn(command, &format!("{mode} probe ({side:?})"));
    wait_for_output(&mut process, "ready", Duration::from_secs(15));
    process
}

/// Sends `signal` to the whole process group `process` leads: netcon-ctl run and the program
/// it started.
fn signal_group(process: &Process, signal: libc::c_int) {
    // SAFETY: kill has no memory preconditions; the group is the one Process::spawn made, and
    // its leader is not reaped yet, so the group id is still this group's.
    unsafe { libc::kill(-(process.pid() as libc::pid_t), signal) };
}

fn kill_group(process: &Process) {
    signal_group(process, libc::SIGKILL);
}

/// Kills a probe in `mode` ("send" or "receive") one second into its transfer with a peer in
/// `peer_mode`, and returns how the peer saw the connection end.
fn kill_mid_transfer(
    topology: &Topology,
    probe: &CProgram,
    side: Side,
    mode: &str,
    peer_mode: &str,
    port: u16,
) -> Finished {
    let peer = start_peer(topology, port, peer_mode);
    let program = start_probe(topology, probe, side, mode, &[PEER_IP, &port.to_string()]);
    std::thread::sleep(Duration::from_secs(1));
    kill_group(&program);
    let started = Instant::now();
    let peer = peer.finish(FAULT_TIMEOUT);
    assert!(
        peer.succeeded(),
        "the peer did not see the killed {mode} probe's connection end within \
         {FAULT_TIMEOUT:?} ({side:?})\n{peer}"
    );
    println!(
        "{side:?}: peer of the killed {mode} probe saw {:?} after {:?}",
        peer.stdout.lines().last(),
        started.elapsed()
    );
    drop(program);
    peer
}

/// Panics unless netcon-dp is back to `baseline` fds within 10 s and then idle.
fn assert_dataplane_recovered(topology: &Topology, baseline: usize, what: &str) {
    let dataplane = &topology.dataplane;
    let freed = wait_until(Duration::from_secs(10), || dataplane.fd_count() <= baseline);
    assert!(
        freed,
        "{what}: netcon-dp holds {} fds, {baseline} before\n{}",
        dataplane.fd_count(),
        describe_fds(dataplane.pid())
    );
    let share = cpu_share(dataplane.pid(), Duration::from_secs(2));
    println!(
        "{what}: netcon-dp used {:.1}% of a core over 2 s",
        share * 100.0
    );
    assert!(
        share < IDLE_CPU_SHARE,
        "{what}: netcon-dp used {:.0}% of a core over 2 s while idle",
        share * 100.0
    );
}

/// Kills a `mode` probe mid-transfer on the kernel and on netcon, checks that both peers saw
/// the same end, and that netcon-dp freed the connection and went back to idle.
fn check_killed_program(mode: &str, peer_mode: &str, port: u16) {
    let topology = Topology::start("ncfault");
    let probe = CProgram::compile("faults-probe", PROBE_SOURCE);
    let baseline = topology.dataplane.fd_count();
    let idle = cpu_share(topology.dataplane.pid(), Duration::from_secs(2));
    assert!(
        idle < IDLE_CPU_SHARE,
        "netcon-dp used {:.0}% of a core before any program ran",
        idle * 100.0
    );

    let kernel = kill_mid_transfer(&topology, &probe, Side::Kernel, mode, peer_mode, port);
    let netcon = kill_mid_transfer(&topology, &probe, Side::Netcon, mode, peer_mode, port + 1);
    assert_eq!(
        netcon.stdout.lines().last(),
        kernel.stdout.lines().last(),
        "the peer of a killed {mode} probe saw a different end than with the kernel\n\
         kernel peer:\n{kernel}\nnetcon peer:\n{netcon}"
    );
    assert_dataplane_recovered(&topology, baseline, &format!("after a killed {mode} probe"));
}

#[test]
fn killed_sender_frees_connection() {
    if !require_root("killed_sender_frees_connection") {
        return;
    }
    // What the killed sender wrote is delivered, then a FIN, as with the kernel.
    check_killed_program("send", "sink", 9100);
}

#[test]
fn killed_receiver_resets_peer() {
    if !require_root("killed_receiver_resets_peer") {
        return;
    }
    check_killed_program("receive", "source", 9110);
}

#[test]
fn killed_program_with_unread_data_frees_connection() {
    if !require_root("killed_program_with_unread_data_frees_connection") {
        return;
    }
    let topology = Topology::start("ncfault");
    let probe = CProgram::compile("faults-probe", PROBE_SOURCE);
    let baseline = topology.dataplane.fd_count();
    // The peer keeps sending into a program that is stopped, so the whole path between them
    // is full when the program is killed.
    let peer = start_peer(&topology, 9120, "source");
    let program = start_probe(
        &topology,
        &probe,
        Side::Netcon,
        "receive",
        &[PEER_IP, "9120"],
    );
    signal_group(&program, libc::SIGSTOP);
    std::thread::sleep(Duration::from_secs(2));
    kill_group(&program);
    let peer = peer.finish(FAULT_TIMEOUT);
    assert!(
        peer.succeeded() && peer.stdout.contains("reset"),
        "the peer of the killed program did not see a reset\n{peer}"
    );
    drop(program);
    assert_dataplane_recovered(&topology, baseline, "after a program killed while stopped");
}

/// The calls the probes block in when netcon-dp is killed, with the results accepted for
/// each: an error, never a byte count or a clean EOF that would make the end look orderly.
const BLOCKED_CALLS: [(&str, &[&str]); 4] = [
    (
        "accept",
        &["EINVAL", "ECONNABORTED", "ENETDOWN", "EBADF", "ECONNRESET"],
    ),
    (
        "connect",
        &[
            "ENETDOWN",
            "ECONNRESET",
            "ECONNREFUSED",
            "ECONNABORTED",
            "ETIMEDOUT",
        ],
    ),
    ("read", &["ECONNRESET"]),
    ("write", &["EPIPE", "ECONNRESET"]),
];

#[test]
fn killed_dataplane_fails_blocked_calls() {
    if !require_root("killed_dataplane_fails_blocked_calls") {
        return;
    }
    let mut topology = Topology::start("ncfault");
    let probe = CProgram::compile("faults-probe", PROBE_SOURCE);
    // SYNs to 9201 go unanswered, so connect blocks. The holding peer neither reads nor
    // writes, so read blocks and write fills the buffers and then blocks.
    let rules = "table inet ncfault_drop {\n  chain input {\n    type filter hook input priority 0;\n    \
                 tcp dport 9201 drop\n  }\n}\n";
    load_nft_rules(&topology.netns, rules);
    let _holder = start_peer(&topology, 9202, "hold");

    let mut blocked = Vec::new();
    for (call, _) in BLOCKED_CALLS {
        let args: Vec<&str> = match call {
            "accept" => vec!["9200"],
            "connect" => vec![PEER_IP, "9201"],
            _ => vec![PEER_IP, "9202"],
        };
        blocked.push(start_probe(&topology, &probe, Side::Netcon, call, &args));
    }
    // Gives the writer time to fill every buffer on its path.
    std::thread::sleep(Duration::from_secs(2));
    for (process, (call, _)) in blocked.iter_mut().zip(BLOCKED_CALLS) {
        assert!(
            process.try_wait().is_none(),
            "the {call} probe did not block\n{:?}",
            process.output_so_far()
        );
    }

    let dataplane_pid = topology.dataplane.pid();
    send_signal(dataplane_pid, libc::SIGKILL);
    let reaped = wait_until(FAULT_TIMEOUT, || {
        topology.dataplane.try_wait().is_ok_and(|s| s.is_some())
    });
    assert!(reaped, "netcon-dp did not die from SIGKILL");

    for (process, (call, accepted)) in blocked.into_iter().zip(BLOCKED_CALLS) {
        let pid = process.pid();
        let run = process.finish(FAULT_TIMEOUT);
        assert!(
            !run.timed_out,
            "the {call} probe (pid {pid}) stayed blocked after netcon-dp died\n{run}"
        );
        let result = run
            .stdout
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{call} ")))
            .unwrap_or("(none)")
            .to_owned();
        assert!(
            accepted.contains(&result.as_str()),
            "the {call} probe ended with {result}, expected one of {accepted:?}\n{run}"
        );
    }

    // A restarted netcon-dp takes over the same socket path and serves new programs.
    let restarted = Dataplane::start(topology.dataplane.options())
        .unwrap_or_else(|err| panic!("cannot restart netcon-dp: {err}"));
    topology.assert_intercepting();
    let _server = start_load_server(&topology, 9203);
    run_transfers(&topology, 9203, "4194304", Duration::from_secs(60));
    drop(restarted);
}

/// Echoes a line through HOST:PORT and prints "before echoed", waits until the file GO
/// exists, then echoes again on a new socket and prints "after echoed".
const ECHO_ACROSS_RESTART: &str = r#"
import os, socket, sys, time
host, port, go = sys.argv[1], int(sys.argv[2]), sys.argv[3]

def echo(tag):
    with socket.create_connection((host, port), timeout=10) as conn:
        conn.sendall(b"ping\n")
        assert conn.makefile("rb").readline() == b"ping\n"
    print(tag, "echoed", flush=True)

echo("before")
while not os.path.exists(go):
    time.sleep(0.1)
echo("after")
"#;

#[test]
fn running_program_survives_dataplane_restart() {
    if !require_root("running_program_survives_dataplane_restart") {
        return;
    }
    let mut topology = Topology::start("ncfault");
    let _echo = common::start_socat_echo(&topology, 9210);
    let dir = tempfile::tempdir().expect("cannot create a temporary directory");
    let go = dir.path().join("go");
    let mut command = netcon_command(topology.socket(), PYTHON);
    command
        .args(["-c", ECHO_ACROSS_RESTART, PEER_IP, "9210"])
        .arg(&go);
    let mut program = Process::spawn(command, "program across a restart");
    wait_for_output(&mut program, "before echoed", FAULT_TIMEOUT);

    send_signal(topology.dataplane.pid(), libc::SIGKILL);
    let reaped = wait_until(FAULT_TIMEOUT, || {
        topology.dataplane.try_wait().is_ok_and(|s| s.is_some())
    });
    assert!(reaped, "netcon-dp did not die from SIGKILL");
    let restarted = Dataplane::start(topology.dataplane.options())
        .unwrap_or_else(|err| panic!("cannot restart netcon-dp: {err}"));

    // The program's control connections died with netcon-dp: its next socket() opens new
    // ones to the new netcon-dp.
    std::fs::write(&go, b"").expect("cannot create the go file");
    let run = program.finish(FAULT_TIMEOUT);
    assert!(
        run.succeeded() && run.stdout.contains("after echoed"),
        "the program could not use netcon after netcon-dp restarted\n{run}"
    );
    drop(restarted);
}

/// Starts LOAD_SERVER inside the namespace on PEER_IP:`port`.
fn start_load_server(topology: &Topology, port: u16) -> Process {
    let mut command = topology.netns.command(PYTHON);
    command.args(["-c", LOAD_SERVER, PEER_IP, &port.to_string()]);
    let mut server = Process::spawn(command, "load server");
    wait_for_output(&mut server, "listening", Duration::from_secs(15));
    server
}

/// Sends and receives `length` bytes through netcon to LOAD_SERVER on `port`, checksummed,
/// four connections each way, and returns how long it took.
fn run_transfers(topology: &Topology, port: u16, length: &str, timeout: Duration) -> Duration {
    let started = Instant::now();
    for direction in ["up", "down"] {
        let mut client = netcon_command(topology.socket(), PYTHON);
        client
            .args(["-c", LOAD_CLIENT, PEER_IP, &port.to_string()])
            .args(["transfer", direction, "4", length]);
        let run = run_bounded(client, &format!("{direction} transfers"), timeout);
        assert!(run.succeeded(), "{direction} transfers failed\n{run}");
    }
    started.elapsed()
}

#[test]
fn stopped_program_does_not_stall_others() {
    if !require_root("stopped_program_does_not_stall_others") {
        return;
    }
    let topology = Topology::start("ncfault");
    let probe = CProgram::compile("faults-probe", PROBE_SOURCE);
    let _server = start_load_server(&topology, 9300);
    let alone = run_transfers(&topology, 9300, "8388608", Duration::from_secs(120));

    // One stopped receiver whose peer keeps sending, one stopped sender whose peer keeps
    // reading: the first fills its socketpair, the second leaves it empty.
    let _source = start_peer(&topology, 9301, "source");
    let _sink = start_peer(&topology, 9302, "sink");
    let receiver = start_probe(
        &topology,
        &probe,
        Side::Netcon,
        "receive",
        &[PEER_IP, "9301"],
    );
    let sender = start_probe(&topology, &probe, Side::Netcon, "send", &[PEER_IP, "9302"]);
    std::thread::sleep(Duration::from_millis(500));
    signal_group(&receiver, libc::SIGSTOP);
    signal_group(&sender, libc::SIGSTOP);
    std::thread::sleep(Duration::from_secs(1));

    let beside_stopped = run_transfers(&topology, 9300, "8388608", Duration::from_secs(120));
    println!("transfers alone: {alone:?}, beside two stopped programs: {beside_stopped:?}");
    assert!(
        beside_stopped < alone * 3 + Duration::from_secs(5),
        "transfers took {beside_stopped:?} beside two stopped programs, {alone:?} alone"
    );

    // The stopped programs continue where they were.
    signal_group(&receiver, libc::SIGCONT);
    signal_group(&sender, libc::SIGCONT);
    std::thread::sleep(Duration::from_millis(500));
    for process in [receiver, sender] {
        let mut process = process;
        assert!(
            process.try_wait().is_none(),
            "{} exited while stopped\n{:?}",
            process.label(),
            process.output_so_far()
        );
    }
}
