//! `send`, `sendto`, `sendmsg`, `sendmmsg`, `write` and `writev`: on a netcon UDP socket each
//! call sends one datagram (one per message for `sendmmsg`) with a header naming its
//! destination.

use std::net::SocketAddr;

use libc::{c_int, c_uint, c_void, iovec, mmsghdr, msghdr, size_t, sockaddr, socklen_t, ssize_t};
use netcon_control::datagram::{DatagramHeader, max_payload};
use netcon_control::route::Path;
use netcon_control::{Op, Request};

use super::{
    Iovecs, MAX_MESSAGES, bind_on_first_send, datagram_kind, destination, payload_len,
    require_peer, take_error,
};
use crate::fdtable::{self, FdKind};
use crate::info;
use crate::intercept::{Answer, ask, fail, read_sockaddr};
use crate::real;

/// Bytes of IPv6 and UDP headers: a payload this much below the MTU fits in one packet of
/// either family.
const IPV6_UDP_HEADERS: usize = 40 + 8;

/// Send flags that change nothing for a datagram carried through a socketpair, which leaves as
/// one message at once whatever is set.
// TODO: MSG_MORE (and UDP_CORK) joins sends into one datagram on Linux; here each send is a
// datagram of its own — buffering the corked payload in the preload would fix it.
const IGNORED_FLAGS: c_int = libc::MSG_MORE | libc::MSG_CONFIRM | libc::MSG_EOR;

/// Sends one datagram made of the program's `count` iovecs at `iov` to `to`, or to the peer
/// when `to` is `None`. Returns the payload bytes sent, or -1 with errno set.
///
/// # Safety
/// `iov` must be valid for reads of `count` iovecs, each valid for reads of its length.
unsafe fn send_datagram(
    fd: c_int,
    kind: FdKind,
    iov: *const iovec,
    count: usize,
    flags: c_int,
    to: Option<SocketAddr>,
) -> ssize_t {
    if flags & libc::MSG_OOB != 0 {
        return fail(libc::EOPNOTSUPP) as ssize_t;
    }
    let to = match to.map(|addr| checked_destination(fd, addr)).transpose() {
        Ok(to) => to,
        Err(errno) => return fail(errno) as ssize_t,
    };
    // SAFETY: the caller's contract for iov and count.
    let len = match unsafe { payload_len(iov, count) } {
        Ok(len) => len,
        Err(errno) => return fail(errno) as ssize_t,
    };
    let family_max = max_payload(&to.unwrap_or(family_example(fd)));
    if len > family_max {
        return fail(libc::EMSGSIZE) as ssize_t;
    }
    if let Err(errno) = prepare(fd, kind, to.is_none()) {
        return fail(errno) as ssize_t;
    }
    if let Err(errno) = check_route(fd, to, len) {
        return fail(errno) as ssize_t;
    }

    let mut header = DatagramHeader::Data(to).encode();
    // SAFETY: the caller's contract for iov and count; header outlives the call.
    let mut iovecs = match unsafe { Iovecs::new(header.as_mut_ptr(), iov, count) } {
        Ok(iovecs) => iovecs,
        Err(errno) => return fail(errno) as ssize_t,
    };
    // SAFETY: an all-zero msghdr is valid (no name, no control data).
    let mut message: msghdr = unsafe { std::mem::zeroed() };
    message.msg_iov = iovecs.as_mut_ptr();
    message.msg_iovlen = iovecs.len;
    let flags = (flags & !IGNORED_FLAGS) | libc::MSG_NOSIGNAL;
    // SAFETY: the iovecs describe the header and the program's buffers, all valid for reads.
    let sent = unsafe { real::sendmsg(fd, &message, flags) };
    if sent < 0 {
        if matches!(real::errno(), libc::EPIPE | libc::ECONNRESET) && service_end_gone(fd) {
            real::set_errno(libc::ENETDOWN);
        }
        return -1;
    }
    len as ssize_t
}

/// Returns whether a send failed because netcon-dp's end of the socketpair is gone (netcon-dp
/// stopped), not because the program shut its own sending side: only the first hangs up
/// both directions (POLLHUP), since `shutdown` never shuts the receiving side here.
fn service_end_gone(fd: c_int) -> bool {
    let mut poll = libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    };
    // SAFETY: poll reads and writes one valid pollfd and does not wait (timeout 0).
    let ready = unsafe { libc::poll(&mut poll, 1, 0) };
    ready < 0 || poll.revents & libc::POLLHUP != 0
}

/// Gets a socket ready to send: a port when it has none, a peer when the datagram names no
/// destination, and no error from the peer waiting to be reported.
fn prepare(fd: c_int, kind: FdKind, to_peer: bool) -> Result<(), c_int> {
    let mut kind = kind;
    if kind == FdKind::Datagram {
        bind_on_first_send(fd)?;
        kind = FdKind::BoundDatagram;
    }
    if to_peer && kind != FdKind::ConnectedDatagram {
        require_peer(fd)?;
        kind = FdKind::ConnectedDatagram;
    }
    if kind == FdKind::ConnectedDatagram
        && let Some(errno) = take_error(fd)
    {
        return Err(errno);
    }
    Ok(())
}

