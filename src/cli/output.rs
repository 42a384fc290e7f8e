//! Plain-text and JSON renderings of the study's figures for the command line.

use crate::db::audit::AuditRow;
use crate::db::study::{PatientDetail, PatientSummary};
use crate::domain::status::StatusReport;
use std::fmt::Write;

fn list<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// `marrow status` as a table.
pub fn status_table(r: &StatusReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "patients {}   eligible {}   ineligible {}   pending {}   missing DXA {}",
        r.patients,
        r.eligibility.eligible,
        r.eligibility.ineligible,
        r.eligibility.pending,
        r.missing_dxa
    );
    if r.images > 0 || r.quarantined > 0 {
        let _ = writeln!(
            s,
            "images {}   waiting for their patient {}",
            r.images, r.quarantined
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{:<8} {:<8} {:<14} {:>8} {:>8} {:>6} {:>9}",
        "site", "group", "phase", "eligible", "target", "%", "patients"
    );
    for c in &r.cohorts {
        let pct = crate::domain::status::percent(c.eligible, u64::from(c.target))
            .map_or_else(|| "-".to_string(), |p| p.to_string());
        let _ = writeln!(
            s,
            "{:<8} {:<8} {:<14} {:>8} {:>8} {:>6} {:>9}",
            c.site,
            c.group.code(),
            c.phase.code(),
            c.eligible,
            c.target,
            pct,
            c.patients
        );
    }
    s
}

/// `marrow patients` as a table.
pub fn patients_table(rows: &[PatientSummary]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<20} {:<6} {:<8} {:<14} {:>4} {:<11} flags",
        "study_id", "site", "group", "phase", "age", "decision"
    );
    for p in rows {
        let _ = writeln!(
            s,
            "{:<20} {:<6} {:<8} {:<14} {:>4} {:<11} {}",
            p.study_id,
            p.site,
            p.group.code(),
            p.phase.code(),
            p.age.map(|a| a.to_string()).unwrap_or_else(|| "?".into()),
            p.decision.code(),
            list(&p.flags)
        );
    }
    let _ = writeln!(s, "{} patients", rows.len());
    s
}

/// `marrow patients --json`.
pub fn patients_json(rows: &[PatientSummary]) -> serde_json::Value {
    serde_json::to_value(rows).unwrap_or_default()
}

/// `marrow flags` as a table.
pub fn flags_table(rows: &[PatientSummary]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<20} {:<11} {:<28} pending",
        "study_id", "decision", "flags"
    );
    for p in rows {
        let _ = writeln!(
            s,
            "{:<20} {:<11} {:<28} {}",
            p.study_id,
            p.decision.code(),
            list(&p.flags),
            list(&p.pending)
        );
    }
    let _ = writeln!(s, "{} patients need attention", rows.len());
    s
}

/// `marrow flags --json`.
pub fn flags_json(rows: &[PatientSummary]) -> serde_json::Value {
    serde_json::Value::Array(
        rows.iter()
            .map(|p| {
                serde_json::json!({
                    "study_id": p.study_id,
                    "decision": p.decision,
                    "flags": p.flags,
                    "pending": p.pending,
                })
            })
            .collect(),
    )
}

/// `marrow screen ID`: the checklist.
pub fn checklist(d: &PatientDetail) -> String {
    let p = &d.summary;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{}  {} {} {}  age {}  sex {}  decision: {}",
        p.study_id,
        p.site,
        p.group.code(),
        p.phase.code(),
        p.age.map(|a| a.to_string()).unwrap_or_else(|| "?".into()),
        p.sex.map(|x| x.code()).unwrap_or("?"),
        p.decision.code().to_uppercase()
    );
    if !p.reasons.is_empty() {
        let _ = writeln!(s, "ineligible because: {}", list(&p.reasons));
    }
    if !p.flags.is_empty() {
        let _ = writeln!(s, "flags: {}", list(&p.flags));
    }
    let _ = writeln!(s);
    for item in &d.screening.checklist {
        let c = item.criterion;
        let manual = match d.manual.iter().find(|m| m.criterion == c) {
            Some(m) => format!("  MANUAL {} by {} ({})", m.answer.label(c), m.by, m.reason),
            None => String::new(),
        };
        let _ = writeln!(
            s,
            "{:<3} {:<48} {:<15} [{}]{}",
            c.code(),
            c.title(),
            item.effective.label(c),
            item.auto.source,
            manual
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "bone density: {}", d.screening.op_reading.describe());
    for x in &d.dxa {
        let _ = writeln!(
            s,
            "  DXA {} {:<13} T {:+.1}{}",
            x.scan_date,
            x.region.code(),
            x.t_score,
            x.z_score
                .map(|z| format!("  Z {z:+.1}"))
                .unwrap_or_default()
        );
    }
    s
}

