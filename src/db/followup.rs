//! Follow-up visits (migration 0006): the imported or hand-entered visit of a patient
//! at 6, 12, 24 or 36 months, and where every planned visit of the eligible patients
//! stands (`domain::followup`). Writes are IMMEDIATE transactions with their audit
//! rows; a hand-entered correction checks the version the screen was drawn from.

use super::audit::{AuditWriter, Change};
use super::study::{Batch, Study, Upsert};
use super::{DbError, Result, now_utc};
use crate::domain::clock;
use crate::domain::followup::{
    self, FollowUpCounts, FollowUpRules, VisitInput, VisitState, VisitWindow,
};
use crate::domain::protocol::{Group, Phase};
use crate::domain::user::Permission;
use chrono::NaiveDate;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use serde::Serialize;
use std::collections::HashMap;

/// A recorded visit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VisitRow {
    pub study_id: String,
    pub visit_month: u32,
    pub visit: VisitInput,
    /// 'import' or 'marrow'.
    pub source: String,
    pub version: i64,
    pub updated_at: String,
    pub updated_by: String,
}

/// A planned visit of an eligible patient and where it stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedVisit {
    pub study_id: String,
    pub site: String,
    pub group: Group,
    pub phase: Phase,
    pub window: VisitWindow,
    pub state: VisitState,
    /// The recorded visit, when done.
    pub recorded: Option<VisitRow>,
    /// Whether the recorded visit lies within its window.
    pub in_window: Option<bool>,
    /// The baseline (month 0): recorded like a visit, never chased or counted.
    #[serde(default)]
    pub baseline: bool,
}

/// `YYYY-MM-DD` (as the database stores dates) without chrono's format parser, which
/// dominated `marrow status` on 100,000 patients; anything else goes through it.
fn date(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    if b.len() == 10 && b[4] == b'-' && b[7] == b'-' {
        let num = |r: std::ops::Range<usize>| -> Option<u32> {
            b[r].iter().try_fold(0u32, |n, c| {
                c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
            })
        };
        if let (Some(y), Some(m), Some(d)) = (num(0..4), num(5..7), num(8..10)) {
            return NaiveDate::from_ymd_opt(y as i32, m, d);
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

const VISIT_COLS: &str = "p.study_id, v.visit_month, v.visit_date, v.vas, v.oks, \
     v.new_fragility_fracture, v.source, v.version, v.updated_at, v.updated_by";

fn read_visit(r: &rusqlite::Row, o: usize) -> rusqlite::Result<VisitRow> {
    let d: String = r.get(o + 2)?;
    Ok(VisitRow {
        study_id: r.get(o)?,
        visit_month: r.get::<_, i64>(o + 1)? as u32,
        visit: VisitInput {
            visit_date: date(&d).unwrap_or_default(),
            vas: r.get(o + 3)?,
            oks: r.get::<_, Option<i64>>(o + 4)?.map(|v| v as u8),
            new_fragility_fracture: r.get::<_, Option<i64>>(o + 5)?.map(|v| v != 0),
        },
        source: r.get(o + 6)?,
        version: r.get(o + 7)?,
        updated_at: r.get(o + 8)?,
        updated_by: r.get(o + 9)?,
    })
}

fn visit_json(v: &VisitInput) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

fn load_visit(conn: &Connection, patient_id: i64, month: u32) -> Result<Option<VisitRow>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {VISIT_COLS} FROM follow_up_visits v JOIN patients p ON p.id = v.patient_id \
             WHERE v.patient_id = ?1 AND v.visit_month = ?2"
        ))?
        .query_row(params![patient_id, month], |r| read_visit(r, 0))
        .optional()?)
}

/// Every recorded visit, keyed by (patient id, month).
pub fn all_visits(conn: &Connection) -> Result<HashMap<(i64, u32), VisitRow>> {
    let mut st = conn.prepare(&format!(
        "SELECT v.patient_id, {VISIT_COLS} FROM follow_up_visits v JOIN patients p ON p.id = v.patient_id"
    ))?;
    let rows = st.query_map([], |r| {
        let v = read_visit(r, 1)?;
        Ok(((r.get::<_, i64>(0)?, v.visit_month), v))
    })?;
    Ok(rows.collect::<rusqlite::Result<HashMap<_, _>>>()?)
}

