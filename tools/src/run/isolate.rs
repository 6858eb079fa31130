//! `netcon-ctl run --isolate`: the program starts in a network namespace of its own that
//! holds only loopback (up), so a socket that bypasses the preload reaches no interface of the
//! host. A caller that is not root also gets a user namespace, in which its uid and gid map to
//! themselves, because creating a network namespace needs CAP_SYS_ADMIN.
//!
//! The namespaces are entered in the forked child just before exec. A failing step writes its
//! number and errno to a pipe, so the error can name the step and the fix.

use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Kernel settings that forbid users other than root to create user namespaces when they hold
/// this value, with the command that lifts the limit.
const USERNS_SETTINGS: [(&str, &str, &str); 3] = [
    (
        "/proc/sys/user/max_user_namespaces",
        "0",
        "sysctl -w user.max_user_namespaces=10000",
    ),
    (
        "/proc/sys/user/max_net_namespaces",
        "0",
        "sysctl -w user.max_net_namespaces=10000",
    ),
    // A switch that Debian's and Ubuntu's kernels add; 0 forbids unprivileged user namespaces.
    (
        "/proc/sys/kernel/unprivileged_userns_clone",
        "0",
        "sysctl -w kernel.unprivileged_userns_clone=1",
    ),
];

/// Ubuntu's AppArmor switch (from 23.10): when 1, a user namespace made by an unconfined
/// program gets no capabilities in it, so setting the namespace up fails.
const APPARMOR_SETTING: &str = "/proc/sys/kernel/apparmor_restrict_unprivileged_userns";

/// A step of entering the namespaces in the child, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Step {
    Unshare = 1,
    DenySetgroups,
    UidMap,
    GidMap,
    LoopbackUp,
}

impl Step {
    fn from_code(code: u8) -> Option<Step> {
        [
            Step::Unshare,
            Step::DenySetgroups,
            Step::UidMap,
            Step::GidMap,
            Step::LoopbackUp,
        ]
        .into_iter()
        .find(|step| *step as u8 == code)
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Unshare => "creating the namespaces (unshare)",
            Step::DenySetgroups => "writing \"deny\" to /proc/self/setgroups",
            Step::UidMap => "writing /proc/self/uid_map",
            Step::GidMap => "writing /proc/self/gid_map",
            Step::LoopbackUp => "bringing up the loopback interface lo",
        })
    }
}

/// A reason the program could not be isolated.
#[derive(Debug)]
pub enum IsolateError {
    /// A kernel setting forbids users other than root to create user namespaces.
    NotAllowed {
        setting: &'static str,
        value: String,
        fix: &'static str,
    },
    /// A step in the child failed with `source`.
    StepFailed {
        step: Step,
        as_root: bool,
        source: io::Error,
    },
    /// The pipe that reports a failed step could not be made.
    Pipe(io::Error),
}

impl fmt::Display for IsolateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IsolateError::NotAllowed {
                setting,
                value,
                fix,
            } => write!(
                f,
                "{setting} is {value}, so users other than root cannot create the user \
                 namespace that --isolate needs; run netcon-ctl as root, or allow them with \
                 `{fix}` as root"
            ),
            IsolateError::StepFailed {
                step,
                as_root,
                source,
            } => {
                write!(f, "{step} failed: {source}")?;
                write!(f, "; {}", failure_hint(*step, *as_root, source))
            }
            IsolateError::Pipe(source) => write!(f, "creating the report pipe failed: {source}"),
        }
    }
}

/// Returns what to do about a failed step.
fn failure_hint(step: Step, as_root: bool, source: &io::Error) -> String {
    let apparmor = setting_value(APPARMOR_SETTING).is_some_and(|value| value == "1");
    match source.raw_os_error() {
        Some(libc::ENOSPC | libc::EUSERS) => "the limit of user or network namespaces is \
             reached (user.max_user_namespaces, user.max_net_namespaces); raise it with sysctl \
             as root"
            .to_owned(),
        Some(libc::EINVAL) if step == Step::Unshare => {
            "the kernel lacks user or network namespaces (CONFIG_USER_NS, CONFIG_NET_NS)".to_owned()
        }
        Some(libc::EPERM | libc::EACCES) if as_root => "netcon-ctl runs as root but may not \
             create the namespace: it lacks CAP_SYS_ADMIN or CAP_NET_ADMIN, or a seccomp filter \
             forbids unshare, as in containers; run it where root may, or leave out --isolate"
            .to_owned(),
        Some(libc::EPERM | libc::EACCES) if apparmor => format!(
            "AppArmor restricts unprivileged user namespaces ({APPARMOR_SETTING} is 1); run \
             netcon-ctl as root, or allow them with \
             `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0` as root"
        ),
        Some(libc::EPERM | libc::EACCES) => "the system does not let this user create user \
             namespaces (a seccomp filter, as container runtimes install, or a security \
             module); run netcon-ctl as root, or leave out --isolate"
            .to_owned(),
        _ => "run netcon-ctl as root, or leave out --isolate".to_owned(),
    }
}

