//! The jobs and model screens of the TUI (issue 5): the headless app driven through
//! the real worker (and its job thread) on real studies — a job started from the jobs
//! screen runs to done, a cancelled one stops, quitting while one runs cancels it, the
//! model screen shows the AUC `marrow evaluate` computes, a reader is blinded — and
//! snapshots of both screens at 80x24 and 120x40 from fixture data.

mod common;
#[path = "common/driver.rs"]
mod driver;
use common::TempStudy;
use common::demo::demo;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use driver::{Driver, Pace, draw, keys};
use marrow::db::inference::{JobRow, JobState};
use marrow::db::reading::Blinded;
use marrow::dicom::decode::Pixels;
use marrow::dicom::synth::{self, BodyPart, Laterality, Spec, View};
use marrow::domain::user::Role;
use marrow::inference::Task;
use marrow::inference::case_explain::explain_case;
use marrow::tui::fixture;
use marrow::tui::{
    App, Confirmation, EvaluationFigures, LoadState, Request, Response, Screen, Theme,
};
use std::sync::Arc;

// ---------------------------------------------------------------------------
// Through the worker, on real studies
// ---------------------------------------------------------------------------

/// One patient with two knee radiographs and a hip radiograph, nothing predicted yet.
fn small_study() -> TempStudy {
    let s = TempStudy::init();
    let p = s.write(
        "patients.csv",
        "mrn,site,phase,group,sex,birth_date,index_date,deformity,implant,pathological_fracture,malignancy,steroid_long_term,radio_chemo_last\n\
         OA1,PKUPH,retrospective,OA,F,1960-05-01,2024-05-01,no,no,no,no,no,none\n",
    );
    s.expect(&["import", "patients", p.to_str().unwrap()], 0);
    let dir = s.path("dicom");
    std::fs::create_dir_all(&dir).unwrap();
    for (i, (part, side)) in [
        (BodyPart::Knee, Some(Laterality::Left)),
        (BodyPart::Knee, Some(Laterality::Right)),
        (BodyPart::Hip, Some(Laterality::Left)),
    ]
    .into_iter()
    .enumerate()
    {
        let spec = Spec {
            patient_id: "OA1".into(),
            body_part: part,
            laterality: side,
            view: View::Ap,
            rows: 64,
            cols: 56,
            study_date: chrono::NaiveDate::from_ymd_opt(2024, 5, 1).unwrap(),
            seed: 11 + i as u64,
        };
        synth::write_radiograph(dir.join(format!("{i}.dcm")), &spec).unwrap();
    }
    s.expect(&["import", "dicom", dir.to_str().unwrap()], 0);
    s
}

/// What the jobs and model tests do with the shared driver (ticked: jobs run on).
impl Driver {
    fn job(&self, id: i64) -> Option<JobRow> {
        self.app
            .jobs_view()
            .and_then(|v| v.rows().iter().find(|j| j.id == id).cloned())
    }

    /// Opens the jobs screen and waits for the list.
    fn open_jobs(&mut self) {
        self.keys("J");
        assert_eq!(self.app.screen(), Screen::Jobs);
        self.until("the jobs list", |a| {
            a.jobs_view()
                .is_some_and(|v| *v.state() == LoadState::Loaded)
        });
    }

    /// The job this app queued last, once the worker has said which.
    fn queued_job(&mut self) -> i64 {
        let before = self.app.last_queued_job();
        self.until("the job to be queued", |a| {
            a.last_queued_job().is_some_and(|id| Some(id) != before)
        });
        self.app.last_queued_job().unwrap()
    }
}

