//! Redis 7 through netcon. redis-server with its default `bind * -::*` (an IPv4 listener and an
//! IPV6_V6ONLY listener on one port) runs under redis-benchmark from the namespace and is
//! reached by redis-cli over both IPv4 and IPv6. redis-cli through netcon reaches a
//! redis-server in the namespace.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{
    NETCON_IP, NETCON_IP6, PEER_IP, PEER_IP6, Process, Topology, package_version, record_compat,
    run_bounded, wait_for_listener, wait_for_netcon_listener,
};
use netcon_tools::topology::{netcon_command, require_root};

const REDIS_SERVER: &str = "/usr/bin/redis-server";
const PORT: u16 = 6379;

/// The commands redis-benchmark runs, each `REQUESTS` times over `CLIENTS` connections.
const BENCHMARKS: [&str; 5] = ["SET", "GET", "INCR", "LPUSH", "LPOP"];
const REQUESTS: u32 = 20_000;
const CLIENTS: u32 = 20;

/// Writes a redis.conf for a server in the foreground that keeps nothing on disk. `bind` is
/// the address line; protected mode is off, because clients come from another host.
fn write_config(dir: &Path, bind: &str) -> std::path::PathBuf {
    let path = dir.join("redis.conf");
    let config = format!(
        "bind {bind}\nport {PORT}\nprotected-mode no\ndaemonize no\nsave \"\"\nappendonly no\n\
         dir {}\nlogfile \"\"\n",
        dir.display()
    );
    std::fs::write(&path, config).expect("cannot write redis.conf");
    path
}

#[test]
fn redis_server_through_netcon_under_benchmark() {
    if !require_root("redis_server_through_netcon_under_benchmark") {
        return;
    }
    let version = package_version("redis-server");
    let topology = Topology::start("ncredis");
    let dir = tempfile::tempdir().expect("cannot create a temporary directory");
    let config = write_config(dir.path(), "* -::*");

    let mut server = netcon_command(topology.socket(), REDIS_SERVER);
    server.arg(&config);
    let mut server = Process::spawn(server, "redis-server through netcon");
    wait_for_netcon_listener(&topology.netns, PORT, &mut server, Duration::from_secs(15));

    let mut benchmark = topology.netns.command("redis-benchmark");
    benchmark.args([
        "-h",
        NETCON_IP,
        "-p",
        &PORT.to_string(),
        "-n",
        &REQUESTS.to_string(),
        "-c",
        &CLIENTS.to_string(),
        "-t",
        &BENCHMARKS.join(",").to_lowercase(),
        "--csv",
    ]);
    let run = run_bounded(benchmark, "redis-benchmark", Duration::from_secs(120));
    run.assert_success();
    assert!(
        !run.stdout.contains("Error") && !run.stderr.contains("Error"),
        "redis-benchmark reported errors\n{run}"
    );
    for name in BENCHMARKS {
        let row = format!("\"{name}\",");
        assert!(
            run.stdout.lines().any(|line| line.starts_with(&row)),
            "redis-benchmark printed no result for {name}\n{run}"
        );
    }

    // Each family reaches its own listener; a value set over one is read over the other.
    let cli = |host: &str, args: &[&str]| {
        let mut command = topology.netns.command("redis-cli");
        command
            .args(["-h", host, "-p", &PORT.to_string()])
            .args(args);
        let label = format!("redis-cli -h {host} in the namespace");
        let run = run_bounded(command, &label, Duration::from_secs(20));
        run.assert_success();
        run.stdout.trim().to_owned()
    };
    assert_eq!(cli(NETCON_IP, &["PING"]), "PONG");
    assert_eq!(cli(NETCON_IP6, &["PING"]), "PONG");
    assert_eq!(
        cli(NETCON_IP6, &["SET", "netcon:family", "set over IPv6"]),
        "OK"
    );
    assert_eq!(cli(NETCON_IP, &["GET", "netcon:family"]), "set over IPv6");
    let over_ipv6 = cli(NETCON_IP6, &["CLIENT", "INFO"]);
    assert!(
        over_ipv6.contains(&format!("addr=[{PEER_IP6}]:"))
            && over_ipv6.contains(&format!("laddr=[{NETCON_IP6}]:{PORT}")),
        "redis-server does not report the IPv6 client's addresses: {over_ipv6}"
    );
    let over_ipv4 = cli(NETCON_IP, &["CLIENT", "INFO"]);
    assert!(
        over_ipv4.contains(&format!("addr={PEER_IP}:"))
            && over_ipv4.contains(&format!("laddr={NETCON_IP}:{PORT}")),
        "redis-server does not report the IPv4 client's addresses: {over_ipv4}"
    );

    let (stdout, _) = server.output_so_far();
    assert!(
        stdout.contains("Ready to accept connections"),
        "redis-server did not report that it is ready\n{stdout}"
    );
    assert!(
        !stdout.contains("Could not create server TCP listening socket"),
        "redis-server could not listen on one of its addresses\n{stdout}"
    );
    assert!(server.try_wait().is_none(), "redis-server exited\n{stdout}");
    record_compat("redis", &version, "server", "pass");
}

#[test]
fn redis_cli_through_netcon_reaches_namespace_server() {
    if !require_root("redis_cli_through_netcon_reaches_namespace_server") {
        return;
    }
    let version = package_version("redis-tools");
    let topology = Topology::start("ncrediscli");
    let dir = tempfile::tempdir().expect("cannot create a temporary directory");
    let config = write_config(dir.path(), PEER_IP);

    let mut server = topology.netns.command(REDIS_SERVER);
    server.arg(&config);
    let mut server = Process::spawn(server, "redis-server in the namespace");
    wait_for_listener(&topology.netns, PORT, &mut server);

    let cli = |args: &[&str]| {
        let mut command = netcon_command(topology.socket(), "redis-cli");
        command
            .args(["-h", PEER_IP, "-p", &PORT.to_string()])
            .args(args);
        let run = run_bounded(command, "redis-cli through netcon", Duration::from_secs(20));
        run.assert_success();
        run.stdout.trim().to_owned()
    };
    assert_eq!(cli(&["SET", "netcon:key", "through netcon"]), "OK");
    assert_eq!(cli(&["GET", "netcon:key"]), "through netcon");
    assert_eq!(cli(&["INCRBY", "netcon:counter", "41"]), "41");
    assert_eq!(cli(&["INCR", "netcon:counter"]), "42");
    record_compat("redis-cli", &version, "client", "pass");
}
