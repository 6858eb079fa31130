//! The demo's result table.

use crate::iperf::IperfTotals;
use crate::pingpong::LatencySummary;

/// Everything the demo measured.
#[derive(Debug)]
pub struct DemoReport {
    pub mtu: u32,
    pub seconds: u64,
    /// Absent when only round trips were measured.
    pub upload: Option<IperfTotals>,
    pub download: Option<IperfTotals>,
    pub netcon_latency: LatencySummary,
    pub kernel_latency: LatencySummary,
}

/// Formats bits per second as Gbit/s with two decimals.
fn gbits(bits_per_second: f64) -> String {
    format!("{:.2} Gbit/s", bits_per_second / 1e9)
}

/// Formats a byte count in MiB.
fn mebibytes(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn throughput_row(label: &str, totals: &IperfTotals) -> String {
    let retransmits = totals.retransmits.map_or("-".to_owned(), |r| r.to_string());
    format!(
        "  {label:<26} {:>14} {:>12} {:>10}",
        gbits(totals.received_bits_per_second),
        mebibytes(totals.received_bytes),
        retransmits
    )
}

fn latency_row(label: &str, summary: &LatencySummary) -> String {
    format!(
        "  {label:<30} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>9.1}",
        summary.p50_us, summary.p90_us, summary.p99_us, summary.p999_us, summary.max_us
    )
}

impl DemoReport {
    /// Returns the report as lines of text.
    pub fn lines(&self) -> Vec<String> {
        let latency = &self.netcon_latency;
        let mut lines = Vec::new();
        if let (Some(upload), Some(download)) = (&self.upload, &self.download) {
            lines.push(String::new());
            lines.push(format!(
                "Throughput (iperf3, 1 stream, {} s, MTU {}):",
                self.seconds, self.mtu
            ));
            lines.push(format!(
                "  {:<26} {:>14} {:>12} {:>10}",
                "direction", "received", "bytes", "retrans."
            ));
            lines.push(throughput_row("upload (app -> peer)", upload));
            lines.push(throughput_row("download (peer -> app)", download));
        }
        lines.push(String::new());
        lines.push(format!(
            "TCP round trip ({} B messages, {} rounds), µs:",
            latency.size, latency.rounds
        ));
        lines.push(format!(
            "  {:<30} {:>8} {:>8} {:>8} {:>8} {:>9}",
            "path", "p50", "p90", "p99", "p99.9", "max"
        ));
        lines.push(latency_row(
            "netcon (app -> TAP -> peer)",
            &self.netcon_latency,
        ));
        lines.push(latency_row(
            "kernel loopback (reference)",
            &self.kernel_latency,
        ));
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gbits_two_decimals() {
        assert_eq!(gbits(1.234e9), "1.23 Gbit/s");
    }

    #[test]
    fn mebibytes_one_decimal() {
        assert_eq!(mebibytes(3 * 1024 * 1024 / 2), "1.5 MiB");
    }
}
