//! `sendfile` and `splice` onto a netcon socket, done as reads and writes.
//!
//! The kernel's sendfile and splice into a Unix stream socket queue the pages as large
//! segments (Linux 6.x, MSG_SPLICE_PAGES). The worker always leaves the last forwarded byte
//! queued, so that closing its end can report ECONNRESET. A segment is freed only when all of
//! it is read, so that one byte can pin a segment as large as the program's whole send buffer.
//! The program's sendfile or splice then blocks for good (vsftpd stopped after 256 KiB of a
//! download). Ordinary writes queue small segments, which the worker frees as it forwards them.

use libc::{c_int, c_uint, off_t, size_t, ssize_t};

use super::classify;
use crate::fdtable::FdKind;
use crate::real;

/// Largest chunk read from the file per write. Large enough that a transfer takes few system
/// calls, and allocated on the heap because threads may run on small stacks.
const CHUNK: usize = 128 * 1024;

/// Replaces `sendfile(2)`.
///
/// # Safety
/// `offset` must be null or valid for reads and writes, as for libc's `sendfile`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendfile(
    out_fd: c_int,
    in_fd: c_int,
    offset: *mut off_t,
    count: size_t,
) -> ssize_t {
    if classify(out_fd) != FdKind::Stream {
        // SAFETY: the program's own arguments, passed on unchanged.
        return unsafe { real::sendfile(out_fd, in_fd, offset, count) };
    }
    // SAFETY: the caller's contract for offset.
    unsafe { copy_to_socket(out_fd, in_fd, offset, count, false) }
}

/// Replaces `sendfile64`, which glibc exports beside `sendfile` (both take a 64-bit offset on
/// x86_64).
///
/// # Safety
/// As for [`sendfile`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendfile64(
    out_fd: c_int,
    in_fd: c_int,
    offset: *mut off_t,
    count: size_t,
) -> ssize_t {
    // SAFETY: the same contract.
    unsafe { sendfile(out_fd, in_fd, offset, count) }
}

/// Replaces `splice(2)`. Onto a netcon socket it moves one read's worth (what the pipe or file
/// has, up to `len` bytes) per call, as splice does. `off_out` must be null for a socket.
///
/// # Safety
/// `off_in` and `off_out` must be null or valid for reads and writes, as for libc's `splice`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn splice(
    fd_in: c_int,
    off_in: *mut off_t,
    fd_out: c_int,
    off_out: *mut off_t,
    len: size_t,
    flags: c_uint,
) -> ssize_t {
    if classify(fd_out) != FdKind::Stream {
        // SAFETY: the program's own arguments, passed on unchanged.
        return unsafe { real::splice(fd_in, off_in, fd_out, off_out, len, flags) };
    }
    if !off_out.is_null() {
        real::set_errno(libc::ESPIPE);
        return -1;
    }
    if flags & libc::SPLICE_F_NONBLOCK != 0 && !readable_now(fd_in) {
        real::set_errno(libc::EAGAIN);
        return -1;
    }
    // SAFETY: the caller's contract for off_in; one chunk, as splice moves what is there.
    unsafe { copy_to_socket(fd_out, fd_in, off_in, len.min(CHUNK), true) }
}

/// Whether `fd` has data to read without waiting.
fn readable_now(fd: c_int) -> bool {
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll reads and writes one valid pollfd and does not wait (timeout 0).
    unsafe { libc::poll(&mut poll, 1, 0) == 1 }
}

/// Copies up to `count` bytes from `in_fd` (at `*offset` when given, else at its file
/// position) to the socket `out_fd`, with sendfile's results: the bytes written, or -1 with
/// errno when nothing was written. A short write ends the call, and the bytes read but not
/// written are given back to the file position, as sendfile leaves it. With `one_read` the
/// call ends after the first read's bytes are written, as splice's does.
///
/// # Safety
/// `offset` must be null or valid for reads and writes.
unsafe fn copy_to_socket(
    out_fd: c_int,
    in_fd: c_int,
    offset: *mut off_t,
    count: size_t,
    one_read: bool,
) -> ssize_t {
    let mut buffer = vec![0u8; count.clamp(1, CHUNK)];
    let mut total: usize = 0;
    while total < count {
        let want = (count - total).min(buffer.len());
        let read = if offset.is_null() {
            // SAFETY: buffer is valid for writes of want bytes.
            unsafe { libc::read(in_fd, buffer.as_mut_ptr().cast(), want) }
        } else {
            // SAFETY: as above; the caller guarantees offset is valid.
            unsafe { libc::pread(in_fd, buffer.as_mut_ptr().cast(), want, *offset) }
        };
        if read <= 0 {
            return if total > 0 { total as ssize_t } else { read };
        }
        let read = read as usize;

        // SAFETY: the first read bytes of buffer are initialised.
        let written = unsafe { libc::write(out_fd, buffer.as_ptr().cast(), read) };
        if written < 0 {
            let errno = real::errno();
            let sent = give_back(out_fd, in_fd, offset, &buffer[..read]);
            real::set_errno(errno);
            total += sent;
            return if total > 0 { total as ssize_t } else { -1 };
        }
        let mut written = written as usize;
        if written < read {
            written += give_back(out_fd, in_fd, offset, &buffer[written..read]);
        }

        total += written;
        if !offset.is_null() {
            // SAFETY: the caller guarantees offset is valid.
            unsafe { *offset += written as off_t };
        }
        if written < read || one_read {
            break;
        }
    }
    total as ssize_t
}

/// Handles `unsent`, bytes read from `in_fd` that the socket did not take, and returns how
/// many of them it still sent. With an explicit offset nothing moved (pread), so there is
/// nothing to do. Otherwise the file position moves back over them. An input that cannot seek
/// (a pipe or socket, which Linux accepts since 5.12) cannot take them back, so they are
/// written out, waiting until the socket takes them.
fn give_back(out_fd: c_int, in_fd: c_int, offset: *mut off_t, unsent: &[u8]) -> usize {
    if !offset.is_null() {
        return 0;
    }
    // SAFETY: lseek takes plain integers.
    if unsafe { libc::lseek(in_fd, -(unsent.len() as off_t), libc::SEEK_CUR) } >= 0 {
        return 0;
    }
    let mut sent = 0;
    while sent < unsent.len() {
        let rest = &unsent[sent..];
        // SAFETY: rest is a valid, initialised buffer.
        let written = unsafe { libc::write(out_fd, rest.as_ptr().cast(), rest.len()) };
        if written > 0 {
            sent += written as usize;
            continue;
        }
        match real::errno() {
            libc::EAGAIN | libc::EINTR => {
                let mut poll = libc::pollfd {
                    fd: out_fd,
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: poll reads and writes one valid pollfd.
                unsafe { libc::poll(&mut poll, 1, -1) };
            }
            _ => break,
        }
    }
    sent
}
