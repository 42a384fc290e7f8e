//! Schema migrations: numbered SQL files in `migrations/`, embedded at build time and
//! applied atomically in order, tracked by SQLite's `user_version`.

use super::DbError;
use rusqlite::Connection;

/// The migrations, in order. Migration N (1-based) brings the schema to version N.
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_init.sql",
        include_str!("../../migrations/0001_init.sql"),
    ),
    (
        "0002_imaging.sql",
        include_str!("../../migrations/0002_imaging.sql"),
    ),
    (
        "0003_reading.sql",
        include_str!("../../migrations/0003_reading.sql"),
    ),
    (
        "0004_reading_speed.sql",
        include_str!("../../migrations/0004_reading_speed.sql"),
    ),
    (
        "0005_inference.sql",
        include_str!("../../migrations/0005_inference.sql"),
    ),
    (
        "0006_followup.sql",
        include_str!("../../migrations/0006_followup.sql"),
    ),
    (
        "0007_patient_site_identity.sql",
        include_str!("../../migrations/0007_patient_site_identity.sql"),
    ),
];

/// The schema version this binary writes.
pub fn latest_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// The schema version of an open database.
pub fn current_version(conn: &Connection) -> Result<i64, DbError> {
    Ok(conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
}

/// Applies every migration the database lacks, each in its own transaction.
/// A database from a newer marrow is refused rather than touched.
///
/// Foreign keys are off while migrations run, so one may rebuild a table others
/// refer to (SQLite's 12-step way; the pragma cannot change inside a transaction),
/// and each migration must leave `foreign_key_check` empty before it commits.
pub fn migrate(conn: &mut Connection) -> Result<i64, DbError> {
    let current = current_version(conn)?;
    let latest = latest_version();
    if current > latest {
        return Err(DbError::NewerSchema {
            found: current,
            supported: latest,
        });
    }
    if current == latest {
        return Ok(latest);
    }
    let fk: bool = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?;
    conn.pragma_update(None, "foreign_keys", false)?;
    let out = apply(conn, current);
    if fk {
        conn.pragma_update(None, "foreign_keys", true)?;
    }
    out.map(|()| latest)
}

fn apply(conn: &mut Connection, current: i64) -> Result<(), DbError> {
    for (i, (name, sql)) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = i as i64 + 1;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Another process may have migrated while we waited for the lock.
        let now: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if now >= version {
            continue;
        }
        tx.execute_batch(sql)
            .map_err(|e| DbError::Invalid(format!("migration {name} failed: {e}")))?;
        let broken: i64 =
            tx.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })?;
        if broken > 0 {
            return Err(DbError::Invalid(format!(
                "migration {name} failed: it leaves {broken} rows referring to rows that are gone"
            )));
        }
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
    }
    Ok(())
}
