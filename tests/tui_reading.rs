//! The reading screens of the TUI (issue 4): the headless app driven through the
//! real worker on a real study (two readers, two adjudicators, a PI), asserting on
//! the rendered screen text that the blinding holds; and snapshots of each screen
//! at 80x24 and 120x40 from fixture data.

mod common;
#[path = "common/driver.rs"]
mod driver;
use common::TempStudy;
use common::tmux::{Tmux, shell_quote};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use driver::{Driver, Pace, draw, keys};
use marrow::db::agreement::summarise;
use marrow::db::imaging::{ImageRecord, PatientImage};
use marrow::db::reading::{
    Blinded, CaseImage, CaseReads, CaseState, CaseSummary, CaseView, FinalMethod, OtherImage,
    QueueItem, ReadRecord,
};
use marrow::dicom::decode::{Pixels, Rendered};
use marrow::dicom::synth::{self, BodyPart, Laterality, Spec, View};
use marrow::domain::reading::{
    Disagreement, FinalGrade, Grade, Oarsi, OpImpression, ReadInput, Side,
};
use marrow::domain::user::Role;
use marrow::tui::fixture;
use marrow::tui::{
    AgreementFigures, App, FormField, FormMode, LoadState, LoadedCase, MessageKind, Preview,
    PreviewKey, Request, Response, Screen, Theme,
};
use std::sync::Arc;
use std::time::Duration;

// ---------------------------------------------------------------------------
// Through the worker, on a real study
// ---------------------------------------------------------------------------

/// One eligible OA patient with a left-knee radiograph (one case, the left knee),
/// two readers, two adjudicators and a PI.
fn study() -> TempStudy {
    let s = TempStudy::init();
    for (u, role) in [
        ("r1", "reader"),
        ("r2", "reader"),
        ("adj1", "adjudicator"),
        ("adj2", "adjudicator"),
        ("boss", "pi"),
    ] {
        s.expect(&["users", "add", u, "--role", role], 0);
    }
    let p = s.write(
        "patients.csv",
        "mrn,site,phase,group,sex,birth_date,index_date,deformity,implant,pathological_fracture,malignancy,steroid_long_term,radio_chemo_last\n\
         OA1,PKUPH,retrospective,OA,F,1960-05-01,2024-05-01,no,no,no,no,no,none\n",
    );
    s.expect(&["import", "patients", p.to_str().unwrap()], 0);
    let dir = s.path("dicom");
    std::fs::create_dir_all(&dir).unwrap();
    let spec = Spec {
        patient_id: "OA1".into(),
        body_part: BodyPart::Knee,
        laterality: Some(Laterality::Left),
        view: View::Ap,
        rows: 48,
        cols: 40,
        study_date: chrono::NaiveDate::from_ymd_opt(2024, 5, 1).unwrap(),
        seed: 7,
    };
    synth::write_radiograph(dir.join("knee.dcm"), &spec).unwrap();
    s.expect(&["import", "dicom", dir.to_str().unwrap()], 0);
    s
}

/// What the reading tests do with the shared driver (settled: each key waits for
/// the worker's answers).
impl Driver {
    /// Moves the form's focus to `field`.
    fn focus(&mut self, field: FormField) {
        for _ in 0..12 {
            if self.app.case_form().map(|f| f.current()) == Some(field) {
                return;
            }
            self.keys("j");
        }
        panic!("the form has no field {field:?}");
    }
}

