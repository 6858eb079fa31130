//! Socket, epoll and eventfd helpers over raw fds.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::{cvt, cvt_size};

/// Creates a close-on-exec Unix socketpair of `kind` (SOCK_STREAM or SOCK_SEQPACKET).
pub fn socketpair(kind: libc::c_int) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1; 2];
    // SAFETY: fds has room for the two fds socketpair writes.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            kind | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: socketpair returned two fresh fds that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Sets or clears O_NONBLOCK.
pub fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL take and return plain integers.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    let flags = if on {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags) })?;
    Ok(())
}

/// Returns whether O_NONBLOCK is set.
pub fn is_nonblocking(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: F_GETFL takes no argument and returns the flags.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    Ok(flags & libc::O_NONBLOCK != 0)
}

/// Reads an integer socket option.
pub fn get_int_option(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and len are valid for writes of the sizes given.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    Ok(value)
}

/// Sets an integer socket option.
pub fn set_int_option(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the option value is a c_int on the stack whose size is passed along.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// Returns the inode number of the socket behind `fd`, which identifies a socket across
/// processes (every fd of one socket, in any process, shows the same inode). Fails with
/// ENOTSOCK for anything but a socket: other filesystems reuse the same numbers, so a file
/// must never pass for a socket.
pub fn inode(fd: BorrowedFd<'_>) -> io::Result<u64> {
    // SAFETY: an all-zero stat is a valid value for fstat to overwrite.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: st is a valid, writable stat struct.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(io::Error::from_raw_os_error(libc::ENOTSOCK));
    }
    Ok(st.st_ino)
}

/// Returns whether `fd` is one end of a connected AF_UNIX SOCK_SEQPACKET socketpair: neither
/// end has an address, so it does not lead to a listening socket of some other program. Fails
/// when `fd` is not a socket.
pub fn is_seqpacket_pair_end(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let domain = get_int_option(fd, libc::SOL_SOCKET, libc::SO_DOMAIN)?;
    let kind = get_int_option(fd, libc::SOL_SOCKET, libc::SO_TYPE)?;
    let listening = get_int_option(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN)?;
    if domain != libc::AF_UNIX || kind != libc::SOCK_SEQPACKET || listening != 0 {
        return Ok(false);
    }
    let unnamed = size_of::<libc::sa_family_t>() as libc::socklen_t;
    // SAFETY: an all-zero sockaddr_un is a valid value for the calls to overwrite.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_un>() as libc::socklen_t;
    let out = (&mut addr as *mut libc::sockaddr_un).cast();
    // SAFETY: addr and len are valid for writes of the sizes given.
    if unsafe { libc::getpeername(fd.as_raw_fd(), out, &mut len) } != 0 || len != unnamed {
        return Ok(false);
    }
    len = size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: as above.
    cvt(unsafe { libc::getsockname(fd.as_raw_fd(), out, &mut len) })?;
    Ok(len == unnamed)
}

/// Returns the uid and pid of the process on the other end of a Unix socket (SO_PEERCRED).
pub fn peer_credentials(fd: BorrowedFd<'_>) -> io::Result<libc::ucred> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: cred and len are valid for writes of the sizes given.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    })?;
    Ok(cred)
}

/// `send` with flags; returns the bytes sent.
pub fn send(fd: RawFd, data: &[u8], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: data is a valid readable slice of the length given.
    cvt_size(unsafe { libc::send(fd, data.as_ptr().cast(), data.len(), flags) })
}

/// `recv` with flags; returns the bytes received (0 at end of stream).
pub fn recv(fd: RawFd, buf: &mut [u8], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: buf is a valid writable slice of the length given.
    cvt_size(unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), flags) })
}

/// `recvmsg` into `first` and then `rest`; returns the bytes received (0 at end of stream).
pub fn recv_two(
    fd: RawFd,
    first: &mut [u8],
    rest: &mut [u8],
    flags: libc::c_int,
) -> io::Result<usize> {
    let mut iov = [
        libc::iovec {
            iov_base: first.as_mut_ptr().cast(),
            iov_len: first.len(),
        },
        libc::iovec {
            iov_base: rest.as_mut_ptr().cast(),
            iov_len: rest.len(),
        },
    ];
    // SAFETY: an all-zero msghdr is valid (no name, no control data).
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_iov = iov.as_mut_ptr();
    message.msg_iovlen = iov.len();
    // SAFETY: both iovecs describe valid writable slices that outlive the call.
    cvt_size(unsafe { libc::recvmsg(fd, &mut message, flags) })
}

/// Returns the bytes queued for reading on socket `fd` (FIONREAD).
pub fn queued_bytes(fd: RawFd) -> io::Result<usize> {
    let mut count: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer given.
    cvt(unsafe { libc::ioctl(fd, libc::FIONREAD, &mut count) })?;
    Ok(count.max(0) as usize)
}

/// `shutdown(fd, how)`.
pub fn shutdown(fd: RawFd, how: libc::c_int) -> io::Result<()> {
    // SAFETY: shutdown takes plain integers.
    cvt(unsafe { libc::shutdown(fd, how) })?;
    Ok(())
}

