//! `ioctl`: FIONREAD (SIOCINQ) on a netcon UDP socket returns the size of the next datagram's
//! payload, as on Linux, not what is queued on the socketpair that carries the datagrams with
//! their headers. Every other request and fd goes to libc untouched.

use libc::{c_int, c_long, c_ulong};
use netcon_control::datagram::HEADER_LEN;

use super::datagram::is_datagram;
use crate::real;

/// Replaces `ioctl(2)`.
///
/// `ioctl` is variadic in C. As for `syscall` and `fcntl`, on x86_64 its one optional
/// argument travels in the register of a fixed third argument, so taking a `c_long` reads
/// what the caller passed. Only FIONREAD looks at the fd table, which makes no system call for
/// an fd it has cached, so other requests cost a program under a seccomp filter nothing.
///
/// # Safety
/// As for libc's `ioctl` with `request`.
#[cfg(target_arch = "x86_64")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ioctl(fd: c_int, request: c_ulong, arg: c_long) -> c_int {
    // SAFETY: the program's own arguments, passed on unchanged.
    let ret = unsafe { real::ioctl(fd, request, arg) };
    if ret < 0 || request != libc::FIONREAD || arg == 0 || !is_datagram(fd) {
        return ret;
    }
    let count = arg as *mut c_int;
    // SAFETY: FIONREAD succeeded, so `arg` points to the int it wrote, which C does not
    // require to be aligned (Python passes a byte buffer).
    unsafe { count.write_unaligned(first_payload_len(fd)) };
    ret
}

/// Returns the payload length of the first message queued on a datagram socketpair, 0 when
/// none is. The kernel's FIONREAD on a SOCK_SEQPACKET socket adds up every queued message,
/// while a UDP socket's returns the first datagram's size, so the first message is peeked
/// instead: with MSG_TRUNC the call returns its full length.
fn first_payload_len(fd: c_int) -> c_int {
    let flags = libc::MSG_PEEK | libc::MSG_TRUNC | libc::MSG_DONTWAIT;
    let saved = real::errno();
    // SAFETY: a zero-length receive writes nothing to the (null) buffer.
    let len = unsafe { real::recv(fd, std::ptr::null_mut(), 0, flags) };
    real::set_errno(saved);
    (len as c_int - HEADER_LEN as c_int).max(0)
}
