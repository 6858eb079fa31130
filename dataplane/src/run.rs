//! Start-up and shutdown of netcon-dp: TAP, control socket, workers, then the control loop.

mod attach;

pub use attach::{Privileges, TapAccessError};

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use smoltcp::phy::Medium;

use crate::config::{Args, ConfigError, MediumArg};
use crate::registry::Registry;
use crate::service::{ControlSocket, ControlSocketError, LinkFacts, Service};
use crate::sys::socket::eventfd;
use crate::sys::tap::Medium as TapMedium;
use crate::worker::{self, CompletionSender, StackConfig};

/// Why netcon-dp could not start or stopped with an error.
#[derive(Debug)]
pub enum RunError {
    Config(ConfigError),
    Control(ControlSocketError),
    Tap(TapAccessError),
    Io(&'static str, std::io::Error),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Config(e) => e.fmt(f),
            RunError::Control(e) => e.fmt(f),
            RunError::Tap(e) => e.fmt(f),
            RunError::Io(what, e) => write!(f, "{what}: {e}"),
        }
    }
}

impl std::error::Error for RunError {}

/// The fd limit assumed when it cannot be read: Linux's default soft limit.
const FALLBACK_FD_LIMIT: u64 = 1024;

/// Runs netcon-dp until `stop` is set. Prints `netcon-dp ready` on stdout once it serves.
pub fn run(args: &Args, stop: &AtomicBool) -> Result<(), RunError> {
    args.validate().map_err(RunError::Config)?;
    args.check_cpus().map_err(RunError::Config)?;
    let fd_limit = match crate::sys::raise_fd_limit() {
        Ok(limit) => limit,
        Err(e) => {
            log::warn!("could not raise the fd limit ({e}); connections may hit EMFILE early");
            FALLBACK_FD_LIMIT
        }
    };
    let max_connections = args.max_connections.map_or_else(
        || crate::limits::default_max_connections(fd_limit),
        |max| max as usize,
    );

    let socket_path = args
        .socket
        .clone()
        .unwrap_or_else(netcon_control::path::default_socket_path);
    crate::service::clear_stale_socket(&socket_path);

    // The TAP comes first: without it nothing else is worth setting up.
    let (medium, tap_medium) = match args.medium {
        MediumArg::Ethernet => (Medium::Ethernet, TapMedium::Ethernet),
        MediumArg::Ip => (Medium::Ip, TapMedium::Ip),
    };
    let privileges = Privileges::current();
    let queues = attach::open_queues(args, tap_medium, privileges).map_err(RunError::Tap)?;
    steer_to_owners(&queues, medium);
    attach::configure_link(args, privileges).map_err(RunError::Tap)?;

    let allowed = allowed_uids(args);
    let other_users = path_users(&allowed);
    let control = ControlSocket::bind(&socket_path, args.socket.is_none(), &other_users)
        .map_err(RunError::Control)?;

    let stack = StackConfig {
        medium,
        mtu: args.mtu as usize,
        mac: mac_address(),
        address: args.address.address(),
        prefix_len: args.address.prefix_len(),
        gateway: args.gateway,
        address6: args
            .address6
            .map(|cidr| (cidr.address(), cidr.prefix_len())),
        gateway6: args.gateway6,
        tcp_buffer: args.tcp_buffer as usize,
        offload: args.offload.enabled(),
    };
    let registry = Arc::new(Registry::with_limit(max_connections));
    let (completion_tx, completion_rx) = crossbeam::channel::unbounded();
    let completion_wake =
        Arc::new(eventfd().map_err(|e| RunError::Io("cannot create eventfd", e))?);
    let completions = CompletionSender {
        channel: completion_tx,
        wake: completion_wake.clone(),
    };
    let workers = spawn_workers(args, queues, &stack, &registry, &completions)?;

    let service = Service::new(
        control,
        registry,
        workers,
        (completion_rx, completion_wake),
        allowed,
        stack.address,
        args.mtu,
    )
    .map_err(|e| RunError::Io("cannot start the control thread", e))?
    .with_dns(args.dns)
    .with_ipv6(stack.own_ipv6())
    .with_link(LinkFacts {
        mac: (stack.medium == Medium::Ethernet).then_some(stack.mac),
    })
    .with_routes(stack.routes())
    .with_loopback(args.loopback);
    log::info!(
        "serving {} on {} ({}{}, mac {}{}{}, mtu {}, workers {}, uid {})",
        socket_path.display(),
        args.tap,
        args.address,
        args.address6
            .map(|cidr| format!(" and {cidr}"))
            .unwrap_or_default(),
        format_mac(stack.mac),
        args.netns
            .as_deref()
            .map(|ns| format!(", in namespace {ns}"))
            .unwrap_or_default(),
        args.bridge
            .as_deref()
            .map(|bridge| format!(", on bridge {bridge}"))
            .unwrap_or_default(),
        args.mtu,
        args.worker_count(),
        privileges.uid,
    );
    log::info!("at most {max_connections} sockets open at once (fd limit {fd_limit})");
    if let Some(dns) = args.dns {
        log::info!("programs run through netcon resolve names with the DNS server {dns}");
    }
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "netcon-dp ready");
    let _ = stdout.flush();
    service
        .run(stop)
        .map_err(|e| RunError::Io("control loop failed", e))
}

