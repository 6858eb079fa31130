//! Listening sockets whose netcon-dp is gone.
//!
//! A netcon listener is one end of a seqpacket socketpair whose other end netcon-dp holds.
//! When netcon-dp exits, the program's end reads as end-of-file forever, so poll reports it
//! readable and every accept fails at once. sshd logs the error and polls again, spinning at
//! full CPU. The listener is therefore replaced, under the same fd number and flags, by a
//! socket that never becomes readable, so poll, select and a new epoll registration stay
//! quiet. The accept that finds the end-of-file fails with ECONNABORTED (which servers take
//! for a connection lost before it was accepted). Later ones fail at once as well, so no call
//! blocks on a listener that can get no more connections: with EAGAIN on a non-blocking one,
//! as when nothing is waiting, and with ENETDOWN on a blocking one.
//!
//! NOTE: an epoll registration made before the outage stays on the old socket, which other
//! processes may still hold open (nginx's master holds its workers' listener), so an epoll
//! loop keeps waking until every copy is replaced or closed.

use libc::c_int;

use crate::fdtable::{self, FdKind};
use crate::real;
use crate::rpc;

/// Replaces the orphaned listener `fd` by a socket that never becomes readable, keeping its
/// close-on-exec and non-blocking flags, and reports the loss once on stderr. The other end
/// of the replacement stays open (one fd per orphaned listener) so that it never reads as
/// end-of-file. Returns false when the replacement could not be made.
pub fn silence(fd: c_int) -> bool {
    let mut pair = [0 as c_int; 2];
    let kind = libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC;
    // SAFETY: pair has room for the two fds socketpair writes.
    if unsafe { libc::socketpair(libc::AF_UNIX, kind, 0, pair.as_mut_ptr()) } < 0 {
        return false;
    }
    let [replacement, peer] = pair;

    // SAFETY: F_GETFD/F_GETFL/F_SETFL take and return plain integers on fds we hold.
    let (fd_flags, status_flags) = unsafe {
        (
            libc::fcntl(fd, libc::F_GETFD),
            libc::fcntl(fd, libc::F_GETFL),
        )
    };
    if status_flags >= 0 && status_flags & libc::O_NONBLOCK != 0 {
        // SAFETY: as above.
        unsafe { libc::fcntl(replacement, libc::F_SETFL, libc::O_NONBLOCK) };
    }
    let cloexec = if fd_flags >= 0 && fd_flags & libc::FD_CLOEXEC != 0 {
        libc::O_CLOEXEC
    } else {
        0
    };
    // SAFETY: both fds are valid; dup3 atomically replaces fd with the replacement.
    let replaced = unsafe { real::dup3(replacement, fd, cloexec) } >= 0;
    // SAFETY: replacement is ours; fd now holds its own reference when dup3 succeeded.
    unsafe { real::close(replacement) };
    if !replaced {
        // SAFETY: peer is ours and not shared.
        unsafe { real::close(peer) };
        return false;
    }
    fdtable::set(fd, FdKind::OrphanedListener);
    rpc::report_listener_orphaned(fd);
    true
}

/// Returns the errno accept fails with on an orphaned listener: EAGAIN when it is
/// non-blocking, ENETDOWN when it is blocking.
pub fn accept_errno(fd: c_int) -> c_int {
    // SAFETY: F_GETFL takes no argument.
    let status_flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if status_flags >= 0 && status_flags & libc::O_NONBLOCK != 0 {
        libc::EAGAIN
    } else {
        libc::ENETDOWN
    }
}
