//! Several `netcon-dp` instances on one layer-2 segment. The segment is a namespace with a
//! Linux bridge, which stands in for an overlay such as ZeroTier or VXLAN and carries the
//! kernel peer's address. Root prepares a TAP on it for each unprivileged user, and each
//! `netcon-dp` runs as its user. The programs behind an instance run in a namespace holding only loopback, so their
//! INET traffic can go nowhere but through netcon. Only std, tempfile and `netcon_tools` are
//! used, so a benchmark can reuse this file as it is.

// Each test binary that includes this module uses only part of it.
#![allow(dead_code)]

pub mod throughput;

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use netcon_tools::topology::{ChildGuard, Netns, binary_path};

/// The first three bytes of every address on the segment (a /24).
pub const SUBNET: &str = "10.77.0";

/// The kernel peer's address, on the bridge.
pub const KERNEL_IP: &str = "10.77.0.1";

/// The bridge's name inside the segment's namespace.
pub const BRIDGE: &str = "ncbr0";

/// How long an instance gets to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Makes a private `/dev/net/tun` of mode `$1` and execs the rest of the command line.
///
/// Debian's udev gives `/dev/net/tun` mode 0666, so any user may open it, but a machine
/// without udev (a container, say) keeps the kernel's 0600. The script runs inside a mount
/// namespace of its own (`unshare --mount`), so it mounts a tmpfs over `/dev/net` there and
/// leaves the host's device node untouched.
const PRIVATE_CLONE_DEVICE: &str = "mode=$1; shift; \
     mount -t tmpfs -o mode=0755,size=16k netcon-tun /dev/net \
     && mknod -m \"$mode\" /dev/net/tun c 10 200 && exec \"$@\"";

/// The mode udev gives `/dev/net/tun`: every user may open it.
pub const OPEN_CLONE_DEVICE: u32 = 0o666;

/// Returns a command that runs `netcon-dp ARGS` as `user` inside `netns`, with a private
/// `/dev/net/tun` of mode `clone_device_mode` (see [`PRIVATE_CLONE_DEVICE`]). Every step
/// execs in place, so the spawned child's pid is netcon-dp's.
pub fn dataplane_command(
    netns: &Netns,
    user: &User,
    clone_device_mode: u32,
    args: &[&str],
) -> Command {
    let mut command = Command::new("unshare");
    command
        .args(["--mount", "--propagation", "private", "--"])
        .args(["sh", "-c", PRIVATE_CLONE_DEVICE, "sh"])
        .arg(format!("{clone_device_mode:o}"))
        .args(["ip", "netns", "exec", netns.name(), "setpriv"])
        .args(user.setpriv_args())
        .arg(binary_path("netcon-dp"))
        .args(args);
    command
}

/// An existing system user that a test runs programs as.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl User {
    /// Looks `name` up with `getent passwd`. Panics when the user does not exist.
    pub fn lookup(name: &str) -> User {
        let output = Command::new("getent")
            .args(["passwd", name])
            .output()
            .unwrap_or_else(|err| panic!("cannot run getent for {name}: {err}"));
        let entry = String::from_utf8_lossy(&output.stdout);
        let fields: Vec<&str> = entry.trim().split(':').collect();
        let id = |index: usize| -> u32 {
            fields
                .get(index)
                .and_then(|field| field.parse().ok())
                .unwrap_or_else(|| panic!("user {name} not found in the passwd database"))
        };
        User {
            name: name.to_owned(),
            uid: id(2),
            gid: id(3),
        }
    }

    /// Returns the arguments of `setpriv` that switch to this user with no supplementary
    /// groups, ending with `--`.
    pub fn setpriv_args(&self) -> Vec<String> {
        vec![
            format!("--reuid={}", self.uid),
            format!("--regid={}", self.gid),
            "--clear-groups".to_owned(),
            "--".to_owned(),
        ]
    }

    /// Returns a command that runs `program` as this user, keeping the environment.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("setpriv");
        command.args(self.setpriv_args()).arg(program);
        command
    }
}

