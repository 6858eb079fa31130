//! Child processes of the demo: commands run to completion and servers waited on until ready,
//! all bounded in time and stopped early when the demo is interrupted.

use std::io::{self, BufRead, BufReader, Read};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
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
/// Returns an error when it cannot start, runs longer than `timeout` or the demo is
/// interrupted; in those cases the process is stopped first.
pub fn run_bounded(command: &mut Command, timeout: Duration) -> io::Result<Output> {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut guard = ChildGuard::new(child, "demo command");
    let stdout = collect(guard.child_mut().stdout.take().expect("stdout is piped"));
    let stderr = collect(guard.child_mut().stderr.take().expect("stderr is piped"));

    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = guard.child_mut().try_wait()? {
            break status;
        }
        if signals::interrupted() {
            return Err(interrupted_error());
        }
        if Instant::now() >= deadline {
            let message = format!(
                "timed out after {timeout:?}; stderr: {}",
                stderr.text().trim()
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
    let stdout = stdout.finish(deadline);
    let stderr = stderr.finish(deadline);
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// A server process that stops on drop, with its stderr kept for error messages.
#[derive(Debug)]
pub struct Server {
    guard: ChildGuard,
    stderr: Collected,
}

impl Server {
    /// Returns the server's pid.
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// Returns what the server wrote on stderr so far.
    pub fn stderr_text(&self) -> String {
        self.stderr.text()
    }
}

/// Starts `command` and waits up to `timeout` for a stdout line containing `ready_text`.
///
/// Returns an error, with the server's stderr, when it exits first, the wait times out, or the
/// demo is interrupted; the process is stopped then.
pub fn start_server(
    command: &mut Command,
    ready_text: &str,
    timeout: Duration,
) -> io::Result<Server> {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut guard = ChildGuard::new(child, "demo server");
    let stdout = guard.child_mut().stdout.take().expect("stdout is piped");
    let stderr = collect(guard.child_mut().stderr.take().expect("stderr is piped"));
    let mut server = Server { guard, stderr };

    let (sender, lines) = mpsc::channel();
    thread::spawn(move || {
        // Reading on after the ready line keeps the server from blocking on a full pipe.
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });

    let deadline = Instant::now() + timeout;
    loop {
        match lines.recv_timeout(POLL_INTERVAL) {
            Ok(line) if line.contains(ready_text) => return Ok(server),
            Ok(_) | Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {}
        }
        if let Some(status) = server.guard.child_mut().try_wait()? {
            let message = format!(
                "exited ({status}) before ready; stderr: {}",
                server.stderr_text()
            );
            return Err(io::Error::other(message));
        }
        if signals::interrupted() {
            return Err(interrupted_error());
        }
        if Instant::now() >= deadline {
            let message = format!(
                "printed no line containing {ready_text:?} within {timeout:?}; stderr: {}",
                server.stderr_text()
            );
            return Err(io::Error::new(io::ErrorKind::TimedOut, message));
        }
    }
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
    fn finish(self, deadline: Instant) -> Vec<u8> {
        while !self.reader.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        self.buffer.lock().expect("not poisoned").clone()
    }
}

/// Starts reading `pipe` to EOF on a thread.
fn collect(mut pipe: impl Read + Send + 'static) -> Collected {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let shared = Arc::clone(&buffer);
    let reader = thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut chunk) {
            if n == 0 {
                break;
            }
            shared
                .lock()
                .expect("not poisoned")
                .extend_from_slice(&chunk[..n]);
        }
    });
    Collected { buffer, reader }
}
