//! netcon-dp without privileges. Run as `nobody`, it attaches to a TAP that root prepared for
//! it and serves that user's programs, which reach a kernel peer and are reached from it. It
//! rejects at once, naming the fix, a missing TAP, another user's TAP, too few queues, options
//! that need CAP_NET_ADMIN and an unreadable `/dev/net/tun`.

mod common;
mod segment;

use std::time::Duration;

use common::{Finished, Process, run_bounded, sha256_file, wait_for_listener, write_random_file};
use netcon_tools::topology::{Netns, require_root};
use segment::{
    InstanceOptions, KERNEL_IP, OPEN_CLONE_DEVICE, Segment, User, UserDir, dataplane_command,
    unique_tap_name,
};

/// How long a rejected start may take.
const REJECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes each way in the transfers between a program and the kernel peer.
const TRANSFER_LEN: u64 = 8 * 1024 * 1024;

/// Runs netcon-dp as `user` in `netns` with `args` and a control socket in a directory of the
/// user's, and returns the finished run and whether the socket was left behind.
fn run_rejected(netns: &Netns, user: &User, mode: u32, args: &[&str]) -> (Finished, bool) {
    let dir = UserDir::create(user);
    let socket = dir.path().join("control.sock");
    let mut full: Vec<&str> = args.to_vec();
    full.extend([
        "--socket",
        socket.to_str().expect("temporary paths are UTF-8"),
    ]);
    let command = dataplane_command(netns, user, mode, &full);
    let run = run_bounded(command, "netcon-dp as an unprivileged user", REJECT_TIMEOUT);
    (run, socket.exists())
}

/// Asserts that the run exited with status 1, printed one error line containing every one of
/// `needles`, and left no socket.
fn assert_rejected(run: &Finished, socket_left: bool, needles: &[&str]) {
    assert_eq!(
        run.code(),
        Some(1),
        "netcon-dp did not exit with status 1\n{run}"
    );
    let error = run
        .stderr
        .lines()
        .find(|line| line.starts_with("netcon-dp: error: "))
        .unwrap_or_else(|| panic!("netcon-dp printed no error line\n{run}"));
    for needle in needles {
        assert!(error.contains(needle), "the error lacks {needle:?}\n{run}");
    }
    assert!(
        !socket_left,
        "netcon-dp left its control socket behind\n{run}"
    );
}

fn test_netns(prefix: &str) -> Netns {
    Netns::create(prefix).unwrap_or_else(|err| panic!("cannot create a namespace: {err}"))
}

/// Runs `ip -n NETNS ARGS`, panicking when it fails.
fn ip_in(netns: &Netns, args: &[&str]) {
    let status = std::process::Command::new("ip")
        .args(["-n", netns.name()])
        .args(args)
        .status()
        .expect("cannot run ip");
    assert!(
        status.success(),
        "ip {} failed in {}",
        args.join(" "),
        netns.name()
    );
}

#[test]
fn missing_tap_prints_create_command() {
    if !require_root("missing_tap_prints_create_command") {
        return;
    }
    let netns = test_netns("ncnotap");
    let nobody = User::lookup("nobody");
    let tap = unique_tap_name();

    let (run, socket_left) = run_rejected(&netns, &nobody, OPEN_CLONE_DEVICE, &["--tap", &tap]);
    let command = format!(
        "ip tuntap add dev {tap} mode tap user {} multi_queue",
        nobody.uid
    );
    assert_rejected(&run, socket_left, &[&tap, "does not exist", &command]);

    // The real /dev/net/tun, 0600 on machines without udev, must not change the message.
    let (run, socket_left) = run_rejected(&netns, &nobody, 0o600, &["--tap", &tap]);
    assert_rejected(&run, socket_left, &[&command]);
}