#[test]
fn two_readers_and_two_adjudicators_take_a_case_from_unread_to_final_blinded_throughout() {
    let s = study();

    // r1 starts on their reading worklist and takes the case.
    let mut r1 = Driver::start(&s, Some("r1"), Pace::Settled);
    assert_eq!(r1.app.screen(), Screen::Reading);
    let text = r1.screen(120, 40);
    assert!(text.contains("Your reading worklist · 0 cases"), "{text}");
    r1.keys("t");
    assert_eq!(r1.app.screen(), Screen::Case);
    let case = r1.app.case_screen().unwrap().case().to_string();
    assert_eq!(case, "C00001");
    let text = r1.screen(120, 40);
    assert!(text.contains("Your read of C00001"), "{text}");
    assert!(text.contains("KL reference"), "{text}");
    assert!(
        text.contains("2  definite osteophytes, possible JSN"),
        "{text}"
    );
    assert!(
        text.contains("blinded until you submit your read of C00001"),
        "{text}"
    );
    // the image was rendered through the image thread and drawn
    assert!(!text.contains("decoding…"), "{text}");
    assert!(text.contains("image 1/1"), "{text}");

    // KL 2, JSN medial 1, confidence 4; Enter asks first, y submits.
    r1.keys("2j1");
    r1.focus(FormField::Confidence);
    r1.keys("4\n");
    assert!(r1.app.case_form().unwrap().is_confirming());
    let text = r1.screen(120, 40);
    assert!(text.contains("Submit your read?"), "{text}");
    assert!(text.contains("KL 2, JSN medial 1, confidence 4"), "{text}");
    r1.keys("y");
    assert!(r1.app.case_form().is_none(), "the read is locked");
    assert_eq!(r1.app.message().unwrap().kind, MessageKind::Success);
    assert!(
        r1.message().contains("submitted and locked"),
        "{}",
        r1.message()
    );
    let text = r1.screen(120, 40);
    assert!(
        text.contains("your read v1: KL 2, JSN medial 1, confidence 4"),
        "{text}"
    );
    assert!(text.contains("submitted and locked"), "{text}");
    // r1 now sees what there is: no other read yet, the DXA stage line
    assert!(text.contains("other reads: none yet"), "{text}");
    // digits do nothing on a locked read
    r1.keys("3");
    assert!(r1.app.case_form().is_none());
    // the worklist says it is read
    r1.keys("\x1b");
    assert_eq!(r1.app.screen(), Screen::Reading);
    assert!(r1.screen(120, 40).contains("read (v1), locked"));

    // r2 takes the same case: nothing of r1 shows, at either size.
    let mut r2 = Driver::start(&s, Some("r2"), Pace::Settled);
    r2.keys("t");
    assert_eq!(r2.app.case_screen().unwrap().case(), "C00001");
    for (w, h) in [(80, 24), (120, 40)] {
        let text = r2.screen(w, h);
        assert!(!text.contains("KL 2"), "r1's grade shows to r2:\n{text}");
        assert!(!text.contains("r1"), "r1's name shows to r2:\n{text}");
        assert!(!text.contains("JSN medial 1"), "{text}");
        assert!(
            !text.contains("PKUPH-OA"),
            "the study ID shows to r2:\n{text}"
        );
        assert!(text.contains("hidden"), "{text}");
    }
    let view = &r2.app.case_screen().unwrap().loaded().unwrap().view;
    assert!(view.other_reads.is_hidden() && view.dxa_stage.is_hidden());
    // a KL grade of 5 does not exist
    r2.keys("5");
    assert_eq!(r2.app.message().unwrap().kind, MessageKind::Error);
    // Enter without a confidence: the form says what is missing, nothing is sent
    r2.keys("4\n");
    let form = r2.app.case_form().unwrap();
    assert!(!form.is_confirming());
    assert!(
        form.error().unwrap().contains("confidence"),
        "{:?}",
        form.error()
    );
    r2.focus(FormField::Confidence);
    r2.keys("3\ny");
    assert!(r2.app.case_form().is_none());
    // after their own read r2 sees r1's read and the case state
    let text = r2.screen(120, 40);
    assert!(text.contains("read by r1 v1: KL 2, JSN medial 1"), "{text}");
    assert!(text.contains("adjudication"), "{text}");
    drop(r1);
    drop(r2);

    // Two adjudicators open the same case from the queue.
    let mut a1 = Driver::start(&s, Some("adj1"), Pace::Settled);
    let mut a2 = Driver::start(&s, Some("adj2"), Pace::Settled);
    for a in [&mut a1, &mut a2] {
        assert_eq!(a.app.screen(), Screen::Worklist);
        a.keys("A");
        assert_eq!(a.app.screen(), Screen::Adjudication);
        let q = a.app.adjudication_queue().unwrap();
        assert_eq!(q.rows().len(), 1);
        let text = a.screen(120, 40);
        assert!(text.contains("KL grades 2 and 4 differ by 2"), "{text}");
        a.keys("\n");
        let text = a.screen(120, 40);
        assert!(text.contains("read by r1 v1: KL 2"), "{text}");
        assert!(text.contains("read by r2 v1: KL 4"), "{text}");
        assert!(text.contains("DXA stage"), "{text}");
        assert!(text.contains("model: none yet"), "{text}");
        assert!(text.contains("Final grade of C00001"), "{text}");
        assert_eq!(a.app.case_form().unwrap().mode(), FormMode::Adjudicate);
    }
    a1.keys("3");
    a1.focus(FormField::Reason);
    a1.keys("definite JSN on the AP view\ny");
    assert!(a1.app.case_form().is_none(), "{}", a1.message());
    assert!(a1.message().contains("KL 3 by adj1"), "{}", a1.message());
    assert!(a1.screen(120, 40).contains("final: KL 3 by adj1"));

    // adj2 decides on the version they opened: told who decided what, nothing lost.
    a2.keys("2");
    a2.focus(FormField::Reason);
    a2.keys("osteophytes only\ny");
    let form = a2.app.case_form().expect("the form stays after a conflict");
    assert_eq!(form.reason(), "osteophytes only");
    let e = form.error().unwrap();
    assert!(e.contains("already decided: KL 3 by adj1"), "{e}");
    assert!(e.contains("nothing was saved"), "{e}");
    let text = a2.screen(120, 40);
    assert!(text.contains("already decided: KL 3 by adj1"), "{text}");
    assert!(text.contains("osteophytes only"), "{text}");
    // the reloaded case shows the final grade
    assert!(text.contains("final: KL 3 by adj1"), "{text}");
    drop(a1);
    drop(a2);

    // The PI's agreement screen.
    let mut pi = Driver::start(&s, Some("boss"), Pace::Settled);
    pi.keys("S");
    assert_eq!(pi.app.screen(), Screen::Agreement);
    assert_eq!(*pi.app.agreement().unwrap().state(), LoadState::Loaded);
    let text = pi.screen(120, 40);
    assert!(text.contains("r1 vs r2"), "{text}");
    assert!(text.contains("r1 vs final"), "{text}");
    assert!(text.contains("0.0% [0, 0]"), "{text}");
    assert!(text.contains("—"), "{text}");
    pi.keys("\t");
    assert!(pi.screen(120, 40).contains("OP impression"));

    // r1 corrects their read: a new version with a reason; the final grade stands.
    let mut r1 = Driver::start(&s, Some("r1"), Pace::Settled);
    r1.keys("\n");
    assert!(r1.app.case_form().is_none());
    r1.keys("c");
    assert_eq!(r1.app.case_form().unwrap().mode(), FormMode::Correct);
    assert_eq!(r1.app.case_form().unwrap().current(), FormField::Reason);
    r1.keys("osteophyte missed\n");
    assert!(r1.app.case_form().unwrap().is_confirming());
    r1.keys("y");
    assert!(r1.app.case_form().is_none(), "{}", r1.message());
    assert!(r1.message().contains("v2"), "{}", r1.message());
    assert!(
        r1.message().contains("adjudicated by adj1"),
        "{}",
        r1.message()
    );
    let text = r1.screen(120, 40);
    assert!(text.contains("correction: osteophyte missed"), "{text}");
}

