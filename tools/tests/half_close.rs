//! Half-closed connections through netcon: the peer's FIN raises POLLRDHUP and EPOLLRDHUP on
//! the program's socket as on the kernel's TCP, and 200 connections left half-closed in either
//! direction cost netcon-dp no more CPU than it uses idle. The probe runs through netcon with
//! `--isolate`, so a socket that escaped netcon would fail instead.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{
    CProgram, PEER_IP, PYTHON, Process, Topology, cpu_ticks, run_bounded, wait_for_output,
};
use netcon_tools::topology::{isolated_netcon_command, require_root};

/// The probe program; its modes are listed at the top of the file.
const PROBE_SOURCE: &str = include_str!("programs/close_probe.c");

/// How long one probe or peer run may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// The peer of the rdhup mode, on the kernel's TCP: accepts one connection on HOST:PORT,
/// shuts down its write side after the probe's "shut" line, then prints what the probe sent
/// after the FIN.
const RDHUP_PEER: &str = r#"
import socket, sys

server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((sys.argv[1], int(sys.argv[2])))
server.listen(1)
print("listening", flush=True)
conn, _ = server.accept()
conn.settimeout(30)
reader = conn.makefile("rb")
print(f"got {reader.readline().decode().strip()}", flush=True)
conn.shutdown(socket.SHUT_WR)
print(f"after-fin {reader.read().decode().strip()}", flush=True)
"#;

/// The peer of the hold mode: accepts COUNT connections on HOST:PORT and half-closes each as
/// HOW selects ("peer": shut down its write side; "program": read until the program's FIN),
/// prints "ready COUNT", then keeps them open until it is stopped.
const HOLD_PEER: &str = r#"
import socket, sys, time

host, port, count, how = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((host, port))
server.listen(count)
print("listening", flush=True)
conns = [server.accept()[0] for _ in range(count)]
for conn in conns:
    conn.settimeout(30)
    if how == "peer":
        conn.shutdown(socket.SHUT_WR)
    elif conn.recv(1) != b"":
        sys.exit("expected the program's FIN")
print(f"ready {count}", flush=True)
time.sleep(120)
"#;

/// Half-closed connections held in the CPU measurement.
const HELD_CONNECTIONS: usize = 200;

/// Window over which netcon-dp's CPU time is measured.
const CPU_WINDOW: Duration = Duration::from_secs(5);

/// Ticks (1/100 s on Linux) netcon-dp may use in one window beyond its idle use: 1% of a core
/// over 5 s. A worker that keeps waking for half-closed connections, or spins on one, uses
/// many times more.
const CPU_SLACK_TICKS: u64 = 5;

/// Where the probe runs: inside the namespace on the kernel's TCP, or through netcon.
#[derive(Clone, Copy, Debug)]
enum Side {
    Kernel,
    Netcon,
}

fn probe_command(topology: &Topology, probe: &CProgram, side: Side) -> Command {
    match side {
        Side::Kernel => topology.netns.command(probe.program()),
        Side::Netcon => isolated_netcon_command(topology.socket(), probe.program()),
    }
}

/// Runs the rdhup mode on `side` against a fresh peer on `port`; returns what the probe and
/// the peer printed.
fn rdhup_run(topology: &Topology, probe: &CProgram, side: Side, port: u16) -> (String, String) {
    let port = port.to_string();
    let mut peer = topology.netns.command(PYTHON);
    peer.args(["-c", RDHUP_PEER, PEER_IP, &port]);
    let mut peer = Process::spawn(peer, "rdhup peer");
    wait_for_output(&mut peer, "listening", Duration::from_secs(15));
    let mut command = probe_command(topology, probe, side);
    command.args(["rdhup", PEER_IP, &port]);
    let run = run_bounded(command, &format!("rdhup probe ({side:?})"), RUN_TIMEOUT);
    let peer = peer.finish(RUN_TIMEOUT);
    assert!(
        run.succeeded() && peer.succeeded(),
        "rdhup on the {side:?} side failed\nprobe:\n{run}\npeer:\n{peer}"
    );
    (run.stdout, peer.stdout)
}

