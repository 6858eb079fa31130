//! Paths of the workspace binaries, and the root check shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The environment variable that overrides the directory [`binary_path`] looks in.
pub const BIN_DIR_ENV: &str = "NETCON_BIN_DIR";

/// Returns the path of the workspace binary or library `name`.
///
/// It is `$NETCON_BIN_DIR/name` when that variable is set. Otherwise it is a sibling of the
/// running executable, or of its parent directory when the executable runs from
/// `target/PROFILE/deps` (as integration tests do), so both find `target/PROFILE/netcon-dp`.
/// The path is not checked for existence.
pub fn binary_path(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join(name);
    }
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from(name));
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    dir.join(name)
}

/// Returns `netcon-ctl run --socket SOCKET -- PROGRAM`; the caller appends the program's
/// arguments.
pub fn netcon_command(socket: &Path, program: &str) -> Command {
    let mut command = Command::new(binary_path("netcon-ctl"));
    command
        .arg("run")
        .arg("--socket")
        .arg(socket)
        .arg("--")
        .arg(program);
    command
}

/// Returns `netcon-ctl run --isolate --socket SOCKET -- PROGRAM`: the program runs in a network
/// namespace holding only loopback, so a socket that escapes the preload fails. The caller
/// appends the program's arguments.
pub fn isolated_netcon_command(socket: &Path, program: &str) -> Command {
    let mut command = Command::new(binary_path("netcon-ctl"));
    command
        .args(["run", "--isolate", "--socket"])
        .arg(socket)
        .arg("--")
        .arg(program);
    command
}

/// Returns true when the effective user is root.
///
/// Otherwise it panics when `NETCON_REQUIRE_ROOT=1` (so CI cannot skip silently), and else
/// prints that `test` was skipped and returns false.
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("NETCON_REQUIRE_ROOT").is_ok_and(|v| v == "1") {
        panic!("{test} needs root, and NETCON_REQUIRE_ROOT=1 forbids skipping it");
    }
    println!("skipped {test}: needs root (set NETCON_REQUIRE_ROOT=1 to make this a failure)");
    false
}