#[test]
fn a_non_reader_is_told_why_the_reading_worklist_is_closed() {
    let mut app = App::with_patients(fixture::session(Role::Coordinator), fixture::worklist(3));
    assert!(
        app.handle_key(KeyEvent::new(KeyCode::Char('R'), KeyModifiers::NONE))
            .is_empty()
    );
    assert_eq!(app.screen(), Screen::Worklist);
    let m = app.message().unwrap();
    assert_eq!(m.kind, MessageKind::Error);
    assert!(m.text.contains("may not read cases"), "{}", m.text);
}

// ---------------------------------------------------------------------------
// End to end: three users in three terminals (tmux)
// ---------------------------------------------------------------------------

/// `marrow` on the study as `user` (the test's OS user is the study's admin, who may
/// act as another registered user), inside a tmux session of its own.
fn terminal(s: &TempStudy, user: &str) -> Tmux {
    let command = format!(
        "env -u MARROW_KEY -u MARROW_DB -u MARROW_KEY_FILE NO_COLOR=1 {} --db {} --as {user}; \
         echo MARROW-EXIT=$?; sleep 600",
        shell_quote(std::path::Path::new(env!("CARGO_BIN_EXE_marrow"))),
        shell_quote(&s.db)
    );
    Tmux::start(120, 40, &command)
}

