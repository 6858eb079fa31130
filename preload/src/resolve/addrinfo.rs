//! `getaddrinfo`: numeric hosts and a null node go to glibc unchanged (they need no lookup);
//! names are looked up here ([`lookup`]), and glibc's own `getaddrinfo` then builds the
//! `struct addrinfo` list from each numeric address found, so `freeaddrinfo` frees it as
//! usual. AI_ADDRCONFIG is decided from netcon's addresses, not from the interfaces glibc
//! would see (a namespace with only loopback would make it return nothing).

use std::ffi::{CStr, CString};
use std::net::{IpAddr, Ipv6Addr};
use std::ptr;

use libc::{addrinfo, c_char, c_int};

use super::abi::{AI_CANONIDN, AI_IDN};
use super::lookup::{self, Families};
use crate::info;
use crate::real;

/// Flags glibc uses when the caller passes no hints (`AI_DEFAULT` in glibc 2.36).
const DEFAULT_FLAGS: c_int = libc::AI_V4MAPPED | libc::AI_ADDRCONFIG;

/// Replaces `getaddrinfo(3)`.
///
/// # Safety
/// As for glibc's `getaddrinfo`: `node` and `service` null or NUL-terminated, `hints` null or
/// valid, `result` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getaddrinfo(
    node: *const c_char,
    service: *const c_char,
    hints: *const addrinfo,
    result: *mut *mut addrinfo,
) -> c_int {
    // SAFETY: hints is null or valid, as the caller guarantees.
    let mut local = match unsafe { hints.as_ref() } {
        Some(hints) => *hints,
        None => {
            // SAFETY: an all-zero addrinfo is valid (null pointers, zero integers).
            let mut hints: addrinfo = unsafe { std::mem::zeroed() };
            hints.ai_flags = DEFAULT_FLAGS;
            hints
        }
    };
    if local.ai_flags & libc::AI_ADDRCONFIG != 0 {
        match narrow_for_addrconfig(local.ai_family) {
            Some(family) => local.ai_family = family,
            None => return libc::EAI_NONAME,
        }
        local.ai_flags &= !libc::AI_ADDRCONFIG;
    }

    // SAFETY: node is null or NUL-terminated, as the caller guarantees.
    let name = (!node.is_null()).then(|| unsafe { CStr::from_ptr(node) });
    let Some(name) = name.filter(|_| local.ai_flags & libc::AI_NUMERICHOST == 0) else {
        // SAFETY: the caller's pointers, with hints that now ask for no interface check.
        return unsafe { real::getaddrinfo(node, service, &local, result) };
    };
    if is_numeric(name) {
        // AI_NUMERICHOST keeps glibc from looking up a literal of an excluded family (such as
        // `::1` for AF_INET) as a name over the host's network.
        local.ai_flags |= libc::AI_NUMERICHOST;
        // SAFETY: as above.
        return unsafe { real::getaddrinfo(node, service, &local, result) };
    }
    // Check the service and the hints first, as glibc does before it looks the name up.
    // SAFETY: service is the caller's; the probe list is freed at once.
    if let Err(error) = unsafe { probe_service(service, &local) } {
        return error;
    }
    let Ok(text) = name.to_str() else {
        return libc::EAI_NONAME;
    };
    let families = match local.ai_family {
        libc::AF_INET => Families::V4,
        libc::AF_INET6 => Families::V6,
        libc::AF_UNSPEC => Families::Both,
        _ => return libc::EAI_FAMILY,
    };
    let answer = match lookup_with_mapping(text, families, local.ai_flags) {
        Ok(answer) => answer,
        Err(error) => return error,
    };
    // SAFETY: service and result are the caller's.
    unsafe { build_list(&answer, service, &local, result) }
}

/// Decides AI_ADDRCONFIG as glibc does (getaddrinfo.c in 2.36), from netcon's addresses:
/// IPv4 is always configured, IPv6 only when netcon has an IPv6 address. Returns the family
/// to look up, or `None` when no answer could be used.
fn narrow_for_addrconfig(family: c_int) -> Option<c_int> {
    let has_ipv6 = info::netcon_info().is_some_and(|info| info.routes.ipv6.is_some());
    match family {
        libc::AF_UNSPEC if !has_ipv6 => Some(libc::AF_INET),
        libc::AF_INET6 if !has_ipv6 => None,
        family => Some(family),
    }
}

