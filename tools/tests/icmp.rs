//! The stack replies to ICMP echo on its IPv4 address and to ICMPv6 echo on its IPv6 addresses,
//! with one worker and with several (echo requests stay on the worker that read them, neighbour
//! discovery reaches every worker).

mod common;

use std::time::Duration;

use common::{NETCON_IP, NETCON_IP6, Topology, run_bounded};
use netcon_tools::topology::require_root;

/// Pings `target` five times from the namespace (`ping -6` for an IPv6 address) and checks
/// that every echo came back.
fn ping_answers(workers: usize, target: &str, prefix: &str) {
    let topology = Topology::start_with(prefix, |options| options.workers = workers);
    let mut ping = topology.netns.command("ping");
    if target.contains(':') {
        ping.arg("-6");
    }
    ping.args(["-c", "5", "-i", "0.2", "-W", "2", target]);
    let run = run_bounded(ping, "ping from the namespace", Duration::from_secs(20));
    run.assert_success();
    assert!(run.stdout.contains("5 received"), "{run}");
}

#[test]
fn ping_one_worker() {
    if !require_root("ping_one_worker") {
        return;
    }
    ping_answers(1, NETCON_IP, "ncping");
}

#[test]
fn ping_two_workers() {
    if !require_root("ping_two_workers") {
        return;
    }
    ping_answers(2, NETCON_IP, "ncping2");
}

#[test]
fn ping6_one_worker() {
    if !require_root("ping6_one_worker") {
        return;
    }
    ping_answers(1, NETCON_IP6, "ncping6");
}

#[test]
fn ping6_two_workers() {
    if !require_root("ping6_two_workers") {
        return;
    }
    ping_answers(2, NETCON_IP6, "ncping62");
}

#[test]
fn ping6_link_local() {
    if !require_root("ping6_link_local") {
        return;
    }
    // The stack's link-local address comes from its MAC, which the namespace learns from the
    // neighbour advertisement sent for its first solicitation of fd00::2.
    let topology = Topology::start("ncping6ll");
    let tap = topology.dataplane.options().tap.clone();
    let mut ping = topology.netns.command("ping");
    ping.args(["-6", "-c", "2", "-i", "0.2", "-W", "2", NETCON_IP6]);
    run_bounded(ping, "ping from the namespace", Duration::from_secs(20)).assert_success();

    let mut neighbours = topology.netns.command("ip");
    neighbours.args(["-6", "neigh", "show", "dev", &tap]);
    let listing = run_bounded(neighbours, "ip -6 neigh", Duration::from_secs(10));
    listing.assert_success();
    let mac = listing
        .stdout
        .lines()
        .find(|line| line.starts_with(NETCON_IP6))
        .and_then(|line| line.split_whitespace().nth(2))
        .unwrap_or_else(|| panic!("no neighbour entry for {NETCON_IP6}\n{listing}"))
        .to_owned();
    let link_local = link_local_of(&mac);

    let mut ping = topology.netns.command("ping");
    ping.args([
        "-6",
        "-c",
        "3",
        "-i",
        "0.2",
        "-W",
        "2",
        "-I",
        &tap,
        &link_local,
    ]);
    let run = run_bounded(
        ping,
        "ping to the link-local address",
        Duration::from_secs(20),
    );
    run.assert_success();
    assert!(run.stdout.contains("3 received"), "{run}");
}

/// Returns the link-local address (modified EUI-64) of the MAC `aa:bb:cc:dd:ee:ff`.
fn link_local_of(mac: &str) -> String {
    let bytes: Vec<u8> = mac
        .split(':')
        .map(|part| u8::from_str_radix(part, 16).expect("a MAC in hex"))
        .collect();
    assert_eq!(bytes.len(), 6, "{mac} is not a MAC");
    let id = [
        bytes[0] ^ 0x02,
        bytes[1],
        bytes[2],
        0xff,
        0xfe,
        bytes[3],
        bytes[4],
        bytes[5],
    ];
    let groups: Vec<String> = id
        .chunks(2)
        .map(|pair| format!("{:x}", u16::from_be_bytes([pair[0], pair[1]])))
        .collect();
    format!("fe80::{}", groups.join(":"))
}
