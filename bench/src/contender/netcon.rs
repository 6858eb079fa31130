//! netcon: `netcon-dp` moves its TAP into a namespace holding the servers, and clients run
//! through `netcon-ctl run`, so their TCP goes through the preload and smoltcp.

use std::net::Ipv4Addr;

use netcon_tools::topology::{Dataplane, DataplaneOptions, Netns};

use super::site::{ClientSide, Guard, Site, error_line};
use crate::StepError;

/// The kernel side of the TAP, where the servers listen (the topology's default).
const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);

/// Starts `netcon-dp --mtu MTU --workers WORKERS` with its TAP in a new namespace.
///
/// When netcon-dp refuses the options, the error is its own `netcon-dp: error:` line.
pub(super) fn set_up(mtu: u32, workers: usize) -> Result<Site, StepError> {
    // netcon-dp brings up the namespace's lo itself.
    let netns = Netns::create("ncbench-netcon")?;

    let mut options = DataplaneOptions::for_netns(&netns);
    options.mtu = mtu;
    options.workers = workers;
    options.peer_address = format!("{PEER_IP}/24");
    let dataplane = Dataplane::start(&options)
        .map_err(|err| StepError::failed(error_line(&err.to_string(), "netcon-dp")))?;

    Ok(Site {
        server_netns: netns.name().to_owned(),
        client: ClientSide::Netcon(dataplane.socket_path().to_path_buf()),
        server_ip: PEER_IP,
        target_ip: PEER_IP,
        guards: vec![Guard::Netns(netns), Guard::Dataplane(dataplane)],
    })
}
