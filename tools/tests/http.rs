//! HTTP through netcon: curl downloading from a server in the namespace, and a server run
//! through netcon serving curl in the namespace. Both move a 10 MiB random file and compare
//! SHA-256 digests.

mod common;

use std::time::Duration;

use common::download::{assert_same_file, curl_args};
use common::{
    NETCON_IP, PEER_IP, PYTHON, Process, Topology, run_bounded, run_until_ready, wait_for_listener,
    write_random_file,
};
use netcon_tools::topology::{netcon_command, require_root};

const FILE_LEN: u64 = 10 * 1024 * 1024;
const PORT: u16 = 8080;

/// curl's exit codes for "could not connect" and "operation timed out".
const CURL_COULDNT_CONNECT: i32 = 7;
const CURL_TIMED_OUT: i32 = 28;

#[test]
fn curl_downloads_from_namespace_server() {
    if !require_root("curl_downloads_from_namespace_server") {
        return;
    }
    let topology = Topology::start("nchttp");
    let served_dir = tempfile::tempdir().expect("cannot create a temporary directory");
    let served = served_dir.path().join("file.bin");
    write_random_file(&served, FILE_LEN);
    let download_dir = tempfile::tempdir().expect("cannot create a temporary directory");
    let received = download_dir.path().join("download.bin");

    let mut server_command = topology.netns.command(PYTHON);
    server_command
        .args([
            "-m",
            "http.server",
            "--bind",
            PEER_IP,
            &PORT.to_string(),
            "--directory",
        ])
        .arg(served_dir.path());
    let mut server = Process::spawn(server_command, "http.server in the namespace");
    wait_for_listener(&topology.netns, PORT, &mut server);

    let url = format!("http://{PEER_IP}:{PORT}/file.bin");
    let mut curl = netcon_command(topology.socket(), "curl");
    curl.args(curl_args(&[], &url, &received));
    let download = run_bounded(curl, "curl through netcon", Duration::from_secs(90));

    assert_same_file(&served, &received, FILE_LEN, &download, &server);
}

#[test]
fn server_through_netcon_serves_curl() {
    if !require_root("server_through_netcon_serves_curl") {
        return;
    }
    let topology = Topology::start("nchttp");
    let served_dir = tempfile::tempdir().expect("cannot create a temporary directory");
    let served = served_dir.path().join("file.bin");
    write_random_file(&served, FILE_LEN);
    let download_dir = tempfile::tempdir().expect("cannot create a temporary directory");
    let received = download_dir.path().join("download.bin");

    let mut server_command = netcon_command(topology.socket(), PYTHON);
    server_command
        .args([
            "-m",
            "http.server",
            "--bind",
            "0.0.0.0",
            &PORT.to_string(),
            "--directory",
        ])
        .arg(served_dir.path());
    let mut server = Process::spawn(server_command, "http.server through netcon");

    // The listener lives in netcon's stack, where `ss` cannot see it, so curl is retried
    // until it connects.
    let url = format!("http://{NETCON_IP}:{PORT}/file.bin");
    let download = run_until_ready(
        || {
            let mut curl = topology.netns.command("curl");
            curl.args(curl_args(&[], &url, &received));
            curl
        },
        "curl in the namespace",
        Duration::from_secs(90),
        Duration::from_secs(15),
        |run| matches!(run.code(), Some(CURL_COULDNT_CONNECT | CURL_TIMED_OUT)),
    );

    if let Some(status) = server.try_wait() {
        let (stdout, stderr) = server.output_so_far();
        panic!(
            "http.server through netcon exited ({status})\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
    }
    assert_same_file(&served, &received, FILE_LEN, &download, &server);
}
