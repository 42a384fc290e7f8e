//! Enrollment figures: eligibility counts and each cohort against its target.

use super::eligibility::Decision;
use super::protocol::{Group, Phase, Protocol};
use serde::{Deserialize, Serialize};

/// Counts of patients by eligibility decision.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EligibilityCounts {
    pub eligible: u64,
    pub ineligible: u64,
    pub pending: u64,
}

/// One cohort's enrollment against its target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CohortStatus {
    pub site: String,
    pub group: Group,
    pub phase: Phase,
    pub target: u32,
    pub eligible: u64,
    /// All patients of the cohort, whatever their decision.
    pub patients: u64,
}

/// What `marrow status --json` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    pub patients: u64,
    pub eligibility: EligibilityCounts,
    /// Patients flagged missing_dxa who are not ineligible: the list to chase.
    pub missing_dxa: u64,
    pub cohorts: Vec<CohortStatus>,
    /// DICOM instances in the store.
    #[serde(default)]
    pub images: u64,
    /// Instances waiting for their patient to be imported.
    #[serde(default)]
    pub quarantined: u64,
    /// Reads still to be submitted on open reading cases.
    #[serde(default)]
    pub reads_pending: u64,
    /// Reading cases waiting for an adjudicator.
    #[serde(default)]
    pub adjudication_pending: u64,
    /// Reading cases with a final grade (consensus or adjudicated).
    #[serde(default)]
    pub final_graded: u64,
    /// Follow-up visits of the eligible patients per state (done, due, overdue, not yet due).
    #[serde(default)]
    pub follow_up: super::followup::FollowUpCounts,
}

/// One count of patients of a cohort with a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CohortCount {
    pub site: String,
    pub group: Group,
    pub phase: Phase,
    pub decision: Decision,
    pub count: u64,
}

impl StatusReport {
    /// Builds the report with one row per site x group x phase of the protocol, zeros included.
    pub fn build(protocol: &Protocol, counts: &[CohortCount], missing_dxa: u64) -> StatusReport {
        let mut eligibility = EligibilityCounts::default();
        for c in counts {
            match c.decision {
                Decision::Eligible => eligibility.eligible += c.count,
                Decision::Ineligible => eligibility.ineligible += c.count,
                Decision::Pending => eligibility.pending += c.count,
            }
        }
        let mut cohorts = Vec::new();
        for site in &protocol.sites {
            for group in Group::ALL {
                for phase in Phase::ALL {
                    let of_cohort = counts
                        .iter()
                        .filter(|c| &c.site == site && c.group == group && c.phase == phase);
                    let (mut eligible, mut patients) = (0, 0);
                    for c in of_cohort {
                        patients += c.count;
                        if c.decision == Decision::Eligible {
                            eligible += c.count;
                        }
                    }
                    cohorts.push(CohortStatus {
                        site: site.clone(),
                        group,
                        phase,
                        target: protocol.target(site, group, phase),
                        eligible,
                        patients,
                    });
                }
            }
        }
        StatusReport {
            patients: eligibility.eligible + eligibility.ineligible + eligibility.pending,
            eligibility,
            missing_dxa,
            cohorts,
            images: 0,
            quarantined: 0,
            reads_pending: 0,
            adjudication_pending: 0,
            final_graded: 0,
            follow_up: Default::default(),
        }
    }
}

/// `part` as a whole percentage of `whole`, rounded half up (14 of 84 is 16.67%: 17;
/// 1 of 8 is 12.5%: 13), or `None` when `whole` is 0. Every percentage of counts
/// marrow prints (`status`, the dashboard, the report) is this one, so they agree.
pub fn percent(part: u64, whole: u64) -> Option<u64> {
    (whole > 0).then(|| {
        let (p, w) = (u128::from(part), u128::from(whole));
        ((p * 200 + w) / (w * 2)) as u64
    })
}

