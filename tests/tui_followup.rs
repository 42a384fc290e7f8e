//! The follow-up screen of the TUI (issue 6) through the real worker on the demo study:
//! the due list equals `Study::visits_due` (and `marrow followup --overdue`), a visit
//! typed in is stored and audited, a VAS of 11 is refused in the form with what was
//! typed kept, a visit saved meanwhile by someone else is reported and not overwritten;
//! and the combined summary screen (`marrow summary merge A B --tui`) shows the merge of
//! two exported summaries with suppressed cells as "<5". Everything fits 80x24.

mod common;
#[path = "common/driver.rs"]
mod driver;
use common::TempStudy;
use common::demo::demo;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use driver::{Driver, draw};
use marrow::db::Study;
use marrow::domain::followup::{VisitInput, VisitState};
use marrow::domain::summary;
use marrow::tui::followup::DUE_DAYS;
use marrow::tui::keymap::{self, Action, Context};
use marrow::tui::{
    App, FollowupScope, LoadState, MessageKind, Screen, SummaryLine, SummaryPart, Theme, VisitField,
};

/// What the follow-up tests do with the shared driver.
impl Driver {
    /// `F`, then waits for the due list.
    fn open_followup(&mut self) {
        self.keys("F");
        assert_eq!(self.app.screen(), Screen::Followup);
        self.until_list();
    }

    fn until_list(&mut self) {
        self.until("the follow-up list", |a| {
            a.followup_view()
                .is_some_and(|v| *v.state() == LoadState::Loaded)
        });
    }

    /// Waits for the form to stop saving.
    fn until_saved(&mut self) {
        self.until("the save", |a| {
            a.visit_form().is_none_or(|f| !f.is_saving())
        });
    }

    /// Types a whole visit into the open form (the date field is selected).
    fn type_visit(&mut self, date: &str, vas: &str, oks: &str, fracture: &str) {
        assert_eq!(self.app.visit_form().unwrap().field(), VisitField::Date);
        self.clear_field();
        self.keys(date);
        self.keys("\t");
        self.clear_field();
        self.keys(vas);
        self.keys("\t");
        self.clear_field();
        self.keys(oks);
        self.keys("\t");
        self.keys(fracture);
        self.keys("\t");
        assert_eq!(self.app.visit_form().unwrap().field(), VisitField::Reason);
    }
}

/// The recorded visit of a patient's month, as the database has it now.
fn recorded(s: &TempStudy, id: &str, month: u32) -> Option<marrow::db::followup::VisitRow> {
    let today = marrow::cli::export::today();
    s.open()
        .patient_visits(id, today)
        .unwrap()
        .into_iter()
        .find(|v| v.window.month == month)
        .and_then(|v| v.recorded)
}

/// The audit rows of a patient's follow-up visits, oldest first.
fn visit_audit(s: &TempStudy, id: &str) -> Vec<serde_json::Value> {
    let log = s.expect(&["audit", "log", "--patient", id, "--json"], 0);
    let rows: serde_json::Value = serde_json::from_str(&log).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .filter(|r| r["entity"] == "follow_up_visit")
        .cloned()
        .collect()
}

/// The first overdue visit of the due list: (row index, study ID, month, target date).
fn first_overdue(app: &App) -> (usize, String, u32, String) {
    let v = app.followup_view().unwrap();
    let (i, r) = v
        .rows()
        .iter()
        .enumerate()
        .find(|(_, r)| r.state == VisitState::Overdue)
        .expect("the demo has an overdue visit");
    (
        i,
        r.study_id.clone(),
        r.window.month,
        r.window.target.to_string(),
    )
}

