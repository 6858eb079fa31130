//! Attaching to the TAP at start-up and configuring its kernel side. netcon-dp first checks
//! that the TAP exists, has the right kind and queues, and that its owner lets this user
//! attach. So it rejects a missing TAP or a missing right at once, with the command that fixes
//! it, instead of failing later.

use std::fmt;
use std::os::fd::OwnedFd;

use crate::config::Args;
use crate::netns::{self, NetnsError};
use crate::sys::tap::{self, Inspection, Medium, QueueError, QueueStep, TapAttributes};

/// The identity and capability of netcon-dp that the checks below depend on.
#[derive(Clone, Copy, Debug)]
pub struct Privileges {
    /// The effective uid.
    pub uid: u32,
    /// CAP_NET_ADMIN, needed to create, move and configure interfaces.
    pub net_admin: bool,
}

impl Privileges {
    /// Reads this process's effective uid and capabilities.
    pub fn current() -> Privileges {
        Privileges {
            // SAFETY: geteuid has no preconditions.
            uid: unsafe { libc::geteuid() },
            net_admin: tap::has_net_admin(),
        }
    }
}

/// A reason netcon-dp cannot use the TAP.
#[derive(Debug)]
pub enum TapAccessError {
    /// The TAP does not exist, and creating it needs CAP_NET_ADMIN.
    Missing {
        tap: String,
        uid: u32,
        medium: Medium,
    },
    /// `--netns` or `--bridge` was given without CAP_NET_ADMIN.
    NeedsNetAdmin {
        option: &'static str,
        value: String,
        tap: String,
        uid: u32,
    },
    /// An interface of that name exists and is not a TUN/TAP device.
    NotTunTap { tap: String },
    /// The interface is a TUN where a TAP is needed, or the reverse.
    WrongMedium {
        tap: String,
        requested: Medium,
        found: Medium,
    },
    /// Several workers need several queues, and the TAP was created without multi_queue.
    NoMultiQueue {
        tap: String,
        uid: u32,
        medium: Medium,
        workers: usize,
    },
    /// Neither the TAP's owner nor its group lets this user attach.
    WrongOwner {
        tap: String,
        uid: u32,
        attributes: TapAttributes,
    },
    /// `/dev/net/tun` cannot be opened.
    CloneDevice { uid: u32, error: QueueError },
    /// A TAP without multi_queue already has its one queue attached.
    Busy { tap: String },
    /// Another process has queues of this multi-queue TAP, and would receive part of the
    /// frames meant for this netcon-dp.
    QueuesInUse { tap: String, queues: u32 },
    /// Any other failure of the attach.
    Attach { tap: String, error: QueueError },
    /// Moving the TAP, joining the bridge or bringing it up in the namespace failed.
    Link(NetnsError),
}

impl fmt::Display for TapAccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TapAccessError::Missing { tap, uid, medium } => write!(
                f,
                "TAP {tap} does not exist, and netcon-dp (uid {uid}) has no permission to create \
                 it (that needs CAP_NET_ADMIN); have root create it for you with `{}`, or run \
                 netcon-dp as root",
                create_command(tap, *medium, *uid)
            ),
            TapAccessError::NeedsNetAdmin {
                option,
                value,
                tap,
                uid,
            } => {
                let step = if *option == "--netns" {
                    "netns"
                } else {
                    "master"
                };
                write!(
                    f,
                    "{option} {value} needs CAP_NET_ADMIN, which netcon-dp (uid {uid}) lacks; \
                     run netcon-dp as root, or have root run `ip link set dev {tap} {step} \
                     {value}` and leave out {option}"
                )
            }
            TapAccessError::NotTunTap { tap } => write!(
                f,
                "interface {tap} exists but is not a TUN/TAP device; choose another --tap"
            ),
            TapAccessError::WrongMedium {
                tap,
                requested,
                found,
            } => {
                let medium = match found {
                    Medium::Ethernet => "ethernet",
                    Medium::Ip => "ip",
                };
                write!(
                    f,
                    "{tap} is a {found} device, not a {requested} device; pass --medium {medium} \
                     or choose another --tap"
                )
            }
            TapAccessError::NoMultiQueue {
                tap,
                uid,
                medium,
                workers,
            } => write!(
                f,
                "TAP {tap} was created without multi_queue, but --workers {workers} needs one \
                 queue per worker; run with --workers 1, or have root recreate it with `ip \
                 tuntap del dev {tap} mode {medium} && {}`",
                create_command(tap, *medium, *uid)
            ),
            TapAccessError::WrongOwner {
                tap,
                uid,
                attributes,
            } => write!(
                f,
                "TAP {tap} belongs to {} and {}, so uid {uid} may attach to it only with \
                 CAP_NET_ADMIN; have root recreate it for uid {uid} with `ip tuntap del dev \
                 {tap} mode {medium} && {}`, or run netcon-dp as its owner",
                attributes
                    .owner
                    .map_or_else(|| "no user".to_owned(), |id| format!("uid {id}")),
                attributes
                    .group
                    .map_or_else(|| "no group".to_owned(), |id| format!("gid {id}")),
                create_command(tap, attributes.medium, *uid),
                medium = attributes.medium,
            ),
            TapAccessError::CloneDevice { uid, error } => write!(
                f,
                "{error}; uid {uid} needs read and write access to {} (udev gives it mode \
                 0666), so have root run `chmod 0666 {}`",
                tap::CLONE_DEVICE,
                tap::CLONE_DEVICE
            ),
            TapAccessError::Busy { tap } => write!(
                f,
                "TAP {tap} is in use by another process (a TAP created without multi_queue has \
                 a single queue); stop that process, or give this netcon-dp a TAP of its own"
            ),
            TapAccessError::QueuesInUse { tap, queues } => write!(
                f,
                "TAP {tap} already has {queues} queue(s) attached by another process, perhaps \
                 another netcon-dp; the kernel would spread incoming frames over both, so stop \
                 that process, or give this netcon-dp a TAP of its own"
            ),
            TapAccessError::Attach { tap, error } => {
                write!(f, "cannot create or attach TAP {tap}: {error}")
            }
            TapAccessError::Link(error) => write!(f, "cannot set up the TAP's link: {error}"),
        }
    }
}

