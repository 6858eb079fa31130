//! PostgreSQL 15 through netcon: the server under psql and `pgbench -T 10` from the
//! namespace, and psql and pgbench through netcon against a server in the namespace.
//!
//! PostgreSQL refuses to run as root, so the server runs as the `postgres` user that the
//! Debian package creates, and netcon-dp allows that uid besides root.

mod common;

use std::os::unix::fs::chown;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{
    Finished, NETCON_IP, PEER_IP, Process, Topology, package_version, record_compat, run_bounded,
    user_id, wait_for_listener, wait_for_netcon_listener,
};
use netcon_tools::topology::{binary_path, require_root};

const BIN: &str = "/usr/lib/postgresql/15/bin";
const PORT: u16 = 5432;
const PGBENCH_SECONDS: u32 = 10;

/// A database cluster in a temporary directory owned by `postgres`.
struct Cluster {
    dir: tempfile::TempDir,
    uid: u32,
}

impl Cluster {
    /// Runs initdb (trust authentication, for every IPv4 client too).
    fn create() -> Cluster {
        let uid = user_id("postgres");
        let dir = tempfile::tempdir().expect("cannot create a temporary directory");
        chown(dir.path(), Some(uid), None).expect("cannot give the directory to postgres");
        let mut initdb = as_postgres(&format!("{BIN}/initdb"));
        initdb
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(dir.path().join("data"));
        run_bounded(initdb, "initdb", Duration::from_secs(120)).assert_success();
        let hba = dir.path().join("data/pg_hba.conf");
        let mut rules = std::fs::read_to_string(&hba).expect("cannot read pg_hba.conf");
        rules.push_str("host all all 0.0.0.0/0 trust\n");
        std::fs::write(&hba, rules).expect("cannot write pg_hba.conf");
        Cluster { dir, uid }
    }

    /// Returns the server's arguments: listen on `listen`, no fsync, the Unix socket in the
    /// cluster's directory.
    fn server_args(&self, listen: &str) -> Vec<String> {
        let settings = [
            format!("listen_addresses={listen}"),
            format!("port={PORT}"),
            format!("unix_socket_directories={}", self.dir.path().display()),
            "fsync=off".to_owned(),
        ];
        let mut args = vec!["-D".to_owned(), self.data().display().to_string()];
        for setting in settings {
            args.push("-c".to_owned());
            args.push(setting);
        }
        args
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

/// Returns a command that runs `program` as the `postgres` user.
fn as_postgres(program: &str) -> Command {
    let mut command = Command::new("runuser");
    command.args(["-u", "postgres", "--", program]);
    command
}

/// Creates a table, inserts 1000 rows and reads their sum back, with the psql command that
/// `psql` returns.
fn assert_psql_round_trip(mut psql: impl FnMut() -> Command, host: &str) {
    let statements = "CREATE TABLE netcon_rows (n integer); \
                      INSERT INTO netcon_rows SELECT generate_series(1, 1000); \
                      SELECT sum(n) FROM netcon_rows;";
    let mut command = psql();
    command.args([
        "-h",
        host,
        "-p",
        &PORT.to_string(),
        "-U",
        "postgres",
        "-At",
        "-c",
    ]);
    command.arg(statements);
    let run = run_bounded(command, "psql", Duration::from_secs(30));
    run.assert_success();
    assert_eq!(run.stdout.trim().lines().last(), Some("500500"), "{run}");
}

/// Initialises pgbench's tables, runs it for 10 s on 4 connections and asserts that no
/// transaction failed.
fn assert_pgbench_clean(mut pgbench: impl FnMut() -> Command, host: &str) {
    let connection = ["-h", host, "-p", &PORT.to_string(), "-U", "postgres"];
    let mut init = pgbench();
    init.args(connection)
        .args(["-i", "-s", "1", "-q", "postgres"]);
    run_bounded(init, "pgbench -i", Duration::from_secs(120)).assert_success();

    let mut run = pgbench();
    run.args(connection).args([
        "-T",
        &PGBENCH_SECONDS.to_string(),
        "-c",
        "4",
        "-j",
        "2",
        "postgres",
    ]);
    let run = run_bounded(run, "pgbench", Duration::from_secs(90));
    run.assert_success();
    assert_no_failed_transactions(&run);
}

fn assert_no_failed_transactions(run: &Finished) {
    let processed = field(&run.stdout, "number of transactions actually processed:");
    let failed = field(&run.stdout, "number of failed transactions:");
    assert!(
        processed.is_some_and(|n| n.parse::<u64>().is_ok_and(|n| n > 0)),
        "pgbench processed no transaction\n{run}"
    );
    assert_eq!(
        failed,
        Some("0"),
        "pgbench reported failed transactions\n{run}"
    );
}

/// Returns the first word after `label` on the line that starts with it.
fn field<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|line| line.trim().strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
}

/// Returns `netcon-ctl run --socket SOCKET -- PROGRAM`, run as root or as `postgres`.
fn netcon_as(user: Option<&str>, socket: &Path, program: &str) -> Command {
    let ctl = binary_path("netcon-ctl");
    let mut command = match user {
        Some(user) => {
            let mut command = Command::new("runuser");
            command.args(["-u", user, "--"]).arg(ctl);
            command
        }
        None => Command::new(ctl),
    };
    command
        .arg("run")
        .arg("--socket")
        .arg(socket)
        .arg("--")
        .arg(program);
    command
}

#[test]
fn postgres_through_netcon_serves_psql_and_pgbench() {
    if !require_root("postgres_through_netcon_serves_psql_and_pgbench") {
        return;
    }
    let version = package_version("postgresql-15");
    let cluster = Cluster::create();
    let uid = cluster.uid.to_string();
    let topology = Topology::start_with("ncpg", |options| {
        options
            .extra_args
            .extend(["--allow-uid", "0", "--allow-uid", &uid].map(String::from));
    });

    let mut server = netcon_as(
        Some("postgres"),
        topology.socket(),
        &format!("{BIN}/postgres"),
    );
    server.args(cluster.server_args("*"));
    let mut server = Process::spawn(server, "postgres through netcon");
    wait_for_netcon_listener(&topology.netns, PORT, &mut server, Duration::from_secs(30));

    let netns = &topology.netns;
    assert_psql_round_trip(|| netns.command("psql"), NETCON_IP);
    assert_pgbench_clean(|| netns.command("pgbench"), NETCON_IP);
    record_compat("postgresql", &version, "server", "pass");
}

#[test]
fn psql_and_pgbench_through_netcon_reach_namespace_postgres() {
    if !require_root("psql_and_pgbench_through_netcon_reach_namespace_postgres") {
        return;
    }
    let version = package_version("postgresql-client-15");
    let cluster = Cluster::create();
    let topology = Topology::start("ncpgcli");

    let mut server = topology.netns.command("runuser");
    server
        .args(["-u", "postgres", "--", &format!("{BIN}/postgres")])
        .args(cluster.server_args(PEER_IP));
    let mut server = Process::spawn(server, "postgres in the namespace");
    wait_for_listener(&topology.netns, PORT, &mut server);

    let socket = topology.socket();
    assert_psql_round_trip(|| netcon_as(None, socket, "psql"), PEER_IP);
    assert_pgbench_clean(|| netcon_as(None, socket, "pgbench"), PEER_IP);
    record_compat("psql, pgbench", &version, "client", "pass");
}
