//! How closing a connection ends it for the peer, measured against the kernel. A close with
//! SO_LINGER {1, 0}, or with received data the program never read, sends a reset, so the peer
//! reads ECONNRESET, and SO_LINGER reads back as set. An ordinary close after reading
//! everything sends a FIN, so the peer reads EOF. Each scenario runs the probe inside the
//! namespace on the kernel's TCP and through netcon, against the same kind of kernel peer,
//! and both runs must report the same. The run through netcon uses `--isolate`, so a socket
//! that escaped netcon would fail instead. A connection the program closes first ends with the
//! stack's ACK of the peer's FIN, which the peer's retransmission count shows.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{
    CProgram, Finished, NETCON_IP, PEER_IP, PYTHON, Process, Topology, run_bounded,
    wait_for_netcon_listener, wait_for_output,
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

/// A server through netcon on PORT that closes first: each connection gets one byte back for
/// the byte it sent, then the server closes it.
const CLOSE_FIRST_SERVER: &str = r#"
import socket, sys

server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("0.0.0.0", int(sys.argv[1])))
server.listen(128)
while True:
    conn, _ = server.accept()
    with conn:
        if conn.recv(1):
            conn.sendall(b"k")
"#;

/// A kernel client in the namespace: COUNT connections to HOST:PORT one after another, each
/// sending a byte and reading until EOF before it closes. Prints how many segments the
/// namespace's TCP retransmitted (/proc/net/snmp) during the run and 1.5 s after.
const CLOSE_SECOND_CLIENT: &str = r#"
import socket, sys, time

host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

def counters():
    values = {}
    lines = open("/proc/net/snmp").read().splitlines()
    for names, numbers in zip(lines[::2], lines[1::2]):
        prefix = names.split(":")[0]
        for name, number in zip(names.split()[1:], numbers.split()[1:]):
            values[f"{prefix}.{name}"] = int(number)
    return values

before = counters()
for _ in range(count):
    with socket.create_connection((host, port), timeout=10) as conn:
        conn.sendall(b"x")
        while conn.recv(16):
            pass
# A FIN left unacknowledged is retransmitted after the minimum RTO (200 ms).
time.sleep(1.5)
after = counters()
print("Tcp.RetransSegs", after["Tcp.RetransSegs"] - before["Tcp.RetransSegs"])
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

/// A connection the program closes first ends with the stack's ACK of the peer's FIN, so the
/// peer neither retransmits its FIN nor meets a reset.
#[test]
fn first_close_acks_peer_fin() {
    if !require_root("first_close_acks_peer_fin") {
        return;
    }
    let topology = Topology::start("ncfirstclose");
    let port = 7940;
    let mut server = isolated_netcon_command(topology.socket(), PYTHON);
    server.args(["-c", CLOSE_FIRST_SERVER, &port.to_string()]);
    let mut server = Process::spawn(server, "close-first server through netcon");
    wait_for_netcon_listener(&topology.netns, port, &mut server, Duration::from_secs(15));

    let count = 200;
    let mut client = topology.netns.command(PYTHON);
    client.args(["-c", CLOSE_SECOND_CLIENT, NETCON_IP, &port.to_string()]);
    client.arg(count.to_string());
    let run = run_bounded(client, "kernel client closing second", RUN_TIMEOUT);
    run.assert_success();
    let counter = |name: &str| -> u64 {
        run.stdout
            .lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing\n{run}"))
    };
    // A lost final ACK makes the kernel retransmit its FIN once per connection.
    let retransmits = counter("Tcp.RetransSegs");
    assert!(
        retransmits < count / 10,
        "{retransmits} retransmissions over {count} connections\n{run}"
    );
}
