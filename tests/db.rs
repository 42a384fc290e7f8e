//! The database layer: migrations, encryption, identity rules, concurrent edits.

mod common;
use common::*;
use marrow::db::migrate::{MIGRATIONS, latest_version, migrate};
use marrow::db::{DbError, Study};
use marrow::domain::eligibility::{Answer, Criterion};
use marrow::domain::protocol::Protocol;
use marrow::domain::user::Role;

#[test]
fn migrations_apply_in_order_and_leave_a_valid_schema() {
    let mut conn = rusqlite::Connection::open_in_memory().unwrap();
    assert_eq!(migrate(&mut conn).unwrap(), MIGRATIONS.len() as i64);
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, latest_version());
    for (i, (name, _)) in MIGRATIONS.iter().enumerate() {
        assert!(
            name.starts_with(&format!("{:04}_", i + 1)),
            "migration {name} is out of sequence"
        );
    }
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    let fk: i64 = conn
        .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(fk, 0);
    for table in [
        "meta",
        "users",
        "patients",
        "dxa_scans",
        "labs",
        "screening_answers",
        "audit_log",
    ] {
        let n: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [table],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 1, "table {table} missing");
    }
    // running again is a no-op
    assert_eq!(migrate(&mut conn).unwrap(), latest_version());
    // no migration file stores an identifier column
    for (name, sql) in MIGRATIONS {
        let lower = sql.to_lowercase();
        for banned in [" mrn ", "birth_date", " name text", "patient_name"] {
            let code: String = lower
                .lines()
                .filter(|l| !l.trim_start().starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n");
            assert!(!code.contains(banned), "{name} declares {banned:?}");
        }
    }
}

#[test]
fn a_database_from_a_newer_marrow_is_refused_untouched() {
    let s = TempStudy::init();
    let raw = raw_connection(&s.db);
    raw.pragma_update(None, "user_version", latest_version() + 1)
        .unwrap();
    drop(raw);
    let out = s.run(&["status"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("newer than this marrow"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn as_is_honoured_only_for_admins() {
    let s = TempStudy::init();
    let mut study = s.open();
    study.add_user("alice", Role::Coordinator).unwrap();
    study.add_user("bob", Role::Reader).unwrap();
    drop(study);
    match Study::open_for(&s.db, None, "alice", Some("bob")) {
        Err(DbError::NotAllowed { what, .. }) => assert!(what.contains("--as is for admins")),
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("a coordinator acted as someone else"),
    }
    let as_bob = Study::open_for(&s.db, None, "root", Some("bob")).unwrap();
    assert_eq!(as_bob.actor().name, "bob");
    assert_eq!(as_bob.actor().real, "root");
    assert_eq!(as_bob.role(), Role::Reader);
    match Study::open_for(&s.db, None, "mallory", None) {
        Err(DbError::UnknownUser { admins, .. }) => assert_eq!(admins, "root"),
        _ => panic!("an unknown user got in"),
    }
}

#[test]
fn a_second_user_editing_the_same_patient_is_told_and_nothing_is_overwritten() {
    let s = TempStudy::init();
    let p = s.write("patients.csv", PATIENTS);
    s.expect(&["import", "patients", p.to_str().unwrap()], 0);
    let mut study = s.open();
    study.add_user("cora", Role::Coordinator).unwrap();
    study.add_user("carl", Role::Coordinator).unwrap();
    drop(study);
    let mut cora = Study::open_for(&s.db, None, "root", Some("cora")).unwrap();
    let mut carl = Study::open_for(&s.db, None, "root", Some("carl")).unwrap();
    // both open the patient
    let seen_by_cora = cora.patient("PKUPH-OA-0001").unwrap().summary.version;
    let seen_by_carl = carl.patient("PKUPH-OA-0001").unwrap().summary.version;
    cora.set_answer(
        "PKUPH-OA-0001",
        Criterion::I4,
        Some(Answer::No),
        "valgus deformity",
        Some(seen_by_cora),
    )
    .unwrap();
    let err = carl
        .set_answer(
            "PKUPH-OA-0001",
            Criterion::I4,
            Some(Answer::Yes),
            "looks fine",
            Some(seen_by_carl),
        )
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DbError::Conflict(_)), "{msg}");
    assert!(msg.contains("changed by cora"), "{msg}");
    let now = carl.patient("PKUPH-OA-0001").unwrap();
    let m = now
        .manual
        .iter()
        .find(|m| m.criterion == Criterion::I4)
        .unwrap();
    assert_eq!((m.answer, m.by.as_str()), (Answer::No, "cora"));
}

#[test]
fn no_identifier_reaches_the_database() {
    let s = TempStudy::init();
    let p = s.write("patients.csv", PATIENTS);
    s.expect(&["import", "patients", p.to_str().unwrap()], 0);
    let raw = raw_connection(&s.db);
    let tables: Vec<String> = raw
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    let mut everything = String::new();
    for t in tables {
        let mut st = raw.prepare(&format!("SELECT * FROM \"{t}\"")).unwrap();
        let n = st.column_count();
        let mut rows = st.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            for i in 0..n {
                if let Ok(v) = row.get::<_, String>(i) {
                    everything.push_str(&v);
                    everything.push('\n');
                }
            }
        }
    }
    assert!(everything.contains("PKUPH-OA-0001"), "the scan saw no data");
    for needle in [
        "MRN001",
        "MRN002",
        "MRN003",
        "mrn001",
        "Wang Fang",
        "李娜",
        "Chen Wei",
        "1960-05-01",
        "1950-01-01",
        "1970-03-03",
        "Xizhimen",
    ] {
        assert!(
            !everything.contains(needle),
            "{needle} is stored in the database"
        );
    }
    let bytes = std::fs::read(&s.db).unwrap();
    let wal = std::fs::read(s.db.with_extension("db-wal")).unwrap_or_default();
    for hay in [&bytes, &wal] {
        for needle in ["PKUPH-OA-0001", "audit_log", "SQLite format 3"] {
            assert!(
                !hay.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle} readable in the raw file"
            );
        }
    }
}