impl std::error::Error for TapAccessError {}

/// Returns the `ip tuntap` command that creates `tap` for `uid` with one queue per worker.
fn create_command(tap: &str, medium: Medium, uid: u32) -> String {
    format!("ip tuntap add dev {tap} mode {medium} user {uid} multi_queue")
}

/// Opens one TAP queue per worker, after the checks that name what is missing.
pub fn open_queues(
    args: &Args,
    medium: Medium,
    privileges: Privileges,
) -> Result<Vec<OwnedFd>, TapAccessError> {
    let tap = args.tap.clone();
    let uid = privileges.uid;
    let workers = args.worker_count();
    check_link_options(args, privileges)?;

    let index = tap::interface_index(&tap).map_err(|error| TapAccessError::Attach {
        tap: tap.clone(),
        error: QueueError {
            step: QueueStep::SetInterface,
            error,
        },
    })?;
    let attributes = match index.map(|index| tap::inspect(&tap, index)) {
        None if !privileges.net_admin => {
            return Err(TapAccessError::Missing { tap, uid, medium });
        }
        Some(Inspection::NotTunTap) => return Err(TapAccessError::NotTunTap { tap }),
        Some(Inspection::TunTap(attributes)) => Some(attributes),
        None | Some(Inspection::Unknown) => None,
    };
    if let Some(attributes) = attributes {
        check_attributes(&tap, medium, workers, privileges, attributes)?;
        if attributes.multi_queue
            && let Some(queues) = netns::attached_queues(&tap).filter(|&queues| queues > 0)
        {
            return Err(TapAccessError::QueuesInUse { tap, queues });
        }
    }

    // An existing TAP accepts only queues that match its multi_queue flag, so one worker
    // follows the TAP; a TAP netcon-dp creates for one worker is a plain one.
    let mut multi_queue = workers > 1 || attributes.is_some_and(|a| a.multi_queue);
    let offload = args.offload.enabled();
    let mut queues = Vec::with_capacity(workers);
    for _ in 0..workers {
        let mut opened = tap::open_queue(&tap, medium, multi_queue, offload);
        // Without sysfs the flag is unknown, and EINVAL is what a mismatch returns.
        let unknown_flag = index.is_some() && attributes.is_none() && workers == 1;
        if unknown_flag && opened.as_ref().is_err_and(|e| e.errno() == libc::EINVAL) {
            multi_queue = !multi_queue;
            opened = tap::open_queue(&tap, medium, multi_queue, offload);
        }
        let queue =
            opened.map_err(|error| classify(&tap, index.is_some(), medium, privileges, error))?;
        queues.push(queue);
    }
    Ok(queues)
}

