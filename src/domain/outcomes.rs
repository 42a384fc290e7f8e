//! The protocol's secondary outcomes, from the follow-up visits (pure: facts in,
//! figures out):
//!
//! - **New fragility fractures by baseline OP stage** (the DXA WHO stage of the
//!   reference standard): Kaplan–Meier cumulative incidence. Event time: months
//!   from the index date to the first visit reporting a new fragility fracture;
//!   a patient without one is censored at the last visit that reported on fractures
//!   (yes or no). A month is 365.25 / 12 days. Greenwood 95% intervals on the
//!   log(-log) scale, numbers at risk at 6, 12, 24 and 36 months, and the log-rank
//!   test between the stages.
//! - **VAS and OKS change from baseline** at each visit by baseline KL grade (the
//!   patient's worse knee, final grade): the mean change, its t-based 95% interval
//!   and n. The baseline is the month-0 visit; a patient without one, or without the
//!   score at baseline, is left out of that score's change.

use super::protocol::Phase;
use super::stats::{MeanCi, mean_ci};
use super::survival::{KmStep, LogRank, Observation, at_risk, kaplan_meier, logrank, survival_at};
use chrono::NaiveDate;
use serde::Serialize;
use std::collections::BTreeMap;

/// Days in a month for event times: a Julian year over 12.
pub const DAYS_PER_MONTH: f64 = 365.25 / 12.0;
/// The times at which numbers at risk and cumulative incidence are reported.
pub const REPORT_MONTHS: [u32; 4] = [6, 12, 24, 36];
/// The WHO stages, the strata of the fracture curves.
pub const OP_STAGES: [&str; 3] = ["normal", "osteopenia", "osteoporosis"];

/// One recorded visit.
#[derive(Debug, Clone, PartialEq)]
pub struct VisitFact {
    pub month: u32,
    pub date: NaiveDate,
    pub vas: Option<f64>,
    pub oks: Option<u8>,
    pub fracture: Option<bool>,
}

/// What the outcomes need of one eligible patient.
#[derive(Debug, Clone, PartialEq)]
pub struct PatientFacts {
    pub index_date: Option<NaiveDate>,
    /// 0 normal, 1 osteopenia, 2 osteoporosis (the OP reference standard), if any.
    pub op_stage: Option<u8>,
    /// The worse knee's final KL grade, if any.
    pub kl: Option<u8>,
    pub visits: Vec<VisitFact>,
}

/// Months between two dates.
pub fn months_between(from: NaiveDate, to: NaiveDate) -> f64 {
    (to - from).num_days() as f64 / DAYS_PER_MONTH
}

/// The patient's fracture observation: `None` without an index date or a visit
/// after baseline that reported on fractures.
pub fn fracture_observation(p: &PatientFacts) -> Option<Observation> {
    let index = p.index_date?;
    let mut visits: Vec<&VisitFact> = p
        .visits
        .iter()
        .filter(|v| v.month > 0 && v.fracture.is_some())
        .collect();
    visits.sort_by_key(|v| v.date);
    if let Some(first) = visits.iter().find(|v| v.fracture == Some(true)) {
        return Some(Observation {
            time: months_between(index, first.date),
            event: true,
        });
    }
    visits.last().map(|last| Observation {
        time: months_between(index, last.date),
        event: false,
    })
}

/// Cumulative incidence and numbers at risk at one reported month.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidenceAt {
    pub month: u32,
    pub at_risk: u64,
    /// 1 - S(t) and its 95% interval.
    pub incidence: f64,
    pub lower: f64,
    pub upper: f64,
}

/// The fracture curve of one baseline OP stage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FractureCurve {
    pub stage: String,
    pub patients: usize,
    pub events: usize,
    pub at: Vec<IncidenceAt>,
    /// Every step of the Kaplan–Meier estimate (for the charts).
    pub steps: Vec<KmStep>,
}

impl FractureCurve {
    /// The curve as a step function for a chart: (months, cumulative incidence),
    /// from (0, 0) to `until`.
    pub fn step_points(&self, until: f64) -> Vec<(f64, f64)> {
        let mut out = vec![(0.0, 0.0)];
        let mut last = 0.0;
        for s in &self.steps {
            let inc = 1.0 - s.survival;
            out.push((s.time, last));
            out.push((s.time, inc));
            last = inc;
        }
        let end = self.steps.last().map_or(until, |s| until.max(s.time));
        out.push((end, last));
        out
    }
}

/// The mean change of one score at one visit, for one baseline KL grade.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreChange {
    /// `"vas"` or `"oks"`.
    pub score: &'static str,
    pub kl: u8,
    pub month: u32,
    #[serde(flatten)]
    pub change: MeanCi,
}

/// Every secondary outcome, with what was left out and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcomes {
    pub fractures: Vec<FractureCurve>,
    /// Log-rank test between the stages with at least one patient.
    pub logrank: Option<LogRank>,
    pub fracture_excluded: BTreeMap<String, usize>,
    pub changes: Vec<ScoreChange>,
    pub change_excluded: BTreeMap<String, usize>,
}

