//! lighttpd through netcon: a static file, sent with sendfile, downloaded whole by curl and
//! served under wrk from the namespace.

mod common;

use std::time::Duration;

use common::{
    NETCON_IP, Process, Topology, package_version, record_compat, run_bounded, run_wrk,
    sha256_file, shared_temp_dir, wait_for_netcon_listener, write_random_file,
};
use netcon_tools::topology::{netcon_command, require_root};

const LIGHTTPD: &str = "/usr/sbin/lighttpd";
const PORT: u16 = 8082;
const FILE_LEN: u64 = 4 * 1024 * 1024;
const WRK_SECONDS: u32 = 5;
const WRK_CONNECTIONS: u32 = 20;

#[test]
fn lighttpd_serves_static_file_under_wrk() {
    if !require_root("lighttpd_serves_static_file_under_wrk") {
        return;
    }
    let version = package_version("lighttpd");
    let topology = Topology::start("nclighttpd");
    let dir = shared_temp_dir();
    let root = dir.path().join("htdocs");
    std::fs::create_dir(&root).expect("cannot create the document root");
    std::fs::write(
        root.join("page.html"),
        "served by lighttpd through netcon\n".repeat(40),
    )
    .expect("cannot write page.html");
    write_random_file(&root.join("large.bin"), FILE_LEN);
    let config = dir.path().join("lighttpd.conf");
    std::fs::write(
        &config,
        format!(
            "server.document-root = \"{}\"\nserver.port = {PORT}\nserver.bind = \"0.0.0.0\"\n\
             server.username = \"www-data\"\nserver.groupname = \"www-data\"\n",
            root.display()
        ),
    )
    .expect("cannot write lighttpd.conf");

    let mut lighttpd = netcon_command(topology.socket(), LIGHTTPD);
    lighttpd.args(["-D", "-f"]).arg(&config);
    let mut lighttpd = Process::spawn(lighttpd, "lighttpd through netcon");
    wait_for_netcon_listener(
        &topology.netns,
        PORT,
        &mut lighttpd,
        Duration::from_secs(15),
    );

    let fetched = dir.path().join("fetched.bin");
    let mut curl = topology.netns.command("curl");
    curl.args(["-sS", "--fail", "--max-time", "60", "-o"])
        .arg(&fetched)
        .arg(format!("http://{NETCON_IP}:{PORT}/large.bin"));
    run_bounded(curl, "curl in the namespace", Duration::from_secs(70)).assert_success();
    assert_eq!(
        sha256_file(&fetched),
        sha256_file(&root.join("large.bin")),
        "the downloaded file differs from the served one"
    );

    let url = format!("http://{NETCON_IP}:{PORT}/page.html");
    let report = run_wrk(&topology.netns, &url, WRK_SECONDS, WRK_CONNECTIONS);
    report.assert_clean("");
    assert!(
        lighttpd.try_wait().is_none(),
        "lighttpd exited during the run"
    );
    record_compat("lighttpd", &version, "server", "pass");
}
