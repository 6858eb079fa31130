//! MariaDB through netcon: the server (started as root, it switches to the mysql user) with
//! the mariadb client in the namespace, and the client through netcon against a server in the
//! namespace. Each side creates a table, inserts 10,000 rows and reads them all back.

mod common;

use std::os::unix::fs::chown;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{
    NETCON_IP, PEER_IP, Process, Topology, package_version, record_compat, run_bounded, user_id,
    wait_for_listener, wait_for_netcon_listener,
};
use netcon_tools::topology::{netcon_command, require_root};

const MARIADBD: &str = "/usr/sbin/mariadbd";
const PORT: u16 = 3306;
const ROWS: usize = 10_000;
const ROWS_PER_INSERT: usize = 100;

/// A data directory owned by mysql, initialised by mariadb-install-db.
struct DataDir {
    dir: tempfile::TempDir,
}

impl DataDir {
    fn create() -> DataDir {
        let dir = tempfile::tempdir().expect("cannot create a temporary directory");
        chown(dir.path(), Some(user_id("mysql")), None)
            .expect("cannot give the directory to mysql");
        // Temporary tables go to a directory of this server's own, not to the shared /tmp,
        // where another server of the same test run works at the same time.
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp).expect("cannot create the server's temporary directory");
        chown(&tmp, Some(user_id("mysql")), None).expect("cannot give the directory to mysql");
        let mut install = Command::new("mariadb-install-db");
        install
            .arg("--no-defaults")
            .env("TMPDIR", &tmp)
            .arg(format!("--datadir={}", dir.path().join("data").display()))
            .args([
                "--user=mysql",
                "--skip-test-db",
                "--auth-root-authentication-method=normal",
            ]);
        run_bounded(install, "mariadb-install-db", Duration::from_secs(180)).assert_success();
        DataDir { dir }
    }

    /// Returns the server's arguments: listen on `bind`, no grant tables (any client may log
    /// in as root), files in the data directory.
    fn server_args(&self, bind: &str) -> Vec<String> {
        let data = self.dir.path().join("data");
        vec![
            "--no-defaults".to_owned(),
            format!("--datadir={}", data.display()),
            "--user=mysql".to_owned(),
            format!("--bind-address={bind}"),
            format!("--port={PORT}"),
            format!("--socket={}", data.join("mariadb.sock").display()),
            format!("--pid-file={}", data.join("mariadb.pid").display()),
            format!("--tmpdir={}", self.dir.path().join("tmp").display()),
            "--skip-grant-tables".to_owned(),
            "--skip-log-bin".to_owned(),
            "--innodb-flush-log-at-trx-commit=0".to_owned(),
        ]
    }
}

/// Returns the statements that create the table and insert the rows `(n, 'row n')`.
fn insert_script() -> String {
    let mut script = String::from(
        "CREATE DATABASE netcon; USE netcon;\n\
         CREATE TABLE rows_in (n INT PRIMARY KEY, label VARCHAR(40));\n",
    );
    for first in (1..=ROWS).step_by(ROWS_PER_INSERT) {
        let values: Vec<String> = (first..first + ROWS_PER_INSERT)
            .map(|n| format!("({n},'row {n}')"))
            .collect();
        script.push_str(&format!(
            "INSERT INTO rows_in VALUES {};\n",
            values.join(",")
        ));
    }
    script
}

/// Returns the rows as `mariadb -N -B` prints them.
fn expected_rows() -> String {
    (1..=ROWS).map(|n| format!("{n}\trow {n}\n")).collect()
}

/// Runs the client that `client` returns against `host`: inserts the rows from a script
/// (the client's `source` command), then reads them all back and compares.
fn insert_and_read_back(mut client: impl FnMut() -> Command, host: &str, work: &Path) {
    let script = work.join("insert.sql");
    std::fs::write(&script, insert_script()).expect("cannot write the insert script");
    let connection = ["-h", host, "-P", &PORT.to_string(), "-u", "root"];

    let mut insert = client();
    insert
        .args(connection)
        .args(["-e", &format!("source {}", script.display())]);
    run_bounded(insert, "mariadb inserting rows", Duration::from_secs(120)).assert_success();

    let mut select = client();
    select.args(connection).args([
        "-N",
        "-B",
        "-e",
        "SELECT n, label FROM netcon.rows_in ORDER BY n",
    ]);
    let run = run_bounded(select, "mariadb reading rows", Duration::from_secs(120));
    run.assert_success();
    let lines = run.stdout.lines().count();
    assert_eq!(lines, ROWS, "read back {lines} rows");
    assert!(
        run.stdout == expected_rows(),
        "the rows read back differ from the inserted ones"
    );
}

#[test]
fn mariadb_server_through_netcon() {
    if !require_root("mariadb_server_through_netcon") {
        return;
    }
    let version = package_version("mariadb-server");
    let data = DataDir::create();
    let topology = Topology::start("ncmariadb");

    let mut server = netcon_command(topology.socket(), MARIADBD);
    server.args(data.server_args("0.0.0.0"));
    let mut server = Process::spawn(server, "mariadbd through netcon");
    wait_for_netcon_listener(&topology.netns, PORT, &mut server, Duration::from_secs(60));

    let netns = &topology.netns;
    insert_and_read_back(|| netns.command("mariadb"), NETCON_IP, data.dir.path());
    record_compat("mariadb", &version, "server", "pass");
}

#[test]
fn mariadb_client_through_netcon() {
    if !require_root("mariadb_client_through_netcon") {
        return;
    }
    let version = package_version("mariadb-client");
    let data = DataDir::create();
    let topology = Topology::start("ncmariadbcli");

    let mut server = topology.netns.command(MARIADBD);
    server.args(data.server_args(PEER_IP));
    let mut server = Process::spawn(server, "mariadbd in the namespace");
    wait_for_listener(&topology.netns, PORT, &mut server);

    let socket = topology.socket();
    insert_and_read_back(
        || netcon_command(socket, "mariadb"),
        PEER_IP,
        data.dir.path(),
    );
    record_compat("mariadb", &version, "client", "pass");
}
