//! `marrow followup`: the coordinator's list of follow-up visits due soon, one
//! patient's visits, and entering or correcting a visit by hand; `marrow import
//! followup FILE.csv` is in `import::followup`. A visit entered here passes the
//! import's own check (`VisitInput::check`, called by `Study::record_visit`).

use super::export::today;
use super::{EXIT_SOME_REJECTED, Global, open};
use crate::db::Study;
use crate::db::followup::PlannedVisit;
use crate::domain::followup::{VisitInput, parse_oks, parse_vas, parse_visit_month};
use crate::domain::records::parse_date;
use anyhow::{Result, anyhow};
use clap::{Args, Subcommand};
use std::fmt::Write as _;
use std::path::Path;

/// `marrow followup [--due-days N] [--overdue] [--json]`.
#[derive(Debug, Args)]
pub struct FollowupArgs {
    #[command(subcommand)]
    pub action: Option<FollowupCommand>,
    /// List the visits whose window is open or opens within this many days.
    #[arg(long, default_value_t = 30, value_name = "N")]
    pub due_days: i64,
    /// Also list the visits whose window closed without a visit.
    #[arg(long)]
    pub overdue: bool,
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum FollowupCommand {
    /// One patient's planned visits (6, 12, 24, 36 months; the baseline, month 0, when recorded) and what was recorded.
    Show { study_id: String },
    /// Enter a visit, or correct one (--expect-version: the version you saw; a correction needs --reason).
    Record {
        study_id: String,
        /// 0 (the baseline, at the index date), 6, 12, 24 or 36.
        #[arg(long)]
        month: String,
        /// YYYY-MM-DD.
        #[arg(long)]
        date: String,
        /// VAS pain 0-10.
        #[arg(long)]
        vas: Option<String>,
        /// Oxford Knee Score 0-48.
        #[arg(long)]
        oks: Option<String>,
        /// New fragility fracture: yes or no.
        #[arg(long)]
        fracture: Option<String>,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long, value_name = "N")]
        expect_version: Option<i64>,
    },
}

fn table(rows: &[PlannedVisit]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<18} {:>5} {:<12} {:<10} {:<10} {:<10} {:<10}",
        "study ID", "month", "state", "opens", "target", "closes", "visit"
    );
    for v in rows {
        let _ = writeln!(
            s,
            "{:<18} {:>5} {:<12} {:<10} {:<10} {:<10} {:<10}",
            v.study_id,
            v.window.month,
            if v.baseline && v.recorded.is_none() {
                "baseline"
            } else {
                v.state.code()
            },
            v.window.opens,
            v.window.target,
            v.window.closes,
            v.recorded
                .as_ref()
                .map(|r| r.visit.visit_date.to_string())
                .unwrap_or_default()
        );
    }
    s
}

pub fn run(g: &Global, a: FollowupArgs) -> Result<u8> {
    let json = a.json;
    match a.action {
        None => {
            let study = open(g)?;
            let rows = study.visits_due(today(), a.due_days.max(0), a.overdue)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "follow-up visits due in the next {} days{}: {}",
                    a.due_days,
                    if a.overdue { " and overdue" } else { "" },
                    rows.len()
                );
                print!("{}", table(&rows));
            }
            Ok(0)
        }
        Some(FollowupCommand::Show { study_id }) => {
            let study = open(g)?;
            let rows = study.patient_visits(&study_id, today())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if rows.is_empty() {
                println!(
                    "{} has no planned visits (only eligible patients with an index date are followed up)",
                    study_id.trim().to_ascii_uppercase()
                );
            } else {
                print!("{}", table(&rows));
            }
            Ok(0)
        }
        Some(FollowupCommand::Record {
            study_id,
            month,
            date,
            vas,
            oks,
            fracture,
            reason,
            expect_version,
        }) => {
            let month = parse_visit_month(&month).map_err(|e| anyhow!(e))?;
            let visit = VisitInput {
                visit_date: parse_date("--date", &date).map_err(|e| anyhow!(e))?,
                vas: vas
                    .as_deref()
                    .map(parse_vas)
                    .transpose()
                    .map_err(|e| anyhow!(e))?,
                oks: oks
                    .as_deref()
                    .map(parse_oks)
                    .transpose()
                    .map_err(|e| anyhow!(e))?,
                new_fragility_fracture: match fracture.as_deref().map(|s| s.trim().to_lowercase()) {
                    None => None,
                    Some(s) if s == "yes" => Some(true),
                    Some(s) if s == "no" => Some(false),
                    Some(s) => return Err(anyhow!("--fracture '{s}': write yes or no")),
                },
            };
            let mut study = open(g)?;
            let row = study.record_visit(
                &study_id,
                month,
                &visit,
                reason.as_deref().unwrap_or(""),
                expect_version,
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&row)?);
            } else {
                // A visit dated outside its window is kept, and said so (as the
                // follow-up screen and the export flag it).
                let outside = study
                    .patient_visits(&row.study_id, today())
                    .ok()
                    .and_then(|v| v.into_iter().find(|p| p.window.month == row.visit_month))
                    .filter(|p| p.in_window == Some(false))
                    .map(|p| {
                        format!(
                            " (out of window: {} to {})",
                            p.window.opens, p.window.closes
                        )
                    })
                    .unwrap_or_default();
                println!(
                    "saved the {}-month visit of {} (version {}){outside}",
                    row.visit_month, row.study_id, row.version
                );
            }
            Ok(0)
        }
    }
}

/// `marrow import followup FILE.csv`.
pub fn import(study: &mut Study, file: &Path, site: Option<&str>) -> Result<u8> {
    let report = crate::import::followup::import_followup_at_site(study, file, site)?;
    for line in crate::import::rejection_lines(&report.rejected) {
        println!("{line}");
    }
    println!(
        "{}: {} rows: {} added, {} updated, {} unchanged, {} rejected",
        file.display(),
        report.rows,
        report.inserted,
        report.updated,
        report.unchanged,
        report.rejected.len()
    );
    if let Some(p) = &report.rejected_file {
        println!("rejected rows written to {}", p.display());
    }
    Ok(if report.rejected.is_empty() {
        0
    } else {
        EXIT_SOME_REJECTED
    })
}
