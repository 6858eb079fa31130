//! netcon-dp, the data plane: a user-space TCP/IP stack (smoltcp) on a TAP device, serving the
//! sockets of preloaded programs.
//!
//! A tour:
//! - [`config`] turns the command line into a validated [`config::Config`].
//! - [`sys`] holds every raw OS call: TAP queues, socketpairs, epoll, eventfd.
//! - [`netns`] moves the TAP into a network namespace and configures the kernel side.
//! - [`service`] is the control thread: it answers the preload's RPCs on the control socket;
//!   [`connect_gate`] keeps a connecting socket unwritable until its handshake ends.
//! - [`worker`] owns the packet path: io_uring, a smoltcp `Interface`, and the connections.
//! - [`steer`] decides which worker owns a connection and where a received frame goes, and
//!   [`steer_bpf`] has the kernel put frames on their owner's TAP queue in the first place;
//!   [`reassembly`] puts IP fragments together and [`fragment`] cuts egress packets larger
//!   than the link; [`offload`] prepares frames for the TAP's segmentation offload; [`hairpin`] turns
//!   frames to the stack's own addresses around; [`mapped`] converts the IPv4-mapped
//!   addresses of AF_INET6 sockets; [`tos`] writes IP_TOS and IPV6_TCLASS into egress
//!   packets.
//! - [`registry`] is the socket table both share, which also enforces `--max-connections`
//!   ([`limits`] says what a program sees at the limit); [`options`] stores socket options, checked
//!   against [`option_rules`], which says how Linux treats each one;
//!   [`stats`] holds the counters and latency histograms `netcon-ctl` reads.
//! - [`run`] wires them together.

pub mod config;
pub mod connect_gate;
pub mod fragment;
pub mod hairpin;
pub mod icmp_error;
pub mod limits;
pub mod mapped;
pub mod neighbour;
pub mod netns;
pub mod offload;
pub mod option_rules;
pub mod options;
pub mod reassembly;
pub mod registry;
pub mod run;
pub mod service;
pub mod stats;
pub mod steer;
pub mod steer_bpf;
pub mod sys;
pub mod tos;
pub mod worker;
