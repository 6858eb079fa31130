//! A `netcon-dp` process started for one run, with its TAP in a [`Netns`], stopped on drop.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use super::{Netns, binary_path, next_id, stop_child};

/// The line `netcon-dp` prints on stdout once it serves RPCs.
const READY_LINE: &str = "netcon-dp ready";

/// How long [`Dataplane::start`] waits for the ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Linux's limit on interface names, without the terminating NUL (IFNAMSIZ - 1).
const MAX_IFNAME_LEN: usize = 15;

/// The command line of one `netcon-dp`.
#[derive(Debug, Clone)]
pub struct DataplaneOptions {
    /// The TAP device name, at most 15 bytes.
    pub tap: String,
    /// The namespace the TAP is moved into.
    pub netns: String,
    /// The stack's own address in CIDR form, such as `10.77.0.2/24`.
    pub address: String,
    /// The kernel side's address inside the namespace, such as `10.77.0.1/24`.
    pub peer_address: String,
    /// The stack's IPv6 address in CIDR form, such as `fd00::2/64` (`--address6`), if any.
    pub address6: Option<String>,
    /// The kernel side's IPv6 address inside the namespace, such as `fd00::1/64`
    /// (`--peer-address6`), if any.
    pub peer_address6: Option<String>,
    /// The control socket path.
    pub socket: PathBuf,
    /// The link MTU in bytes.
    pub mtu: u32,
    /// The number of worker threads.
    pub workers: usize,
    /// More arguments, appended after the ones above.
    pub extra_args: Vec<String>,
}

impl DataplaneOptions {
    /// Returns options for a `netcon-dp` whose TAP goes into `netns`, with a TAP name and a
    /// control socket path unique to this process and call, addresses 10.77.0.2/24 and
    /// fd00::2/64 (stack) and 10.77.0.1/24 and fd00::1/64 (kernel peer), MTU 1500 and one
    /// worker.
    pub fn for_netns(netns: &Netns) -> DataplaneOptions {
        let id = next_id();
        let pid = std::process::id();
        let tap = tap_name(pid, id);
        let socket = std::env::temp_dir()
            .join(format!("netcon-{pid}-{id}"))
            .join("control.sock");
        DataplaneOptions {
            tap,
            netns: netns.name().to_owned(),
            address: "10.77.0.2/24".to_owned(),
            peer_address: "10.77.0.1/24".to_owned(),
            address6: Some("fd00::2/64".to_owned()),
            peer_address6: Some("fd00::1/64".to_owned()),
            socket,
            mtu: 1500,
            workers: 1,
            extra_args: Vec::new(),
        }
    }

    /// Returns the arguments `netcon-dp` is started with.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![
            "--tap".to_owned(),
            self.tap.clone(),
            "--netns".to_owned(),
            self.netns.clone(),
            "--address".to_owned(),
            self.address.clone(),
            "--peer-address".to_owned(),
            self.peer_address.clone(),
            "--socket".to_owned(),
            self.socket.display().to_string(),
            "--mtu".to_owned(),
            self.mtu.to_string(),
            "--workers".to_owned(),
            self.workers.to_string(),
        ];
        if let Some(address6) = &self.address6 {
            args.extend(["--address6".to_owned(), address6.clone()]);
        }
        if let Some(peer_address6) = &self.peer_address6 {
            args.extend(["--peer-address6".to_owned(), peer_address6.clone()]);
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }
}

/// A running `netcon-dp`. Dropping it stops the process (SIGTERM, then SIGKILL after 5 s) and
/// removes the files it was given.
#[derive(Debug)]
pub struct Dataplane {
    child: Option<Child>,
    options: DataplaneOptions,
    /// A private directory holding the stderr file, removed on drop.
    run_dir: PathBuf,
    stderr_path: PathBuf,
    /// The control socket's directory when `start` created it, removed on drop.
    created_socket_dir: Option<PathBuf>,
}