#[test]
fn two_readers_and_an_adjudicator_in_three_terminals_take_a_case_to_final() {
    let s = study();
    let wait = Duration::from_secs(30);

    // r1 starts on the reading worklist, takes the case and reads it.
    let r1 = terminal(&s, "r1");
    r1.wait_for("Your reading worklist · 0 cases", wait);
    r1.keys(&["t"]);
    let screen = r1.wait_for("Your read of C00001", wait);
    assert!(
        screen.contains("blinded until you submit your read of C00001"),
        "{screen}"
    );
    r1.keys(&["2", "j", "1", "j", "j", "j", "j", "j"]);
    r1.wait_for("▶ confidence", wait);
    r1.keys(&["4", "Enter"]);
    r1.wait_for("Submit your read?", wait);
    r1.keys(&["y"]);
    r1.wait_for("submitted and locked", wait);

    // r2, in another terminal, takes the same case: nothing of r1 shows.
    let r2 = terminal(&s, "r2");
    r2.wait_for("Your reading worklist", wait);
    r2.keys(&["t"]);
    let screen = r2.wait_for("Your read of C00001", wait);
    assert!(
        !screen.contains("KL 2"),
        "r1's grade shows to r2:\n{screen}"
    );
    assert!(!screen.contains("r1"), "r1 shows to r2:\n{screen}");
    assert!(screen.contains("hidden"), "{screen}");
    r2.keys(&["4", "j", "j", "j", "j", "j", "j"]);
    r2.wait_for("▶ confidence", wait);
    r2.keys(&["3", "Enter"]);
    r2.wait_for("Submit your read?", wait);
    r2.keys(&["y"]);
    let screen = r2.wait_for("read by r1 v1: KL 2", wait);
    assert!(screen.contains("adjudication"), "{screen}");

    // The adjudicator decides with a rationale.
    let adj = terminal(&s, "adj1");
    adj.wait_for("adj1 (adjudicator)", wait);
    adj.keys(&["A"]);
    adj.wait_for("Adjudication queue · 1 case", wait);
    adj.keys(&["Enter"]);
    let screen = adj.wait_for("Final grade of C00001", wait);
    assert!(screen.contains("read by r1 v1: KL 2"), "{screen}");
    assert!(screen.contains("read by r2 v1: KL 4"), "{screen}");
    adj.keys(&["3", "j", "j"]);
    adj.wait_for("▶ rationale", wait);
    adj.type_text("definite JSN on the AP view");
    adj.wait_for("definite JSN on the AP view", wait);
    adj.keys(&["Enter"]);
    adj.wait_for("Record the final grade?", wait);
    adj.keys(&["y"]);
    adj.wait_for("final: KL 3 by adj1", wait);
    adj.keys(&["q"]);
    adj.wait_for("MARROW-EXIT=0", wait);

    // r1 reloads and sees the final grade; the database holds the adjudication.
    r1.keys(&["r"]);
    r1.wait_for("final: KL 3 by adj1", wait);
    for t in [&r1, &r2] {
        t.keys(&["q"]);
        t.wait_for("MARROW-EXIT=0", wait);
    }
    let view = s.open().case_view("C00001").unwrap();
    let fin = view.final_grade.shown().unwrap().clone().unwrap();
    assert_eq!(fin.decided_by, "adj1");
    assert_eq!(fin.meaning, "adjudicated");
    assert_eq!(
        fin.rationale.as_deref(),
        Some("definite JSN on the AP view")
    );
    assert_eq!(fin.grade.kl, Some(Grade::Value(3)));
    s.expect(&["audit", "verify"], 0);
}

// ---------------------------------------------------------------------------
// Snapshots from fixture data
// ---------------------------------------------------------------------------

