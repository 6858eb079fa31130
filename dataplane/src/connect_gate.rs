//! How a non-blocking connect keeps the program's end of its socketpair unwritable until the
//! handshake ends. A fresh socketpair end is writable at once, which would tell poll and epoll
//! users that the connect is done, so the control thread fills it with bytes the worker reads
//! back when the handshake succeeds.
//!
//! The end's send buffer is first set to the smallest size Linux allows, so that the filler is
//! a few kilobytes in two or three buffers. When the handshake fails, the worker closes its end
//! with the filler unread. Linux then marks the program's end with an error and a hang-up
//! before it frees the filler, so the program's socket never polls writable without an error.
//! With the filler that small, the end turns writable right after the error, so poll reports
//! POLLOUT with POLLERR as it does for a refused TCP connect.
// NOTE: Linux frees the filler after it wakes the program, so a poll that runs in between
// reports POLLERR and POLLHUP without POLLOUT, and the next poll adds POLLOUT. A C loop of
// 3,000 such closes on a 2-core machine saw this once.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use crate::sys::socket::{get_int_option, send, set_int_option};

/// Largest filler written; the program's end is full long before this.
const MAX_FILLER: usize = 1024 * 1024;

/// The program's end of a connecting socket, kept unwritable by filler.
// TODO: the copy of the program's end outlives the program's own close, so a socket closed
// while it connects to a host that never answers holds an fd, a smoltcp socket and a place
// under --max-connections until the connect timeout (60 s), where Linux frees it at once —
// restoring SO_SNDBUF without a copy (or noticing the program's close) would fix it.
pub struct HeldEnd {
    /// A copy of the program's fd, so the worker can restore the send buffer.
    app: OwnedFd,
    /// The send buffer size before it was lowered, in bytes as SO_SNDBUF reads it.
    sndbuf: i32,
    /// Bytes of filler queued towards the worker's end.
    pub filler: usize,
}

impl std::fmt::Debug for HeldEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HeldEnd({} bytes of filler)", self.filler)
    }
}

/// Lowers the send buffer of the program's end `app` and fills it until it is full.
pub fn hold(app: &OwnedFd) -> io::Result<HeldEnd> {
    let sndbuf = get_int_option(app.as_fd(), libc::SOL_SOCKET, libc::SO_SNDBUF)?;
    // Linux raises a request of 1 byte to its smallest send buffer (4608 bytes on 64-bit).
    set_int_option(app.as_fd(), libc::SOL_SOCKET, libc::SO_SNDBUF, 1)?;
    let chunk = [0u8; 4096];
    let mut filler = 0;
    while filler < MAX_FILLER {
        let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
        match send(app.as_raw_fd(), &chunk, flags) {
            Ok(n) => filler += n,
            Err(_) => break,
        }
    }
    Ok(HeldEnd {
        app: app.try_clone()?,
        sndbuf,
        filler,
    })
}

impl HeldEnd {
    /// Gives the program's end its send buffer back, once the handshake has succeeded. It
    /// turns writable when the worker has read the filler back.
    pub fn release(self) -> io::Result<()> {
        // SO_SNDBUF doubles what it is given, and the size read back is the doubled one.
        set_int_option(
            self.app.as_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            self.sndbuf / 2,
        )
    }
}