/// A temporary directory owned by one user, mode 0700, removed on drop.
#[derive(Debug)]
pub struct UserDir {
    dir: tempfile::TempDir,
    uid: u32,
    gid: u32,
}

impl UserDir {
    /// Creates the directory and hands it to `user`. Panics when that fails.
    pub fn create(user: &User) -> UserDir {
        let dir = tempfile::tempdir().expect("cannot create a temporary directory");
        let user_dir = UserDir {
            dir,
            uid: user.uid,
            gid: user.gid,
        };
        user_dir.hand_over(user_dir.path());
        fs::set_permissions(user_dir.path(), fs::Permissions::from_mode(0o700))
            .expect("cannot set the directory's mode");
        user_dir
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `contents` to `name` inside the directory, owned by the user, and returns the
    /// file's path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path().join(name);
        if let Some(parent) = path.parent() {
            self.create_dirs(parent);
        }
        fs::write(&path, contents)
            .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
        self.hand_over(&path);
        path
    }

    /// Creates `path` and its missing parents inside the directory, owned by the user.
    pub fn create_dirs(&self, path: &Path) {
        fs::create_dir_all(path)
            .unwrap_or_else(|err| panic!("cannot create {}: {err}", path.display()));
        let mut current = path;
        while current.starts_with(self.path()) && current != self.path() {
            self.hand_over(current);
            current = current
                .parent()
                .expect("a path below the directory has a parent");
        }
    }

    /// Gives `path` to the directory's user.
    pub fn hand_over(&self, path: &Path) {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))
            .unwrap_or_else(|err| panic!("cannot chown {}: {err}", path.display()));
    }
}

/// A namespace holding the bridge [`BRIDGE`], whose kernel side has [`KERNEL_IP`]/24. It is
/// the segment every instance's TAP joins, and the kernel peer of the programs behind them.
#[derive(Debug)]
pub struct Segment {
    netns: Netns,
}

impl Segment {
    /// Creates the namespace and the bridge. Panics when a step fails.
    pub fn create(prefix: &str) -> Segment {
        let netns = Netns::create(prefix)
            .unwrap_or_else(|err| panic!("cannot create a namespace for {prefix}: {err}"));
        let segment = Segment { netns };
        segment.ip(&["link", "set", "dev", "lo", "up"]);
        segment.ip(&["link", "add", BRIDGE, "type", "bridge"]);
        segment.ip(&["addr", "add", &format!("{KERNEL_IP}/24"), "dev", BRIDGE]);
        segment.ip(&["link", "set", "dev", BRIDGE, "up"]);
        segment
    }

    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    /// Returns a command that runs `program` in the segment's namespace, as root.
    pub fn command(&self, program: &str) -> Command {
        self.netns.command(program)
    }

    /// Runs `ip -n NETNS ARGS` and panics with its stderr when it fails.
    pub fn ip(&self, args: &[&str]) {
        let output = Command::new("ip")
            .args(["-n", self.netns.name()])
            .args(args)
            .output()
            .unwrap_or_else(|err| panic!("cannot run ip {}: {err}", args.join(" ")));
        assert!(
            output.status.success(),
            "`ip -n {} {}` failed: {}",
            self.netns.name(),
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }

    /// Prepares the TAP `name` for `owner` the way an administrator would for rootless use:
    /// a persistent multi-queue TAP owned by that user, a port of the bridge, up.
    pub fn add_tap(&self, name: &str, owner: &User) {
        let uid = owner.uid.to_string();
        self.ip(&[
            "tuntap",
            "add",
            "dev",
            name,
            "mode",
            "tap",
            "user",
            &uid,
            "multi_queue",
        ]);
        self.ip(&["link", "set", "dev", name, "master", BRIDGE]);
        self.ip(&["link", "set", "dev", name, "up"]);
    }

    /// Returns the MAC addresses the bridge has learnt, each with the port it was seen on.
    pub fn learnt_macs(&self) -> Vec<(String, String)> {
        let output = Command::new("bridge")
            .args(["-n", self.netns.name(), "fdb", "show", "br", BRIDGE])
            .output()
            .expect("cannot run bridge fdb show");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|line| !line.contains("permanent"))
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                let mac = words.next()?.to_owned();
                let port = words.skip_while(|word| *word != "dev").nth(1)?.to_owned();
                Some((mac, port))
            })
            .collect()
    }
}

