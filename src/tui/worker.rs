//! The database worker: a plain thread that owns its own `Study` and answers typed
//! requests over a channel, so the UI thread never waits on SQLite. A second thread
//! decodes and scales images for the viewer, so a slow decode never holds up the
//! database (and the other way round).

use super::app::MAX_PREVIEW_PIXELS;
use super::app::Session;
use super::dashboard::DashboardFigures;
use crate::cli::model::EvaluationReport;
use crate::db::agreement::AgreementSummary;
use crate::db::followup::{PlannedVisit, VisitRow};
use crate::db::imaging::PatientImage;
use crate::db::inference::{JobKind, JobRow, JobState, ModelRow};
use crate::db::reading::{CaseSummary, CaseView, FinalRecord, QueueItem, SubmitOutcome, TakenCase};
use crate::db::study::{PatientDetail, PatientFilter, PatientSummary};
use crate::db::{DbError, Study};
use crate::dicom::decode::{self, Rendered};
use crate::dicom::store;
use crate::domain::consort::BoxKey;
use crate::domain::eligibility::{Answer, Criterion};
use crate::domain::followup::VisitInput;
use crate::domain::protocol::Phase;
use crate::domain::reading::{FinalGrade, ReadInput};
use crate::domain::status::StatusReport;
use crate::inference::Task;
use crate::inference::backend::BackendChoice;
use crate::inference::case_explain;
use crate::inference::explain::{self, GroupShapley, Heatmap};
use crate::inference::jobs::{self as runner, InferOptions, JobReport};
use std::path::Path;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the UI asks of the database.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Every patient's summary and the status counts (filters apply in memory).
    LoadWorklist,
    LoadPatient {
        study_id: String,
    },
    SetAnswer(SetAnswer),
    /// The images linked to a patient, for the viewer.
    LoadImages {
        study_id: String,
    },
    /// One frame of one image, decoded and scaled (answered by the image thread).
    RenderImage(RenderImage),
    /// The acting reader's cases (`Study::reader_worklist`).
    LoadReaderWorklist,
    /// Take the next case slot (`Study::take_next_case`).
    TakeNextCase,
    /// A case as the acting user may see it, with its images.
    LoadCase {
        case: String,
    },
    /// Submit (or correct, with a reason) the acting reader's read of a case.
    SubmitRead {
        case: String,
        read: ReadInput,
        correction: Option<String>,
    },
    /// The cases waiting for adjudication.
    LoadAdjudicationQueue,
    /// Record the final grade of a case.
    Adjudicate {
        case: String,
        grade: FinalGrade,
        rationale: String,
        /// The case version the screen showed; a newer one is refused.
        expected_version: i64,
    },
    /// The agreement figures (`Study::agreement`, bootstrap resamples).
    LoadAgreement {
        resamples: usize,
    },
    /// Every job (`Study::jobs`); `retire_stale` first fails the running jobs whose
    /// process stopped answering (coordinators and admins).
    LoadJobs {
        retire_stale: bool,
    },
    /// Queue an inference job over both tasks' images without a prediction of the
    /// active model (or every image, `all`); the job thread runs it.
    StartJob {
        all: bool,
    },
    /// Ask a queued or running job to stop (`Study::cancel_job`).
    CancelJob {
        id: i64,
    },
    /// The outcome figures of a task's model on a cohort (`None`: both), with the
    /// task's active model.
    LoadEvaluation {
        task: Task,
        phase: Option<Phase>,
        resamples: usize,
    },
    /// Make `version` the active model of `task` (`Study::activate_model`, audited).
    ActivateModel {
        task: Task,
        version: String,
    },
    /// The dashboard's figures: status, CONSORT flow, enrollment by month.
    LoadDashboard,
    /// The patients behind one CONSORT box (`Study::consort_patients`).
    LoadBoxPatients {
        key: BoxKey,
    },
    /// Follow-up visits: the coordinator's list or one patient's (on the worker's today).
    LoadFollowup {
        scope: FollowupScope,
    },
    /// Enter or correct a follow-up visit (`Study::record_visit`).
    RecordVisit(RecordVisit),
    /// The model's explanation of a case's prediction: Shapley values over the
    /// modality groups and the occlusion heatmap over each image the model reads
    /// (`case_explain::explain_case`, which refuses a user blinded to the model).
    /// Computed on a thread and connection of its own, not the database worker's.
    ExplainCase {
        case: String,
    },
}

/// Which follow-up visits the screen lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowupScope {
    /// Due within `days` days, and overdue (`marrow followup --due-days N --overdue`).
    Due { days: i64 },
    /// Every planned visit of one patient (`marrow followup show ID`).
    Patient(String),
}

/// A visit to save, with the version the screen showed (`None`: not recorded yet).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordVisit {
    pub study_id: String,
    pub month: u32,
    pub visit: VisitInput,
    /// Why (a correction needs one; it goes into the audit trail).
    pub reason: String,
    pub expected_version: Option<i64>,
}

/// A case loaded for the read or adjudication screen: the view and its images.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedCase {
    pub view: CaseView,
    pub images: Vec<PatientImage>,
}

