//! Security and bad input on the control socket: who may connect (SO_PEERCRED against
//! `--allow-uid`), requests about sockets the caller does not hold, malformed and oversized
//! messages, attached fds the service did not ask for, a client that never reads its replies,
//! and limits on what netcon-dp holds. netcon-dp must answer with an error or drop the client,
//! never crash, leak fds or stop serving others.

mod common;

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    CProgram, Finished, NETCON_IP, PEER_IP, PYTHON, Process, Topology, cpu_share, describe_fds,
    run_bounded, start_socat_echo, wait_for_output, wait_until,
};
use netcon_control::wire::{OPT_MAX, REPLY_LEN, REQUEST_LEN};
use netcon_control::{Op, Reply, Request, WireAddr, fdpass};
use netcon_tools::topology::{DataplaneOptions, Netns, binary_path, netcon_command, require_root};

/// The raw control socket client, for requests sent as another user.
const PROBE_SOURCE: &str = include_str!("programs/security_probe.c");

/// The uid and name of the unprivileged user the tests switch to.
const NOBODY_UID: u32 = 65534;

/// How long the service gets to answer one request.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// Creates an AF_INET stream socket with the preload loaded; prints "created" or the errno
/// name of the failure.
const SOCKET_PROBE: &str = r#"
import errno, socket
try:
    socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
    print("created")
except OSError as err:
    print(errno.errorcode.get(err.errno, err.errno))
"#;

/// Connects to HOST:PORT, echoes one line through it and prints "echoed".
const ECHO_PROBE: &str = r#"
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10) as conn:
    conn.sendall(b"ping\n")
    assert conn.makefile("rb").readline() == b"ping\n"
print("echoed")
"#;

/// Creates an AF_INET stream socket, prints the inode number of its fd, and keeps it open for
/// 60 s.
const SOCKET_HOLDER: &str = r#"
import os, socket, time
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
print(os.fstat(sock.fileno()).st_ino, flush=True)
time.sleep(60)
"#;

/// Mounts a FUSE filesystem on MOUNTPOINT that contains one empty regular file, "file", with
/// inode number INODE, so a file can share its number with any socket. Prints "mounted" once
/// it serves, and exits when MOUNTPOINT is unmounted.
const SAME_INODE_FS: &str = r#"
import errno, os, stat, sys, llfuse

mountpoint, file_inode = sys.argv[1], int(sys.argv[2])

class SameInode(llfuse.Operations):
    def getattr(self, inode, ctx=None):
        entry = llfuse.EntryAttributes()
        entry.st_ino = inode
        if inode == llfuse.ROOT_INODE:
            entry.st_mode, entry.st_nlink = stat.S_IFDIR | 0o755, 2
        elif inode == file_inode:
            entry.st_mode, entry.st_nlink = stat.S_IFREG | 0o644, 1
        else:
            raise llfuse.FUSEError(errno.ENOENT)
        entry.st_size = 0
        entry.st_uid, entry.st_gid = os.getuid(), os.getgid()
        entry.attr_timeout = entry.entry_timeout = 60
        return entry

    def lookup(self, parent, name, ctx=None):
        if parent == llfuse.ROOT_INODE and name == b"file":
            return self.getattr(file_inode)
        raise llfuse.FUSEError(errno.ENOENT)

    def open(self, inode, flags, ctx):
        return inode

    def read(self, fh, offset, size):
        return b""

llfuse.init(SameInode(), mountpoint, ["fsname=netcon-same-inode", "ro"])
print("mounted", flush=True)
try:
    llfuse.main(workers=1)
finally:
    llfuse.close(unmount=False)
"#;

/// Unmounts a mount point when dropped, so a failed test leaves no FUSE mount behind.
struct Mounted<'a>(&'a Path);

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        let status = Command::new("umount").arg(self.0).status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!("failed to unmount {}: {status:?}", self.0.display());
        }
    }
}

/// Opens AF_INET stream sockets until socket() fails, prints "failed ERRNO after N", then
/// holds the sockets for 30 s.
const SOCKET_HOARDER: &str = r#"
import errno, socket, time
held = []
while len(held) < 100000:
    try:
        held.append(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    except OSError as err:
        print(f"failed {errno.errorcode.get(err.errno, err.errno)} after {len(held)}", flush=True)
        break
time.sleep(30)
"#;

/// What came back for one request.
#[derive(Debug)]
enum Answer {
    Reply(Box<Reply>),
    /// A message that is not a reply, with its length.
    Undecodable(usize),
    /// The service closed the connection.
    Closed,
    Timeout,
}

/// A connection to the control socket that speaks the RPC directly, without the preload.
struct ControlClient {
    fd: OwnedFd,
}

impl ControlClient {
    fn connect(path: &Path) -> ControlClient {
        // SAFETY: socket takes plain integers and returns a fresh fd or -1.
        let raw =
            unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) };
        assert!(raw >= 0, "socket: {}", io::Error::last_os_error());
        // SAFETY: raw is a fresh fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: an all-zero sockaddr_un is valid.
        let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        let bytes = path.as_os_str().as_encoded_bytes();
        assert!(bytes.len() < addr.sun_path.len(), "socket path too long");
        for (dst, &src) in addr.sun_path.iter_mut().zip(bytes) {
            *dst = src as libc::c_char;
        }
        let len = size_of::<libc::sockaddr_un>() as libc::socklen_t;
        // SAFETY: addr is a valid sockaddr_un of the length given.
        let ret = unsafe {
            libc::connect(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_un).cast(),
                len,
            )
        };
        assert_eq!(
            ret,
            0,
            "cannot connect to {}: {}",
            path.display(),
            io::Error::last_os_error()
        );
        ControlClient { fd }
    }

    /// Sends one message with `fds` attached (SCM_RIGHTS).
    fn send(&self, bytes: &[u8], fds: &[RawFd]) -> io::Result<usize> {
        send_with_fds(self.fd.as_raw_fd(), bytes, fds)
    }

    /// Waits up to `timeout` for one message; an attached fd is closed.
    fn receive(&self, timeout: Duration) -> Answer {
        self.receive_with_fd(timeout).0
    }

    /// Waits up to `timeout` for one message and returns it with its attached fd, if any.
    fn receive_with_fd(&self, timeout: Duration) -> (Answer, Option<OwnedFd>) {
        let mut poll = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll reads and writes the one pollfd given.
        let ready = unsafe { libc::poll(&mut poll, 1, timeout.as_millis() as libc::c_int) };
        if ready == 0 {
            return (Answer::Timeout, None);
        }
        let mut buf = vec![0u8; REPLY_LEN + 1];
        match fdpass::recv(self.fd.as_raw_fd(), &mut buf) {
            Ok((0, _)) => (Answer::Closed, None),
            Ok((len, fd)) => match Reply::decode(&buf[..len]) {
                Ok(reply) => (Answer::Reply(Box::new(reply)), fd),
                Err(_) => (Answer::Undecodable(len), None),
            },
            Err(_) => (Answer::Closed, None),
        }
    }

    /// Sends `request` with `fds` and returns the answer.
    fn call(&self, request: &Request, fds: &[RawFd]) -> Answer {
        if self.send(&request.encode(), fds).is_err() {
            return Answer::Closed;
        }
        self.receive(REPLY_TIMEOUT)
    }
}

