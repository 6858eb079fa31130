//! UDP socket behaviours through netcon, measured against the kernel. A probe program
//! (`programs/udp_probe.py`) runs once inside the namespace on the kernel's UDP and once
//! through netcon, against the same kind of echo peer (`programs/udp_peer.py`). Both runs
//! must print the same observations. They cover datagram boundaries and truncation, MSG_PEEK
//! and MSG_TRUNC, addresses from recvfrom and recvmsg, implicit and explicit binds, connect
//! and connect(AF_UNSPEC), read and write on a connected socket, the peer filter of a
//! connected socket, and ECONNREFUSED after an ICMP port unreachable. They also cover
//! non-blocking EAGAIN, epoll and poll readiness, SO_REUSEADDR, sendmmsg and recvmmsg (through
//! libc and through syscall()), dup, fcntl(F_DUPFD), fork, a socket inherited across exec and
//! one passed in an SCM_RIGHTS message.
//!
//! The peer is in the namespace for the first tests and a program through netcon for the
//! loopback tests, where the probe reaches it at 127.0.0.1 and at netcon's own address.
//!
//! A second probe (`programs/udp_link_probe.py`) sends across the TAP link (MTU 1500) in both
//! runs: on the kernel to a peer through netcon, and through netcon to a peer on the kernel.
//! It covers datagrams larger than the link, which the sender fragments and the receiver
//! reassembles, over IPv4 and IPv6, and the options that make such sends fail with EMSGSIZE.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{
    Finished, NETCON_IP, NETCON_IP6, PEER_IP, PEER_IP6, PYTHON, Process, Topology, run_bounded,
    wait_for_output,
};
use netcon_tools::topology::{netcon_command, require_root};

const PROBE: &str = include_str!("programs/udp_probe.py");
const LINK_PROBE: &str = include_str!("programs/udp_link_probe.py");
const PEER: &str = include_str!("programs/udp_peer.py");

/// The peer's two echo ports, and a port nothing listens on.
const ECHO_PORT: &str = "7001";
const OTHER_PORT: &str = "7002";
const CLOSED_PORT: &str = "7003";

/// How long one probe run may take (it waits a few seconds for timeouts on purpose).
const PROBE_TIMEOUT: Duration = Duration::from_secs(90);

/// How long a peer may take to bind its sockets.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// Adds the peer's arguments: bind `host` on both echo ports.
fn peer_args(command: &mut Command, host: &str) {
    command.args(["-c", PEER, host, ECHO_PORT, OTHER_PORT]);
}

/// Adds the probe's arguments: the peer at `host`.
fn probe_args(command: &mut Command, host: &str) {
    command.args(["-c", PROBE, host, ECHO_PORT, OTHER_PORT, CLOSED_PORT]);
}

/// Starts the peer inside the namespace on the kernel's UDP and waits until it is bound.
fn kernel_peer(topology: &Topology, host: &str) -> Process {
    let mut command = topology.netns.command(PYTHON);
    peer_args(&mut command, host);
    let mut peer = Process::spawn(command, "UDP peer in the namespace");
    wait_for_output(&mut peer, "ready", READY_TIMEOUT);
    peer
}

/// Starts the peer through netcon and waits until it is bound.
fn netcon_peer(topology: &Topology, host: &str) -> Process {
    let mut command = netcon_command(topology.socket(), PYTHON);
    peer_args(&mut command, host);
    let mut peer = Process::spawn(command, "UDP peer through netcon");
    wait_for_output(&mut peer, "ready", READY_TIMEOUT);
    peer
}

/// Runs the probe inside the namespace against `host`.
fn kernel_probe(topology: &Topology, host: &str) -> Finished {
    let mut command = topology.netns.command(PYTHON);
    probe_args(&mut command, host);
    run_bounded(command, "UDP probe on the kernel", PROBE_TIMEOUT)
}

/// Runs the probe through netcon against `host`.
fn netcon_probe(topology: &Topology, host: &str) -> Finished {
    let mut command = netcon_command(topology.socket(), PYTHON);
    probe_args(&mut command, host);
    run_bounded(command, "UDP probe through netcon", PROBE_TIMEOUT)
}

/// Checks that both runs finished every scenario and printed the same lines, naming the
/// first line that differs.
fn assert_same_observations(kernel: &Finished, netcon: &Finished) {
    kernel.assert_success();
    netcon.assert_success();
    assert!(
        kernel.stdout.contains("done: True"),
        "the kernel run did not finish\n{kernel}"
    );
    let kernel_lines: Vec<&str> = kernel.stdout.lines().collect();
    let netcon_lines: Vec<&str> = netcon.stdout.lines().collect();
    for (index, (expected, actual)) in kernel_lines.iter().zip(&netcon_lines).enumerate() {
        assert_eq!(
            expected,
            actual,
            "line {} differs from the kernel's\nkernel:\n{}\nnetcon:\n{}",
            index + 1,
            kernel.stdout,
            netcon.stdout
        );
    }
    assert_eq!(
        kernel_lines.len(),
        netcon_lines.len(),
        "the runs printed different numbers of lines\nkernel:\n{}\nnetcon:\n{}",
        kernel.stdout,
        netcon.stdout
    );
}

