//! marrow: curate and review the cohort of a two-hospital study of musculoskeletal
//! aging (osteoporosis and knee osteoarthritis) from the terminal.

pub mod cli;
pub mod db;
pub mod domain;
pub mod import;
pub mod synth;
pub mod tui;
