//! The stack answers ICMP echo on its address, with one worker and with several (echo requests
//! stay on the worker that read them).

mod common;

use std::time::Duration;

use common::{NETCON_IP, Topology, run_bounded};
use netcon_tools::topology::require_root;

fn ping_answers(workers: usize, prefix: &str) {
    let topology = Topology::start_with(prefix, |options| options.workers = workers);
    let mut ping = topology.netns.command("ping");
    ping.args(["-c", "5", "-i", "0.2", "-W", "2", NETCON_IP]);
    let run = run_bounded(ping, "ping from the namespace", Duration::from_secs(20));
    run.assert_success();
    assert!(run.stdout.contains("5 received"), "{run}");
}

#[test]
fn ping_one_worker() {
    if !require_root("ping_one_worker") {
        return;
    }
    ping_answers(1, "ncping");
}

#[test]
fn ping_two_workers() {
    if !require_root("ping_two_workers") {
        return;
    }
    ping_answers(2, "ncping2");
}
