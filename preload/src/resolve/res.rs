//! The raw DNS interface of libresolv: `res_query`, `res_search`, `res_querydomain` and
//! `res_send`, their `res_n*` forms that take a `res_state`, and the `__res_*` names that
//! programs built against glibc before 2.34 link to. Queries go to netcon-dp's `--dns`
//! server over netcon; the `res_state`'s own server list is not used.
//!
//! NOTE: `statp->res_h_errno` is not updated by the `res_n*` forms; callers that read it
//! instead of `h_errno` see a stale value.

use std::ffi::CStr;
use std::net::SocketAddr;
use std::time::Duration;

use libc::{c_char, c_int, c_uchar, c_void};

use super::abi::{HOST_NOT_FOUND, NETDB_INTERNAL, NO_DATA, NO_RECOVERY, TRY_AGAIN, set_h_errno};
use super::config::ResolverConfig;
use super::info;
use super::lookup::{random_id, search_candidates};
use super::message::{self, message_id};
use super::transport::{self, ExchangeError};
use crate::real;

/// Size of a DNS message header.
const HEADER_LEN: usize = 12;

/// The `h_errno` a failed query reports.
type HErrno = c_int;

fn server() -> Result<SocketAddr, HErrno> {
    let Some(info) = info::netcon_info() else {
        return Err(TRY_AGAIN);
    };
    info.dns.ok_or_else(|| {
        info::report_no_dns_server();
        TRY_AGAIN
    })
}

/// Sends `message` as it is and returns the response, trying `attempts` times.
fn send_message(message: &[u8], config: &ResolverConfig) -> Result<Vec<u8>, c_int> {
    let server = server().map_err(|_| libc::ECONNREFUSED)?;
    let timeout = Duration::from_secs(u64::from(config.timeout_secs));
    let mut errno = libc::ETIMEDOUT;
    for _ in 0..config.attempts {
        match transport::exchange(server, message, timeout) {
            Ok(response) if message_id(&response) == message_id(message) => return Ok(response),
            Ok(_) | Err(ExchangeError::TimedOut) => errno = libc::ETIMEDOUT,
            Err(ExchangeError::Failed(libc::ECONNREFUSED)) => return Err(libc::ECONNREFUSED),
            Err(ExchangeError::Failed(e)) => errno = e,
        }
    }
    Err(errno)
}

/// Copies `response` into the caller's buffer, cut to `capacity` with the TC bit set when it
/// does not fit, and returns the full length, as glibc's `res_send` does.
///
/// # Safety
/// `answer` must be valid for writes of `capacity` bytes.
unsafe fn copy_out(response: &[u8], answer: *mut c_uchar, capacity: c_int) -> c_int {
    let capacity = capacity.max(0) as usize;
    let copied = response.len().min(capacity);
    // SAFETY: the caller guarantees capacity writable bytes at answer.
    unsafe { std::ptr::copy_nonoverlapping(response.as_ptr(), answer, copied) };
    if copied < response.len() && copied > 2 {
        // SAFETY: byte 2 is within the copied part.
        unsafe { *answer.add(2) |= 0x02 };
    }
    response.len() as c_int
}

/// Classifies a response as `res_query` does: the `h_errno` for NXDOMAIN, SERVFAIL, an empty
/// answer or another error code, or `None` when it has answers.
fn response_error(response: &[u8]) -> Option<HErrno> {
    if response.len() < HEADER_LEN {
        return Some(NO_RECOVERY);
    }
    let rcode = response[3] & 0x0f;
    let answers = u16::from_be_bytes([response[6], response[7]]);
    match rcode {
        0 if answers > 0 => None,
        0 => Some(NO_DATA),
        2 => Some(TRY_AGAIN),
        3 => Some(HOST_NOT_FOUND),
        _ => Some(NO_RECOVERY),
    }
}

/// A failed query: the `h_errno` to report, and whether the server could not be reached at
/// all (a timeout or refusal, which ends a search).
#[derive(Clone, Copy)]
struct QueryFailure {
    h_errno: HErrno,
    unreachable: bool,
}

