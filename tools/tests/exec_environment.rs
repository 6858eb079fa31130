//! Programs started with an environment built anew stay on netcon: the preload puts
//! `LD_PRELOAD`, `NETCON_SOCKET`, `NETCON_CONTROL_FD` and `NETCON_ISOLATED` back into the
//! environment of every program a program starts. Without that, `env -i curl URL` ran curl
//! without the preload, and curl reached a server on the host's loopback. The launchers are
//! `env -i` and Python's subprocess, os.execve and os.posix_spawn with an environment of their
//! own. A C launcher passes a hand-built envp to each exec and spawn function, or makes it the
//! process's environment before execv, execvp, system and popen. Each launcher starts
//! `env`, which shows the child's environment, curl against a server on the host's loopback,
//! which it must not reach, and, under `--isolate`, curl against the peer in the namespace,
//! which it reaches only through netcon.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::loopback::LoopbackServer;
use common::wait_for_listener;
use common::{CProgram, Finished, PEER_IP, PYTHON, Process, Topology, run_bounded};
use netcon_tools::topology::{binary_path, isolated_netcon_command, netcon_command, require_root};

/// The entries every launcher puts into the child's environment, in this order.
const OWN_ENTRIES: [&str; 2] = ["NETCON_TEST_FIRST=1", "NETCON_TEST_LAST=1"];

/// The port of the peer's web server in the namespace.
const PEER_PORT: u16 = 9620;

/// The page the peer serves.
const PAGE: &str = "served through netcon";

/// Runs `sys.argv[1:]` with subprocess.run (a `vfork` child on Linux) and the two entries.
const PY_SUBPROCESS: &str = r#"
import subprocess, sys
env = {"NETCON_TEST_FIRST": "1", "NETCON_TEST_LAST": "1"}
print("exit", subprocess.run(sys.argv[1:], env=env).returncode, flush=True)
"#;

/// Replaces Python by `sys.argv[1:]` with os.execve and the two entries.
const PY_EXECVE: &str = r#"
import os, sys
os.execve(sys.argv[1], sys.argv[1:], {"NETCON_TEST_FIRST": "1", "NETCON_TEST_LAST": "1"})
"#;

