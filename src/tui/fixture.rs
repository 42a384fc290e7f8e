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
        warning: None,
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

/// Jobs as the jobs screen lists them, newest first: one running (its rate from its
/// start and last heartbeat), one queued, one done, one cancelled and one failed.
pub fn jobs() -> Vec<crate::db::inference::JobRow> {
    use crate::db::inference::{JobKind, JobRow, JobState};
    use crate::inference::Task;
    let job = |id: i64, state: JobState, done: i64, total: i64| JobRow {
        id,
        kind: JobKind::Infer,
        task: None,
        scope: "pending".into(),
        state,
        backend: "cpu (burn-ndarray)".into(),
        model_version: Some("kl 0.1.0-phantom, op 0.1.0-phantom".into()),
        total,
        done,
        failed: 0,
        message: None,
        cancel_requested: false,
        created_by: "alice".into(),
        created_at: format!("2026-11-27T09:{:02}:00.000Z", id * 5),
        started_at: Some(format!("2026-11-27T09:{:02}:01.000Z", id * 5)),
        finished_at: None,
        heartbeat_at: None,
    };
    let mut running = job(5, JobState::Running, 128, 300);
    running.heartbeat_at = Some("2026-11-27T09:25:11.000Z".into());
    running.message = Some("kl: 128 of 300 images".into());
    let mut queued = job(6, JobState::Queued, 0, 0);
    queued.scope = "all".into();
    queued.backend = "auto".into();
    queued.model_version = None;
    queued.started_at = None;
    let mut done = job(4, JobState::Done, 300, 300);
    done.finished_at = Some("2026-11-27T09:20:31.000Z".into());
    done.message =
        Some("300 of 300 images predicted with kl 0.1.0-phantom, op 0.1.0-phantom".into());
    let mut cancelled = job(3, JobState::Cancelled, 64, 300);
    cancelled.cancel_requested = true;
    cancelled.finished_at = Some("2026-11-27T09:15:09.000Z".into());
    cancelled.message = Some(
        "cancelled after 64 of 300 images (kept; `marrow infer --pending` finishes the rest)"
            .into(),
    );
    cancelled.created_by = "bob".into();
    let mut failed = job(2, JobState::Failed, 0, 0);
    failed.task = Some(Task::Kl);
    failed.scope = "all".into();
    failed.finished_at = Some("2026-11-27T09:10:02.000Z".into());
    failed.message = Some(
        "cannot load the kl model kl 0.1.0-phantom: the weights' SHA-256 does not match the card"
            .into(),
    );
    vec![queued, running, done, cancelled, failed]
}

/// The active model of a task as the database lists it.
pub fn model_row(task: crate::inference::Task) -> crate::db::inference::ModelRow {
    use crate::inference::Task;
    let (name, data) = match task {
        Task::Kl => (
            "kl",
            "1200 synthetic knee AP phantoms, balanced classes; not for clinical use",
        ),
        Task::Op => (
            "op",
            "900 synthetic hip AP phantoms, balanced classes; not for clinical use",
        ),
    };
    crate::db::inference::ModelRow {
        id: 1,
        task,
        name: name.into(),
        version: "0.1.0-phantom".into(),
        dir: std::path::PathBuf::from(format!("/study/demo.db.models/{name}-0.1.0-phantom")),
        sha256: "0".repeat(64),
        active: true,
        created_by: "alice".into(),
        created_at: "2026-11-27T09:00:00.000Z".into(),
        card: serde_json::json!({ "training": { "data": data } }),
    }
}

/// The outcome figures of a deterministic sample of 120 cases (a seeded bootstrap of
/// `resamples`): a model that is right about two times in three and close otherwise.
pub fn evaluation(
    task: crate::inference::Task,
    resamples: usize,
) -> crate::cli::model::EvaluationReport {
    use crate::domain::evaluation::{self, EvalOptions};
    let k = task.num_classes();
    let mut seed: u64 = 20261127;
    let mut next = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((seed >> 33) as f64) / f64::from(u32::MAX >> 1)
    };
    let (mut labels, mut probs) = (Vec::new(), Vec::new());
    for i in 0..120usize {
        let label = (i * 7 % 11 % k) as u8;
        let guess = match next() {
            x if x < 0.66 => label as usize,
            x if x < 0.83 => (label as usize + 1).min(k - 1),
            _ => (label as usize).saturating_sub(1),
        };
        let mut p: Vec<f64> = (0..k).map(|_| 0.05 + 0.2 * next()).collect();
        p[guess] += 1.0 + next();
        let sum: f64 = p.iter().sum();
        labels.push(label);
        probs.push(p.iter().map(|v| v / sum).collect::<Vec<f64>>());
    }
    let e = evaluation::evaluate(
        &EvalOptions {
            k,
            positive_from: task.positive_from(),
            threshold: 0.5,
            resamples,
            seed: 2026,
        },
        &labels,
        &probs,
    )
    .expect("the fixture sample is a valid evaluation");
    let reference = evaluation::ReferenceStandard::of(task);
    crate::cli::model::EvaluationReport {
        task,
        cohort: Some("prospective".into()),
        cohort_role: crate::cli::model::cohort_role(Some(
            crate::domain::protocol::Phase::Prospective,
        ))
        .to_string(),
        reference,
        reference_description: reference.describe().to_string(),
        excluded: [("no prediction by this model".to_string(), 3)].into(),
        model: format!("{} 0.1.0-phantom", task.code()),
        trained_on: Some("synthetic phantoms (not for clinical use)".into()),
        resamples,
        positive: evaluation::positive_name(task).to_string(),
        evaluation: e,
        published: evaluation::published(task),
        comparison: None,
    }
}
