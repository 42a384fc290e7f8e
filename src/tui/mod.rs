//! The terminal application.

use std::path::Path;

/// Opens the TUI on a study database.
pub fn run(db: &Path, key_file: Option<&Path>, as_user: Option<&str>) -> anyhow::Result<()> {
    let _ = (db, key_file, as_user);
    anyhow::bail!("the TUI is not built yet")
}
