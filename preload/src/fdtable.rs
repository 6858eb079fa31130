//! What this process knows about each fd number: unknown, foreign (libc's), a netcon stream,
//! a netcon listener or a netcon datagram socket, and the address family and send flags of
//! datagram sockets.
//! Socket calls ask the service about any fd marked unknown, and every entry is reset when its
//! fd is closed or replaced.
//!
//! Reads and writes must not ask: a program may run them under a seccomp filter that kills it
//! for any other system call (OpenSSH's pre-authentication child does). So the table keeps an
//! invariant for them: every netcon datagram socket below [`CACHED_FDS`] is cached as one or
//! marked [`FdKind::Unchecked`]. Sockets made by `socket` are cached as they are made, inherited
//! ones are checked when the library loads, copies made by `dup*` and `fcntl` take their
//! original's entry, and fds that arrive in SCM_RIGHTS messages are marked unchecked.
//!
//! NOTE: copies made by raw system calls (`syscall(SYS_dup)`, `pidfd_getfd`) and fds received
//! through io_uring escape the invariant, so reads and writes on them see the datagram header.

use std::sync::atomic::{AtomicU8, Ordering};

use netcon_control::datagram::SendFlags;

/// fds below this are cached; higher ones are asked about on every call.
pub const CACHED_FDS: usize = 65536;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FdKind {
    Unknown = 0,
    Foreign = 1,
    Stream = 2,
    Listener = 3,
    /// A listener whose netcon-dp stopped, replaced by a socket that never becomes readable.
    OrphanedListener = 4,
    /// A datagram socket without a local port yet: its first send binds one.
    Datagram = 5,
    /// A datagram socket with a local port and no peer.
    BoundDatagram = 6,
    /// A datagram socket with a peer, which sends without an address go to.
    ConnectedDatagram = 7,
    /// An fd that may be a netcon datagram socket (it arrived in an SCM_RIGHTS message, or the
    /// service could not be asked when the library loaded): reads and writes ask about it.
    Unchecked = 8,
}

impl FdKind {
    /// Whether the fd is a netcon datagram socket, whose messages carry a header.
    pub fn is_datagram(self) -> bool {
        matches!(
            self,
            FdKind::Datagram | FdKind::BoundDatagram | FdKind::ConnectedDatagram
        )
    }
}

static TABLE: [AtomicU8; CACHED_FDS] = [const { AtomicU8::new(0) }; CACHED_FDS];

/// The family of each cached datagram socket: 6 for AF_INET6, anything else for AF_INET.
static FAMILIES: [AtomicU8; CACHED_FDS] = [const { AtomicU8::new(0) }; CACHED_FDS];

/// The [`SendFlags`] of each cached datagram socket, from its options.
static SEND_FLAGS: [AtomicU8; CACHED_FDS] = [const { AtomicU8::new(0) }; CACHED_FDS];

/// The cached kind of `fd`.
pub fn get(fd: i32) -> FdKind {
    let Some(slot) = usize::try_from(fd).ok().and_then(|i| TABLE.get(i)) else {
        return FdKind::Unknown;
    };
    match slot.load(Ordering::Relaxed) {
        1 => FdKind::Foreign,
        2 => FdKind::Stream,
        3 => FdKind::Listener,
        4 => FdKind::OrphanedListener,
        5 => FdKind::Datagram,
        6 => FdKind::BoundDatagram,
        7 => FdKind::ConnectedDatagram,
        8 => FdKind::Unchecked,
        _ => FdKind::Unknown,
    }
}

/// Records the kind of `fd`.
pub fn set(fd: i32, kind: FdKind) {
    if let Some(slot) = usize::try_from(fd).ok().and_then(|i| TABLE.get(i)) {
        slot.store(kind as u8, Ordering::Relaxed);
    }
}

/// Returns whether `fd` has an entry in the table; higher fds are always asked about.
pub fn is_cached(fd: i32) -> bool {
    usize::try_from(fd).is_ok_and(|i| i < CACHED_FDS)
}

/// Gives `new`, which now refers to the same socket as `old`, the entry of `old`.
pub fn copy(old: i32, new: i32) {
    set(new, get(old));
    set_family(new, family(old));
    set_send_flags(new, send_flags(old).unwrap_or_default());
}

/// Forgets `fd` (closed or replaced).
pub fn forget(fd: i32) {
    set(fd, FdKind::Unknown);
    set_family(fd, libc::AF_INET);
    set_send_flags(fd, SendFlags::default());
}

/// Records the address family (AF_INET or AF_INET6) of the datagram socket `fd`.
pub fn set_family(fd: i32, domain: i32) {
    if let Some(slot) = usize::try_from(fd).ok().and_then(|i| FAMILIES.get(i)) {
        let family = if domain == libc::AF_INET6 { 6 } else { 4 };
        slot.store(family, Ordering::Relaxed);
    }
}

/// The recorded address family of the datagram socket `fd`; AF_INET when none is recorded.
pub fn family(fd: i32) -> i32 {
    match usize::try_from(fd).ok().and_then(|i| FAMILIES.get(i)) {
        Some(slot) if slot.load(Ordering::Relaxed) == 6 => libc::AF_INET6,
        _ => libc::AF_INET,
    }
}

/// Records the [`SendFlags`] of the datagram socket `fd`.
pub fn set_send_flags(fd: i32, flags: SendFlags) {
    if let Some(slot) = usize::try_from(fd).ok().and_then(|i| SEND_FLAGS.get(i)) {
        slot.store(flags.0, Ordering::Relaxed);
    }
}

/// Returns the recorded [`SendFlags`] of the datagram socket `fd`, or `None` for an fd above the
/// cached ones, whose options are unknown here.
pub fn send_flags(fd: i32) -> Option<SendFlags> {
    let slot = usize::try_from(fd).ok().and_then(|i| SEND_FLAGS.get(i))?;
    Some(SendFlags(slot.load(Ordering::Relaxed)))
}
