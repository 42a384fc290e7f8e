//! Deterministic worklists and patients built without a database, through the domain's
//! own screening, for the TUI's tests and benchmarks.

use super::app::Session;
use crate::db::study::{ManualAnswer, PatientDetail, PatientSummary};
use crate::domain::dxa::{DxaScan, Region};
use crate::domain::eligibility::{Answer, Criterion, PatientFacts, RadioChemo, screen};
use crate::domain::protocol::{DEFAULT_DXA_WINDOW_DAYS, Group, Phase};
use crate::domain::records::{LabRecord, PatientRecord, Sex};
use crate::domain::user::Role;
use chrono::NaiveDate;

/// The sites of the default protocol.
pub const SITES: [&str; 2] = ["PKUPH", "SYSMH"];

/// A session of a coordinator at both sites.
pub fn session(role: Role) -> Session {
    Session {
        user: "alice".into(),
        role,
        sites: SITES.iter().map(|s| s.to_string()).collect(),
    }
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default()
}

/// One synthetic patient: the record, its DXA scans, labs and manual answers.
#[derive(Debug, Clone)]
pub struct FixturePatient {
    pub study_id: String,
    pub record: PatientRecord,
    pub dxa: Vec<DxaScan>,
    pub labs: Vec<LabRecord>,
    pub manual: Vec<ManualAnswer>,
    pub version: i64,
}

impl FixturePatient {
    /// A clean patient who meets everything, with a DXA in the window for OP/CONTROL.
    pub fn clean(site: &str, group: Group, n: usize) -> FixturePatient {
        let index = date(2024, 6, 1);
        FixturePatient {
            study_id: format!("{site}-{}-{n:04}", group.code()),
            record: PatientRecord {
                site: site.into(),
                group,
                phase: Phase::Retrospective,
                sex: Some(Sex::F),
                age: Some(63),
                index_date: Some(index),
                bmi: Some(24.0),
                deformity: Some(false),
                implant: Some(false),
                pathological_fracture: Some(false),
                malignancy: Some(false),
                steroid_long_term: Some(false),
                radio_chemo_last: RadioChemo::Never,
            },
            dxa: if group.needs_dxa() {
                vec![
                    scan(date(2024, 5, 20), Region::LumbarSpine, -1.4, Some(-0.6)),
                    scan(date(2024, 5, 20), Region::TotalHip, -0.8, Some(-0.1)),
                ]
            } else {
                Vec::new()
            },
            labs: Vec::new(),
            manual: Vec::new(),
            version: 1,
        }
    }

    fn facts(&self) -> PatientFacts {
        let r = &self.record;
        PatientFacts {
            group: r.group,
            age: r.age,
            index_date: r.index_date,
            deformity: r.deformity,
            implant: r.implant,
            pathological_fracture: r.pathological_fracture,
            malignancy: r.malignancy,
            steroid_long_term: r.steroid_long_term,
            radio_chemo_last: r.radio_chemo_last,
            has_image: false,
        }
    }

    /// The screening detail, screened by the domain rules.
    pub fn detail(&self) -> PatientDetail {
        let answers: Vec<(Criterion, Answer)> = self
            .manual
            .iter()
            .map(|m| (m.criterion, m.answer))
            .collect();
        let s = screen(&self.facts(), &self.dxa, DEFAULT_DXA_WINDOW_DAYS, &answers);
        let r = &self.record;
        PatientDetail {
            summary: PatientSummary {
                study_id: self.study_id.clone(),
                site: r.site.clone(),
                group: r.group,
                phase: r.phase,
                sex: r.sex,
                age: r.age,
                decision: s.decision,
                reasons: s.reasons.clone(),
                pending: s.pending.clone(),
                flags: s.flags.clone(),
                who_stage: s.op_reading.who_stage().map(|w| w.label().to_string()),
                version: self.version,
            },
            record: r.clone(),
            screening: s,
            manual: self.manual.clone(),
            dxa: self.dxa.clone(),
            labs: self.labs.clone(),
            updated_at: "2026-01-05T09:30:00Z".into(),
            updated_by: "import".into(),
        }
    }

    pub fn summary(&self) -> PatientSummary {
        self.detail().summary
    }
}

/// One region of one DXA scan.
pub fn scan(scan_date: NaiveDate, region: Region, t: f64, z: Option<f64>) -> DxaScan {
    DxaScan {
        scan_date,
        region,
        t_score: t,
        z_score: z,
        bmd_g_cm2: None,
    }
}

/// A manual answer as the database would return it.
pub fn manual(c: Criterion, answer: Answer, reason: &str, by: &str) -> ManualAnswer {
    ManualAnswer {
        criterion: c,
        answer,
        reason: reason.into(),
        by: by.into(),
        at: "2026-01-06T10:00:00Z".into(),
    }
}

/// `n` patients over both sites and the three groups, with a deterministic mix of
/// eligible, ineligible and pending patients, missing DXA and Z-score flags; ordered
/// like the database's worklist (site, group, study ID).
pub fn patients(n: usize) -> Vec<FixturePatient> {
    let mut counters = std::collections::HashMap::new();
    let mut out: Vec<FixturePatient> = (0..n)
        .map(|i| {
            let site = SITES[i % 2];
            let group = Group::ALL[(i / 2) % 3];
            let k = counters.entry((site, group)).or_insert(0usize);
            *k += 1;
            let mut p = FixturePatient::clean(site, group, *k);
            let r = &mut p.record;
            r.age = Some(30 + ((i * 7) % 65) as i32);
            r.sex = Some(if i % 3 == 0 { Sex::M } else { Sex::F });
            if i % 4 == 3 {
                r.phase = Phase::Prospective;
            }
            match i % 11 {
                1 => r.deformity = None,
                4 => r.malignancy = Some(true),
                6 => r.steroid_long_term = None,
                8 => p.dxa.clear(),
                9 => r.age = Some(17),
                _ => {}
            }
            p
        })
        .collect();
    out.sort_by(|a, b| {
        (&a.record.site, a.record.group.code(), &a.study_id).cmp(&(
            &b.record.site,
            b.record.group.code(),
            &b.study_id,
        ))
    });
    out
}

/// The worklist of `patients(n)`.
pub fn worklist(n: usize) -> Vec<PatientSummary> {
    patients(n).iter().map(FixturePatient::summary).collect()
}
