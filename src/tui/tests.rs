//! Update logic on fixture state: keys in, state and requests out.

use super::app::{App, Choice, Field, LoadState, MessageKind, Pane, Screen};
use super::fixture::{self, FixturePatient};
use super::worker::{Request, Response, SaveFailure, SetAnswer};
use crate::domain::eligibility::{Answer, Criterion, Decision, Flag};
use crate::domain::protocol::Group;
use crate::domain::user::Role;
use crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn key(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
}

fn code(c: KeyCode) -> KeyEvent {
    KeyEvent::new(c, KeyModifiers::NONE)
}

fn ctrl(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)
}

fn press(app: &mut App, keys: &str) -> Vec<Request> {
    keys.chars().flat_map(|c| app.handle_key(key(c))).collect()
}

fn app(n: usize) -> App {
    App::with_patients(fixture::session(Role::Coordinator), fixture::worklist(n))
}

/// Draws once, as the terminal would, so page sizes and hit areas are known.
fn draw(app: &App, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| app.render(f)).unwrap();
    t.backend().to_string()
}

fn selected_id(app: &App) -> String {
    app.selected_patient().unwrap().study_id.clone()
}

/// What opening a patient asks of the worker: the patient and their images.
fn open_requests(study_id: &str) -> Vec<Request> {
    vec![
        Request::LoadPatient {
            study_id: study_id.to_string(),
        },
        Request::LoadImages {
            study_id: study_id.to_string(),
        },
    ]
}

/// Opens the selected patient and answers the load with the fixture's detail.
fn open(app: &mut App, p: &FixturePatient) {
    let reqs = app.handle_key(code(KeyCode::Enter));
    assert_eq!(reqs, open_requests(&p.study_id));
    assert_eq!(app.screen(), Screen::Patient);
    assert_eq!(app.patient_state(), Some(&LoadState::Loading));
    app.apply(Response::Patient(Box::new(p.detail())));
    assert_eq!(app.patient_state(), Some(&LoadState::Loaded));
}

#[test]
fn movement_keys_stay_in_bounds() {
    let mut a = app(50);
    let ids: Vec<String> = a.visible_patients().map(|p| p.study_id.clone()).collect();
    assert_eq!(selected_id(&a), ids[0]);
    press(&mut a, "jjj");
    assert_eq!(selected_id(&a), ids[3]);
    a.handle_key(code(KeyCode::Up));
    assert_eq!(selected_id(&a), ids[2]);
    press(&mut a, "G");
    assert_eq!(selected_id(&a), ids[49]);
    press(&mut a, "j");
    assert_eq!(selected_id(&a), ids[49]);
    press(&mut a, "gg");
    assert_eq!(selected_id(&a), ids[0]);
    press(&mut a, "k");
    assert_eq!(selected_id(&a), ids[0]);
    // Pages follow what the last render showed (80x24: 17 rows of patients).
    draw(&a, 80, 24);
    a.handle_key(code(KeyCode::PageDown));
    assert_eq!(selected_id(&a), ids[17]);
    a.handle_key(ctrl('u'));
    assert_eq!(selected_id(&a), ids[9]);
    a.handle_key(ctrl('d'));
    assert_eq!(selected_id(&a), ids[17]);
    a.handle_key(code(KeyCode::End));
    assert_eq!(selected_id(&a), ids[49]);
}

#[test]
fn releases_and_repeats_are_ignored() {
    let mut a = app(10);
    let mut release = key('j');
    release.kind = KeyEventKind::Release;
    a.handle_key(release);
    assert_eq!(
        selected_id(&a),
        a.visible_patients().next().unwrap().study_id
    );
}

#[test]
fn decision_filter_cycles_through_every_decision_and_back() {
    let mut a = app(66);
    let total = a.visible_len();
    for d in Decision::ALL {
        press(&mut a, "d");
        assert_eq!(a.filters().decision, Some(d));
        assert!(a.visible_len() > 0, "fixture has {d} patients");
        assert!(a.visible_patients().all(|p| p.decision == d));
    }
    press(&mut a, "d");
    assert_eq!(a.filters().decision, None);
    assert_eq!(a.visible_len(), total);
}

#[test]
fn flag_site_and_group_filters_combine() {
    let mut a = app(66);
    press(&mut a, "f");
    assert_eq!(a.filters().flag, Some(Flag::MissingDxa));
    assert!(a.visible_len() > 0);
    assert!(
        a.visible_patients()
            .all(|p| p.flags.contains(&Flag::MissingDxa))
    );
    press(&mut a, "f");
    assert_eq!(a.filters().flag, Some(Flag::ZScoreApplies));
    press(&mut a, "f");
    assert_eq!(a.filters().flag, None);

    press(&mut a, "s");
    assert_eq!(a.filters().site.as_deref(), Some("PKUPH"));
    press(&mut a, "c");
    press(&mut a, "c");
    assert_eq!(a.filters().group, Some(Group::Op));
    assert_eq!(a.visible_len(), 11);
    assert!(
        a.visible_patients()
            .all(|p| p.site == "PKUPH" && p.group == Group::Op)
    );
    press(&mut a, "s");
    assert_eq!(a.filters().site.as_deref(), Some("SYSMH"));
    press(&mut a, "s");
    assert_eq!(a.filters().site, None);
    press(&mut a, "x");
    assert!(a.filters().is_empty());
    assert_eq!(a.visible_len(), 66);
}

#[test]
fn filters_keep_the_selected_patient_when_it_still_shows() {
    let mut a = app(66);
    press(&mut a, "jjjjj");
    let id = selected_id(&a);
    let site = a.selected_patient().unwrap().site.clone();
    press(&mut a, "s");
    assert_eq!(a.filters().site.as_deref(), Some(site.as_str()));
    assert_eq!(selected_id(&a), id);
}

#[test]
fn search_is_incremental_case_insensitive_and_typed_letters_do_not_act() {
    let mut a = app(66);
    press(&mut a, "/");
    assert!(a.is_searching());
    press(&mut a, "sysmh-op");
    assert_eq!(a.search(), "sysmh-op");
    assert!(!a.should_quit());
    assert_eq!(a.visible_len(), 11);
    assert!(
        a.visible_patients()
            .all(|p| p.study_id.starts_with("SYSMH-OP-"))
    );
    press(&mut a, "-0003");
    assert_eq!(a.visible_len(), 1);
    assert_eq!(selected_id(&a), "SYSMH-OP-0003");
    // q is a letter here, not quit; Backspace widens again
    press(&mut a, "q");
    assert!(!a.should_quit());
    assert_eq!(a.visible_len(), 0);
    a.handle_key(code(KeyCode::Backspace));
    assert_eq!(a.visible_len(), 1);
    // Enter keeps the search and gives the keys back to the list
    a.handle_key(code(KeyCode::Enter));
    assert!(!a.is_searching());
    assert_eq!(a.search(), "sysmh-op-0003");
    // Esc on the list drops it
    a.handle_key(code(KeyCode::Esc));
    assert_eq!(a.search(), "");
    assert_eq!(a.visible_len(), 66);
    assert_eq!(selected_id(&a), "SYSMH-OP-0003");
}

#[test]
fn esc_in_search_cancels_it() {
    let mut a = app(20);
    press(&mut a, "/OA");
    a.handle_key(ctrl('u'));
    assert_eq!(a.search(), "");
    press(&mut a, "OA");
    a.handle_key(code(KeyCode::Esc));
    assert!(!a.is_searching());
    assert_eq!(a.search(), "");
    assert_eq!(a.visible_len(), 20);
}

#[test]
fn enter_opens_the_patient_and_esc_goes_back() {
    let ps = fixture::patients(12);
    let mut a = App::with_patients(
        fixture::session(Role::Coordinator),
        ps.iter().map(|p| p.summary()).collect(),
    );
    press(&mut a, "j");
    open(&mut a, &ps[1]);
    assert_eq!(a.patient_detail().unwrap().summary.study_id, ps[1].study_id);
    assert_eq!(a.selected_criterion(), Some(Criterion::I1));
    press(&mut a, "jjj");
    assert_eq!(a.selected_criterion(), Some(Criterion::I4));
    press(&mut a, "G");
    assert_eq!(a.selected_criterion(), Some(Criterion::E5));
    press(&mut a, "j");
    assert_eq!(a.selected_criterion(), Some(Criterion::E5));
    a.handle_key(code(KeyCode::Tab));
    assert_eq!(a.pane(), Some(Pane::BoneDensity));
    a.handle_key(code(KeyCode::Tab));
    assert_eq!(a.pane(), Some(Pane::Checklist));
    a.handle_key(code(KeyCode::Esc));
    assert_eq!(a.screen(), Screen::Worklist);
    assert_eq!(selected_id(&a), ps[1].study_id);
}

