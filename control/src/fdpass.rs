//! Sending and receiving one message with at most one fd attached (SCM_RIGHTS), on any Unix
//! socket given by its raw fd. The `sendfd` crate does the cmsg work; this module only adapts
//! it to raw fds and owned results.

use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use sendfd::{RecvWithFd, SendWithFd};

/// Borrows a raw fd as a `UnixStream` without taking ownership. `sendfd` only calls
/// `sendmsg`/`recvmsg` on it, which work the same on stream, datagram and seqpacket sockets.
fn borrow(fd: RawFd) -> ManuallyDrop<UnixStream> {
    // SAFETY: the caller owns `fd` for the duration of the call; ManuallyDrop keeps the stream
    // from closing it.
    ManuallyDrop::new(unsafe { UnixStream::from_raw_fd(fd) })
}

/// Sends `bytes` on `socket` with `fd` attached when given. Blocks as `sendmsg` does on that
/// socket; returns the bytes sent.
pub fn send(socket: RawFd, bytes: &[u8], fd: Option<RawFd>) -> io::Result<usize> {
    let stream = borrow(socket);
    match fd {
        Some(fd) => stream.send_with_fd(bytes, &[fd]),
        None => stream.send_with_fd(bytes, &[]),
    }
}

/// Receives one message into `buf` and the fd attached to it, if any. Blocks as `recvmsg`
/// does on that socket. A returned length of 0 on a seqpacket or stream socket means the peer
/// closed. The fd arrives without close-on-exec; callers set it where they need it.
pub fn recv(socket: RawFd, buf: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>)> {
    let stream = borrow(socket);
    let mut fds = [-1 as RawFd; 1];
    let (len, count) = stream.recv_with_fd(buf, &mut fds)?;
    // SAFETY: recvmsg installed this fd in our table just now and nothing else refers to it.
    let fd = (count == 1).then(|| unsafe { OwnedFd::from_raw_fd(fds[0]) });
    Ok((len, fd))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn fd_travels_with_message() {
        let (a, b) = UnixStream::pair().unwrap();
        let (x, _y) = UnixStream::pair().unwrap();
        send(a.as_raw_fd(), b"hi", Some(x.as_raw_fd())).unwrap();
        let mut buf = [0u8; 8];
        let (len, fd) = recv(b.as_raw_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..len], b"hi");
        assert!(fd.is_some());
    }

    #[test]
    fn message_without_fd() {
        let (a, b) = UnixStream::pair().unwrap();
        send(a.as_raw_fd(), b"x", None).unwrap();
        let mut buf = [0u8; 8];
        let (len, fd) = recv(b.as_raw_fd(), &mut buf).unwrap();
        assert_eq!(len, 1);
        assert!(fd.is_none());
    }
}
