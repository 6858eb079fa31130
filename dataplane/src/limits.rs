//! What happens when netcon-dp reaches `--max-connections` or runs out of fds: the errno a
//! program gets, the default limit, and warnings that are logged at most once per interval
//! however often the limit is hit.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// The errno `socket()` fails with when `--max-connections` sockets are open. The limit spans
/// every program behind netcon-dp, as the kernel's system-wide file table spans every process,
/// and ENFILE is what `socket(2)` returns when that table is full. Programs treat it as they
/// treat EMFILE: the call fails and they retry later or give up on that connection.
pub const LIMIT_ERRNO: i32 = libc::ENFILE;

/// Maximum sockets open at once by default, whatever the fd limit, so that memory stays
/// bounded: `netcon-bench idle` measured about 60 KB of netcon-dp's memory per idle connection,
/// about 4 GB at this many.
pub const DEFAULT_MAX_CONNECTIONS_CAP: usize = 65536;

/// Fds kept free of connections by default, for control connections (one per thread of each
/// program), listeners (one fd per worker each) and netcon-dp's own files.
pub const DEFAULT_FD_RESERVE: u64 = 4096;

/// Returns the default `--max-connections` for netcon-dp's limit on open fds: the limit less
/// [`DEFAULT_FD_RESERVE`], but at least half of it, and at most
/// [`DEFAULT_MAX_CONNECTIONS_CAP`].
pub fn default_max_connections(fd_limit: u64) -> usize {
    let usable = fd_limit
        .saturating_sub(DEFAULT_FD_RESERVE)
        .max(fd_limit / 2);
    usize::try_from(usable)
        .unwrap_or(usize::MAX)
        .clamp(1, DEFAULT_MAX_CONNECTIONS_CAP)
}

/// Returns the errno a program gets when netcon-dp cannot make the fds of a new socket. When
/// netcon-dp has used up its own limit on open fds (EMFILE), the program's limit is not what
/// was reached, so it gets ENFILE, as when the kernel's system-wide file table is full. Other
/// errors pass through, and an error without an errno becomes ENOMEM.
pub fn creation_errno(error: &io::Error) -> i32 {
    match error.raw_os_error() {
        Some(libc::EMFILE) => libc::ENFILE,
        Some(errno) => errno,
        None => libc::ENOMEM,
    }
}

/// Returns whether `error` means that netcon-dp or the system has no fd left.
pub fn is_fd_exhaustion(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Shortest time between two warnings of one kind.
const WARNING_INTERVAL_MS: u64 = 10_000;

/// A warning that is logged at most once per [`WARNING_INTERVAL_MS`], with the number of
/// occurrences that were not logged since the last one. Safe to share between threads.
pub struct RateLimitedWarning {
    /// Milliseconds since `epoch` at which the last warning was logged, plus 1 (0: never).
    last_logged: AtomicU64,
    suppressed: AtomicU64,
    epoch: Instant,
}

impl Default for RateLimitedWarning {
    fn default() -> Self {
        RateLimitedWarning {
            last_logged: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }
}

impl RateLimitedWarning {
    /// Logs the message `message` returns at warn level unless a warning of this kind was
    /// logged in the last interval, in which case it only counts this occurrence.
    pub fn warn(&self, message: impl FnOnce() -> String) {
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        let last = self.last_logged.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= WARNING_INTERVAL_MS;
        let claimed = due
            && self
                .last_logged
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
        if !claimed {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let text = message();
        let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
        if suppressed == 0 {
            log::warn!("{text}");
        } else {
            let seconds = WARNING_INTERVAL_MS / 1000;
            log::warn!("{text} ({suppressed} more times in the last {seconds} s)");
        }
    }
}

/// Warnings shared by the control thread and the workers.
#[derive(Default)]
pub struct Warnings {
    /// A socket or connection was rejected because `--max-connections` sockets are open.
    pub limit_reached: RateLimitedWarning,
    /// netcon-dp could not make the fds for a socket or an accepted connection.
    pub out_of_fds: RateLimitedWarning,
    /// netcon-dp had no fd for a new control connection.
    pub control_out_of_fds: RateLimitedWarning,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_limit_leaves_fds_free() {
        assert_eq!(default_max_connections(1024), 512);
        assert_eq!(default_max_connections(8192), 4096);
        assert_eq!(default_max_connections(20_000), 15_904);
        assert_eq!(
            default_max_connections(1 << 20),
            DEFAULT_MAX_CONNECTIONS_CAP
        );
        assert_eq!(default_max_connections(1), 1);
    }

    #[test]
    fn own_fd_exhaustion_reaches_program_as_enfile() {
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        assert_eq!(creation_errno(&emfile), libc::ENFILE);
        let nobufs = io::Error::from_raw_os_error(libc::ENOBUFS);
        assert_eq!(creation_errno(&nobufs), libc::ENOBUFS);
        assert_eq!(creation_errno(&io::Error::other("x")), libc::ENOMEM);
    }

    #[test]
    fn repeated_warning_is_counted_not_logged() {
        let warning = RateLimitedWarning::default();
        let mut built = 0;
        for _ in 0..5 {
            warning.warn(|| {
                built += 1;
                "limit".to_string()
            });
        }
        assert_eq!(built, 1, "only the first warning is logged");
        assert_eq!(warning.suppressed.load(Ordering::Relaxed), 4);
    }
}
