//! The interface list a program sees: `getifaddrs`, `if_nameindex`, `if_nametoindex` and
//! `if_indextoname` describe netcon's interface, not the kernel's. glibc asks the kernel over
//! netlink, so a program would see the host's interfaces and addresses (or only `lo` under
//! `--isolate`), none of which its sockets use.
//!
//! There are two interfaces, as a kernel would show them: `lo` (index 1) with 127.0.0.1/8 and
//! ::1/128, and `netcon0` (index 2) with the addresses netcon-dp reports ([`crate::info`]): the
//! IPv4 address and prefix, with the broadcast address of that prefix, and the IPv6 address
//! and its link-local address when netcon-dp has `--address6`. On an Ethernet link `netcon0`
//! has netcon's MAC and the flags of an Ethernet interface that is up; with `--medium ip` it
//! looks like a TUN interface (point-to-point, no MAC, the IPv4 address where a broadcast
//! address would be). Both are up and running.
//!
//! When netcon-dp cannot be reached, every call goes to glibc, so the program sees the
//! kernel's interfaces.
//!
//! NOTE: programs that list interfaces with `ioctl(SIOCGIFCONF)`, netlink or `/proc/net`
//! (`ip`, `ifconfig`, Java's `NetworkInterface`) still see the kernel's.

mod list;

use std::ffi::CStr;

use libc::{c_char, c_int, c_uint, ifaddrs};
use netcon_control::NetconInfo;

use crate::info;
use crate::real;

/// The loopback interface's name and index, as Linux numbers it in every namespace.
const LOOPBACK: (&CStr, c_uint) = (c"lo", 1);

/// The name and index of netcon's interface.
const NETCON: (&CStr, c_uint) = (c"netcon0", 2);

/// Replaces `getifaddrs(3)`: lists `lo` and `netcon0` with netcon's addresses. The list is
/// one block from `malloc`, as glibc's is, so `freeifaddrs` and even `free` release it.
///
/// # Safety
/// The same contract as `getifaddrs`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getifaddrs(out: *mut *mut ifaddrs) -> c_int {
    let Some(info) = info::netcon_info() else {
        // SAFETY: the program's own argument, passed on unchanged.
        return unsafe { real::getifaddrs(out) };
    };
    if out.is_null() {
        real::set_errno(libc::EFAULT);
        return -1;
    }
    match list::build(&info) {
        Some(list) => {
            // SAFETY: out is non-null and, by getifaddrs' contract, valid for writes.
            unsafe { *out = list };
            0
        }
        None => {
            real::set_errno(libc::ENOMEM);
            -1
        }
    }
}

/// Replaces `freeifaddrs(3)`: frees a list of [`getifaddrs`], or passes a list glibc made
/// (while netcon-dp could not be reached) to glibc.
///
/// # Safety
/// The same contract as `freeifaddrs`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn freeifaddrs(list: *mut ifaddrs) {
    // SAFETY: the caller passes null or a list getifaddrs returned.
    if unsafe { list::is_netcon_list(list) } {
        // SAFETY: netcon's lists are one block from malloc.
        unsafe { libc::free(list.cast()) };
        return;
    }
    // SAFETY: a list glibc made, passed on unchanged.
    unsafe { real::freeifaddrs(list) }
}

/// Replaces `if_nameindex(3)`: returns `lo` and `netcon0`. The array and each name come
/// from `malloc`, as glibc's do, so glibc's `if_freenameindex` frees them.
#[unsafe(no_mangle)]
pub extern "C" fn if_nameindex() -> *mut libc::if_nameindex {
    if info::netcon_info().is_none() {
        // SAFETY: no arguments; glibc's own list.
        return unsafe { real::if_nameindex() };
    }
    match list::name_index([LOOPBACK, NETCON]) {
        Some(array) => array,
        None => {
            real::set_errno(libc::ENOBUFS);
            std::ptr::null_mut()
        }
    }
}

