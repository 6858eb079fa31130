//! `connect` and `bind` on netcon sockets.

use libc::{c_int, sockaddr, socklen_t};
use netcon_control::wire::FLAG_NONBLOCK;
use netcon_control::{Op, Request, WireAddr};

use super::{Answer, ask, classify, fail, kernel_socket, read_sockaddr};
use crate::fdtable::{self, FdKind};
use crate::real;

/// Replaces `connect(2)`. A blocking socket returns once the handshake ends, with the errno
/// the kernel would give; a non-blocking one returns EINPROGRESS and becomes writable when the
/// handshake ends, with the result in `getsockopt(SO_ERROR)`.
///
/// # Safety
/// `addr` must be valid for reads of `len` bytes, as for libc's `connect`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    if classify(fd) == FdKind::Foreign {
        // SAFETY: the program's own arguments, passed on unchanged.
        return unsafe { real::connect(fd, addr, len) };
    }
    let kind = classify(fd);
    // SAFETY: the caller's contract for addr and len.
    if kind.is_datagram() && unsafe { is_unspecified_family(addr, len) } {
        return disconnect(fd);
    }
    // SAFETY: the caller's contract for addr and len.
    let target = match unsafe { read_sockaddr(addr, len) } {
        Ok(target) => target,
        Err(errno) => return fail(errno),
    };
    let mut request = Request::new(Op::Connect);
    request.addr = WireAddr(Some(target));
    // SAFETY: F_GETFL takes no argument.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags >= 0 && flags & libc::O_NONBLOCK != 0 {
        request.flags |= FLAG_NONBLOCK;
    }
    match ask(fd, &request) {
        // SAFETY: the caller's contract for addr and len.
        Answer::Reply(reply, _) if kernel_socket::is_handoff(&reply) => unsafe {
            kernel_socket::connect(fd, &target, &reply, addr, len)
        },
        Answer::Reply(..) => {
            if kind.is_datagram() {
                fdtable::set(fd, FdKind::ConnectedDatagram);
            }
            0
        }
        Answer::Failed(errno) => fail(errno),
        // SAFETY: as above.
        Answer::Foreign => unsafe { real::connect(fd, addr, len) },
    }
}

/// Whether `addr` is an AF_UNSPEC address, with which `connect` dissolves a datagram
/// socket's association.
///
/// # Safety
/// `addr` must be null or valid for reads of `len` bytes.
unsafe fn is_unspecified_family(addr: *const sockaddr, len: socklen_t) -> bool {
    if addr.is_null() || (len as usize) < size_of::<libc::sa_family_t>() {
        return false;
    }
    // SAFETY: the caller guarantees the family field is readable.
    let family = unsafe { std::ptr::read_unaligned(addr.cast::<libc::sa_family_t>()) };
    i32::from(family) == libc::AF_UNSPEC
}

/// Serves `connect` with AF_UNSPEC on a datagram socket: the socket keeps its port and
/// forgets its peer.
fn disconnect(fd: c_int) -> c_int {
    match ask(fd, &Request::new(Op::Disconnect)) {
        Answer::Reply(..) => {
            fdtable::set(fd, FdKind::BoundDatagram);
            0
        }
        Answer::Failed(errno) => fail(errno),
        Answer::Foreign => fail(libc::EAFNOSUPPORT),
    }
}

/// Replaces `bind(2)`.
///
/// # Safety
/// `addr` must be valid for reads of `len` bytes, as for libc's `bind`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bind(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    if classify(fd) == FdKind::Foreign {
        // SAFETY: the program's own arguments, passed on unchanged.
        return unsafe { real::bind(fd, addr, len) };
    }
    // SAFETY: the caller's contract for addr and len.
    let local = match unsafe { read_sockaddr(addr, len) } {
        Ok(local) => local,
        Err(errno) => return fail(errno),
    };
    let mut request = Request::new(Op::Bind);
    request.addr = WireAddr(Some(local));
    match ask(fd, &request) {
        // SAFETY: the caller's contract for addr and len.
        Answer::Reply(reply, _) if kernel_socket::is_handoff(&reply) => unsafe {
            kernel_socket::bind(fd, &local, &reply, addr, len)
        },
        Answer::Reply(..) => {
            if fdtable::get(fd) == FdKind::Datagram {
                fdtable::set(fd, FdKind::BoundDatagram);
            }
            0
        }
        Answer::Failed(errno) => fail(errno),
        // SAFETY: as above.
        Answer::Foreign => unsafe { real::bind(fd, addr, len) },
    }
}
