//! The control socket itself: a pathname SOCK_SEQPACKET socket (a pathname, because abstract
//! sockets belong to one network namespace and programs may run in another).

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::sys::{acl, cvt};

/// Why the control socket could not be set up.
#[derive(Debug)]
pub enum ControlSocketError {
    /// Another process is serving on the path.
    InUse(PathBuf),
    /// The path is a file that is not a socket, or a socket that is not netcon-dp's.
    Occupied { path: PathBuf, what: &'static str },
    /// The path does not fit in `sockaddr_un`.
    PathTooLong(PathBuf),
    /// The default socket's directory exists but belongs to someone else or is open to
    /// others, so whoever owns it could swap the socket.
    UnsafeDirectory { dir: PathBuf, owner: u32 },
    /// A syscall failed on the path.
    Io(PathBuf, io::Error),
}

impl std::fmt::Display for ControlSocketError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ControlSocketError::InUse(path) => write!(
                f,
                "control socket {} is in use by a running netcon-dp; stop it or pass another --socket",
                path.display()
            ),
            ControlSocketError::Occupied { path, what } => write!(
                f,
                "{} exists and is {what}; pass --socket with another path, or remove the file \
                 if it is no longer needed",
                path.display()
            ),
            ControlSocketError::PathTooLong(path) => {
                write!(
                    f,
                    "control socket path {} is longer than 107 bytes",
                    path.display()
                )
            }
            ControlSocketError::UnsafeDirectory { dir, owner } => write!(
                f,
                "control socket directory {} belongs to uid {owner} or is open to other users; \
                 remove it, or pass --socket with a path in a directory of yours",
                dir.display()
            ),
            ControlSocketError::Io(path, e) => write!(f, "control socket {}: {e}", path.display()),
        }
    }
}

impl std::error::Error for ControlSocketError {}

/// The bound, listening control socket; removes its path when dropped, unless the path names
/// another file by then.
pub struct ControlSocket {
    fd: OwnedFd,
    path: PathBuf,
    /// Device and inode of the socket file, so the drop removes this socket's file only.
    file_id: Option<(u64, u64)>,
}

impl ControlSocket {
    /// Binds `path`, in a directory that is created with mode 0711 when it is missing. Only
    /// netcon-dp's own user, root and `other_users` may connect: the socket has mode 0600 and
    /// a POSIX ACL entry for each of `other_users`. On a filesystem without POSIX ACLs it has
    /// mode 0666 instead, and the uid check on accept alone turns other users away. Programs
    /// reach the service after they switch users through connections derived from one opened
    /// before (see [`netcon_control::Op::NewConnection`]), so they need no access to the path.
    /// A stale socket file left by a process that died is replaced; a live socket, or a file
    /// that is not a socket, is an error and stays as it is.
    /// With `private_dir` (the default path, whose directory name anyone can predict), an
    /// existing directory must belong to this user and be closed to others.
    pub fn bind(
        path: &Path,
        private_dir: bool,
        other_users: &[u32],
    ) -> Result<ControlSocket, ControlSocketError> {
        let io_err = |e| ControlSocketError::Io(path.to_path_buf(), e);
        let addr = sockaddr(path.as_os_str())
            .ok_or_else(|| ControlSocketError::PathTooLong(path.to_path_buf()))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.exists()
        {
            std::fs::create_dir_all(dir).map_err(io_err)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))
                .map_err(io_err)?;
        }
        if private_dir && let Some(dir) = path.parent() {
            check_private_dir(dir)?;
        }
        remove_stale_socket(path, &addr)?;

        let fd = seqpacket_socket().map_err(io_err)?;
        let len = size_of::<libc::sockaddr_un>() as libc::socklen_t;
        // SAFETY: addr is a valid sockaddr_un of the length given.
        cvt(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_un).cast(),
                len,
            )
        })
        .map_err(io_err)?;
        restrict_access(path, other_users).map_err(io_err)?;
        // SAFETY: listen takes plain integers.
        cvt(unsafe { libc::listen(fd.as_raw_fd(), libc::SOMAXCONN) }).map_err(io_err)?;
        Ok(ControlSocket {
            fd,
            path: path.to_path_buf(),
            file_id: file_id(path),
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts one client (non-blocking, close-on-exec).
    pub fn accept(&self) -> io::Result<OwnedFd> {
        let flags = libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
        // SAFETY: null address pointers are allowed when the peer address is not wanted.
        let raw = cvt(unsafe {
            libc::accept4(
                self.fd.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                flags,
            )
        })?;
        // SAFETY: accept4 returned a fresh fd that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(raw) })
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        if self.file_id.is_some() && file_id(&self.path) == self.file_id {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Returns the device and inode of the file at `path` itself (not of a link's target).
fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path).ok()?;
    Some((meta.dev(), meta.ino()))
}

/// Removes a stale socket file at `path` (see [`remove_stale_socket`]) and ignores every error,
/// which [`ControlSocket::bind`] reports later. netcon-dp calls it before its slower set-up, so
/// a script that waits for the socket file to appear does not find the old one.
pub fn clear_stale_socket(path: &Path) {
    if let Some(addr) = sockaddr(path.as_os_str()) {
        let _ = remove_stale_socket(path, &addr);
    }
}

/// Removes the socket file at `path` when no process listens on it any more (a netcon-dp that
/// died). Leaves every other file alone: a file that is not a socket, a socket something
/// listens on, and a socket whose state cannot be told.
fn remove_stale_socket(path: &Path, addr: &libc::sockaddr_un) -> Result<(), ControlSocketError> {
    use std::os::unix::fs::FileTypeExt;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ControlSocketError::Io(path.to_path_buf(), e)),
    };
    let occupied = |what| ControlSocketError::Occupied {
        path: path.to_path_buf(),
        what,
    };
    if !meta.file_type().is_socket() {
        return Err(occupied("not a socket"));
    }
    match connect_probe(addr) {
        Probe::Listening => Err(ControlSocketError::InUse(path.to_path_buf())),
        Probe::OtherType => Err(occupied("a socket of another program")),
        Probe::Failed(e) => Err(ControlSocketError::Io(path.to_path_buf(), e)),
        Probe::Stale => {
            std::fs::remove_file(path).map_err(|e| ControlSocketError::Io(path.to_path_buf(), e))
        }
    }
}

/// Lets only the owner (and root) and `other_users` connect to the socket at `path`, before it
/// listens.
fn restrict_access(path: &Path, other_users: &[u32]) -> io::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    if other_users.is_empty() {
        return Ok(());
    }
    match acl::set_access_acl(path, &acl::read_write_for(other_users)) {
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
            log::warn!(
                "the filesystem of {} does not support POSIX ACLs, so the control socket gets \
                 mode 0666 for --allow-uid {other_users:?}, and only the uid check after \
                 connecting turns other users away; put --socket on a filesystem with ACLs \
                 (tmpfs, ext4, xfs) to keep them from connecting at all",
                path.display()
            );
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
        }
        other => other,
    }
}

