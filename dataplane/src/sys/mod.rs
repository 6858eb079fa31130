//! Every raw OS call the data plane makes: TAP setup, socketpairs, epoll, eventfd and the small
//! socket helpers the workers and the control thread use. Everything above this module works
//! with `OwnedFd` and `io::Result`.

pub mod acl;
pub mod bpf;
pub mod datagram;
pub mod socket;
pub mod tap;

use std::io;

use crate::option_rules::BufferLimits;

/// Raises the limit on open fds and returns the new soft limit. Every connection costs the data
/// plane one fd (its end of the socketpair), so the default soft limit of 1024 would cap
/// connections far below what the machine can carry. With CAP_SYS_RESOURCE both limits go up to
/// `fs.nr_open`, the most a process may have; without it the soft limit goes up to the hard one.
pub fn raise_fd_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: limit is a valid rlimit to fill.
    cvt(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) })?;
    let ceiling = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok());
    if let Some(ceiling) = ceiling.filter(|&ceiling| ceiling > limit.rlim_max) {
        let raised = libc::rlimit {
            rlim_cur: ceiling,
            rlim_max: ceiling,
        };
        // SAFETY: raised is a valid rlimit; without CAP_SYS_RESOURCE this fails with EPERM.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Ok(ceiling);
        }
    }
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: limit is a valid rlimit; raising the soft limit up to the hard one is allowed.
        cvt(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) })?;
    }
    Ok(limit.rlim_cur)
}

/// Reads the host's `net.core.wmem_max`, `net.core.rmem_max` and the last value of
/// `net.ipv4.tcp_rmem`, keeping Linux's default for a value that cannot be read.
pub fn buffer_limits() -> BufferLimits {
    let read = |path: &str| {
        let text = std::fs::read_to_string(format!("/proc/sys/net/{path}")).ok()?;
        text.split_whitespace().last()?.parse::<i32>().ok()
    };
    let defaults = BufferLimits::default();
    BufferLimits {
        wmem_max: read("core/wmem_max").unwrap_or(defaults.wmem_max),
        rmem_max: read("core/rmem_max").unwrap_or(defaults.rmem_max),
        tcp_rmem_max: read("ipv4/tcp_rmem").unwrap_or(defaults.tcp_rmem_max),
    }
}

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