/// Checks that a datagram of `len` payload bytes may leave for `to` (the connected peer when
/// `None`), as the kernel's route lookup and IP output would. The errors are ENETUNREACH
/// without a route, EACCES for a broadcast address without SO_BROADCAST, and EMSGSIZE when
/// the datagram is too large for the link and the socket forbids fragmentation
/// (IP_PMTUDISC_DO and the like).
/// A connected socket's route was checked when it connected, so only its size is checked,
/// and its peer is asked for only when the size may matter.
fn check_route(fd: c_int, to: Option<SocketAddr>, len: usize) -> Result<(), c_int> {
    let flags = fdtable::send_flags(fd);
    let forbids_fragments =
        flags.is_some_and(|f| f.forbids_fragments(true) || f.forbids_fragments(false));
    if to.is_none() && !forbids_fragments {
        return Ok(());
    }
    // Without netcon-dp's routes nothing can be checked; the send itself then fails.
    let Some(info) = info::netcon_info() else {
        return Ok(());
    };
    let routes = info.routes;
    let to = match to {
        Some(to) => to,
        None if len + IPV6_UDP_HEADERS <= routes.mtu as usize => return Ok(()),
        None => match peer(fd) {
            Some(peer) => peer,
            None => return Ok(()),
        },
    };
    let path = routes.path(to.ip())?;
    if path == Path::Broadcast && !flags.is_none_or(|f| f.allows_broadcast()) {
        return Err(libc::EACCES);
    }
    let ipv4 = match to {
        SocketAddr::V4(_) => true,
        SocketAddr::V6(v6) => v6.ip().to_ipv4_mapped().is_some(),
    };
    let too_large = len > routes.unfragmented_payload(path, to.ip());
    if too_large && flags.is_some_and(|f| f.forbids_fragments(ipv4)) {
        return Err(libc::EMSGSIZE);
    }
    Ok(())
}

/// Returns the peer of a connected datagram socket, as netcon-dp has it.
fn peer(fd: c_int) -> Option<SocketAddr> {
    match ask(fd, &Request::new(Op::GetPeerName)) {
        Answer::Reply(reply, _) => reply.remote.0,
        Answer::Failed(_) | Answer::Foreign => None,
    }
}

/// Checks a destination against the socket's family: an AF_INET socket sends only to IPv4
/// addresses (EAFNOSUPPORT), an AF_INET6 one to either.
fn checked_destination(fd: c_int, addr: SocketAddr) -> Result<SocketAddr, c_int> {
    if addr.is_ipv6() && fdtable::family(fd) == libc::AF_INET {
        return Err(libc::EAFNOSUPPORT);
    }
    destination(addr)
}

/// Returns an address of the socket's family, for the family's payload limit.
fn family_example(fd: c_int) -> SocketAddr {
    if fdtable::family(fd) == libc::AF_INET6 {
        SocketAddr::new(std::net::Ipv6Addr::UNSPECIFIED.into(), 0)
    } else {
        SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), 0)
    }
}

/// Reads an optional destination from a `sendto`/`sendmsg` address argument.
///
/// # Safety
/// `addr` must be null or valid for reads of `len` bytes.
unsafe fn optional_address(
    addr: *const sockaddr,
    len: socklen_t,
) -> Result<Option<SocketAddr>, c_int> {
    if addr.is_null() || len == 0 {
        return Ok(None);
    }
    // SAFETY: the caller's contract.
    unsafe { read_sockaddr(addr, len) }.map(Some)
}

/// Replaces `sendto(2)`.
///
/// # Safety
/// As for libc's `sendto`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendto(
    fd: c_int,
    buf: *const c_void,
    len: size_t,
    flags: c_int,
    addr: *const sockaddr,
    addr_len: socklen_t,
) -> ssize_t {
    let Some(kind) = datagram_kind(fd) else {
        // SAFETY: the program's own arguments, passed on unchanged.
        return unsafe { real::sendto(fd, buf, len, flags, addr, addr_len) };
    };
    // SAFETY: the caller's contract for addr.
    let to = match unsafe { optional_address(addr, addr_len) } {
        Ok(to) => to,
        Err(errno) => return fail(errno) as ssize_t,
    };
    let iov = iovec {
        iov_base: buf as *mut c_void,
        iov_len: len,
    };
    // SAFETY: one iovec describing the caller's buffer.
    unsafe { send_datagram(fd, kind, &iov, 1, flags, to) }
}