/// Returns the trimmed contents of a /proc/sys file, or `None` when it does not exist.
fn setting_value(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|value| value.trim().to_owned())
}

/// Returns an error when a kernel setting forbids the unprivileged user namespace.
fn check_settings() -> Result<(), IsolateError> {
    for (setting, forbidden, fix) in USERNS_SETTINGS {
        if let Some(value) = setting_value(setting).filter(|value| value == forbidden) {
            return Err(IsolateError::NotAllowed {
                setting,
                value,
                fix,
            });
        }
    }
    Ok(())
}

/// The `/proc/self` files a caller other than root writes after unsharing, with their
/// contents, prepared before fork because the child may only make async-signal-safe calls.
#[derive(Debug, Clone)]
struct IdMaps {
    setgroups: CString,
    uid_map: CString,
    gid_map: CString,
    deny: &'static [u8],
    uid_line: Vec<u8>,
    gid_line: Vec<u8>,
}

/// Everything the child needs to isolate itself, made before the program is spawned.
#[derive(Debug)]
pub struct Isolation {
    /// The id maps to write, or `None` when netcon-ctl runs as root and needs no user
    /// namespace.
    id_maps: Option<IdMaps>,
    report_read: OwnedFd,
    report_write: OwnedFd,
}

impl Isolation {
    /// Checks that the caller may create the namespaces and prepares the child's steps.
    ///
    /// Root gets a network namespace only, so programs that switch to another user (servers
    /// started as root) keep doing so. Any other caller also gets a user namespace mapping its
    /// effective uid and gid to themselves, with setgroups denied, as the kernel requires
    /// before an unprivileged process may write its gid map.
    pub fn prepare() -> Result<Isolation, IsolateError> {
        // SAFETY: geteuid and getegid have no preconditions and cannot fail.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let id_maps = if uid == 0 {
            None
        } else {
            check_settings()?;
            Some(IdMaps {
                setgroups: c"/proc/self/setgroups".to_owned(),
                uid_map: c"/proc/self/uid_map".to_owned(),
                gid_map: c"/proc/self/gid_map".to_owned(),
                deny: b"deny",
                uid_line: format!("{uid} {uid} 1\n").into_bytes(),
                gid_line: format!("{gid} {gid} 1\n").into_bytes(),
            })
        };
        let (report_read, report_write) = report_pipe().map_err(IsolateError::Pipe)?;
        Ok(Isolation {
            id_maps,
            report_read,
            report_write,
        })
    }

    /// Makes `command`'s child enter the namespaces before exec. Must be called once, before
    /// the command is spawned; the child's steps run in the order of [`Step`].
    pub fn apply(&self, command: &mut Command) {
        let report = self.report_write.as_raw_fd();
        // The closure owns a copy of the maps, made here before fork.
        let id_maps = self.id_maps.clone();
        // SAFETY: the closure runs in the child between fork and exec. It only makes system
        // calls (unshare, open, write, close, socket, ioctl), all async-signal-safe, on data
        // prepared before fork, and allocates nothing.
        unsafe {
            command.pre_exec(move || {
                enter(id_maps.as_ref()).map_err(|(step, errno)| {
                    report_failure(report, step, errno);
                    io::Error::from_raw_os_error(errno)
                })
            });
        }
    }

    /// Returns the step that failed in the child, when spawning failed in one. Call it only
    /// after spawn returned an error, when no child has the pipe open any more.
    pub fn failure(&self, spawn_error: &io::Error) -> Option<IsolateError> {
        let mut record = [0u8; 5];
        // SAFETY: record is valid for writes of its length; the read end is non-blocking.
        let read = unsafe {
            libc::read(
                self.report_read.as_raw_fd(),
                record.as_mut_ptr().cast(),
                record.len(),
            )
        };
        if read != record.len() as isize {
            return None;
        }
        let step = Step::from_code(record[0])?;
        let errno = i32::from_ne_bytes(record[1..].try_into().expect("four bytes"));
        debug_assert_eq!(spawn_error.raw_os_error(), Some(errno));
        Some(IsolateError::StepFailed {
            step,
            as_root: self.id_maps.is_none(),
            source: io::Error::from_raw_os_error(errno),
        })
    }
}

/// Enters the namespaces; runs in the child after fork. Returns the failed step and errno.
fn enter(id_maps: Option<&IdMaps>) -> Result<(), (Step, i32)> {
    let flags = match id_maps {
        Some(_) => libc::CLONE_NEWUSER | libc::CLONE_NEWNET,
        None => libc::CLONE_NEWNET,
    };
    // SAFETY: unshare has no memory preconditions; the forked child is single-threaded, as
    // CLONE_NEWUSER requires.
    if unsafe { libc::unshare(flags) } != 0 {
        return Err((Step::Unshare, errno()));
    }
    if let Some(maps) = id_maps {
        write_file(&maps.setgroups, maps.deny).map_err(|e| (Step::DenySetgroups, e))?;
        write_file(&maps.uid_map, &maps.uid_line).map_err(|e| (Step::UidMap, e))?;
        write_file(&maps.gid_map, &maps.gid_line).map_err(|e| (Step::GidMap, e))?;
    }
    loopback_up().map_err(|e| (Step::LoopbackUp, e))
}

