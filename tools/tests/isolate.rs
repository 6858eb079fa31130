//! `netcon-ctl run --isolate`: the program runs in a network namespace that holds only
//! loopback (up) and reaches the peer through netcon, as root and as an unprivileged user, who
//! keeps their uid and is known to netcon-dp by it. Sockets that escape the preload (a Go
//! program, raw system calls, a statically linked program) reach nothing there: not the peer,
//! and not a server on the host's loopback, which the same program reaches without netcon.

mod common;

use std::process::Command;
use std::time::Duration;

use common::loopback::LoopbackServer;
use common::{
    CProgram, Finished, PEER_IP, PYTHON, Process, Topology, run_bounded, start_socat_echo,
    wait_for_listener,
};
use netcon_tools::topology::{binary_path, isolated_netcon_command, netcon_command, require_root};

/// The unprivileged user the tests switch to.
const NOBODY_UID: u32 = 65534;

/// Exit status of `netcon-ctl run` for a rejected program.
const EXIT_CANNOT_EXECUTE: i32 = 126;

/// Exit status of `netcon-ctl run` when it fails itself.
const EXIT_FAILED: i32 = 125;

/// Prints the uid and gid, the names of the namespace's interfaces (from /proc/self/net/dev,
/// as the preload lists netcon's interfaces to `if_nameindex`), whether `lo` is up, the reply
/// of the echo server at ADDRESS PORT through a socket made with libc (so through netcon), and
/// whether the program may change its uid.
const NAMESPACE_PROBE: &str = r#"
import errno, fcntl, os, socket, struct, sys
print("ids", os.getuid(), os.getgid())
with open("/proc/self/net/dev") as table:
    print("interfaces", [line.split(":")[0].strip() for line in list(table)[2:]])
# SIOCGIFFLAGS on a Unix socket, which the preload leaves alone.
probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
flags = struct.unpack_from("H", fcntl.ioctl(probe, 0x8913, struct.pack("16s24x", b"lo")), 16)[0]
print("lo", "up" if flags & 1 else "down")
conn = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
conn.sendall(b"ping")
print("echo", conn.recv(16).decode())
try:
    os.setuid(0 if os.getuid() else 1)
    print("setuid allowed")
except OSError as error:
    print("setuid", errno.errorcode[error.errno])
"#;

/// Opens a netcon socket as root (the preload's control connection with it), switches to
/// uid and gid 65534 as servers do after start-up, then talks to the echo server.
const SWITCH_USER_PROBE: &str = r#"
import os, socket, sys
first = socket.socket()
os.setgroups([])
os.setgid(65534)
os.setuid(65534)
conn = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
conn.sendall(b"ping")
print("as", os.getuid(), "echo", conn.recv(16).decode())
"#;

/// A Python program's socket() as an unprivileged user: the errno name, or "created".
const SOCKET_PROBE: &str = r#"
import errno, socket
try:
    socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    print("created")
except OSError as error:
    print(errno.errorcode[error.errno])
"#;

/// Returns `command` run as uid and gid 65534 without supplementary groups.
fn as_nobody(command: Command) -> Command {
    let mut wrapped = Command::new("setpriv");
    wrapped
        .arg(format!("--reuid={NOBODY_UID}"))
        .arg(format!("--regid={NOBODY_UID}"))
        .arg("--clear-groups")
        .arg(command.get_program())
        .args(command.get_args());
    wrapped
}

/// Returns the line of `run`'s stdout that starts with `key`, without the key.
fn field<'a>(run: &'a Finished, key: &str) -> &'a str {
    run.stdout
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key:?} line\n{run}"))
}

