//! Criterion settings shared by the micro-benchmarks.

use std::path::Path;

use criterion::Criterion;
use netcon_bench::plot::{DEFAULT_FONT, load_font};

/// Returns criterion's default settings, with the font that its report charts need.
///
/// netcon-bench enables plotters' `ab_glyph` feature, so every plotters user in the build,
/// criterion's charts included, draws text only with a registered font. Without the font the
/// charts are turned off instead of failing the run.
pub fn criterion_config() -> Criterion {
    match load_font(Path::new(DEFAULT_FONT)) {
        Ok(()) => Criterion::default(),
        Err(err) => {
            eprintln!("warning: {err}; criterion's charts are turned off");
            Criterion::default().without_plots()
        }
    }
}