/// A namespace of its own with a veth port on the segment's bridge and the kernel's TCP: the
/// reference a transfer between instances is compared with.
#[derive(Debug)]
pub struct KernelHost {
    netns: Netns,
    ip: String,
}

impl KernelHost {
    /// Creates the namespace and a veth pair whose one end joins the bridge and whose other
    /// end has `SUBNET.host`/24. Panics when a step fails.
    pub fn attach(segment: &Segment, host: u8) -> KernelHost {
        let netns = Netns::create("nckhost")
            .unwrap_or_else(|err| panic!("cannot create the kernel host's namespace: {err}"));
        let ip = format!("{SUBNET}.{host}");
        let port = format!("ncvp{host}");
        segment.ip(&[
            "link",
            "add",
            &port,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            netns.name(),
        ]);
        segment.ip(&["link", "set", "dev", &port, "master", BRIDGE]);
        segment.ip(&["link", "set", "dev", &port, "up"]);
        let inside = |args: &[&str]| {
            let status = Command::new("ip")
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
        };
        inside(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
        inside(&["link", "set", "dev", "eth0", "up"]);
        inside(&["link", "set", "dev", "lo", "up"]);
        KernelHost { netns, ip }
    }

    pub fn ip(&self) -> &str {
        &self.ip
    }

    /// Returns a command that runs `program` in this host's namespace, as root.
    pub fn command(&self, program: &str) -> Command {
        self.netns.command(program)
    }
}

/// How one instance is started.
#[derive(Debug, Clone)]
pub struct InstanceOptions {
    /// The last byte of the stack's address on the segment.
    pub host: u8,
    /// `netcon-dp --workers`.
    pub workers: usize,
}

/// A `netcon-dp` run by an unprivileged user on a TAP that root prepared for that user on the
/// segment. Dropping it stops the process (SIGTERM, then SIGKILL) and deletes the TAP.
#[derive(Debug)]
pub struct Instance {
    // Drops first, so netcon-dp has stopped before its TAP is deleted.
    process: ChildGuard,
    user: User,
    tap: String,
    ip: String,
    netns_name: String,
    /// The namespace the instance's programs run in, holding only loopback.
    apps: Netns,
    /// The directory of the control socket, owned by the user.
    socket_dir: UserDir,
    /// The directory of netcon-dp's stderr file, owned by root.
    log_dir: tempfile::TempDir,
}

impl Instance {
    /// Prepares a TAP for `user` on `segment` and starts `netcon-dp` on it as that user, in the
    /// segment's namespace, then waits up to 10 s for its ready line. Panics with netcon-dp's
    /// stderr when it does not get ready.
    pub fn start(segment: &Segment, user: &User, options: &InstanceOptions) -> Instance {
        let tap = unique_tap_name();
        segment.add_tap(&tap, user);
        let ip = format!("{SUBNET}.{}", options.host);
        let socket_dir = UserDir::create(user);
        let log_dir = tempfile::tempdir().expect("cannot create a temporary directory");
        let stderr_path = log_dir.path().join("stderr");

        let socket = socket_dir.path().join("control.sock");
        let (address, workers) = (format!("{ip}/24"), options.workers.to_string());
        let args = [
            "--tap",
            &tap,
            "--address",
            &address,
            "--workers",
            &workers,
            "--socket",
            socket.to_str().expect("temporary paths are UTF-8"),
        ];
        let mut command = dataplane_command(segment.netns(), user, OPEN_CLONE_DEVICE, &args);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr_path).expect("cannot create the stderr file"));

