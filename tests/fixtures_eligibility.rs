//! The hand-written demo fixtures (fixtures/demo) against the real import and
//! screening: every patient's stored decision, flags and WHO stage must equal the
//! expectation columns of patients.csv; the bad rows of patients_bad.csv must be
//! rejected, and only they; and no identifier may reach the (encrypted) database.

use marrow::db::Study;
use marrow::domain::protocol::Protocol;
use marrow::import::{ImportKind, ImportReport, import_csv};
use rusqlite::types::ValueRef;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/demo")
        .join(name)
}

/// Copies a fixture into `dir`, so that files written beside it stay out of the repository.
fn copy_fixture(dir: &Path, name: &str) -> PathBuf {
    let to = dir.join(name);
    std::fs::copy(fixture(name), &to).unwrap_or_else(|e| panic!("copy {name}: {e}"));
    to
}

fn new_study(dir: &Path) -> (PathBuf, Study) {
    let db = dir.join("study.db");
    Study::init(&db, None, Protocol::default()).expect("init study");
    let study = Study::open(&db, None, None).expect("open study");
    (db, study)
}

fn import(study: &mut Study, kind: ImportKind, path: &Path) -> ImportReport {
    import_csv(study, kind, path, |_, _| {})
        .unwrap_or_else(|e| panic!("import {}: {e}", path.display()))
}

/// One CSV row by column name.
struct Row {
    line: u64,
    fields: HashMap<String, String>,
    width_ok: bool,
    /// The row's last field, wherever its header puts it.
    last: String,
}

impl Row {
    fn get(&self, name: &str) -> &str {
        self.fields.get(name).map(String::as_str).unwrap_or("")
    }
}

/// Reads a fixture with its own header; rows of the wrong width are kept (`width_ok` false).
fn read_rows(path: &Path) -> Vec<Row> {
    let mut r = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let headers: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            Row {
                line: rec.position().unwrap().line(),
                width_ok: rec.len() == headers.len(),
                last: rec.iter().next_back().unwrap_or("").trim().to_string(),
                fields: headers
                    .iter()
                    .cloned()
                    .zip(rec.iter().map(|f| f.trim().to_string()))
                    .collect(),
            }
        })
        .collect()
}

