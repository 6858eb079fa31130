//! `netcon-ctl perf`: latency percentiles, a text histogram, and export in HdrHistogram's
//! percentile-distribution format (the `.hgrm` text that its plotters read).

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde_json::Value;

/// The histograms of a perf document, named, in display order.
pub fn histograms(document: &Value) -> Vec<(String, &Value)> {
    let mut list = Vec::new();
    if let Some(rpcs) = document["rpc_round_trip"].as_object() {
        for (kind, histogram) in rpcs {
            list.push((format!("rpc {kind}"), histogram));
        }
    }
    for (key, name) in [
        ("connect", "connect"),
        ("ack", "ack (stack send → peer ack)"),
        ("ingress_wait", "ingress wait (network → program)"),
    ] {
        list.push((name.to_string(), &document[key]));
    }
    list
}

/// Rebuilds a histogram from the recorded `values` of a perf document entry.
pub fn rebuild(entry: &Value) -> Option<Histogram<u64>> {
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 100_000_000, 3).ok()?;
    for pair in entry["values"].as_array()? {
        let value = pair.get(0)?.as_u64()?;
        let count = pair.get(1)?.as_u64()?;
        histogram.saturating_record_n(value.max(1), count);
    }
    Some(histogram)
}

/// Formats every histogram: percentiles, then bars over power-of-two buckets.
pub fn format(document: &Value) -> Vec<String> {
    let mut lines = vec![format!(
        "{:<34} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}   (µs)",
        "histogram", "count", "p50", "p90", "p99", "p99.9", "max"
    )];
    for (name, entry) in histograms(document) {
        let count = entry["count"].as_u64().unwrap_or(0);
        if count == 0 {
            lines.push(format!("{name:<34} {:>8}", 0));
            continue;
        }
        let field = |key: &str| entry[key].as_u64().unwrap_or(0);
        lines.push(format!(
            "{name:<34} {count:>8} {:>9} {:>9} {:>9} {:>9} {:>9}",
            field("p50"),
            field("p90"),
            field("p99"),
            field("p99.9"),
            field("max")
        ));
    }
    for (name, entry) in histograms(document) {
        let Some(histogram) = rebuild(entry).filter(|h| !h.is_empty()) else {
            continue;
        };
        lines.push(String::new());
        lines.push(format!("{name}:"));
        lines.extend(bars(&histogram));
    }
    lines
}

/// Bars of 40 characters at most over power-of-two microsecond buckets.
fn bars(histogram: &Histogram<u64>) -> Vec<String> {
    let mut buckets: Vec<(u64, u64)> = Vec::new();
    for value in histogram.iter_recorded() {
        let v = value.value_iterated_to().max(1);
        let upper = v.next_power_of_two();
        match buckets.last_mut() {
            Some((top, count)) if *top == upper => *count += value.count_at_value(),
            _ => buckets.push((upper, value.count_at_value())),
        }
    }
    let most = buckets.iter().map(|(_, c)| *c).max().unwrap_or(1).max(1);
    buckets
        .iter()
        .map(|(upper, count)| {
            let width = (count * 40).div_ceil(most) as usize;
            format!("  ≤{upper:>9} µs {count:>8} {}", "#".repeat(width))
        })
        .collect()
}

/// Writes `histogram` in HdrHistogram's percentile-distribution format, values in µs.
pub fn percentile_distribution(histogram: &Histogram<u64>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    for value in histogram.iter_quantiles(5) {
        total += value.count_since_last_iteration();
        let quantile = value.quantile_iterated_to();
        let inverse = if quantile < 1.0 {
            format!("{:>14.2}", 1.0 / (1.0 - quantile))
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "{:>12.3} {:>14.12} {:>10} {inverse}",
            value.value_iterated_to() as f64,
            quantile,
            total
        );
    }
    let _ = writeln!(
        out,
        "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
        histogram.mean(),
        histogram.stdev()
    );
    let _ = writeln!(
        out,
        "#[Max     = {:>12.3}, Total count    = {:>12}]",
        histogram.max() as f64,
        histogram.len()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn document() -> Value {
        json!({
            "rpc_round_trip": {"connect": {"count": 2, "p50": 40, "p90": 90, "p99": 90, "p99.9": 90, "max": 90,
                                           "values": [[40, 1], [90, 1]]}},
            "connect": {"count": 0, "values": []},
            "ack": {"count": 3, "p50": 100, "p90": 300, "p99": 300, "p99.9": 300, "max": 300,
                    "values": [[100, 2], [300, 1]]},
            "ingress_wait": {"count": 0, "values": []},
        })
    }

    #[test]
    fn rebuild_keeps_counts() {
        let histogram = rebuild(&document()["ack"]).unwrap();
        assert_eq!(histogram.len(), 3);
        assert_eq!(histogram.value_at_quantile(0.5), 100);
    }

    #[test]
    fn format_lists_each_histogram() {
        let lines = format(&document());
        assert!(lines.iter().any(|l| l.starts_with("rpc connect")));
        assert!(lines.iter().any(|l| l.contains("≤      128 µs")));
    }

    #[test]
    fn export_ends_with_totals() {
        let text = percentile_distribution(&rebuild(&document()["ack"]).unwrap());
        assert!(text.starts_with("       Value"));
        assert!(text.contains("Total count    =            3"));
    }
}
