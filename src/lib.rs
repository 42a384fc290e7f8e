//! marrow: curate and review the cohort of a two-hospital study of musculoskeletal
//! aging (osteoporosis and knee osteoarthritis) from the terminal.

pub mod cli;
pub mod db;
pub mod dicom;
pub mod domain;
#[doc(hidden)]
pub mod fuzz;
pub mod import;
pub mod inference;
pub mod synth;
pub mod tui;

static PROCESS_START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

/// When this process started; the first call fixes it (main calls it first thing).
/// Startup timings in the log (such as the TUI's first frame) count from here.
pub fn process_start() -> std::time::Instant {
    *PROCESS_START.get_or_init(std::time::Instant::now)
}