/// Compares the probe against a peer in the namespace, with `workers` workers.
fn compare_with_namespace_peer(workers: usize, prefix: &str) {
    let topology = Topology::start_with(prefix, |options| options.workers = workers);
    let _peer = kernel_peer(&topology, PEER_IP);
    let kernel = kernel_probe(&topology, PEER_IP);
    let netcon = netcon_probe(&topology, PEER_IP);
    println!("netcon probe output:\n{}", netcon.stdout);
    assert_same_observations(&kernel, &netcon);
}

#[test]
fn udp_matches_kernel_one_worker() {
    if !require_root("udp_matches_kernel_one_worker") {
        return;
    }
    compare_with_namespace_peer(1, "ncudp1");
}

#[test]
fn udp_matches_kernel_two_workers() {
    if !require_root("udp_matches_kernel_two_workers") {
        return;
    }
    compare_with_namespace_peer(2, "ncudp2");
}

/// Compares the probe against a peer on the same host: in the namespace both on the kernel,
/// through netcon both through netcon-dp (two workers, so datagrams turned around inside the
/// stack cross between workers). `kernel_host` and `netcon_host` are where the probe finds
/// the peer.
fn compare_on_one_host(prefix: &str, kernel_host: &str, netcon_host: &str) {
    let topology = Topology::start_with(prefix, |options| options.workers = 2);
    let kernel = {
        let _peer = kernel_peer(&topology, "0.0.0.0");
        kernel_probe(&topology, kernel_host)
    };
    let _peer = netcon_peer(&topology, "0.0.0.0");
    let netcon = netcon_probe(&topology, netcon_host);
    println!("netcon probe output:\n{}", netcon.stdout);
    assert_same_observations(&kernel, &netcon);
}

#[test]
fn udp_loopback_matches_kernel() {
    if !require_root("udp_loopback_matches_kernel") {
        return;
    }
    compare_on_one_host("ncudplo", "127.0.0.1", "127.0.0.1");
}

#[test]
fn udp_to_own_address_matches_kernel() {
    if !require_root("udp_to_own_address_matches_kernel") {
        return;
    }
    compare_on_one_host("ncudpown", PEER_IP, NETCON_IP);
}

/// Runs the link probe with `command` (the kernel's Python or netcon's) against the peers at
/// `host` and `host6`.
fn link_probe(mut command: Command, host: &str, host6: &str, label: &str) -> Finished {
    command.args(["-c", LINK_PROBE, host, host6, ECHO_PORT]);
    run_bounded(command, label, PROBE_TIMEOUT)
}

/// Starts an echo peer through netcon on `host` and waits until it is bound.
fn netcon_echo_peer(topology: &Topology, host: &str) -> Process {
    let mut command = netcon_command(topology.socket(), PYTHON);
    command.args(["-c", PEER, host, ECHO_PORT]);
    let mut peer = Process::spawn(command, "UDP echo peer through netcon");
    wait_for_output(&mut peer, "ready", READY_TIMEOUT);
    peer
}

/// Starts an echo peer in the namespace on `host` and waits until it is bound.
fn kernel_echo_peer(topology: &Topology, host: &str) -> Process {
    let mut command = topology.netns.command(PYTHON);
    command.args(["-c", PEER, host, ECHO_PORT]);
    let mut peer = Process::spawn(command, "UDP echo peer in the namespace");
    wait_for_output(&mut peer, "ready", READY_TIMEOUT);
    peer
}

/// Compares the link probe on the kernel, against peers through netcon, with the link probe
/// through netcon against peers on the kernel. Every datagram crosses the TAP both ways.
fn compare_across_the_link(workers: usize, prefix: &str) {
    let topology = Topology::start_with(prefix, |options| options.workers = workers);
    let kernel = {
        let _peer = netcon_echo_peer(&topology, NETCON_IP);
        let _peer6 = netcon_echo_peer(&topology, NETCON_IP6);
        let command = topology.netns.command(PYTHON);
        link_probe(
            command,
            NETCON_IP,
            NETCON_IP6,
            "UDP link probe on the kernel",
        )
    };
    let _peer = kernel_echo_peer(&topology, PEER_IP);
    let _peer6 = kernel_echo_peer(&topology, PEER_IP6);
    let command = netcon_command(topology.socket(), PYTHON);
    let netcon = link_probe(command, PEER_IP, PEER_IP6, "UDP link probe through netcon");
    println!("netcon link probe output:\n{}", netcon.stdout);
    assert!(
        kernel.stdout.contains("echo of 65507 bytes: (65507, True)"),
        "the kernel run did not echo the largest datagram\n{kernel}"
    );
    assert_same_observations(&kernel, &netcon);
}

#[test]
fn udp_across_the_link_one_worker() {
    if !require_root("udp_across_the_link_one_worker") {
        return;
    }
    compare_across_the_link(1, "ncudplink1");
}

#[test]
fn udp_across_the_link_two_workers() {
    if !require_root("udp_across_the_link_two_workers") {
        return;
    }
    compare_across_the_link(2, "ncudplink2");
}
