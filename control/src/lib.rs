//! The contract between the netcon preload and `netcon-dp`: the RPC message layout, the address
//! encoding, the fd-passing helpers and the default control socket path.
//!
//! Both sides link this crate, so a request encoded by the shim always decodes in the service.
//! Nothing here blocks except the fd-passing calls, which block exactly as `sendmsg`/`recvmsg`
//! on the given socket do.

pub mod addr;
pub mod datagram;
pub mod fdpass;
pub mod handoff;
pub mod info;
pub mod path;
pub mod route;
pub mod wire;

pub use addr::WireAddr;
pub use info::NetconInfo;
pub use wire::{DecodeError, Op, Reply, Request, SocketKind};
