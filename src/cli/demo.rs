//! `marrow demo`: a fresh study built from the synthetic fixtures (hand-written edge
//! cases plus a generated cohort), then the TUI on it.

use crate::db::Study;
use crate::domain::protocol::Protocol;
use crate::domain::user::Role;
use crate::import::{self, ImportKind};
use anyhow::{Context, Result, bail};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// The hand-written edge cases, built into the binary so the demo runs from anywhere.
const FIXTURES: &[(&str, &str, ImportKind)] = &[
    (
        "patients.csv",
        include_str!("../../fixtures/demo/patients.csv"),
        ImportKind::Patients,
    ),
    (
        "dxa.csv",
        include_str!("../../fixtures/demo/dxa.csv"),
        ImportKind::Dxa,
    ),
    (
        "labs.csv",
        include_str!("../../fixtures/demo/labs.csv"),
        ImportKind::Labs,
    ),
    (
        "patients_bad.csv",
        include_str!("../../fixtures/demo/patients_bad.csv"),
        ImportKind::Patients,
    ),
];

/// Generated patients added to the edge cases, so lists and figures look like a study.
pub const GENERATED_PATIENTS: usize = 600;

/// Demo users besides the OS user (who is admin): one per role.
pub const DEMO_USERS: &[(&str, Role)] = &[
    ("demo-coordinator", Role::Coordinator),
    ("demo-reader-1", Role::Reader),
    ("demo-reader-2", Role::Reader),
    ("demo-adjudicator", Role::Adjudicator),
    ("demo-pi", Role::Pi),
];

/// Builds the demo study in `dir` and returns the database path.
pub fn build(dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let db = dir.join("demo.db");
    if db.exists() {
        bail!(
            "{} already holds a demo study; open it with `marrow --db {}` or pick another --dir",
            dir.display(),
            db.display()
        );
    }
    Study::init(&db, None, Protocol::default())?;
    let mut study = Study::open(&db, None, None)?;
    for (name, role) in DEMO_USERS {
        study.add_user(name, *role)?;
    }
    let exports = dir.join("exports");
    std::fs::create_dir_all(&exports)?;
    for (name, text, kind) in FIXTURES {
        let path = exports.join(name);
        std::fs::write(&path, text)?;
        let r = import::import_csv(&mut study, *kind, &path, |_, _| {})?;
        println!(
            "  {name:<24} {:>5} rows: {} added, {} rejected{}",
            r.rows,
            r.inserted,
            r.rejected.len(),
            if r.rejected.is_empty() {
                String::new()
            } else {
                format!(
                    " (on purpose: see {})",
                    crate::import::rejected_path(&path).display()
                )
            }
        );
    }
    let generated = dir.join("generated");
    std::fs::create_dir_all(&generated)?;
    crate::synth::write_exports(&generated, GENERATED_PATIENTS, 2026)?;
    for (name, kind) in [
        ("patients.csv", ImportKind::Patients),
        ("dxa.csv", ImportKind::Dxa),
        ("labs.csv", ImportKind::Labs),
    ] {
        let path = generated.join(name);
        let r = import::import_csv(&mut study, kind, &path, |_, _| {})?;
        let label = format!("generated/{name}");
        println!(
            "  {label:<24} {:>5} rows: {} added, {} rejected",
            r.rows,
            r.inserted,
            r.rejected.len()
        );
    }
    // Synthetic radiographs of some fixture patients (and one of nobody's), written
    // by the generator of `fixtures/dicom/`, then imported like a hospital's folder.
    let images = dir.join("dicom");
    crate::dicom::synth::write_fixtures(&images)?;
    let r = crate::dicom::import_dicom(&mut study, std::slice::from_ref(&images), |_| {})?;
    println!(
        "  {:<24} {:>5} files: {} imported, {} waiting for their patient (on purpose: `marrow flags` lists it)",
        "dicom/", r.files, r.imported, r.quarantined
    );
    let cohort = super::demo_cohort::build(
        &mut study,
        &db,
        &generated.join("patients.csv"),
        &dir.join("dicom-cohort"),
    )?;
    println!(
        "  {:<24} {:>5} files: phantom radiographs of {} generated patients; {} reads by two demo readers, {} adjudicated",
        "dicom-cohort/", cohort.images, cohort.patients, cohort.reads, cohort.adjudicated
    );
    let report = crate::inference::jobs::infer(
        &mut study,
        &crate::inference::jobs::InferOptions {
            task: None,
            all: false,
            backend: crate::inference::backend::BackendChoice::Cpu,
        },
        &mut |_, _| {},
    )?;
    println!(
        "  {:<24} {:>5} images predicted by {} ({}, {:.1} s)",
        "model",
        report.predicted,
        report.models.join(" and "),
        report.backend,
        report.seconds
    );
    Ok(db)
}

pub fn run(dir: Option<PathBuf>, no_tui: bool) -> Result<u8> {
    let dir = dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!(
            "marrow-demo-{}",
            chrono::Utc::now().format("%Y%m%d-%H%M%S")
        ))
    });
    println!("building a demo study in {}", dir.display());
    let db = build(&dir)?;
    let study = Study::open(&db, None, None)?;
    print!("{}", super::output::status_table(&study.status()?));
    drop(study);
    println!();
    println!("open it again:   marrow --db {}", db.display());
    println!(
        "try a role:      marrow --db {} --as demo-reader-1   (or demo-reader-2, demo-adjudicator, demo-pi, demo-coordinator)",
        db.display()
    );
    if no_tui {
        return Ok(0);
    }
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        println!("(not a terminal, so the TUI was not opened)");
        return Ok(0);
    }
    crate::tui::run(&db, None, None)?;
    Ok(0)
}
