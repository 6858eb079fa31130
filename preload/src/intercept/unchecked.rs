//! fds that may be netcon datagram sockets although this process did not make them: those
//! inherited across exec, and those passed to it in SCM_RIGHTS messages. Both are entered in
//! [`crate::fdtable`] before the program reads or writes them, so that reads and writes never
//! need a system call of their own to tell a netcon datagram socket from any other fd.

use libc::{c_int, msghdr};

use crate::fdtable::{self, FdKind};
use crate::{real, rpc};

/// Identifies the Unix seqpacket sockets this process inherited (netcon datagram sockets and
/// listeners are such sockets). Runs while the library loads, before the program can restrict
/// its own system calls.
pub(crate) fn check_inherited() {
    let fds: Vec<c_int> = match std::fs::read_dir("/proc/self/fd") {
        Ok(entries) => entries
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
            .collect(),
        // Without /proc, try every fd number the process may hold.
        Err(_) => (0..open_fd_limit()).collect(),
    };
    for fd in fds {
        // The control connections are seqpacket sockets too, but never netcon sockets.
        if rpc::is_origin(fd) || rpc::is_own_connection(fd) {
            continue;
        }
        if is_unix_seqpacket(fd) {
            fdtable::set(fd, FdKind::Unchecked);
            // Caches the answer; an fd the service cannot be asked about stays unchecked.
            super::classify(fd);
        }
    }
}

/// Marks the fds that `message`, just filled by a successful `recvmsg`, carries in SCM_RIGHTS
/// control messages as unchecked.
///
/// # Safety
/// `message` must be null or a msghdr whose control buffer `recvmsg` filled.
pub(crate) unsafe fn mark_passed(message: *const msghdr) {
    if message.is_null() || rpc::in_call() {
        // The control connection's own replies: the call that asked sets their kind.
        return;
    }
    // SAFETY: the caller's contract; CMSG_FIRSTHDR checks msg_controllen.
    let mut header = unsafe { libc::CMSG_FIRSTHDR(message) };
    while !header.is_null() {
        // SAFETY: CMSG_FIRSTHDR and CMSG_NXTHDR return headers inside the control buffer.
        let cmsg = unsafe { header.read_unaligned() };
        if cmsg.cmsg_level == libc::SOL_SOCKET && cmsg.cmsg_type == libc::SCM_RIGHTS {
            // SAFETY: as above; the payload of an SCM_RIGHTS message is an array of ints.
            let data = unsafe { libc::CMSG_DATA(header) }.cast::<c_int>();
            // SAFETY: CMSG_LEN(0) is the header's own length.
            let header_len = unsafe { libc::CMSG_LEN(0) } as usize;
            let count = (cmsg.cmsg_len as usize).saturating_sub(header_len) / size_of::<c_int>();
            for index in 0..count {
                // SAFETY: index is within the payload cmsg_len gives.
                let fd = unsafe { data.add(index).read_unaligned() };
                fdtable::set(fd, FdKind::Unchecked);
            }
        }
        // SAFETY: header is a control message header inside message's buffer.
        header = unsafe { libc::CMSG_NXTHDR(message, header) };
    }
}

/// Whether `fd` is an AF_UNIX SOCK_SEQPACKET socket. Leaves errno as it was.
fn is_unix_seqpacket(fd: c_int) -> bool {
    let saved = real::errno();
    let answer = socket_option(fd, libc::SO_DOMAIN) == Some(libc::AF_UNIX)
        && socket_option(fd, libc::SO_TYPE) == Some(libc::SOCK_SEQPACKET);
    real::set_errno(saved);
    answer
}

/// Reads the SOL_SOCKET option `name` of `fd` as an int.
fn socket_option(fd: c_int, name: c_int) -> Option<c_int> {
    let mut value: c_int = 0;
    let mut len = size_of::<c_int>() as libc::socklen_t;
    let out = (&mut value as *mut c_int).cast();
    // SAFETY: value and len are valid for writes of the sizes given.
    let ret = unsafe { real::getsockopt(fd, libc::SOL_SOCKET, name, out, &mut len) };
    (ret == 0).then_some(value)
}

/// The soft limit on open fds, at most the number of fds the table holds.
fn open_fd_limit() -> c_int {
    // SAFETY: an all-zero rlimit is valid for getrlimit to fill.
    let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: limit is valid for writes.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    limit.rlim_cur.min(fdtable::CACHED_FDS as u64) as c_int
}
