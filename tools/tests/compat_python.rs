//! Python 3 through netcon sending a file with `socket.sendfile` (the kernel's sendfile) and
//! through a pipe with `os.splice`, to a receiver in the namespace. Both kernel calls queue
//! large segments on a Unix socket, which once stalled the transfer after 256 KiB.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{
    PEER_IP, PYTHON, Process, Topology, package_version, record_compat, run_bounded, sha256_file,
    wait_for_listener, write_random_file,
};
use netcon_tools::topology::{netcon_command, require_root};

const PORT: u16 = 9100;
const FILE_LEN: u64 = 8 * 1024 * 1024;

/// Connects to ARGV[1]:ARGV[2] and sends the file ARGV[4] with ARGV[3] = sendfile or splice.
const SENDER: &str = r#"
import os, socket, sys
host, port, how, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
sock = socket.create_connection((host, port))
with open(path, "rb") as f:
    if how == "sendfile":
        sent = sock.sendfile(f)
    else:
        read_end, write_end = os.pipe()
        sent = 0
        while chunk := f.read(65536):
            os.write(write_end, chunk)
            moved = 0
            while moved < len(chunk):
                moved += os.splice(read_end, sock.fileno(), len(chunk) - moved)
            sent += moved
print("sent", sent)
sock.close()
"#;

/// Receives one connection on PORT in the namespace into `received` with socat.
fn start_receiver(topology: &Topology, received: &Path) -> Process {
    let mut socat = topology.netns.command("socat");
    socat
        .args(["-u", &format!("TCP-LISTEN:{PORT},bind={PEER_IP},reuseaddr")])
        .arg(format!("OPEN:{},creat,trunc", received.display()));
    let mut receiver = Process::spawn(socat, "socat in the namespace");
    wait_for_listener(&topology.netns, PORT, &mut receiver);
    receiver
}

#[test]
fn python_sendfile_and_splice_through_netcon() {
    if !require_root("python_sendfile_and_splice_through_netcon") {
        return;
    }
    let version = package_version("python3");
    let topology = Topology::start("ncpython");
    let dir = tempfile::tempdir().expect("cannot create a temporary directory");
    let source = dir.path().join("source.bin");
    write_random_file(&source, FILE_LEN);
    std::fs::write(dir.path().join("sender.py"), SENDER).expect("cannot write sender.py");

    for method in ["sendfile", "splice"] {
        let received = dir.path().join(format!("received-{method}.bin"));
        let receiver = start_receiver(&topology, &received);
        let mut sender = netcon_command(topology.socket(), PYTHON);
        sender
            .arg(dir.path().join("sender.py"))
            .args([PEER_IP, &PORT.to_string(), method])
            .arg(&source);
        let run = run_bounded(sender, &format!("python {method}"), Duration::from_secs(60));
        run.assert_success();
        assert_eq!(run.stdout.trim(), format!("sent {FILE_LEN}"), "{run}");
        let done = receiver.finish(Duration::from_secs(30));
        done.assert_success();
        assert_eq!(
            sha256_file(&received),
            sha256_file(&source),
            "the file sent with {method} differs"
        );
    }
    record_compat("python3", &version, "client, sendfile and splice", "pass");
}