/// Replaces `if_nametoindex(3)`: 1 for `lo`, 2 for `netcon0`, else 0 with ENODEV.
///
/// # Safety
/// The same contract as `if_nametoindex`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn if_nametoindex(name: *const c_char) -> c_uint {
    if info::netcon_info().is_none() {
        // SAFETY: the program's own argument, passed on unchanged.
        return unsafe { real::if_nametoindex(name) };
    }
    if name.is_null() {
        real::set_errno(libc::EFAULT);
        return 0;
    }
    // SAFETY: the caller passes a NUL-terminated name.
    let name = unsafe { CStr::from_ptr(name) };
    match [LOOPBACK, NETCON]
        .into_iter()
        .find(|(known, _)| *known == name)
    {
        Some((_, index)) => index,
        None => {
            real::set_errno(libc::ENODEV);
            0
        }
    }
}

/// Replaces `if_indextoname(3)`: writes `lo` for 1 and `netcon0` for 2 into `buffer` (of
/// IF_NAMESIZE bytes), else returns null with ENXIO, as glibc does for an unknown index.
///
/// # Safety
/// The same contract as `if_indextoname`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn if_indextoname(index: c_uint, buffer: *mut c_char) -> *mut c_char {
    if info::netcon_info().is_none() {
        // SAFETY: the program's own arguments, passed on unchanged.
        return unsafe { real::if_indextoname(index, buffer) };
    }
    let Some((name, _)) = [LOOPBACK, NETCON].into_iter().find(|(_, i)| *i == index) else {
        real::set_errno(libc::ENXIO);
        return std::ptr::null_mut();
    };
    let bytes = name.to_bytes_with_nul();
    // SAFETY: the caller's buffer has room for IF_NAMESIZE bytes, more than either name with
    // its NUL.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr().cast(), buffer, bytes.len()) };
    buffer
}

/// One entry of the list: the interface it belongs to, its flags and its address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    interface: (&'static CStr, c_uint),
    flags: c_uint,
    address: Address,
}

/// The address of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Address {
    /// The link layer (AF_PACKET): hardware type, address and broadcast address. On an IP
    /// link there is no address, and the entry has none, as glibc lists a TUN interface.
    Link {
        hardware_type: u16,
        address: Option<[u8; 6]>,
        broadcast: Option<[u8; 6]>,
    },
    /// An IPv4 address, its prefix length, and the broadcast address of the prefix, or the
    /// address itself where there is none (glibc reports the local address there then).
    V4 {
        address: std::net::Ipv4Addr,
        prefix: u8,
        broadcast: std::net::Ipv4Addr,
    },
    /// An IPv6 address, its prefix length and its scope id (the interface index for a
    /// link-local address, else 0).
    V6 {
        address: std::net::Ipv6Addr,
        prefix: u8,
        scope_id: u32,
    },
}

/// The flags of `lo` on Linux: up, loopback, running, lower layer up.
const LOOPBACK_FLAGS: c_int =
    libc::IFF_UP | libc::IFF_LOOPBACK | libc::IFF_RUNNING | libc::IFF_LOWER_UP;

/// The flags of an Ethernet interface that is up (a veth or a NIC with carrier).
const ETHERNET_FLAGS: c_int = libc::IFF_UP
    | libc::IFF_BROADCAST
    | libc::IFF_RUNNING
    | libc::IFF_MULTICAST
    | libc::IFF_LOWER_UP;

/// The flags of a TUN interface that is up.
const TUN_FLAGS: c_int = libc::IFF_UP
    | libc::IFF_POINTOPOINT
    | libc::IFF_RUNNING
    | libc::IFF_NOARP
    | libc::IFF_MULTICAST
    | libc::IFF_LOWER_UP;

