//! How closing a connection ends it for the peer, measured against the kernel. A close with
//! SO_LINGER {1, 0}, or with received data the program never read, sends a reset, so the peer
//! reads ECONNRESET, and SO_LINGER reads back as set. An ordinary close after reading
//! everything sends a FIN, so the peer reads EOF. Each scenario runs the probe inside the
//! namespace on the kernel's TCP and through netcon, against the same kind of kernel peer,
//! and both runs must report the same. The run through netcon uses `--isolate`, so a socket
//! that escaped netcon would fail instead.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{
    CProgram, Finished, PEER_IP, PYTHON, Process, Topology, run_bounded, wait_for_output,
};
use netcon_tools::topology::{isolated_netcon_command, require_root};

/// The probe program; its modes are listed at the top of the file.
const PROBE_SOURCE: &str = include_str!("programs/close_probe.c");

/// How long one probe or peer run may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// The peer in the namespace, on the kernel's TCP: listens on HOST:PORT, accepts one
/// connection and plays SCENARIO. It ends by reading until EOF or an error and prints
/// "end eof" or "end reset" (ECONNRESET, or EPIPE on a send after the reset).
const PEER: &str = r#"
import socket, sys

host, port, scenario = sys.argv[1], int(sys.argv[2]), sys.argv[3]
size = int(sys.argv[4]) if len(sys.argv) > 4 else 0
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((host, port))
server.listen(1)
print("listening", flush=True)
conn, _ = server.accept()
conn.settimeout(30)
reader = conn.makefile("rb")

def finish():
    try:
        while conn.recv(1 << 16):
            pass
        print("end eof", flush=True)
    except (ConnectionResetError, BrokenPipeError):
        print("end reset", flush=True)

try:
    line = reader.readline()
    print(f"got {line.decode().strip()}", flush=True)
    if scenario == "linger-zero":
        conn.sendall(b"ok\n")
    elif scenario == "read-close":
        conn.sendall(b"d" * (size - 1) + b"\n")
    elif scenario == "unread-close":
        block = b"d" * 65535 + b"\n"
        sent = 0
        while sent < size:
            conn.sendall(block[: min(len(block), size - sent)])
            sent += min(len(block), size - sent)
except (ConnectionResetError, BrokenPipeError):
    print("end reset", flush=True)
    sys.exit(0)
finish()
"#;

/// Where the probe runs: inside the namespace on the kernel's TCP, or through netcon.
#[derive(Clone, Copy, Debug)]
enum Side {
    Kernel,
    Netcon,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Kernel => "kernel",
            Side::Netcon => "netcon",
        }
    }
}

/// A namespace with its netcon-dp and the compiled probe.
struct Fixture {
    topology: Topology,
    probe: CProgram,
}

impl Fixture {
    fn start(prefix: &str) -> Fixture {
        Fixture {
            topology: Topology::start(prefix),
            probe: CProgram::compile("close-probe", PROBE_SOURCE),
        }
    }

    fn probe(&self, side: Side, args: &[&str]) -> Command {
        let mut command = match side {
            Side::Kernel => self.topology.netns.command(self.probe.program()),
            Side::Netcon => isolated_netcon_command(self.topology.socket(), self.probe.program()),
        };
        command.args(args);
        command
    }

    /// Runs the peer on `port` and the probe against it, both in `mode`; returns the probe's
    /// run and the peer's.
    fn run(&self, side: Side, port: u16, mode: &str, size: usize) -> (Finished, Finished) {
        let port = port.to_string();
        let mut peer = self.topology.netns.command(PYTHON);
        peer.args(["-c", PEER, PEER_IP, &port, mode, &size.to_string()]);
        let mut peer = Process::spawn(peer, &format!("peer for {mode}"));
        wait_for_output(&mut peer, "listening", Duration::from_secs(15));
        let label = format!("{mode} probe on the {} side", side.name());
        let probe = run_bounded(
            self.probe(side, &[mode, PEER_IP, &port]),
            &label,
            RUN_TIMEOUT,
        );
        let peer = peer.finish(RUN_TIMEOUT);
        assert!(
            probe.succeeded() && peer.succeeded(),
            "{label} failed\nprobe:\n{probe}\npeer:\n{peer}"
        );
        (probe, peer)
    }

    /// Runs `mode` on both sides (ports `port` and `port + 1`), checks that probe and peer
    /// printed the same on both, and returns the peer's last line.
    fn compare(&self, port: u16, mode: &str, size: usize) -> String {
        let (kernel_probe, kernel_peer) = self.run(Side::Kernel, port, mode, size);
        let (netcon_probe, netcon_peer) = self.run(Side::Netcon, port + 1, mode, size);
        assert_eq!(
            kernel_probe.stdout, netcon_probe.stdout,
            "{mode}: the probe saw something else through netcon\nkernel:\n{kernel_probe}\n\
             netcon:\n{netcon_probe}"
        );
        assert_eq!(
            kernel_peer.stdout, netcon_peer.stdout,
            "{mode}: the peer saw something else through netcon\nkernel:\n{kernel_peer}\n\
             netcon:\n{netcon_peer}"
        );
        kernel_peer
            .stdout
            .lines()
            .last()
            .unwrap_or_default()
            .to_owned()
    }
}

#[test]
fn linger_zero_sends_reset() {
    if !require_root("linger_zero_sends_reset") {
        return;
    }
    let fixture = Fixture::start("nclinger");
    let end = fixture.compare(7900, "linger-zero", 0);
    assert_eq!(end, "end reset", "the kernel run did not end in a reset");
}

#[test]
fn close_with_unread_data_sends_reset() {
    if !require_root("close_with_unread_data_sends_reset") {
        return;
    }
    let fixture = Fixture::start("ncunread");
    // 1000 bytes wait in the socketpair towards the program when it closes.
    let end = fixture.compare(7910, "unread-close", 1000);
    assert_eq!(end, "end reset", "the kernel run did not end in a reset");
}

#[test]
fn close_with_full_buffers_sends_reset() {
    if !require_root("close_with_full_buffers_sends_reset") {
        return;
    }
    let fixture = Fixture::start("ncunreadfull");
    // 16 MiB is more than the socketpair and smoltcp's receive buffer hold together (about
    // 5 MiB), so unread data also waits in smoltcp when the program closes.
    let end = fixture.compare(7920, "unread-close", 16 << 20);
    assert_eq!(end, "end reset", "the kernel run did not end in a reset");
}

#[test]
fn close_after_reading_sends_fin() {
    if !require_root("close_after_reading_sends_fin") {
        return;
    }
    let fixture = Fixture::start("ncreadclose");
    let end = fixture.compare(7930, "read-close", 1000);
    assert_eq!(end, "end eof", "the kernel run did not end with EOF");
}