/// Returns true when glibc parses `name` as a numeric address (any family, including the
/// short IPv4 forms inet_aton accepts, such as `127.1`).
fn is_numeric(name: &CStr) -> bool {
    // SAFETY: an all-zero addrinfo is valid.
    let mut hints: addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_flags = libc::AI_NUMERICHOST;
    let mut list = ptr::null_mut();
    // SAFETY: valid arguments; the list is freed below.
    let ret = unsafe { real::getaddrinfo(name.as_ptr(), ptr::null(), &hints, &mut list) };
    if ret == 0 {
        // SAFETY: list came from getaddrinfo.
        unsafe { libc::freeaddrinfo(list) };
    }
    ret == 0
}

/// Asks glibc to resolve `service` with `hints` for a loopback address, which reports a bad
/// service, socket type or flag without a name lookup.
///
/// # Safety
/// `service` must be null or NUL-terminated.
unsafe fn probe_service(service: *const c_char, hints: &addrinfo) -> Result<(), c_int> {
    let mut probe = *hints;
    probe.ai_flags = (hints.ai_flags | libc::AI_NUMERICHOST)
        & !(libc::AI_CANONNAME | AI_CANONIDN | AI_IDN | libc::AI_V4MAPPED | libc::AI_ALL);
    let host: &CStr = if hints.ai_family == libc::AF_INET6 {
        c"::1"
    } else {
        c"127.0.0.1"
    };
    let mut list = ptr::null_mut();
    // SAFETY: valid arguments; the list is freed below.
    let ret = unsafe { real::getaddrinfo(host.as_ptr(), service, &probe, &mut list) };
    if ret != 0 {
        return Err(ret);
    }
    // SAFETY: list came from getaddrinfo.
    unsafe { libc::freeaddrinfo(list) };
    Ok(())
}

/// Looks `name` up; for AF_INET6 with AI_V4MAPPED, IPv4 addresses are returned as
/// IPv4-mapped IPv6 addresses when there is no IPv6 one, or beside them with AI_ALL.
fn lookup_with_mapping(
    name: &str,
    families: Families,
    flags: c_int,
) -> Result<lookup::HostAnswer, c_int> {
    let mapped = families == Families::V6 && flags & libc::AI_V4MAPPED != 0;
    if !mapped {
        return lookup::lookup_name(name, families).map_err(|e| e.eai());
    }
    let wants_all = flags & libc::AI_ALL != 0;
    let v6 = lookup::lookup_name(name, Families::V6);
    if let Ok(answer) = &v6
        && !wants_all
    {
        return Ok(answer.clone());
    }
    let v4 = lookup::lookup_name(name, Families::V4);
    match (v6, v4) {
        (Ok(mut answer), Ok(v4)) => {
            answer.addrs.extend(v4.addrs.iter().map(map_v4));
            Ok(answer)
        }
        (Ok(answer), Err(_)) => Ok(answer),
        (Err(_), Ok(mut v4)) => {
            v4.addrs = v4.addrs.iter().map(map_v4).collect();
            Ok(v4)
        }
        (Err(error), Err(_)) => Err(error.eai()),
    }
}

fn map_v4(addr: &IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => IpAddr::V6(v4.to_ipv6_mapped()),
        v6 => *v6,
    }
}

/// Orders destination addresses as glibc's RFC 3484 sort would on netcon, by two of its
/// rules: usable families first (rule 1: IPv6 only when netcon has an IPv6 address), then
/// the default precedence table of gai.conf (rule 6); the DNS order is kept otherwise.
///
/// NOTE: the scope, label and longest-prefix rules (2, 5, 8, 9) are not applied, so among
/// addresses of equal precedence the order is the server's, where glibc may reorder.
fn sort_destinations(addrs: &mut [IpAddr]) {
    let has_ipv6 = info::netcon_info().is_some_and(|info| info.routes.ipv6.is_some());
    let usable = |addr: &IpAddr| match addr {
        IpAddr::V4(_) => true,
        IpAddr::V6(v6) => has_ipv6 || v6.to_ipv4_mapped().is_some(),
    };
    addrs.sort_by_key(|addr| (!usable(addr), std::cmp::Reverse(precedence(addr))));
}

