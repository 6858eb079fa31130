//! Opening a TAP (or TUN) queue through `/dev/net/tun` with `TUNSETIFF`, and reading the
//! kernel's view of an interface before an attach, to explain why one would fail.

mod inspect;

pub use inspect::{
    Inspection, LinkState, TapAttributes, has_net_admin, inspect, interface_index, is_in_group,
    link_state,
};

use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

use super::cvt;

/// The clone device every TUN/TAP queue is opened through.
pub const CLONE_DEVICE: &str = "/dev/net/tun";

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;
const IFF_VNET_HDR: libc::c_short = 0x4000;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;
const TUN_F_TSO6: libc::c_uint = 0x04;

/// Linux's IFNAMSIZ less the terminating NUL.
pub const MAX_NAME_LEN: usize = 15;

#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Whether frames carry an Ethernet header (TAP) or start at the IP header (TUN).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Medium {
    Ethernet,
    Ip,
}

impl fmt::Display for Medium {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Medium::Ethernet => "tap",
            Medium::Ip => "tun",
        })
    }
}

/// The system call of [`open_queue`] that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueStep {
    /// `open("/dev/net/tun")`.
    OpenCloneDevice,
    /// `TUNSETIFF`, which creates the interface or attaches the queue to it.
    SetInterface,
    /// `TUNSETOFFLOAD`.
    SetOffload,
}

/// Why [`open_queue`] failed: the step and the kernel's error.
#[derive(Debug)]
pub struct QueueError {
    pub step: QueueStep,
    pub error: io::Error,
}

impl QueueError {
    /// Returns the errno of the failed call, or 0 when it had none.
    pub fn errno(&self) -> i32 {
        self.error.raw_os_error().unwrap_or(0)
    }
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.step {
            QueueStep::OpenCloneDevice => write!(f, "cannot open {CLONE_DEVICE}: {}", self.error),
            QueueStep::SetInterface => write!(f, "TUNSETIFF failed: {}", self.error),
            QueueStep::SetOffload => write!(f, "TUNSETOFFLOAD failed: {}", self.error),
        }
    }
}

impl std::error::Error for QueueError {}

/// Opens one queue of the TAP/TUN interface `name`, creating the interface when it does not
/// exist (that needs CAP_NET_ADMIN) or attaching to it when it does (that needs ownership or
/// CAP_NET_ADMIN). `multi_queue` must match how an existing interface was created, or the
/// kernel returns EINVAL. The fd is blocking (io_uring waits on it without blocking the
/// thread) and close-on-exec. With `offload`, every frame carries a `virtio_net_hdr` and the
/// kernel may exchange TCP segments of up to 64 KiB with it (checksum, TSO4 and TSO6 offload).
pub fn open_queue(
    name: &str,
    medium: Medium,
    multi_queue: bool,
    offload: bool,
) -> Result<OwnedFd, QueueError> {
    let at = |step| move |error| QueueError { step, error };
    if name.is_empty() || name.len() > MAX_NAME_LEN || name.contains(['/', ' ']) {
        return Err(QueueError {
            step: QueueStep::SetInterface,
            error: io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "interface name {name:?} must be 1 to {MAX_NAME_LEN} bytes without '/' or ' '"
                ),
            ),
        });
    }
    let path = CString::new(CLONE_DEVICE).expect("no NUL");
    // SAFETY: path is a valid NUL-terminated string; open has no other preconditions.
    let raw = cvt(unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) })
        .map_err(at(QueueStep::OpenCloneDevice))?;
    // SAFETY: open returned a fresh fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };

    let mut req = IfReq {
        name: [0; 16],
        flags: IFF_NO_PI,
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    req.flags |= match medium {
        Medium::Ethernet => IFF_TAP,
        Medium::Ip => IFF_TUN,
    };
    if multi_queue {
        req.flags |= IFF_MULTI_QUEUE;
    }
    if offload {
        req.flags |= IFF_VNET_HDR;
    }
    // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, which IfReq matches in size (40
    // bytes) and in the layout of the two fields the kernel uses.
    cvt(unsafe { libc::ioctl(raw, TUNSETIFF, &mut req as *mut IfReq) })
        .map_err(at(QueueStep::SetInterface))?;
    if offload {
        let flags = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
        // SAFETY: TUNSETOFFLOAD takes the offload flags as a plain integer argument.
        cvt(unsafe { libc::ioctl(raw, TUNSETOFFLOAD, flags) })
            .map_err(at(QueueStep::SetOffload))?;
    }
    Ok(fd)
}
