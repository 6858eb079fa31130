//! UDP sockets in the program. A netcon UDP socket is the program's end of a SOCK_SEQPACKET
//! socketpair whose messages each start with a [`DatagramHeader`] (the framing is described in
//! `netcon_control::datagram`). The interposed `send*`, `write*`, `recv*` and `read*` calls
//! add and strip that header on such fds, with one extra iovec so the payload is not copied,
//! and pass every other fd to libc untouched. Readiness, non-blocking mode, timeouts, fork
//! and exec need nothing more, because the fd is an ordinary socket.
//!
//! Before a socket's first send it gets a port (AutoBind), and a send without an address
//! checks that the socket is connected (EDESTADDRREQ otherwise), as the kernel does. Which of
//! these states an fd is in is cached in [`crate::fdtable`] and asked of the service when the
//! cache cannot tell.
//!
//! An ICMP error from the peer of a connected socket arrives as a message of its own, which
//! the next receive returns as its errno. A send looks at the head of the receive queue first,
//! so it fails with that errno too, as on Linux.
//!
//! NOTE: Linux reports such an error to the next call even when datagrams arrived before it;
//! here it waits behind them. poll reports it as readable (POLLIN), not as POLLERR.

mod recv;
mod send;

use std::net::SocketAddr;

use libc::{c_int, iovec};
use netcon_control::datagram::{DatagramHeader, HEADER_LEN};
use netcon_control::{Op, Request};

use super::{Answer, ask};
use crate::fdtable::{self, FdKind};
use crate::real;

/// Most iovecs one message may have (`UIO_MAXIOV`); the header takes one more.
const MAX_IOVECS: usize = 1024;

/// Iovecs kept on the stack per call; messages with more use the heap.
const INLINE_IOVECS: usize = 16;

/// Most messages one `sendmmsg` or `recvmmsg` handles (`UIO_MAXIOV`, as the kernel caps it).
const MAX_MESSAGES: usize = 1024;

/// The header iovec followed by the program's iovecs, which is what one message on the
/// socketpair consists of.
struct Iovecs {
    inline: [iovec; INLINE_IOVECS],
    heap: Vec<iovec>,
    len: usize,
}

impl Iovecs {
    /// Prepends `header` to the program's `count` iovecs at `user`.
    ///
    /// # Safety
    /// `user` must be valid for reads of `count` iovecs (or `count` must be 0).
    unsafe fn new(header: *mut u8, user: *const iovec, count: usize) -> Result<Iovecs, c_int> {
        if count > MAX_IOVECS {
            return Err(libc::EMSGSIZE);
        }
        if count > 0 && user.is_null() {
            return Err(libc::EFAULT);
        }
        let empty = iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        let mut iovecs = Iovecs {
            inline: [empty; INLINE_IOVECS],
            heap: Vec::new(),
            len: count + 1,
        };
        let first = iovec {
            iov_base: header.cast(),
            iov_len: HEADER_LEN,
        };
        // SAFETY: the caller guarantees `count` readable iovecs at `user`.
        let user = unsafe { slice_or_empty(user, count) };
        if count < INLINE_IOVECS {
            iovecs.inline[0] = first;
            iovecs.inline[1..=count].copy_from_slice(user);
        } else {
            iovecs.heap.reserve_exact(count + 1);
            iovecs.heap.push(first);
            iovecs.heap.extend_from_slice(user);
        }
        Ok(iovecs)
    }

    fn as_mut_ptr(&mut self) -> *mut iovec {
        if self.heap.is_empty() {
            self.inline.as_mut_ptr()
        } else {
            self.heap.as_mut_ptr()
        }
    }
}

/// Returns the total length of the program's iovecs, or EINVAL when it overflows.
///
/// # Safety
/// `user` must be valid for reads of `count` iovecs (or `count` must be 0).
unsafe fn payload_len(user: *const iovec, count: usize) -> Result<usize, c_int> {
    // SAFETY: the caller's contract.
    let user = unsafe { slice_or_empty(user, count) };
    user.iter()
        .try_fold(0usize, |total, iov| total.checked_add(iov.iov_len))
        .filter(|total| *total <= isize::MAX as usize)
        .ok_or(libc::EINVAL)
}

/// Borrows `count` iovecs at `ptr`, or nothing when `count` is 0.
///
/// # Safety
/// `ptr` must be valid for reads of `count` iovecs when `count` is not 0.
unsafe fn slice_or_empty<'a>(ptr: *const iovec, count: usize) -> &'a [iovec] {
    if count == 0 || ptr.is_null() {
        return &[];
    }
    // SAFETY: the caller's contract.
    unsafe { std::slice::from_raw_parts(ptr, count) }
}

