//! Helpers shared by the integration tests: a namespace with its `netcon-dp`, processes that are
//! killed with their whole process group, bounded runs and waits, and file hashing.

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

pub mod download;
pub mod loopback;

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use netcon_tools::topology::{Dataplane, DataplaneOptions, Netns, netcon_command};
use sha2::{Digest, Sha256};

/// The Debian interpreter, named by path because a `python3` found through `PATH` may be a
/// shell shim (pyenv) that starts more processes under the preload.
pub const PYTHON: &str = "/usr/bin/python3";

/// The kernel peer's address inside the namespace.
pub const PEER_IP: &str = "10.77.0.1";

/// netcon's own address, served by the stack in `netcon-dp`.
pub const NETCON_IP: &str = "10.77.0.2";

/// The kernel peer's IPv6 address inside the namespace.
pub const PEER_IP6: &str = "fd00::1";

/// netcon's own IPv6 address.
pub const NETCON_IP6: &str = "fd00::2";

/// A Python program that prints "intercepted" when its AF_INET and AF_INET6 stream sockets are
/// listed in /proc/net/unix, which lists every Unix socket of the namespace, socketpair ends
/// included.
const INTERCEPT_PROBE: &str = r#"
import os, socket
sockets = [socket.socket(family, socket.SOCK_STREAM) for family in (socket.AF_INET, socket.AF_INET6)]
inodes = [os.stat(f"/proc/self/fd/{sock.fileno()}").st_ino for sock in sockets]
with open("/proc/net/unix") as table:
    next(table)
    unix_inodes = {line.split()[6] for line in table}
print("intercepted" if all(str(inode) in unix_inodes for inode in inodes) else "not intercepted")
"#;

/// How long a process gets to exit after SIGTERM before its group is killed.
const TERM_GRACE: Duration = Duration::from_secs(3);

/// How much of a process's output a failure message shows, per stream.
const SHOWN_OUTPUT_BYTES: usize = 4000;

/// A namespace and the `netcon-dp` whose TAP sits in it. Fields drop in order, so the data
/// plane stops before the namespace is deleted.
pub struct Topology {
    pub dataplane: Dataplane,
    pub netns: Netns,
}

impl Topology {
    /// Creates a namespace named after `prefix`, starts `netcon-dp` for it with the default
    /// options and checks that the preload intercepts sockets. Panics with the reason when any
    /// step fails.
    pub fn start(prefix: &str) -> Topology {
        Topology::start_with(prefix, |_| {})
    }

    /// Like [`Topology::start`], after `adjust` has changed the options.
    pub fn start_with(prefix: &str, adjust: impl FnOnce(&mut DataplaneOptions)) -> Topology {
        let netns = Netns::create(prefix)
            .unwrap_or_else(|err| panic!("cannot create a namespace for {prefix}: {err}"));
        let mut options = DataplaneOptions::for_netns(&netns);
        adjust(&mut options);
        let dataplane = Dataplane::start(&options)
            .unwrap_or_else(|err| panic!("cannot start netcon-dp in {}: {err}", netns.name()));
        let topology = Topology { dataplane, netns };
        topology.assert_intercepting();
        topology
    }

    /// Panics unless the AF_INET and AF_INET6 stream sockets created through `netcon-ctl run`
    /// are Unix sockets underneath. Programs run through netcon live in the host namespace, so
    /// a preload that lets sockets through would send their traffic to the host's routes
    /// instead.
    pub fn assert_intercepting(&self) {
        let mut probe = netcon_command(self.socket(), PYTHON);
        probe.args(["-c", INTERCEPT_PROBE]);
        let run = run_bounded(probe, "interception probe", Duration::from_secs(15));
        assert!(
            run.succeeded() && run.stdout.trim() == "intercepted",
            "the preload does not turn AF_INET and AF_INET6 sockets into netcon sockets, so \
             this test does not run programs that could reach the host's network\n{run}"
        );
    }

    /// Returns the control socket path programs run through netcon connect to.
    pub fn socket(&self) -> &Path {
        self.dataplane.socket_path()
    }
}

