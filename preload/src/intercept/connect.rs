//! `connect` and `bind` on netcon sockets.

use libc::{c_int, sockaddr, socklen_t};
use netcon_control::wire::FLAG_NONBLOCK;
use netcon_control::{Op, Request, WireAddr};

use super::{Answer, ask, classify, fail, read_sockaddr};
use crate::fdtable::FdKind;
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
        Answer::Reply(..) => 0,
        Answer::Failed(errno) => fail(errno),
        // SAFETY: as above.
        Answer::Foreign => unsafe { real::connect(fd, addr, len) },
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
        Answer::Reply(..) => 0,
        Answer::Failed(errno) => fail(errno),
        // SAFETY: as above.
        Answer::Foreign => unsafe { real::bind(fd, addr, len) },
    }
}
