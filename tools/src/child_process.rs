//! Child processes of the demo and the benchmark runner: commands run to completion and servers
//! waited on until ready, all bounded in time and stopped early when the run is interrupted.

use std::io::{self, BufRead, BufReader, Read};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::signals;
use crate::topology::ChildGuard;

/// How often waits check for exit, timeout and interruption.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Returns the error every wait returns once SIGINT, SIGTERM or SIGHUP arrived.
pub fn interrupted_error() -> io::Error {
    io::Error::new(io::ErrorKind::Interrupted, "interrupted by a signal")
}

/// Runs `command` with stdout and stderr captured and returns its output.
///
/// Returns an error when it cannot start, runs longer than `timeout` or the run is
/// interrupted. In those cases the process is stopped first.
pub fn run_bounded(command: &mut Command, timeout: Duration) -> io::Result<Output> {
    let label = command.get_program().to_string_lossy().into_owned();
    let mut process = Process::spawn(command, &label)?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = process.try_wait()? {
            break status;
        }
        if signals::interrupted() {
            return Err(interrupted_error());
        }
        if Instant::now() >= deadline {
            let message = format!(
                "timed out after {timeout:?}; stderr: {}",
                process.stderr_text().trim()
            );
            return Err(io::Error::new(io::ErrorKind::TimedOut, message));
        }
        thread::sleep(POLL_INTERVAL);
    };
    // Ctrl-C reaches the whole process group, so the child may exit before the flag is seen.
    if signals::interrupted() {
        return Err(interrupted_error());
    }

    // The pipes reach EOF when the process exits, unless it left a child holding them open.
    let stdout = process.stdout.finish(deadline);
    let stderr = process.stderr.finish(deadline);
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// A child process with its stdout and stderr collected, stopped (SIGTERM, then SIGKILL after
/// 5 s) when dropped.
#[derive(Debug)]
pub struct Process {
    guard: ChildGuard,
    stdout: Collected,
    stderr: Collected,
}

impl Process {
    /// Starts `command` with stdin closed and both output streams collected. `label` names the
    /// process in warnings.
    pub fn spawn(command: &mut Command, label: &str) -> io::Result<Process> {
        let program = command.get_program().to_string_lossy().into_owned();
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|err| io::Error::new(err.kind(), format!("cannot start {program}: {err}")))?;
        let mut guard = ChildGuard::new(child, label);
        let stdout = collect(guard.child_mut().stdout.take().expect("stdout is piped"));
        let stderr = collect(guard.child_mut().stderr.take().expect("stderr is piped"));
        Ok(Process {
            guard,
            stdout,
            stderr,
        })
    }

    /// Returns the process id.
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// Returns the exit status when the process has exited, without blocking.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.guard.child_mut().try_wait()
    }

    /// Returns what the process wrote on stdout so far.
    pub fn stdout_text(&self) -> String {
        self.stdout.text()
    }

    /// Returns what the process wrote on stderr so far.
    pub fn stderr_text(&self) -> String {
        self.stderr.text()
    }

    /// Returns all the process wrote on stderr, once it has exited: waits up to a second for
    /// the pipe to reach EOF, since the reader thread may not have read the last lines yet.
    fn final_stderr_text(&self) -> String {
        let bytes = self.stderr.finish(Instant::now() + Duration::from_secs(1));
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Returns an error when the process has exited, with its status and stderr, so a caller
    /// polling for readiness can stop early.
    pub fn check_running(&mut self, name: &str) -> io::Result<()> {
        match self.try_wait()? {
            None => Ok(()),
            Some(status) => Err(io::Error::other(format!(
                "{name} exited ({status}); stderr: {}",
                one_line(&self.final_stderr_text())
            ))),
        }
    }
}

