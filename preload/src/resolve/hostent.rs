//! `gethostbyname`, `gethostbyname2`, `gethostbyaddr` and their reentrant `_r` forms, answered
//! from [`lookup`] and packed into a `struct hostent` the way glibc fills one.
//!
//! The non-reentrant forms return storage owned by the calling thread, valid until that
//! thread's next call of one of them (glibc shares one buffer across threads; per-thread
//! storage is at least as safe for callers).

use std::cell::RefCell;
use std::ffi::CStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ptr;

use libc::{c_char, c_int, c_void, hostent, size_t, socklen_t};

use super::abi::{HOST_NOT_FOUND, NETDB_INTERNAL, set_h_errno};
use super::lookup::{self, Families, HostAnswer, LookupError};
use crate::real;

/// A failure to produce a `hostent`.
enum HostError {
    /// The lookup failed; the value is the `h_errno` to report.
    Lookup(c_int),
    /// A bad argument or a full buffer: `h_errno` is NETDB_INTERNAL and this is the errno.
    Internal(c_int),
}

impl From<LookupError> for HostError {
    fn from(error: LookupError) -> HostError {
        HostError::Lookup(error.h_errno())
    }
}

/// Looks up `name`'s addresses of family `af`.
fn resolve_name(name: &CStr, af: c_int) -> Result<HostAnswer, HostError> {
    let families = match af {
        libc::AF_INET => Families::V4,
        libc::AF_INET6 => Families::V6,
        _ => return Err(HostError::Internal(libc::EAFNOSUPPORT)),
    };
    let Ok(text) = name.to_str() else {
        return Err(HostError::Lookup(HOST_NOT_FOUND));
    };
    // A numeric address of the family is its own answer, without a lookup; one of the
    // other family matches nothing.
    if let Some(addr) = parse_numeric(name, af) {
        return Ok(HostAnswer {
            canonical: text.to_owned(),
            aliases: Vec::new(),
            addrs: vec![addr],
        });
    }
    if parse_numeric(name, libc::AF_UNSPEC).is_some() {
        return Err(HostError::Lookup(HOST_NOT_FOUND));
    }
    let mut answer = lookup::lookup_name(text, families)?;
    answer.addrs.retain(|addr| match af {
        libc::AF_INET => addr.is_ipv4(),
        _ => addr.is_ipv6(),
    });
    Ok(answer)
}

/// Parses `name` as glibc parses a numeric host of family `af` (AF_UNSPEC for either).
fn parse_numeric(name: &CStr, af: c_int) -> Option<IpAddr> {
    // SAFETY: an all-zero addrinfo is valid.
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_flags = libc::AI_NUMERICHOST;
    hints.ai_family = af;
    let mut list = ptr::null_mut();
    // SAFETY: valid arguments; the list is freed below.
    if unsafe { real::getaddrinfo(name.as_ptr(), ptr::null(), &hints, &mut list) } != 0 {
        return None;
    }
    // SAFETY: list is a non-empty list from getaddrinfo, whose ai_addr matches ai_family.
    let addr = unsafe {
        let entry = &*list;
        let bytes =
            std::slice::from_raw_parts(entry.ai_addr.cast::<u8>(), entry.ai_addrlen as usize);
        netcon_control::addr::decode_sockaddr(bytes)
            .ok()
            .map(|a| a.ip())
    };
    // SAFETY: list came from getaddrinfo.
    unsafe { libc::freeaddrinfo(list) };
    addr
}

/// Looks up the name of the address in `bytes` (`len` bytes of family `af`).
fn resolve_addr(bytes: &[u8], af: c_int) -> Result<HostAnswer, HostError> {
    let addr: IpAddr = match (af, bytes.len()) {
        (libc::AF_INET, 4) => Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).into(),
        (libc::AF_INET6, 16) => {
            let octets: [u8; 16] = bytes.try_into().expect("length matched");
            Ipv6Addr::from(octets).into()
        }
        (libc::AF_INET | libc::AF_INET6, _) => return Err(HostError::Internal(libc::EINVAL)),
        _ => return Err(HostError::Internal(libc::EAFNOSUPPORT)),
    };
    if let IpAddr::V6(v6) = addr
        && v6.is_unspecified()
    {
        return Err(HostError::Lookup(HOST_NOT_FOUND));
    }
    // An IPv4-mapped address is looked up as the IPv4 address, as glibc does.
    let lookup_addr = match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    };
    let mut answer = lookup::lookup_addr(lookup_addr)?;
    answer.addrs = vec![addr];
    Ok(answer)
}

