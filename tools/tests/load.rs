//! Load through netcon, bounded in count and time and kept inside the test's namespace: many
//! parallel checksummed transfers, a client with 200 threads, transfers under packet loss, and
//! wrk against an HTTP server. The long runs (wrk for 30 s, 1 GiB each way, 40,000 connections)
//! run only with `NETCON_LONG_TESTS=1`.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{
    NETCON_IP, PEER_IP, PYTHON, Process, Topology, describe_fds, load_nft_rules,
    long_tests_enabled, run_bounded, wait_for_output, wait_until,
};
use netcon_tools::topology::{netcon_command, require_root};

/// The load server: an asyncio server whose header lines are described at its top.
const LOAD_SERVER: &str = include_str!("programs/load_server.py");

/// The load client: threads of checked transfers or echoes, described at its top.
const LOAD_CLIENT: &str = include_str!("programs/load_client.py");

/// A keep-alive HTTP/1.1 server on HOST:PORT that returns 448 bytes for every GET, with the
/// listen backlog of 5 that Python's socketserver uses.
const HTTP_SERVER: &str = r#"
import http.server, sys

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = b"netcon load test\n" * 28
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer.daemon_threads = True
server = http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Handler)
print("listening", flush=True)
server.serve_forever()
"#;

/// Where a server or client of a load run lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    /// Inside the namespace, on the kernel's TCP.
    Namespace,
    /// Outside the namespace, through netcon.
    Netcon,
}

impl Side {
    fn command(self, topology: &Topology, program: &str) -> Command {
        match self {
            Side::Namespace => topology.netns.command(program),
            Side::Netcon => netcon_command(topology.socket(), program),
        }
    }

    /// Returns the address a server on this side is reached at.
    fn address(self) -> &'static str {
        match self {
            Side::Namespace => PEER_IP,
            Side::Netcon => NETCON_IP,
        }
    }

    /// Returns the other side, where the client of a server on this side runs.
    fn other(self) -> Side {
        match self {
            Side::Namespace => Side::Netcon,
            Side::Netcon => Side::Namespace,
        }
    }
}

/// Starts LOAD_SERVER on `side` at `port` and waits until it listens.
fn start_load_server(topology: &Topology, side: Side, port: u16) -> Process {
    let bind = match side {
        Side::Namespace => PEER_IP,
        Side::Netcon => "0.0.0.0",
    };
    let mut command = side.command(topology, PYTHON);
    command.args(["-c", LOAD_SERVER, bind, &port.to_string()]);
    let mut server = Process::spawn(command, &format!("load server ({side:?})"));
    wait_for_output(&mut server, "listening", Duration::from_secs(15));
    server
}

/// Runs LOAD_CLIENT on the side opposite `server_side` against its server, with `args`
/// after the mode, and panics unless every connection succeeded.
fn run_load_client(
    topology: &Topology,
    server_side: Side,
    port: u16,
    args: &[&str],
    timeout: Duration,
) {
    let mut command = server_side.other().command(topology, PYTHON);
    command
        .args(["-c", LOAD_CLIENT, server_side.address(), &port.to_string()])
        .args(args);
    let label = format!("load client {}", args.join(" "));
    let run = run_bounded(command, &label, timeout);
    assert!(run.succeeded(), "{label} failed\n{run}");
    println!("{}", run.stdout.trim());
}

#[test]
fn sixty_four_parallel_transfers() {
    if !require_root("sixty_four_parallel_transfers") {
        return;
    }
    let topology = Topology::start("ncload");
    // 64 connections at once, 1 MiB each, in both directions and with netcon on either end.
    for (server_side, port) in [(Side::Namespace, 8100), (Side::Netcon, 8101)] {
        let _server = start_load_server(&topology, server_side, port);
        for direction in ["up", "down"] {
            let args = ["transfer", direction, "64", "1048576"];
            run_load_client(
                &topology,
                server_side,
                port,
                &args,
                Duration::from_secs(120),
            );
        }
    }
}

#[test]
fn two_hundred_thread_client() {
    if !require_root("two_hundred_thread_client") {
        return;
    }
    let topology = Topology::start("ncload");
    let baseline = topology.dataplane.fd_count();
    let _server = start_load_server(&topology, Side::Namespace, 8200);
    // 200 threads, each connecting, echoing 4 KiB and closing 5 times.
    let args = ["echo", "200", "5"];
    run_load_client(
        &topology,
        Side::Namespace,
        8200,
        &args,
        Duration::from_secs(120),
    );
    assert_fds_return(&topology, baseline);
}

/// Panics unless netcon-dp's fd count drops back to `baseline` within 10 s.
fn assert_fds_return(topology: &Topology, baseline: usize) {
    let settled = wait_until(Duration::from_secs(10), || {
        topology.dataplane.fd_count() <= baseline
    });
    assert!(
        settled,
        "netcon-dp holds {} fds, {baseline} before the run\n{}",
        topology.dataplane.fd_count(),
        describe_fds(topology.dataplane.pid())
    );
}

