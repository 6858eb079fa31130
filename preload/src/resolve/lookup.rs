//! Name and address lookups in glibc's order: the `hosts:` sources of nsswitch.conf (`files`
//! then `dns` by default), and for DNS the search list of resolv.conf as `res_search` walks
//! it. DNS queries go to netcon-dp's `--dns` server through [`transport::exchange`].

use std::net::IpAddr;
use std::time::Duration;

use super::config::ResolverConfig;
use super::hosts;
use super::message::{self, Outcome, RecordType, Records, ResponseError};
use super::search::{self, Step};
use super::transport::{self, ExchangeError};
use crate::info;

/// The address families a forward lookup requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Families {
    V4,
    V6,
    Both,
}

impl Families {
    fn accepts(self, addr: &IpAddr) -> bool {
        match self {
            Families::V4 => addr.is_ipv4(),
            Families::V6 => addr.is_ipv6(),
            Families::Both => true,
        }
    }

    fn record_types(self) -> &'static [RecordType] {
        match self {
            Families::V4 => &[RecordType::A],
            Families::V6 => &[RecordType::Aaaa],
            Families::Both => &[RecordType::A, RecordType::Aaaa],
        }
    }
}

/// A found name, in the shape of a `struct hostent`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostAnswer {
    pub canonical: String,
    pub aliases: Vec<String>,
    pub addrs: Vec<IpAddr>,
}

/// A reason a lookup found nothing, named after glibc's `h_errno` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LookupError {
    /// No such name (NXDOMAIN everywhere, or not in /etc/hosts without DNS): HOST_NOT_FOUND.
    NotFound,
    /// The name exists but has no address of the requested family: NO_DATA.
    NoData,
    /// No answer in time, a server failure or refusal, or no DNS server: TRY_AGAIN.
    TryAgain,
    /// A malformed response or a query that cannot be made: NO_RECOVERY.
    NoRecovery,
}

impl LookupError {
    /// Returns the `h_errno` value glibc reports for this outcome.
    pub fn h_errno(self) -> libc::c_int {
        match self {
            LookupError::NotFound => super::abi::HOST_NOT_FOUND,
            LookupError::NoData => super::abi::NO_DATA,
            LookupError::TryAgain => super::abi::TRY_AGAIN,
            LookupError::NoRecovery => super::abi::NO_RECOVERY,
        }
    }

    /// The `getaddrinfo` error glibc returns for this outcome.
    pub fn eai(self) -> libc::c_int {
        match self {
            LookupError::NotFound => libc::EAI_NONAME,
            LookupError::NoData => libc::EAI_NODATA,
            LookupError::TryAgain => libc::EAI_AGAIN,
            LookupError::NoRecovery => libc::EAI_FAIL,
        }
    }
}

/// Looks up the addresses of `name` in the families asked for.
pub fn lookup_name(name: &str, families: Families) -> Result<HostAnswer, LookupError> {
    let config = ResolverConfig::load();
    let from_files = || {
        let lines = hosts::load();
        hosts::lookup_name(&lines, name, |addr| families.accepts(addr)).map(|found| HostAnswer {
            canonical: found.canonical,
            aliases: found.aliases,
            addrs: found.addrs,
        })
    };
    if config.use_files
        && config.files_first
        && let Some(answer) = from_files()
    {
        return Ok(answer);
    }
    let from_dns = if config.use_dns {
        search_dns(&config, name, families)
    } else {
        Err(LookupError::NotFound)
    };
    if from_dns.is_ok() || !config.use_files || config.files_first {
        return from_dns;
    }
    from_files().ok_or(from_dns.unwrap_err())
}

/// Looks up the name of `addr` (a reverse lookup).
pub fn lookup_addr(addr: IpAddr) -> Result<HostAnswer, LookupError> {
    let config = ResolverConfig::load();
    let from_files = || {
        hosts::lookup_addr(&hosts::load(), addr).map(|found| HostAnswer {
            canonical: found.canonical,
            aliases: found.aliases,
            addrs: found.addrs,
        })
    };
    if config.use_files
        && config.files_first
        && let Some(answer) = from_files()
    {
        return Ok(answer);
    }
    let from_dns = if config.use_dns {
        reverse_dns(&config, addr)
    } else {
        Err(LookupError::NotFound)
    };
    if from_dns.is_ok() || !config.use_files || config.files_first {
        return from_dns;
    }
    from_files().ok_or(from_dns.unwrap_err())
}

/// Returns the DNS server to query. Without `--dns` a lookup fails with `missing` (and a
/// one-time message on stderr), so the host's resolver is never used.
fn dns_server(missing: LookupError) -> Result<std::net::SocketAddr, LookupError> {
    let Some(info) = info::netcon_info() else {
        return Err(missing);
    };
    info.dns.ok_or_else(|| {
        info::report_no_dns_server();
        missing
    })
}

