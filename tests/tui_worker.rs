//! The TUI's database worker on a real (temporary) study, and the headless app driven
//! through it: keys in, requests to the worker, responses back, state checked.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use marrow::db::Study;
use marrow::domain::eligibility::{Answer, Criterion, Decision};
use marrow::domain::protocol::Protocol;
use marrow::domain::user::Role;
use marrow::import::{ImportKind, import_csv};
use marrow::tui::worker::Worker;
use marrow::tui::{App, LoadState, MessageKind, Request, Response, SaveFailure, Screen, SetAnswer};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

const PATIENTS: &str = "\
mrn,site,phase,group,sex,birth_date,index_date,deformity,implant,pathological_fracture,malignancy,steroid_long_term,radio_chemo_last
A1,PKUPH,retrospective,OA,F,1960-03-15,2024-03-14,,no,no,no,no,none
A2,PKUPH,retrospective,OA,M,1955-07-01,2024-02-01,no,no,no,no,no,none
B1,SYSMH,prospective,OP,F,1948-11-30,2025-12-10,no,no,no,no,no,
";

fn study(dir: &Path) -> PathBuf {
    let db = dir.join("s.db");
    Study::init(&db, None, Protocol::default()).unwrap();
    let mut s = Study::open(&db, None, None).unwrap();
    let csv = dir.join("patients.csv");
    std::fs::write(&csv, PATIENTS).unwrap();
    import_csv(&mut s, ImportKind::Patients, &csv, |_, _| {}).unwrap();
    s.add_user("dr-pi", Role::Pi).unwrap();
    db
}

fn spawn(db: &Path, as_user: Option<&str>) -> (Worker, marrow::tui::Session, Receiver<Response>) {
    let (tx, rx) = mpsc::channel();
    let (w, session) = Worker::spawn(
        db.to_path_buf(),
        None,
        as_user.map(String::from),
        move |r| {
            let _ = tx.send(r);
        },
    )
    .expect("worker opens the study");
    (w, session, rx)
}

fn next(rx: &Receiver<Response>) -> Response {
    rx.recv_timeout(Duration::from_secs(20))
        .expect("a response within 20 s")
}

#[test]
fn worker_loads_saves_and_reports_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let db = study(dir.path());
    let (w, session, rx) = spawn(&db, None);
    assert_eq!(session.role, Role::Admin);
    assert_eq!(
        session.sites,
        vec!["PKUPH".to_string(), "SYSMH".to_string()]
    );

    assert!(w.send(Request::LoadWorklist));
    // a study smaller than the first page comes whole at once
    let Response::Worklist { patients, status } = next(&rx) else {
        panic!("expected the worklist")
    };
    assert_eq!(patients.len(), 3);
    assert_eq!(status.unwrap().patients, 3);

    assert!(w.send(Request::LoadPatient {
        study_id: "pkuph-oa-0001".into()
    }));
    let Response::Patient(d) = next(&rx) else {
        panic!("expected the patient")
    };
    assert_eq!(d.summary.decision, Decision::Pending);
    let version = d.summary.version;

    // an out-of-date version is a conflict, with the patient reloaded
    let set = |v: i64, reason: &str| {
        Request::SetAnswer(SetAnswer {
            study_id: "PKUPH-OA-0001".into(),
            criterion: Criterion::I4,
            answer: Some(Answer::Yes),
            reason: reason.into(),
            expected_version: v,
        })
    };
    w.send(set(version - 1, "old screen"));
    match next(&rx) {
        Response::SaveFailed {
            kind: SaveFailure::Conflict,
            fresh: Some(f),
            error,
            ..
        } => {
            assert_eq!(f.summary.version, version);
            assert!(error.contains("nothing was saved"), "{error}");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    w.send(set(version, "x-ray reviewed"));
    match next(&rx) {
        Response::Saved { detail, status, .. } => {
            assert_eq!(detail.summary.decision, Decision::Eligible);
            assert!(detail.summary.version > version);
            // A1 joins A2; B1 (OP) still waits for a DXA
            assert_eq!(status.unwrap().eligibility.eligible, 2);
        }
        other => panic!("expected saved, got {other:?}"),
    }
    w.send(Request::LoadPatient {
        study_id: "NOPE-1".into(),
    });
    assert!(matches!(next(&rx), Response::PatientFailed { .. }));
    w.stop();
}

#[test]
fn worker_refuses_writes_of_a_read_only_role_and_bad_opens() {
    let dir = tempfile::tempdir().unwrap();
    let db = study(dir.path());
    let (w, session, rx) = spawn(&db, Some("dr-pi"));
    assert_eq!(session.role, Role::Pi);
    w.send(Request::SetAnswer(SetAnswer {
        study_id: "PKUPH-OA-0001".into(),
        criterion: Criterion::I4,
        answer: Some(Answer::Yes),
        reason: "trying".into(),
        expected_version: 1,
    }));
    match next(&rx) {
        Response::SaveFailed { kind, error, .. } => {
            assert_eq!(kind, SaveFailure::NotAllowed);
            assert!(error.contains("may not"), "{error}");
        }
        other => panic!("expected not allowed, got {other:?}"),
    }
    drop(w);

    let err = Worker::spawn(dir.path().join("missing.db"), None, None, |_| {})
        .err()
        .expect("no database, no worker");
    assert!(err.contains("no study database"), "{err}");
}

fn press(app: &mut App, w: &Worker, rx: &Receiver<Response>, key: KeyEvent) {
    for r in app.handle_key(key) {
        assert!(w.send(r));
        app.apply(next(rx));
    }
}

fn chars(app: &mut App, w: &Worker, rx: &Receiver<Response>, s: &str) {
    for c in s.chars() {
        press(
            app,
            w,
            rx,
            KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE),
        );
    }
}