/// `sendmsg` of `bytes` with any number of fds attached.
fn send_with_fds(socket: RawFd, bytes: &[u8], fds: &[RawFd]) -> io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    let fd_bytes = std::mem::size_of_val(fds) as u32;
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(fd_bytes) } as usize;
    // u64 elements keep the control buffer aligned for cmsghdr.
    let mut control = vec![0u64; space.div_ceil(8)];
    // SAFETY: an all-zero msghdr is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space;
        // SAFETY: msg_control points at `space` writable bytes, enough for one header and
        // `fd_bytes` of data, so CMSG_FIRSTHDR is not null and CMSG_DATA has room for fds.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(fd_bytes) as usize;
            std::ptr::copy_nonoverlapping(
                fds.as_ptr().cast::<u8>(),
                libc::CMSG_DATA(cmsg),
                fd_bytes as usize,
            );
        }
    }
    // SAFETY: msg and everything it points to stay valid for the call.
    let sent = unsafe { libc::sendmsg(socket, &msg, libc::MSG_NOSIGNAL) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sent as usize)
}

/// Returns the errno of a reply, panicking with `what` when the answer is not a reply.
fn reply_errno(what: &str, answer: &Answer) -> i32 {
    match answer {
        Answer::Reply(reply) => reply.errno,
        Answer::Undecodable(len) => panic!("{what}: got {len} bytes that are not a reply"),
        other => panic!("{what}: expected a reply, got {other:?}"),
    }
}

/// Panics unless netcon-dp is still running and answers a fresh client.
fn assert_still_serving(topology: &mut Topology, what: &str) {
    let exited = topology
        .dataplane
        .try_wait()
        .expect("cannot poll netcon-dp");
    assert!(
        exited.is_none(),
        "{what}: netcon-dp exited ({exited:?})\nstderr:\n{}",
        topology.dataplane.stderr_text()
    );
    let client = ControlClient::connect(topology.socket());
    let answer = client.call(&Request::new(Op::Identify), &[]);
    assert_eq!(
        reply_errno(what, &answer),
        libc::EBADF,
        "{what}: an Identify without an fd got the wrong answer"
    );
    topology.assert_intercepting();
}

/// Panics unless netcon-dp's fd count drops back to `baseline` within 10 s.
fn assert_fds_return(topology: &Topology, baseline: usize, what: &str) {
    let dataplane = &topology.dataplane;
    let settled = wait_until(Duration::from_secs(10), || dataplane.fd_count() <= baseline);
    assert!(
        settled,
        "{what}: netcon-dp holds {} fds, {baseline} before\n{}",
        dataplane.fd_count(),
        describe_fds(dataplane.pid())
    );
}

/// Compiles the raw client where the unprivileged user can run it.
fn compile_probe() -> CProgram {
    let probe = CProgram::compile("security-probe", PROBE_SOURCE);
    let dir = probe
        .path()
        .parent()
        .expect("the program is in a directory");
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .expect("cannot open the probe's directory to other users");
    probe
}

/// Returns `command` run as the unprivileged user, without supplementary groups.
fn as_nobody(program: &str) -> Command {
    as_uid(NOBODY_UID, program)
}

/// Sends `request` through the raw probe started by `command` and returns the probe's run.
fn run_raw_probe(mut command: Command, socket: &Path, request: &[u8]) -> Finished {
    let hex: String = request.iter().map(|b| format!("{b:02x}")).collect();
    command.arg(socket).arg(hex);
    run_bounded(command, "raw control client", Duration::from_secs(90))
}

/// Decodes the "reply HEX" line of a raw probe run.
fn probe_reply(run: &Finished) -> Option<Reply> {
    let hex = run.stdout.trim().strip_prefix("reply ")?;
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("the probe prints hex"))
        .collect();
    Reply::decode(&bytes).ok()
}

/// Returns the request that creates an AF_INET stream socket.
fn inet_socket_request() -> Request {
    let mut request = Request::new(Op::Socket);
    request.arg0 = libc::AF_INET as u64;
    request.arg1 = libc::SOCK_STREAM as u64;
    request
}

/// Runs the preload's socket probe as the unprivileged user against `socket`. Only the
/// processes that run as that user load the preload: setpriv, which starts as root, would
/// otherwise open a control connection that its descendants inherit.
fn socket_probe_as_nobody(socket: &Path) -> Finished {
    let mut command = as_nobody("/usr/bin/env");
    command
        .arg(format!(
            "LD_PRELOAD={}",
            binary_path("libnetcon_preload.so").display()
        ))
        .arg(format!("NETCON_SOCKET={}", socket.display()))
        .args([PYTHON, "-c", SOCKET_PROBE]);
    run_bounded(command, "socket probe as nobody", Duration::from_secs(15))
}

#[test]
fn control_socket_directory_restricted() {
    if !require_root("control_socket_directory_restricted") {
        return;
    }
    let netns = Netns::create("ncsec").expect("cannot create a namespace");
    let dir = tempfile::tempdir().expect("cannot create a temporary directory");
    let socket_dir = dir.path().join("run");
    let mut options = DataplaneOptions::for_netns(&netns);
    options.socket = socket_dir.join("control.sock");
    let mut command = Command::new(binary_path("netcon-dp"));
    command.args(options.args());
    let mut dataplane = Process::spawn(command, "netcon-dp");
    wait_for_output(&mut dataplane, "netcon-dp ready", Duration::from_secs(15));

    // netcon-dp made the directory: others may pass through it but not list it.
    let dir_meta = std::fs::metadata(&socket_dir).expect("the socket directory is missing");
    assert_eq!(dir_meta.uid(), 0, "the socket directory is not root's");
    assert_eq!(
        dir_meta.mode() & 0o777,
        0o711,
        "the socket directory's mode is {:o}",
        dir_meta.mode() & 0o777
    );
    let socket_meta = std::fs::metadata(&options.socket).expect("the socket is missing");
    assert_eq!(socket_meta.uid(), 0, "the control socket is not root's");
}

#[test]
fn control_socket_not_world_writable() {
    if !require_root("control_socket_not_world_writable") {
        return;
    }
    let topology = Topology::start("ncsec");
    let mode = std::fs::metadata(topology.socket())
        .expect("the control socket is missing")
        .mode();
    assert_eq!(
        mode & 0o022,
        0,
        "the control socket's mode is {:o}: group and others may connect",
        mode & 0o777
    );
    assert_eq!(
        mode & 0o777,
        0o600,
        "the control socket's mode is {:o}",
        mode & 0o777
    );
}

