//! Redis 7 through netcon: redis-server with its default `bind * -::*` (the IPv6 part must
//! fail without stopping the server) under redis-benchmark from the namespace, and redis-cli
//! through netcon against a redis-server in the namespace.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{
    NETCON_IP, PEER_IP, Process, Topology, package_version, record_compat, run_bounded,
    wait_for_listener, wait_for_netcon_listener,
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

    let (stdout, _) = server.output_so_far();
    assert!(
        stdout.contains("Ready to accept connections"),
        "redis-server did not report that it is ready\n{stdout}"
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
