//! Loopback through the stack: a program reaches a server behind the same netcon-dp at
//! 127.0.0.1, ::1 or one of the stack's own addresses, every byte arrives, the peers' addresses
//! are the ones Linux would report, and none of the traffic crosses the TAP. With
//! `--loopback kernel`, 127.0.0.1 is the host's loopback instead: servers and clients through
//! netcon meet the host's kernel sockets there, and again nothing crosses the TAP.

mod common;

use std::time::Duration;

use common::{
    NETCON_IP, NETCON_IP6, PYTHON, Process, Topology, load_nft_rules, run_bounded, wait_for_stdout,
};
use netcon_tools::topology::{isolated_netcon_command, netcon_command, require_root};
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
/// and the TAP's byte counters. Each runs with `--isolate` in a namespace of its own, so the
/// two meet only inside netcon-dp.
fn transfer_over_loopback(
    workers: usize,
    bind: &str,
    connect_to: &str,
    client_ip: &str,
    prefix: &str,
) {
    let topology = Topology::start_with(prefix, |options| options.workers = workers);
    let before = tap_bytes(&topology);

    let mut server = isolated_netcon_command(topology.socket(), PYTHON);
    server.args(["-c", SERVER, bind, &PORT.to_string()]);
    let server = Process::spawn(server, "server through netcon");
    wait_for_stdout(&server, "listening", Duration::from_secs(15));

    let mut client = isolated_netcon_command(topology.socket(), PYTHON);
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
    let mut client = isolated_netcon_command(topology.socket(), PYTHON);
    client.args([
        "-c",
        "import socket\ntry:\n    socket.create_connection(('127.0.0.1', 7601), timeout=10)\nexcept ConnectionRefusedError:\n    print('refused')",
    ]);
    let run = run_bounded(client, "client through netcon", Duration::from_secs(30));
    run.assert_success();
    assert_eq!(run.stdout.trim(), "refused", "{run}");
}

/// Serves HOST:PORT until stopped (an AF_INET6 socket for an IPv6 address): prints
/// "listening", then answers every connection with "hello from TAG".
const GREETER: &str = r#"
import socket, sys
srv = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2])))
srv.listen(8)
print("listening", flush=True)
while True:
    conn, _ = srv.accept()
    conn.sendall(f"hello from {sys.argv[3]}\n".encode())
    conn.close()
"#;

/// Connects to HOST:PORT with TCP_NODELAY set before connecting and prints the greeting and
/// the TCP_NODELAY the connected socket reads back, or "refused".
const GREETED: &str = r#"
import socket, sys
conn = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
conn.settimeout(10)
try:
    conn.connect((sys.argv[1], int(sys.argv[2])))
except ConnectionRefusedError:
    print("refused")
    sys.exit(0)
greeting = conn.makefile().readline().strip()
print(f"{greeting}, nodelay {conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)}")
"#;

/// Returns a TCP port on the host's 127.0.0.1 that nothing listens on now.
fn free_host_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("cannot bind 127.0.0.1:0");
    listener.local_addr().expect("a bound address").port()
}

/// Counts, in the namespace, packets from or to a loopback address that arrive on the TAP.
fn count_loopback_on_tap(topology: &Topology) {
    let tap = &topology.dataplane.options().tap;
    load_nft_rules(
        &topology.netns,
        &format!(
            "table inet looped {{\n  counter crossed {{}}\n  chain prerouting {{\n    \
             type filter hook prerouting priority -300;\n    \
             iifname \"{tap}\" ip saddr 127.0.0.0/8 counter name crossed\n    \
             iifname \"{tap}\" ip daddr 127.0.0.0/8 counter name crossed\n    \
             iifname \"{tap}\" ip6 saddr ::1 counter name crossed\n    \
             iifname \"{tap}\" ip6 daddr ::1 counter name crossed\n  }}\n}}\n"
        ),
    );
}

/// Returns the packets [`count_loopback_on_tap`] counted.
fn loopback_packets_on_tap(topology: &Topology) -> u64 {
    let mut nft = topology.netns.command("nft");
    nft.args(["-j", "list", "counter", "inet", "looped", "crossed"]);
    let run = run_bounded(nft, "nft list counter", Duration::from_secs(10));
    run.assert_success();
    let listing: Value = serde_json::from_str(&run.stdout).expect("nft prints JSON");
    listing["nftables"]
        .as_array()
        .and_then(|items| {
            items
                .iter()
                .find_map(|item| item["counter"]["packets"].as_u64())
        })
        .unwrap_or_else(|| panic!("no packet count in {}", run.stdout))
}

