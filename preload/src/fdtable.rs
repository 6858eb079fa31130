//! What this process knows about each fd number: unknown, foreign (libc's), a netcon stream,
//! a netcon listener or a netcon datagram socket, and the address family of datagram sockets.
//! Only a cache: the service is asked for any fd marked unknown, and every entry is reset
//! when its fd is closed or replaced.

use std::sync::atomic::{AtomicU8, Ordering};

/// fds below this are cached; higher ones are asked about on every call.
const CACHED_FDS: usize = 65536;

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
        _ => FdKind::Unknown,
    }
}

/// Records the kind of `fd`.
pub fn set(fd: i32, kind: FdKind) {
    if let Some(slot) = usize::try_from(fd).ok().and_then(|i| TABLE.get(i)) {
        slot.store(kind as u8, Ordering::Relaxed);
    }
}

/// Forgets `fd` (closed or replaced).
pub fn forget(fd: i32) {
    set(fd, FdKind::Unknown);
    set_family(fd, libc::AF_INET);
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