/// The precedence of `addr` in glibc's default policy table (RFC 3484 section 2.1).
fn precedence(addr: &IpAddr) -> u8 {
    let v6 = match addr {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => *v6,
    };
    let segments = v6.segments();
    if v6 == Ipv6Addr::LOCALHOST {
        50
    } else if segments[0] == 0x2002 {
        30
    } else if v6.to_ipv4_mapped().is_some() {
        10
    } else if segments[..6] == [0; 6] {
        20
    } else {
        40
    }
}

/// Builds the result list: glibc's `getaddrinfo` for each address as a numeric host, with the
/// caller's service and hints, chained in order. With AI_CANONNAME the first entry carries
/// the canonical name.
///
/// # Safety
/// `service` must be null or NUL-terminated and `result` valid for a write.
unsafe fn build_list(
    answer: &lookup::HostAnswer,
    service: *const c_char,
    hints: &addrinfo,
    result: *mut *mut addrinfo,
) -> c_int {
    let mut addrs = answer.addrs.clone();
    sort_destinations(&mut addrs);
    let mut numeric = *hints;
    numeric.ai_flags = (hints.ai_flags | libc::AI_NUMERICHOST)
        & !(libc::AI_CANONNAME | AI_CANONIDN | AI_IDN | libc::AI_V4MAPPED | libc::AI_ALL);

    let mut head: *mut addrinfo = ptr::null_mut();
    let mut tail: *mut *mut addrinfo = &mut head;
    for addr in &addrs {
        numeric.ai_family = if addr.is_ipv4() {
            libc::AF_INET
        } else {
            libc::AF_INET6
        };
        let text = CString::new(addr.to_string()).expect("addresses have no NUL");
        let mut list = ptr::null_mut();
        // SAFETY: valid arguments; the list joins the result, freed by the caller.
        let ret = unsafe { real::getaddrinfo(text.as_ptr(), service, &numeric, &mut list) };
        if ret != 0 {
            // SAFETY: head is null or a list made by getaddrinfo.
            unsafe { free_list(head) };
            return ret;
        }
        // SAFETY: tail points at the null next-pointer of the chain's last entry (or at
        // head); list is a non-empty list from getaddrinfo, walked to its end.
        unsafe {
            *tail = list;
            while !(*tail).is_null() {
                tail = &mut (**tail).ai_next;
            }
        }
    }
    if head.is_null() {
        return libc::EAI_NONAME;
    }
    if hints.ai_flags & libc::AI_CANONNAME != 0 {
        let canonical = CString::new(answer.canonical.as_str()).unwrap_or_default();
        // SAFETY: head is a valid entry without a canonical name (AI_CANONNAME was not passed
        // for the numeric lookups); strdup's malloc copy is what freeaddrinfo frees.
        unsafe { (*head).ai_canonname = libc::strdup(canonical.as_ptr()) };
    }
    // SAFETY: the caller guarantees result is valid for a write.
    unsafe { *result = head };
    0
}

/// # Safety
/// `list` must be null or a list made by getaddrinfo.
unsafe fn free_list(list: *mut addrinfo) {
    if !list.is_null() {
        // SAFETY: as the caller guarantees.
        unsafe { libc::freeaddrinfo(list) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_matches_default_table() {
        let p = |text: &str| precedence(&text.parse().unwrap());
        assert_eq!(p("::1"), 50);
        assert_eq!(p("2001:db8::1"), 40);
        assert_eq!(p("2002:c000:201::1"), 30);
        assert_eq!(p("10.77.0.1"), 10);
        assert_eq!(p("127.0.0.1"), 10);
    }
}
