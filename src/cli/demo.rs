//! `marrow demo`: a fresh study built from the synthetic fixtures.

use anyhow::Result;
use std::path::PathBuf;

pub fn run(dir: Option<PathBuf>, no_tui: bool) -> Result<u8> {
    let _ = (dir, no_tui);
    anyhow::bail!("demo not built yet")
}