#[test]
fn next_and_previous_patient_follow_the_worklist() {
    let ps = fixture::patients(5);
    let mut a = App::with_patients(
        fixture::session(Role::Coordinator),
        ps.iter().map(|p| p.summary()).collect(),
    );
    open(&mut a, &ps[0]);
    assert_eq!(press(&mut a, "]"), open_requests(&ps[1].study_id));
    assert_eq!(press(&mut a, "[").len(), 2);
    assert!(press(&mut a, "[").is_empty(), "no patient before the first");
    assert!(a.message().is_some());
}

#[test]
fn a_late_response_for_another_patient_is_ignored() {
    let ps = fixture::patients(5);
    let mut a = App::with_patients(
        fixture::session(Role::Coordinator),
        ps.iter().map(|p| p.summary()).collect(),
    );
    press(&mut a, "\n");
    a.handle_key(code(KeyCode::Enter));
    a.apply(Response::Patient(Box::new(ps[3].detail())));
    assert_eq!(a.patient_state(), Some(&LoadState::Loading));
    assert!(a.patient_detail().is_none());
    a.apply(Response::PatientFailed {
        study_id: ps[0].study_id.clone(),
        error: "disk on fire".into(),
    });
    assert_eq!(
        a.patient_state(),
        Some(&LoadState::Failed("disk on fire".into()))
    );
}

/// Opens the first patient with an unknown I4 (deformity not recorded).
fn patient_with_open_i4() -> (App, FixturePatient) {
    let mut p = FixturePatient::clean("PKUPH", Group::Oa, 1);
    p.record.deformity = None;
    p.version = 4;
    let mut a = App::with_patients(fixture::session(Role::Coordinator), vec![p.summary()]);
    open(&mut a, &p);
    press(&mut a, "jjj");
    assert_eq!(a.selected_criterion(), Some(Criterion::I4));
    (a, p)
}

#[test]
fn popup_choose_type_reason_and_save() {
    let (mut a, p) = patient_with_open_i4();
    assert_eq!(
        a.patient_detail().unwrap().summary.decision,
        Decision::Pending
    );
    a.handle_key(code(KeyCode::Enter));
    let popup = a.popup().expect("popup open");
    assert_eq!(popup.criterion(), Criterion::I4);
    assert_eq!(popup.field(), Field::Choice);
    // j/k move the choice; y picks yes and moves on to the reason
    press(&mut a, "jj");
    assert_eq!(a.popup().unwrap().choice(), Choice::Unknown);
    press(&mut a, "y");
    assert_eq!(a.popup().unwrap().choice(), Choice::Yes);
    assert_eq!(a.popup().unwrap().field(), Field::Reason);
    // letters are text now: y, n, q, j do not act
    press(&mut a, "xray: no deformityqjk");
    a.handle_key(code(KeyCode::Backspace));
    a.handle_key(code(KeyCode::Backspace));
    a.handle_key(code(KeyCode::Backspace));
    assert_eq!(a.popup().unwrap().reason(), "xray: no deformity");
    assert!(!a.should_quit());
    let reqs = a.handle_key(code(KeyCode::Enter));
    assert_eq!(
        reqs,
        vec![Request::SetAnswer(SetAnswer {
            study_id: p.study_id.clone(),
            criterion: Criterion::I4,
            answer: Some(Answer::Yes),
            reason: "xray: no deformity".into(),
            expected_version: 4,
        })]
    );
    assert!(a.popup().unwrap().is_saving());
    // a second Enter while saving sends nothing
    assert!(a.handle_key(code(KeyCode::Enter)).is_empty());

    let mut saved = p.clone();
    saved.manual.push(fixture::manual(
        Criterion::I4,
        Answer::Yes,
        "xray: no deformity",
        "alice",
    ));
    saved.version = 5;
    a.apply(Response::Saved {
        detail: Box::new(saved.detail()),
        criterion: Criterion::I4,
        answer: Some(Answer::Yes),
        status: None,
    });
    assert!(a.popup().is_none());
    let m = a.message().unwrap();
    assert_eq!(m.kind, MessageKind::Success);
    assert!(m.text.contains("I4 set to met"), "{}", m.text);
    assert!(m.text.contains("eligible"), "{}", m.text);
    // the worklist row follows
    assert_eq!(a.selected_patient().unwrap().decision, Decision::Eligible);
    assert_eq!(a.selected_patient().unwrap().version, 5);
}

#[test]
fn save_without_reason_asks_for_one_and_sends_nothing() {
    let (mut a, _) = patient_with_open_i4();
    a.handle_key(code(KeyCode::Enter));
    // Enter on the answer goes to the reason field first
    assert!(a.handle_key(code(KeyCode::Enter)).is_empty());
    assert_eq!(a.popup().unwrap().field(), Field::Reason);
    press(&mut a, "   ");
    assert!(a.handle_key(code(KeyCode::Enter)).is_empty());
    assert!(a.popup().unwrap().error().unwrap().contains("reason"));
    // Tab goes back to the answer, Esc cancels
    a.handle_key(code(KeyCode::Tab));
    assert_eq!(a.popup().unwrap().field(), Field::Choice);
    a.handle_key(code(KeyCode::Esc));
    assert!(a.popup().is_none());
    assert_eq!(a.screen(), Screen::Patient);
}

#[test]
fn clearing_needs_a_manual_answer() {
    let (mut a, _) = patient_with_open_i4();
    a.handle_key(code(KeyCode::Enter));
    press(&mut a, "xbecause");
    assert_eq!(a.popup().unwrap().choice(), Choice::Clear);
    assert!(a.handle_key(code(KeyCode::Enter)).is_empty());
    assert!(
        a.popup()
            .unwrap()
            .error()
            .unwrap()
            .contains("no manual answer")
    );
}

#[test]
fn conflict_keeps_the_reason_reloads_and_saves_against_the_new_version() {
    let (mut a, p) = patient_with_open_i4();
    a.handle_key(code(KeyCode::Enter));
    press(&mut a, "nimplant seen on CT");
    assert_eq!(a.handle_key(code(KeyCode::Enter)).len(), 1);
    let mut fresh = p.clone();
    fresh.version = 7;
    fresh
        .manual
        .push(fixture::manual(Criterion::E2, Answer::No, "checked", "bob"));
    let conflict = "PKUPH-OA-0001 was changed by bob at 2026-01-06T10:00:00Z after you opened it \
                    (version 4, now 7); nothing was saved: reload it and answer again";
    a.apply(Response::SaveFailed {
        study_id: p.study_id.clone(),
        criterion: Criterion::I4,
        kind: SaveFailure::Conflict,
        error: conflict.into(),
        fresh: Some(Box::new(fresh.detail())),
    });
    let popup = a.popup().expect("popup stays open");
    assert_eq!(popup.reason(), "implant seen on CT");
    assert_eq!(popup.choice(), Choice::No);
    assert!(!popup.is_saving());
    assert!(popup.error().unwrap().contains("changed by bob"));
    let m = a.message().unwrap();
    assert_eq!(m.kind, MessageKind::Error);
    assert!(m.text.contains("changed by bob"));
    assert_eq!(a.patient_detail().unwrap().summary.version, 7);
    // the popup and status line show it
    let screen = draw(&a, 80, 24);
    assert!(screen.contains("changed by bob"), "{screen}");
    // Enter saves again, now against version 7
    match a.handle_key(code(KeyCode::Enter)).as_slice() {
        [Request::SetAnswer(s)] => {
            assert_eq!(s.expected_version, 7);
            assert_eq!(s.reason, "implant seen on CT");
            assert_eq!(s.answer, Some(Answer::No));
        }
        other => panic!("expected one SetAnswer, got {other:?}"),
    }
}

