//! Message calls on the datagram socketpairs: one `sendmsg` with the header and the payload as
//! separate iovecs, and a `recvmsg` that reports truncation.

use std::io;
use std::os::fd::RawFd;

use super::cvt_size;

/// Sends `parts` as one message on `fd`; returns the bytes sent.
pub fn send_message(fd: RawFd, parts: &[&[u8]], flags: libc::c_int) -> io::Result<usize> {
    let mut iovecs: [libc::iovec; 2] = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; 2];
    let count = parts.len().min(iovecs.len());
    for (iovec, part) in iovecs.iter_mut().zip(parts) {
        iovec.iov_base = part.as_ptr() as *mut libc::c_void;
        iovec.iov_len = part.len();
    }
    // SAFETY: an all-zero msghdr is valid (no name, no control data).
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_iov = iovecs.as_mut_ptr();
    message.msg_iovlen = count;
    // SAFETY: the iovecs point into `parts`, which stay borrowed and unmodified for the call;
    // sendmsg only reads them.
    cvt_size(unsafe { libc::sendmsg(fd, &message, flags) })
}

/// Receives one message into `buf`; returns its length and whether it was longer than `buf`
/// (the rest is discarded, as for any datagram).
pub fn recv_message(fd: RawFd, buf: &mut [u8], flags: libc::c_int) -> io::Result<(usize, bool)> {
    let mut iovec = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is valid (no name, no control data).
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_iov = &mut iovec;
    message.msg_iovlen = 1;
    // SAFETY: the iovec describes `buf`, which is valid for writes of its length.
    let len = cvt_size(unsafe { libc::recvmsg(fd, &mut message, flags) })?;
    Ok((len, message.msg_flags & libc::MSG_TRUNC != 0))
}

/// Sets the send buffer of `fd` to `bytes`, as the kernel reports it (the kernel stores twice
/// what is asked, so half is asked). Beyond `net.core.wmem_max` only when the process has
/// CAP_NET_ADMIN (SO_SNDBUFFORCE); otherwise up to that limit.
pub fn force_send_buffer(fd: RawFd, bytes: libc::c_int) -> io::Result<()> {
    let half = bytes / 2;
    let set = |name: libc::c_int| {
        // SAFETY: the option value is a c_int on the stack whose size is passed along.
        super::cvt(unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                name,
                (&half as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        })
    };
    set(libc::SO_SNDBUFFORCE).or_else(|_| set(libc::SO_SNDBUF))?;
    Ok(())
}
