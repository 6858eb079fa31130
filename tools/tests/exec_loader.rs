//! The dynamic loader run as a program through netcon. It has no PT_INTERP header, like a
//! statically linked program, but it runs the program its arguments name. `ldd` and
//! `ld.so --list` list libraries, and `ld.so /usr/bin/curl` runs curl with the preload.
//! `ld.so STATIC` would run a statically linked probe that the preload cannot see into.
//! Without netcon, the loader runs the probe, and the probe reaches a server on the host's
//! loopback. Through netcon, `netcon-ctl run` and the preload's exec check both reject it,
//! unless `--isolate` gives it loopback only.

mod common;

use std::process::Command;
use std::time::Duration;

use common::loopback::LoopbackServer;
use common::{CProgram, Finished, PEER_IP, PYTHON, Process, Topology, run_bounded};
use common::{wait_for_listener, wait_until};
use netcon_tools::topology::{isolated_netcon_command, netcon_command, require_root};

/// The dynamic loader of x86_64 Linux, as glibc's `ldd` names it.
const LOADER: &str = "/lib64/ld-linux-x86-64.so.2";

/// The port of the peer's web server in the namespace.
const PEER_PORT: u16 = 9640;

/// The page the peer serves.
const PAGE: &str = "served to the loader's curl";

/// The line the preload prints for a program it does not start.
const REJECTED_LINE: &str = "netcon: exec failed with EACCES: ";

/// Exit status of `netcon-ctl run` for a rejected program.
const EXIT_CANNOT_EXECUTE: i32 = 126;

/// Returns the statically linked probe (`programs/escape_probe.c`), which connects with
/// libc's socket and connect when given "libc".
fn static_probe() -> CProgram {
    CProgram::compile_with(
        "escape_probe_static",
        include_str!("programs/escape_probe.c"),
        &["-static"],
    )
}

/// Returns the lines of `stderr` that start with `prefix`.
fn lines_starting<'a>(stderr: &'a str, prefix: &str) -> Vec<&'a str> {
    stderr
        .lines()
        .filter(|line| line.starts_with(prefix))
        .collect()
}

/// Returns `netcon-ctl run` (with `--isolate` when asked) for `args`.
fn through_netcon(topology: &Topology, args: &[&str], isolate: bool) -> Command {
    let mut command = match isolate {
        true => isolated_netcon_command(topology.socket(), args[0]),
        false => netcon_command(topology.socket(), args[0]),
    };
    command.args(&args[1..]);
    command
}

/// Asserts that `run` printed no line of the preload's exec check.
fn assert_no_rejection(run: &Finished) {
    assert!(
        lines_starting(&run.stderr, "netcon:").is_empty(),
        "{}\n{run}",
        run.label
    );
}

#[test]
fn ldd_lists_libraries() {
    if !require_root("ldd_lists_libraries") {
        return;
    }
    let topology = Topology::start("ncldso");
    let probe = static_probe();

    // ldd runs `ld.so --verify`, then the loader with LD_TRACE_LOADED_OBJECTS set.
    let ldd = through_netcon(&topology, &["ldd", "/bin/true"], false);
    let run = run_bounded(ldd, "ldd /bin/true", Duration::from_secs(30));
    run.assert_success();
    assert!(run.stdout.contains("libc.so.6 => "), "{run}");
    assert!(run.stdout.contains("libnetcon_preload.so"), "{run}");
    assert_no_rejection(&run);

    let ldd = through_netcon(&topology, &["ldd", probe.program()], false);
    let run = run_bounded(ldd, "ldd of the static probe", Duration::from_secs(30));
    assert_eq!(run.code(), Some(1), "{run}");
    assert!(run.stderr.contains("not a dynamic executable"), "{run}");
    assert_no_rejection(&run);

    // netcon-ctl runs the loader itself without waiting for the preload, which the loader
    // lists but does not run.
    let cases: [&[&str]; 3] = [
        &[LOADER, "--list", "/bin/true"],
        &[LOADER, "--verify", "/bin/true"],
        &[LOADER, "--version"],
    ];
    for args in cases {
        let label = args.join(" ");
        let run = run_bounded(
            through_netcon(&topology, args, false),
            &label,
            Duration::from_secs(30),
        );
        run.assert_success();
        assert_no_rejection(&run);
        assert!(!run.stderr.contains("netcon-ctl:"), "{label}\n{run}");
    }

    // glibc 2.36's loader crashes listing a statically linked program that is not
    // position-independent, but netcon lets it try.
    let args = [LOADER, "--list", probe.program()];
    let run = run_bounded(
        through_netcon(&topology, &args, false),
        "loader listing the static probe",
        Duration::from_secs(30),
    );
    assert_ne!(run.code(), Some(EXIT_CANNOT_EXECUTE), "{run}");
    assert_no_rejection(&run);
    assert!(!run.stderr.contains("netcon-ctl:"), "{run}");
}