        let mut child = command
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start netcon-dp for {}: {err}", user.name));
        let lines = forward_lines(child.stdout.take().expect("stdout is piped"));
        let apps = Netns::create("ncapps")
            .unwrap_or_else(|err| panic!("cannot create a namespace for programs: {err}"));
        let status = apps
            .command("ip")
            .args(["link", "set", "dev", "lo", "up"])
            .status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "cannot bring lo up in {}",
            apps.name()
        );
        let mut instance = Instance {
            process: ChildGuard::new(child, "netcon-dp instance"),
            user: user.clone(),
            tap,
            ip,
            netns_name: segment.netns().name().to_owned(),
            apps,
            socket_dir,
            log_dir,
        };
        if let Err(reason) = instance.wait_ready(&lines) {
            panic!(
                "netcon-dp as {} on {} did not get ready: {reason}\nstderr:\n{}",
                user.name,
                instance.tap,
                instance.stderr_text()
            );
        }
        instance
    }

    fn wait_ready(&mut self, lines: &Receiver<String>) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match lines.recv_timeout(Duration::from_millis(50)) {
                Ok(line) if line.trim_end() == "netcon-dp ready" => return Ok(()),
                Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => thread::sleep(Duration::from_millis(20)),
            }
            match self.process.child_mut().try_wait() {
                Ok(Some(status)) => return Err(format!("it exited ({status})")),
                Ok(None) => {}
                Err(err) => return Err(format!("cannot poll it: {err}")),
            }
            if Instant::now() >= deadline {
                return Err(format!("no ready line within {READY_TIMEOUT:?}"));
            }
        }
    }

    /// Returns the control socket's path.
    pub fn socket(&self) -> PathBuf {
        self.socket_dir.path().join("control.sock")
    }

    /// Returns the stack's address.
    pub fn ip(&self) -> &str {
        &self.ip
    }

    pub fn user(&self) -> &User {
        &self.user
    }

    pub fn tap(&self) -> &str {
        &self.tap
    }

    /// Returns netcon-dp's pid (the launch commands exec in place, so it is the child's).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Returns a command that runs `program` as the instance's user through this instance, in
    /// a namespace holding only loopback: `netcon-ctl run --socket SOCKET -- program`, with
    /// HOME set to `home`.
    pub fn command(&self, home: &Path, program: &str) -> Command {
        let mut command = self.apps.command("setpriv");
        command
            .args(self.user.setpriv_args())
            .arg(binary_path("netcon-ctl"))
            .arg("run")
            .arg("--socket")
            .arg(self.socket())
            .arg("--")
            .arg(program)
            .env("HOME", home);
        command
    }

    /// Returns what netcon-dp wrote on stderr so far.
    pub fn stderr_text(&self) -> String {
        let path = self.log_dir.path().join("stderr");
        fs::read_to_string(&path).unwrap_or_else(|err| format!("(cannot read stderr: {err})"))
    }

    /// Returns the MAC the stack uses, from netcon-dp's start-up line (`mac 02:6e:…,`).
    pub fn mac(&self) -> String {
        let log = self.stderr_text();
        log.split("mac ")
            .nth(1)
            .and_then(|rest| rest.split([',', ' ', ')']).next())
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("netcon-dp logged no MAC\nstderr:\n{log}"))
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // Stops netcon-dp; the guard's own drop then finds it reaped.
        let child = self.process.child_mut();
        if let Err(err) = netcon_tools::topology::stop_child(child) {
            eprintln!("warning: cannot stop netcon-dp on {}: {err}", self.tap);
        }
        let deleted = Command::new("ip")
            .args(["-n", &self.netns_name, "link", "delete", "dev", &self.tap])
            .status();
        if !deleted.is_ok_and(|status| status.success()) {
            eprintln!(
                "warning: cannot delete TAP {} in {}",
                self.tap, self.netns_name
            );
        }
    }
}

/// Returns a TAP name unique on this machine while this process runs: "nc", up to 6 hex
/// digits of the pid (pid_max is at most 2^22), "i" and a counter, at most 15 bytes.
pub fn unique_tap_name() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let id = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("nc{:x}i{:x}", std::process::id(), id % 0x10_0000)
}

/// Sends each stdout line on the returned channel from a thread that reads until EOF, so
/// netcon-dp never blocks on a full pipe.
fn forward_lines(stdout: impl io::Read + Send + 'static) -> Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = sender.send(line);
        }
    });
    receiver
}
