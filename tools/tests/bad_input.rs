//! Bad input and missing pieces. netcon-dp must exit non-zero with a clear message on invalid
//! options, a control socket in use, or no permission to create a TAP. The preload and
//! `netcon-ctl run` must fail loudly when no netcon-dp serves the socket.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Finished, PYTHON, Process, Topology, interface_exists, run_bounded, wait_for_output};
use netcon_tools::topology::{DataplaneOptions, Netns, binary_path, netcon_command, require_root};

/// How long a netcon-dp that should reject its input may run before it is stopped.
const REJECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs netcon-dp with `args`, expecting it to exit on its own.
fn run_dataplane(args: &[String], label: &str) -> Finished {
    let program = binary_path("netcon-dp");
    assert!(
        program.exists(),
        "{} is missing; run `cargo build --workspace`",
        program.display()
    );
    let mut command = Command::new(program);
    command.args(args);
    run_bounded(command, label, REJECT_TIMEOUT)
}

/// Asserts that netcon-dp exited with `expected_codes`, never became ready, and printed an
/// error line that contains every string in `needles` (compared without case).
fn assert_rejected(run: &Finished, expected_codes: &[i32], needles: &[&str]) {
    assert!(
        !run.timed_out,
        "{} did not exit by itself\n{run}",
        run.label
    );
    let code = run.code();
    assert!(
        code.is_some_and(|c| expected_codes.contains(&c)),
        "{} exited with {code:?}, expected one of {expected_codes:?}\n{run}",
        run.label
    );
    assert!(
        !run.stdout.contains("netcon-dp ready"),
        "{} became ready\n{run}",
        run.label
    );

    let stderr = run.stderr.to_lowercase();
    for needle in needles {
        assert!(
            stderr.contains(&needle.to_lowercase()),
            "{}'s stderr does not mention {needle:?}\n{run}",
            run.label
        );
    }
}

/// Returns `args` with the value after `option` replaced by `value`, for values that the
/// typed option fields cannot hold.
fn with_option_value(mut args: Vec<String>, option: &str, value: &str) -> Vec<String> {
    let position = args
        .iter()
        .position(|a| a == option)
        .expect("option is present");
    args[position + 1] = value.to_owned();
    args
}

/// Returns true when `netns` contains an interface named `name`.
fn interface_exists_in(netns: &Netns, name: &str) -> bool {
    let mut command = Command::new("ip");
    command.args(["-n", netns.name(), "link", "show", name]);
    run_bounded(command, "ip link show", Duration::from_secs(5)).succeeded()
}

/// A Python program that creates an AF_INET stream socket. When socket() fails, it prints the
/// errno name and exits 0. When the socket is created, it exits 3.
const INET_SOCKET_PROBE: &str = r#"
import errno, socket, sys
try:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
except OSError as err:
    print(errno.errorcode.get(err.errno, err.errno))
    sys.exit(0)
sock.close()
print("socket() succeeded")
sys.exit(3)
"#;

/// Runs [`INET_SOCKET_PROBE`] with the preload loaded and NETCON_SOCKET set to `socket`.
fn run_preloaded_probe(socket: &Path) -> Finished {
    let preload = binary_path("libnetcon_preload.so");
    assert!(
        preload.exists(),
        "{} is missing; run `cargo build --workspace`",
        preload.display()
    );
    let mut command = Command::new(PYTHON);
    command
        .args(["-c", INET_SOCKET_PROBE])
        .env("LD_PRELOAD", &preload)
        .env("NETCON_SOCKET", socket);
    run_bounded(command, "python3 with the preload", Duration::from_secs(15))
}

#[test]
fn malformed_address_rejected() {
    if !require_root("malformed_address_rejected") {
        return;
    }
    let netns = Netns::create("ncbad").expect("cannot create a namespace");
    for address in [
        "10.77.0.300/24",
        "10.77.0.2/33",
        "10.77.0.2/",
        "not-an-address",
    ] {
        let mut options = DataplaneOptions::for_netns(&netns);
        options.address = address.to_owned();
        let run = run_dataplane(&options.args(), &format!("netcon-dp --address {address}"));

        assert_rejected(&run, &[1, 2], &[address, "address"]);
        assert!(
            !interface_exists(&options.tap),
            "TAP {} left behind",
            options.tap
        );
        assert!(
            !interface_exists_in(&netns, &options.tap),
            "TAP {} left in the namespace",
            options.tap
        );
    }
}