#[test]
fn other_users_tap_rejected() {
    if !require_root("other_users_tap_rejected") {
        return;
    }
    let netns = test_netns("ncowner");
    let (nobody, daemon) = (User::lookup("nobody"), User::lookup("daemon"));
    let tap = unique_tap_name();
    let uid = daemon.uid.to_string();
    ip_in(
        &netns,
        &[
            "tuntap",
            "add",
            "dev",
            &tap,
            "mode",
            "tap",
            "user",
            &uid,
            "multi_queue",
        ],
    );

    let (run, socket_left) = run_rejected(&netns, &nobody, OPEN_CLONE_DEVICE, &["--tap", &tap]);
    let owner = format!("belongs to uid {}", daemon.uid);
    let fix = format!("user {} multi_queue", nobody.uid);
    assert_rejected(&run, socket_left, &[&tap, &owner, &fix]);
}

#[test]
fn single_queue_tap_limits_workers() {
    if !require_root("single_queue_tap_limits_workers") {
        return;
    }
    let netns = test_netns("ncqueue");
    let nobody = User::lookup("nobody");
    let tap = unique_tap_name();
    let uid = nobody.uid.to_string();
    ip_in(
        &netns,
        &["tuntap", "add", "dev", &tap, "mode", "tap", "user", &uid],
    );

    let args = ["--tap", &tap, "--workers", "2"];
    let (run, socket_left) = run_rejected(&netns, &nobody, OPEN_CLONE_DEVICE, &args);
    assert_rejected(&run, socket_left, &["without multi_queue", "--workers 1"]);

    // One worker fits a single-queue TAP.
    let dir = UserDir::create(&nobody);
    let socket = dir.path().join("control.sock");
    let args = [
        "--tap",
        &tap,
        "--workers",
        "1",
        "--socket",
        socket.to_str().unwrap(),
    ];
    let command = dataplane_command(&netns, &nobody, OPEN_CLONE_DEVICE, &args);
    let process = Process::spawn(command, "netcon-dp with one worker");
    let ready = wait_for_output(&process, "netcon-dp ready", Duration::from_secs(10));
    assert!(
        ready,
        "netcon-dp with one worker is not ready: {:?}",
        process.output_so_far()
    );
}

#[test]
fn link_options_need_capability() {
    if !require_root("link_options_need_capability") {
        return;
    }
    let netns = test_netns("nccap");
    let nobody = User::lookup("nobody");
    let tap = unique_tap_name();
    let uid = nobody.uid.to_string();
    ip_in(
        &netns,
        &[
            "tuntap",
            "add",
            "dev",
            &tap,
            "mode",
            "tap",
            "user",
            &uid,
            "multi_queue",
        ],
    );

    for (option, value, fix) in [
        (
            "--netns",
            "elsewhere",
            format!("ip link set dev {tap} netns elsewhere"),
        ),
        (
            "--bridge",
            "br0",
            format!("ip link set dev {tap} master br0"),
        ),
    ] {
        let args = ["--tap", &tap, option, value];
        let (run, socket_left) = run_rejected(&netns, &nobody, OPEN_CLONE_DEVICE, &args);
        assert_rejected(&run, socket_left, &[option, "CAP_NET_ADMIN", &fix]);
    }
}

#[test]
fn closed_clone_device_rejected() {
    if !require_root("closed_clone_device_rejected") {
        return;
    }
    let netns = test_netns("ncclone");
    let nobody = User::lookup("nobody");
    let tap = unique_tap_name();
    let uid = nobody.uid.to_string();
    ip_in(
        &netns,
        &[
            "tuntap",
            "add",
            "dev",
            &tap,
            "mode",
            "tap",
            "user",
            &uid,
            "multi_queue",
        ],
    );

    let (run, socket_left) = run_rejected(&netns, &nobody, 0o600, &["--tap", &tap]);
    assert_rejected(&run, socket_left, &["/dev/net/tun", "chmod 0666"]);
}

