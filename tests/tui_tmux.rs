//! End to end in a real terminal: the `marrow` binary inside tmux, driven by
//! `tmux send-keys`, answering a criterion by hand (the database must then hold the
//! answer and its audit row); every main screen, and the combined two-site summary
//! (`marrow summary merge A B --tui`), under each TERM an SSH session brings and with
//! NO_COLOR. The images screen's run of the same is in tests/tui_viewer.rs.

mod common;
use common::TempStudy;
use common::demo::demo;
use common::tmux::{TERMS, Tmux, marrow_under_term, sgr_colours, shell_quote};
use marrow::cli::export::read_summary;
use marrow::db::Study;
use marrow::domain::eligibility::{Answer, Criterion};
use marrow::domain::protocol::Protocol;
use marrow::domain::summary;
use marrow::import::{ImportKind, import_csv};
use marrow::tui::{App, SummaryLine, SummaryPart};
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

    // search, keep the search, open the patient, answer I4 by hand
    let screen = tmux.answer_i4_of_oa_0001("X-ray shows no deformity", wait);
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
    for (term, no_color) in TERMS {
        let command = marrow_under_term(term, no_color, &format!("--db {}", shell_quote(&db)));
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

/// One line of the summary table as words: the borders gone, runs of spaces as one.
fn words(line: &str) -> String {
    line.trim()
        .trim_matches('│')
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Issue 7 ("Over SSH"): the combined two-site summary (`marrow summary merge A.json
/// B.json --tui`: read-only, no database) under each TERM an SSH session brings and
/// with NO_COLOR. A column per file, headed by the file's name (both files hold the
/// same two sites), and the total; the small site's counts are "<5" and a total over
/// one of them is a range; every row of the table is on one of its pages with each
/// file's count and the total; Esc says how to leave, q quits with status 0, and no
/// database is made. With NO_COLOR no colour escape reaches the terminal.
#[test]
fn the_combined_summary_draws_under_each_term_and_without_colour() {
    let a_study = demo();
    let a = a_study.path("site-a.json");
    let out = a.to_str().unwrap();
    a_study.expect(&["--as", "demo-pi", "export", "summary", "--out", out], 0);
    // A small second site: 3 patients, so its counts are suppressed.
    let b_study = TempStudy::init();
    let p = b_study.write("patients.csv", common::PATIENTS);
    b_study.expect(&["import", "patients", p.to_str().unwrap()], 0);
    let b = b_study.path("site-b.json");
    b_study.expect(&["export", "summary", "--out", b.to_str().unwrap()], 0);

    let sa = read_summary(&a).unwrap();
    let sb = read_summary(&b).unwrap();
    assert!(sa.patients.is_exact(), "{}", sa.patients);
    assert!(!sb.patients.is_exact(), "3 patients are shared as <5");
    let merged = summary::merge(&sa, &sb).unwrap();
    // The table the screen must show, row by row: label, each file's count ("–": the
    // file has no such row), the total.
    let app = App::summary_only(vec![
        SummaryPart::of_file(&a, sa.clone()),
        SummaryPart::of_file(&b, sb.clone()),
    ])
    .unwrap();
    let rows: Vec<String> = app
        .summary_view()
        .unwrap()
        .lines()
        .into_iter()
        .filter_map(|l| match l {
            SummaryLine::Row {
                label,
                cells,
                total,
                ..
            } => {
                let mut r = vec![label];
                r.extend(
                    cells
                        .iter()
                        .map(|c| c.map_or("–".to_string(), |c| c.to_string())),
                );
                r.push(total.to_string());
                Some(words(&r.join(" ")))
            }
            _ => None,
        })
        .collect();
    // The patients' rows, straight from the files and their merge.
    for (label, x, y, total) in [
        ("assessed", sa.patients, sb.patients, merged.patients),
        ("eligible", sa.eligible, sb.eligible, merged.eligible),
        (
            "ineligible",
            sa.ineligible,
            sb.ineligible,
            merged.ineligible,
        ),
        ("pending", sa.pending, sb.pending, merged.pending),
    ] {
        let row = format!("{label} {x} {y} {total}");
        assert!(rows.contains(&row), "{row} not in {rows:#?}");
    }
    assert!(
        !merged.patients.is_exact() && merged.patients.to_string().contains('-'),
        "a total over a <5 cell is a range: {}",
        merged.patients
    );
    let last = rows.last().unwrap().clone();

    for (term, no_color) in TERMS {
        let empty = tempfile::tempdir().unwrap();
        let args = format!(
            "summary merge {} {} --tui",
            shell_quote(&a),
            shell_quote(&b)
        );
        let command = format!(
            "cd {} && {}",
            shell_quote(empty.path()),
            marrow_under_term(term, no_color, &args)
        );
        let tmux = Tmux::start(120, 40, &command);
        let wait = Duration::from_secs(20);
        let mut screen = tmux.wait_for("Combined summary: PKUPH + SYSMH (read-only)", wait);
        assert!(
            screen.contains("summary files only · read-only · no study open"),
            "{term}: {screen}"
        );
        let header = screen
            .lines()
            .find(|l| l.contains("site-a"))
            .unwrap_or_else(|| panic!("{term}: no heading of the columns:\n{screen}"));
        assert_eq!(words(header), "site-a site-b total", "{term}: {screen}");
        let assessed = screen
            .lines()
            .map(words)
            .find(|l| l.starts_with("assessed "))
            .unwrap_or_else(|| panic!("{term}: no assessed row:\n{screen}"));
        assert_eq!(
            assessed,
            format!("assessed {} <5 {}", sa.patients, merged.patients),
            "{term}"
        );

        // Page down to the last row, gathering the lines shown.
        let mut seen: Vec<String> = Vec::new();
        let mut coloured = false;
        for page in 0.. {
            assert!(!screen.contains("panicked"), "{term}: {screen}");
            seen.extend(screen.lines().map(words));
            let colours = sgr_colours(&tmux.screen_with_escapes());
            if no_color {
                assert!(colours.is_empty(), "NO_COLOR, page {page}: {colours:?}");
            }
            coloured |= !colours.is_empty();
            if seen.contains(&last) {
                break;
            }
            assert!(page < 40, "{term}: the last row {last:?} never shows");
            tmux.keys(&["C-d"]);
            let before = screen.clone();
            screen = tmux.wait_for_change("the next page", wait, &before);
        }
        for row in &rows {
            assert!(seen.contains(row), "{term}: the row {row:?} is on no page");
        }
        if !no_color {
            assert!(coloured, "{term}: no colour at all");
        }

        // Esc says how to leave; q quits; no database was made.
        tmux.keys(&["Escape"]);
        tmux.wait_for("q quits", wait);
        tmux.keys(&["q"]);
        tmux.wait_for("MARROW-EXIT=0", wait);
        let left: Vec<_> = std::fs::read_dir(empty.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "{term}: the merge wrote {left:?}");
    }
}
