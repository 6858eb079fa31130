//! Programs started by a program that runs through netcon: the preload checks each one as
//! `netcon-ctl run` checks the first. A statically linked probe and `hey` (a Go program from
//! Debian) both reach a server on the host's loopback without netcon. Through netcon their
//! exec fails with EACCES, and one line names the reason, whatever starts them. The starters
//! are env, sh -c, bash's exec, Python's subprocess, os.posix_spawn(p) and os.system, and a
//! C launcher for each exec, spawn, system and popen function of libc. Under `--isolate` the
//! two run and reach loopback only. Dynamically linked programs started the same ways reach
//! the peer through netcon.

mod common;

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::loopback::LoopbackServer;
use common::{
    CProgram, Finished, PEER_IP, PYTHON, Process, Topology, run_bounded, wait_for_listener,
};
use netcon_tools::topology::{binary_path, isolated_netcon_command, netcon_command, require_root};

/// The unprivileged user of the set-user-ID case.
const NOBODY_UID: u32 = 65534;

/// The start of the line the preload prints for a program it does not start.
const REJECTED_LINE: &str = "netcon: exec failed with EACCES: ";

/// The start of the line the preload prints for such a program under `--isolate`.
const ISOLATED_LINE: &str = "netcon: warning: ";

/// Runs `sys.argv[1:]` with subprocess.run, which execs in a vfork child on Linux.
const PY_SUBPROCESS: &str = r#"
import errno, subprocess, sys
try:
    print("exit", subprocess.run(sys.argv[1:]).returncode, flush=True)
except OSError as error:
    print("failed", errno.errorcode[error.errno])
"#;