#[test]
fn the_due_list_equals_visits_due_and_the_cli_and_moves_with_j_k() {
    let s = demo();
    let mut d = Driver::open(&s, "demo-coordinator");
    d.open_followup();
    let v = d.app.followup_view().unwrap();
    assert_eq!(*v.scope(), FollowupScope::Due { days: DUE_DAYS });
    let today = v.today().expect("the worker says which day");
    let expected = s.open().visits_due(today, DUE_DAYS, true).unwrap();
    assert!(expected.len() > 3, "the demo has visits due");
    assert_eq!(v.rows(), expected.as_slice());
    assert!(v.rows().iter().any(|r| r.state == VisitState::Overdue));

    // The coordinator's command lists the same visits in the same order.
    let cli: serde_json::Value = serde_json::from_str(&s.expect(
        &[
            "--as",
            "demo-coordinator",
            "followup",
            "--overdue",
            "--due-days",
            &DUE_DAYS.to_string(),
            "--json",
        ],
        0,
    ))
    .unwrap();
    let cli: Vec<(String, u64)> = cli
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["study_id"].as_str().unwrap().to_string(),
                r["window"]["month"].as_u64().unwrap(),
            )
        })
        .collect();
    let ours: Vec<(String, u64)> = v
        .rows()
        .iter()
        .map(|r| (r.study_id.clone(), u64::from(r.window.month)))
        .collect();
    assert_eq!(ours, cli);

    assert_eq!(d.app.followup_view().unwrap().selected(), 0);
    d.keys("jj");
    assert_eq!(d.app.followup_view().unwrap().selected(), 2);
    d.keys("k");
    assert_eq!(d.app.followup_view().unwrap().selected(), 1);
    d.keys("G");
    assert_eq!(
        d.app.followup_view().unwrap().selected(),
        expected.len() - 1
    );
    let text = draw(&d.app, 120, 40);
    assert!(text.contains(&expected[0].study_id), "{text}");

    // p: every visit of the selected patient (as `Study::patient_visits`); p again: back.
    d.keys("gg");
    let id = expected[0].study_id.clone();
    d.keys("p");
    assert_eq!(
        *d.app.followup_view().unwrap().scope(),
        FollowupScope::Patient(id.clone())
    );
    d.until_list();
    let mine = s.open().patient_visits(&id, today).unwrap();
    assert_eq!(d.app.followup_view().unwrap().rows(), mine.as_slice());
    d.keys("p");
    d.until_list();
    assert_eq!(d.app.followup_view().unwrap().rows(), expected.as_slice());
    // Esc goes back to where F was pressed.
    d.key(KeyCode::Esc, KeyModifiers::NONE);
    assert_eq!(d.app.screen(), Screen::Worklist);
}

#[test]
fn a_visit_entered_through_the_keys_is_stored_and_audited() {
    let s = demo();
    let mut d = Driver::open(&s, "demo-coordinator");
    d.open_followup();
    let (i, id, month, target) = first_overdue(&d.app);
    assert!(recorded(&s, &id, month).is_none());
    for _ in 0..i {
        d.keys("j");
    }
    d.keys("\n");
    let f = d.app.visit_form().expect("Enter opens the form");
    assert_eq!((f.study_id(), f.month()), (id.as_str(), month));
    assert!(f.recorded().is_none());
    d.type_visit(&target, "3.5", "30", "n");
    d.keys("phone call\n");
    d.until_saved();
    assert!(d.app.visit_form().is_none(), "the form closes once saved");
    let m = d.app.message().unwrap();
    assert_eq!(m.kind, MessageKind::Success, "{}", m.text);
    assert!(m.text.contains(&id), "{}", m.text);

    let row = recorded(&s, &id, month).expect("the visit is stored");
    assert_eq!(row.visit.visit_date.to_string(), target);
    assert_eq!(row.visit.vas, Some(3.5));
    assert_eq!(row.visit.oks, Some(30));
    assert_eq!(row.visit.new_fragility_fracture, Some(false));
    assert_eq!(row.source, "marrow");
    assert_eq!(row.updated_by, "demo-coordinator");
    assert_eq!(row.version, 1);

    let trail = visit_audit(&s, &id);
    assert_eq!(trail.len(), 1, "{trail:?}");
    assert_eq!(trail[0]["action"], "followup.add");
    assert_eq!(trail[0]["actor"], "demo-coordinator");
    assert_eq!(trail[0]["reason"], "phone call");
    assert_eq!(trail[0]["entity_id"], format!("{id}/{month}m"));
    assert!(trail[0]["after"].as_str().unwrap().contains("3.5"));
    s.expect(&["audit", "verify"], 0);

    // The list reloads: the visit is done, so it is no longer due.
    d.until("the list without the visit", |a| {
        a.followup_view().is_some_and(|v| {
            *v.state() == LoadState::Loaded
                && !v
                    .rows()
                    .iter()
                    .any(|r| r.study_id == id && r.window.month == month)
        })
    });
}