/// Starts GREETER on `host`:`port`, through netcon when `topology` is given, else on the
/// host's kernel, and waits for it to listen.
fn start_greeter(topology: Option<&Topology>, host: &str, port: u16, tag: &str) -> Process {
    let mut command = match topology {
        Some(topology) => netcon_command(topology.socket(), PYTHON),
        None => std::process::Command::new(PYTHON),
    };
    command.args(["-c", GREETER, host, &port.to_string(), tag]);
    let server = Process::spawn(command, &format!("greeter ({tag})"));
    wait_for_stdout(&server, "listening", Duration::from_secs(15));
    server
}

/// Runs GREETED against `host`:`port`, through netcon when `topology` is given, else on the
/// host's kernel, and returns what it printed.
fn greet(topology: Option<&Topology>, host: &str, port: u16) -> String {
    let mut command = match topology {
        Some(topology) => netcon_command(topology.socket(), PYTHON),
        None => std::process::Command::new(PYTHON),
    };
    command.args(["-c", GREETED, host, &port.to_string()]);
    let run = run_bounded(command, "greeted client", Duration::from_secs(30));
    run.assert_success();
    run.stdout.trim().to_owned()
}

#[test]
fn stack_loopback_stays_inside() {
    if !require_root("stack_loopback_stays_inside") {
        return;
    }
    let topology = Topology::start("nclopstack");
    count_loopback_on_tap(&topology);
    let before = tap_bytes(&topology);

    let netcon_port = free_host_port();
    let _netcon_server = start_greeter(Some(&topology), "127.0.0.1", netcon_port, "netcon");
    assert_eq!(
        greet(Some(&topology), "127.0.0.1", netcon_port),
        "hello from netcon, nodelay 1",
        "a program through netcon did not reach a server through netcon on 127.0.0.1"
    );
    assert_eq!(
        greet(None, "127.0.0.1", netcon_port),
        "refused",
        "a host program reached a server through netcon on 127.0.0.1"
    );

    let host_port = free_host_port();
    let _host_server = start_greeter(None, "127.0.0.1", host_port, "host");
    assert_eq!(
        greet(Some(&topology), "127.0.0.1", host_port),
        "refused",
        "a program through netcon reached the host's loopback"
    );

    assert_eq!(
        loopback_packets_on_tap(&topology),
        0,
        "loopback packets on the TAP"
    );
    let crossed = tap_bytes(&topology) - before;
    assert!(crossed < 100_000, "{crossed} bytes crossed the TAP");
}

#[test]
fn kernel_loopback_reaches_host() {
    if !require_root("kernel_loopback_reaches_host") {
        return;
    }
    let topology = Topology::start_with("nclopkernel", |options| {
        options
            .extra_args
            .extend(["--loopback".into(), "kernel".into()]);
    });
    count_loopback_on_tap(&topology);
    let before = tap_bytes(&topology);

    let netcon_port = free_host_port();
    let _netcon_server = start_greeter(Some(&topology), "127.0.0.1", netcon_port, "netcon");
    assert_eq!(
        greet(None, "127.0.0.1", netcon_port),
        "hello from netcon, nodelay 1",
        "a host program did not reach a server through netcon on 127.0.0.1"
    );
    // A client through netcon connects through the kernel's loopback too, with the option it
    // set before connecting carried over to its kernel socket.
    assert_eq!(
        greet(Some(&topology), "127.0.0.1", netcon_port),
        "hello from netcon, nodelay 1",
        "a program through netcon did not reach a server through netcon on 127.0.0.1"
    );

    let host_port = free_host_port();
    let _host_server = start_greeter(None, "127.0.0.1", host_port, "host");
    assert_eq!(
        greet(Some(&topology), "127.0.0.1", host_port),
        "hello from host, nodelay 1",
        "a program through netcon did not reach the host's loopback"
    );

    // ::1 goes to the kernel as well.
    let ipv6_port = free_host_port();
    let _ipv6_server = start_greeter(Some(&topology), "::1", ipv6_port, "netcon on ::1");
    assert_eq!(
        greet(None, "::1", ipv6_port),
        "hello from netcon on ::1, nodelay 1",
        "a host program did not reach a server through netcon on ::1"
    );

    assert_eq!(
        loopback_packets_on_tap(&topology),
        0,
        "loopback packets on the TAP"
    );
    let crossed = tap_bytes(&topology) - before;
    assert!(crossed < 100_000, "{crossed} bytes crossed the TAP");
}