#[test]
fn loader_runs_curl_through_netcon() {
    if !require_root("loader_runs_curl_through_netcon") {
        return;
    }
    let topology = Topology::start("ncldso");
    let site = tempfile::tempdir().expect("cannot create a temporary directory");
    std::fs::write(site.path().join("page"), format!("{PAGE}\n")).unwrap();
    let mut server = topology.netns.command(PYTHON);
    server
        .args(["-m", "http.server", "--bind", PEER_IP])
        .arg(PEER_PORT.to_string())
        .arg("--directory")
        .arg(site.path());
    let mut server = Process::spawn(server, "http.server in the namespace");
    wait_for_listener(&topology.netns, PEER_PORT, &mut server);
    let host = LoopbackServer::start();
    let peer_url = format!("http://{PEER_IP}:{PEER_PORT}/page");
    let host_url = format!("http://127.0.0.1:{}/", host.port);

    // Run by netcon-ctl and from a shell, with options before the program. The isolated
    // namespace has only loopback, so the page comes through netcon or not at all.
    let loader_lines = |url: &str| -> Vec<Vec<String>> {
        let curl = format!("/usr/bin/curl -sS -m 10 {url}");
        let direct = format!("{LOADER} {curl}");
        let with_options =
            format!("{LOADER} --argv0 curl --inhibit-cache --library-path /nonexistent {curl}");
        vec![
            direct.split(' ').map(String::from).collect(),
            ["sh", "-c", direct.as_str()].map(String::from).to_vec(),
            ["sh", "-c", with_options.as_str()]
                .map(String::from)
                .to_vec(),
        ]
    };
    for line in loader_lines(&peer_url) {
        let args: Vec<&str> = line.iter().map(String::as_str).collect();
        let label = format!("{} isolated", args.join(" "));
        let run = run_bounded(
            through_netcon(&topology, &args, true),
            &label,
            Duration::from_secs(30),
        );
        assert!(run.stdout.contains(PAGE), "{label}: no page\n{run}");
        assert_no_rejection(&run);
    }

    // Through netcon, 127.0.0.1 is netcon-dp's loopback, where nothing listens.
    for line in loader_lines(&host_url) {
        let args: Vec<&str> = line.iter().map(String::as_str).collect();
        let label = args.join(" ");
        let run = run_bounded(
            through_netcon(&topology, &args, false),
            &label,
            Duration::from_secs(30),
        );
        assert!(run.stderr.contains("curl: (7)"), "{label}\n{run}");
        assert_no_rejection(&run);
    }
    assert_eq!(
        host.accepted(),
        0,
        "the loader's curl reached the host's server"
    );
}