#[test]
fn isolated_root_program_reaches_peer() {
    if !require_root("isolated_root_program_reaches_peer") {
        return;
    }
    let topology = Topology::start("nciso");
    let _echo = start_socat_echo(&topology, 9500);

    let mut command = isolated_netcon_command(topology.socket(), PYTHON);
    command.args(["-c", NAMESPACE_PROBE, PEER_IP, "9500"]);
    let run = run_bounded(command, "probe isolated as root", Duration::from_secs(30));
    run.assert_success();
    assert_eq!(field(&run, "ids"), "0 0", "root lost its ids\n{run}");
    assert_eq!(field(&run, "interfaces"), "['lo']", "{run}");
    assert_eq!(field(&run, "lo"), "up", "{run}");
    assert_eq!(field(&run, "setuid"), "allowed", "{run}");
    assert_eq!(field(&run, "echo"), "ping", "{run}");
}

#[test]
fn isolated_unprivileged_program_keeps_uid() {
    if !require_root("isolated_unprivileged_program_keeps_uid") {
        return;
    }
    let topology = Topology::start_with("nciso", |options| {
        let allowed = ["--allow-uid", "0", "--allow-uid", &NOBODY_UID.to_string()];
        options.extra_args.extend(allowed.map(String::from));
    });
    let _echo = start_socat_echo(&topology, 9501);

    let mut probe = isolated_netcon_command(topology.socket(), PYTHON);
    probe.args(["-c", NAMESPACE_PROBE, PEER_IP, "9501"]);
    let run = run_bounded(as_nobody(probe), "probe isolated", Duration::from_secs(30));
    run.assert_success();
    let ids = format!("{NOBODY_UID} {NOBODY_UID}");
    assert_eq!(field(&run, "ids"), ids, "the uid changed\n{run}");
    assert_eq!(field(&run, "interfaces"), "['lo']", "{run}");
    assert_eq!(field(&run, "lo"), "up", "{run}");
    assert_eq!(field(&run, "echo"), "ping", "{run}");
    // The program can no more change its uid than without --isolate, but the error differs:
    // only the user's own uid is mapped, and setuid to an unmapped uid fails with EINVAL.
    assert_eq!(field(&run, "setuid"), "EINVAL", "{run}");

    let mut reference = netcon_command(topology.socket(), PYTHON);
    reference.args(["-c", NAMESPACE_PROBE, PEER_IP, "9501"]);
    let reference = run_bounded(as_nobody(reference), "probe", Duration::from_secs(30));
    reference.assert_success();
    assert_eq!(field(&reference, "setuid"), "EPERM", "{reference}");
    for key in ["ids", "echo"] {
        assert_eq!(field(&run, key), field(&reference, key), "{key}");
    }
}

#[test]
fn isolated_uid_checked_by_dataplane() {
    if !require_root("isolated_uid_checked_by_dataplane") {
        return;
    }
    // SO_PEERCRED translates the uid of a process in a user namespace to netcon-dp's
    // namespace, so an isolated program is let in or turned away exactly as the same program
    // without --isolate, never under an id of the inner namespace.
    let denied = Topology::start("nciso");
    let allowed = Topology::start_with("nciso", |options| {
        let allow = ["--allow-uid".to_owned(), NOBODY_UID.to_string()];
        options.extra_args.extend(allow);
    });
    for (topology, expected) in [(&denied, None), (&allowed, Some("created"))] {
        let mut outcomes = Vec::new();
        for isolate in [true, false] {
            let mut command = match isolate {
                true => isolated_netcon_command(topology.socket(), PYTHON),
                false => netcon_command(topology.socket(), PYTHON),
            };
            command.args(["-c", SOCKET_PROBE]);
            let run = run_bounded(as_nobody(command), "socket probe", Duration::from_secs(30));
            match expected {
                Some(line) => {
                    run.assert_success();
                    assert_eq!(run.stdout.trim(), line, "{run}");
                }
                None => {
                    assert_eq!(run.code(), Some(EXIT_FAILED), "{run}");
                    assert!(
                        run.stderr
                            .contains("permission denied on netcon-dp's control socket"),
                        "netcon-ctl did not say why it failed\n{run}"
                    );
                }
            }
            outcomes.push((run.code(), run.stdout));
        }
        assert_eq!(outcomes[0], outcomes[1], "--isolate changed the outcome");
    }
}

