//! The origin connection: the one control connection a program's process tree opens by the
//! socket's path.
//!
//! netcon-dp lets only its own user, root and the users given to `--allow-uid` open the path,
//! but servers switch to unprivileged users, chroot or sandbox themselves after they start, and
//! their later threads and child processes still need control connections. So the first
//! process opens the origin, and every thread of it and of its descendants gets a connection of
//! its own by sending [`Op::NewConnection`] on the origin with one end of a fresh socketpair
//! attached. netcon-dp replies on that end, never on the origin, so any number of threads and
//! processes share the origin without reading each other's replies, and without a lock.
//!
//! The origin outlives `fork`, where parent and child share it, and `exec`. The origin the
//! library opens while it loads is not close-on-exec, and [`ENV`] names its fd, inode and
//! socket path. The next program image finds it there and checks that it is the same socket.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use netcon_control::wire::REPLY_LEN;
use netcon_control::{Op, Reply, Request, fdpass};

use super::{CallError, inode_of, socket_path};
use crate::real;

/// The environment variable naming the origin: `FD:INODE:PATH`.
pub const ENV: &str = "NETCON_CONTROL_FD";

/// The origin's fd number, or -1 when this process has none.
static FD: AtomicI32 = AtomicI32::new(-1);
/// The inode of the origin's socket, which distinguishes it from whatever later gets its number.
static INODE: AtomicU64 = AtomicU64::new(0);

/// Finds the origin this process inherited, or opens one by path and names it in [`ENV`] for
/// the programs this process executes. Runs while the library loads, before the program can
/// drop privileges; a failure is left for the first call to report.
pub fn establish_at_load() {
    if let Some((fd, inode)) = inherited() {
        publish(fd, inode);
        return;
    }
    let Ok(origin) = open_by_path(false) else {
        return;
    };
    let fd = origin.into_raw_fd();
    let inode = inode_of(fd).unwrap_or(0);
    publish(fd, inode);
    let mut value = format!("{fd}:{inode}:").into_bytes();
    value.extend_from_slice(socket_path().as_bytes());
    let value = std::ffi::OsStr::from_bytes(&value);
    // SAFETY: the library's constructor runs before main, while the process has one thread,
    // so nothing reads the environment concurrently.
    unsafe { std::env::set_var(ENV, value) };
}

/// Returns whether `fd` is this process's origin.
pub fn is_origin(fd: RawFd) -> bool {
    fd >= 0 && current() == Some(fd)
}

/// Opens a control connection for the calling thread through the origin. When the origin is
/// missing, closed or broken (netcon-dp restarted), opens a new one by path first, which works
/// only for the users netcon-dp lets open the path.
pub fn open_connection() -> Result<OwnedFd, CallError> {
    if let Some(origin) = current()
        && let Ok(connection) = request_connection(origin)
    {
        return Ok(connection);
    }
    let fresh = open_by_path(true)?;
    let connection = request_connection(fresh.as_raw_fd())?;
    replace(fresh);
    Ok(connection)
}

/// Returns the origin's fd if its number still refers to the origin's socket.
fn current() -> Option<RawFd> {
    let fd = FD.load(Ordering::Acquire);
    let inode = INODE.load(Ordering::Acquire);
    (fd >= 0 && inode_of(fd) == Some(inode)).then_some(fd)
}

fn publish(fd: RawFd, inode: u64) {
    INODE.store(inode, Ordering::Release);
    FD.store(fd, Ordering::Release);
}

/// Makes `fresh` the origin, unless another thread has just replaced the origin itself.
///
/// NOTE: the origin it replaces stays open until the process exits or executes a program,
/// because another thread may still be sending on its number.
fn replace(fresh: OwnedFd) {
    let old = FD.load(Ordering::Acquire);
    let inode = inode_of(fresh.as_raw_fd()).unwrap_or(0);
    let new = fresh.as_raw_fd();
    INODE.store(inode, Ordering::Release);
    if FD
        .compare_exchange(old, new, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
    {
        std::mem::forget(fresh);
    }
}

/// Returns the origin named by [`ENV`] when its fd is still that socket and leads to this
/// process's control socket path.
fn inherited() -> Option<(RawFd, u64)> {
    let value = std::env::var_os(ENV)?;
    let mut parts = value.as_bytes().splitn(3, |&byte| byte == b':');
    let fd: RawFd = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let inode: u64 = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let path = parts.next()?;
    if path != socket_path().as_bytes() || inode_of(fd) != Some(inode) {
        return None;
    }
    Some((fd, inode))
}

/// Connects a SOCK_SEQPACKET socket to the control socket's path, close-on-exec when
/// `cloexec` is set.
fn open_by_path(cloexec: bool) -> Result<OwnedFd, CallError> {
    let path = socket_path().as_bytes();
    // SAFETY: an all-zero sockaddr_un is valid.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    if path.is_empty() || path.len() >= addr.sun_path.len() {
        let error = io::Error::from_raw_os_error(libc::ENAMETOOLONG);
        return Err(CallError::Unreachable(error));
    }
    for (dst, &src) in addr.sun_path.iter_mut().zip(path) {
        *dst = src as libc::c_char;
    }
    let flags = if cloexec { libc::SOCK_CLOEXEC } else { 0 };
    // SAFETY: plain socket creation through libc's own function.
    let fd = unsafe { real::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | flags, 0) };
    if fd < 0 {
        return Err(CallError::Unreachable(io::Error::last_os_error()));
    }
    // SAFETY: fd is a fresh socket that nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let len = size_of::<libc::sockaddr_un>() as libc::socklen_t;
    let addr = (&addr as *const libc::sockaddr_un).cast();
    // SAFETY: addr is a valid sockaddr_un of the length given.
    if unsafe { real::connect(fd, addr, len) } < 0 {
        return Err(CallError::Unreachable(io::Error::last_os_error()));
    }
    Ok(socket)
}

/// Sends [`Op::NewConnection`] on `origin` and returns the new connection once netcon-dp
/// has replied on it. Blocks until then, as any call does.
fn request_connection(origin: RawFd) -> Result<OwnedFd, CallError> {
    let (mine, theirs) = seqpacket_pair().map_err(CallError::Unreachable)?;
    let request = Request::new(Op::NewConnection).encode();
    loop {
        match fdpass::send(origin, &request, Some(theirs.as_raw_fd())) {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(CallError::Broken),
        }
    }
    // netcon-dp now holds the only other copy: if it drops the request, the reply below
    // reads end of file.
    drop(theirs);
    let mut buf = [0u8; REPLY_LEN + 1];
    loop {
        match fdpass::recv(mine.as_raw_fd(), &mut buf) {
            Ok((0, _)) => return Err(CallError::Broken),
            Ok((len, _)) => match Reply::decode(&buf[..len]) {
                Ok(reply) if reply.errno == 0 => return Ok(mine),
                _ => return Err(CallError::Broken),
            },
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(CallError::Broken),
        }
    }
}

/// Makes a close-on-exec SOCK_SEQPACKET socketpair.
fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1; 2];
    let kind = libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC;
    // SAFETY: fds has room for the two fds socketpair writes; socketpair is not one of the
    // functions this library replaces.
    if unsafe { libc::socketpair(libc::AF_UNIX, kind, 0, fds.as_mut_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socketpair returned two fresh fds that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}
