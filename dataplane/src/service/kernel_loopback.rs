//! `--loopback kernel`: a bind or connect to a loopback address (127.0.0.0/8, ::1, or
//! ::ffff:127.0.0.0/104 on an AF_INET6 socket) is answered with
//! [`handoff::KERNEL_SOCKET`], and the preload makes the call on a kernel socket that takes
//! the netcon socket's place (see [`netcon_control::handoff`]). netcon-dp forgets the socket
//! once the program's end of it closes, as for any socket that never connected.
//!
//! TODO: UDP sockets on loopback addresses stay in the stack with either policy — answering
//! the datagram handlers' binds and connects the same way, with the preload making a
//! SOCK_DGRAM socket, would hand them over too.

use std::net::{IpAddr, SocketAddr};

use netcon_control::handoff::{self, OptionRecord};
use netcon_control::{Reply, WireAddr};

use super::Service;
use super::handlers::Handled;
use crate::config::Loopback;
use crate::registry::SocketEntry;

impl Service {
    /// Whether a bind or connect to `ip` (as the stack sees it: IPv4 for IPv4-mapped
    /// addresses) goes to a kernel socket instead of netcon.
    pub(super) fn hands_to_kernel(&self, ip: IpAddr) -> bool {
        self.loopback == Loopback::Kernel && ip.is_loopback()
    }
}

/// Builds the reply that makes the preload redo a bind or connect on a kernel socket: the
/// options `entry` holds and, for a connect from a bound socket, the address it was bound to.
pub(super) fn kernel_socket_reply(entry: &SocketEntry, bound: Option<SocketAddr>) -> Handled {
    let mut reply = Reply::ok(handoff::KERNEL_SOCKET);
    reply.local = WireAddr(bound);
    let requested: Vec<(i32, i32, Vec<u8>)> = entry
        .options
        .stored()
        .map(|(level, name, value)| (level, name, requested_value(level, name, value)))
        .collect();
    let records = requested.iter().map(|(level, name, value)| OptionRecord {
        level: *level,
        name: *name,
        value,
    });
    let (used, left_out) = handoff::encode_options(records, &mut reply.opt);
    if left_out > 0 {
        log::warn!(
            "a socket bound or connected to a loopback address went to the kernel without \
             {left_out} of its options: they do not fit in one reply"
        );
    }
    reply.opt_len = used as u32;
    Some((reply, None))
}

/// Returns the value to pass to the kernel's `setsockopt` for an option stored as `stored`.
/// Buffer sizes are stored doubled, as Linux reports them, and the kernel doubles again.
fn requested_value(level: i32, name: i32, stored: &[u8]) -> Vec<u8> {
    let is_buffer = level == libc::SOL_SOCKET && matches!(name, libc::SO_SNDBUF | libc::SO_RCVBUF);
    match stored.get(..4) {
        Some(bytes) if is_buffer => {
            let doubled = i32::from_ne_bytes(bytes.try_into().expect("4 bytes"));
            (doubled / 2).to_ne_bytes().to_vec()
        }
        _ => stored.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_sizes_halved() {
        let doubled = 131072i32.to_ne_bytes();
        let requested = requested_value(libc::SOL_SOCKET, libc::SO_RCVBUF, &doubled);
        assert_eq!(requested, 65536i32.to_ne_bytes());
        let nodelay = 1i32.to_ne_bytes();
        let unchanged = requested_value(libc::IPPROTO_TCP, libc::TCP_NODELAY, &nodelay);
        assert_eq!(unchanged, nodelay);
    }
}