/// A child process in a process group of its own, with its stdout and stderr collected by
/// threads. Dropping it stops the whole group (SIGTERM, then SIGKILL), so wrappers such as
/// `netcon-ctl run` cannot leave the program they started behind.
pub struct Process {
    child: Child,
    /// The exit status once the child has been reaped.
    status: Option<ExitStatus>,
    label: String,
    stdout: Collector,
    stderr: Collector,
}

impl Process {
    /// Spawns `command` with stdin closed; `label` names it in failure messages. Panics when
    /// the program cannot be started.
    pub fn spawn(mut command: Command, label: &str) -> Process {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = command
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {label} ({command:?}): {err}"));
        let stdout = Collector::start(child.stdout.take().expect("stdout is piped"));
        let stderr = Collector::start(child.stderr.take().expect("stderr is piped"));
        Process {
            child,
            status: None,
            label: label.to_owned(),
            stdout,
            stderr,
        }
    }

    /// Returns the process id, which is also its process group id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Returns the name given at spawn.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Returns the exit status when the process has exited, without blocking. The first call
    /// after the exit kills what is left of the process group and reaps the child.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() && has_exited(&self.child) {
            self.reap();
        }
        self.status
    }

    /// Returns what the process wrote on stdout and stderr so far.
    pub fn output_so_far(&self) -> (String, String) {
        (self.stdout.text(), self.stderr.text())
    }

    /// Waits up to `timeout` for the process to exit, stops its group if it has not, and
    /// returns the status and all output.
    pub fn finish(mut self, timeout: Duration) -> Finished {
        let deadline = Instant::now() + timeout;
        while self.try_wait().is_none() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        let timed_out = self.status.is_none();
        self.stop();

        self.stdout.wait_closed();
        self.stderr.wait_closed();
        Finished {
            label: self.label.clone(),
            status: self.status,
            timed_out,
            stdout: self.stdout.text(),
            stderr: self.stderr.text(),
        }
    }

    /// Sends SIGTERM to the process group, waits up to 3 s for the leader to exit, then kills
    /// the group and reaps the leader.
    fn stop(&mut self) {
        if self.status.is_some() {
            return;
        }
        if !has_exited(&self.child) {
            signal_group(&self.child, libc::SIGTERM);
            let deadline = Instant::now() + TERM_GRACE;
            while !has_exited(&self.child) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(20));
            }
        }
        self.reap();
    }

    /// Kills the rest of the group while the leader (exited or not) still holds the group id,
    /// then reaps the leader.
    fn reap(&mut self) {
        signal_group(&self.child, libc::SIGKILL);
        match self.child.wait() {
            Ok(status) => self.status = Some(status),
            Err(err) => eprintln!(
                "warning: cannot reap {} (pid {}): {err}",
                self.label,
                self.pid()
            ),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What a finished [`Process`] returned.
pub struct Finished {
    pub label: String,
    /// The exit status; `None` only when the process could not be reaped.
    pub status: Option<ExitStatus>,
    /// True when the process had to be stopped because it ran past its time.
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// Returns true when the process exited by itself with status 0.
    pub fn succeeded(&self) -> bool {
        !self.timed_out && self.status.is_some_and(|s| s.success())
    }

    /// Panics with the whole report unless the process exited by itself with status 0.
    pub fn assert_success(&self) {
        assert!(self.succeeded(), "{} failed\n{self}", self.label);
    }

    /// Returns the exit code, or `None` when the process timed out or died from a signal.
    pub fn code(&self) -> Option<i32> {
        if self.timed_out {
            return None;
        }
        self.status.and_then(|s| s.code())
    }
}

impl fmt::Display for Finished {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.timed_out, self.status) {
            (true, _) => writeln!(f, "status: timed out and stopped")?,
            (false, Some(status)) => writeln!(f, "status: {status}")?,
            (false, None) => writeln!(f, "status: unknown (not reaped)")?,
        }
        writeln!(f, "stdout:\n{}", tail(&self.stdout))?;
        write!(f, "stderr:\n{}", tail(&self.stderr))
    }
}

/// Runs `command` to the end, stopping it after `timeout`.
pub fn run_bounded(command: Command, label: &str, timeout: Duration) -> Finished {
    Process::spawn(command, label).finish(timeout)
}