/// `res_query`: one query for `name`; the response length (the response copied to `answer`),
/// or why there are no answers. A response with an error code is copied out too.
///
/// # Safety
/// `answer` must be valid for writes of `anslen` bytes.
unsafe fn query(
    name: &str,
    class: c_int,
    kind: c_int,
    answer: *mut c_uchar,
    anslen: c_int,
    config: &ResolverConfig,
) -> Result<c_int, QueryFailure> {
    let malformed = QueryFailure {
        h_errno: NO_RECOVERY,
        unreachable: false,
    };
    let (Ok(class), Ok(kind)) = (u16::try_from(class), u16::try_from(kind)) else {
        return Err(malformed);
    };
    let Ok(message) = message::build_query(random_id(), name, class, kind) else {
        real::set_errno(libc::EMSGSIZE);
        return Err(malformed);
    };
    let response = send_message(&message, config).map_err(|errno| {
        real::set_errno(errno);
        QueryFailure {
            h_errno: TRY_AGAIN,
            unreachable: true,
        }
    })?;
    // SAFETY: the caller's contract for answer.
    let len = unsafe { copy_out(&response, answer, anslen) };
    match response_error(&response) {
        None => Ok(len),
        Some(h_errno) => Err(QueryFailure {
            h_errno,
            unreachable: false,
        }),
    }
}

/// `res_search`: [`query`] for each name of the search list until one has answers. A timeout
/// or refusal ends the search; the error reported follows glibc (resolv/res_query.c in 2.36).
///
/// # Safety
/// `answer` must be valid for writes of `anslen` bytes.
unsafe fn search(
    name: &str,
    class: c_int,
    kind: c_int,
    answer: *mut c_uchar,
    anslen: c_int,
) -> Result<c_int, HErrno> {
    let config = ResolverConfig::load();
    let candidates = search_candidates(&config, name);
    let as_is_first = candidates.first().is_some_and(|first| first == name);
    let (mut got_nodata, mut got_servfail, mut first_error) = (false, false, None);
    for (index, candidate) in candidates.iter().enumerate() {
        // SAFETY: the caller's contract for answer.
        let failure = match unsafe { query(candidate, class, kind, answer, anslen, &config) } {
            Ok(len) => return Ok(len),
            Err(failure) if failure.unreachable => return Err(failure.h_errno),
            Err(failure) => failure.h_errno,
        };
        if index == 0 && as_is_first {
            first_error = Some(failure);
        }
        match failure {
            NO_DATA => got_nodata = true,
            TRY_AGAIN => got_servfail = true,
            HOST_NOT_FOUND => {}
            other => return Err(other),
        }
    }
    Err(first_error.unwrap_or(if got_nodata {
        NO_DATA
    } else if got_servfail {
        TRY_AGAIN
    } else {
        HOST_NOT_FOUND
    }))
}

/// Returns a call's result the C way: the length, or -1 with `h_errno` set.
fn finish(result: Result<c_int, HErrno>) -> c_int {
    match result {
        Ok(len) => {
            set_h_errno(0);
            len
        }
        Err(h_errno) => {
            set_h_errno(h_errno);
            -1
        }
    }
}

/// Reads a C string argument.
///
/// # Safety
/// `text` must be null or NUL-terminated.
unsafe fn text_arg<'a>(text: *const c_char) -> Option<&'a str> {
    if text.is_null() {
        return None;
    }
    // SAFETY: as the caller guarantees.
    unsafe { CStr::from_ptr(text) }.to_str().ok()
}

fn invalid() -> c_int {
    set_h_errno(NETDB_INTERNAL);
    real::set_errno(libc::EINVAL);
    -1
}

macro_rules! export {
    ($( #[doc = $doc:literal] fn $name:ident | $alias:ident ( $($arg:ident : $ty:ty),* ) => $body:expr; )*) => {$(
        #[doc = $doc]
        ///
        /// # Safety
        /// As for the glibc function of the same name.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> c_int {
            // SAFETY: the caller's contract, which the body relies on.
            unsafe { $body }
        }

        #[doc = $doc]
        /// Programs built against glibc before 2.34 link to this name.
        ///
        /// # Safety
        /// As for the glibc function of the same name.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $alias($($arg: $ty),*) -> c_int {
            // SAFETY: the caller's contract, which the body relies on.
            unsafe { $body }
        }
    )*};
}

/// Shared bodies, so every exported name of one call behaves the same.
///
/// # Safety
/// As for glibc's `res_query`.
unsafe fn do_query(
    name: *const c_char,
    class: c_int,
    kind: c_int,
    answer: *mut c_uchar,
    anslen: c_int,
) -> c_int {
    // SAFETY: the caller's contract.
    let Some(name) = (unsafe { text_arg(name) }) else {
        return invalid();
    };
    let config = ResolverConfig::load();
    // SAFETY: the caller's contract for answer.
    finish(unsafe { query(name, class, kind, answer, anslen, &config) }.map_err(|f| f.h_errno))
}

