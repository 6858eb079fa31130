//! Where the control socket lives unless `--socket` or `NETCON_SOCKET` says otherwise.

use std::path::PathBuf;

/// The environment variable that names the control socket for the preload and `netcon-ctl`.
pub const SOCKET_ENV: &str = "NETCON_SOCKET";

/// Returns the default control socket path: `$XDG_RUNTIME_DIR/netcon/control.sock` when the
/// runtime dir is set, else `/run/netcon/control.sock` for root and
/// `/tmp/netcon-UID/control.sock` for other users.
pub fn default_socket_path() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("netcon/control.sock");
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    if uid == 0 {
        PathBuf::from("/run/netcon/control.sock")
    } else {
        PathBuf::from(format!("/tmp/netcon-{uid}/control.sock"))
    }
}

/// Returns the control socket path from `NETCON_SOCKET`, or the default.
pub fn socket_path_from_env() -> PathBuf {
    match std::env::var_os(SOCKET_ENV).filter(|p| !p.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => default_socket_path(),
    }
}
