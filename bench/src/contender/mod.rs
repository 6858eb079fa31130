//! The stacks compared: each contender sets up a client side and a server side in namespaces
//! made for the run, and every one is torn down when its [`Site`] is dropped.

mod netcon;
mod pasta;
mod site;
mod slirp;
mod veth;

use std::ffi::OsStr;
use std::fmt;

use netcon_tools::program_check::find_program;

use crate::StepError;
pub use site::Site;

/// A network stack the clients' traffic goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Stack {
    /// A veth pair between two namespaces: the kernel's TCP on both ends, the reference.
    Veth,
    /// slirp4netns: a user-space stack (libslirp) that turns the namespace's TCP connections
    /// into sockets of the namespace it runs in.
    Slirp4netns,
    /// pasta (from passt): like slirp4netns, with its own TCP translation.
    Pasta,
    /// netcon: the program runs through the preload and netcon-dp.
    Netcon,
}

/// One row of the comparison: a stack, and for netcon its worker count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Contender {
    pub stack: Stack,
    /// The `netcon-dp --workers` value, and 1 for the other stacks.
    pub workers: usize,
}

impl Contender {
    /// Returns the contender for `stack`, with one worker.
    pub fn new(stack: Stack) -> Contender {
        Contender { stack, workers: 1 }
    }

    /// Returns the netcon contender with `workers` workers.
    pub fn netcon(workers: usize) -> Contender {
        Contender {
            stack: Stack::Netcon,
            workers,
        }
    }

    /// Returns a stable identifier, such as `veth` or `netcon-w2`, used as the JSON key.
    pub fn key(&self) -> String {
        match self.stack {
            Stack::Veth => "veth".to_owned(),
            Stack::Slirp4netns => "slirp4netns".to_owned(),
            Stack::Pasta => "pasta".to_owned(),
            Stack::Netcon => format!("netcon-w{}", self.workers),
        }
    }

    /// Returns the largest MTU the stack accepts, in bytes.
    pub fn max_mtu(&self) -> u32 {
        match self.stack {
            // The veth driver's limit (ETH_MAX_MTU).
            Stack::Veth => 65535,
            // From `slirp4netns --help` (version 1.2.0).
            Stack::Slirp4netns => 65521,
            // From `pasta --help` (passt 2023-03-09): its default MTU, "maximum 802.3 MTU
            // minus 802.3 header length, rounded to 32 bits".
            Stack::Pasta => 65520,
            // `netcon-dp --mtu` accepts up to 65520.
            Stack::Netcon => 65520,
        }
    }

    /// Creates this contender's namespaces and processes for links of `mtu` bytes.
    ///
    /// Blocks for at most about 15 s. Returns [`StepError::Failed`] with the reason the
    /// contender cannot run here (a missing program, a setup command's stderr), after removing
    /// whatever it had made.
    pub fn set_up(&self, mtu: u32) -> Result<Site, StepError> {
        if mtu > self.max_mtu() {
            return Err(StepError::Failed(format!(
                "{self} supports an MTU of at most {}",
                self.max_mtu()
            )));
        }
        match self.stack {
            Stack::Veth => veth::set_up(mtu),
            Stack::Slirp4netns => {
                require_program("slirp4netns", "slirp4netns")?;
                slirp::set_up(mtu)
            }
            Stack::Pasta => {
                require_program("pasta", "passt")?;
                pasta::set_up(mtu)
            }
            Stack::Netcon => netcon::set_up(mtu, self.workers),
        }
    }
}

impl fmt::Display for Contender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.stack {
            Stack::Veth => write!(f, "kernel veth"),
            Stack::Slirp4netns => write!(f, "slirp4netns"),
            Stack::Pasta => write!(f, "pasta"),
            Stack::Netcon => write!(f, "netcon --workers {}", self.workers),
        }
    }
}

fn require_program(program: &str, package: &str) -> Result<(), StepError> {
    if find_program(OsStr::new(program)).is_some() {
        return Ok(());
    }
    Err(StepError::Failed(format!(
        "{program} is not installed; install it with `apt-get install {package}`"
    )))
}
