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

/// Issue 7 ("Over SSH"): the TUI under the terminal types an SSH session brings
/// (xterm-256color, screen-256color, tmux-256color) and with NO_COLOR: each main
/// screen draws (worklist, patient, dashboard, follow-up, jobs, model, agreement,
/// adjudication queue, help), and the program quits with status 0. With NO_COLOR no
/// colour escape (SGR 30-49, 90-107, 38;5/38;2) reaches the terminal; without it,
/// colours do.
#[test]
fn every_main_screen_draws_under_each_term_and_without_colour() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    Study::init(&db, None, Protocol::default()).unwrap();
    {
        let mut study = Study::open(&db, None, None).unwrap();
        let csv = dir.path().join("patients.csv");
        std::fs::write(&csv, PATIENTS).unwrap();
        import_csv(&mut study, ImportKind::Patients, &csv, |_, _| {}).unwrap();
    }
    let screens: [(&[&str], &str); 9] = [
        (&["Enter"], "Target area free of deformity"),
        (&["Escape"], "Patients 3 of 3"),
        (&["D"], "Dashboard: enrollment and the CONSORT flow"),
        (&["F"], "Follow-up: visits due"),
        (&["J"], "Jobs: inference and training"),
        (&["M"], "Model: the study's primary outcome"),
        (&["S"], "Agreement: readers and the final grade"),
        (&["A"], "Adjudication queue"),
        (&["?"], "Help: keys"),
    ];
    for (term, no_color) in [
        ("xterm-256color", false),
        ("screen-256color", false),
        ("tmux-256color", false),
        ("xterm-256color", true),
    ] {
        let command = format!(
            "env -u NO_COLOR TERM={term} {} {} --db {}; echo MARROW-EXIT=$?; sleep 600",
            if no_color { "NO_COLOR=1" } else { "" },
            shell_quote(Path::new(env!("CARGO_BIN_EXE_marrow"))),
            shell_quote(&db)
        );
        let tmux = Tmux::start(120, 40, &command);
        let wait = Duration::from_secs(20);
        tmux.wait_for("Patients 3 of 3", wait);
        let mut coloured = false;
        for (keys, title) in screens {
            if keys != ["Enter"] && keys != ["Escape"] && keys != ["D"] {
                // From the worklist each time: Esc back first (waiting for the
                // worklist, so Esc and the next key are not read as Alt-key).
                tmux.keys(&["Escape"]);
                tmux.wait_for("Patients 3 of 3", wait);
            }
            tmux.keys(keys);
            let screen = tmux.wait_for(title, wait);
            assert!(!screen.contains("panicked"), "{term}: {screen}");
            let raw = String::from_utf8_lossy(
                &tmux.run(&["capture-pane", "-e", "-p", "-t", "main"]).stdout,
            )
            .into_owned();
            let colours = sgr_colours(&raw);
            if no_color {
                assert!(
                    colours.is_empty(),
                    "NO_COLOR, {title}: colour codes {colours:?} in\n{raw}"
                );
            }
            coloured |= !colours.is_empty();
        }
        if !no_color {
            assert!(coloured, "{term}: no colour on any screen");
        }
        tmux.keys(&["Escape"]);
        tmux.wait_for("Patients 3 of 3", wait);
        tmux.keys(&["q"]);
        tmux.wait_for("MARROW-EXIT=0", wait);
    }
}

/// The colour parameters of the SGR escapes in `raw` (foreground/background 30-49,
/// 90-107, and 38/48 extended colours).
fn sgr_colours(raw: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in raw.split("\x1b[").skip(1) {
        let Some(end) = part.find('m') else { continue };
        let params = &part[..end];
        if !params.bytes().all(|b| b.is_ascii_digit() || b == b';') {
            continue;
        }
        let nums: Vec<u32> = params.split(';').filter_map(|p| p.parse().ok()).collect();
        if nums
            .iter()
            .any(|&n| (30..=49).contains(&n) && n != 39 && n != 49 || (90..=107).contains(&n))
        {
            out.push(params.to_string());
        }
    }
    out
}
