//! Every raw OS call the data plane makes: TAP setup, socketpairs, epoll, eventfd and the small
//! socket helpers the workers and the control thread use. Everything above this module works
//! with `OwnedFd` and `io::Result`.

pub mod socket;
pub mod tap;

use std::io;

/// Converts a libc return value into `io::Result`, reading errno on -1.
pub fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Same as [`cvt`] for calls that return `ssize_t`.
pub fn cvt_size(ret: libc::ssize_t) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}
