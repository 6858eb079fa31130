//! `getnameinfo`: the host part is looked up here ([`lookup::lookup_addr`]). The numeric
//! form and the service part are left to glibc, because it needs no network for them.

use std::ffi::CString;
use std::net::IpAddr;
use std::ptr;

use libc::{c_char, c_int, sockaddr, socklen_t};
use netcon_control::addr::decode_sockaddr;

use super::lookup::{self, LookupError};
use crate::real;

/// Replaces `getnameinfo(3)`.
///
/// # Safety
/// As for glibc's `getnameinfo`: `addr` valid for `len` bytes, `host` and `service` null or
/// valid for their lengths.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getnameinfo(
    addr: *const sockaddr,
    len: socklen_t,
    host: *mut c_char,
    host_len: socklen_t,
    service: *mut c_char,
    service_len: socklen_t,
    flags: c_int,
) -> c_int {
    let wants_name = !host.is_null() && host_len > 0 && flags & libc::NI_NUMERICHOST == 0;
    let ip = if addr.is_null() || len as usize > size_of::<libc::sockaddr_storage>() {
        None
    } else {
        // SAFETY: addr is valid for len bytes, as the caller guarantees.
        let bytes = unsafe { std::slice::from_raw_parts(addr.cast::<u8>(), len as usize) };
        decode_sockaddr(bytes).ok().map(|a| a.ip())
    };
    let (Some(ip), true) = (ip, wants_name) else {
        // Numeric, service only, or an address glibc rejects itself: no lookup happens.
        // SAFETY: the caller's arguments, passed on unchanged.
        return unsafe {
            real::getnameinfo(addr, len, host, host_len, service, service_len, flags)
        };
    };

    let name = match lookup_name(ip, flags) {
        Ok(Some(name)) => name,
        Ok(None) => {
            // SAFETY: as above, asking for the numeric form.
            return unsafe {
                real::getnameinfo(
                    addr,
                    len,
                    host,
                    host_len,
                    service,
                    service_len,
                    flags | libc::NI_NUMERICHOST,
                )
            };
        }
        Err(error) => return error,
    };
    if !service.is_null() && service_len > 0 {
        // SAFETY: the caller's address and service buffer; no host part is asked for.
        let ret = unsafe {
            real::getnameinfo(addr, len, ptr::null_mut(), 0, service, service_len, flags)
        };
        if ret != 0 {
            return ret;
        }
    }
    let Ok(name) = CString::new(name) else {
        return libc::EAI_NONAME;
    };
    let bytes = name.as_bytes_with_nul();
    if bytes.len() > host_len as usize {
        return libc::EAI_OVERFLOW;
    }
    // SAFETY: host has host_len writable bytes, at least bytes.len().
    unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), host.cast::<u8>(), bytes.len()) };
    0
}

/// Returns the name for `ip`, `None` when the numeric form is to be used, or the error glibc
/// returns (gni_host_inet_name in glibc 2.36): EAI_AGAIN when the lookup could not finish,
/// EAI_NONAME when a name is required but there is none.
fn lookup_name(ip: IpAddr, flags: c_int) -> Result<Option<String>, c_int> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match lookup::lookup_addr(ip) {
        Ok(answer) if flags & libc::NI_NOFQDN != 0 => {
            Ok(Some(strip_local_domain(answer.canonical)))
        }
        Ok(answer) => Ok(Some(answer.canonical)),
        Err(LookupError::TryAgain) => Err(libc::EAI_AGAIN),
        Err(_) if flags & libc::NI_NAMEREQD != 0 => Err(libc::EAI_NONAME),
        Err(_) => Ok(None),
    }
}

/// Cuts the local domain (the part of the host name after its first dot) off `name`, which
/// NI_NOFQDN requests.
///
/// NOTE: glibc also finds the local domain through a lookup of the host name when that name
/// has no dot; here such a host has no local domain, so the name stays whole.
fn strip_local_domain(name: String) -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is valid for writes of its length.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return name;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let hostname = String::from_utf8_lossy(&buf[..end]);
    let Some((_, domain)) = hostname.split_once('.') else {
        return name;
    };
    match name.len().checked_sub(domain.len() + 1) {
        Some(cut)
            if name.is_char_boundary(cut)
                && name[cut..].starts_with('.')
                && name[cut + 1..].eq_ignore_ascii_case(domain) =>
        {
            name[..cut].to_owned()
        }
        _ => name,
    }
}
