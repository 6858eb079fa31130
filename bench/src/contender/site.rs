//! A contender once set up: where servers run, how clients are started, and the guards that
//! remove its namespaces and processes.

use std::ffi::OsStr;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use netcon_tools::topology::{Dataplane, Netns, netcon_command};

use netcon_tools::child_process::{Process, one_line, run_bounded, run_checked};

/// How long one `ip` or `sysctl` call of the setup may take.
const SETUP_COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// Something a [`Site`] removes when dropped.
#[derive(Debug)]
#[expect(
    dead_code,
    reason = "each value is held only so that dropping it cleans up"
)]
pub(crate) enum Guard {
    Netns(Netns),
    Process(Process),
    Dataplane(Dataplane),
}

/// The way client programs are started so they reach the servers.
#[derive(Debug)]
pub(crate) enum ClientSide {
    /// Clients run inside this namespace, on its kernel stack.
    Netns(String),
    /// Clients run through `netcon-ctl run` with this control socket.
    Netcon(PathBuf),
}

/// A contender ready for workloads. Dropping it stops its processes and deletes its
/// namespaces, in the reverse order they were made.
#[derive(Debug)]
pub struct Site {
    pub(crate) server_netns: String,
    pub(crate) client: ClientSide,
    /// The address servers listen on, in the server namespace.
    pub server_ip: Ipv4Addr,
    /// The address clients connect to.
    pub target_ip: Ipv4Addr,
    pub(crate) guards: Vec<Guard>,
}

impl Site {
    /// Returns a command that runs `program` in the server namespace.
    pub fn server_command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.server_netns]);
        command.arg(program);
        command
    }

    /// Returns a command that runs `program` as a client of this contender.
    pub fn client_command(&self, program: impl AsRef<OsStr>) -> Command {
        match &self.client {
            ClientSide::Netns(netns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns]);
                command.arg(program);
                command
            }
            ClientSide::Netcon(socket) => {
                netcon_command(socket, &program.as_ref().to_string_lossy())
            }
        }
    }

    /// Returns the pid of the contender's netcon-dp, when it has one.
    pub fn dataplane_pid(&self) -> Option<u32> {
        self.guards.iter().find_map(|guard| match guard {
            Guard::Dataplane(dataplane) => Some(dataplane.pid()),
            _ => None,
        })
    }

    /// Returns a one-line description of where clients and servers run.
    pub fn describe(&self) -> String {
        let client = match &self.client {
            ClientSide::Netns(netns) => format!("namespace {netns}"),
            ClientSide::Netcon(socket) => format!("netcon-ctl run --socket {}", socket.display()),
        };
        format!(
            "servers on {} in namespace {}, clients in {client} connecting to {}",
            self.server_ip, self.server_netns, self.target_ip
        )
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        while let Some(guard) = self.guards.pop() {
            drop(guard);
        }
    }
}

/// Runs `ip -n NETNS ARGS`, failing with `ip`'s stderr.
pub(crate) fn ip_in(netns: &Netns, args: &[&str]) -> std::io::Result<()> {
    let mut command = Command::new("ip");
    command.args(["-n", netns.name()]).args(args);
    run_checked(&mut command, SETUP_COMMAND_TIMEOUT)
}

/// Brings up `lo` and lets kernel clients in `netns` open many short connections: TIME_WAIT
/// ports are reused after 1 s and the whole port range above 1023 is used, so the
/// connection-rate workload does not run out of local ports.
pub(crate) fn prepare_netns(netns: &Netns) -> std::io::Result<()> {
    ip_in(netns, &["link", "set", "lo", "up"])?;
    for setting in [
        "net.ipv4.tcp_tw_reuse=1",
        "net.ipv4.ip_local_port_range=1024 65535",
    ] {
        let mut command = netns.command("sysctl");
        command.args(["-q", "-w", setting]);
        run_checked(&mut command, SETUP_COMMAND_TIMEOUT)?;
    }
    Ok(())
}

/// Returns whether `dev` in `netns` has the IPv4 address `address`.
pub(crate) fn has_address(netns: &Netns, dev: &str, address: Ipv4Addr) -> bool {
    let mut command = Command::new("ip");
    command.args(["-n", netns.name(), "-4", "-o", "addr", "show", "dev", dev]);
    let Ok(output) = run_bounded(&mut command, SETUP_COMMAND_TIMEOUT) else {
        return false;
    };
    let needle = format!("inet {address}/");
    String::from_utf8_lossy(&output.stdout).contains(&needle)
}

/// Returns the `/run/netns` path of `netns`, as slirp4netns and pasta take it.
pub(crate) fn netns_path(netns: &Netns) -> String {
    format!("/run/netns/{}", netns.name())
}

/// Returns the most telling part of a setup error: the `PROGRAM: error: ...` line when the
/// message contains one, else the whole message on one line.
pub(crate) fn error_line(message: &str, program: &str) -> String {
    let prefix = format!("{program}: error:");
    message
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with(&prefix))
        .map_or_else(|| one_line(message), str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_line_picks_program_error() {
        let message = "netcon-dp exited (exit status: 1) before ready; command: netcon-dp \
                       --workers 2; stderr:\nnetcon-dp: error: invalid --workers 2: only 1\n";
        assert_eq!(
            error_line(message, "netcon-dp"),
            "netcon-dp: error: invalid --workers 2: only 1"
        );
    }

    #[test]
    fn error_line_falls_back_to_message() {
        assert_eq!(error_line("a\nb", "netcon-dp"), "a; b");
    }
}