/// Every month (YYYY-MM) from the earliest to the latest of `months`, in order, the
/// months between included (a month no patient has is still a month of the study).
pub fn month_span<'a>(months: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut all: Vec<(i32, u32)> = months.into_iter().filter_map(parse_month).collect();
    all.sort();
    let (Some(first), Some(last)) = (all.first().copied(), all.last().copied()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let (mut y, mut m) = first;
    while (y, m) <= last {
        out.push(format!("{y:04}-{m:02}"));
        m += 1;
        if m > 12 {
            m = 1;
            y += 1;
        }
    }
    out
}

fn parse_month(m: &str) -> Option<(i32, u32)> {
    let (y, mo) = m.split_once('-')?;
    let (y, mo) = (y.parse().ok()?, mo.parse().ok()?);
    (1..=12).contains(&mo).then_some((y, mo))
}

/// Counts per month (YYYY-MM, a month may come more than once: one per site) as one
/// count per month from the first to the last, zero for a month without patients.
/// A label that is not a month is kept, after the months.
pub fn per_month(counts: impl IntoIterator<Item = (String, u64)>) -> Vec<(String, u64)> {
    let mut sums: std::collections::BTreeMap<String, u64> = Default::default();
    for (m, n) in counts {
        *sums.entry(m).or_default() += n;
    }
    let mut out: Vec<(String, u64)> = month_span(sums.keys().map(String::as_str))
        .into_iter()
        .map(|m| {
            let n = sums.remove(&m).unwrap_or(0);
            (m, n)
        })
        .collect();
    out.extend(sums);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_half_up_and_months_without_patients_count_zero() {
        assert_eq!(percent(14, 84), Some(17));
        assert_eq!(percent(1, 8), Some(13));
        assert_eq!(percent(1, 3), Some(33));
        assert_eq!(percent(0, 84), Some(0));
        assert_eq!(percent(84, 84), Some(100));
        assert_eq!(percent(100, 84), Some(119));
        assert_eq!(percent(3, 0), None);
        assert_eq!(percent(u64::MAX, u64::MAX), Some(100));
        let months = per_month([
            ("2024-11".to_string(), 2),
            ("2025-02".to_string(), 1),
            ("2024-11".to_string(), 3),
        ]);
        assert_eq!(
            months,
            vec![
                ("2024-11".to_string(), 5),
                ("2024-12".to_string(), 0),
                ("2025-01".to_string(), 0),
                ("2025-02".to_string(), 1),
            ]
        );
        assert!(per_month([]).is_empty());
        assert_eq!(month_span(["2025-03"]), vec!["2025-03".to_string()]);
    }

    #[test]
    fn every_cohort_appears_with_zeros_and_totals_add_up() {
        let p = Protocol::default();
        let counts = vec![
            CohortCount {
                site: "PKUPH".into(),
                group: Group::Op,
                phase: Phase::Prospective,
                decision: Decision::Eligible,
                count: 3,
            },
            CohortCount {
                site: "PKUPH".into(),
                group: Group::Op,
                phase: Phase::Prospective,
                decision: Decision::Pending,
                count: 2,
            },
            CohortCount {
                site: "SYSMH".into(),
                group: Group::Oa,
                phase: Phase::Retrospective,
                decision: Decision::Ineligible,
                count: 4,
            },
        ];
        let r = StatusReport::build(&p, &counts, 1);
        assert_eq!(r.patients, 9);
        assert_eq!(
            r.eligibility,
            EligibilityCounts {
                eligible: 3,
                ineligible: 4,
                pending: 2
            }
        );
        assert_eq!(r.cohorts.len(), 12);
        let c = r
            .cohorts
            .iter()
            .find(|c| c.site == "PKUPH" && c.group == Group::Op && c.phase == Phase::Prospective)
            .unwrap();
        assert_eq!((c.target, c.eligible, c.patients), (84, 3, 5));
        assert_eq!(r.cohorts.iter().filter(|c| c.patients == 0).count(), 10);
    }
}
