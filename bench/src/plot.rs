//! The report as a PNG: horizontal bars per contender and MTU for throughput, round-trip
//! percentiles and connection rate, on logarithmic axes so a 100× gap stays readable.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::coord::combinators::LogCoord;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{FontStyle, register_font};

use crate::machine::utc_text;
use crate::metric::{Metric, Quantity, metrics};
use crate::results::Report;
use crate::table::format_value;

/// The font the plot uses unless `--font` names another: DejaVu Sans from Debian's
/// fonts-dejavu-core.
pub const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// The family name the font is registered under.
const FAMILY: &str = "sans-serif";

const WIDTH: u32 = 1400;
/// Vertical space per bar, and between two rows of bars, in pixels.
const BAR_HEIGHT: u32 = 14;
const ROW_GAP: u32 = 12;
/// Space above each chart for its caption and legend, in pixels.
const HEADER_HEIGHT: u32 = 34;
/// Space left of each chart for the row names, in pixels.
const Y_LABEL_WIDTH: u32 = 250;
/// Space for each panel's caption and x axis, in pixels.
const PANEL_FRAME: u32 = 110;
/// Space for the title lines at the top, in pixels.
const TITLE_HEIGHT: u32 = 60;

/// Bar colours, one per series of a panel.
const SERIES_COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
];

/// A reason the plot was not written.
#[derive(Debug)]
pub enum PlotError {
    /// The font file cannot be read or parsed.
    Font { path: PathBuf, reason: String },
    /// plotters failed to draw or to encode the PNG.
    Draw(String),
}

impl fmt::Display for PlotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlotError::Font { path, reason } => write!(
                f,
                "cannot load the font {}: {reason}; install it with `apt-get install \
                 fonts-dejavu-core` or name another TrueType font with --font",
                path.display()
            ),
            PlotError::Draw(reason) => write!(f, "cannot draw the plot: {reason}"),
        }
    }
}

impl<E: std::error::Error + Send + Sync> From<DrawingAreaErrorKind<E>> for PlotError {
    fn from(err: DrawingAreaErrorKind<E>) -> PlotError {
        PlotError::Draw(err.to_string())
    }
}

/// Loads the TrueType font at `path` for all later plots. The bytes stay in memory until the
/// process exits, because plotters keeps a `'static` reference to them.
pub fn load_font(path: &Path) -> Result<(), PlotError> {
    let bytes = fs::read(path).map_err(|err| PlotError::Font {
        path: path.to_path_buf(),
        reason: err.to_string(),
    })?;
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    register_font(FAMILY, FontStyle::Normal, bytes).map_err(|_| PlotError::Font {
        path: path.to_path_buf(),
        reason: "not a TrueType or OpenType font".to_owned(),
    })
}

/// Draws the report's throughput, round-trip and connection-rate panels into a PNG at `path`.
/// Call [`load_font`] first.
pub fn draw(report: &Report, path: &Path) -> Result<(), PlotError> {
    let columns = metrics(&report.plan.workloads);
    let panels: Vec<Panel> = [
        Panel::new(
            "Throughput (higher is better)",
            "Gbit/s, log scale",
            &columns,
            |q| matches!(q, Quantity::Throughput),
        ),
        Panel::new(
            "Round trip (lower is better)",
            "µs, log scale",
            &columns,
            |q| matches!(q, Quantity::RoundTrip(_)),
        ),
        Panel::new(
            "Connection rate (higher is better)",
            "connections per second, log scale",
            &columns,
            |q| matches!(q, Quantity::ConnectionsPerSecond),
        ),
    ]
    .into_iter()
    .filter(|panel| !panel.metrics.is_empty())
    .collect();

    let rows = report.rows.len().max(1) as u32;
    let heights: Vec<u32> = panels.iter().map(|panel| panel.height(rows)).collect();
    let height = TITLE_HEIGHT + heights.iter().sum::<u32>();
    let root = BitMapBackend::new(path, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE)?;

    let (title, mut rest) = root.split_vertically(TITLE_HEIGHT);
    draw_title(&title, report)?;
    for (panel, height) in panels.iter().zip(heights) {
        let (area, below) = rest.split_vertically(height);
        panel.draw(&area, report)?;
        rest = below;
    }
    root.present()?;
    Ok(())
}

