//! What the PI's view and the exports read from the database: the per-patient facts of
//! the CONSORT flow (and the patients behind each box), the analysis table (one row per
//! patient and knee, no identifier, every date shifted by a per-patient offset derived
//! from the study key), enrollment by month, the pairs behind the ROC curves and the
//! shareable aggregate summary.

use super::followup::{self, PlannedVisit};
use super::study::{PatientSummary, Study, sort_by_study_id};
use super::{DbError, Result};
use crate::domain::consort::{self, BoxKey, Consort, FlowFacts};
use crate::domain::dxa::{DxaScan, OpReading, Region, op_reading};
use crate::domain::eligibility::{Criterion, Decision};
use crate::domain::followup::VISIT_MONTHS;
use crate::domain::summary::Summary;
use crate::domain::user::Role;
use chrono::NaiveDate;
use hmac::{Hmac, Mac};
use rusqlite::Connection;
use serde::Serialize;
use sha2::Sha256;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// HKDF label of the date-shifting secret. Changing it changes every exported date.
const DATE_SHIFT_LABEL: &[u8] = b"marrow/export-date-shift/v1";
/// Largest date shift, in days either way (never zero).
pub const MAX_SHIFT_DAYS: i64 = 365;

/// The lab analytes of the analysis table, in column order (`domain::records` codes).
pub const LAB_ANALYTES: [&str; 7] = [
    "p1np",
    "beta_ctx",
    "calcium",
    "phosphorus",
    "vitamin_d_25oh",
    "pth",
    "alp",
];
/// Class probabilities exported per task.
const KL_CLASSES: usize = 5;
const OP_CLASSES: usize = 3;

fn date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

fn split_codes<T: std::str::FromStr>(s: &str) -> Vec<T> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .filter_map(|x| x.parse().ok())
        .collect()
}

/// The days every date of one patient moves in the exports: from 1 to 365 days
/// earlier or later, never 0, the same for all of the patient's dates (so intervals
/// stay exact), fixed by the study key and the study ID (so exports agree with each
/// other) and not computable without the key.
pub fn date_shift_days(secret: &[u8; 32], study_id: &str) -> i64 {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(study_id.as_bytes());
    let h = mac.finalize().into_bytes();
    let n = u64::from_be_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]]);
    let days = 1 + (n >> 1) % MAX_SHIFT_DAYS as u64;
    if n & 1 == 0 {
        days as i64
    } else {
        -(days as i64)
    }
}

/// One column of the analysis table and its data-dictionary entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Column {
    pub name: String,
    /// string, integer, number, date, enum
    pub kind: &'static str,
    pub unit: String,
    pub allowed: String,
    pub description: String,
}

fn col(
    name: impl Into<String>,
    kind: &'static str,
    unit: &str,
    allowed: &str,
    desc: impl Into<String>,
) -> Column {
    Column {
        name: name.into(),
        kind,
        unit: unit.into(),
        allowed: allowed.into(),
        description: desc.into(),
    }
}

/// The analysis table: columns (with their dictionary) and rows of text cells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalysisTable {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<String>>,
}

impl AnalysisTable {
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }
}

/// The facts of one patient for the flow, the table and the charts.
#[derive(Debug, Clone, Default)]
struct PatientFacts {
    id: i64,
    study_id: String,
    site: String,
    group: String,
    phase: String,
    sex: Option<String>,
    age: Option<i32>,
    index_date: Option<NaiveDate>,
    bmi: Option<f64>,
    decision: Option<Decision>,
    reasons: Vec<Criterion>,
    who_stage: Option<String>,
    imaged: bool,
}

