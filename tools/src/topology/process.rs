//! Stopping child processes: SIGTERM, a bounded wait, then SIGKILL.

use std::io;
use std::process::{Child, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

/// How long a child gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Sends SIGTERM to `child`, waits up to 5 s for it to exit, then SIGKILLs it, and reaps it.
///
/// Returns the exit status; a child that had already exited is only reaped.
pub fn stop_child(child: &mut Child) -> io::Result<ExitStatus> {
    if let Some(status) = child.try_wait()? {
        return Ok(status);
    }
    let pid = child.id() as libc::pid_t;
    // SAFETY: kill has no memory preconditions. The child is not reaped yet (try_wait returned
    // None), so its pid cannot have been reused.
    unsafe { libc::kill(pid, libc::SIGTERM) };

    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        thread::sleep(Duration::from_millis(20));
    }
    child.kill()?;
    child.wait()
}

/// A child process that is stopped with [`stop_child`] when dropped.
#[derive(Debug)]
pub struct ChildGuard {
    child: Option<Child>,
    label: String,
}

impl ChildGuard {
    /// Wraps `child`; `label` names it in warnings.
    pub fn new(child: Child, label: &str) -> ChildGuard {
        ChildGuard {
            child: Some(child),
            label: label.to_owned(),
        }
    }

    /// Returns the child's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Returns the child, for access to its pipes or to poll it.
    pub fn child_mut(&mut self) -> &mut Child {
        self.child
            .as_mut()
            .expect("the child is present until stop or drop")
    }

    /// Stops the child now and returns its exit status.
    pub fn stop(mut self) -> io::Result<ExitStatus> {
        let mut child = self
            .child
            .take()
            .expect("the child is present until stop or drop");
        stop_child(&mut child)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take()
            && let Err(err) = stop_child(&mut child)
        {
            let pid = child.id();
            eprintln!("warning: cannot stop {} (pid {pid}): {err}", self.label);
        }
    }
}
