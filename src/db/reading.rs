//! The reading repository: cases (a knee, or a patient for the OP stage), reading
//! slots, blinded reads with their correction versions, consensus and adjudicated
//! final grades.
//!
//! Blinding lives here, not in the screens: every function that returns case data
//! looks at the acting user, and a reader who has not submitted their own read of a
//! case gets [`Blinded::Hidden`] in place of the other reads, the DXA stage, the
//! model's prediction, the disagreement and the final grade; the data is never
//! loaded into what such a reader gets back. Adjudicators, PIs and admins see
//! everything; coordinators see cases and counts, never grades.
//!
//! Every write is one IMMEDIATE transaction with its audit rows. Taking a slot runs
//! in such a transaction and the schema backs it (a slot is a primary key, one reader
//! per case is UNIQUE), so two readers taking work at the same moment never share a
//! slot and no reader reads a case twice. An adjudication is written only when the
//! case has no final grade yet (checked inside the transaction): the second
//! adjudicator is told who decided what and when, and nothing is overwritten.

use super::audit::{AuditWriter, Change};
use super::study::{Study, Upsert};
use super::{DbError, Result, now_utc};
use crate::domain::protocol::Group;
use crate::domain::reading::{
    self, Disagreement, FinalGrade, Grade, ImageFacts, Oarsi, OpImpression, Outcome, ReadInput,
    ReadingRules, Side,
};
use crate::domain::user::{Permission, Role};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};

/// A value the acting user may see, or why they may not (yet).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Blinded<T> {
    Shown(T),
    Hidden(String),
}

impl<T> Blinded<T> {
    /// The value, when shown.
    pub fn shown(&self) -> Option<&T> {
        match self {
            Blinded::Shown(v) => Some(v),
            Blinded::Hidden(_) => None,
        }
    }

    pub fn is_hidden(&self) -> bool {
        matches!(self, Blinded::Hidden(_))
    }
}

/// Where a case stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CaseState {
    /// Reads outstanding (slots free or taken and not submitted).
    Open,
    /// The reads disagree: waiting for an adjudicator.
    Adjudication,
    /// A final grade is recorded (consensus or adjudicated).
    Final,
}

impl CaseState {
    pub fn code(self) -> &'static str {
        match self {
            CaseState::Open => "open",
            CaseState::Adjudication => "adjudication",
            CaseState::Final => "final",
        }
    }

    fn parse(s: &str) -> CaseState {
        match s {
            "adjudication" => CaseState::Adjudication,
            "final" => CaseState::Final,
            _ => CaseState::Open,
        }
    }
}

/// How a final grade came about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FinalMethod {
    /// The reads agreed under the protocol's rules.
    Consensus,
    /// An adjudicator decided (21 CFR 11.50: name, UTC time, meaning).
    Adjudicated,
}

impl FinalMethod {
    pub fn code(self) -> &'static str {
        match self {
            FinalMethod::Consensus => "consensus",
            FinalMethod::Adjudicated => "adjudicated",
        }
    }
}

/// One version of one reader's read of a case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReadRecord {
    pub id: i64,
    pub case: String,
    pub reader: String,
    /// 1 for the first read, 2 for its first correction...
    pub version: i64,
    pub read: ReadInput,
    /// Why this version corrects the one before.
    pub correction_reason: Option<String>,
    /// `marrow` (read in marrow) or `import` (`marrow reads import`).
    pub source: String,
    /// The date an imported read was made.
    pub read_date: Option<String>,
    pub submitted_at: String,
    /// The OS user who submitted it.
    pub submitted_by: String,
}

/// A final grade with who decided it, when (UTC) and the meaning of the act.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FinalRecord {
    pub case: String,
    pub grade: FinalGrade,
    pub method: FinalMethod,
    /// "adjudicated" or "consensus".
    pub meaning: String,
    pub rationale: Option<String>,
    /// The adjudicator; "consensus" for a consensus.
    pub decided_by: String,
    /// The OS user who submitted it (the reader whose read completed a consensus).
    pub decided_by_real: String,
    pub decided_at: String,
    /// The reads (ids) the decision was made on.
    pub reads: Vec<i64>,
}

/// One line of a case list (the reader's worklist, `marrow cases`, the
/// adjudication queue). No grades.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaseSummary {
    /// The case reference, e.g. C00017.
    pub case: String,
    pub side: Side,
    /// `None` for a reader who has not submitted their read (a case waiting for
    /// adjudication would tell them the others disagree).
    pub state: Option<CaseState>,
    pub version: i64,
    /// `None` for readers: the study ID names the cohort, a hint they must not get.
    pub study_id: Option<String>,
    pub reads_submitted: u32,
    pub reads_needed: u32,
    /// Whether the acting user holds a slot of this case.
    pub assigned_to_you: bool,
    /// The version of the acting user's current read, if they submitted one.
    pub your_read_version: Option<i64>,
}

/// A case in the adjudication queue, with why the reads disagree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueItem {
    pub summary: CaseSummary,
    pub reasons: Vec<Disagreement>,
}

/// The model's probabilities for a case: the latest model version of each task,
/// averaged over the case's images (`db/inference.rs`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelPrediction {
    pub model: String,
    pub kl_probabilities: Vec<f64>,
    pub op_probabilities: Vec<f64>,
}

/// An image of the case's patient, as a viewer needs it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseImage {
    pub instance_id: i64,
    pub sop_uid: String,
    /// Relative to the study's store folder.
    pub store_path: String,
    pub modality: Option<String>,
    pub body_part: Option<String>,
    pub laterality: Option<String>,
    pub view_position: Option<String>,
    pub study_date: Option<String>,
}

/// An image of the case's patient that cannot grade the case, and why (CT, the
/// other knee, a screenshot...): listed apart, never shown as the case.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OtherImage {
    #[serde(flatten)]
    pub image: CaseImage,
    /// In words: "modality CT, not a radiograph (DX, CR)".
    pub why: String,
    /// A short label to count by: `CT`, `right knee`, `side unknown`...
    pub label: String,
}

/// Everything a read or adjudication screen shows of one case, blinded for the
/// acting user.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseView {
    pub case: String,
    pub side: Side,
    /// Hidden from a reader until they submit (see [`CaseSummary::state`]).
    pub state: Blinded<CaseState>,
    /// Pass back to [`Study::adjudicate`] as the expected version.
    pub version: i64,
    pub study_id: Blinded<String>,
    /// The images that can grade the case (`domain::reading::image_fits_case`).
    pub images: Vec<CaseImage>,
    /// The patient's other images, each with why it is not the case's.
    pub other_images: Vec<OtherImage>,
    pub reads_needed: u32,
    pub reads_submitted: u32,
    /// Every version of the acting user's own read, oldest first.
    pub your_reads: Vec<ReadRecord>,
    /// The current read of everyone else, in the order they first read the case.
    pub other_reads: Blinded<Vec<ReadRecord>>,
    /// Earlier versions of those reads (replaced by a correction), oldest first.
    pub superseded_reads: Blinded<Vec<ReadRecord>>,
    /// The WHO stage from the gold-standard DXA (or why there is none).
    pub dxa_stage: Blinded<Option<String>>,
    /// The model's prediction; `Shown(None)` when the model has not seen the case.
    pub model_prediction: Blinded<Option<ModelPrediction>>,
    /// Why the case needs adjudication (empty when it does not).
    pub disagreements: Blinded<Vec<Disagreement>>,
    pub final_grade: Blinded<Option<FinalRecord>>,
}

