//! The shim's side of the control socket: one connection per thread (no process-wide lock),
//! made through the process tree's origin connection ([`origin`]), and made again after `fork`
//! and whenever its fd was closed or replaced behind the shim's back.

mod origin;

pub use origin::{ENV as CONTROL_FD_ENV, establish_at_load, is_origin};

use std::cell::{Cell, RefCell};
use std::ffi::CString;
use std::io;
use std::os::fd::{IntoRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use netcon_control::wire::{REPLY_LEN, pack_previous};
use netcon_control::{Reply, Request, fdpass};

use crate::real;

/// Why a call could not be made.
#[derive(Debug)]
pub enum CallError {
    /// The control socket could not be reached.
    Unreachable(io::Error),
    /// The service closed the connection or sent something that is not a reply.
    Broken,
    /// The service had closed the connection before the request could be sent, so no
    /// service saw the request.
    Closed,
}

impl CallError {
    /// The errno an intercepted call fails with when the service cannot answer.
    pub fn errno(&self) -> i32 {
        libc::ENETDOWN
    }
}

/// The control socket path, read from the environment once.
pub fn socket_path() -> &'static CString {
    static PATH: OnceLock<CString> = OnceLock::new();
    PATH.get_or_init(|| {
        let path = netcon_control::path::socket_path_from_env();
        CString::new(path.as_os_str().as_bytes()).unwrap_or_default()
    })
}

/// Prints, once per process, why the service cannot be reached.
pub fn report_unreachable(error: &CallError) {
    static REPORTED: AtomicBool = AtomicBool::new(false);
    if REPORTED.swap(true, Ordering::Relaxed) {
        return;
    }
    let reason = match error {
        CallError::Unreachable(e) => e.to_string(),
        CallError::Broken | CallError::Closed => "the connection broke".to_string(),
    };
    let path = socket_path().to_string_lossy();
    let line = format!("netcon: cannot reach netcon-dp at {path}: {reason}\n");
    // SAFETY: writes a valid buffer to stderr.
    unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
}

/// Prints, once per process, that netcon-dp went away under a listening socket.
pub fn report_listener_orphaned(fd: RawFd) {
    static REPORTED: AtomicBool = AtomicBool::new(false);
    if REPORTED.swap(true, Ordering::Relaxed) {
        return;
    }
    let path = socket_path().to_string_lossy();
    let line = format!(
        "netcon: netcon-dp at {path} has stopped; listening socket fd {fd} accepts no more \
         connections\n"
    );
    // SAFETY: writes a valid buffer to stderr.
    unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
}

struct Connection {
    fd: RawFd,
    inode: u64,
    pid: i32,
    /// The last call's kind and round trip, reported with the next request.
    previous: Cell<u64>,
}

impl Connection {
    /// Opens a connection for the calling thread through the origin connection.
    fn open() -> Result<Connection, CallError> {
        // The origin's sendmsg and recvmsg reach this library's replacements, which must
        // pass them on without asking the service about those fds.
        let _guard = CallGuard::enter();
        let fd = origin::open_connection()?.into_raw_fd();
        let inode = inode_of(fd).unwrap_or(0);
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() };
        Ok(Connection {
            fd,
            inode,
            pid,
            previous: Cell::new(0),
        })
    }

    /// Whether the fd number still refers to this connection's socket.
    fn fd_is_ours(&self) -> bool {
        inode_of(self.fd) == Some(self.inode)
    }

    /// Whether this connection may be used: opened by this process (not inherited across
    /// fork, where parent and child would read each other's replies) and still its fd.
    fn is_current(&self) -> bool {
        // SAFETY: getpid has no preconditions.
        self.pid == unsafe { libc::getpid() } && self.fd_is_ours()
    }

    fn call(
        &self,
        request: &Request,
        fd: Option<RawFd>,
    ) -> Result<(Reply, Option<OwnedFd>), CallError> {
        let started = std::time::Instant::now();
        let mut request = *request;
        request.previous = self.previous.take();
        let bytes = request.encode();
        loop {
            match fdpass::send(self.fd, &bytes, fd) {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EPIPE | libc::ECONNRESET)) => {
                    return Err(CallError::Closed);
                }
                Err(_) => return Err(CallError::Broken),
            }
        }
        let mut buf = [0u8; REPLY_LEN + 1];
        loop {
            match fdpass::recv(self.fd, &mut buf) {
                Ok((0, _)) => return Err(CallError::Broken),
                Ok((len, fd)) => {
                    let reply = Reply::decode(&buf[..len]).map_err(|_| CallError::Broken)?;
                    let nanos = started.elapsed().as_nanos() as u64;
                    self.previous.set(pack_previous(request.op, nanos));
                    return Ok((reply, fd));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Err(CallError::Broken),
            }
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if self.fd_is_ours() {
            // SAFETY: the fd number still refers to this connection's socket (checked just
            // above); in a forked child closing it leaves the parent's copy open.
            unsafe { real::close(self.fd) };
        }
    }
}