/// Writes one visit (insert or update) with its audit row, inside `tx`. Returns what
/// it did and the new version.
#[allow(clippy::too_many_arguments)]
fn write_visit(
    tx: &Transaction,
    audit: &mut AuditWriter,
    actor: &str,
    (patient_id, study_id): (i64, &str),
    month: u32,
    v: &VisitInput,
    source: &str,
    reason: &str,
) -> Result<Upsert> {
    let existing = load_visit(tx, patient_id, month)?;
    let entity_id = format!("{study_id}/{month}m");
    if existing.as_ref().is_some_and(|e| e.visit == *v) {
        return Ok(Upsert::Unchanged(entity_id));
    }
    tx.prepare_cached(
        "INSERT INTO follow_up_visits (patient_id, visit_month, visit_date, vas, oks, \
         new_fragility_fracture, source, version, updated_at, updated_by) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1, ?8, ?9) \
         ON CONFLICT (patient_id, visit_month) DO UPDATE SET visit_date = excluded.visit_date, \
         vas = excluded.vas, oks = excluded.oks, new_fragility_fracture = excluded.new_fragility_fracture, \
         source = excluded.source, version = version + 1, updated_at = excluded.updated_at, \
         updated_by = excluded.updated_by",
    )?
    .execute(params![
        patient_id,
        month,
        v.visit_date.to_string(),
        v.vas,
        v.oks,
        v.new_fragility_fracture.map(i64::from),
        source,
        now_utc(),
        actor,
    ])?;
    let updated = existing.is_some();
    let action = if updated {
        "followup.update"
    } else {
        "followup.add"
    };
    audit.append(
        tx,
        &Change {
            action,
            entity: "follow_up_visit",
            entity_id: &entity_id,
            patient: Some(study_id),
            before: existing.map(|e| visit_json(&e.visit)),
            after: Some(visit_json(v)),
            reason: Some(reason),
        },
    )?;
    Ok(if updated {
        Upsert::Updated(entity_id)
    } else {
        Upsert::Inserted(entity_id)
    })
}

fn index_date_of(conn: &Connection, patient_id: i64) -> Result<Option<NaiveDate>> {
    Ok(conn
        .prepare_cached("SELECT index_date FROM patients WHERE id = ?1")?
        .query_row([patient_id], |r| r.get::<_, Option<String>>(0))?
        .as_deref()
        .and_then(date))
}

impl Batch<'_> {
    /// Adds or updates the visit of a known patient from an import; an identical row
    /// changes nothing. A visit the one visit check refuses (`VisitInput::check`: no
    /// outcome, a date in the future of the sites' today or before the patient's
    /// index date) is not written (`Err` with the reason, for the rejected-rows list).
    pub fn upsert_visit(
        &mut self,
        patient: (i64, &str),
        month: u32,
        v: &VisitInput,
    ) -> Result<std::result::Result<Upsert, String>> {
        let index = index_date_of(&self.tx, patient.0)?;
        if let Err(why) = v.check(index, clock::today_local()) {
            return Ok(Err(why));
        }
        let actor = self.actor.to_string();
        Ok(Ok(write_visit(
            &self.tx,
            &mut self.audit,
            &actor,
            patient,
            month,
            v,
            "import",
            "followup import",
        )?))
    }
}

/// One eligible patient's row as [`walk_planned`] hands it over (borrowed).
struct PatientRef<'a> {
    study_id: &'a str,
    site: &'a str,
    group: &'a str,
    phase: Phase,
}

