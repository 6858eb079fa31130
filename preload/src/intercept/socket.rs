//! `socket`, `close`, `dup`, `dup2`, `dup3` and `fcntl`: where netcon sockets are born and where
//! the fd cache learns that an fd number changed meaning.

use libc::c_int;
use netcon_control::{Op, Request};
use std::os::fd::IntoRawFd;

use super::fail;
use crate::fdtable::{self, FdKind};
use crate::real;
use crate::rpc;

/// Replaces `socket(2)`: IPv4 and IPv6 TCP and UDP sockets come from netcon-dp; other INET
/// sockets are refused rather than created on the host network; every other family goes to
/// libc.
#[unsafe(no_mangle)]
pub extern "C" fn socket(domain: c_int, kind: c_int, protocol: c_int) -> c_int {
    let base = kind & !(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC);
    let tcp = matches!(protocol, 0 | libc::IPPROTO_TCP);
    let udp = matches!(protocol, 0 | libc::IPPROTO_UDP);
    match domain {
        libc::AF_INET | libc::AF_INET6 if base == libc::SOCK_STREAM && tcp => {}
        libc::AF_INET | libc::AF_INET6 if base == libc::SOCK_STREAM => {
            return fail(libc::EPROTONOSUPPORT);
        }
        libc::AF_INET | libc::AF_INET6 if base == libc::SOCK_DGRAM && udp => {}
        // TODO: raw and ICMP sockets are not carried; refusing them keeps programs off the
        // host network.
        libc::AF_INET | libc::AF_INET6 => return fail(libc::EAFNOSUPPORT),
        // SAFETY: the program's own arguments, passed on unchanged.
        _ => return unsafe { real::socket(domain, kind, protocol) },
    }

    let mut request = Request::new(Op::Socket);
    request.arg0 = domain as u64;
    request.arg1 = base as u64;
    let fd = match rpc::call(&request, None) {
        Ok((reply, _)) if reply.errno != 0 => return fail(reply.errno),
        Ok((_, Some(fd))) => fd.into_raw_fd(),
        Ok((_, None)) => return fail(libc::EPROTO),
        Err(e) => {
            rpc::report_unreachable(&e);
            return fail(e.errno());
        }
    };
    if kind & libc::SOCK_CLOEXEC != 0 {
        // SAFETY: fd was just received and is ours.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    if kind & libc::SOCK_NONBLOCK != 0 {
        // SAFETY: as above.
        unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK) };
    }
    if base == libc::SOCK_DGRAM {
        fdtable::set(fd, FdKind::Datagram);
        fdtable::set_family(fd, domain);
    } else {
        fdtable::set(fd, FdKind::Stream);
    }
    fd
}

/// Replaces `close(2)`: forgets what the fd was, then closes it.
#[unsafe(no_mangle)]
pub extern "C" fn close(fd: c_int) -> c_int {
    fdtable::forget(fd);
    // SAFETY: the program's own fd, passed on unchanged.
    unsafe { real::close(fd) }
}

/// Replaces `dup(2)`: the new fd is the same socket as `old`.
#[unsafe(no_mangle)]
pub extern "C" fn dup(old: c_int) -> c_int {
    // SAFETY: the program's own fd, passed on unchanged.
    let new = unsafe { real::dup(old) };
    if new >= 0 {
        fdtable::copy(old, new);
    }
    new
}

/// Replaces `dup2(2)`: the target fd number now names the socket of `old`.
#[unsafe(no_mangle)]
pub extern "C" fn dup2(old: c_int, new: c_int) -> c_int {
    // SAFETY: the program's own fds, passed on unchanged.
    let ret = unsafe { real::dup2(old, new) };
    if ret >= 0 && old != new {
        fdtable::copy(old, new);
    }
    ret
}

/// Replaces `dup3(2)`.
#[unsafe(no_mangle)]
pub extern "C" fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
    // SAFETY: the program's own fds, passed on unchanged.
    let ret = unsafe { real::dup3(old, new, flags) };
    if ret >= 0 {
        fdtable::copy(old, new);
    }
    ret
}

/// Replaces `fcntl(2)` so that copies made with F_DUPFD and F_DUPFD_CLOEXEC take the entry of
/// their original; every command goes to libc unchanged.
///
/// `fcntl` is variadic in C; as for `syscall`, on x86_64 the one optional argument travels in
/// the register of a fixed third argument, so taking a `c_long` reads what the caller passed
/// (or whatever the register held, when the command takes none, which libc then ignores).
///
/// # Safety
/// As for libc's `fcntl`.
#[cfg(target_arch = "x86_64")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fcntl(fd: c_int, command: c_int, arg: libc::c_long) -> c_int {
    // SAFETY: the program's own arguments, passed on unchanged.
    let ret = unsafe { real::fcntl(fd, command, arg) };
    if ret >= 0 && matches!(command, libc::F_DUPFD | libc::F_DUPFD_CLOEXEC) {
        fdtable::copy(fd, ret);
    }
    ret
}

/// Replaces `fcntl64`, which programs built with 64-bit file offsets call instead of `fcntl`.
///
/// # Safety
/// As for libc's `fcntl`.
#[cfg(target_arch = "x86_64")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fcntl64(fd: c_int, command: c_int, arg: libc::c_long) -> c_int {
    // SAFETY: the caller's contract, which fcntl's is.
    unsafe { fcntl(fd, command, arg) }
}