/// Rounds `at` up to the alignment of a pointer.
fn align(at: usize) -> usize {
    let to = align_of::<*mut c_char>();
    at.div_ceil(to) * to
}

/// Returns the bytes [`pack`] writes for `answer`, from a pointer-aligned start.
fn packed_len(answer: &HostAnswer, af: c_int) -> usize {
    let addr_len = if af == libc::AF_INET { 4 } else { 16 };
    let pointers = (answer.aliases.len() + 1 + answer.addrs.len() + 1) * size_of::<*mut c_char>();
    let strings: usize = std::iter::once(&answer.canonical)
        .chain(&answer.aliases)
        .map(|s| s.len() + 1)
        .sum();
    pointers + answer.addrs.len() * addr_len + strings
}

/// Fills `entry` from `answer`, with its pointer arrays, addresses and strings in `buf`.
/// Returns false when `buf` is too small.
///
/// # Safety
/// `buf` must be valid for writes of `len` bytes and outlive the caller's use of `entry`.
unsafe fn pack(
    answer: &HostAnswer,
    af: c_int,
    entry: &mut hostent,
    buf: *mut u8,
    len: usize,
) -> bool {
    // The pointer arrays need a pointer-aligned start inside the caller's buffer.
    let skew = align(buf as usize) - buf as usize;
    if skew + packed_len(answer, af) > len {
        return false;
    }
    let mut at = skew;
    let addr_len = if af == libc::AF_INET { 4 } else { 16 };
    let put = |bytes: &[u8], at: &mut usize| {
        // SAFETY: the size check above covers every byte written here.
        unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), buf.add(*at), bytes.len()) };
        // SAFETY: as above.
        let start = unsafe { buf.add(*at) };
        *at += bytes.len();
        start
    };

    // Pointer arrays first (aligned), then the addresses, then the strings.
    let aliases_at = at;
    at += (answer.aliases.len() + 1) * size_of::<*mut c_char>();
    let addrs_at = at;
    at += (answer.addrs.len() + 1) * size_of::<*mut c_char>();
    let mut addr_pointers = Vec::with_capacity(answer.addrs.len() + 1);
    for addr in &answer.addrs {
        let start = match addr {
            IpAddr::V4(v4) => put(&v4.octets(), &mut at),
            IpAddr::V6(v6) => put(&v6.octets(), &mut at),
        };
        addr_pointers.push(start as *mut c_char);
    }
    addr_pointers.push(ptr::null_mut());
    let string = |text: &str, at: &mut usize| {
        let start = put(text.as_bytes(), at);
        put(&[0], at);
        start as *mut c_char
    };
    let name = string(&answer.canonical, &mut at);
    let mut alias_pointers: Vec<*mut c_char> = answer
        .aliases
        .iter()
        .map(|alias| string(alias, &mut at))
        .collect();
    alias_pointers.push(ptr::null_mut());
    // SAFETY: both arrays lie at pointer-aligned offsets reserved above.
    unsafe {
        let aliases = buf.add(aliases_at).cast::<*mut c_char>();
        ptr::copy_nonoverlapping(alias_pointers.as_ptr(), aliases, alias_pointers.len());
        let addrs = buf.add(addrs_at).cast::<*mut c_char>();
        ptr::copy_nonoverlapping(addr_pointers.as_ptr(), addrs, addr_pointers.len());
        entry.h_aliases = aliases;
        entry.h_addr_list = addrs;
    }
    entry.h_name = name;
    entry.h_addrtype = af;
    entry.h_length = addr_len;
    true
}