#[test]
fn loader_with_static_probe_rejected() {
    if !require_root("loader_with_static_probe_rejected") {
        return;
    }
    let topology = Topology::start("ncldso");
    let host = LoopbackServer::start();
    let probe = static_probe();
    let port = host.port.to_string();
    let probe_args = [probe.program(), "127.0.0.1", port.as_str(), "libc"];

    // Without netcon, the loader runs the static probe, which reaches the host's server.
    let mut direct = Command::new(LOADER);
    direct.args(probe_args);
    let direct = run_bounded(direct, "loader without netcon", Duration::from_secs(30));
    assert_eq!(direct.stdout.trim(), "connected", "{direct}");
    // The probe exits once connected, and the server accepts in its own time.
    let accepted = wait_until(Duration::from_secs(5), || host.accepted() == 1);
    assert!(accepted, "the server did not count the probe's connection");

    let named = format!("{} is statically linked", probe.program());
    // glibc 2.36's loader stops at `--` with a usage message, but a later one may take it
    // as the end of its options, so the check does.
    let option_cases: [&[&str]; 3] = [
        &[],
        &["--library-path", "/nonexistent", "--argv0", "probe"],
        &["--preload", "libm.so.6", "--inhibit-cache", "--"],
    ];
    for options in option_cases {
        let mut args = vec![LOADER];
        args.extend_from_slice(options);
        args.extend_from_slice(&probe_args);
        let label = args.join(" ");

        let run = run_bounded(
            through_netcon(&topology, &args, false),
            &label,
            Duration::from_secs(30),
        );
        assert_eq!(run.code(), Some(EXIT_CANNOT_EXECUTE), "{label}\n{run}");
        assert!(run.stderr.contains(&named), "{label}\n{run}");
        assert!(
            run.stderr.contains("`netcon-ctl run --isolate`"),
            "{label}\n{run}"
        );

        // The same command from a shell meets the preload's exec check.
        let shell = ["sh", "-c", label.as_str()];
        let run = run_bounded(
            through_netcon(&topology, &shell, false),
            &format!("sh -c {label}"),
            Duration::from_secs(30),
        );
        assert_eq!(run.code(), Some(EXIT_CANNOT_EXECUTE), "{label}\n{run}");
        let rejections = lines_starting(&run.stderr, REJECTED_LINE);
        assert_eq!(rejections.len(), 1, "{label}: expected one line\n{run}");
        assert!(rejections[0].contains(&named), "{label}\n{run}");
        assert!(!run.stdout.contains("connected"), "{label} ran\n{run}");
    }

    // Arguments that do not show which program the loader would run.
    let unclear: [(&[&str], &str); 2] = [
        (
            &[LOADER, "--new-option", probe.program()],
            "is not an option",
        ),
        (&[LOADER, "netcon-static-probe"], "named without a slash"),
    ];
    for (args, reason) in unclear {
        let label = args.join(" ");
        let run = run_bounded(
            through_netcon(&topology, args, false),
            &label,
            Duration::from_secs(30),
        );
        assert_eq!(run.code(), Some(EXIT_CANNOT_EXECUTE), "{label}\n{run}");
        assert!(
            run.stderr.contains("is the dynamic loader"),
            "{label}\n{run}"
        );
        assert!(run.stderr.contains(reason), "{label}\n{run}");
    }
    assert_eq!(host.accepted(), 1, "the probe reached the host's server");
}

#[test]
fn loader_with_static_probe_isolated() {
    if !require_root("loader_with_static_probe_isolated") {
        return;
    }
    let topology = Topology::start("ncldso");
    let host = LoopbackServer::start();
    let probe = static_probe();
    let port = host.port.to_string();
    let direct = [LOADER, probe.program(), "127.0.0.1", port.as_str(), "libc"];
    let command = direct.join(" ");
    let shell = ["sh", "-c", command.as_str()];

    // In the isolated namespace, 127.0.0.1 is its own loopback, where nothing listens.
    for (args, warning) in [
        (&direct[..], "netcon-ctl: warning: "),
        (&shell[..], "netcon: warning: "),
    ] {
        let label = args.join(" ");
        let run = run_bounded(
            through_netcon(&topology, args, true),
            &label,
            Duration::from_secs(30),
        );
        assert_eq!(run.stdout.trim(), "ECONNREFUSED", "{label}\n{run}");
        let warnings = lines_starting(&run.stderr, warning);
        assert_eq!(warnings.len(), 1, "{label}: expected one warning\n{run}");
        let named = format!("{} is statically linked", probe.program());
        assert!(warnings[0].contains(&named), "{label}\n{run}");
    }
    assert_eq!(
        host.accepted(),
        0,
        "an isolated probe reached the host's server"
    );
}
