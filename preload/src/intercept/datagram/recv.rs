//! `recv`, `recvfrom`, `recvmsg`, `recvmmsg`, `read` and `readv`, and the `_chk` forms that
//! glibc's fortified headers call. On a netcon UDP socket each call receives one datagram (one
//! per message for `recvmmsg`) and takes its source from the header. An error message becomes
//! the call's errno.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libc::{c_int, c_uint, c_void, iovec, mmsghdr, msghdr, size_t, sockaddr, socklen_t, ssize_t};
use netcon_control::datagram::{DatagramHeader, HEADER_LEN};

use super::{Iovecs, MAX_MESSAGES, datagram_kind};
use crate::intercept::{fail, unchecked, write_sockaddr};
use crate::real;

/// Receive flags passed on to the socketpair; the others concern features the socketpair
/// does not have (MSG_CMSG_CLOEXEC for fds it never carries).
const PASSED_FLAGS: c_int = libc::MSG_PEEK | libc::MSG_DONTWAIT | libc::MSG_TRUNC;

/// The program's buffer for a received datagram's source address, and its length.
#[derive(Clone, Copy)]
struct NameOut {
    addr: *mut sockaddr,
    len: *mut socklen_t,
}

impl NameOut {
    const NONE: NameOut = NameOut {
        addr: std::ptr::null_mut(),
        len: std::ptr::null_mut(),
    };
}

/// One received datagram: the value the call returns and the msghdr flags (MSG_TRUNC).
struct Received {
    len: usize,
    flags: c_int,
}

/// Receives one datagram into the program's `count` iovecs at `iov`, writing its source to
/// `name`. Returns the payload length (the full length with MSG_TRUNC), or the errno.
///
/// # Safety
/// `iov` must be valid for `count` iovecs, each valid for writes of its length, and `name`'s
/// pointers null or valid as for `recvfrom`.
unsafe fn recv_datagram(
    fd: c_int,
    iov: *const iovec,
    count: usize,
    flags: c_int,
    name: NameOut,
) -> Result<Received, c_int> {
    if flags & libc::MSG_ERRQUEUE != 0 {
        // The stack keeps no error queue, so it is always empty, as on a socket without
        // IP_RECVERR.
        return Err(libc::EAGAIN);
    }
    let mut header = [0u8; HEADER_LEN];
    // SAFETY: the caller's contract for iov and count; header outlives the call.
    let mut iovecs = unsafe { Iovecs::new(header.as_mut_ptr(), iov, count) }?;
    // SAFETY: an all-zero msghdr is valid (no name, no control data).
    let mut message: msghdr = unsafe { std::mem::zeroed() };
    message.msg_iov = iovecs.as_mut_ptr();
    message.msg_iovlen = iovecs.len;
    // SAFETY: the iovecs describe the header and the program's buffers, all valid for writes.
    let received = unsafe { real::recvmsg(fd, &mut message, flags & PASSED_FLAGS) };
    if received < 0 {
        return Err(real::errno());
    }
    let received = received as usize;
    if received == 0 {
        // Every message has a header, so this is the end of the socketpair: netcon-dp is gone.
        return Err(libc::ENETDOWN);
    }
    match DatagramHeader::decode(&header) {
        Some(DatagramHeader::Data(source)) if received >= HEADER_LEN => {
            if let Some(source) = source {
                // SAFETY: the caller's contract for name.
                unsafe { write_name(&source, name) };
            }
            Ok(Received {
                len: received - HEADER_LEN,
                flags: message.msg_flags & libc::MSG_TRUNC,
            })
        }
        Some(DatagramHeader::Error(errno)) => {
            if flags & libc::MSG_PEEK != 0 {
                // Linux clears a socket error even when peeking.
                super::discard_error(fd);
            }
            Err(errno)
        }
        _ => Err(libc::EIO),
    }
}

/// Writes a datagram's source into the program's address buffer.
///
/// # Safety
/// `name`'s pointers must be null or valid as for `recvfrom`.
unsafe fn write_name(source: &SocketAddr, name: NameOut) {
    // SAFETY: the caller's contract.
    unsafe { write_sockaddr(source, name.addr, name.len) };
}

/// Receives into one buffer, the common case of `recv`, `recvfrom` and `read`.
///
/// # Safety
/// `buf` must be valid for writes of `len` bytes and `name` as for `recvfrom`.
unsafe fn recv_into(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    flags: c_int,
    name: NameOut,
) -> ssize_t {
    let iov = iovec {
        iov_base: buf,
        iov_len: len,
    };
    // SAFETY: one iovec describing the caller's buffer.
    match unsafe { recv_datagram(fd, &iov, 1, flags, name) } {
        Ok(received) => received.len as ssize_t,
        Err(errno) => fail(errno) as ssize_t,
    }
}

