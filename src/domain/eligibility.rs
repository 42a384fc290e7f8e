//! Eligibility screening: the protocol's criteria answered automatically from the
//! data, manual answers that win over them, and the resulting decision and flags.

use super::dxa::{self, DxaScan, OpReading};
use super::protocol::Group;
use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A protocol criterion: inclusions I1-I5, exclusions E1-E5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Criterion {
    I1,
    I2,
    I3,
    I4,
    I5,
    E1,
    E2,
    E3,
    E4,
    E5,
}

impl Criterion {
    pub const ALL: [Criterion; 10] = [
        Criterion::I1,
        Criterion::I2,
        Criterion::I3,
        Criterion::I4,
        Criterion::I5,
        Criterion::E1,
        Criterion::E2,
        Criterion::E3,
        Criterion::E4,
        Criterion::E5,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Criterion::I1 => "I1",
            Criterion::I2 => "I2",
            Criterion::I3 => "I3",
            Criterion::I4 => "I4",
            Criterion::I5 => "I5",
            Criterion::E1 => "E1",
            Criterion::E2 => "E2",
            Criterion::E3 => "E3",
            Criterion::E4 => "E4",
            Criterion::E5 => "E5",
        }
    }

    pub fn is_inclusion(self) -> bool {
        matches!(
            self,
            Criterion::I1 | Criterion::I2 | Criterion::I3 | Criterion::I4 | Criterion::I5
        )
    }

    /// The criterion's wording, short enough for an 80-column screen.
    pub fn title(self) -> &'static str {
        match self {
            Criterion::I1 => "Age at index imaging 18 to 90",
            Criterion::I2 => "Any sex",
            Criterion::I3 => "Imaging of the target site (X-ray, CT, MRI)",
            Criterion::I4 => "Target area free of deformity",
            Criterion::I5 => "No fixation or implant in the assessed area",
            Criterion::E1 => "Prior pathological fracture",
            Criterion::E2 => "Bone tumour or systemic malignancy",
            Criterion::E3 => "Long-term steroid use",
            Criterion::E4 => "Radio/chemotherapy within 6 months before index",
            Criterion::E5 => "Insufficient image quality or no gold standard",
        }
    }
}

impl fmt::Display for Criterion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Criterion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let up = s.trim().to_ascii_uppercase();
        Criterion::ALL
            .into_iter()
            .find(|c| c.code() == up)
            .ok_or_else(|| format!("unknown criterion '{}' (expected I1-I5 or E1-E5)", s.trim()))
    }
}

/// An answer to a criterion. `Yes` means met for an inclusion and applies for an exclusion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Answer {
    Yes,
    No,
    Unknown,
}

impl Answer {
    pub fn code(self) -> &'static str {
        match self {
            Answer::Yes => "yes",
            Answer::No => "no",
            Answer::Unknown => "unknown",
        }
    }

    /// The answer in the criterion's own words ("met", "does not apply", ...).
    pub fn label(self, c: Criterion) -> &'static str {
        match (self, c.is_inclusion()) {
            (Answer::Yes, true) => "met",
            (Answer::No, true) => "not met",
            (Answer::Yes, false) => "applies",
            (Answer::No, false) => "does not apply",
            (Answer::Unknown, _) => "unknown",
        }
    }

    fn from_flag(v: Option<bool>) -> Answer {
        match v {
            Some(true) => Answer::Yes,
            Some(false) => Answer::No,
            None => Answer::Unknown,
        }
    }
}

impl FromStr for Answer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "yes" | "y" | "met" | "applies" => Ok(Answer::Yes),
            "no" | "n" | "not_met" | "not-met" => Ok(Answer::No),
            "unknown" | "u" | "?" => Ok(Answer::Unknown),
            other => Err(format!(
                "unknown answer '{other}' (expected yes, no or unknown)"
            )),
        }
    }
}

/// What the hospital export says of the last radiotherapy or chemotherapy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "date")]
pub enum RadioChemo {
    Unknown,
    Never,
    Last(NaiveDate),
}