fn knee_image() -> PatientImage {
    PatientImage {
        instance_id: 1,
        record: ImageRecord {
            sop_uid: "2.25.1".into(),
            study_uid: "2.25.100".into(),
            series_uid: "2.25.101".into(),
            sop_class_uid: Some("1.2.840.10008.5.1.4.1.1.1.1".into()),
            modality: Some("DX".into()),
            body_part: Some("KNEE".into()),
            laterality: Some("L".into()),
            view_position: Some("AP".into()),
            study_date: Some("2024-05-01".into()),
            series_number: Some(1),
            rows: Some(2500),
            columns: Some(2048),
            bits_allocated: Some(16),
            bits_stored: Some(12),
            photometric: Some("MONOCHROME2".into()),
            transfer_syntax: "1.2.840.10008.1.2.1".into(),
            pixel_spacing: Some((0.15, 0.15)),
            frames: 1,
            store_path: "2.25.100/2.25.1.dcm".into(),
            bytes: 10_240_000,
            review_reason: None,
        },
    }
}

/// A 32x40 frame: a gradient with a bright disc.
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

fn summary(case: &str, side: Side, reads: u32, yours: Option<i64>, reader: bool) -> CaseSummary {
    CaseSummary {
        case: case.into(),
        side,
        state: if reader && yours.is_none() {
            None
        } else {
            Some(CaseState::Open)
        },
        version: 3,
        study_id: (!reader).then(|| "PKUPH-OA-0007".into()),
        reads_submitted: reads,
        reads_needed: 2,
        assigned_to_you: true,
        your_read_version: yours,
    }
}

fn record(reader: &str, version: i64, kl: u8, confidence: u8) -> ReadRecord {
    ReadRecord {
        id: version,
        case: "C00017".into(),
        reader: reader.into(),
        version,
        read: ReadInput {
            kl: Some(Grade::Value(kl)),
            oarsi: Oarsi {
                jsn_medial: Some(1),
                ..Oarsi::default()
            },
            op_impression: None,
            confidence: Some(confidence),
        },
        correction_reason: None,
        source: "marrow".into(),
        read_date: None,
        submitted_at: "2026-11-27T09:14:00.000Z".into(),
        submitted_by: reader.into(),
    }
}

fn case_image() -> CaseImage {
    CaseImage {
        instance_id: 1,
        sop_uid: "2.25.1".into(),
        store_path: "2.25.100/2.25.1.dcm".into(),
        modality: Some("DX".into()),
        body_part: Some("KNEE".into()),
        laterality: Some("L".into()),
        view_position: Some("AP".into()),
        study_date: Some("2024-05-01".into()),
    }
}

/// The case as a reader gets it before their read: everything else hidden.
fn blinded_view() -> CaseView {
    blinded_case("C00017")
}

fn blinded_case(case: &str) -> CaseView {
    let why = || format!("blinded until you submit your read of {case}");
    CaseView {
        case: case.into(),
        side: Side::Left,
        state: Blinded::Hidden(why()),
        version: 3,
        study_id: Blinded::Hidden(why()),
        images: vec![case_image()],
        other_images: Vec::new(),
        reads_needed: 2,
        reads_submitted: 1,
        your_reads: Vec::new(),
        other_reads: Blinded::Hidden(why()),
        superseded_reads: Blinded::Hidden(why()),
        dxa_stage: Blinded::Hidden(why()),
        model_prediction: Blinded::Hidden(why()),
        disagreements: Blinded::Hidden(why()),
        final_grade: Blinded::Hidden(why()),
    }
}

