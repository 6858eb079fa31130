//! A network namespace made for one run and deleted when dropped.

use std::io;
use std::process::Command;

/// A uniquely named network namespace (`ip netns add`), deleted (`ip netns delete`) on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace `{prefix}-{pid}-{counter}`.
    ///
    /// Blocks until `ip netns add` exits. Returns an error carrying `ip`'s stderr when it fails
    /// (for example when not run as root).
    pub fn create(prefix: &str) -> io::Result<Netns> {
        let name = format!("{prefix}-{}-{}", std::process::id(), super::next_id());
        run_ip(&["netns", "add", &name])?;
        Ok(Netns { name })
    }

    /// Returns the namespace's name, as `ip netns` and `netcon-dp --netns` take it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns a command that runs `program` inside the namespace (`ip netns exec NAME program`).
    ///
    /// `ip netns exec` execs the program in place, so the spawned child's pid is the program's.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(err) = run_ip(&["netns", "delete", &self.name]) {
            eprintln!(
                "warning: cannot delete network namespace {}: {err}",
                self.name
            );
        }
    }
}

/// Runs `ip ARGS` and turns a non-zero exit into an error holding its stderr.
fn run_ip(args: &[&str]) -> io::Result<()> {
    let output = Command::new("ip").args(args).output().map_err(|err| {
        io::Error::new(
            err.kind(),
            format!("cannot run `ip {}`: {err}", args.join(" ")),
        )
    })?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(io::Error::other(format!(
        "`ip {}` failed ({}): {}",
        args.join(" "),
        output.status,
        stderr.trim()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::require_root;

    fn netns_exists(name: &str) -> bool {
        let output = Command::new("ip").args(["netns", "list"]).output().unwrap();
        let list = String::from_utf8_lossy(&output.stdout);
        list.lines()
            .any(|line| line.split_whitespace().next() == Some(name))
    }

    #[test]
    fn netns_deleted_on_drop() {
        if !require_root("netns_deleted_on_drop") {
            return;
        }
        let netns = Netns::create("nctest").unwrap();
        let name = netns.name().to_owned();
        assert!(name.starts_with("nctest-"), "unexpected name {name}");
        assert!(netns_exists(&name), "{name} missing after create");

        let status = netns.command("true").status().unwrap();
        assert!(
            status.success(),
            "`ip netns exec {name} true` failed: {status}"
        );

        drop(netns);
        assert!(!netns_exists(&name), "{name} still listed after drop");
    }

    #[test]
    fn netns_names_unique() {
        if !require_root("netns_names_unique") {
            return;
        }
        let first = Netns::create("nctest").unwrap();
        let second = Netns::create("nctest").unwrap();
        assert_ne!(first.name(), second.name());
    }
}
