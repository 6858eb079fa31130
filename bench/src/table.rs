//! The report as Markdown: the absolute figures, then the ratios against kernel veth and
//! against slirp4netns, with the reason beside every figure that is missing.

use std::fmt::Write;

use crate::contender::Stack;
use crate::instances::Comparison;
use crate::machine::utc_text;
use crate::metric::{Metric, Quantity, metrics};
use crate::plan::MESSAGE_SIZE;
use crate::results::{Report, Row};

/// The maximum length of a reason in a table cell, in characters. The JSON file keeps the
/// whole text.
const MAX_NOTE_CHARS: usize = 300;

/// Returns the whole report as Markdown: a heading, what was measured on what, and the
/// three tables.
pub fn markdown(report: &Report) -> String {
    let mut text = String::new();
    let plan = &report.plan;
    let kind = if plan.quick { " (--quick)" } else { "" };
    let _ = writeln!(text, "## netcon-bench results{kind}\n");
    let _ = writeln!(
        text,
        "Measured {} on {}.  \nLoad average (1, 5, 15 min) at the start: {}.  \nPeer \
         programs: {}.  \nCommand: `{}`\n",
        utc_text(report.started),
        report.machine.summary(),
        report.machine.load_average,
        report.machine.package_summary(),
        report.command
    );
    let _ = writeln!(
        text,
        "Throughput is what the receiver got with iperf3 in {s} s tests, in Gbit/s, over 1 or \
         4 streams; up is from the client (the program on the contender's stack) to the \
         server, down is `iperf3 -R`. p50 to p99.9 are round trips of {MESSAGE_SIZE} B \
         messages on one connection ({rounds} rounds), in µs. conn/s counts connections \
         opened one after another for {s} s (connect, a {MESSAGE_SIZE} B request and its \
         reply, close).\n",
        s = plan.seconds,
        rounds = plan.rounds
    );
    if report.interrupted {
        let _ = writeln!(text, "The run was interrupted, so some rows are missing.\n");
    }

    let columns = metrics(&plan.workloads);
    text.push_str(&absolute_table(report, &columns));
    for (reference, name) in [
        (Stack::Veth, "kernel veth"),
        (Stack::Slirp4netns, "slirp4netns"),
    ] {
        let _ = writeln!(
            text,
            "\n### Ratio to {name} at the same MTU\n\nAbove 1 is more throughput or more \
             connections per second than {name}, and longer round trips.\n"
        );
        text.push_str(&ratio_table(report, &columns, reference));
    }
    if let Some(outcome) = &report.instances {
        text.push_str(&instance_table(outcome));
    }
    text
}

fn absolute_table(report: &Report, columns: &[Metric]) -> String {
    let mut text = String::from("### Figures\n\n");
    header(&mut text, columns, true);
    for row in &report.rows {
        let cells: Vec<String> = columns
            .iter()
            .map(|metric| match row.value(metric) {
                Ok(value) => format_value(metric, value),
                Err(_) if row.outcome.is_err() => "–".to_owned(),
                Err(_) => "failed".to_owned(),
            })
            .collect();
        line(&mut text, row, &cells, Some(&notes(row, columns)));
    }
    text
}

fn ratio_table(report: &Report, columns: &[Metric], reference: Stack) -> String {
    let mut text = String::new();
    header(&mut text, columns, false);
    for row in &report.rows {
        let cells: Vec<String> = columns
            .iter()
            .map(|metric| {
                report
                    .ratio(row, metric, reference)
                    .map_or_else(|| "–".to_owned(), format_ratio)
            })
            .collect();
        line(&mut text, row, &cells, None);
    }
    text
}

/// Returns the instance-to-instance section: the kernel path, then each worker count with
/// its ratio to the kernel and to one worker.
fn instance_table(outcome: &Result<Comparison, String>) -> String {
    let mut text = String::from("\n### Instance to instance\n\n");
    let comparison = match outcome {
        Ok(comparison) => comparison,
        Err(reason) => {
            let _ = writeln!(text, "Not run: {}", escape(reason));
            return text;
        }
    };
    let _ = writeln!(
        text,
        "iperf3, 1 stream, {} s, from a program behind one netcon-dp to a program behind \
         another, both instances on one Linux bridge (each run by its own unprivileged user \
         on a TAP made for it, MTU 1500, the same --workers on both ends), next to the \
         kernel's TCP on both ends of the same bridge.\n",
        comparison.seconds
    );
    let _ = writeln!(
        text,
        "| path | Gbit/s | ratio to kernel | ratio to --workers 1 |"
    );
    let _ = writeln!(text, "|---|---:|---:|---:|");
    let kernel = comparison.kernel.bits_per_second;
    let _ = writeln!(
        text,
        "| kernel on both ends | {:.2} | 1.00× | – |",
        kernel / 1e9
    );
    let one_worker = comparison
        .instances
        .iter()
        .find(|(workers, _)| *workers == 1)
        .map(|(_, throughput)| throughput.bits_per_second);
    for (workers, throughput) in &comparison.instances {
        let bits = throughput.bits_per_second;
        let to_kernel = if kernel > 0.0 {
            format_ratio(bits / kernel)
        } else {
            "–".to_owned()
        };
        let to_one = one_worker
            .filter(|&one| one > 0.0)
            .map_or_else(|| "–".to_owned(), |one| format_ratio(bits / one));
        let _ = writeln!(
            text,
            "| netcon --workers {workers} on both ends | {:.2} | {to_kernel} | {to_one} |",
            bits / 1e9
        );
    }
    text
}

