//! `netcon-ctl status`: per-worker counters.

use serde_json::Value;

/// Formats the status document as a table.
pub fn format(status: &Value) -> Vec<String> {
    let mut lines = vec![format!(
        "uptime {:.0} s, {} control clients, {} sockets open of at most {} ({} rejected)",
        status["uptime_seconds"].as_f64().unwrap_or(0.0),
        status["clients"],
        status["open_sockets"],
        status["max_connections"],
        status["sockets_rejected"],
    )];
    let rpcs: Vec<String> = status["rpcs"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, n)| n.as_u64() != Some(0))
                .map(|(k, n)| format!("{k} {n}"))
                .collect()
        })
        .unwrap_or_default();
    lines.push(format!(
        "RPCs served: {}",
        if rpcs.is_empty() {
            "none".into()
        } else {
            rpcs.join(", ")
        }
    ));
    lines.push(String::new());
    const COLUMNS: [(&str, &str); 19] = [
        ("worker", "worker"),
        ("frames_in", "frames in"),
        ("bytes_in", "bytes in"),
        ("frames_out", "frames out"),
        ("bytes_out", "bytes out"),
        ("tx_dropped", "tx drops"),
        ("tap_errors", "tap errors"),
        ("handed_out", "handed out"),
        ("handed_in", "handed in"),
        ("sqes", "sqes"),
        ("cqes", "cqes"),
        ("ring_full", "ring full"),
        ("connections", "conns"),
        ("connections_rejected", "conns rejected"),
        ("udp_sockets", "udp socks"),
        ("udp_rx_dropped", "udp rx drops"),
        ("udp_rx_overflows", "udp overflow"),
        ("udp_tx_dropped", "udp tx drops"),
        ("fragments_dropped", "frag drops"),
    ];
    let rows: Vec<Vec<String>> = status["workers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|worker| {
            COLUMNS
                .iter()
                .map(|(key, _)| worker[*key].to_string())
                .collect()
        })
        .collect();
    // Each column is as wide as its title or its widest value, so no two run together.
    let widths: Vec<usize> = COLUMNS
        .iter()
        .enumerate()
        .map(|(index, (_, title))| {
            let widest = rows.iter().map(|row| row[index].len()).max().unwrap_or(0);
            title.len().max(widest)
        })
        .collect();
    let line = |cells: Vec<&str>| -> String {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:>width$}"))
            .collect();
        padded.join("  ")
    };
    lines.push(line(COLUMNS.iter().map(|(_, title)| *title).collect()));
    for row in &rows {
        lines.push(line(row.iter().map(String::as_str).collect()));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table_has_a_row_per_worker() {
        let status = serde_json::json!({
            "uptime_seconds": 3.0, "clients": 1, "sockets": 2,
            "open_sockets": 2, "max_connections": 8, "sockets_rejected": 1,
            "rpcs": {"socket": 2, "bind": 0},
            "workers": [{"worker": 0, "frames_in": 10}, {"worker": 1, "frames_in": 20}],
        });
        let lines = format(&status);
        assert!(
            lines[0].contains("2 sockets open of at most 8 (1 rejected)"),
            "{}",
            lines[0]
        );
        assert!(lines[1].contains("socket 2"));
        assert!(!lines[1].contains("bind"));
        assert_eq!(lines.len(), 6);
        assert!(lines[5].contains("20"));
        assert!(
            lines[3].contains("conns  conns rejected  udp socks"),
            "titles run together: {}",
            lines[3]
        );
        assert_eq!(
            lines[3].len(),
            lines[4].len(),
            "rows and titles do not line up"
        );
    }
}