/// Calendar months before the index date in which radio/chemotherapy excludes (E4),
/// counted as the follow-up windows count months.
pub const RADIO_CHEMO_MONTHS: u32 = 6;
/// Inclusive age bounds of I1.
pub const MIN_AGE: i32 = 18;
pub const MAX_AGE: i32 = 90;

/// The facts about one patient that screening reads.
#[derive(Debug, Clone, PartialEq)]
pub struct PatientFacts {
    pub group: Group,
    pub age: Option<i32>,
    pub index_date: Option<NaiveDate>,
    pub deformity: Option<bool>,
    pub implant: Option<bool>,
    pub pathological_fracture: Option<bool>,
    pub malignancy: Option<bool>,
    pub steroid_long_term: Option<bool>,
    pub radio_chemo_last: RadioChemo,
    /// The patient has at least one linked image (DICOM import, a later issue).
    pub has_image: bool,
}

/// An automatic answer and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AutoAnswer {
    pub answer: Answer,
    pub source: String,
}

/// A patient's flag that asks a coordinator to act.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flag {
    /// OP or CONTROL patient without a DXA scan within the window of the index date.
    MissingDxa,
    /// Patient under 50 with a DXA: the Z-score applies, not WHO staging.
    ZScoreApplies,
}

impl Flag {
    pub const ALL: [Flag; 2] = [Flag::MissingDxa, Flag::ZScoreApplies];

    pub fn code(self) -> &'static str {
        match self {
            Flag::MissingDxa => "missing_dxa",
            Flag::ZScoreApplies => "z_score_applies",
        }
    }
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Flag {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let l = s.trim().to_ascii_lowercase();
        Flag::ALL
            .into_iter()
            .find(|f| f.code() == l)
            .ok_or_else(|| format!("unknown flag '{l}' (expected missing_dxa or z_score_applies)"))
    }
}

/// The eligibility decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Eligible,
    Ineligible,
    Pending,
}

impl Decision {
    pub const ALL: [Decision; 3] = [Decision::Eligible, Decision::Ineligible, Decision::Pending];

    pub fn code(self) -> &'static str {
        match self {
            Decision::Eligible => "eligible",
            Decision::Ineligible => "ineligible",
            Decision::Pending => "pending",
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Decision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let l = s.trim().to_ascii_lowercase();
        Decision::ALL
            .into_iter()
            .find(|d| d.code() == l)
            .ok_or_else(|| {
                format!("unknown decision '{l}' (expected eligible, ineligible or pending)")
            })
    }
}

/// One line of the screening checklist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChecklistItem {
    pub criterion: Criterion,
    pub auto: AutoAnswer,
    pub manual: Option<Answer>,
    /// The answer that counts: the manual one when there is one.
    pub effective: Answer,
}

/// The outcome of screening one patient.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Screening {
    pub checklist: Vec<ChecklistItem>,
    pub decision: Decision,
    /// Criteria that make the patient ineligible (inclusions not met, exclusions that apply).
    pub reasons: Vec<Criterion>,
    /// Criteria still unknown.
    pub pending: Vec<Criterion>,
    pub flags: Vec<Flag>,
    pub op_reading: OpReading,
}

/// Age in whole years on `at` for someone born on `birth`.
pub fn age_at(birth: NaiveDate, at: NaiveDate) -> i32 {
    let mut age = at.year() - birth.year();
    if (at.month(), at.day()) < (birth.month(), birth.day()) {
        age -= 1;
    }
    age
}

fn yes_no_source(v: Option<bool>, field: &str) -> String {
    match v {
        Some(true) => format!("{field} = yes"),
        Some(false) => format!("{field} = no"),
        None => format!("{field} not recorded"),
    }
}