/// The agreement figures, shared (they are only read; compared by identity).
#[derive(Debug, Clone)]
pub struct AgreementFigures(pub Arc<AgreementSummary>);

impl PartialEq for AgreementFigures {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// The outcome figures of the model screen, shared (only read; compared by identity).
#[derive(Debug, Clone)]
pub struct EvaluationFigures(pub Arc<EvaluationReport>);

impl PartialEq for EvaluationFigures {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// The model's explanation of one image of a case, ready to draw.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageExplanation {
    pub instance_id: i64,
    pub sop_uid: String,
    pub shapley: GroupShapley,
    pub heatmap: Heatmap,
    /// The radiograph with the heatmap over it (RGB, as `marrow explain --png`
    /// draws it), scaled to at most `MAX_PREVIEW_PIXELS` a side.
    pub overlay: Arc<Preview>,
}

/// The model's explanation of a case (what the viewer overlays).
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    pub case: String,
    pub task: Task,
    /// The model's name and version.
    pub model: String,
    pub images: Vec<ImageExplanation>,
}

impl Explanation {
    /// The explanation of one image of the case, if the model reads it.
    pub fn image(&self, instance_id: i64) -> Option<&ImageExplanation> {
        self.images.iter().find(|i| i.instance_id == instance_id)
    }
}

/// A case's explanation, shared (only read; compared by identity).
#[derive(Debug, Clone)]
pub struct ExplanationFigures(pub Arc<Explanation>);

impl PartialEq for ExplanationFigures {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// Which rendering of an image: the instance, the frame (from 0) and the VOI preset
/// (windows first, then VOI LUTs; 0 is the file's first or the automatic window).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PreviewKey {
    pub instance_id: i64,
    pub frame: usize,
    pub voi_index: usize,
    /// A window the user set (center, width), over the file's preset.
    pub window: Option<(i32, i32)>,
}

/// A frame to decode, scaled to fit `max_w x max_h` pixels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderImage {
    pub key: PreviewKey,
    /// Relative to the store folder (`image_instances.store_path`).
    pub store_path: String,
    pub max_w: usize,
    pub max_h: usize,
}

/// A decoded frame and how many VOI presets its file offers.
#[derive(Debug, Clone, PartialEq)]
pub struct Preview {
    pub rendered: Rendered,
    pub presets: usize,
}

/// A manual answer to save (`answer: None` clears it).
#[derive(Debug, Clone, PartialEq)]
pub struct SetAnswer {
    pub study_id: String,
    pub criterion: Criterion,
    pub answer: Option<Answer>,
    pub reason: String,
    /// The patient's version when the screen loaded it; a newer one is a conflict.
    pub expected_version: i64,
}

/// Why a save failed, as far as the screen needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveFailure {
    /// Someone changed the patient since it was loaded.
    Conflict,
    /// The user's role may not answer criteria.
    NotAllowed,
    /// Anything else (busy database, disk full, ...): worth another try.
    Other,
}

/// What the database answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    Worklist {
        patients: Vec<PatientSummary>,
        status: Option<StatusReport>,
    },
    /// The first rows of the worklist, sent ahead of the whole list on the first load
    /// so a large study shows something at once.
    WorklistFirstPage {
        patients: Vec<PatientSummary>,
        status: Option<StatusReport>,
    },
    WorklistFailed(String),
    Patient(Box<PatientDetail>),
    PatientFailed {
        study_id: String,
        error: String,
    },
    Saved {
        detail: Box<PatientDetail>,
        criterion: Criterion,
        answer: Option<Answer>,
        status: Option<StatusReport>,
    },
    SaveFailed {
        study_id: String,
        criterion: Criterion,
        kind: SaveFailure,
        error: String,
        /// The patient as it is now, reloaded after a conflict.
        fresh: Option<Box<PatientDetail>>,
    },
    Images {
        study_id: String,
        images: Vec<PatientImage>,
    },
    ImagesFailed {
        study_id: String,
        error: String,
    },
    /// A rendered frame, or why it could not be rendered.
    Rendered {
        key: PreviewKey,
        result: Result<Arc<Preview>, String>,
    },
    ReaderWorklist(Result<Vec<CaseSummary>, String>),
    /// The case taken (`None`: no work waiting), or why not.
    TakenCase(Result<Option<TakenCase>, String>),
    Case {
        case: String,
        result: Result<Box<LoadedCase>, String>,
    },
    ReadSubmitted {
        case: String,
        result: Result<Box<SubmitOutcome>, String>,
        /// The case as the reader may see it now (after a submit: unblinded).
        fresh: Option<Box<LoadedCase>>,
    },
    AdjudicationQueue(Result<Vec<QueueItem>, String>),
    Adjudicated {
        case: String,
        result: Result<Box<FinalRecord>, (SaveFailure, String)>,
        /// The case as it is now (after a conflict: who decided what).
        fresh: Option<Box<LoadedCase>>,
    },
    Agreement(Result<AgreementFigures, String>),
    /// Every job, newest first, or why not.
    Jobs(Result<Vec<JobRow>, String>),
    /// The job queued (its id), or why not.
    JobQueued(Result<i64, String>),
    /// The job asked to stop (as it is now), or why not.
    JobCancel {
        id: i64,
        result: Result<Box<JobRow>, String>,
    },
    /// A job this app queued has ended (done, failed or cancelled), or why it could
    /// not run (sent by the job thread).
    JobEnded {
        id: i64,
        result: Result<Box<JobReport>, String>,
    },
    /// The outcome figures of a task and cohort, and the task's active model.
    Evaluation {
        task: Task,
        phase: Option<Phase>,
        active: Option<Box<ModelRow>>,
        /// The task's newest inactive version (what `a` offers to activate).
        candidate: Option<Box<ModelRow>>,
        result: Result<EvaluationFigures, String>,
    },
    /// A model activated: the one that was active and the one that is now, or why not.
    ModelActivated {
        task: Task,
        result: Result<(Box<ModelRow>, Box<ModelRow>), String>,
    },
    /// The dashboard's figures, or why not.
    Dashboard(Result<Box<DashboardFigures>, String>),
    /// The patients behind a CONSORT box, or why not.
    BoxPatients {
        key: BoxKey,
        result: Result<Vec<PatientSummary>, String>,
    },
    /// Follow-up visits of a scope on `today`, or why not.
    Followup {
        scope: FollowupScope,
        today: chrono::NaiveDate,
        result: Result<Vec<PlannedVisit>, String>,
    },
    /// A visit saved, or why not (after a failure: the visit as it is now).
    VisitRecorded {
        study_id: String,
        month: u32,
        result: Result<Box<VisitRow>, (SaveFailure, String)>,
        fresh: Option<Box<PlannedVisit>>,
    },
    /// The model's explanation of a case, or why not (blinded, no model...).
    Explanation {
        case: String,
        result: Result<ExplanationFigures, String>,
    },
    /// The worker is gone (it panicked or could not be reached).
    WorkerStopped,
}