/// Runs the command `make_command` builds until `not_ready` rejects the result or `timeout`
/// passes, and returns the last result. This waits for a listener that must not be probed by
/// a separate connection (a one-shot `iperf3 -s -1` would take the probe as its client).
pub fn run_until_ready(
    mut make_command: impl FnMut() -> Command,
    label: &str,
    run_timeout: Duration,
    timeout: Duration,
    not_ready: impl Fn(&Finished) -> bool,
) -> Finished {
    let deadline = Instant::now() + timeout;
    loop {
        let finished = run_bounded(make_command(), label, run_timeout);
        if !not_ready(&finished) || Instant::now() >= deadline {
            return finished;
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// Waits up to 10 s until a TCP socket listens on `port` inside `netns` (checked with `ss`,
/// which opens no connection). Panics when `server` exits first or the wait times out.
pub fn wait_for_listener(netns: &Netns, port: u16, server: &mut Process) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut ss = netns.command("ss");
        ss.args(["-Hltn", &format!("sport = :{port}")]);
        let listing = run_bounded(ss, "ss in the namespace", Duration::from_secs(5));
        listing.assert_success();
        if !listing.stdout.trim().is_empty() {
            return;
        }

        if let Some(status) = server.try_wait() {
            let (stdout, stderr) = server.output_so_far();
            panic!(
                "{} exited ({status}) before listening on port {port}\nstdout:\n{stdout}\nstderr:\n{stderr}",
                server.label()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{} is not listening on port {port} in {} after 10 s",
            server.label(),
            netns.name()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Writes `len` bytes from `/dev/urandom` to `path`.
pub fn write_random_file(path: &Path, len: u64) {
    let mut source = File::open("/dev/urandom")
        .expect("cannot open /dev/urandom")
        .take(len);
    let mut file =
        File::create(path).unwrap_or_else(|err| panic!("cannot create {}: {err}", path.display()));
    let copied = io::copy(&mut source, &mut file)
        .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
    assert_eq!(copied, len, "short read from /dev/urandom");
    file.flush().expect("flush of the random file failed");
}

/// Returns the SHA-256 of the file at `path` as lowercase hex.
pub fn sha256_file(path: &Path) -> String {
    let mut file =
        File::open(path).unwrap_or_else(|err| panic!("cannot open {}: {err}", path.display()));
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let read = file
            .read(&mut buffer)
            .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Returns the targets of the open fds of process `pid`, one per line, for failure messages.
pub fn describe_fds(pid: u32) -> String {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return format!("(cannot read /proc/{pid}/fd)");
    };
    let mut lines: Vec<String> = entries
        .flatten()
        .map(|entry| {
            let target = std::fs::read_link(entry.path())
                .map_or_else(|err| format!("({err})"), |t| t.display().to_string());
            format!("{} -> {target}", entry.file_name().to_string_lossy())
        })
        .collect();
    lines.sort();
    lines.join("\n")
}

/// Returns true when a network interface named `name` exists in the caller's namespace.
pub fn interface_exists(name: &str) -> bool {
    Path::new(&format!("/sys/class/net/{name}")).exists()
}

/// Returns true when `child` has exited, without reaping it, so its pid (and the group id it
/// names) stays reserved.
fn has_exited(child: &Child) -> bool {
    // SAFETY: siginfo_t is plain data, for which all zero bytes are a valid value.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
    // SAFETY: `info` is a valid, writable siginfo_t. WNOWAIT leaves the child waitable, so
    // std's later wait still reaps it.
    let result = unsafe { libc::waitid(libc::P_PID, child.id(), &mut info, flags) };
    // SAFETY: waitid filled `info` (or left it zeroed when no child changed state), and
    // si_pid is then valid to read.
    result == 0 && unsafe { info.si_pid() } != 0
}

/// Sends `signal` to the process group that `child` leads.
fn signal_group(child: &Child, signal: libc::c_int) {
    let group = -(child.id() as libc::pid_t);
    // SAFETY: kill has no memory preconditions. The caller has not reaped the leader, so the
    // group id cannot have been reused. ESRCH (nothing left in the group) is harmless.
    unsafe { libc::kill(group, signal) };
}

/// One output stream of a [`Process`], read into a shared buffer by a thread until EOF.
struct Collector {
    buffer: Arc<Mutex<Vec<u8>>>,
    closed: Receiver<()>,
}

impl Collector {
    fn start(mut stream: impl Read + Send + 'static) -> Collector {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let (sender, closed) = mpsc::channel();
        let shared = Arc::clone(&buffer);
        thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Ok(read @ 1..) = stream.read(&mut chunk) {
                shared
                    .lock()
                    .expect("output buffer lock")
                    .extend_from_slice(&chunk[..read]);
            }
            let _ = sender.send(());
        });
        Collector { buffer, closed }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.buffer.lock().expect("output buffer lock")).into_owned()
    }

    /// Waits up to 2 s for EOF. A process outside the killed group can keep the pipe open, and
    /// the test must not hang on it.
    fn wait_closed(&self) {
        let _ = self.closed.recv_timeout(Duration::from_secs(2));
    }
}

/// Returns the last 4000 bytes of `text` (at a char boundary), marked when cut.
fn tail(text: &str) -> String {
    if text.len() <= SHOWN_OUTPUT_BYTES {
        return text.to_owned();
    }
    let mut start = text.len() - SHOWN_OUTPUT_BYTES;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("[... {start} bytes cut ...]\n{}", &text[start..])
}

/// Returns the version of the installed Debian package `package` (`dpkg-query`). Panics when
/// it is not installed, naming the README's test command that installs it.
pub fn package_version(package: &str) -> String {
    let output = Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", package])
        .output()
        .unwrap_or_else(|err| panic!("cannot run dpkg-query for {package}: {err}"));
    let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(
        output.status.success() && !version.is_empty(),
        "Debian package {package} is not installed; install it with the README's test command"
    );
    version
}

/// Writes one row of the compatibility table (program, version, role, result) to
/// `CARGO_TARGET_TMPDIR/compat/PROGRAM-ROLE.tsv`, which the README's table is copied from.
pub fn record_compat(program: &str, version: &str, role: &str, result: &str) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("compat");
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|err| panic!("cannot create {}: {err}", dir.display()));
    let file = dir.join(format!("{program}-{role}.tsv").replace([' ', '/'], "_"));
    let row = format!("{program}\t{version}\t{role}\t{result}\n");
    std::fs::write(&file, row)
        .unwrap_or_else(|err| panic!("cannot write {}: {err}", file.display()));
    println!("compatibility: {program} {version}, {role}: {result}");
}

