//! The model's rows (issue 5): jobs, the study's model versions, predictions per
//! image, and the labelled cases training and evaluation draw on.
//!
//! Predictions are study data like reads: a reader sees them only through
//! [`Study::case_view`](super::Study) after their own read (blinding lives in
//! `db/reading.rs`, which calls [`case_model_prediction`]). Every write here is an
//! IMMEDIATE transaction with its audit rows.

use super::audit::{AuditWriter, Change};
use super::{DbError, Result, Study, now_utc};
use crate::domain::evaluation::ReferenceStandard;
use crate::domain::protocol::Phase;
use crate::domain::reading::{ImageFacts, ImageInputs, image_fits_model};
use crate::domain::records::analyte_units;
use crate::domain::user::{Permission, Role};
use crate::inference::card::default_inputs;
use crate::inference::{Clinical, Task};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// A job's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    Infer,
    Train,
}

impl JobKind {
    pub fn code(self) -> &'static str {
        match self {
            JobKind::Infer => "infer",
            JobKind::Train => "train",
        }
    }
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn code(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> JobState {
        match s {
            "running" => JobState::Running,
            "done" => JobState::Done,
            "failed" => JobState::Failed,
            "cancelled" => JobState::Cancelled,
            _ => JobState::Queued,
        }
    }

    pub fn finished(self) -> bool {
        matches!(
            self,
            JobState::Done | JobState::Failed | JobState::Cancelled
        )
    }
}

/// One job, as the jobs screen and `marrow jobs` show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRow {
    pub id: i64,
    pub kind: JobKind,
    /// `None`: both tasks.
    pub task: Option<Task>,
    pub scope: String,
    pub state: JobState,
    pub backend: String,
    pub model_version: Option<String>,
    pub total: i64,
    pub done: i64,
    pub failed: i64,
    pub message: Option<String>,
    pub cancel_requested: bool,
    pub created_by: String,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub heartbeat_at: Option<String>,
}

impl JobRow {
    /// Share done, 0..=1.
    pub fn fraction(&self) -> f64 {
        if self.total <= 0 {
            if self.state == JobState::Done {
                1.0
            } else {
                0.0
            }
        } else {
            ((self.done + self.failed) as f64 / self.total as f64).clamp(0.0, 1.0)
        }
    }
}

/// A model version the study knows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelRow {
    pub id: i64,
    pub task: Task,
    pub name: String,
    pub version: String,
    /// Absolute folder of `model.toml` and the weights.
    pub dir: PathBuf,
    pub sha256: String,
    pub active: bool,
    pub created_by: String,
    pub created_at: String,
    /// The card's training description and validation metrics.
    pub card: serde_json::Value,
}

impl ModelRow {
    /// `name version`, as stored on the predictions.
    pub fn label(&self) -> String {
        format!("{} {}", self.name, self.version)
    }

    /// The card's validation figures in a few words, e.g. "AUC 0.631 · accuracy
    /// 41.7% · QWK 0.212 · n 60" (what `models` lists and the activation
    /// confirmation sets side by side).
    pub fn validation_summary(&self) -> String {
        let v = &self.card["validation"];
        let mut parts = Vec::new();
        if let Some(a) = v["auc_binary"].as_f64().or_else(|| v["auc_macro"].as_f64()) {
            parts.push(format!("AUC {a:.3}"));
        }
        if let Some(a) = v["accuracy"].as_f64() {
            parts.push(format!("accuracy {:.1}%", a * 100.0));
        }
        if let Some(k) = v["quadratic_kappa"].as_f64() {
            parts.push(format!("QWK {k:.3}"));
        }
        if let Some(n) = v["n"].as_u64() {
            parts.push(format!("n {n}"));
        }
        if parts.is_empty() {
            "no validation figures".into()
        } else {
            parts.join(" · ")
        }
    }

    /// What the audit trail keeps of a model when activation switches it.
    fn audit_json(&self) -> serde_json::Value {
        serde_json::json!({
            "task": self.task.code(),
            "model": self.label(),
            "sha256": self.sha256,
            "validation": self.card["validation"],
        })
    }

    /// The images the model reads: its card's inputs, else (a card registered before
    /// marrow recorded them) what the shipped model of its task reads.
    pub fn inputs(&self) -> ImageInputs {
        inputs_of(self.task, &self.card)
    }
}

fn inputs_of(task: Task, card: &serde_json::Value) -> ImageInputs {
    card.get("inputs")
        .cloned()
        .and_then(|v| serde_json::from_value::<ImageInputs>(v).ok())
        .filter(|i| i.validate().is_ok())
        .unwrap_or_else(|| default_inputs(task))
}

/// The columns [`facts_at`] reads, for a query over `image_instances i` joined with
/// `image_series se`.
const FACT_COLUMNS: &str = "se.modality, se.body_part, i.laterality, i.view_position, i.sop_class_uid, i.burned_in_review, i.review_reason";

/// The image's facts from the [`FACT_COLUMNS`] at `at`.
fn facts_at(r: &rusqlite::Row, at: usize) -> rusqlite::Result<ImageFacts> {
    let flagged = r.get::<_, i64>(at + 5)? != 0;
    let reason: Option<String> = r.get(at + 6)?;
    Ok(ImageFacts {
        modality: r.get(at)?,
        body_part: r.get(at + 1)?,
        laterality: r.get(at + 2)?,
        view_position: r.get(at + 3)?,
        sop_class_uid: r.get(at + 4)?,
        burned_in: match (flagged, reason) {
            (true, None) => Some("flagged at import".into()),
            (_, reason) => reason,
        },
    })
}

/// The inputs of every model version the study knows, by task and `name version`.
fn model_inputs(conn: &Connection) -> rusqlite::Result<HashMap<(String, String), ImageInputs>> {
    let mut st = conn.prepare_cached("SELECT task, name || ' ' || version, card FROM models")?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    let mut out = HashMap::new();
    for row in rows {
        let (task, label, card) = row?;
        let Some(t) = task_of(&task) else { continue };
        let card = serde_json::from_str(&card).unwrap_or(serde_json::Value::Null);
        out.insert((task, label), inputs_of(t, &card));
    }
    Ok(out)
}