/// Has the kernel put every frame on the queue of the worker that owns it. Without that the
/// workers hand frames to each other, which works but costs a copy and a wake-up each.
fn steer_to_owners(queues: &[OwnedFd], medium: Medium) {
    let Some(queue) = queues.first().filter(|_| queues.len() > 1) else {
        return;
    };
    let l2_len = if medium == Medium::Ethernet { 14 } else { 0 };
    let program = crate::steer_bpf::program(l2_len, queues.len());
    match crate::sys::bpf::attach_steering(queue.as_fd(), &program) {
        Ok(()) => log::debug!("the TAP steers frames to their workers itself"),
        Err(e) => log::info!(
            "the TAP does not steer frames to their workers ({e}); workers hand frames over \
             instead, which needs CAP_BPF or unprivileged eBPF"
        ),
    }
}

fn spawn_workers(
    args: &Args,
    queues: Vec<OwnedFd>,
    stack: &StackConfig,
    registry: &Arc<Registry>,
    completions: &CompletionSender,
) -> Result<Vec<worker::WorkerHandle>, RunError> {
    // Workers are pinned only on request. A worker pinned to a core it shares with the
    // program and the kernel peer cannot leave it when they keep it busy. On a 2-core VM,
    // iperf3 with 4 streams moved 4 to 17% less with worker i pinned to core i than unpinned,
    // with one worker and with two, and netcon-dp spent up to 14% more CPU per GB.
    let cores: Vec<Option<core_affinity::CoreId>> = (0..queues.len())
        .map(|index| args.cpus.get(index).map(|&id| core_affinity::CoreId { id }))
        .collect();
    worker::spawn_all(queues, stack, &cores, registry, completions)
        .map_err(|e| RunError::Io("cannot start the workers", e))
}

/// Returns the allowed uids that need an ACL entry to open the control socket's path: all but
/// netcon-dp's own (the owner) and root (which needs no permission).
fn path_users(allowed: &[u32]) -> Vec<u32> {
    // SAFETY: geteuid has no preconditions.
    let own = unsafe { libc::geteuid() };
    allowed
        .iter()
        .copied()
        .filter(|&uid| uid != own && uid != 0)
        .collect()
}

/// Returns the uids that may use the control socket: netcon-dp's own, root, and those of
/// `--allow-uid`. Leaving out the first two would protect nothing, since both can inspect and
/// control netcon-dp itself.
fn allowed_uids(args: &Args) -> Vec<u32> {
    // SAFETY: geteuid has no preconditions.
    let own = unsafe { libc::geteuid() };
    let mut allowed = vec![own, 0];
    for &uid in &args.allow_uids {
        if !allowed.contains(&uid) {
            allowed.push(uid);
        }
    }
    allowed
}

/// Formats a MAC the way iproute2 prints it (`02:6e:63:00:12:34`).
fn format_mac(mac: [u8; 6]) -> String {
    let bytes: Vec<String> = mac.iter().map(|byte| format!("{byte:02x}")).collect();
    bytes.join(":")
}

/// A locally administered unicast MAC, different per process.
fn mac_address() -> [u8; 6] {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() } as u32;
    let [a, b, c, _] = pid.to_be_bytes();
    [0x02, 0x6e, 0x63, a ^ c, b, pid as u8]
}
