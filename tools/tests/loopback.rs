//! Loopback through the stack: a program reaches a server behind the same netcon-dp at
//! 127.0.0.1, ::1 or one of the stack's own addresses, every byte arrives, the peers' addresses
//! are the ones Linux would report, and none of the traffic crosses the TAP.

mod common;

use std::time::Duration;

use common::{NETCON_IP, NETCON_IP6, PYTHON, Process, Topology, run_bounded, wait_for_stdout};
use netcon_tools::topology::{netcon_command, require_root};
use serde_json::Value;

const PORT: u16 = 7600;

/// Listens on BIND:PORT (an AF_INET6 socket for an IPv6 address, dual-stack on `::`) and, for
/// one connection, reads 10 MB, replies with their SHA-256 and prints the peer address it saw.
const SERVER: &str = r#"
import hashlib, socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
srv = socket.socket(family)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2])))
srv.listen(8)
print("listening", flush=True)
conn, peer = srv.accept()
digest = hashlib.sha256()
got = 0
while got < 10_000_000:
    chunk = conn.recv(1 << 16)
    if not chunk:
        break
    got += len(chunk)
    digest.update(chunk)
conn.sendall(digest.hexdigest().encode())
print(f"peer {peer[0]}:{peer[1]} got {got}", flush=True)
"#;

/// Connects to HOST:PORT, sends 10 MB, checks the digest that comes back and prints its own
/// local address.
const CLIENT: &str = r#"
import hashlib, socket, sys
data = bytes(range(256)) * 39063
data = data[:10_000_000]
conn = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
conn.sendall(data)
reply = conn.recv(100).decode()
assert reply == hashlib.sha256(data).hexdigest(), f"digest {reply!r} differs"
local = conn.getsockname()
print(f"local {local[0]}:{local[1]}", flush=True)
"#;

/// Bytes the TAP moved in both directions, read inside the namespace.
fn tap_bytes(topology: &Topology) -> u64 {
    let tap = topology.dataplane.options().tap.clone();
    let mut ip = topology.netns.command("ip");
    ip.args(["-s", "-j", "link", "show", "dev", &tap]);
    let run = run_bounded(ip, "ip -s link", Duration::from_secs(10));
    run.assert_success();
    let links: Value = serde_json::from_str(&run.stdout).expect("ip prints JSON");
    let stats = &links[0]["stats64"];
    stats["rx"]["bytes"].as_u64().unwrap_or(0) + stats["tx"]["bytes"].as_u64().unwrap_or(0)
}

/// Runs the server bound to `bind` and the client against `connect_to`, both through netcon,
/// and checks the transfer, the addresses both ends report (`client_ip` is the client's own)
/// and the TAP's byte counters.
fn transfer_over_loopback(
    workers: usize,
    bind: &str,
    connect_to: &str,
    client_ip: &str,
    prefix: &str,
) {
    let topology = Topology::start_with(prefix, |options| options.workers = workers);
    let before = tap_bytes(&topology);

    let mut server = netcon_command(topology.socket(), PYTHON);
    server.args(["-c", SERVER, bind, &PORT.to_string()]);
    let server = Process::spawn(server, "server through netcon");
    wait_for_stdout(&server, "listening", Duration::from_secs(15));

    let mut client = netcon_command(topology.socket(), PYTHON);
    client.args(["-c", CLIENT, connect_to, &PORT.to_string()]);
    let client = run_bounded(client, "client through netcon", Duration::from_secs(60));
    client.assert_success();
    let server = server.finish(Duration::from_secs(20));
    server.assert_success();

    let client_local = client
        .stdout
        .trim()
        .strip_prefix("local ")
        .unwrap_or_default()
        .to_string();
    assert!(
        client_local.starts_with(&format!("{client_ip}:")),
        "{client}"
    );
    // A dual-stack server sees an IPv4 client as IPv4-mapped.
    let seen = if bind == "::" && !client_ip.contains(':') {
        format!("::ffff:{client_local}")
    } else {
        client_local.clone()
    };
    assert!(
        server.stdout.contains(&format!("peer {seen} got 10000000")),
        "{server}"
    );

    // ARP or the odd keepalive of the namespace may cross the TAP, 10 MB may not.
    let crossed = tap_bytes(&topology) - before;
    assert!(
        crossed < 100_000,
        "{crossed} bytes crossed the TAP during a loopback transfer"
    );
}

#[test]
fn loopback_address_one_worker() {
    if !require_root("loopback_address_one_worker") {
        return;
    }
    transfer_over_loopback(1, "127.0.0.1", "127.0.0.1", "127.0.0.1", "nclo1");
}

#[test]
fn loopback_address_two_workers() {
    if !require_root("loopback_address_two_workers") {
        return;
    }
    transfer_over_loopback(2, "0.0.0.0", "127.0.0.1", "127.0.0.1", "nclo2");
}

#[test]
fn own_address_two_workers() {
    if !require_root("own_address_two_workers") {
        return;
    }
    transfer_over_loopback(2, "0.0.0.0", NETCON_IP, NETCON_IP, "nclo3");
}

#[test]
fn ipv6_loopback_one_worker() {
    if !require_root("ipv6_loopback_one_worker") {
        return;
    }
    transfer_over_loopback(1, "::1", "::1", "::1", "nclo6");
}

#[test]
fn ipv6_loopback_two_workers() {
    if !require_root("ipv6_loopback_two_workers") {
        return;
    }
    transfer_over_loopback(2, "::", "::1", "::1", "nclo62");
}

#[test]
fn own_ipv6_address_two_workers() {
    if !require_root("own_ipv6_address_two_workers") {
        return;
    }
    transfer_over_loopback(2, "::", NETCON_IP6, NETCON_IP6, "nclo63");
}

#[test]
fn dual_stack_over_ipv4_loopback() {
    if !require_root("dual_stack_over_ipv4_loopback") {
        return;
    }
    transfer_over_loopback(2, "::", "127.0.0.1", "127.0.0.1", "nclo64");
}

#[test]
fn loopback_without_listener_refused() {
    if !require_root("loopback_without_listener_refused") {
        return;
    }
    let topology = Topology::start("nclo4");
    let mut client = netcon_command(topology.socket(), PYTHON);
    client.args([
        "-c",
        "import socket\ntry:\n    socket.create_connection(('127.0.0.1', 7601), timeout=10)\nexcept ConnectionRefusedError:\n    print('refused')",
    ]);
    let run = run_bounded(client, "client through netcon", Duration::from_secs(30));
    run.assert_success();
    assert_eq!(run.stdout.trim(), "refused", "{run}");
}