fn draw_title(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    report: &Report,
) -> Result<(), PlotError> {
    let kind = if report.plan.quick { ", --quick" } else { "" };
    let first = format!(
        "netcon-bench{kind}: {} s iperf3 tests, {} round trips",
        report.plan.seconds, report.plan.rounds
    );
    let second = format!(
        "{} on {}, load average {} at the start",
        utc_text(report.started),
        report.machine.summary(),
        report.machine.load_average
    );
    area.draw(&Text::new(first, (20, 8), (FAMILY, 22).into_font()))?;
    area.draw(&Text::new(second, (20, 34), (FAMILY, 15).into_font()))?;
    Ok(())
}

/// One chart: the metrics of one kind, one bar per metric and row.
struct Panel {
    caption: &'static str,
    axis: &'static str,
    metrics: Vec<Metric>,
}

impl Panel {
    fn new(
        caption: &'static str,
        axis: &'static str,
        columns: &[Metric],
        wanted: impl Fn(Quantity) -> bool,
    ) -> Panel {
        Panel {
            caption,
            axis,
            metrics: columns
                .iter()
                .copied()
                .filter(|metric| wanted(metric.quantity))
                .collect(),
        }
    }

    /// Returns the panel's height in pixels for `rows` rows.
    fn height(&self, rows: u32) -> u32 {
        PANEL_FRAME + rows * (BAR_HEIGHT * self.metrics.len() as u32 + ROW_GAP)
    }

    fn draw(
        &self,
        area: &DrawingArea<BitMapBackend<'_>, Shift>,
        report: &Report,
    ) -> Result<(), PlotError> {
        let (header, area) = area.split_vertically(HEADER_HEIGHT);
        self.draw_header(&header)?;

        let rows = &report.rows;
        let count = rows.len().max(1);
        let values: Vec<f64> = rows
            .iter()
            .flat_map(|row| self.metrics.iter().filter_map(|m| row.value(m).ok()))
            .filter(|value| *value > 0.0)
            .collect();
        let (low, high) = decade_bounds(&values);

        let labels: Vec<String> = rows
            .iter()
            .map(|row| format!("{}, MTU {}", row.contender, row.mtu))
            .collect();
        let label_of = |y: &f64| {
            let nearest = y.round();
            if (y - nearest).abs() > 0.01 || nearest < 0.0 || nearest >= count as f64 {
                return String::new();
            }
            let index = count - 1 - nearest as usize;
            labels.get(index).cloned().unwrap_or_default()
        };

        let mut chart = ChartBuilder::on(&area)
            .margin(12)
            .margin_right(30)
            .x_label_area_size(40)
            .y_label_area_size(Y_LABEL_WIDTH)
            .build_cartesian_2d((low..high).log_scale(), -0.5..(count as f64 - 0.5))?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(count)
            .y_label_formatter(&label_of)
            .x_labels(6)
            .x_label_formatter(&|x| axis_number(*x))
            .x_desc(self.axis)
            .label_style((FAMILY, 14).into_font())
            .axis_desc_style((FAMILY, 14).into_font())
            .draw()?;

        self.draw_bars(&mut chart, report, low)?;
        Ok(())
    }

    /// Draws the caption and, after it, the legend: a coloured square and a label per series.
    fn draw_header(&self, header: &DrawingArea<BitMapBackend<'_>, Shift>) -> Result<(), PlotError> {
        let caption_font = TextStyle::from((FAMILY, 18).into_font());
        let mut x = Y_LABEL_WIDTH as i32 + 12;
        header.draw(&Text::new(self.caption, (x, 8), caption_font.clone()))?;
        x += header.estimate_text_size(self.caption, &caption_font)?.0 as i32 + 30;

        let label_font = TextStyle::from((FAMILY, 14).into_font());
        for (series, metric) in self.metrics.iter().enumerate() {
            let color = SERIES_COLORS[series % SERIES_COLORS.len()];
            header.draw(&Rectangle::new([(x, 9), (x + 14, 23)], color.filled()))?;
            let label = metric.label();
            header.draw(&Text::new(label.clone(), (x + 19, 10), label_font.clone()))?;
            x += 19 + header.estimate_text_size(&label, &label_font)?.0 as i32 + 18;
        }
        Ok(())
    }

