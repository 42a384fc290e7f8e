//! The dashboard screen of the TUI (issue 6): through the real worker on the demo
//! study, its counts equal `marrow status --json` and drilling into a CONSORT box lists
//! exactly its count of patients; a reader is blinded; snapshots at 80x24 and 120x40
//! from fixture data.

mod common;
#[path = "common/driver.rs"]
mod driver;
use common::demo::demo;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use driver::{Driver, draw};
use marrow::domain::consort::{self, BoxKey, FlowFacts, Step};
use marrow::domain::eligibility::{Criterion, Decision};
use marrow::domain::outcomes;
use marrow::domain::protocol::{Group, Phase, Protocol};
use marrow::domain::status::{CohortCount, StatusReport};
use marrow::domain::user::Role;
use marrow::tui::fixture;
use marrow::tui::{App, DashboardFigures, LoadState, Request, Response, Screen, Theme};

// ---------------------------------------------------------------------------
// Through the worker, on the demo study
// ---------------------------------------------------------------------------

#[test]
fn the_dashboard_counts_equal_marrow_status_and_a_box_lists_exactly_its_patients() {
    let s = demo();
    let json: serde_json::Value =
        serde_json::from_str(&s.expect(&["--as", "demo-pi", "status", "--json"], 0)).unwrap();
    let mut d = Driver::open(&s, "demo-pi");
    d.keys("D");
    assert_eq!(d.app.screen(), Screen::Dashboard);
    d.until("the dashboard", |a| {
        a.dashboard_view()
            .is_some_and(|v| *v.state() == LoadState::Loaded)
    });
    let f = d.app.dashboard_view().unwrap().figures().unwrap().clone();
    let eligible = json["eligibility"]["eligible"].as_u64().unwrap();
    let patients = json["patients"].as_u64().unwrap();
    assert_eq!(f.status.eligibility.eligible, eligible);
    assert_eq!(f.status.patients, patients);
    assert_eq!(f.consort.count(Step::Eligible), eligible);
    assert_eq!(f.consort.count(Step::Assessed), patients);
    assert_eq!(f.status.missing_dxa, json["missing_dxa"].as_u64().unwrap());
    let text = draw(&d.app, 120, 40);
    assert!(text.contains("CONSORT flow"), "{text}");
    assert!(text.contains("Enrollment: eligible / target"), "{text}");

    // Every box with patients: its list has exactly its count of rows.
    let flow = f.flow();
    assert!(flow.iter().any(|l| l.count > 0));
    for (i, line) in flow.iter().enumerate() {
        d.keys("gg");
        for _ in 0..i {
            d.keys("j");
        }
        assert_eq!(d.app.dashboard_view().unwrap().selected(), i);
        d.keys("\n");
        assert_eq!(d.app.screen(), Screen::BoxPatients);
        d.until("the box's patients", |a| {
            a.box_patients()
                .is_some_and(|b| *b.state() == LoadState::Loaded)
        });
        let b = d.app.box_patients().unwrap();
        assert_eq!(b.key(), line.key);
        assert_eq!(
            b.patients().len() as u64,
            line.count,
            "box {}",
            line.key.code()
        );
        assert_eq!(b.count(), line.count);
        // Enter on a patient opens their screening; Esc comes back to the list.
        if line.key == BoxKey::Step(Step::Eligible) {
            let first = b.patients()[0].study_id.clone();
            d.keys("\n");
            assert_eq!(d.app.screen(), Screen::Patient);
            d.until("the patient", |a| {
                a.patient_detail()
                    .is_some_and(|p| p.summary.study_id == first)
            });
            d.app
                .handle_key(KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE));
            assert_eq!(d.app.screen(), Screen::BoxPatients);
        }
        d.app
            .handle_key(KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE));
        assert_eq!(d.app.screen(), Screen::Dashboard);
    }
    // r reloads.
    let requests = d
        .app
        .handle_key(KeyEvent::new(KeyCode::Char('r'), KeyModifiers::NONE));
    assert!(requests.contains(&Request::LoadDashboard), "{requests:?}");
    d.send(requests);
    d.until("the reloaded dashboard", |a| {
        a.dashboard_view()
            .is_some_and(|v| *v.state() == LoadState::Loaded)
    });
    d.worker.stop();

    // A reader is blinded, and nothing is loaded for them.
    let mut r = Driver::open(&s, "demo-reader-1");
    let requests = r
        .app
        .handle_key(KeyEvent::new(KeyCode::Char('D'), KeyModifiers::NONE));
    assert!(requests.is_empty(), "{requests:?}");
    assert_eq!(r.app.screen(), Screen::Dashboard);
    let text = draw(&r.app, 80, 24);
    assert!(
        text.contains("Blinded: readers do not see the dashboard"),
        "{text}"
    );
    assert!(!text.contains("Enrollment: eligible"), "{text}");
    r.worker.stop();
}

