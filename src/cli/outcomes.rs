//! `marrow outcomes`: the protocol's secondary outcomes (new fragility fractures by
//! baseline OP stage, VAS and OKS change from baseline by KL grade), computed by
//! `domain::outcomes` on the facts `Study::outcome_facts` gathers
//! (`Study::outcomes_report`).

use super::model::{cohort_arg, cohort_name};
use super::output::{Align, table};
use super::{Global, open};
use crate::domain::outcomes::{OutcomesReport, REPORT_MONTHS};
use anyhow::Result;
use clap::Args;
use std::fmt::Write;

#[derive(Debug, Args)]
pub struct OutcomesArgs {
    /// prospective (the followed-up cohort, the default), retrospective, or all.
    #[arg(long, default_value = "prospective")]
    pub cohort: String,
    #[arg(long)]
    pub json: bool,
}

fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

/// The text form.
pub fn outcomes_text(r: &OutcomesReport) -> String {
    let o = &r.outcomes;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Secondary outcomes of {} ({} eligible patients).",
        cohort_name(r.cohort.as_deref().and_then(|c| c.parse().ok())),
        r.patients
    );
    let _ = writeln!(out, "\nNew fragility fractures by baseline OP stage");
    let _ = writeln!(out, "  baseline OP stage: {}", r.definitions.op_stage);
    let _ = writeln!(out, "  event: {}", r.definitions.fracture_event);
    let _ = writeln!(out, "  censored at {}", r.definitions.fracture_censoring);
    let _ = writeln!(out, "  {}", r.definitions.fracture_interval);
    let mut head: Vec<(String, Align)> = vec![
        ("stage".into(), Align::Left),
        ("patients".into(), Align::Right),
        ("events".into(), Align::Right),
    ];
    for m in REPORT_MONTHS {
        head.push((format!("{m} months"), Align::Left));
    }
    let rows: Vec<Vec<String>> = o
        .fractures
        .iter()
        .map(|c| {
            let mut row = vec![
                c.stage.clone(),
                c.patients.to_string(),
                c.events.to_string(),
            ];
            for a in &c.at {
                row.push(if c.patients == 0 {
                    "-".into()
                } else {
                    format!(
                        "{} ({}-{}) n={}",
                        pct(a.incidence),
                        pct(a.lower),
                        pct(a.upper),
                        a.at_risk
                    )
                });
            }
            row
        })
        .collect();
    let head_ref: Vec<(&str, Align)> = head.iter().map(|(h, a)| (h.as_str(), *a)).collect();
    let _ = writeln!(
        out,
        "  each month: cumulative incidence (95% CI) n=number at risk"
    );
    out.push_str(&table("  ", &head_ref, &rows));
    match &o.logrank {
        Some(l) => {
            let _ = writeln!(
                out,
                "  log-rank test between the stages: chi2 {:.3}, df {}, p {}",
                l.chi2,
                l.df,
                crate::domain::stats::p_text(l.p)
            );
        }
        None => {
            let _ = writeln!(
                out,
                "  log-rank test: not defined (needs two stages with patients and at least one fracture)"
            );
        }
    }
    if !o.fracture_excluded.is_empty() {
        let _ = writeln!(
            out,
            "  left out: {}",
            crate::domain::evaluation::left_out(&o.fracture_excluded)
        );
    }

    let _ = writeln!(
        out,
        "\nVAS and OKS change from baseline by baseline KL grade"
    );
    let _ = writeln!(out, "  baseline KL grade: {}", r.definitions.kl);
    let _ = writeln!(out, "  {}", r.definitions.change);
    if o.changes.is_empty() {
        let _ = writeln!(
            out,
            "  no patient has a month-0 visit and a later one with the same score"
        );
    } else {
        let rows: Vec<Vec<String>> = o
            .changes
            .iter()
            .map(|c| {
                vec![
                    c.score.to_uppercase(),
                    format!("KL{}", c.kl),
                    c.month.to_string(),
                    c.change.n.to_string(),
                    format!("{:+.2}", c.change.mean),
                    c.change
                        .ci95
                        .map(|ci| format!("{:+.2} to {:+.2}", ci.lower, ci.upper))
                        .unwrap_or_else(|| "- (n < 2)".into()),
                ]
            })
            .collect();
        out.push_str(&table(
            "  ",
            &[
                ("score", Align::Left),
                ("baseline", Align::Left),
                ("month", Align::Right),
                ("n", Align::Right),
                ("mean change", Align::Right),
                ("95% CI", Align::Left),
            ],
            &rows,
        ));
    }
    if !o.change_excluded.is_empty() {
        let _ = writeln!(
            out,
            "  left out: {}",
            crate::domain::evaluation::left_out(&o.change_excluded)
        );
    }
    out
}

/// `marrow outcomes [--cohort] [--json]`.
pub fn run(g: &Global, a: OutcomesArgs) -> Result<u8> {
    let study = open(g)?;
    let phase = cohort_arg(&a.cohort)?;
    let r = study.outcomes_report(phase)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print!("{}", outcomes_text(&r));
    }
    Ok(0)
}
