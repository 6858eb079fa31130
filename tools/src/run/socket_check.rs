//! Checks that a `netcon-dp` accepts connections on the control socket.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use super::RunError;

/// Returns an error unless `socket` is a Unix socket that accepts a SOCK_SEQPACKET connection,
/// the control socket's type.
///
/// The probe connection is closed at once without a request.
pub fn check_dataplane(socket: &Path) -> Result<(), RunError> {
    let not_running = |reason: &str| RunError::DataplaneNotRunning {
        socket: socket.to_path_buf(),
        reason: reason.to_owned(),
    };
    let not_control = |reason: &str| RunError::NotControlSocket {
        socket: socket.to_path_buf(),
        reason: reason.to_owned(),
    };
    let meta = match std::fs::metadata(socket) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return Err(not_running("the socket does not exist"));
        }
        Err(err) if err.kind() == io::ErrorKind::PermissionDenied => {
            return Err(RunError::SocketForbidden {
                socket: socket.to_path_buf(),
            });
        }
        Err(err) => return Err(not_running(&err.to_string())),
    };
    if !meta.file_type().is_socket() {
        return Err(not_control("the path is not a Unix socket"));
    }
    match connect_seqpacket(socket) {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => Err(not_running(
            "connection refused: the socket file is left over from an earlier netcon-dp",
        )),
        Err(err) if err.kind() == io::ErrorKind::PermissionDenied => {
            Err(RunError::SocketForbidden {
                socket: socket.to_path_buf(),
            })
        }
        Err(err) if err.raw_os_error() == Some(libc::EPROTOTYPE) => Err(not_control(
            "the socket is not of type SOCK_SEQPACKET, so another program serves it",
        )),
        Err(err) => Err(not_running(&format!("cannot connect: {err}"))),
    }
}

/// Connects a close-on-exec SOCK_SEQPACKET Unix socket to `path`.
pub(crate) fn connect_seqpacket(path: &Path) -> io::Result<OwnedFd> {
    // SAFETY: sockaddr_un is plain data, so all zeroes is a valid value.
    let mut address: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    address.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    // One byte stays zero as the terminator.
    if bytes.len() >= address.sun_path.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "socket path too long",
        ));
    }
    for (slot, &byte) in address.sun_path.iter_mut().zip(bytes) {
        *slot = byte as libc::c_char;
    }

    // SAFETY: socket has no memory preconditions.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socket just returned this fd and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let length = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: address is a valid sockaddr_un of the given length.
    let result = unsafe {
        libc::connect(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            (&address as *const libc::sockaddr_un).cast(),
            length,
        )
    };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::{UnixDatagram, UnixListener};

    fn reason(result: Result<(), RunError>) -> String {
        match result {
            Err(RunError::DataplaneNotRunning { reason, .. }) => reason,
            other => panic!("expected DataplaneNotRunning, got {other:?}"),
        }
    }

    fn other_file_reason(result: Result<(), RunError>) -> String {
        match result {
            Err(RunError::NotControlSocket { reason, .. }) => reason,
            other => panic!("expected NotControlSocket, got {other:?}"),
        }
    }

    fn scratch_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("netcon-sock-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn missing_socket_rejected() {
        let dir = scratch_dir("missing");
        let result = check_dataplane(&dir.join("none.sock"));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(reason(result).contains("does not exist"));
    }

    #[test]
    fn regular_file_rejected() {
        let dir = scratch_dir("file");
        let path = dir.join("file");
        std::fs::write(&path, "").unwrap();
        let result = check_dataplane(&path);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(other_file_reason(result).contains("not a Unix socket"));
    }

    #[test]
    fn stale_socket_rejected() {
        let dir = scratch_dir("stale");
        let path = dir.join("stale.sock");
        drop(UnixDatagram::bind(&path).unwrap());
        let result = check_dataplane(&path);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(reason(result).contains("connection refused"));
    }

    #[test]
    fn stream_socket_rejected() {
        let dir = scratch_dir("stream");
        let path = dir.join("stream.sock");
        let _listener = UnixListener::bind(&path).unwrap();
        let result = check_dataplane(&path);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(other_file_reason(result).contains("SOCK_SEQPACKET"));
    }

    #[test]
    fn seqpacket_listener_accepted() {
        let dir = scratch_dir("seqpacket");
        let path = dir.join("control.sock");
        let _listener = bind_seqpacket(&path);
        let result = check_dataplane(&path);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(result.is_ok(), "{result:?}");
    }

    /// Binds and listens on a SOCK_SEQPACKET socket at `path`, as netcon-dp does.
    fn bind_seqpacket(path: &Path) -> OwnedFd {
        // SAFETY: socket has no memory preconditions.
        let fd =
            unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) };
        assert!(fd >= 0);
        // SAFETY: socket just returned this fd.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_un is plain data.
        let mut address: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        address.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (slot, &byte) in address.sun_path.iter_mut().zip(path.as_os_str().as_bytes()) {
            *slot = byte as libc::c_char;
        }
        let length = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
        let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
        // SAFETY: address is a valid sockaddr_un of the given length.
        let bound =
            unsafe { libc::bind(raw, (&address as *const libc::sockaddr_un).cast(), length) };
        assert_eq!(bound, 0, "bind: {}", io::Error::last_os_error());
        // SAFETY: listen has no memory preconditions.
        assert_eq!(unsafe { libc::listen(raw, 4) }, 0);
        fd
    }
}
