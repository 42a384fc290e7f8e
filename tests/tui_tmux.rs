//! End to end in a real terminal: the `marrow` binary inside tmux, driven by
//! `tmux send-keys`, answering a criterion by hand; the database must then hold the
//! answer and its audit row.

mod common;
use common::tmux::{Tmux, shell_quote};
use marrow::db::Study;
use marrow::domain::eligibility::{Answer, Criterion};
use marrow::domain::protocol::Protocol;
use marrow::import::{ImportKind, import_csv};
use std::path::Path;
use std::time::Duration;

const PATIENTS: &str = "\
mrn,site,phase,group,sex,birth_date,index_date,deformity,implant,pathological_fracture,malignancy,steroid_long_term,radio_chemo_last
A1,PKUPH,retrospective,OA,F,1960-03-15,2024-03-14,,no,no,no,no,none
A2,PKUPH,retrospective,OA,M,1955-07-01,2024-02-01,no,no,no,no,no,none
B1,SYSMH,prospective,OP,F,1948-11-30,2025-12-10,no,no,no,no,no,
";

#[test]
fn answer_a_criterion_in_the_tui_and_find_it_in_the_audit_trail() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    Study::init(&db, None, Protocol::default()).unwrap();
    {
        let mut study = Study::open(&db, None, None).unwrap();
        let csv = dir.path().join("patients.csv");
        std::fs::write(&csv, PATIENTS).unwrap();
        let report = import_csv(&mut study, ImportKind::Patients, &csv, |_, _| {}).unwrap();
        assert_eq!(report.inserted, 3, "{report:?}");
        let p = study.patient("PKUPH-OA-0001").unwrap();
        assert!(p.manual.is_empty());
    }

    let command = format!(
        "{} --db {}; echo MARROW-EXIT=$?; sleep 600",
        shell_quote(Path::new(env!("CARGO_BIN_EXE_marrow"))),
        shell_quote(&db)
    );
    let tmux = Tmux::start(100, 30, &command);
    let wait = Duration::from_secs(20);

    let screen = tmux.wait_for("Patients 3 of 3", wait);
    assert!(screen.contains("PKUPH-OA-0002"), "{screen}");

    // search, keep the search, open the patient
    tmux.type_text("/");
    tmux.type_text("oa-0001");
    tmux.wait_for("Patients 1 of 3", wait);
    tmux.keys(&["Enter"]);
    tmux.keys(&["Enter"]);
    tmux.wait_for("Target area free of deformity", wait);

    // down to I4, open the popup, answer yes with a reason, save
    tmux.keys(&["j", "j", "j"]);
    tmux.wait_for("I4 · Target area free of deformity", wait);
    tmux.keys(&["Enter"]);
    tmux.wait_for("Answer I4 by hand", wait);
    tmux.keys(&["y"]);
    tmux.type_text("X-ray shows no deformity");
    tmux.wait_for("X-ray shows no deformity", wait);
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("saved: PKUPH-OA-0001 I4 set to met", wait);
    assert!(screen.contains("eligible"), "{screen}");

    // back to the worklist, quit
    tmux.keys(&["Escape"]);
    // Wait for the worklist: an Escape followed at once by `q` reads as Alt-q.
    tmux.wait_for("Patients 1 of 3", wait);
    tmux.keys(&["q"]);
    tmux.wait_for("MARROW-EXIT=0", wait);

    let study = Study::open(&db, None, None).unwrap();
    let p = study.patient("PKUPH-OA-0001").unwrap();
    let m = p
        .manual
        .iter()
        .find(|m| m.criterion == Criterion::I4)
        .expect("a manual answer of I4");
    assert_eq!(m.answer, Answer::Yes);
    assert_eq!(m.reason, "X-ray shows no deformity");
    let audit = study.audit_log(Some("PKUPH-OA-0001")).unwrap();
    assert!(
        audit.iter().any(|r| r.action == "screening.set"
            && r.reason.as_deref() == Some("X-ray shows no deformity")),
        "no screening.set row with the reason in {audit:#?}"
    );
}