fn load_patients(conn: &Connection) -> Result<Vec<PatientFacts>> {
    let mut st = conn.prepare(
        "SELECT p.id, p.study_id, p.site, p.grp, p.phase, p.sex, p.age, p.index_date, p.bmi, \
         p.decision, p.reasons, p.who_stage, \
         EXISTS (SELECT 1 FROM image_instances i WHERE i.patient_id = p.id) \
         FROM patients p",
    )?;
    let rows = st.query_map([], |r| {
        Ok(PatientFacts {
            id: r.get(0)?,
            study_id: r.get(1)?,
            site: r.get(2)?,
            group: r.get(3)?,
            phase: r.get(4)?,
            sex: r.get(5)?,
            age: r.get(6)?,
            index_date: r.get::<_, Option<String>>(7)?.as_deref().and_then(date),
            bmi: r.get(8)?,
            decision: r.get::<_, String>(9)?.parse().ok(),
            reasons: split_codes(&r.get::<_, String>(10)?),
            who_stage: r.get(11)?,
            imaged: r.get::<_, i64>(12)? != 0,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// A reading case with its final grade.
#[derive(Debug, Clone, Default)]
struct CaseFacts {
    id: i64,
    patient_id: i64,
    side: String,
    state: String,
    final_kl: Option<u8>,
    final_not_assessable: Option<String>,
    final_op: Option<String>,
    final_method: Option<String>,
}

fn load_cases(conn: &Connection) -> Result<Vec<CaseFacts>> {
    let mut st = conn.prepare(
        "SELECT c.id, c.patient_id, c.side, c.state, f.kl, f.not_assessable, f.op_stage, f.method \
         FROM reading_cases c LEFT JOIN case_finals f ON f.case_id = c.id ORDER BY c.id",
    )?;
    let rows = st.query_map([], |r| {
        Ok(CaseFacts {
            id: r.get(0)?,
            patient_id: r.get(1)?,
            side: r.get(2)?,
            state: r.get(3)?,
            final_kl: r.get::<_, Option<i64>>(4)?.map(|k| k as u8),
            final_not_assessable: r.get(5)?,
            final_op: r.get(6)?,
            final_method: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

impl CaseFacts {
    fn has_final(&self) -> bool {
        self.final_method.is_some()
    }
    fn all_read(&self) -> bool {
        self.state == "adjudication" || self.state == "final" || self.has_final()
    }
}

/// The current read of each reader of each case (highest version), by case id,
/// readers in name order.
#[derive(Debug, Clone)]
struct ReadFacts {
    kl: Option<u8>,
    not_assessable: bool,
    op_impression: Option<String>,
    confidence: Option<u8>,
}

fn load_reads(conn: &Connection) -> Result<HashMap<i64, Vec<ReadFacts>>> {
    let mut st = conn.prepare(
        "SELECT r.case_id, r.reader, r.kl, r.not_assessable, r.op_impression, r.confidence \
         FROM reads r WHERE r.version = (SELECT max(version) FROM reads x \
           WHERE x.case_id = r.case_id AND x.reader = r.reader) \
         ORDER BY r.case_id, r.reader",
    )?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            ReadFacts {
                kl: r.get::<_, Option<i64>>(2)?.map(|k| k as u8),
                not_assessable: r.get::<_, Option<String>>(3)?.is_some(),
                op_impression: r.get(4)?,
                confidence: r.get::<_, Option<i64>>(5)?.map(|c| c as u8),
            },
        ))
    })?;
    let mut out: HashMap<i64, Vec<ReadFacts>> = HashMap::new();
    for row in rows {
        let (case, read) = row?;
        out.entry(case).or_default().push(read);
    }
    Ok(out)
}

type Predictions = HashMap<(i64, String, String), crate::db::inference::CasePrediction>;

/// The model's prediction per (patient, side, task).
fn load_predictions(conn: &Connection) -> Result<Predictions> {
    Ok(crate::db::inference::case_predictions(conn)?
        .into_iter()
        .map(|p| ((p.patient_id, p.side.clone(), p.task.clone()), p))
        .collect())
}

fn op_prediction(
    preds: &Predictions,
    patient: i64,
) -> Option<&crate::db::inference::CasePrediction> {
    preds
        .get(&(patient, "patient".to_string(), "op".to_string()))
        .or_else(|| {
            preds
                .iter()
                .find(|((p, _, t), _)| *p == patient && t == "op")
                .map(|(_, v)| v)
        })
}

/// Whether a case has a final grade and a model prediction of the same thing.
fn case_analysed(c: &CaseFacts, preds: &Predictions) -> bool {
    match c.side.as_str() {
        "left" | "right" => {
            c.final_kl.is_some()
                && preds.contains_key(&(c.patient_id, c.side.clone(), "kl".to_string()))
        }
        _ => c.final_op.is_some() && op_prediction(preds, c.patient_id).is_some(),
    }
}

fn flow_facts(conn: &Connection) -> Result<Vec<FlowFacts>> {
    let patients = load_patients(conn)?;
    let cases = load_cases(conn)?;
    let preds = load_predictions(conn)?;
    let predicted: HashSet<i64> = preds.keys().map(|(p, _, _)| *p).collect();
    let mut read = HashSet::new();
    let mut finals = HashSet::new();
    let mut analysed = HashSet::new();
    for c in &cases {
        if c.all_read() {
            read.insert(c.patient_id);
        }
        if c.has_final() {
            finals.insert(c.patient_id);
        }
        if case_analysed(c, &preds) {
            analysed.insert(c.patient_id);
        }
    }
    Ok(patients
        .iter()
        .map(|p| FlowFacts {
            patient_id: p.id,
            decision: p.decision,
            reasons: p.reasons.clone(),
            imaged: p.imaged,
            read: read.contains(&p.id),
            adjudicated: finals.contains(&p.id),
            predicted: predicted.contains(&p.id),
            analysed: analysed.contains(&p.id),
        })
        .collect())
}

/// The CONSORT flow of a database.
pub fn consort_of(conn: &Connection) -> Result<Consort> {
    Ok(consort::build(&flow_facts(conn)?))
}

/// Eligible patients per month of their index date (YYYY-MM), per site, in month order.
pub fn enrollment_by_month(conn: &Connection) -> Result<Vec<(String, String, u64)>> {
    let mut st = conn.prepare(
        "SELECT substr(index_date, 1, 7), site, count(*) FROM patients \
         WHERE decision = 'eligible' AND index_date IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2",
    )?;
    let rows = st.query_map([], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64))
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// The pairs behind an ROC curve: the reference class and the model's probabilities.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RocData {
    /// Knees with a final KL grade and a KL prediction: (final KL, probabilities).
    pub kl: Vec<(u8, Vec<f64>)>,
    /// Patients with a WHO stage from DXA (the gold standard) and an OP prediction:
    /// (0 normal, 1 osteopenia, 2 osteoporosis; probabilities).
    pub op: Vec<(u8, Vec<f64>)>,
}

fn who_class(s: &str) -> Option<u8> {
    match s.to_ascii_lowercase().as_str() {
        "normal" => Some(0),
        "osteopenia" => Some(1),
        "osteoporosis" => Some(2),
        _ => None,
    }
}

/// Reads the ROC pairs of a database (eligible patients only).
pub fn roc_data(conn: &Connection) -> Result<RocData> {
    let patients = load_patients(conn)?;
    let eligible: HashMap<i64, &PatientFacts> = patients
        .iter()
        .filter(|p| p.decision == Some(Decision::Eligible))
        .map(|p| (p.id, p))
        .collect();
    let preds = load_predictions(conn)?;
    let mut out = RocData::default();
    for c in load_cases(conn)? {
        if !eligible.contains_key(&c.patient_id) || !(c.side == "left" || c.side == "right") {
            continue;
        }
        if let (Some(kl), Some(p)) = (
            c.final_kl,
            preds.get(&(c.patient_id, c.side.clone(), "kl".to_string())),
        ) {
            out.kl
                .push((kl, p.probs.iter().map(|&v| f64::from(v)).collect()));
        }
    }
    let mut ids: Vec<&i64> = eligible.keys().collect();
    ids.sort();
    for id in ids {
        let p = eligible[id];
        // the OP reference standard: aged 50 or more at the index date
        // (`Study::reference_cases`)
        if !crate::domain::dxa::in_who_reference_age(p.age) {
            continue;
        }
        if let (Some(stage), Some(pred)) = (
            p.who_stage.as_deref().and_then(who_class),
            op_prediction(&preds, *id),
        ) {
            out.op
                .push((stage, pred.probs.iter().map(|&v| f64::from(v)).collect()));
        }
    }
    Ok(out)
}

fn load_scans(conn: &Connection) -> Result<HashMap<i64, Vec<DxaScan>>> {
    let mut st = conn.prepare(
        "SELECT patient_id, scan_date, region, t_score, z_score, bmd_g_cm2 FROM dxa_scans",
    )?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, f64>(3)?,
            r.get::<_, Option<f64>>(4)?,
            r.get::<_, Option<f64>>(5)?,
        ))
    })?;
    let mut out: HashMap<i64, Vec<DxaScan>> = HashMap::new();
    for row in rows {
        let (pid, d, region, t, z, bmd) = row?;
        if let (Some(scan_date), Ok(region)) = (date(&d), region.parse::<Region>()) {
            out.entry(pid).or_default().push(DxaScan {
                scan_date,
                region,
                t_score: t,
                z_score: z,
                bmd_g_cm2: bmd,
            });
        }
    }
    Ok(out)
}

/// (date, value, unit) per patient and analyte.
type Labs = HashMap<(i64, String), Vec<(NaiveDate, f64, String)>>;

fn load_labs(conn: &Connection) -> Result<Labs> {
    let mut st = conn.prepare("SELECT patient_id, date, analyte, value, unit FROM labs")?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, f64>(3)?,
            r.get::<_, String>(4)?,
        ))
    })?;
    let mut out: Labs = HashMap::new();
    for row in rows {
        let (pid, d, analyte, v, unit) = row?;
        if let Some(d) = date(&d) {
            out.entry((pid, analyte)).or_default().push((d, v, unit));
        }
    }
    Ok(out)
}