/// Runs `sys.argv[1:]` with os.posix_spawn (glibc's posix_spawn) and waits for it.
const PY_POSIX_SPAWN: &str = r#"
import errno, os, sys
try:
    pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ)
    print("exit", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
except OSError as error:
    print("failed", errno.errorcode[error.errno])
"#;

/// Runs `sys.argv[1:]` with os.posix_spawnp (glibc's posix_spawnp) and waits for it.
const PY_POSIX_SPAWNP: &str = r#"
import errno, os, sys
try:
    pid = os.posix_spawnp(sys.argv[1], sys.argv[1:], os.environ)
    print("exit", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
except OSError as error:
    print("failed", errno.errorcode[error.errno])
"#;

/// Runs `sys.argv[1:]` as a shell command with os.system (glibc's system).
const PY_SYSTEM: &str = r#"
import os, shlex, sys
status = os.system(shlex.join(sys.argv[1:]))
print("exit", os.waitstatus_to_exitcode(status), flush=True)
"#;

/// How a launcher shows that the exec of the program it started failed.
#[derive(Clone, Copy, Debug)]
enum RejectionSign {
    /// The launcher exits with this status (126: found but not executable).
    Exit(i32),
    /// The launcher prints this line and exits with 0 or 1.
    Prints(&'static str),
}

/// A way of starting a program from a program.
struct Launcher {
    label: &'static str,
    /// The command line before the program and its arguments.
    prefix: Vec<String>,
    /// The program and its arguments go to the launcher as one shell command.
    shell_command: bool,
    /// The launcher finds a program name on `PATH`; others need a path.
    searches_path: bool,
    /// The launcher execs an open fd, so the program is named `/dev/fd/N`.
    by_fd: bool,
    rejection: RejectionSign,
}

/// Returns every launcher: programs from Debian, Python's process functions, and each mode of
/// the C launcher.
fn launchers(c_launcher: &Path) -> Vec<Launcher> {
    let python = |label, script: &str, searches_path, rejection| Launcher {
        label,
        prefix: vec![PYTHON.to_owned(), "-c".to_owned(), script.to_owned()],
        shell_command: false,
        searches_path,
        by_fd: false,
        rejection,
    };
    let mut all = vec![
        Launcher {
            label: "env",
            prefix: vec!["env".to_owned()],
            shell_command: false,
            searches_path: true,
            by_fd: false,
            rejection: RejectionSign::Exit(126),
        },
        Launcher {
            label: "sh -c",
            prefix: vec!["sh".to_owned(), "-c".to_owned()],
            shell_command: true,
            searches_path: true,
            by_fd: false,
            rejection: RejectionSign::Exit(126),
        },
        Launcher {
            label: "bash exec",
            prefix: ["bash", "-c", r#"exec "$0" "$@""#]
                .map(String::from)
                .to_vec(),
            shell_command: false,
            searches_path: true,
            by_fd: false,
            rejection: RejectionSign::Exit(126),
        },
        python(
            "python subprocess",
            PY_SUBPROCESS,
            true,
            RejectionSign::Prints("failed EACCES"),
        ),
        python(
            "python posix_spawn",
            PY_POSIX_SPAWN,
            false,
            RejectionSign::Prints("failed EACCES"),
        ),
        python(
            "python posix_spawnp",
            PY_POSIX_SPAWNP,
            true,
            RejectionSign::Prints("failed EACCES"),
        ),
        // The exec of the shell that system() starts fails, and the shell exits with 126.
        python(
            "python system",
            PY_SYSTEM,
            true,
            RejectionSign::Prints("exit 126"),
        ),
    ];
    let modes = [
        ("execl", false),
        ("execle", false),
        ("execlp", true),
        ("execv", false),
        ("execve", false),
        ("execvp", true),
        ("execvpe", true),
        ("execveat", false),
        ("syscall", false),
        ("fexecve", false),
        ("fexecve-opath", false),
        ("vfork", false),
        ("posix_spawn", false),
        ("posix_spawnp", true),
        ("system", true),
        ("popen", true),
    ];
    for (mode, searches_path) in modes {
        let rejection = match mode {
            "system" | "popen" => RejectionSign::Prints("exit 126"),
            _ => RejectionSign::Prints("failed EACCES"),
        };
        all.push(Launcher {
            label: mode,
            prefix: vec![c_launcher.display().to_string(), mode.to_owned()],
            shell_command: matches!(mode, "system" | "popen"),
            searches_path,
            by_fd: mode.starts_with("fexecve"),
            rejection,
        });
    }
    all
}

/// A program started through a launcher: its path, the name a `PATH` search finds it by, its
/// arguments, and the words after its path in the preload's line.
struct Target {
    path: PathBuf,
    name: String,
    args: Vec<String>,
    reason: &'static str,
}

impl Launcher {
    /// Returns the command line that starts `target` through this launcher.
    fn command_line(&self, target: &Target) -> Vec<String> {
        let program = match self.searches_path {
            true => target.name.clone(),
            false => target.path.display().to_string(),
        };
        let mut line = self.prefix.clone();
        if self.shell_command {
            let mut words = vec![program];
            words.extend(target.args.iter().cloned());
            line.push(words.join(" "));
        } else {
            line.push(program);
            line.extend(target.args.iter().cloned());
        }
        line
    }

    /// Returns what the preload's line names the program: `/dev/fd/N` for an fd, else a
    /// path ending in the target's name (a search may find `/bin/hey` or `/usr/bin/hey`).
    fn named(&self, target: &Target) -> String {
        match self.by_fd {
            true => "/dev/fd/".to_owned(),
            false => format!("{} {}", target.name, target.reason),
        }
    }

    /// Asserts that `run` shows the launcher's own sign of a failed exec.
    fn assert_rejected(&self, run: &Finished) {
        match self.rejection {
            RejectionSign::Exit(code) => {
                assert_eq!(run.code(), Some(code), "{}\n{run}", self.label)
            }
            RejectionSign::Prints(line) => assert!(
                run.stdout.lines().any(|l| l == line),
                "{} did not print {line:?}\n{run}",
                self.label
            ),
        }
    }
}

/// Returns `netcon-ctl run` (with `--isolate` when asked) for `line`, with `extra_path`
/// first on `PATH`.
fn through_netcon(
    topology: &Topology,
    line: &[String],
    isolate: bool,
    extra_path: &Path,
) -> Command {
    let mut command = match isolate {
        true => isolated_netcon_command(topology.socket(), &line[0]),
        false => netcon_command(topology.socket(), &line[0]),
    };
    command.args(&line[1..]);
    command.env("PATH", search_path(extra_path));
    command
}

/// Returns `dir` followed by the test's own `PATH`.
fn search_path(dir: &Path) -> OsString {
    let mut value = dir.as_os_str().to_owned();
    value.push(":");
    value.push(std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()));
    value
}

/// Returns the lines of `stderr` that start with `prefix`.
fn lines_starting<'a>(stderr: &'a str, prefix: &str) -> Vec<&'a str> {
    stderr
        .lines()
        .filter(|line| line.starts_with(prefix))
        .collect()
}

/// The statically linked probe, copied into a directory of its own so that a `PATH` search
/// finds it by name.
struct StaticProbe {
    dir: tempfile::TempDir,
    path: PathBuf,
}

impl StaticProbe {
    fn build() -> StaticProbe {
        let compiled = CProgram::compile_with(
            "escape_probe_static",
            include_str!("programs/escape_probe.c"),
            &["-static"],
        );
        let dir = tempfile::tempdir().expect("cannot create a temporary directory");
        let path = dir.path().join("netcon-static-probe");
        fs::copy(compiled.path(), &path).expect("cannot copy the static probe");
        StaticProbe { dir, path }
    }

    /// Returns the probe connecting to ADDRESS:PORT with libc's socket and connect, which
    /// the preload cannot replace in a statically linked program.
    fn target(&self, address: &str, port: u16) -> Target {
        Target {
            path: self.path.clone(),
            name: "netcon-static-probe".to_owned(),
            args: vec![address.to_owned(), port.to_string(), "libc".to_owned()],
            reason: "is statically linked",
        }
    }
}

/// Returns hey sending one request to `url`.
fn hey(url: &str) -> Target {
    let args = ["-n", "1", "-c", "1", "-t", "5", url];
    Target {
        path: PathBuf::from("/usr/bin/hey"),
        name: "hey".to_owned(),
        args: args.map(String::from).to_vec(),
        reason: "is a Go program",
    }
}

/// Returns curl fetching `url`; curl is dynamically linked, so it passes the check.
fn curl(url: &str) -> Target {
    Target {
        path: PathBuf::from("/usr/bin/curl"),
        name: "curl".to_owned(),
        // Three arguments at most, for the execl family of the C launcher.
        args: ["-sSm", "10", url].map(String::from).to_vec(),
        reason: "",
    }
}

/// Returns the C launcher (`programs/exec_launcher.c`), compiled.
fn c_launcher() -> CProgram {
    CProgram::compile("exec_launcher", include_str!("programs/exec_launcher.c"))
}

#[test]
fn static_and_go_children_rejected() {
    if !require_root("static_and_go_children_rejected") {
        return;
    }
    let topology = Topology::start("ncexec");
    let host = LoopbackServer::start();
    let probe = StaticProbe::build();
    let launcher_program = c_launcher();
    let targets = [
        probe.target("127.0.0.1", host.port),
        hey(&format!("http://127.0.0.1:{}/", host.port)),
    ];

    // Without netcon, both reach the test's server on the host's loopback.
    let mut direct = Command::new(&probe.path);
    direct.args(&targets[0].args);
    let direct = run_bounded(
        direct,
        "static probe without netcon",
        Duration::from_secs(30),
    );
    assert_eq!(direct.stdout.trim(), "connected", "{direct}");
    let mut direct = Command::new("hey");
    direct.args(&targets[1].args);
    let direct = run_bounded(direct, "hey without netcon", Duration::from_secs(30));
    assert!(direct.stdout.contains("[200]\t1 responses"), "{direct}");
    assert_eq!(host.accepted(), 2);

    for launcher in launchers(launcher_program.path()) {
        for target in &targets {
            let line = launcher.command_line(target);
            let command = through_netcon(&topology, &line, false, probe.dir.path());
            let label = format!("{} {}", launcher.label, target.name);
            let run = run_bounded(command, &label, Duration::from_secs(30));
            launcher.assert_rejected(&run);
            let rejections = lines_starting(&run.stderr, REJECTED_LINE);
            assert_eq!(rejections.len(), 1, "{label}: expected one line\n{run}");
            let named = launcher.named(target);
            assert!(
                rejections[0].contains(&named),
                "{label}: no {named:?}\n{run}"
            );
            assert!(
                rejections[0].contains("`netcon-ctl run --isolate`"),
                "{label}: the fix is missing\n{run}"
            );
            assert!(!run.stdout.contains("connected"), "{label} ran\n{run}");
            assert!(!run.stdout.contains("[200]"), "{label} ran\n{run}");
        }
    }
    assert_eq!(host.accepted(), 2, "a child reached the host's server");
}

#[test]
fn isolated_children_reach_loopback_only() {
    if !require_root("isolated_children_reach_loopback_only") {
        return;
    }
    let topology = Topology::start("ncexec");
    let host = LoopbackServer::start();
    let probe = StaticProbe::build();
    let launcher_program = c_launcher();
    // In the isolated namespace, 127.0.0.1 is its own loopback, where nothing listens.
    let targets = [
        (probe.target("127.0.0.1", host.port), "ECONNREFUSED"),
        (probe.target(PEER_IP, 9600), "ENETUNREACH"),
        (
            hey(&format!("http://127.0.0.1:{}/", host.port)),
            "connect: connection refused",
        ),
    ];

    for launcher in launchers(launcher_program.path()) {
        for (target, outcome) in &targets {
            let line = launcher.command_line(target);
            let command = through_netcon(&topology, &line, true, probe.dir.path());
            let label = format!("{} {} isolated", launcher.label, target.name);
            let run = run_bounded(command, &label, Duration::from_secs(30));
            assert!(
                run.stdout.contains(outcome),
                "{label}: no {outcome:?}\n{run}"
            );
            assert!(
                lines_starting(&run.stderr, REJECTED_LINE).is_empty(),
                "{label}\n{run}"
            );
            let warnings = lines_starting(&run.stderr, ISOLATED_LINE);
            assert_eq!(warnings.len(), 1, "{label}: expected one warning\n{run}");
            let named = launcher.named(target);
            assert!(warnings[0].contains(&named), "{label}: no {named:?}\n{run}");
            assert!(
                warnings[0].contains("so its sockets bypass netcon"),
                "{label}\n{run}"
            );
        }
    }
    assert_eq!(
        host.accepted(),
        0,
        "an isolated child reached the host's server"
    );
}

#[test]
fn isolation_variable_alone_rejected() {
    if !require_root("isolation_variable_alone_rejected") {
        return;
    }
    let topology = Topology::start("ncexec");
    let host = LoopbackServer::start();
    let probe = StaticProbe::build();
    let target = probe.target("127.0.0.1", host.port);
    let shell_line = format!("{} {}", probe.path.display(), target.args.join(" "));
    let interfaces = fs::read_to_string("/proc/net/dev").expect("cannot read /proc/net/dev");
    assert!(
        interfaces
            .lines()
            .skip(2)
            .any(|line| !line.trim_start().starts_with("lo:")),
        "the test's namespace has only lo, so the spoofed variable could pass\n{interfaces}"
    );

    // The variable set for netcon-ctl, which removes it, and set by a program for its child.
    let mut from_caller = netcon_command(topology.socket(), "sh");
    from_caller
        .args(["-c", &shell_line])
        .env("NETCON_ISOLATED", "1");
    let mut from_program = netcon_command(topology.socket(), "env");
    from_program.args(["NETCON_ISOLATED=1", "sh", "-c", &shell_line]);
    // A namespace with only lo, not made by --isolate: the variable is missing.
    let mut loopback_only = Command::new("unshare");
    loopback_only
        .args(["--net", "--"])
        .arg(binary_path("netcon-ctl"))
        .args(["run", "--socket"])
        .arg(topology.socket())
        .args(["--", "sh", "-c", &shell_line]);

    let cases = [
        ("variable for netcon-ctl", from_caller),
        ("variable set by env", from_program),
        ("namespace without variable", loopback_only),
    ];
    for (label, command) in cases {
        let run = run_bounded(command, label, Duration::from_secs(30));
        assert_eq!(
            run.code(),
            Some(126),
            "{label}: sh did not fail the exec\n{run}"
        );
        let rejections = lines_starting(&run.stderr, REJECTED_LINE);
        assert_eq!(rejections.len(), 1, "{label}\n{run}");
        assert!(
            rejections[0].contains("is statically linked"),
            "{label}\n{run}"
        );
    }
    assert_eq!(host.accepted(), 0, "the probe reached the host's server");
}

#[test]
fn dynamic_children_reach_peer() {
    if !require_root("dynamic_children_reach_peer") {
        return;
    }
    let topology = Topology::start("ncexec");
    let site = tempfile::tempdir().expect("cannot create a temporary directory");
    fs::write(site.path().join("page"), "served through netcon\n").unwrap();
    let mut server = topology.netns.command(PYTHON);
    server
        .args([
            "-m",
            "http.server",
            "--bind",
            PEER_IP,
            "9601",
            "--directory",
        ])
        .arg(site.path());
    let mut server = Process::spawn(server, "http.server in the namespace");
    wait_for_listener(&topology.netns, 9601, &mut server);
    let launcher_program = c_launcher();
    let target = curl(&format!("http://{PEER_IP}:9601/page"));

    // The peer's address exists only in the topology's namespace, which only netcon reaches.
    // (No run without netcon here: from the host's namespace its packets would follow the
    // host's routes off this machine.)

    for launcher in launchers(launcher_program.path()) {
        let line = launcher.command_line(&target);
        let command = through_netcon(&topology, &line, false, site.path());
        let label = format!("{} curl", launcher.label);
        let run = run_bounded(command, &label, Duration::from_secs(30));
        assert!(
            run.stdout.contains("served through netcon"),
            "{label}: no page\n{run}"
        );
        assert!(!run.stderr.contains("netcon:"), "{label}\n{run}");
        if let RejectionSign::Exit(_) = launcher.rejection {
            run.assert_success();
        } else {
            assert!(
                run.stdout.lines().all(|line| !line.starts_with("failed")),
                "{label}\n{run}"
            );
        }
    }
    drop(server);
}

#[test]
fn script_interpreter_checked() {
    if !require_root("script_interpreter_checked") {
        return;
    }
    let topology = Topology::start("ncexec");
    let host = LoopbackServer::start();
    let probe = StaticProbe::build();
    let scripts = tempfile::tempdir().expect("cannot create a temporary directory");
    let static_script = scripts.path().join("static.script");
    fs::write(&static_script, format!("#!{}\n", probe.path.display())).unwrap();
    let shell_script = scripts.path().join("shell.script");
    fs::write(&shell_script, "#!/bin/sh\necho shell script ran\n").unwrap();
    for script in [&static_script, &shell_script] {
        fs::set_permissions(script, fs::Permissions::from_mode(0o755)).unwrap();
    }

    // Linux runs the static probe with the script's path and the arguments after it.
    let mut command = netcon_command(topology.socket(), "sh");
    command.arg("-c").arg(format!(
        "{} 127.0.0.1 {} libc",
        static_script.display(),
        host.port
    ));
    let run = run_bounded(command, "static interpreter", Duration::from_secs(30));
    assert_eq!(run.code(), Some(126), "{run}");
    let rejections = lines_starting(&run.stderr, REJECTED_LINE);
    assert_eq!(rejections.len(), 1, "{run}");
    let named = format!("{} is statically linked", probe.path.display());
    assert!(rejections[0].contains(&named), "{run}");

    let mut command = netcon_command(topology.socket(), PYTHON);
    command.args(["-c", PY_SUBPROCESS]).arg(&shell_script);
    let run = run_bounded(command, "shell script", Duration::from_secs(30));
    run.assert_success();
    assert_eq!(run.stdout, "shell script ran\nexit 0\n", "{run}");
    assert_eq!(host.accepted(), 0, "the probe reached the host's server");
}

#[test]
fn set_user_id_child_rejected() {
    if !require_root("set_user_id_child_rejected") {
        return;
    }
    let topology = Topology::start_with("ncexec", |options| {
        let allowed = ["--allow-uid", "0", "--allow-uid", &NOBODY_UID.to_string()];
        options.extra_args.extend(allowed.map(String::from));
    });
    let dir = tempfile::tempdir().expect("cannot create a temporary directory");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let program = dir.path().join("true-as-root");
    fs::copy("/bin/true", &program).unwrap();
    fs::set_permissions(&program, fs::Permissions::from_mode(0o4755)).unwrap();
    assert!(
        !on_nosuid_mount(dir.path()),
        "{} is mounted nosuid",
        dir.path().display()
    );

    // Root keeps its ids when it runs a set-user-ID-root program, so the loader honours
    // LD_PRELOAD. The user 65534 would become root, so the loader would ignore it.
    let line = [
        "sh".to_owned(),
        "-c".to_owned(),
        program.display().to_string(),
    ];
    for isolate in [false, true] {
        let as_root = through_netcon(&topology, &line, isolate, dir.path());
        let run = run_bounded(as_root, "as root", Duration::from_secs(30));
        run.assert_success();
        assert!(!run.stderr.contains("netcon:"), "isolate {isolate}\n{run}");
    }
    let command = through_netcon(&topology, &line, false, dir.path());
    let run = run_bounded(as_nobody(command), "as nobody", Duration::from_secs(30));
    assert_eq!(run.code(), Some(126), "{run}");
    let rejections = lines_starting(&run.stderr, REJECTED_LINE);
    assert_eq!(rejections.len(), 1, "{run}");
    let named = format!("{} is set-user-ID (to id 0)", program.display());
    assert!(rejections[0].contains(&named), "{run}");
    assert!(rejections[0].contains("run a copy without"), "{run}");

    // Under --isolate, nobody's user namespace does not map root, so exec ignores the bit
    // (the file shows as owned by 65534) and the program runs with the preload.
    let command = through_netcon(&topology, &line, true, dir.path());
    let run = run_bounded(
        as_nobody(command),
        "nobody isolated",
        Duration::from_secs(30),
    );
    run.assert_success();
    assert!(!run.stderr.contains("netcon:"), "{run}");
}

/// Returns `command` run as uid and gid 65534 without supplementary groups.
fn as_nobody(command: Command) -> Command {
    let mut wrapped = Command::new("setpriv");
    wrapped
        .arg(format!("--reuid={NOBODY_UID}"))
        .arg(format!("--regid={NOBODY_UID}"))
        .arg("--clear-groups")
        .arg(command.get_program())
        .args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => wrapped.env(key, value),
            None => wrapped.env_remove(key),
        };
    }
    wrapped
}

fn on_nosuid_mount(path: &Path) -> bool {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: c_path is NUL-terminated and stat is valid for writes.
    unsafe {
        let mut stat: libc::statvfs = std::mem::zeroed();
        libc::statvfs(c_path.as_ptr(), &mut stat) == 0 && stat.f_flag & libc::ST_NOSUID != 0
    }
}