fn inode_of(fd: RawFd) -> Option<u64> {
    // SAFETY: an all-zero stat is valid for fstat to fill.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: st is valid for writes.
    let ok = unsafe { libc::fstat(fd, &mut st) } == 0;
    (ok && st.st_mode & libc::S_IFMT == libc::S_IFSOCK).then_some(st.st_ino)
}

thread_local! {
    static CONNECTION: RefCell<Option<Connection>> = const { RefCell::new(None) };
    /// Set while this thread is inside [`call`].
    static IN_CALL: Cell<bool> = const { Cell::new(false) };
}

/// Returns whether this thread is inside [`call`], so the fd at hand can only be the control
/// socket (its `sendmsg`/`recvmsg` reach the preload's own replacements).
pub fn in_call() -> bool {
    IN_CALL.try_with(Cell::get).unwrap_or(true)
}

/// Marks the thread as inside [`call`] until dropped.
struct CallGuard {
    outer: bool,
}

impl CallGuard {
    fn enter() -> CallGuard {
        let outer = IN_CALL.try_with(|flag| flag.replace(true)).unwrap_or(true);
        CallGuard { outer }
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        let _ = IN_CALL.try_with(|flag| flag.set(self.outer));
    }
}

/// Opens the calling thread's control connection now unless it has a usable one; failures
/// are left for the first call to report.
///
/// A thread or child process gets its connection through the origin even after it switched
/// to another user, but opening it early also comes before any seccomp filter the program
/// installs that would forbid `socketpair`.
pub fn connect_early() {
    let _ = CONNECTION.try_with(|slot| {
        let Ok(mut slot) = slot.try_borrow_mut() else {
            return;
        };
        if slot.as_ref().is_some_and(|c| !c.is_current()) {
            *slot = None;
        }
        if slot.is_none() {
            *slot = Connection::open().ok();
        }
    });
}

/// Returns whether `fd` is the calling thread's control connection.
pub fn is_own_connection(fd: RawFd) -> bool {
    CONNECTION
        .try_with(|slot| {
            slot.try_borrow()
                .is_ok_and(|slot| slot.as_ref().is_some_and(|c| c.fd == fd && c.is_current()))
        })
        .unwrap_or(false)
}

/// Sends `request` (with `fd` attached) and waits for the reply. Blocks for as long as the
/// service takes, which for a blocking `connect` is the TCP handshake.
pub fn call(request: &Request, fd: Option<RawFd>) -> Result<(Reply, Option<OwnedFd>), CallError> {
    let _guard = CallGuard::enter();
    let result = CONNECTION.try_with(|slot| {
        let Ok(mut slot) = slot.try_borrow_mut() else {
            // Re-entered from a signal handler during a call: use a connection of its own.
            return Connection::open()?.call(request, fd);
        };
        if slot.as_ref().is_some_and(|c| !c.is_current()) {
            // After fork, or after the program closed or replaced our fd.
            *slot = None;
        }
        if slot.is_none() {
            *slot = Some(Connection::open()?);
        }
        let mut result = slot.as_ref().expect("set above").call(request, fd);
        if matches!(result, Err(CallError::Closed)) {
            // netcon-dp restarted (or dropped this connection) since the last call: the
            // request reached nobody, so it goes once more on a new connection.
            *slot = Some(Connection::open()?);
            result = slot.as_ref().expect("set above").call(request, fd);
        }
        if result.is_err() {
            *slot = None;
        }
        result
    });
    match result {
        Ok(result) => result,
        // The thread is exiting and its slot is gone.
        Err(_) => Connection::open()?.call(request, fd),
    }
}
