//! `getsockname`, `getpeername`, `getsockopt`, `setsockopt` and `shutdown` on netcon sockets:
//! answered by the service, so the socketpair underneath never shows.

use libc::{c_int, c_void, sockaddr, socklen_t};
use netcon_control::wire::OPT_MAX;
use netcon_control::{Op, Request};

use super::{Answer, ask, classify, fail, timeouts, write_sockaddr};
use crate::fdtable::{self, FdKind};
use crate::real;

/// Replaces `getsockname(2)`.
///
/// # Safety
/// As for libc's `getsockname`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getsockname(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    if classify(fd) == FdKind::Foreign {
        // SAFETY: the program's own arguments, passed on unchanged.
        return unsafe { real::getsockname(fd, addr, len) };
    }
    match ask(fd, &Request::new(Op::GetSockName)) {
        Answer::Reply(reply, _) => {
            if let Some(local) = reply.local.0 {
                // SAFETY: the caller's contract for addr and len.
                unsafe { write_sockaddr(&local, addr, len) };
            }
            0
        }
        Answer::Failed(errno) => fail(errno),
        // SAFETY: as above.
        Answer::Foreign => unsafe { real::getsockname(fd, addr, len) },
    }
}

/// Replaces `getpeername(2)`.
///
/// # Safety
/// As for libc's `getpeername`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getpeername(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    if classify(fd) == FdKind::Foreign {
        // SAFETY: the program's own arguments, passed on unchanged.
        return unsafe { real::getpeername(fd, addr, len) };
    }
    match ask(fd, &Request::new(Op::GetPeerName)) {
        Answer::Reply(reply, _) => {
            if let Some(remote) = reply.remote.0 {
                // SAFETY: the caller's contract for addr and len.
                unsafe { write_sockaddr(&remote, addr, len) };
            }
            0
        }
        Answer::Failed(errno) => fail(errno),
        // SAFETY: as above.
        Answer::Foreign => unsafe { real::getpeername(fd, addr, len) },
    }
}

/// Replaces `getsockopt(2)`.
///
/// # Safety
/// As for libc's `getsockopt`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    value: *mut c_void,
    len: *mut socklen_t,
) -> c_int {
    if classify(fd) == FdKind::Foreign {
        // SAFETY: the program's own arguments, passed on unchanged.
        return unsafe { real::getsockopt(fd, level, name, value, len) };
    }
    let is_error = level == libc::SOL_SOCKET && name == libc::SO_ERROR;
    if is_error
        && classify(fd).is_datagram()
        && let Some(errno) = super::datagram::take_error(fd)
    {
        // SAFETY: the caller's contract: value and len are valid for an int.
        return unsafe { write_int_option(errno, value, len) };
    }
    if timeouts::is_timeout(level, name) {
        // SAFETY: as above. The program's own end stores the timeout it set.
        return unsafe { real::getsockopt(fd, level, name, value, len) };
    }
    if value.is_null() || len.is_null() {
        return fail(libc::EFAULT);
    }
    // SAFETY: the caller's contract: len is valid for reads.
    let capacity = unsafe { *len } as i32;
    if capacity < 0 {
        // The kernel reads the length as an int, and a negative one is invalid.
        return fail(libc::EINVAL);
    }
    let mut request = Request::new(Op::GetSockOpt);
    request.arg0 = level as u64;
    request.arg1 = name as u64;
    request.opt_len = (capacity as usize).min(OPT_MAX) as u32;
    match ask(fd, &request) {
        Answer::Reply(reply, _) => {
            let bytes = reply.opt_bytes();
            // SAFETY: the caller's contract: len is valid and value has *len writable bytes.
            unsafe {
                let copied = bytes.len().min(*len as usize);
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), value.cast::<u8>(), copied);
                *len = copied as socklen_t;
            }
            0
        }
        Answer::Failed(errno) => fail(errno),
        // SAFETY: as above.
        Answer::Foreign => unsafe { real::getsockopt(fd, level, name, value, len) },
    }
}

/// Writes an int option value the way the kernel does: truncated to `*len` bytes, with
/// `*len` set to the bytes written.
///
/// # Safety
/// `value` and `len` must be null or valid, with `*len` writable bytes at `value`.
unsafe fn write_int_option(number: c_int, value: *mut c_void, len: *mut socklen_t) -> c_int {
    if value.is_null() || len.is_null() {
        return fail(libc::EFAULT);
    }
    let bytes = number.to_ne_bytes();
    // SAFETY: the caller's contract.
    unsafe {
        let copied = bytes.len().min(*len as usize);
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), value.cast::<u8>(), copied);
        *len = copied as socklen_t;
    }
    0
}