fn set(s: &str, sep: char) -> BTreeSet<String> {
    s.split(sep)
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

fn import_demo(dir: &Path, study: &mut Study) {
    for (kind, name) in [
        (ImportKind::Patients, "patients.csv"),
        (ImportKind::Dxa, "dxa.csv"),
        (ImportKind::Labs, "labs.csv"),
    ] {
        let path = copy_fixture(dir, name);
        let report = import(study, kind, &path);
        assert!(
            report.rejected.is_empty(),
            "{name}: fixture rows were rejected: {:?}",
            report.rejected
        );
        assert_eq!(
            report.inserted,
            read_rows(&path).len() as u64,
            "{name}: every row is new"
        );
        assert!(report.rejected_file.is_none());
    }
}

#[test]
fn every_fixture_patient_gets_the_expected_decision_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let (_db, mut study) = new_study(dir.path());
    import_demo(dir.path(), &mut study);

    let rows = read_rows(&fixture("patients.csv"));
    assert!(rows.len() >= 30, "the fixture has {} patients", rows.len());
    let mut failures = Vec::new();
    let mut seen_decisions = BTreeSet::new();
    for row in &rows {
        let mrn = row.get("mrn");
        let (study_id, decision, flags, who): (String, String, String, Option<String>) = study
            .conn()
            .query_row(
                "SELECT study_id, decision, flags, who_stage FROM patients WHERE mrn_hash = unhex(?1)",
                [study.identifier_hash(mrn)],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap_or_else(|e| panic!("{mrn} ({}): not stored: {e}", row.get("note")));
        let want_decision = row.get("expect_decision");
        let want_flags = set(row.get("expect_flags"), ';');
        let want_who = row.get("expect_who_stage");
        let got_flags = set(&flags, ',');
        let got_who = who.unwrap_or_default();
        if decision != want_decision || got_flags != want_flags || got_who != want_who {
            failures.push(format!(
                "{mrn} ({study_id}, line {}): {}\n    got decision {decision}, flags {got_flags:?}, WHO stage '{got_who}'\n    expected {want_decision}, flags {want_flags:?}, WHO stage '{want_who}'",
                row.line,
                row.get("note"),
            ));
        }
        seen_decisions.insert(want_decision.to_string());
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixture patients differ from their expectations:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
    assert_eq!(
        seen_decisions.into_iter().collect::<Vec<_>>(),
        ["eligible", "ineligible", "pending"],
        "the fixture covers every decision"
    );

    // Every one of the six cohorts, in both phases where the fixture has them.
    let cohorts: i64 = study
        .conn()
        .query_row(
            "SELECT count(*) FROM (SELECT DISTINCT site, grp FROM patients)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(cohorts, 6);
}

#[test]
fn bad_rows_are_rejected_and_only_they() {
    let dir = tempfile::tempdir().unwrap();
    let (_db, mut study) = new_study(dir.path());
    let path = copy_fixture(dir.path(), "patients_bad.csv");
    let report = import(&mut study, ImportKind::Patients, &path);

    // The first column of the fixture says which rows must fail and why (it comes
    // first so that a row with a stray comma still carries it in place).
    let rows = read_rows(&path);
    let expected: Vec<(u64, String)> = rows
        .iter()
        .filter(|r| !r.get("expect_reject").is_empty())
        .map(|r| (r.line, r.get("expect_reject").to_string()))
        .collect();
    assert!(
        expected.len() >= 6,
        "the fixture has {} bad rows",
        expected.len()
    );
    let got: Vec<u64> = report.rejected.iter().map(|r| r.line).collect();
    let want: Vec<u64> = expected.iter().map(|e| e.0).collect();
    assert_eq!(got, want, "rejected lines: {:#?}", report.rejected);
    for ((line, needle), rejection) in expected.iter().zip(&report.rejected) {
        assert!(
            rejection.reason.contains(needle.as_str()),
            "line {line}: reason '{}' does not mention '{needle}'",
            rejection.reason
        );
    }
    let good = rows.len() - expected.len();
    assert_eq!(report.rows, rows.len() as u64);
    assert_eq!(report.inserted, good as u64);
    let stored: i64 = study
        .conn()
        .query_row("SELECT count(*) FROM patients", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, good as i64);

    // The rejected rows are written beside the input, with their reasons.
    let rejected_file = dir.path().join("patients_bad.rejected.csv");
    assert_eq!(
        report.rejected_file.as_deref(),
        Some(rejected_file.as_path())
    );
    let rejected_rows = read_rows(&rejected_file);
    assert_eq!(rejected_rows.len(), expected.len());
    for (row, (line, needle)) in rejected_rows.iter().zip(&expected) {
        // `reason` is appended after the row's own fields, even a row with one too many.
        let reason = &row.last;
        assert!(
            reason.starts_with(&format!("line {line}: ")) && reason.contains(needle.as_str()),
            "rejected file, line {line}: reason '{reason}'"
        );
        assert_eq!(row.get("expect_reject"), needle.as_str());
    }
}

#[test]
fn no_identifier_reaches_the_database_and_the_file_is_encrypted() {
    let dir = tempfile::tempdir().unwrap();
    let (db, mut study) = new_study(dir.path());
    import_demo(dir.path(), &mut study);
    let bad = copy_fixture(dir.path(), "patients_bad.csv");
    import(&mut study, ImportKind::Patients, &bad);

    // Identifiers of every fixture row (of a malformed row only the columns before
    // its stray comma, which are still in place).
    let mut needles: BTreeSet<String> = BTreeSet::new();
    for path in [fixture("patients.csv"), fixture("patients_bad.csv")] {
        for row in read_rows(&path) {
            let mut columns = vec!["mrn", "name", "birth_date"];
            if row.width_ok {
                columns.extend(["address", "phone"]);
            }
            for c in columns {
                let v = row.get(c);
                if !v.is_empty() {
                    needles.insert(v.to_lowercase());
                }
            }
        }
    }
    assert!(needles.len() > 100, "{} identifiers", needles.len());

    let conn = study.conn();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(tables.iter().any(|t| t == "patients"), "{tables:?}");
    let mut texts = 0usize;
    let mut leaks = Vec::new();
    for table in &tables {
        let mut st = conn.prepare(&format!("SELECT * FROM \"{table}\"")).unwrap();
        let names: Vec<String> = st.column_names().map(str::to_string).collect();
        let mut rows = st.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            for (i, column) in names.iter().enumerate() {
                let text = match row.get_ref(i).unwrap() {
                    ValueRef::Text(b) | ValueRef::Blob(b) => {
                        String::from_utf8_lossy(b).to_lowercase()
                    }
                    _ => continue,
                };
                texts += 1;
                for n in needles.iter().filter(|n| text.contains(n.as_str())) {
                    leaks.push(format!("{table}.{column} holds '{n}'"));
                }
            }
        }
    }
    assert!(texts > 1_000, "only {texts} text values scanned");
    assert!(
        leaks.is_empty(),
        "identifiers in the database:\n{}",
        leaks.join("\n")
    );

    // The birth date became an age.
    let aged: i64 = conn
        .query_row(
            "SELECT count(*) FROM patients WHERE age IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(aged > 30);

    // On disk the file is not plain SQLite, and no stored value shows through.
    drop(study);
    let raw = std::fs::read(&db).unwrap();
    assert!(raw.len() >= 4096, "database file is {} bytes", raw.len());
    assert!(
        !raw.starts_with(b"SQLite format 3"),
        "the database file is not encrypted"
    );
    let mut wal = db.clone().into_os_string();
    wal.push("-wal");
    for bytes in [raw, std::fs::read(wal).unwrap_or_default()] {
        for plain in [&b"retrospective"[..], b"PKUPH-OA-", b"lumbar_spine"] {
            assert!(
                !bytes.windows(plain.len()).any(|w| w == plain),
                "'{}' is readable in the raw file",
                String::from_utf8_lossy(plain)
            );
        }
    }
}

#[test]
fn synthetic_exports_import_without_rejections() {
    let dir = tempfile::tempdir().unwrap();
    let (_db, mut study) = new_study(dir.path());
    let written = marrow::synth::write_exports(dir.path(), 400, 11).unwrap();
    for (kind, name, rows) in [
        (ImportKind::Patients, "patients.csv", written.patients),
        (ImportKind::Dxa, "dxa.csv", written.dxa),
        (ImportKind::Labs, "labs.csv", written.labs),
    ] {
        let report = import(&mut study, kind, &dir.path().join(name));
        assert!(report.rejected.is_empty(), "{name}: {:?}", report.rejected);
        assert_eq!(report.inserted, rows as u64, "{name}");
    }
    // The mix yields every decision and both flags.
    let count = |sql: &str| -> i64 { study.conn().query_row(sql, [], |r| r.get(0)).unwrap() };
    for d in ["eligible", "ineligible", "pending"] {
        let n = count(&format!(
            "SELECT count(*) FROM patients WHERE decision = '{d}'"
        ));
        assert!(n > 0, "no {d} patient");
    }
    for f in ["missing_dxa", "z_score_applies"] {
        let n = count(&format!(
            "SELECT count(*) FROM patients WHERE flags LIKE '%{f}%'"
        ));
        assert!(n > 0, "no patient flagged {f}");
    }
}