/// A uid that is neither root, netcon-dp's, nor allowed in any test.
const STRANGER_UID: u32 = 65533;

/// Returns `command` run as `uid` (and the same gid), without supplementary groups.
fn as_uid(uid: u32, program: &str) -> Command {
    let mut command = Command::new("setpriv");
    command
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"))
        .arg("--clear-groups")
        .arg(program);
    command
}

#[test]
fn allowed_uid_gets_acl_entry() {
    if !require_root("allowed_uid_gets_acl_entry") {
        return;
    }
    let topology = Topology::start_with("ncsec", |options| {
        options
            .extra_args
            .extend(["--allow-uid", "0", "--allow-uid", &NOBODY_UID.to_string()].map(String::from));
    });
    let mode = std::fs::metadata(topology.socket())
        .expect("the control socket is missing")
        .mode();
    assert_eq!(
        mode & 0o007,
        0,
        "others may connect to the control socket: mode {:o}",
        mode & 0o777
    );
    let probe = compile_probe();
    let request = inet_socket_request().encode();

    // The ACL entry lets the allowed uid open the path; the group bits show the ACL's mask.
    let allowed = run_raw_probe(as_nobody(probe.program()), topology.socket(), &request);
    allowed.assert_success();
    let reply = probe_reply(&allowed).unwrap_or_else(|| {
        panic!("no reply to uid {NOBODY_UID}, which has an ACL entry\n{allowed}")
    });
    assert_eq!(reply.errno, 0, "the allowed uid's socket request failed");

    let stranger = run_raw_probe(
        as_uid(STRANGER_UID, probe.program()),
        topology.socket(),
        &request,
    );
    stranger.assert_success();
    assert_eq!(
        stranger.stdout.trim(),
        "connect EACCES",
        "uid {STRANGER_UID}, which is not allowed, could open the control socket\n{stranger}"
    );
}

/// A ramfs mounted on a temporary directory, whose files take no POSIX ACL; unmounted on drop.
struct AclFreeDir {
    dir: tempfile::TempDir,
}

impl AclFreeDir {
    fn mount() -> AclFreeDir {
        let dir = tempfile::tempdir().expect("cannot create a temporary directory");
        let mut mount = Command::new("mount");
        mount.args([
            "-t",
            "ramfs",
            "netcon-test",
            &dir.path().display().to_string(),
        ]);
        run_bounded(mount, "mount ramfs", Duration::from_secs(10)).assert_success();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))
            .expect("cannot open the ramfs to other users");
        AclFreeDir { dir }
    }
}

impl Drop for AclFreeDir {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn socket_without_acl_support_stays_usable() {
    if !require_root("socket_without_acl_support_stays_usable") {
        return;
    }
    let ramfs = AclFreeDir::mount();
    let socket = ramfs.dir.path().join("control.sock");
    let topology = Topology::start_with("ncsec", |options| {
        options.socket = socket.clone();
        options
            .extra_args
            .extend(["--allow-uid", "0", "--allow-uid", &NOBODY_UID.to_string()].map(String::from));
    });
    let stderr = topology.dataplane.stderr_text();
    assert!(
        stderr.contains("does not support POSIX ACLs"),
        "netcon-dp did not warn that the socket's filesystem has no ACLs\n{stderr}"
    );
    let mode = std::fs::metadata(&socket)
        .expect("the socket is missing")
        .mode();
    assert_eq!(mode & 0o777, 0o666, "mode {:o}", mode & 0o777);

