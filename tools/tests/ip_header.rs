//! IP_TOS, IP_TTL and IPV6_TCLASS through netcon: they read back as set, and every packet a
//! connection sends carries them. That holds on an outgoing connection (set before connect,
//! then the TOS changed midway, over IPv4 and IPv6) and on one accepted by a listener that set
//! them. nftables counters in the peer's namespace count the packets by DSCP and TTL, for the same
//! program on the kernel's TCP (over the namespace's loopback) and through netcon, the latter
//! with `--isolate`, so a socket that escaped netcon would fail instead.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{
    CProgram, NETCON_IP, PEER_IP, PEER_IP6, PYTHON, Process, Topology, load_nft_rules, run_bounded,
    wait_for_output,
};
use netcon_tools::topology::{isolated_netcon_command, require_root};
use serde_json::Value;

/// The probe program; its modes are listed at the top of the file.
const PROBE_SOURCE: &str = include_str!("programs/ip_options_probe.c");

const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// IP_TOS values: DSCP CS4 and CS1 in the upper six bits.
const TOS_CS4: &str = "0x80";
const TOS_CS1: &str = "0x20";
const TTL: &str = "7";

/// Serves the client mode: reads 64 KiB on HOST:PORT, replies "got N", reads to EOF.
const SINK_PEER: &str = r#"
import socket, sys

family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
server = socket.socket(family)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((sys.argv[1], int(sys.argv[2])))
server.listen(1)
print("listening", flush=True)
conn, _ = server.accept()
conn.settimeout(30)
got = 0
while got < 65536:
    got += len(conn.recv(65536 - got))
conn.sendall(f"got {got}\n".encode())
while conn.recv(65536):
    got += 1
conn.close()
"#;

/// Connects to the server mode at HOST:PORT and reads to EOF.
const SOURCE_PEER: &str = r#"
import socket, sys

conn = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
total = 0
while chunk := conn.recv(65536):
    total += len(chunk)
conn.close()
print(f"received {total}", flush=True)
"#;

/// Where the probe runs: inside the namespace on the kernel's TCP, or through netcon.
#[derive(Clone, Copy, Debug)]
enum Side {
    Kernel,
    Netcon,
}

/// The counters one side's packets are counted in, named `SIDE_WHAT`.
const COUNTERS: [&str; 6] = ["syn_cs4", "cs4", "cs1", "other_dscp", "ttl", "other_ttl"];

/// nftables rules counting, per side, the packets the probe sends: `direction` is `dport`
/// (the probe connects to that port) or `sport` (the probe listens on it), and `family` is
/// `ip` or `ip6`. IPv6 packets are not counted by TTL (their hop limit stays 64 on both
/// sides), so those two counters stay 0 for `ip6`.
fn counting_rules(tap: &str, ports: [(Side, u16); 2], direction: &str, family: &str) -> String {
    let mut objects = String::new();
    let mut rules = String::new();
    for (side, port) in ports {
        let side = side_name(side);
        for counter in COUNTERS {
            objects.push_str(&format!("  counter {side}_{counter} {{}}\n"));
        }
        let device = match side {
            "kernel" => "lo",
            _ => tap,
        };
        let flow = format!(
            "iifname \"{device}\" meta nfproto ipv{} tcp {direction} {port}",
            if family == "ip" { 4 } else { 6 }
        );
        rules.push_str(&format!(
            "    {flow} tcp flags & syn == syn {family} dscp cs4 counter name {side}_syn_cs4\n\
             {flow} {family} dscp cs4 counter name {side}_cs4\n\
             {flow} {family} dscp cs1 counter name {side}_cs1\n\
             {flow} {family} dscp != {{ cs4, cs1 }} counter name {side}_other_dscp\n"
        ));
        if family == "ip" {
            rules.push_str(&format!(
                "    {flow} ip ttl {TTL} counter name {side}_ttl\n\
                 {flow} ip ttl != {TTL} counter name {side}_other_ttl\n"
            ));
        }
    }
    format!(
        "table inet ipmarks {{\n{objects}  chain input {{\n    type filter hook input priority 0;\n{rules}  }}\n}}\n"
    )
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Kernel => "kernel",
        Side::Netcon => "netcon",
    }
}