/// What `marrow read next` got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TakenCase {
    pub summary: CaseSummary,
    /// `false` when the reader already held this slot with no read submitted.
    pub newly_assigned: bool,
    pub slot: i64,
}

/// What submitting a read did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubmitOutcome {
    pub read: ReadRecord,
    pub state: CaseState,
    /// What the rules made of the case's reads (the submitter may see it now).
    pub outcome: Outcome,
    /// When the case already had an adjudicated final grade, which stays.
    pub note: Option<String>,
}

/// What `cases refresh` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RefreshReport {
    /// The cases created, e.g. C00017.
    pub added: Vec<String>,
    pub total: u64,
}

/// One final grade for `marrow reads export`: no MRN, no names of staff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FinalGradeRow {
    pub case: String,
    pub study_id: String,
    pub site: String,
    pub group: Group,
    pub phase: String,
    pub side: Side,
    pub kl: Option<u8>,
    pub not_assessable: Option<String>,
    pub op_stage: Option<OpImpression>,
    pub method: FinalMethod,
    pub decided_at: String,
    pub reads: u32,
}

/// The reads and final grade of a case, for the agreement statistics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaseReads {
    pub case: String,
    pub side: Side,
    /// The current read of each reader.
    pub reads: Vec<(String, ReadInput)>,
    pub final_grade: Option<(FinalMethod, FinalGrade)>,
    /// Who decided the final grade (the adjudicator; "consensus" for a consensus).
    pub final_by: Option<String>,
}

/// How an imported read names its patient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatientKey {
    Mrn(String),
    StudyId(String),
}

/// A checked row of a reads import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedRead {
    pub reader: String,
    pub patient: PatientKey,
    /// The site of an MRN (its `site` column, else the import's `--site`); without
    /// one the MRN must name one patient at one site.
    pub site: Option<String>,
    pub side: Side,
    pub read: ReadInput,
    /// YYYY-MM-DD.
    pub read_date: Option<String>,
}

/// The reference of a case id: C00017.
pub fn case_ref(id: i64) -> String {
    format!("C{id:05}")
}

/// Parses C00017, c17 or 17.
pub fn parse_case_ref(s: &str) -> Result<i64> {
    let t = s.trim();
    let digits = t.strip_prefix(['C', 'c']).unwrap_or(t);
    digits
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            DbError::Invalid(format!(
                "'{t}' is not a case (cases are written C00017; `marrow cases` lists them)"
            ))
        })
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

/// Roles that see every grade.
fn unblinded_role(role: Role) -> bool {
    matches!(role, Role::Adjudicator | Role::Pi | Role::Admin)
}

const COORDINATOR_HIDDEN: &str =
    "grades are shown to readers after their own read, and to adjudicators, PIs and admins";

/// Whether a user holds a slot of a case (`?1` case id, `?2` reader).
const ASSIGNED: &str =
    "SELECT EXISTS (SELECT 1 FROM reading_assignments WHERE case_id = ?1 AND reader = ?2)";

fn blinded_reason(case: &str) -> String {
    format!("blinded until you submit your read of {case}")
}

/// A stored case.
#[derive(Debug, Clone)]
struct CaseRow {
    id: i64,
    patient_id: i64,
    study_id: String,
    side: Side,
    state: CaseState,
    version: i64,
}

fn load_case(conn: &Connection, id: i64) -> Result<CaseRow> {
    conn.prepare_cached(
        "SELECT c.id, c.patient_id, p.study_id, c.side, c.state, c.version \
         FROM reading_cases c JOIN patients p ON p.id = c.patient_id WHERE c.id = ?1",
    )?
    .query_row([id], |r| {
        Ok(CaseRow {
            id: r.get(0)?,
            patient_id: r.get(1)?,
            study_id: r.get(2)?,
            side: r.get::<_, String>(3)?.parse().unwrap_or(Side::Patient),
            state: CaseState::parse(&r.get::<_, String>(4)?),
            version: r.get(5)?,
        })
    })
    .optional()?
    .ok_or_else(|| {
        DbError::NotFound(format!(
            "no case {}; `marrow cases` lists them",
            case_ref(id)
        ))
    })
}

const READ_COLS: &str = "id, case_id, reader, version, kl, not_assessable, jsn_medial, jsn_lateral, \
     osteophyte_medial, osteophyte_lateral, op_impression, confidence, correction_reason, source, \
     read_date, submitted_at, submitted_by";

fn read_row(r: &rusqlite::Row) -> rusqlite::Result<ReadRecord> {
    let kl: Option<i64> = r.get(4)?;
    let na: Option<String> = r.get(5)?;
    let small = |i: usize| -> rusqlite::Result<Option<u8>> {
        Ok(r.get::<_, Option<i64>>(i)?.map(|v| v as u8))
    };
    Ok(ReadRecord {
        id: r.get(0)?,
        case: case_ref(r.get(1)?),
        reader: r.get(2)?,
        version: r.get(3)?,
        read: ReadInput {
            kl: match (kl, na) {
                (Some(k), _) => Some(Grade::Value(k as u8)),
                (None, Some(reason)) => Some(Grade::NotAssessable(reason)),
                (None, None) => None,
            },
            oarsi: Oarsi {
                jsn_medial: small(6)?,
                jsn_lateral: small(7)?,
                osteophyte_medial: small(8)?,
                osteophyte_lateral: small(9)?,
            },
            op_impression: r.get::<_, Option<String>>(10)?.and_then(|s| s.parse().ok()),
            confidence: small(11)?,
        },
        correction_reason: r.get(12)?,
        source: r.get(13)?,
        read_date: r.get(14)?,
        submitted_at: r.get(15)?,
        submitted_by: r.get(16)?,
    })
}

