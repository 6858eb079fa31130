//! SO_RCVTIMEO and SO_SNDTIMEO on netcon sockets. The program reads, writes and accepts on
//! its own end of a socketpair, so a timeout takes effect only when it is set on that fd. The
//! kernel then enforces it on every read, write and accept, validates the value as it would
//! for a TCP socket, and returns it to `getsockopt`. The service gets a copy as well, which it
//! stores with the socket's other options.

use libc::{c_int, socklen_t};

use crate::real;

/// SO_RCVTIMEO_NEW and SO_SNDTIMEO_NEW (Linux 5.1), which the libc crate does not export.
/// glibc passes them on 32-bit targets with a 64-bit `time_t`.
const SO_RCVTIMEO_NEW: c_int = 66;
const SO_SNDTIMEO_NEW: c_int = 67;

/// The timeout options copied from a socket to the fd that replaces it. On 64-bit Linux the
/// `_NEW` variants name the same values with the same layout.
const COPIED: [c_int; 2] = [libc::SO_RCVTIMEO, libc::SO_SNDTIMEO];

/// Returns whether (`level`, `name`) is a receive or send timeout.
pub fn is_timeout(level: c_int, name: c_int) -> bool {
    level == libc::SOL_SOCKET
        && matches!(
            name,
            libc::SO_RCVTIMEO | libc::SO_SNDTIMEO | SO_RCVTIMEO_NEW | SO_SNDTIMEO_NEW
        )
}

/// Copies the receive and send timeouts of `from` onto `to`, which takes its place: a
/// listener's new seqpacket end, or a connection accepted on a listener (Linux copies both
/// timeouts to an accepted socket). Timeouts that are zero are skipped.
pub fn copy(from: c_int, to: c_int) {
    for name in COPIED {
        let mut timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        };
        let mut len = size_of::<libc::timeval>() as socklen_t;
        // SAFETY: timeout and len are valid for writes of the sizes given.
        let read = unsafe {
            real::getsockopt(
                from,
                libc::SOL_SOCKET,
                name,
                (&mut timeout as *mut libc::timeval).cast(),
                &mut len,
            )
        };
        if read < 0 || (timeout.tv_sec == 0 && timeout.tv_usec == 0) {
            continue;
        }
        // SAFETY: timeout contains the len bytes getsockopt wrote.
        unsafe {
            real::setsockopt(
                to,
                libc::SOL_SOCKET,
                name,
                (&timeout as *const libc::timeval).cast(),
                len,
            )
        };
    }
}
