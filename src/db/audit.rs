//! The append-only, hash-chained audit trail. Each row's SHA-256 covers its own
//! fields and the previous row's hash, so altering or removing a row breaks the
//! chain from that row on; `meta.audit_head` also remembers the last row, so
//! cutting rows off the end is caught too.

use super::{Result, now_utc};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first row.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Who is acting: the user the action is for, and the OS user who ran it (`--as`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Actor {
    pub name: String,
    pub real: String,
}

/// One change to record.
#[derive(Debug, Clone)]
pub struct Change<'a> {
    pub action: &'a str,
    pub entity: &'a str,
    pub entity_id: &'a str,
    /// The study ID of the patient the change concerns, if any.
    pub patient: Option<&'a str>,
    pub before: Option<String>,
    pub after: Option<String>,
    pub reason: Option<&'a str>,
}

/// A stored audit row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRow {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub real_actor: String,
    pub action: String,
    pub entity: String,
    pub entity_id: String,
    pub patient: Option<String>,
    pub before: Option<String>,
    pub after: Option<String>,
    pub reason: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

/// SHA-256 over a row's fields and the previous hash.
#[allow(clippy::too_many_arguments)]
pub fn row_hash(
    id: i64,
    at: &str,
    actor: &str,
    real_actor: &str,
    action: &str,
    entity: &str,
    entity_id: &str,
    patient: Option<&str>,
    before: Option<&str>,
    after: Option<&str>,
    reason: Option<&str>,
    prev_hash: &str,
) -> String {
    // Each field is length-prefixed (and an absent one marked apart from an empty
    // one), so no two different rows can feed the same bytes to the hash.
    let mut h = Sha256::new();
    h.update(id.to_le_bytes());
    let text_fields = [at, actor, real_actor, action, entity, entity_id];
    for f in text_fields {
        h.update((f.len() as u64).to_le_bytes());
        h.update(f.as_bytes());
    }
    for f in [patient, before, after, reason] {
        match f {
            Some(f) => {
                h.update((f.len() as u64).to_le_bytes());
                h.update(f.as_bytes());
            }
            None => h.update(u64::MAX.to_le_bytes()),
        }
    }
    h.update(prev_hash.as_bytes());
    hex::encode(h.finalize())
}

fn stored_hash(r: &AuditRow) -> String {
    row_hash(
        r.id,
        &r.at,
        &r.actor,
        &r.real_actor,
        &r.action,
        &r.entity,
        &r.entity_id,
        r.patient.as_deref(),
        r.before.as_deref(),
        r.after.as_deref(),
        r.reason.as_deref(),
        &r.prev_hash,
    )
}

/// Appends rows inside one write transaction, carrying the chain in memory.
pub struct AuditWriter {
    /// The last timestamp written and its millisecond, so a bulk import formats it once per ms.
    clock: (i64, String),
    next_id: i64,
    prev_hash: String,
    actor: Actor,
    appended: u64,
}