/// Returns the packet count of each counter in the `ipmarks` table, by name.
fn read_counters(topology: &Topology) -> Vec<(String, u64)> {
    let mut nft = topology.netns.command("nft");
    nft.args(["-j", "list", "counters", "table", "inet", "ipmarks"]);
    let run = run_bounded(nft, "nft list counters", Duration::from_secs(10));
    run.assert_success();
    let listing: Value = serde_json::from_str(&run.stdout).expect("nft prints JSON");
    listing["nftables"]
        .as_array()
        .expect("an nftables array")
        .iter()
        .filter_map(|item| {
            let counter = item.get("counter")?;
            let name = counter["name"].as_str()?.to_owned();
            Some((name, counter["packets"].as_u64()?))
        })
        .collect()
}

/// The count of `side`'s counter `what`.
fn count(counters: &[(String, u64)], side: Side, what: &str) -> u64 {
    let name = format!("{}_{what}", side_name(side));
    counters
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, packets)| *packets)
        .unwrap_or_else(|| panic!("no counter {name} in {counters:?}"))
}

fn probe_command(topology: &Topology, probe: &CProgram, side: Side) -> Command {
    match side {
        Side::Kernel => topology.netns.command(probe.program()),
        Side::Netcon => isolated_netcon_command(topology.socket(), probe.program()),
    }
}

/// Checks one side's counts: the SYN (or SYN-ACK) carried CS4, packets went out with CS4 and,
/// when `changed`, with CS1, and none with another DSCP. With `ttl`, all carried the TTL.
fn assert_marked(counters: &[(String, u64)], side: Side, changed: bool, ttl: bool) {
    let name = side_name(side);
    assert!(
        count(counters, side, "syn_cs4") >= 1,
        "{name}: the handshake went out without CS4: {counters:?}"
    );
    assert!(
        count(counters, side, "cs4") >= 3,
        "{name}: too few CS4 packets: {counters:?}"
    );
    if changed {
        assert!(
            count(counters, side, "cs1") >= 1,
            "{name}: no CS1 packet after IP_TOS changed: {counters:?}"
        );
    }
    assert_eq!(
        count(counters, side, "other_dscp"),
        0,
        "{name}: packets with another DSCP: {counters:?}"
    );
    if !ttl {
        return;
    }
    assert!(
        count(counters, side, "ttl") >= 3,
        "{name}: too few packets with TTL {TTL}: {counters:?}"
    );
    assert_eq!(
        count(counters, side, "other_ttl"),
        0,
        "{name}: packets with another TTL: {counters:?}"
    );
}

#[test]
fn tos_and_ttl_mark_outgoing_connection() {
    if !require_root("tos_and_ttl_mark_outgoing_connection") {
        return;
    }
    let topology = Topology::start("nciptos");
    let probe = CProgram::compile("ip-options-probe", PROBE_SOURCE);
    let tap = topology.dataplane.options().tap.clone();
    let ports = [(Side::Kernel, 7960), (Side::Netcon, 7961)];
    load_nft_rules(&topology.netns, &counting_rules(&tap, ports, "dport", "ip"));

    let mut outputs = Vec::new();
    for (side, port) in ports {
        let port = port.to_string();
        let mut peer = topology.netns.command(PYTHON);
        peer.args(["-c", SINK_PEER, PEER_IP, &port]);
        let mut peer = Process::spawn(peer, "sink peer");
        wait_for_output(&mut peer, "listening", Duration::from_secs(15));
        let mut command = probe_command(&topology, &probe, side);
        command.args(["client", PEER_IP, &port, TOS_CS4, TTL, TOS_CS1]);
        let run = run_bounded(command, &format!("client probe ({side:?})"), RUN_TIMEOUT);
        let peer = peer.finish(RUN_TIMEOUT);
        assert!(
            run.succeeded() && peer.succeeded(),
            "{side:?} run failed\nprobe:\n{run}\npeer:\n{peer}"
        );
        outputs.push(run.stdout);
    }
    assert_eq!(
        outputs[0], outputs[1],
        "IP_TOS and IP_TTL read back differently through netcon"
    );

    let counters = read_counters(&topology);
    println!("packet counts: {counters:?}");
    assert_marked(&counters, Side::Kernel, true, true);
    assert_marked(&counters, Side::Netcon, true, true);
}