/// Replaces `recvfrom(2)`.
///
/// # Safety
/// As for libc's `recvfrom`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn recvfrom(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    addr_len: *mut socklen_t,
) -> ssize_t {
    if datagram_kind(fd).is_none() {
        // SAFETY: the program's own arguments, passed on unchanged.
        return unsafe { real::recvfrom(fd, buf, len, flags, addr, addr_len) };
    }
    let name = NameOut {
        addr,
        len: addr_len,
    };
    // SAFETY: the caller's contract for buf, addr and addr_len.
    unsafe { recv_into(fd, buf, len, flags, name) }
}

/// Replaces `recv(2)`.
///
/// # Safety
/// As for libc's `recv`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn recv(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int) -> ssize_t {
    if datagram_kind(fd).is_none() {
        // SAFETY: the program's own arguments, passed on unchanged.
        return unsafe { real::recv(fd, buf, len, flags) };
    }
    // SAFETY: the caller's contract for buf.
    unsafe { recv_into(fd, buf, len, flags, NameOut::NONE) }
}

/// Replaces `read(2)`.
///
/// # Safety
/// As for libc's `read`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn read(fd: c_int, buf: *mut c_void, len: size_t) -> ssize_t {
    if datagram_kind(fd).is_none() {
        // SAFETY: the program's own arguments, passed on unchanged.
        return unsafe { real::read(fd, buf, len) };
    }
    // SAFETY: the caller's contract for buf.
    unsafe { recv_into(fd, buf, len, 0, NameOut::NONE) }
}

/// Replaces `readv(2)`.
///
/// # Safety
/// As for libc's `readv`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn readv(fd: c_int, iov: *const iovec, count: c_int) -> ssize_t {
    if datagram_kind(fd).is_none() {
        // SAFETY: the program's own arguments, passed on unchanged.
        return unsafe { real::readv(fd, iov, count) };
    }
    let Ok(count) = usize::try_from(count) else {
        return fail(libc::EINVAL) as ssize_t;
    };
    // SAFETY: the caller's contract for iov and count.
    match unsafe { recv_datagram(fd, iov, count, 0, NameOut::NONE) } {
        Ok(received) => received.len as ssize_t,
        Err(errno) => fail(errno) as ssize_t,
    }
}

/// Replaces glibc's `__read_chk`, which fortified programs call for `read`: the buffer-size
/// check stays glibc's.
///
/// # Safety
/// As for `read`, with `buf_len` the size of the buffer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __read_chk(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    buf_len: size_t,
) -> ssize_t {
    if len > buf_len || datagram_kind(fd).is_none() {
        // SAFETY: the program's own arguments, passed on unchanged; glibc aborts on overflow.
        return unsafe { real::__read_chk(fd, buf, len, buf_len) };
    }
    // SAFETY: the caller's contract for buf.
    unsafe { read(fd, buf, len) }
}

/// Replaces glibc's `__recv_chk`.
///
/// # Safety
/// As for `recv`, with `buf_len` the size of the buffer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __recv_chk(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    buf_len: size_t,
    flags: c_int,
) -> ssize_t {
    if len > buf_len || datagram_kind(fd).is_none() {
        // SAFETY: the program's own arguments, passed on unchanged; glibc aborts on overflow.
        return unsafe { real::__recv_chk(fd, buf, len, buf_len, flags) };
    }
    // SAFETY: the caller's contract for buf.
    unsafe { recv(fd, buf, len, flags) }
}

/// Replaces glibc's `__recvfrom_chk`.
///
/// # Safety
/// As for `recvfrom`, with `buf_len` the size of the buffer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __recvfrom_chk(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    buf_len: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    addr_len: *mut socklen_t,
) -> ssize_t {
    if len > buf_len || datagram_kind(fd).is_none() {
        // SAFETY: the program's own arguments, passed on unchanged; glibc aborts on overflow.
        return unsafe { real::__recvfrom_chk(fd, buf, len, buf_len, flags, addr, addr_len) };
    }
    // SAFETY: the caller's contract for buf, addr and addr_len.
    unsafe { recvfrom(fd, buf, len, flags, addr, addr_len) }
}