/// Replaces `send(2)`.
///
/// # Safety
/// As for libc's `send`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn send(fd: c_int, buf: *const c_void, len: size_t, flags: c_int) -> ssize_t {
    let Some(kind) = datagram_kind(fd) else {
        // SAFETY: the program's own arguments, passed on unchanged.
        return unsafe { real::send(fd, buf, len, flags) };
    };
    let iov = iovec {
        iov_base: buf as *mut c_void,
        iov_len: len,
    };
    // SAFETY: one iovec describing the caller's buffer.
    unsafe { send_datagram(fd, kind, &iov, 1, flags, None) }
}

/// Replaces `write(2)`.
///
/// # Safety
/// As for libc's `write`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn write(fd: c_int, buf: *const c_void, len: size_t) -> ssize_t {
    let Some(kind) = datagram_kind(fd) else {
        // SAFETY: the program's own arguments, passed on unchanged.
        return unsafe { real::write(fd, buf, len) };
    };
    let iov = iovec {
        iov_base: buf as *mut c_void,
        iov_len: len,
    };
    // SAFETY: one iovec describing the caller's buffer.
    unsafe { send_datagram(fd, kind, &iov, 1, 0, None) }
}

/// Replaces `writev(2)`.
///
/// # Safety
/// As for libc's `writev`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn writev(fd: c_int, iov: *const iovec, count: c_int) -> ssize_t {
    let Some(kind) = datagram_kind(fd) else {
        // SAFETY: the program's own arguments, passed on unchanged.
        return unsafe { real::writev(fd, iov, count) };
    };
    let Ok(count) = usize::try_from(count) else {
        return fail(libc::EINVAL) as ssize_t;
    };
    // SAFETY: the caller's contract for iov and count.
    unsafe { send_datagram(fd, kind, iov, count, 0, None) }
}

/// Replaces `sendmsg(2)`. Control messages (IP_PKTINFO, IP_TOS…) are ignored.
///
/// # Safety
/// As for libc's `sendmsg`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendmsg(fd: c_int, message: *const msghdr, flags: c_int) -> ssize_t {
    let Some(kind) = datagram_kind(fd) else {
        // SAFETY: the program's own arguments, passed on unchanged.
        return unsafe { real::sendmsg(fd, message, flags) };
    };
    if message.is_null() {
        return fail(libc::EFAULT) as ssize_t;
    }
    // SAFETY: the caller's contract: message points to a valid msghdr.
    unsafe { send_message(fd, kind, &*message, flags) }
}

/// Sends the datagram one msghdr describes.
///
/// # Safety
/// The msghdr's pointers must be valid as for `sendmsg`.
unsafe fn send_message(fd: c_int, kind: FdKind, message: &msghdr, flags: c_int) -> ssize_t {
    // SAFETY: the caller's contract for msg_name.
    let to = match unsafe { optional_address(message.msg_name.cast(), message.msg_namelen) } {
        Ok(to) => to,
        Err(errno) => return fail(errno) as ssize_t,
    };
    // SAFETY: the caller's contract for msg_iov.
    unsafe { send_datagram(fd, kind, message.msg_iov, message.msg_iovlen, flags, to) }
}

/// Replaces `sendmmsg(2)`: sends the messages one by one, as the kernel does, and returns how
/// many were sent, or -1 when the first one failed.
///
/// # Safety
/// As for libc's `sendmmsg`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendmmsg(
    fd: c_int,
    messages: *mut mmsghdr,
    count: c_uint,
    flags: c_int,
) -> c_int {
    let Some(kind) = datagram_kind(fd) else {
        // SAFETY: the program's own arguments, passed on unchanged.
        return unsafe { real::sendmmsg(fd, messages, count, flags) };
    };
    // SAFETY: the caller's contract for messages and count.
    unsafe { send_messages(fd, kind, messages, count, flags) }
}

/// Sends up to `count` messages; shared by `sendmmsg` and `syscall(SYS_sendmmsg, …)`.
///
/// # Safety
/// As for libc's `sendmmsg`.
pub unsafe fn send_messages(
    fd: c_int,
    kind: FdKind,
    messages: *mut mmsghdr,
    count: c_uint,
    flags: c_int,
) -> c_int {
    let count = (count as usize).min(MAX_MESSAGES);
    if count > 0 && messages.is_null() {
        return fail(libc::EFAULT);
    }
    let mut kind = kind;
    for index in 0..count {
        // SAFETY: the caller guarantees `count` valid mmsghdrs at `messages`.
        let entry = unsafe { &mut *messages.add(index) };
        // SAFETY: the caller's contract for the msghdr's pointers.
        let sent = unsafe { send_message(fd, kind, &entry.msg_hdr, flags) };
        if sent < 0 {
            return if index == 0 { -1 } else { index as c_int };
        }
        entry.msg_len = sent as c_uint;
        // The first send may have bound the socket.
        kind = crate::intercept::classify(fd);
    }
    count as c_int
}