#[test]
fn read_only_roles_cannot_open_the_popup() {
    let p = FixturePatient::clean("PKUPH", Group::Oa, 1);
    for role in [Role::Pi, Role::Reader] {
        let mut a = App::with_patients(fixture::session(role), vec![p.summary()]);
        open(&mut a, &p);
        assert!(a.handle_key(code(KeyCode::Enter)).is_empty());
        assert!(a.popup().is_none());
        let m = a.message().unwrap();
        assert_eq!(m.kind, MessageKind::Error);
        assert!(
            m.text.contains("may not answer screening criteria"),
            "{}",
            m.text
        );
    }
}

#[test]
fn not_allowed_from_the_database_closes_the_popup_with_the_reason_in_the_status_line() {
    let (mut a, p) = patient_with_open_i4();
    a.handle_key(code(KeyCode::Enter));
    press(&mut a, "ychecked");
    a.handle_key(code(KeyCode::Enter));
    a.apply(Response::SaveFailed {
        study_id: p.study_id.clone(),
        criterion: Criterion::I4,
        kind: SaveFailure::NotAllowed,
        error: "alice (pi (PIs have read-only access)) may not answer screening criteria".into(),
        fresh: None,
    });
    assert!(a.popup().is_none());
    assert!(a.message().unwrap().text.contains("read-only"));
}

#[test]
fn help_opens_scrolls_and_closes_without_quitting() {
    let mut a = app(5);
    press(&mut a, "?");
    assert!(a.help_open());
    draw(&a, 80, 24);
    press(&mut a, "jjj");
    assert_eq!(a.help.as_ref().unwrap().scroll, 3);
    press(&mut a, "G");
    let (lines, fits) = a.help.as_ref().unwrap().lines.get();
    assert_eq!(a.help.as_ref().unwrap().scroll, lines - fits);
    press(&mut a, "q");
    assert!(!a.help_open());
    assert!(!a.should_quit());
    press(&mut a, "?");
    a.handle_key(code(KeyCode::Esc));
    assert!(!a.help_open());
    press(&mut a, "q");
    assert!(a.should_quit());
}

#[test]
fn ctrl_c_quits_even_while_typing() {
    let (mut a, _) = patient_with_open_i4();
    a.handle_key(code(KeyCode::Enter));
    press(&mut a, "yabc");
    a.handle_key(ctrl('c'));
    assert!(a.should_quit());
}

#[test]
fn reload_asks_for_the_worklist_and_the_open_patient() {
    let ps = fixture::patients(3);
    let mut a = App::with_patients(
        fixture::session(Role::Coordinator),
        ps.iter().map(|p| p.summary()).collect(),
    );
    assert_eq!(press(&mut a, "r"), vec![Request::LoadWorklist]);
    assert_eq!(a.worklist_state(), &LoadState::Loading);
    a.apply(Response::Worklist {
        patients: fixture::worklist(3),
        status: None,
    });
    assert_eq!(a.worklist_state(), &LoadState::Loaded);
    open(&mut a, &ps[0]);
    assert_eq!(
        press(&mut a, "r"),
        vec![
            Request::LoadWorklist,
            Request::LoadPatient {
                study_id: ps[0].study_id.clone()
            }
        ]
    );
}

#[test]
fn worklist_reload_keeps_the_selected_patient() {
    let mut a = app(30);
    press(&mut a, "jjjjjjj");
    let id = selected_id(&a);
    // the reloaded list lost its first patient: the selection follows the ID
    let mut fresh = fixture::worklist(30);
    fresh.remove(0);
    a.apply(Response::Worklist {
        patients: fresh,
        status: None,
    });
    assert_eq!(selected_id(&a), id);
}

#[test]
fn worklist_failure_and_worker_stop_are_shown() {
    let mut a = App::new(fixture::session(Role::Coordinator));
    assert_eq!(a.start(), vec![Request::LoadWorklist]);
    assert!(draw(&a, 80, 24).contains("Loading the worklist"));
    a.apply(Response::WorklistFailed("database is busy".into()));
    assert!(matches!(a.worklist_state(), LoadState::Failed(_)));
    assert!(draw(&a, 80, 24).contains("database is busy"));
    a.apply(Response::WorkerStopped);
    assert!(a.message().unwrap().text.contains("worker stopped"));
}

#[test]
fn mouse_wheel_moves_and_click_selects_then_opens() {
    let mut a = app(40);
    draw(&a, 80, 24);
    let ids: Vec<String> = a.visible_patients().map(|p| p.study_id.clone()).collect();
    let wheel = |kind| MouseEvent {
        kind,
        column: 10,
        row: 10,
        modifiers: KeyModifiers::NONE,
    };
    a.handle_mouse(wheel(MouseEventKind::ScrollDown));
    assert_eq!(selected_id(&a), ids[3]);
    a.handle_mouse(wheel(MouseEventKind::ScrollUp));
    assert_eq!(selected_id(&a), ids[0]);
    // rows start at y=4: header, filter bar, block border, table header
    let click = MouseEvent {
        kind: MouseEventKind::Down(MouseButton::Left),
        column: 10,
        row: 6,
        modifiers: KeyModifiers::NONE,
    };
    assert!(a.handle_mouse(click).is_empty());
    assert_eq!(selected_id(&a), ids[2]);
    assert_eq!(a.handle_mouse(click), open_requests(&ids[2]));
}

#[test]
fn a_hundred_thousand_patients_filter_and_draw_quickly() {
    let mut a = app(100_000);
    let started = std::time::Instant::now();
    press(&mut a, "/pkuph-op-00");
    press(&mut a, "d");
    draw(&a, 120, 40);
    a.handle_key(code(KeyCode::Esc));
    press(&mut a, "x");
    press(&mut a, "G");
    draw(&a, 120, 40);
    // Generous bound for debug builds on a loaded machine; a full-table render would
    // take far longer.
    assert!(
        started.elapsed().as_secs_f64() < 5.0,
        "{:?}",
        started.elapsed()
    );
    assert_eq!(a.visible_len(), 100_000);
}

#[test]
fn too_small_terminal_says_so() {
    let a = app(3);
    let s = draw(&a, 60, 20);
    assert!(s.contains("terminal too small"), "{s}");
    assert!(draw(&a, 80, 24).contains("Patients"));
}

#[test]
fn header_counts_images_waiting_for_their_patient_only_when_there_are_some() {
    use crate::domain::protocol::Protocol;
    use crate::domain::status::StatusReport;
    let mut a = app(3);
    let mut status = StatusReport::build(&Protocol::default(), &[], 0);
    a.set_status(status.clone());
    assert!(!draw(&a, 120, 40).contains("waiting"));
    status.quarantined = 7;
    a.set_status(status);
    assert!(draw(&a, 120, 40).contains("7 images waiting"));
    assert!(draw(&a, 80, 24).contains("7 waiting"));
}

// ---- the images screen ----

use super::worker::{Preview, PreviewKey, RenderImage};
use crate::db::imaging::{ImageRecord, PatientImage};
use crate::dicom::decode::{Pixels, Rendered};
use std::sync::Arc;

fn image(instance_id: i64, frames: i64, review: Option<&str>) -> PatientImage {
    PatientImage {
        instance_id,
        record: ImageRecord {
            sop_uid: format!("2.25.{instance_id}"),
            study_uid: "2.25.1".into(),
            series_uid: "2.25.2".into(),
            sop_class_uid: None,
            modality: Some("DX".into()),
            body_part: Some("KNEE".into()),
            laterality: Some("L".into()),
            view_position: Some("PA".into()),
            study_date: Some("2024-05-01".into()),
            series_number: Some(1),
            rows: Some(16),
            columns: Some(16),
            bits_allocated: Some(16),
            bits_stored: Some(12),
            photometric: Some("MONOCHROME2".into()),
            transfer_syntax: "1.2.840.10008.1.2.1".into(),
            pixel_spacing: None,
            frames,
            store_path: format!("2.25.1/2.25.{instance_id}.dcm"),
            bytes: 1000,
            review_reason: review.map(String::from),
        },
    }
}

