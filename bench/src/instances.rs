//! Instance to instance: two netcon-dp instances, run as two unprivileged users, on one
//! bridged segment, with the same worker count on both ends, next to the kernel path over the
//! same bridge. The segment and its measurement are the integration tests' own code, so the
//! benchmark and the tests measure the same thing.

use std::panic::{self, AssertUnwindSafe};

#[path = "../../tools/tests/segment/mod.rs"]
mod segment;

pub use segment::throughput::{Comparison, Throughput};

use segment::{Segment, User};

/// The users the two instances run as: both exist on every Debian system.
const SERVER_USER: &str = "nobody";
const CLIENT_USER: &str = "daemon";

/// Measures the kernel path, then instance to instance with each of `worker_counts` on both
/// ends, each for `seconds`. Whatever goes wrong (a missing user, a namespace that cannot be
/// made, an instance that does not start) comes back as the reason, after the segment's
/// namespaces and processes are removed.
pub fn measure(worker_counts: &[usize], seconds: u32) -> Result<Comparison, String> {
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        let segment = Segment::create("ncbench");
        let server = User::lookup(SERVER_USER);
        let client = User::lookup(CLIENT_USER);
        segment::throughput::compare(&segment, &server, &client, worker_counts, seconds)
    }));
    match outcome {
        Ok(result) => result,
        Err(payload) => Err(panic_text(payload.as_ref())),
    }
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else {
        "the measurement stopped with an error".to_owned()
    }
}