#[test]
fn tos_and_ttl_mark_accepted_connection() {
    if !require_root("tos_and_ttl_mark_accepted_connection") {
        return;
    }
    let topology = Topology::start("nciptosl");
    let probe = CProgram::compile("ip-options-probe", PROBE_SOURCE);
    let tap = topology.dataplane.options().tap.clone();
    let ports = [(Side::Kernel, 7970), (Side::Netcon, 7971)];
    load_nft_rules(&topology.netns, &counting_rules(&tap, ports, "sport", "ip"));

    let mut outputs = Vec::new();
    for (side, port) in ports {
        let port = port.to_string();
        let mut command = probe_command(&topology, &probe, side);
        command.args(["server", &port, TOS_CS4, TTL]);
        let mut server = Process::spawn(command, &format!("server probe ({side:?})"));
        wait_for_output(&mut server, "listening", Duration::from_secs(15));
        let address = match side {
            Side::Kernel => PEER_IP,
            Side::Netcon => NETCON_IP,
        };
        let mut peer = topology.netns.command(PYTHON);
        peer.args(["-c", SOURCE_PEER, address, &port]);
        let peer = run_bounded(peer, "source peer", RUN_TIMEOUT);
        let run = server.finish(RUN_TIMEOUT);
        assert!(
            run.succeeded() && peer.succeeded(),
            "{side:?} run failed\nprobe:\n{run}\npeer:\n{peer}"
        );
        outputs.push(run.stdout);
    }
    assert_eq!(
        outputs[0], outputs[1],
        "an accepted connection inherits other options through netcon"
    );

    let counters = read_counters(&topology);
    println!("packet counts: {counters:?}");
    assert_marked(&counters, Side::Kernel, false, true);
    assert_marked(&counters, Side::Netcon, false, true);
}

#[test]
fn tclass_marks_ipv6_connection() {
    if !require_root("tclass_marks_ipv6_connection") {
        return;
    }
    let topology = Topology::start("nciptc6");
    let probe = CProgram::compile("ip-options-probe", PROBE_SOURCE);
    let tap = topology.dataplane.options().tap.clone();
    let ports = [(Side::Kernel, 7980), (Side::Netcon, 7981)];
    load_nft_rules(
        &topology.netns,
        &counting_rules(&tap, ports, "dport", "ip6"),
    );

    let mut outputs = Vec::new();
    for (side, port) in ports {
        let port = port.to_string();
        let mut peer = topology.netns.command(PYTHON);
        peer.args(["-c", SINK_PEER, PEER_IP6, &port]);
        let mut peer = Process::spawn(peer, "sink peer on IPv6");
        wait_for_output(&mut peer, "listening", Duration::from_secs(15));
        let mut command = probe_command(&topology, &probe, side);
        command.args(["client6", PEER_IP6, &port, TOS_CS4, TOS_CS1]);
        let run = run_bounded(command, &format!("client6 probe ({side:?})"), RUN_TIMEOUT);
        let peer = peer.finish(RUN_TIMEOUT);
        assert!(
            run.succeeded() && peer.succeeded(),
            "{side:?} run failed\nprobe:\n{run}\npeer:\n{peer}"
        );
        outputs.push(run.stdout);
    }
    assert_eq!(
        outputs[0], outputs[1],
        "IPV6_TCLASS reads back differently through netcon"
    );

    let counters = read_counters(&topology);
    println!("packet counts: {counters:?}");
    assert_marked(&counters, Side::Kernel, true, false);
    assert_marked(&counters, Side::Netcon, true, false);
}