/// Returns the entries in the order glibc lists a kernel's: the link entry of each
/// interface, then the IPv4 addresses, then the IPv6 addresses, by interface index.
fn entries(info: &NetconInfo) -> Vec<Entry> {
    let netcon_flags = match info.mac {
        Some(_) => ETHERNET_FLAGS,
        None => TUN_FLAGS,
    } as c_uint;
    let loopback = |address| Entry {
        interface: LOOPBACK,
        flags: LOOPBACK_FLAGS as c_uint,
        address,
    };
    let netcon = |address| Entry {
        interface: NETCON,
        flags: netcon_flags,
        address,
    };

    let mut entries = vec![
        loopback(Address::Link {
            hardware_type: libc::ARPHRD_LOOPBACK,
            address: Some([0; 6]),
            broadcast: Some([0; 6]),
        }),
        netcon(Address::Link {
            hardware_type: match info.mac {
                Some(_) => libc::ARPHRD_ETHER,
                None => libc::ARPHRD_NONE,
            },
            address: info.mac,
            broadcast: info.mac.map(|_| [0xff; 6]),
        }),
        loopback(Address::V4 {
            address: std::net::Ipv4Addr::LOCALHOST,
            prefix: 8,
            broadcast: std::net::Ipv4Addr::LOCALHOST,
        }),
        netcon(Address::V4 {
            address: info.routes.ipv4,
            prefix: info.routes.prefix4,
            broadcast: match info.mac {
                Some(_) => broadcast_of(info.routes.ipv4, info.routes.prefix4),
                None => info.routes.ipv4,
            },
        }),
        loopback(Address::V6 {
            address: std::net::Ipv6Addr::LOCALHOST,
            prefix: 128,
            scope_id: 0,
        }),
    ];
    if let Some((address, prefix)) = info.routes.ipv6 {
        entries.push(netcon(Address::V6 {
            address,
            prefix,
            scope_id: 0,
        }));
    }
    if let Some(address) = info.routes.link_local {
        entries.push(netcon(Address::V6 {
            address,
            prefix: 64,
            scope_id: NETCON.1,
        }));
    }
    entries
}

/// Returns the broadcast address of `address`'s prefix.
fn broadcast_of(address: std::net::Ipv4Addr, prefix: u8) -> std::net::Ipv4Addr {
    let host_bits = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
    std::net::Ipv4Addr::from(u32::from(address) | host_bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(mac: Option<[u8; 6]>, ipv6: bool) -> NetconInfo {
        let routes = netcon_control::route::Routes {
            ipv4: "10.77.0.2".parse().unwrap(),
            prefix4: 24,
            gateway4: false,
            ipv6: ipv6.then(|| ("fd00::2".parse().unwrap(), 64)),
            link_local: (ipv6 && mac.is_some()).then(|| "fe80::6e:63ff:fe01:203".parse().unwrap()),
            gateway6: false,
            mtu: 1500,
        };
        NetconInfo {
            routes,
            mac,
            dns: None,
        }
    }

    #[test]
    fn broadcast_of_prefix() {
        let address = "10.77.0.2".parse().unwrap();
        assert_eq!(
            broadcast_of(address, 24),
            "10.77.0.255".parse::<std::net::Ipv4Addr>().unwrap()
        );
        assert_eq!(broadcast_of(address, 32), address);
        assert_eq!(
            broadcast_of(address, 8),
            "10.255.255.255".parse::<std::net::Ipv4Addr>().unwrap()
        );
    }

    #[test]
    fn ethernet_entries_in_kernel_order() {
        let entries = entries(&info(Some([2, 0x6e, 0x63, 1, 2, 3]), true));
        let kinds: Vec<_> = entries
            .iter()
            .map(|entry| {
                let family = match entry.address {
                    Address::Link { .. } => "link",
                    Address::V4 { .. } => "inet",
                    Address::V6 { .. } => "inet6",
                };
                (entry.interface.0.to_str().unwrap(), family)
            })
            .collect();
        let expected = [
            ("lo", "link"),
            ("netcon0", "link"),
            ("lo", "inet"),
            ("netcon0", "inet"),
            ("lo", "inet6"),
            ("netcon0", "inet6"),
            ("netcon0", "inet6"),
        ];
        assert_eq!(kinds, expected);
        assert_eq!(entries[1].flags, 0x11043);
        assert_eq!(entries[0].flags, 0x10049);
        match entries[6].address {
            Address::V6 { scope_id, .. } => assert_eq!(scope_id, 2),
            other => panic!("expected the link-local address, got {other:?}"),
        }
    }

    #[test]
    fn ip_link_looks_like_tun() {
        let entries = entries(&info(None, false));
        assert_eq!(entries.len(), 5);
        assert_eq!(entries[1].flags, TUN_FLAGS as c_uint);
        assert_eq!(
            entries[1].address,
            Address::Link {
                hardware_type: libc::ARPHRD_NONE,
                address: None,
                broadcast: None,
            }
        );
        match entries[3].address {
            Address::V4 { broadcast, .. } => {
                assert_eq!(broadcast, std::net::Ipv4Addr::new(10, 77, 0, 2))
            }
            other => panic!("expected the IPv4 address, got {other:?}"),
        }
    }
}
