//! Control connections: accepting them on the control socket and checking who may use the
//! service, and making new ones for a process through a connection it already holds
//! ([`netcon_control::Op::NewConnection`]). That is how threads and child processes of a
//! program get a connection of their own once they can no longer open the socket's path.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use super::peer::PeerProcess;
use super::{CLIENT_BASE, Client, Service, TOKEN_LISTENER};
use crate::limits;
use netcon_control::Reply;

use crate::sys::socket::{
    epoll_add, epoll_delete, is_seqpacket_pair_end, peer_credentials, set_nonblocking,
};

/// How long the control socket goes unwatched when netcon-dp has no fd for a waiting client
/// and no reserve fd to shed it with. epoll reports the socket readable as long as a client
/// waits, so watching it meanwhile would wake the control thread in a loop.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Opens the fd kept in reserve for shedding clients when netcon-dp has no other fd left.
pub(super) fn open_reserve_fd() -> Option<OwnedFd> {
    std::fs::File::open("/dev/null").ok().map(OwnedFd::from)
}

/// The outcome of [`Service::shed_client`].
enum Shed {
    /// It accepted a waiting client and closed it.
    Closed,
    /// No client was waiting.
    NoneWaiting,
    /// It had no reserve fd to accept one with.
    NoReserve,
}

impl Service {
    pub(super) fn accept_clients(&mut self) {
        loop {
            let fd = match self.control.accept() {
                Ok(fd) => fd,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // accept4 fails with EMFILE before it looks for a waiting client.
                Err(e) if limits::is_fd_exhaustion(&e) => match self.shed_client(&e) {
                    Shed::Closed => continue,
                    Shed::NoneWaiting => return,
                    Shed::NoReserve => return self.pause_accepting(),
                },
                Err(e) => {
                    log::warn!("control socket: accept failed: {e}");
                    return;
                }
            };
            let cred = match peer_credentials(fd.as_fd()) {
                Ok(cred) => cred,
                Err(e) => {
                    log::warn!("control socket: cannot read peer credentials: {e}");
                    continue;
                }
            };
            let peer = PeerProcess::lookup(cred.pid, cred.uid);
            let known = self.clients.iter().map(|(_, client)| &client.peer);
            if !peer.is_authorized(&self.allowed_uids, known) {
                log::warn!(
                    "control socket: rejected pid {} uid {}: the uid is not in --allow-uid \
                     and the process holds no allowed connection",
                    cred.pid,
                    cred.uid
                );
                continue;
            }
            let _ = self.add_client(fd, peer);
        }
    }

    /// Accepts one waiting client and closes it at once, with the fd kept in reserve, while
    /// netcon-dp has no fd left: the client's call then fails at once instead of waiting.
    fn shed_client(&mut self, error: &io::Error) -> Shed {
        self.registry.warnings.control_out_of_fds.warn(|| {
            format!(
                "control socket: no fd left for a new control connection ({error}); closing \
                 it, so the program's socket calls fail with ENETDOWN; raise netcon-dp's fd \
                 limit (RLIMIT_NOFILE) or lower --max-connections"
            )
        });
        let Some(reserve) = self.reserve_fd.take() else {
            return Shed::NoReserve;
        };
        drop(reserve);
        let shed = match self.control.accept() {
            Ok(client) => {
                drop(client);
                Shed::Closed
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Shed::NoneWaiting,
            Err(e) => {
                log::warn!("control socket: accept failed: {e}");
                Shed::NoneWaiting
            }
        };
        self.reserve_fd = open_reserve_fd();
        shed
    }

    /// Stops watching the control socket for [`ACCEPT_PAUSE`].
    fn pause_accepting(&mut self) {
        let _ = epoll_delete(self.epoll.as_raw_fd(), self.control.fd().as_raw_fd());
        self.accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
    }

    /// Watches the control socket again once a pause is over, and tries to get the reserve
    /// fd back.
    pub(super) fn resume_accepting(&mut self) {
        let Some(until) = self.accept_paused_until else {
            return;
        };
        if Instant::now() < until {
            return;
        }
        self.accept_paused_until = None;
        if self.reserve_fd.is_none() {
            self.reserve_fd = open_reserve_fd();
        }
        let fd = self.control.fd().as_raw_fd();
        if let Err(e) = epoll_add(
            self.epoll.as_raw_fd(),
            fd,
            libc::EPOLLIN as u32,
            TOKEN_LISTENER,
        ) {
            log::warn!("control socket: cannot watch it again: {e}; retrying");
            self.accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
        }
    }

    /// Serves [`Op::NewConnection`] from client `key`: the attached socketpair end becomes a
    /// client of its own, with the identity of the process that made the pair, and gets the
    /// reply. Nothing is ever sent on `key`'s connection, which other threads and processes
    /// may share (see the request's documentation). Without a usable socket the request is
    /// dropped, and the sender, which closed its copy of that end, sees end of file on its
    /// own end.
    pub(super) fn new_connection(&mut self, key: usize, fd: Option<OwnedFd>) {
        let from = self.clients.get(key).map_or(0, |client| client.peer.pid);
        let Some(fd) = fd else {
            log::debug!("control socket: pid {from} asked for a new connection without a socket");
            return;
        };
        match is_seqpacket_pair_end(fd.as_fd()) {
            Ok(true) => {}
            Ok(false) | Err(_) => {
                log::warn!(
                    "control socket: pid {from} asked for a new connection on a socket that is \
                     not one end of a SOCK_SEQPACKET socketpair; ignoring it"
                );
                return;
            }
        }
        // For a socketpair, SO_PEERCRED names the process that made it. netcon-dp makes the
        // pairs of the programs' listeners and UDP sockets, which are seqpacket pairs too:
        // serving one of those as a connection would keep it open and turn replies into
        // datagrams.
        let cred = match peer_credentials(fd.as_fd()) {
            Ok(cred) => cred,
            Err(e) => {
                log::debug!("control socket: cannot read a new connection's credentials: {e}");
                return;
            }
        };
        if cred.pid == std::process::id() as i32 {
            log::warn!(
                "control socket: pid {from} asked for a new connection on a netcon socket; \
                 ignoring it"
            );
            return;
        }
        if let Err(e) = set_nonblocking(fd.as_fd(), true) {
            log::debug!("control socket: cannot make a new connection non-blocking: {e}");
            return;
        }
        if let Some(added) = self.add_client(fd, PeerProcess::lookup(cred.pid, cred.uid)) {
            self.send_reply(added, &Reply::ok(0), None);
        }
    }

    /// Starts serving `fd` as a client connection of `peer`; returns its key.
    fn add_client(&mut self, fd: OwnedFd, peer: PeerProcess) -> Option<usize> {
        let raw = fd.as_raw_fd();
        let pid = peer.pid;
        let key = self.clients.insert(Client {
            fd,
            peer,
            serial: 0,
        });
        let events = (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
        let token = CLIENT_BASE + key as u64;
        if let Err(e) = epoll_add(self.epoll.as_raw_fd(), raw, events, token) {
            log::warn!("control socket: cannot watch client pid {pid}: {e}");
            self.clients.remove(key);
            return None;
        }
        Some(key)
    }
}