    /// Draws a bar with its value per metric and row, and the reason in place of a row's bars
    /// when it has none. Row 0 is drawn at the top, so its y coordinate is the largest.
    fn draw_bars(
        &self,
        chart: &mut Chart<'_, '_>,
        report: &Report,
        low: f64,
    ) -> Result<(), PlotError> {
        let rows = &report.rows;
        let count = rows.len().max(1);
        let row_y = |index: usize| (count - 1 - index) as f64;
        let slot = 0.8 / self.metrics.len() as f64;
        for (series, metric) in self.metrics.iter().enumerate() {
            let color = SERIES_COLORS[series % SERIES_COLORS.len()];
            let mut bars = Vec::new();
            let mut texts = Vec::new();
            for (index, row) in rows.iter().enumerate() {
                let Ok(value) = row.value(metric) else {
                    continue;
                };
                let top = row_y(index) + 0.4 - slot * series as f64;
                let bottom = top - slot * 0.9;
                let end = value.max(low);
                bars.push(Rectangle::new([(low, bottom), (end, top)], color.filled()));
                let text = format!(" {}", format_value(metric, value));
                let style = TextStyle::from((FAMILY, 11).into_font())
                    .pos(Pos::new(HPos::Left, VPos::Center));
                texts.push(Text::new(text, (end, (top + bottom) / 2.0), style));
            }
            chart.draw_series(bars)?;
            chart.draw_series(texts)?;
        }

        let missing = rows.iter().enumerate().filter_map(|(index, row)| {
            if self.metrics.iter().any(|m| row.value(m).is_ok()) {
                return None;
            }
            let reason = self.metrics.iter().find_map(|m| row.value(m).err())?;
            let style = (FAMILY, 12).into_font().color(&RGBColor(120, 120, 120));
            let style = style.pos(Pos::new(HPos::Left, VPos::Center));
            Some(Text::new(short_reason(&reason), (low, row_y(index)), style))
        });
        chart.draw_series(missing)?;
        Ok(())
    }
}

/// A panel's chart: logarithmic x for the values, linear y for the rows.
type Chart<'a, 'b> =
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<LogCoord<f64>, RangedCoordf64>>;

/// Returns axis bounds on whole powers of ten around `values` (all positive), with a decade
/// of room on the right for the number printed after the longest bar.
fn decade_bounds(values: &[f64]) -> (f64, f64) {
    let low = values.iter().copied().fold(f64::INFINITY, f64::min);
    let high = values.iter().copied().fold(0.0, f64::max);
    if values.is_empty() {
        return (1.0, 10.0);
    }
    let low = 10f64.powf(low.log10().floor());
    let high = 10f64.powf((high * 3.0).log10().ceil());
    (low, high)
}

/// Formats an axis value without trailing zeros: 0.1, 1, 10, 1000.
fn axis_number(value: f64) -> String {
    if value >= 1.0 {
        format!("{value:.0}")
    } else {
        let text = format!("{value:.3}");
        text.trim_end_matches('0').to_owned()
    }
}

/// Cuts a reason to what fits beside a row in the plot.
fn short_reason(reason: &str) -> String {
    const MAX_CHARS: usize = 110;
    let mut text: String = reason.chars().take(MAX_CHARS).collect();
    if reason.chars().count() > MAX_CHARS {
        text.push('…');
    }
    format!(" {text}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::tests::sample_report;

    #[test]
    fn draw_writes_png() {
        if let Err(err) = load_font(Path::new(DEFAULT_FONT)) {
            panic!("{err}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plot.png");
        draw(&sample_report(), &path).unwrap();
        let bytes = fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    }

    #[test]
    fn missing_font_names_package() {
        let err = load_font(Path::new("/nonexistent/font.ttf")).unwrap_err();
        assert!(err.to_string().contains("fonts-dejavu-core"), "{err}");
    }

    #[test]
    fn decade_bounds_round_out() {
        assert_eq!(decade_bounds(&[0.39, 20.1]), (0.1, 100.0));
        assert_eq!(decade_bounds(&[656.0, 2448.0]), (100.0, 10_000.0));
        assert_eq!(decade_bounds(&[]), (1.0, 10.0));
    }

    #[test]
    fn axis_numbers_plain() {
        assert_eq!(axis_number(1000.0), "1000");
        assert_eq!(axis_number(0.1), "0.1");
    }

    #[test]
    fn short_reason_cuts() {
        assert!(short_reason(&"x".repeat(500)).ends_with('…'));
        assert_eq!(short_reason("ok"), " ok");
    }
}
