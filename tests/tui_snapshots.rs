//! The screens at fixed sizes, from fixture data (no database), as text snapshots.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use marrow::db::imaging::{ImageRecord, PatientImage};
use marrow::dicom::decode::{Pixels, Rendered};
use marrow::domain::dxa::Region;
use marrow::domain::eligibility::{Answer, Criterion, Decision, RadioChemo};
use marrow::domain::protocol::{Group, Phase, Protocol};
use marrow::domain::records::LabRecord;
use marrow::domain::status::{CohortCount, StatusReport};
use marrow::domain::user::Role;
use marrow::tui::fixture::{self, FixturePatient, manual, scan};
use marrow::tui::{App, Preview, PreviewKey, Response, Theme};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use std::sync::Arc;

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
        value: 46.176,
        unit: "nmol/L".into(),
        original_value: 18.5,
        original_unit: "ng/mL".into(),
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

/// A radiograph record of a study and series.
fn radiograph(
    instance_id: i64,
    (study, date): (&str, &str),
    (series, number): (&str, i64),
    (part, laterality, view): (&str, &str, &str),
    review: Option<&str>,
) -> PatientImage {
    PatientImage {
        instance_id,
        record: ImageRecord {
            sop_uid: format!("2.25.{instance_id}"),
            study_uid: study.into(),
            series_uid: series.into(),
            sop_class_uid: Some("1.2.840.10008.5.1.4.1.1.1.1".into()),
            modality: Some("DX".into()),
            body_part: Some(part.into()),
            laterality: Some(laterality.into()),
            view_position: Some(view.into()),
            study_date: Some(date.into()),
            series_number: Some(number),
            rows: Some(2500),
            columns: Some(2048),
            bits_allocated: Some(16),
            bits_stored: Some(12),
            photometric: Some("MONOCHROME2".into()),
            transfer_syntax: "1.2.840.10008.1.2.1".into(),
            pixel_spacing: Some((0.15, 0.15)),
            frames: 1,
            store_path: format!("{study}/2.25.{instance_id}.dcm"),
            bytes: 10_240_000,
            review_reason: review.map(String::from),
        },
    }
}

/// A patient's images: a knee study with an AP series (both knees) and a lateral
/// series (one image flagged for burned-in text), and a later hip study.
fn images_list() -> Vec<PatientImage> {
    let knee = ("2.25.100", "2024-05-01");
    let hip = ("2.25.200", "2025-01-10");
    vec![
        radiograph(1, knee, ("2.25.101", 1), ("KNEE", "L", "AP"), None),
        radiograph(2, knee, ("2.25.101", 1), ("KNEE", "R", "AP"), None),
        radiograph(
            3,
            knee,
            ("2.25.102", 2),
            ("KNEE", "L", "LL"),
            Some("BurnedInAnnotation YES"),
        ),
        radiograph(4, hip, ("2.25.201", 1), ("HIP", "B", "AP"), None),
    ]
}

/// A 32x40 frame, a gradient with a bright disc, as the image thread renders it.
fn rendered_frame() -> Arc<Preview> {
    let (w, h) = (32usize, 40usize);
    let pixels = (0..h)
        .flat_map(|y| {
            (0..w).map(move |x| {
                let (dx, dy) = (x as i64 - 16, y as i64 - 20);
                if dx * dx + dy * dy < 64 {
                    250
                } else {
                    (x * 4 + y * 2) as u8
                }
            })
        })
        .collect();
    Arc::new(Preview {
        rendered: Rendered {
            pixels: Pixels::Gray(pixels),
            width: w,
            height: h,
            voi: "window C 2048 W 4096".into(),
            window: Some((2048.0, 4096.0)),
            decoded_width: w,
            decoded_height: h,
        },
        presets: 1,
    })
}

/// The images screen of the rich patient with the grouped list, the second image
/// selected and drawn.
fn images_app() -> App {
    let p = rich_patient();
    let mut app = patient_app(&p);
    app.apply(Response::Images {
        study_id: p.study_id.clone(),
        images: images_list(),
    });
    keys(&mut app, "ij");
    app.apply(Response::Rendered {
        key: PreviewKey {
            instance_id: 2,
            frame: 0,
            voi_index: 0,
            window: None,
        },
        result: Ok(rendered_frame()),
    });
    app
}

#[test]
fn images_grouped_by_study_and_series_80x24() {
    let app = images_app();
    insta::assert_snapshot!(draw(&app, 80, 24));
}

#[test]
fn images_grouped_by_study_and_series_120x40() {
    let mut app = images_app();
    // The flagged image: its warning in the list and the attributes.
    keys(&mut app, "j");
    app.apply(Response::Rendered {
        key: PreviewKey {
            instance_id: 3,
            frame: 0,
            voi_index: 0,
            window: None,
        },
        result: Ok(rendered_frame()),
    });
    insta::assert_snapshot!(draw(&app, 120, 40));
}