/// `marrow audit log` as a table.
pub fn audit_table(rows: &[AuditRow]) -> String {
    let mut s = String::new();
    for r in rows {
        let who = if r.actor == r.real_actor {
            r.actor.clone()
        } else {
            format!("{} (as {} )", r.real_actor, r.actor).replace(" )", ")")
        };
        let _ = writeln!(
            s,
            "#{:<6} {} {:<16} {:<16} {:<28} {}{}",
            r.id,
            r.at,
            who,
            r.action,
            r.entity_id,
            r.after.as_deref().unwrap_or("-"),
            r.reason
                .as_deref()
                .map(|x| format!("  reason: {x}"))
                .unwrap_or_default()
        );
    }
    s
}

/// How a column of [`table`] lines up its cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A plain-text table: each column as wide as its widest cell (counted in
/// characters, not bytes, so "—" or "é" take one), two spaces between columns, every
/// line starting with `indent`, no trailing spaces. A row shorter than the header
/// leaves its last columns empty.
pub fn table(indent: &str, head: &[(&str, Align)], rows: &[Vec<String>]) -> String {
    let width = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = head.iter().map(|(h, _)| width(h)).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(width(c));
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::from(indent);
        for (i, ((c, (_, align)), w)) in cells.iter().zip(head).zip(&widths).enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            let pad = " ".repeat(w - width(c));
            match align {
                Align::Left => {
                    s.push_str(c);
                    s.push_str(&pad);
                }
                Align::Right => {
                    s.push_str(&pad);
                    s.push_str(c);
                }
            }
        }
        let mut s = s.trim_end().to_string();
        s.push('\n');
        s
    };
    let mut out = line(head.iter().map(|(h, _)| *h).collect());
    for r in rows {
        out.push_str(&line(
            (0..head.len())
                .map(|i| r.get(i).map(String::as_str).unwrap_or(""))
                .collect(),
        ));
    }
    out
}

/// A probability as a percentage with one decimal; "<0.1%" for what would round
/// to 0.0% but is not zero (so 1.49e-12 reads "<0.1%", not "0.0%").
pub fn probability_percent(p: f64) -> String {
    if p > 0.0 && p < 0.0005 {
        "<0.1%".to_string()
    } else {
        format!("{:.1}%", p * 100.0)
    }
}

#[cfg(test)]
mod table_tests {
    use super::*;

    /// The char offset where each column starts, per line.
    fn starts(line: &str, cells: &[&str]) -> Vec<usize> {
        let mut from = 0;
        cells
            .iter()
            .map(|c| {
                let byte = line[from..].find(c).unwrap() + from;
                from = byte + c.len();
                line[..byte].chars().count()
            })
            .collect()
    }

    #[test]
    fn columns_line_up_by_characters_whatever_the_cell_widths() {
        let rows = vec![
            vec!["PKUPH-CONTROL-0001".to_string(), "—".into(), "12".into()],
            vec!["é".to_string(), "(blinded)".into(), "3".into()],
        ];
        let t = table(
            "  ",
            &[
                ("id", Align::Left),
                ("state", Align::Left),
                ("n", Align::Right),
            ],
            &rows,
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        let a = starts(lines[1], &["PKUPH-CONTROL-0001", "—", "12"]);
        let b = starts(lines[2], &["é", "(blinded)", "3"]);
        assert_eq!(a[1], b[1], "{t}");
        assert_eq!(a[0], 2);
        // right-aligned: the cells end at the same char offset
        assert_eq!(a[2] + 2, b[2] + 1, "{t}");
        assert_eq!(starts(lines[0], &["id", "state"]), vec![a[0], a[1]]);
        assert!(t.lines().all(|l| !l.ends_with(' ')));
    }

    #[test]
    fn probabilities_are_percentages_with_one_decimal() {
        assert_eq!(probability_percent(1.49e-12), "<0.1%");
        assert_eq!(probability_percent(0.0), "0.0%");
        assert_eq!(probability_percent(0.0004), "<0.1%");
        assert_eq!(probability_percent(0.0006), "0.1%");
        assert_eq!(probability_percent(0.2346), "23.5%");
        assert_eq!(probability_percent(1.0), "100.0%");
    }
}