/// Answers every criterion from the data.
pub fn auto_answers(
    facts: &PatientFacts,
    scans: &[DxaScan],
    dxa_window_days: i64,
) -> Vec<(Criterion, AutoAnswer)> {
    let a = |answer: Answer, source: String| AutoAnswer { answer, source };
    let mut out = Vec::with_capacity(10);
    out.push((
        Criterion::I1,
        match facts.age {
            Some(age) if (MIN_AGE..=MAX_AGE).contains(&age) => {
                a(Answer::Yes, format!("age {age} at index"))
            }
            Some(age) => a(Answer::No, format!("age {age} at index")),
            None => a(Answer::Unknown, "birth or index date missing".into()),
        },
    ));
    out.push((Criterion::I2, a(Answer::Yes, "any sex is eligible".into())));
    out.push((
        Criterion::I3,
        if facts.has_image {
            a(Answer::Yes, "linked image".into())
        } else if let Some(d) = facts.index_date {
            a(Answer::Yes, format!("index imaging {d}"))
        } else {
            a(Answer::Unknown, "no index date and no linked image".into())
        },
    ));
    // I4 and I5 are inclusions phrased as absences: `deformity = no` means I4 is met.
    let absence = |v: Option<bool>| Answer::from_flag(v.map(|x| !x));
    out.push((
        Criterion::I4,
        a(
            absence(facts.deformity),
            yes_no_source(facts.deformity, "deformity"),
        ),
    ));
    out.push((
        Criterion::I5,
        a(
            absence(facts.implant),
            yes_no_source(facts.implant, "implant"),
        ),
    ));
    out.push((
        Criterion::E1,
        a(
            Answer::from_flag(facts.pathological_fracture),
            yes_no_source(facts.pathological_fracture, "pathological_fracture"),
        ),
    ));
    out.push((
        Criterion::E2,
        a(
            Answer::from_flag(facts.malignancy),
            yes_no_source(facts.malignancy, "malignancy"),
        ),
    ));
    out.push((
        Criterion::E3,
        a(
            Answer::from_flag(facts.steroid_long_term),
            yes_no_source(facts.steroid_long_term, "steroid_long_term"),
        ),
    ));
    out.push((
        Criterion::E4,
        match (facts.radio_chemo_last, facts.index_date) {
            (RadioChemo::Never, _) => a(Answer::No, "radio_chemo_last = none".into()),
            (RadioChemo::Unknown, _) => a(Answer::Unknown, "radio_chemo_last not recorded".into()),
            (RadioChemo::Last(_), None) => a(Answer::Unknown, "no index date".into()),
            (RadioChemo::Last(last), Some(index)) => {
                let before = (index - last).num_days();
                let from = super::followup::sub_months(index, RADIO_CHEMO_MONTHS);
                if last > index {
                    a(Answer::No, format!("last {last}, after the index date"))
                } else if last >= from {
                    a(
                        Answer::Yes,
                        format!("last {last}, {before} days before index"),
                    )
                } else {
                    a(
                        Answer::No,
                        format!("last {last}, {before} days before index"),
                    )
                }
            }
        },
    ));
    out.push((
        Criterion::E5,
        if !facts.group.needs_dxa() {
            a(
                Answer::No,
                "OA: reference is the adjudicated KL grade; image quality set by hand".into(),
            )
        } else {
            match facts.index_date {
                None => a(
                    Answer::Unknown,
                    "no index date to place the DXA window".into(),
                ),
                Some(index) => match dxa::gold_standard_date(scans, index, dxa_window_days) {
                    Some(d) => a(Answer::No, format!("DXA {d} within {dxa_window_days} days")),
                    None => a(
                        Answer::Unknown,
                        format!("no DXA within {dxa_window_days} days of {index}"),
                    ),
                },
            }
        },
    ));
    out
}

