//! The search list walk of glibc's `res_search` (resolv/res_query.c in 2.36): which names are
//! tried for a name, in which order, when the walk stops, and which error it reports.

use super::config::ResolverConfig;
use super::lookup::LookupError;

/// The result of querying one candidate name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step<T> {
    Found(T),
    /// NXDOMAIN: the walk goes on.
    NoSuchName,
    /// The name exists without records of the type: the walk goes on.
    NoData,
    /// SERVFAIL: the walk goes on.
    ServerFailure,
    /// The server refused the query (or nothing listens): the walk stops, unless this was the
    /// first try of the name as it is.
    Refused,
    /// No response in time: the walk skips the remaining search domains.
    TimedOut,
    /// Another failure (a malformed response or a bad query) with this error.
    Failed(LookupError),
}

impl<T> Step<T> {
    /// Returns the error a lookup that ends with this step reports.
    pub fn error(&self) -> LookupError {
        match self {
            Step::Found(_) | Step::NoSuchName => LookupError::NotFound,
            Step::NoData => LookupError::NoData,
            Step::ServerFailure | Step::Refused | Step::TimedOut => LookupError::TryAgain,
            Step::Failed(error) => *error,
        }
    }
}

/// Returns the names `res_search` tries for `name`, in order. An absolute name (trailing dot)
/// is tried alone. A name with at least `ndots` dots is tried first as it is, then with each
/// search domain; other names get the domains first and are tried as they are last.
pub fn candidates(config: &ResolverConfig, name: &str) -> Vec<String> {
    if let Some(absolute) = name.strip_suffix('.') {
        return vec![absolute.to_owned()];
    }
    let dots = name.matches('.').count() as u32;
    let mut candidates = Vec::new();
    let as_is_first = dots >= config.ndots;
    if as_is_first {
        candidates.push(name.to_owned());
    }
    candidates.extend(
        config
            .search
            .iter()
            .map(|domain| format!("{name}.{domain}")),
    );
    if !as_is_first {
        candidates.push(name.to_owned());
    }
    candidates
}

/// Walks the candidates of `name` with `query` until one is found. The error follows glibc:
/// the first try's when the name was first tried as it is, else NO_DATA if any candidate had
/// no data, else TRY_AGAIN if any server failed, else the last candidate's.
pub fn search<T>(
    config: &ResolverConfig,
    name: &str,
    mut query: impl FnMut(&str) -> Step<T>,
) -> Result<T, LookupError> {
    let candidates = candidates(config, name);
    let as_is_first = candidates.len() > 1 && candidates[0] == name;
    let as_is_last = !as_is_first && candidates.len() > 1;
    let (mut got_nodata, mut got_servfail) = (false, false);
    let (mut first_error, mut last_error) = (None, LookupError::NotFound);
    let mut skip_domains = false;
    for (index, candidate) in candidates.iter().enumerate() {
        let first_try = index == 0 && as_is_first;
        let last_try = as_is_last && index + 1 == candidates.len();
        if skip_domains && !first_try && !last_try {
            continue;
        }
        let step = query(candidate);
        if let Step::Found(found) = step {
            return Ok(found);
        }
        last_error = step.error();
        if first_try {
            first_error = Some(last_error);
            continue;
        }
        match step {
            Step::NoData => got_nodata = true,
            Step::ServerFailure => got_servfail = true,
            Step::Refused => return Err(LookupError::TryAgain),
            Step::TimedOut | Step::Failed(_) => skip_domains = true,
            Step::Found(_) | Step::NoSuchName => {}
        }
    }
    Err(first_error.unwrap_or(if got_nodata {
        LookupError::NoData
    } else if got_servfail {
        LookupError::TryAgain
    } else {
        last_error
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(search: &[&str], ndots: u32) -> ResolverConfig {
        ResolverConfig {
            search: search.iter().map(|s| s.to_string()).collect(),
            ndots,
            ..ResolverConfig::default()
        }
    }

    #[test]
    fn candidates_follow_ndots() {
        let c = config(&["a.test", "b.test"], 1);
        assert_eq!(candidates(&c, "web"), ["web.a.test", "web.b.test", "web"]);
        assert_eq!(
            candidates(&c, "web.netcon"),
            ["web.netcon", "web.netcon.a.test", "web.netcon.b.test"]
        );
        assert_eq!(candidates(&c, "web.netcon."), ["web.netcon"]);
        let c = config(&["a.test"], 3);
        assert_eq!(candidates(&c, "x.y"), ["x.y.a.test", "x.y"]);
    }

    #[test]
    fn first_try_error_wins() {
        let c = config(&["a.test"], 1);
        let result = search(&c, "x.y", |name| match name {
            "x.y" => Step::<()>::NoData,
            _ => Step::NoSuchName,
        });
        assert_eq!(result, Err(LookupError::NoData));
    }

    #[test]
    fn refusal_stops_but_not_on_first_try() {
        let c = config(&["a.test", "b.test"], 1);
        let mut tried = Vec::new();
        let result = search(&c, "x.y", |name| {
            tried.push(name.to_owned());
            Step::<()>::Refused
        });
        assert_eq!(result, Err(LookupError::TryAgain));
        assert_eq!(tried, ["x.y", "x.y.a.test"]);
    }

    #[test]
    fn timeout_skips_domains_not_last_try() {
        let c = config(&["a.test", "b.test"], 1);
        let mut tried = Vec::new();
        let result = search(&c, "x", |name| {
            tried.push(name.to_owned());
            if name == "x" {
                Step::Found(7)
            } else {
                Step::TimedOut
            }
        });
        assert_eq!(result, Ok(7));
        assert_eq!(tried, ["x.a.test", "x"]);
    }
}