/// The running worker: send requests, stop it when done.
pub struct Worker {
    requests: Option<Sender<Request>>,
    renders: Option<Sender<RenderImage>>,
    thread: Option<JoinHandle<()>>,
    render_thread: Option<JoinHandle<()>>,
    job_thread: Option<JoinHandle<()>>,
    explanations: Option<Sender<String>>,
    explain_thread: Option<JoinHandle<()>>,
    explain_gate: Arc<Gate>,
}

/// A gate the explanation thread waits at before it answers (open unless a test holds
/// it with [`Worker::hold_explanations`]).
#[derive(Debug, Default)]
struct Gate {
    held: Mutex<bool>,
    changed: Condvar,
}

impl Gate {
    fn set(&self, held: bool) {
        *self.held.lock().unwrap_or_else(|e| e.into_inner()) = held;
        self.changed.notify_all();
    }

    fn wait_open(&self) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        while *held {
            held = self.changed.wait(held).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Holds the answers of the model explanations back while it lives (they are still
/// computed); dropping it lets them go. For tests that show the database worker
/// answers meanwhile.
#[must_use = "the explanations are held only while this lives"]
pub struct ExplanationHold(Arc<Gate>);

impl Drop for ExplanationHold {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

/// How long stopping waits for a job that is still running (it was asked to stop, or
/// the app would not have quit); past this it is left to finish on its own.
pub const JOB_STOP_WAIT: Duration = Duration::from_secs(5);

/// A queued job for the job thread.
#[derive(Debug, Clone, Copy)]
struct RunJob {
    id: i64,
    opts: InferOptions,
}

impl Worker {
    /// Starts the worker, which opens the study itself. Returns once the study is
    /// open (with who is using it) or with the error that kept it closed.
    pub fn spawn(
        db: PathBuf,
        key_file: Option<PathBuf>,
        as_user: Option<String>,
        reply: impl Fn(Response) + Send + Sync + 'static,
    ) -> Result<(Worker, Session), String> {
        let reply = Arc::new(reply);
        let (opened_tx, opened_rx) = mpsc::sync_channel::<Result<Session, String>>(1);
        let (req_tx, req_rx) = mpsc::channel::<Request>();
        let (job_tx, job_rx) = mpsc::channel::<RunJob>();
        let store_root = store::root_for(&db);
        let db_reply = reply.clone();
        let job_reply = reply.clone();
        let explain_reply = reply.clone();
        // The job thread opens its own connection, as the same user, when its first
        // job comes: a job never holds up the database worker (nor the other way).
        let job_open = (db.clone(), key_file.clone(), as_user.clone());
        // The model explanation (occlusion heatmap and Shapley contributions, 0.1 s
        // to seconds) likewise runs on a thread and connection of its own, so the
        // database worker answers the other requests meanwhile.
        let explain_open = (db.clone(), key_file.clone(), as_user.clone());
        let thread = std::thread::Builder::new()
            .name("marrow-db".into())
            .spawn(move || {
                let study = match Study::open(&db, key_file.as_deref(), as_user.as_deref()) {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = opened_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let session = Session {
                    user: study.actor().name.clone(),
                    role: study.role(),
                    sites: study.protocol().sites.clone(),
                    warning: store::missing(&study).ok().flatten(),
                };
                if opened_tx.send(Ok(session)).is_err() {
                    return;
                }
                let notice = StopNotice(move |r| db_reply(r));
                serve(study, req_rx, &notice.0, &job_tx);
            })
            .map_err(|e| format!("cannot start the database thread: {e}"))?;
        let session = match opened_rx.recv() {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err("the database thread stopped while opening the study".into());
            }
        };
        let (render_tx, render_rx) = mpsc::channel::<RenderImage>();
        let render_thread = std::thread::Builder::new()
            .name("marrow-images".into())
            .spawn(move || {
                let notice = StopNotice(move |r| reply(r));
                serve_renders(&store_root, render_rx, &notice.0);
            })
            .map_err(|e| format!("cannot start the image thread: {e}"))?;
        let job_thread = std::thread::Builder::new()
            .name("marrow-job".into())
            .spawn(move || {
                let (db, key_file, as_user) = job_open;
                serve_jobs(&db, key_file.as_deref(), as_user.as_deref(), job_rx, &|r| {
                    job_reply(r)
                });
            })
            .map_err(|e| format!("cannot start the job thread: {e}"))?;
        let (explain_tx, explain_rx) = mpsc::channel::<String>();
        let explain_gate = Arc::new(Gate::default());
        let gate = explain_gate.clone();
        let explain_thread = std::thread::Builder::new()
            .name("marrow-explain".into())
            .spawn(move || {
                let (db, key_file, as_user) = explain_open;
                let notice = StopNotice(move |r| explain_reply(r));
                serve_explanations(
                    &db,
                    key_file.as_deref(),
                    as_user.as_deref(),
                    explain_rx,
                    &gate,
                    &notice.0,
                );
            })
            .map_err(|e| format!("cannot start the explanation thread: {e}"))?;
        Ok((
            Worker {
                requests: Some(req_tx),
                renders: Some(render_tx),
                thread: Some(thread),
                render_thread: Some(render_thread),
                job_thread: Some(job_thread),
                explanations: Some(explain_tx),
                explain_thread: Some(explain_thread),
                explain_gate,
            },
            session,
        ))
    }

    /// Queues a request; false when the worker is gone.
    pub fn send(&self, r: Request) -> bool {
        match r {
            Request::RenderImage(job) => {
                self.renders.as_ref().is_some_and(|tx| tx.send(job).is_ok())
            }
            Request::ExplainCase { case } => self
                .explanations
                .as_ref()
                .is_some_and(|tx| tx.send(case).is_ok()),
            r => self.requests.as_ref().is_some_and(|tx| tx.send(r).is_ok()),
        }
    }

    /// Holds the answers of the model explanations back (they are still computed)
    /// until the returned guard is dropped. For tests: what the database worker
    /// answers meanwhile cannot be waiting behind an explanation.
    pub fn hold_explanations(&self) -> ExplanationHold {
        self.explain_gate.set(true);
        ExplanationHold(self.explain_gate.clone())
    }

    /// Lets the worker finish what it is doing (a write is never cut short) and waits.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.requests.take();
        self.renders.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(t) = self.render_thread.take() {
            let _ = t.join();
        }
        self.explanations.take();
        self.explain_gate.set(false);
        if let Some(t) = self.explain_thread.take() {
            let _ = t.join();
        }
        // The database thread is gone, so the job thread's queue is closed: it ends
        // after the job in hand (asked to stop when the user quit).
        if let Some(t) = self.job_thread.take() {
            let deadline = Instant::now() + JOB_STOP_WAIT;
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if t.is_finished() {
                let _ = t.join();
            } else {
                tracing::warn!(
                    "tui: a job was still running after {} s; left to finish on its own",
                    JOB_STOP_WAIT.as_secs()
                );
            }
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Takes whatever is queued and keeps only what still matters: every write in order,
/// the last worklist load and the last patient load (older loads are stale).
pub fn coalesce(batch: Vec<Request>) -> Vec<Request> {
    let mut writes = Vec::new();
    let mut worklist = false;
    let mut patient = None;
    let mut images = None;
    let mut render = None;
    let mut jobs = None;
    for r in batch {
        match r {
            Request::SetAnswer(_) => writes.push(r),
            Request::LoadWorklist => worklist = true,
            Request::LoadPatient { .. } => patient = Some(r),
            Request::LoadImages { .. } => images = Some(r),
            Request::RenderImage(_) => render = Some(r),
            // Reading requests are few and each one counts: kept in order.
            Request::LoadReaderWorklist
            | Request::TakeNextCase
            | Request::LoadCase { .. }
            | Request::SubmitRead { .. }
            | Request::LoadAdjudicationQueue
            | Request::Adjudicate { .. }
            | Request::LoadAgreement { .. } => writes.push(r),
            // Job writes in order; of the job list loads only the last (and one that
            // retires stale jobs wins).
            Request::StartJob { .. } | Request::CancelJob { .. } => writes.push(r),
            Request::LoadJobs { retire_stale } => {
                let before = matches!(jobs, Some(Request::LoadJobs { retire_stale: true }));
                jobs = Some(Request::LoadJobs {
                    retire_stale: retire_stale || before,
                });
            }
            // Each cohort and task the screen waits for is answered.
            Request::LoadEvaluation { .. } | Request::ActivateModel { .. } => writes.push(r),
            Request::LoadDashboard | Request::LoadBoxPatients { .. } => writes.push(r),
            Request::LoadFollowup { .. } | Request::RecordVisit(_) => writes.push(r),
            Request::ExplainCase { .. } => writes.push(r),
        }
    }
    if worklist {
        writes.push(Request::LoadWorklist);
    }
    writes.extend(jobs);
    writes.extend(patient);
    writes.extend(images);
    writes.extend(render);
    writes
}

/// Tells the UI when the worker dies of a panic, so nothing waits forever.
struct StopNotice<F: Fn(Response)>(F);

impl<F: Fn(Response)> Drop for StopNotice<F> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            (self.0)(Response::WorkerStopped);
        }
    }
}

/// Rows sent ahead of the whole worklist on the first load.
pub const FIRST_PAGE: usize = 200;

fn serve(
    mut study: Study,
    requests: Receiver<Request>,
    reply: &impl Fn(Response),
    jobs: &Sender<RunJob>,
) {
    let mut first_page_sent = false;
    while let Ok(first) = requests.recv() {
        let mut batch = vec![first];
        batch.extend(requests.try_iter());
        for r in coalesce(batch) {
            let started = Instant::now();
            if r == Request::LoadWorklist && !first_page_sent {
                first_page_sent = true;
                if let Ok(patients) = study.patients_first_page(FIRST_PAGE) {
                    if patients.len() < FIRST_PAGE {
                        // The first page is the whole study: nothing more to load.
                        reply(Response::Worklist {
                            patients,
                            status: status(&study),
                        });
                        continue;
                    }
                    // Without the status counts: on 100,000 patients they take ~100 ms,
                    // and they come with the whole list a moment later.
                    reply(Response::WorklistFirstPage {
                        patients,
                        status: None,
                    });
                }
            }
            let what = format!("{r:?}");
            let response = handle(&mut study, r, jobs);
            tracing::debug!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                "tui worker: {what}"
            );
            reply(response);
        }
    }
}

/// Decodes frames for the viewer; of the jobs queued meanwhile only the last counts
/// (the user has moved on from the others).
fn serve_renders(root: &Path, jobs: Receiver<RenderImage>, reply: &impl Fn(Response)) {
    while let Ok(first) = jobs.recv() {
        let job = jobs.try_iter().last().unwrap_or(first);
        let started = Instant::now();
        let result = render_preview(root, &job).map(Arc::new);
        if let Err(e) = &result {
            tracing::warn!("tui: rendering {} failed: {e}", job.store_path);
        }
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "tui images: rendered {:?}",
            job.key
        );
        reply(Response::Rendered {
            key: job.key,
            result,
        });
    }
}

/// Opens an image of the store and renders one frame of it.
pub fn render_preview(root: &Path, job: &RenderImage) -> Result<Preview, String> {
    let image = decode::load(root.join(&job.store_path)).map_err(|e| e.to_string())?;
    let presets = image.presets();
    let voi = if job.key.voi_index < presets.max(1) {
        job.key.voi_index
    } else {
        0
    };
    let choice = match job.key.window {
        Some((center, width)) => decode::VoiChoice::Window {
            center: f64::from(center),
            width: f64::from(width.max(1)),
        },
        None => decode::VoiChoice::Preset(voi),
    };
    let rendered = decode::render_with(&image, job.key.frame, choice, job.max_w, job.max_h)
        .map_err(|e| e.to_string())?;
    Ok(Preview { rendered, presets })
}

/// A case and its images, as the acting user may see them.
fn load_case(study: &Study, case: &str) -> Result<Box<LoadedCase>, String> {
    let view = study.case_view(case).map_err(|e| e.to_string())?;
    let images = study.case_images(case).map_err(|e| e.to_string())?;
    Ok(Box::new(LoadedCase { view, images }))
}

fn failure_kind(e: &DbError) -> SaveFailure {
    match e {
        DbError::Conflict(_) => SaveFailure::Conflict,
        DbError::NotAllowed { .. } => SaveFailure::NotAllowed,
        _ => SaveFailure::Other,
    }
}

/// The explanation of a case with the overlay of each image, drawn here so the UI
/// thread only shows it.
fn explanation(study: &Study, case: &str) -> Result<ExplanationFigures, String> {
    let e =
        case_explain::explain_case(study, case, explain::DEFAULT_PATCH, explain::DEFAULT_STRIDE)?;
    let images = e
        .images
        .into_iter()
        .map(|i| {
            let (w, h, rgb) = explain::overlay_rgb(&i.image, &i.heatmap);
            Ok(ImageExplanation {
                instance_id: i.instance_id,
                sop_uid: i.sop_uid,
                shapley: i.shapley,
                heatmap: i.heatmap,
                overlay: Arc::new(overlay_preview(w, h, rgb)?),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(ExplanationFigures(Arc::new(Explanation {
        case: e.case,
        task: e.task,
        model: e.model,
        images,
    })))
}

/// The answer to `Request::ExplainCase`: `case_explain::explain_case` refuses a user
/// blinded to the model (with why) before it computes anything.
fn explain_response(study: &Study, case: String) -> Response {
    let started = Instant::now();
    let result = explanation(study, &case);
    match &result {
        Ok(e) => tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "tui: {case} explained ({} image(s), model {})",
            e.0.images.len(),
            e.0.model
        ),
        Err(e) => tracing::info!("tui: no explanation of {case}: {e}"),
    }
    Response::Explanation { case, result }
}

/// Explains the cases asked for, one after the other, on a connection of its own
/// (as the same user), opened on the first request.
fn serve_explanations(
    db: &Path,
    key_file: Option<&Path>,
    as_user: Option<&str>,
    cases: Receiver<String>,
    gate: &Gate,
    reply: &dyn Fn(Response),
) {
    let mut study: Option<Study> = None;
    while let Ok(case) = cases.recv() {
        if study.is_none() {
            match Study::open(db, key_file, as_user) {
                Ok(s) => study = Some(s),
                Err(e) => {
                    gate.wait_open();
                    reply(Response::Explanation {
                        case,
                        result: Err(format!("the explanation thread cannot open the study: {e}")),
                    });
                    continue;
                }
            }
        }
        let Some(s) = study.as_ref() else {
            continue;
        };
        let response = explain_response(s, case);
        gate.wait_open();
        reply(response);
    }
}

/// An RGB overlay as a viewer frame, scaled down to `MAX_PREVIEW_PIXELS` a side.
fn overlay_preview(w: usize, h: usize, rgb: Vec<u8>) -> Result<Preview, String> {
    let img = image::RgbImage::from_raw(w as u32, h as u32, rgb)
        .ok_or_else(|| format!("the overlay's size {w}x{h} does not match its pixels"))?;
    let max = MAX_PREVIEW_PIXELS.max(1);
    let img = if w > max || h > max {
        let f = max as f64 / w.max(h) as f64;
        let nw = ((w as f64 * f).round() as u32).max(1);
        let nh = ((h as f64 * f).round() as u32).max(1);
        image::imageops::resize(&img, nw, nh, image::imageops::FilterType::Triangle)
    } else {
        img
    };
    let (width, height) = (img.width() as usize, img.height() as usize);
    Ok(Preview {
        rendered: Rendered {
            pixels: decode::Pixels::Rgb(img.into_raw()),
            width,
            height,
            voi: "model explanation (occlusion)".into(),
            window: None,
            decoded_width: w,
            decoded_height: h,
        },
        presets: 0,
    })
}

fn handle(study: &mut Study, r: Request, jobs: &Sender<RunJob>) -> Response {
    match r {
        // Sent to the explanation thread by `Worker::send`; answered here too for
        // whoever hands it to the database worker directly.
        Request::ExplainCase { case } => explain_response(study, case),
        Request::LoadFollowup { scope } => {
            let today = crate::cli::export::today();
            let result = match &scope {
                FollowupScope::Due { days } => study.visits_due(today, *days, true),
                FollowupScope::Patient(id) => study.patient_visits(id, today),
            }
            .map_err(|e| e.to_string());
            Response::Followup {
                scope,
                today,
                result,
            }
        }
        Request::RecordVisit(v) => {
            let result = study
                .record_visit(
                    &v.study_id,
                    v.month,
                    &v.visit,
                    &v.reason,
                    v.expected_version,
                )
                .map(Box::new)
                .map_err(|e| (failure_kind(&e), e.to_string()));
            let fresh = match &result {
                Ok(row) => {
                    tracing::info!(
                        "tui: {}-month visit of {} saved (version {})",
                        row.visit_month,
                        row.study_id,
                        row.version
                    );
                    None
                }
                Err((_, e)) => {
                    tracing::warn!(
                        "tui: saving the {}-month visit of {} failed: {e}",
                        v.month,
                        v.study_id
                    );
                    study
                        .patient_visits(&v.study_id, crate::cli::export::today())
                        .ok()
                        .and_then(|p| p.into_iter().find(|p| p.window.month == v.month))
                        .map(Box::new)
                }
            };
            Response::VisitRecorded {
                study_id: v.study_id,
                month: v.month,
                result,
                fresh,
            }
        }
        Request::LoadDashboard => Response::Dashboard(dashboard(study).map(Box::new)),
        Request::LoadBoxPatients { key } => Response::BoxPatients {
            key,
            result: study.consort_patients(key).map_err(|e| e.to_string()),
        },
        Request::LoadJobs { retire_stale } => {
            if retire_stale && let Err(e) = study.fail_stale_jobs() {
                tracing::warn!("tui: retiring stale jobs failed: {e}");
            }
            Response::Jobs(study.jobs().map_err(|e| e.to_string()))
        }
        Request::StartJob { all } => Response::JobQueued(queue_job(study, all, jobs)),
        Request::CancelJob { id } => {
            let result = study
                .cancel_job(id)
                .map(Box::new)
                .map_err(|e| e.to_string());
            match &result {
                Ok(j) => tracing::info!("tui: job {id} asked to stop ({})", j.state.code()),
                Err(e) => tracing::warn!("tui: cancelling job {id} failed: {e}"),
            }
            Response::JobCancel { id, result }
        }
        Request::LoadEvaluation {
            task,
            phase,
            resamples,
        } => {
            let models = study.models().unwrap_or_default();
            let active = models
                .iter()
                .find(|m| m.task == task && m.active)
                .cloned()
                .map(Box::new);
            let candidate = models
                .into_iter()
                .filter(|m| m.task == task && !m.active)
                .max_by_key(|m| m.id)
                .map(Box::new);
            let result = crate::cli::model::evaluation_report(
                study,
                task,
                phase,
                None,
                EVALUATION_THRESHOLD,
                resamples,
                None,
            )
            .map(|r| EvaluationFigures(Arc::new(r)))
            .map_err(|e| format!("{e:#}"));
            Response::Evaluation {
                task,
                phase,
                active,
                candidate,
                result,
            }
        }
        Request::ActivateModel { task, version } => {
            let result = study
                .activate_model(task, &version, Some("activated on the TUI's model screen"))
                .map(|(was, now)| (Box::new(was), Box::new(now)))
                .map_err(|e| e.to_string());
            match &result {
                Ok((was, now)) => tracing::info!(
                    "tui: {} is the active {} model (was {})",
                    now.label(),
                    task.code(),
                    was.label()
                ),
                Err(e) => tracing::warn!("tui: activating {version} failed: {e}"),
            }
            Response::ModelActivated { task, result }
        }
        Request::LoadReaderWorklist => {
            Response::ReaderWorklist(study.reader_worklist().map_err(|e| e.to_string()))
        }
        Request::TakeNextCase => {
            let taken = study.take_next_case().map_err(|e| e.to_string());
            if let Ok(Some(t)) = &taken {
                tracing::info!("tui: took {} (slot {})", t.summary.case, t.slot);
            }
            Response::TakenCase(taken)
        }
        Request::LoadCase { case } => {
            let result = load_case(study, &case);
            Response::Case { case, result }
        }
        Request::SubmitRead {
            case,
            read,
            correction,
        } => {
            let result = study
                .submit_read(&case, &read, correction.as_deref())
                .map(Box::new)
                .map_err(|e| e.to_string());
            match &result {
                Ok(o) => tracing::info!("tui: read of {case} v{} submitted", o.read.version),
                Err(e) => tracing::warn!("tui: submitting the read of {case} failed: {e}"),
            }
            let fresh = load_case(study, &case).ok();
            Response::ReadSubmitted {
                case,
                result,
                fresh,
            }
        }
        Request::LoadAdjudicationQueue => {
            Response::AdjudicationQueue(study.adjudication_queue().map_err(|e| e.to_string()))
        }
        Request::Adjudicate {
            case,
            grade,
            rationale,
            expected_version,
        } => {
            let result = study
                .adjudicate(&case, &grade, &rationale, Some(expected_version))
                .map(Box::new)
                .map_err(|e| (failure_kind(&e), e.to_string()));
            match &result {
                Ok(_) => tracing::info!("tui: {case} adjudicated"),
                Err((_, e)) => tracing::warn!("tui: adjudicating {case} failed: {e}"),
            }
            let fresh = load_case(study, &case).ok();
            Response::Adjudicated {
                case,
                result,
                fresh,
            }
        }
        Request::LoadAgreement { resamples } => Response::Agreement(
            study
                .agreement(resamples)
                .map(|a| AgreementFigures(Arc::new(a)))
                .map_err(|e| e.to_string()),
        ),
        Request::LoadImages { study_id } => match study.patient_images(&study_id) {
            Ok(images) => Response::Images { study_id, images },
            Err(e) => Response::ImagesFailed {
                study_id,
                error: e.to_string(),
            },
        },
        // Routed to the image thread by `Worker::send`; answered here only if a
        // caller hands it to the database loop directly.
        Request::RenderImage(job) => Response::Rendered {
            key: job.key,
            result: Err("internal: a render request reached the database thread".into()),
        },
        Request::LoadWorklist => match study.patients(&PatientFilter::default()) {
            Ok(patients) => Response::Worklist {
                patients,
                status: status(study),
            },
            Err(e) => Response::WorklistFailed(e.to_string()),
        },
        Request::LoadPatient { study_id } => match study.patient(&study_id) {
            Ok(d) => Response::Patient(Box::new(d)),
            Err(e) => Response::PatientFailed {
                study_id,
                error: e.to_string(),
            },
        },
        Request::SetAnswer(s) => {
            match study.set_answer(
                &s.study_id,
                s.criterion,
                s.answer,
                &s.reason,
                Some(s.expected_version),
            ) {
                Ok(detail) => {
                    tracing::info!("tui: {} {} set to {:?}", s.study_id, s.criterion, s.answer);
                    Response::Saved {
                        detail: Box::new(detail),
                        criterion: s.criterion,
                        answer: s.answer,
                        status: status(study),
                    }
                }
                Err(e) => {
                    let kind = failure_kind(&e);
                    let fresh = match kind {
                        SaveFailure::Conflict => study.patient(&s.study_id).ok().map(Box::new),
                        _ => None,
                    };
                    tracing::warn!("tui: saving {} {} failed: {e}", s.study_id, s.criterion);
                    Response::SaveFailed {
                        study_id: s.study_id,
                        criterion: s.criterion,
                        kind,
                        error: e.to_string(),
                        fresh,
                    }
                }
            }
        }
    }
}

/// The operating point of the model screen's sensitivity and specificity.
pub const EVALUATION_THRESHOLD: f64 = 0.5;

/// Records an inference job over both tasks and hands it to the job thread.
fn queue_job(study: &mut Study, all: bool, jobs: &Sender<RunJob>) -> Result<i64, String> {
    let opts = InferOptions {
        task: None,
        all,
        backend: BackendChoice::Auto,
    };
    let id = study
        .create_job(
            JobKind::Infer,
            opts.task,
            opts.scope(),
            &opts.backend.to_string(),
        )
        .map_err(|e| e.to_string())?;
    if jobs.send(RunJob { id, opts }).is_err() {
        let msg = "the job thread stopped; quit and start marrow again (details in the log)";
        if let Err(e) = study.finish_job(id, JobState::Failed, msg) {
            tracing::warn!("tui: failing job {id} failed: {e}");
        }
        return Err(msg.into());
    }
    tracing::info!("tui: job {id} queued ({})", opts.scope());
    Ok(id)
}

/// Runs the queued jobs one after the other on a connection of its own, opened on the
/// first job. Progress goes to the jobs table, which the screens read back.
fn serve_jobs(
    db: &Path,
    key_file: Option<&Path>,
    as_user: Option<&str>,
    jobs: Receiver<RunJob>,
    reply: &dyn Fn(Response),
) {
    let mut study: Option<Study> = None;
    while let Ok(job) = jobs.recv() {
        let id = job.id;
        if study.is_none() {
            match Study::open(db, key_file, as_user) {
                Ok(s) => study = Some(s),
                Err(e) => {
                    reply(Response::JobEnded {
                        id,
                        result: Err(format!("the job thread cannot open the study: {e}")),
                    });
                    continue;
                }
            }
        }
        let Some(s) = study.as_mut() else {
            continue;
        };
        let started = Instant::now();
        let result = run_job(s, &job);
        match &result {
            Ok(r) => tracing::info!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                "tui: job {id} {}: {}",
                r.state.code(),
                r.message
            ),
            Err(e) => tracing::warn!("tui: job {id} failed: {e}"),
        }
        reply(Response::JobEnded {
            id,
            result: result.map(Box::new),
        });
    }
}

/// Runs one job to its end. A job cancelled while it waited is not started; a runner
/// that stops on an error (or a panic) leaves the row failed, never 'running'.
fn run_job(study: &mut Study, job: &RunJob) -> Result<JobReport, String> {
    let row = study.job(job.id).map_err(|e| e.to_string())?;
    if row.state.finished() {
        return Ok(JobReport {
            job: job.id,
            state: row.state,
            backend: row.backend,
            models: Vec::new(),
            total: 0,
            predicted: 0,
            failed: Vec::new(),
            skipped: Default::default(),
            message: row
                .message
                .unwrap_or_else(|| format!("{} before it started", row.state.code())),
            seconds: 0.0,
        });
    }
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runner::run_infer(study, job.id, &job.opts, &mut |_, _| {})
    }));
    let error = match outcome {
        Ok(Ok(report)) => return Ok(report),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "the job stopped on an internal error (details in the log)".to_string(),
    };
    if study.job(job.id).is_ok_and(|r| !r.state.finished())
        && let Err(e) = study.finish_job(job.id, JobState::Failed, &error)
    {
        tracing::warn!("tui: marking job {} failed failed: {e}", job.id);
    }
    Err(error)
}