#[test]
fn out_of_range_mtu_rejected() {
    if !require_root("out_of_range_mtu_rejected") {
        return;
    }
    let netns = Netns::create("ncbad").expect("cannot create a namespace");
    for mtu in ["65521", "1000000", "abc"] {
        let options = DataplaneOptions::for_netns(&netns);
        let args = with_option_value(options.args(), "--mtu", mtu);
        let run = run_dataplane(&args, &format!("netcon-dp --mtu {mtu}"));

        assert_rejected(&run, &[1, 2], &[mtu, "mtu"]);
        assert!(
            !interface_exists(&options.tap),
            "TAP {} left behind",
            options.tap
        );
        assert!(
            !interface_exists_in(&netns, &options.tap),
            "TAP {} left in the namespace",
            options.tap
        );
    }
}

#[test]
fn socket_in_use_rejected() {
    if !require_root("socket_in_use_rejected") {
        return;
    }
    let mut first = Topology::start("ncbad");
    let second_netns = Netns::create("ncbad").expect("cannot create a namespace");
    let mut options = DataplaneOptions::for_netns(&second_netns);
    options.socket = first.socket().to_path_buf();
    let socket = options.socket.display().to_string();

    let run = run_dataplane(&options.args(), "second netcon-dp on the same socket");

    assert_rejected(&run, &[1], &["netcon-dp: error:", &socket]);
    assert!(
        !interface_exists(&options.tap),
        "TAP {} left behind",
        options.tap
    );
    assert!(
        !interface_exists_in(&second_netns, &options.tap),
        "TAP {} left in the second namespace",
        options.tap
    );

    // The first netcon-dp must keep its socket and keep serving it.
    let exited = first
        .dataplane
        .try_wait()
        .expect("cannot poll the first netcon-dp");
    assert!(exited.is_none(), "first netcon-dp exited: {exited:?}");
    assert!(
        first.socket().exists(),
        "the first netcon-dp's socket {socket} was removed"
    );
    let mut probe = Command::new(PYTHON);
    probe
        .args([
            "-c",
            "import socket; socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()",
        ])
        .env("LD_PRELOAD", binary_path("libnetcon_preload.so"))
        .env("NETCON_SOCKET", first.socket());
    let probe = run_bounded(
        probe,
        "socket() against the first netcon-dp",
        Duration::from_secs(15),
    );
    probe.assert_success();
}

#[test]
fn socket_path_of_other_file_kept() {
    if !require_root("socket_path_of_other_file_kept") {
        return;
    }
    let dir = tempfile::tempdir().expect("cannot create a temporary directory");
    let netns = Netns::create("ncbad").expect("cannot create a namespace");

    // A regular file at the path stays as it was.
    let regular = dir.path().join("regular.txt");
    fs::write(&regular, "precious\n").expect("cannot write the regular file");
    let mut options = DataplaneOptions::for_netns(&netns);
    options.socket = regular.clone();
    let run = run_dataplane(&options.args(), "netcon-dp on a regular file");
    assert_rejected(&run, &[1], &["netcon-dp: error:", "is not a socket"]);
    let content = fs::read_to_string(&regular).expect("the regular file was removed");
    assert_eq!(content, "precious\n", "the regular file was changed");

    // So does the socket of another program that listens on it.
    let stream = dir.path().join("stream.sock");
    let listen = "import socket, sys, time\n\
                  s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n\
                  s.bind(sys.argv[1]); s.listen(1); print('ready', flush=True); time.sleep(60)";
    let mut listener = Command::new(PYTHON);
    listener.args(["-c", listen]).arg(&stream);
    let mut listener = Process::spawn(listener, "Unix stream listener");
    wait_for_output(&mut listener, "ready", Duration::from_secs(15));
    options.socket = stream.clone();
    let run = run_dataplane(&options.args(), "netcon-dp on another program's socket");
    assert_rejected(&run, &[1], &["a socket of another program"]);
    assert!(stream.exists(), "the other program's socket was removed");

    // A socket file that nothing listens on is left over from a process that died: replaced.
    drop(listener);
    assert!(stream.exists(), "the listener removed its own socket file");
    let topology = Topology::start_with("ncbad", |options| options.socket = stream.clone());
    assert!(
        topology.socket().exists(),
        "netcon-dp did not bind the path"
    );
}

