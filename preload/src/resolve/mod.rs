//! Name resolution for programs on netcon. glibc's resolver opens its sockets through
//! internal calls this library cannot replace, so it would resolve names over the host's
//! network; and it decides AI_ADDRCONFIG from the interfaces it sees, which in an isolated
//! namespace are only loopback. So the resolver entry points are replaced here:
//! `getaddrinfo` ([`addrinfo`]), `gethostbyname*`/`gethostbyaddr*` ([`hostent`]),
//! `getnameinfo` ([`nameinfo`]) and `res_*` ([`res`]).
//!
//! Numeric hosts need no lookup. Names are looked up in `/etc/hosts` ([`hosts`]) and then over
//! DNS ([`lookup`]) in the order of nsswitch.conf, with resolv.conf's search list and options
//! ([`config`]). DNS queries go to the server netcon-dp was started with (`--dns`, learnt
//! through [`info`]) over sockets made through netcon itself ([`transport`]); without one,
//! lookups of other names fail rather than fall back to the host's resolver.
//!
//! NOTE: `getaddrinfo_a` runs glibc's internal lookup and is not replaced, so it still uses
//! the host's resolver.

mod abi;
mod addrinfo;
mod config;
mod hostent;
mod hosts;
pub(crate) mod info;
mod lookup;
mod message;
mod nameinfo;
mod res;
mod search;
mod transport;