#[test]
fn init_refuses_to_overwrite_and_open_never_creates() {
    let s = TempStudy::empty();
    assert!(matches!(
        Study::open(&s.db, None, None),
        Err(DbError::NoDatabase(_))
    ));
    assert!(!s.db.exists());
    Study::init(&s.db, None, Protocol::default()).unwrap();
    assert!(matches!(
        Study::init(&s.db, None, Protocol::default()),
        Err(DbError::AlreadyExists(_))
    ));
}

#[test]
fn worklist_order_is_site_group_then_study_number() {
    use marrow::db::study::{PatientSummary, sort_by_study_id};
    use marrow::domain::eligibility::Decision;
    use marrow::domain::protocol::{Group, Phase};
    let p = |id: &str| PatientSummary {
        study_id: id.into(),
        site: id.split('-').next().unwrap().into(),
        group: Group::Oa,
        phase: Phase::Retrospective,
        sex: None,
        age: None,
        decision: Decision::Pending,
        reasons: vec![],
        pending: vec![],
        flags: vec![],
        who_stage: None,
        version: 1,
    };
    let mut rows = vec![
        p("SYSMH-OA-0001"),
        p("PKUPH-OA-10000"),
        p("PKUPH-OA-9999"),
        p("PKUPH-CONTROL-0002"),
        p("PKUPH-OA-0001"),
    ];
    sort_by_study_id(&mut rows);
    let ids: Vec<&str> = rows.iter().map(|r| r.study_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "PKUPH-CONTROL-0002",
            "PKUPH-OA-0001",
            "PKUPH-OA-9999",
            "PKUPH-OA-10000",
            "SYSMH-OA-0001"
        ]
    );
}

#[test]
fn small_chunks_store_exactly_what_one_chunk_stores() {
    use marrow::import::{ImportKind, import_csv, import_csv_in_chunks};
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/demo");
    let summary = |chunk: Option<usize>| {
        let s = TempStudy::init();
        let mut study = s.open();
        let mut rejected = Vec::new();
        for (name, kind) in [
            ("patients.csv", ImportKind::Patients),
            ("patients_bad.csv", ImportKind::Patients),
            ("dxa.csv", ImportKind::Dxa),
            ("labs.csv", ImportKind::Labs),
        ] {
            let path = s.path(name);
            std::fs::copy(fixtures.join(name), &path).unwrap();
            let report = match chunk {
                Some(n) => import_csv_in_chunks(&mut study, kind, &path, n, |_, _| {}),
                None => import_csv(&mut study, kind, &path, |_, _| {}),
            }
            .unwrap();
            rejected.push(report.rejected);
        }
        // versions count rescreenings, which follow the chunking; the data must not
        let mut patients = study.patients(&Default::default()).unwrap();
        for p in &mut patients {
            p.version = 0;
        }
        let audit: Vec<(String, String)> = study
            .audit_log(None)
            .unwrap()
            .into_iter()
            .map(|r| (r.action, r.entity_id))
            .collect();
        assert!(study.verify_audit().unwrap().first_bad.is_none());
        (patients, audit, rejected)
    };
    let whole = summary(None);
    let chunked = summary(Some(7));
    assert!(whole.0.len() > 40);
    assert_eq!(whole.0, chunked.0);
    assert_eq!(whole.1, chunked.1);
    assert_eq!(whole.2, chunked.2);
}