/// Whether a stored prediction counts: the model that made it reads the image (its
/// card's inputs, else its task's default) as the case of the side stored. A
/// prediction made before marrow checked, of a CT or MR slice or the other knee,
/// is left out of every case prediction and of `marrow evaluate`.
fn prediction_counts(
    inputs: &HashMap<(String, String), ImageInputs>,
    task: &str,
    label: &str,
    side: &str,
    facts: &ImageFacts,
) -> bool {
    let Some(t) = task_of(task) else {
        return false;
    };
    let default;
    let inputs = match inputs.get(&(task.to_string(), label.to_string())) {
        Some(i) => i,
        None => {
            default = default_inputs(t);
            &default
        }
    };
    image_fits_model(inputs, t == Task::Kl, facts).is_ok_and(|s| s.code() == side)
}

/// Which images [`Study::image_targets`] returns.
#[derive(Debug, Clone, Copy)]
pub enum TargetsOf<'a> {
    /// The images `model` would predict: every linked image the task uses (`all`), or
    /// only those without a prediction of this model version.
    Model { model: &'a ModelRow, all: bool },
    /// The images of a labelled case (its patient's, on its side): what training uses.
    Case(&'a LabelledCase),
}

/// An image to predict and the case it belongs to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PredictTarget {
    pub instance_id: i64,
    /// Relative to the store folder.
    pub store_path: String,
    pub patient_id: i64,
    pub study_id: String,
    /// `left`, `right` (knees) or `patient` (OP).
    pub side: String,
}

/// The images a model would read, and the others by why it skips them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Targets {
    pub images: Vec<PredictTarget>,
    /// Images the model does not read, counted by [`Misfit::label`](crate::domain::reading::Misfit::label):
    /// `CT`, `MR`, `view LAT`, `body part HIP`...
    pub skipped: BTreeMap<String, usize>,
}

/// One prediction to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPrediction {
    pub instance_id: i64,
    pub study_id: String,
    pub side: String,
    pub class: u8,
    pub probs: Vec<f32>,
}

/// The model's prediction for a reading case: the latest model version of the task,
/// probabilities averaged over the case's images.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CasePrediction {
    pub patient_id: i64,
    pub side: String,
    pub task: String,
    pub model_version: String,
    pub class: u8,
    pub probs: Vec<f32>,
    /// How many images were averaged.
    pub images: usize,
}

/// The reference standard of a task, its cases and what was left out, by reason
/// ([`Study::reference_cases`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReferenceCases {
    pub reference: ReferenceStandard,
    pub cases: Vec<LabelledCase>,
    pub excluded: BTreeMap<String, usize>,
}

/// A labelled case with its images (training) or its prediction (evaluation).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelledCase {
    pub case_id: i64,
    pub patient_id: i64,
    pub study_id: String,
    pub side: String,
    pub phase: Phase,
    /// Class index of the final grade.
    pub label: u8,
}

/// One stored prediction, for `marrow predictions`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PredictionRow {
    pub study_id: String,
    /// Whether the image is one the model reads as this case (its card's inputs and
    /// the case's side): only those count in the case's prediction and `evaluate`.
    /// A prediction stored on a CT or MR slice by an older marrow says `false`.
    pub counts: bool,
    pub side: String,
    pub task: String,
    pub sop_uid: String,
    pub model: String,
    pub class: u8,
    pub probs: Vec<f32>,
    pub backend: String,
    pub created_at: String,
}

/// The model version scored and each labelled case with its mean probabilities.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvaluationPairs {
    /// The model version, "name version".
    pub model: String,
    pub reference: ReferenceStandard,
    /// Each reference case with the model's mean probabilities over its images.
    pub pairs: Vec<(LabelledCase, Vec<f64>)>,
    /// Reference cases left out, by reason (no reference label, no prediction).
    pub excluded: BTreeMap<String, usize>,
}

/// The study's model folder: `<db>.models/`.
pub fn models_dir(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(".models");
    PathBuf::from(s)
}

/// The weights shipped inside the binary (trained on phantoms; see their cards).
pub const BUILTIN: &[(Task, &str, &[u8])] = &[
    (
        Task::Kl,
        include_str!("../../models/kl/model.toml"),
        include_bytes!("../../models/kl/weights.mpk"),
    ),
    (
        Task::Op,
        include_str!("../../models/op/model.toml"),
        include_bytes!("../../models/op/weights.mpk"),
    ),
];

fn task_of(s: &str) -> Option<Task> {
    s.parse().ok()
}

/// Why a patient of `decision` (not "eligible") is not in a reference standard.
fn not_eligible(decision: &str) -> &'static str {
    if decision == "pending" {
        "screening pending"
    } else {
        "ineligible"
    }
}

fn final_label(task: Task, kl: Option<i64>, op: Option<&str>) -> Option<u8> {
    match task {
        Task::Kl => kl.and_then(|k| u8::try_from(k).ok()).filter(|k| *k <= 4),
        Task::Op => match op? {
            "normal" => Some(0),
            "osteopenia" => Some(1),
            "osteoporosis" => Some(2),
            _ => None,
        },
    }
}

const JOB_COLUMNS: &str = "id, kind, task, scope, state, backend, model_version, total, done, failed, \
     message, cancel_requested, created_by, created_at, started_at, finished_at, heartbeat_at";

fn job_from_row(r: &rusqlite::Row) -> rusqlite::Result<JobRow> {
    let kind: String = r.get(1)?;
    let task: Option<String> = r.get(2)?;
    let state: String = r.get(4)?;
    Ok(JobRow {
        id: r.get(0)?,
        kind: if kind == "train" {
            JobKind::Train
        } else {
            JobKind::Infer
        },
        task: task.as_deref().and_then(task_of),
        scope: r.get(3)?,
        state: JobState::parse(&state),
        backend: r.get(5)?,
        model_version: r.get(6)?,
        total: r.get(7)?,
        done: r.get(8)?,
        failed: r.get(9)?,
        message: r.get(10)?,
        cancel_requested: r.get::<_, i64>(11)? != 0,
        created_by: r.get(12)?,
        created_at: r.get(13)?,
        started_at: r.get(14)?,
        finished_at: r.get(15)?,
        heartbeat_at: r.get(16)?,
    })
}

