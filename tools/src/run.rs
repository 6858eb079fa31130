//! `netcon-ctl run`: starts a program with the netcon preload and makes sure the preload took
//! hold before the program can open a connection past netcon.

mod isolate;
mod ready;
pub(crate) mod socket_check;

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

use netcon_control::path::SOCKET_ENV;
use netcon_program_check::ISOLATED_ENV;

use crate::program_check::{self, Passed, Rejection};
use crate::signals;
use isolate::{IsolateError, Isolation};
use ready::{ReadyPipe, ReadyWait};

/// The variable naming the fd the preload writes its ready line to.
const READY_FD_ENV: &str = "NETCON_READY_FD";

/// How long the preload gets to report that it loaded.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// Exit status when `netcon-ctl` itself fails (no data plane, no preload, preload not loaded).
pub const EXIT_FAILED: i32 = 125;
/// Exit status when the program cannot be started with the preload (as `env` uses 126).
pub const EXIT_CANNOT_EXECUTE: i32 = 126;
/// Exit status when the program is not found (as shells use 127).
pub const EXIT_NOT_FOUND: i32 = 127;

/// The program `netcon-ctl run` starts, and the data plane and preload it uses.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The control socket of the running `netcon-dp`.
    pub socket: PathBuf,
    /// The preload library (`libnetcon_preload.so`).
    pub preload: PathBuf,
    /// The program, found on `PATH` unless it contains a slash.
    pub program: OsString,
    /// The program's arguments.
    pub args: Vec<OsString>,
    /// Start the program in a network namespace of its own holding only loopback.
    pub isolate: bool,
}

/// A failure of `netcon-ctl run` before the program's own exit status is known.
#[derive(Debug)]
pub enum RunError {
    /// Nothing serves the control socket.
    DataplaneNotRunning { socket: PathBuf, reason: String },
    /// The control socket exists, but this user may not open it.
    SocketForbidden { socket: PathBuf },
    /// The path is a file that is not a socket, or another program's socket.
    NotControlSocket { socket: PathBuf, reason: String },
    /// The preload library file is missing or unusable.
    PreloadUnusable { preload: PathBuf, reason: String },
    /// The program is not found on `PATH`.
    ProgramNotFound { program: OsString },
    /// A check before the start shows that the preload would not load.
    Rejected(Rejection),
    /// Exec failed.
    Spawn {
        program: OsString,
        source: io::Error,
    },
    /// The program could not be put into a namespace of its own (`--isolate`).
    Isolate {
        program: OsString,
        source: IsolateError,
    },
    /// The program started but the preload did not report that it loaded.
    PreloadNotLoaded { program: OsString, reason: String },
    /// A system call of `netcon-ctl` failed.
    Io {
        operation: &'static str,
        source: io::Error,
    },
}

impl RunError {
    /// Returns the exit status `netcon-ctl run` ends with for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::ProgramNotFound { .. } => EXIT_NOT_FOUND,
            RunError::Spawn { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                EXIT_NOT_FOUND
            }
            RunError::Rejected(_) | RunError::Spawn { .. } => EXIT_CANNOT_EXECUTE,
            _ => EXIT_FAILED,
        }
    }
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::DataplaneNotRunning { socket, reason } => write!(
                f,
                "netcon-dp is not running at {path} ({reason}); start it with \
                 `netcon-dp --socket {path}`, or pass its socket with --socket",
                path = socket.display()
            ),
            RunError::NotControlSocket { socket, reason } => write!(
                f,
                "{} is not a netcon-dp control socket ({reason}); pass netcon-dp's socket with \
                 --socket",
                socket.display()
            ),
            RunError::SocketForbidden { socket } => write!(
                f,
                "permission denied on netcon-dp's control socket {} or its directory: only netcon-dp's own \
                 user, root and the users given to `netcon-dp --allow-uid` may use it",
                socket.display()
            ),
            RunError::PreloadUnusable { preload, reason } => write!(
                f,
                "cannot use the preload library {} ({reason}); build it with \
                 `cargo build --workspace` or pass its path with --preload",
                preload.display()
            ),
            RunError::ProgramNotFound { program } => {
                write!(f, "{}: command not found", program.to_string_lossy())
            }
            RunError::Rejected(rejection) => write!(f, "{rejection}"),
            RunError::Spawn { program, source } => {
                write!(f, "cannot execute {}: {source}", program.to_string_lossy())
            }
            RunError::Isolate { program, source } => {
                write!(f, "cannot isolate {}: {source}", program.to_string_lossy())
            }
            RunError::PreloadNotLoaded { program, reason } => write!(
                f,
                "the netcon preload did not load into {} ({reason}), so its connections \
                 would bypass netcon; netcon-ctl killed it. Look above for a message from \
                 the dynamic loader (ld.so)",
                program.to_string_lossy()
            ),
            RunError::Io { operation, source } => write!(f, "{operation} failed: {source}"),
        }
    }
}

