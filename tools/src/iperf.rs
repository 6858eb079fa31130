//! Reads the totals out of `iperf3 -J` output.

use serde_json::Value;

/// The totals of one iperf3 test, from the client's JSON report (`end.sum_sent` and
/// `end.sum_received`).
#[derive(Debug, Clone, PartialEq)]
pub struct IperfTotals {
    pub sent_bytes: u64,
    pub sent_bits_per_second: f64,
    pub received_bytes: u64,
    pub received_bits_per_second: f64,
    /// TCP retransmissions seen by the sender, when iperf3 reports them.
    pub retransmits: Option<u64>,
}

/// Parses `iperf3 -J` output.
///
/// Returns iperf3's own `error` text when the report has one, or a description of the field
/// that is missing.
pub fn parse_iperf_json(text: &str) -> Result<IperfTotals, String> {
    let report: Value =
        serde_json::from_str(text).map_err(|err| format!("invalid iperf3 JSON: {err}"))?;
    if let Some(error) = report.get("error").and_then(Value::as_str) {
        return Err(format!("iperf3 reported: {error}"));
    }
    let end = report.get("end").ok_or("iperf3 JSON has no `end` object")?;
    let sum = |name: &str| {
        end.get(name)
            .ok_or(format!("iperf3 JSON has no `end.{name}`"))
    };
    let sent = sum("sum_sent")?;
    let received = sum("sum_received")?;

    let field = |sum: &Value, name: &str| sum.get(name).and_then(Value::as_f64);
    let missing = |name: &str| format!("iperf3 JSON has no `{name}` in its totals");
    Ok(IperfTotals {
        sent_bytes: field(sent, "bytes").ok_or_else(|| missing("bytes"))? as u64,
        sent_bits_per_second: field(sent, "bits_per_second")
            .ok_or_else(|| missing("bits_per_second"))?,
        received_bytes: field(received, "bytes").ok_or_else(|| missing("bytes"))? as u64,
        received_bits_per_second: field(received, "bits_per_second")
            .ok_or_else(|| missing("bits_per_second"))?,
        retransmits: sent.get("retransmits").and_then(Value::as_u64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_parsed() {
        let text = r#"{"start":{},"end":{
            "sum_sent":{"bytes":1000,"bits_per_second":8000.5,"retransmits":3},
            "sum_received":{"bytes":990,"bits_per_second":7920.0}}}"#;
        let totals = parse_iperf_json(text).unwrap();
        assert_eq!(totals.sent_bytes, 1000);
        assert_eq!(totals.sent_bits_per_second, 8000.5);
        assert_eq!(totals.received_bytes, 990);
        assert_eq!(totals.received_bits_per_second, 7920.0);
        assert_eq!(totals.retransmits, Some(3));
    }

    #[test]
    fn iperf_error_reported() {
        let text = r#"{"start":{},"end":{},"error":"unable to connect to server"}"#;
        let err = parse_iperf_json(text).unwrap_err();
        assert!(err.contains("unable to connect"), "{err}");
    }

    #[test]
    fn missing_sum_reported() {
        let err = parse_iperf_json(r#"{"end":{"sum_sent":{}}}"#).unwrap_err();
        assert!(err.contains("sum_received"), "{err}");
    }

    #[test]
    fn garbage_rejected() {
        assert!(parse_iperf_json("iperf3: error").is_err());
    }
}
