//! The pipe on which the preload reports that it loaded (`netcon-preload PID`).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// The maximum number of bytes read while looking for the newline (the real line is about
/// 25 bytes).
const MAX_LINE: usize = 256;

/// A close-on-exec pipe; the program inherits the write end through `pre_exec`.
#[derive(Debug)]
pub struct ReadyPipe {
    read: OwnedFd,
    write: Option<OwnedFd>,
}

/// The outcome of waiting for the ready line.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadyWait {
    /// A full line arrived (without its newline).
    Line(String),
    /// Every write end was closed before a full line arrived.
    Closed,
    /// The timeout passed first.
    TimedOut,
}

impl ReadyPipe {
    /// Creates the pipe with both ends close-on-exec.
    pub fn new() -> io::Result<ReadyPipe> {
        let mut fds = [0; 2];
        // SAFETY: fds has room for the two fds pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both fds are open and nothing else owns them.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok(ReadyPipe {
            read,
            write: Some(write),
        })
    }

    /// Returns the write end, which the program must inherit.
    pub fn write_fd(&self) -> &OwnedFd {
        self.write
            .as_ref()
            .expect("the write end is open until wait_for_line")
    }

    /// Closes this process's write end, then reads until a newline, EOF or `timeout`.
    pub fn wait_for_line(mut self, timeout: Duration) -> io::Result<ReadyWait> {
        self.write = None;
        let deadline = Instant::now() + timeout;
        let mut line = Vec::new();
        loop {
            if let Some(end) = line.iter().position(|&b| b == b'\n') {
                line.truncate(end);
                return Ok(ReadyWait::Line(String::from_utf8_lossy(&line).into_owned()));
            }
            if line.len() > MAX_LINE {
                return Ok(ReadyWait::Line(String::from_utf8_lossy(&line).into_owned()));
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Ok(ReadyWait::TimedOut);
            }
            if !self.poll_readable(remaining)? {
                continue;
            }
            let mut buf = [0u8; 64];
            // SAFETY: buf is valid for writes of its length.
            let n =
                unsafe { libc::read(self.read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            match n {
                0 => return Ok(ReadyWait::Closed),
                n if n > 0 => line.extend_from_slice(&buf[..n as usize]),
                _ => {
                    let err = io::Error::last_os_error();
                    if err.kind() != io::ErrorKind::Interrupted {
                        return Err(err);
                    }
                }
            }
        }
    }

    /// Returns whether the read end became readable (or hung up) within `timeout`.
    fn poll_readable(&self, timeout: Duration) -> io::Result<bool> {
        let mut pollfd = libc::pollfd {
            fd: self.read.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = timeout.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
        // SAFETY: pollfd is one valid pollfd struct.
        let ready = unsafe { libc::poll(&mut pollfd, 1, millis) };
        if ready < 0 {
            let err = io::Error::last_os_error();
            return if err.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(err)
            };
        }
        Ok(ready > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_all(fd: &OwnedFd, bytes: &[u8]) {
        // SAFETY: bytes is valid for reads of its length.
        let n = unsafe { libc::write(fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
        assert_eq!(n, bytes.len() as isize);
    }

    #[test]
    fn ready_line_read() {
        let pipe = ReadyPipe::new().unwrap();
        let writer = pipe.write_fd().try_clone().unwrap();
        write_all(&writer, b"netcon-preload 42\n");
        let outcome = pipe.wait_for_line(Duration::from_secs(1)).unwrap();
        assert_eq!(outcome, ReadyWait::Line("netcon-preload 42".to_owned()));
    }

    #[test]
    fn ready_closed_without_line() {
        let pipe = ReadyPipe::new().unwrap();
        let writer = pipe.write_fd().try_clone().unwrap();
        write_all(&writer, b"partial");
        drop(writer);
        let outcome = pipe.wait_for_line(Duration::from_secs(1)).unwrap();
        assert_eq!(outcome, ReadyWait::Closed);
    }

    #[test]
    fn ready_times_out() {
        let pipe = ReadyPipe::new().unwrap();
        let _writer = pipe.write_fd().try_clone().unwrap();
        let outcome = pipe.wait_for_line(Duration::from_millis(50)).unwrap();
        assert_eq!(outcome, ReadyWait::TimedOut);
    }
}
