//! Who may connect to the control socket's path: a client whose uid is allowed, or another
//! thread of a process that already holds an allowed connection.
//!
//! Servers drop privileges after they start: nginx, apache and vsftpd fork workers as root
//! that switch to an unprivileged user, and apache's event MPM then starts threads. The
//! preload gives such threads and processes their connections through a connection opened
//! before the switch ([`netcon_control::Op::NewConnection`]), which needs no check here. The
//! second rule covers threads that connect by path after the switch anyway, which they can
//! only do when the socket is open to them (mode 0666, on a filesystem without ACLs).

use std::fs;

/// The credentials and identity of one control client process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerProcess {
    pub pid: i32,
    pub uid: u32,
    /// The process's start time (`/proc/PID/stat` field 22, in clock ticks since boot), so a
    /// reused pid never passes for the process that held it. `None` when it cannot be read.
    pub start_time: Option<u64>,
}

impl PeerProcess {
    /// Returns the peer `pid` with `uid`, reading its start time from `/proc`.
    pub fn lookup(pid: i32, uid: u32) -> PeerProcess {
        PeerProcess {
            pid,
            uid,
            start_time: start_time(pid),
        }
    }

    /// Returns whether this peer may use the service: its uid is in `allowed_uids`, or it is
    /// the same process (same pid and start time) as one of `authorized`.
    pub fn is_authorized<'a>(
        &self,
        allowed_uids: &[u32],
        mut authorized: impl Iterator<Item = &'a PeerProcess>,
    ) -> bool {
        if allowed_uids.contains(&self.uid) {
            return true;
        }
        let Some(start) = self.start_time else {
            return false;
        };
        authorized.any(|other| other.pid == self.pid && other.start_time == Some(start))
    }
}

/// Reads field 22 (`starttime`) of `/proc/PID/stat`.
fn start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

/// Extracts `starttime` from the text of `/proc/PID/stat`. The command name (field 2) is in
/// parentheses and may itself contain spaces and parentheses, so fields are counted from the
/// last `)`: `starttime` is the 20th field after it.
fn parse_start_time(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 \
                        987654 1000 10 18446744073709551615";

    fn peer(pid: i32, uid: u32, start_time: Option<u64>) -> PeerProcess {
        PeerProcess {
            pid,
            uid,
            start_time,
        }
    }

    #[test]
    fn start_time_after_odd_name() {
        assert_eq!(parse_start_time(STAT), Some(987654));
    }

    #[test]
    fn start_time_of_truncated_stat() {
        assert_eq!(parse_start_time("1 (x) S 1 2"), None);
        assert_eq!(parse_start_time("no name"), None);
    }

    #[test]
    fn own_start_time_is_readable() {
        assert!(start_time(std::process::id() as i32).is_some());
    }

    #[test]
    fn allowed_uid_is_authorized() {
        assert!(peer(10, 0, None).is_authorized(&[0], std::iter::empty()));
    }

    #[test]
    fn thread_of_authorized_process_is_authorized() {
        let root = peer(10, 0, Some(500));
        assert!(peer(10, 33, Some(500)).is_authorized(&[0], [root].iter()));
    }

    #[test]
    fn reused_pid_is_not_authorized() {
        let root = peer(10, 0, Some(500));
        assert!(!peer(10, 33, Some(900)).is_authorized(&[0], [root].iter()));
    }

    #[test]
    fn other_process_is_not_authorized() {
        let root = peer(10, 0, Some(500));
        assert!(!peer(11, 33, Some(500)).is_authorized(&[0], [root].iter()));
        assert!(!peer(10, 33, None).is_authorized(&[0], [root].iter()));
    }
}