fn model_from_row(root: &Path, r: &rusqlite::Row) -> rusqlite::Result<ModelRow> {
    let task: String = r.get(1)?;
    let dir: String = r.get(4)?;
    let card: String = r.get(6)?;
    Ok(ModelRow {
        id: r.get(0)?,
        task: task_of(&task).unwrap_or(Task::Kl),
        name: r.get(2)?,
        version: r.get(3)?,
        dir: root.join(dir),
        sha256: r.get(5)?,
        active: r.get::<_, i64>(7)? != 0,
        created_by: r.get(8)?,
        created_at: r.get(9)?,
        card: serde_json::from_str(&card).unwrap_or(serde_json::Value::Null),
    })
}

/// How long a running job may go without a heartbeat before it counts as dead.
pub const HEARTBEAT_STALE_SECS: i64 = 120;

/// Probabilities summed per case: (model version, sums, images).
type CaseSums = (String, Vec<f32>, usize);

/// Averages prediction rows `(patient, side, task, model version, probs JSON)` per
/// case (patient, side, task).
fn average_per_case(
    rows: impl Iterator<Item = rusqlite::Result<(i64, String, String, String, String)>>,
) -> rusqlite::Result<Vec<CasePrediction>> {
    let mut sums: BTreeMap<(i64, String, String), CaseSums> = BTreeMap::new();
    for row in rows {
        let (pid, side, task, version, probs) = row?;
        let probs: Vec<f32> = serde_json::from_str(&probs).unwrap_or_default();
        let e = sums
            .entry((pid, side, task))
            .or_insert_with(|| (version, vec![0.0; probs.len()], 0));
        if e.1.len() == probs.len() {
            for (a, b) in e.1.iter_mut().zip(&probs) {
                *a += b;
            }
            e.2 += 1;
        }
    }
    Ok(sums
        .into_iter()
        .filter(|(_, (_, _, n))| *n > 0)
        .map(|((patient_id, side, task), (model_version, sum, n))| {
            let probs: Vec<f32> = sum.iter().map(|v| v / n as f32).collect();
            CasePrediction {
                patient_id,
                side,
                task,
                model_version,
                class: crate::inference::model::argmax(&probs) as u8,
                probs,
                images: n,
            }
        })
        .collect())
}

/// The prediction of every reading case that has one (see [`CasePrediction`]).
pub fn case_predictions(conn: &Connection) -> rusqlite::Result<Vec<CasePrediction>> {
    latest_predictions(conn, None)
}

/// The latest model version's predictions of each task (of one patient, or all),
/// only those that count ([`prediction_counts`]), averaged per case.
fn latest_predictions(
    conn: &Connection,
    patient_id: Option<i64>,
) -> rusqlite::Result<Vec<CasePrediction>> {
    let inputs = model_inputs(conn)?;
    // One patient's: a plain equality, so the planner starts from that patient's
    // images (an `?1 IS NULL OR` form would scan every prediction of the study).
    let whose = if patient_id.is_some() {
        "i.patient_id = ?1"
    } else {
        "i.patient_id IS NOT NULL AND ?1 IS NULL"
    };
    let mut st = conn.prepare_cached(&format!(
        "SELECT i.patient_id, p.side, p.task, p.model || ' ' || p.model_version, p.probs, {FACT_COLUMNS} \
         FROM predictions p JOIN image_instances i ON i.id = p.instance_id \
         JOIN image_series se ON se.id = i.series \
         WHERE {whose} \
         AND p.model || ' ' || p.model_version = ( \
              SELECT p3.model || ' ' || p3.model_version FROM predictions p3 \
              WHERE p3.task = p.task ORDER BY p3.id DESC LIMIT 1) \
         ORDER BY i.patient_id, p.side, p.task"
    ))?;
    let rows = st.query_map([patient_id], |r| {
        Ok((
            (
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
            ),
            facts_at(r, 5)?,
        ))
    })?;
    let kept = rows.filter(|row| match row {
        Ok(((_, side, task, label, _), facts)) => {
            prediction_counts(&inputs, task, label, side, facts)
        }
        Err(_) => true,
    });
    average_per_case(kept.map(|row| row.map(|(p, _)| p)))
}

/// The model's view of one reading case: the KL probabilities of the knee (for a
/// knee case) and the OP probabilities of the patient. `None` when the model has
/// predicted nothing for it. Blinding is the caller's (`db/reading.rs`).
pub fn case_model_prediction(
    conn: &Connection,
    patient_id: i64,
    side: &str,
) -> rusqlite::Result<Option<super::reading::ModelPrediction>> {
    let all: Vec<CasePrediction> = case_predictions_of(conn, patient_id)?;
    let kl = all.iter().find(|p| p.task == "kl" && p.side == side);
    let op = all.iter().find(|p| p.task == "op");
    if kl.is_none() && op.is_none() {
        return Ok(None);
    }
    let model = [kl, op]
        .iter()
        .flatten()
        .map(|p| p.model_version.clone())
        .collect::<Vec<_>>()
        .join(", ");
    let f = |p: Option<&CasePrediction>| {
        p.map(|p| p.probs.iter().map(|&v| f64::from(v)).collect())
            .unwrap_or_default()
    };
    Ok(Some(super::reading::ModelPrediction {
        model,
        kl_probabilities: f(kl),
        op_probabilities: f(op),
    }))
}

fn case_predictions_of(
    conn: &Connection,
    patient_id: i64,
) -> rusqlite::Result<Vec<CasePrediction>> {
    latest_predictions(conn, Some(patient_id))
}

impl Study {
    fn models_root(&self) -> PathBuf {
        models_dir(self.path())
    }