impl AuditWriter {
    /// Starts at the current end of the chain. Call inside an IMMEDIATE transaction so
    /// no other writer can append between this read and the commit.
    pub fn begin(tx: &Transaction, actor: &Actor) -> Result<AuditWriter> {
        let last: Option<(i64, String)> = tx
            .query_row(
                "SELECT id, lower(hex(hash)) FROM audit_log ORDER BY id DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let (id, hash) = last.unwrap_or((0, GENESIS.to_string()));
        Ok(AuditWriter {
            clock: (i64::MIN, String::new()),
            next_id: id + 1,
            prev_hash: hash,
            actor: actor.clone(),
            appended: 0,
        })
    }

    /// Records one change.
    pub fn append(&mut self, tx: &Transaction, c: &Change) -> Result<()> {
        let ms = chrono::Utc::now().timestamp_millis();
        if ms != self.clock.0 {
            self.clock = (ms, now_utc());
        }
        let at = self.clock.1.clone();
        let hash = row_hash(
            self.next_id,
            &at,
            &self.actor.name,
            &self.actor.real,
            c.action,
            c.entity,
            c.entity_id,
            c.patient,
            c.before.as_deref(),
            c.after.as_deref(),
            c.reason,
            &self.prev_hash,
        );
        tx.prepare_cached(
            "INSERT INTO audit_log (id, at, actor, real_actor, action, entity, entity_id, patient, \
             before, after, reason, prev_hash, hash) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,unhex(?12),unhex(?13))",
        )?
        .execute(params![
            self.next_id,
            at,
            self.actor.name,
            self.actor.real,
            c.action,
            c.entity,
            c.entity_id,
            c.patient,
            c.before,
            c.after,
            c.reason,
            self.prev_hash,
            hash
        ])?;
        self.prev_hash = hash;
        self.next_id += 1;
        self.appended += 1;
        Ok(())
    }

    /// Rows appended so far.
    pub fn appended(&self) -> u64 {
        self.appended
    }

    /// Records the new end of the chain; call before committing.
    pub fn finish(self, tx: &Transaction) -> Result<()> {
        if self.appended > 0 {
            tx.prepare_cached(
                "INSERT INTO meta (key, value) VALUES ('audit_head', ?1) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute([format!("{}:{}", self.next_id - 1, self.prev_hash)])?;
        }
        Ok(())
    }
}

fn read_row(r: &rusqlite::Row) -> rusqlite::Result<AuditRow> {
    Ok(AuditRow {
        id: r.get(0)?,
        at: r.get(1)?,
        actor: r.get(2)?,
        real_actor: r.get(3)?,
        action: r.get(4)?,
        entity: r.get(5)?,
        entity_id: r.get(6)?,
        patient: r.get(7)?,
        before: r.get(8)?,
        after: r.get(9)?,
        reason: r.get(10)?,
        prev_hash: r.get(11)?,
        hash: r.get(12)?,
    })
}

const COLUMNS: &str = "id, at, actor, real_actor, action, entity, entity_id, patient, before, after, reason, \
     lower(hex(prev_hash)), lower(hex(hash))";

/// The trail, oldest first; only the rows of one patient when asked.
pub fn log(conn: &Connection, patient: Option<&str>) -> Result<Vec<AuditRow>> {
    let rows = match patient {
        Some(p) => {
            let mut st = conn.prepare(&format!(
                "SELECT {COLUMNS} FROM audit_log WHERE patient = ?1 ORDER BY id"
            ))?;
            st.query_map([p], read_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?
        }
        None => {
            let mut st = conn.prepare(&format!("SELECT {COLUMNS} FROM audit_log ORDER BY id"))?;
            st.query_map([], read_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?
        }
    };
    Ok(rows)
}

/// The outcome of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    pub rows: u64,
    /// The first row that fails, and why; `None` when the whole chain holds.
    pub first_bad: Option<(i64, String)>,
}

/// Walks the whole chain and names the first row that does not hold.
pub fn verify(conn: &Connection) -> Result<Verification> {
    let mut st = conn.prepare(&format!("SELECT {COLUMNS} FROM audit_log ORDER BY id"))?;
    let rows = st.query_map([], read_row)?;
    let mut prev = GENESIS.to_string();
    let mut expected_id = 1;
    let mut count = 0u64;
    for row in rows {
        let r = row?;
        count += 1;
        if r.id != expected_id {
            return Ok(Verification {
                rows: count,
                first_bad: Some((
                    r.id,
                    format!("row {expected_id} is missing (the next row is {})", r.id),
                )),
            });
        }
        if r.prev_hash != prev {
            return Ok(Verification {
                rows: count,
                first_bad: Some((
                    r.id,
                    "its prev_hash does not match the row before it (a row was changed or removed)"
                        .into(),
                )),
            });
        }
        if stored_hash(&r) != r.hash {
            return Ok(Verification {
                rows: count,
                first_bad: Some((
                    r.id,
                    "its content does not match its hash (the row was altered)".into(),
                )),
            });
        }
        prev = r.hash;
        expected_id += 1;
    }
    let head: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = 'audit_head'", [], |r| {
            r.get(0)
        })
        .optional()?;
    if let Some(head) = head {
        let (id, hash) = head.split_once(':').unwrap_or(("0", ""));
        let id: i64 = id.parse().unwrap_or(0);
        if id != expected_id - 1 || hash != prev {
            return Ok(Verification {
                rows: count,
                first_bad: Some((
                    id,
                    format!(
                        "the trail should end at row {id} but ends at row {} (rows were removed from the end)",
                        expected_id - 1
                    ),
                )),
            });
        }
    } else if count > 0 {
        return Ok(Verification {
            rows: count,
            first_bad: Some((0, "the record of the trail's end is missing".into())),
        });
    }
    Ok(Verification {
        rows: count,
        first_bad: None,
    })
}