/// Storage behind the non-reentrant functions' results.
struct Storage {
    entry: hostent,
    buf: Vec<u8>,
}

thread_local! {
    static STORAGE: RefCell<Storage> = const { RefCell::new(Storage {
        entry: hostent {
            h_name: ptr::null_mut(),
            h_aliases: ptr::null_mut(),
            h_addrtype: 0,
            h_length: 0,
            h_addr_list: ptr::null_mut(),
        },
        buf: Vec::new(),
    }) };
}

/// Returns `outcome` packed into this thread's storage, or null with `h_errno` set.
fn into_static(outcome: Result<HostAnswer, HostError>, af: c_int) -> *mut hostent {
    let answer = match outcome {
        Ok(answer) => answer,
        Err(error) => {
            report(error, None);
            return ptr::null_mut();
        }
    };
    let stored = STORAGE.try_with(|storage| {
        let mut storage = storage.borrow_mut();
        let storage = &mut *storage;
        // Room for the alignment of the start as well.
        storage.buf = vec![0u8; packed_len(&answer, af) + align_of::<*mut c_char>()];
        let len = storage.buf.len();
        // SAFETY: buf is len bytes and lives in this thread's storage until the next call.
        let packed = unsafe {
            pack(
                &answer,
                af,
                &mut storage.entry,
                storage.buf.as_mut_ptr(),
                len,
            )
        };
        packed.then_some(&mut storage.entry as *mut hostent)
    });
    match stored {
        Ok(Some(entry)) => {
            set_h_errno(0);
            entry
        }
        _ => {
            report(HostError::Internal(libc::ENOMEM), None);
            ptr::null_mut()
        }
    }
}

/// Sets `h_errno` (and `*h_errnop` when given) for `error`, and errno for internal ones.
/// Returns the errno (0 for a failed lookup).
fn report(error: HostError, h_errnop: Option<*mut c_int>) -> c_int {
    let (h_errno, errno) = match error {
        HostError::Lookup(h_errno) => (h_errno, None),
        HostError::Internal(errno) => (NETDB_INTERNAL, Some(errno)),
    };
    // glibc sets h_errno in the _r functions too, and callers such as Python read it.
    set_h_errno(h_errno);
    if let Some(slot) = h_errnop.filter(|slot| !slot.is_null()) {
        // SAFETY: the caller of the _r function passed a valid h_errnop.
        unsafe { *slot = h_errno };
    }
    if let Some(errno) = errno {
        real::set_errno(errno);
    }
    errno.unwrap_or(0)
}

/// Packs `outcome` into the caller's `ret` and `buf`, returning what glibc's `_r` functions
/// return: 0 (with `*result` null when nothing was found), EAGAIN for TRY_AGAIN, or the errno
/// of an internal error (ERANGE for a small buffer).
///
/// # Safety
/// The pointers are the caller's, valid as for glibc's `gethostbyname_r`.
unsafe fn into_caller(
    outcome: Result<HostAnswer, HostError>,
    af: c_int,
    ret: *mut hostent,
    buf: *mut c_char,
    buflen: size_t,
    result: *mut *mut hostent,
    h_errnop: *mut c_int,
) -> c_int {
    // SAFETY: result is valid for writes, as the caller guarantees.
    unsafe { *result = ptr::null_mut() };
    let answer = match outcome {
        Ok(answer) => answer,
        Err(HostError::Lookup(h_errno)) if h_errno == super::abi::TRY_AGAIN => {
            report(HostError::Lookup(h_errno), Some(h_errnop));
            return libc::EAGAIN;
        }
        Err(error) => return report(error, Some(h_errnop)),
    };
    if ret.is_null() || buf.is_null() {
        return report(HostError::Internal(libc::EINVAL), Some(h_errnop));
    }
    // SAFETY: ret and buf (buflen bytes) are the caller's, valid for writes.
    let packed = unsafe { pack(&answer, af, &mut *ret, buf.cast(), buflen) };
    if !packed {
        return report(HostError::Internal(libc::ERANGE), Some(h_errnop));
    }
    // SAFETY: h_errnop and result are valid for writes.
    unsafe {
        if !h_errnop.is_null() {
            *h_errnop = 0;
        }
        *result = ret;
    }
    0
}

