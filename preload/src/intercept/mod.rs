//! The exported replacements for libc's socket calls, and what they share: deciding whether an
//! fd is a netcon socket, asking the service, and copying socket addresses in and out of the
//! program's memory.

mod connect;
mod datagram;
mod ioctl;
mod kernel_socket;
mod listen;
mod orphaned;
mod query;
mod sendfile;
mod socket;
mod timeouts;
mod unchecked;

pub(crate) use connect::connect;
pub(crate) use query::getsockopt;
pub(crate) use socket::{close, socket};
pub(crate) use unchecked::check_inherited;

use std::net::SocketAddr;
use std::os::fd::OwnedFd;

use libc::{c_int, sockaddr, socklen_t};
use netcon_control::addr::{decode_sockaddr, encode_sockaddr};
use netcon_control::{Op, Reply, Request, SocketKind};

use crate::fdtable::{self, FdKind};
use crate::real;
use crate::rpc;

/// Largest socket address a program may pass (`sizeof(struct sockaddr_storage)`).
const MAX_SOCKADDR: usize = 128;

/// Fails the intercepted call with `errno`.
fn fail(errno: c_int) -> c_int {
    real::set_errno(errno);
    -1
}

/// What `fd` is. Asks the service (once, then cached) about Unix sockets it has not seen,
/// since every netcon socket is one end of a Unix socketpair.
pub(crate) fn classify(fd: c_int) -> FdKind {
    let cached = fdtable::get(fd);
    if !matches!(cached, FdKind::Unknown | FdKind::Unchecked) {
        return cached;
    }
    if rpc::in_call() {
        // The only fd used during a call is the control socket's, whose sendmsg and recvmsg
        // come back here; asking the service about it would recurse.
        return FdKind::Foreign;
    }
    let saved = real::errno();
    let mut domain: c_int = 0;
    let mut len = size_of::<c_int>() as socklen_t;
    // SAFETY: domain and len are valid for writes of the sizes given.
    let ret = unsafe {
        real::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_DOMAIN,
            (&mut domain as *mut c_int).cast(),
            &mut len,
        )
    };
    let kind = if ret < 0 || domain != libc::AF_UNIX {
        FdKind::Foreign
    } else {
        match rpc::call(&Request::new(Op::Identify), Some(fd)) {
            Ok((reply, _)) => match SocketKind::from_value(reply.value) {
                SocketKind::Stream => FdKind::Stream,
                SocketKind::Listener => FdKind::Listener,
                SocketKind::Datagram => datagram_kind(fd, &reply),
                SocketKind::Foreign => FdKind::Foreign,
            },
            // Without the service nothing can be ours: do not cache, ask again next time.
            Err(_) => {
                real::set_errno(saved);
                return FdKind::Foreign;
            }
        }
    };
    fdtable::set(fd, kind);
    real::set_errno(saved);
    kind
}

/// The kind of a datagram socket, from the addresses the service reported for it.
fn datagram_kind(fd: c_int, reply: &Reply) -> FdKind {
    if let Some(local) = reply.local.0 {
        let domain = if local.is_ipv6() {
            libc::AF_INET6
        } else {
            libc::AF_INET
        };
        fdtable::set_family(fd, domain);
    }
    if let Some(&flags) = reply.opt_bytes().first() {
        fdtable::set_send_flags(fd, netcon_control::datagram::SendFlags(flags));
    }
    let bound = reply.local.0.is_some_and(|local| local.port() != 0);
    match (reply.remote.0, bound) {
        (Some(_), _) => FdKind::ConnectedDatagram,
        (None, true) => FdKind::BoundDatagram,
        (None, false) => FdKind::Datagram,
    }
}

/// The service's answer about a netcon socket.
#[allow(clippy::large_enum_variant)] // one lives on the stack per call; boxing would allocate
enum Answer {
    Reply(Reply, Option<OwnedFd>),
    /// The call fails with this errno.
    Failed(c_int),
    /// The service does not know the fd after all: pass the call to libc.
    Foreign,
}

/// Sends `request` about `fd` (attached) and sorts the outcome.
fn ask(fd: c_int, request: &Request) -> Answer {
    match rpc::call(request, Some(fd)) {
        Ok((reply, _)) if reply.errno == libc::ENOTSOCK => {
            fdtable::set(fd, FdKind::Foreign);
            Answer::Foreign
        }
        Ok((reply, _)) if reply.errno != 0 => Answer::Failed(reply.errno),
        Ok((reply, fd)) => Answer::Reply(reply, fd),
        Err(e) => {
            rpc::report_unreachable(&e);
            Answer::Failed(e.errno())
        }
    }
}

/// Reads a socket address from the program's memory.
///
/// # Safety
/// `addr` must be null or valid for reads of `len` bytes.
unsafe fn read_sockaddr(addr: *const sockaddr, len: socklen_t) -> Result<SocketAddr, c_int> {
    if addr.is_null() {
        return Err(libc::EFAULT);
    }
    let len = len as usize;
    if len > MAX_SOCKADDR {
        return Err(libc::EINVAL);
    }
    // SAFETY: the caller guarantees len readable bytes at addr.
    let bytes = unsafe { std::slice::from_raw_parts(addr.cast::<u8>(), len) };
    decode_sockaddr(bytes).map_err(|e| e.errno())
}

/// Writes a socket address into the program's buffer the way the kernel does: truncated to
/// `*len`, with `*len` set to the full size. Null pointers are skipped.
///
/// # Safety
/// `addr` and `len` must be null or valid, with `*len` writable bytes at `addr`.
unsafe fn write_sockaddr(value: &SocketAddr, addr: *mut sockaddr, len: *mut socklen_t) {
    if addr.is_null() || len.is_null() {
        return;
    }
    // SAFETY: the caller guarantees len is valid.
    let capacity = unsafe { *len } as usize;
    // SAFETY: the caller guarantees capacity writable bytes at addr.
    let out = unsafe { std::slice::from_raw_parts_mut(addr.cast::<u8>(), capacity) };
    let full = encode_sockaddr(value, out);
    // SAFETY: as above.
    unsafe { *len = full as socklen_t };
}