fn num(v: Option<f64>) -> String {
    v.map(|x| {
        let s = format!("{x:.4}");
        let s = s.trim_end_matches('0').trim_end_matches('.').to_string();
        if s == "-0" { "0".into() } else { s }
    })
    .unwrap_or_default()
}

fn int<T: ToString>(v: Option<T>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

fn yes_no(v: Option<bool>) -> String {
    match v {
        Some(true) => "yes".into(),
        Some(false) => "no".into(),
        None => String::new(),
    }
}

/// The columns of the analysis table (the data dictionary), for `reads` reads per case.
pub fn analysis_columns(reads: usize, sites: &[String]) -> Vec<Column> {
    let sites = sites.join(", ");
    let mut c = vec![
        col(
            "study_id",
            "string",
            "",
            "SITE-GROUP-NNNN",
            "Study ID (pseudonym; the MRN never leaves the database)",
        ),
        col("site", "enum", "", &sites, "Hospital"),
        col("group", "enum", "", "OA, OP, CONTROL", "Study group"),
        col(
            "phase",
            "enum",
            "",
            "retrospective, prospective",
            "Study phase",
        ),
        col(
            "knee",
            "enum",
            "",
            "left, right, empty",
            "The knee of this row (empty: the patient has no knee case)",
        ),
        col(
            "age",
            "integer",
            "years",
            "18-90",
            "Age at the index imaging (whole years)",
        ),
        col("sex", "enum", "", "F, M, empty", "Sex"),
        col("bmi", "number", "kg/m2", "", "Body-mass index"),
        col(
            "index_date_shifted",
            "date",
            "YYYY-MM-DD",
            "",
            "Index imaging date moved by the patient's date shift (1 to 365 days either way, one offset for all dates of a patient: intervals are exact, calendar dates are not real)",
        ),
    ];
    for a in LAB_ANALYTES {
        let canonical = crate::domain::records::analyte_units(a).map_or("", |u| u.canonical);
        c.push(col(
            a.to_string(),
            "number",
            "see unit column",
            "",
            format!(
                "{a}: the result closest to the index date, converted to {canonical} on import"
            ),
        ));
        c.push(col(
            format!("{a}_unit"),
            "string",
            "",
            "",
            format!(
                "Unit of {a}: {canonical} (a result stored before unit conversion, in a unit {a} does not accept, keeps its own)"
            ),
        ));
        c.push(col(
            format!("{a}_days_from_index"),
            "integer",
            "days",
            "",
            format!("Days from the index date to the {a} result (negative: before)"),
        ));
    }
    c.extend([
        col("dxa_lowest_t", "number", "SD", "", "Lowest T-score of the gold-standard DXA (lumbar spine, femoral neck, total hip), when WHO staging applies"),
        col("dxa_lowest_z", "number", "SD", "", "Lowest Z-score of the gold-standard DXA, when the patient is under 50 (Z-score applies)"),
        col("dxa_region", "enum", "", "lumbar_spine, femoral_neck, total_hip", "Region of the lowest score"),
        col("dxa_days_from_index", "integer", "days", "", "Days from the index date to the gold-standard DXA (within the protocol's window)"),
        col("who_stage", "enum", "", "Normal, Osteopenia, Osteoporosis, empty", "WHO stage from the lowest T-score (empty: no DXA in the window, or under 50)"),
        col("z_score_applies", "enum", "", "yes, no", "Under 50 with a DXA: the Z-score applies and no WHO stage is given"),
        col("op_reference", "enum", "", "normal, osteopenia, osteoporosis, empty", "The OP reference standard of marrow evaluate (dxa_who): the WHO stage of an eligible patient aged 50 or more at the index date; empty: not in the OP figures"),
        col("final_kl", "integer", "KL grade", "0-4", "Final Kellgren-Lawrence grade of this knee (consensus or adjudicated)"),
        col("final_kl_method", "enum", "", "consensus, adjudicated", "How the final KL grade was reached"),
        col("final_kl_not_assessable", "enum", "", "yes, empty", "The final decision is that the knee cannot be graded"),
    ]);
    for n in 1..=reads {
        c.push(col(
            format!("read_{n}_kl"),
            "integer",
            "KL grade",
            "0-4",
            format!(
                "KL grade of reader {n} (readers in a fixed order per case; names are not exported)"
            ),
        ));
        c.push(col(
            format!("read_{n}_not_assessable"),
            "enum",
            "",
            "yes, no",
            format!("Reader {n} found the knee not assessable"),
        ));
        c.push(col(
            format!("read_{n}_confidence"),
            "integer",
            "",
            "1-5",
            format!("Confidence of reader {n}"),
        ));
    }
    c.extend([
        col(
            "final_op_stage",
            "enum",
            "",
            "normal, osteopenia, osteoporosis",
            "Final OP impression of the patient's reading case",
        ),
        col(
            "final_op_method",
            "enum",
            "",
            "consensus, adjudicated",
            "How the final OP impression was reached",
        ),
    ]);
    for n in 1..=reads {
        c.push(col(
            format!("op_read_{n}_impression"),
            "enum",
            "",
            "normal, osteopenia, osteoporosis",
            format!("OP impression of reader {n} on the patient case"),
        ));
    }
    c.push(col(
        "model_kl_version",
        "string",
        "",
        "",
        "Model and version of the KL prediction of this knee (latest model version)",
    ));
    c.push(col(
        "model_kl_class",
        "integer",
        "KL grade",
        "0-4",
        "Predicted KL grade (the most probable class)",
    ));
    for k in 0..KL_CLASSES {
        c.push(col(
            format!("model_kl_p{k}"),
            "number",
            "probability",
            "0-1",
            format!("Predicted probability of KL {k}, averaged over the knee's images"),
        ));
    }
    c.push(col(
        "model_op_version",
        "string",
        "",
        "",
        "Model and version of the OP prediction of the patient",
    ));
    c.push(col(
        "model_op_class",
        "integer",
        "",
        "0 normal, 1 osteopenia, 2 osteoporosis",
        "Predicted OP class",
    ));
    for k in 0..OP_CLASSES {
        c.push(col(
            format!("model_op_p{k}"),
            "number",
            "probability",
            "0-1",
            format!("Predicted probability of OP class {k}, averaged over the patient's images"),
        ));
    }
    for m in VISIT_MONTHS {
        c.push(col(
            format!("fu{m}_state"),
            "enum",
            "",
            "done, due, overdue, not_yet_due",
            format!("The {m}-month follow-up visit on the export day"),
        ));
        c.push(col(
            format!("fu{m}_date_shifted"),
            "date",
            "YYYY-MM-DD",
            "",
            format!("Date of the {m}-month visit, moved by the patient's date shift"),
        ));
        c.push(col(
            format!("fu{m}_days_from_index"),
            "integer",
            "days",
            "",
            format!("Days from the index date to the {m}-month visit"),
        ));
        c.push(col(
            format!("fu{m}_in_window"),
            "enum",
            "",
            "yes, no",
            format!("The {m}-month visit lies within its window"),
        ));
        c.push(col(
            format!("fu{m}_vas"),
            "number",
            "VAS 0-10",
            "0-10",
            format!("VAS pain at the {m}-month visit"),
        ));
        c.push(col(
            format!("fu{m}_oks"),
            "integer",
            "Oxford Knee Score",
            "0-48",
            format!("Oxford Knee Score at the {m}-month visit"),
        ));
        c.push(col(
            format!("fu{m}_new_fragility_fracture"),
            "enum",
            "",
            "yes, no",
            format!("New fragility fracture reported at the {m}-month visit"),
        ));
    }
    c.push(col("analysed", "enum", "", "yes, no", "This row has a final grade and a model prediction of the same case (KL of this knee, or the patient's OP stage): it enters the accuracy analysis"));
    c
}

fn is_unblinded(role: Role) -> bool {
    matches!(role, Role::Adjudicator | Role::Pi | Role::Admin)
}

impl Study {
    /// The CONSORT flow; each box holds the ids of its patients ([`Study::consort_patients`]
    /// lists them). Counts only: every role may see it.
    pub fn consort(&self) -> Result<Consort> {
        consort_of(self.conn())
    }

    /// The patients behind one box of the flow, as worklist rows (readers get them
    /// without the DXA stage, like every list).
    pub fn consort_patients(&self, key: BoxKey) -> Result<Vec<PatientSummary>> {
        let c = self.consort()?;
        let b = match c.get(key) {
            Some(b) => b,
            None if matches!(key, BoxKey::ExcludedBy(_)) => return Ok(Vec::new()),
            None => return Err(DbError::NotFound(format!("no CONSORT box {}", key.code()))),
        };
        let ids: HashSet<i64> = b.patients.iter().copied().collect();
        let mut st = self.conn().prepare("SELECT id, study_id FROM patients")?;
        let sids: HashSet<String> = st
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?
            .filter_map(|r| r.ok())
            .filter(|(id, _)| ids.contains(id))
            .map(|(_, s)| s)
            .collect();
        let mut rows: Vec<PatientSummary> = self
            .patients(&Default::default())?
            .into_iter()
            .filter(|p| sids.contains(&p.study_id))
            .collect();
        sort_by_study_id(&mut rows);
        Ok(rows)
    }

    /// Eligible patients per month of their index date and site.
    pub fn enrollment_by_month(&self) -> Result<Vec<(String, String, u64)>> {
        enrollment_by_month(self.conn())
    }

    /// The ROC pairs (final KL vs KL prediction; DXA WHO stage vs OP prediction).
    /// Not for readers.
    pub fn roc_data(&self) -> Result<RocData> {
        self.refuse_readers("see the model's accuracy, which holds the study's grades")?;
        roc_data(self.conn())
    }

    /// The shareable summary (aggregate counts only, cells under 5 suppressed).
    pub fn summary(&self, today: NaiveDate) -> Result<Summary> {
        self.refuse_readers("export the study summary, which holds the study's grades")?;
        let status = self.status()?;
        let consort = self.consort()?;
        let follow = self.followup_counts(today)?;
        let mut months: BTreeMap<String, u64> = BTreeMap::new();
        for (m, _, n) in self.enrollment_by_month()? {
            *months.entry(m).or_default() += n;
        }
        let months: Vec<(String, u64)> = months.into_iter().collect();
        Ok(Summary::build(
            &status,
            &consort,
            &follow,
            &months,
            &super::now_utc(),
        ))
    }

    /// The analysis table: one row per eligible patient and knee (one row without a
    /// knee for a patient with no knee case), no identifier, dates shifted per patient.
    /// Adjudicators, PIs and admins only (it holds every read and grade).
    pub fn analysis_table(&self, today: NaiveDate) -> Result<AnalysisTable> {
        if !is_unblinded(self.role()) {
            return Err(DbError::NotAllowed {
                user: self.actor().name.clone(),
                role: self.role().to_string(),
                what: "export the analysis table (adjudicators, PIs and admins only: it holds every read and grade)".into(),
            });
        }
        let conn = self.conn();
        let secret = self.derived_secret(DATE_SHIFT_LABEL);
        let mut patients: Vec<PatientFacts> = load_patients(conn)?
            .into_iter()
            .filter(|p| p.decision == Some(Decision::Eligible))
            .collect();
        patients.sort_by_cached_key(|p| match p.study_id.rsplit_once('-') {
            Some((a, n)) => (a.to_string(), n.parse::<u64>().unwrap_or(u64::MAX)),
            None => (p.study_id.clone(), u64::MAX),
        });
        let cases = load_cases(conn)?;
        let reads = load_reads(conn)?;
        let preds = load_predictions(conn)?;
        let scans = load_scans(conn)?;
        let labs = load_labs(conn)?;
        let visits: Vec<PlannedVisit> =
            followup::planned_visits(conn, &self.protocol().follow_up, today)?;
        let mut visits_of: HashMap<&str, Vec<&PlannedVisit>> = HashMap::new();
        for v in &visits {
            visits_of.entry(v.study_id.as_str()).or_default().push(v);
        }
        let mut cases_of: HashMap<i64, Vec<&CaseFacts>> = HashMap::new();
        for c in &cases {
            cases_of.entry(c.patient_id).or_default().push(c);
        }
        let n_reads = reads
            .values()
            .map(|r| r.len())
            .max()
            .unwrap_or(0)
            .max(usize::from(self.protocol().reading.reads_per_case));
        let columns = analysis_columns(n_reads, &self.protocol().sites);
        let window = self.protocol().dxa_window_days;
        let mut rows = Vec::new();
        for p in &patients {
            let shift = chrono::Duration::days(date_shift_days(&secret, &p.study_id));
            let empty = Vec::new();
            let pcases = cases_of.get(&p.id).unwrap_or(&empty);
            let mut knees: BTreeSet<String> = pcases
                .iter()
                .filter(|c| c.side == "left" || c.side == "right")
                .map(|c| c.side.clone())
                .collect();
            for (pid, side, task) in preds.keys() {
                if *pid == p.id && task == "kl" && (side == "left" || side == "right") {
                    knees.insert(side.clone());
                }
            }
            let knees: Vec<Option<String>> = if knees.is_empty() {
                vec![None]
            } else {
                knees.into_iter().map(Some).collect()
            };
            let patient_case = pcases.iter().find(|c| c.side == "patient");
            let opred = op_prediction(&preds, p.id);
            for knee in knees {
                let mut r: Vec<String> = Vec::with_capacity(columns.len());
                r.push(p.study_id.clone());
                r.push(p.site.clone());
                r.push(p.group.clone());
                r.push(p.phase.clone());
                r.push(knee.clone().unwrap_or_default());
                r.push(int(p.age));
                r.push(p.sex.clone().unwrap_or_default());
                r.push(num(p.bmi));
                r.push(
                    p.index_date
                        .map(|d| (d + shift).to_string())
                        .unwrap_or_default(),
                );
                for a in LAB_ANALYTES {
                    let best = labs.get(&(p.id, a.to_string())).and_then(|v| {
                        v.iter().min_by_key(|(d, _, _)| {
                            p.index_date
                                .map(|i| ((*d - i).num_days().abs(), *d))
                                .unwrap_or((0, *d))
                        })
                    });
                    r.push(num(best.map(|b| b.1)));
                    r.push(best.map(|b| b.2.clone()).unwrap_or_default());
                    r.push(int(
                        best.and_then(|b| p.index_date.map(|i| (b.0 - i).num_days()))
                    ));
                }
                let no_scans = Vec::new();
                let reading = op_reading(
                    p.age,
                    p.index_date,
                    scans.get(&p.id).unwrap_or(&no_scans),
                    window,
                );
                let days = |d: NaiveDate| p.index_date.map(|i| (d - i).num_days());
                match &reading {
                    OpReading::Who {
                        stage,
                        t_score,
                        region,
                        scan_date,
                    } => {
                        r.extend([
                            num(Some(*t_score)),
                            String::new(),
                            region.code().to_string(),
                            int(days(*scan_date)),
                            stage.label().to_string(),
                            "no".into(),
                        ]);
                    }
                    OpReading::ZScore {
                        z_score,
                        region,
                        scan_date,
                    } => {
                        r.extend([
                            String::new(),
                            num(*z_score),
                            region.map(|x| x.code().to_string()).unwrap_or_default(),
                            int(days(*scan_date)),
                            String::new(),
                            "yes".into(),
                        ]);
                    }
                    OpReading::NoGoldStandard => {
                        r.extend(std::iter::repeat_n(String::new(), 5));
                        r.push("no".into());
                    }
                }
                // the rule of `Study::reference_cases` (Task::Op): eligible rows
                // only reach here; aged 50 or more and a WHO stage
                r.push(match &reading {
                    OpReading::Who { stage, .. }
                        if crate::domain::dxa::in_who_reference_age(p.age) =>
                    {
                        stage.label().to_ascii_lowercase()
                    }
                    _ => String::new(),
                });
                let kcase = knee
                    .as_ref()
                    .and_then(|k| pcases.iter().find(|c| &c.side == k));
                r.push(int(kcase.and_then(|c| c.final_kl)));
                r.push(
                    kcase
                        .and_then(|c| c.final_method.clone())
                        .unwrap_or_default(),
                );
                r.push(if kcase.is_some_and(|c| c.final_not_assessable.is_some()) {
                    "yes".into()
                } else {
                    String::new()
                });
                let kreads = kcase.and_then(|c| reads.get(&c.id));
                for n in 0..n_reads {
                    let rd = kreads.and_then(|v| v.get(n));
                    r.push(int(rd.and_then(|x| x.kl)));
                    r.push(yes_no(rd.map(|x| x.not_assessable)));
                    r.push(int(rd.and_then(|x| x.confidence)));
                }
                r.push(
                    patient_case
                        .and_then(|c| c.final_op.clone())
                        .unwrap_or_default(),
                );
                r.push(
                    patient_case
                        .filter(|c| c.final_op.is_some())
                        .and_then(|c| c.final_method.clone())
                        .unwrap_or_default(),
                );
                let preads = patient_case.and_then(|c| reads.get(&c.id));
                for n in 0..n_reads {
                    r.push(
                        preads
                            .and_then(|v| v.get(n))
                            .and_then(|x| x.op_impression.clone())
                            .unwrap_or_default(),
                    );
                }
                let kpred = knee
                    .as_ref()
                    .and_then(|k| preds.get(&(p.id, k.clone(), "kl".to_string())));
                r.push(kpred.map(|x| x.model_version.clone()).unwrap_or_default());
                r.push(int(kpred.map(|x| x.class)));
                for k in 0..KL_CLASSES {
                    r.push(num(kpred
                        .and_then(|x| x.probs.get(k))
                        .map(|v| f64::from(*v))));
                }
                r.push(opred.map(|x| x.model_version.clone()).unwrap_or_default());
                r.push(int(opred.map(|x| x.class)));
                for k in 0..OP_CLASSES {
                    r.push(num(opred
                        .and_then(|x| x.probs.get(k))
                        .map(|v| f64::from(*v))));
                }
                let pv = visits_of.get(p.study_id.as_str());
                for m in VISIT_MONTHS {
                    let v = pv.and_then(|v| v.iter().find(|x| x.window.month == m));
                    let rec = v.and_then(|v| v.recorded.as_ref());
                    r.push(v.map(|v| v.state.code().to_string()).unwrap_or_default());
                    r.push(
                        rec.map(|x| (x.visit.visit_date + shift).to_string())
                            .unwrap_or_default(),
                    );
                    r.push(int(rec.and_then(|x| days(x.visit.visit_date))));
                    r.push(yes_no(v.and_then(|v| v.in_window)));
                    r.push(num(rec.and_then(|x| x.visit.vas)));
                    r.push(int(rec.and_then(|x| x.visit.oks)));
                    r.push(yes_no(rec.and_then(|x| x.visit.new_fragility_fracture)));
                }
                let analysed = kcase.is_some_and(|c| case_analysed(c, &preds))
                    || patient_case.is_some_and(|c| case_analysed(c, &preds));
                r.push(yes_no(Some(analysed)));
                debug_assert_eq!(r.len(), columns.len());
                rows.push(r);
            }
        }
        Ok(AnalysisTable { columns, rows })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_shift_is_keyed_never_zero_and_bounded() {
        let a = [7u8; 32];
        let b = [8u8; 32];
        let mut differ = 0;
        let mut signs = (0, 0);
        for i in 0..500 {
            let sid = format!("PKUPH-OA-{i:04}");
            let d = date_shift_days(&a, &sid);
            assert!(d != 0 && d.abs() <= MAX_SHIFT_DAYS, "{d}");
            assert_eq!(d, date_shift_days(&a, &sid));
            if d != date_shift_days(&b, &sid) {
                differ += 1;
            }
            if d > 0 { signs.0 += 1 } else { signs.1 += 1 }
        }
        assert!(differ > 450, "{differ}");
        assert!(signs.0 > 150 && signs.1 > 150, "{signs:?}");
    }

    #[test]
    fn dictionary_names_are_unique() {
        let c = analysis_columns(2, &["PKUPH".to_string()]);
        let names: HashSet<&str> = c.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names.len(), c.len());
        assert!(names.contains("read_2_kl") && names.contains("fu36_oks"));
    }
}