#[test]
fn a_job_started_on_the_jobs_screen_runs_on_its_own_thread_to_done() {
    let s = small_study();
    let mut d = Driver::start(&s, None, Pace::Ticked);
    d.open_jobs();
    assert!(d.screen(80, 24).contains("No job yet"));
    d.keys("n");
    let id = d.queued_job();
    // The UI stays live meanwhile: the list is read back while the job runs.
    d.until("the job to end", |a| {
        a.own_jobs().is_empty()
            && a.jobs_view()
                .and_then(|v| v.rows().iter().find(|j| j.id == id))
                .is_some_and(|j| j.state.finished())
    });
    let job = d.job(id).unwrap();
    assert_eq!(job.state, JobState::Done, "{job:?}");
    assert_eq!(job.total, 3, "two knees (KL) and a hip (OP): {job:?}");
    assert_eq!(job.done, 3);
    assert!(
        job.model_version
            .as_deref()
            .unwrap_or("")
            .contains("phantom")
    );
    let text = d.screen(120, 40);
    assert!(text.contains("✓ done"), "{text}");
    assert!(text.contains("3/3"), "{text}");
    assert!(
        d.app
            .message()
            .unwrap()
            .text
            .contains(&format!("job {id} done")),
        "{:?}",
        d.app.message()
    );
    d.worker.stop();
    let study = s.open();
    let n: i64 = study
        .conn()
        .query_row("SELECT count(*) FROM predictions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 3);
    // A second run has nothing left to do.
    let mut d = Driver::start(&s, None, Pace::Ticked);
    d.open_jobs();
    d.keys("n");
    let second = d.queued_job();
    d.until("the second job to end", |a| a.own_jobs().is_empty());
    d.until("the list to show it", |a| {
        a.jobs_view()
            .and_then(|v| v.rows().iter().find(|j| j.id == second))
            .is_some_and(|j| j.state.finished())
    });
    let job = d.job(second).unwrap();
    assert_eq!((job.state, job.total), (JobState::Done, 0), "{job:?}");
}

#[test]
fn a_job_cancelled_on_the_jobs_screen_stops_and_says_so() {
    let s = demo();
    let mut d = Driver::start(&s, Some("demo-coordinator"), Pace::Ticked);
    d.open_jobs();
    d.keys("a");
    assert_eq!(d.app.confirmation(), Some(&Confirmation::InferAll));
    d.keys("y");
    let id = d.queued_job();
    d.until("the new job at the top of the list", |a| {
        a.jobs_view()
            .and_then(|v| v.selected())
            .is_some_and(|j| j.id == id)
    });
    d.keys("c");
    assert!(
        matches!(d.app.confirmation(), Some(Confirmation::Cancel { id: c, .. }) if *c == id),
        "{:?}",
        d.app.confirmation()
    );
    assert!(d.screen(80, 24).contains("Cancel the job?"));
    d.keys("y");
    d.until("the job to stop", |a| {
        a.own_jobs().is_empty()
            && a.jobs_view()
                .and_then(|v| v.rows().iter().find(|j| j.id == id))
                .is_some_and(|j| j.state.finished())
    });
    let job = d.job(id).unwrap();
    assert_eq!(job.state, JobState::Cancelled, "{job:?}");
    assert!(job.cancel_requested);
    // Stopped after a batch (or before it started), not at the end.
    assert!(job.done < job.total || job.started_at.is_none(), "{job:?}");
    assert!(d.screen(120, 40).contains("■ cancelled"));
    d.worker.stop();
    s.expect(&["audit", "verify"], 0);
}

#[test]
fn quitting_while_a_job_runs_asks_cancels_it_and_leaves_nothing_running() {
    let s = demo();
    let mut d = Driver::start(&s, Some("demo-coordinator"), Pace::Ticked);
    d.open_jobs();
    d.keys("ay");
    let id = d.queued_job();
    d.keys("q");
    assert!(!d.app.should_quit());
    assert_eq!(
        d.app.confirmation(),
        Some(&Confirmation::Quit { jobs: vec![id] })
    );
    let text = d.screen(80, 24);
    assert!(text.contains("it will be cancelled"), "{text}");
    d.keys("y");
    d.until("the app to quit", |a| a.should_quit());
    let Driver { worker, .. } = d;
    worker.stop();
    let study = s.open();
    let job = study.job(id).unwrap();
    assert_eq!(job.state, JobState::Cancelled, "{job:?}");
    let running: Vec<i64> = study
        .jobs()
        .unwrap()
        .into_iter()
        .filter(|j| !j.state.finished())
        .map(|j| j.id)
        .collect();
    assert!(running.is_empty(), "left running: {running:?}");
}

#[test]
fn the_model_screen_shows_the_auc_marrow_evaluate_computes_and_a_reader_is_blinded() {
    let s = demo();
    let json: serde_json::Value = serde_json::from_str(&s.expect(
        &["--as", "demo-pi", "evaluate", "--task", "kl", "--json"],
        0,
    ))
    .unwrap();
    let auc = json["auc_binary"]["value"].as_f64().expect("an AUC");
    let n = json["n"].as_i64().unwrap();
    let mut d = Driver::start(&s, Some("demo-pi"), Pace::Ticked);
    d.keys("M");
    assert_eq!(d.app.screen(), Screen::Model);
    d.until("the KL figures", |a| {
        a.model_view()
            .and_then(|v| v.current())
            .is_some_and(|f| *f.state() == LoadState::Loaded)
    });
    let f = d.app.model_view().unwrap().current().unwrap().clone();
    assert!(f.figures().is_some(), "{:?}", f.missing());
    let text = d.screen(120, 40);
    assert!(text.contains(&format!("ROC · AUC {auc:.2}")), "{text}");
    assert!(text.contains("AUC, radiographic OA (KL >= 2)"), "{text}");
    assert!(text.contains(&format!("{auc:.2} [")), "{text}");
    assert!(text.contains(&format!("on {n} knees")), "{text}");
    assert!(text.contains("reference (final_kl)"), "{text}");
    assert!(
        text.contains("prospective cohort (external test)"),
        "{text}"
    );
    assert!(text.contains("active model: kl 0.1.0-phantom"), "{text}");
    assert!(text.contains("Tiulpin 2018"), "{text}");
    // The OP model, on the retrospective cohort only.
    d.keys("tp");
    d.until("the OP figures", |a| {
        a.model_view()
            .and_then(|v| v.current())
            .is_some_and(|f| *f.state() == LoadState::Loaded)
    });
    let text = d.screen(120, 40);
    assert!(
        text.contains("OP stage model · retrospective cohort"),
        "{text}"
    );
    assert!(text.contains("osteoporosis vs not"), "{text}");
    d.worker.stop();

    // A reader is told they are blinded, and nothing is computed for them.
    let mut r = Driver::start(&s, Some("demo-reader-1"), Pace::Ticked);
    r.until("the reader's worklist", |a| {
        a.reader_list()
            .is_some_and(|l| *l.state() != LoadState::Loading)
    });
    let requests = r
        .app
        .handle_key(KeyEvent::new(KeyCode::Char('M'), KeyModifiers::NONE));
    assert!(requests.is_empty(), "{requests:?}");
    assert_eq!(r.app.screen(), Screen::Model);
    let text = r.screen(80, 24);
    assert!(
        text.contains("Blinded: readers do not see the model's figures"),
        "{text}"
    );
    assert!(!text.contains("AUC"), "{text}");
    r.worker.stop();
}

// ---------------------------------------------------------------------------
// Snapshots from fixture data
// ---------------------------------------------------------------------------

fn app_of(role: Role) -> App {
    let mut app = App::with_patients(fixture::session(role), fixture::worklist(5));
    app.set_theme(Theme::plain());
    app
}

/// The jobs screen of a coordinator (or `role`), the running job selected.
fn jobs_app(role: Role) -> App {
    let mut app = app_of(role);
    keys(&mut app, "J");
    app.apply(Response::Jobs(Ok(fixture::jobs())));
    keys(&mut app, "j");
    app
}

#[test]
fn jobs_80x24() {
    let text = draw(&jobs_app(Role::Coordinator), 80, 24);
    assert!(text.contains("▶ running"), "{text}");
    assert!(text.contains("128/300"), "{text}");
    insta::assert_snapshot!(text);
}

#[test]
fn jobs_120x40() {
    let text = draw(&jobs_app(Role::Coordinator), 120, 40);
    // 128 images from 09:25:01 to the heartbeat at 09:25:11.
    assert!(text.contains("12.8 img/s"), "{text}");
    assert!(text.contains("cpu (burn-ndarray)"), "{text}");
    insta::assert_snapshot!(text);
}

#[test]
fn jobs_read_only_80x24() {
    insta::assert_snapshot!(draw(&jobs_app(Role::Pi), 80, 24));
}

#[test]
fn jobs_cancel_confirmation_80x24() {
    let mut app = jobs_app(Role::Coordinator);
    keys(&mut app, "c");
    insta::assert_snapshot!(draw(&app, 80, 24));
}

#[test]
fn jobs_empty_80x24() {
    let mut app = app_of(Role::Admin);
    keys(&mut app, "J");
    app.apply(Response::Jobs(Ok(Vec::new())));
    insta::assert_snapshot!(draw(&app, 80, 24));
}

/// The model screen of a PI with the fixture's figures for `task`.
fn model_app(task: Task) -> App {
    let mut app = app_of(Role::Pi);
    keys(&mut app, "M");
    if task == Task::Op {
        keys(&mut app, "t");
    }
    app.apply(Response::Evaluation {
        task,
        phase: Some(marrow::domain::protocol::Phase::Prospective),
        active: Some(Box::new(fixture::model_row(task))),
        candidate: None,
        result: Ok(EvaluationFigures(Arc::new(fixture::evaluation(task, 200)))),
    });
    app
}

/// Issue 13 item 8: a trained version is never made active by training; `a` on
/// the model screen asks first, the active and the new version's validation
/// figures side by side, and only y sends the activation (to the data layer).
#[test]
fn activating_a_model_asks_first_showing_old_and_new_figures_side_by_side() {
    let mut old = fixture::model_row(Task::Kl);
    old.card["validation"] = serde_json::json!({ "n": 240, "accuracy": 0.71, "auc_binary": 0.912 });
    let mut new = fixture::model_row(Task::Kl);
    new.id = 7;
    new.name = "kl-study".into();
    new.version = "20261204-031500".into();
    new.active = false;
    new.card["validation"] = serde_json::json!({ "n": 60, "accuracy": 0.45, "auc_binary": 0.631 });
    let mut app = app_of(Role::Coordinator);
    keys(&mut app, "M");
    app.apply(Response::Evaluation {
        task: Task::Kl,
        phase: Some(marrow::domain::protocol::Phase::Prospective),
        active: Some(Box::new(old)),
        candidate: Some(Box::new(new)),
        result: Ok(EvaluationFigures(Arc::new(fixture::evaluation(
            Task::Kl,
            50,
        )))),
    });
    let text = draw(&app, 120, 40);
    assert!(
        text.contains("newest inactive version: kl-study 20261204-031500 (AUC 0.631"),
        "{text}"
    );
    assert!(
        keys(&mut app, "a").is_empty(),
        "nothing is sent before the answer"
    );
    assert!(matches!(
        app.confirmation(),
        Some(Confirmation::ActivateModel { .. })
    ));
    for (w, h) in [(80, 24), (120, 40)] {
        let text = draw(&app, w, h);
        assert!(
            text.contains("Make kl-study 20261204-031500 the active kl"),
            "{text}"
        );
        let now = text
            .lines()
            .find(|l| l.contains("now   kl 0.1.0-phantom"))
            .unwrap_or_else(|| panic!("{text}"));
        let new = text
            .lines()
            .find(|l| l.contains("new   kl-study 20261204-031500"))
            .unwrap_or_else(|| panic!("{text}"));
        // side by side: the figures start in the same column
        let col = |l: &str| l.find("AUC 0.").map(|b| l[..b].chars().count());
        assert!(now.contains("AUC 0.912 · accuracy 71.0% · n 240"), "{text}");
        assert!(new.contains("AUC 0.631 · accuracy 45.0% · n 60"), "{text}");
        assert_eq!(col(now), col(new), "{text}");
    }
    // n leaves everything as it was; y asks the data layer
    assert!(keys(&mut app, "n").is_empty());
    assert!(app.confirmation().is_none());
    keys(&mut app, "a");
    assert_eq!(
        keys(&mut app, "y"),
        vec![Request::ActivateModel {
            task: Task::Kl,
            version: "kl-study 20261204-031500".into()
        }]
    );
    // a PI may look but not choose
    let mut pi = model_app(Task::Kl);
    assert!(keys(&mut pi, "a").is_empty());
    assert!(pi.confirmation().is_none());
}

#[test]
fn model_kl_80x24() {
    let text = draw(&model_app(Task::Kl), 80, 24);
    assert!(text.contains("ROC · AUC"), "{text}");
    insta::assert_snapshot!(text);
}

#[test]
fn model_kl_120x40() {
    let text = draw(&model_app(Task::Kl), 120, 40);
    assert!(text.contains("Published references"), "{text}");
    assert!(text.contains("Confusion matrix"), "{text}");
    insta::assert_snapshot!(text);
}

#[test]
fn model_op_120x40() {
    insta::assert_snapshot!(draw(&model_app(Task::Op), 120, 40));
}

#[test]
fn model_placeholder_while_it_computes_80x24() {
    let mut app = app_of(Role::Adjudicator);
    keys(&mut app, "M");
    insta::assert_snapshot!(draw(&app, 80, 24));
}

#[test]
fn model_blinded_for_a_reader_80x24() {
    let mut app = app_of(Role::Reader);
    assert!(keys(&mut app, "M").is_empty());
    insta::assert_snapshot!(draw(&app, 80, 24));
}

// ---------------------------------------------------------------------------
// The model's explanation over a case's image
// ---------------------------------------------------------------------------

fn press(d: &mut Driver, c: char) -> Vec<Request> {
    d.app
        .handle_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
}

#[test]
fn an_adjudicator_overlays_the_models_explanation_on_the_case_image_and_hides_it_again() {
    let s = demo();
    let mut d = Driver::start(&s, Some("demo-adjudicator"), Pace::Ticked);
    d.keys("A");
    d.until("the adjudication queue", |a| {
        a.adjudication_queue()
            .is_some_and(|q| *q.state() == LoadState::Loaded && !q.rows().is_empty())
    });
    d.keys("\n");
    assert_eq!(d.app.screen(), Screen::Case);
    d.until("the case's image", |a| a.shown_preview().is_some());
    let plain = d.app.shown_preview().unwrap().clone();
    assert!(
        matches!(plain.rendered.pixels, Pixels::Gray(_)),
        "a radiograph"
    );
    let requests = press(&mut d, 'e');
    assert!(
        matches!(requests.as_slice(), [Request::ExplainCase { .. }]),
        "{requests:?}"
    );
    assert!(d.app.case_screen().unwrap().explaining());
    assert!(d.screen(120, 40).contains("computing the explanation"));
    d.send(requests);
    d.until("the explanation", |a| {
        a.case_screen().is_some_and(|c| c.explanation().is_some())
    });
    let e = d
        .app
        .case_screen()
        .unwrap()
        .explanation()
        .unwrap()
        .0
        .clone();
    assert!(!e.images.is_empty());
    assert!(e.model.contains("phantom"), "{}", e.model);
    // The pane shows the overlay of an image the model read: RGB, tinted somewhere.
    let shown = d.app.shown_preview().unwrap().clone();
    let img = e
        .images
        .iter()
        .find(|i| Arc::ptr_eq(&i.overlay, &shown))
        .expect("the pane shows an explained image's overlay");
    let Pixels::Rgb(rgb) = &shown.rendered.pixels else {
        panic!("the overlay is RGB: {:?}", shown.rendered.voi)
    };
    assert_eq!(rgb.len(), shown.rendered.width * shown.rendered.height * 3);
    assert!(
        rgb.chunks(3).any(|p| p[0] != p[1] || p[1] != p[2]),
        "some of the image is tinted"
    );
    assert_ne!(*shown, *plain);
    // The Shapley contributions of the predicted class, under the image.
    let c = img.shapley.predicted_class();
    let text = d.screen(120, 40);
    assert!(text.contains("model explanation"), "{text}");
    for part in [
        format!("image {:+.1}", c.image * 100.0),
        format!("demographics {:+.1}", c.demographics * 100.0),
        format!("labs {:+.1}", c.labs * 100.0),
    ] {
        assert!(text.contains(&part), "{part:?} in\n{text}");
    }
    // Efficiency: the parts add up to the prediction.
    assert!((c.base + c.image + c.demographics + c.labs - c.full).abs() < 1e-4);
    // e again: the plain image.
    d.keys("e");
    assert!(d.app.case_screen().unwrap().explanation().is_none());
    assert!(d.app.explanation_overlay().is_none());
    d.until("the plain frame", |a| {
        a.shown_preview()
            .is_some_and(|p| matches!(p.rendered.pixels, Pixels::Gray(_)))
    });
    assert!(!d.screen(120, 40).contains("demographics"));
    d.worker.stop();
}

#[test]
fn a_reader_before_their_read_is_told_the_explanation_is_hidden_and_nothing_is_computed() {
    let s = demo();
    let mut r = Driver::start(&s, Some("demo-reader-1"), Pace::Ticked);
    r.until("the reader's worklist", |a| {
        a.reader_list()
            .is_some_and(|l| *l.state() != LoadState::Loading)
    });
    r.keys("t");
    r.until("the case taken", |a| {
        a.case_screen().is_some_and(|c| c.loaded().is_some())
    });
    let cs = r.app.case_screen().unwrap();
    let case = cs.case().to_string();
    assert!(cs.your_read().is_none(), "a case not read yet");
    let why = match &cs.loaded().unwrap().view.model_prediction {
        Blinded::Hidden(why) => why.clone(),
        other => panic!("the model is hidden from the reader: {other:?}"),
    };
    let requests = press(&mut r, 'e');
    assert!(requests.is_empty(), "nothing is asked: {requests:?}");
    let msg = r.app.message().unwrap().text.clone();
    assert!(msg.contains("hidden") && msg.contains(&why), "{msg}");
    let cs = r.app.case_screen().unwrap();
    assert!(cs.explanation().is_none() && !cs.explaining());
    assert!(r.app.explanation_overlay().is_none());
    r.worker.stop();
    // The library refuses the reader on its own, whatever a screen does.
    let study = marrow::db::Study::open(&s.db, None, Some("demo-reader-1")).unwrap();
    let err = explain_case(&study, &case, 8, 4).unwrap_err();
    assert!(err.contains("hidden") && err.contains(&why), "{err}");
    // An adjudicator gets it from the same function.
    let study = marrow::db::Study::open(&s.db, None, Some("demo-adjudicator")).unwrap();
    match explain_case(&study, &case, 8, 4) {
        Ok(e) => assert!(!e.images.is_empty()),
        // A case the model has not predicted: no refusal for blinding.
        Err(e) => assert!(!e.contains("hidden"), "{e}"),
    }
}

/// A worker of `user` on `s`, its answers on a channel (no app in between).
fn raw_worker(
    s: &TempStudy,
    user: &str,
) -> (
    marrow::tui::worker::Worker,
    std::sync::mpsc::Receiver<Response>,
) {
    let (tx, rx) = std::sync::mpsc::channel();
    let (w, _) =
        marrow::tui::worker::Worker::spawn(s.db.clone(), None, Some(user.into()), move |r| {
            let _ = tx.send(r);
        })
        .expect("worker opens the study");
    (w, rx)
}

fn answer(rx: &std::sync::mpsc::Receiver<Response>) -> Response {
    rx.recv_timeout(std::time::Duration::from_secs(120))
        .expect("an answer (a guard against a hang)")
}

#[test]
fn the_database_worker_answers_while_an_explanation_is_computed() {
    let s = demo();
    let (w, rx) = raw_worker(&s, "demo-adjudicator");
    assert!(w.send(Request::LoadAdjudicationQueue));
    let case = match answer(&rx) {
        Response::AdjudicationQueue(Ok(q)) => q
            .first()
            .expect("a case to adjudicate")
            .summary
            .case
            .clone(),
        other => panic!("the queue: {other:?}"),
    };
    // The explanation's answer is held back until `hold` is dropped: if it were
    // computed on the database worker, the case load sent after it would wait behind
    // it (and the explanation would come first).
    let hold = w.hold_explanations();
    assert!(w.send(Request::ExplainCase { case: case.clone() }));
    assert!(w.send(Request::LoadCase { case: case.clone() }));
    match answer(&rx) {
        Response::Case { case: c, result } => {
            assert_eq!(c, case);
            assert!(result.is_ok(), "{result:?}");
        }
        other => panic!("the case load is answered first: {other:?}"),
    }
    assert!(w.send(Request::LoadAdjudicationQueue));
    assert!(
        matches!(answer(&rx), Response::AdjudicationQueue(Ok(_))),
        "the database worker keeps answering"
    );
    drop(hold);
    match answer(&rx) {
        Response::Explanation { case: c, result } => {
            assert_eq!(c, case);
            let e = result.expect("the adjudicator's explanation");
            assert!(!e.0.images.is_empty());
        }
        other => panic!("then the explanation: {other:?}"),
    }
    w.stop();

    // A reader before their read: the explanation thread's own connection refuses
    // with why (the data layer's refusal, before anything is computed).
    let (w, rx) = raw_worker(&s, "demo-reader-1");
    assert!(w.send(Request::TakeNextCase));
    let case = match answer(&rx) {
        Response::TakenCase(Ok(Some(t))) => t.summary.case,
        other => panic!("a case taken: {other:?}"),
    };
    assert!(w.send(Request::ExplainCase { case: case.clone() }));
    match answer(&rx) {
        Response::Explanation { case: c, result } => {
            assert_eq!(c, case);
            let err = result.expect_err("a reader is blinded to the model");
            assert!(err.contains("hidden"), "{err}");
        }
        other => panic!("the refusal: {other:?}"),
    }
    w.stop();
}
