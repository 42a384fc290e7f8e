//! `marrow export analysis|consort|summary` and `marrow summary merge`: the
//! statistician's de-identified table with its data dictionary, the CONSORT flow
//! diagram, and the aggregate summary two hospitals exchange.

use super::{Global, open};
use crate::domain::consort;
use crate::domain::summary::{self, Summary};
use anyhow::{Context, Result, anyhow};
use clap::{Subcommand, ValueEnum};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// One row per eligible patient and knee, no identifier, dates shifted per patient; FILE.dictionary.csv beside it.
    Analysis {
        #[arg(long, value_name = "FILE.csv")]
        out: PathBuf,
    },
    /// The CONSORT flow (assessed, excluded per criterion, eligible, imaged, read, final, model, analysed).
    Consort {
        #[arg(long, value_enum, default_value_t = ConsortFormat::Json)]
        format: ConsortFormat,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Aggregate counts only (the dashboard's numbers), counts under 5 suppressed: safe to send to the other hospital.
    Summary {
        #[arg(long, value_name = "FILE.json")]
        out: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConsortFormat {
    Json,
    Svg,
}

#[derive(Debug, Subcommand)]
pub enum SummaryCommand {
    /// The combined view of two sites' `marrow export summary` files.
    Merge {
        a: PathBuf,
        b: PathBuf,
        #[arg(long)]
        json: bool,
        /// Open the combined view in the terminal application (read-only; needs no study database).
        #[arg(long, conflicts_with = "json")]
        tui: bool,
    },
}

/// Writes a file private to its owner (0600), replacing it whole.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.is_dir()
    {
        return Err(anyhow!("the folder {} does not exist", dir.display()));
    }
    let tmp = {
        let mut s = path.as_os_str().to_owned();
        s.push(".tmp");
        PathBuf::from(s)
    };
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(bytes)
            .and_then(|_| f.sync_all())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// `FILE.dictionary.csv` beside `FILE.csv`.
pub fn dictionary_path(out: &Path) -> PathBuf {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "analysis".into());
    out.with_file_name(format!("{stem}.dictionary.csv"))
}

fn csv_bytes(header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(header)?;
    for r in rows {
        w.write_record(&r)?;
    }
    w.into_inner().map_err(|e| anyhow!("{e}"))
}

/// The title of the CONSORT diagram.
pub fn consort_title(study: &crate::db::Study) -> String {
    format!(
        "CONSORT flow: {} (musculoskeletal aging study, IRB 2026PHB097-001)",
        study.protocol().sites.join(" + ")
    )
}

/// Today at the sites (UTC+8; `MARROW_TODAY=YYYY-MM-DD` overrides it): `domain::clock`.
pub fn today() -> chrono::NaiveDate {
    crate::domain::clock::today_local()
}

pub fn export(g: &Global, what: ExportCommand) -> Result<u8> {
    let study = open(g)?;
    match what {
        ExportCommand::Analysis { out } => {
            let t = study.analysis_table(today())?;
            let header: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
            write_private(&out, &csv_bytes(&header, t.rows.iter().cloned())?)?;
            let dict = dictionary_path(&out);
            let rows = t.columns.iter().map(|c| {
                vec![
                    c.name.clone(),
                    c.kind.to_string(),
                    c.unit.clone(),
                    c.allowed.clone(),
                    c.description.clone(),
                ]
            });
            write_private(
                &dict,
                &csv_bytes(
                    &["column", "type", "unit", "allowed_values", "description"],
                    rows,
                )?,
            )?;
            let patients: std::collections::HashSet<&String> =
                t.rows.iter().map(|r| &r[0]).collect();
            println!(
                "wrote {} rows ({} eligible patients, {} columns) to {}; dictionary {}",
                t.rows.len(),
                patients.len(),
                t.columns.len(),
                out.display(),
                dict.display()
            );
            println!(
                "no identifier is exported; every date of a patient is moved by one offset (1-365 days, derived from the study key)"
            );
            Ok(0)
        }
        ExportCommand::Consort { format, out } => {
            let c = study.consort()?;
            let bytes = match format {
                ConsortFormat::Json => serde_json::to_vec_pretty(&c)?,
                ConsortFormat::Svg => consort::svg(&c, &consort_title(&study)).into_bytes(),
            };
            write_private(&out, &bytes)?;
            println!(
                "wrote the CONSORT flow ({} assessed, {} eligible, {} analysed) to {}",
                c.count(consort::Step::Assessed),
                c.count(consort::Step::Eligible),
                c.count(consort::Step::Analysed),
                out.display()
            );
            Ok(0)
        }
        ExportCommand::Summary { out } => {
            let s = study.summary(today())?;
            write_private(&out, &serde_json::to_vec_pretty(&s)?)?;
            println!(
                "wrote the aggregate summary of {} to {} (counts only; 1 to 4 shown as \"<5\")",
                if s.sites.is_empty() {
                    "an empty study".to_string()
                } else {
                    s.sites.join(", ")
                },
                out.display()
            );
            Ok(0)
        }
    }
}

/// Reads and checks one `marrow export summary` file.
pub fn read_summary(p: &Path) -> Result<Summary> {
    let text =
        std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
    let s: Summary = serde_json::from_str(&text)
        .map_err(|e| anyhow!("{}: not a marrow summary: {e}", p.display()))?;
    s.check().map_err(|e| anyhow!("{}: {e}", p.display()))?;
    Ok(s)
}

/// `marrow summary merge A.json B.json`: needs no database.
pub fn summary(action: SummaryCommand) -> Result<u8> {
    match action {
        SummaryCommand::Merge { a, b, json, tui } => {
            let (sa, sb) = (read_summary(&a)?, read_summary(&b)?);
            if tui {
                use crate::tui::SummaryPart;
                crate::tui::run_summary(vec![
                    SummaryPart::of_file(&a, sa),
                    SummaryPart::of_file(&b, sb),
                ])?;
                return Ok(0);
            }
            let m = summary::merge(&sa, &sb).map_err(|e| anyhow!(e))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&m)?);
            } else {
                print!("{}", summary::render_text(&m));
            }
            Ok(0)
        }
    }
}
