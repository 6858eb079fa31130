//! `netcon-ctl show`: one row per intercepted socket.

use serde_json::Value;

/// Which rows to keep.
#[derive(Clone, Copy, Debug, Default)]
pub struct Filter {
    pub pid: Option<i64>,
    /// Matches the local or the remote port.
    pub port: Option<u16>,
}

impl Filter {
    fn keeps(&self, row: &Value) -> bool {
        let pid_ok = self.pid.is_none_or(|pid| row["pid"].as_i64() == Some(pid));
        let port_ok = self.port.is_none_or(|port| {
            [&row["local"], &row["remote"]]
                .iter()
                .any(|addr| port_of(addr) == Some(port))
        });
        pid_ok && port_ok
    }
}

fn port_of(addr: &Value) -> Option<u16> {
    addr.as_str()?.rsplit_once(':')?.1.parse().ok()
}

/// The rows of the document that pass `filter`, as a JSON document of the same shape.
pub fn filtered(document: &Value, filter: Filter) -> Value {
    let rows: Vec<Value> = document["sockets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|row| filter.keeps(row))
        .cloned()
        .collect();
    serde_json::json!({ "sockets": rows })
}

/// Formats the rows as a table.
pub fn format(document: &Value) -> Vec<String> {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    let mut lines = vec![format!(
        "{:>7} {:<12} {:>4} {:<5} {:<21} {:<21} {:<12} {:>3} {:>12} {:>12} {:>8} {:>8} {:>8} {:>5}",
        "PID",
        "PROGRAM",
        "FD",
        "PROTO",
        "LOCAL",
        "REMOTE",
        "STATE",
        "WKR",
        "BYTES IN",
        "BYTES OUT",
        "SENDQ",
        "RECVQ",
        "AGE",
        "UNHON"
    )];
    for row in document["sockets"].as_array().into_iter().flatten() {
        lines.push(format!(
            "{:>7} {:<12} {:>4} {:<5} {:<21} {:<21} {:<12} {:>3} {:>12} {:>12} {:>8} {:>8} {:>7.0}s {:>5}",
            text(&row["pid"]),
            text(&row["program"]),
            text(&row["fd"]),
            text(&row["protocol"]),
            text(&row["local"]),
            text(&row["remote"]),
            text(&row["tcp_state"]),
            text(&row["worker"]),
            text(&row["bytes_in"]),
            text(&row["bytes_out"]),
            text(&row["send_queue"]),
            text(&row["recv_queue"]),
            row["age_seconds"].as_f64().unwrap_or(0.0),
            text(&row["unhonoured_options"]),
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn document() -> Value {
        json!({"sockets": [
            {"pid": 10, "fd": 3, "local": "10.77.0.2:40000", "remote": "10.77.0.1:80"},
            {"pid": 11, "fd": 4, "local": "0.0.0.0:8080", "remote": null},
        ]})
    }

    #[test]
    fn filter_by_pid() {
        let kept = filtered(
            &document(),
            Filter {
                pid: Some(11),
                port: None,
            },
        );
        assert_eq!(kept["sockets"].as_array().unwrap().len(), 1);
        assert_eq!(kept["sockets"][0]["fd"], 4);
    }

    #[test]
    fn filter_by_remote_port() {
        let kept = filtered(
            &document(),
            Filter {
                pid: None,
                port: Some(80),
            },
        );
        assert_eq!(kept["sockets"].as_array().unwrap().len(), 1);
        assert_eq!(kept["sockets"][0]["pid"], 10);
    }

    #[test]
    fn table_has_header_and_rows() {
        let lines = format(&document());
        assert_eq!(lines.len(), 3);
        assert!(lines[0].contains("PROGRAM"));
        assert!(lines[2].contains("0.0.0.0:8080"));
    }
}
