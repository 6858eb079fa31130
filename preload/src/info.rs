//! netcon's interface and DNS server, asked from netcon-dp once per process ([`Op::Info`]),
//! for the resolver and the interface list.
//!
//! The answer is kept for the life of the process; a child after `fork` inherits it, which is
//! right because it talks to the same netcon-dp. A failed request is not kept, so the next
//! lookup asks again.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use netcon_control::{NetconInfo, Op, Request};

use crate::rpc;

static INFO: OnceLock<NetconInfo> = OnceLock::new();

/// Returns netcon's info, asking netcon-dp on first use. `None` when netcon-dp cannot be
/// reached or sends no usable answer (reported once on stderr).
pub fn netcon_info() -> Option<NetconInfo> {
    if let Some(info) = INFO.get() {
        return Some(*info);
    }
    // Asked without holding a lock, so a fork while another thread waits for the reply
    // cannot leave the child blocked; when two threads ask at once, the first answer stays.
    let info = match rpc::call(&Request::new(Op::Info), None) {
        Ok((reply, _)) if reply.errno == 0 => NetconInfo::from_reply(&reply)?,
        Ok(_) => return None,
        Err(e) => {
            rpc::report_unreachable(&e);
            return None;
        }
    };
    Some(*INFO.get_or_init(|| info))
}

/// Prints, once per process, that names cannot be resolved because netcon-dp has no DNS
/// server.
pub fn report_no_dns_server() {
    static REPORTED: AtomicBool = AtomicBool::new(false);
    if REPORTED.swap(true, Ordering::Relaxed) {
        return;
    }
    let line = b"netcon: netcon-dp has no DNS server, so only /etc/hosts and numeric addresses \
                 resolve; start netcon-dp with --dns ADDR\n";
    // SAFETY: writes a valid buffer to stderr.
    unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
}
