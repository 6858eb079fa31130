//! Sockets netcon-dp hands back to the kernel (`netcon-dp --loopback kernel`): when it answers
//! a bind or connect to a loopback address with [`handoff::KERNEL_SOCKET`], a kernel socket of
//! the address's family replaces the netcon socket under the same fd number, with the same
//! close-on-exec and non-blocking flags and the options the program set, and the call is made
//! on it. From then on the fd is an ordinary kernel socket that this library leaves alone.

use std::net::SocketAddr;

use libc::{c_int, sockaddr, socklen_t};
use netcon_control::Reply;
use netcon_control::addr::encode_sockaddr;
use netcon_control::handoff::{self, decode_options};

use super::fail;
use crate::fdtable::{self, FdKind};
use crate::real;

/// Whether `reply` asks for the call to be made on a kernel socket.
pub fn is_handoff(reply: &Reply) -> bool {
    reply.value == handoff::KERNEL_SOCKET
}

/// Puts a kernel socket for `target`'s family in place of the netcon socket `fd`, then
/// connects it to `addr`.
///
/// # Safety
/// `addr` must be valid for reads of `len` bytes, as for libc's `connect`.
pub unsafe fn connect(
    fd: c_int,
    target: &SocketAddr,
    reply: &Reply,
    addr: *const sockaddr,
    len: socklen_t,
) -> c_int {
    if let Err(errno) = replace(fd, target, reply) {
        return fail(errno);
    }
    // SAFETY: the caller's contract for addr and len.
    unsafe { real::connect(fd, addr, len) }
}

/// Puts a kernel socket for `local`'s family in place of the netcon socket `fd`, then binds
/// it to `addr`.
///
/// # Safety
/// `addr` must be valid for reads of `len` bytes, as for libc's `bind`.
pub unsafe fn bind(
    fd: c_int,
    local: &SocketAddr,
    reply: &Reply,
    addr: *const sockaddr,
    len: socklen_t,
) -> c_int {
    if let Err(errno) = replace(fd, local, reply) {
        return fail(errno);
    }
    // SAFETY: the caller's contract for addr and len.
    unsafe { real::bind(fd, addr, len) }
}

/// Makes the kernel socket, applies the options and the bound address `reply` carries, and
/// moves it to `fd`. Returns the errno of the step that failed; `fd` is unchanged then.
fn replace(fd: c_int, address: &SocketAddr, reply: &Reply) -> Result<(), c_int> {
    // SAFETY: F_GETFD and F_GETFL take no argument.
    let (fd_flags, status_flags) = unsafe {
        (
            libc::fcntl(fd, libc::F_GETFD),
            libc::fcntl(fd, libc::F_GETFL),
        )
    };
    let mut kind = libc::SOCK_STREAM;
    if status_flags >= 0 && status_flags & libc::O_NONBLOCK != 0 {
        kind |= libc::SOCK_NONBLOCK;
    }

    let family = match address {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: plain socket creation through libc's own function.
    let kernel = unsafe { real::socket(family, kind | libc::SOCK_CLOEXEC, 0) };
    if kernel < 0 {
        return Err(real::errno());
    }

    let result = prepare(kernel, reply).and_then(|()| {
        let cloexec = if fd_flags >= 0 && fd_flags & libc::FD_CLOEXEC != 0 {
            libc::O_CLOEXEC
        } else {
            0
        };
        // SAFETY: both fds are valid; dup3 atomically replaces fd with the kernel socket.
        match unsafe { real::dup3(kernel, fd, cloexec) } {
            ret if ret < 0 => Err(real::errno()),
            _ => Ok(()),
        }
    });

    // SAFETY: kernel is ours; after dup3 fd holds its own reference to the socket.
    unsafe { real::close(kernel) };
    if result.is_ok() {
        fdtable::set(fd, FdKind::Foreign);
    }
    result
}

/// Applies the options the program set on the netcon socket, then binds to the address it was
/// bound to, if any. An option the kernel rejects is skipped: netcon accepted it, and the
/// program's setsockopt has already returned success.
fn prepare(kernel: c_int, reply: &Reply) -> Result<(), c_int> {
    for option in decode_options(reply.opt_bytes()) {
        // SAFETY: the value is a valid slice of the length given.
        unsafe {
            real::setsockopt(
                kernel,
                option.level,
                option.name,
                option.value.as_ptr().cast(),
                option.value.len() as socklen_t,
            )
        };
    }
    let Some(bound) = reply.local.0 else {
        return Ok(());
    };
    let mut storage = [0u8; 128];
    let len = encode_sockaddr(&bound, &mut storage);
    // SAFETY: storage holds a socket address of len bytes.
    let ret = unsafe { real::bind(kernel, storage.as_ptr().cast(), len as socklen_t) };
    if ret < 0 {
        return Err(real::errno());
    }
    Ok(())
}