/// The baseline visit (month 0) is entered through the same form: it is the first
/// row of a patient's visits, and saving it stores visit_month 0.
#[test]
fn the_baseline_visit_is_entered_from_a_patients_visits() {
    let s = demo();
    let mut d = Driver::open(&s, "demo-coordinator");
    d.open_followup();
    let (i, id, _, _) = first_overdue(&d.app);
    assert!(recorded(&s, &id, 0).is_none());
    for _ in 0..i {
        d.keys("j");
    }
    d.keys("p");
    d.until("the patient's visits", |a| {
        a.followup_view().is_some_and(|v| {
            *v.state() == LoadState::Loaded && v.rows().first().is_some_and(|r| r.baseline)
        })
    });
    let text = d.screen(120, 40);
    assert!(text.contains("baseline"), "{text}");
    let first = d.app.followup_view().unwrap().rows()[0].clone();
    assert_eq!(
        (first.study_id.as_str(), first.window.month),
        (id.as_str(), 0)
    );
    d.keys("gg\n");
    let f = d.app.visit_form().expect("Enter opens the form");
    assert_eq!((f.study_id(), f.month()), (id.as_str(), 0));
    d.type_visit(&first.window.target.to_string(), "6", "28", "n");
    d.keys("baseline at enrolment\n");
    d.until_saved();
    let row = recorded(&s, &id, 0).expect("the baseline is stored");
    assert_eq!(row.visit.vas, Some(6.0));
    assert_eq!(row.visit.oks, Some(28));
    assert_eq!(visit_audit(&s, &id)[0]["entity_id"], format!("{id}/0m"));
}

#[test]
fn a_vas_of_11_is_refused_in_the_form_and_nothing_typed_is_lost() {
    let s = demo();
    let mut d = Driver::open(&s, "demo-coordinator");
    d.open_followup();
    let (i, id, month, target) = first_overdue(&d.app);
    for _ in 0..i {
        d.keys("j");
    }
    d.keys("\n");
    d.type_visit(&target, "11", "30", "y");
    d.keys("seen at the clinic");
    // Enter sends nothing: the form's check refuses the row as the import does.
    let sent = d
        .app
        .handle_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    assert!(sent.is_empty(), "{sent:?}");
    let f = d.app.visit_form().expect("the form stays open");
    assert_eq!(f.error(), Some("not saved: vas 11 is outside 0 to 10"));
    assert_eq!(f.field(), VisitField::Vas, "the field in error is selected");
    assert_eq!(f.text(VisitField::Date), target);
    assert_eq!(f.text(VisitField::Vas), "11");
    assert_eq!(f.text(VisitField::Oks), "30");
    assert_eq!(f.fracture(), Some(true));
    assert_eq!(f.text(VisitField::Reason), "seen at the clinic");
    let text = draw(&d.app, 120, 40);
    assert!(text.contains("vas 11 is outside 0 to 10"), "{text}");
    assert!(recorded(&s, &id, month).is_none(), "nothing is stored");

    // The same check as a followup.csv row: an OKS of 49 is refused too.
    d.clear_field();
    d.keys("10\t");
    d.clear_field();
    d.keys("49\n");
    let f = d.app.visit_form().unwrap();
    assert_eq!(f.error(), Some("not saved: oks 49 is outside 0 to 48"));
    assert_eq!(f.field(), VisitField::Oks);
    // Fixed, it saves.
    d.clear_field();
    d.keys("48\n");
    d.until_saved();
    assert!(d.app.visit_form().is_none(), "{:?}", d.app.message());
    let row = recorded(&s, &id, month).unwrap();
    assert_eq!((row.visit.vas, row.visit.oks), (Some(10.0), Some(48)));
    assert_eq!(row.visit.new_fragility_fracture, Some(true));
}