/// # Safety
/// As for glibc's `res_search`.
unsafe fn do_search(
    name: *const c_char,
    class: c_int,
    kind: c_int,
    answer: *mut c_uchar,
    anslen: c_int,
) -> c_int {
    // SAFETY: the caller's contract.
    let Some(name) = (unsafe { text_arg(name) }) else {
        return invalid();
    };
    // SAFETY: the caller's contract for answer.
    finish(unsafe { search(name, class, kind, answer, anslen) })
}

/// # Safety
/// As for glibc's `res_querydomain`.
unsafe fn do_querydomain(
    name: *const c_char,
    domain: *const c_char,
    class: c_int,
    kind: c_int,
    answer: *mut c_uchar,
    anslen: c_int,
) -> c_int {
    // SAFETY: the caller's contract.
    let (Some(name), domain) = (unsafe { text_arg(name) }, unsafe { text_arg(domain) }) else {
        return invalid();
    };
    let full = match domain {
        Some(domain) => format!("{}.{domain}", name.trim_end_matches('.')),
        None => name.to_owned(),
    };
    let config = ResolverConfig::load();
    // SAFETY: the caller's contract for answer.
    finish(unsafe { query(&full, class, kind, answer, anslen, &config) }.map_err(|f| f.h_errno))
}

/// # Safety
/// As for glibc's `res_send`.
unsafe fn do_send(
    message: *const c_uchar,
    len: c_int,
    answer: *mut c_uchar,
    anslen: c_int,
) -> c_int {
    if message.is_null() || len < HEADER_LEN as c_int || answer.is_null() {
        real::set_errno(libc::EINVAL);
        return -1;
    }
    // SAFETY: the caller guarantees len readable bytes.
    let message = unsafe { std::slice::from_raw_parts(message, len as usize) };
    match send_message(message, &ResolverConfig::load()) {
        // SAFETY: the caller's contract for answer.
        Ok(response) => unsafe { copy_out(&response, answer, anslen) },
        Err(errno) => {
            real::set_errno(errno);
            -1
        }
    }
}

export! {
    /// Replaces `res_query(3)`.
    fn res_query | __res_query(name: *const c_char, class: c_int, kind: c_int, answer: *mut c_uchar, anslen: c_int)
        => do_query(name, class, kind, answer, anslen);
    /// Replaces `res_nquery(3)`.
    fn res_nquery | __res_nquery(_state: *mut c_void, name: *const c_char, class: c_int, kind: c_int, answer: *mut c_uchar, anslen: c_int)
        => do_query(name, class, kind, answer, anslen);
    /// Replaces `res_search(3)`.
    fn res_search | __res_search(name: *const c_char, class: c_int, kind: c_int, answer: *mut c_uchar, anslen: c_int)
        => do_search(name, class, kind, answer, anslen);
    /// Replaces `res_nsearch(3)`.
    fn res_nsearch | __res_nsearch(_state: *mut c_void, name: *const c_char, class: c_int, kind: c_int, answer: *mut c_uchar, anslen: c_int)
        => do_search(name, class, kind, answer, anslen);
    /// Replaces `res_querydomain(3)`.
    fn res_querydomain | __res_querydomain(name: *const c_char, domain: *const c_char, class: c_int, kind: c_int, answer: *mut c_uchar, anslen: c_int)
        => do_querydomain(name, domain, class, kind, answer, anslen);
    /// Replaces `res_nquerydomain(3)`.
    fn res_nquerydomain | __res_nquerydomain(_state: *mut c_void, name: *const c_char, domain: *const c_char, class: c_int, kind: c_int, answer: *mut c_uchar, anslen: c_int)
        => do_querydomain(name, domain, class, kind, answer, anslen);
    /// Replaces `res_send(3)`.
    fn res_send | __res_send(message: *const c_uchar, len: c_int, answer: *mut c_uchar, anslen: c_int)
        => do_send(message, len, answer, anslen);
    /// Replaces `res_nsend(3)`.
    fn res_nsend | __res_nsend(_state: *mut c_void, message: *const c_uchar, len: c_int, answer: *mut c_uchar, anslen: c_int)
        => do_send(message, len, answer, anslen);
}
