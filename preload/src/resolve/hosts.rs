//! `/etc/hosts`, read the way glibc's `files` source reads it (glibc 2.36): a name matches a
//! line's canonical name or an alias without regard to case; a forward lookup merges every
//! matching line of the requested family, and a reverse lookup takes the first line with the
//! address.

use std::net::IpAddr;

/// Path of the hosts file.
const HOSTS: &str = "/etc/hosts";

/// One line of the hosts file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostsLine {
    pub addr: IpAddr,
    pub canonical: String,
    pub aliases: Vec<String>,
}

/// What the hosts file says about a name or an address, in the shape of a `struct hostent`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostsMatch {
    /// The canonical name of the first matching line.
    pub canonical: String,
    pub aliases: Vec<String>,
    /// Addresses in file order, without repeats.
    pub addrs: Vec<IpAddr>,
}

/// Reads and parses `/etc/hosts`; a missing or unreadable file has no lines.
pub fn load() -> Vec<HostsLine> {
    std::fs::read_to_string(HOSTS)
        .map(|text| parse(&text))
        .unwrap_or_default()
}

/// Parses hosts-file text, skipping comments, blank lines and lines whose address does not
/// parse.
pub fn parse(text: &str) -> Vec<HostsLine> {
    text.lines()
        .filter_map(|line| {
            let line = line.split('#').next().unwrap_or("");
            let mut words = line.split_whitespace();
            let addr = words.next()?.parse().ok()?;
            let canonical = words.next()?.to_owned();
            let aliases = words.map(str::to_owned).collect();
            Some(HostsLine {
                addr,
                canonical,
                aliases,
            })
        })
        .collect()
}

/// Looks `name` up among `lines`, keeping only addresses that `wanted` accepts. When several
/// lines match, the first gives the canonical name, and each later one adds its aliases and
/// (when it differs) its canonical name as aliases, as glibc's merging does.
pub fn lookup_name(
    lines: &[HostsLine],
    name: &str,
    wanted: impl Fn(&IpAddr) -> bool,
) -> Option<HostsMatch> {
    let name = name.trim_end_matches('.');
    let mut found: Option<HostsMatch> = None;
    let matching = lines.iter().filter(|line| {
        wanted(&line.addr)
            && (line.canonical.eq_ignore_ascii_case(name)
                || line.aliases.iter().any(|a| a.eq_ignore_ascii_case(name)))
    });
    for line in matching {
        let Some(found) = found.as_mut() else {
            found = Some(HostsMatch {
                canonical: line.canonical.clone(),
                aliases: line.aliases.clone(),
                addrs: vec![line.addr],
            });
            continue;
        };
        found.aliases.extend(line.aliases.iter().cloned());
        if line.canonical != found.canonical {
            found.aliases.push(line.canonical.clone());
        }
        if !found.addrs.contains(&line.addr) {
            found.addrs.push(line.addr);
        }
    }
    found
}

/// Looks up the first line whose address is `addr`.
pub fn lookup_addr(lines: &[HostsLine], addr: IpAddr) -> Option<HostsMatch> {
    let line = lines.iter().find(|line| line.addr == addr)?;
    Some(HostsMatch {
        canonical: line.canonical.clone(),
        aliases: line.aliases.clone(),
        addrs: vec![line.addr],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
127.0.0.1 localhost
10.1.0.1 multi.test m1   # first
10.1.0.2 multi.test m2
fd00::5 multi.test m6
bogus line here
10.1.0.3 Other.Test MULTI.test
";

    #[test]
    fn merges_lines_like_glibc() {
        let lines = parse(SAMPLE);
        let found = lookup_name(&lines, "multi.test", IpAddr::is_ipv4).unwrap();
        assert_eq!(found.canonical, "multi.test");
        assert_eq!(found.aliases, ["m1", "m2", "MULTI.test", "Other.Test"]);
        let addrs: Vec<String> = found.addrs.iter().map(|a| a.to_string()).collect();
        assert_eq!(addrs, ["10.1.0.1", "10.1.0.2", "10.1.0.3"]);
    }

    #[test]
    fn alias_match_and_family_filter() {
        let lines = parse(SAMPLE);
        let found = lookup_name(&lines, "M2.", IpAddr::is_ipv4).unwrap();
        assert_eq!(found.canonical, "multi.test");
        assert_eq!(found.aliases, ["m2"]);
        let found = lookup_name(&lines, "multi.test", IpAddr::is_ipv6).unwrap();
        assert_eq!(found.addrs, ["fd00::5".parse::<IpAddr>().unwrap()]);
        assert_eq!(lookup_name(&lines, "m6", IpAddr::is_ipv4), None);
    }

    #[test]
    fn reverse_takes_first_line() {
        let lines = parse(SAMPLE);
        let found = lookup_addr(&lines, "10.1.0.1".parse().unwrap()).unwrap();
        assert_eq!(found.canonical, "multi.test");
        assert_eq!(found.aliases, ["m1"]);
        assert_eq!(lookup_addr(&lines, "10.9.9.9".parse().unwrap()), None);
    }
}
