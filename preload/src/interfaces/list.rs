//! The C memory of the lists: a `getifaddrs` list is one block from `malloc` holding the
//! entries, their socket addresses and the interface names, with the first entry at its
//! start, as glibc lays its own out. An `if_nameindex` array and its names come from `malloc`
//! one by one, as glibc's do.

use std::cell::UnsafeCell;
use std::ffi::CStr;
use std::net::{Ipv4Addr, Ipv6Addr};

use libc::{c_char, c_uint, ifaddrs, sockaddr, sockaddr_storage};
use netcon_control::NetconInfo;

use super::{Address, Entry, LOOPBACK, NETCON, entries};

/// The maximum number of entries in a list: the link entry and IPv4 address of both
/// interfaces, ::1, and netcon's IPv6 and link-local addresses.
const MAX_ENTRIES: usize = 7;

/// The interface statistics a link entry's `ifa_data` points to, zero like those of a fresh
/// interface. The first entry of every list netcon makes points here, which is how
/// `freeifaddrs` distinguishes netcon's lists from glibc's.
static LINK_STATS: LinkStats = LinkStats(UnsafeCell::new([0; 24]));

/// Linux's `struct rtnl_link_stats`: 24 counters of 32 bits. Writable, as the memory of
/// glibc's lists is, in case a program writes into it.
struct LinkStats(UnsafeCell<[u32; 24]>);

// SAFETY: this library never reads or writes the counters; it only hands out their address.
unsafe impl Sync for LinkStats {}

/// The block a `getifaddrs` list lives in.
#[repr(C)]
struct Block {
    entries: [ifaddrs; MAX_ENTRIES],
    /// Each entry's address, netmask and broadcast (or peer) address.
    addresses: [[sockaddr_storage; 3]; MAX_ENTRIES],
    names: [[c_char; libc::IFNAMSIZ]; 2],
}

/// Builds the list for `info` in a block from `calloc`; `None` when allocation fails.
pub fn build(info: &NetconInfo) -> Option<*mut ifaddrs> {
    let entries = entries(info);
    debug_assert!(entries.len() <= MAX_ENTRIES);
    // SAFETY: calloc returns null or zeroed memory for one Block, and all-zero bytes are a
    // valid Block (null pointers, zero numbers).
    let block = unsafe { libc::calloc(1, size_of::<Block>()) }.cast::<Block>();
    if block.is_null() {
        return None;
    }
    // SAFETY: block is a valid, exclusive Block until it is returned.
    let block = unsafe { &mut *block };

    for (slot, name) in block.names.iter_mut().zip([LOOPBACK.0, NETCON.0]) {
        for (to, &from) in slot.iter_mut().zip(name.to_bytes()) {
            *to = from as c_char;
        }
    }
    let names = [block.names[0].as_mut_ptr(), block.names[1].as_mut_ptr()];
    let count = entries.len().min(MAX_ENTRIES);
    for (index, entry) in entries.iter().take(count).enumerate() {
        let addresses = &mut block.addresses[index];
        let [address, netmask, other] = write_addresses(entry, addresses);
        let next = match index + 1 < count {
            true => &mut block.entries[index + 1] as *mut ifaddrs,
            false => std::ptr::null_mut(),
        };
        let ifaddr = &mut block.entries[index];
        ifaddr.ifa_next = next;
        ifaddr.ifa_name = names[usize::from(entry.interface == NETCON)];
        ifaddr.ifa_flags = entry.flags;
        ifaddr.ifa_addr = address;
        ifaddr.ifa_netmask = netmask;
        ifaddr.ifa_ifu = other;
        if let Address::Link { .. } = entry.address {
            ifaddr.ifa_data = LINK_STATS.0.get().cast();
        }
    }
    Some(block.entries.as_mut_ptr())
}

/// Returns whether `list` is one [`build`] made.
///
/// # Safety
/// `list` must be null or point to a valid `ifaddrs`.
pub unsafe fn is_netcon_list(list: *const ifaddrs) -> bool {
    // SAFETY: the caller guarantees a valid entry when it is not null.
    !list.is_null() && unsafe { (*list).ifa_data } == LINK_STATS.0.get().cast()
}