/// Runs the program with the preload and returns the exit status `netcon-ctl` should end
/// with: the program's, or 128 + N when signal N killed it.
///
/// Blocks until the program exits. SIGINT, SIGTERM and SIGHUP sent to `netcon-ctl` with
/// `kill` are forwarded to the program.
pub fn run(options: &RunOptions) -> Result<i32, RunError> {
    socket_check::check_dataplane(&options.socket)?;
    let preload = check_preload(&options.preload)?;
    let program =
        program_check::find_program(&options.program).ok_or_else(|| RunError::ProgramNotFound {
            program: options.program.clone(),
        })?;
    let mut argv = vec![options.program.clone()];
    argv.extend(options.args.iter().cloned());
    let expect_ready = check_program(&program, &argv, options.isolate)?;
    let isolate_error = |source| RunError::Isolate {
        program: options.program.clone(),
        source,
    };
    let isolation = match options.isolate {
        true => Some(Isolation::prepare().map_err(isolate_error)?),
        false => None,
    };

    let io_error = |operation| move |source| RunError::Io { operation, source };
    signals::install_forwarding().map_err(io_error("installing signal handlers"))?;
    let socket = std::path::absolute(&options.socket).map_err(io_error("resolving --socket"))?;

    let mut command = Command::new(&program);
    command
        .arg0(&options.program)
        .args(&options.args)
        .env(
            "LD_PRELOAD",
            ld_preload_value(&preload, std::env::var_os("LD_PRELOAD")),
        )
        .env(SOCKET_ENV, &socket);
    // The preload lets the program start statically linked and Go programs only with this
    // variable set, and only in a network namespace that holds nothing but loopback.
    let isolated_env = OsStr::from_bytes(ISOLATED_ENV.to_bytes());
    match options.isolate {
        true => command.env(isolated_env, "1"),
        false => command.env_remove(isolated_env),
    };
    let pipe = match expect_ready {
        true => {
            let pipe = ReadyPipe::new().map_err(io_error("creating the ready pipe"))?;
            pass_ready_fd(&mut command, &pipe);
            Some(pipe)
        }
        false => None,
    };
    if let Some(isolation) = &isolation {
        isolation.apply(&mut command);
    }

    let mut child = command.spawn().map_err(|source| {
        match isolation.as_ref().and_then(|i| i.failure(&source)) {
            Some(failure) => isolate_error(failure),
            None => RunError::Spawn {
                program: options.program.clone(),
                source,
            },
        }
    })?;
    signals::forward_to(child.id());
    if signals::interrupted() {
        // A signal that arrived while the program was being started was not forwarded.
        if let Some(signal) = signals::last_signal() {
            // SAFETY: kill has no memory preconditions and the child is not reaped yet.
            unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        }
    }

    // NOTE: when ld.so skips the preload (it prints "cannot be preloaded ... ignored"), the
    // program runs unintercepted until the pipe closes or the timeout kills it.
    if let Some(pipe) = pipe {
        match pipe.wait_for_line(READY_TIMEOUT) {
            Ok(ReadyWait::Line(line)) if line.starts_with("netcon-preload ") => {}
            outcome => return Err(preload_failed(&mut child, &options.program, outcome)),
        }
    }
    let status = wait_forwarding(&mut child).map_err(io_error("waiting for the program"))?;
    Ok(exit_code(status))
}