/// The case with both reads in and disagreeing, as an adjudicator (or, with
/// `yours`, the second reader after their read) sees it.
fn open_view(yours: bool) -> CaseView {
    let r2 = record("wang", 1, 3, 4);
    CaseView {
        case: "C00017".into(),
        side: Side::Left,
        state: Blinded::Shown(CaseState::Adjudication),
        version: 5,
        study_id: Blinded::Shown("PKUPH-OA-0007".into()),
        images: vec![case_image()],
        other_images: vec![OtherImage {
            image: CaseImage {
                instance_id: 2,
                sop_uid: "2.25.2".into(),
                store_path: "2.25.100/2.25.2.dcm".into(),
                laterality: Some("R".into()),
                ..case_image()
            },
            why: "the right knee, not the left".into(),
            label: "right knee".into(),
        }],
        reads_needed: 2,
        reads_submitted: 2,
        your_reads: if yours { vec![r2.clone()] } else { Vec::new() },
        other_reads: Blinded::Shown(if yours {
            vec![record("li", 1, 1, 3)]
        } else {
            vec![record("li", 1, 1, 3), r2]
        }),
        superseded_reads: Blinded::Shown(Vec::new()),
        dxa_stage: Blinded::Shown(Some("osteopenia".into())),
        model_prediction: Blinded::Shown(None),
        disagreements: Blinded::Shown(vec![
            Disagreement::KlDifference {
                grades: (1, 3),
                difference: 2,
            },
            Disagreement::KlOaSplit { grades: (1, 3) },
        ]),
        final_grade: Blinded::Shown(None),
    }
}

fn app_of(role: Role, user: &str) -> App {
    let mut session = fixture::session(role);
    session.user = user.into();
    let mut app = App::with_patients(session, fixture::worklist(5));
    app.set_theme(Theme::plain());
    app
}

/// Opens a case on `app` (which must be on a list with it selected) and renders
/// its image.
fn load_case(app: &mut App, view: CaseView) {
    let reqs = keys(app, "\n");
    assert_eq!(
        reqs,
        vec![Request::LoadCase {
            case: "C00017".into()
        }]
    );
    let reqs = app.apply(Response::Case {
        case: "C00017".into(),
        result: Ok(Box::new(LoadedCase {
            view,
            images: vec![knee_image()],
        })),
    });
    assert!(
        matches!(reqs.as_slice(), [Request::RenderImage(_)]),
        "{reqs:?}"
    );
    app.apply(Response::Rendered {
        key: PreviewKey {
            instance_id: 1,
            frame: 0,
            voi_index: 0,
            window: None,
        },
        result: Ok(rendered_frame()),
    });
}

fn reader_app() -> App {
    let mut app = app_of(Role::Reader, "zhang");
    let reqs = app.start();
    assert!(reqs.contains(&Request::LoadReaderWorklist), "{reqs:?}");
    assert_eq!(app.screen(), Screen::Reading);
    app.apply(Response::Worklist {
        patients: fixture::worklist(5),
        status: None,
    });
    app.apply(Response::ReaderWorklist(Ok(vec![
        summary("C00017", Side::Left, 1, None, true),
        summary("C00018", Side::Patient, 0, None, true),
        summary("C00009", Side::Right, 2, Some(1), true),
    ])));
    app
}

#[test]
fn reader_worklist_80x24() {
    insta::assert_snapshot!(draw(&reader_app(), 80, 24));
}

#[test]
fn reader_worklist_120x40() {
    insta::assert_snapshot!(draw(&reader_app(), 120, 40));
}

/// The read screen before the read: KL 2 and JSN medial 1 typed.
fn read_app() -> App {
    let mut app = reader_app();
    load_case(&mut app, blinded_view());
    keys(&mut app, "2j1j");
    app
}

/// Issue 13 item 7: `2 j j j j j j 4` went KL 2, then six fields on and wrapped
/// back to KL, which the 4 overwrote. Now a digit sets the focused field only and
/// j stops at the last field (the confidence).
#[test]
fn a_digit_sets_only_its_field_and_j_stops_at_the_last_one() {
    let mut app = reader_app();
    load_case(&mut app, blinded_view());
    keys(&mut app, "2jjjjjj4");
    let form = app.case_form().unwrap();
    assert_eq!(form.current(), FormField::Confidence);
    assert_eq!(form.summary().unwrap(), "KL 2, confidence 4");
    // more j's stay on the last field; k's stop at the KL grade
    keys(&mut app, "jj5");
    assert_eq!(
        app.case_form().unwrap().summary().unwrap(),
        "KL 2, confidence 5"
    );
    keys(&mut app, "kkkkkkkkk3");
    let form = app.case_form().unwrap();
    assert_eq!(form.current(), FormField::Grade);
    assert_eq!(form.summary().unwrap(), "KL 3, confidence 5");
}

