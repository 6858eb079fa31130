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

use super::abi::{NETDB_INTERNAL, set_h_errno};
use super::config::ResolverConfig;
use super::lookup::{LookupError, random_id};
use super::message::{self, message_id};
use super::search::{self, Step};
use super::transport::{self, ExchangeError};
use crate::info;
use crate::real;

/// Size of a DNS message header.
const HEADER_LEN: usize = 12;

/// Returns the DNS server; `None` (reported once on stderr) without `--dns`.
fn server() -> Option<SocketAddr> {
    let server = info::netcon_info()?.dns;
    if server.is_none() {
        info::report_no_dns_server();
    }
    server
}

/// Sends `message` as it is and returns the response, trying `attempts` times.
fn send_message(message: &[u8], config: &ResolverConfig) -> Result<Vec<u8>, c_int> {
    let server = server().ok_or(libc::ECONNREFUSED)?;
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

/// Classifies a response as glibc's `res_query` and `res_send` do (glibc 2.36): answers,
/// NXDOMAIN, an empty answer section (NO_DATA), SERVFAIL, a refusal (REFUSED or NOTIMP, which
/// `res_send` treats as a server that cannot be used), or another error (NO_RECOVERY).
fn classify(response: &[u8], len: c_int) -> Step<c_int> {
    if response.len() < HEADER_LEN {
        return Step::Failed(LookupError::NoRecovery);
    }
    let rcode = response[3] & 0x0f;
    let answers = u16::from_be_bytes([response[6], response[7]]);
    match rcode {
        0 if answers > 0 => Step::Found(len),
        0 => Step::NoData,
        2 => Step::ServerFailure,
        3 => Step::NoSuchName,
        4 | 5 => Step::Refused,
        _ => Step::Failed(LookupError::NoRecovery),
    }
}

/// `res_query`: one query for `name`. Copies the response (any response code) to `answer`
/// and returns its length when it has answers.
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
) -> Step<c_int> {
    let (Ok(class), Ok(kind)) = (u16::try_from(class), u16::try_from(kind)) else {
        return Step::Failed(LookupError::NoRecovery);
    };
    let Ok(message) = message::build_query(random_id(), name, class, kind) else {
        real::set_errno(libc::EMSGSIZE);
        return Step::Failed(LookupError::NoRecovery);
    };
    let response = match send_message(&message, config) {
        Ok(response) => response,
        Err(errno) => {
            real::set_errno(errno);
            return if errno == libc::ECONNREFUSED {
                Step::Refused
            } else {
                Step::TimedOut
            };
        }
    };
    // SAFETY: the caller's contract for answer.
    let len = unsafe { copy_out(&response, answer, anslen) };
    classify(&response, len)
}

/// Returns a call's result the C way: the length, or -1 with `h_errno` set.
fn finish(result: Result<c_int, LookupError>) -> c_int {
    match result {
        Ok(len) => {
            set_h_errno(0);
            len
        }
        Err(error) => {
            set_h_errno(error.h_errno());
            -1
        }
    }
}

/// Ends a single query: its length, or its step's error.
fn single(step: Step<c_int>) -> Result<c_int, LookupError> {
    match step {
        Step::Found(len) => Ok(len),
        other => Err(other.error()),
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
    finish(single(unsafe {
        query(name, class, kind, answer, anslen, &config)
    }))
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
    let config = ResolverConfig::load();
    finish(search::search(&config, name, |candidate| {
        // SAFETY: the caller's contract for answer.
        unsafe { query(candidate, class, kind, answer, anslen, &config) }
    }))
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
    finish(single(unsafe {
        query(&full, class, kind, answer, anslen, &config)
    }))
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
