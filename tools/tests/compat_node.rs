//! Node.js through netcon: an `http` server (libuv accepts with accept4) answering a client in
//! the namespace, and a `fetch` client (undici) reaching a server in the namespace. Both
//! sides are the same two small scripts.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{
    NETCON_IP, PEER_IP, Process, Topology, package_version, record_compat, run_bounded,
    wait_for_listener, wait_for_netcon_listener,
};
use netcon_tools::topology::{netcon_command, require_root};

const NODE: &str = "/usr/bin/node";
const PORT: u16 = 8083;
const PAGES: usize = 50;

/// Serves 5 MiB of random bytes at /large and a short text naming the path elsewhere, and
/// prints `listening SHA256` with the digest of the large body once it listens.
const SERVER: &str = r#"
const http = require('http');
const crypto = require('crypto');
const body = crypto.randomBytes(5 * 1024 * 1024);
const server = http.createServer((req, res) => {
  if (req.url === '/large') { res.end(body); return; }
  res.end('node answered ' + req.url + '\n');
});
server.listen(Number(process.argv[2]), process.argv[3], () => {
  console.log('listening ' + crypto.createHash('sha256').update(body).digest('hex'));
});
"#;

/// Fetches /large and prints `large SHA256`, then fetches PAGES pages and prints how many
/// had the expected text.
const CLIENT: &str = r#"
const crypto = require('crypto');
const [base, pages] = [process.argv[2], Number(process.argv[3])];
(async () => {
  const large = Buffer.from(await (await fetch(base + '/large')).arrayBuffer());
  console.log('large ' + crypto.createHash('sha256').update(large).digest('hex'));
  let ok = 0;
  for (let i = 0; i < pages; i++) {
    const text = await (await fetch(base + '/page' + i)).text();
    if (text === 'node answered /page' + i + '\n') ok++;
  }
  console.log('pages ' + ok);
})().catch((error) => { console.error(error); process.exit(1); });
"#;

/// Writes both scripts into `dir`.
fn write_scripts(dir: &Path) {
    std::fs::write(dir.join("server.js"), SERVER).expect("cannot write server.js");
    std::fs::write(dir.join("client.js"), CLIENT).expect("cannot write client.js");
}

/// Returns the digest after `listening ` in the server's output, waiting up to 15 s.
fn served_digest(server: &mut Process) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (stdout, stderr) = server.output_so_far();
        if let Some(digest) = stdout.lines().find_map(|l| l.strip_prefix("listening ")) {
            return digest.to_owned();
        }
        assert!(
            server.try_wait().is_none() && std::time::Instant::now() < deadline,
            "the node server did not start\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Asserts that the client printed the server's digest and got every page.
fn assert_client_output(stdout: &str, digest: &str) {
    assert!(
        stdout.lines().any(|line| line == format!("large {digest}")),
        "the fetched body differs from the served one\n{stdout}"
    );
    assert!(
        stdout.lines().any(|line| line == format!("pages {PAGES}")),
        "some pages were wrong or missing\n{stdout}"
    );
}

#[test]
fn node_http_server_through_netcon() {
    if !require_root("node_http_server_through_netcon") {
        return;
    }
    let version = package_version("nodejs");
    let topology = Topology::start("ncnodesrv");
    let dir = tempfile::tempdir().expect("cannot create a temporary directory");
    write_scripts(dir.path());

    let mut server = netcon_command(topology.socket(), NODE);
    server
        .arg(dir.path().join("server.js"))
        .args([&PORT.to_string(), "0.0.0.0"]);
    let mut server = Process::spawn(server, "node server through netcon");
    let digest = served_digest(&mut server);
    wait_for_netcon_listener(&topology.netns, PORT, &mut server, Duration::from_secs(15));

    let mut client = topology.netns.command(NODE);
    client
        .arg(dir.path().join("client.js"))
        .args([&format!("http://{NETCON_IP}:{PORT}"), &PAGES.to_string()]);
    let run = run_bounded(
        client,
        "node client in the namespace",
        Duration::from_secs(60),
    );
    run.assert_success();
    assert_client_output(&run.stdout, &digest);
    record_compat("node", &version, "server", "pass");
}

#[test]
fn node_fetch_client_through_netcon() {
    if !require_root("node_fetch_client_through_netcon") {
        return;
    }
    let version = package_version("nodejs");
    let topology = Topology::start("ncnodecli");
    let dir = tempfile::tempdir().expect("cannot create a temporary directory");
    write_scripts(dir.path());

    let mut server = topology.netns.command(NODE);
    server
        .arg(dir.path().join("server.js"))
        .args([&PORT.to_string(), PEER_IP]);
    let mut server = Process::spawn(server, "node server in the namespace");
    let digest = served_digest(&mut server);
    wait_for_listener(&topology.netns, PORT, &mut server);

    let mut client = netcon_command(topology.socket(), NODE);
    client
        .arg(dir.path().join("client.js"))
        .args([&format!("http://{PEER_IP}:{PORT}"), &PAGES.to_string()]);
    let run = run_bounded(
        client,
        "node client through netcon",
        Duration::from_secs(60),
    );
    run.assert_success();
    assert_client_output(&run.stdout, &digest);
    record_compat("node", &version, "client", "pass");
}