/// Checks that the preload will intercept the program's sockets when it is started with
/// `argv`, and returns whether it will report that it loaded (the dynamic loader that only
/// lists libraries runs no preload). With `isolate`, a program whose sockets bypass the
/// preload (statically linked or Go) runs anyway after a warning, because it reaches only
/// loopback.
fn check_program(program: &Path, argv: &[OsString], isolate: bool) -> Result<bool, RunError> {
    match program_check::check_program(program, argv) {
        Ok(Passed::Program) => Ok(true),
        Ok(Passed::LoaderAlone) => Ok(false),
        Err(rejection) if isolate && rejection.allowed_isolated() => {
            eprintln!("netcon-ctl: warning: {}", rejection.isolated_warning());
            Ok(rejection.preload_loads())
        }
        Err(rejection) => Err(RunError::Rejected(rejection)),
    }
}

/// Names the ready pipe's write end in the program's environment and lets it survive exec.
fn pass_ready_fd(command: &mut Command, pipe: &ReadyPipe) {
    let write_fd = pipe.write_fd().as_raw_fd();
    command.env(READY_FD_ENV, write_fd.to_string());
    // SAFETY: the closure runs in the child between fork and exec and only calls fcntl, which
    // is async-signal-safe. Clearing FD_CLOEXEC lets the ready fd survive exec.
    unsafe {
        command.pre_exec(move || {
            if libc::fcntl(write_fd, libc::F_SETFD, 0) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Kills a program whose preload did not report in, and describes why.
fn preload_failed(child: &mut Child, program: &OsStr, outcome: io::Result<ReadyWait>) -> RunError {
    signals::forward_to(0);
    let _ = child.kill();
    let _ = child.wait();
    let reason = match outcome {
        Ok(ReadyWait::Line(line)) => format!("unexpected ready line {line:?}"),
        Ok(ReadyWait::Closed) => {
            format!("{READY_FD_ENV} was closed without the `netcon-preload PID` line")
        }
        Ok(ReadyWait::TimedOut) => {
            format!("no `netcon-preload PID` line on {READY_FD_ENV} within {READY_TIMEOUT:?}")
        }
        Err(err) => format!("reading {READY_FD_ENV} failed: {err}"),
    };
    RunError::PreloadNotLoaded {
        program: program.to_owned(),
        reason,
    }
}

/// Waits for the program to exit, keeps forwarding signals until it has, then reaps it.
fn wait_forwarding(child: &mut Child) -> io::Result<ExitStatus> {
    // Wait without reaping (WNOWAIT), so the pid cannot be reused while forwarding is on.
    loop {
        // SAFETY: info is a zeroed siginfo_t that waitid fills in.
        let result = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(
                libc::P_PID,
                child.id(),
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if result == 0 {
            break;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    signals::forward_to(0);
    child.wait()
}

/// Returns the exit status for `status`: the program's code, or 128 + N for signal N.
pub fn exit_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => EXIT_FAILED,
    }
}

/// Checks that the preload file exists and returns its absolute path.
fn check_preload(preload: &Path) -> Result<PathBuf, RunError> {
    let unusable = |reason: String| RunError::PreloadUnusable {
        preload: preload.to_path_buf(),
        reason,
    };
    let path = preload
        .canonicalize()
        .map_err(|err| unusable(err.to_string()))?;
    // ld.so splits LD_PRELOAD at spaces and colons.
    let bytes = path.as_os_str().as_encoded_bytes();
    if bytes.iter().any(|&b| b == b' ' || b == b':') {
        return Err(unusable(
            "LD_PRELOAD cannot hold a path with a space or colon".to_owned(),
        ));
    }
    Ok(path)
}

/// Returns `LD_PRELOAD` with `preload` placed before the existing entries.
fn ld_preload_value(preload: &Path, existing: Option<OsString>) -> OsString {
    let mut value = preload.as_os_str().to_owned();
    if let Some(existing) = existing.filter(|v| !v.is_empty()) {
        value.push(":");
        value.push(existing);
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ld_preload_prepends() {
        let preload = Path::new("/lib/netcon.so");
        let value = ld_preload_value(preload, Some("/lib/other.so".into()));
        assert_eq!(value, "/lib/netcon.so:/lib/other.so");
    }

    #[test]
    fn ld_preload_alone_when_unset() {
        let preload = Path::new("/lib/netcon.so");
        assert_eq!(ld_preload_value(preload, None), "/lib/netcon.so");
        assert_eq!(ld_preload_value(preload, Some("".into())), "/lib/netcon.so");
    }

    #[test]
    fn exit_code_maps_signals() {
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(
            exit_code(ExitStatus::from_raw(libc::SIGKILL)),
            128 + libc::SIGKILL
        );
    }
}
