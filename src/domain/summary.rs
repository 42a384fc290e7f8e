//! The aggregate summary one hospital may share with the other (`marrow export
//! summary`): the dashboard's numbers only, no row-level data, no study IDs, and every
//! count from 1 to 4 suppressed (written `"<5"`). `merge` adds two summaries into the
//! combined view of both sites; a suppressed count is carried as the range 1-4, so a
//! combined figure is exact where both were and a range otherwise. Pure: no I/O.

use super::consort::Consort;
use super::followup::FollowUpCounts;
use super::protocol::{Group, Phase};
use super::status::StatusReport;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Counts below this (and above zero) are suppressed.
pub const SUPPRESS_BELOW: u64 = 5;
/// The format tag of a summary file.
pub const FORMAT: &str = "marrow-summary/1";

/// A count, exact or known only to lie in a range (a suppressed cell is 1-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Count {
    pub min: u64,
    pub max: u64,
}

impl Count {
    pub fn exact(n: u64) -> Count {
        Count { min: n, max: n }
    }

    /// The count as shared: 1 to 4 become "<5".
    pub fn suppressed(n: u64) -> Count {
        if n > 0 && n < SUPPRESS_BELOW {
            Count {
                min: 1,
                max: SUPPRESS_BELOW - 1,
            }
        } else {
            Count::exact(n)
        }
    }

    pub fn is_exact(self) -> bool {
        self.min == self.max
    }
}

impl std::ops::Add for Count {
    type Output = Count;
    fn add(self, o: Count) -> Count {
        Count {
            min: self.min + o.min,
            max: self.max + o.max,
        }
    }
}

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_exact() {
            write!(f, "{}", self.min)
        } else if self.min == 1 && self.max == SUPPRESS_BELOW - 1 {
            write!(f, "<{SUPPRESS_BELOW}")
        } else {
            write!(f, "{}-{}", self.min, self.max)
        }
    }
}

impl Serialize for Count {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.is_exact() {
            s.serialize_u64(self.min)
        } else {
            s.serialize_str(&self.to_string())
        }
    }
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Count, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Count::exact(n)),
            Raw::S(s) => {
                let t = s.trim();
                if t == format!("<{SUPPRESS_BELOW}") {
                    return Ok(Count::suppressed(1));
                }
                let parsed = t
                    .split_once('-')
                    .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)));
                match parsed {
                    Some((min, max)) if min <= max => Ok(Count { min, max }),
                    _ => Err(serde::de::Error::custom(format!(
                        "'{t}' is not a count (a number, \"<5\" or \"A-B\")"
                    ))),
                }
            }
        }
    }
}

/// One cohort's enrollment against its target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CohortSummary {
    pub site: String,
    pub group: Group,
    pub phase: Phase,
    pub target: u32,
    pub eligible: Count,
    pub patients: Count,
}

/// One box of the CONSORT flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoxSummary {
    pub key: String,
    pub label: String,
    pub count: Count,
}

/// Eligible patients by month of their index date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonthSummary {
    /// YYYY-MM
    pub month: String,
    pub eligible: Count,
}

/// Visits per state.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FollowUpSummary {
    pub done: Count,
    pub due: Count,
    pub overdue: Count,
    pub not_yet_due: Count,
}

/// Reading and images.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ReadingSummary {
    pub images: Count,
    pub reads_pending: Count,
    pub adjudication_pending: Count,
    pub final_graded: Count,
}

/// What `marrow export summary` writes and `marrow summary merge` reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub format: String,
    /// The sites whose patients the numbers count (those with patients in the database).
    pub sites: Vec<String>,
    /// When the summary was made (UTC, RFC 3339).
    pub generated_at: String,
    pub suppression: String,
    pub patients: Count,
    pub eligible: Count,
    pub ineligible: Count,
    pub pending: Count,
    pub missing_dxa: Count,
    pub cohorts: Vec<CohortSummary>,
    pub consort: Vec<BoxSummary>,
    pub consort_excluded_by: Vec<BoxSummary>,
    pub reading: ReadingSummary,
    pub follow_up: FollowUpSummary,
    pub enrollment_by_month: Vec<MonthSummary>,
    /// Set on a merged view: anything the reader should know (e.g. a site counted twice).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

fn sup(n: u64) -> Count {
    Count::suppressed(n)
}

