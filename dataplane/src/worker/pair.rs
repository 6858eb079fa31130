//! Moving bytes between a smoltcp socket and the service end of a connection's socketpair.
//!
//! The program's end was handed over with one sentinel byte already written into it, and the
//! service end's queue always starts with one already-forwarded byte, the held byte (the
//! sentinel at first), which the peek offset (SO_PEEK_OFF 1) skips. Closing the service end
//! with that byte unread makes Linux report ECONNRESET to the program, which is how a TCP
//! reset reaches it; before a clean close the pump drains the queue so the program sees EOF
//! after the data.
//!
//! The socketpair is driven by readiness (its epoll fd is watched by the worker's io_uring)
//! and plain calls, not by io_uring receives and sends. Linux 6.18 accepts a multishot
//! receive with MSG_PEEK at the peek offset on these sockets, but its bytes land in a
//! provided buffer and must be copied into the smoltcp socket and then read once more to
//! trim the queue: three copies per byte where FIONREAD, one `recvmsg` and a one-byte peek
//! make one. It also keeps receiving while the smoltcp socket is full, so the TCP window
//! would no longer close when the program outpaces the peer. Sends could go through the
//! ring only if smoltcp kept the bytes until the completion, which its receive API does not
//! allow without a staging copy. The system calls the ring would save are about 25,000 per
//! GB uploaded and 7,000 per GB downloaded with 64 KiB segments, at 0.3 to 0.5 µs each on a
//! 2-core EPYC VM: about 3% of the worker's CPU per GB, against the copies they would add.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use smoltcp::socket::tcp;

use super::conn::Conn;
use crate::sys::socket::{is_hung_up, queued_bytes, recv, recv_two, send, set_int_option};

/// Largest chunk peeked from a socketpair at once when nothing new was queued, and the size
/// of the discard buffer.
pub const SCRATCH_LEN: usize = 256 * 1024;

/// SO_PEEK_OFF: Linux's option number, which the libc crate does not export.
const SO_PEEK_OFF: libc::c_int = 42;

/// Size of the service end's send buffer: how much the worker can queue towards the program
/// before the socketpair pushes back and the TCP window closes.
const SERVICE_SNDBUF: libc::c_int = 2 * 1024 * 1024;

/// Readies a fresh stream socketpair: the sentinel byte goes into the program's end, the
/// service end peeks past it and gets a larger send buffer.
pub fn prepare_pair(app: BorrowedFd<'_>, service: BorrowedFd<'_>) -> io::Result<()> {
    send(
        app.as_raw_fd(),
        &[0],
        libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
    )?;
    set_int_option(service, libc::SOL_SOCKET, SO_PEEK_OFF, 1)?;
    set_int_option(service, libc::SOL_SOCKET, libc::SO_SNDBUF, SERVICE_SNDBUF)?;
    Ok(())
}

/// Gives the program's end its send buffer back, reads back the filler that kept it
/// unwritable, and restores the peek offset.
pub(super) fn complete_handshake(conn: &mut Conn, filler: usize) -> io::Result<()> {
    if let Some(held) = conn.held.take() {
        held.release()?;
    }
    read_back_filler(conn, filler)?;
    if filler > 0 {
        set_int_option(conn.fd.as_fd(), libc::SOL_SOCKET, SO_PEEK_OFF, 1)?;
    }
    Ok(())
}

/// Consumes `filler` bytes from the head of the socketpair queue (the sentinel and all but the
/// last filler byte, which stays queued in the sentinel's place).
fn read_back_filler(conn: &mut Conn, filler: usize) -> io::Result<()> {
    let fd = conn.fd.as_raw_fd();
    let mut left = filler;
    let mut buf = [0u8; 4096];
    while left > 0 {
        let n = recv(fd, &mut buf[..left.min(4096)], libc::MSG_DONTWAIT)?;
        if n == 0 {
            break;
        }
        left -= n;
    }
    Ok(())
}

