//! Entering new sockets under `--max-connections`, and what a program sees when netcon-dp is at
//! that limit or out of fds.

use std::io;

use super::Service;
use crate::limits::{self, LIMIT_ERRNO};
use crate::registry::{Inode, SocketEntry};

impl Service {
    /// Returns the errno `socket()` fails with when `--max-connections` sockets are open, so
    /// that no socketpair is made for a socket that cannot be entered.
    pub(super) fn check_room(&mut self) -> Result<(), i32> {
        let table = self.registry.lock();
        if !table.is_full() {
            return Ok(());
        }
        let max = table.max_open();
        drop(table);
        Err(self.reject(max))
    }

    /// Enters a socket made for a program, or returns the errno its `socket()` fails with
    /// when `--max-connections` sockets are open (workers may have filled the last places
    /// since [`Service::check_room`]).
    pub(super) fn admit(&mut self, inode: Inode, entry: SocketEntry) -> Result<(), i32> {
        let admitted = self.registry.lock().admit(inode, entry);
        admitted.map_err(|reached| self.reject(reached.max))
    }

    /// Counts and reports one socket rejected at the limit, and returns its errno.
    fn reject(&mut self, max: usize) -> i32 {
        self.sockets_rejected += 1;
        self.registry.warnings.limit_reached.warn(|| {
            format!(
                "--max-connections {max} reached: socket() fails with ENFILE and connections \
                 to listeners are reset until programs close sockets"
            )
        });
        LIMIT_ERRNO
    }

    /// Reports that netcon-dp could not make a socket's fds, and returns the errno the
    /// program's call fails with.
    pub(super) fn creation_failed(&self, error: &io::Error) -> i32 {
        if limits::is_fd_exhaustion(error) {
            self.registry.warnings.out_of_fds.warn(|| {
                format!(
                    "netcon-dp cannot make a socket for a program: {error}; raise its fd \
                     limit (RLIMIT_NOFILE) or lower --max-connections"
                )
            });
        }
        limits::creation_errno(error)
    }
}