/// Visits every planned visit of every eligible patient with an index date, on
/// `today`: all four for a patient of a followed-up phase (protocol `[follow_up]
/// phases`), only the recorded ones for the others. The one walk behind both the
/// list ([`planned_visits`]) and the counts ([`followup_counts`]).
fn walk_planned(
    conn: &Connection,
    rules: &FollowUpRules,
    today: NaiveDate,
    mut f: impl FnMut(&PatientRef, &VisitWindow, VisitState, Option<&VisitRow>),
) -> Result<()> {
    let visits = all_visits(conn)?;
    let mut st = conn.prepare(
        "SELECT id, study_id, site, grp, phase, index_date FROM patients \
         WHERE decision = 'eligible' AND index_date IS NOT NULL",
    )?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let str_at =
            |i: usize| -> rusqlite::Result<&str> { Ok(r.get_ref(i)?.as_str().unwrap_or("")) };
        let Some(index) = date(str_at(5)?) else {
            continue;
        };
        let phase: Phase = str_at(4)?.parse().unwrap_or(Phase::Retrospective);
        let patient = PatientRef {
            study_id: str_at(1)?,
            site: str_at(2)?,
            group: str_at(3)?,
            phase,
        };
        let followed = rules.phases.contains(&phase);
        for w in followup::schedule(index, rules) {
            let recorded = visits.get(&(id, w.month));
            if !followed && recorded.is_none() {
                continue; // nothing is chased for a phase that is not followed up
            }
            let state = followup::state(&w, recorded.is_some(), today);
            f(&patient, &w, state, recorded);
        }
    }
    Ok(())
}

/// The planned visits of every eligible patient with an index date, on `today`: all
/// four for a patient of a followed-up phase (protocol `[follow_up] phases`), only the
/// recorded ones for the others.
pub fn planned_visits(
    conn: &Connection,
    rules: &FollowUpRules,
    today: NaiveDate,
) -> Result<Vec<PlannedVisit>> {
    let mut out = Vec::new();
    walk_planned(conn, rules, today, |p, w, state, recorded| {
        out.push(PlannedVisit {
            study_id: p.study_id.to_string(),
            site: p.site.to_string(),
            group: p.group.parse().unwrap_or(Group::Control),
            phase: p.phase,
            in_window: recorded.map(|v| w.contains(v.visit.visit_date)),
            baseline: false,
            window: *w,
            state,
            recorded: recorded.cloned(),
        });
    })?;
    Ok(out)
}

/// Follow-up compliance: the planned visits of the eligible patients per state
/// (counted on the walk, without building the list).
pub fn followup_counts(
    conn: &Connection,
    rules: &FollowUpRules,
    today: NaiveDate,
) -> Result<FollowUpCounts> {
    let mut c = FollowUpCounts::default();
    walk_planned(conn, rules, today, |_, w, state, recorded| {
        c.add(state);
        if recorded.is_some_and(|v| !w.contains(v.visit.visit_date)) {
            c.done_out_of_window += 1;
        }
    })?;
    Ok(c)
}