/// Replaces `recvmsg(2)`. No control messages are delivered (`msg_controllen` becomes 0).
///
/// # Safety
/// As for libc's `recvmsg`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn recvmsg(fd: c_int, message: *mut msghdr, flags: c_int) -> ssize_t {
    if datagram_kind(fd).is_none() {
        // SAFETY: the program's own arguments, passed on unchanged.
        let received = unsafe { real::recvmsg(fd, message, flags) };
        if received >= 0 {
            // SAFETY: recvmsg succeeded, so message is a msghdr it filled.
            unsafe { unchecked::mark_passed(message) };
        }
        return received;
    }
    if message.is_null() {
        return fail(libc::EFAULT) as ssize_t;
    }
    // SAFETY: the caller's contract: message points to a valid msghdr.
    match unsafe { recv_message(fd, &mut *message, flags) } {
        Ok(len) => len as ssize_t,
        Err(errno) => fail(errno) as ssize_t,
    }
}

/// Receives the datagram for one msghdr and fills in its name, flags and control length.
///
/// # Safety
/// The msghdr's pointers must be valid as for `recvmsg`.
unsafe fn recv_message(fd: c_int, message: &mut msghdr, flags: c_int) -> Result<usize, c_int> {
    let mut name_len = message.msg_namelen;
    let name = NameOut {
        addr: message.msg_name.cast(),
        len: &mut name_len,
    };
    let name = if message.msg_name.is_null() {
        NameOut::NONE
    } else {
        name
    };
    // SAFETY: the caller's contract for msg_iov and msg_name.
    let received = unsafe { recv_datagram(fd, message.msg_iov, message.msg_iovlen, flags, name) }?;
    message.msg_namelen = if message.msg_name.is_null() {
        0
    } else {
        name_len
    };
    message.msg_controllen = 0;
    message.msg_flags = received.flags;
    Ok(received.len)
}

/// Replaces `recvmmsg(2)`. As in the kernel, a blocking call waits for `count` datagrams
/// unless MSG_WAITFORONE is set (then only for the first), and `timeout` is checked after
/// each datagram.
///
/// # Safety
/// As for libc's `recvmmsg`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn recvmmsg(
    fd: c_int,
    messages: *mut mmsghdr,
    count: c_uint,
    flags: c_int,
    timeout: *mut libc::timespec,
) -> c_int {
    if datagram_kind(fd).is_none() {
        // SAFETY: the program's own arguments, passed on unchanged.
        let received = unsafe { real::recvmmsg(fd, messages, count, flags, timeout) };
        for index in 0..usize::try_from(received).unwrap_or(0) {
            // SAFETY: recvmmsg filled the first `received` of the caller's messages.
            unsafe { unchecked::mark_passed(&raw const (*messages.add(index)).msg_hdr) };
        }
        return received;
    }
    // SAFETY: the caller's contract for messages, count and timeout.
    unsafe { recv_messages(fd, messages, count, flags, timeout) }
}

/// Receives up to `count` messages; shared by `recvmmsg` and `syscall(SYS_recvmmsg, …)`.
///
/// # Safety
/// As for libc's `recvmmsg`.
pub unsafe fn recv_messages(
    fd: c_int,
    messages: *mut mmsghdr,
    count: c_uint,
    flags: c_int,
    timeout: *const libc::timespec,
) -> c_int {
    let count = (count as usize).min(MAX_MESSAGES);
    if count > 0 && messages.is_null() {
        return fail(libc::EFAULT);
    }
    let deadline = if timeout.is_null() {
        None
    } else {
        // SAFETY: the caller's contract: a non-null timeout is a valid timespec.
        let timeout = unsafe { *timeout };
        if timeout.tv_sec < 0 || !(0..1_000_000_000).contains(&timeout.tv_nsec) {
            return fail(libc::EINVAL);
        }
        let span = Duration::new(timeout.tv_sec as u64, timeout.tv_nsec as u32);
        Some(Instant::now() + span)
    };
    let wait_for_one = flags & libc::MSG_WAITFORONE != 0;
    let mut flags = flags & !libc::MSG_WAITFORONE;
    for index in 0..count {
        // SAFETY: the caller guarantees `count` valid mmsghdrs at `messages`.
        let entry = unsafe { &mut *messages.add(index) };
        // SAFETY: the caller's contract for the msghdr's pointers.
        match unsafe { recv_message(fd, &mut entry.msg_hdr, flags) } {
            Ok(len) => entry.msg_len = len as c_uint,
            Err(errno) if index == 0 => return fail(errno),
            Err(_) => return index as c_int,
        }
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return index as c_int + 1;
        }
        if wait_for_one {
            flags |= libc::MSG_DONTWAIT;
        }
    }
    count as c_int
}