/// The dashboard's figures, in one go.
fn dashboard(study: &Study) -> Result<DashboardFigures, String> {
    let status = study.status().map_err(|e| e.to_string())?;
    let consort = study.consort().map_err(|e| e.to_string())?;
    let months = study.enrollment_by_month().map_err(|e| e.to_string())?;
    Ok(DashboardFigures {
        status,
        consort,
        // every month from the first to the last, zero where no patient is
        by_month: crate::domain::status::per_month(months.into_iter().map(|(m, _, n)| (m, n))),
        outcomes: study
            .outcomes_report(Some(crate::domain::protocol::Phase::Prospective))
            .map_err(|e| e.to_string()),
    })
}

fn status(study: &Study) -> Option<StatusReport> {
    match study.status() {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("tui: status counts failed: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(id: &str) -> Request {
        Request::LoadPatient {
            study_id: id.into(),
        }
    }

    #[test]
    fn coalesce_keeps_writes_and_only_the_last_loads() {
        let w = Request::SetAnswer(SetAnswer {
            study_id: "A".into(),
            criterion: Criterion::I4,
            answer: Some(Answer::Yes),
            reason: "r".into(),
            expected_version: 1,
        });
        let out = coalesce(vec![
            load("A"),
            Request::LoadWorklist,
            w.clone(),
            load("B"),
            Request::LoadWorklist,
        ]);
        assert_eq!(out, vec![w, Request::LoadWorklist, load("B")]);
    }
}