/// Starts `command` and waits up to `timeout` for a stdout line containing `ready_text`.
///
/// Returns an error, with the server's stderr, when it exits first, the wait times out, or the
/// run is interrupted. The process is stopped then.
pub fn start_server(
    command: &mut Command,
    ready_text: &str,
    timeout: Duration,
) -> io::Result<Process> {
    let label = command.get_program().to_string_lossy().into_owned();
    let mut server = Process::spawn(command, &label)?;
    let deadline = Instant::now() + timeout;
    loop {
        if server.stdout_text().contains(ready_text) {
            return Ok(server);
        }
        if let Some(status) = server.try_wait()? {
            let message = format!(
                "exited ({status}) before it was ready; stderr: {}",
                one_line(&server.final_stderr_text())
            );
            return Err(io::Error::other(message));
        }
        if signals::interrupted() {
            return Err(interrupted_error());
        }
        if Instant::now() >= deadline {
            let message = format!(
                "printed no line containing {ready_text:?} within {timeout:?}; stderr: {}",
                one_line(&server.stderr_text())
            );
            return Err(io::Error::new(io::ErrorKind::TimedOut, message));
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// Polls `ready` until it returns true, `process` exits, `timeout` passes or the run is
/// interrupted. `name` names the process in the error.
pub fn wait_until(
    process: &mut Process,
    name: &str,
    timeout: Duration,
    mut ready: impl FnMut() -> bool,
) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return Ok(());
        }
        process.check_running(name)?;
        if signals::interrupted() {
            return Err(interrupted_error());
        }
        if Instant::now() >= deadline {
            let message = format!(
                "{name} was not ready within {timeout:?}; stderr: {}",
                one_line(&process.stderr_text())
            );
            return Err(io::Error::new(io::ErrorKind::TimedOut, message));
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// Runs `command` for at most `timeout` and turns a non-zero exit into an error holding its
/// stderr.
pub fn run_checked(command: &mut Command, timeout: Duration) -> io::Result<()> {
    let output = run_bounded(command, timeout)?;
    if output.status.success() {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "`{}` failed ({}): {}",
        describe(command),
        output.status,
        one_line(&String::from_utf8_lossy(&output.stderr))
    )))
}

/// Returns a command line as one string, for error messages.
pub fn describe(command: &Command) -> String {
    let mut words = vec![command.get_program().to_string_lossy().into_owned()];
    words.extend(
        command
            .get_args()
            .map(|arg| arg.to_string_lossy().into_owned()),
    );
    words.join(" ")
}

/// Joins the non-empty lines of `text` with "; ", so a process's stderr fits in a table note.
pub fn one_line(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    if lines.is_empty() {
        return "(empty)".to_owned();
    }
    lines.join("; ")
}

/// A pipe being read to EOF on its own thread.
#[derive(Debug)]
struct Collected {
    buffer: Arc<Mutex<Vec<u8>>>,
    reader: thread::JoinHandle<()>,
}

impl Collected {
    /// Returns the bytes read so far.
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.buffer.lock().expect("not poisoned")).into_owned()
    }

    /// Waits until the pipe reached EOF or `deadline` passed, and returns the bytes read.
    fn finish(&self, deadline: Instant) -> Vec<u8> {
        while !self.reader.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        self.buffer.lock().expect("not poisoned").clone()
    }
}

/// Starts reading `pipe` to EOF on a thread.
fn collect(pipe: impl Read + Send + 'static) -> Collected {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let shared = Arc::clone(&buffer);
    let reader = thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        loop {
            let chunk = match reader.fill_buf() {
                Ok([]) | Err(_) => break,
                Ok(chunk) => chunk,
            };
            let n = chunk.len();
            shared
                .lock()
                .expect("not poisoned")
                .extend_from_slice(chunk);
            reader.consume(n);
        }
    });
    Collected { buffer, reader }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_bounded_captures_output() {
        let output = run_bounded(
            Command::new("sh").args(["-c", "echo out; echo err >&2"]),
            Duration::from_secs(5),
        )
        .unwrap();
        assert!(output.status.success());
        assert_eq!(output.stdout, b"out\n");
        assert_eq!(output.stderr, b"err\n");
    }

    #[test]
    fn run_bounded_times_out() {
        let err =
            run_bounded(Command::new("sleep").arg("10"), Duration::from_millis(200)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[test]
    fn start_server_waits_for_ready_text() {
        let mut command = Command::new("sh");
        command.args(["-c", "sleep 0.1; echo now listening; sleep 10"]);
        let server = start_server(&mut command, "listening", Duration::from_secs(5)).unwrap();
        assert!(server.pid() > 0);
    }

    #[test]
    fn start_server_reports_early_exit() {
        let mut command = Command::new("sh");
        command.args(["-c", "echo broken >&2; exit 3"]);
        let err = start_server(&mut command, "listening", Duration::from_secs(5)).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("broken"), "{message}");
    }

    #[test]
    fn run_checked_reports_stderr() {
        let err = run_checked(
            Command::new("sh").args(["-c", "echo no such device >&2; exit 1"]),
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert!(err.to_string().contains("no such device"), "{err}");
    }

    #[test]
    fn one_line_joins_lines() {
        assert_eq!(one_line("a\n\n  b  \n"), "a; b");
        assert_eq!(one_line("\n"), "(empty)");
    }
}