/// A program of `nobody` behind an instance of `nobody` downloads from a kernel web server on
/// the segment, and a kernel client downloads from a web server of `nobody` behind it.
#[test]
fn user_instance_reaches_kernel_peer() {
    if !require_root("user_instance_reaches_kernel_peer") {
        return;
    }
    let segment = Segment::create("ncrootless");
    let nobody = User::lookup("nobody");
    let options = InstanceOptions {
        host: 11,
        workers: 2,
    };
    let instance = segment::Instance::start(&segment, &nobody, &options);
    assert_unprivileged(instance.pid(), nobody.uid);

    // Program → kernel: python3 http.server in the segment's namespace, curl through netcon.
    let served = common::shared_temp_dir();
    write_random_file(&served.path().join("blob"), TRANSFER_LEN);
    let mut server = segment.command(common::PYTHON);
    server
        .args([
            "-m",
            "http.server",
            "--bind",
            KERNEL_IP,
            "8000",
            "--directory",
        ])
        .arg(served.path());
    let mut server = Process::spawn(server, "kernel web server on the segment");
    wait_for_listener(segment.netns(), 8000, &mut server);

    let home = UserDir::create(&nobody);
    let fetched = home.path().join("fetched");
    let mut curl = instance.command(home.path(), "curl");
    curl.args(["-sS", "--fail", "-o"])
        .arg(&fetched)
        .arg(format!("http://{KERNEL_IP}:8000/blob"));
    run_bounded(
        curl,
        "curl through netcon as nobody",
        Duration::from_secs(60),
    )
    .assert_success();
    assert_eq!(
        sha256_file(&fetched),
        sha256_file(&served.path().join("blob"))
    );

    // Kernel → program: python3 http.server through netcon as nobody, curl in the namespace.
    let root = home.path().join("www");
    home.create_dirs(&root);
    write_random_file(&root.join("blob"), TRANSFER_LEN);
    home.hand_over(&root.join("blob"));
    let mut server = instance.command(home.path(), common::PYTHON);
    server
        .args([
            "-m",
            "http.server",
            "--bind",
            "0.0.0.0",
            "8001",
            "--directory",
        ])
        .arg(&root);
    let mut server = Process::spawn(server, "web server of nobody through netcon");
    let url = format!("http://{}:8001/blob", instance.ip());
    let downloaded = served.path().join("downloaded");
    // curl retries while the server starts: netcon's listener is invisible to `ss`.
    let mut curl = segment.command("curl");
    curl.args(["-sS", "--fail", "--retry", "20", "--retry-connrefused"])
        .args(["--retry-delay", "1", "-o"])
        .arg(&downloaded)
        .arg(&url);
    let run = run_bounded(
        curl,
        "curl in the segment's namespace",
        Duration::from_secs(60),
    );
    assert!(
        run.succeeded(),
        "curl from the kernel failed\n{run}\nserver: {:?}",
        server.try_wait()
    );
    assert_eq!(sha256_file(&downloaded), sha256_file(&root.join("blob")));

    // netcon-ctl status works for the instance's own user.
    let mut status = netcon_ctl_as(&instance, &nobody, "status");
    status.env("HOME", home.path());
    let run = run_bounded(
        status,
        "netcon-ctl status as nobody",
        Duration::from_secs(15),
    );
    run.assert_success();
}

/// Returns `netcon-ctl SUBCOMMAND --socket SOCKET` run as `user`.
fn netcon_ctl_as(
    instance: &segment::Instance,
    user: &User,
    subcommand: &str,
) -> std::process::Command {
    let mut command = user.command(netcon_tools::topology::binary_path("netcon-ctl"));
    command
        .arg(subcommand)
        .arg("--socket")
        .arg(instance.socket());
    command
}

/// Asserts that process `pid` runs as `uid` with an empty effective capability set.
fn assert_unprivileged(pid: u32, uid: u32) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|err| panic!("cannot read the status of netcon-dp (pid {pid}): {err}"));
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
            .to_owned()
    };
    let uids: Vec<String> = field("Uid:")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert!(
        uids.iter().all(|id| *id == uid.to_string()),
        "netcon-dp runs with uids {uids:?}, not {uid}"
    );
    assert_eq!(
        u64::from_str_radix(&field("CapEff:"), 16).ok(),
        Some(0),
        "netcon-dp has capabilities"
    );
}

/// Waits up to `timeout` for `needle` on the process's stdout, and returns false when it does
/// not appear in time.
fn wait_for_output(process: &Process, needle: &str, timeout: Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if process.output_so_far().0.contains(needle) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}