/// Screens a patient: automatic answers, manual answers over them, decision and flags.
pub fn screen(
    facts: &PatientFacts,
    scans: &[DxaScan],
    dxa_window_days: i64,
    manual: &[(Criterion, Answer)],
) -> Screening {
    let checklist: Vec<ChecklistItem> = auto_answers(facts, scans, dxa_window_days)
        .into_iter()
        .map(|(criterion, auto)| {
            let manual = manual
                .iter()
                .rev()
                .find(|(c, _)| *c == criterion)
                .map(|(_, a)| *a);
            ChecklistItem {
                criterion,
                effective: manual.unwrap_or(auto.answer),
                auto,
                manual,
            }
        })
        .collect();
    let (decision, reasons, pending) = decide(
        &checklist
            .iter()
            .map(|i| (i.criterion, i.effective))
            .collect::<Vec<_>>(),
    );
    let op_reading = dxa::op_reading(facts.age, facts.index_date, scans, dxa_window_days);
    let mut flags = Vec::new();
    if facts.group.needs_dxa() {
        let has_gold = facts
            .index_date
            .and_then(|i| dxa::gold_standard_date(scans, i, dxa_window_days))
            .is_some();
        // Without an index date the window cannot be placed: flag only when no DXA exists at all.
        let missing = match facts.index_date {
            Some(_) => !has_gold,
            None => scans.is_empty(),
        };
        if missing {
            flags.push(Flag::MissingDxa);
        }
    }
    if matches!(op_reading, OpReading::ZScore { .. }) {
        flags.push(Flag::ZScoreApplies);
    }
    Screening {
        checklist,
        decision,
        reasons,
        pending,
        flags,
        op_reading,
    }
}