/// Writes `entry`'s socket addresses into `slots` and returns pointers to them: address,
/// netmask, and broadcast or peer address, each null where the entry has none.
fn write_addresses(entry: &Entry, slots: &mut [sockaddr_storage; 3]) -> [*mut sockaddr; 3] {
    let [address, netmask, other] = slots;
    let address_ptr = (address as *mut sockaddr_storage).cast::<sockaddr>();
    let netmask_ptr = (netmask as *mut sockaddr_storage).cast::<sockaddr>();
    let other_ptr = (other as *mut sockaddr_storage).cast::<sockaddr>();
    let index = entry.interface.1;
    match entry.address {
        Address::Link {
            hardware_type,
            address: link_address,
            broadcast,
        } => {
            // Like glibc, a link without a hardware address (TUN) gets no link address.
            let Some(link_address) = link_address else {
                return [std::ptr::null_mut(); 3];
            };
            write_link(address, index, hardware_type, link_address);
            let other_ptr = match broadcast {
                Some(broadcast) => {
                    write_link(other, index, hardware_type, broadcast);
                    other_ptr
                }
                None => std::ptr::null_mut(),
            };
            [address_ptr, std::ptr::null_mut(), other_ptr]
        }
        Address::V4 {
            address: ip,
            prefix,
            broadcast,
        } => {
            write_v4(address, ip);
            write_v4(netmask, prefix_mask_v4(prefix));
            write_v4(other, broadcast);
            [address_ptr, netmask_ptr, other_ptr]
        }
        Address::V6 {
            address: ip,
            prefix,
            scope_id,
        } => {
            write_v6(address, ip, scope_id);
            write_v6(netmask, prefix_mask_v6(prefix), 0);
            [address_ptr, netmask_ptr, std::ptr::null_mut()]
        }
    }
}

fn write_link(slot: &mut sockaddr_storage, index: c_uint, kind: u16, address: [u8; 6]) {
    // SAFETY: sockaddr_storage is larger than sockaddr_ll and suitably aligned for it.
    let link = unsafe { &mut *(slot as *mut sockaddr_storage).cast::<libc::sockaddr_ll>() };
    link.sll_family = libc::AF_PACKET as u16;
    link.sll_ifindex = index as i32;
    link.sll_hatype = kind;
    link.sll_halen = 6;
    link.sll_addr[..6].copy_from_slice(&address);
}

fn write_v4(slot: &mut sockaddr_storage, ip: Ipv4Addr) {
    // SAFETY: sockaddr_storage is larger than sockaddr_in and suitably aligned for it.
    let inet = unsafe { &mut *(slot as *mut sockaddr_storage).cast::<libc::sockaddr_in>() };
    inet.sin_family = libc::AF_INET as u16;
    inet.sin_addr.s_addr = u32::from(ip).to_be();
}

fn write_v6(slot: &mut sockaddr_storage, ip: Ipv6Addr, scope_id: u32) {
    // SAFETY: sockaddr_storage is larger than sockaddr_in6 and suitably aligned for it.
    let inet6 = unsafe { &mut *(slot as *mut sockaddr_storage).cast::<libc::sockaddr_in6>() };
    inet6.sin6_family = libc::AF_INET6 as u16;
    inet6.sin6_addr.s6_addr = ip.octets();
    inet6.sin6_scope_id = scope_id;
}

fn prefix_mask_v4(prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0))
}

fn prefix_mask_v6(prefix: u8) -> Ipv6Addr {
    Ipv6Addr::from(u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0))
}