/// Every version of every read of a case, by reader and version.
fn load_reads(conn: &Connection, case_id: i64) -> Result<Vec<ReadRecord>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {READ_COLS} FROM reads WHERE case_id = ?1 ORDER BY reader, version"
    ))?;
    let rows = st.query_map([case_id], read_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// The current (highest) version of each reader's read, in order of first submission.
fn current_reads(all: &[ReadRecord]) -> Vec<ReadRecord> {
    let mut latest: BTreeMap<&str, &ReadRecord> = BTreeMap::new();
    for r in all {
        let e = latest.entry(&r.reader).or_insert(r);
        if r.version > e.version {
            *e = r;
        }
    }
    let mut out: Vec<ReadRecord> = latest.into_values().cloned().collect();
    // Order by when each reader first read the case (version 1's id).
    let first = |reader: &str| {
        all.iter()
            .filter(|r| r.reader == reader)
            .map(|r| r.id)
            .min()
    };
    out.sort_by_key(|r| first(&r.reader));
    out
}

fn load_final(conn: &Connection, case_id: i64) -> Result<Option<FinalRecord>> {
    Ok(conn
        .prepare_cached(
            "SELECT kl, not_assessable, op_stage, method, meaning, rationale, decided_by, \
             decided_by_real, decided_at, reads FROM case_finals WHERE case_id = ?1",
        )?
        .query_row([case_id], |r| {
            let kl: Option<i64> = r.get(0)?;
            let na: Option<String> = r.get(1)?;
            Ok(FinalRecord {
                case: case_ref(case_id),
                grade: FinalGrade {
                    kl: match (kl, na) {
                        (Some(k), _) => Some(Grade::Value(k as u8)),
                        (None, Some(reason)) => Some(Grade::NotAssessable(reason)),
                        (None, None) => None,
                    },
                    op_stage: r.get::<_, Option<String>>(2)?.and_then(|s| s.parse().ok()),
                },
                method: if r.get::<_, String>(3)? == "adjudicated" {
                    FinalMethod::Adjudicated
                } else {
                    FinalMethod::Consensus
                },
                meaning: r.get(4)?,
                rationale: r.get(5)?,
                decided_by: r.get(6)?,
                decided_by_real: r.get(7)?,
                decided_at: r.get(8)?,
                reads: serde_json::from_str(&r.get::<_, String>(9)?).unwrap_or_default(),
            })
        })
        .optional()?)
}

/// A final grade in words: "KL 3, OP osteopenia".
pub fn describe_grade(g: &FinalGrade) -> String {
    let mut parts = Vec::new();
    match &g.kl {
        Some(Grade::Value(k)) => parts.push(format!("KL {k}")),
        Some(Grade::NotAssessable(r)) => parts.push(format!("not assessable ({r})")),
        None => {}
    }
    if let Some(o) = g.op_stage {
        parts.push(format!("OP {o}"));
    }
    if parts.is_empty() {
        "no grade".into()
    } else {
        parts.join(", ")
    }
}

/// The DXA reading stored on the patient row, in words.
fn dxa_stage(conn: &Connection, patient_id: i64) -> Result<Option<String>> {
    let (stage, flags): (Option<String>, String) = conn
        .prepare_cached("SELECT who_stage, flags FROM patients WHERE id = ?1")?
        .query_row([patient_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(match stage {
        Some(s) => Some(s),
        None if flags.split(',').any(|f| f == "z_score_applies") => {
            Some("Z-score applies (under 50): no WHO stage".into())
        }
        None if flags.split(',').any(|f| f == "missing_dxa") => {
            Some("no DXA within the window".into())
        }
        None => None,
    })
}

fn case_image(i: super::imaging::PatientImage) -> CaseImage {
    CaseImage {
        instance_id: i.instance_id,
        sop_uid: i.record.sop_uid,
        store_path: i.record.store_path,
        modality: i.record.modality,
        body_part: i.record.body_part,
        laterality: i.record.laterality,
        view_position: i.record.view_position,
        study_date: i.record.study_date,
    }
}

/// A patient's images that fit a case, and the others with why not.
type SplitImages = (
    Vec<super::imaging::PatientImage>,
    Vec<(super::imaging::PatientImage, reading::Misfit)>,
);

/// The images of a patient (by study ID) split by [`reading::image_fits_case`]: those
/// that can grade the case of `side`, and the others with why not.
fn split_images(conn: &Connection, study_id: &str, side: Side) -> Result<SplitImages> {
    let mut fit = Vec::new();
    let mut other = Vec::new();
    for i in super::imaging::patient_images(conn, study_id)? {
        match reading::image_fits_case(side, &i.record.facts()) {
            Ok(()) => fit.push(i),
            Err(why) => other.push((i, why)),
        }
    }
    Ok((fit, other))
}

fn case_images(
    conn: &Connection,
    study_id: &str,
    side: Side,
) -> Result<(Vec<CaseImage>, Vec<OtherImage>)> {
    let (fit, other) = split_images(conn, study_id, side)?;
    Ok((
        fit.into_iter().map(case_image).collect(),
        other
            .into_iter()
            .map(|(i, why)| OtherImage {
                image: case_image(i),
                why: why.to_string(),
                label: why.label(),
            })
            .collect(),
    ))
}

/// Creates the missing cases of eligible patients with images; returns their refs.
fn refresh_in(tx: &Transaction, audit: &mut AuditWriter, actor: &str) -> Result<Vec<String>> {
    // Lowered first: the inserts below do not raise it again.
    tx.prepare_cached(
        "INSERT OR REPLACE INTO meta (key, value) VALUES ('reading_refresh_needed', '0')",
    )?
    .execute([])?;
    // By study ID, not row id: new patients' rows are inserted in keyed-hash order, which
    // differs between studies, while study IDs follow the export's order; so the same
    // export gives the same case IDs in every study (the demo's among them).
    let mut by_patient: BTreeMap<String, (i64, Group, Vec<ImageFacts>)> = BTreeMap::new();
    {
        let mut st = tx.prepare_cached(
            "SELECT p.id, p.study_id, p.grp, se.body_part, i.laterality \
             FROM patients p JOIN image_instances i ON i.patient_id = p.id \
             JOIN image_series se ON se.id = i.series WHERE p.decision = 'eligible'",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, Option<String>>(4)?,
            ))
        })?;
        for row in rows {
            let (id, sid, grp, body_part, laterality) = row?;
            let e = by_patient
                .entry(sid)
                .or_insert_with(|| (id, grp.parse().unwrap_or(Group::Control), Vec::new()));
            e.2.push(ImageFacts {
                body_part,
                laterality,
                ..ImageFacts::default()
            });
        }
    }
    let existing: HashSet<(i64, String)> = {
        let mut st = tx.prepare_cached("SELECT patient_id, side FROM reading_cases")?;
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?
    };
    let now = now_utc();
    let mut added = Vec::new();
    for (sid, (pid, group, images)) in by_patient {
        for side in reading::case_sides(group, &images) {
            if existing.contains(&(pid, side.code().to_string())) {
                continue;
            }
            tx.prepare_cached(
                "INSERT INTO reading_cases (patient_id, side, created_at, created_by) \
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![pid, side.code(), now, actor])?;
            let r = case_ref(tx.last_insert_rowid());
            audit.append(
                tx,
                &Change {
                    action: "case.add",
                    entity: "case",
                    entity_id: &r,
                    patient: Some(&sid),
                    before: None,
                    after: Some(json(&serde_json::json!({ "side": side }))),
                    reason: Some("cases refresh: eligible patient with images"),
                },
            )?;
            added.push(r);
        }
    }
    Ok(added)
}

/// Applies the disagreement rules to a case's current reads and stores the outcome:
/// the state, and a consensus final (or its withdrawal when a correction broke it).
/// An adjudicated final is never touched.
fn apply_rules(
    tx: &Transaction,
    audit: &mut AuditWriter,
    rules: &ReadingRules,
    case: &CaseRow,
    actor: &super::audit::Actor,
) -> Result<(CaseState, Outcome, Option<String>)> {
    let all = load_reads(tx, case.id)?;
    let current = current_reads(&all);
    let inputs: Vec<ReadInput> = current.iter().map(|r| r.read.clone()).collect();
    let outcome = reading::evaluate(rules, case.side, &inputs);
    let existing = load_final(tx, case.id)?;
    let r = case_ref(case.id);
    if let Some(f) = &existing
        && f.method == FinalMethod::Adjudicated
    {
        let note = format!(
            "{r} was adjudicated by {} at {} ({}); that final grade stands",
            f.decided_by,
            f.decided_at,
            describe_grade(&f.grade)
        );
        tx.execute(
            "UPDATE reading_cases SET version = version + 1 WHERE id = ?1",
            [case.id],
        )?;
        return Ok((CaseState::Final, outcome, Some(note)));
    }
    let (state, new_final) = match &outcome {
        Outcome::Incomplete { .. } => (CaseState::Open, None),
        Outcome::Adjudicate { .. } => (CaseState::Adjudication, None),
        Outcome::Consensus { grade } => (CaseState::Final, Some(grade.clone())),
    };
    let keep = matches!((&existing, &new_final), (Some(f), Some(g)) if &f.grade == g);
    if let Some(f) = existing.as_ref().filter(|_| !keep) {
        tx.execute("DELETE FROM case_finals WHERE case_id = ?1", [case.id])?;
        audit.append(
            tx,
            &Change {
                action: "final.withdraw",
                entity: "case_final",
                entity_id: &r,
                patient: Some(&case.study_id),
                before: Some(json(f)),
                after: None,
                reason: Some("a corrected read changed what the reads agree on"),
            },
        )?;
    }
    if let Some(g) = new_final.filter(|_| !keep) {
        let ids: Vec<i64> = current.iter().map(|r| r.id).collect();
        let now = now_utc();
        insert_final(
            tx,
            case.id,
            &g,
            FinalMethod::Consensus,
            None,
            ("consensus", &actor.real),
            &now,
            &ids,
        )?;
        let rec = load_final(tx, case.id)?;
        audit.append(
            tx,
            &Change {
                action: "final.consensus",
                entity: "case_final",
                entity_id: &r,
                patient: Some(&case.study_id),
                before: None,
                after: rec.as_ref().map(json),
                reason: Some("the reads agree under the protocol's rules"),
            },
        )?;
    }
    if state != case.state {
        audit.append(
            tx,
            &Change {
                action: "case.state",
                entity: "case",
                entity_id: &r,
                patient: Some(&case.study_id),
                before: Some(json(&serde_json::json!({ "state": case.state }))),
                after: Some(json(
                    &serde_json::json!({ "state": state, "outcome": outcome }),
                )),
                reason: None,
            },
        )?;
    }
    tx.execute(
        "UPDATE reading_cases SET state = ?2, version = version + 1 WHERE id = ?1",
        params![case.id, state.code()],
    )?;
    Ok((state, outcome, None))
}

#[allow(clippy::too_many_arguments)]
fn insert_final(
    tx: &Transaction,
    case_id: i64,
    g: &FinalGrade,
    method: FinalMethod,
    rationale: Option<&str>,
    (by, by_real): (&str, &str),
    at: &str,
    reads: &[i64],
) -> Result<()> {
    let (kl, na) = match &g.kl {
        Some(Grade::Value(k)) => (Some(*k as i64), None),
        Some(Grade::NotAssessable(r)) => (None, Some(r.clone())),
        None => (None, None),
    };
    tx.prepare_cached(
        "INSERT INTO case_finals (case_id, kl, not_assessable, op_stage, method, meaning, rationale, \
         decided_by, decided_by_real, decided_at, reads) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)",
    )?
    .execute(params![
        case_id,
        kl,
        na,
        g.op_stage.map(|o| o.code()),
        method.code(),
        method.code(),
        rationale,
        by,
        by_real,
        at,
        json(&reads),
    ])?;
    Ok(())
}

/// Inserts one version of a read.
#[allow(clippy::too_many_arguments)]
fn insert_read(
    tx: &Transaction,
    case_id: i64,
    reader: &str,
    version: i64,
    read: &ReadInput,
    correction: Option<&str>,
    (source, read_date): (&str, Option<&str>),
    submitted_by: &str,
) -> Result<ReadRecord> {
    let (kl, na) = match &read.kl {
        Some(Grade::Value(k)) => (Some(*k as i64), None),
        Some(Grade::NotAssessable(r)) => (None, Some(r.trim().to_string())),
        None => (None, None),
    };
    let o = &read.oarsi;
    tx.prepare_cached(
        "INSERT INTO reads (case_id, reader, version, kl, not_assessable, jsn_medial, jsn_lateral, \
         osteophyte_medial, osteophyte_lateral, op_impression, confidence, correction_reason, source, \
         read_date, submitted_at, submitted_by) \
         VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16)",
    )?
    .execute(params![
        case_id,
        reader,
        version,
        kl,
        na,
        o.jsn_medial,
        o.jsn_lateral,
        o.osteophyte_medial,
        o.osteophyte_lateral,
        read.op_impression.map(|x| x.code()),
        read.confidence,
        correction,
        source,
        read_date,
        now_utc(),
        submitted_by,
    ])?;
    let id = tx.last_insert_rowid();
    Ok(tx
        .prepare_cached(&format!("SELECT {READ_COLS} FROM reads WHERE id = ?1"))?
        .query_row([id], read_row)?)
}

/// Gives `reader` the lowest free slot of a case, if one is free.
fn take_slot(
    tx: &Transaction,
    audit: &mut AuditWriter,
    case: &CaseRow,
    reader: &str,
    slots: u8,
) -> Result<Option<i64>> {
    let taken: HashSet<i64> = tx
        .prepare_cached("SELECT slot FROM reading_assignments WHERE case_id = ?1")?
        .query_map([case.id], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let Some(slot) = (1..=slots as i64).find(|s| !taken.contains(s)) else {
        return Ok(None);
    };
    tx.prepare_cached(
        "INSERT INTO reading_assignments (case_id, slot, reader, assigned_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![case.id, slot, reader, now_utc()])?;
    let r = case_ref(case.id);
    audit.append(
        tx,
        &Change {
            action: "case.assign",
            entity: "case_slot",
            entity_id: &format!("{r}/{slot}"),
            patient: Some(&case.study_id),
            before: None,
            after: Some(json(&serde_json::json!({ "reader": reader, "slot": slot }))),
            reason: None,
        },
    )?;
    Ok(Some(slot))
}

/// Counts for `marrow status`: reads still to be submitted on open cases, cases
/// waiting for adjudication, cases with a final grade.
pub fn reading_counts(conn: &Connection, reads_per_case: u8) -> Result<(u64, u64, u64)> {
    Ok(conn.query_row(
        "SELECT \
           coalesce((SELECT sum(max(?1 - (SELECT count(DISTINCT reader) FROM reads r WHERE r.case_id = c.id), 0)) \
                     FROM reading_cases c WHERE c.state = 'open'), 0), \
           (SELECT count(*) FROM reading_cases WHERE state = 'adjudication'), \
           (SELECT count(*) FROM reading_cases WHERE state = 'final')",
        [reads_per_case as i64],
        |r| {
            Ok((
                r.get::<_, i64>(0)? as u64,
                r.get::<_, i64>(1)? as u64,
                r.get::<_, i64>(2)? as u64,
            ))
        },
    )?)
}

impl Study {
    fn reads_per_case(&self) -> u8 {
        self.protocol().reading.reads_per_case.max(1)
    }

    /// Refuses users who only look (PIs) from writing reading data.
    fn require_unblinded(&self, what: &str) -> Result<()> {
        if unblinded_role(self.role()) {
            Ok(())
        } else {
            Err(DbError::NotAllowed {
                user: self.actor().name.clone(),
                role: self.role().to_string(),
                what: format!("{what} (adjudicators, PIs and admins only: it shows grades)"),
            })
        }
    }

    /// Creates the cases of eligible patients with images that have none yet
    /// (idempotent; audited). Readers' `take_next_case` does it too.
    pub fn refresh_cases(&mut self) -> Result<RefreshReport> {
        let role = self.role();
        if !(role.allows(Permission::Import)
            || role.allows(Permission::Read)
            || role.allows(Permission::Adjudicate))
        {
            return Err(DbError::NotAllowed {
                user: self.actor().name.clone(),
                role: role.to_string(),
                what: if role == Role::Pi {
                    "create reading cases (PIs have read-only access)".into()
                } else {
                    "create reading cases".into()
                },
            });
        }
        let actor = self.actor().clone();
        let tx = self
            .conn_mut()
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut audit = AuditWriter::begin(&tx, &actor)?;
        let added = refresh_in(&tx, &mut audit, &actor.name)?;
        let total: i64 = tx.query_row("SELECT count(*) FROM reading_cases", [], |r| r.get(0))?;
        audit.finish(&tx)?;
        tx.commit()?;
        Ok(RefreshReport {
            added,
            total: total as u64,
        })
    }

    fn summaries(
        &self,
        sql_filter: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<CaseSummary>> {
        let me = self.actor().name.clone();
        let reader_view = self.role() == Role::Reader;
        let need = self.reads_per_case() as u32;
        let sql = format!(
            "SELECT c.id, c.side, c.state, c.version, p.study_id, \
             (SELECT count(DISTINCT reader) FROM reads r WHERE r.case_id = c.id), \
             EXISTS (SELECT 1 FROM reading_assignments a WHERE a.case_id = c.id AND a.reader = ?1), \
             (SELECT max(version) FROM reads r WHERE r.case_id = c.id AND r.reader = ?1) \
             FROM reading_cases c JOIN patients p ON p.id = c.patient_id WHERE {sql_filter} ORDER BY c.id"
        );
        let mut all_args: Vec<&dyn rusqlite::ToSql> = vec![&me];
        all_args.extend_from_slice(args);
        // A handful of filters, so each stays prepared in the connection's cache.
        let mut st = self.conn().prepare_cached(&sql)?;
        let rows = st.query_map(all_args.as_slice(), |r| {
            let yours: Option<i64> = r.get(7)?;
            let visible = !reader_view || yours.is_some();
            Ok(CaseSummary {
                case: case_ref(r.get(0)?),
                side: r.get::<_, String>(1)?.parse().unwrap_or(Side::Patient),
                state: visible
                    .then(|| CaseState::parse(&r.get::<_, String>(2).unwrap_or_default())),
                version: r.get(3)?,
                study_id: if reader_view { None } else { Some(r.get(4)?) },
                reads_submitted: r.get::<_, i64>(5)? as u32,
                reads_needed: need,
                assigned_to_you: r.get::<_, i64>(6)? != 0,
                your_read_version: yours,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// The cases: a reader gets the cases assigned to them (their worklist); everyone
    /// else every case. No grades.
    pub fn cases(&self) -> Result<Vec<CaseSummary>> {
        if self.role() == Role::Reader {
            return self.reader_worklist();
        }
        self.summaries("1=1", &[])
    }

    /// The acting reader's cases: those waiting for their read first, then those read.
    pub fn reader_worklist(&self) -> Result<Vec<CaseSummary>> {
        self.require(Permission::Read)?;
        let mut rows = self.summaries(
            "EXISTS (SELECT 1 FROM reading_assignments a WHERE a.case_id = c.id AND a.reader = ?1)",
            &[],
        )?;
        rows.sort_by_key(|r| r.your_read_version.is_some());
        Ok(rows)
    }

    /// Frees the slot `reader` holds on `case` without having submitted a read (a
    /// reader who left the study, or is away), so another reader can take the
    /// case. Adjudicators and admins only; the reason is in the audit trail. A
    /// submitted read is never released: it stays, and a correction is the way
    /// to change it.
    pub fn release_slot(&mut self, case: &str, reader: &str, reason: &str) -> Result<()> {
        self.require(Permission::Adjudicate)?;
        if reason.trim().is_empty() {
            return Err(DbError::Invalid(
                "releasing a reader's slot needs a reason (--reason)".into(),
            ));
        }
        let id = parse_case_ref(case)?;
        let actor = self.actor().clone();
        let tx = self
            .conn_mut()
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let c = load_case(&tx, id)?;
        let r = case_ref(id);
        let slot: Option<i64> = tx
            .query_row(
                "SELECT slot FROM reading_assignments WHERE case_id = ?1 AND reader = ?2",
                params![id, reader],
                |row| row.get(0),
            )
            .optional()?;
        let Some(slot) = slot else {
            return Err(DbError::Invalid(format!(
                "{reader} holds no slot of {r}; `marrow cases --json` shows who holds which"
            )));
        };
        let read: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM reads WHERE case_id = ?1 AND reader = ?2)",
            params![id, reader],
            |row| row.get(0),
        )?;
        if read {
            return Err(DbError::Invalid(format!(
                "{reader} has submitted a read of {r}: a submitted read stays (a correction is the way to change it), so the slot is not released"
            )));
        }
        let mut audit = AuditWriter::begin(&tx, &actor)?;
        tx.execute(
            "DELETE FROM reading_assignments WHERE case_id = ?1 AND reader = ?2",
            params![id, reader],
        )?;
        tx.execute(
            "UPDATE reading_cases SET version = version + 1 WHERE id = ?1",
            [id],
        )?;
        audit.append(
            &tx,
            &Change {
                action: "case.release",
                entity: "case_slot",
                entity_id: &format!("{r}/{slot}"),
                patient: Some(&c.study_id),
                before: Some(json(&serde_json::json!({ "reader": reader, "slot": slot }))),
                after: None,
                reason: Some(reason),
            },
        )?;
        audit.finish(&tx)?;
        tx.commit()?;
        Ok(())
    }

    /// Hands the acting reader a case slot: the slot they hold without a read, else a
    /// free slot of an open case they have not read (cases with slots already taken
    /// first), in one IMMEDIATE transaction. Creates missing cases first. `None`
    /// when there is no work for them.
    pub fn take_next_case(&mut self) -> Result<Option<TakenCase>> {
        self.require(Permission::Read)?;
        let actor = self.actor().clone();
        let slots = self.reads_per_case();
        let tx = self
            .conn_mut()
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut audit = AuditWriter::begin(&tx, &actor)?;
        // Only when a patient's decision or group, or an image, changed since the
        // last refresh (migration 0004's triggers raise the flag).
        let refresh_needed: bool = tx
            .prepare_cached("SELECT value = '1' FROM meta WHERE key = 'reading_refresh_needed'")?
            .query_row([], |r| r.get(0))
            .optional()?
            .unwrap_or(true);
        if refresh_needed {
            refresh_in(&tx, &mut audit, &actor.name)?;
        }
        let held: Option<(i64, i64)> = tx
            .prepare_cached(
                "SELECT a.case_id, a.slot FROM reading_assignments a WHERE a.reader = ?1 \
                 AND NOT EXISTS (SELECT 1 FROM reads r WHERE r.case_id = a.case_id AND r.reader = a.reader) \
                 ORDER BY a.assigned_at, a.case_id LIMIT 1",
            )?
            .query_row([&actor.name], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let taken = match held {
            Some((case_id, slot)) => Some((case_id, slot, false)),
            None => {
                let candidates: Vec<i64> = tx
                    .prepare_cached(
                        "SELECT c.id FROM reading_cases c JOIN patients p ON p.id = c.patient_id \
                         WHERE c.state = 'open' AND c.slots_taken < ?2 AND p.decision = 'eligible' \
                         AND NOT EXISTS (SELECT 1 FROM reading_assignments a WHERE a.case_id = c.id AND a.reader = ?1) \
                         ORDER BY c.slots_taken DESC, c.id \
                         LIMIT 1",
                    )?
                    .query_map(params![actor.name, slots as i64], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                match candidates.first() {
                    Some(&id) => {
                        let case = load_case(&tx, id)?;
                        take_slot(&tx, &mut audit, &case, &actor.name, slots)?
                            .map(|slot| (id, slot, true))
                    }
                    None => None,
                }
            }
        };
        audit.finish(&tx)?;
        tx.commit()?;
        let Some((case_id, slot, newly_assigned)) = taken else {
            return Ok(None);
        };
        let summary = self
            .summaries("c.id = ?2", &[&case_id])?
            .pop()
            .ok_or_else(|| DbError::NotFound(case_ref(case_id)))?;
        Ok(Some(TakenCase {
            summary,
            newly_assigned,
            slot,
        }))
    }

    /// The images that can grade a case, in full, for a viewer (the TUI's read and
    /// adjudication screens), by case: a reader never learns the study ID, which
    /// names the cohort. Only radiographs of the case's knee (or the patient's hip
    /// and spine, `domain::reading::image_fits_case`): the patient's other images are
    /// [`CaseView::other_images`], never shown as the case. The same access as
    /// [`Study::case_view`]: a reader only for a case they hold a slot of. Images
    /// carry no grade, so nothing here is blinded.
    pub fn case_images(&self, case: &str) -> Result<Vec<super::imaging::PatientImage>> {
        let id = parse_case_ref(case)?;
        let conn = self.conn();
        let c = load_case(conn, id)?;
        if self.role() == Role::Reader {
            let me = &self.actor().name;
            let assigned: bool = conn
                .prepare_cached(ASSIGNED)?
                .query_row(params![id, me], |row| row.get::<_, i64>(0))?
                != 0;
            if !assigned {
                return Err(DbError::NotAllowed {
                    user: me.clone(),
                    role: Role::Reader.to_string(),
                    what: format!(
                        "see the images of {}: it is not assigned to you (`marrow read next` hands out work)",
                        case_ref(id)
                    ),
                });
            }
        }
        Ok(split_images(conn, &c.study_id, c.side)?.0)
    }

    /// One case as the acting user may see it (see the module's note on blinding).
    pub fn case_view(&self, case: &str) -> Result<CaseView> {
        let id = parse_case_ref(case)?;
        let conn = self.conn();
        let c = load_case(conn, id)?;
        let r = case_ref(id);
        let me = &self.actor().name;
        let role = self.role();
        let all = load_reads(conn, id)?;
        let mine: Vec<ReadRecord> = all.iter().filter(|x| &x.reader == me).cloned().collect();
        let assigned: bool = conn
            .prepare_cached(ASSIGNED)?
            .query_row(params![id, me], |row| row.get::<_, i64>(0))?
            != 0;
        let hidden: Option<String> = match role {
            Role::Reader if !assigned => {
                return Err(DbError::NotAllowed {
                    user: me.clone(),
                    role: role.to_string(),
                    what: format!(
                        "open {r}: it is not assigned to you (`marrow read next` hands out work)"
                    ),
                });
            }
            Role::Reader if mine.is_empty() => Some(blinded_reason(&r)),
            Role::Reader => None,
            _ if unblinded_role(role) => None,
            _ => Some(COORDINATOR_HIDDEN.to_string()),
        };
        let reads_submitted = all
            .iter()
            .map(|x| x.reader.as_str())
            .collect::<HashSet<_>>()
            .len() as u32;
        let (images, other_images) = case_images(conn, &c.study_id, c.side)?;
        let base =
            |state, study_id, (other_reads, superseded_reads), dxa, model, dis, fin| CaseView {
                case: r.clone(),
                side: c.side,
                state,
                version: c.version,
                study_id,
                images: images.clone(),
                other_images: other_images.clone(),
                reads_needed: self.reads_per_case() as u32,
                reads_submitted,
                your_reads: mine.clone(),
                other_reads,
                superseded_reads,
                dxa_stage: dxa,
                model_prediction: model,
                disagreements: dis,
                final_grade: fin,
            };
        if let Some(why) = hidden {
            // Nothing blinded is loaded for this user.
            let h = || why.clone();
            return Ok(base(
                Blinded::Hidden(h()),
                if role == Role::Reader {
                    Blinded::Hidden(h())
                } else {
                    Blinded::Shown(c.study_id.clone())
                },
                (Blinded::Hidden(h()), Blinded::Hidden(h())),
                Blinded::Hidden(h()),
                Blinded::Hidden(h()),
                Blinded::Hidden(h()),
                Blinded::Hidden(h()),
            ));
        }
        let current = current_reads(&all);
        let current_ids: HashSet<i64> = current.iter().map(|x| x.id).collect();
        let others: Vec<ReadRecord> = current
            .iter()
            .filter(|x| &x.reader != me)
            .cloned()
            .collect();
        let superseded: Vec<ReadRecord> = all
            .iter()
            .filter(|x| &x.reader != me && !current_ids.contains(&x.id))
            .cloned()
            .collect();
        let inputs: Vec<ReadInput> = current.into_iter().map(|x| x.read).collect();
        let disagreements = match reading::evaluate(&self.protocol().reading, c.side, &inputs) {
            Outcome::Adjudicate { reasons } => reasons,
            _ => Vec::new(),
        };
        Ok(base(
            Blinded::Shown(c.state),
            Blinded::Shown(c.study_id.clone()),
            (Blinded::Shown(others), Blinded::Shown(superseded)),
            Blinded::Shown(dxa_stage(conn, c.patient_id)?),
            Blinded::Shown(super::inference::case_model_prediction(
                conn,
                c.patient_id,
                c.side.code(),
            )?),
            Blinded::Shown(disagreements),
            Blinded::Shown(load_final(conn, id)?),
        ))
    }

    /// Submits the acting reader's read of a case they hold a slot of. A submitted
    /// read is locked: `correction` (the reason) makes a new version instead; both
    /// stay. The rules then decide the case: still open, adjudication, or a
    /// consensus final.
    pub fn submit_read(
        &mut self,
        case: &str,
        read: &ReadInput,
        correction: Option<&str>,
    ) -> Result<SubmitOutcome> {
        self.require(Permission::Read)?;
        let id = parse_case_ref(case)?;
        let r = case_ref(id);
        let actor = self.actor().clone();
        let rules = self.protocol().reading.clone();
        let correction = match correction.map(str::trim) {
            Some("") => {
                return Err(DbError::Invalid(
                    "a correction needs a reason (it goes into the audit trail)".into(),
                ));
            }
            other => other,
        };
        let tx = self
            .conn_mut()
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let c = load_case(&tx, id)?;
        let assigned: bool = tx
            .prepare_cached(ASSIGNED)?
            .query_row(params![id, actor.name], |row| row.get::<_, i64>(0))?
            != 0;
        if !assigned {
            return Err(DbError::NotAllowed {
                user: actor.name.clone(),
                role: Role::Reader.to_string(),
                what: format!(
                    "read {r}: it is not assigned to you (`marrow read next` hands out work)"
                ),
            });
        }
        read.validate(c.side, false)
            .map_err(|e| DbError::Invalid(format!("{r} ({} case): {e}", c.side)))?;
        let previous: Option<ReadRecord> = load_reads(&tx, id)?
            .into_iter()
            .filter(|x| x.reader == actor.name)
            .max_by_key(|x| x.version);
        let version = match (&previous, correction) {
            (None, None) => 1,
            (Some(p), None) => {
                return Err(DbError::Conflict(format!(
                    "you submitted your read of {r} at {} (version {}); it is locked: \
                     a correction is a new version with a reason (--correct --reason TEXT)",
                    p.submitted_at, p.version
                )));
            }
            (None, Some(_)) => {
                return Err(DbError::Invalid(format!(
                    "you have no read of {r} to correct; submit it without --correct"
                )));
            }
            (Some(p), Some(_)) => p.version + 1,
        };
        let mut audit = AuditWriter::begin(&tx, &actor)?;
        let rec = insert_read(
            &tx,
            id,
            &actor.name,
            version,
            read,
            correction,
            ("marrow", None),
            &actor.real,
        )?;
        audit.append(
            &tx,
            &Change {
                action: if version == 1 {
                    "read.submit"
                } else {
                    "read.correct"
                },
                entity: "read",
                entity_id: &format!("{r}/{}/v{version}", actor.name),
                patient: Some(&c.study_id),
                before: previous.as_ref().map(|p| json(&p.read)),
                after: Some(json(&rec.read)),
                reason: correction,
            },
        )?;
        let (state, outcome, note) = apply_rules(&tx, &mut audit, &rules, &c, &actor)?;
        audit.finish(&tx)?;
        tx.commit()?;
        Ok(SubmitOutcome {
            read: rec,
            state,
            outcome,
            note,
        })
    }

    /// The cases waiting for adjudication, with why (adjudicators, PIs, admins).
    /// A case's reader is never offered it: a reader cannot adjudicate their own
    /// case (see [`Study::adjudicate`]).
    pub fn adjudication_queue(&self) -> Result<Vec<QueueItem>> {
        self.require_unblinded("see the adjudication queue")?;
        let rows = if self.role().allows(Permission::Adjudicate) {
            self.summaries(
                "c.state = 'adjudication' \
                 AND NOT EXISTS (SELECT 1 FROM reads r WHERE r.case_id = c.id AND r.reader = ?1)",
                &[],
            )?
        } else {
            self.summaries("c.state = 'adjudication'", &[])?
        };
        let mut out = Vec::with_capacity(rows.len());
        for s in rows {
            let id = parse_case_ref(&s.case)?;
            let inputs: Vec<ReadInput> = current_reads(&load_reads(self.conn(), id)?)
                .into_iter()
                .map(|x| x.read)
                .collect();
            let reasons = match reading::evaluate(&self.protocol().reading, s.side, &inputs) {
                Outcome::Adjudicate { reasons } => reasons,
                _ => Vec::new(),
            };
            out.push(QueueItem {
                summary: s,
                reasons,
            });
        }
        Ok(out)
    }

    /// Records the adjudicated final grade of a case waiting for adjudication, with a
    /// rationale, the adjudicator's name, the UTC time and the meaning "adjudicated".
    /// Refused, naming who decided what and when, when the case already has a final
    /// grade; with `expected_version` (the [`CaseView::version`] the screen showed),
    /// refused when the case changed since.
    pub fn adjudicate(
        &mut self,
        case: &str,
        grade: &FinalGrade,
        rationale: &str,
        expected_version: Option<i64>,
    ) -> Result<FinalRecord> {
        self.require(Permission::Adjudicate)?;
        let id = parse_case_ref(case)?;
        let r = case_ref(id);
        let rationale = rationale.trim();
        if rationale.is_empty() {
            return Err(DbError::Invalid(
                "an adjudication needs a rationale (it is part of the signed record)".into(),
            ));
        }
        let actor = self.actor().clone();
        let role = self.role();
        let tx = self
            .conn_mut()
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let c = load_case(&tx, id)?;
        if let Some(f) = load_final(&tx, id)? {
            return Err(DbError::Conflict(format!(
                "{r} was already decided: {} by {} at {} ({}); nothing was saved",
                describe_grade(&f.grade),
                f.decided_by,
                f.decided_at,
                f.method.code()
            )));
        }
        reading::validate_final(c.side, grade)
            .map_err(|e| DbError::Invalid(format!("{r} ({} case): {e}", c.side)))?;
        if c.state != CaseState::Adjudication {
            return Err(DbError::Invalid(format!(
                "{r} is not waiting for adjudication (its reads are not all in); \
                 `marrow adjudicate list` shows the queue"
            )));
        }
        if let Some(v) = expected_version.filter(|v| *v != c.version) {
            return Err(DbError::Conflict(format!(
                "{r} changed after you opened it (version {v}, now {}): a read was corrected; \
                 nothing was saved: reload it and decide again",
                c.version
            )));
        }
        let reads = current_reads(&load_reads(&tx, id)?);
        if let Some(n) = reads.iter().position(|x| x.reader == actor.name) {
            return Err(DbError::NotAllowed {
                user: actor.name.clone(),
                role: role.to_string(),
                what: format!(
                    "adjudicate {r}: you read {r} (as reader {}): a case's reader cannot \
                     adjudicate it; another adjudicator must (nothing was saved)",
                    n + 1
                ),
            });
        }
        let current: Vec<i64> = reads.iter().map(|x| x.id).collect();
        let now = now_utc();
        insert_final(
            &tx,
            id,
            grade,
            FinalMethod::Adjudicated,
            Some(rationale),
            (&actor.name, &actor.real),
            &now,
            &current,
        )?;
        tx.execute(
            "UPDATE reading_cases SET state = 'final', version = version + 1 WHERE id = ?1",
            [id],
        )?;
        let rec = load_final(&tx, id)?
            .ok_or_else(|| DbError::Invalid(format!("{r}: the final grade was not stored")))?;
        let mut audit = AuditWriter::begin(&tx, &actor)?;
        audit.append(
            &tx,
            &Change {
                action: "case.adjudicate",
                entity: "case_final",
                entity_id: &r,
                patient: Some(&c.study_id),
                before: None,
                after: Some(json(&rec)),
                reason: Some(rationale),
            },
        )?;
        audit.finish(&tx)?;
        tx.commit()?;
        Ok(rec)
    }

    /// The final grades, for `marrow reads export` (adjudicators, PIs, admins).
    pub fn final_grades(&self) -> Result<Vec<FinalGradeRow>> {
        self.require_unblinded("export final grades")?;
        let mut st = self.conn().prepare(
            "SELECT c.id, p.study_id, p.site, p.grp, p.phase, c.side, f.kl, f.not_assessable, \
             f.op_stage, f.method, f.decided_at, \
             (SELECT count(DISTINCT reader) FROM reads r WHERE r.case_id = c.id) \
             FROM case_finals f JOIN reading_cases c ON c.id = f.case_id \
             JOIN patients p ON p.id = c.patient_id ORDER BY c.id",
        )?;
        let rows = st.query_map([], |r| {
            Ok(FinalGradeRow {
                case: case_ref(r.get(0)?),
                study_id: r.get(1)?,
                site: r.get(2)?,
                group: r.get::<_, String>(3)?.parse().unwrap_or(Group::Control),
                phase: r.get(4)?,
                side: r.get::<_, String>(5)?.parse().unwrap_or(Side::Patient),
                kl: r.get::<_, Option<i64>>(6)?.map(|k| k as u8),
                not_assessable: r.get(7)?,
                op_stage: r.get::<_, Option<String>>(8)?.and_then(|s| s.parse().ok()),
                method: if r.get::<_, String>(9)? == "adjudicated" {
                    FinalMethod::Adjudicated
                } else {
                    FinalMethod::Consensus
                },
                decided_at: r.get(10)?,
                reads: r.get::<_, i64>(11)? as u32,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Every case's current reads and final grade, for the agreement statistics
    /// (adjudicators, PIs, admins).
    pub fn case_reads(&self) -> Result<Vec<CaseReads>> {
        self.require_unblinded("see the reads of every case")?;
        let ids: Vec<(i64, String)> = self
            .conn()
            .prepare("SELECT id, side FROM reading_cases ORDER BY id")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let mut out = Vec::with_capacity(ids.len());
        for (id, side) in ids {
            let reads = current_reads(&load_reads(self.conn(), id)?)
                .into_iter()
                .map(|x| (x.reader, x.read))
                .collect();
            let fin = load_final(self.conn(), id)?;
            out.push(CaseReads {
                case: case_ref(id),
                side: side.parse().unwrap_or(Side::Patient),
                reads,
                final_by: fin.as_ref().map(|f| f.decided_by.clone()),
                final_grade: fin.map(|f| (f.method, f.grade)),
            });
        }
        Ok(out)
    }

    /// Stores reads made before the study used marrow, in one transaction. Each
    /// row is stored whole or refused with a reason (returned in row order): a
    /// reader who is not a registered reader, an unknown patient, no case for the
    /// patient and side, a read that does not check, a reader who already has
    /// another read of the case, a case whose slots are all taken. Re-importing the
    /// same rows changes nothing.
    pub fn import_reads(
        &mut self,
        rows: &[ImportedRead],
    ) -> Result<Vec<std::result::Result<Upsert, String>>> {
        self.require(Permission::Import)?;
        let actor = self.actor().clone();
        let rules = self.protocol().reading.clone();
        let slots = self.reads_per_case();
        let hashes: Vec<Option<String>> = rows
            .iter()
            .map(|r| match &r.patient {
                PatientKey::Mrn(m) => Some(self.identifier_hash(m)),
                PatientKey::StudyId(_) => None,
            })
            .collect();
        let tx = self
            .conn_mut()
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut audit = AuditWriter::begin(&tx, &actor)?;
        refresh_in(&tx, &mut audit, &actor.name)?;
        let mut out = Vec::with_capacity(rows.len());
        let mut touched: Vec<i64> = Vec::new();
        for (row, hash) in rows.iter().zip(hashes) {
            let result = import_one(&tx, &mut audit, row, hash.as_deref(), slots, &actor.real)?;
            if let Ok((case_id, Upsert::Inserted(_))) = &result {
                touched.push(*case_id);
            }
            out.push(result.map(|(_, u)| u));
        }
        touched.sort_unstable();
        touched.dedup();
        for id in touched {
            let c = load_case(&tx, id)?;
            apply_rules(&tx, &mut audit, &rules, &c, &actor)?;
        }
        audit.finish(&tx)?;
        tx.commit()?;
        Ok(out)
    }
}

/// One row of a reads import: Ok((case id, what happened)) or the reason it is refused.
fn import_one(
    tx: &Transaction,
    audit: &mut AuditWriter,
    row: &ImportedRead,
    mrn_hash: Option<&str>,
    slots: u8,
    submitted_by: &str,
) -> Result<std::result::Result<(i64, Upsert), String>> {
    let reader = row.reader.trim();
    let role: Option<String> = tx
        .query_row("SELECT role FROM users WHERE name = ?1", [reader], |r| {
            r.get(0)
        })
        .optional()?;
    match role.as_deref() {
        Some("reader") => {}
        Some(other) => {
            return Ok(Err(format!(
                "reader '{reader}' has the role {other}, not reader"
            )));
        }
        None => {
            return Ok(Err(format!(
                "reader '{reader}' is not a registered user (`marrow users add {reader} --role reader`)"
            )));
        }
    }
    let patient: Option<(i64, String)> = match (&row.patient, mrn_hash) {
        (_, Some(h)) => {
            let found = super::study::find_by_hash(tx, h, row.site.as_deref())?;
            if let Some(reason) = found.refusal("mrn", row.site.as_deref()) {
                return Ok(Err(reason));
            }
            found.one()
        }
        (PatientKey::StudyId(s), None) => tx
            .prepare_cached("SELECT id, study_id FROM patients WHERE study_id = ?1")?
            .query_row([s.trim().to_ascii_uppercase()], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?,
        (PatientKey::Mrn(_), None) => None,
    };
    let Some((pid, sid)) = patient else {
        return Ok(Err(match &row.patient {
            PatientKey::Mrn(_) => "mrn is not a known patient (import patients.csv first)".into(),
            PatientKey::StudyId(s) => format!("study_id {} is not a known patient", s.trim()),
        }));
    };
    let case_id: Option<i64> = tx
        .prepare_cached("SELECT id FROM reading_cases WHERE patient_id = ?1 AND side = ?2")?
        .query_row(params![pid, row.side.code()], |r| r.get(0))
        .optional()?;
    let Some(case_id) = case_id else {
        return Ok(Err(format!(
            "{sid} has no {} case (cases are made for eligible patients with images: OA knees, OP patients)",
            row.side
        )));
    };
    let c = load_case(tx, case_id)?;
    if let Err(e) = row.read.validate(c.side, true) {
        return Ok(Err(e));
    }
    let r = case_ref(case_id);
    let existing: Vec<ReadRecord> = load_reads(tx, case_id)?
        .into_iter()
        .filter(|x| x.reader == reader)
        .collect();
    if let Some(last) = existing.iter().max_by_key(|x| x.version) {
        if last.read == row.read && last.read_date == row.read_date {
            return Ok(Ok((case_id, Upsert::Unchanged(r))));
        }
        return Ok(Err(format!(
            "{reader} already has a read of {r} ({sid} {}) from {} with other values; \
             a correction is made in marrow (`marrow read submit --correct`)",
            row.side, last.submitted_at
        )));
    }
    let holds: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM reading_assignments WHERE case_id = ?1 AND reader = ?2)",
        params![case_id, reader],
        |x| x.get::<_, i64>(0),
    )? != 0;
    if !holds && take_slot(tx, audit, &c, reader, slots)?.is_none() {
        return Ok(Err(format!(
            "{r} ({sid} {}) already has its {slots} readers",
            row.side
        )));
    }
    let rec = insert_read(
        tx,
        case_id,
        reader,
        1,
        &row.read,
        None,
        ("import", row.read_date.as_deref()),
        submitted_by,
    )?;
    audit.append(
        tx,
        &Change {
            action: "read.import",
            entity: "read",
            entity_id: &format!("{r}/{reader}/v1"),
            patient: Some(&sid),
            before: None,
            after: Some(json(&rec.read)),
            reason: Some("reads import"),
        },
    )?;
    Ok(Ok((case_id, Upsert::Inserted(r))))
}