impl Summary {
    /// The shareable summary of one database's figures.
    pub fn build(
        status: &StatusReport,
        consort: &Consort,
        follow_up: &FollowUpCounts,
        by_month: &[(String, u64)],
        generated_at: &str,
    ) -> Summary {
        let mut sites: Vec<String> = status
            .cohorts
            .iter()
            .filter(|c| c.patients > 0)
            .map(|c| c.site.clone())
            .collect();
        sites.dedup();
        let boxes = |bs: &[super::consort::ConsortBox]| -> Vec<BoxSummary> {
            bs.iter()
                .map(|b| BoxSummary {
                    key: b.key.code(),
                    label: b.label.clone(),
                    count: sup(b.count),
                })
                .collect()
        };
        Summary {
            format: FORMAT.into(),
            sites,
            generated_at: generated_at.into(),
            suppression: format!(
                "counts from 1 to {} are shown as \"<{SUPPRESS_BELOW}\"",
                SUPPRESS_BELOW - 1
            ),
            patients: sup(status.patients),
            eligible: sup(status.eligibility.eligible),
            ineligible: sup(status.eligibility.ineligible),
            pending: sup(status.eligibility.pending),
            missing_dxa: sup(status.missing_dxa),
            cohorts: status
                .cohorts
                .iter()
                .map(|c| CohortSummary {
                    site: c.site.clone(),
                    group: c.group,
                    phase: c.phase,
                    target: c.target,
                    eligible: sup(c.eligible),
                    patients: sup(c.patients),
                })
                .collect(),
            consort: boxes(&consort.boxes),
            consort_excluded_by: boxes(&consort.excluded_by),
            reading: ReadingSummary {
                images: sup(status.images),
                reads_pending: sup(status.reads_pending),
                adjudication_pending: sup(status.adjudication_pending),
                final_graded: sup(status.final_graded),
            },
            follow_up: FollowUpSummary {
                done: sup(follow_up.done),
                due: sup(follow_up.due),
                overdue: sup(follow_up.overdue),
                not_yet_due: sup(follow_up.not_yet_due),
            },
            enrollment_by_month: by_month
                .iter()
                .map(|(m, n)| MonthSummary {
                    month: m.clone(),
                    eligible: sup(*n),
                })
                .collect(),
            notes: Vec::new(),
        }
    }

    /// Checks a summary read from a file.
    pub fn check(&self) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!(
                "not a marrow summary (format '{}', expected '{FORMAT}')",
                self.format
            ));
        }
        Ok(())
    }
}

fn merge_boxes(a: &[BoxSummary], b: &[BoxSummary]) -> Vec<BoxSummary> {
    let mut out: Vec<BoxSummary> = a.to_vec();
    for x in b {
        match out.iter_mut().find(|o| o.key == x.key) {
            Some(o) => o.count = o.count + x.count,
            None => out.push(x.clone()),
        }
    }
    out
}

/// The combined view of two sites' summaries.
pub fn merge(a: &Summary, b: &Summary) -> Result<Summary, String> {
    a.check()?;
    b.check()?;
    let mut notes = Vec::new();
    for s in &a.sites {
        if b.sites.contains(s) {
            notes.push(format!(
                "both summaries count patients of {s}: if they come from the same database, its patients are counted twice"
            ));
        }
    }
    let mut cohorts: BTreeMap<(String, Group, Phase), CohortSummary> = BTreeMap::new();
    for c in a.cohorts.iter().chain(&b.cohorts) {
        let k = (c.site.clone(), c.group, c.phase);
        match cohorts.get_mut(&k) {
            Some(x) => {
                if x.target != c.target {
                    notes.push(format!(
                        "the target of {} {} {} differs ({} and {}); the larger is shown",
                        c.site, c.group, c.phase, x.target, c.target
                    ));
                }
                x.target = x.target.max(c.target);
                x.eligible = x.eligible + c.eligible;
                x.patients = x.patients + c.patients;
            }
            None => {
                cohorts.insert(k, c.clone());
            }
        }
    }
    let mut months: BTreeMap<String, Count> = BTreeMap::new();
    for m in a.enrollment_by_month.iter().chain(&b.enrollment_by_month) {
        let e = months.entry(m.month.clone()).or_default();
        *e = *e + m.eligible;
    }
    let mut sites = a.sites.clone();
    for s in &b.sites {
        if !sites.contains(s) {
            sites.push(s.clone());
        }
    }
    let f = |x: &FollowUpSummary, y: &FollowUpSummary| FollowUpSummary {
        done: x.done + y.done,
        due: x.due + y.due,
        overdue: x.overdue + y.overdue,
        not_yet_due: x.not_yet_due + y.not_yet_due,
    };
    Ok(Summary {
        format: FORMAT.into(),
        sites,
        generated_at: a.generated_at.clone().max(b.generated_at.clone()),
        suppression: a.suppression.clone(),
        patients: a.patients + b.patients,
        eligible: a.eligible + b.eligible,
        ineligible: a.ineligible + b.ineligible,
        pending: a.pending + b.pending,
        missing_dxa: a.missing_dxa + b.missing_dxa,
        cohorts: cohorts.into_values().collect(),
        consort: merge_boxes(&a.consort, &b.consort),
        consort_excluded_by: merge_boxes(&a.consort_excluded_by, &b.consort_excluded_by),
        reading: ReadingSummary {
            images: a.reading.images + b.reading.images,
            reads_pending: a.reading.reads_pending + b.reading.reads_pending,
            adjudication_pending: a.reading.adjudication_pending + b.reading.adjudication_pending,
            final_graded: a.reading.final_graded + b.reading.final_graded,
        },
        follow_up: f(&a.follow_up, &b.follow_up),
        enrollment_by_month: months
            .into_iter()
            .map(|(month, eligible)| MonthSummary { month, eligible })
            .collect(),
        notes,
    })
}

