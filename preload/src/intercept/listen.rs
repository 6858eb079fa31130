//! `listen`, `accept`, `accept4` and the raw `syscall(SYS_accept4, …)` form, plus the raw
//! `syscall(SYS_clone, …)` forks that need a control connection of their own.
//!
//! A listening netcon socket is the program's end of a SOCK_SEQPACKET socketpair; each
//! accepted connection arrives on it as one message carrying the stream fd and the addresses.
//! So accept is a `recvmsg`, readiness works with poll/epoll/select, and forked workers that
//! share the listener each receive whole connections.

use std::os::fd::{AsRawFd, IntoRawFd};

use libc::{c_int, c_long, sockaddr, socklen_t};
use netcon_control::wire::{ACCEPT_LEN, AcceptMessage};
use netcon_control::{Op, Request, fdpass};

use super::{Answer, ask, classify, fail, orphaned, timeouts, write_sockaddr};
use crate::fdtable::{self, FdKind};
use crate::real;

/// Replaces `listen(2)`: the service returns a seqpacket end, which takes the socket's fd
/// number (and its close-on-exec and non-blocking flags).
#[unsafe(no_mangle)]
pub extern "C" fn listen(fd: c_int, backlog: c_int) -> c_int {
    match classify(fd) {
        // SAFETY: the program's own arguments, passed on unchanged.
        FdKind::Foreign | FdKind::Unknown | FdKind::Unchecked => {
            return unsafe { real::listen(fd, backlog) };
        }
        FdKind::Listener => return 0,
        FdKind::OrphanedListener => return fail(libc::ENETDOWN),
        // Linux: a UDP socket cannot listen.
        FdKind::Datagram | FdKind::BoundDatagram | FdKind::ConnectedDatagram => {
            return fail(libc::EOPNOTSUPP);
        }
        FdKind::Stream => {}
    }
    let mut request = Request::new(Op::Listen);
    request.arg0 = backlog.max(0) as u64;
    let listener = match ask(fd, &request) {
        Answer::Reply(_, Some(listener)) => listener,
        Answer::Reply(_, None) => return 0,
        Answer::Failed(errno) => return fail(errno),
        // SAFETY: as above.
        Answer::Foreign => return unsafe { real::listen(fd, backlog) },
    };
    // SAFETY: F_GETFD/F_GETFL/F_SETFL take and return plain integers on fds we hold.
    let (fd_flags, status_flags) = unsafe {
        (
            libc::fcntl(fd, libc::F_GETFD),
            libc::fcntl(fd, libc::F_GETFL),
        )
    };
    if status_flags >= 0 && status_flags & libc::O_NONBLOCK != 0 {
        // SAFETY: as above.
        unsafe { libc::fcntl(listener.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    }
    let cloexec = if fd_flags >= 0 && fd_flags & libc::FD_CLOEXEC != 0 {
        libc::O_CLOEXEC
    } else {
        0
    };
    // A receive timeout set before listen bounds accept on Linux.
    timeouts::copy(fd, listener.as_raw_fd());
    // SAFETY: both fds are valid; dup3 atomically replaces fd with the listener.
    if unsafe { real::dup3(listener.as_raw_fd(), fd, cloexec) } < 0 {
        return -1;
    }
    fdtable::set(fd, FdKind::Listener);
    0
}

/// Replaces `accept(2)`.
///
/// # Safety
/// `addr`/`len` must be null or valid as for libc's `accept`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    // SAFETY: same contract.
    unsafe { accept4(fd, addr, len, 0) }
}

/// Replaces `accept4(2)`: receives the next connection from a netcon listener.
///
/// # Safety
/// `addr`/`len` must be null or valid as for libc's `accept4`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn accept4(
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    flags: c_int,
) -> c_int {
    match classify(fd) {
        FdKind::Listener => {}
        FdKind::OrphanedListener => return fail(orphaned::accept_errno(fd)),
        kind if kind.is_datagram() => return fail(libc::EOPNOTSUPP),
        // SAFETY: the program's own arguments, passed on unchanged.
        _ => return unsafe { real::accept4(fd, addr, len, flags) },
    }
    if flags & !(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) != 0 {
        return fail(libc::EINVAL);
    }
    let mut buf = [0u8; ACCEPT_LEN + 1];
    let (message, stream) = loop {
        match fdpass::recv(fd, &mut buf) {
            // End-of-file: netcon-dp is gone.
            Ok((0, _)) if orphaned::silence(fd) => return fail(libc::ECONNABORTED),
            Ok((0, _)) => return fail(libc::EINVAL),
            Ok((n, Some(stream))) => match AcceptMessage::decode(&buf[..n]) {
                Ok(message) => break (message, stream),
                Err(_) => continue,
            },
            Ok((_, None)) => continue,
            Err(e) => return fail(e.raw_os_error().unwrap_or(libc::EIO)),
        }
    };
    let stream = stream.into_raw_fd();
    // TODO: close-on-exec is set after recvmsg, so a fork+exec in another thread in between
    // leaks the fd into that program; recvmsg with MSG_CMSG_CLOEXEC would close the gap.
    if flags & libc::SOCK_CLOEXEC != 0 {
        // SAFETY: the fd was just received and is ours.
        unsafe { libc::fcntl(stream, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    if flags & libc::SOCK_NONBLOCK != 0 {
        // SAFETY: as above.
        unsafe { libc::fcntl(stream, libc::F_SETFL, libc::O_NONBLOCK) };
    }
    timeouts::copy(fd, stream);
    fdtable::set(stream, FdKind::Stream);
    if let Some(remote) = message.remote.0 {
        // SAFETY: the caller's contract for addr and len.
        unsafe { write_sockaddr(&remote, addr, len) };
    }
    stream
}

/// Replaces `syscall(2)` so that programs which call accept through it (libuv does, as
/// `syscall(SYS_accept4, …)`) reach netcon too. A child made by a raw fork-like `clone`
/// (vsftpd) opens its own control connection here. Every other number goes to libc untouched.
///
/// `syscall` is variadic in C, and stable Rust cannot define variadic functions. On x86_64 the
/// first six integer arguments of a variadic call travel in the same registers as those of a
/// fixed-argument call, so taking the number plus six `c_long`s reads exactly what the caller
/// passed (unused ones are whatever the registers held, and are passed on unread).
///
/// # Safety
/// The same contract as the system call `number`.
#[cfg(target_arch = "x86_64")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn syscall(
    number: c_long,
    a0: c_long,
    a1: c_long,
    a2: c_long,
    a3: c_long,
    a4: c_long,
    a5: c_long,
) -> c_long {
    match number {
        libc::SYS_accept4 => {
            // SAFETY: the arguments are accept4's, as the caller's contract says.
            c_long::from(unsafe {
                accept4(
                    a0 as c_int,
                    a1 as *mut sockaddr,
                    a2 as *mut socklen_t,
                    a3 as c_int,
                )
            })
        }
        libc::SYS_accept => {
            // SAFETY: the arguments are accept's.
            c_long::from(unsafe {
                accept4(a0 as c_int, a1 as *mut sockaddr, a2 as *mut socklen_t, 0)
            })
        }
        libc::SYS_clone | libc::SYS_fork if is_fork_like(number, a0, a1) => {
            // SAFETY: passed on unchanged; the child continues on a copy of this stack.
            let ret = unsafe { real::syscall(number, [a0, a1, a2, a3, a4, a5]) };
            if ret == 0 {
                // A raw clone runs no fork handlers, so the child connects here, before it
                // can chroot or drop privileges (vsftpd does both after such a clone).
                crate::rpc::connect_early();
            }
            ret
        }
        libc::SYS_execve | libc::SYS_execveat => {
            let args = [a0, a1, a2, a3, a4, a5];
            // SAFETY: the arguments are the system call's, as the caller's contract says.
            unsafe { crate::exec::exec_syscall(number, args) }.unwrap_or(-1)
        }
        libc::SYS_sendmmsg | libc::SYS_recvmmsg => {
            let args = [a0, a1, a2, a3, a4, a5];
            // SAFETY: the arguments are the system call's, as the caller's contract says.
            match unsafe { super::datagram::mmsg_syscall(number, args) } {
                Some(result) => result,
                // SAFETY: passed on unchanged.
                None => unsafe { real::syscall(number, args) },
            }
        }
        // SAFETY: passed on unchanged.
        _ => unsafe { real::syscall(number, [a0, a1, a2, a3, a4, a5]) },
    }
}

/// Whether a raw `clone` or `fork` makes a new process that returns from this very call on a
/// copy of the caller's stack: no CLONE_VM or CLONE_THREAD (x86_64 passes clone's flags
/// first and its stack second) and no new stack.
fn is_fork_like(number: c_long, flags: c_long, stack: c_long) -> bool {
    if number == libc::SYS_fork {
        return true;
    }
    let shared = (libc::CLONE_VM | libc::CLONE_THREAD) as c_long;
    flags & shared == 0 && stack == 0
}