fn header(text: &mut String, columns: &[Metric], with_notes: bool) {
    let mut names = vec!["contender".to_owned(), "MTU".to_owned()];
    names.extend(columns.iter().map(|metric| {
        let unit = match metric.quantity {
            Quantity::Throughput => "Gbit/s",
            Quantity::RoundTrip(_) => "µs",
            Quantity::ConnectionsPerSecond => "",
        };
        if unit.is_empty() || !with_notes {
            metric.label()
        } else {
            format!("{} ({unit})", metric.label())
        }
    }));
    let mut rule = vec!["---".to_owned(), "---:".to_owned()];
    rule.extend(columns.iter().map(|_| "---:".to_owned()));
    if with_notes {
        names.push("notes".to_owned());
        rule.push("---".to_owned());
    }
    let _ = writeln!(text, "| {} |", names.join(" | "));
    let _ = writeln!(text, "|{}|", rule.join("|"));
}

fn line(text: &mut String, row: &Row, cells: &[String], notes: Option<&str>) {
    let mut fields = vec![row.contender.to_string(), row.mtu.to_string()];
    fields.extend(cells.iter().cloned());
    if let Some(notes) = notes {
        fields.push(notes.to_owned());
    }
    let _ = writeln!(text, "| {} |", fields.join(" | "));
}

/// Returns why the row's figures are missing: the setup error, or each failed column's
/// reason.
fn notes(row: &Row, columns: &[Metric]) -> String {
    if let Err(reason) = &row.outcome {
        return format!("not run: {}", escape(reason));
    }
    let mut notes: Vec<String> = Vec::new();
    for metric in columns {
        if let Err(reason) = row.value(metric) {
            let note = format!("{}: {}", metric.workload, escape(&reason));
            if !notes.contains(&note) {
                notes.push(note);
            }
        }
    }
    notes.join("; ")
}

/// Makes `reason` safe inside a table cell and cuts it to [`MAX_NOTE_CHARS`].
fn escape(reason: &str) -> String {
    let mut text: String = reason.replace('|', "\\|").replace('\n', " ");
    if text.chars().count() > MAX_NOTE_CHARS {
        text = text.chars().take(MAX_NOTE_CHARS).collect();
        text.push('…');
    }
    text
}

/// Formats a figure with about three significant digits.
pub fn format_value(metric: &Metric, value: f64) -> String {
    match metric.quantity {
        Quantity::Throughput if value >= 10.0 => format!("{value:.1}"),
        Quantity::Throughput => format!("{value:.2}"),
        Quantity::RoundTrip(_) if value >= 100.0 => format!("{value:.0}"),
        Quantity::RoundTrip(_) => format!("{value:.1}"),
        Quantity::ConnectionsPerSecond => format!("{value:.0}"),
    }
}

/// Formats a ratio such as `0.12×` or `15.3×`.
pub fn format_ratio(ratio: f64) -> String {
    if ratio >= 10.0 {
        format!("{ratio:.1}×")
    } else {
        format!("{ratio:.2}×")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::tests::sample_report;

    #[test]
    fn markdown_has_instance_ratios() {
        use crate::instances::Throughput;
        let throughput = |gbits: f64| Throughput {
            bits_per_second: gbits * 1e9,
            received_bytes: 1,
        };
        let mut report = sample_report();
        report.instances = Some(Ok(Comparison {
            seconds: 3,
            kernel: throughput(20.0),
            instances: vec![(1, throughput(4.0)), (2, throughput(6.0))],
        }));
        let text = markdown(&report);
        assert!(text.contains("### Instance to instance"), "{text}");
        assert!(
            text.contains("| netcon --workers 2 on both ends | 6.00 | 0.30× | 1.50× |"),
            "{text}"
        );

        report.instances = Some(Err("user nobody not found".to_owned()));
        assert!(markdown(&report).contains("Not run: user nobody not found"));
    }

    #[test]
    fn markdown_has_three_tables() {
        let text = markdown(&sample_report());
        assert!(text.contains("### Figures"), "{text}");
        assert!(text.contains("### Ratio to kernel veth"), "{text}");
        assert!(text.contains("### Ratio to slirp4netns"), "{text}");
    }

    #[test]
    fn markdown_row_says_why_not_run() {
        let text = markdown(&sample_report());
        let row = text
            .lines()
            .find(|line| line.starts_with("| netcon --workers 2 |"))
            .unwrap();
        assert!(
            row.contains("not run: netcon-dp: error: invalid --workers 2"),
            "{row}"
        );
    }

    #[test]
    fn markdown_names_failed_cell() {
        let text = markdown(&sample_report());
        let row = text
            .lines()
            .find(|line| line.starts_with("| netcon --workers 1 |"))
            .unwrap();
        assert!(row.contains("| failed |"), "{row}");
        assert!(
            row.contains("iperf3 download, 1 stream: iperf3 reported: broken"),
            "{row}"
        );
    }

    #[test]
    fn markdown_ratio_rows() {
        let text = markdown(&sample_report());
        let veth_table = text.split("### Ratio to kernel veth").nth(1).unwrap();
        let row = veth_table
            .lines()
            .find(|line| line.starts_with("| netcon --workers 1 |"))
            .unwrap();
        // Upload 2 of 20 Gbit/s, download failed, p50 100 of 20 µs.
        assert!(
            row.starts_with("| netcon --workers 1 | 1500 | 0.10× | – | 5.00× |"),
            "{row}"
        );
    }

    #[test]
    fn escape_cuts_long_reasons() {
        let long = "x|".repeat(400);
        let escaped = escape(&long);
        assert!(escaped.ends_with('…'));
        assert!(escaped.starts_with("x\\|x"));
    }
}
