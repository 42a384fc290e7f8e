//! The study's typed repositories: users and roles, patients and their screening,
//! DXA and lab results, manual answers, status figures. Every write goes through an
//! IMMEDIATE transaction that also appends to the audit trail.

use super::audit::{self, Actor, AuditRow, AuditWriter, Change, Verification};
use super::keys::{self, IdentifierHasher, Key, KeySource};
use super::{DbError, Result, migrate, now_utc};
use crate::domain::dxa::{DxaScan, Region};
use crate::domain::eligibility::{self, Answer, Criterion, Decision, Flag, RadioChemo, Screening};
use crate::domain::protocol::{Group, Phase, Protocol};
use crate::domain::records::{DxaRecord, LabRecord, PatientRecord, Sex};
use crate::domain::status::{CohortCount, StatusReport};
use crate::domain::user::{Permission, Role};
use chrono::NaiveDate;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// An open study database, acting as one user.
pub struct Study {
    conn: Connection,
    key: Key,
    key_source: KeySource,
    protocol: Protocol,
    hasher: IdentifierHasher,
    actor: Actor,
    role: Role,
    path: PathBuf,
}

/// What `init` did.
#[derive(Debug, Clone)]
pub struct InitOutcome {
    pub db: PathBuf,
    pub key_source: KeySource,
    pub key_file_created: bool,
    pub admin: String,
}

/// A registered user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserRow {
    pub name: String,
    pub role: Role,
    pub added_by: String,
    pub added_at: String,
}

/// One line of the worklist.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PatientSummary {
    pub study_id: String,
    pub site: String,
    pub group: Group,
    pub phase: Phase,
    pub sex: Option<Sex>,
    pub age: Option<i32>,
    pub decision: Decision,
    pub reasons: Vec<Criterion>,
    pub pending: Vec<Criterion>,
    pub flags: Vec<Flag>,
    pub who_stage: Option<String>,
    pub version: i64,
}

/// A manual answer with who gave it, when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManualAnswer {
    pub criterion: Criterion,
    pub answer: Answer,
    pub reason: String,
    pub by: String,
    pub at: String,
}

/// Everything the screening screen shows of one patient.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PatientDetail {
    pub summary: PatientSummary,
    pub record: PatientRecord,
    pub screening: Screening,
    pub manual: Vec<ManualAnswer>,
    pub dxa: Vec<DxaScan>,
    pub labs: Vec<LabRecord>,
    pub updated_at: String,
    pub updated_by: String,
}

/// Filters of the worklist. Empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PatientFilter {
    pub decision: Option<Decision>,
    pub flag: Option<Flag>,
    pub site: Option<String>,
    pub group: Option<Group>,
    pub phase: Option<Phase>,
    /// Case-insensitive substring of the study ID.
    pub search: Option<String>,
}

/// What an upsert did to one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upsert {
    Inserted(String),
    Updated(String),
    Unchanged(String),
}

/// Orders patients by site, group and study number (so PKUPH-OA-9999 comes before
/// PKUPH-OA-10000).
/// What readers are refused in the patient lists: they name each patient's site,
/// group and screening, and knowing the cohort biases a KL read.
const PATIENT_LISTS: &str =
    "see the patient lists, which name each patient's site, group and screening";

