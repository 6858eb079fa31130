//! slirp4netns: it runs in a "host" namespace made for the run and gives the client namespace
//! a TAP whose traffic becomes sockets of that host namespace. Clients reach the host
//! namespace's loopback, where the servers listen, as 10.0.2.2.

use std::net::Ipv4Addr;
use std::time::Duration;

use netcon_tools::topology::Netns;

use super::site::{ClientSide, Guard, Site, has_address, netns_path, prepare_netns};
use crate::StepError;
use netcon_tools::child_process::{Process, wait_until};

/// The address slirp4netns maps to its own namespace's loopback (`--disable-host-loopback`
/// turns that off).
const HOST_LOOPBACK_ALIAS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);

/// The address `slirp4netns --configure` gives the TAP, which shows it is ready.
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 100);

const TAP: &str = "tap0";

/// How long slirp4netns gets to configure the TAP.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts slirp4netns between a new host namespace and a new client namespace.
pub(super) fn set_up(mtu: u32) -> Result<Site, StepError> {
    let host = Netns::create("ncbench-slirp-host")?;
    let client = Netns::create("ncbench-slirp-client")?;
    prepare_netns(&host)?;
    prepare_netns(&client)?;

    let mut command = host.command("slirp4netns");
    command.args(["--configure", &format!("--mtu={mtu}"), "--netns-type=path"]);
    command.args([&netns_path(&client), TAP]);
    let mut slirp = Process::spawn(&mut command, "slirp4netns")?;
    wait_until(&mut slirp, "slirp4netns", READY_TIMEOUT, || {
        has_address(&client, TAP, CLIENT_IP)
    })?;

    Ok(Site {
        server_netns: host.name().to_owned(),
        client: ClientSide::Netns(client.name().to_owned()),
        server_ip: Ipv4Addr::LOCALHOST,
        target_ip: HOST_LOOPBACK_ALIAS,
        guards: vec![
            Guard::Netns(host),
            Guard::Netns(client),
            Guard::Process(slirp),
        ],
    })
}
