//! Reading the kernel's view of an interface and of this process's right to attach to it: the
//! ifindex, MTU and up flag (ioctls on a socket, so they see the caller's namespace), the
//! TUN/TAP owner, group and flags (sysfs), and CAP_NET_ADMIN.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::{IFF_MULTI_QUEUE, IFF_TAP, IFF_TUN, Medium};
use crate::sys::cvt;

/// CAP_NET_ADMIN's bit in the capability sets of `/proc/self/status`.
const CAP_NET_ADMIN: u32 = 12;

/// The kernel side's MTU and administrative state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkState {
    pub mtu: u32,
    /// IFF_UP: frames pass only while it is set.
    pub up: bool,
}

/// The creation flags, owner and group of a TUN/TAP interface, as sysfs shows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TapAttributes {
    pub medium: Medium,
    pub multi_queue: bool,
    /// The uid allowed to attach without CAP_NET_ADMIN (`ip tuntap add … user U`).
    pub owner: Option<u32>,
    /// The gid whose members may attach without CAP_NET_ADMIN (`ip tuntap add … group G`).
    pub group: Option<u32>,
}

impl TapAttributes {
    /// Returns true when the kernel lets `uid` attach without CAP_NET_ADMIN. `in_group`
    /// returns whether that process is a member of a gid.
    pub fn permits(&self, uid: u32, in_group: impl Fn(u32) -> bool) -> bool {
        self.owner == Some(uid) || self.group.is_some_and(in_group)
    }
}

/// The result of [`inspect`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inspection {
    /// The interface is a TUN or TAP device.
    TunTap(TapAttributes),
    /// The interface exists but is not a TUN or TAP device (a veth or a bridge, say).
    NotTunTap,
    /// sysfs does not show the interface of this namespace (it was mounted in another one, as
    /// after `nsenter --net` without a fresh /sys), so nothing is known.
    Unknown,
}

/// Returns the ifindex of `name` in the caller's namespace, or `None` when it does not exist.
pub fn interface_index(name: &str) -> io::Result<Option<u32>> {
    let name = interface_name(name)?;
    // SAFETY: name is a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index != 0 {
        return Ok(Some(index));
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::ENODEV) | Some(libc::ENXIO) => Ok(None),
        _ => Err(error),
    }
}

/// Reads the MTU and the up flag of `name` in the caller's namespace.
pub fn link_state(name: &str) -> io::Result<LinkState> {
    // Any socket carries the SIOCGIF* ioctls; a Unix one touches no network protocol.
    // SAFETY: socket has no memory preconditions.
    let raw =
        cvt(unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: socket returned a fresh fd that nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(raw) };

    let mut request = interface_request(name)?;
    // SAFETY: SIOCGIFMTU reads the name and writes ifru_mtu of a valid `struct ifreq`.
    cvt(unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFMTU, &mut request) })?;
    // SAFETY: the kernel has just written ifru_mtu.
    let mtu = unsafe { request.ifr_ifru.ifru_mtu } as u32;

    let mut request = interface_request(name)?;
    // SAFETY: SIOCGIFFLAGS reads the name and writes ifru_flags of a valid `struct ifreq`.
    cvt(unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) })?;
    // SAFETY: the kernel has just written ifru_flags.
    let flags = unsafe { request.ifr_ifru.ifru_flags };
    Ok(LinkState {
        mtu,
        up: flags & libc::IFF_UP as libc::c_short != 0,
    })
}

/// Reads how the interface `name`, whose ifindex in the caller's namespace is `index`, was
/// created, from `/sys/class/net/NAME`. The ifindex guards against a sysfs of another
/// namespace, which may hold a different interface of the same name.
pub fn inspect(name: &str, index: u32) -> Inspection {
    let dir = format!("/sys/class/net/{name}");
    let read = |file: &str| fs::read_to_string(format!("{dir}/{file}")).ok();
    let sysfs_index = read("ifindex").and_then(|text| text.trim().parse::<u32>().ok());
    if sysfs_index != Some(index) {
        return Inspection::Unknown;
    }
    let Some(flags) = read("tun_flags").and_then(|text| parse_hex(text.trim())) else {
        return Inspection::NotTunTap;
    };
    let medium = if flags & IFF_TAP as u32 != 0 {
        Medium::Ethernet
    } else if flags & IFF_TUN as u32 != 0 {
        Medium::Ip
    } else {
        return Inspection::Unknown;
    };
    let id = |file: &str| read(file).and_then(|text| parse_id(text.trim()));
    Inspection::TunTap(TapAttributes {
        medium,
        multi_queue: flags & IFF_MULTI_QUEUE as u32 != 0,
        owner: id("owner"),
        group: id("group"),
    })
}

/// Returns true when this process has CAP_NET_ADMIN in its effective set. A process without
/// it can attach only to TAPs it owns, and cannot create, move or configure interfaces.
pub fn has_net_admin() -> bool {
    let Ok(status) = fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << CAP_NET_ADMIN) != 0)
}

/// Returns true when `gid` is this process's effective gid or one of its supplementary groups,
/// which is the test the kernel applies to a TAP's group.
pub fn is_in_group(gid: u32) -> bool {
    // SAFETY: getegid has no preconditions.
    if unsafe { libc::getegid() } == gid {
        return true;
    }
    // SAFETY: a count of 0 requests only the number of groups and writes nothing.
    let count = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    if count <= 0 {
        return false;
    }
    let mut groups = vec![0 as libc::gid_t; count as usize];
    // SAFETY: groups has room for `count` gids.
    let count = unsafe { libc::getgroups(count, groups.as_mut_ptr()) };
    count > 0 && groups[..count as usize].contains(&gid)
}

fn interface_name(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn interface_request(name: &str) -> io::Result<libc::ifreq> {
    if name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: ifreq is plain data, for which all zero bytes are a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(name.bytes()) {
        *slot = byte as libc::c_char;
    }
    Ok(request)
}

/// Parses sysfs's `0x1902` form.
fn parse_hex(text: &str) -> Option<u32> {
    u32::from_str_radix(text.strip_prefix("0x")?, 16).ok()
}

/// Parses an owner or group file, where -1 means none.
fn parse_id(text: &str) -> Option<u32> {
    text.parse::<i64>()
        .ok()
        .and_then(|id| u32::try_from(id).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_exists_with_its_mtu() {
        let index = interface_index("lo")
            .unwrap()
            .expect("lo exists in every namespace");
        assert_eq!(index, 1);
        let state = link_state("lo").unwrap();
        assert!(state.mtu >= 1280, "lo mtu {}", state.mtu);
        assert_eq!(inspect("lo", index), Inspection::NotTunTap);
    }

    #[test]
    fn missing_interface_has_no_index() {
        assert_eq!(interface_index("ncnothere0").unwrap(), None);
    }

    #[test]
    fn sysfs_values_parse() {
        assert_eq!(parse_hex("0x1902"), Some(0x1902));
        assert_eq!(parse_hex("1902"), None);
        assert_eq!(parse_id("-1"), None);
        assert_eq!(parse_id("65534"), Some(65534));
    }

    #[test]
    fn owner_or_group_permits() {
        let owned = TapAttributes {
            medium: Medium::Ethernet,
            multi_queue: true,
            owner: Some(1),
            group: None,
        };
        assert!(owned.permits(1, |_| false));
        assert!(!owned.permits(2, |_| true));
        let grouped = TapAttributes {
            owner: None,
            group: Some(7),
            ..owned
        };
        assert!(grouped.permits(2, |gid| gid == 7));
        assert!(!grouped.permits(2, |_| false));
    }
}