#[test]
fn read_screen_80x24() {
    let text = draw(&read_app(), 80, 24);
    assert!(text.contains("hidden"), "{text}");
    insta::assert_snapshot!(text);
}

#[test]
fn read_screen_120x40() {
    insta::assert_snapshot!(draw(&read_app(), 120, 40));
}

#[test]
fn read_confirmation_80x24() {
    let mut app = read_app();
    keys(&mut app, "jjjj4\n");
    insta::assert_snapshot!(draw(&app, 80, 24));
}

/// The second reader after their read: locked, the other read and the DXA shown.
fn locked_app() -> App {
    let mut app = app_of(Role::Reader, "wang");
    app.start();
    app.apply(Response::Worklist {
        patients: fixture::worklist(5),
        status: None,
    });
    app.apply(Response::ReaderWorklist(Ok(vec![summary(
        "C00017",
        Side::Left,
        2,
        Some(1),
        true,
    )])));
    load_case(&mut app, open_view(true));
    app
}

#[test]
fn locked_read_80x24() {
    insta::assert_snapshot!(draw(&locked_app(), 80, 24));
}

#[test]
fn locked_read_120x40() {
    insta::assert_snapshot!(draw(&locked_app(), 120, 40));
}

fn queue_app() -> App {
    let mut app = app_of(Role::Adjudicator, "chen");
    assert_eq!(keys(&mut app, "A"), vec![Request::LoadAdjudicationQueue]);
    let mut s = summary("C00017", Side::Left, 2, None, false);
    s.state = Some(CaseState::Adjudication);
    let mut p = summary("C00018", Side::Patient, 2, None, false);
    p.state = Some(CaseState::Adjudication);
    p.study_id = Some("SYSMH-CONTROL-0002".into());
    app.apply(Response::AdjudicationQueue(Ok(vec![
        QueueItem {
            summary: s,
            reasons: vec![
                Disagreement::KlDifference {
                    grades: (1, 3),
                    difference: 2,
                },
                Disagreement::KlOaSplit { grades: (1, 3) },
            ],
        },
        QueueItem {
            summary: p,
            reasons: vec![Disagreement::OpImpressionDiffers {
                impressions: (OpImpression::Normal, OpImpression::Osteopenia),
            }],
        },
    ])));
    app
}

#[test]
fn adjudication_queue_80x24() {
    insta::assert_snapshot!(draw(&queue_app(), 80, 24));
}

#[test]
fn adjudication_queue_120x40() {
    insta::assert_snapshot!(draw(&queue_app(), 120, 40));
}

/// The adjudication screen with KL 3 chosen, the rationale typed and a conflict.
fn adjudication_app() -> App {
    let mut app = queue_app();
    load_case(&mut app, open_view(false));
    keys(&mut app, "3jjdefinite JSN on the AP view\ny");
    app.apply(Response::Adjudicated {
        case: "C00017".into(),
        result: Err((
            marrow::tui::SaveFailure::Conflict,
            "C00017 was already decided: KL 2 by liu at 2026-11-27T10:02:11Z (adjudicated); \
             nothing was saved"
                .into(),
        )),
        fresh: None,
    });
    app
}

#[test]
fn adjudication_screen_80x24() {
    let app = adjudication_app();
    assert_eq!(
        app.case_form().unwrap().reason(),
        "definite JSN on the AP view"
    );
    insta::assert_snapshot!(draw(&app, 80, 24));
}

#[test]
fn adjudication_screen_120x40() {
    insta::assert_snapshot!(draw(&adjudication_app(), 120, 40));
}

fn read(kl: u8) -> ReadInput {
    ReadInput {
        kl: Some(Grade::Value(kl)),
        oarsi: Oarsi::default(),
        op_impression: None,
        confidence: Some(3),
    }
}

