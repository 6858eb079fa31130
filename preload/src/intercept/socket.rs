//! `socket`, `close`, `dup2` and `dup3`: where netcon sockets are born and where the fd cache
//! learns that an fd number changed meaning.

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

/// Replaces `dup2(2)`: the target fd number now names another file.
#[unsafe(no_mangle)]
pub extern "C" fn dup2(old: c_int, new: c_int) -> c_int {
    // SAFETY: the program's own fds, passed on unchanged.
    let ret = unsafe { real::dup2(old, new) };
    if ret >= 0 && old != new {
        fdtable::forget(new);
    }
    ret
}

/// Replaces `dup3(2)`.
#[unsafe(no_mangle)]
pub extern "C" fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
    // SAFETY: the program's own fds, passed on unchanged.
    let ret = unsafe { real::dup3(old, new, flags) };
    if ret >= 0 {
        fdtable::forget(new);
    }
    ret
}
