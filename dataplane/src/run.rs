//! Start-up and shutdown of netcon-dp: control socket, TAP, workers, then the control loop.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use smoltcp::phy::Medium;

use crate::config::{Args, ConfigError, MediumArg};
use crate::netns::{self, NetnsError};
use crate::registry::Registry;
use crate::service::{ControlSocket, ControlSocketError, Service};
use crate::sys::socket::eventfd;
use crate::sys::tap::{self, Medium as TapMedium};
use crate::worker::{self, CompletionSender, StackConfig};

/// Why netcon-dp could not start or stopped with an error.
#[derive(Debug)]
pub enum RunError {
    Config(ConfigError),
    Control(ControlSocketError),
    Tap { name: String, error: std::io::Error },
    Netns(NetnsError),
    Io(&'static str, std::io::Error),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Config(e) => e.fmt(f),
            RunError::Control(e) => e.fmt(f),
            RunError::Tap { name, error } if error.raw_os_error() == Some(libc::EPERM) => write!(
                f,
                "cannot create or attach TAP {name}: {error}; run netcon-dp as root, or have root \
                 create it for you first: ip tuntap add dev {name} mode tap user $(id -u)"
            ),
            RunError::Tap { name, error } => write!(f, "cannot open TAP {name}: {error}"),
            RunError::Netns(e) => write!(f, "cannot set up the namespace: {e}"),
            RunError::Io(what, e) => write!(f, "{what}: {e}"),
        }
    }
}

impl std::error::Error for RunError {}

/// Runs netcon-dp until `stop` is set. Prints `netcon-dp ready` on stdout once it serves.
pub fn run(args: &Args, stop: &AtomicBool) -> Result<(), RunError> {
    args.validate().map_err(RunError::Config)?;
    match crate::sys::raise_fd_limit() {
        Ok(limit) => log::debug!("fd limit {limit}"),
        Err(e) => {
            log::warn!("could not raise the fd limit ({e}); connections may hit EMFILE early")
        }
    }
    let socket_path = args
        .socket
        .clone()
        .unwrap_or_else(netcon_control::path::default_socket_path);
    let control = ControlSocket::bind(&socket_path).map_err(RunError::Control)?;

    let (medium, tap_medium) = match args.medium {
        MediumArg::Ethernet => (Medium::Ethernet, TapMedium::Ethernet),
        MediumArg::Ip => (Medium::Ip, TapMedium::Ip),
    };
    // One queue per worker; a single worker keeps a plain TAP, so it can attach to one that
    // was created without multi_queue.
    let workers = args.worker_count();
    let multi_queue = workers > 1;
    let mut queues = Vec::with_capacity(workers);
    for _ in 0..workers {
        let queue = tap::open_queue(&args.tap, tap_medium, multi_queue, args.offload.enabled())
            .map_err(|error| RunError::Tap {
                name: args.tap.clone(),
                error,
            })?;
        queues.push(queue);
    }
    if let Err(e) = netns::set_mtu(&args.tap, args.mtu) {
        log::warn!(
            "could not set the MTU of {} to {} ({e}); set it yourself",
            args.tap,
            args.mtu
        );
    }
    match &args.netns {
        Some(ns) => netns::move_tap(&args.tap, ns, args.peer_address).map_err(RunError::Netns)?,
        None => {
            if let Err(e) = netns::bring_up(&args.tap) {
                log::warn!(
                    "could not bring {} up ({e}); bring it up yourself",
                    args.tap
                );
            }
        }
    }

    let stack = StackConfig {
        medium,
        mtu: args.mtu as usize,
        mac: mac_address(),
        address: args.address.address(),
        prefix_len: args.address.prefix_len(),
        gateway: args.gateway,
        tcp_buffer: args.tcp_buffer as usize,
        offload: args.offload.enabled(),
    };
    let registry = Arc::new(Registry::default());
    let (completion_tx, completion_rx) = crossbeam::channel::unbounded();
    let completion_wake =
        Arc::new(eventfd().map_err(|e| RunError::Io("cannot create eventfd", e))?);
    let completions = CompletionSender {
        channel: completion_tx,
        wake: completion_wake.clone(),
    };
    let workers = spawn_workers(args, queues, &stack, &registry, &completions)?;

    let allowed = allowed_uids(args);
    let service = Service::new(
        control,
        registry,
        workers,
        (completion_rx, completion_wake),
        allowed,
        stack.address,
        args.mtu,
    )
    .map_err(|e| RunError::Io("cannot start the control thread", e))?;
    log::info!(
        "serving {} on {} ({} {}, mtu {})",
        socket_path.display(),
        args.tap,
        args.address,
        args.netns
            .as_deref()
            .map(|ns| format!("in namespace {ns}"))
            .unwrap_or_default(),
        args.mtu
    );
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "netcon-dp ready");
    let _ = stdout.flush();
    service
        .run(stop)
        .map_err(|e| RunError::Io("control loop failed", e))
}

fn spawn_workers(
    args: &Args,
    queues: Vec<OwnedFd>,
    stack: &StackConfig,
    registry: &Arc<Registry>,
    completions: &CompletionSender,
) -> Result<Vec<worker::WorkerHandle>, RunError> {
    let available = core_affinity::get_core_ids().unwrap_or_default();
    let cores: Vec<Option<core_affinity::CoreId>> = (0..queues.len())
        .map(|index| match args.cpus.get(index) {
            Some(&id) => Some(core_affinity::CoreId { id }),
            None => available.get(index % available.len().max(1)).copied(),
        })
        .collect();
    worker::spawn_all(queues, stack, &cores, registry, completions)
        .map_err(|e| RunError::Io("cannot start the workers", e))
}

fn allowed_uids(args: &Args) -> Vec<u32> {
    if !args.allow_uids.is_empty() {
        return args.allow_uids.clone();
    }
    // SAFETY: geteuid has no preconditions.
    let own = unsafe { libc::geteuid() };
    vec![own, 0]
}

/// A locally administered unicast MAC, different per process.
fn mac_address() -> [u8; 6] {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() } as u32;
    let [a, b, c, _] = pid.to_be_bytes();
    [0x02, 0x6e, 0x63, a ^ c, b, pid as u8]
}