/// Writes `contents` to the file at `path` in one write, as /proc id maps require.
fn write_file(path: &CString, contents: &[u8]) -> Result<(), i32> {
    // SAFETY: path is a NUL-terminated string.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(errno());
    }
    // SAFETY: contents is valid for reads of its length.
    let written = unsafe { libc::write(fd, contents.as_ptr().cast(), contents.len()) };
    let result = if written == contents.len() as isize {
        Ok(())
    } else {
        Err(errno())
    };
    // SAFETY: fd was opened above and is closed once.
    unsafe { libc::close(fd) };
    result
}

/// Sets IFF_UP on `lo` in the current network namespace.
fn loopback_up() -> Result<(), i32> {
    // SAFETY: socket has no memory preconditions.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(errno());
    }
    // SAFETY: ifreq is plain data, for which all zero bytes are a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, &byte) in request.ifr_name.iter_mut().zip(b"lo") {
        *slot = byte as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the name and writes ifru_flags of a valid ifreq.
    let mut result = unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut request) };
    if result == 0 {
        // SAFETY: SIOCGIFFLAGS filled ifru_flags, the union member read and written here.
        unsafe { request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
        // SAFETY: SIOCSIFFLAGS reads the name and ifru_flags of a valid ifreq.
        result = unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS, &request) };
    }
    let outcome = if result == 0 { Ok(()) } else { Err(errno()) };
    // SAFETY: fd was opened above and is closed once.
    unsafe { libc::close(fd) };
    outcome
}

/// Writes the failed step and errno to the report pipe; a failed write only loses detail.
fn report_failure(fd: RawFd, step: Step, errno: i32) {
    let mut record = [0u8; 5];
    record[0] = step as u8;
    record[1..].copy_from_slice(&errno.to_ne_bytes());
    // SAFETY: record is valid for reads of its length.
    unsafe { libc::write(fd, record.as_ptr().cast(), record.len()) };
}

fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// Creates the close-on-exec report pipe; its read end does not block.
fn report_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two fds pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both fds are open and nothing else owns them.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: fcntl with F_SETFL has no memory preconditions.
    if unsafe { libc::fcntl(read.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((read, write))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_codes_round_trip() {
        for step in [
            Step::Unshare,
            Step::DenySetgroups,
            Step::UidMap,
            Step::GidMap,
            Step::LoopbackUp,
        ] {
            assert_eq!(Step::from_code(step as u8), Some(step));
        }
        assert_eq!(Step::from_code(0), None);
        assert_eq!(Step::from_code(6), None);
    }

    #[test]
    fn not_allowed_names_setting_and_fix() {
        let error = IsolateError::NotAllowed {
            setting: "/proc/sys/user/max_user_namespaces",
            value: "0".to_owned(),
            fix: "sysctl -w user.max_user_namespaces=10000",
        };
        let message = error.to_string();
        assert!(message.contains("max_user_namespaces is 0"), "{message}");
        assert!(message.contains("run netcon-ctl as root"), "{message}");
        assert!(
            message.contains("`sysctl -w user.max_user_namespaces=10000`"),
            "{message}"
        );
    }

    #[test]
    fn step_failure_names_step_and_fix() {
        let error = IsolateError::StepFailed {
            step: Step::Unshare,
            as_root: false,
            source: io::Error::from_raw_os_error(libc::ENOSPC),
        };
        let message = error.to_string();
        assert!(message.starts_with("creating the namespaces (unshare) failed"));
        assert!(message.contains("user.max_user_namespaces"), "{message}");

        let error = IsolateError::StepFailed {
            step: Step::LoopbackUp,
            as_root: true,
            source: io::Error::from_raw_os_error(libc::EPERM),
        };
        let message = error.to_string();
        assert!(message.contains("bringing up the loopback interface lo"));
        assert!(message.contains("CAP_SYS_ADMIN"), "{message}");
    }

    #[test]
    fn failed_step_read_from_pipe() {
        let isolation = Isolation::prepare().expect("prepare");
        report_failure(
            isolation.report_write.as_raw_fd(),
            Step::GidMap,
            libc::EPERM,
        );
        let spawn_error = io::Error::from_raw_os_error(libc::EPERM);
        match isolation.failure(&spawn_error) {
            Some(IsolateError::StepFailed { step, source, .. }) => {
                assert_eq!(step, Step::GidMap);
                assert_eq!(source.raw_os_error(), Some(libc::EPERM));
            }
            other => panic!("expected the gid map step, got {other:?}"),
        }
        assert!(
            isolation.failure(&spawn_error).is_none(),
            "the pipe holds one record"
        );
    }
}
