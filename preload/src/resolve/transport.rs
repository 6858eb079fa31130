//! Carrying one DNS query to the server and its response back, over sockets made through
//! netcon itself (the preload's own `socket` and `connect`), so queries travel the virtual
//! network like the program's traffic.
//!
//! [`exchange`] is the one place that picks the transport: UDP, and TCP (RFC 1035 section
//! 4.2.2: each message behind a 2-byte length) when the UDP response comes back truncated or
//! when netcon-dp rejects UDP sockets.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libc::{c_int, c_void, socklen_t};
use netcon_control::addr::encode_sockaddr;

use super::message::{is_truncated, message_id};
use crate::intercept::{close, connect, getsockopt, socket};
use crate::real;

/// Largest response read over UDP: the 512 bytes of RFC 1035 (no EDNS is offered), with room
/// to notice a server that sends more.
const UDP_RESPONSE_MAX: usize = 4096;

/// A reason no response came back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExchangeError {
    /// Nothing arrived before the deadline.
    TimedOut,
    /// The connection or datagram failed with this errno (ECONNREFUSED when nothing listens).
    Failed(c_int),
}

/// Sends `query` to `server` and returns the response with the same message id, waiting at
/// most `timeout`.
pub fn exchange(
    server: SocketAddr,
    query: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, ExchangeError> {
    let deadline = Instant::now() + timeout;
    match exchange_udp(server, query, deadline) {
        Ok(response) if !is_truncated(&response) => Ok(response),
        Ok(_) | Err(UdpError::Unavailable) => exchange_tcp(server, query, deadline),
        Err(UdpError::Exchange(error)) => Err(error),
    }
}

enum UdpError {
    /// netcon-dp rejected the UDP socket as a type it does not carry.
    Unavailable,
    Exchange(ExchangeError),
}

fn exchange_udp(server: SocketAddr, query: &[u8], deadline: Instant) -> Result<Vec<u8>, UdpError> {
    let socket = NetconSocket::open(server, libc::SOCK_DGRAM).map_err(|errno| match errno {
        libc::EAFNOSUPPORT | libc::EPROTONOSUPPORT | libc::ESOCKTNOSUPPORT | libc::EINVAL => {
            UdpError::Unavailable
        }
        errno => UdpError::Exchange(ExchangeError::Failed(errno)),
    })?;
    socket
        .connect(server, deadline)
        .map_err(UdpError::Exchange)?;
    socket.send_datagram(query).map_err(UdpError::Exchange)?;
    let id = message_id(query);
    let mut buf = vec![0u8; UDP_RESPONSE_MAX];
    loop {
        socket
            .wait(libc::POLLIN, deadline)
            .map_err(UdpError::Exchange)?;
        let len = socket
            .receive_datagram(&mut buf)
            .map_err(UdpError::Exchange)?;
        // A late answer to an earlier query on the same port is not this one's.
        if len > 0 && message_id(&buf[..len]) == id {
            buf.truncate(len);
            return Ok(buf);
        }
    }
}

fn exchange_tcp(
    server: SocketAddr,
    query: &[u8],
    deadline: Instant,
) -> Result<Vec<u8>, ExchangeError> {
    let socket = NetconSocket::open(server, libc::SOCK_STREAM).map_err(ExchangeError::Failed)?;
    socket.connect(server, deadline)?;
    let length = u16::try_from(query.len()).map_err(|_| ExchangeError::Failed(libc::EMSGSIZE))?;
    let mut framed = length.to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    socket.write_all(&framed, deadline)?;

    let mut length = [0u8; 2];
    socket.read_exact(&mut length, deadline)?;
    let mut response = vec![0u8; usize::from(u16::from_be_bytes(length))];
    socket.read_exact(&mut response, deadline)?;
    Ok(response)
}

/// A non-blocking netcon socket, closed on drop.
struct NetconSocket {
    fd: c_int,
}

impl NetconSocket {
    /// Opens a socket of `kind` for the family of `server` through the preload's `socket`.
    fn open(server: SocketAddr, kind: c_int) -> Result<NetconSocket, c_int> {
        let family = match server {
            SocketAddr::V4(_) => libc::AF_INET,
            SocketAddr::V6(_) => libc::AF_INET6,
        };
        let fd = socket(family, kind | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(real::errno());
        }
        Ok(NetconSocket { fd })
    }

    /// Connects to `server`, waiting until `deadline` for the handshake of a stream socket.
    fn connect(&self, server: SocketAddr, deadline: Instant) -> Result<(), ExchangeError> {
        let mut storage = [0u8; size_of::<libc::sockaddr_in6>()];
        let len = encode_sockaddr(&server, &mut storage) as socklen_t;
        // SAFETY: storage contains an encoded socket address of `len` bytes.
        let ret = unsafe { connect(self.fd, storage.as_ptr().cast(), len) };
        if ret == 0 {
            return Ok(());
        }
        match real::errno() {
            libc::EINPROGRESS => {}
            errno => return Err(ExchangeError::Failed(errno)),
        }
        self.wait(libc::POLLOUT, deadline)?;
        let mut error: c_int = 0;
        let mut error_len = size_of::<c_int>() as socklen_t;
        // SAFETY: error and error_len are valid for the writes getsockopt makes.
        let ret = unsafe {
            getsockopt(
                self.fd,
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                (&mut error as *mut c_int).cast(),
                &mut error_len,
            )
        };
        match (ret, error) {
            (0, 0) => Ok(()),
            (0, errno) => Err(ExchangeError::Failed(errno)),
            _ => Err(ExchangeError::Failed(real::errno())),
        }
    }

    /// Waits until the socket is ready for `events` or `deadline` passes. A hang-up or error
    /// counts as ready, so the next call reports it.
    fn wait(&self, events: i16, deadline: Instant) -> Result<(), ExchangeError> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ExchangeError::TimedOut);
            }
            let mut poll = libc::pollfd {
                fd: self.fd,
                events,
                revents: 0,
            };
            let millis = left.as_millis().clamp(1, c_int::MAX as u128) as c_int;
            // SAFETY: poll reads and writes one valid pollfd.
            match unsafe { libc::poll(&mut poll, 1, millis) } {
                n if n > 0 => return Ok(()),
                0 => continue,
                _ if real::errno() == libc::EINTR => continue,
                _ => return Err(ExchangeError::Failed(real::errno())),
            }
        }
    }

    fn send_datagram(&self, message: &[u8]) -> Result<(), ExchangeError> {
        // `libc::send` binds to the preload's own `send` when it has one, so a netcon UDP
        // socket gets whatever handling the preload gives the program's datagrams.
        // SAFETY: message is a valid buffer of its length.
        let sent = unsafe {
            libc::send(
                self.fd,
                message.as_ptr().cast(),
                message.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if sent < 0 {
            return Err(ExchangeError::Failed(real::errno()));
        }
        Ok(())
    }

    /// Receives one datagram; 0 when the wake-up had nothing to read.
    fn receive_datagram(&self, buf: &mut [u8]) -> Result<usize, ExchangeError> {
        // SAFETY: buf is valid for writes of its length.
        let received = unsafe {
            libc::recv(
                self.fd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if received >= 0 {
            return Ok(received as usize);
        }
        match real::errno() {
            libc::EAGAIN | libc::EINTR => Ok(0),
            errno => Err(ExchangeError::Failed(errno)),
        }
    }

    fn write_all(&self, mut bytes: &[u8], deadline: Instant) -> Result<(), ExchangeError> {
        while !bytes.is_empty() {
            self.wait(libc::POLLOUT, deadline)?;
            // SAFETY: bytes is a valid buffer of its length.
            let written = unsafe {
                libc::send(
                    self.fd,
                    bytes.as_ptr().cast::<c_void>(),
                    bytes.len(),
                    libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
                )
            };
            match written {
                n if n > 0 => bytes = &bytes[n as usize..],
                _ if matches!(real::errno(), libc::EAGAIN | libc::EINTR) => {}
                _ => return Err(ExchangeError::Failed(real::errno())),
            }
        }
        Ok(())
    }

    fn read_exact(&self, mut buf: &mut [u8], deadline: Instant) -> Result<(), ExchangeError> {
        while !buf.is_empty() {
            self.wait(libc::POLLIN, deadline)?;
            // SAFETY: buf is valid for writes of its length.
            let read = unsafe {
                libc::recv(
                    self.fd,
                    buf.as_mut_ptr().cast::<c_void>(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            match read {
                // The server closed the connection before the whole response.
                0 => return Err(ExchangeError::Failed(libc::ECONNRESET)),
                n if n > 0 => buf = &mut buf[n as usize..],
                _ if matches!(real::errno(), libc::EAGAIN | libc::EINTR) => {}
                _ => return Err(ExchangeError::Failed(real::errno())),
            }
        }
        Ok(())
    }
}

impl Drop for NetconSocket {
    fn drop(&mut self) {
        let saved = real::errno();
        close(self.fd);
        real::set_errno(saved);
    }
}
