//! curl through netcon as an HTTP client of a server in the namespace: one large download
//! compared by SHA-256, then many requests in one run, each on a connection of its own
//! (Python's http.server speaks HTTP/1.0 and closes after every answer).

mod common;

use std::time::Duration;

use common::{
    PEER_IP, PYTHON, Process, Topology, package_version, record_compat, run_bounded, sha256_file,
    wait_for_listener, write_random_file,
};
use netcon_tools::topology::{netcon_command, require_root};

const PORT: u16 = 8090;
const LARGE_FILE_LEN: u64 = 32 * 1024 * 1024;
const REQUESTS: usize = 300;

#[test]
fn curl_through_netcon_downloads_and_repeats() {
    if !require_root("curl_through_netcon_downloads_and_repeats") {
        return;
    }
    let version = package_version("curl");
    let topology = Topology::start("nccurl");
    let served = tempfile::tempdir().expect("cannot create a temporary directory");
    write_random_file(&served.path().join("large.bin"), LARGE_FILE_LEN);
    std::fs::write(served.path().join("small.txt"), "small answer\n").expect("cannot write");

    let mut server = topology.netns.command(PYTHON);
    server
        .args(["-m", "http.server", "--bind", PEER_IP, &PORT.to_string()])
        .arg("--directory")
        .arg(served.path());
    let mut server = Process::spawn(server, "http.server in the namespace");
    wait_for_listener(&topology.netns, PORT, &mut server);

    let received = tempfile::tempdir().expect("cannot create a temporary directory");
    let large = received.path().join("large.bin");
    let mut curl = netcon_command(topology.socket(), "curl");
    curl.args(["-sS", "--fail", "--max-time", "120", "-o"])
        .arg(&large)
        .arg(format!("http://{PEER_IP}:{PORT}/large.bin"));
    run_bounded(curl, "curl download", Duration::from_secs(130)).assert_success();
    assert_eq!(
        sha256_file(&large),
        sha256_file(&served.path().join("large.bin")),
        "the downloaded file differs from the served one"
    );

    // One curl run with a URL range: the query string makes every URL distinct.
    let mut curl = netcon_command(topology.socket(), "curl");
    curl.args([
        "-sS",
        "--fail",
        "--max-time",
        "120",
        "-w",
        "%{http_code}\\n",
        "-o",
    ])
    .arg(received.path().join("small_#1.txt"))
    .arg(format!("http://{PEER_IP}:{PORT}/small.txt?[1-{REQUESTS}]"));
    let run = run_bounded(curl, "curl with many requests", Duration::from_secs(130));
    run.assert_success();
    let codes: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        codes.len(),
        REQUESTS,
        "curl reported {} answers",
        codes.len()
    );
    assert!(
        codes.iter().all(|code| *code == "200"),
        "curl saw statuses other than 200: {codes:?}"
    );
    for index in [1, REQUESTS / 2, REQUESTS] {
        let body = std::fs::read_to_string(received.path().join(format!("small_{index}.txt")))
            .unwrap_or_else(|err| panic!("answer {index} is missing: {err}"));
        assert_eq!(body, "small answer\n", "answer {index} differs");
    }
    record_compat("curl", &version, "client", "pass");
}