/// Takes the error waiting at the head of a datagram socket's queue, if there is one: the
/// errno an ICMP error from the peer turned into. Used by `getsockopt(SO_ERROR)` and before
/// each send on a connected socket.
pub fn take_error(fd: c_int) -> Option<c_int> {
    let mut header = [0u8; HEADER_LEN];
    let flags = libc::MSG_PEEK | libc::MSG_DONTWAIT;
    let saved = real::errno();
    // SAFETY: header is valid for writes of its length.
    let peeked = unsafe { real::recv(fd, header.as_mut_ptr().cast(), HEADER_LEN, flags) };
    let errno = match DatagramHeader::decode(&header) {
        Some(DatagramHeader::Error(errno)) if peeked == HEADER_LEN as isize => errno,
        _ => {
            real::set_errno(saved);
            return None;
        }
    };
    discard_error(fd);
    real::set_errno(saved);
    Some(errno)
}

/// Removes the error message at the head of a datagram socket's queue (it is the header
/// alone, so reading a header's worth takes all of it).
fn discard_error(fd: c_int) {
    let mut header = [0u8; HEADER_LEN];
    let (buf, flags) = (header.as_mut_ptr().cast(), libc::MSG_DONTWAIT);
    // SAFETY: header is valid for writes of its length.
    unsafe { real::recv(fd, buf, HEADER_LEN, flags) };
}

/// Returns the datagram kind of `fd`, or `None` for any other fd. Makes no system call unless
/// the table marks `fd` unchecked or cannot hold it, because reads and writes come here and a
/// seccomp filter may allow them alone (see [`crate::fdtable`]).
fn datagram_kind(fd: c_int) -> Option<FdKind> {
    let kind = match fdtable::get(fd) {
        FdKind::Unchecked => super::classify(fd),
        FdKind::Unknown if !fdtable::is_cached(fd) => super::classify(fd),
        kind => kind,
    };
    Some(kind).filter(|kind| kind.is_datagram())
}

/// Returns whether `fd` is a netcon datagram socket, with no system call for a cached fd
/// (see [`datagram_kind`]).
pub fn is_datagram(fd: c_int) -> bool {
    datagram_kind(fd).is_some()
}

/// Gives a socket without a port one, as the kernel does on its first send.
fn bind_on_first_send(fd: c_int) -> Result<(), c_int> {
    match ask(fd, &Request::new(Op::AutoBind)) {
        Answer::Reply(..) => {
            fdtable::set(fd, FdKind::BoundDatagram);
            Ok(())
        }
        Answer::Failed(errno) => Err(errno),
        Answer::Foreign => Err(libc::ENOTSOCK),
    }
}

/// Checks with the service whether a socket the cache calls unconnected has a peer after all
/// (another process may have connected it); EDESTADDRREQ when it has none.
fn require_peer(fd: c_int) -> Result<(), c_int> {
    match ask(fd, &Request::new(Op::GetPeerName)) {
        Answer::Reply(..) => {
            fdtable::set(fd, FdKind::ConnectedDatagram);
            Ok(())
        }
        Answer::Failed(libc::ENOTCONN) => Err(libc::EDESTADDRREQ),
        Answer::Failed(errno) => Err(errno),
        Answer::Foreign => Err(libc::ENOTSOCK),
    }
}

/// Returns the address a datagram goes to, as the kernel reads a destination: the unspecified
/// address means this host, and port 0 is EINVAL.
fn destination(addr: SocketAddr) -> Result<SocketAddr, c_int> {
    if addr.port() == 0 {
        return Err(libc::EINVAL);
    }
    if !addr.ip().is_unspecified() {
        return Ok(addr);
    }
    let loopback = match addr {
        SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
        SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
    };
    Ok(SocketAddr::new(loopback, addr.port()))
}

/// Serves `syscall(SYS_sendmmsg, …)` and `syscall(SYS_recvmmsg, …)` on a netcon UDP socket,
/// which libuv 1.44 calls that way instead of through libc. Returns `None` for other numbers
/// and other fds, which the caller passes to libc.
///
/// # Safety
/// `args` must be the system call's arguments, valid as for the call.
pub unsafe fn mmsg_syscall(number: libc::c_long, args: [libc::c_long; 6]) -> Option<libc::c_long> {
    let fd = args[0] as c_int;
    let kind = datagram_kind(fd)?;
    let messages = args[1] as *mut libc::mmsghdr;
    let (count, flags) = (args[2] as libc::c_uint, args[3] as c_int);
    let result = match number {
        // SAFETY: the arguments are sendmmsg's, by the caller's contract.
        libc::SYS_sendmmsg => unsafe { send::send_messages(fd, kind, messages, count, flags) },
        libc::SYS_recvmmsg => {
            let timeout = args[4] as *const libc::timespec;
            // SAFETY: the arguments are recvmmsg's.
            unsafe { recv::recv_messages(fd, messages, count, flags, timeout) }
        }
        _ => return None,
    };
    Some(libc::c_long::from(result))
}