/// Runs `sys.argv[1:]` with os.posix_spawn and the two entries, and waits for it.
const PY_POSIX_SPAWN: &str = r#"
import os, sys
env = {"NETCON_TEST_FIRST": "1", "NETCON_TEST_LAST": "1"}
pid = os.posix_spawn(sys.argv[1], sys.argv[1:], env)
print("exit", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
"#;

/// A way of starting a program with an environment of the launcher's making.
struct Launcher {
    label: String,
    /// The command line before the program and its arguments.
    prefix: Vec<String>,
    /// The child's environment starts with [`OWN_ENTRIES`]. `/bin/sh`, which system and
    /// popen start, passes its environment on in an order of its own.
    keeps_order: bool,
}

impl Launcher {
    /// Returns the launcher's command line for `program` and `args`.
    fn command_line(&self, program: &str, args: &[&str]) -> Vec<String> {
        let mut line = self.prefix.clone();
        line.push(program.to_owned());
        line.extend(args.iter().map(|arg| arg.to_string()));
        line
    }
}

/// Returns every launcher: env -i, Python's three ways, and each mode of the C launcher.
fn launchers(c_launcher: &Path) -> Vec<Launcher> {
    let mut env_i = vec!["env".to_owned(), "-i".to_owned()];
    env_i.extend(OWN_ENTRIES.map(String::from));
    let mut all = vec![Launcher {
        label: "env -i".to_owned(),
        prefix: env_i,
        keeps_order: true,
    }];
    for (label, script) in [
        ("python subprocess", PY_SUBPROCESS),
        ("python os.execve", PY_EXECVE),
        ("python os.posix_spawn", PY_POSIX_SPAWN),
    ] {
        all.push(Launcher {
            label: label.to_owned(),
            prefix: vec![PYTHON.to_owned(), "-c".to_owned(), script.to_owned()],
            keeps_order: true,
        });
    }
    let modes = [
        "execve",
        "execvpe",
        "execle",
        "fexecve",
        "execveat",
        "syscall",
        "vfork",
        "posix_spawn",
        "posix_spawnp",
        "environ-execv",
        "environ-execvp",
        "environ-system",
        "environ-popen",
    ];
    for mode in modes {
        all.push(Launcher {
            label: format!("C {mode}"),
            prefix: vec![c_launcher.display().to_string(), mode.to_owned()],
            keeps_order: !matches!(mode, "environ-system" | "environ-popen"),
        });
    }
    all
}

/// Returns the C launcher (`programs/env_launcher.c`), compiled.
fn c_launcher() -> CProgram {
    CProgram::compile("env_launcher", include_str!("programs/env_launcher.c"))
}

/// Returns `netcon-ctl run` (with `--isolate` when asked) for `line`.
fn through_netcon(topology: &Topology, line: &[String], isolate: bool) -> Command {
    let mut command = match isolate {
        true => isolated_netcon_command(topology.socket(), &line[0]),
        false => netcon_command(topology.socket(), &line[0]),
    };
    command.args(&line[1..]);
    command
}

/// Returns the preload's path as `netcon-ctl run` puts it into `LD_PRELOAD`.
fn preload_path() -> PathBuf {
    std::fs::canonicalize(binary_path("libnetcon_preload.so")).expect("the preload is built")
}

/// Returns the lines `env` printed: the run's stdout without the launcher's "exit" line.
fn environment_lines(run: &Finished) -> Vec<&str> {
    run.stdout
        .lines()
        .filter(|line| !line.starts_with("exit "))
        .collect()
}

/// Starts a web server for [`PAGE`] on the peer's address, in the namespace only.
fn start_peer_site(topology: &Topology, site: &Path) -> Process {
    std::fs::write(site.join("page"), format!("{PAGE}\n")).expect("cannot write the page");
    let mut server = topology.netns.command(PYTHON);
    server
        .args(["-m", "http.server", "--bind", PEER_IP])
        .arg(PEER_PORT.to_string())
        .arg("--directory")
        .arg(site);
    let mut server = Process::spawn(server, "http.server in the namespace");
    wait_for_listener(&topology.netns, PEER_PORT, &mut server);
    server
}

#[test]
fn new_environment_gets_netcon_variables() {
    if !require_root("new_environment_gets_netcon_variables") {
        return;
    }
    let topology = Topology::start("ncenv");
    let launcher_program = c_launcher();
    let preload = format!("LD_PRELOAD={}", preload_path().display());
    let socket = format!("NETCON_SOCKET={}", topology.socket().display());

    for launcher in launchers(launcher_program.path()) {
        let line = launcher.command_line("/usr/bin/env", &[]);
        let command = through_netcon(&topology, &line, false);
        let label = format!("{} env", launcher.label);
        let run = run_bounded(command, &label, Duration::from_secs(30));
        run.assert_success();
        let lines = environment_lines(&run);
        if launcher.keeps_order {
            assert_eq!(lines[..2], OWN_ENTRIES, "{label}: order changed\n{run}");
        }
        for entry in OWN_ENTRIES {
            assert!(lines.contains(&entry), "{label}: no {entry}\n{run}");
        }
        assert!(
            lines.contains(&preload.as_str()),
            "{label}: no {preload}\n{run}"
        );
        assert!(
            lines.contains(&socket.as_str()),
            "{label}: no {socket}\n{run}"
        );
        assert!(
            lines.iter().any(|l| l.starts_with("NETCON_CONTROL_FD=")),
            "{label}: no NETCON_CONTROL_FD\n{run}"
        );
        assert!(
            !lines.iter().any(|l| l.starts_with("NETCON_ISOLATED=")),
            "{label}: NETCON_ISOLATED without --isolate\n{run}"
        );
        assert!(!run.stderr.contains("netcon:"), "{label}\n{run}");
    }

    // Under --isolate the child gets NETCON_ISOLATED too.
    let env_i = &launchers(launcher_program.path())[0];
    let line = env_i.command_line("/usr/bin/env", &[]);
    let run = run_bounded(
        through_netcon(&topology, &line, true),
        "env -i env isolated",
        Duration::from_secs(30),
    );
    run.assert_success();
    let lines = environment_lines(&run);
    assert!(lines.contains(&"NETCON_ISOLATED=1"), "{run}");
    assert!(lines.contains(&preload.as_str()), "{run}");
}

#[test]
fn other_preload_keeps_its_libraries() {
    if !require_root("other_preload_keeps_its_libraries") {
        return;
    }
    let topology = Topology::start("ncenv");
    let launcher_program = c_launcher();
    // The loader finds libm.so.6 by name in its search path, and loading it changes nothing.
    let expected = format!("LD_PRELOAD=libm.so.6:{}", preload_path().display());

    let mut env_i = netcon_command(topology.socket(), "env");
    env_i.args([
        "-i",
        OWN_ENTRIES[0],
        "LD_PRELOAD=libm.so.6",
        OWN_ENTRIES[1],
        "/usr/bin/env",
    ]);
    let mut c_execve = netcon_command(topology.socket(), launcher_program.program());
    c_execve
        .args(["execve", "/usr/bin/env"])
        .env("NETCON_TEST_EXTRA", "LD_PRELOAD=libm.so.6");
    for (label, command) in [("env -i", env_i), ("C execve", c_execve)] {
        let run = run_bounded(command, label, Duration::from_secs(30));
        run.assert_success();
        let lines = environment_lines(&run);
        assert_eq!(
            lines[..3],
            [OWN_ENTRIES[0], &expected, OWN_ENTRIES[1]],
            "{label}: the libraries or their order changed\n{run}"
        );
        assert!(
            !run.stderr.contains("cannot be preloaded"),
            "{label}\n{run}"
        );
    }
}

#[test]
fn new_environment_misses_host_loopback() {
    if !require_root("new_environment_misses_host_loopback") {
        return;
    }
    let topology = Topology::start("ncenv");
    let host = LoopbackServer::start();
    let url = format!("http://127.0.0.1:{}/", host.port);
    let launcher_program = c_launcher();

    // Without netcon, curl in an environment of its own reaches the server.
    let mut direct = Command::new("env");
    direct.args(["-i", "/usr/bin/curl", "-sS", "-m", "10", &url]);
    let direct = run_bounded(
        direct,
        "env -i curl without netcon",
        Duration::from_secs(30),
    );
    direct.assert_success();
    assert_eq!(host.accepted(), 1);

    // Through netcon, 127.0.0.1 is netcon-dp's loopback, where nothing listens.
    for launcher in launchers(launcher_program.path()) {
        let line = launcher.command_line("/usr/bin/curl", &["-sS", "-m", "10", &url]);
        let command = through_netcon(&topology, &line, false);
        let label = format!("{} curl", launcher.label);
        let run = run_bounded(command, &label, Duration::from_secs(30));
        assert!(
            run.stderr.contains("curl: (7)"),
            "{label}: curl did not fail to connect\n{run}"
        );
        assert_eq!(
            host.accepted(),
            1,
            "{label} reached the host's server\n{run}"
        );
    }
}

#[test]
fn new_environment_reaches_peer_isolated() {
    if !require_root("new_environment_reaches_peer_isolated") {
        return;
    }
    let topology = Topology::start("ncenv");
    let site = tempfile::tempdir().expect("cannot create a temporary directory");
    let _server = start_peer_site(&topology, site.path());
    let url = format!("http://{PEER_IP}:{PEER_PORT}/page");
    let launcher_program = c_launcher();

    // The isolated namespace has only loopback, so curl reaches the peer through netcon or
    // not at all.
    for launcher in launchers(launcher_program.path()) {
        let line = launcher.command_line("/usr/bin/curl", &["-sS", "-m", "10", &url]);
        let command = through_netcon(&topology, &line, true);
        let label = format!("{} curl isolated", launcher.label);
        let run = run_bounded(command, &label, Duration::from_secs(30));
        assert!(run.stdout.contains(PAGE), "{label}: no page\n{run}");
        assert!(!run.stderr.contains("netcon:"), "{label}\n{run}");
    }
}