    // The uid check after connecting still tells the allowed uid from others.
    let probe = compile_probe();
    let request = inet_socket_request().encode();
    let allowed = run_raw_probe(as_nobody(probe.program()), &socket, &request);
    let reply = probe_reply(&allowed).unwrap_or_else(|| panic!("no reply\n{allowed}"));
    assert_eq!(reply.errno, 0, "the allowed uid's socket request failed");
    let stranger = run_raw_probe(as_uid(STRANGER_UID, probe.program()), &socket, &request);
    assert_eq!(
        stranger.stdout.trim(),
        "closed",
        "uid {STRANGER_UID} was served\n{stranger}"
    );
    drop(topology);
}

#[test]
fn other_uid_rejected() {
    if !require_root("other_uid_rejected") {
        return;
    }
    let topology = Topology::start("ncsec");
    let probe = compile_probe();

    let raw = run_raw_probe(
        as_nobody(probe.program()),
        topology.socket(),
        &inet_socket_request().encode(),
    );
    raw.assert_success();
    assert_eq!(
        raw.stdout.trim(),
        "connect EACCES",
        "a client with uid {NOBODY_UID} could open the control socket; netcon-dp allows only \
         its own uid and root by default\n{raw}"
    );

    let run = socket_probe_as_nobody(topology.socket());
    run.assert_success();
    assert_eq!(
        run.stdout.trim(),
        "ENETDOWN",
        "socket() as uid {NOBODY_UID} did not fail with ENETDOWN\n{run}"
    );
    assert!(
        run.stderr.contains("netcon: cannot reach netcon-dp at"),
        "the preload did not say why socket() failed\n{run}"
    );

    let mut command = as_nobody(binary_path("netcon-ctl").to_str().expect("UTF-8 path"));
    command
        .args(["run", "--socket"])
        .arg(topology.socket())
        .args(["--", PYTHON, "-c", SOCKET_PROBE]);
    let ctl = run_bounded(command, "netcon-ctl run as nobody", Duration::from_secs(15));
    assert_eq!(ctl.code(), Some(125), "netcon-ctl run did not fail\n{ctl}");
    assert!(
        ctl.stderr
            .contains("permission denied on netcon-dp's control socket"),
        "netcon-ctl run did not say that the user may not use netcon-dp\n{ctl}"
    );
}

#[test]
fn allowed_uid_served() {
    if !require_root("allowed_uid_served") {
        return;
    }
    let topology = Topology::start_with("ncsec", |options| {
        options
            .extra_args
            .extend(["--allow-uid", "0", "--allow-uid", &NOBODY_UID.to_string()].map(String::from));
    });
    let _echo = start_socat_echo(&topology, 9400);

    let probe = compile_probe();
    let raw = run_raw_probe(
        as_nobody(probe.program()),
        topology.socket(),
        &inet_socket_request().encode(),
    );
    raw.assert_success();
    let reply = probe_reply(&raw).unwrap_or_else(|| panic!("no reply to an allowed uid\n{raw}"));
    assert_eq!(reply.errno, 0, "the allowed uid's socket request failed");

    let run = socket_probe_as_nobody(topology.socket());
    run.assert_success();
    assert_eq!(
        run.stdout.trim(),
        "created",
        "socket() as an allowed uid failed\n{run}"
    );

    let mut command = as_nobody(binary_path("netcon-ctl").to_str().expect("UTF-8 path"));
    command
        .args(["run", "--socket"])
        .arg(topology.socket())
        .args(["--", PYTHON, "-c", ECHO_PROBE, PEER_IP, "9400"]);
    let echo = run_bounded(command, "echo as nobody", Duration::from_secs(30));
    echo.assert_success();
    assert_eq!(echo.stdout.trim(), "echoed", "the echo failed\n{echo}");
}

/// Run as root through netcon: echoes a line through HOST:PORT, then forks a child that
/// switches to uid and gid 65534, echoes from a new thread and from itself, and executes Python
/// again to echo once more as "exec". The program finds its own source in SOURCE, which the
/// test defines. Every echo prints "TAG echoed".
const USER_SWITCHER: &str = r#"
import os, socket, sys, threading
host, port = sys.argv[1], int(sys.argv[2])

def echo(tag):
    with socket.create_connection((host, port), timeout=10) as conn:
        line = tag.encode() + b"\n"
        conn.sendall(line)
        assert conn.makefile("rb").readline() == line
    print(tag, "echoed", flush=True)

if len(sys.argv) > 3:
    echo(sys.argv[3])
    sys.exit(0)
echo("parent")
pid = os.fork()
if pid == 0:
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
    thread = threading.Thread(target=echo, args=("thread",))
    thread.start()
    thread.join()
    echo("child")
    os.execv(sys.executable, [sys.executable, "-c", SOURCE, host, str(port), "exec"])
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"#;

#[test]
fn descendants_keep_access_after_user_switch() {
    if !require_root("descendants_keep_access_after_user_switch") {
        return;
    }
    let topology = Topology::start("ncsec");
    let _echo = start_socat_echo(&topology, 9430);
    // The program passes its own source on to the program it executes.
    let source = format!("SOURCE = {USER_SWITCHER:?}\n{USER_SWITCHER}");
    let mut command = netcon_command(topology.socket(), PYTHON);
    command.args(["-c", &source, PEER_IP, "9430"]);
    let run = run_bounded(
        command,
        "program that switches users",
        Duration::from_secs(30),
    );
    run.assert_success();
    for tag in ["parent", "thread", "child", "exec"] {
        assert!(
            run.stdout.contains(&format!("{tag} echoed")),
            "the {tag} could not use netcon after the child switched to uid {NOBODY_UID}, \
             although only netcon-dp's uid and root may open the control socket\n{run}"
        );
    }
}

#[test]
fn requests_without_the_socket_refused() {
    if !require_root("requests_without_the_socket_refused") {
        return;
    }
    let mut topology = Topology::start("ncsec");
    let client = ControlClient::connect(topology.socket());
    let ops = [
        Op::Bind,
        Op::Listen,
        Op::Connect,
        Op::GetSockName,
        Op::GetPeerName,
        Op::GetSockOpt,
        Op::SetSockOpt,
    ];

    // No fd at all: there is nothing to name a socket by.
    for op in ops {
        let answer = client.call(&Request::new(op), &[]);
        assert_eq!(
            reply_errno(&format!("{op:?} without an fd"), &answer),
            libc::EBADF,
            "{op:?} without an fd was not refused with EBADF"
        );
    }

    // fds the service never made: a Unix socket of the test's own, a file and a directory.
    let (own, _other) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    let file = std::fs::File::open("/dev/null").expect("cannot open /dev/null");
    let dir = std::fs::File::open("/").expect("cannot open /");
    for (kind, fd) in [
        ("a Unix socket", own.as_raw_fd()),
        ("a file", file.as_raw_fd()),
        ("a directory", dir.as_raw_fd()),
    ] {
        for op in ops {
            let answer = client.call(&Request::new(op), &[fd]);
            assert_eq!(
                reply_errno(&format!("{op:?} with {kind}"), &answer),
                libc::ENOTSOCK,
                "{op:?} with {kind} attached was not refused with ENOTSOCK"
            );
        }
    }
    assert_still_serving(&mut topology, "after requests about foreign fds");
}

#[test]
fn file_with_socket_inode_refused() {
    if !require_root("file_with_socket_inode_refused") {
        return;
    }
    let topology = Topology::start("ncsec");
    // A program through netcon keeps a socket open, and a FUSE filesystem serves a regular
    // file with that socket's inode number.
    let mut holder = netcon_command(topology.socket(), PYTHON);
    holder.args(["-c", SOCKET_HOLDER]);
    let mut holder = Process::spawn(holder, "socket holder through netcon");
    wait_for_output(&mut holder, "\n", Duration::from_secs(15));
    let inode: u64 = holder
        .output_so_far()
        .0
        .trim()
        .parse()
        .unwrap_or_else(|err| panic!("the holder printed no inode number ({err})"));
    let mountpoint = tempfile::tempdir().expect("temp dir");
    let mut filesystem = Command::new(PYTHON);
    filesystem
        .args(["-c", SAME_INODE_FS])
        .arg(mountpoint.path())
        .arg(inode.to_string());
    let mut filesystem = Process::spawn(filesystem, "FUSE filesystem");
    wait_for_output(&mut filesystem, "mounted", Duration::from_secs(15));
    let _mounted = Mounted(mountpoint.path());
    let path = mountpoint.path().join("file");
    let file = std::fs::File::open(&path)
        .unwrap_or_else(|err| panic!("cannot open {}: {err}", path.display()));
    let metadata = file.metadata().expect("fstat of the FUSE file");
    assert!(
        metadata.is_file(),
        "{} is not a regular file",
        path.display()
    );
    assert_eq!(
        metadata.ino(),
        inode,
        "the FUSE file has another inode number"
    );

    // Another client attaches that file, not the socket, and asks about the socket.
    let client = ControlClient::connect(topology.socket());
    let mut request = Request::new(Op::GetSockOpt);
    request.arg0 = libc::SOL_SOCKET as u64;
    request.arg1 = libc::SO_TYPE as u64;
    let answer = client.call(&request, &[file.as_raw_fd()]);
    let Answer::Reply(reply) = answer else {
        panic!("SO_TYPE with the file attached got {answer:?}");
    };
    assert_eq!(
        reply.errno,
        libc::ENOTSOCK,
        "{} (inode {inode}) was answered as the netcon socket with that inode: option value \
         {:?}",
        path.display(),
        reply.opt_bytes()
    );
}

/// Returns `bytes` with `at..at + value.len()` replaced by `value`.
fn patched(mut bytes: Vec<u8>, at: usize, value: &[u8]) -> Vec<u8> {
    bytes[at..at + value.len()].copy_from_slice(value);
    bytes
}

/// Returns the offset of the first byte in which `changed` encodes differently from a
/// request with every field zero, which locates a field without restating the layout.
fn field_offset(changed: Request) -> usize {
    let plain = Request::new(changed.op).encode();
    plain
        .iter()
        .zip(changed.encode().iter())
        .position(|(a, b)| a != b)
        .expect("the field is encoded")
}

/// Returns the offset of the address family in an encoded request.
fn address_offset() -> usize {
    let mut request = Request::new(Op::Connect);
    request.addr = WireAddr(Some("10.77.0.1:80".parse().expect("valid address")));
    field_offset(request)
}

/// Returns the offset of the option length in an encoded request.
fn option_length_offset() -> usize {
    let mut request = Request::new(Op::SetSockOpt);
    request.opt_len = 1;
    field_offset(request)
}

/// Malformed messages, each sent on a connection of its own.
fn malformed_messages() -> Vec<(&'static str, Vec<u8>)> {
    let valid = Request::new(Op::Identify).encode().to_vec();
    let opt_len_at = option_length_offset();
    let too_long = (OPT_MAX as u32 + 1).to_le_bytes();
    let mut noise = 0x2545_f491_4f6c_dd1du64;
    let garbage: Vec<u8> = (0..REQUEST_LEN)
        .map(|_| {
            noise ^= noise << 13;
            noise ^= noise >> 7;
            noise ^= noise << 17;
            noise as u8
        })
        .collect();
    vec![
        ("17 bytes of noise", garbage[..17].to_vec()),
        ("a request-sized block of noise", garbage.clone()),
        ("a truncated request", valid[..REQUEST_LEN - 1].to_vec()),
        (
            "a request with one byte more",
            [valid.clone(), vec![0]].concat(),
        ),
        (
            "a 64 KiB message",
            [valid.clone(), vec![0x41; 65536]].concat(),
        ),
        ("a wrong magic", patched(valid.clone(), 0, &[0xff, 0xff])),
        (
            "an unknown request kind",
            patched(valid.clone(), 2, &[0xee, 0xee]),
        ),
        (
            "an unknown address family",
            patched(valid.clone(), address_offset(), &[0x99, 0x00]),
        ),
        (
            "an option length above 256",
            patched(valid, opt_len_at, &too_long),
        ),
    ]
}

#[test]
fn malformed_requests_rejected() {
    if !require_root("malformed_requests_rejected") {
        return;
    }
    let mut topology = Topology::start("ncsec");
    let baseline = topology.dataplane.fd_count();
    for (what, message) in malformed_messages() {
        let client = ControlClient::connect(topology.socket());
        client
            .send(&message, &[])
            .unwrap_or_else(|err| panic!("cannot send {what}: {err}"));
        let answer = client.receive(REPLY_TIMEOUT);
        assert_eq!(
            reply_errno(what, &answer),
            libc::EPROTO,
            "{what} was not answered with EPROTO"
        );
        let after = client.receive(REPLY_TIMEOUT);
        assert!(
            matches!(after, Answer::Closed),
            "the connection stayed open after {what}: {after:?}"
        );
    }

    // An empty message reads like the end of the connection, which is all it can mean.
    let client = ControlClient::connect(topology.socket());
    client.send(&[], &[]).expect("cannot send an empty message");
    let answer = client.receive(REPLY_TIMEOUT);
    assert!(
        matches!(answer, Answer::Closed | Answer::Reply(_)),
        "an empty message got {answer:?}"
    );

    assert_still_serving(&mut topology, "after malformed requests");
    assert_fds_return(&topology, baseline, "after malformed requests");
}

#[test]
fn attached_fds_do_not_leak() {
    if !require_root("attached_fds_do_not_leak") {
        return;
    }
    let mut topology = Topology::start("ncsec");
    let baseline = topology.dataplane.fd_count();
    let (reader, writer) = {
        let mut fds = [0; 2];
        // SAFETY: fds has room for the two fds pipe writes.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe failed");
        // SAFETY: pipe returned two fresh fds that nothing else owns.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    };
    let extra = [reader.as_raw_fd(), writer.as_raw_fd(), reader.as_raw_fd()];

    // Requests that take no fd, requests that take one, and malformed ones, each with three
    // fds attached that the service did not ask for.
    let socket_request = inet_socket_request();
    let client = ControlClient::connect(topology.socket());
    for round in 0..100 {
        for request in [
            socket_request,
            Request::new(Op::Identify),
            Request::new(Op::GetPeerName),
        ] {
            let answer = client.call(&request, &extra);
            assert!(
                matches!(answer, Answer::Reply(_)),
                "round {round}: {:?} with extra fds got {answer:?}",
                request.op
            );
        }
        let malformed = ControlClient::connect(topology.socket());
        let _ = malformed.send(&[0u8; 9], &extra);
        let _ = malformed.receive(REPLY_TIMEOUT);
    }
    drop(client);
    assert_still_serving(&mut topology, "after requests with extra fds");
    assert_fds_return(&topology, baseline, "after requests with extra fds");
}

#[test]
fn unread_replies_do_not_block_service() {
    if !require_root("unread_replies_do_not_block_service") {
        return;
    }
    let mut topology = Topology::start("ncsec");
    let baseline = topology.dataplane.fd_count();
    let flooder = ControlClient::connect(topology.socket());
    let request = Request::new(Op::Identify).encode();
    // SAFETY: F_SETFL takes an integer flag on an fd this client owns.
    unsafe { libc::fcntl(flooder.fd.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };

    let other = ControlClient::connect(topology.socket());
    let started = Instant::now();
    let mut sent = 0;
    while sent < 20_000 && started.elapsed() < Duration::from_secs(10) {
        if flooder.send(&request, &[]).is_err() {
            break;
        }
        sent += 1;
        if sent % 1000 == 0 {
            // The other client is still answered at once while the flood goes on.
            let asked = Instant::now();
            let answer = other.call(&Request::new(Op::Identify), &[]);
            assert!(
                matches!(answer, Answer::Reply(_)) && asked.elapsed() < Duration::from_secs(1),
                "after {sent} unread replies another client got {answer:?} in {:?}",
                asked.elapsed()
            );
        }
    }
    println!("sent {sent} requests without reading a reply");
    drop(flooder);
    drop(other);
    assert_still_serving(&mut topology, "after a client that read no replies");
    assert_fds_return(&topology, baseline, "after a client that read no replies");
}

/// Returns a connected pair of AF_UNIX sockets of `kind`.
fn unix_pair(kind: libc::c_int) -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two fds socketpair writes.
    let ret = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            kind | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    assert_eq!(ret, 0, "socketpair: {}", io::Error::last_os_error());
    // SAFETY: socketpair returned two fresh fds that nothing else owns.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

#[test]
fn new_connection_needs_socketpair_end() {
    if !require_root("new_connection_needs_socketpair_end") {
        return;
    }
    let mut topology = Topology::start("ncsec");
    let baseline = topology.dataplane.fd_count();
    let client = ControlClient::connect(topology.socket());
    let request = Request::new(Op::NewConnection).encode();

    // Sockets that must not become control connections: a stream pair, a connection to a
    // listening socket (the control socket itself, so netcon-dp would talk to a server), a
    // netcon UDP socket (a seqpacket pair netcon-dp made), a file, and nothing at all. None
    // gets a reply on the shared connection.
    let (stream, _stream_peer) = unix_pair(libc::SOCK_STREAM);
    let to_listener = ControlClient::connect(topology.socket());
    let mut udp_request = Request::new(Op::Socket);
    udp_request.arg0 = libc::AF_INET as u64;
    udp_request.arg1 = libc::SOCK_DGRAM as u64;
    client
        .send(&udp_request.encode(), &[])
        .expect("cannot ask for a UDP socket");
    let (answer, udp) = client.receive_with_fd(REPLY_TIMEOUT);
    let udp = udp.unwrap_or_else(|| panic!("no UDP socket came back: {answer:?}"));
    let file = std::fs::File::open("/dev/null").expect("cannot open /dev/null");
    let cases: [(&str, Vec<RawFd>); 5] = [
        ("a stream socketpair end", vec![stream.as_raw_fd()]),
        (
            "a connection to a listener",
            vec![to_listener.fd.as_raw_fd()],
        ),
        ("a netcon UDP socket", vec![udp.as_raw_fd()]),
        ("a file", vec![file.as_raw_fd()]),
        ("no socket", vec![]),
    ];
    for (what, fds) in cases {
        client
            .send(&request, &fds)
            .unwrap_or_else(|err| panic!("cannot send a request with {what}: {err}"));
        let answer = client.receive(Duration::from_millis(500));
        assert!(
            matches!(answer, Answer::Timeout),
            "a new connection with {what} got {answer:?} on the connection it came on"
        );
        let check = client.call(&Request::new(Op::Identify), &[]);
        assert_eq!(
            reply_errno(&format!("Identify after {what}"), &check),
            libc::EBADF,
            "the connection that asked with {what} stopped serving"
        );
    }

    // A seqpacket pair end becomes a connection that gets the reply and serves requests.
    let (mine, theirs) = unix_pair(libc::SOCK_SEQPACKET);
    client
        .send(&request, &[theirs.as_raw_fd()])
        .expect("cannot send the request");
    drop(theirs);
    let derived = ControlClient { fd: mine };
    let answer = derived.receive(REPLY_TIMEOUT);
    assert_eq!(
        reply_errno("the new connection's reply", &answer),
        0,
        "the new connection was not accepted"
    );
    let check = derived.call(&Request::new(Op::Identify), &[]);
    assert_eq!(
        reply_errno("Identify on the new connection", &check),
        libc::EBADF,
        "the new connection does not serve requests"
    );
    let nothing = client.receive(Duration::from_millis(200));
    assert!(
        matches!(nothing, Answer::Timeout),
        "the shared connection got {nothing:?}"
    );

    drop((client, derived, to_listener, udp));
    assert_still_serving(&mut topology, "after new connections with unusable sockets");
    assert_fds_return(
        &topology,
        baseline,
        "after new connections with unusable sockets",
    );
}

/// Requests that netcon-dp answers at once whatever their fields (a blocking connect waits
/// for its handshake, so connects are always sent non-blocking).
const FUZZED_OPS: [Op; 13] = [
    Op::Socket,
    Op::Identify,
    Op::Bind,
    Op::Listen,
    Op::Connect,
    Op::GetSockName,
    Op::GetPeerName,
    Op::GetSockOpt,
    Op::SetSockOpt,
    Op::Info,
    Op::AutoBind,
    Op::Disconnect,
    Op::NewConnection,
];

/// A xorshift generator, so that a failing sequence of requests repeats exactly.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// Returns an address for a bind or connect, sometimes unspecified or of the other family.
/// Every address is the stack's own, loopback or the kernel peer in the namespace, so that no
/// SYN leaves the namespace's link and every connect ends within a second: a connect to a host
/// that never answers holds its socket for the whole connect timeout.
fn fuzzed_address(noise: &mut Noise) -> WireAddr {
    let port = match noise.below(3) {
        0 => 0,
        1 => 9500 + noise.below(8) as u16,
        _ => noise.next() as u16,
    };
    let text = match noise.below(7) {
        0 => return WireAddr(None),
        1 => format!("{PEER_IP}:{port}"),
        2 => format!("{NETCON_IP}:{port}"),
        3 => format!("127.0.0.1:{port}"),
        4 => format!("0.0.0.0:{port}"),
        5 => format!("[::1]:{port}"),
        _ => format!("[fd00::{}]:{port}", 1 + noise.below(2)),
    };
    WireAddr(Some(text.parse().expect("a valid address")))
}

/// Returns a request of kind `op` with random fields.
fn fuzzed_request(noise: &mut Noise, op: Op) -> Request {
    let mut request = Request::new(op);
    request.flags = noise.below(4) as u32;
    let domains = [libc::AF_INET, libc::AF_INET6, libc::AF_UNIX, 0];
    let kinds = [libc::SOCK_STREAM, libc::SOCK_DGRAM, libc::SOCK_RAW, 0];
    let levels = [
        libc::SOL_SOCKET,
        libc::IPPROTO_TCP,
        libc::IPPROTO_IP,
        libc::IPPROTO_IPV6,
    ];
    (request.arg0, request.arg1) = match op {
        Op::Socket => (
            domains[noise.below(4) as usize] as u64,
            kinds[noise.below(4) as usize] as u64,
        ),
        Op::GetSockOpt | Op::SetSockOpt => {
            (levels[noise.below(4) as usize] as u64, noise.below(80))
        }
        _ => (noise.next(), noise.next()),
    };
    if op == Op::Connect {
        request.flags |= netcon_control::wire::FLAG_NONBLOCK;
    }
    request.addr = fuzzed_address(noise);
    request.opt_len = noise.below(OPT_MAX as u64 + 1) as u32;
    for byte in request.opt.iter_mut().take(request.opt_len as usize) {
        *byte = noise.next() as u8;
    }
    request
}

#[test]
fn random_requests_keep_service_alive() {
    if !require_root("random_requests_keep_service_alive") {
        return;
    }
    let mut topology = Topology::start("ncsec");
    let baseline = topology.dataplane.fd_count();
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    let mut client = ControlClient::connect(topology.socket());
    // Sockets netcon-dp made for this test, attached to later requests.
    let mut sockets: Vec<OwnedFd> = Vec::new();
    let file = std::fs::File::open("/dev/null").expect("cannot open /dev/null");
    let started = Instant::now();
    let mut replies = 0;

    for round in 0..3000 {
        if started.elapsed() > Duration::from_secs(60) {
            panic!("3000 requests took more than 60 s; stopped at {round}");
        }

        let op = FUZZED_OPS[noise.below(FUZZED_OPS.len() as u64) as usize];
        let request = fuzzed_request(&mut noise, op);
        let (pair_end, attached) = match noise.below(5) {
            0 => (None, vec![]),
            1 => (None, vec![file.as_raw_fd()]),
            2 => {
                let (mine, theirs) = unix_pair(libc::SOCK_SEQPACKET);
                let raw = theirs.as_raw_fd();
                (Some((mine, theirs)), vec![raw])
            }
            _ if sockets.is_empty() => (None, vec![]),
            _ => {
                let index = noise.below(sockets.len() as u64) as usize;
                (None, vec![sockets[index].as_raw_fd()])
            }
        };

        if client.send(&request.encode(), &attached).is_err() {
            client = ControlClient::connect(topology.socket());
            continue;
        }
        drop(pair_end);
        // A new connection's reply goes to the pair end, which is closed by now.
        let wait = if op == Op::NewConnection {
            Duration::from_millis(20)
        } else {
            REPLY_TIMEOUT
        };
        match client.receive_with_fd(wait) {
            (Answer::Reply(reply), fd) => {
                replies += 1;
                if let Some(fd) = fd.filter(|_| reply.errno == 0 && op == Op::Socket) {
                    sockets.push(fd);
                }
            }
            (Answer::Timeout, _) if op == Op::NewConnection => {}
            (answer, _) => panic!("round {round}: {request:?} with {attached:?} got {answer:?}"),
        }

        // Old sockets are closed now and then, as programs close theirs.
        if sockets.len() > 32 {
            sockets.drain(..16);
        }
    }

    println!("{replies} replies in {:?}", started.elapsed());
    drop(sockets);
    drop(client);
    assert_still_serving(&mut topology, "after random requests");
    assert_fds_return(&topology, baseline, "after random requests");
}

/// The limit the limit tests start netcon-dp with.
const MAX_CONNECTIONS: &str = "8";

/// Connects to the echo server at HOST:PORT, then opens AF_INET stream sockets until socket()
/// fails and prints "failed ERRNO with N open", N counting the connection. Then echoes a line
/// through the connection, prints "echoed at the limit" and holds everything for 30 s.
const LIMIT_HOARDER: &str = r#"
import errno, socket, sys, time
conn = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
held = []
while len(held) < 100000:
    try:
        held.append(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    except OSError as err:
        name = errno.errorcode.get(err.errno, err.errno)
        print(f"failed {name} with {len(held) + 1} open", flush=True)
        break
conn.sendall(b"ping\n")
assert conn.makefile("rb").readline() == b"ping\n"
print("echoed at the limit", flush=True)
time.sleep(30)
"#;

/// Runs `netcon-ctl status --json` against `socket`.
fn status_json(socket: &Path) -> serde_json::Value {
    let mut command = Command::new(binary_path("netcon-ctl"));
    command.args(["status", "--json", "--socket"]).arg(socket);
    let run = run_bounded(command, "netcon-ctl status", Duration::from_secs(20));
    run.assert_success();
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {run}"))
}

/// Returns the sum of the per-worker counter `key` in a status document.
fn worker_total(status: &serde_json::Value, key: &str) -> u64 {
    status["workers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|worker| worker[key].as_u64())
        .sum()
}

/// Counts the lines of netcon-dp's stderr that report the connection limit.
fn limit_warnings(topology: &Topology) -> usize {
    let stderr = topology.dataplane.stderr_text();
    let needle = format!("--max-connections {MAX_CONNECTIONS} reached");
    stderr.lines().filter(|line| line.contains(&needle)).count()
}

#[test]
fn connection_limit_reported() {
    if !require_root("connection_limit_reported") {
        return;
    }
    let mut topology = Topology::start_with("ncsec", |options| {
        options
            .extra_args
            .extend(["--max-connections", MAX_CONNECTIONS].map(String::from));
    });
    let _echo = start_socat_echo(&topology, 9410);
    let mut hoarder = netcon_command(topology.socket(), PYTHON);
    hoarder.args(["-c", LIMIT_HOARDER, PEER_IP, "9410"]);
    let mut hoarder = Process::spawn(hoarder, "socket hoarder");
    wait_for_output(&mut hoarder, "echoed at the limit", Duration::from_secs(15));
    let (stdout, _) = hoarder.output_so_far();
    assert!(
        stdout.contains(&format!("failed ENFILE with {MAX_CONNECTIONS} open")),
        "socket() did not fail with ENFILE once {MAX_CONNECTIONS} sockets were open: {stdout}"
    );

    // Another program at the limit gets the same errno; netcon-dp keeps running and counts.
    for _ in 0..3 {
        let mut probe = netcon_command(topology.socket(), PYTHON);
        probe.args(["-c", SOCKET_PROBE]);
        let run = run_bounded(probe, "socket probe at the limit", Duration::from_secs(15));
        run.assert_success();
        assert_eq!(run.stdout.trim(), "ENFILE", "socket() at the limit\n{run}");
    }
    let status = status_json(topology.socket());
    assert_eq!(status["max_connections"].as_u64(), Some(8), "{status}");
    assert_eq!(status["open_sockets"].as_u64(), Some(8), "{status}");
    assert!(
        status["sockets_rejected"].as_u64() >= Some(4),
        "the refused sockets are not counted: {status}"
    );
    assert_eq!(
        limit_warnings(&topology),
        1,
        "netcon-dp did not warn exactly once about four refusals within seconds\n{}",
        topology.dataplane.stderr_text()
    );

    // Once the hoarder's sockets are closed, sockets can be made again.
    drop(hoarder);
    let freed = wait_until(Duration::from_secs(10), || {
        status_json(topology.socket())["open_sockets"].as_u64() == Some(0)
    });
    assert!(freed, "the hoarder's sockets still count after it exited");
    assert_still_serving(&mut topology, "after the limit was reached");
}

/// A server through netcon on PORT that accepts connections, answers "ok" on each and holds
/// them. Every 0.2 s without a new connection it checks for the file RELEASE, and when the file
/// exists closes every held connection, deletes the file and prints "released".
const HOLDING_SERVER: &str = r#"
import os, socket, sys
port, release = int(sys.argv[1]), sys.argv[2]
server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("0.0.0.0", port))
server.listen(16)
server.settimeout(0.2)
print("listening", flush=True)
held = []
while True:
    try:
        conn, _ = server.accept()
        conn.settimeout(10)
        conn.sendall(b"ok\n")
        held.append(conn)
    except socket.timeout:
        pass
    if os.path.exists(release):
        for conn in held:
            conn.close()
        held.clear()
        os.unlink(release)
        print("released", flush=True)
"#;

/// Connects to HOST:PORT COUNT times, one after another, keeping every connection open, and
/// prints one line per connection: "served" when the server answered, else what happened.
const LIMIT_CLIENT: &str = r#"
import socket, sys
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
held = []
for _ in range(count):
    try:
        conn = socket.create_connection((host, port), timeout=10)
        held.append(conn)
        line = conn.makefile("rb").readline()
        print("served" if line == b"ok\n" else f"answered {line!r}", flush=True)
    except OSError as err:
        print(type(err).__name__, flush=True)
"#;

/// Runs LIMIT_CLIENT in the namespace against the netcon server on `port`.
fn connect_from_peer(topology: &Topology, port: u16, count: usize) -> Finished {
    let mut client = topology.netns.command(PYTHON);
    client
        .args(["-c", LIMIT_CLIENT, NETCON_IP, &port.to_string()])
        .arg(count.to_string());
    run_bounded(client, "clients in the namespace", Duration::from_secs(60))
}

#[test]
fn connection_limit_resets_inbound() {
    if !require_root("connection_limit_resets_inbound") {
        return;
    }
    let topology = Topology::start_with("ncsec", |options| {
        options
            .extra_args
            .extend(["--max-connections", MAX_CONNECTIONS].map(String::from));
    });
    let dir = tempfile::tempdir().expect("cannot create a temporary directory");
    let release = dir.path().join("release");
    let mut server = netcon_command(topology.socket(), PYTHON);
    server.args(["-c", HOLDING_SERVER, "9420"]).arg(&release);
    let mut server = Process::spawn(server, "holding server");
    wait_for_output(&mut server, "listening", Duration::from_secs(15));

    // The listener is one of the 8 sockets, so 7 connections are served and the rest reset.
    let run = connect_from_peer(&topology, 9420, 10);
    run.assert_success();
    let outcomes: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        outcomes[..7],
        ["served"; 7],
        "the first 7 connections were not all served\n{run}"
    );
    assert!(
        outcomes[7..]
            .iter()
            .all(|line| *line == "ConnectionResetError"),
        "connections beyond the limit were not reset\n{run}"
    );
    let status = status_json(topology.socket());
    assert_eq!(
        worker_total(&status, "connections_rejected"),
        3,
        "the reset connections are not counted: {status}"
    );
    assert_eq!(
        limit_warnings(&topology),
        1,
        "{}",
        topology.dataplane.stderr_text()
    );

    // Closing the held connections makes room again.
    std::fs::write(&release, b"").expect("cannot create the release file");
    wait_for_output(&mut server, "released", Duration::from_secs(15));
    let run = connect_from_peer(&topology, 9420, 3);
    run.assert_success();
    assert_eq!(
        run.stdout.lines().collect::<Vec<_>>(),
        ["served"; 3],
        "connections were not served after the held ones closed\n{run}"
    );
}

/// Sets netcon-dp's limit on open fds to its current count plus `headroom`.
fn limit_dataplane_fds(topology: &Topology, headroom: usize) {
    let limit = (topology.dataplane.fd_count() + headroom).to_string();
    let mut prlimit = Command::new("prlimit");
    prlimit
        .arg("--pid")
        .arg(topology.dataplane.pid().to_string())
        .arg(format!("--nofile={limit}:{limit}"));
    run_bounded(prlimit, "prlimit", Duration::from_secs(10)).assert_success();
}

#[test]
fn descriptor_exhaustion_reaches_program() {
    if !require_root("descriptor_exhaustion_reaches_program") {
        return;
    }
    let mut topology = Topology::start("ncsec");
    let baseline = topology.dataplane.fd_count();
    limit_dataplane_fds(&topology, 20);

    // Each netcon socket costs netcon-dp one fd, so this program runs netcon-dp out of them.
    let mut hoarder = netcon_command(topology.socket(), PYTHON);
    hoarder.args(["-c", SOCKET_HOARDER]);
    let mut hoarder = Process::spawn(hoarder, "socket hoarder");
    wait_for_output(&mut hoarder, "failed", Duration::from_secs(15));
    let (stdout, _) = hoarder.output_so_far();
    assert!(
        ["EMFILE", "ENFILE", "ENOBUFS", "ENOMEM"]
            .iter()
            .any(|errno| stdout.contains(errno)),
        "the program did not get an EMFILE-like errno: {stdout}"
    );
    assert!(
        topology.dataplane.try_wait().expect("poll").is_none(),
        "netcon-dp exited when it ran out of fds\n{}",
        topology.dataplane.stderr_text()
    );
    drop(hoarder);
    assert_fds_return(&topology, baseline, "after the hoarder exited");
    assert_still_serving(&mut topology, "after running out of fds");
}

#[test]
fn exhausted_dataplane_answers_new_clients() {
    if !require_root("exhausted_dataplane_answers_new_clients") {
        return;
    }
    let topology = Topology::start("ncsec");
    limit_dataplane_fds(&topology, 20);
    let mut hoarder = netcon_command(topology.socket(), PYTHON);
    hoarder.args(["-c", SOCKET_HOARDER]);
    let mut hoarder = Process::spawn(hoarder, "socket hoarder");
    wait_for_output(&mut hoarder, "failed", Duration::from_secs(15));
    // A socketpair takes two fds, so one may be left over: control connections of the
    // test's own take it. Each is either accepted or closed at once.
    let fillers: Vec<ControlClient> = (0..3)
        .map(|_| ControlClient::connect(topology.socket()))
        .collect();
    let answers: Vec<Answer> = fillers
        .iter()
        .map(|client| client.call(&Request::new(Op::Identify), &[]))
        .collect();
    assert!(
        matches!(answers.last(), Some(Answer::Closed)),
        "netcon-dp still had fds for control connections: {answers:?}"
    );

    // A new process needs a control connection of its own, which netcon-dp has no fd for.
    let mut late = netcon_command(topology.socket(), PYTHON);
    late.args(["-c", SOCKET_PROBE]);
    let late = Process::spawn(late, "socket probe while netcon-dp is out of fds");
    let share = cpu_share(topology.dataplane.pid(), Duration::from_secs(2));
    let late = late.finish(Duration::from_secs(5));
    assert!(
        share < 0.05,
        "netcon-dp used {:.0}% of a core while a client waited to be accepted",
        share * 100.0
    );
    assert!(
        !late.timed_out,
        "socket() in a new program hung while netcon-dp was out of fds\n{late}"
    );
    assert_eq!(
        late.stdout.trim(),
        "ENETDOWN",
        "socket() in a new program did not fail with ENETDOWN\n{late}"
    );
    let stderr = topology.dataplane.stderr_text();
    assert!(
        stderr.contains("no fd left for a new control connection"),
        "netcon-dp did not report the connection it closed\n{stderr}"
    );
}