/// Whether `fd` reports a hang-up now (POLLHUP: both directions are shut, so for one end of
/// a socketpair the other end was closed, or shut down after this end shut down its own
/// sending side). Does not wait.
pub fn is_hung_up(fd: RawFd) -> bool {
    let mut poll = libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    };
    // SAFETY: poll reads and writes one valid pollfd and does not wait (timeout 0).
    let ready = unsafe { libc::poll(&mut poll, 1, 0) } == 1;
    ready && poll.revents & libc::POLLHUP != 0
}

/// Creates a close-on-exec pipe; returns (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1; 2];
    // SAFETY: fds has room for the two fds pipe2 writes.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 returned two fresh fds that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Creates a non-blocking, close-on-exec eventfd.
pub fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd takes plain integers and returns a fresh fd.
    let raw = cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
    // SAFETY: the fd is fresh and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Adds 1 to an eventfd's counter, waking whoever polls it.
pub fn eventfd_signal(fd: RawFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a valid u64. A full counter (EAGAIN) already means "wake up",
    // so the result is deliberately ignored.
    let _ = unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
}

/// Resets an eventfd's counter.
pub fn eventfd_drain(fd: RawFd) {
    let mut value: u64 = 0;
    // SAFETY: reads 8 bytes into a valid u64; EAGAIN (counter already 0) is fine to ignore.
    let _ = unsafe { libc::read(fd, (&mut value as *mut u64).cast(), 8) };
}

/// Creates a close-on-exec epoll instance.
pub fn epoll_create() -> io::Result<OwnedFd> {
    // SAFETY: epoll_create1 takes a flag and returns a fresh fd.
    let raw = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
    // SAFETY: the fd is fresh and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Registers `fd` on `epoll` for `events`, tagged with `token`.
pub fn epoll_add(epoll: RawFd, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
    let mut event = libc::epoll_event { events, u64: token };
    // SAFETY: event is a valid epoll_event for the duration of the call.
    cvt(unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, fd, &mut event) })?;
    Ok(())
}

/// Removes `fd` from `epoll`.
pub fn epoll_delete(epoll: RawFd, fd: RawFd) -> io::Result<()> {
    // SAFETY: EPOLL_CTL_DEL ignores the event pointer on kernels since 2.6.9.
    cvt(unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) })?;
    Ok(())
}

/// Waits up to `timeout_ms` (-1: forever, 0: not at all) and fills `events`; returns how many.
pub fn epoll_wait(
    epoll: RawFd,
    events: &mut [libc::epoll_event],
    timeout_ms: i32,
) -> io::Result<usize> {
    // SAFETY: events is a valid writable array of the length given.
    let n =
        unsafe { libc::epoll_wait(epoll, events.as_mut_ptr(), events.len() as i32, timeout_ms) };
    match cvt(n) {
        Ok(n) => Ok(n as usize),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn seqpacket_pair_end_is_recognized() {
        let (app, service) = socketpair(libc::SOCK_SEQPACKET).unwrap();
        assert!(is_seqpacket_pair_end(service.as_fd()).unwrap());
        assert!(is_seqpacket_pair_end(app.as_fd()).unwrap());
        let (stream, _other) = socketpair(libc::SOCK_STREAM).unwrap();
        assert!(!is_seqpacket_pair_end(stream.as_fd()).unwrap());
    }

    /// Returns a SOCK_SEQPACKET socket bound to `path`, or connected to it with `connect`.
    fn seqpacket_at(path: &std::path::Path, connect: bool) -> OwnedFd {
        // SAFETY: socket takes plain integers and returns a fresh fd.
        let raw = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET, 0) };
        assert!(raw >= 0);
        // SAFETY: raw is a fresh fd nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: an all-zero sockaddr_un is valid.
        let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        let bytes = path.as_os_str().as_encoded_bytes();
        for (dst, &src) in addr.sun_path.iter_mut().zip(bytes) {
            *dst = src as libc::c_char;
        }
        let len = size_of::<libc::sockaddr_un>() as libc::socklen_t;
        let ptr = (&addr as *const libc::sockaddr_un).cast();
        // SAFETY: addr is a valid sockaddr_un of the length given.
        let ret = unsafe {
            if connect {
                libc::connect(raw, ptr, len)
            } else {
                libc::bind(raw, ptr, len) | libc::listen(raw, 1)
            }
        };
        assert_eq!(ret, 0, "{}", io::Error::last_os_error());
        fd
    }

    #[test]
    fn connection_to_listener_is_not_pair_end() {
        let path = std::env::temp_dir().join(format!("netcon-pair-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = seqpacket_at(&path, false);
        let client = seqpacket_at(&path, true);
        let _ = std::fs::remove_file(&path);
        assert!(!is_seqpacket_pair_end(client.as_fd()).unwrap());
        assert!(!is_seqpacket_pair_end(listener.as_fd()).unwrap());
        let file = std::fs::File::open("/dev/null").unwrap();
        assert!(is_seqpacket_pair_end(file.as_fd()).is_err());
    }
}