fn preview(presets: usize) -> Arc<Preview> {
    Arc::new(Preview {
        rendered: Rendered {
            pixels: Pixels::Gray((0..=255u8).collect()),
            width: 16,
            height: 16,
            voi: "automatic window".into(),
            window: Some((128.0, 256.0)),
            decoded_width: 16,
            decoded_height: 16,
        },
        presets,
    })
}

fn render_keys(reqs: &[Request]) -> Vec<PreviewKey> {
    reqs.iter()
        .filter_map(|r| match r {
            Request::RenderImage(RenderImage { key, .. }) => Some(*key),
            _ => None,
        })
        .collect()
}

fn key_of(instance_id: i64, frame: usize, voi_index: usize) -> PreviewKey {
    PreviewKey {
        instance_id,
        frame,
        voi_index,
        window: None,
    }
}

/// A patient open with three images (the second multi-frame, the third flagged).
fn images_app() -> (App, String) {
    let ps = fixture::patients(2);
    let mut a = App::with_patients(
        fixture::session(Role::Coordinator),
        ps.iter().map(|p| p.summary()).collect(),
    );
    open(&mut a, &ps[0]);
    let sid = ps[0].study_id.clone();
    (a, sid)
}

fn image_list() -> Vec<PatientImage> {
    vec![
        image(11, 1, None),
        image(12, 3, None),
        image(13, 1, Some("BurnedInAnnotation YES")),
    ]
}

#[test]
fn i_opens_the_images_and_asks_for_the_first_frame_once_the_list_is_in() {
    let (mut a, sid) = images_app();
    // The list was asked for with the patient; it is not in yet.
    assert!(press(&mut a, "i").is_empty());
    assert_eq!(a.screen(), Screen::Images);
    let follow = a.apply(Response::Images {
        study_id: sid.clone(),
        images: image_list(),
    });
    assert_eq!(render_keys(&follow), vec![key_of(11, 0, 0)]);
    match &follow[0] {
        Request::RenderImage(r) => {
            assert_eq!(r.store_path, "2.25.1/2.25.11.dcm");
            assert!(r.max_w > 0 && r.max_h > 0);
        }
        other => panic!("{other:?}"),
    }
    // Esc goes back to the patient; i again finds the frame on its way: no new request.
    press(&mut a, "h");
    assert_eq!(a.screen(), Screen::Patient);
    assert!(press(&mut a, "i").is_empty());
    assert_eq!(a.screen(), Screen::Images);
}

#[test]
fn a_list_loaded_with_the_patient_renders_at_once_on_i() {
    let (mut a, sid) = images_app();
    let follow = a.apply(Response::Images {
        study_id: sid,
        images: image_list(),
    });
    assert!(
        follow.is_empty(),
        "nothing is drawn from the patient screen"
    );
    assert_eq!(render_keys(&press(&mut a, "i")), vec![key_of(11, 0, 0)]);
}

#[test]
fn image_keys_move_frames_and_windows_and_use_the_cache() {
    let (mut a, sid) = images_app();
    a.apply(Response::Images {
        study_id: sid,
        images: image_list(),
    });
    press(&mut a, "i");
    a.apply(Response::Rendered {
        key: key_of(11, 0, 0),
        result: Ok(preview(1)),
    });
    // One frame: ] says so and asks nothing.
    assert!(press(&mut a, "]").is_empty());
    assert!(a.message().is_some());
    // One window preset: w says so.
    assert!(press(&mut a, "w").is_empty());
    assert!(a.message().is_some());
    // Next image, three frames: ] and [ wrap around.
    assert_eq!(render_keys(&press(&mut a, "j")), vec![key_of(12, 0, 0)]);
    assert_eq!(render_keys(&press(&mut a, "]")), vec![key_of(12, 1, 0)]);
    assert_eq!(render_keys(&press(&mut a, "[")), vec![key_of(12, 0, 0)]);
    assert_eq!(render_keys(&press(&mut a, "[")), vec![key_of(12, 2, 0)]);
    // w before any frame of it is drawn: wait.
    assert!(press(&mut a, "w").is_empty());
    a.apply(Response::Rendered {
        key: key_of(12, 2, 0),
        result: Ok(preview(2)),
    });
    assert_eq!(render_keys(&press(&mut a, "w")), vec![key_of(12, 2, 1)]);
    // Back to the first image: cached, nothing to ask; and the selection resets frame and window.
    assert!(press(&mut a, "k").is_empty());
    let v = a.images().unwrap();
    assert_eq!((v.selected, v.frame, v.voi_index), (0, 0, 0));
    // A failed render is not asked again on its own; r asks again.
    press(&mut a, "G");
    a.apply(Response::Rendered {
        key: key_of(13, 0, 0),
        result: Err("bad file".into()),
    });
    assert!(press(&mut a, "k").len() == 1 && press(&mut a, "j").is_empty());
    let reload = press(&mut a, "r");
    assert!(reload.contains(&Request::LoadImages {
        study_id: a.images().unwrap().study_id.clone()
    }));
}

#[test]
fn window_and_level_keys_step_from_the_window_on_screen_and_reset() {
    let (mut a, sid) = images_app();
    a.apply(Response::Images {
        study_id: sid,
        images: image_list(),
    });
    press(&mut a, "i");
    // Before the frame is drawn there is no window to step from.
    assert!(press(&mut a, ">").is_empty());
    assert!(a.message().is_some());
    a.apply(Response::Rendered {
        key: key_of(11, 0, 0),
        result: Ok(preview(1)),
    });
    let with = |c: i32, w: i32| PreviewKey {
        window: Some((c, w)),
        ..key_of(11, 0, 0)
    };
    // C 128 W 256: a fifth wider, then a tenth of the width down, then narrower.
    assert_eq!(render_keys(&press(&mut a, ">")), vec![with(128, 320)]);
    assert_eq!(render_keys(&press(&mut a, "{")), vec![with(96, 320)]);
    assert_eq!(render_keys(&press(&mut a, "<")), vec![with(96, 256)]);
    assert_eq!(render_keys(&press(&mut a, "}")), vec![with(122, 256)]);
    // 0 goes back to the file's window: cached, nothing to ask.
    assert!(press(&mut a, "0").is_empty());
    assert_eq!(a.images().unwrap().window, None);
    // The keys are in the keymap the help and footer are made from.
    assert!(
        super::keymap::KEYMAP
            .iter()
            .any(|b| b.action == super::keymap::Action::WindowWidth(1)
                && b.help.contains("wider window"))
    );
}

#[test]
fn the_preview_cache_keeps_the_last_eight() {
    let (mut a, _) = images_app();
    for i in 0..10 {
        a.apply(Response::Rendered {
            key: key_of(i, 0, 0),
            result: Ok(preview(0)),
        });
    }
    assert_eq!(a.previews().len(), 8);
    assert!(a.previews().get(&key_of(0, 0, 0)).is_none());
    assert!(a.previews().get(&key_of(9, 0, 0)).is_some());
}

#[test]
fn the_images_screen_lists_the_images_and_draws_a_placeholder_then_the_image() {
    let (mut a, sid) = images_app();
    a.apply(Response::Images {
        study_id: sid.clone(),
        images: image_list(),
    });
    // The patient screen counts the images.
    let patient = draw(&a, 80, 24);
    assert!(patient.contains("3 images"), "{patient}");
    press(&mut a, "i");
    let screen = draw(&a, 80, 24);
    assert!(
        screen.contains("2024-05-01 · DX KNEE · 1 series"),
        "{screen}"
    );
    assert!(screen.contains("series 1 · DX KNEE · 3 images"), "{screen}");
    assert!(screen.contains("▶ 1 L PA 16x16"), "{screen}");
    assert!(screen.contains("2 L PA 16x16 ×3"), "{screen}");
    assert!(screen.contains("⚠"), "{screen}");
    assert!(screen.contains("decoding…"), "{screen}");
    assert!(screen.contains("de-identified"), "{screen}");
    assert!(screen.contains("frame"), "{screen}");
    assert!(!screen.contains(['▀', '▄']));
    a.apply(Response::Rendered {
        key: key_of(11, 0, 0),
        result: Ok(preview(0)),
    });
    let screen = draw(&a, 80, 24);
    assert!(!screen.contains("decoding…"), "{screen}");
    assert!(screen.contains(['▀', '▄']), "half-blocks drawn:\n{screen}");
    // The flagged image shows its reason in the attributes.
    press(&mut a, "G");
    let screen = draw(&a, 80, 24);
    assert!(screen.contains("burned-in text review"), "{screen}");
}