/// Waits up to `timeout` until a TCP connection from inside `netns` to netcon's address on
/// `port` succeeds, so a server run through netcon (whose listener `ss` cannot see) is ready.
/// Each probe connects and closes at once. Panics when `server` exits first or time runs out.
pub fn wait_for_netcon_listener(netns: &Netns, port: u16, server: &mut Process, timeout: Duration) {
    wait_for_connect(|| netns.command("bash"), NETCON_IP, port, server, timeout);
}

/// Waits up to `timeout` until a TCP connection to `ip`:`port` from the bash that `shell`
/// returns succeeds. Each probe connects and closes at once. Panics when `server` exits first
/// or time runs out.
pub fn wait_for_connect(
    shell: impl Fn() -> Command,
    ip: &str,
    port: u16,
    server: &mut Process,
    timeout: Duration,
) {
    let deadline = Instant::now() + timeout;
    let probe = format!("exec 3<>/dev/tcp/{ip}/{port}");
    loop {
        let mut command = shell();
        command.args(["-c", &probe]);
        if run_bounded(command, "connect probe", Duration::from_secs(3)).succeeded() {
            return;
        }
        if let Some(status) = server.try_wait() {
            let (stdout, stderr) = server.output_so_far();
            panic!(
                "{} exited ({status}) before listening on port {port}\nstdout:\n{stdout}\nstderr:\n{stderr}",
                server.label()
            );
        }
        if Instant::now() >= deadline {
            let (stdout, stderr) = server.output_so_far();
            panic!(
                "{} accepts no connection on {ip}:{port} after {timeout:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
                server.label()
            );
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// What one wrk run reported.
#[derive(Debug, Default)]
pub struct WrkReport {
    pub requests: u64,
    /// Connect, read, write and timeout errors added up.
    pub socket_errors: u64,
    pub non_success: u64,
    pub output: String,
}

impl WrkReport {
    /// Asserts that wrk completed requests, all of them without socket errors and with 2xx or
    /// 3xx answers. `server_log` is added to the message on socket errors.
    pub fn assert_clean(&self, server_log: &str) {
        assert!(
            self.requests > 0,
            "wrk completed no request\n{}",
            self.output
        );
        assert_eq!(
            self.socket_errors, 0,
            "wrk saw socket errors\n{}\n{server_log}",
            self.output
        );
        assert_eq!(
            self.non_success, 0,
            "wrk saw non-2xx answers\n{}",
            self.output
        );
    }
}

/// Runs wrk from inside `netns` against `url` for `seconds` with `connections` connections on
/// two threads. wrk's per-request timeout is raised from 2 s to 10 s: the data plane's worker
/// shares its core with the servers under test, and a request that still times out is lost.
/// Panics when wrk fails.
pub fn run_wrk(netns: &Netns, url: &str, seconds: u32, connections: u32) -> WrkReport {
    let mut wrk = netns.command("wrk");
    wrk.args([
        "-t2",
        &format!("-c{connections}"),
        &format!("-d{seconds}s"),
        "--timeout",
        "10s",
        url,
    ]);
    let run = run_bounded(
        wrk,
        "wrk in the namespace",
        Duration::from_secs(seconds as u64 + 30),
    );
    run.assert_success();
    parse_wrk(&run.stdout)
}

/// Reads the request count, the socket errors and the non-2xx/3xx count from wrk's output.
fn parse_wrk(output: &str) -> WrkReport {
    let mut report = WrkReport {
        output: output.to_owned(),
        ..WrkReport::default()
    };
    for line in output.lines().map(str::trim) {
        if let Some((count, _)) = line.split_once(" requests in ") {
            report.requests = count.trim().parse().unwrap_or(0);
        } else if let Some(errors) = line.strip_prefix("Socket errors:") {
            report.socket_errors = errors
                .split(',')
                .filter_map(|part| part.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum();
        } else if let Some(count) = line.strip_prefix("Non-2xx or 3xx responses:") {
            report.non_success = count.trim().parse().unwrap_or(0);
        }
    }
    report
}

/// Creates a temporary directory that every user may read and search (mode 0755), for
/// servers that switch to an unprivileged user.
pub fn shared_temp_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("cannot create a temporary directory");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("cannot make the temporary directory readable");
    dir
}

/// Returns the uid of the user `name` (`id -u`). Panics when the user does not exist.
pub fn user_id(name: &str) -> u32 {
    let output = Command::new("id")
        .args(["-u", name])
        .output()
        .unwrap_or_else(|err| panic!("cannot run id for {name}: {err}"));
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("user {name} does not exist"))
}

/// Starts a forking socat echo server on 10.77.0.1:`port` inside the topology's namespace and
/// waits until it listens.
pub fn start_socat_echo(topology: &Topology, port: u16) -> Process {
    let mut command = topology.netns.command("socat");
    command.args([
        &format!("TCP4-LISTEN:{port},bind={PEER_IP},fork,reuseaddr"),
        "EXEC:cat",
    ]);
    let mut server = Process::spawn(command, "socat echo server in the namespace");
    wait_for_listener(&topology.netns, port, &mut server);
    server
}

/// Waits until `process` has printed `needle` on stdout and returns its stdout so far. Panics
/// with both outputs after `timeout`.
pub fn wait_for_stdout(process: &Process, needle: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let (stdout, stderr) = process.output_so_far();
        if stdout.contains(needle) {
            return stdout;
        }
        assert!(
            Instant::now() < deadline,
            "{} did not print {needle:?} in {timeout:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
            process.label()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// The environment variable that enables the long load runs.
pub const LONG_TESTS_ENV: &str = "NETCON_LONG_TESTS";

/// Returns true when `NETCON_LONG_TESTS=1`; otherwise prints that `test` was skipped.
pub fn long_tests_enabled(test: &str) -> bool {
    if std::env::var(LONG_TESTS_ENV).is_ok_and(|v| v == "1") {
        return true;
    }
    println!("skipped {test}: a long run (set {LONG_TESTS_ENV}=1 to run it)");
    false
}

/// A C program compiled with gcc into a temporary directory, which is removed on drop.
pub struct CProgram {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl CProgram {
    /// Compiles `source` with `gcc -O1 -Wall -Werror -pthread` into a program named `name`.
    /// Panics with gcc's output when the compilation fails.
    pub fn compile(name: &str, source: &str) -> CProgram {
        CProgram::compile_with(name, source, &[])
    }

    /// Like [`CProgram::compile`], with `flags` (such as `-static`) added to gcc's.
    pub fn compile_with(name: &str, source: &str, flags: &[&str]) -> CProgram {
        let dir = tempfile::tempdir().expect("cannot create a temporary directory");
        let source_path = dir.path().join(format!("{name}.c"));
        std::fs::write(&source_path, source).expect("cannot write the C source");
        let path = dir.path().join(name);
        let mut gcc = Command::new("gcc");
        gcc.args(["-O1", "-Wall", "-Werror", "-pthread"])
            .args(flags)
            .arg("-o")
            .arg(&path)
            .arg(&source_path);
        let run = run_bounded(gcc, &format!("gcc {name}.c"), Duration::from_secs(60));
        assert!(run.succeeded(), "cannot compile {name}.c\n{run}");
        CProgram { _dir: dir, path }
    }

    /// Returns the compiled program's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns the path as a string, for command lines.
    pub fn program(&self) -> &str {
        self.path.to_str().expect("temporary paths are UTF-8")
    }
}

/// Waits up to `timeout` until `process` has written `needle` on stdout. Panics when the
/// process exits first or the wait times out, showing its output.
pub fn wait_for_output(process: &mut Process, needle: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let (stdout, stderr) = process.output_so_far();
        if stdout.contains(needle) {
            return;
        }
        if let Some(status) = process.try_wait() {
            let (stdout, stderr) = process.output_so_far();
            panic!(
                "{} exited ({status}) before printing {needle:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
                process.label()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{} did not print {needle:?} within {timeout:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
            process.label()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Returns the CPU time process `pid` has used (utime + stime from `/proc/PID/stat`), in clock
/// ticks, or `None` when the process is gone.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces, so fields are counted after its `)`:
    // utime and stime are fields 14 and 15, the 12th and 13th after the name.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Returns the share of one core that process `pid` used during `window` (1.0 is one busy
/// core), measured from its CPU time before and after; panics when the process is gone.
pub fn cpu_share(pid: u32, window: Duration) -> f64 {
    let before = cpu_ticks(pid).unwrap_or_else(|| panic!("process {pid} is gone"));
    thread::sleep(window);
    let after = cpu_ticks(pid).unwrap_or_else(|| panic!("process {pid} is gone"));
    // SAFETY: sysconf has no memory preconditions.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (after - before) as f64 / ticks_per_second / window.as_secs_f64()
}

/// Polls `condition` every 50 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Loads the nftables `ruleset` (the syntax of `nft -f`) into `netns`'s own tables. Panics
/// with nft's output when it is rejected.
pub fn load_nft_rules(netns: &Netns, ruleset: &str) {
    let mut file = tempfile::NamedTempFile::new().expect("cannot create a temporary file");
    file.write_all(ruleset.as_bytes())
        .expect("cannot write the nftables rules");
    let mut nft = netns.command("nft");
    nft.arg("-f").arg(file.path());
    let run = run_bounded(nft, "nft -f in the namespace", Duration::from_secs(15));
    assert!(run.succeeded(), "nft rejected the rules\n{ruleset}\n{run}");
}

/// Sends `signal` to process `pid`. Panics when the process does not exist.
pub fn send_signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill has no memory preconditions; the caller names a process it started and
    // has not reaped.
    let result = unsafe { libc::kill(pid as libc::pid_t, signal) };
    assert_eq!(result, 0, "cannot send signal {signal} to pid {pid}");
}
