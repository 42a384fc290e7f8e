//! The screens at fixed sizes, from fixture data (no database), as text snapshots.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use marrow::domain::dxa::Region;
use marrow::domain::eligibility::{Answer, Criterion, Decision, RadioChemo};
use marrow::domain::protocol::{Group, Phase, Protocol};
use marrow::domain::records::LabRecord;
use marrow::domain::status::{CohortCount, StatusReport};
use marrow::domain::user::Role;
use marrow::tui::fixture::{self, FixturePatient, manual, scan};
use marrow::tui::{App, Response, Theme};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn draw(app: &App, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| app.render(f)).unwrap();
    t.backend().to_string()
}

fn keys(app: &mut App, s: &str) {
    for c in s.chars() {
        let k = match c {
            '\n' => KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE),
            '\t' => KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE),
            c => KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE),
        };
        let _ = app.handle_key(k);
    }
}

/// The status counts of a worklist, built the way the database builds them.
fn status(patients: &[FixturePatient]) -> StatusReport {
    let counts: Vec<CohortCount> = patients
        .iter()
        .map(|p| {
            let s = p.summary();
            CohortCount {
                site: s.site,
                group: s.group,
                phase: s.phase,
                decision: s.decision,
                count: 1,
            }
        })
        .collect();
    let missing = patients
        .iter()
        .map(|p| p.summary())
        .filter(|s| {
            s.flags
                .contains(&marrow::domain::eligibility::Flag::MissingDxa)
                && s.decision != Decision::Ineligible
        })
        .count();
    StatusReport::build(&Protocol::default(), &counts, missing as u64)
}

fn worklist_app(n: usize) -> App {
    let ps = fixture::patients(n);
    let mut app = App::with_patients(
        fixture::session(Role::Coordinator),
        ps.iter().map(|p| p.summary()).collect(),
    );
    app.set_theme(Theme::plain());
    app.set_status(status(&ps));
    app
}

/// A patient with something in every part of the screen: an open criterion, a manual
/// answer, a DXA in the window, a lab, and a Z-score flag (under 50).
fn rich_patient() -> FixturePatient {
    let mut p = FixturePatient::clean("PKUPH", Group::Op, 7);
    p.record.age = Some(46);
    p.record.phase = Phase::Prospective;
    p.record.deformity = None;
    p.record.radio_chemo_last =
        RadioChemo::Last(chrono::NaiveDate::from_ymd_opt(2023, 1, 10).unwrap());
    p.dxa = vec![
        scan(
            chrono::NaiveDate::from_ymd_opt(2024, 5, 20).unwrap(),
            Region::LumbarSpine,
            -2.1,
            Some(-2.3),
        ),
        scan(
            chrono::NaiveDate::from_ymd_opt(2024, 5, 20).unwrap(),
            Region::FemoralNeck,
            -1.7,
            Some(-1.2),
        ),
    ];
    p.labs = vec![LabRecord {
        date: chrono::NaiveDate::from_ymd_opt(2024, 5, 21).unwrap(),
        analyte: "vitamin_d_25oh".into(),
        value: 18.5,
        unit: "ng/mL".into(),
    }];
    p.manual = vec![manual(
        Criterion::E3,
        Answer::No,
        "no steroids in the medication list",
        "bob",
    )];
    p.record.steroid_long_term = None;
    p.version = 3;
    p
}

fn patient_app(p: &FixturePatient) -> App {
    let mut others = fixture::patients(6);
    others.push(p.clone());
    let mut app = App::with_patients(
        fixture::session(Role::Coordinator),
        others.iter().map(|x| x.summary()).collect(),
    );
    app.set_theme(Theme::plain());
    app.set_status(status(&others));
    keys(&mut app, "/PKUPH-OP-0007\n\n");
    app.apply(Response::Patient(Box::new(p.detail())));
    app
}

#[test]
fn worklist_80x24() {
    let app = worklist_app(40);
    insta::assert_snapshot!(draw(&app, 80, 24));
}

#[test]
fn worklist_filtered_and_searching_80x24() {
    let mut app = worklist_app(40);
    keys(&mut app, "ddcc/-OP");
    insta::assert_snapshot!(draw(&app, 80, 24));
}

#[test]
fn worklist_120x40() {
    let mut app = worklist_app(60);
    keys(&mut app, "jjjf");
    insta::assert_snapshot!(draw(&app, 120, 40));
}

#[test]
fn checklist_80x24() {
    let mut app = patient_app(&rich_patient());
    keys(&mut app, "jjj");
    insta::assert_snapshot!(draw(&app, 80, 24));
}

#[test]
fn checklist_120x40() {
    let mut app = patient_app(&rich_patient());
    keys(&mut app, "jjjjjjj\t");
    insta::assert_snapshot!(draw(&app, 120, 40));
}

#[test]
fn answer_popup_80x24() {
    let mut app = patient_app(&rich_patient());
    keys(&mut app, "jjj\nychecked the knee X-ray");
    insta::assert_snapshot!(draw(&app, 80, 24));
}

#[test]
fn help_80x24() {
    let mut app = worklist_app(10);
    keys(&mut app, "?");
    insta::assert_snapshot!(draw(&app, 80, 24));
}

#[test]
fn too_small_60x20() {
    let app = worklist_app(10);
    insta::assert_snapshot!(draw(&app, 60, 20));
}