#[test]
fn a_visit_saved_meanwhile_by_someone_else_is_reported_and_not_overwritten() {
    let s = demo();
    let mut d = Driver::open(&s, "demo-coordinator");
    d.open_followup();
    let (i, id, month, target) = first_overdue(&d.app);
    for _ in 0..i {
        d.keys("j");
    }
    d.keys("\n");
    assert!(d.app.visit_form().unwrap().recorded().is_none());

    // Another connection records the visit while the form is open.
    let mut other: Study = s.open();
    let who = other.actor().name.clone();
    let theirs = VisitInput {
        visit_date: target.parse().unwrap(),
        vas: Some(7.0),
        oks: Some(12),
        new_fragility_fracture: Some(true),
    };
    other
        .record_visit(&id, month, &theirs, "", None)
        .expect("the other save");
    drop(other);

    d.type_visit(&target, "2", "40", "n");
    d.keys("\n");
    d.until_saved();
    let f = d.app.visit_form().expect("the form stays open");
    let e = f.error().unwrap();
    assert!(e.contains(&format!("recorded by {who}")), "{e}");
    assert!(e.contains("nothing was saved"), "{e}");
    // Their visit is shown; ours is still typed in.
    let shown = f.theirs().expect("their visit is shown");
    assert_eq!(shown.visit, theirs);
    assert_eq!(shown.updated_by, who);
    assert_eq!(f.text(VisitField::Vas), "2");
    assert_eq!(f.text(VisitField::Oks), "40");
    assert_eq!(f.fracture(), Some(false));
    let text = draw(&d.app, 120, 40);
    assert!(
        text.contains(&format!("saved meanwhile by {who}")),
        "{text}"
    );
    assert_eq!(d.app.message().unwrap().kind, MessageKind::Error);

    // Nothing was overwritten.
    let row = recorded(&s, &id, month).unwrap();
    assert_eq!(row.visit, theirs);
    assert_eq!(row.version, 1);
    assert_eq!(visit_audit(&s, &id).len(), 1);

    // Having seen theirs, Enter saves ours over it as a correction: with a reason.
    d.keys("\n");
    d.until_saved();
    let f = d.app.visit_form().expect("no reason: the form stays");
    let e = f.error().unwrap();
    assert!(e.contains("a correction needs a reason"), "{e}");
    assert_eq!(f.field(), VisitField::Reason);
    assert_eq!(f.text(VisitField::Vas), "2");
    assert_eq!(recorded(&s, &id, month).unwrap().version, 1);
    d.keys("called back: the other entry was the wrong patient\n");
    d.until_saved();
    assert!(d.app.visit_form().is_none(), "{:?}", d.app.message());
    let row = recorded(&s, &id, month).unwrap();
    assert_eq!((row.visit.vas, row.visit.oks), (Some(2.0), Some(40)));
    assert_eq!(row.version, 2);
    let trail = visit_audit(&s, &id);
    assert_eq!(trail.len(), 2, "{trail:?}");
    assert_eq!(trail[1]["action"], "followup.update");
    assert!(trail[1]["before"].as_str().unwrap().contains("\"oks\":12"));
}

#[test]
fn pis_look_readers_are_blinded_and_the_dashboard_leads_to_the_visits() {
    let s = demo();
    let mut pi = Driver::open(&s, "demo-pi");
    pi.keys("D");
    assert_eq!(pi.app.screen(), Screen::Dashboard);
    pi.keys("F");
    assert_eq!(pi.app.screen(), Screen::Followup);
    pi.until_list();
    assert!(!pi.app.followup_view().unwrap().rows().is_empty());
    pi.keys("\n");
    assert!(pi.app.visit_form().is_none(), "a PI does not write");
    let m = pi.app.message().unwrap();
    assert_eq!(m.kind, MessageKind::Error);
    assert!(m.text.contains("follow-up"), "{}", m.text);
    pi.key(KeyCode::Esc, KeyModifiers::NONE);
    assert_eq!(pi.app.screen(), Screen::Dashboard);

    let mut reader = Driver::open(&s, "demo-reader-1");
    let sent = reader
        .app
        .handle_key(KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE));
    reader.send(sent);
    reader.keys("F");
    assert_eq!(reader.app.screen(), Screen::Followup);
    assert!(reader.app.followup_view().unwrap().rows().is_empty());
    let text = draw(&reader.app, 80, 24);
    assert!(text.contains("Blinded"), "{text}");
}

#[test]
fn the_follow_up_screen_and_its_form_fit_80x24() {
    let s = demo();
    let mut d = Driver::open(&s, "demo-coordinator");
    d.open_followup();
    let first = d.app.followup_view().unwrap().rows()[0].clone();
    let text = draw(&d.app, 80, 24);
    assert!(
        text.contains("Follow-up: visits due in the next 30 days"),
        "{text}"
    );
    assert!(text.contains("Study ID"), "{text}");
    assert!(text.contains("Closes"), "{text}");
    assert!(text.contains(&first.study_id), "{text}");
    assert!(text.contains(&first.window.closes.to_string()), "{text}");
    assert!(!text.contains("terminal too small"), "{text}");
    d.keys("\n");
    let text = draw(&d.app, 80, 24);
    for label in [
        "Enter a follow-up visit",
        "Visit date",
        "VAS pain (0-10)",
        "Oxford Knee Score (0-48)",
        "New fragility fracture",
        "Reason",
        "save",
        "cancel",
    ] {
        assert!(text.contains(label), "{label} missing:\n{text}");
    }
    // The help lists the new keys (it is generated from these contexts).
    for c in [Context::Followup, Context::VisitForm, Context::Summary] {
        assert!(Context::HELP_ORDER.contains(&c), "{c:?}");
        assert!(keymap::bindings(&[c]).count() > 3, "{c:?}");
    }
    assert_eq!(
        keymap::bindings(&[Context::Worklist, Context::Dashboard])
            .filter(|b| b.action == Action::OpenFollowup)
            .count(),
        2
    );
}