/// Eligible when every inclusion is met and no exclusion applies; ineligible when any
/// inclusion is not met or any exclusion applies; pending otherwise.
pub fn decide(effective: &[(Criterion, Answer)]) -> (Decision, Vec<Criterion>, Vec<Criterion>) {
    let mut reasons = Vec::new();
    let mut pending = Vec::new();
    for (c, a) in effective {
        match (a, c.is_inclusion()) {
            (Answer::No, true) | (Answer::Yes, false) => reasons.push(*c),
            (Answer::Unknown, _) => pending.push(*c),
            _ => {}
        }
    }
    let decision = if !reasons.is_empty() {
        Decision::Ineligible
    } else if !pending.is_empty() {
        Decision::Pending
    } else {
        Decision::Eligible
    };
    (decision, reasons, pending)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::dxa::Region;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    /// A patient who meets everything (OA group, so no DXA is needed).
    fn clean(group: Group) -> PatientFacts {
        PatientFacts {
            group,
            age: Some(60),
            index_date: Some(d("2024-06-01")),
            deformity: Some(false),
            implant: Some(false),
            pathological_fracture: Some(false),
            malignancy: Some(false),
            steroid_long_term: Some(false),
            radio_chemo_last: RadioChemo::Never,
            has_image: false,
        }
    }

    fn dxa_at(date: &str) -> Vec<DxaScan> {
        vec![DxaScan {
            scan_date: d(date),
            region: Region::TotalHip,
            t_score: -1.5,
            z_score: Some(-0.5),
            bmd_g_cm2: None,
        }]
    }

    fn answer(s: &Screening, c: Criterion) -> Answer {
        s.checklist
            .iter()
            .find(|i| i.criterion == c)
            .unwrap()
            .effective
    }

    #[test]
    fn clean_oa_patient_is_eligible() {
        let s = screen(&clean(Group::Oa), &[], 365, &[]);
        assert_eq!(s.decision, Decision::Eligible);
        assert!(s.flags.is_empty());
        assert_eq!(s.checklist.len(), 10);
    }

    #[test]
    fn age_at_counts_whole_years() {
        assert_eq!(age_at(d("2000-06-02"), d("2018-06-01")), 17);
        assert_eq!(age_at(d("2000-06-01"), d("2018-06-01")), 18);
        assert_eq!(age_at(d("2000-02-29"), d("2018-02-28")), 17);
        assert_eq!(age_at(d("2000-02-29"), d("2018-03-01")), 18);
    }

    #[test]
    fn i1_age_boundaries_17_18_90_91_and_unknown() {
        for (age, expect) in [
            (Some(17), Answer::No),
            (Some(18), Answer::Yes),
            (Some(90), Answer::Yes),
            (Some(91), Answer::No),
            (None, Answer::Unknown),
        ] {
            let mut f = clean(Group::Oa);
            f.age = age;
            let s = screen(&f, &[], 365, &[]);
            assert_eq!(answer(&s, Criterion::I1), expect, "age {age:?}");
        }
        let mut f = clean(Group::Oa);
        f.age = Some(17);
        let s = screen(&f, &[], 365, &[]);
        assert_eq!(s.decision, Decision::Ineligible);
        assert_eq!(s.reasons, vec![Criterion::I1]);
    }

    #[test]
    fn i2_is_always_met() {
        let s = screen(&clean(Group::Op), &[], 365, &[]);
        assert_eq!(answer(&s, Criterion::I2), Answer::Yes);
    }

    #[test]
    fn i3_needs_an_index_date_or_an_image() {
        let mut f = clean(Group::Oa);
        f.index_date = None;
        assert_eq!(
            answer(&screen(&f, &[], 365, &[]), Criterion::I3),
            Answer::Unknown
        );
        f.has_image = true;
        assert_eq!(
            answer(&screen(&f, &[], 365, &[]), Criterion::I3),
            Answer::Yes
        );
    }

    #[test]
    fn i4_i5_no_is_met_yes_is_not_met_empty_is_unknown() {
        for (v, expect) in [
            (Some(false), Answer::Yes),
            (Some(true), Answer::No),
            (None, Answer::Unknown),
        ] {
            let mut f = clean(Group::Oa);
            f.deformity = v;
            f.implant = v;
            let s = screen(&f, &[], 365, &[]);
            assert_eq!(answer(&s, Criterion::I4), expect);
            assert_eq!(answer(&s, Criterion::I5), expect);
        }
    }

    #[test]
    fn e1_e2_e3_yes_applies_no_does_not_empty_unknown() {
        for (v, expect, decision) in [
            (Some(true), Answer::Yes, Decision::Ineligible),
            (Some(false), Answer::No, Decision::Eligible),
            (None, Answer::Unknown, Decision::Pending),
        ] {
            let mut f = clean(Group::Oa);
            f.pathological_fracture = v;
            f.malignancy = v;
            f.steroid_long_term = v;
            let s = screen(&f, &[], 365, &[]);
            for c in [Criterion::E1, Criterion::E2, Criterion::E3] {
                assert_eq!(answer(&s, c), expect);
            }
            assert_eq!(s.decision, decision);
        }
    }

    #[test]
    fn e4_counts_six_calendar_months_as_the_follow_up_windows_do() {
        // Index 2025-03-31: six calendar months before is 2024-09-30 (the same month
        // arithmetic as the follow-up windows); 183 days before would be 2024-09-29.
        // Index 2024-08-31: six months before is 2024-02-29 (a month end kept).
        for (index, last, expect) in [
            ("2025-03-31", "2024-09-30", Answer::Yes),
            ("2025-03-31", "2024-09-29", Answer::No),
            ("2024-08-31", "2024-02-29", Answer::Yes),
            ("2024-08-31", "2024-02-28", Answer::No),
            ("2024-08-31", "2024-08-31", Answer::Yes),
        ] {
            let mut f = clean(Group::Oa);
            f.index_date = Some(d(index));
            f.radio_chemo_last = RadioChemo::Last(d(last));
            assert_eq!(
                answer(&screen(&f, &[], 365, &[]), Criterion::E4),
                expect,
                "index {index}, last {last}"
            );
        }
    }

    #[test]
    fn e4_window_is_0_to_183_days_before_index_inclusive() {
        for (last, expect) in [
            (RadioChemo::Last(d("2024-06-01")), Answer::Yes), // 0 days
            (RadioChemo::Last(d("2023-12-01")), Answer::Yes), // 183 days
            (RadioChemo::Last(d("2023-11-30")), Answer::No),  // 184 days
            (RadioChemo::Last(d("2024-06-02")), Answer::No),  // after the index date
            (RadioChemo::Never, Answer::No),
            (RadioChemo::Unknown, Answer::Unknown),
        ] {
            let mut f = clean(Group::Oa);
            f.radio_chemo_last = last;
            assert_eq!(
                answer(&screen(&f, &[], 365, &[]), Criterion::E4),
                expect,
                "{last:?}"
            );
        }
        let mut f = clean(Group::Oa);
        f.radio_chemo_last = RadioChemo::Last(d("2024-01-01"));
        f.index_date = None;
        assert_eq!(
            answer(&screen(&f, &[], 365, &[]), Criterion::E4),
            Answer::Unknown
        );
    }

    #[test]
    fn e5_op_and_control_need_a_dxa_in_the_window() {
        for g in [Group::Op, Group::Control] {
            let s = screen(&clean(g), &[], 365, &[]);
            assert_eq!(answer(&s, Criterion::E5), Answer::Unknown);
            assert_eq!(s.flags, vec![Flag::MissingDxa]);
            assert_eq!(s.decision, Decision::Pending);

            let s = screen(&clean(g), &dxa_at("2025-06-01"), 365, &[]);
            assert_eq!(answer(&s, Criterion::E5), Answer::No);
            assert!(s.flags.is_empty());
            assert_eq!(s.decision, Decision::Eligible);

            // one day outside the window
            let s = screen(&clean(g), &dxa_at("2025-06-02"), 365, &[]);
            assert_eq!(answer(&s, Criterion::E5), Answer::Unknown);
            assert_eq!(s.flags, vec![Flag::MissingDxa]);
        }
    }

    #[test]
    fn e5_does_not_apply_to_oa_and_oa_is_never_missing_dxa() {
        let s = screen(&clean(Group::Oa), &[], 365, &[]);
        assert_eq!(answer(&s, Criterion::E5), Answer::No);
        assert!(!s.flags.contains(&Flag::MissingDxa));
    }

    #[test]
    fn manual_answer_wins_and_both_are_kept() {
        let s = screen(&clean(Group::Op), &[], 365, &[(Criterion::E5, Answer::Yes)]);
        let item = s
            .checklist
            .iter()
            .find(|i| i.criterion == Criterion::E5)
            .unwrap();
        assert_eq!(item.auto.answer, Answer::Unknown);
        assert_eq!(item.manual, Some(Answer::Yes));
        assert_eq!(s.decision, Decision::Ineligible);
        assert_eq!(s.reasons, vec![Criterion::E5]);
        // the data flag stays: the DXA is still missing
        assert_eq!(s.flags, vec![Flag::MissingDxa]);

        let mut f = clean(Group::Oa);
        f.deformity = None;
        let s = screen(&f, &[], 365, &[(Criterion::I4, Answer::Yes)]);
        assert_eq!(s.decision, Decision::Eligible);
    }

    #[test]
    fn ineligible_keeps_every_reason_and_wins_over_unknowns() {
        let mut f = clean(Group::Op);
        f.age = Some(91);
        f.malignancy = Some(true);
        f.steroid_long_term = None;
        let s = screen(&f, &[], 365, &[]);
        assert_eq!(s.decision, Decision::Ineligible);
        assert_eq!(s.reasons, vec![Criterion::I1, Criterion::E2]);
        assert_eq!(s.pending, vec![Criterion::E3, Criterion::E5]);
    }

    #[test]
    fn under_fifty_with_dxa_is_flagged_for_z_score() {
        let mut f = clean(Group::Op);
        f.age = Some(45);
        let s = screen(&f, &dxa_at("2024-06-01"), 365, &[]);
        assert_eq!(s.flags, vec![Flag::ZScoreApplies]);
        assert_eq!(s.op_reading.who_stage(), None);
    }

    #[test]
    fn missing_index_date_flags_missing_dxa_only_without_any_scan() {
        let mut f = clean(Group::Control);
        f.index_date = None;
        assert_eq!(screen(&f, &[], 365, &[]).flags, vec![Flag::MissingDxa]);
        assert!(screen(&f, &dxa_at("2020-01-01"), 365, &[]).flags.is_empty());
    }

    #[test]
    fn answers_and_criteria_parse_from_cli_words() {
        assert_eq!("i4".parse::<Criterion>().unwrap(), Criterion::I4);
        assert!("I6".parse::<Criterion>().is_err());
        assert_eq!("YES".parse::<Answer>().unwrap(), Answer::Yes);
        assert_eq!(Answer::No.label(Criterion::E2), "does not apply");
        assert_eq!(Answer::No.label(Criterion::I2), "not met");
    }
}