impl Dataplane {
    /// Starts `netcon-dp` with `options` and waits up to 10 s for its ready line.
    ///
    /// Returns an error, with the process's stderr, when the binary is missing, when it exits
    /// before it is ready, or when the wait times out (the process is stopped then).
    pub fn start(options: &DataplaneOptions) -> io::Result<Dataplane> {
        let program = binary_path("netcon-dp");
        if !program.exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "netcon-dp not found at {}; build it with `cargo build --workspace`",
                    program.display()
                ),
            ));
        }

        let run_dir =
            std::env::temp_dir().join(format!("netcon-dp-{}-{}", std::process::id(), next_id()));
        fs::create_dir(&run_dir)?;
        let stderr_path = run_dir.join("stderr");
        let mut dataplane = Dataplane {
            child: None,
            options: options.clone(),
            run_dir,
            stderr_path,
            created_socket_dir: None,
        };
        dataplane.created_socket_dir = create_socket_dir(&options.socket)?;

        let mut child = Command::new(&program)
            .args(options.args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&dataplane.stderr_path)?)
            .spawn()
            .map_err(|err| {
                io::Error::new(
                    err.kind(),
                    format!("cannot start {}: {err}", program.display()),
                )
            })?;
        let stdout = child.stdout.take().expect("stdout is piped");
        dataplane.child = Some(child);

        let lines = forward_lines(stdout);
        dataplane.wait_ready(&lines)?;
        Ok(dataplane)
    }

    /// Waits for the ready line; the stdout thread keeps draining stdout afterwards.
    fn wait_ready(&mut self, lines: &Receiver<String>) -> io::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match lines.recv_timeout(Duration::from_millis(50)) {
                Ok(line) if line.trim_end() == READY_LINE => return Ok(()),
                Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                // stdout closed: the process is exiting, so the status check below reports it.
                Err(RecvTimeoutError::Disconnected) => thread::sleep(Duration::from_millis(20)),
            }
            if let Some(status) = self.try_wait()? {
                return Err(self.start_error(&format!("netcon-dp exited ({status}) before ready")));
            }
            if Instant::now() >= deadline {
                let message = format!("netcon-dp printed no ready line within {READY_TIMEOUT:?}");
                return Err(self.start_error(&message));
            }
        }
    }

    fn start_error(&self, message: &str) -> io::Error {
        io::Error::other(format!(
            "{message}; command: netcon-dp {}; stderr:\n{}",
            self.options.args().join(" "),
            self.stderr_text()
        ))
    }

    /// Returns the control socket path.
    pub fn socket_path(&self) -> &Path {
        &self.options.socket
    }

    /// Returns the options the process was started with.
    pub fn options(&self) -> &DataplaneOptions {
        &self.options
    }

    /// Returns the process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Returns the number of open fds of the process (entries in `/proc/PID/fd`), or 0 when
    /// that directory cannot be read (the process has exited).
    pub fn fd_count(&self) -> usize {
        fs::read_dir(format!("/proc/{}/fd", self.pid())).map_or(0, |entries| entries.count())
    }

    /// Returns what the process wrote on stderr so far.
    pub fn stderr_text(&self) -> String {
        fs::read(&self.stderr_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_else(|err| format!("(cannot read {}: {err})", self.stderr_path.display()))
    }

    /// Returns the exit status when the process has exited, without blocking.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        match self.child.as_mut() {
            Some(child) => child.try_wait(),
            None => Ok(None),
        }
    }

    /// Stops the process (SIGTERM, then SIGKILL after 5 s), reaps it and returns its status.
    pub fn stop(mut self) -> io::Result<ExitStatus> {
        let mut child = self
            .child
            .take()
            .expect("the child is present until stop or drop");
        stop_child(&mut child)
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take()
            && let Err(err) = stop_child(&mut child)
        {
            eprintln!("warning: cannot stop netcon-dp (pid {}): {err}", child.id());
        }
        // netcon-dp removes its socket on SIGTERM; this covers a killed or crashed one.
        let _ = fs::remove_file(&self.options.socket);
        if let Some(dir) = &self.created_socket_dir {
            let _ = fs::remove_dir(dir);
        }
        let _ = fs::remove_dir_all(&self.run_dir);
    }
}

/// Returns a TAP name made of `pid` and `id`, at most 15 bytes long.
fn tap_name(pid: u32, id: u32) -> String {
    // "nc", up to 6 hex digits of the pid (pid_max is at most 2^22), "t" and at most 6 hex
    // digits of the id.
    let name = format!("nc{:x}t{:x}", pid % 0x100_0000, id % 0x100_0000);
    debug_assert!(name.len() <= MAX_IFNAME_LEN);
    name
}

/// Creates the socket's parent directory when it is missing, and returns it in that case.
fn create_socket_dir(socket: &Path) -> io::Result<Option<PathBuf>> {
    let Some(dir) = socket.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(None);
    };
    if dir.exists() {
        return Ok(None);
    }
    fs::create_dir(dir)?;
    Ok(Some(dir.to_path_buf()))
}

/// Sends each stdout line on the returned channel from a thread that reads until EOF.
fn forward_lines(stdout: ChildStdout) -> Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // The receiver stops listening after the ready line. Reading on keeps netcon-dp from
            // blocking on a full pipe.
            let _ = sender.send(line);
        }
    });
    receiver
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_name_fits_ifnamsiz() {
        // pid_max is at most 2^22 on Linux.
        let longest = tap_name(1 << 22, u32::MAX);
        assert!(longest.len() <= MAX_IFNAME_LEN, "{longest} is too long");
    }

    #[test]
    fn tap_names_differ_by_id() {
        assert_ne!(tap_name(4242, 1), tap_name(4242, 2));
    }

    #[test]
    fn args_end_with_extra_args() {
        let mut options = DataplaneOptions {
            tap: "nctap".to_owned(),
            netns: "ns".to_owned(),
            address: "10.77.0.2/24".to_owned(),
            peer_address: "10.77.0.1/24".to_owned(),
            address6: Some("fd00::2/64".to_owned()),
            peer_address6: None,
            socket: PathBuf::from("/tmp/x.sock"),
            mtu: 9000,
            workers: 2,
            extra_args: vec!["--tcp-buffer".to_owned(), "65536".to_owned()],
        };
        let args = options.args();
        assert_eq!(args[..2], ["--tap", "nctap"]);
        assert!(args.windows(2).any(|pair| pair == ["--mtu", "9000"]));
        assert!(args.windows(2).any(|pair| pair == ["--workers", "2"]));
        assert!(
            args.windows(2)
                .any(|pair| pair == ["--address6", "fd00::2/64"])
        );
        assert!(!args.iter().any(|arg| arg == "--peer-address6"));
        assert_eq!(args[args.len() - 2..], ["--tcp-buffer", "65536"]);

        options.extra_args.clear();
        options.address6 = None;
        assert_eq!(options.args().last().map(String::as_str), Some("2"));
    }
}
