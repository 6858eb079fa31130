//! The test and demo topology: a network namespace holding the kernel-side peer, a `netcon-dp`
//! whose TAP sits in that namespace, and helpers that find the workspace's binaries.
//!
//! Every type here removes what it made when dropped, so a failing test or an interrupted demo
//! leaves no namespace, process or socket behind.

mod dataplane;
mod netns;
mod paths;
mod process;

pub use dataplane::{Dataplane, DataplaneOptions};
pub use netns::Netns;
pub use paths::{binary_path, isolated_netcon_command, netcon_command, require_root};
pub use process::{ChildGuard, stop_child};

use std::sync::atomic::{AtomicU32, Ordering};

/// Returns a number unique within this process, for names that must not collide.
fn next_id() -> u32 {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    COUNTER.fetch_add(1, Ordering::Relaxed)
}
