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

#[cfg(test)]
mod tests {
    use super::*;

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