/// Rejects the options that need CAP_NET_ADMIN when netcon-dp lacks it.
fn check_link_options(args: &Args, privileges: Privileges) -> Result<(), TapAccessError> {
    if privileges.net_admin {
        return Ok(());
    }
    let needs = [("--netns", &args.netns), ("--bridge", &args.bridge)];
    match needs.into_iter().find(|(_, value)| value.is_some()) {
        Some((option, Some(value))) => Err(TapAccessError::NeedsNetAdmin {
            option,
            value: value.clone(),
            tap: args.tap.clone(),
            uid: privileges.uid,
        }),
        _ => Ok(()),
    }
}

/// Rejects what the kernel would reject, from how the existing TAP was created.
fn check_attributes(
    tap: &str,
    medium: Medium,
    workers: usize,
    privileges: Privileges,
    attributes: TapAttributes,
) -> Result<(), TapAccessError> {
    if attributes.medium != medium {
        return Err(TapAccessError::WrongMedium {
            tap: tap.to_owned(),
            requested: medium,
            found: attributes.medium,
        });
    }
    if workers > 1 && !attributes.multi_queue {
        return Err(TapAccessError::NoMultiQueue {
            tap: tap.to_owned(),
            uid: privileges.uid,
            medium,
            workers,
        });
    }
    if !privileges.net_admin && !attributes.permits(privileges.uid, tap::is_in_group) {
        return Err(TapAccessError::WrongOwner {
            tap: tap.to_owned(),
            uid: privileges.uid,
            attributes,
        });
    }
    Ok(())
}

/// Maps a failed attach to the error that names the fix, where the errno identifies the cause.
fn classify(
    tap: &str,
    existed: bool,
    medium: Medium,
    privileges: Privileges,
    error: QueueError,
) -> TapAccessError {
    let tap = tap.to_owned();
    match (error.step, error.errno()) {
        (QueueStep::OpenCloneDevice, libc::EACCES | libc::EPERM) => TapAccessError::CloneDevice {
            uid: privileges.uid,
            error,
        },
        (QueueStep::SetInterface, libc::EBUSY) => TapAccessError::Busy { tap },
        (QueueStep::SetInterface, libc::EPERM) if !existed => TapAccessError::Missing {
            tap,
            uid: privileges.uid,
            medium,
        },
        _ => TapAccessError::Attach { tap, error },
    }
}

/// Applies `--mtu`, `--netns`, `--peer-address`, `--peer-address6` and `--bridge` to the TAP's
/// kernel side and brings it up. Without CAP_NET_ADMIN it changes nothing and only warns, with
/// the command for root, when the MTU differs or the link is down. Returns an error only when a
/// step of `--netns` or `--bridge` fails; the MTU and, outside a namespace, the up flag only
/// warn.
pub fn configure_link(args: &Args, privileges: Privileges) -> Result<(), TapAccessError> {
    let tap = args.tap.as_str();
    if !privileges.net_admin {
        warn_about_link(tap, args.mtu);
        return Ok(());
    }
    if let Err(e) = netns::set_mtu(tap, args.mtu) {
        log::warn!(
            "could not set the MTU of {tap} to {} ({e}); set it yourself",
            args.mtu
        );
    }
    let netns = args.netns.as_deref();
    if let Some(ns) = netns {
        netns::move_tap(tap, ns, args.peer_address, args.peer_address6)
            .map_err(TapAccessError::Link)?;
    }
    if let Some(bridge) = &args.bridge {
        netns::join_bridge(tap, netns, bridge).map_err(TapAccessError::Link)?;
    }
    match netns::bring_up(tap, netns) {
        Ok(()) => Ok(()),
        Err(e) if netns.is_some() => Err(TapAccessError::Link(e)),
        Err(e) => {
            log::warn!("could not bring {tap} up ({e}); bring it up yourself");
            Ok(())
        }
    }
}

/// Warns when the TAP's MTU differs from `mtu` or the link is down, which only root can fix.
fn warn_about_link(tap: &str, mtu: u32) {
    let state = match tap::link_state(tap) {
        Ok(state) => state,
        Err(e) => {
            log::warn!("cannot read the MTU and state of {tap} ({e})");
            return;
        }
    };
    if state.mtu != mtu {
        log::warn!(
            "{tap} has MTU {}, not --mtu {mtu}, and netcon-dp lacks CAP_NET_ADMIN to change it; \
             have root run `ip link set dev {tap} mtu {mtu}`, or pass --mtu {}",
            state.mtu,
            state.mtu
        );
    }
    if !state.up {
        log::warn!(
            "{tap} is down, so no frames pass, and netcon-dp lacks CAP_NET_ADMIN to bring it \
             up; have root run `ip link set dev {tap} up`"
        );
    }
}