/// Moves bytes the peer sent from smoltcp into the socketpair. Errors mean the program's end
/// is gone.
pub(super) fn forward_to_app(conn: &mut Conn, socket: &mut tcp::Socket) -> io::Result<bool> {
    let fd = conn.fd.as_raw_fd();
    let mut moved = false;
    while conn.writable && socket.can_recv() {
        let result =
            socket.recv(
                |buf| match send(fd, buf, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) {
                    Ok(n) => (n, Ok(n)),
                    Err(e) => (0, Err(e)),
                },
            );
        match result {
            Ok(Ok(n)) => {
                conn.to_app += n as u64;
                moved = true;
            }
            Ok(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => conn.writable = false,
            Ok(Err(e)) => return Err(e),
            Err(_) => break,
        }
    }
    Ok(moved)
}

/// Moves bytes the program wrote from the socketpair into smoltcp, and turns the program's
/// EOF into a FIN. Errors mean the program closed with data unread (reset the peer).
pub(super) fn forward_to_peer(
    conn: &mut Conn,
    socket: &mut tcp::Socket,
    scratch: &mut [u8],
) -> io::Result<bool> {
    let fd = conn.fd.as_raw_fd();
    let may_end = conn.shut_seen || conn.app_gone;
    let mut moved = false;
    while conn.readable && !conn.app_eof && socket.can_send() {
        let result = socket.send(|buf| match take_written(fd, buf, may_end, scratch) {
            Ok(n) => (n, Ok(n)),
            Err((n, e)) => (n, Err(e)),
        });
        match result {
            // A program that closed with SO_LINGER {1, 0} gets a reset and no FIN.
            Ok(Ok(0)) if conn.options.reset_on_close && is_hung_up(fd) => {
                conn.app_eof = true;
                conn.app_gone = true;
                moved = true;
            }
            Ok(Ok(0)) => {
                socket.close();
                conn.app_eof = true;
                moved = true;
            }
            Ok(Ok(n)) => {
                conn.to_stack += n as u64;
                moved = true;
            }
            Ok(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => conn.readable = false,
            Ok(Err(e)) => return Err(e),
            Err(_) => break,
        }
    }
    Ok(moved)
}

/// Moves up to `buf.len()` bytes the program wrote into `buf`, keeping one byte queued;
/// returns how many (0 at EOF), or an error with the bytes already in `buf`.
///
/// Unless `may_end`, nothing new means EAGAIN without a peek for EOF. The held byte keeps the
/// socketpair readable for epoll, so its EPOLLIN carries no news, but the program's shutdown
/// always comes with EPOLLRDHUP.
///
/// One `recvmsg` reads the held byte into a throwaway byte and all but the last of the new
/// bytes into `buf`. The last one becomes the held byte and is peeked. So each byte is copied
/// once, where peeking everything and reading it again to discard it copied it twice, for one
/// more system call (FIONREAD).
fn take_written(
    fd: RawFd,
    buf: &mut [u8],
    may_end: bool,
    scratch: &mut [u8],
) -> Result<usize, (usize, io::Error)> {
    let queued = queued_bytes(fd).map_err(|e| (0, e))?;
    let fresh = queued.saturating_sub(1).min(buf.len());
    if fresh == 0 && !may_end {
        return Err((0, io::ErrorKind::WouldBlock.into()));
    }
    if fresh == 0 {
        // Nothing new, or it arrived after FIONREAD. A peek past the held byte returns 0 at
        // EOF and EAGAIN without data, and what it finds is then read again to discard it.
        let len = buf.len().min(scratch.len());
        let flags = libc::MSG_PEEK | libc::MSG_DONTWAIT;
        let n = recv(fd, &mut buf[..len], flags).map_err(|e| (0, e))?;
        consume(fd, n, scratch).map_err(|e| (0, e))?;
        return Ok(n);
    }

    let mut held = [0u8; 1];
    let read =
        recv_two(fd, &mut held, &mut buf[..fresh - 1], libc::MSG_DONTWAIT).map_err(|e| (0, e))?;
    let Some(got) = read.checked_sub(1) else {
        // FIONREAD counted at least two bytes, so only a broken socket reads none.
        return Err((0, io::ErrorKind::UnexpectedEof.into()));
    };
    // Reading moved the peek offset back to the head, which is the next new byte.
    let flags = libc::MSG_PEEK | libc::MSG_DONTWAIT;
    let peeked = recv(fd, &mut buf[got..got + 1], flags).map_err(|e| (got, e))?;
    Ok(got + peeked)
}

/// Removes `len` forwarded bytes from the head of the queue (the peek offset moves back with
/// them, so it stays one byte past the head).
fn consume(fd: RawFd, mut len: usize, scratch: &mut [u8]) -> io::Result<()> {
    while len > 0 {
        let chunk = len.min(scratch.len());
        let n = recv(fd, &mut scratch[..chunk], libc::MSG_DONTWAIT)?;
        if n == 0 {
            break;
        }
        len -= n;
    }
    Ok(())
}

/// Reads and drops everything still queued, so closing the socketpair shows EOF, not a reset.
pub(super) fn drain(fd: RawFd, scratch: &mut [u8]) {
    while let Ok(n) = recv(fd, scratch, libc::MSG_DONTWAIT) {
        if n == 0 {
            break;
        }
    }
}
