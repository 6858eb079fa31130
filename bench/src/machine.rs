//! The machine a run measured: processor, cores, kernel, distribution and the versions of the
//! peer programs, so a result names what it was taken on.

use std::fs;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// The Debian packages whose versions a result records.
const PACKAGES: [&str; 3] = ["iperf3", "slirp4netns", "passt"];

/// A description of the machine a result was measured on.
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    /// The processor's model name from /proc/cpuinfo.
    pub cpu: String,
    /// The number of cores this process may run on.
    pub cores: usize,
    /// The kernel release (`uname -r`).
    pub kernel: String,
    /// The distribution's PRETTY_NAME from /etc/os-release.
    pub os: String,
    /// Package name and version, "not installed" when dpkg does not list it.
    pub packages: Vec<(String, String)>,
    /// The 1, 5 and 15 minute load averages from /proc/loadavg when the run started. A value
    /// above the number of cores means that processes were waiting for a core.
    pub load_average: String,
}

impl Machine {
    /// Reads the description of this machine. Fields that cannot be read are "unknown".
    pub fn describe() -> Machine {
        let cores = std::thread::available_parallelism().map_or(0, usize::from);
        Machine {
            cpu: cpu_model().unwrap_or_else(unknown),
            cores,
            kernel: read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_else(unknown),
            os: os_name().unwrap_or_else(unknown),
            packages: PACKAGES
                .iter()
                .map(|package| ((*package).to_owned(), package_version(package)))
                .collect(),
            load_average: load_average().unwrap_or_else(unknown),
        }
    }

    /// Returns the description in one line, such as "2 cores (AMD EPYC 7B13), Linux
    /// 6.1.0-18-amd64, Debian GNU/Linux 12 (bookworm)".
    pub fn summary(&self) -> String {
        format!(
            "{} cores ({}), Linux {}, {}",
            self.cores, self.cpu, self.kernel, self.os
        )
    }

    /// Returns the package versions in one line, such as "iperf3 3.12-1, passt 0.0~git...".
    pub fn package_summary(&self) -> String {
        let versions: Vec<String> = self
            .packages
            .iter()
            .map(|(package, version)| format!("{package} {version}"))
            .collect();
        versions.join(", ")
    }

    /// Returns the description as a JSON object.
    pub fn to_json(&self) -> Value {
        let packages: serde_json::Map<String, Value> = self
            .packages
            .iter()
            .map(|(package, version)| (package.clone(), Value::from(version.as_str())))
            .collect();
        json!({
            "cpu": self.cpu,
            "cores": self.cores,
            "kernel": self.kernel,
            "os": self.os,
            "packages": packages,
            "load_average": self.load_average,
        })
    }
}

fn unknown() -> String {
    "unknown".to_owned()
}

fn read_trimmed(path: &str) -> Option<String> {
    fs::read_to_string(path)
        .ok()
        .map(|text| text.trim().to_owned())
}

fn cpu_model() -> Option<String> {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").ok()?;
    cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map(|(_, model)| model.trim().to_owned())
}

fn load_average() -> Option<String> {
    let text = fs::read_to_string("/proc/loadavg").ok()?;
    let fields: Vec<&str> = text.split_whitespace().take(3).collect();
    (fields.len() == 3).then(|| fields.join(" "))
}

fn os_name() -> Option<String> {
    let release = fs::read_to_string("/etc/os-release").ok()?;
    release
        .lines()
        .find_map(|line| line.strip_prefix("PRETTY_NAME="))
        .map(|name| name.trim_matches('"').to_owned())
}

fn package_version(package: &str) -> String {
    let output = Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", package])
        .output();
    match output {
        Ok(output) if output.status.success() && !output.stdout.is_empty() => {
            String::from_utf8_lossy(&output.stdout).into_owned()
        }
        _ => "not installed".to_owned(),
    }
}

/// Returns `time` as UTC in the ISO 8601 basic form `YYYYMMDDTHHMMSSZ`, which sorts by time
/// and fits in a file name.
pub fn utc_stamp(time: SystemTime) -> String {
    let (date, clock) = utc_parts(time);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        date.0, date.1, date.2, clock.0, clock.1, clock.2
    )
}

/// Returns `time` as UTC in the form `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc_text(time: SystemTime) -> String {
    let (date, clock) = utc_parts(time);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        date.0, date.1, date.2, clock.0, clock.1, clock.2
    )
}

/// Splits `time` into a (year, month, day) date and an (hour, minute, second) clock, in UTC.
/// Times before 1970 count as 1970-01-01.
fn utc_parts(time: SystemTime) -> ((i64, u32, u32), (u64, u64, u64)) {
    let seconds = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = (seconds / 86_400) as i64;
    let of_day = seconds % 86_400;
    (
        civil_from_days(days),
        (of_day / 3600, of_day % 3600 / 60, of_day % 60),
    )
}

/// Converts days since 1970-01-01 to a proleptic Gregorian (year, month, day), with Howard
/// Hinnant's `civil_from_days` algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn civil_from_days_known_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(59), (1970, 3, 1));
        // 2000-02-29, a leap day in a year divisible by 400.
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
    }

    #[test]
    fn utc_stamp_format() {
        let time = UNIX_EPOCH + Duration::from_secs(1_704_067_200 + 3_723);
        assert_eq!(utc_stamp(time), "20240101T010203Z");
        assert_eq!(utc_text(time), "2024-01-01 01:02:03 UTC");
    }

    #[test]
    fn describe_finds_cores_and_kernel() {
        let machine = Machine::describe();
        assert!(machine.cores >= 1);
        assert_ne!(machine.kernel, "unknown");
        assert_eq!(machine.packages.len(), PACKAGES.len());
        assert_eq!(machine.load_average.split(' ').count(), 3);
    }
}