#[test]
fn isolated_server_switches_user() {
    if !require_root("isolated_server_switches_user") {
        return;
    }
    let topology = Topology::start("nciso");
    let _echo = start_socat_echo(&topology, 9502);
    let mut outputs = Vec::new();
    for isolate in [true, false] {
        let mut command = match isolate {
            true => isolated_netcon_command(topology.socket(), PYTHON),
            false => netcon_command(topology.socket(), PYTHON),
        };
        command.args(["-c", SWITCH_USER_PROBE, PEER_IP, "9502"]);
        let run = run_bounded(command, "user switch probe", Duration::from_secs(30));
        run.assert_success();
        outputs.push(run.stdout);
    }
    assert_eq!(outputs[0], format!("as {NOBODY_UID} echo ping\n"));
    assert_eq!(outputs[0], outputs[1], "--isolate changed the outcome");
}

#[test]
fn go_program_rejected_without_isolate() {
    if !require_root("go_program_rejected_without_isolate") {
        return;
    }
    let topology = Topology::start("nciso");
    let mut hey = netcon_command(topology.socket(), "hey");
    hey.args(["-n", "1", "-c", "1", &format!("http://{PEER_IP}:9503/")]);
    let run = run_bounded(hey, "hey through netcon", Duration::from_secs(30));
    assert_eq!(run.code(), Some(EXIT_CANNOT_EXECUTE), "{run}");
    for needle in ["/usr/bin/hey is a Go program", "`netcon-ctl run --isolate`"] {
        assert!(
            run.stderr.contains(needle),
            "stderr lacks {needle:?}\n{run}"
        );
    }
    assert!(run.stdout.is_empty(), "hey ran\n{run}");
}

#[test]
fn go_program_has_no_network_isolated() {
    if !require_root("go_program_has_no_network_isolated") {
        return;
    }
    let topology = Topology::start("nciso");
    let mut peer_command = topology.netns.command(PYTHON);
    peer_command.args(["-m", "http.server", "--bind", PEER_IP, "9504"]);
    let mut peer = Process::spawn(peer_command, "http.server in the namespace");
    wait_for_listener(&topology.netns, 9504, &mut peer);
    let host = LoopbackServer::start();
    let host_url = format!("http://127.0.0.1:{}/", host.port);

    // Without netcon, hey reaches the test's server on the host's loopback.
    let mut direct = Command::new("hey");
    direct.args(["-n", "1", "-c", "1", "-t", "5", &host_url]);
    let direct = run_bounded(direct, "hey without netcon", Duration::from_secs(30));
    direct.assert_success();
    assert!(direct.stdout.contains("[200]\t1 responses"), "{direct}");
    assert_eq!(host.accepted(), 1);

    let peer_url = format!("http://{PEER_IP}:9504/");
    let cases = [
        (&host_url, "connect: connection refused"),
        (&peer_url, "connect: network is unreachable"),
    ];
    for (url, error) in cases {
        let mut hey = isolated_netcon_command(topology.socket(), "hey");
        hey.args(["-n", "1", "-c", "1", "-t", "5", url]);
        let run = run_bounded(hey, "hey isolated", Duration::from_secs(30));
        run.assert_success();
        let warning = "/usr/bin/hey is a Go program, so its sockets bypass netcon";
        assert!(run.stderr.contains(warning), "no warning\n{run}");
        assert!(run.stdout.contains(error), "expected {error:?}\n{run}");
        assert!(!run.stdout.contains("[200]"), "hey got a response\n{run}");
    }
    assert_eq!(host.accepted(), 1, "the host's server was reached");
    let (_, peer_log) = peer.output_so_far();
    assert!(
        !peer_log.contains("GET /"),
        "the peer was reached\n{peer_log}"
    );
}