#[test]
fn marrow_graphics_names_a_mode_as_graphics_spells_it() {
    use super::Graphics;
    use ratatui_image::picker::ProtocolType;
    for (value, want) in [
        ("halfblocks", Graphics::Halfblocks),
        ("half-blocks", Graphics::Halfblocks),
        (" Sixel ", Graphics::Sixel),
        ("kitty", Graphics::Kitty),
        ("iterm2", Graphics::Iterm2),
        ("auto", Graphics::Auto),
    ] {
        assert_eq!(super::graphics_override(value), Some(want), "{value}");
    }
    assert_eq!(super::graphics_override("vga"), None);
    assert_eq!(Graphics::Auto.forced(), None);
    assert_eq!(Graphics::Kitty.forced(), Some(ProtocolType::Kitty));
}

#[test]
fn graphics_is_an_option_of_marrow_and_marrow_tui() {
    use super::Graphics;
    use crate::cli::{Cli, Command};
    use clap::Parser as _;
    let cli = Cli::try_parse_from(["marrow", "--graphics", "halfblocks"]).unwrap();
    assert_eq!(cli.tui.graphics, Some(Graphics::Halfblocks));
    assert!(cli.command.is_none());
    let cli = Cli::try_parse_from(["marrow", "tui", "--graphics", "kitty"]).unwrap();
    match cli.command {
        Some(Command::Tui(t)) => assert_eq!(t.graphics, Some(Graphics::Kitty)),
        other => panic!("{other:?}"),
    }
    let cli = Cli::try_parse_from(["marrow", "tui"]).unwrap();
    assert!(matches!(cli.command, Some(Command::Tui(t)) if t.graphics.is_none()));
    let e = Cli::try_parse_from(["marrow", "--graphics", "vga"]).unwrap_err();
    assert!(e.to_string().contains("halfblocks"), "{e}");
}

/// An app as `run` makes it (a picker to come), on the images screen of a patient
/// with the three images in.
fn lazy_images_app() -> App {
    let (mut a, sid) = images_app();
    a.expect_picker();
    a.apply(Response::Images {
        study_id: sid,
        images: image_list(),
    });
    a
}

#[test]
fn the_terminal_is_asked_about_graphics_only_when_the_images_screen_first_opens() {
    use super::{Graphics, GraphicsSetup};
    use ratatui_image::FontSize;
    use ratatui_image::picker::{Picker, ProtocolType};
    use std::cell::Cell;
    let asked = Cell::new(0);
    let mut setup = GraphicsSetup::new(Graphics::Auto, false, || {
        asked.set(asked.get() + 1);
        // As a terminal with 7x14-pixel cells and sixel answers.
        #[allow(deprecated)]
        let mut p = Picker::from_fontsize(FontSize::new(7, 14));
        p.set_protocol_type(ProtocolType::Sixel);
        Ok(p)
    });
    let ps = fixture::patients(2);
    let mut a = App::with_patients(
        fixture::session(Role::Coordinator),
        ps.iter().map(|p| p.summary()).collect(),
    );
    a.expect_picker();
    // The worklist, a patient, the help, back: never asked.
    assert!(setup.settle(&mut a).is_none());
    open(&mut a, &ps[0]);
    a.apply(Response::Images {
        study_id: ps[0].study_id.clone(),
        images: image_list(),
    });
    press(&mut a, "?");
    press(&mut a, "?");
    assert!(setup.settle(&mut a).is_none());
    assert_eq!(asked.get(), 0);
    // i: the screen waits for the picker before asking for a frame (its size depends
    // on the cells), then asks for it once the terminal answered.
    assert!(render_keys(&press(&mut a, "i")).is_empty());
    assert!(a.wants_picker());
    let follow = setup.settle(&mut a).expect("asked on the images screen");
    assert_eq!(asked.get(), 1);
    assert_eq!(render_keys(&follow), vec![key_of(11, 0, 0)]);
    match &follow[0] {
        // 60x30 cells assumed before the first draw, twice over, at 7x14 pixels.
        Request::RenderImage(r) => assert_eq!((r.max_w, r.max_h), (840, 840)),
        other => panic!("{other:?}"),
    }
    assert_eq!((a.font_size().width, a.font_size().height), (7, 14));
    let screen = draw(&a, 80, 24);
    assert!(screen.contains("sixel"), "{screen}");
    assert!(a.message().is_none(), "no note when the terminal answered");
    // Back and in again, other patients: asked once only.
    press(&mut a, "h");
    press(&mut a, "i");
    assert!(setup.settle(&mut a).is_none());
    press(&mut a, "h]i");
    assert!(setup.settle(&mut a).is_none());
    assert_eq!(asked.get(), 1);
}

#[test]
fn no_answer_means_half_blocks_and_a_note_and_tmux_or_halfblocks_never_ask() {
    use super::{Graphics, GraphicsSetup};
    use ratatui_image::picker::ProtocolType;
    use std::cell::Cell;
    let asked = Cell::new(0);
    let query = || {
        asked.set(asked.get() + 1);
        Err("no answer on stdin".to_string())
    };
    // The terminal does not answer: half-blocks, and the status line says why.
    let mut a = lazy_images_app();
    press(&mut a, "i");
    let follow = GraphicsSetup::new(Graphics::Auto, false, query)
        .settle(&mut a)
        .unwrap();
    assert_eq!(asked.get(), 1);
    assert_eq!(render_keys(&follow), vec![key_of(11, 0, 0)]);
    assert_eq!(
        a.picker().unwrap().protocol_type(),
        ProtocolType::Halfblocks
    );
    let note = a.message().unwrap();
    assert_eq!(note.kind, MessageKind::Info);
    assert!(note.text.contains("did not answer"), "{}", note.text);
    assert!(draw(&a, 120, 40).contains("did not answer"));
    // A forced protocol is kept when the terminal does not answer (cells assumed).
    let mut a = lazy_images_app();
    press(&mut a, "i");
    GraphicsSetup::new(Graphics::Kitty, false, query).settle(&mut a);
    assert_eq!(asked.get(), 2);
    assert_eq!(a.picker().unwrap().protocol_type(), ProtocolType::Kitty);
    // Half-blocks asked for, or auto inside tmux/screen: never asked.
    for (graphics, multiplexed) in [
        (Graphics::Halfblocks, false),
        (Graphics::Halfblocks, true),
        (Graphics::Auto, true),
    ] {
        let mut a = lazy_images_app();
        press(&mut a, "i");
        let follow = GraphicsSetup::new(graphics, multiplexed, query)
            .settle(&mut a)
            .unwrap();
        assert_eq!(render_keys(&follow), vec![key_of(11, 0, 0)]);
        assert_eq!(
            a.picker().unwrap().protocol_type(),
            ProtocolType::Halfblocks
        );
        assert!(a.message().is_none());
    }
    assert_eq!(asked.get(), 2);
    // A protocol forced inside tmux is asked (for the cell size).
    let mut a = lazy_images_app();
    press(&mut a, "i");
    GraphicsSetup::new(Graphics::Sixel, true, query).settle(&mut a);
    assert_eq!(asked.get(), 3);
}

#[test]
fn the_images_keys_are_in_help_and_footer() {
    use super::keymap::{Context, footer};
    let f = footer(&[Context::Images, Context::Global, Context::Always]);
    for (keys, word) in [
        ("j/k", "image"),
        ("]/[", "frame"),
        ("w", "window"),
        ("Esc", "back"),
    ] {
        assert!(f.contains(&(keys.to_string(), word)), "{f:?}");
    }
    let p = footer(&[Context::Patient, Context::Global, Context::Always]);
    assert!(p.contains(&("i".to_string(), "images")), "{p:?}");
}