/// Returns an `if_nameindex` array of `interfaces` ending with a zero entry, the array and
/// each name from `malloc`; `None` when allocation fails.
pub fn name_index<const N: usize>(
    interfaces: [(&CStr, c_uint); N],
) -> Option<*mut libc::if_nameindex> {
    // SAFETY: calloc returns null or zeroed memory for N + 1 entries; zero is the end entry.
    let array: *mut libc::if_nameindex =
        unsafe { libc::calloc(N + 1, size_of::<libc::if_nameindex>()) }.cast();
    if array.is_null() {
        return None;
    }
    for (slot, (name, index)) in interfaces.into_iter().enumerate() {
        // SAFETY: name is NUL-terminated; strdup returns null or a malloc'd copy.
        let copy = unsafe { libc::strdup(name.as_ptr()) };
        if copy.is_null() {
            // SAFETY: the array and the names copied so far came from malloc; glibc's
            // if_freenameindex would free them the same way.
            unsafe { free_name_index(array) };
            return None;
        }
        // SAFETY: slot < N, inside the array of N + 1 entries.
        unsafe {
            (*array.add(slot)).if_index = index;
            (*array.add(slot)).if_name = copy;
        }
    }
    Some(array)
}

/// Frees an array [`name_index`] made, as glibc's `if_freenameindex` does.
///
/// # Safety
/// `array` must come from [`name_index`] and not be used afterwards.
unsafe fn free_name_index(array: *mut libc::if_nameindex) {
    let mut entry = array;
    // SAFETY: the array ends with an entry whose name is null.
    unsafe {
        while !(*entry).if_name.is_null() {
            libc::free((*entry).if_name.cast());
            entry = entry.add(1);
        }
        libc::free(array.cast());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_masks() {
        assert_eq!(prefix_mask_v4(24), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(prefix_mask_v4(32), Ipv4Addr::BROADCAST);
        assert_eq!(prefix_mask_v4(0), Ipv4Addr::UNSPECIFIED);
        assert_eq!(
            prefix_mask_v6(64),
            "ffff:ffff:ffff:ffff::".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(prefix_mask_v6(128), Ipv6Addr::from(u128::MAX));
        assert_eq!(prefix_mask_v6(0), Ipv6Addr::UNSPECIFIED);
    }

    /// The routes of a stack with 10.77.0.2/24 alone.
    fn ipv4_routes() -> netcon_control::route::Routes {
        netcon_control::route::Routes {
            ipv4: Ipv4Addr::new(10, 77, 0, 2),
            prefix4: 24,
            gateway4: false,
            ipv6: None,
            link_local: None,
            gateway6: false,
            mtu: 1500,
        }
    }

    #[test]
    fn list_links_entries_and_is_recognised() {
        let info = NetconInfo {
            routes: ipv4_routes(),
            mac: Some([2, 0x6e, 0x63, 1, 2, 3]),
            dns: None,
        };
        let list = build(&info).expect("allocation");
        let mut names = Vec::new();
        let mut entry = list;
        while !entry.is_null() {
            // SAFETY: entries of the list build made.
            unsafe {
                names.push(
                    CStr::from_ptr((*entry).ifa_name)
                        .to_str()
                        .unwrap()
                        .to_owned(),
                );
                entry = (*entry).ifa_next;
            }
        }
        assert_eq!(names, ["lo", "netcon0", "lo", "netcon0", "lo"]);
        // SAFETY: a list build made.
        assert!(unsafe { is_netcon_list(list) });
        // SAFETY: as above; freed once.
        unsafe { libc::free(list.cast()) };
        // SAFETY: null is allowed.
        assert!(!unsafe { is_netcon_list(std::ptr::null()) });
    }

    #[test]
    fn ip_link_entry_has_no_address() {
        let info = NetconInfo {
            routes: ipv4_routes(),
            mac: None,
            dns: None,
        };
        let list = build(&info).expect("allocation");
        // SAFETY: the list build made has five entries; it is freed once.
        unsafe {
            let link = &*(*list).ifa_next;
            assert!(link.ifa_addr.is_null());
            assert!(link.ifa_ifu.is_null());
            assert!(!link.ifa_data.is_null());
            let ipv4 = &*(*link.ifa_next).ifa_next;
            let broadcast = &*ipv4.ifa_ifu.cast::<libc::sockaddr_in>();
            assert_eq!(u32::from_be(broadcast.sin_addr.s_addr), 0x0a4d_0002);
            libc::free(list.cast());
        }
    }
}