#[test]
fn raw_syscall_socket_has_no_network() {
    if !require_root("raw_syscall_socket_has_no_network") {
        return;
    }
    let topology = Topology::start("nciso");
    let _echo = start_socat_echo(&topology, 9505);
    let host = LoopbackServer::start();
    let host_port = host.port.to_string();
    let probe = CProgram::compile("escape_probe", include_str!("programs/escape_probe.c"));

    // The raw system calls bypass the preload: through netcon without --isolate, the socket
    // is a kernel socket that reaches the host's loopback.
    let mut escaping = netcon_command(topology.socket(), probe.program());
    escaping.args(["127.0.0.1", &host_port]);
    let run = run_bounded(
        escaping,
        "raw probe through netcon",
        Duration::from_secs(30),
    );
    run.assert_success();
    assert_eq!(run.stdout.trim(), "connected", "{run}");
    assert_eq!(host.accepted(), 1);

    let cases = [
        ("127.0.0.1", host_port.as_str(), "raw", "ECONNREFUSED"),
        (PEER_IP, "9505", "raw", "ENETUNREACH"),
        // libc's connect goes through netcon, which reaches the peer.
        (PEER_IP, "9505", "libc", "connected"),
    ];
    for (address, port, calls, expected) in cases {
        let mut command = isolated_netcon_command(topology.socket(), probe.program());
        command.args([address, port, calls]);
        let run = run_bounded(command, "probe isolated", Duration::from_secs(30));
        run.assert_success();
        assert_eq!(run.stdout.trim(), expected, "{calls} {address}\n{run}");
    }
    assert_eq!(host.accepted(), 1, "the host's server was reached");
}

#[test]
fn static_program_runs_isolated() {
    if !require_root("static_program_runs_isolated") {
        return;
    }
    let topology = Topology::start("nciso");
    let _echo = start_socat_echo(&topology, 9506);
    let probe = CProgram::compile_with(
        "escape_probe_static",
        include_str!("programs/escape_probe.c"),
        &["-static"],
    );

    let mut rejected = netcon_command(topology.socket(), probe.program());
    rejected.args([PEER_IP, "9506", "libc"]);
    let run = run_bounded(rejected, "static probe", Duration::from_secs(30));
    assert_eq!(run.code(), Some(EXIT_CANNOT_EXECUTE), "{run}");
    for needle in ["is statically linked", "`netcon-ctl run --isolate`"] {
        assert!(
            run.stderr.contains(needle),
            "stderr lacks {needle:?}\n{run}"
        );
    }
    assert!(run.stdout.is_empty(), "the program ran\n{run}");

    // No preload loads into it, so netcon-ctl does not wait for its ready line.
    let mut isolated = isolated_netcon_command(topology.socket(), probe.program());
    isolated.args([PEER_IP, "9506", "libc"]);
    let run = run_bounded(isolated, "static probe isolated", Duration::from_secs(30));
    run.assert_success();
    assert_eq!(run.stdout.trim(), "ENETUNREACH", "{run}");
    assert!(
        run.stderr
            .contains("is statically linked, so its sockets bypass netcon")
    );
}

#[test]
fn isolate_help_describes_namespace() {
    let help = Command::new(binary_path("netcon-ctl"))
        .args(["run", "--help"])
        .output()
        .expect("cannot run netcon-ctl run --help");
    let text = String::from_utf8_lossy(&help.stdout);
    for needle in [
        "--isolate",
        "holds only loopback",
        "user namespace",
        "SO_PEERCRED",
        "Go programs",
    ] {
        assert!(text.contains(needle), "--help lacks {needle:?}\n{text}");
    }
}