#[test]
fn zoom_and_pan_move_a_window_over_the_image_without_new_renders() {
    let (mut a, sid) = images_app();
    a.apply(Response::Images {
        study_id: sid,
        images: image_list(),
    });
    press(&mut a, "i");
    a.apply(Response::Rendered {
        key: key_of(11, 0, 0),
        result: Ok(preview(0)),
    });
    // Panning the whole image: nothing to do, and it says so.
    assert!(press(&mut a, "L").is_empty());
    assert!(a.message().is_some());
    assert!(
        press(&mut a, "+").is_empty(),
        "zoom reuses the rendered frame"
    );
    assert_eq!(a.images().unwrap().view_window(), (0.25, 0.25, 0.5, 0.5));
    press(&mut a, "LLLLLLLL");
    assert_eq!(a.images().unwrap().view_window(), (0.5, 0.25, 0.5, 0.5));
    press(&mut a, "++++");
    assert_eq!(a.images().unwrap().zoom, 8);
    let screen = draw(&a, 80, 24);
    assert!(screen.contains("zoom 8x"), "{screen}");
    assert!(screen.contains(['▀', '▄']), "{screen}");
    press(&mut a, "0");
    assert_eq!(a.images().unwrap().view_window(), (0.0, 0.0, 1.0, 1.0));
    press(&mut a, "+");
    press(&mut a, "j");
    assert_eq!(a.images().unwrap().zoom, 1, "a new image starts whole");
}

#[test]
fn the_images_footer_keeps_back_at_80_columns() {
    let (mut a, sid) = images_app();
    a.apply(Response::Images {
        study_id: sid,
        images: image_list(),
    });
    press(&mut a, "i");
    let screen = draw(&a, 80, 24);
    let footer = screen.lines().last().unwrap_or_default();
    assert!(footer.contains("Esc back"), "{footer}");
    assert!(footer.contains("q quit"), "{footer}");
}

/// Two studies: a knee study with two series (AP and lateral, the lateral with two
/// images, one flagged), and a later hip study with one image.
fn studies_list() -> Vec<PatientImage> {
    let in_series = |id: i64, study: &str, date: &str, series: i64, part: &str| {
        let mut i = image(id, 1, None);
        i.record.study_uid = format!("2.25.{study}");
        i.record.study_date = Some(date.into());
        i.record.series_uid = format!("2.25.{study}.{series}");
        i.record.series_number = Some(series);
        i.record.body_part = Some(part.into());
        i
    };
    let mut flagged = in_series(23, "1", "2024-05-01", 2, "KNEE");
    flagged.record.review_reason = Some("BurnedInAnnotation YES".into());
    vec![
        in_series(21, "1", "2024-05-01", 1, "KNEE"),
        in_series(22, "1", "2024-05-01", 2, "KNEE"),
        flagged,
        in_series(31, "2", "2025-01-10", 1, "HIP"),
    ]
}

#[test]
fn the_image_list_is_grouped_by_study_then_series() {
    use super::app::{ImageRow, group_images};
    let rows = group_images(&studies_list());
    assert_eq!(
        rows,
        vec![
            ImageRow::Study {
                first: 0,
                series: 2,
                images: 3
            },
            ImageRow::Series {
                first: 0,
                images: 1
            },
            ImageRow::Image(0),
            ImageRow::Series {
                first: 1,
                images: 2
            },
            ImageRow::Image(1),
            ImageRow::Image(2),
            ImageRow::Study {
                first: 3,
                series: 1,
                images: 1
            },
            ImageRow::Series {
                first: 3,
                images: 1
            },
            ImageRow::Image(3),
        ]
    );
    assert!(group_images(&[]).is_empty());

    let (mut a, sid) = images_app();
    a.apply(Response::Images {
        study_id: sid,
        images: studies_list(),
    });
    press(&mut a, "i");
    let screen = draw(&a, 80, 24);
    for want in [
        "PKUPH-OA-0001 · 4 images",
        "2024-05-01 · DX KNEE · 2 series",
        "series 1 · DX KNEE · 1 image",
        "series 2 · DX KNEE · 2 images",
        "2025-01-10 · DX HIP · 1 series",
        "▶ 1 L PA 16x16",
        "3 L PA 16x16 ⚠",
    ] {
        assert!(screen.contains(want), "{want:?} in\n{screen}");
    }
    // j/k move over the images only, across series and studies.
    press(&mut a, "j");
    assert_eq!(a.images().unwrap().current().unwrap().instance_id, 22);
    press(&mut a, "jj");
    assert_eq!(a.images().unwrap().current().unwrap().instance_id, 31);
    assert_eq!(a.images().unwrap().selected_row(), 8);
    press(&mut a, "j");
    assert_eq!(a.images().unwrap().current().unwrap().instance_id, 31);
    press(&mut a, "k");
    assert_eq!(a.images().unwrap().current().unwrap().instance_id, 23);
    // The flagged image warns in its row and in the attributes.
    let screen = draw(&a, 80, 24);
    assert!(screen.contains("burned-in text review"), "{screen}");
}

#[test]
fn a_short_list_pane_keeps_the_selected_image_and_its_study_header_in_view() {
    let mut many = Vec::new();
    for study in 0..6 {
        for n in 0..3 {
            let mut i = image(100 + study * 10 + n, 1, None);
            i.record.study_uid = format!("2.25.9{study}");
            i.record.series_uid = format!("2.25.9{study}.1");
            i.record.study_date = Some(format!("2024-0{}-01", study + 1));
            many.push(i);
        }
    }
    let (mut a, sid) = images_app();
    a.apply(Response::Images {
        study_id: sid,
        images: many,
    });
    press(&mut a, "i");
    // 80x24: the list pane has 24 - 3 (header, status, footer) - 10 (attributes) - 2
    // (borders) = 9 rows for 6 x 5 rows.
    press(&mut a, "G");
    let screen = draw(&a, 80, 24);
    assert!(screen.contains("▶ 18 L PA"), "{screen}");
    assert!(screen.contains("2024-06-01 · DX KNEE"), "{screen}");
    // Up into the study before: the view moves one row more than needed, to show
    // that study's header above its series.
    press(&mut a, "kkk");
    let screen = draw(&a, 80, 24);
    assert!(screen.contains("▶ 15 L PA"), "{screen}");
    assert!(screen.contains("2024-05-01 · DX KNEE"), "{screen}");
}

fn mouse(kind: MouseEventKind, column: u16, row: u16, modifiers: KeyModifiers) -> MouseEvent {
    MouseEvent {
        kind,
        column,
        row,
        modifiers,
    }
}

#[test]
fn on_the_images_screen_the_wheel_steps_one_image_ctrl_wheel_zooms_and_a_click_selects() {
    let (mut a, sid) = images_app();
    a.apply(Response::Images {
        study_id: sid,
        images: studies_list(),
    });
    press(&mut a, "i");
    draw(&a, 80, 24);
    let current = |a: &App| a.images().unwrap().current().unwrap().instance_id;
    let none = KeyModifiers::NONE;
    // One image a notch, wherever the pointer is; a new image is asked for.
    let reqs = a.handle_mouse(mouse(MouseEventKind::ScrollDown, 60, 10, none));
    assert_eq!(current(&a), 22);
    assert_eq!(render_keys(&reqs), vec![key_of(22, 0, 0)]);
    a.handle_mouse(mouse(MouseEventKind::ScrollDown, 5, 5, none));
    assert_eq!(current(&a), 23);
    a.handle_mouse(mouse(MouseEventKind::ScrollUp, 5, 5, none));
    assert_eq!(current(&a), 22);
    // Ctrl-wheel zooms (terminals that pass it on), without a new render.
    let ctrl = KeyModifiers::CONTROL;
    assert!(
        a.handle_mouse(mouse(MouseEventKind::ScrollUp, 60, 10, ctrl))
            .is_empty()
    );
    assert_eq!(a.images().unwrap().zoom, 2);
    a.handle_mouse(mouse(MouseEventKind::ScrollDown, 60, 10, ctrl));
    assert_eq!(a.images().unwrap().zoom, 1);
    // Clicks in the list: rows start at y=2 (header, border). Row 0 is the first
    // study, 2 the first image, 5 the third, 6 the second study (its first image).
    let click = |row: u16| mouse(MouseEventKind::Down(MouseButton::Left), 4, 2 + row, none);
    let reqs = a.handle_mouse(click(5));
    assert_eq!(current(&a), 23);
    assert_eq!(render_keys(&reqs), vec![key_of(23, 0, 0)]);
    a.handle_mouse(click(2));
    assert_eq!(current(&a), 21);
    a.handle_mouse(click(6));
    assert_eq!(current(&a), 31);
    a.handle_mouse(click(3));
    assert_eq!(current(&a), 22, "a series row selects its first image");
    // Below the last row, or in the image pane: nothing.
    assert!(a.handle_mouse(click(15)).is_empty());
    a.handle_mouse(mouse(MouseEventKind::Down(MouseButton::Left), 60, 10, none));
    assert_eq!(current(&a), 22);
    // With the help open the wheel scrolls the help, not the images.
    press(&mut a, "?");
    draw(&a, 80, 24);
    a.handle_mouse(mouse(MouseEventKind::ScrollDown, 40, 10, none));
    assert_eq!(current(&a), 22);
    assert!(a.help_open());
}

