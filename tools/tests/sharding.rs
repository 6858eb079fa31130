//! Several workers: connections spread over workers by their 4-tuple, frames that land on the
//! wrong worker's TAP queue are handed over, and a listener lives on every worker. Checked with
//! checksummed parallel transfers and with many connections to one listener, over IPv4 and
//! IPv6.

mod common;

use std::time::Duration;

use common::{
    NETCON_IP, NETCON_IP6, PEER_IP, PEER_IP6, PYTHON, Process, Topology, run_bounded,
    wait_for_listener,
};
use netcon_tools::topology::{netcon_command, require_root};

const ECHO_PORT: u16 = 7100;
const LISTEN_PORT: u16 = 7200;

/// Opens CONNS connections at once to HOST:PORT; each sends SIZE pseudo-random bytes seeded by
/// its index and compares the echo with what it sent. Exits 1 naming the first bad connection.
const PARALLEL_ECHO: &str = r#"
import hashlib, random, socket, sys, threading

host, port, conns, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
failures = []

def one(index):
    payload = random.Random(index).randbytes(size)
    try:
        with socket.create_connection((host, port), timeout=30) as conn:
            sender = threading.Thread(target=conn.sendall, args=(payload,))
            sender.start()
            received = bytearray()
            while len(received) < size:
                chunk = conn.recv(1 << 16)
                if not chunk:
                    break
                received += chunk
            sender.join()
    except OSError as err:
        failures.append(f"connection {index}: {err!r}")
        return
    if hashlib.sha256(received).digest() != hashlib.sha256(payload).digest():
        failures.append(f"connection {index}: {len(received)} of {size} bytes, checksum differs")

threads = [threading.Thread(target=one, args=(i,)) for i in range(conns)]
for t in threads:
    t.start()
for t in threads:
    t.join()
if failures:
    sys.exit("; ".join(failures[:5]))
print(f"{conns} connections echoed {size} bytes each")
"#;

/// Accepts connections on PORT forever (on HOST, 0.0.0.0 unless given); each gets one byte
/// back for the byte it sent.
const ONE_BYTE_SERVER: &str = r#"
import socket, sys

host = sys.argv[2] if len(sys.argv) > 2 else "0.0.0.0"
family = socket.AF_INET6 if ":" in host else socket.AF_INET
server = socket.socket(family, socket.SOCK_STREAM)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((host, int(sys.argv[1])))
server.listen(128)
print("listening", flush=True)
while True:
    conn, _ = server.accept()
    with conn:
        if conn.recv(1):
            conn.sendall(b"k")
"#;

/// Makes COUNT connections to HOST:PORT from THREADS threads; each sends a byte and waits for
/// the reply. Exits 1 with the number of failures.
const MANY_CONNECTS: &str = r#"
import socket, sys, threading

host, port, count, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
failed = []
served = [0]
lock = threading.Lock()

def work(share):
    for _ in range(share):
        try:
            with socket.create_connection((host, port), timeout=10) as conn:
                conn.sendall(b"x")
                if conn.recv(1) != b"k":
                    raise OSError("no reply")
            with lock:
                served[0] += 1
        except OSError as err:
            with lock:
                failed.append(repr(err))

workers = [threading.Thread(target=work, args=(count // threads,)) for _ in range(threads)]
for w in workers:
    w.start()
for w in workers:
    w.join()
if failed:
    sys.exit(f"{len(failed)} of {count} connections failed, first: {failed[0]}")
print(f"{served[0]} connections served")
"#;

fn four_workers(prefix: &str) -> Topology {
    Topology::start_with(prefix, |options| options.workers = 4)
}

/// Runs 64 checksummed echo transfers at once from netcon to a socat echo server listening
/// at `listen` (socat's address type and options) and reached at `peer`.
fn parallel_transfers(prefix: &str, listen: &str, peer: &str) {
    let topology = four_workers(prefix);
    let mut command = topology.netns.command("socat");
    command.args([listen, "EXEC:cat"]);
    let mut server = Process::spawn(command, "socat echo server in the namespace");
    wait_for_listener(&topology.netns, ECHO_PORT, &mut server);

    let mut client = netcon_command(topology.socket(), PYTHON);
    let port = ECHO_PORT.to_string();
    client.args(["-c", PARALLEL_ECHO, peer, &port, "64", "1048576"]);
    let run = run_bounded(
        client,
        "64 parallel echo transfers through netcon",
        Duration::from_secs(120),
    );
    run.assert_success();
    assert!(run.stdout.contains("64 connections echoed"), "{run}");
}

#[test]
fn parallel_transfers_checksummed() {
    if !require_root("parallel_transfers_checksummed") {
        return;
    }
    let listen = format!("TCP4-LISTEN:{ECHO_PORT},bind={PEER_IP},fork,reuseaddr,backlog=128");
    parallel_transfers("ncshard", &listen, PEER_IP);
}

#[test]
fn parallel_transfers_ipv6() {
    if !require_root("parallel_transfers_ipv6") {
        return;
    }
    let listen = format!("TCP6-LISTEN:{ECHO_PORT},bind=[{PEER_IP6}],fork,reuseaddr,backlog=128");
    parallel_transfers("ncshard6", &listen, PEER_IP6);
}

/// Makes `count` connections from the namespace to a listener through netcon on `bind`,
/// reached at `target`.
fn many_connections(prefix: &str, bind: &str, target: &str, count: u32) {
    let topology = four_workers(prefix);
    let mut command = netcon_command(topology.socket(), PYTHON);
    command.args(["-c", ONE_BYTE_SERVER, &LISTEN_PORT.to_string(), bind]);
    let mut server = Process::spawn(command, "one-byte server through netcon");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !server.output_so_far().0.contains("listening") {
        assert!(
            server.try_wait().is_none(),
            "the server exited: {:?}",
            server.output_so_far()
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not start listening"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let mut client = topology.netns.command(PYTHON);
    let port = LISTEN_PORT.to_string();
    let count_text = count.to_string();
    client.args(["-c", MANY_CONNECTS, target, &port, &count_text, "8"]);
    let label = format!("{count} connections from the namespace to {target}");
    let run = run_bounded(client, &label, Duration::from_secs(240));
    run.assert_success();
    let served = format!("{count} connections served");
    assert!(run.stdout.contains(&served), "{run}");
}

#[test]
fn listener_on_every_worker() {
    if !require_root("listener_on_every_worker") {
        return;
    }
    many_connections("nclisten", "0.0.0.0", NETCON_IP, 10_000);
}

#[test]
fn ipv6_listener_on_every_worker() {
    if !require_root("ipv6_listener_on_every_worker") {
        return;
    }
    many_connections("nclisten6", "::", NETCON_IP6, 2_000);
}