    /// Every stored prediction (of one task, or both), for adjudicators, PIs and
    /// admins: the others are blinded (readers) or have no need (coordinators).
    pub fn predictions(&self, task: Option<Task>) -> Result<Vec<PredictionRow>> {
        let role = self.role();
        if !matches!(role, Role::Adjudicator | Role::Pi | Role::Admin) {
            return Err(DbError::NotAllowed {
                user: self.actor().name.clone(),
                role: role.to_string(),
                what: "list the model's predictions (adjudicators, PIs and admins see them; readers after their own read, case by case)".into(),
            });
        }
        let mut st = self.conn().prepare_cached(
            &format!(
                "SELECT pa.study_id, p.side, p.task, i.sop_uid, p.model || ' ' || p.model_version, \
                 p.class, p.probs, p.backend, p.created_at, {FACT_COLUMNS} \
                 FROM predictions p JOIN image_instances i ON i.id = p.instance_id \
                 JOIN image_series se ON se.id = i.series \
                 JOIN patients pa ON pa.id = i.patient_id \
                 WHERE ?1 IS NULL OR p.task = ?1 ORDER BY pa.study_id, p.side, p.task, i.sop_uid, p.id"
            ),
        )?;
        let inputs = model_inputs(self.conn())?;
        let rows = st.query_map([task.map(Task::code)], |r| {
            let probs: String = r.get(6)?;
            let (task, model, side): (String, String, String) = (r.get(2)?, r.get(4)?, r.get(1)?);
            let facts = facts_at(r, 9)?;
            Ok(PredictionRow {
                study_id: r.get(0)?,
                counts: prediction_counts(&inputs, &task, &model, &side, &facts),
                side,
                task,
                sop_uid: r.get(3)?,
                model,
                class: r.get::<_, i64>(5)?.clamp(0, 255) as u8,
                probs: serde_json::from_str(&probs).unwrap_or_default(),
                backend: r.get(7)?,
                created_at: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Every model version of the study, shipped ones first registered on first use.
    pub fn models(&self) -> Result<Vec<ModelRow>> {
        let root = self.models_root();
        let mut st = self.conn().prepare_cached(
            "SELECT id, task, name, version, dir, sha256, card, active, created_by, created_at \
             FROM models ORDER BY task, id",
        )?;
        let rows = st.query_map([], |r| model_from_row(&root, r))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The model `marrow infer` uses for `task`: the active one; the shipped weights
    /// are written to the study's model folder and registered the first time.
    pub fn active_model(&mut self, task: Task) -> Result<ModelRow> {
        if let Some(m) = self
            .models()?
            .into_iter()
            .find(|m| m.task == task && m.active)
        {
            return Ok(m);
        }
        self.install_builtin(task)
    }

    fn install_builtin(&mut self, task: Task) -> Result<ModelRow> {
        let (_, card_text, weights) = BUILTIN
            .iter()
            .find(|(t, _, _)| *t == task)
            .expect("a shipped model for each task");
        let card: crate::inference::card::ModelCard = toml::from_str(card_text)
            .map_err(|e| DbError::Invalid(format!("the shipped {task:?} model card: {e}")))?;
        let rel = format!("{}-{}", card.name, card.version);
        let dir = self.models_root().join(&rel);
        write_model_files(&dir, card_text.as_bytes(), weights)?;
        self.register_model(task, &card, &rel, true, "shipped with marrow")
    }

    /// Records a model version written under the study's model folder (`rel`), and
    /// makes it the active one when `activate`.
    pub fn register_model(
        &mut self,
        task: Task,
        card: &crate::inference::card::ModelCard,
        rel: &str,
        activate: bool,
        reason: &str,
    ) -> Result<ModelRow> {
        let actor = self.actor().clone();
        let summary = serde_json::json!({
            "training": card.training,
            "validation": card.validation,
            "intended_use": card.intended_use,
            "created": card.created,
            "inputs": card.inputs(),
        });
        let tx = self
            .conn_mut()
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut audit = AuditWriter::begin(&tx, &actor)?;
        if activate {
            tx.execute(
                "UPDATE models SET active = 0 WHERE task = ?1",
                [task.code()],
            )?;
        }
        tx.execute(
            "INSERT INTO models (task, name, version, dir, sha256, card, active, created_by, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
             ON CONFLICT (task, name, version) DO UPDATE SET active = excluded.active, dir = excluded.dir, \
             sha256 = excluded.sha256, card = excluded.card",
            params![
                task.code(),
                card.name,
                card.version,
                rel,
                card.weights_sha256,
                summary.to_string(),
                activate as i64,
                actor.name,
                now_utc()
            ],
        )?;
        let label = format!("{} {}", card.name, card.version);
        audit.append(
            &tx,
            &Change {
                action: "model.add",
                entity: "model",
                entity_id: &label,
                patient: None,
                before: None,
                after: Some(
                    serde_json::json!({ "task": task.code(), "dir": rel, "sha256": card.weights_sha256, "active": activate })
                        .to_string(),
                ),
                reason: Some(reason),
            },
        )?;
        audit.finish(&tx)?;
        tx.commit()?;
        self.models()?
            .into_iter()
            .find(|m| m.task == task && m.name == card.name && m.version == card.version)
            .ok_or_else(|| DbError::NotFound(format!("model {label} after registering it")))
    }

    /// Makes `version` (or "name version") the active model of `task`: an act of
    /// its own (training never does it), audited with the model it replaces and
    /// the validation figures of both, and the reason when given. Who may:
    /// whoever may train (coordinators and admins). Activating the active version
    /// changes nothing and writes nothing. Returns the model that was active and
    /// the one that is now.
    pub fn activate_model(
        &mut self,
        task: Task,
        version: &str,
        reason: Option<&str>,
    ) -> Result<(ModelRow, ModelRow)> {
        self.require(Permission::Model)?;
        // The shipped model is registered (active) first, so the audit row names
        // what the new one replaces.
        let previous = self.active_model(task)?;
        let models = self.models()?;
        let Some(m) = models
            .iter()
            .find(|m| m.task == task && (m.version == version || m.label() == version))
        else {
            let known: Vec<String> = models
                .iter()
                .filter(|m| m.task == task)
                .map(ModelRow::label)
                .collect();
            return Err(DbError::NotFound(format!(
                "no {} model version {version:?}; the study has: {} (`marrow models` lists them)",
                task.code(),
                known.join(", ")
            )));
        };
        if m.id == previous.id {
            return Ok((previous, m.clone()));
        }
        let reason = reason.map(str::trim).filter(|r| !r.is_empty());
        let actor = self.actor().clone();
        let label = m.label();
        let tx = self
            .conn_mut()
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut audit = AuditWriter::begin(&tx, &actor)?;
        tx.execute(
            "UPDATE models SET active = 0 WHERE task = ?1",
            [task.code()],
        )?;
        tx.execute("UPDATE models SET active = 1 WHERE id = ?1", [m.id])?;
        audit.append(
            &tx,
            &Change {
                action: "model.activate",
                entity: "model",
                entity_id: &label,
                patient: None,
                before: Some(serde_json::json!({ "active": previous.audit_json() }).to_string()),
                after: Some(serde_json::json!({ "active": m.audit_json() }).to_string()),
                reason,
            },
        )?;
        audit.finish(&tx)?;
        tx.commit()?;
        let now = self
            .models()?
            .into_iter()
            .find(|x| x.id == m.id)
            .ok_or_else(|| DbError::NotFound(label))?;
        Ok((previous, now))
    }

    /// Queues a job. Who may: coordinators and admins.
    pub fn create_job(
        &mut self,
        kind: JobKind,
        task: Option<Task>,
        scope: &str,
        backend: &str,
    ) -> Result<i64> {
        self.require(Permission::Model)?;
        self.fail_stale_jobs()?;
        let actor = self.actor().clone();
        let tx = self
            .conn_mut()
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut audit = AuditWriter::begin(&tx, &actor)?;
        tx.execute(
            "INSERT INTO model_jobs (kind, task, scope, backend, created_by, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                kind.code(),
                task.map(Task::code),
                scope,
                backend,
                actor.name,
                now_utc()
            ],
        )?;
        let id = tx.last_insert_rowid();
        audit.append(
            &tx,
            &Change {
                action: "job.create",
                entity: "job",
                entity_id: &id.to_string(),
                patient: None,
                before: None,
                after: Some(
                    serde_json::json!({ "kind": kind.code(), "task": task.map(Task::code), "scope": scope, "backend": backend })
                        .to_string(),
                ),
                reason: None,
            },
        )?;
        audit.finish(&tx)?;
        tx.commit()?;
        Ok(id)
    }

    /// Every job, newest first.
    pub fn jobs(&self) -> Result<Vec<JobRow>> {
        let mut st = self.conn().prepare_cached(&format!(
            "SELECT {JOB_COLUMNS} FROM model_jobs ORDER BY id DESC"
        ))?;
        let rows = st.query_map([], job_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn job(&self, id: i64) -> Result<JobRow> {
        self.conn()
            .query_row(
                &format!("SELECT {JOB_COLUMNS} FROM model_jobs WHERE id = ?1"),
                [id],
                job_from_row,
            )
            .optional()?
            .ok_or_else(|| DbError::NotFound(format!("no job {id} (`marrow jobs` lists them)")))
    }

    /// Asks a queued or running job to stop (the runner stops at its next step; a
    /// queued one is cancelled at once).
    pub fn cancel_job(&mut self, id: i64) -> Result<JobRow> {
        self.require(Permission::Model)?;
        let job = self.job(id)?;
        if job.state.finished() {
            return Err(DbError::Conflict(format!(
                "job {id} already ended ({}{})",
                job.state.code(),
                job.finished_at
                    .as_deref()
                    .map(|t| format!(" at {t}"))
                    .unwrap_or_default()
            )));
        }
        let actor = self.actor().clone();
        let tx = self
            .conn_mut()
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut audit = AuditWriter::begin(&tx, &actor)?;
        tx.execute(
            "UPDATE model_jobs SET cancel_requested = 1, \
               state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END, \
               finished_at = CASE WHEN state = 'queued' THEN ?2 ELSE finished_at END \
             WHERE id = ?1",
            params![id, now_utc()],
        )?;
        audit.append(
            &tx,
            &Change {
                action: "job.cancel",
                entity: "job",
                entity_id: &id.to_string(),
                patient: None,
                before: Some(serde_json::json!({ "state": job.state.code() }).to_string()),
                after: Some(serde_json::json!({ "cancel_requested": true }).to_string()),
                reason: None,
            },
        )?;
        audit.finish(&tx)?;
        tx.commit()?;
        self.job(id)
    }

    /// Marks running jobs whose process stopped answering as failed.
    pub fn fail_stale_jobs(&mut self) -> Result<usize> {
        let cutoff = (chrono::Utc::now() - chrono::Duration::seconds(HEARTBEAT_STALE_SECS))
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string();
        let stale: Vec<(i64, Option<String>)> = {
            let mut st = self.conn().prepare_cached(
                "SELECT id, heartbeat_at FROM model_jobs WHERE state = 'running' \
                 AND coalesce(heartbeat_at, started_at, created_at) < ?1",
            )?;
            st.query_map([&cutoff], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?
        };
        for (id, beat) in &stale {
            self.finish_job(
                *id,
                JobState::Failed,
                &format!(
                    "the process running it stopped (last heartbeat {}); start it again: \
                     `marrow infer --pending` picks up where it stopped",
                    beat.as_deref().unwrap_or("never")
                ),
            )?;
        }
        Ok(stale.len())
    }

    /// The runner took the job.
    pub fn start_job(
        &mut self,
        id: i64,
        backend: &str,
        model_version: &str,
        total: i64,
    ) -> Result<()> {
        let now = now_utc();
        let n = self.conn().execute(
            "UPDATE model_jobs SET state = 'running', backend = ?2, model_version = ?3, total = ?4, \
             started_at = ?5, heartbeat_at = ?5, runner_pid = ?6 WHERE id = ?1 AND state = 'queued'",
            params![id, backend, model_version, total, now, std::process::id()],
        )?;
        if n == 0 {
            let job = self.job(id)?;
            return Err(DbError::Conflict(format!(
                "job {id} is {} (only a queued job can start)",
                job.state.code()
            )));
        }
        Ok(())
    }

    /// Progress and heartbeat; returns whether someone asked the job to stop.
    pub fn job_progress(
        &self,
        id: i64,
        done: i64,
        failed: i64,
        message: Option<&str>,
    ) -> Result<bool> {
        self.conn().execute(
            "UPDATE model_jobs SET done = ?2, failed = ?3, heartbeat_at = ?4, \
             message = coalesce(?5, message) WHERE id = ?1",
            params![id, done, failed, now_utc(), message],
        )?;
        Ok(self.conn().query_row(
            "SELECT cancel_requested FROM model_jobs WHERE id = ?1",
            [id],
            |r| r.get::<_, i64>(0),
        )? != 0)
    }

    /// Ends a job (audited).
    pub fn finish_job(&mut self, id: i64, state: JobState, message: &str) -> Result<()> {
        let actor = self.actor().clone();
        let tx = self
            .conn_mut()
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut audit = AuditWriter::begin(&tx, &actor)?;
        tx.execute(
            "UPDATE model_jobs SET state = ?2, message = ?3, finished_at = ?4, heartbeat_at = ?4 \
             WHERE id = ?1",
            params![id, state.code(), message, now_utc()],
        )?;
        audit.append(
            &tx,
            &Change {
                action: "job.finish",
                entity: "job",
                entity_id: &id.to_string(),
                patient: None,
                before: None,
                after: Some(
                    serde_json::json!({ "state": state.code(), "message": message }).to_string(),
                ),
                reason: None,
            },
        )?;
        audit.finish(&tx)?;
        tx.commit()?;
        Ok(())
    }

    /// The images of `task` to predict or train on, see [`TargetsOf`].
    pub fn image_targets(&self, task: Task, of: TargetsOf) -> Result<Vec<PredictTarget>> {
        Ok(self.predict_targets(task, of)?.images)
    }

    /// The images of `task` to predict or train on ([`TargetsOf`]), and the images
    /// the model does not read, counted by why: only those that fit its card's inputs
    /// and the case of their side (`domain::reading::image_fits_model`); CT and MR
    /// slices, screenshots, images flagged for burned-in text, other body parts and
    /// views, knee films of unknown side or both knees are skipped. Training reads
    /// what the task's shipped model reads.
    pub fn predict_targets(&self, task: Task, of: TargetsOf) -> Result<Targets> {
        let code = task.code();
        let (model, version, all, case, inputs) = match of {
            TargetsOf::Model { model, all } => (
                Some(model.name.as_str()),
                Some(model.version.as_str()),
                all,
                None,
                model.inputs(),
            ),
            TargetsOf::Case(case) => (None, None, true, Some(case), default_inputs(task)),
        };
        let patient = case.map(|c| c.patient_id);
        // A case's images are its patient's; the model's are all linked images.
        let filter = if patient.is_some() {
            "WHERE i.patient_id = ?4 "
        } else {
            ""
        };
        let mut st = self.conn().prepare_cached(&format!(
            "SELECT i.id, i.store_path, p.id, p.study_id, \
               EXISTS (SELECT 1 FROM predictions q WHERE q.instance_id = i.id AND q.task = ?1 \
                       AND q.model = ?2 AND q.model_version = ?3), {FACT_COLUMNS} \
             FROM image_instances i JOIN patients p ON p.id = i.patient_id \
             JOIN image_series se ON se.id = i.series {filter}ORDER BY i.id"
        ))?;
        let mut args: Vec<&dyn rusqlite::ToSql> = vec![&code, &model, &version];
        if let Some(p) = &patient {
            args.push(p);
        }
        let rows = st.query_map(args.as_slice(), |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)? != 0,
                facts_at(r, 5)?,
            ))
        })?;
        let mut out = Targets::default();
        for row in rows {
            let (instance_id, store_path, patient_id, study_id, done, facts) = row?;
            if done && !all {
                continue;
            }
            let side = match image_fits_model(&inputs, task == Task::Kl, &facts) {
                Ok(side) => side.code().to_string(),
                Err(why) => {
                    *out.skipped.entry(why.label()).or_default() += 1;
                    continue;
                }
            };
            if case.is_some_and(|c| c.side != side) {
                continue;
            }
            out.images.push(PredictTarget {
                instance_id,
                store_path,
                patient_id,
                study_id,
                side,
            });
        }
        Ok(out)
    }

    /// The clinical inputs of patients: age, sex and BMI from the patient row, each
    /// lab's latest value.
    pub fn clinical_inputs(&self, patient_ids: &[i64]) -> Result<HashMap<i64, Clinical>> {
        let mut out = HashMap::new();
        let conn = self.conn();
        let mut p = conn.prepare_cached("SELECT age, sex, bmi FROM patients WHERE id = ?1")?;
        let mut l = conn.prepare_cached(
            "SELECT analyte, value, unit, original_value, original_unit FROM labs \
             WHERE patient_id = ?1 ORDER BY date",
        )?;
        for &id in patient_ids {
            if out.contains_key(&id) {
                continue;
            }
            let Some((age, sex, bmi)) = p
                .query_row([id], |r| {
                    Ok((
                        r.get::<_, Option<i64>>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, Option<f64>>(2)?,
                    ))
                })
                .optional()?
            else {
                continue;
            };
            let mut c = Clinical {
                age: age.map(|a| a as f64),
                female: sex.map(|s| s == "F"),
                bmi,
                ..Clinical::default()
            };
            let labs = l.query_map([id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, f64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<f64>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                ))
            })?;
            for lab in labs {
                let (analyte, v, unit, original_value, original_unit) = lab?;
                // The models' units (`inference::Feature`): the stored canonical
                // value converted back where the model was built on another unit.
                let (slot, model_unit) = match analyte.as_str() {
                    "p1np" => (&mut c.p1np, "ng/mL"),
                    "beta_ctx" => (&mut c.beta_ctx, "ng/mL"),
                    "calcium" => (&mut c.calcium, "mmol/L"),
                    "phosphorus" => (&mut c.phosphorus, "mmol/L"),
                    "vitamin_d_25oh" => (&mut c.vitamin_d, "ng/mL"),
                    "pth" => (&mut c.pth, "pg/mL"),
                    "alp" => (&mut c.alp, "U/L"),
                    _ => continue,
                };
                // Reported in the model's unit: that value as it is. A row stored
                // before migration 0008 in a unit the analyte does not accept is left
                // out rather than read as if it were canonical.
                let Some(units) = analyte_units(&analyte) else {
                    continue;
                };
                let spelling = |u: &str| units.factor(u).map(|(s, _)| s);
                let v = match (original_value, original_unit.as_deref()) {
                    (Some(ov), Some(ou)) if spelling(ou) == spelling(model_unit) => Some(ov),
                    _ => units
                        .to_canonical(v, &unit)
                        .and_then(|c| units.from_canonical(c, model_unit)),
                };
                let Some(v) = v else {
                    continue;
                };
                *slot = Some(v);
            }
            out.insert(id, c);
        }
        Ok(out)
    }

    /// Stores a batch of predictions of `model` in one transaction (one audit row per
    /// prediction); a re-run of the same version replaces its earlier rows.
    pub fn store_predictions(
        &mut self,
        job: Option<i64>,
        task: Task,
        model: &ModelRow,
        backend: &str,
        batch: &[NewPrediction],
    ) -> Result<()> {
        self.require(Permission::Model)?;
        let actor = self.actor().clone();
        let now = now_utc();
        let label = model.label();
        let tx = self
            .conn_mut()
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut audit = AuditWriter::begin(&tx, &actor)?;
        for p in batch {
            let probs = serde_json::to_string(&p.probs).expect("floats serialise");
            tx.prepare_cached(
                "INSERT INTO predictions (instance_id, task, side, model, model_version, class, probs, backend, job_id, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
                 ON CONFLICT (instance_id, task, model, model_version) DO UPDATE SET \
                 side = excluded.side, class = excluded.class, probs = excluded.probs, \
                 backend = excluded.backend, job_id = excluded.job_id, created_at = excluded.created_at",
            )?
            .execute(params![
                p.instance_id,
                task.code(),
                p.side,
                model.name,
                model.version,
                i64::from(p.class),
                probs,
                backend,
                job,
                now
            ])?;
            audit.append(
                &tx,
                &Change {
                    action: "prediction.add",
                    entity: "image",
                    entity_id: &p.instance_id.to_string(),
                    patient: Some(&p.study_id),
                    before: None,
                    after: Some(
                        serde_json::json!({ "task": task.code(), "side": p.side, "model": label, "class": p.class, "probs": p.probs })
                            .to_string(),
                    ),
                    reason: None,
                },
            )?;
        }
        audit.finish(&tx)?;
        tx.commit()?;
        Ok(())
    }

    /// The reference-standard labels of `task` (optionally of one cohort phase):
    /// [`reference_cases`](Self::reference_cases) without the exclusion counts.
    pub fn labelled_cases(&self, task: Task, phase: Option<Phase>) -> Result<Vec<LabelledCase>> {
        Ok(self.reference_cases(task, phase)?.cases)
    }

    /// The reference standard of `task` ([`ReferenceStandard`]), the labels that
    /// training and evaluation use, with what was left out and why:
    /// - OP: one case per eligible patient aged 50 or more at the index date with a
    ///   DXA WHO stage (side `patient`); patients under 50 (the Z-score rule applies),
    ///   of unknown age, or without a DXA scan in the window are counted apart. The
    ///   readers' OP impression is never the reference.
    /// - KL: each knee case of an eligible patient with a final KL grade; knees
    ///   without a final grade yet, or finalised as not assessable, are counted apart.
    ///
    /// Only roles that may see final grades (adjudicators, PIs, admins, and
    /// coordinators for model work) get them.
    pub fn reference_cases(&self, task: Task, phase: Option<Phase>) -> Result<ReferenceCases> {
        if self.role() == Role::Reader {
            return Err(DbError::NotAllowed {
                user: self.actor().name.clone(),
                role: Role::Reader.to_string(),
                what: "see final grades (readers are blinded)".into(),
            });
        }
        let mut out = ReferenceCases {
            reference: ReferenceStandard::of(task),
            cases: Vec::new(),
            excluded: BTreeMap::new(),
        };
        let mut exclude = |why: &str| *out.excluded.entry(why.to_string()).or_default() += 1;
        let in_phase = |ph: &str| -> Option<Phase> {
            let p: Phase = ph.parse().ok()?;
            phase.is_none_or(|want| want == p).then_some(p)
        };
        match task {
            Task::Op => {
                let mut st = self.conn().prepare_cached(
                    "SELECT p.id, p.study_id, p.phase, p.decision, p.age, p.who_stage, \
                     (SELECT c.id FROM reading_cases c WHERE c.patient_id = p.id AND c.side = 'patient'), \
                     p.grp FROM patients p ORDER BY p.id",
                )?;
                let rows = st.query_map([], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, Option<i32>>(4)?,
                        r.get::<_, Option<String>>(5)?,
                        r.get::<_, Option<i64>>(6)?,
                        r.get::<_, String>(7)?,
                    ))
                })?;
                let mut cases = Vec::new();
                for row in rows {
                    let (patient_id, study_id, ph, decision, age, who, case_id, grp) = row?;
                    let Some(phase_v) = in_phase(&ph) else {
                        continue;
                    };
                    // OA patients have no DXA by protocol: not part of the OP figures
                    // unless they have one
                    let dxa_group = grp
                        .parse::<crate::domain::protocol::Group>()
                        .map_or(true, |g| g.needs_dxa());
                    if !dxa_group && who.is_none() {
                        continue;
                    }
                    if decision != "eligible" {
                        exclude(not_eligible(&decision));
                        continue;
                    }
                    match age {
                        None => {
                            exclude("age unknown");
                            continue;
                        }
                        Some(a) if a < crate::domain::dxa::T_SCORE_MIN_AGE => {
                            exclude("under 50 (the Z-score rule applies, no WHO stage)");
                            continue;
                        }
                        Some(_) => {}
                    }
                    // stored as the WHO label ("Osteoporosis")
                    let who = who.map(|w| w.to_ascii_lowercase());
                    let Some(label) = final_label(Task::Op, None, who.as_deref()) else {
                        exclude("no DXA scan in the window");
                        continue;
                    };
                    cases.push(LabelledCase {
                        case_id: case_id.unwrap_or(0),
                        patient_id,
                        study_id,
                        side: "patient".into(),
                        phase: phase_v,
                        label,
                    });
                }
                out.cases = cases;
            }
            Task::Kl => {
                let mut st = self.conn().prepare_cached(
                    "SELECT c.id, p.id, p.study_id, c.side, p.phase, p.decision, f.method, f.kl \
                     FROM reading_cases c JOIN patients p ON p.id = c.patient_id \
                     LEFT JOIN case_finals f ON f.case_id = c.id \
                     WHERE c.side IN ('left', 'right') ORDER BY c.id",
                )?;
                let rows = st.query_map([], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, Option<String>>(6)?,
                        r.get::<_, Option<i64>>(7)?,
                    ))
                })?;
                let mut cases = Vec::new();
                for row in rows {
                    let (case_id, patient_id, study_id, side, ph, decision, method, kl) = row?;
                    let Some(phase_v) = in_phase(&ph) else {
                        continue;
                    };
                    if decision != "eligible" {
                        exclude(not_eligible(&decision));
                        continue;
                    }
                    if method.is_none() {
                        exclude("no final grade yet");
                        continue;
                    }
                    let Some(label) = final_label(Task::Kl, kl, None) else {
                        exclude("final grade: not assessable");
                        continue;
                    };
                    cases.push(LabelledCase {
                        case_id,
                        patient_id,
                        study_id,
                        side,
                        phase: phase_v,
                        label,
                    });
                }
                out.cases = cases;
            }
        }
        Ok(out)
    }

    /// The task's reference standard paired with the model's case prediction (of
    /// `model_label`, or the latest version with predictions): what `marrow
    /// evaluate` scores, with the reference cases left out and why.
    pub fn evaluation_pairs(
        &self,
        task: Task,
        phase: Option<Phase>,
        model_label: Option<&str>,
    ) -> Result<EvaluationPairs> {
        let ReferenceCases {
            reference,
            cases,
            mut excluded,
        } = self.reference_cases(task, phase)?;
        let label: String = match model_label {
            Some(l) => l.to_string(),
            None => self
                .conn()
                .query_row(
                    "SELECT model || ' ' || model_version FROM predictions WHERE task = ?1 ORDER BY id DESC LIMIT 1",
                    [task.code()],
                    |r| r.get(0),
                )
                .optional()?
                .ok_or_else(|| {
                    DbError::NotFound(format!(
                        "the {} model has predicted nothing yet: run `marrow infer` first",
                        task.code()
                    ))
                })?,
        };
        // Only predictions of images the model reads as this case count: one of a
        // CT or MR slice stored before marrow checked is left out.
        let inputs = model_inputs(self.conn())?;
        let mut st = self.conn().prepare_cached(&format!(
            "SELECT p.probs, {FACT_COLUMNS} FROM predictions p JOIN image_instances i ON i.id = p.instance_id \
             JOIN image_series se ON se.id = i.series \
             WHERE i.patient_id = ?1 AND p.side = ?2 AND p.task = ?3 AND p.model || ' ' || p.model_version = ?4"
        ))?;
        let mut out = Vec::new();
        for c in cases {
            let rows: Vec<String> = st
                .query_map(params![c.patient_id, c.side, task.code(), label], |r| {
                    Ok((r.get::<_, String>(0)?, facts_at(r, 1)?))
                })?
                .filter_map(|row| match row {
                    Ok((probs, facts)) => {
                        prediction_counts(&inputs, task.code(), &label, &c.side, &facts)
                            .then_some(Ok(probs))
                    }
                    Err(e) => Some(Err(e)),
                })
                .collect::<rusqlite::Result<_>>()?;
            let mut sum = vec![0f64; task.num_classes()];
            let mut n = 0;
            for r in rows {
                let p: Vec<f64> = serde_json::from_str(&r).unwrap_or_default();
                if p.len() == sum.len() {
                    for (a, b) in sum.iter_mut().zip(&p) {
                        *a += b;
                    }
                    n += 1;
                }
            }
            if n > 0 {
                out.push((c, sum.iter().map(|v| v / n as f64).collect()));
            } else {
                *excluded
                    .entry("no prediction by this model".into())
                    .or_default() += 1;
            }
        }
        Ok(EvaluationPairs {
            model: label,
            reference,
            pairs: out,
            excluded,
        })
    }
}

/// Writes a model's card and weights into `dir` (each through a temporary file),
/// unless identical files are there already.
pub fn write_model_files(dir: &Path, card: &[u8], weights: &[u8]) -> Result<()> {
    let io = |e: std::io::Error, p: &Path| {
        DbError::Invalid(format!("cannot write {}: {e}", p.display()))
    };
    std::fs::create_dir_all(dir).map_err(|e| io(e, dir))?;
    for (name, bytes) in [
        (crate::inference::card::WEIGHTS_FILE, weights),
        (crate::inference::card::CARD_FILE, card),
    ] {
        let path = dir.join(name);
        if std::fs::read(&path).ok().as_deref() == Some(bytes) {
            continue;
        }
        let tmp = path.with_extension("partial");
        std::fs::write(&tmp, bytes)
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|e| io(e, &path))?;
    }
    Ok(())
}