// ---------------------------------------------------------------------------
// Snapshots from fixture data
// ---------------------------------------------------------------------------

fn press(app: &mut App, code: KeyCode) -> Vec<Request> {
    app.handle_key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn figures() -> DashboardFigures {
    let protocol = Protocol::default();
    let mut counts = Vec::new();
    let mut i = 0u64;
    for site in &protocol.sites {
        for group in Group::ALL {
            for phase in Phase::ALL {
                i += 1;
                counts.push(CohortCount {
                    site: site.clone(),
                    group,
                    phase,
                    decision: Decision::Eligible,
                    count: (i * 17) % 130,
                });
                counts.push(CohortCount {
                    site: site.clone(),
                    group,
                    phase,
                    decision: Decision::Ineligible,
                    count: 2,
                });
            }
        }
    }
    let mut status = StatusReport::build(&protocol, &counts, 3);
    status.reads_pending = 12;
    status.adjudication_pending = 4;
    status.final_graded = 20;
    status.follow_up.done = 30;
    status.follow_up.due = 5;
    status.follow_up.overdue = 2;
    status.follow_up.not_yet_due = 40;
    let mut facts = Vec::new();
    for id in 0..60 {
        let decision = match id % 6 {
            0 => Decision::Ineligible,
            1 => Decision::Pending,
            _ => Decision::Eligible,
        };
        let eligible = decision == Decision::Eligible;
        facts.push(FlowFacts {
            patient_id: id,
            decision: Some(decision),
            reasons: if decision == Decision::Ineligible {
                vec![if id % 12 == 0 {
                    Criterion::E1
                } else {
                    Criterion::I2
                }]
            } else {
                Vec::new()
            },
            imaged: eligible && id % 5 != 0,
            read: eligible && id % 5 != 0 && id % 7 != 0,
            adjudicated: eligible && id % 5 != 0 && id % 7 != 0 && id % 3 != 0,
            predicted: eligible && id % 5 != 0,
            analysed: eligible && id % 5 != 0 && id % 7 != 0 && id % 3 != 0,
        });
    }
    DashboardFigures {
        status,
        consort: consort::build(&facts),
        by_month: (1..=12)
            .map(|m| (format!("2025-{m:02}"), (m * 3 % 11) as u64))
            .collect(),
        outcomes: Ok(outcomes_fixture()),
    }
}

/// Twelve patients: fractures at 6, 12 and 24 months in the osteoporosis stage,
/// one in osteopenia, none in normal; VAS changes for two KL2 patients.
fn outcomes_fixture() -> outcomes::OutcomesReport {
    use chrono::NaiveDate;
    let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    let visit =
        |month: u32, date: &str, fracture: Option<bool>, vas: Option<f64>| outcomes::VisitFact {
            month,
            date: day(date),
            vas,
            oks: None,
            fracture,
        };
    let mut facts = Vec::new();
    for i in 0..12u8 {
        let stage = i % 3;
        let hit = match stage {
            2 => i < 9,
            1 => i == 1,
            _ => false,
        };
        let mut visits = vec![
            visit(0, "2026-01-05", None, Some(6.0 - f64::from(i % 2))),
            visit(6, "2026-07-06", Some(hit && i < 3), Some(4.0)),
        ];
        if !(hit && i < 3) {
            visits.push(visit(12, "2027-01-04", Some(hit && i < 6), None));
            visits.push(visit(24, "2028-01-05", Some(hit), None));
        }
        facts.push(outcomes::PatientFacts {
            index_date: Some(day("2026-01-05")),
            op_stage: Some(stage),
            kl: (i < 2).then_some(2),
            visits,
        });
    }
    outcomes::OutcomesReport {
        cohort: Some("prospective".into()),
        cohort_role: outcomes::cohort_role(Some(Phase::Prospective)).into(),
        patients: facts.len(),
        definitions: outcomes::DEFINITIONS,
        outcomes: outcomes::outcomes(&facts),
    }
}

/// The secondary outcomes on the dashboard: `o` shows them in place of the flow,
/// with the same figures `marrow outcomes` computes (`domain::outcomes`), and `o`
/// again goes back.
#[test]
fn o_shows_the_secondary_outcomes_and_o_again_the_flow() {
    let mut app = dashboard_app();
    assert!(press(&mut app, KeyCode::Char('o')).is_empty());
    assert!(app.dashboard_view().unwrap().showing_outcomes());
    let want = outcomes_fixture();
    let op = &want.outcomes.fractures[2];
    assert_eq!(
        (op.stage.as_str(), op.patients, op.events),
        ("osteoporosis", 4, 3)
    );
    for (w, h) in [(80, 24), (120, 40)] {
        let text = draw(&app, w, h);
        assert!(text.contains("Secondary outcomes"), "{text}");
        assert!(text.contains("log-rank between the stages"), "{text}");
        let row = text
            .lines()
            .find(|l| {
                l.trim_start_matches(['"', '│'])
                    .trim_start()
                    .starts_with("osteoporosis")
            })
            .unwrap_or_else(|| panic!("{text}"));
        // 12 months: incidence of the osteoporosis stage, as computed
        let inc = format!("{:.0}%", op.at[1].incidence * 100.0);
        assert!(row.contains(&inc), "{inc} not in {row}");
    }
    insta::assert_snapshot!("dashboard_outcomes_120x40", draw(&app, 120, 40));
    press(&mut app, KeyCode::Char('o'));
    assert!(!app.dashboard_view().unwrap().showing_outcomes());
    assert!(draw(&app, 120, 40).contains("CONSORT"));
}

fn app_of(role: Role) -> App {
    let mut app = App::with_patients(fixture::session(role), fixture::worklist(5));
    app.set_theme(Theme::plain());
    app
}

fn dashboard_app() -> App {
    let mut app = app_of(Role::Coordinator);
    let requests = press(&mut app, KeyCode::Char('D'));
    assert_eq!(requests, vec![Request::LoadDashboard]);
    app.apply(Response::Dashboard(Ok(Box::new(figures()))));
    press(&mut app, KeyCode::Char('j'));
    app
}

#[test]
fn dashboard_80x24() {
    insta::assert_snapshot!(draw(&dashboard_app(), 80, 24));
}

#[test]
fn dashboard_120x40() {
    insta::assert_snapshot!(draw(&dashboard_app(), 120, 40));
}

#[test]
fn dashboard_placeholder_while_it_loads_80x24() {
    let mut app = app_of(Role::Pi);
    press(&mut app, KeyCode::Char('D'));
    insta::assert_snapshot!(draw(&app, 80, 24));
}

#[test]
fn dashboard_blinded_for_a_reader_80x24() {
    let mut app = app_of(Role::Reader);
    app.apply(Response::ReaderWorklist(Ok(Vec::new())));
    let requests = press(&mut app, KeyCode::Char('D'));
    assert!(requests.is_empty(), "{requests:?}");
    assert_eq!(app.screen(), Screen::Dashboard);
    insta::assert_snapshot!(draw(&app, 80, 24));
}

#[test]
fn box_patients_80x24() {
    let mut app = dashboard_app();
    let requests = press(&mut app, KeyCode::Enter);
    let key = BoxKey::Step(Step::Excluded);
    assert_eq!(requests, vec![Request::LoadBoxPatients { key }]);
    assert_eq!(app.screen(), Screen::BoxPatients);
    let rows = fixture::worklist(10);
    app.apply(Response::BoxPatients {
        key,
        result: Ok(rows[..10].to_vec()),
    });
    press(&mut app, KeyCode::Char('j'));
    insta::assert_snapshot!(draw(&app, 80, 24));
    // Enter opens the patient; Esc back to the list, then the dashboard.
    let requests = press(&mut app, KeyCode::Enter);
    assert!(matches!(
        requests.first(),
        Some(Request::LoadPatient { .. })
    ));
    assert_eq!(app.screen(), Screen::Patient);
    press(&mut app, KeyCode::Esc);
    assert_eq!(app.screen(), Screen::BoxPatients);
    press(&mut app, KeyCode::Esc);
    assert_eq!(app.screen(), Screen::Dashboard);
}

#[test]
fn group_and_phase_of_cohorts_are_in_the_fixture() {
    // Guards the fixture: both sites' cohorts, all groups and phases.
    let f = figures();
    assert!(f.status.cohorts.iter().any(|c| c.group == Group::Control));
    assert!(
        f.status
            .cohorts
            .iter()
            .any(|c| c.phase == Phase::Prospective)
    );
}

// ---------------------------------------------------------------------------
// Figures that agree (issue 13, item 11)
// ---------------------------------------------------------------------------

/// One eligible patient of a target of 6 is 16.67%: `status` and the dashboard both
/// say 17% (the dashboard cut it to 16%). Months between the first and the last with
/// no eligible patient are in the chart, as zero (they were left out).
#[test]
fn the_dashboard_and_status_round_alike_and_months_without_patients_show_zero() {
    use common::TempStudy;
    let s = TempStudy::empty();
    let protocol = s.write("protocol.toml", "[targets]\nretrospective = 6\n");
    s.expect(&["init", "--protocol", protocol.to_str().unwrap()], 0);
    let csv = s.write(
        "p.csv",
        "mrn,site,phase,group,sex,birth_date,index_date,deformity,implant,pathological_fracture,malignancy,steroid_long_term,radio_chemo_last\n\
         MRN001,PKUPH,retrospective,OA,F,1960-05-01,2024-01-10,no,no,no,no,no,none\n\
         MRN002,SYSMH,retrospective,OA,F,1960-05-01,2024-04-10,no,no,no,no,no,none\n",
    );
    s.expect(&["import", "patients", csv.to_str().unwrap()], 0);
    let status = s.expect(&["status"], 0);
    let row = status
        .lines()
        .find(|l| l.starts_with("PKUPH") && l.contains("OA") && l.contains("retrospective"))
        .unwrap_or_else(|| panic!("{status}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cells[3..6], &["1", "6", "17"], "{row}");

    let mut d = Driver::open(&s, &marrow::db::os_user());
    d.keys("D");
    d.until("the dashboard", |a| {
        a.dashboard_view()
            .is_some_and(|v| *v.state() == LoadState::Loaded)
    });
    let f = d.app.dashboard_view().unwrap().figures().unwrap().clone();
    let months: Vec<(&str, u64)> = f.by_month.iter().map(|(m, n)| (m.as_str(), *n)).collect();
    assert_eq!(
        months,
        vec![
            ("2024-01", 1),
            ("2024-02", 0),
            ("2024-03", 0),
            ("2024-04", 1)
        ]
    );
    let text = draw(&d.app, 120, 40);
    let line = text
        .lines()
        .find(|l| l.contains("PKUPH OA retro"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("1/6") && line.contains(" 17%"), "{line}");
    for label in ["24-01", "24-02", "24-03", "24-04"] {
        assert!(
            text.contains(label),
            "{label} missing from the chart: {text}"
        );
    }
    d.worker.stop();
}
