//! Configuring the kernel side of the TAP with iproute2's `ip` command: its MTU, moving it into
//! a network namespace (the TAP fd stays valid after the move), its address, the bridge it
//! joins, and bringing it up; and reading how many queues other processes have attached.

use std::process::Command;
use std::time::{Duration, Instant};

use smoltcp::wire::{Ipv4Cidr, Ipv6Cidr};

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

/// Runs `ip [-n NETNS] ARGS`, so `netns: None` acts on the caller's namespace.
fn ip(netns: Option<&str>, args: &[&str]) -> Result<(), NetnsError> {
    let mut full: Vec<&str> = Vec::with_capacity(args.len() + 2);
    if let Some(netns) = netns {
        full.extend(["-n", netns]);
    }
    full.extend_from_slice(args);
    let step = format!("ip {}", full.join(" "));
    let output = Command::new("ip")
        .args(&full)
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

/// Returns how many queues are attached to the multi-queue TAP `tap` in the caller's
/// namespace, from the `numqueues` that `ip -details -json link show` reports (the kernel's
/// IFLA_TUN_NUM_QUEUES). `None` when `ip` cannot tell (an older kernel or iproute2).
pub fn attached_queues(tap: &str) -> Option<u32> {
    let output = Command::new("ip")
        .args(["-details", "-json", "link", "show", "dev", tap])
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    parse_numqueues(&String::from_utf8_lossy(&output.stdout))
}

/// Extracts the number after `"numqueues":` from `ip -json` output.
fn parse_numqueues(json: &str) -> Option<u32> {
    let rest = &json[json.find("\"numqueues\":")? + "\"numqueues\":".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Sets the kernel side's MTU of `tap` (in the caller's namespace), so the kernel's TCP uses
/// the same segment size as the stack.
pub fn set_mtu(tap: &str, mtu: u32) -> Result<(), NetnsError> {
    ip(None, &["link", "set", "dev", tap, "mtu", &mtu.to_string()])
}

/// Moves `tap` into the existing namespace `netns`, gives the kernel side `peer` and `peer6`
/// when set, and brings the namespace's loopback up. The TAP itself stays down until
/// [`bring_up`]. The IPv6 address skips duplicate address detection (`nodad`), so the kernel
/// uses it at once instead of after a second of probing; the stack answers no probe for it.
pub fn move_tap(
    tap: &str,
    netns: &str,
    peer: Option<Ipv4Cidr>,
    peer6: Option<Ipv6Cidr>,
) -> Result<(), NetnsError> {
    move_into(tap, netns)?;
    if let Some(peer) = peer {
        ip(Some(netns), &["addr", "add", &peer.to_string(), "dev", tap])?;
    }
    if let Some(peer6) = peer6 {
        let address = peer6.to_string();
        ip(Some(netns), &["addr", "add", &address, "dev", tap, "nodad"])?;
    }
    ip(Some(netns), &["link", "set", "dev", "lo", "up"])
}

/// Where `ip netns add` makes the named network namespaces that `--netns` refers to.
const NETNS_DIR: &str = "/run/netns";

/// How long a move waits for an interface of the TAP's name to leave the namespace. The TAP of
/// a netcon-dp that has just stopped lingers there for a moment after its fds are closed.
const NAME_TAKEN_WAIT: Duration = Duration::from_secs(3);

/// Moves `tap` into `netns`, waiting up to [`NAME_TAKEN_WAIT`] while an interface of the same
/// name is still there.
fn move_into(tap: &str, netns: &str) -> Result<(), NetnsError> {
    if netns.contains('/') || !std::path::Path::new(NETNS_DIR).join(netns).exists() {
        return Err(NetnsError {
            step: format!("ip link set dev {tap} netns {netns}"),
            detail: format!(
                "no network namespace {netns:?} in {NETNS_DIR}; create it with `ip netns add \
                 {netns}`"
            ),
        });
    }
    let deadline = Instant::now() + NAME_TAKEN_WAIT;
    loop {
        let error = match ip(None, &["link", "set", "dev", tap, "netns", netns]) {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        if !error.detail.contains("same name exists") {
            return Err(error);
        }
        if Instant::now() >= deadline {
            let detail = format!(
                "{}; namespace {netns} still has an interface {tap} after {NAME_TAKEN_WAIT:?}: \
                 stop the netcon-dp that uses it, or give this one another name with --tap",
                error.detail
            );
            return Err(NetnsError {
                step: error.step,
                detail,
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Makes `tap` a port of the existing bridge `bridge`, in `netns` or in the caller's namespace.
/// Fails with a hint when no interface of that name exists there.
pub fn join_bridge(tap: &str, netns: Option<&str>, bridge: &str) -> Result<(), NetnsError> {
    if let Err(error) = ip(netns, &["link", "show", "dev", bridge]) {
        let place = netns.map_or_else(
            || "this namespace".to_owned(),
            |ns| format!("namespace {ns}"),
        );
        let create = match netns {
            Some(ns) => format!("ip -n {ns} link add {bridge} type bridge"),
            None => format!("ip link add {bridge} type bridge"),
        };
        return Err(NetnsError {
            step: error.step,
            detail: format!(
                "no bridge {bridge} in {place} ({}); create it first: {create}",
                error.detail
            ),
        });
    }
    ip(netns, &["link", "set", "dev", tap, "master", bridge])
}

/// Brings `tap` up, in `netns` or in the caller's namespace.
pub fn bring_up(tap: &str, netns: Option<&str>) -> Result<(), NetnsError> {
    ip(netns, &["link", "set", "dev", tap, "up"])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numqueues_from_ip_json() {
        let json = r#"[{"ifname":"nc0","linkinfo":{"info_kind":"tun","info_data":{"type":"tap","multi_queue":true,"numqueues":2,"numdisabled":0}}}]"#;
        assert_eq!(parse_numqueues(json), Some(2));
        assert_eq!(parse_numqueues(r#"[{"ifname":"veth0"}]"#), None);
    }
}
