//! glibc's resolver constants that the libc crate does not define, with their values from
//! glibc 2.36's `<netdb.h>`.

use libc::c_int;

/// `getaddrinfo` flag: convert the name to IDNA form first.
pub const AI_IDN: c_int = 0x0040;
/// `getaddrinfo` flag: return the canonical name in the current locale's form.
pub const AI_CANONIDN: c_int = 0x0080;

/// `h_errno`: the name is unknown.
pub const HOST_NOT_FOUND: c_int = 1;
/// `h_errno`: no answer in time, or a server failure; trying later may work.
pub const TRY_AGAIN: c_int = 2;
/// `h_errno`: a non-recoverable error (the server refused or sent garbage).
pub const NO_RECOVERY: c_int = 3;
/// `h_errno`: the name is known but has no address of the requested type.
pub const NO_DATA: c_int = 4;
/// `h_errno`: see errno.
pub const NETDB_INTERNAL: c_int = -1;

unsafe extern "C" {
    fn __h_errno_location() -> *mut c_int;
}

/// Sets this thread's `h_errno`.
pub fn set_h_errno(value: c_int) {
    // SAFETY: glibc returns the calling thread's h_errno slot, valid for the thread's life.
    unsafe { *__h_errno_location() = value };
}
