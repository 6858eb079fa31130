//! dig through netcon against dnsmasq in the namespace: DNS over UDP with a real client and a
//! real server. dnsmasq serves only the records given on its command line (`--no-resolv`,
//! `--no-hosts`, no configuration file), so no query ever leaves the namespace. dig 9.18
//! sends with sendmmsg through `syscall()` (libuv 1.44) and receives with recvmsg.

mod common;

use std::time::Duration;

use common::{
    Finished, PEER_IP, Process, Topology, package_version, record_compat, run_bounded,
    wait_for_listener,
};
use netcon_tools::topology::{netcon_command, require_root};

/// The port dnsmasq serves on, and one where nothing listens.
const DNS_PORT: u16 = 5353;
const CLOSED_PORT: u16 = 5354;

/// The records dnsmasq serves.
const NAME: &str = "probe.netcon.test";
const ADDRESS: &str = "10.77.3.4";
const TEXT: &str = "netcon carries UDP";

/// A name with this many A records, whose answer (about 1 KB) is longer than the 512 bytes of
/// a DNS message without EDNS.
const MANY_NAME: &str = "many.netcon.test";
const MANY_COUNT: usize = 60;

/// How long one dig run may take: it tries once and waits 5 s for an answer.
const DIG_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts dnsmasq in the namespace on `PEER_IP:DNS_PORT` with the test's records.
fn start_dnsmasq(topology: &Topology) -> Process {
    let mut command = topology.netns.command("dnsmasq");
    command.args([
        "--no-daemon",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--pid-file=",
        "--log-facility=-",
        "--bind-interfaces",
    ]);
    command.arg(format!("--listen-address={PEER_IP}"));
    command.arg(format!("--port={DNS_PORT}"));
    command.arg(format!("--host-record={NAME},{ADDRESS}"));
    command.arg(format!("--txt-record={NAME},{TEXT}"));
    for index in 0..MANY_COUNT {
        command.arg(format!("--host-record={MANY_NAME},10.77.4.{}", index + 1));
    }
    let mut server = Process::spawn(command, "dnsmasq in the namespace");
    // dnsmasq serves TCP on the same port, which `ss` can see once it is ready.
    wait_for_listener(&topology.netns, DNS_PORT, &mut server);
    server
}

/// Runs dig with `args` through netcon.
fn dig_through_netcon(topology: &Topology, args: &[&str]) -> Finished {
    let mut command = netcon_command(topology.socket(), "dig");
    command.args(args);
    run_bounded(command, "dig through netcon", DIG_TIMEOUT)
}

/// Runs dig with `args` inside the namespace, on the kernel's UDP.
fn dig_on_kernel(topology: &Topology, args: &[&str]) -> Finished {
    let mut command = topology.netns.command("dig");
    command.args(args);
    run_bounded(command, "dig in the namespace", DIG_TIMEOUT)
}

/// Returns the server argument and the options every query uses.
fn query_args(port: u16) -> Vec<String> {
    vec![
        format!("@{PEER_IP}"),
        "-p".to_owned(),
        port.to_string(),
        "+tries=1".to_owned(),
        "+time=5".to_owned(),
    ]
}

/// Resolves the test's names through netcon and checks every answer.
fn resolve_through_netcon(workers: usize, prefix: &str) {
    let topology = Topology::start_with(prefix, |options| options.workers = workers);
    let _dnsmasq = start_dnsmasq(&topology);
    let base = query_args(DNS_PORT);
    let with = |extra: &[&str]| -> Vec<String> {
        let mut args = base.clone();
        args.extend(extra.iter().map(|arg| arg.to_string()));
        args
    };
    let run = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        dig_through_netcon(&topology, &args)
    };

    let full = run(with(&[NAME, "A"]));
    full.assert_success();
    assert!(
        full.stdout
            .contains(&format!("{NAME}.\t0\tIN\tA\t{ADDRESS}")),
        "dig did not get the A record\n{full}"
    );
    assert!(
        full.stdout
            .contains(&format!("SERVER: {PEER_IP}#{DNS_PORT}({PEER_IP}) (UDP)")),
        "dig did not ask over UDP\n{full}"
    );

    let text = run(with(&[NAME, "TXT", "+short"]));
    text.assert_success();
    assert_eq!(text.stdout.trim(), format!("\"{TEXT}\""), "{text}");

    let many = run(with(&[MANY_NAME, "A", "+short"]));
    many.assert_success();
    let mut addresses: Vec<&str> = many.stdout.lines().collect();
    addresses.sort_by_key(|address| {
        address
            .rsplit('.')
            .next()
            .and_then(|n| n.parse::<u32>().ok())
    });
    let expected: Vec<String> = (1..=MANY_COUNT).map(|n| format!("10.77.4.{n}")).collect();
    assert_eq!(addresses, expected, "the long answer is incomplete\n{many}");

    // A name dnsmasq has no record for, with no upstream to ask: the status must match the
    // kernel run's.
    let status = |run: &Finished| {
        run.stdout
            .lines()
            .find_map(|line| line.split("status: ").nth(1))
            .map(|rest| rest.split(',').next().unwrap_or(rest).to_owned())
    };
    let unknown: Vec<String> = with(&["unknown.netcon.test", "A"]);
    let unknown: Vec<&str> = unknown.iter().map(String::as_str).collect();
    let kernel = dig_on_kernel(&topology, &unknown);
    let netcon = dig_through_netcon(&topology, &unknown);
    assert!(
        status(&kernel).is_some(),
        "the kernel run got no answer\n{kernel}"
    );
    assert_eq!(
        status(&netcon),
        status(&kernel),
        "\nkernel:\n{kernel}\nnetcon:\n{netcon}"
    );
    println!("dig through netcon ({workers} workers): A, TXT, {MANY_COUNT} A records, status");

    if workers == 1 {
        record_compat(
            "dig (bind9-dnsutils)",
            &package_version("bind9-dnsutils"),
            "client",
            &format!("A, TXT and a {MANY_COUNT}-record answer from dnsmasq over UDP"),
        );
    }
}

#[test]
fn dig_resolves_one_worker() {
    if !require_root("dig_resolves_one_worker") {
        return;
    }
    resolve_through_netcon(1, "ncdig1");
}

#[test]
fn dig_resolves_two_workers() {
    if !require_root("dig_resolves_two_workers") {
        return;
    }
    resolve_through_netcon(2, "ncdig2");
}

#[test]
fn dig_reports_closed_port() {
    if !require_root("dig_reports_closed_port") {
        return;
    }
    let topology = Topology::start("ncdigcl");
    let args = query_args(CLOSED_PORT);
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.push(NAME);
    let kernel = dig_on_kernel(&topology, &args);
    let netcon = dig_through_netcon(&topology, &args);
    let refused = format!("communications error to {PEER_IP}#{CLOSED_PORT}: connection refused");
    assert!(
        kernel.stdout.contains(&refused),
        "the kernel run was not refused\n{kernel}"
    );
    assert!(
        netcon.stdout.contains(&refused),
        "dig through netcon did not see ECONNREFUSED\n{netcon}"
    );
    assert_eq!(
        netcon.code(),
        kernel.code(),
        "exit codes differ\n{kernel}\n{netcon}"
    );
}