/// Loads rules into the namespace that drop `percent`% of the frames crossing the TAP in each
/// direction. The kernel here has no netem qdisc, so nftables' random numbers stand in for it.
fn drop_frames(topology: &Topology, percent: u32) {
    let tap = &topology.dataplane.options().tap;
    let rules = format!(
        "table inet ncload_loss {{\n\
         \x20 chain input {{\n\
         \x20   type filter hook input priority 0;\n\
         \x20   iifname \"{tap}\" numgen random mod 100 < {percent} drop\n\
         \x20 }}\n\
         \x20 chain output {{\n\
         \x20   type filter hook output priority 0;\n\
         \x20   oifname \"{tap}\" numgen random mod 100 < {percent} drop\n\
         \x20 }}\n\
         }}\n"
    );
    load_nft_rules(&topology.netns, &rules);
}

/// Sends and receives 4 MiB through netcon with `percent`% loss each way, in both roles.
fn check_transfers_under_loss(percent: u32, base_port: u16) {
    let topology = Topology::start("ncloss");
    drop_frames(&topology, percent);
    let servers = [(Side::Namespace, base_port), (Side::Netcon, base_port + 1)];
    for (server_side, port) in servers {
        let _server = start_load_server(&topology, server_side, port);
        for direction in ["up", "down"] {
            let args = ["transfer", direction, "1", "4194304"];
            run_load_client(
                &topology,
                server_side,
                port,
                &args,
                Duration::from_secs(150),
            );
        }
    }
}

#[test]
fn transfers_survive_one_percent_loss() {
    if !require_root("transfers_survive_one_percent_loss") {
        return;
    }
    check_transfers_under_loss(1, 8300);
}

#[test]
fn transfers_survive_five_percent_loss() {
    if !require_root("transfers_survive_five_percent_loss") {
        return;
    }
    check_transfers_under_loss(5, 8310);
}

/// Runs wrk inside the namespace, or through netcon, for `seconds` against the HTTP server on
/// `server_side`, and panics when wrk reports any error or non-2xx response.
fn run_wrk(topology: &Topology, server_side: Side, port: u16, seconds: u32) {
    let bind = match server_side {
        Side::Namespace => PEER_IP,
        Side::Netcon => "0.0.0.0",
    };
    let mut server_command = server_side.command(topology, PYTHON);
    server_command.args(["-c", HTTP_SERVER, bind, &port.to_string()]);
    let mut server = Process::spawn(server_command, "HTTP server");
    wait_for_output(&mut server, "listening", Duration::from_secs(15));

    let url = format!("http://{}:{port}/", server_side.address());
    let mut wrk = server_side.other().command(topology, "wrk");
    wrk.args([
        "-t2",
        "-c16",
        &format!("-d{seconds}s"),
        "--timeout",
        "10s",
        &url,
    ]);
    let label = format!("wrk for {seconds} s against {url}");
    let run = run_bounded(wrk, &label, Duration::from_secs(u64::from(seconds) + 60));
    assert!(run.succeeded(), "{label} failed\n{run}");
    println!("{}", run.stdout.trim());
    assert!(
        !run.stdout.contains("Socket errors"),
        "{label} reported socket errors\n{run}"
    );
    assert!(
        !run.stdout.contains("Non-2xx"),
        "{label} got error responses\n{run}"
    );
    assert!(
        run.stdout.contains(" requests in "),
        "{label} printed no request count\n{run}"
    );
}

#[test]
fn wrk_through_netcon_client() {
    if !require_root("wrk_through_netcon_client") {
        return;
    }
    let topology = Topology::start("ncwrk");
    run_wrk(&topology, Side::Namespace, 8400, 5);
}

#[test]
fn wrk_against_netcon_server() {
    if !require_root("wrk_against_netcon_server") {
        return;
    }
    let topology = Topology::start("ncwrk");
    run_wrk(&topology, Side::Netcon, 8401, 5);
}

#[test]
fn wrk_thirty_seconds() {
    if !require_root("wrk_thirty_seconds") || !long_tests_enabled("wrk_thirty_seconds") {
        return;
    }
    let topology = Topology::start("ncwrk");
    run_wrk(&topology, Side::Netcon, 8410, 30);
}

#[test]
fn gigabyte_transfer_checksum() {
    if !require_root("gigabyte_transfer_checksum")
        || !long_tests_enabled("gigabyte_transfer_checksum")
    {
        return;
    }
    let topology = Topology::start("ncload");
    let _server = start_load_server(&topology, Side::Namespace, 8500);
    for direction in ["up", "down"] {
        let args = ["transfer", direction, "1", "1073741824"];
        run_load_client(
            &topology,
            Side::Namespace,
            8500,
            &args,
            Duration::from_secs(600),
        );
    }
}

/// Connections for the long open-and-close run: more than the 28,232 ports of Linux's default
/// ephemeral range (32768 to 60999), which netcon-dp also uses, so every local port is taken
/// again after its connection closed.
const LONG_CYCLES: &str = "40000";

#[test]
fn many_connections_reuse_ports() {
    if !require_root("many_connections_reuse_ports")
        || !long_tests_enabled("many_connections_reuse_ports")
    {
        return;
    }
    let topology = Topology::start("ncload");
    let baseline = topology.dataplane.fd_count();
    let _server = start_load_server(&topology, Side::Namespace, 8600);
    let args = ["cycles", LONG_CYCLES, "8"];
    run_load_client(
        &topology,
        Side::Namespace,
        8600,
        &args,
        Duration::from_secs(900),
    );
    assert_fds_return(&topology, baseline);
}