/// The summary as text for the terminal.
pub fn render_text(s: &Summary) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(o, "sites: {}   ({})", s.sites.join(", "), s.suppression);
    let _ = writeln!(
        o,
        "patients {}   eligible {}   ineligible {}   pending {}   missing DXA {}",
        s.patients, s.eligible, s.ineligible, s.pending, s.missing_dxa
    );
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "{:<8} {:<8} {:<14} {:>9} {:>8} {:>9}",
        "site", "group", "phase", "eligible", "target", "patients"
    );
    for c in &s.cohorts {
        let _ = writeln!(
            o,
            "{:<8} {:<8} {:<14} {:>9} {:>8} {:>9}",
            c.site,
            c.group.code(),
            c.phase.code(),
            c.eligible.to_string(),
            c.target,
            c.patients.to_string()
        );
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "CONSORT flow");
    for b in &s.consort {
        let _ = writeln!(o, "  {:<60} {:>7}", b.label, b.count.to_string());
        if b.key == "excluded" {
            for x in &s.consort_excluded_by {
                let _ = writeln!(o, "    {:<58} {:>7}", x.label, x.count.to_string());
            }
        }
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "reading: images {}, reads pending {}, adjudication pending {}, final graded {}",
        s.reading.images,
        s.reading.reads_pending,
        s.reading.adjudication_pending,
        s.reading.final_graded
    );
    let _ = writeln!(
        o,
        "follow-up visits: done {}, due {}, overdue {}, not yet due {}",
        s.follow_up.done, s.follow_up.due, s.follow_up.overdue, s.follow_up.not_yet_due
    );
    for n in &s.notes {
        let _ = writeln!(o, "note: {n}");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::consort::{self, FlowFacts};
    use crate::domain::eligibility::Decision;
    use crate::domain::protocol::Protocol;
    use crate::domain::status::CohortCount;

    fn summary(site: &str, eligible: u64, pending: u64) -> Summary {
        let p = Protocol::default();
        let counts = vec![
            CohortCount {
                site: site.into(),
                group: Group::Oa,
                phase: Phase::Retrospective,
                decision: Decision::Eligible,
                count: eligible,
            },
            CohortCount {
                site: site.into(),
                group: Group::Oa,
                phase: Phase::Retrospective,
                decision: Decision::Pending,
                count: pending,
            },
        ];
        let status = StatusReport::build(&p, &counts, 0);
        let facts: Vec<FlowFacts> = (0..eligible + pending)
            .map(|i| FlowFacts {
                patient_id: i as i64,
                decision: Some(if i < eligible {
                    Decision::Eligible
                } else {
                    Decision::Pending
                }),
                ..Default::default()
            })
            .collect();
        let c = consort::build(&facts);
        Summary::build(
            &status,
            &c,
            &FollowUpCounts::default(),
            &[("2024-03".into(), eligible)],
            "2026-11-27T00:00:00.000Z",
        )
    }

    #[test]
    fn counts_under_five_are_suppressed_and_zero_is_not() {
        let s = summary("PKUPH", 12, 3);
        let j = serde_json::to_value(&s).unwrap();
        assert_eq!(j["eligible"], 12);
        assert_eq!(j["pending"], "<5");
        assert_eq!(j["ineligible"], 0);
        assert_eq!(j["patients"], 15);
        let back: Summary = serde_json::from_value(j).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn merge_adds_exact_counts_and_carries_ranges() {
        let a = summary("PKUPH", 12, 3);
        let b = summary("SYSMH", 7, 2);
        let m = merge(&a, &b).unwrap();
        assert_eq!(m.eligible, Count::exact(19));
        assert_eq!(m.pending, Count { min: 2, max: 8 });
        assert_eq!(m.pending.to_string(), "2-8");
        assert_eq!(m.sites, vec!["PKUPH", "SYSMH"]);
        let pk = m
            .cohorts
            .iter()
            .find(|c| c.site == "PKUPH" && c.group == Group::Oa && c.phase == Phase::Retrospective)
            .unwrap();
        assert_eq!(pk.eligible, Count::exact(12));
        assert_eq!(m.cohorts.len(), 12);
        assert_eq!(m.enrollment_by_month[0].eligible, Count::exact(19));
        assert!(m.notes.is_empty());
        let twice = merge(&a, &a).unwrap();
        assert!(twice.notes[0].contains("PKUPH"), "{:?}", twice.notes);
        let text = render_text(&m);
        assert!(text.contains("2-8"), "{text}");
    }

    #[test]
    fn a_file_of_another_format_is_refused() {
        let mut a = summary("PKUPH", 12, 3);
        a.format = "other".into();
        assert!(merge(&a, &summary("SYSMH", 1, 1)).is_err());
        let bad: Result<Count, _> = serde_json::from_str("\"lots\"");
        assert!(bad.is_err());
    }
}