// ---------------------------------------------------------------------------
// The combined summary of two sites
// ---------------------------------------------------------------------------

#[test]
fn the_combined_summary_screen_shows_the_merge_of_two_exported_summaries() {
    let a_study = demo();
    let a = a_study.path("a.json");
    a_study.expect(
        &[
            "--as",
            "demo-pi",
            "export",
            "summary",
            "--out",
            a.to_str().unwrap(),
        ],
        0,
    );
    // A small second site: 3 patients, so its counts are suppressed.
    let b_study = TempStudy::init();
    let p = b_study.write("patients.csv", common::PATIENTS);
    b_study.expect(&["import", "patients", p.to_str().unwrap()], 0);
    let b = b_study.path("b.json");
    b_study.expect(&["export", "summary", "--out", b.to_str().unwrap()], 0);

    let sa = marrow::cli::export::read_summary(&a).unwrap();
    let sb = marrow::cli::export::read_summary(&b).unwrap();
    assert!(!sb.patients.is_exact(), "3 patients are shared as <5");
    let expected = summary::merge(&sa, &sb).unwrap();

    let mut app = App::summary_only(vec![
        SummaryPart::of_file(&a, sa.clone()),
        SummaryPart::of_file(&b, sb.clone()),
    ])
    .unwrap();
    app.set_theme(Theme::plain());
    assert!(app.start().is_empty(), "no study: nothing to ask a worker");
    assert_eq!(app.screen(), Screen::Summary);
    let v = app.summary_view().unwrap();
    assert_eq!(v.merged(), &expected);
    // The command line's merge says the same.
    let cli: serde_json::Value = serde_json::from_str(&a_study.expect(
        &[
            "summary",
            "merge",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            "--json",
        ],
        0,
    ))
    .unwrap();
    assert_eq!(cli, serde_json::to_value(&expected).unwrap());

    // The rows: each file's count and the combined one.
    let lines = v.lines();
    let row = |name: &str| {
        lines
            .iter()
            .find_map(|l| match l {
                SummaryLine::Row {
                    label,
                    cells,
                    total,
                    ..
                } if label == name => Some((cells.clone(), *total)),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no row {name}"))
    };
    assert_eq!(
        row("assessed"),
        (
            vec![Some(sa.patients), Some(sb.patients)],
            expected.patients
        )
    );
    assert_eq!(
        row("eligible"),
        (
            vec![Some(sa.eligible), Some(sb.eligible)],
            expected.eligible
        )
    );
    assert_eq!(
        row("overdue"),
        (
            vec![Some(sa.follow_up.overdue), Some(sb.follow_up.overdue)],
            expected.follow_up.overdue
        )
    );
    for c in &expected.cohorts {
        assert!(
            lines
                .iter()
                .any(|l| matches!(l, SummaryLine::Row { total, .. } if *total == c.eligible)),
            "{c:?}"
        );
    }

    // Drawn: the suppressed cell is "<5", the total a range, never a number it hid.
    for (w, h) in [(120, 40), (80, 24)] {
        let text = draw(&app, w, h);
        assert!(!text.contains("terminal too small"), "{text}");
        assert!(text.contains("total"), "{text}");
        let line = text
            .lines()
            .find(|l| l.contains("assessed"))
            .unwrap_or_else(|| panic!("no assessed row:\n{text}"));
        assert!(line.contains("<5"), "{line}");
        assert!(line.contains(&expected.patients.to_string()), "{line}");
        assert!(line.contains(&sa.patients.to_string()), "{line}");
        assert!(
            !expected.patients.is_exact() && expected.patients.to_string().contains('-'),
            "{}",
            expected.patients
        );
    }
    // Keys: scroll, Esc says how to leave, r reads nothing, q quits.
    app.handle_key(KeyEvent::new(KeyCode::Char('j'), KeyModifiers::NONE));
    assert_eq!(app.summary_view().unwrap().scroll(), 1);
    for code in [KeyCode::Esc, KeyCode::Char('r')] {
        let sent = app.handle_key(KeyEvent::new(code, KeyModifiers::NONE));
        assert!(sent.is_empty());
        assert_eq!(app.screen(), Screen::Summary);
    }
    app.handle_key(KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE));
    assert!(app.should_quit());

    // The command needs no study database; without a terminal it says so.
    let empty = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_marrow"))
        .current_dir(empty.path())
        .env_remove("MARROW_DB")
        .args(["summary", "merge"])
        .arg(&a)
        .arg(&b)
        .arg("--tui")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = common::stderr(&out);
    assert!(err.contains("needs a terminal"), "{err}");
    assert!(!empty.path().join("marrow.db").exists());
}