/// Rejects a directory that another user owns or that others may write to.
fn check_private_dir(dir: &Path) -> Result<(), ControlSocketError> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(dir) else {
        return Ok(());
    };
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    if meta.uid() != uid || meta.mode() & 0o022 != 0 {
        return Err(ControlSocketError::UnsafeDirectory {
            dir: dir.to_path_buf(),
            owner: meta.uid(),
        });
    }
    Ok(())
}

fn seqpacket_socket() -> io::Result<OwnedFd> {
    let kind = libc::SOCK_SEQPACKET | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    // SAFETY: socket takes plain integers and returns a fresh fd.
    let raw = cvt(unsafe { libc::socket(libc::AF_UNIX, kind, 0) })?;
    // SAFETY: the fd is fresh and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// What a connect to an existing socket file found.
enum Probe {
    /// A seqpacket socket listens there (a live netcon-dp).
    Listening,
    /// A socket of another type listens there (EPROTOTYPE).
    OtherType,
    /// Nothing listens (ECONNREFUSED): the file is left over.
    Stale,
    /// The connect failed otherwise, for example with EACCES.
    Failed(io::Error),
}

/// Connects to `addr` to learn whether a process listens on it.
fn connect_probe(addr: &libc::sockaddr_un) -> Probe {
    let fd = match seqpacket_socket() {
        Ok(fd) => fd,
        Err(e) => return Probe::Failed(e),
    };
    let len = size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: addr is a valid sockaddr_un of the length given.
    let ret = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (addr as *const libc::sockaddr_un).cast(),
            len,
        )
    };
    if ret == 0 {
        return Probe::Listening;
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        // A full backlog on a non-blocking connect: still somebody listening.
        Some(libc::EAGAIN) => Probe::Listening,
        Some(libc::EPROTOTYPE) => Probe::OtherType,
        Some(libc::ECONNREFUSED) => Probe::Stale,
        _ => Probe::Failed(error),
    }
}

fn sockaddr(path: &OsStr) -> Option<libc::sockaddr_un> {
    // SAFETY: an all-zero sockaddr_un is valid.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_bytes();
    if bytes.is_empty() || bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return None;
    }
    for (dst, &src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    Some(addr)
}