#[test]
fn shared_multi_queue_tap_rejected() {
    if !require_root("shared_multi_queue_tap_rejected") {
        return;
    }
    let netns = Netns::create("ncbad").expect("cannot create a namespace");
    let dir = tempfile::tempdir().expect("cannot create a temporary directory");
    let tap = "ncshared0";
    let mut add = Command::new("ip");
    add.args([
        "-n",
        netns.name(),
        "tuntap",
        "add",
        "dev",
        tap,
        "mode",
        "tap",
    ])
    .arg("multi_queue");
    run_bounded(add, "ip tuntap add", Duration::from_secs(5)).assert_success();

    let args = |address: &str, socket: &str| -> Vec<String> {
        let socket = dir.path().join(socket).display().to_string();
        let args = ["--tap", tap, "--address", address, "--workers", "2"];
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        args.extend(["--socket".to_owned(), socket]);
        args
    };
    let mut first = netns.command(binary_path("netcon-dp").to_str().expect("UTF-8 path"));
    first.args(args("10.77.0.2/24", "first.sock"));
    let mut first = Process::spawn(first, "first netcon-dp on the TAP");
    wait_for_output(&mut first, "netcon-dp ready", Duration::from_secs(15));

    let mut second = netns.command(binary_path("netcon-dp").to_str().expect("UTF-8 path"));
    second.args(args("10.77.0.3/24", "second.sock"));
    let run = run_bounded(second, "second netcon-dp on the TAP", REJECT_TIMEOUT);
    assert_rejected(&run, &[1], &["already has 2 queue(s) attached"]);
    assert!(first.try_wait().is_none(), "the first netcon-dp exited");
}

#[test]
fn tap_without_permission_rejected() {
    if !require_root("tap_without_permission_rejected") {
        return;
    }
    // The socket directory is writable for `nobody`, so the TAP is the only thing it lacks.
    let dir = tempfile::tempdir().expect("cannot create a temporary directory");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777))
        .expect("cannot open the socket directory to nobody");
    let socket = dir.path().join("control.sock");
    let tap = format!("ncperm{:x}", std::process::id());

    let mut command = Command::new("setpriv");
    command
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(binary_path("netcon-dp"))
        .args(["--tap", &tap, "--socket"])
        .arg(&socket);
    let run = run_bounded(command, "netcon-dp as nobody", REJECT_TIMEOUT);

    assert_rejected(&run, &[1], &["netcon-dp: error:", &tap]);
    let stderr = run.stderr.to_lowercase();
    assert!(
        stderr.contains("permitted") || stderr.contains("permission"),
        "netcon-dp's error does not say that permission is missing\n{run}"
    );
    assert!(
        !interface_exists(&tap),
        "TAP {tap} exists after the failure"
    );
    assert!(
        !socket.exists(),
        "netcon-dp left its socket {} behind",
        socket.display()
    );
}

#[test]
fn preload_without_dataplane_fails_socket() {
    if !require_root("preload_without_dataplane_fails_socket") {
        return;
    }
    let dir = tempfile::tempdir().expect("cannot create a temporary directory");
    let socket = dir.path().join("missing.sock");

    let run = run_preloaded_probe(&socket);

    assert_eq!(run.code(), Some(0), "socket() did not fail\n{run}");
    assert_eq!(
        run.stdout.trim(),
        "ENETDOWN",
        "socket() failed with the wrong errno\n{run}"
    );
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one stderr line\n{run}");
    let prefix = format!("netcon: cannot reach netcon-dp at {}: ", socket.display());
    assert!(
        lines[0].starts_with(&prefix),
        "stderr line does not start with {prefix:?}\n{run}"
    );
    assert!(
        lines[0].len() > prefix.len(),
        "stderr line gives no reason\n{run}"
    );
}

#[test]
fn ctl_run_without_dataplane_refuses() {
    if !require_root("ctl_run_without_dataplane_refuses") {
        return;
    }
    let dir = tempfile::tempdir().expect("cannot create a temporary directory");
    let socket = dir.path().join("missing.sock");
    let marker = dir.path().join("program-ran");

    let mut command = netcon_command(&socket, "touch");
    command.arg(&marker);
    let run = run_bounded(
        command,
        "netcon-ctl run without netcon-dp",
        Duration::from_secs(15),
    );

    assert!(
        !run.timed_out,
        "netcon-ctl run did not exit by itself\n{run}"
    );
    assert!(!run.succeeded(), "netcon-ctl run exited 0\n{run}");
    assert!(
        !marker.exists(),
        "netcon-ctl run started the program anyway"
    );
    let socket_text = socket.display().to_string();
    assert!(
        run.stderr.contains(&socket_text),
        "stderr does not name {socket_text}\n{run}"
    );
}