fn incidence_at(obs: &[Observation], steps: &[KmStep], month: u32) -> IncidenceAt {
    let t = f64::from(month);
    let (incidence, lower, upper) = match survival_at(steps, t) {
        Some(s) => s.incidence(),
        None => (0.0, 0.0, 0.0),
    };
    IncidenceAt {
        month,
        at_risk: at_risk(obs, t),
        incidence,
        lower,
        upper,
    }
}

/// Computes the secondary outcomes of `patients` (see the module doc).
pub fn outcomes(patients: &[PatientFacts]) -> Outcomes {
    let mut fracture_excluded: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_stage: Vec<Vec<Observation>> = vec![Vec::new(); OP_STAGES.len()];
    for p in patients {
        let Some(stage) = p.op_stage.filter(|s| usize::from(*s) < OP_STAGES.len()) else {
            *fracture_excluded
                .entry("no baseline OP stage (DXA WHO stage)".into())
                .or_default() += 1;
            continue;
        };
        match fracture_observation(p) {
            Some(o) => by_stage[usize::from(stage)].push(o),
            None => {
                *fracture_excluded
                    .entry("no follow-up visit reporting on fractures".into())
                    .or_default() += 1;
            }
        }
    }
    let fractures = OP_STAGES
        .iter()
        .zip(&by_stage)
        .map(|(stage, obs)| {
            let steps = kaplan_meier(obs);
            FractureCurve {
                stage: (*stage).to_string(),
                patients: obs.len(),
                events: obs.iter().filter(|o| o.event).count(),
                at: REPORT_MONTHS
                    .iter()
                    .map(|m| incidence_at(obs, &steps, *m))
                    .collect(),
                steps,
            }
        })
        .collect();
    let groups: Vec<Vec<Observation>> = by_stage.into_iter().filter(|g| !g.is_empty()).collect();
    let logrank = if groups.len() >= 2 {
        logrank(&groups)
    } else {
        None
    };

    let mut change_excluded: BTreeMap<String, usize> = BTreeMap::new();
    let mut values: BTreeMap<(&'static str, u8, u32), Vec<f64>> = BTreeMap::new();
    for p in patients {
        let Some(kl) = p.kl else {
            *change_excluded
                .entry("no baseline KL grade (final grade of a knee)".into())
                .or_default() += 1;
            continue;
        };
        let Some(base) = p.visits.iter().find(|v| v.month == 0) else {
            *change_excluded
                .entry("no baseline (month-0) visit".into())
                .or_default() += 1;
            continue;
        };
        type Get = fn(&VisitFact) -> Option<f64>;
        let scores: [(&'static str, Get); 2] =
            [("vas", |v| v.vas), ("oks", |v| v.oks.map(f64::from))];
        for (name, get) in scores {
            let Some(b) = get(base) else {
                *change_excluded
                    .entry(format!("no {name} at baseline"))
                    .or_default() += 1;
                continue;
            };
            for v in p.visits.iter().filter(|v| v.month > 0) {
                if let Some(x) = get(v) {
                    values.entry((name, kl, v.month)).or_default().push(x - b);
                }
            }
        }
    }
    let changes = values
        .into_iter()
        .filter_map(|((score, kl, month), v)| {
            mean_ci(&v).map(|change| ScoreChange {
                score,
                kl,
                month,
                change,
            })
        })
        .collect();
    Outcomes {
        fractures,
        logrank,
        fracture_excluded,
        changes,
        change_excluded,
    }
}

/// The outcomes with what they were computed on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutcomesReport {
    pub cohort: Option<String>,
    pub cohort_role: String,
    /// Eligible patients of the cohort.
    pub patients: usize,
    /// How each figure is defined.
    pub definitions: Definitions,
    #[serde(flatten)]
    pub outcomes: Outcomes,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Definitions {
    pub fracture_event: &'static str,
    pub fracture_censoring: &'static str,
    pub fracture_interval: &'static str,
    pub op_stage: &'static str,
    pub change: &'static str,
    pub kl: &'static str,
}

pub const DEFINITIONS: Definitions = Definitions {
    fracture_event: "months (365.25/12 days) from the index date to the first visit reporting a new fragility fracture",
    fracture_censoring: "the last visit that reported on fractures (yes or no); the month-0 visit does not count",
    fracture_interval: "Kaplan-Meier cumulative incidence 1 - S(t); Greenwood 95% CI on the log(-log) scale; log-rank test between the stages",
    op_stage: "the DXA WHO stage of the OP reference standard (eligible patients aged 50 or more)",
    change: "score at the visit minus the score at the month-0 visit; mean with a t-based 95% CI",
    kl: "the final KL grade of the patient's worse knee",
};

/// What the cohort is to the secondary outcomes.
pub fn cohort_role(phase: Option<Phase>) -> &'static str {
    match phase {
        Some(Phase::Prospective) => "the followed-up cohort (prospective)",
        Some(Phase::Retrospective) => "the retrospective cohort (visits taken from the records)",
        None => "both cohorts mixed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn visit(month: u32, date: &str, fracture: Option<bool>) -> VisitFact {
        VisitFact {
            month,
            date: d(date),
            vas: None,
            oks: None,
            fracture,
        }
    }

    #[test]
    fn the_event_is_the_first_visit_with_a_fracture_and_censoring_the_last_that_asked() {
        let p = |visits| PatientFacts {
            index_date: Some(d("2026-01-01")),
            op_stage: Some(2),
            kl: None,
            visits,
        };
        // 2026-01-01 to 2026-07-02: 182 days = 5.979... months
        let o = fracture_observation(&p(vec![
            visit(12, "2027-01-01", Some(true)),
            visit(6, "2026-07-02", Some(true)),
        ]))
        .unwrap();
        assert!(o.event);
        assert!((o.time - 182.0 / DAYS_PER_MONTH).abs() < 1e-12);
        // no fracture: censored at the last visit that reported on fractures (the
        // 24-month visit without the question does not extend it)
        let o = fracture_observation(&p(vec![
            visit(6, "2026-07-01", Some(false)),
            visit(12, "2027-01-01", Some(false)),
            visit(24, "2028-01-01", None),
        ]))
        .unwrap();
        assert!(!o.event);
        assert!((o.time - 365.0 / DAYS_PER_MONTH).abs() < 1e-12);
        // a baseline visit alone says nothing about new fractures
        assert!(fracture_observation(&p(vec![visit(0, "2026-01-01", Some(false))])).is_none());
    }

    #[test]
    fn a_curve_steps_up_at_each_event_and_runs_on_to_the_end() {
        let p = |m: f64, event| PatientFacts {
            index_date: Some(d("2026-01-01")),
            op_stage: Some(0),
            kl: None,
            visits: vec![VisitFact {
                month: 6,
                date: d("2026-01-01") + chrono::Days::new((m * DAYS_PER_MONTH).round() as u64),
                vas: None,
                oks: None,
                fracture: Some(event),
            }],
        };
        let o = outcomes(&[p(6.0, true), p(12.0, false)]);
        let pts = o.fractures[0].step_points(36.0);
        // S drops to 1/2 at the event; the censoring at 12 keeps it
        assert_eq!(pts.first(), Some(&(0.0, 0.0)));
        assert!(
            (pts[2].1 - 0.5).abs() < 1e-12 && (pts[1].1).abs() < 1e-12,
            "{pts:?}"
        );
        assert_eq!(pts.last().map(|p| (p.0, p.1)), Some((36.0, 0.5)));
    }

    #[test]
    fn changes_are_from_the_month_0_visit_by_baseline_kl() {
        let v = |month: u32, vas: Option<f64>, oks: Option<u8>| VisitFact {
            month,
            date: d("2026-01-01"),
            vas,
            oks,
            fracture: None,
        };
        let p = |kl, visits| PatientFacts {
            index_date: Some(d("2026-01-01")),
            op_stage: None,
            kl,
            visits,
        };
        let o = outcomes(&[
            p(
                Some(2),
                vec![v(0, Some(6.0), Some(30)), v(6, Some(4.0), Some(34))],
            ),
            p(
                Some(2),
                vec![v(0, Some(5.0), None), v(6, Some(4.0), Some(40))],
            ),
            p(Some(3), vec![v(6, Some(4.0), None)]),
            p(None, vec![v(0, Some(4.0), None)]),
        ]);
        let vas2 = o
            .changes
            .iter()
            .find(|c| c.score == "vas" && c.kl == 2 && c.month == 6)
            .unwrap();
        // changes -2 and -1: mean -1.5, sd 0.7071, t(0.975, 1) = 12.7062
        assert_eq!(vas2.change.n, 2);
        assert!((vas2.change.mean + 1.5).abs() < 1e-12);
        let ci = vas2.change.ci95.unwrap();
        let half = 12.706_204_736_174_694 * 0.5_f64.sqrt() / 2.0_f64.sqrt();
        assert!((ci.lower - (-1.5 - half)).abs() < 1e-8, "{ci:?}");
        let oks2 = o
            .changes
            .iter()
            .find(|c| c.score == "oks" && c.kl == 2 && c.month == 6)
            .unwrap();
        assert_eq!((oks2.change.n, oks2.change.mean), (1, 4.0));
        assert_eq!(o.change_excluded["no baseline (month-0) visit"], 1);
        assert_eq!(
            o.change_excluded["no baseline KL grade (final grade of a knee)"],
            1
        );
        assert_eq!(o.change_excluded["no oks at baseline"], 1);
        // nobody has an OP stage
        assert_eq!(
            o.fracture_excluded["no baseline OP stage (DXA WHO stage)"],
            4
        );
        assert!(o.logrank.is_none());
    }
}