#[test]
fn peer_fin_raises_rdhup() {
    if !require_root("peer_fin_raises_rdhup") {
        return;
    }
    let topology = Topology::start("ncrdhup");
    let probe = CProgram::compile("close-probe", PROBE_SOURCE);
    let (kernel, kernel_peer) = rdhup_run(&topology, &probe, Side::Kernel, 7940);
    let (netcon, netcon_peer) = rdhup_run(&topology, &probe, Side::Netcon, 7941);

    for line in [
        "peer-fin poll POLLIN POLLOUT POLLRDHUP",
        "peer-fin epoll EPOLLIN EPOLLOUT EPOLLRDHUP",
        "rdhup-only epoll EPOLLRDHUP",
    ] {
        assert!(
            kernel.lines().any(|l| l == line),
            "the kernel run lacks {line:?}:\n{kernel}"
        );
    }
    assert_eq!(
        kernel, netcon,
        "readiness around the peer's FIN differs\nkernel:\n{kernel}\nnetcon:\n{netcon}"
    );
    assert_eq!(kernel_peer, netcon_peer, "the peer saw something else");
}

/// Returns the CPU time netcon-dp used over one window, in clock ticks.
fn ticks_over_window(pid: u32) -> u64 {
    let before = cpu_ticks(pid).expect("netcon-dp is running");
    std::thread::sleep(CPU_WINDOW);
    cpu_ticks(pid).expect("netcon-dp is running") - before
}

/// Opens [`HELD_CONNECTIONS`] connections through netcon, lets `closer` ("peer" or "program")
/// half-close them, and returns netcon-dp's ticks over one window while they are held.
fn ticks_with_held(topology: &Topology, probe: &CProgram, port: u16, closer: &str) -> u64 {
    let (port, count) = (port.to_string(), HELD_CONNECTIONS.to_string());
    let mut peer = topology.netns.command(PYTHON);
    peer.args(["-c", HOLD_PEER, PEER_IP, &port, &count, closer]);
    let mut peer = Process::spawn(peer, &format!("hold peer ({closer})"));
    wait_for_output(&mut peer, "listening", Duration::from_secs(15));

    let mut command = probe_command(topology, probe, Side::Netcon);
    command.args(["hold", PEER_IP, &port, &count, closer]);
    let mut program = Process::spawn(command, &format!("hold probe ({closer})"));
    wait_for_output(&mut program, "half-closed", RUN_TIMEOUT);
    wait_for_output(&mut peer, "ready", RUN_TIMEOUT);
    // Let the last ACKs and window updates settle before measuring.
    std::thread::sleep(Duration::from_secs(1));
    let ticks = ticks_over_window(topology.dataplane.pid());
    assert!(
        program.try_wait().is_none(),
        "the probe exited while holding its connections"
    );
    ticks
}

#[test]
fn half_closed_connections_cost_no_cpu() {
    if !require_root("half_closed_connections_cost_no_cpu") {
        return;
    }
    let topology = Topology::start("nchalfcpu");
    let probe = CProgram::compile("close-probe", PROBE_SOURCE);
    let pid = topology.dataplane.pid();
    let idle = ticks_over_window(pid);

    let after_peer_fin = ticks_with_held(&topology, &probe, 7950, "peer");
    let after_program_fin = ticks_with_held(&topology, &probe, 7951, "program");
    println!(
        "netcon-dp CPU ticks over {CPU_WINDOW:?}: idle {idle}, {HELD_CONNECTIONS} connections \
         after the peer's FIN {after_peer_fin}, after the program's FIN {after_program_fin}"
    );
    assert!(
        after_peer_fin <= idle + CPU_SLACK_TICKS,
        "{after_peer_fin} ticks with {HELD_CONNECTIONS} connections the peer half-closed, \
         {idle} idle"
    );
    assert!(
        after_program_fin <= idle + CPU_SLACK_TICKS,
        "{after_program_fin} ticks with {HELD_CONNECTIONS} connections the program \
         half-closed, {idle} idle"
    );
}
