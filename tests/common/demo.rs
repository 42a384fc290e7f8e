//! The demo study (`marrow demo`: patients, images, reads, finals, predictions),
//! built once per test binary and copied for each test that changes it.

use super::{TempStudy, stderr, stdout};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), &t).unwrap();
        }
    }
}

/// The demo study, built on first use (one per test process).
pub fn demo_source() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("marrow-test-demo-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_marrow"))
            .args(["demo", "--no-tui", "--dir"])
            .arg(&dir)
            .env_remove("MARROW_KEY")
            .output()
            .expect("run marrow demo");
        assert!(
            out.status.success(),
            "demo failed:\n{}\n{}",
            stdout(&out),
            stderr(&out)
        );
        dir
    })
}

/// A private copy of the demo study.
pub fn demo() -> TempStudy {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(demo_source(), dir.path());
    let db = dir.path().join("demo.db");
    TempStudy { dir, db }
}