fn reverse_dns(config: &ResolverConfig, addr: IpAddr) -> Result<HostAnswer, LookupError> {
    // A reverse lookup that cannot be made leaves callers such as getnameinfo to fall back
    // to the numeric form, so "no DNS server" reads as "not found" here.
    let server = dns_server(LookupError::NotFound)?;
    let name = message::reverse_name(addr);
    let records = match query::<()>(config, server, &name, RecordType::Ptr) {
        Ok(Outcome::Records(records)) => records,
        Ok(Outcome::NoSuchName) => return Err(LookupError::NotFound),
        Ok(Outcome::ServerFailure | Outcome::Refused) | Err(_) => {
            return Err(LookupError::TryAgain);
        }
    };
    let mut names = records
        .names
        .into_iter()
        .map(|n| n.trim_end_matches('.').to_owned());
    let canonical = names.next().ok_or(LookupError::NoData)?;
    Ok(HostAnswer {
        canonical,
        aliases: names.collect(),
        addrs: vec![addr],
    })
}

fn search_dns(
    config: &ResolverConfig,
    name: &str,
    families: Families,
) -> Result<HostAnswer, LookupError> {
    let server = dns_server(LookupError::TryAgain)?;
    search::search(config, name, |candidate| {
        query_candidate(config, server, candidate, families)
    })
}

/// Queries one candidate for each record type asked for and merges what they found.
///
/// As glibc does with its parallel A and AAAA queries, the records of one type are returned
/// even when the query for the other type was refused, failed or timed out: a server that
/// answers REFUSED for AAAA (dnsmasq without `--local` for a name it has only an A record of)
/// must not hide the A record. A query that times out or finds no server ends the candidate
/// without sending the next one, so a dead server costs one timeout, not one per type.
fn query_candidate(
    config: &ResolverConfig,
    server: std::net::SocketAddr,
    candidate: &str,
    families: Families,
) -> Step<HostAnswer> {
    let mut found: Option<HostAnswer> = None;
    let mut step = Step::NoSuchName;
    let mut refused = false;
    let mut failure = None;
    for &kind in families.record_types() {
        match query(config, server, candidate, kind) {
            Ok(Outcome::Records(records)) if !records.addrs.is_empty() => {
                merge(&mut found, records)
            }
            Ok(Outcome::Records(_)) => step = Step::NoData,
            Ok(Outcome::NoSuchName) => {}
            Ok(Outcome::ServerFailure) => step = Step::ServerFailure,
            Ok(Outcome::Refused) => refused = true,
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
    }
    if let Some(answer) = found {
        return Step::Found(answer);
    }
    match failure {
        Some(failure) => failure,
        None if refused => Step::Refused,
        None => step,
    }
}

fn merge(found: &mut Option<HostAnswer>, records: Records) {
    let found = found.get_or_insert_with(|| HostAnswer {
        canonical: records.canonical.trim_end_matches('.').to_owned(),
        aliases: records.aliases.clone(),
        addrs: Vec::new(),
    });
    found.addrs.extend(records.addrs);
}

/// Sends one query, `config.attempts` times at most, each waiting `config.timeout_secs`.
/// Fails with [`Step::TimedOut`] when no attempt got a response, and [`Step::Refused`] when
/// nothing listens on the server's port.
fn query<T>(
    config: &ResolverConfig,
    server: std::net::SocketAddr,
    name: &str,
    kind: RecordType,
) -> Result<Outcome, Step<T>> {
    let timeout = Duration::from_secs(u64::from(config.timeout_secs));
    for _ in 0..config.attempts {
        let id = random_id();
        let Ok(bytes) = message::build_lookup(id, name, kind) else {
            return Ok(Outcome::NoSuchName);
        };
        match transport::exchange(server, &bytes, timeout) {
            Ok(response) => match message::read_response(&response, id, name, kind) {
                Ok(outcome) => return Ok(outcome),
                Err(ResponseError::Malformed | ResponseError::Mismatch) => continue,
            },
            Err(ExchangeError::TimedOut) => continue,
            Err(ExchangeError::Failed(libc::ECONNREFUSED)) => return Err(Step::Refused),
            Err(ExchangeError::Failed(_)) => continue,
        }
    }
    Err(Step::TimedOut)
}

/// Returns a random DNS message id, so an off-path sender cannot guess it.
pub fn random_id() -> u16 {
    let mut id = [0u8; 2];
    // SAFETY: getrandom writes at most the two bytes given.
    let filled = unsafe { libc::getrandom(id.as_mut_ptr().cast(), id.len(), libc::GRND_NONBLOCK) };
    if filled != 2 {
        // Only before the kernel's entropy pool is ready; the clock is a weak stand-in then.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        return (nanos ^ (nanos >> 16)) as u16;
    }
    u16::from_ne_bytes(id)
}