/// Reads the address argument of `gethostbyaddr`.
///
/// # Safety
/// `addr` must be null or valid for reads of `len` bytes.
unsafe fn address_bytes<'a>(addr: *const c_void, len: socklen_t) -> Result<&'a [u8], HostError> {
    if addr.is_null() || len > 16 {
        return Err(HostError::Internal(libc::EINVAL));
    }
    // SAFETY: as the caller guarantees.
    Ok(unsafe { std::slice::from_raw_parts(addr.cast::<u8>(), len as usize) })
}

/// Replaces `gethostbyname(3)`.
///
/// # Safety
/// `name` must be NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gethostbyname(name: *const c_char) -> *mut hostent {
    // SAFETY: the caller's contract.
    unsafe { gethostbyname2(name, libc::AF_INET) }
}

/// Replaces `gethostbyname2(3)`.
///
/// # Safety
/// `name` must be NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gethostbyname2(name: *const c_char, af: c_int) -> *mut hostent {
    if name.is_null() {
        return into_static(Err(HostError::Lookup(HOST_NOT_FOUND)), af);
    }
    // SAFETY: name is NUL-terminated, as the caller guarantees.
    let name = unsafe { CStr::from_ptr(name) };
    into_static(resolve_name(name, af), af)
}

/// Replaces `gethostbyname_r(3)`.
///
/// # Safety
/// As for glibc's `gethostbyname_r`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gethostbyname_r(
    name: *const c_char,
    ret: *mut hostent,
    buf: *mut c_char,
    buflen: size_t,
    result: *mut *mut hostent,
    h_errnop: *mut c_int,
) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { gethostbyname2_r(name, libc::AF_INET, ret, buf, buflen, result, h_errnop) }
}

/// Replaces `gethostbyname2_r(3)`.
///
/// # Safety
/// As for glibc's `gethostbyname2_r`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gethostbyname2_r(
    name: *const c_char,
    af: c_int,
    ret: *mut hostent,
    buf: *mut c_char,
    buflen: size_t,
    result: *mut *mut hostent,
    h_errnop: *mut c_int,
) -> c_int {
    let outcome = if name.is_null() {
        Err(HostError::Lookup(HOST_NOT_FOUND))
    } else {
        // SAFETY: name is NUL-terminated, as the caller guarantees.
        resolve_name(unsafe { CStr::from_ptr(name) }, af)
    };
    // SAFETY: the caller's contract.
    unsafe { into_caller(outcome, af, ret, buf, buflen, result, h_errnop) }
}

/// Replaces `gethostbyaddr(3)`.
///
/// # Safety
/// `addr` must be valid for reads of `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gethostbyaddr(
    addr: *const c_void,
    len: socklen_t,
    af: c_int,
) -> *mut hostent {
    // SAFETY: the caller's contract.
    let outcome = unsafe { address_bytes(addr, len) }.and_then(|bytes| resolve_addr(bytes, af));
    into_static(outcome, af)
}

/// Replaces `gethostbyaddr_r(3)`.
///
/// # Safety
/// As for glibc's `gethostbyaddr_r`.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)] // the C signature
pub unsafe extern "C" fn gethostbyaddr_r(
    addr: *const c_void,
    len: socklen_t,
    af: c_int,
    ret: *mut hostent,
    buf: *mut c_char,
    buflen: size_t,
    result: *mut *mut hostent,
    h_errnop: *mut c_int,
) -> c_int {
    // SAFETY: the caller's contract.
    let outcome = unsafe { address_bytes(addr, len) }.and_then(|bytes| resolve_addr(bytes, af));
    // SAFETY: the caller's contract.
    unsafe { into_caller(outcome, af, ret, buf, buflen, result, h_errnop) }
}
