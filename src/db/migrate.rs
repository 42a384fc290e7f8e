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
        "0008_lab_units.sql",
        include_str!("../../migrations/0008_lab_units.sql"),
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
pub fn migrate(conn: &mut Connection) -> Result<i64, DbError> {
    let current = current_version(conn)?;
    let latest = latest_version();
    if current > latest {
        return Err(DbError::NewerSchema {
            found: current,
            supported: latest,
        });
    }
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
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
    }
    Ok(latest)
}
