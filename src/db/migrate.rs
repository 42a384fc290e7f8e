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
    (
        "0008_lab_units.sql",
        include_str!("../../migrations/0008_lab_units.sql"),
    ),
    (
        "0009_baseline_visit.sql",
        include_str!("../../migrations/0009_baseline_visit.sql"),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::records::analyte_units;
    use rusqlite::params;

    #[test]
    fn migration_0008_converts_stored_labs_as_the_import_does_and_keeps_the_original() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
        let at = MIGRATIONS
            .iter()
            .position(|(n, _)| n.starts_with("0008_"))
            .unwrap();
        for (_, sql) in &MIGRATIONS[..at] {
            conn.execute_batch(sql).unwrap();
        }
        let rows = [
            ("calcium", 9.2, "mg/dL"),
            ("calcium", 2.31, "mmol/L"),
            ("phosphorus", 3.5, "MG/DL"),
            ("vitamin_d_25oh", 18.4, "ng/mL"),
            ("pth", 45.0, "pg/mL"),
            ("beta_ctx", 420.0, "pg/mL"),
            ("p1np", 48.0, "µg/L"),
            ("p1np", 50.0, "mcg/L"),
            ("alp", 80.0, "IU/L"),
            ("pth", 45.0, "mmol/L"),
            ("p1np", 48.0, "kg"),
        ];
        for (i, (a, v, u)) in rows.iter().enumerate() {
            conn.execute(
                "INSERT INTO labs (patient_id, date, analyte, value, unit) VALUES (1, ?1, ?2, ?3, ?4)",
                params![format!("2024-01-{:02}", i + 1), a, v, u],
            )
            .unwrap();
        }
        let tx = conn.transaction().unwrap();
        tx.execute_batch(MIGRATIONS[at].1).unwrap();
        tx.commit().unwrap();
        let mut st = conn
            .prepare("SELECT value, unit, original_value, original_unit FROM labs ORDER BY date")
            .unwrap();
        let got: Vec<(f64, String, Option<f64>, Option<String>)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(got.len(), rows.len());
        for ((a, v, u), g) in rows.iter().zip(got) {
            let units = analyte_units(a).unwrap();
            let want = match units.to_canonical(*v, u) {
                Some(c) => (
                    c,
                    units.canonical.to_string(),
                    Some(*v),
                    Some(u.to_string()),
                ),
                // a unit the analyte does not accept: left as it was
                None => (*v, u.to_string(), None, None),
            };
            assert_eq!(g, want, "{a} {v} {u}");
        }
    }
}
