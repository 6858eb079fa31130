//! Moving the TAP interface into a network namespace and configuring its kernel side, with
//! iproute2's `ip` command (the TAP fd stays valid after the move).

use std::process::Command;

use smoltcp::wire::Ipv4Cidr;

/// Why the namespace set-up failed.
#[derive(Debug)]
pub struct NetnsError {
    pub step: String,
    pub detail: String,
}

impl std::fmt::Display for NetnsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` failed: {}", self.step, self.detail)
    }
}

impl std::error::Error for NetnsError {}

fn ip(args: &[&str]) -> Result<(), NetnsError> {
    let step = format!("ip {}", args.join(" "));
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| NetnsError {
            step: step.clone(),
            detail: format!("{e} (is iproute2 installed?)"),
        })?;
    if output.status.success() {
        return Ok(());
    }
    let detail = String::from_utf8_lossy(&output.stderr).trim().to_string();
    Err(NetnsError { step, detail })
}

/// Sets the kernel side's MTU of `tap` (in the caller's namespace), so the kernel's TCP uses
/// the same segment size as the stack.
pub fn set_mtu(tap: &str, mtu: u32) -> Result<(), NetnsError> {
    ip(&["link", "set", "dev", tap, "mtu", &mtu.to_string()])
}

/// Moves `tap` into the existing namespace `netns`, gives the kernel side `peer` and brings the
/// link and the namespace's loopback up.
pub fn move_tap(tap: &str, netns: &str, peer: Option<Ipv4Cidr>) -> Result<(), NetnsError> {
    ip(&["link", "set", "dev", tap, "netns", netns])?;
    if let Some(peer) = peer {
        ip(&["-n", netns, "addr", "add", &peer.to_string(), "dev", tap])?;
    }
    ip(&["-n", netns, "link", "set", "dev", tap, "up"])?;
    ip(&["-n", netns, "link", "set", "dev", "lo", "up"])
}

/// Brings `tap` up in the caller's namespace (attached or created without `--netns`).
pub fn bring_up(tap: &str) -> Result<(), NetnsError> {
    ip(&["link", "set", "dev", tap, "up"])
}
