//! The parts of `/etc/resolv.conf` and `/etc/nsswitch.conf` that shape a lookup: search
//! domains, `ndots`, timeout and attempts, and whether `files` comes before `dns`.
//!
//! Both files are read on every lookup, as glibc notices changes to them. The `nameserver`
//! lines are ignored: names are resolved through the server netcon-dp was given, since the
//! host's servers may not be reachable over netcon at all.

/// Path of the resolver configuration.
const RESOLV_CONF: &str = "/etc/resolv.conf";
/// Path of the name service switch configuration.
const NSSWITCH_CONF: &str = "/etc/nsswitch.conf";

/// glibc's limits (resolv/resolv.h in 2.36): at most 6 search domains, `ndots` up to 15,
/// a timeout up to 30 s and up to 5 attempts.
const MAX_SEARCH_DOMAINS: usize = 6;
const MAX_NDOTS: u32 = 15;
const MAX_TIMEOUT_SECS: u32 = 30;
const MAX_ATTEMPTS: u32 = 5;

/// The resolver settings of one lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolverConfig {
    /// Domains appended to names with fewer than `ndots` dots, tried in order.
    pub search: Vec<String>,
    /// Names with at least this many dots are first tried as they are.
    pub ndots: u32,
    /// Seconds to wait for each answer.
    pub timeout_secs: u32,
    /// How many times each query is sent before the lookup gives up.
    pub attempts: u32,
    /// Whether `files` comes before `dns` on the `hosts:` line.
    pub files_first: bool,
    /// Whether the `hosts:` line lists `dns` at all.
    pub use_dns: bool,
    /// Whether the `hosts:` line lists `files` at all.
    pub use_files: bool,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        ResolverConfig {
            search: Vec::new(),
            ndots: 1,
            timeout_secs: 5,
            attempts: 2,
            files_first: true,
            use_dns: true,
            use_files: true,
        }
    }
}

impl ResolverConfig {
    /// Reads `/etc/resolv.conf` and `/etc/nsswitch.conf`; a missing file leaves glibc's
    /// defaults (no search domains, `ndots:1`, 5 s, 2 attempts, `files dns`).
    pub fn load() -> ResolverConfig {
        let mut config = ResolverConfig::default();
        if let Ok(text) = std::fs::read_to_string(RESOLV_CONF) {
            config.apply_resolv_conf(&text);
        }
        if let Ok(text) = std::fs::read_to_string(NSSWITCH_CONF) {
            config.apply_nsswitch(&text);
        }
        config
    }

    /// Applies the lines of a resolv.conf: the last `search` or `domain` line wins, as in
    /// glibc, and `options` may set `ndots`, `timeout` and `attempts`.
    pub fn apply_resolv_conf(&mut self, text: &str) {
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("search") => {
                    self.search = words
                        .take_while(|w| !w.starts_with(['#', ';']))
                        .take(MAX_SEARCH_DOMAINS)
                        .map(|w| w.trim_end_matches('.').to_owned())
                        .filter(|w| !w.is_empty())
                        .collect();
                }
                Some("domain") => {
                    self.search = words
                        .next()
                        .map(|w| w.trim_end_matches('.').to_owned())
                        .filter(|w| !w.is_empty())
                        .into_iter()
                        .collect();
                }
                Some("options") => words.for_each(|option| self.apply_option(option)),
                _ => {}
            }
        }
    }

    fn apply_option(&mut self, option: &str) {
        let Some((name, value)) = option.split_once(':') else {
            return;
        };
        let Ok(value) = value.parse::<u32>() else {
            return;
        };
        match name {
            "ndots" => self.ndots = value.min(MAX_NDOTS),
            "timeout" => self.timeout_secs = value.clamp(1, MAX_TIMEOUT_SECS),
            "attempts" => self.attempts = value.clamp(1, MAX_ATTEMPTS),
            _ => {}
        }
    }

    /// Applies the `hosts:` line of nsswitch.conf: which of `files` and `dns` are used and in
    /// which order. Other sources (mdns, myhostname) are not consulted.
    pub fn apply_nsswitch(&mut self, text: &str) {
        let Some(sources) = text.lines().find_map(|line| {
            let line = line.split('#').next().unwrap_or("");
            line.trim_start().strip_prefix("hosts:")
        }) else {
            return;
        };
        let sources: Vec<&str> = sources
            .split_whitespace()
            .filter(|s| !s.starts_with('['))
            .collect();
        let files = sources.iter().position(|s| *s == "files");
        let dns = sources.iter().position(|s| *s == "dns");
        self.use_files = files.is_some();
        self.use_dns = dns.is_some();
        self.files_first = match (files, dns) {
            (Some(files), Some(dns)) => files < dns,
            _ => true,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_options_and_search() {
        let mut config = ResolverConfig::default();
        config.apply_resolv_conf(
            "nameserver 192.0.2.1\nsearch a.test b.test.\noptions ndots:2 timeout:1 attempts:9\n",
        );
        assert_eq!(config.search, ["a.test", "b.test"]);
        assert_eq!(config.ndots, 2);
        assert_eq!(config.timeout_secs, 1);
        assert_eq!(config.attempts, MAX_ATTEMPTS);
    }

    #[test]
    fn last_domain_or_search_wins() {
        let mut config = ResolverConfig::default();
        config.apply_resolv_conf("search a.test b.test\ndomain c.test\n");
        assert_eq!(config.search, ["c.test"]);
        config.apply_resolv_conf("domain c.test\nsearch d.test\n");
        assert_eq!(config.search, ["d.test"]);
    }

    #[test]
    fn nsswitch_order() {
        let mut config = ResolverConfig::default();
        config.apply_nsswitch("passwd: files\nhosts: dns [NOTFOUND=return] files\n");
        assert!(!config.files_first);
        assert!(config.use_dns && config.use_files);

        config.apply_nsswitch("hosts:  files mdns4_minimal\n");
        assert!(config.files_first);
        assert!(!config.use_dns);
    }
}