fn enter() -> KeyEvent {
    KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)
}

#[test]
fn headless_app_answers_through_the_worker_and_survives_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let db = study(dir.path());
    let (w, session, rx) = spawn(&db, None);
    let mut app = App::new(session);
    for r in app.start() {
        w.send(r);
        app.apply(next(&rx));
    }
    assert_eq!(*app.worklist_state(), LoadState::Loaded);
    assert_eq!(app.visible_len(), 3);

    // open PKUPH-OA-0001, go to I4, type an answer
    chars(&mut app, &w, &rx, "/oa-0001");
    press(&mut app, &w, &rx, enter());
    press(&mut app, &w, &rx, enter());
    assert_eq!(app.screen(), Screen::Patient);
    assert_eq!(
        app.patient_detail().unwrap().summary.study_id,
        "PKUPH-OA-0001"
    );
    chars(&mut app, &w, &rx, "jjj");
    press(&mut app, &w, &rx, enter());
    chars(&mut app, &w, &rx, "yno deformity on the X-ray");

    // meanwhile someone else answers another criterion of the same patient
    {
        let mut other = Study::open(&db, None, None).unwrap();
        other
            .set_answer(
                "PKUPH-OA-0001",
                Criterion::E5,
                Some(Answer::No),
                "seen",
                None,
            )
            .unwrap();
    }
    press(&mut app, &w, &rx, enter());
    let popup = app.popup().expect("the popup stays after a conflict");
    assert_eq!(popup.reason(), "no deformity on the X-ray");
    assert!(popup.error().unwrap().contains("nothing was saved"));
    assert_eq!(app.message().unwrap().kind, MessageKind::Error);

    // Enter again saves against the reloaded version
    press(&mut app, &w, &rx, enter());
    assert!(app.popup().is_none());
    assert_eq!(app.message().unwrap().kind, MessageKind::Success);
    let d = app.patient_detail().unwrap();
    assert_eq!(d.summary.decision, Decision::Eligible);
    assert!(d.manual.iter().any(|m| m.criterion == Criterion::I4));
    w.stop();

    let study = Study::open(&db, None, None).unwrap();
    let audit = study.audit_log(Some("PKUPH-OA-0001")).unwrap();
    assert_eq!(
        audit
            .iter()
            .filter(|r| r.action == "screening.set"
                && r.reason.as_deref() == Some("no deformity on the X-ray"))
            .count(),
        1
    );
}

#[test]
fn a_large_study_shows_its_first_page_before_the_whole_worklist() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    Study::init(&db, None, Protocol::default()).unwrap();
    let exports = dir.path().join("exports");
    std::fs::create_dir_all(&exports).unwrap();
    marrow::synth::write_exports(&exports, 450, 9).unwrap();
    let mut s = Study::open(&db, None, None).unwrap();
    import_csv(
        &mut s,
        ImportKind::Patients,
        &exports.join("patients.csv"),
        |_, _| {},
    )
    .unwrap();
    let all = s.patients(&Default::default()).unwrap();
    drop(s);

    let (w, session, rx) = spawn(&db, None);
    let mut app = App::new(session);
    for r in app.start() {
        assert!(w.send(r));
    }
    let first = next(&rx);
    let Response::WorklistFirstPage { patients, .. } = &first else {
        panic!("expected the first page, got {first:?}")
    };
    assert_eq!(patients.len(), marrow::tui::worker::FIRST_PAGE);
    // the first page is the head of the whole list, in the same order
    assert_eq!(patients[..], all[..patients.len()]);
    app.apply(first);
    assert_eq!(*app.worklist_state(), LoadState::Loading);
    assert_eq!(app.visible_len(), marrow::tui::worker::FIRST_PAGE);
    app.apply(next(&rx));
    assert_eq!(*app.worklist_state(), LoadState::Loaded);
    assert_eq!(app.visible_len(), all.len());
    w.stop();
}