pub fn sort_by_study_id(rows: &mut [PatientSummary]) {
    rows.sort_by_cached_key(|r| match r.study_id.rsplit_once('-') {
        Some((prefix, n)) => (prefix.to_string(), n.parse().unwrap_or(u64::MAX)),
        None => (r.study_id.clone(), u64::MAX),
    });
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn bool_col(v: Option<bool>) -> Option<i64> {
    v.map(i64::from)
}

fn radio_chemo_col(r: RadioChemo) -> Option<String> {
    match r {
        RadioChemo::Unknown => None,
        RadioChemo::Never => Some("none".into()),
        RadioChemo::Last(d) => Some(d.to_string()),
    }
}

fn date_col(s: Option<String>) -> Option<NaiveDate> {
    s.and_then(|s| NaiveDate::parse_from_str(&s, "%Y-%m-%d").ok())
}

const SUMMARY_COLS: &str =
    "study_id, site, grp, phase, sex, age, decision, reasons, pending, flags, who_stage, version";

fn read_summary(r: &rusqlite::Row) -> rusqlite::Result<PatientSummary> {
    // Borrowed text, matched against the stored codes: 100,000 rows load without
    // an allocation per enum column.
    let code =
        |i: usize| -> rusqlite::Result<&str> { Ok(r.get_ref(i)?.as_str_or_null()?.unwrap_or("")) };
    fn list<T: Copy>(s: &str, all: &[T], code: impl Fn(T) -> &'static str) -> Vec<T> {
        if s.is_empty() {
            return Vec::new();
        }
        s.split(',')
            .filter_map(|x| all.iter().copied().find(|c| code(*c) == x))
            .collect()
    }
    Ok(PatientSummary {
        study_id: r.get(0)?,
        site: r.get(1)?,
        group: Group::ALL
            .into_iter()
            .find(|g| g.code() == code(2).unwrap_or(""))
            .unwrap_or(Group::Control),
        phase: Phase::ALL
            .into_iter()
            .find(|p| p.code() == code(3).unwrap_or(""))
            .unwrap_or(Phase::Retrospective),
        sex: match code(4)? {
            "F" => Some(Sex::F),
            "M" => Some(Sex::M),
            _ => None,
        },
        age: r.get(5)?,
        decision: Decision::ALL
            .into_iter()
            .find(|d| d.code() == code(6).unwrap_or(""))
            .unwrap_or(Decision::Pending),
        reasons: list(code(7)?, &Criterion::ALL, Criterion::code),
        pending: list(code(8)?, &Criterion::ALL, Criterion::code),
        flags: list(code(9)?, &Flag::ALL, Flag::code),
        who_stage: r.get(10)?,
        version: r.get(11)?,
    })
}

const RECORD_COLS: &str = "site, grp, phase, sex, age, index_date, bmi, deformity, implant, \
     pathological_fracture, malignancy, steroid_long_term, radio_chemo_last";

/// Reads a PatientRecord from RECORD_COLS starting at column `o`.
fn read_record(r: &rusqlite::Row, o: usize) -> rusqlite::Result<PatientRecord> {
    let b = |i: usize| -> rusqlite::Result<Option<bool>> {
        Ok(r.get::<_, Option<i64>>(o + i)?.map(|v| v != 0))
    };
    Ok(PatientRecord {
        site: r.get(o)?,
        group: r.get::<_, String>(o + 1)?.parse().unwrap_or(Group::Control),
        phase: r
            .get::<_, String>(o + 2)?
            .parse()
            .unwrap_or(Phase::Retrospective),
        sex: match r.get::<_, Option<String>>(o + 3)?.as_deref() {
            Some("F") => Some(Sex::F),
            Some("M") => Some(Sex::M),
            _ => None,
        },
        age: r.get(o + 4)?,
        index_date: date_col(r.get(o + 5)?),
        bmi: r.get(o + 6)?,
        deformity: b(7)?,
        implant: b(8)?,
        pathological_fracture: b(9)?,
        malignancy: b(10)?,
        steroid_long_term: b(11)?,
        radio_chemo_last: match r.get::<_, Option<String>>(o + 12)? {
            None => RadioChemo::Unknown,
            Some(s) if s == "none" => RadioChemo::Never,
            Some(s) => date_col(Some(s))
                .map(RadioChemo::Last)
                .unwrap_or(RadioChemo::Unknown),
        },
    })
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

fn load_scans(conn: &Connection, patient_id: i64) -> Result<Vec<DxaScan>> {
    let mut st = conn.prepare_cached(
        "SELECT scan_date, region, t_score, z_score, bmd_g_cm2 FROM dxa_scans \
         WHERE patient_id = ?1 ORDER BY scan_date, region",
    )?;
    let rows = st.query_map([patient_id], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, f64>(2)?,
            r.get::<_, Option<f64>>(3)?,
            r.get::<_, Option<f64>>(4)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (d, region, t, z, bmd) = row?;
        if let (Some(scan_date), Ok(region)) = (date_col(Some(d)), region.parse::<Region>()) {
            out.push(DxaScan {
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

fn load_manual(conn: &Connection, patient_id: i64) -> Result<Vec<ManualAnswer>> {
    let mut st = conn.prepare_cached(
        "SELECT criterion, answer, reason, answered_by, answered_at FROM screening_answers \
         WHERE patient_id = ?1 ORDER BY criterion",
    )?;
    let rows = st.query_map([patient_id], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (c, a, reason, by, at) = row?;
        if let (Ok(criterion), Ok(answer)) = (c.parse(), a.parse()) {
            out.push(ManualAnswer {
                criterion,
                answer,
                reason,
                by,
                at,
            });
        }
    }
    Ok(out)
}

/// Screens a stored patient from everything the database holds about them.
fn screen_stored(
    conn: &Connection,
    protocol: &Protocol,
    patient_id: i64,
) -> Result<(PatientRecord, Screening, Vec<DxaScan>, Vec<ManualAnswer>)> {
    let (rec, has_image): (PatientRecord, bool) = conn.query_row(
        &format!("SELECT {RECORD_COLS}, has_image FROM patients WHERE id = ?1"),
        [patient_id],
        |r| Ok((read_record(r, 0)?, r.get::<_, i64>(13)? != 0)),
    )?;
    let scans = load_scans(conn, patient_id)?;
    let manual = load_manual(conn, patient_id)?;
    let answers: Vec<(Criterion, Answer)> =
        manual.iter().map(|m| (m.criterion, m.answer)).collect();
    let s = eligibility::screen(
        &rec.facts(has_image),
        &scans,
        protocol.dxa_window_days,
        &answers,
    );
    Ok((rec, s, scans, manual))
}

/// Stores a screening outcome on the patient row and bumps its version.
fn store_screening(tx: &Transaction, patient_id: i64, s: &Screening, actor: &str) -> Result<()> {
    tx.prepare_cached(
        "UPDATE patients SET decision = ?2, reasons = ?3, pending = ?4, flags = ?5, who_stage = ?6, \
         version = version + 1, updated_at = ?7, updated_by = ?8, missing_dxa = ?9 WHERE id = ?1",
    )?
    .execute(params![
        patient_id,
        s.decision.code(),
        join(&s.reasons),
        join(&s.pending),
        join(&s.flags),
        s.op_reading.who_stage().map(|w| w.label()),
        now_utc(),
        actor,
        s.flags.contains(&Flag::MissingDxa),
    ])?;
    Ok(())
}

impl Study {
    /// Creates the encrypted database, its key (unless given), the schema and the
    /// protocol; the OS user running it becomes the first admin.
    pub fn init(db: &Path, key_file: Option<&Path>, protocol: Protocol) -> Result<InitOutcome> {
        // An empty file (made by `touch`, or left by a tool) is as good as none.
        if !super::absent_or_empty(db) {
            return Err(DbError::AlreadyExists(db.to_path_buf()));
        }
        if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.is_dir()
        {
            return Err(DbError::Invalid(format!(
                "the folder {} does not exist; create it first (mode 0700 keeps it private)",
                dir.display()
            )));
        }
        let (key, key_source, created) = keys::create_key(db, key_file)?;
        let mut conn = super::create_connection(db, &key)?;
        migrate::migrate(&mut conn)?;
        let admin = super::os_user();
        let actor = Actor {
            name: admin.clone(),
            real: admin.clone(),
        };
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut audit = AuditWriter::begin(&tx, &actor)?;
        let protocol_json = json(&protocol);
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('protocol', ?1), ('created_at', ?2)",
            params![protocol_json, now_utc()],
        )?;
        audit.append(
            &tx,
            &Change {
                action: "study.init",
                entity: "protocol",
                entity_id: "protocol",
                patient: None,
                before: None,
                after: Some(protocol_json),
                reason: None,
            },
        )?;
        insert_user(&tx, &mut audit, &admin, Role::Admin, &admin)?;
        audit.finish(&tx)?;
        tx.commit()?;
        Ok(InitOutcome {
            db: db.to_path_buf(),
            key_source,
            key_file_created: created,
            admin,
        })
    }

    /// Opens a study as the OS user, or as `as_user` when the OS user is an admin.
    pub fn open(db: &Path, key_file: Option<&Path>, as_user: Option<&str>) -> Result<Study> {
        Study::open_for(db, key_file, &super::os_user(), as_user)
    }

    /// Opens a study for an explicit real user (the OS user in production).
    pub fn open_for(
        db: &Path,
        key_file: Option<&Path>,
        real_user: &str,
        as_user: Option<&str>,
    ) -> Result<Study> {
        // What the path is, before the key is sought (a folder is not "no key").
        super::check_study_file(db)?;
        let (key, source) = keys::load_key(db, key_file)?;
        Study::open_with_key(db, &key, &source, real_user, as_user)
    }

    /// Opens with a key already in hand (workers of the TUI reuse it).
    pub fn open_with_key(
        db: &Path,
        key: &Key,
        source: &KeySource,
        real_user: &str,
        as_user: Option<&str>,
    ) -> Result<Study> {
        let mut conn = super::open_connection(db, key, source)?;
        migrate::migrate(&mut conn)?;
        let protocol_json: String = conn
            .query_row("SELECT value FROM meta WHERE key = 'protocol'", [], |r| {
                r.get(0)
            })
            .optional()?
            .ok_or_else(|| DbError::Invalid(format!("{} has no protocol", db.display())))?;
        let protocol: Protocol = serde_json::from_str(&protocol_json)
            .map_err(|e| DbError::Invalid(format!("stored protocol unreadable: {e}")))?;
        // "today" is the sites' local date in the protocol's zone
        crate::domain::clock::set_zone(&protocol.time_zone);
        let role_of = |name: &str| -> Result<Option<Role>> {
            Ok(conn
                .query_row("SELECT role FROM users WHERE name = ?1", [name], |r| {
                    r.get::<_, String>(0)
                })
                .optional()?
                .and_then(|r| r.parse().ok()))
        };
        let admins = || -> Result<String> {
            let mut st =
                conn.prepare("SELECT name FROM users WHERE role = 'admin' ORDER BY name")?;
            let names = st
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(names.join(", "))
        };
        let real_role = role_of(real_user)?.ok_or_else(|| DbError::UnknownUser {
            user: real_user.to_string(),
            admins: admins().unwrap_or_default(),
        })?;
        let (name, role) = match as_user {
            None => (real_user.to_string(), real_role),
            Some(other) if other == real_user => (real_user.to_string(), real_role),
            Some(other) => {
                if real_role != Role::Admin {
                    return Err(DbError::NotAllowed {
                        user: real_user.into(),
                        role: real_role.to_string(),
                        what: "act as another user (--as is for admins)".into(),
                    });
                }
                let role = role_of(other)?.ok_or_else(|| DbError::UnknownUser {
                    user: other.to_string(),
                    admins: admins().unwrap_or_default(),
                })?;
                (other.to_string(), role)
            }
        };
        let hasher = key.identifier_hasher();
        Ok(Study {
            conn,
            key: key.clone(),
            key_source: source.clone(),
            protocol,
            hasher,
            actor: Actor {
                name,
                real: real_user.to_string(),
            },
            role,
            path: db.to_path_buf(),
        })
    }

    pub fn protocol(&self) -> &Protocol {
        &self.protocol
    }

    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The read-only connection, for queries of tests and benchmarks.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// The connection for the other repositories' write transactions (reading).
    pub(super) fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// A secret for one purpose derived from the study key (see [`Key::derive`]).
    pub fn derived_secret(&self, label: &[u8]) -> [u8; 32] {
        self.key.derive(label)
    }

    /// The keyed hasher of hospital identifiers (for work done off the database thread).
    pub fn identifier_hasher(&self) -> &IdentifierHasher {
        &self.hasher
    }

    /// Hash of a hospital identifier under this study's key, in hex (the database holds
    /// the 32 bytes: compare with `mrn_hash = unhex(?)`).
    pub fn identifier_hash(&self, identifier: &str) -> String {
        self.hasher.hash(identifier)
    }

    /// Refuses an action the user's role does not allow.
    pub fn require(&self, p: Permission) -> Result<()> {
        if self.role.allows(p) {
            Ok(())
        } else {
            let hint = if self.role == Role::Pi {
                " (PIs have read-only access)"
            } else {
                ""
            };
            Err(DbError::NotAllowed {
                user: self.actor.name.clone(),
                role: self.role.to_string(),
                what: format!("{}{hint}", p.describe()),
            })
        }
    }

    /// Hands WAL checkpoints to a second connection on its own thread for a bulk
    /// write, so the writer never stops to copy pages into the database file.
    /// Automatic checkpoints of this connection stay off until `end_bulk_write`.
    pub fn begin_bulk_write(&self) -> Result<Checkpointer> {
        let conn = super::open_connection(&self.path, &self.key, &self.key_source)?;
        self.conn.execute_batch("PRAGMA wal_autocheckpoint = 0;")?;
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let handle = std::thread::spawn(move || {
            let checkpoint = || {
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!("background checkpoint: {e}");
                }
            };
            while rx.recv().is_ok() {
                while rx.try_recv().is_ok() {}
                checkpoint();
            }
            checkpoint();
        });
        Ok(Checkpointer {
            nudge: Some(tx),
            handle: Some(handle),
        })
    }

    /// Turns automatic checkpoints back on after a bulk write.
    pub fn end_bulk_write(&self) -> Result<()> {
        self.conn
            .execute_batch("PRAGMA wal_autocheckpoint = 1000;")?;
        Ok(())
    }

    // ----- users -----

    /// Adds a user or changes their role (admins only).
    pub fn add_user(&mut self, name: &str, role: Role) -> Result<Upsert> {
        self.require(Permission::ManageUsers)?;
        let name = name.trim();
        if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(DbError::Invalid(format!(
                "'{name}' is not a user name (use the person's login name on this server)"
            )));
        }
        let actor = self.actor.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut audit = AuditWriter::begin(&tx, &actor)?;
        let existing: Option<String> = tx
            .query_row("SELECT role FROM users WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?;
        let out = match existing {
            Some(r) if r == role.code() => Upsert::Unchanged(name.into()),
            Some(r) => {
                if name == actor.name && role != Role::Admin {
                    return Err(DbError::Invalid(
                        "an admin cannot take away their own admin role; ask another admin".into(),
                    ));
                }
                tx.execute(
                    "UPDATE users SET role = ?2 WHERE name = ?1",
                    params![name, role.code()],
                )?;
                audit.append(
                    &tx,
                    &Change {
                        action: "user.role",
                        entity: "user",
                        entity_id: name,
                        patient: None,
                        before: Some(json(&serde_json::json!({ "role": r }))),
                        after: Some(json(&serde_json::json!({ "role": role.code() }))),
                        reason: None,
                    },
                )?;
                Upsert::Updated(name.into())
            }
            None => {
                insert_user(&tx, &mut audit, name, role, &actor.name)?;
                Upsert::Inserted(name.into())
            }
        };
        audit.finish(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Every registered user.
    pub fn users(&self) -> Result<Vec<UserRow>> {
        let mut st = self
            .conn
            .prepare("SELECT name, role, added_by, added_at FROM users ORDER BY name")?;
        let rows = st.query_map([], |r| {
            Ok(UserRow {
                name: r.get(0)?,
                role: r.get::<_, String>(1)?.parse().unwrap_or(Role::Pi),
                added_by: r.get(2)?,
                added_at: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    // ----- patients -----

    /// Refuses readers what they are blinded to (`what` says what and why); they work
    /// from their cases.
    pub(super) fn refuse_readers(&self, what: &str) -> Result<()> {
        if self.role == Role::Reader {
            return Err(DbError::NotAllowed {
                user: self.actor.name.clone(),
                role: self.role.to_string(),
                what: format!(
                    "{what} (readers are blinded to it; they work from their cases: `marrow read`)"
                ),
            });
        }
        Ok(())
    }

    /// The worklist, filtered, ordered by study ID (not for readers).
    pub fn patients(&self, f: &PatientFilter) -> Result<Vec<PatientSummary>> {
        self.refuse_readers(PATIENT_LISTS)?;
        let mut sql = format!("SELECT {SUMMARY_COLS} FROM patients WHERE 1=1");
        let mut args: Vec<String> = Vec::new();
        let mut push = |clause: &str, v: String, args: &mut Vec<String>| {
            args.push(v);
            sql.push_str(&format!(" AND {clause} ?{}", args.len()));
        };
        if let Some(d) = f.decision {
            push("decision =", d.code().into(), &mut args);
        }
        if let Some(fl) = f.flag {
            push(
                "(',' || flags || ',') LIKE",
                format!("%,{},%", fl.code()),
                &mut args,
            );
        }
        if let Some(s) = &f.site {
            push("site =", s.to_ascii_uppercase(), &mut args);
        }
        if let Some(g) = f.group {
            push("grp =", g.code().into(), &mut args);
        }
        if let Some(p) = f.phase {
            push("phase =", p.code().into(), &mut args);
        }
        if let Some(q) = f.search.as_ref().filter(|q| !q.trim().is_empty()) {
            push(
                "study_id LIKE",
                format!("%{}%", q.trim().to_ascii_uppercase()),
                &mut args,
            );
        }
        // Sorted here rather than by SQL: a plain table scan beats 100,000 index lookups.
        let mut st = self.conn.prepare(&sql)?;
        let rows = st.query_map(rusqlite::params_from_iter(args.iter()), read_summary)?;
        let mut rows = rows.collect::<rusqlite::Result<Vec<_>>>()?;
        sort_by_study_id(&mut rows);
        Ok(rows)
    }

    /// The first `n` patients of the worklist's order, read through the study-ID index
    /// (fast on any size of study; the whole list comes from `patients`).
    pub fn patients_first_page(&self, n: usize) -> Result<Vec<PatientSummary>> {
        self.refuse_readers(PATIENT_LISTS)?;
        let mut st = self.conn.prepare(&format!(
            "SELECT {SUMMARY_COLS} FROM patients ORDER BY study_id LIMIT ?1"
        ))?;
        let rows = st.query_map([n as i64], read_summary)?;
        let mut rows = rows.collect::<rusqlite::Result<Vec<_>>>()?;
        sort_by_study_id(&mut rows);
        Ok(rows)
    }

    fn patient_id(&self, study_id: &str) -> Result<i64> {
        self.conn
            .query_row(
                "SELECT id FROM patients WHERE study_id = ?1",
                [study_id.trim().to_ascii_uppercase()],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| {
                DbError::NotFound(format!(
                    "no patient with study ID {}; `marrow patients` lists them",
                    study_id.trim()
                ))
            })
    }

    /// One patient's screening checklist, DXA and labs (not for readers: it holds the
    /// DXA stage they are blinded to; they work from their reading cases).
    pub fn patient(&self, study_id: &str) -> Result<PatientDetail> {
        if self.role == Role::Reader {
            return Err(DbError::NotAllowed {
                user: self.actor.name.clone(),
                role: self.role.to_string(),
                what: "open a patient's screening record: it shows the DXA stage readers are \
                       blinded to (readers work from `marrow read`)"
                    .into(),
            });
        }
        let id = self.patient_id(study_id)?;
        let (summary, updated_at, updated_by) = self.conn.query_row(
            &format!("SELECT {SUMMARY_COLS}, updated_at, updated_by FROM patients WHERE id = ?1"),
            [id],
            |r| Ok((read_summary(r)?, r.get(12)?, r.get(13)?)),
        )?;
        let (record, screening, dxa, manual) = screen_stored(&self.conn, &self.protocol, id)?;
        let mut st = self.conn.prepare_cached(
            "SELECT date, analyte, value, unit, original_value, original_unit FROM labs \
             WHERE patient_id = ?1 ORDER BY date, analyte",
        )?;
        let labs = st
            .query_map([id], |r| {
                let (value, unit): (f64, String) = (r.get(2)?, r.get(3)?);
                Ok(LabRecord {
                    date: date_col(Some(r.get(0)?)).unwrap_or_default(),
                    analyte: r.get(1)?,
                    original_value: r.get::<_, Option<f64>>(4)?.unwrap_or(value),
                    original_unit: r.get::<_, Option<String>>(5)?.unwrap_or(unit.clone()),
                    value,
                    unit,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(PatientDetail {
            summary,
            record,
            screening,
            manual,
            dxa,
            labs,
            updated_at,
            updated_by,
        })
    }

    /// Answers a criterion by hand (`None` clears the manual answer), with a reason.
    /// With `expected_version`, refuses when someone changed the patient since it was read.
    pub fn set_answer(
        &mut self,
        study_id: &str,
        criterion: Criterion,
        answer: Option<Answer>,
        reason: &str,
        expected_version: Option<i64>,
    ) -> Result<PatientDetail> {
        self.require(Permission::Screen)?;
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(DbError::Invalid(
                "a manual answer needs a reason (it goes into the audit trail)".into(),
            ));
        }
        let id = self.patient_id(study_id)?;
        let actor = self.actor.clone();
        let protocol = self.protocol.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (sid, version, by, at): (String, i64, String, String) = tx.query_row(
            "SELECT study_id, version, updated_by, updated_at FROM patients WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
        if let Some(v) = expected_version.filter(|v| *v != version) {
            return Err(DbError::Conflict(format!(
                "{sid} was changed by {by} at {at} after you opened it (version {v}, now {version}); \
                 nothing was saved: reload it and answer again"
            )));
        }
        let before: Option<ManualAnswer> = load_manual(&tx, id)?
            .into_iter()
            .find(|m| m.criterion == criterion);
        let now = now_utc();
        match answer {
            Some(a) => {
                tx.execute(
                    "INSERT INTO screening_answers (patient_id, criterion, answer, reason, answered_by, answered_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (patient_id, criterion) DO UPDATE SET \
                     answer = excluded.answer, reason = excluded.reason, answered_by = excluded.answered_by, \
                     answered_at = excluded.answered_at",
                    params![id, criterion.code(), a.code(), reason, actor.name, now],
                )?;
            }
            None => {
                tx.execute(
                    "DELETE FROM screening_answers WHERE patient_id = ?1 AND criterion = ?2",
                    params![id, criterion.code()],
                )?;
            }
        }
        let (_, screening, _, _) = screen_stored(&tx, &protocol, id)?;
        store_screening(&tx, id, &screening, &actor.name)?;
        let mut audit = AuditWriter::begin(&tx, &actor)?;
        let entity_id = format!("{sid}/{}", criterion.code());
        audit.append(
            &tx,
            &Change {
                action: if answer.is_some() {
                    "screening.set"
                } else {
                    "screening.clear"
                },
                entity: "screening_answer",
                entity_id: &entity_id,
                patient: Some(&sid),
                before: before.map(|b| {
                    json(&serde_json::json!({"answer": b.answer, "reason": b.reason, "by": b.by}))
                }),
                after: answer.map(|a| {
                    json(&serde_json::json!({"answer": a, "decision": screening.decision}))
                }),
                reason: Some(reason),
            },
        )?;
        audit.finish(&tx)?;
        tx.commit()?;
        self.patient(&sid)
    }

    /// Enrollment and eligibility figures, one row per cohort of the protocol.
    pub fn status(&self) -> Result<StatusReport> {
        // One pass over the covering index patients_cohort.
        let mut st = self.conn.prepare(
            "SELECT site, grp, phase, decision, count(*), \
             sum(CASE WHEN decision != 'ineligible' THEN missing_dxa ELSE 0 END) \
             FROM patients GROUP BY site, grp, phase, decision",
        )?;
        let mut missing = 0u64;
        let counts = st
            .query_map([], |r| {
                Ok((
                    CohortCount {
                        site: r.get(0)?,
                        group: r.get::<_, String>(1)?.parse().unwrap_or(Group::Control),
                        phase: r
                            .get::<_, String>(2)?
                            .parse()
                            .unwrap_or(Phase::Retrospective),
                        decision: r.get::<_, String>(3)?.parse().unwrap_or(Decision::Pending),
                        count: r.get::<_, i64>(4)? as u64,
                    },
                    r.get::<_, i64>(5)? as u64,
                ))
            })?
            .map(|r| {
                r.map(|(c, m)| {
                    missing += m;
                    c
                })
            })
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut report = StatusReport::build(&self.protocol, &counts, missing);
        report.images = self
            .conn
            .query_row("SELECT count(*) FROM image_instances", [], |r| {
                r.get::<_, i64>(0)
            })? as u64;
        report.quarantined =
            self.conn
                .query_row("SELECT count(*) FROM image_quarantine", [], |r| {
                    r.get::<_, i64>(0)
                })? as u64;
        (
            report.reads_pending,
            report.adjudication_pending,
            report.final_graded,
        ) = super::reading::reading_counts(&self.conn, self.protocol.reading.reads_per_case)?;
        report.follow_up = super::followup::followup_counts(
            &self.conn,
            &self.protocol.follow_up,
            chrono::Utc::now().date_naive(),
        )?;
        Ok(report)
    }

    /// Patients needing attention: not ineligible, and flagged or with criteria pending.
    pub fn flagged(&self) -> Result<Vec<PatientSummary>> {
        self.refuse_readers(PATIENT_LISTS)?;
        let mut st = self.conn.prepare(&format!(
            "SELECT {SUMMARY_COLS} FROM patients WHERE decision != 'ineligible' \
             AND (flags != '' OR decision = 'pending')"
        ))?;
        let rows = st.query_map([], read_summary)?;
        let mut rows = rows.collect::<rusqlite::Result<Vec<_>>>()?;
        sort_by_study_id(&mut rows);
        Ok(rows)
    }

    // ----- audit -----

    pub fn audit_log(&self, patient: Option<&str>) -> Result<Vec<AuditRow>> {
        let mut rows = audit::log(
            &self.conn,
            patient.map(|p| p.trim().to_ascii_uppercase()).as_deref(),
        )?;
        if self.role == Role::Reader {
            // Blinding: the trail holds every grade, DXA result, lab value, patient
            // group, image row and model output; a reader sees only what they did.
            rows.retain(|r| r.actor == self.actor.name);
        }
        Ok(rows)
    }

    pub fn verify_audit(&self) -> Result<Verification> {
        audit::verify(&self.conn)
    }

    // ----- imports -----

    /// Starts a write batch for an import (one transaction, one audit chain segment).
    pub fn batch(&mut self) -> Result<Batch<'_>> {
        self.require(Permission::Import)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let audit = AuditWriter::begin(&tx, &self.actor)?;
        Ok(Batch {
            tx,
            audit,
            hasher: &self.hasher,
            protocol: &self.protocol,
            actor: &self.actor.name,
            dirty: BTreeSet::new(),
            counters: HashMap::new(),
        })
    }
}

fn insert_user(
    tx: &Transaction,
    audit: &mut AuditWriter,
    name: &str,
    role: Role,
    by: &str,
) -> Result<()> {
    tx.execute(
        "INSERT INTO users (name, role, added_by, added_at) VALUES (?1, ?2, ?3, ?4)",
        params![name, role.code(), by, now_utc()],
    )?;
    audit.append(
        tx,
        &Change {
            action: "user.add",
            entity: "user",
            entity_id: name,
            patient: None,
            before: None,
            after: Some(json(&serde_json::json!({ "role": role.code() }))),
            reason: None,
        },
    )
}

/// The background checkpointer of a bulk write; dropping it runs a last checkpoint
/// and waits for it.
pub struct Checkpointer {
    nudge: Option<std::sync::mpsc::Sender<()>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    /// Asks for a checkpoint of what has been committed so far.
    pub fn nudge(&self) {
        if let Some(tx) = &self.nudge {
            let _ = tx.send(());
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.nudge.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The study patients an MRN (its keyed hash) may name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatientMatch {
    /// No patient has that MRN (at that site, when one was given).
    None,
    /// (patients.id, study ID).
    One(i64, String),
    /// No site was given and patients at several sites have that MRN: (study ID,
    /// site) of each, by site.
    Ambiguous(Vec<(String, String)>),
}

impl PatientMatch {
    /// The patient, when exactly one matched.
    pub fn one(self) -> Option<(i64, String)> {
        match self {
            PatientMatch::One(id, sid) => Some((id, sid)),
            _ => None,
        }
    }

    /// Why a row naming this MRN is refused, when it is: `what` names the
    /// identifier ("mrn", "PatientID").
    pub fn refusal(&self, what: &str, site: Option<&str>) -> Option<String> {
        match self {
            PatientMatch::One(..) => None,
            PatientMatch::None => Some(match site {
                Some(site) => {
                    format!("{what} is not a known patient at {site} (import patients.csv first)")
                }
                None => format!("{what} is not a known patient (import patients.csv first)"),
            }),
            PatientMatch::Ambiguous(all) => Some(format!(
                "{what} is ambiguous: it is {}; add a site column (or give --site)",
                describe_sites(all)
            )),
        }
    }
}

/// "PKUPH-OA-0003 at PKUPH and SYSMH-OP-0001 at SYSMH".
pub fn describe_sites(all: &[(String, String)]) -> String {
    let each: Vec<String> = all
        .iter()
        .map(|(sid, site)| format!("{sid} at {site}"))
        .collect();
    match each.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => each.join(""),
    }
}

/// The patients with the keyed MRN hash `hash_hex`: the one at `site` when given,
/// else the only one at any site (or all of them, when there are several).
pub fn find_by_hash(conn: &Connection, hash_hex: &str, site: Option<&str>) -> Result<PatientMatch> {
    if let Some(site) = site {
        return Ok(conn
            .prepare_cached(
                "SELECT id, study_id FROM patients WHERE mrn_hash = unhex(?1) AND site = ?2",
            )?
            .query_row(params![hash_hex, site], |r| {
                Ok(PatientMatch::One(r.get(0)?, r.get(1)?))
            })
            .optional()?
            .unwrap_or(PatientMatch::None));
    }
    let mut st = conn.prepare_cached(
        "SELECT id, study_id, site FROM patients WHERE mrn_hash = unhex(?1) ORDER BY site, study_id",
    )?;
    let mut all: Vec<(i64, String, String)> = st
        .query_map([hash_hex], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(match all.len() {
        0 => PatientMatch::None,
        1 => {
            let (id, sid, _) = all.remove(0);
            PatientMatch::One(id, sid)
        }
        _ => PatientMatch::Ambiguous(all.into_iter().map(|(_, sid, site)| (sid, site)).collect()),
    })
}

/// A patient row ready to store: the MRN already hashed and the record already in
/// JSON for the audit trail (an import does both on its row-checking thread).
pub struct PatientRow {
    pub mrn_hash: String,
    pub record: PatientRecord,
    pub record_json: String,
    /// The screening of the record as a new patient (no DXA, no manual answers yet).
    pub new_screening: Screening,
}

impl PatientRow {
    pub fn new(
        hasher: &IdentifierHasher,
        protocol: &Protocol,
        mrn: &str,
        record: PatientRecord,
    ) -> Self {
        PatientRow {
            mrn_hash: hasher.hash(mrn),
            record_json: json(&record),
            new_screening: eligibility::screen(
                &record.facts(false),
                &[],
                protocol.dxa_window_days,
                &[],
            ),
            record,
        }
    }
}

/// One import transaction. Rows are checked before anything is written, so a row
/// is stored whole or not at all; `commit` rescreens the patients it touched.
pub struct Batch<'s> {
    pub(super) tx: Transaction<'s>,
    pub(super) audit: AuditWriter,
    hasher: &'s IdentifierHasher,
    protocol: &'s Protocol,
    pub(super) actor: &'s str,
    /// Patients to rescreen on commit (their DXA or images changed).
    pub(super) dirty: BTreeSet<i64>,
    /// Next study number per (site, group), written back on commit.
    counters: HashMap<(String, Group), i64>,
}

impl Batch<'_> {
    /// The next free study number of a site and group.
    fn next_study_number(&mut self, site: &str, group: Group) -> Result<i64> {
        let key = (site.to_string(), group);
        let next = match self.counters.get(&key) {
            Some(n) => *n,
            None => self
                .tx
                .prepare_cached("SELECT next FROM study_id_counters WHERE site = ?1 AND grp = ?2")?
                .query_row(params![site, group.code()], |r| r.get(0))
                .optional()?
                .unwrap_or(1),
        };
        self.counters.insert(key, next + 1);
        Ok(next)
    }

    /// The patient an MRN links to: at `site` when the row names one, else the one
    /// patient with that MRN at any site (two sites: ambiguous).
    pub fn find_patient(&self, mrn: &str, site: Option<&str>) -> Result<PatientMatch> {
        find_by_hash(&self.tx, &self.hasher.hash(mrn), site)
    }

    /// Inserts a new patient or updates a changed one; an identical row changes nothing.
    pub fn upsert_patient(&mut self, mrn: &str, rec: &PatientRecord) -> Result<Upsert> {
        let row = PatientRow::new(self.hasher, self.protocol, mrn, rec.clone());
        Ok(self
            .upsert_patients(&[row])?
            .pop()
            .expect("one outcome per row"))
    }

    /// Upserts many patients ((site, MRN) pairs distinct). Study IDs are handed out and the audit
    /// trail written in the rows' order; the table and its indexes are written in the
    /// order of the MRN hashes, which keeps a bulk import's index pages few and warm.
    pub fn upsert_patients(&mut self, rows: &[PatientRow]) -> Result<Vec<Upsert>> {
        let hashes: Vec<&str> = rows.iter().map(|r| r.mrn_hash.as_str()).collect();
        let mut by_hash: Vec<usize> = (0..rows.len()).collect();
        by_hash.sort_unstable_by(|a, b| hashes[*a].cmp(hashes[*b]));

        let mut existing: Vec<Option<(i64, String, PatientRecord)>> = vec![None; rows.len()];
        {
            // A patient is one MRN at one site: the same MRN at the other site is
            // another person.
            let mut st = self.tx.prepare_cached(&format!(
                "SELECT id, study_id, {RECORD_COLS} FROM patients WHERE mrn_hash = unhex(?1) AND site = ?2"
            ))?;
            for &i in &by_hash {
                existing[i] = st
                    .query_row(params![hashes[i], rows[i].record.site], |r| {
                        Ok((r.get(0)?, r.get(1)?, read_record(r, 2)?))
                    })
                    .optional()?;
            }
        }

        // In file order: study IDs for new patients, updates of changed ones.
        let mut outcomes = Vec::with_capacity(rows.len());
        let mut before: Vec<Option<String>> = vec![None; rows.len()];
        for (i, PatientRow { record: rec, .. }) in rows.iter().enumerate() {
            match &existing[i] {
                Some((_, sid, old)) if old == rec => outcomes.push(Upsert::Unchanged(sid.clone())),
                Some((id, sid, old)) => {
                    self.update_patient_record(*id, rec)?;
                    before[i] = Some(json(old));
                    outcomes.push(Upsert::Updated(sid.clone()));
                }
                None => {
                    let n = self.next_study_number(&rec.site, rec.group)?;
                    outcomes.push(Upsert::Inserted(format!(
                        "{}-{}-{:04}",
                        rec.site,
                        rec.group.code(),
                        n
                    )));
                }
            }
        }

        // In hash order: the new rows.
        let now = now_utc();
        {
            let mut st = self.tx.prepare_cached(
                "INSERT INTO patients (study_id, mrn_hash, site, grp, phase, sex, age, index_date, bmi, \
                 deformity, implant, pathological_fracture, malignancy, steroid_long_term, radio_chemo_last, \
                 decision, reasons, pending, flags, who_stage, updated_at, updated_by, missing_dxa) \
                 VALUES (?1,unhex(?2),?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21,?22,?23)",
            )?;
            for &i in &by_hash {
                let Upsert::Inserted(sid) = &outcomes[i] else {
                    continue;
                };
                let rec = &rows[i].record;
                let s = &rows[i].new_screening;
                st.execute(params![
                    sid,
                    hashes[i],
                    rec.site,
                    rec.group.code(),
                    rec.phase.code(),
                    rec.sex.map(|s| s.code()),
                    rec.age,
                    rec.index_date.map(|d| d.to_string()),
                    rec.bmi,
                    bool_col(rec.deformity),
                    bool_col(rec.implant),
                    bool_col(rec.pathological_fracture),
                    bool_col(rec.malignancy),
                    bool_col(rec.steroid_long_term),
                    radio_chemo_col(rec.radio_chemo_last),
                    s.decision.code(),
                    join(&s.reasons),
                    join(&s.pending),
                    join(&s.flags),
                    s.op_reading.who_stage().map(|w| w.label()),
                    now,
                    self.actor,
                    s.flags.contains(&Flag::MissingDxa),
                ])?;
            }
        }

        // In file order: the audit trail.
        for (i, outcome) in outcomes.iter().enumerate() {
            let (action, sid) = match outcome {
                Upsert::Unchanged(_) => continue,
                Upsert::Updated(sid) => ("patient.update", sid),
                Upsert::Inserted(sid) => ("patient.add", sid),
            };
            self.audit.append(
                &self.tx,
                &Change {
                    action,
                    entity: "patient",
                    entity_id: sid,
                    patient: Some(sid),
                    before: before[i].take(),
                    after: Some(rows[i].record_json.clone()),
                    reason: Some("patients import"),
                },
            )?;
        }
        Ok(outcomes)
    }

    /// Overwrites a stored patient's imported fields and rescreens them.
    fn update_patient_record(&mut self, id: i64, rec: &PatientRecord) -> Result<()> {
        self.tx
            .prepare_cached(
                "UPDATE patients SET site=?2, grp=?3, phase=?4, sex=?5, age=?6, index_date=?7, bmi=?8, \
                 deformity=?9, implant=?10, pathological_fracture=?11, malignancy=?12, \
                 steroid_long_term=?13, radio_chemo_last=?14 WHERE id = ?1",
            )?
            .execute(params![
                id,
                rec.site,
                rec.group.code(),
                rec.phase.code(),
                rec.sex.map(|s| s.code()),
                rec.age,
                rec.index_date.map(|d| d.to_string()),
                rec.bmi,
                bool_col(rec.deformity),
                bool_col(rec.implant),
                bool_col(rec.pathological_fracture),
                bool_col(rec.malignancy),
                bool_col(rec.steroid_long_term),
                radio_chemo_col(rec.radio_chemo_last),
            ])?;
        let (_, s, _, _) = screen_stored(&self.tx, self.protocol, id)?;
        store_screening(&self.tx, id, &s, self.actor)
    }

    /// Adds or updates one region of a DXA scan of a known patient.
    pub fn upsert_dxa(&mut self, patient: (i64, &str), rec: &DxaRecord) -> Result<Upsert> {
        let (pid, sid) = patient;
        let date = rec.scan_date.to_string();
        let existing: Option<(f64, Option<f64>, Option<f64>)> = self
            .tx
            .prepare_cached(
                "SELECT t_score, z_score, bmd_g_cm2 FROM dxa_scans WHERE patient_id = ?1 AND scan_date = ?2 AND region = ?3",
            )?
            .query_row(params![pid, date, rec.region.code()], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?;
        let entity_id = format!("{sid}/{date}/{}", rec.region);
        let new = (rec.t_score, rec.z_score, rec.bmd_g_cm2);
        match existing {
            Some(old) if old == new => return Ok(Upsert::Unchanged(entity_id)),
            _ => {}
        }
        self.tx
            .prepare_cached(
                "INSERT INTO dxa_scans (patient_id, scan_date, region, t_score, z_score, bmd_g_cm2) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (patient_id, scan_date, region) DO UPDATE SET \
                 t_score = excluded.t_score, z_score = excluded.z_score, bmd_g_cm2 = excluded.bmd_g_cm2",
            )?
            .execute(params![pid, date, rec.region.code(), rec.t_score, rec.z_score, rec.bmd_g_cm2])?;
        self.dirty.insert(pid);
        let before = existing.map(|(t, z, b)| {
            json(&serde_json::json!({"t_score": t, "z_score": z, "bmd_g_cm2": b}))
        });
        self.audit_import(("dxa", "dxa_scan"), entity_id, sid, before, json(rec))
    }

    /// Adds or updates one lab result of a known patient: the canonical value and
    /// unit, and the value and unit as reported (migration 0008).
    pub fn upsert_lab(&mut self, patient: (i64, &str), rec: &LabRecord) -> Result<Upsert> {
        let (pid, sid) = patient;
        let date = rec.date.to_string();
        type Stored = (f64, String, Option<f64>, Option<String>);
        let existing: Option<Stored> = self
            .tx
            .prepare_cached(
                "SELECT value, unit, original_value, original_unit FROM labs \
                 WHERE patient_id = ?1 AND date = ?2 AND analyte = ?3",
            )?
            .query_row(params![pid, date, rec.analyte], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()?;
        let entity_id = format!("{sid}/{date}/{}", rec.analyte);
        if existing.as_ref().is_some_and(|(v, u, ov, ou)| {
            *v == rec.value
                && *u == rec.unit
                && *ov == Some(rec.original_value)
                && ou.as_deref() == Some(rec.original_unit.as_str())
        }) {
            return Ok(Upsert::Unchanged(entity_id));
        }
        self.tx
            .prepare_cached(
                "INSERT INTO labs (patient_id, date, analyte, value, unit, original_value, original_unit) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                 ON CONFLICT (patient_id, date, analyte) DO UPDATE SET value = excluded.value, \
                 unit = excluded.unit, original_value = excluded.original_value, \
                 original_unit = excluded.original_unit",
            )?
            .execute(params![
                pid,
                date,
                rec.analyte,
                rec.value,
                rec.unit,
                rec.original_value,
                rec.original_unit
            ])?;
        let before = existing.map(|(v, u, ov, ou)| {
            json(&serde_json::json!({
                "value": v, "unit": u, "original_value": ov, "original_unit": ou
            }))
        });
        self.audit_import(("lab", "lab"), entity_id, sid, before, json(rec))
    }

    /// Records an imported row of a patient's results: `kind.add`, or `kind.update`
    /// with the values it replaced.
    fn audit_import(
        &mut self,
        (kind, entity): (&str, &str),
        entity_id: String,
        study_id: &str,
        before: Option<String>,
        after: String,
    ) -> Result<Upsert> {
        let updated = before.is_some();
        let action = format!("{kind}.{}", if updated { "update" } else { "add" });
        let reason = format!("{kind} import");
        self.audit.append(
            &self.tx,
            &Change {
                action: &action,
                entity,
                entity_id: &entity_id,
                patient: Some(study_id),
                before,
                after: Some(after),
                reason: Some(&reason),
            },
        )?;
        Ok(if updated {
            Upsert::Updated(entity_id)
        } else {
            Upsert::Inserted(entity_id)
        })
    }

    /// Rescreens the patients whose DXA changed, closes the audit segment and commits.
    pub fn commit(mut self) -> Result<u64> {
        for ((site, group), next) in std::mem::take(&mut self.counters) {
            self.tx
                .prepare_cached(
                    "INSERT INTO study_id_counters (site, grp, next) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (site, grp) DO UPDATE SET next = excluded.next",
                )?
                .execute(params![site, group.code(), next])?;
        }
        for id in std::mem::take(&mut self.dirty) {
            let (_, s, _, _) = screen_stored(&self.tx, self.protocol, id)?;
            store_screening(&self.tx, id, &s, self.actor)?;
        }
        let n = self.audit.appended();
        self.audit.finish(&self.tx)?;
        self.tx.commit()?;
        Ok(n)
    }
}