/// Replaces `setsockopt(2)`. The service stores every option so it reads back, acts on those
/// the stack supports, and counts the rest. Receive and send timeouts are set on the program's
/// own end as well, where reads and writes happen.
///
/// # Safety
/// As for libc's `setsockopt`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn setsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    value: *const c_void,
    len: socklen_t,
) -> c_int {
    if classify(fd) == FdKind::Foreign {
        // SAFETY: the program's own arguments, passed on unchanged.
        return unsafe { real::setsockopt(fd, level, name, value, len) };
    }
    if timeouts::is_timeout(level, name) {
        // SAFETY: the caller's contract for value and len.
        let applied = unsafe { real::setsockopt(fd, level, name, value, len) };
        if applied == 0 {
            // The timeout already took effect; the service only keeps a copy, so its errors
            // (netcon-dp gone) do not undo the call.
            let saved = real::errno();
            // SAFETY: as above. The kernel has just read the same len bytes.
            let _ = unsafe { send_option(fd, level, name, value, len as usize) };
            real::set_errno(saved);
        }
        return applied;
    }
    let len = len as usize;
    if len > OPT_MAX {
        return fail(libc::EINVAL);
    }
    if value.is_null() && len > 0 {
        return fail(libc::EFAULT);
    }
    // SAFETY: the caller's contract: value has len readable bytes.
    match unsafe { send_option(fd, level, name, value, len) } {
        Answer::Reply(..) => {
            // SAFETY: as above.
            unsafe { note_send_flag(fd, level, name, value, len) };
            0
        }
        Answer::Failed(errno) => fail(errno),
        // SAFETY: as above.
        Answer::Foreign => unsafe {
            real::setsockopt(fd, level, name, value.cast(), len as socklen_t)
        },
    }
}

/// Updates the cached [`SendFlags`] of a datagram socket after netcon-dp stored an option,
/// reading the value as an int the way the kernel does (one byte is enough at IPPROTO_IP).
///
/// # Safety
/// `value` must be valid for reads of `len` bytes.
unsafe fn note_send_flag(fd: c_int, level: c_int, name: c_int, value: *const c_void, len: usize) {
    if !classify(fd).is_datagram() || value.is_null() || len == 0 {
        return;
    }
    let Some(flags) = fdtable::send_flags(fd) else {
        return;
    };
    // SAFETY: the caller's contract: value has len readable bytes.
    let bytes = unsafe { std::slice::from_raw_parts(value.cast::<u8>(), len.min(4)) };
    let int = match bytes.try_into() {
        Ok(four) => c_int::from_ne_bytes(four),
        Err(_) => c_int::from(bytes[0]),
    };
    fdtable::set_send_flags(fd, flags.with_option(level, name, int));
}

/// Sends `setsockopt(fd, level, name, value, len)` to the service.
///
/// # Safety
/// `value` must be valid for reads of `len` bytes (at most `OPT_MAX`).
unsafe fn send_option(
    fd: c_int,
    level: c_int,
    name: c_int,
    value: *const c_void,
    len: usize,
) -> Answer {
    let mut request = Request::new(Op::SetSockOpt);
    request.arg0 = level as u64;
    request.arg1 = name as u64;
    let len = len.min(OPT_MAX);
    request.opt_len = len as u32;
    if len > 0 {
        // SAFETY: the caller's contract: value has len readable bytes.
        let bytes = unsafe { std::slice::from_raw_parts(value.cast::<u8>(), len) };
        request.opt[..len].copy_from_slice(bytes);
    }
    ask(fd, &request)
}

/// Replaces `shutdown(2)`. On a netcon stream it shuts the socketpair end, which the worker
/// turns into a FIN (SHUT_WR) exactly as the program meant. On a connected UDP socket only the
/// sending side of the socketpair is shut, so later sends fail with EPIPE as on Linux, while
/// SHUT_RD changes nothing: Linux keeps queueing and delivering datagrams after it.
#[unsafe(no_mangle)]
pub extern "C" fn shutdown(fd: c_int, how: c_int) -> c_int {
    if !matches!(how, libc::SHUT_RD | libc::SHUT_WR | libc::SHUT_RDWR) {
        return fail(libc::EINVAL);
    }
    match classify(fd) {
        // Linux: shutting down a UDP socket that has no peer fails.
        FdKind::Datagram | FdKind::BoundDatagram => fail(libc::ENOTCONN),
        FdKind::ConnectedDatagram if how == libc::SHUT_RD => 0,
        // SAFETY: the program's own fd.
        FdKind::ConnectedDatagram => unsafe { real::shutdown(fd, libc::SHUT_WR) },
        // SAFETY: the program's own arguments, passed on unchanged.
        _ => unsafe { real::shutdown(fd, how) },
    }
}
