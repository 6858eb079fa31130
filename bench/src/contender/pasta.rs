//! pasta: it runs in a "host" namespace made for the run and attaches to a client namespace,
//! whose traffic becomes sockets of the host namespace. Clients reach the host namespace's
//! loopback, where the servers listen, through the default gateway's address.

use std::net::Ipv4Addr;
use std::time::Duration;

use netcon_tools::topology::Netns;

use super::site::{ClientSide, Guard, Site, has_address, ip_in, netns_path, prepare_netns};
use crate::StepError;
use netcon_tools::child_process::{Process, wait_until};

/// The host namespace's address, which pasta copies into the client namespace.
const HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 79, 0, 1);
const HOST_CIDR: &str = "10.79.0.1/24";

/// The host namespace's default gateway, which pasta maps to the host namespace's loopback.
/// No interface in the host namespace has this address.
const GATEWAY_IP: &str = "10.79.0.254";
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 79, 0, 254);

/// The interface in the host namespace that carries the default route. pasta gives the
/// client namespace's TAP the same name.
const EXTERNAL_DEV: &str = "ext0";

/// How long pasta gets to configure the client namespace.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts pasta between a new host namespace and a new client namespace.
pub(super) fn set_up(mtu: u32) -> Result<Site, StepError> {
    let host = Netns::create("ncbench-pasta-host")?;
    let client = Netns::create("ncbench-pasta-client")?;
    prepare_netns(&host)?;
    prepare_netns(&client)?;
    add_default_route(&host)?;

    // passt 2023-03 needs `--runas 0` as root, or it fails to set up its user mappings.
    let mut command = host.command("pasta");
    command.args(["--runas", "0", "--config-net", "-4", "-q", "-f"]);
    command.args(["-m", &mtu.to_string(), "--netns", &netns_path(&client)]);
    let mut pasta = Process::spawn(&mut command, "pasta")?;
    wait_until(&mut pasta, "pasta", READY_TIMEOUT, || {
        has_address(&client, EXTERNAL_DEV, HOST_IP)
    })?;

    Ok(Site {
        server_netns: host.name().to_owned(),
        client: ClientSide::Netns(client.name().to_owned()),
        server_ip: Ipv4Addr::LOCALHOST,
        target_ip: GATEWAY,
        guards: vec![
            Guard::Netns(host),
            Guard::Netns(client),
            Guard::Process(pasta),
        ],
    })
}

/// Gives `host` a default route over a veth pair whose both ends stay in `host`. pasta copies
/// the addresses and routes of the interface with the default route into the client
/// namespace, and refuses to start ("No external routable interface") without one.
fn add_default_route(host: &Netns) -> Result<(), StepError> {
    ip_in(
        host,
        &[
            "link",
            "add",
            EXTERNAL_DEV,
            "type",
            "veth",
            "peer",
            "name",
            "ext1",
        ],
    )?;
    ip_in(host, &["addr", "add", HOST_CIDR, "dev", EXTERNAL_DEV])?;
    ip_in(host, &["link", "set", EXTERNAL_DEV, "up"])?;
    ip_in(host, &["link", "set", "ext1", "up"])?;
    ip_in(host, &["route", "add", "default", "via", GATEWAY_IP])?;
    Ok(())
}