/// Twelve knee cases read by li and wang, eight with a final grade.
fn agreement_app() -> App {
    let grades: [(u8, u8, Option<u8>); 12] = [
        (0, 0, Some(0)),
        (1, 0, Some(0)),
        (1, 2, Some(2)),
        (2, 2, Some(2)),
        (3, 3, Some(3)),
        (2, 3, Some(3)),
        (4, 4, Some(4)),
        (0, 1, Some(1)),
        (2, 2, None),
        (3, 2, None),
        (1, 1, None),
        (4, 3, None),
    ];
    let cases: Vec<CaseReads> = grades
        .iter()
        .enumerate()
        .map(|(i, (a, b, f))| CaseReads {
            case: format!("C{:05}", i + 1),
            side: Side::Left,
            reads: vec![("li".into(), read(*a)), ("wang".into(), read(*b))],
            final_grade: f.map(|k| {
                (
                    FinalMethod::Adjudicated,
                    FinalGrade {
                        kl: Some(Grade::Value(k)),
                        op_stage: None,
                    },
                )
            }),
            final_by: f.map(|_| "adjudicator".to_string()),
        })
        .collect();
    let mut app = app_of(Role::Pi, "boss");
    assert_eq!(
        keys(&mut app, "S"),
        vec![Request::LoadAgreement { resamples: 2000 }]
    );
    app.apply(Response::Agreement(Ok(AgreementFigures(Arc::new(
        summarise(&cases, 200),
    )))));
    app
}

#[test]
fn agreement_80x24() {
    insta::assert_snapshot!(draw(&agreement_app(), 80, 24));
}

#[test]
fn agreement_120x40() {
    let text = draw(&agreement_app(), 120, 40);
    assert!(text.contains("li vs wang"), "{text}");
    insta::assert_snapshot!(text);
}

#[test]
fn agreement_placeholder_while_it_computes_80x24() {
    let mut app = app_of(Role::Pi, "boss");
    keys(&mut app, "S");
    let text = draw(&app, 80, 24);
    assert!(text.contains("Computing agreement"), "{text}");
    insta::assert_snapshot!(text);
}

#[test]
fn the_reading_keys_are_in_help_and_footer() {
    let mut app = read_app();
    let text = draw(&app, 120, 40);
    assert!(text.contains("submit"), "{text}");
    keys(&mut app, "?");
    let mut all = String::new();
    for _ in 0..40 {
        all.push_str(&draw(&app, 120, 40));
        keys(&mut app, &"j".repeat(30));
    }
    for want in [
        "Reading worklist (readers)",
        "take the next case to read",
        "Read and adjudication form",
        "correct your read",
        "Adjudication queue",
        "Agreement figures",
        "your reading worklist (readers)",
    ] {
        assert!(all.contains(want), "help lacks {want:?}");
    }
}

#[test]
fn a_click_selects_a_case_and_a_second_click_opens_it() {
    use crossterm::event::{MouseButton, MouseEvent, MouseEventKind};
    let click = |row| MouseEvent {
        kind: MouseEventKind::Down(MouseButton::Left),
        column: 10,
        row,
        modifiers: KeyModifiers::NONE,
    };
    let mut app = reader_app();
    draw(&app, 80, 24);
    // header, border, column titles: the second case is on row 4
    assert!(app.handle_mouse(click(4)).is_empty());
    assert_eq!(app.reader_list().unwrap().selected(), 1);
    assert_eq!(
        app.handle_mouse(click(4)),
        vec![Request::LoadCase {
            case: "C00018".into()
        }]
    );
    assert_eq!(app.screen(), Screen::Case);
}

#[test]
fn read_patient_case_80x24() {
    let mut app = reader_app();
    keys(&mut app, "j");
    assert_eq!(
        keys(&mut app, "\n"),
        vec![Request::LoadCase {
            case: "C00018".into()
        }]
    );
    let mut view = blinded_case("C00018");
    view.side = Side::Patient;
    view.reads_submitted = 0;
    app.apply(Response::Case {
        case: "C00018".into(),
        result: Ok(Box::new(LoadedCase {
            view,
            images: Vec::new(),
        })),
    });
    // h/l choose the OP impression; the confidence takes a digit
    keys(&mut app, "lljjk");
    let text = draw(&app, 80, 24);
    assert!(text.contains("osteopenia"), "{text}");
    assert!(text.contains("OP stage reference"), "{text}");
    insta::assert_snapshot!(text);
}