/// Listens on 127.0.0.1, connects to itself and prints the greeting, then tries 127.0.0.1
/// PORT and prints "refused" or "connected".
const SELF_LOOPBACK_PROBE: &str = r#"
import socket, sys
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(1)
client = socket.create_connection(srv.getsockname(), timeout=10)
conn, _ = srv.accept()
conn.sendall(b"hello over lo")
print(client.recv(64).decode())
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
    print("connected")
except ConnectionRefusedError:
    print("refused")
"#;

#[test]
fn kernel_loopback_stays_in_namespace() {
    if !require_root("kernel_loopback_stays_in_namespace") {
        return;
    }
    // With --loopback kernel, loopback sockets become kernel sockets of the program's own
    // namespace: its `lo`, which --isolate brings up, and not the host's.
    let topology = Topology::start_with("nciso", |options| {
        options
            .extra_args
            .extend(["--loopback".to_owned(), "kernel".to_owned()]);
    });
    let host = LoopbackServer::start();
    let mut command = isolated_netcon_command(topology.socket(), PYTHON);
    command.args(["-c", SELF_LOOPBACK_PROBE, &host.port.to_string()]);
    let run = run_bounded(command, "loopback probe isolated", Duration::from_secs(30));
    run.assert_success();
    assert_eq!(run.stdout, "hello over lo\nrefused\n", "{run}");
    assert_eq!(host.accepted(), 0, "the host's server was reached");
}

/// Runs `netcon-ctl run --isolate -- true` under the limits helper in `mode` and returns the
/// run.
fn isolate_under_limits(topology: &Topology, helper: &CProgram, mode: &str) -> Finished {
    let mut command = Command::new(helper.path());
    command
        .arg(mode)
        .arg(binary_path("netcon-ctl"))
        .args(["run", "--isolate", "--socket"])
        .arg(topology.socket())
        .args(["--", "true"]);
    run_bounded(
        command,
        &format!("run --isolate ({mode})"),
        Duration::from_secs(30),
    )
}

/// Asserts that `run` failed as netcon-ctl does (status 125) with one error line holding
/// every one of `needles`.
fn assert_isolate_error(run: &Finished, needles: &[&str]) {
    assert_eq!(run.code(), Some(EXIT_FAILED), "{run}");
    let error = run
        .stderr
        .lines()
        .find(|line| line.starts_with("netcon-ctl: error: cannot isolate true: "))
        .unwrap_or_else(|| panic!("no error line\n{run}"));
    for needle in needles {
        assert!(error.contains(needle), "the error lacks {needle:?}\n{run}");
    }
}

#[test]
fn user_namespaces_forbidden_explained() {
    if !require_root("user_namespaces_forbidden_explained") {
        return;
    }
    // The helper runs netcon-ctl as nobody, which must get past the control socket's access
    // check to reach the namespace set-up.
    let topology = Topology::start_with("nciso", |options| {
        let allow = ["--allow-uid".to_owned(), NOBODY_UID.to_string()];
        options.extra_args.extend(allow);
    });
    let helper = CProgram::compile("userns_limits", include_str!("programs/userns_limits.c"));

    // user.max_user_namespaces is 0 in the caller's user namespace.
    let run = isolate_under_limits(&topology, &helper, "limit");
    assert_isolate_error(
        &run,
        &[
            "/proc/sys/user/max_user_namespaces is 0",
            "run netcon-ctl as root",
            "`sysctl -w user.max_user_namespaces=10000`",
        ],
    );

    // A seccomp filter fails unshare for an unprivileged user, then for root.
    let run = isolate_under_limits(&topology, &helper, "seccomp");
    assert_isolate_error(
        &run,
        &[
            "creating the namespaces (unshare) failed",
            "Operation not permitted",
            "seccomp",
        ],
    );
    let run = isolate_under_limits(&topology, &helper, "seccomp-root");
    assert_isolate_error(
        &run,
        &[
            "creating the namespaces (unshare) failed",
            "runs as root",
            "CAP_SYS_ADMIN",
        ],
    );
}