#[test]
fn the_mouse_is_in_the_help() {
    let mut a = app(3);
    press(&mut a, "?");
    // Scroll through the whole help and keep every screen.
    let mut text = String::new();
    for _ in 0..200 {
        text.push_str(&draw(&a, 80, 24));
        press(&mut a, "j");
    }
    for want in ["wheel↓", "Ctrl-wheel↑", "click", "one image a notch"] {
        assert!(text.contains(want), "{want:?} in\n{text}");
    }
}

// ---------------------------------------------------------------------------
// Jobs and model screens
// ---------------------------------------------------------------------------

mod jobs_and_model {
    use super::*;
    use crate::db::inference::{JobRow, JobState};
    use crate::domain::protocol::Phase;
    use crate::inference::Task;
    use crate::inference::jobs::JobReport;
    use crate::tui::jobs::{Confirmation, EVALUATION_RESAMPLES, IDLE_REFRESH_TICKS};
    use crate::tui::worker::EvaluationFigures;
    use std::sync::Arc;

    fn of(role: Role) -> App {
        App::with_patients(fixture::session(role), fixture::worklist(5))
    }

    fn report(id: i64, state: JobState) -> JobReport {
        JobReport {
            job: id,
            state,
            backend: "cpu (burn-ndarray)".into(),
            models: vec!["kl 0.1.0-phantom".into()],
            total: 300,
            predicted: 32,
            failed: Vec::new(),
            skipped: Default::default(),
            message: format!("{} after 32 of 300 images", state.code()),
            seconds: 1.0,
        }
    }

    fn finished(rows: &mut [JobRow]) {
        for j in rows {
            if !j.state.finished() {
                j.state = JobState::Done;
            }
        }
    }

    /// J on the worklist, with the fixture's jobs loaded.
    fn jobs_app(role: Role) -> App {
        let mut a = of(role);
        let reqs = press(&mut a, "J");
        assert_eq!(
            reqs,
            vec![Request::LoadJobs {
                retire_stale: role.allows(crate::domain::user::Permission::Model)
            }]
        );
        assert_eq!(a.screen(), Screen::Jobs);
        a.apply(Response::Jobs(Ok(fixture::jobs())));
        a
    }

    #[test]
    fn n_queues_a_job_a_asks_first_and_the_new_job_is_the_apps_own() {
        let mut a = jobs_app(Role::Coordinator);
        assert_eq!(press(&mut a, "n"), vec![Request::StartJob { all: false }]);
        let reqs = a.apply(Response::JobQueued(Ok(7)));
        assert_eq!(reqs, vec![Request::LoadJobs { retire_stale: true }]);
        assert!(a.own_jobs().contains(&7));
        assert!(a.message().unwrap().text.contains("job 7 queued"));
        // a: every image, after a confirmation; n there means no.
        assert!(press(&mut a, "a").is_empty());
        assert_eq!(a.confirmation(), Some(&Confirmation::InferAll));
        assert!(press(&mut a, "n").is_empty());
        assert_eq!(a.confirmation(), None);
        press(&mut a, "a");
        assert_eq!(press(&mut a, "y"), vec![Request::StartJob { all: true }]);
        // The job thread reports the end: a message, and the list is read again.
        a.apply(Response::Jobs(Ok(fixture::jobs())));
        let reqs = a.apply(Response::JobEnded {
            id: 7,
            result: Ok(Box::new(report(7, JobState::Done))),
        });
        assert_eq!(reqs, vec![Request::LoadJobs { retire_stale: true }]);
        assert!(!a.own_jobs().contains(&7));
        assert_eq!(a.message().unwrap().kind, MessageKind::Success);
    }

    #[test]
    fn a_job_that_ends_before_its_queue_answer_arrives_is_not_left_as_running() {
        // A job with nothing to do ends on its thread before the database worker's
        // "queued" answer reaches the UI: it must not stay among the app's jobs
        // (quitting would then ask about a job that is not running).
        let mut a = jobs_app(Role::Coordinator);
        assert_eq!(press(&mut a, "n"), vec![Request::StartJob { all: false }]);
        a.apply(Response::JobEnded {
            id: 8,
            result: Ok(Box::new(report(8, JobState::Done))),
        });
        a.apply(Response::JobQueued(Ok(8)));
        assert!(a.own_jobs().is_empty(), "{:?}", a.own_jobs());
        // The usual order still counts the job as the app's until it ends.
        press(&mut a, "n");
        a.apply(Response::JobQueued(Ok(9)));
        assert!(a.own_jobs().contains(&9));
    }

    #[test]
    fn c_cancels_the_selected_job_after_a_confirmation_and_not_an_ended_one() {
        let mut a = jobs_app(Role::Admin);
        // The list: 6 queued, 5 running, 4 done, 3 cancelled, 2 failed.
        press(&mut a, "j");
        assert_eq!(a.jobs_view().unwrap().selected().unwrap().id, 5);
        assert!(press(&mut a, "c").is_empty());
        let Some(Confirmation::Cancel { id, what }) = a.confirmation().cloned() else {
            panic!("no confirmation: {:?}", a.confirmation());
        };
        assert_eq!(id, 5);
        assert!(what.contains("128 of 300 images"), "{what}");
        assert!(draw(&a, 80, 24).contains("Cancel the job?"));
        assert_eq!(press(&mut a, "y"), vec![Request::CancelJob { id: 5 }]);
        press(&mut a, "j");
        assert!(press(&mut a, "c").is_empty());
        assert_eq!(a.confirmation(), None);
        assert!(a.message().unwrap().text.contains("already ended"));
    }

    #[test]
    fn a_pi_sees_the_jobs_read_only() {
        let mut a = jobs_app(Role::Pi);
        let text = draw(&a, 80, 24);
        assert!(text.contains("Read-only"), "{text}");
        for k in ["n", "a", "c"] {
            assert!(press(&mut a, k).is_empty());
            assert_eq!(a.confirmation(), None);
            let m = a.message().unwrap();
            assert_eq!(m.kind, MessageKind::Error);
            assert!(m.text.contains("coordinators and admins"), "{}", m.text);
        }
    }

    #[test]
    fn quitting_while_the_apps_job_runs_asks_then_cancels_and_waits_for_it() {
        let mut a = jobs_app(Role::Coordinator);
        press(&mut a, "n");
        a.apply(Response::JobQueued(Ok(7)));
        // q asks; n stays.
        assert!(press(&mut a, "q").is_empty());
        assert!(!a.should_quit());
        assert_eq!(
            a.confirmation(),
            Some(&Confirmation::Quit { jobs: vec![7] })
        );
        let text = draw(&a, 80, 24);
        assert!(text.contains("it will be cancelled"), "{text}");
        press(&mut a, "n");
        assert!(!a.should_quit());
        // q, y: the job is asked to stop, and the app quits once it has.
        press(&mut a, "q");
        assert_eq!(press(&mut a, "y"), vec![Request::CancelJob { id: 7 }]);
        assert!(!a.should_quit());
        assert!(a.is_quitting());
        assert!(
            a.apply(Response::JobCancel {
                id: 7,
                result: Ok(Box::new(fixture::jobs()[1].clone())),
            })
            .is_empty()
        );
        assert!(!a.should_quit());
        a.apply(Response::JobEnded {
            id: 7,
            result: Ok(Box::new(report(7, JobState::Cancelled))),
        });
        assert!(a.should_quit());
    }

