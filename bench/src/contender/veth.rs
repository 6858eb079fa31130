//! The reference: a veth pair between two namespaces, so both ends use the kernel's TCP.

use std::net::Ipv4Addr;

use netcon_tools::topology::Netns;

use super::site::{ClientSide, Guard, Site, ip_in, prepare_netns};
use crate::StepError;

const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 1);
const CLIENT_CIDR: &str = "10.78.0.2/24";
const SERVER_CIDR: &str = "10.78.0.1/24";

/// Creates a client and a server namespace joined by a veth pair with links of `mtu` bytes.
pub(super) fn set_up(mtu: u32) -> Result<Site, StepError> {
    let client = Netns::create("ncbench-veth-client")?;
    let server = Netns::create("ncbench-veth-server")?;
    ip_in(
        &client,
        &[
            "link", "add", "veth0", "type", "veth", "peer", "name", "veth1",
        ],
    )?;
    ip_in(&client, &["link", "set", "veth1", "netns", server.name()])?;

    let mtu = mtu.to_string();
    for (netns, dev, cidr) in [
        (&client, "veth0", CLIENT_CIDR),
        (&server, "veth1", SERVER_CIDR),
    ] {
        ip_in(netns, &["link", "set", dev, "mtu", &mtu])?;
        ip_in(netns, &["addr", "add", cidr, "dev", dev])?;
        ip_in(netns, &["link", "set", dev, "up"])?;
        prepare_netns(netns)?;
    }

    Ok(Site {
        server_netns: server.name().to_owned(),
        client: ClientSide::Netns(client.name().to_owned()),
        server_ip: SERVER_IP,
        target_ip: SERVER_IP,
        guards: vec![Guard::Netns(client), Guard::Netns(server)],
    })
}