impl Study {
    fn patient_row_id(&self, study_id: &str) -> Result<(i64, String)> {
        self.conn()
            .query_row(
                "SELECT id, study_id FROM patients WHERE study_id = ?1",
                [study_id.trim().to_ascii_uppercase()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?
            .ok_or_else(|| {
                DbError::NotFound(format!(
                    "no patient with study ID {}; `marrow patients` lists them",
                    study_id.trim()
                ))
            })
    }

    /// Readers are blinded to follow-up: pain scores, function scores and new
    /// fractures are clinical findings a blinded reader must not see. The TUI
    /// hides the screen from them; the data layer refuses, for every front end.
    fn refuse_blinded_followup(&self) -> Result<()> {
        if self.role() == crate::domain::user::Role::Reader {
            return Err(DbError::NotAllowed {
                user: self.actor().name.clone(),
                role: self.role().to_string(),
                what: "see follow-up visits (readers are blinded: pain scores and fractures are clinical findings)".into(),
            });
        }
        Ok(())
    }

    /// Records (or corrects) one follow-up visit by hand. `expected_version`: the
    /// version of the visit the screen showed (`None` for a visit not recorded yet);
    /// when someone changed it since, nothing is written (`Conflict`). A correction
    /// needs a reason; both go into the audit trail. The visit passes the import's
    /// own check first (`VisitInput::check`), whichever front end sent it.
    pub fn record_visit(
        &mut self,
        study_id: &str,
        month: u32,
        v: &VisitInput,
        reason: &str,
        expected_version: Option<i64>,
    ) -> Result<VisitRow> {
        self.require(Permission::Screen)?;
        if !followup::is_recordable_month(month) {
            return Err(DbError::Invalid(format!(
                "{month} is not the baseline (0) or a planned visit (6, 12, 24 or 36 months)"
            )));
        }
        let (pid, sid) = self.patient_row_id(study_id)?;
        let actor = self.actor().clone();
        let tx = self
            .conn_mut()
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let index = index_date_of(&tx, pid)?;
        v.check(index, clock::today_local())
            .map_err(DbError::Invalid)?;
        let existing = load_visit(&tx, pid, month)?;
        match (&existing, expected_version) {
            (Some(e), Some(x)) if e.version != x => {
                return Err(DbError::Conflict(format!(
                    "the {month}-month visit of {sid} was changed by {} at {} after you opened it \
                     (version {x}, now {}); nothing was saved: reload it and enter it again",
                    e.updated_by, e.updated_at, e.version
                )));
            }
            (Some(e), None) => {
                return Err(DbError::Conflict(format!(
                    "the {month}-month visit of {sid} was recorded by {} at {}; nothing was saved: \
                     reload it to correct it",
                    e.updated_by, e.updated_at
                )));
            }
            (None, Some(x)) => {
                return Err(DbError::Conflict(format!(
                    "the {month}-month visit of {sid} (version {x}) is no longer recorded; reload it"
                )));
            }
            _ => {}
        }
        let reason = reason.trim();
        if existing.is_some() && reason.is_empty() {
            return Err(DbError::Invalid(
                "a correction needs a reason (it goes into the audit trail)".into(),
            ));
        }
        let reason = if reason.is_empty() {
            "entered by hand"
        } else {
            reason
        };
        let mut audit = AuditWriter::begin(&tx, &actor)?;
        write_visit(
            &tx,
            &mut audit,
            &actor.name,
            (pid, &sid),
            month,
            v,
            "marrow",
            reason,
        )?;
        audit.finish(&tx)?;
        let row = load_visit(&tx, pid, month)?
            .ok_or_else(|| DbError::Invalid("the visit was not stored".into()))?;
        tx.commit()?;
        Ok(row)
    }

    /// The planned visits of one patient (recorded or not), on `today`.
    pub fn patient_visits(&self, study_id: &str, today: NaiveDate) -> Result<Vec<PlannedVisit>> {
        self.refuse_blinded_followup()?;
        let (pid, sid) = self.patient_row_id(study_id)?;
        let rules = &self.protocol().follow_up;
        let mut rows: Vec<PlannedVisit> = planned_visits(self.conn(), rules, today)?
            .into_iter()
            .filter(|v| v.study_id == sid)
            .collect();
        // the baseline visit first, recorded or not (nothing is chased for it: it is
        // in no list or count, only here, so that it can be entered)
        if let (Some(first), Some(index)) = (rows.first(), index_date_of(self.conn(), pid)?) {
            let base = load_visit(self.conn(), pid, followup::BASELINE_MONTH)?;
            let w = followup::window(index, followup::BASELINE_MONTH, rules);
            let baseline = PlannedVisit {
                study_id: first.study_id.clone(),
                site: first.site.clone(),
                group: first.group,
                phase: first.phase,
                in_window: base.as_ref().map(|b| w.contains(b.visit.visit_date)),
                state: followup::state(&w, base.is_some(), today),
                window: w,
                recorded: base,
                baseline: true,
            };
            rows.insert(0, baseline);
        }
        Ok(rows)
    }

    /// Every planned visit of the eligible patients, on `today`, by study ID and month.
    pub fn planned_visits(&self, today: NaiveDate) -> Result<Vec<PlannedVisit>> {
        self.refuse_blinded_followup()?;
        let mut v = planned_visits(self.conn(), &self.protocol().follow_up, today)?;
        sort_visits(&mut v);
        Ok(v)
    }

    /// The coordinator's list: visits whose window is open or opens within `days`
    /// days (with `overdue`, also those whose window closed unrecorded), soonest first.
    pub fn visits_due(
        &self,
        today: NaiveDate,
        days: i64,
        overdue: bool,
    ) -> Result<Vec<PlannedVisit>> {
        self.refuse_blinded_followup()?;
        let mut v: Vec<PlannedVisit> =
            planned_visits(self.conn(), &self.protocol().follow_up, today)?
                .into_iter()
                .filter(|p| {
                    followup::on_due_list(&p.window, p.state, today, days)
                        || (overdue && p.state == VisitState::Overdue)
                })
                .collect();
        v.sort_by(|a, b| {
            (a.window.opens, &a.study_id, a.window.month).cmp(&(
                b.window.opens,
                &b.study_id,
                b.window.month,
            ))
        });
        Ok(v)
    }

    /// Follow-up compliance on `today` (the dashboard's figure).
    pub fn followup_counts(&self, today: NaiveDate) -> Result<FollowUpCounts> {
        followup_counts(self.conn(), &self.protocol().follow_up, today)
    }
}

fn sort_visits(v: &mut [PlannedVisit]) {
    v.sort_by_cached_key(|p| {
        let n = p
            .study_id
            .rsplit_once('-')
            .map(|(a, n)| (a.to_string(), n.parse::<u64>().unwrap_or(u64::MAX)))
            .unwrap_or((p.study_id.clone(), u64::MAX));
        (n, p.window.month)
    });
}

impl Study {
    /// `marrow outcomes` (also the TUI's dashboard and the report): the secondary
    /// outcomes of the eligible patients of `phase` (both when `None`).
    pub fn outcomes_report(
        &self,
        phase: Option<Phase>,
    ) -> Result<crate::domain::outcomes::OutcomesReport> {
        use crate::domain::outcomes;
        let facts = self.outcome_facts(phase)?;
        Ok(outcomes::OutcomesReport {
            cohort: phase.map(|p| p.to_string()),
            cohort_role: outcomes::cohort_role(phase).to_string(),
            patients: facts.len(),
            definitions: outcomes::DEFINITIONS,
            outcomes: outcomes::outcomes(&facts),
        })
    }

    /// What the secondary outcomes ([`crate::domain::outcomes`]) need of every
    /// eligible patient of `phase` (both when `None`): the index date, the baseline
    /// OP stage of the OP reference standard (the DXA WHO stage of patients aged 50
    /// or more, `Study::reference_cases`), the worse knee's final KL grade, and every
    /// recorded visit. Not for readers (it holds DXA stages and final grades).
    pub fn outcome_facts(
        &self,
        phase: Option<Phase>,
    ) -> Result<Vec<crate::domain::outcomes::PatientFacts>> {
        use crate::domain::outcomes::{PatientFacts, VisitFact};
        use crate::inference::Task;
        self.refuse_readers("see the study's outcomes, which hold DXA stages and final grades")?;
        let op: HashMap<i64, u8> = self
            .reference_cases(Task::Op, phase)?
            .cases
            .into_iter()
            .map(|c| (c.patient_id, c.label))
            .collect();
        let mut kl: HashMap<i64, u8> = HashMap::new();
        for c in self.reference_cases(Task::Kl, phase)?.cases {
            let k = kl.entry(c.patient_id).or_insert(c.label);
            *k = (*k).max(c.label);
        }
        let mut visits: HashMap<i64, Vec<VisitFact>> = HashMap::new();
        {
            let mut st = self.conn().prepare_cached(
                "SELECT patient_id, visit_month, visit_date, vas, oks, new_fragility_fracture \
                 FROM follow_up_visits ORDER BY patient_id, visit_month",
            )?;
            let rows = st.query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<f64>>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                    r.get::<_, Option<i64>>(5)?,
                ))
            })?;
            for row in rows {
                let (pid, month, d, vas, oks, fracture) = row?;
                let Some(date) = date(&d) else {
                    continue;
                };
                visits.entry(pid).or_default().push(VisitFact {
                    month: month as u32,
                    date,
                    vas,
                    oks: oks.and_then(|o| u8::try_from(o).ok()),
                    fracture: fracture.map(|f| f != 0),
                });
            }
        }
        let mut st = self.conn().prepare_cached(
            "SELECT id, phase, index_date FROM patients WHERE decision = 'eligible' ORDER BY id",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (pid, ph, index) = row?;
            if phase.is_some_and(|want| ph.parse::<Phase>().ok() != Some(want)) {
                continue;
            }
            out.push(PatientFacts {
                index_date: index.as_deref().and_then(date),
                op_stage: op.get(&pid).copied(),
                kl: kl.get(&pid).copied(),
                visits: visits.remove(&pid).unwrap_or_default(),
            });
        }
        Ok(out)
    }
}
