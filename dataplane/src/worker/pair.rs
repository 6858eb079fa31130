//! Moving bytes between a smoltcp socket and the service end of a connection's socketpair.
//!
//! The program's end was handed over with one sentinel byte already written into it, and the
//! service end reads with MSG_PEEK at SO_PEEK_OFF 1. After forwarding n bytes the pump consumes
//! n, so one already-forwarded byte always stays queued. Closing the service end with that
//! byte unread makes Linux report ECONNRESET to the program, which is how a TCP reset reaches
//! it; before a clean close the pump drains the queue so the program sees EOF after the data.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use smoltcp::socket::tcp;

use super::conn::Conn;
use crate::sys::socket::{is_hung_up, recv, send, set_int_option};

/// Largest chunk peeked from a socketpair at once, and the size of the discard buffer.
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
    let mut moved = false;
    while conn.readable && !conn.app_eof && socket.can_send() {
        let result = socket.send(|buf| {
            let len = buf.len().min(scratch.len());
            match recv(fd, &mut buf[..len], libc::MSG_PEEK | libc::MSG_DONTWAIT) {
                Ok(n) => (n, Ok(n)),
                Err(e) => (0, Err(e)),
            }
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
                consume(fd, n, scratch)?;
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