    #[test]
    fn ctrl_c_twice_cancels_a_job_still_starting_and_quits_once_it_stopped() {
        let mut a = jobs_app(Role::Coordinator);
        press(&mut a, "n");
        a.handle_key(ctrl('c'));
        assert!(matches!(a.confirmation(), Some(Confirmation::Quit { .. })));
        assert!(a.handle_key(ctrl('c')).is_empty());
        assert!(a.is_quitting() && !a.should_quit());
        // The job was queued meanwhile: it is cancelled at once.
        assert_eq!(
            a.apply(Response::JobQueued(Ok(8))),
            vec![Request::CancelJob { id: 8 }]
        );
        a.apply(Response::JobEnded {
            id: 8,
            result: Ok(Box::new(report(8, JobState::Cancelled))),
        });
        assert!(a.should_quit());
    }

    #[test]
    fn without_a_job_of_its_own_q_quits_at_once_even_if_another_process_runs_one() {
        let mut a = jobs_app(Role::Coordinator);
        assert!(a.jobs_view().unwrap().any_active());
        press(&mut a, "q");
        assert!(a.should_quit());
    }

    #[test]
    fn a_quit_that_waits_too_long_quits_anyway() {
        let mut a = jobs_app(Role::Coordinator);
        press(&mut a, "n");
        a.apply(Response::JobQueued(Ok(7)));
        press(&mut a, "q");
        press(&mut a, "y");
        for _ in 0..crate::tui::jobs::QUIT_WAIT_TICKS {
            a.tick();
        }
        assert!(a.should_quit());
    }

    #[test]
    fn the_list_is_read_again_every_tick_while_a_job_runs_and_now_and_then_otherwise() {
        let mut a = jobs_app(Role::Coordinator);
        let load = vec![Request::LoadJobs { retire_stale: true }];
        assert_eq!(a.tick(), load);
        // Not while a load is on its way.
        assert!(a.tick().is_empty());
        let mut rows = fixture::jobs();
        a.apply(Response::Jobs(Ok(rows.clone())));
        assert_eq!(a.tick(), load);
        finished(&mut rows);
        a.apply(Response::Jobs(Ok(rows)));
        for _ in 1..IDLE_REFRESH_TICKS {
            assert!(a.tick().is_empty());
        }
        assert_eq!(a.tick(), load);
        // Off the jobs screen, nothing is read.
        a.handle_key(code(KeyCode::Esc));
        assert_eq!(a.screen(), Screen::Worklist);
        assert!(a.tick().is_empty());
    }

    #[test]
    fn the_selection_follows_its_job_when_the_list_changes() {
        let mut a = jobs_app(Role::Coordinator);
        press(&mut a, "jj");
        assert_eq!(a.jobs_view().unwrap().selected().unwrap().id, 4);
        let mut rows = fixture::jobs();
        let mut newer = rows[0].clone();
        newer.id = 9;
        rows.insert(0, newer);
        a.apply(Response::Jobs(Ok(rows)));
        assert_eq!(a.jobs_view().unwrap().selected().unwrap().id, 4);
    }

    #[test]
    fn the_model_screen_asks_per_task_and_cohort_and_keeps_what_it_computed() {
        let mut a = of(Role::Pi);
        let ask = |task, phase| Request::LoadEvaluation {
            task,
            phase,
            resamples: EVALUATION_RESAMPLES,
        };
        // the prospective cohort (the external test) first, as `marrow evaluate`
        assert_eq!(
            press(&mut a, "M"),
            vec![ask(Task::Kl, Some(Phase::Prospective))]
        );
        assert_eq!(a.screen(), Screen::Model);
        assert!(draw(&a, 80, 24).contains("Computing the KL grade figures"));
        a.apply(Response::Evaluation {
            task: Task::Kl,
            phase: Some(Phase::Prospective),
            active: Some(Box::new(fixture::model_row(Task::Kl))),
            candidate: None,
            result: Ok(EvaluationFigures(Arc::new(fixture::evaluation(
                Task::Kl,
                50,
            )))),
        });
        assert_eq!(
            press(&mut a, "t"),
            vec![ask(Task::Op, Some(Phase::Prospective))]
        );
        assert_eq!(
            press(&mut a, "p"),
            vec![ask(Task::Op, Some(Phase::Retrospective))]
        );
        assert_eq!(
            a.handle_key(code(KeyCode::Tab)),
            vec![ask(Task::Kl, Some(Phase::Retrospective))]
        );
        // All cohorts is new; then back to the prospective KL, computed already.
        assert_eq!(press(&mut a, "pp"), vec![ask(Task::Kl, None)]);
        assert_eq!(a.model_view().unwrap().cohort(), Some(Phase::Prospective));
        assert!(draw(&a, 120, 40).contains("AUC, radiographic OA"));
        assert!(draw(&a, 120, 40).contains("reference (final_kl)"));
        // r recomputes; J and M go back and forth; Esc to where M was pressed.
        assert_eq!(
            press(&mut a, "r")[1..],
            [ask(Task::Kl, Some(Phase::Prospective))]
        );
        assert_eq!(
            press(&mut a, "J"),
            vec![Request::LoadJobs {
                retire_stale: false
            }]
        );
        press(&mut a, "M");
        a.handle_key(code(KeyCode::Esc));
        assert_eq!(a.screen(), Screen::Worklist);
    }

    #[test]
    fn no_predictions_yet_says_so_and_how_to_get_them() {
        let mut a = of(Role::Adjudicator);
        press(&mut a, "M");
        a.apply(Response::Evaluation {
            task: Task::Kl,
            phase: Some(Phase::Prospective),
            active: None,
            candidate: None,
            result: Err("the kl model has predicted nothing yet: run `marrow infer` first".into()),
        });
        let text = draw(&a, 80, 24);
        assert!(text.contains("No figures yet"), "{text}");
        assert!(text.contains("predicted nothing yet"), "{text}");
        assert!(text.contains("none registered yet"), "{text}");
    }

    #[test]
    fn a_reader_is_blinded_to_the_model_screen_and_nothing_is_asked() {
        let mut a = of(Role::Reader);
        assert!(press(&mut a, "M").is_empty());
        assert_eq!(a.screen(), Screen::Model);
        let text = draw(&a, 80, 24);
        assert!(text.contains("Blinded"), "{text}");
        assert!(press(&mut a, "tp").is_empty());
    }

    #[test]
    fn the_jobs_and_model_keys_are_in_help_and_footer() {
        let mut a = jobs_app(Role::Coordinator);
        let text = draw(&a, 120, 40);
        for want in ["infer", "cancel", "model"] {
            assert!(text.contains(want), "footer lacks {want:?}:\n{text}");
        }
        press(&mut a, "?");
        let mut all = String::new();
        for _ in 0..60 {
            all.push_str(&draw(&a, 120, 40));
            press(&mut a, &"j".repeat(30));
        }
        for want in [
            "Inference jobs",
            "cancel the selected job",
            "Model: outcome figures and ROC curve",
            "cohort: prospective (external test), retrospective",
            "inference jobs: progress, start, cancel",
        ] {
            assert!(all.contains(want), "help lacks {want:?}");
        }
    }
}

#[test]
fn a_reader_is_never_given_the_patient_worklist() {
    let mut a = App::with_patients(fixture::session(Role::Reader), Vec::new());
    let asked = a.start();
    assert!(!asked.contains(&Request::LoadWorklist), "{asked:?}");
    assert!(asked.contains(&Request::LoadReaderWorklist), "{asked:?}");
    // Esc from the reading worklist lands on a worklist that says why it is empty.
    a.handle_key(code(KeyCode::Esc));
    assert_eq!(a.screen(), Screen::Worklist);
    let text = draw(&a, 200, 24);
    assert!(
        text.contains("readers are blinded to the patient list"),
        "{text}"
    );
    assert!(!press(&mut a, "r").contains(&Request::LoadWorklist));
}
