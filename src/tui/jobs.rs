//! The jobs screen and the model screen (issue 5): their state and update logic.
//!
//! Jobs: the `model_jobs` rows read back from the database about once a second while
//! one runs (so a job started by `marrow infer` in another terminal shows live too);
//! `n` / `a` queue an inference job that the worker's job thread runs on its own
//! connection, `c` asks the selected job to stop. Quitting while a job this app
//! started still runs asks first, then cancels it and waits for it to stop.
//!
//! Model: the primary outcome of the active KL or OP model (figures with bootstrap
//! intervals, confusion matrix, ROC curve) beside the published references, computed
//! on the database worker; readers are blinded to it.

use super::app::{App, LoadState, Screen};
use super::keymap::Action;
use super::worker::{EvaluationFigures, Request, Response};
use crate::db::DbError;
use crate::db::inference::{JobKind, JobRow, JobState, ModelRow};
use crate::domain::protocol::Phase;
use crate::domain::user::{Permission, Role};
use crate::inference::Task;
use std::cell::Cell;
use std::collections::{BTreeSet, HashMap};

/// Bootstrap resamples of the model screen's confidence intervals.
pub const EVALUATION_RESAMPLES: usize = 500;

/// Ticks (about a second each) between refreshes of the jobs list while no job runs.
pub const IDLE_REFRESH_TICKS: u32 = 5;

/// Ticks a quit waits for the cancelled jobs to stop before it quits anyway (the
/// worker then waits a little longer for the job thread).
pub const QUIT_WAIT_TICKS: u32 = 20;

/// The jobs screen.
#[derive(Debug)]
pub struct JobsView {
    pub(crate) rows: Vec<JobRow>,
    pub(crate) selected: usize,
    /// First visible job, kept by `render`.
    pub(crate) offset: Cell<usize>,
    pub(crate) state: LoadState,
    /// A list load is on its way (no second one is asked meanwhile).
    pub(crate) in_flight: bool,
    /// Ticks since the last refresh while no job runs.
    idle_ticks: u32,
    /// The job to select once the list has it (one this app just queued).
    select: Option<i64>,
    /// Where Esc goes back to.
    pub(crate) from: Screen,
}

impl JobsView {
    pub fn rows(&self) -> &[JobRow] {
        &self.rows
    }

    pub fn selected(&self) -> Option<&JobRow> {
        self.rows.get(self.selected)
    }

    pub fn state(&self) -> &LoadState {
        &self.state
    }

    /// Whether a listed job is queued or running (here or in another process).
    pub fn any_active(&self) -> bool {
        self.rows.iter().any(|j| !j.state.finished())
    }

    fn set(&mut self, rows: Vec<JobRow>) {
        let keep = self.select.take().or(self.selected().map(|j| j.id));
        self.rows = rows;
        self.selected = keep
            .and_then(|id| self.rows.iter().position(|j| j.id == id))
            .unwrap_or(0)
            .min(self.rows.len().saturating_sub(1));
        self.state = LoadState::Loaded;
    }
}

/// What the confirmation popup asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmation {
    /// Predict every image again.
    InferAll,
    /// Cancel a job (its one-line description).
    Cancel { id: i64, what: String },
    /// Quit while jobs this app started still run (they will be cancelled).
    Quit { jobs: Vec<i64> },
    /// Make `new` the active model of `task` in place of `old`, each with its
    /// validation figures (shown side by side).
    ActivateModel {
        task: Task,
        old: String,
        old_figures: String,
        new: String,
        new_figures: String,
    },
}

/// What a key means to an open confirmation pop-up: the same for every one of them
/// (the jobs keys, quitting while a job runs, submitting a read or an adjudication):
/// y or Enter agrees, n or Esc goes back, anything else leaves it open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Yes,
    No,
    /// Not an answer: the pop-up stays open (the caller may still act on the key).
    Other,
}

impl Answer {
    pub fn of(action: &Action) -> Answer {
        match action {
            Action::Confirm | Action::Save => Answer::Yes,
            Action::Back => Answer::No,
            _ => Answer::Other,
        }
    }
}

/// The figures of one task and cohort.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelFigures {
    pub(crate) state: LoadState,
    /// The task's active model, if one is registered.
    pub(crate) active: Option<Box<ModelRow>>,
    /// The task's newest inactive version: what `a` offers to activate.
    pub(crate) candidate: Option<Box<ModelRow>>,
    pub(crate) figures: Option<EvaluationFigures>,
    /// Why there are no figures (no predictions, no final grades yet…).
    pub(crate) missing: Option<String>,
}

impl ModelFigures {
    fn loading() -> ModelFigures {
        ModelFigures {
            state: LoadState::Loading,
            active: None,
            candidate: None,
            figures: None,
            missing: None,
        }
    }

    pub fn state(&self) -> &LoadState {
        &self.state
    }

    pub fn active(&self) -> Option<&ModelRow> {
        self.active.as_deref()
    }

    pub fn candidate(&self) -> Option<&ModelRow> {
        self.candidate.as_deref()
    }

    pub fn figures(&self) -> Option<&EvaluationFigures> {
        self.figures.as_ref()
    }

    pub fn missing(&self) -> Option<&str> {
        self.missing.as_deref()
    }
}

/// The model screen: the task and cohort shown, the figures computed so far.
#[derive(Debug)]
pub struct ModelView {
    pub(crate) task: Task,
    /// `None`: both cohorts.
    pub(crate) cohort: Option<Phase>,
    pub(crate) computed: HashMap<(Task, Option<Phase>), ModelFigures>,
    pub(crate) scroll: usize,
    /// Lines of the figures pane and how many fit, from the last render.
    pub(crate) lines: Cell<(usize, usize)>,
    pub(crate) from: Screen,
}

impl ModelView {
    pub fn task(&self) -> Task {
        self.task
    }

    pub fn cohort(&self) -> Option<Phase> {
        self.cohort
    }

    /// The figures of the task and cohort shown, once asked for.
    pub fn current(&self) -> Option<&ModelFigures> {
        self.computed.get(&(self.task, self.cohort))
    }
}

/// The jobs and model part of the app's state.
#[derive(Debug, Default)]
pub struct JobsState {
    pub(crate) jobs: Option<JobsView>,
    pub(crate) model: Option<ModelView>,
    pub(crate) confirm: Option<Confirmation>,
    /// Jobs this app queued that have not ended yet.
    pub(crate) own: BTreeSet<i64>,
    /// Jobs whose end was reported before the worker said they were queued (a job
    /// with nothing to do ends on its thread before the queue answer arrives).
    pub(crate) ended_early: BTreeSet<i64>,
    /// The job this app queued last (whether or not it has ended).
    pub(crate) last_queued: Option<i64>,
    /// Job starts sent to the worker and not answered yet.
    pub(crate) starting: usize,
    /// Quitting: the app's jobs were asked to stop; ticks waited so far.
    pub(crate) quitting: Option<u32>,
}

/// Whether `apply_jobs` takes this response.
pub(crate) fn is_jobs_response(r: &Response) -> bool {
    matches!(
        r,
        Response::Jobs(_)
            | Response::JobQueued(_)
            | Response::JobCancel { .. }
            | Response::JobEnded { .. }
            | Response::Evaluation { .. }
            | Response::ModelActivated { .. }
    )
}

/// "kl+op", "kl", "op".
pub fn task_label(task: Option<Task>) -> &'static str {
    task.map_or("kl+op", Task::code)
}

/// Images a second of an inference job, from its start to its last heartbeat (or its
/// end); `None` before the first batch, or for training jobs (which count epochs).
pub fn images_per_second(j: &JobRow) -> Option<f64> {
    if j.kind != JobKind::Infer || j.done + j.failed <= 0 {
        return None;
    }
    let parse = |s: &str| chrono::DateTime::parse_from_rfc3339(s).ok();
    let start = parse(j.started_at.as_deref()?)?;
    let end = parse(j.finished_at.as_deref().or(j.heartbeat_at.as_deref())?)?;
    let seconds = (end - start).num_milliseconds() as f64 / 1000.0;
    (seconds > 0.0).then(|| (j.done + j.failed) as f64 / seconds)
}

/// "job 12 (infer kl+op, 128 of 300 images)".
pub fn describe_job(j: &JobRow) -> String {
    let unit = if j.kind == JobKind::Train {
        "epochs"
    } else {
        "images"
    };
    format!(
        "job {} ({} {}, {} of {} {unit})",
        j.id,
        j.kind.code(),
        task_label(j.task),
        j.done + j.failed,
        j.total
    )
}

impl App {
    /// The jobs screen, once opened.
    pub fn jobs_view(&self) -> Option<&JobsView> {
        self.jobs.jobs.as_ref()
    }

    /// The model screen, once opened.
    pub fn model_view(&self) -> Option<&ModelView> {
        self.jobs.model.as_ref()
    }

    /// The open confirmation, if any.
    pub fn confirmation(&self) -> Option<&Confirmation> {
        self.jobs.confirm.as_ref()
    }

    /// Jobs this app started that have not ended.
    pub fn own_jobs(&self) -> &BTreeSet<i64> {
        &self.jobs.own
    }

    /// The job this app queued last, once the worker has answered (it may have ended
    /// already: a job with nothing to do ends before the answer arrives).
    pub fn last_queued_job(&self) -> Option<i64> {
        self.jobs.last_queued
    }

    /// Whether the app waits for its jobs to stop before it quits.
    pub fn is_quitting(&self) -> bool {
        self.jobs.quitting.is_some()
    }

    /// Whether the user may start and cancel jobs.
    fn may_run_jobs(&self) -> bool {
        self.session.role.allows(Permission::Model)
    }

    fn refuse_jobs(&mut self) {
        let e = DbError::NotAllowed {
            user: self.session.user.clone(),
            role: self.session.role.to_string(),
            what: format!(
                "{} (coordinators and admins); the list stays readable",
                Permission::Model.describe()
            ),
        };
        self.error(e.to_string());
    }

    /// Where Esc from the jobs or model screen goes: the screen they were opened from.
    fn origin(&self) -> Screen {
        match self.screen {
            Screen::Jobs => self.jobs.jobs.as_ref().map_or(Screen::Worklist, |v| v.from),
            Screen::Model => self
                .jobs
                .model
                .as_ref()
                .map_or(Screen::Worklist, |v| v.from),
            s => s,
        }
    }

    fn load_jobs(&mut self) -> Vec<Request> {
        let retire_stale = self.may_run_jobs();
        match self.jobs.jobs.as_mut() {
            Some(v) if !v.in_flight => {
                v.in_flight = true;
                v.idle_ticks = 0;
                vec![Request::LoadJobs { retire_stale }]
            }
            _ => Vec::new(),
        }
    }

    /// Opens the jobs screen (everyone may look; coordinators and admins act).
    pub(crate) fn open_jobs(&mut self) -> Vec<Request> {
        let from = self.origin();
        self.screen = Screen::Jobs;
        let v = self.jobs.jobs.get_or_insert_with(|| JobsView {
            rows: Vec::new(),
            selected: 0,
            offset: Cell::new(0),
            state: LoadState::Loading,
            in_flight: false,
            idle_ticks: 0,
            select: None,
            from,
        });
        v.from = from;
        self.load_jobs()
    }

    /// Opens the model screen; readers are told they are blinded to it.
    pub(crate) fn open_model(&mut self) -> Vec<Request> {
        let from = self.origin();
        self.screen = Screen::Model;
        let v = self.jobs.model.get_or_insert_with(|| ModelView {
            task: Task::Kl,
            // the protocol's external test, as `marrow evaluate` scores by default
            cohort: Some(Phase::Prospective),
            computed: HashMap::new(),
            scroll: 0,
            lines: Cell::new((0, 0)),
            from,
        });
        v.from = from;
        self.want_figures(false)
    }

    /// Whether the user is blinded to the model's figures (readers).
    pub fn model_blinded(&self) -> bool {
        self.session.role == Role::Reader
    }

    /// Asks for the figures on show unless they are computed or on their way
    /// (`again`: recompute them).
    fn want_figures(&mut self, again: bool) -> Vec<Request> {
        if self.model_blinded() {
            return Vec::new();
        }
        let Some(v) = self.jobs.model.as_mut() else {
            return Vec::new();
        };
        let key = (v.task, v.cohort);
        match v.computed.get_mut(&key) {
            // On its way, or computed.
            Some(f) if !again && !matches!(f.state, LoadState::Failed(_)) => {
                return Vec::new();
            }
            // Recomputed (what was computed stays on screen meanwhile).
            Some(f) => f.state = LoadState::Loading,
            None => {
                v.computed.insert(key, ModelFigures::loading());
            }
        }
        vec![Request::LoadEvaluation {
            task: key.0,
            phase: key.1,
            resamples: EVALUATION_RESAMPLES,
        }]
    }

    /// What a key does on the jobs screen.
    pub(crate) fn update_jobs(&mut self, action: Action) -> Vec<Request> {
        let allowed = self.may_run_jobs();
        if !allowed
            && matches!(
                action,
                Action::InferPending | Action::InferAll | Action::CancelJob
            )
        {
            self.refuse_jobs();
            return Vec::new();
        }
        let Some(v) = self.jobs.jobs.as_mut() else {
            self.screen = Screen::Worklist;
            return Vec::new();
        };
        let last = v.rows.len().saturating_sub(1);
        match action {
            Action::Down => v.selected = (v.selected + 1).min(last),
            Action::Up => v.selected = v.selected.saturating_sub(1),
            Action::Top => v.selected = 0,
            Action::Bottom => v.selected = last,
            Action::Back => self.screen = v.from,
            Action::OpenModel => return self.open_model(),
            Action::OpenDashboard => return self.open_dashboard(),
            Action::InferPending => return self.start_job(false),
            Action::InferAll => self.jobs.confirm = Some(Confirmation::InferAll),
            Action::CancelJob => {
                let Some(j) = v.selected() else {
                    self.info("no job to cancel");
                    return Vec::new();
                };
                if j.state.finished() {
                    let what = format!("job {} already ended ({})", j.id, j.state.code());
                    self.info(what);
                    return Vec::new();
                }
                if j.cancel_requested {
                    let what = format!("job {} was asked to stop already", j.id);
                    self.info(what);
                    return Vec::new();
                }
                self.jobs.confirm = Some(Confirmation::Cancel {
                    id: j.id,
                    what: describe_job(j),
                });
            }
            _ => {}
        }
        Vec::new()
    }

    fn start_job(&mut self, all: bool) -> Vec<Request> {
        self.jobs.starting += 1;
        self.info(if all {
            "queuing an inference job over every image (KL and OP)…"
        } else {
            "queuing an inference job over the images without a prediction (KL and OP)…"
        });
        vec![Request::StartJob { all }]
    }

    /// What a key does while the confirmation is open.
    pub(crate) fn update_confirm(&mut self, action: Action) -> Vec<Request> {
        let Some(c) = self.jobs.confirm.clone() else {
            return Vec::new();
        };
        match Answer::of(&action) {
            Answer::Yes => {
                self.jobs.confirm = None;
                match c {
                    Confirmation::InferAll => self.start_job(true),
                    Confirmation::Cancel { id, .. } => {
                        self.info(format!(
                            "asking job {id} to stop; it stops after its current batch…"
                        ));
                        vec![Request::CancelJob { id }]
                    }
                    Confirmation::Quit { .. } => self.begin_quit(),
                    Confirmation::ActivateModel { task, new, .. } => {
                        self.info(format!("making {new} the active {} model…", task.code()));
                        vec![Request::ActivateModel { task, version: new }]
                    }
                }
            }
            Answer::No => {
                self.jobs.confirm = None;
                if matches!(c, Confirmation::Quit { .. }) {
                    self.info("not quitting; the job keeps running");
                }
                Vec::new()
            }
            Answer::Other if matches!(action, Action::Quit) => self.request_quit(),
            Answer::Other => Vec::new(),
        }
    }

    /// q or Ctrl-c: quits, unless jobs this app started still run: then asks first
    /// (a second Ctrl-c agrees), and once agreed, quits when they stopped (a third
    /// quits at once).
    pub(crate) fn request_quit(&mut self) -> Vec<Request> {
        if self.jobs.quitting.is_some() {
            self.quit = true;
            return Vec::new();
        }
        if self.jobs.own.is_empty() && self.jobs.starting == 0 {
            self.quit = true;
            return Vec::new();
        }
        if matches!(self.jobs.confirm, Some(Confirmation::Quit { .. })) {
            self.jobs.confirm = None;
            return self.begin_quit();
        }
        self.jobs.confirm = Some(Confirmation::Quit {
            jobs: self.jobs.own.iter().copied().collect(),
        });
        Vec::new()
    }

    fn begin_quit(&mut self) -> Vec<Request> {
        if self.jobs.own.is_empty() && self.jobs.starting == 0 {
            self.quit = true;
            return Vec::new();
        }
        self.jobs.quitting = Some(0);
        let ids: Vec<i64> = self.jobs.own.iter().copied().collect();
        let names = ids
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        self.info(format!(
            "cancelling job {names}; marrow quits once it stops (q quits at once)"
        ));
        ids.into_iter()
            .map(|id| Request::CancelJob { id })
            .collect()
    }

    fn quit_if_done(&mut self) {
        if self.jobs.quitting.is_some() && self.jobs.own.is_empty() && self.jobs.starting == 0 {
            self.quit = true;
        }
    }

    /// What a key does on the model screen.
    pub(crate) fn update_model(&mut self, action: Action) -> Vec<Request> {
        let Some(v) = self.jobs.model.as_mut() else {
            self.screen = Screen::Worklist;
            return Vec::new();
        };
        let (lines, fits) = v.lines.get();
        let max = lines.saturating_sub(fits);
        let page = fits.max(1) as isize;
        let delta: isize = match action {
            Action::Down => 1,
            Action::Up => -1,
            Action::PageDown | Action::HalfPageDown => page,
            Action::PageUp | Action::HalfPageUp => -page,
            Action::Top => isize::MIN / 2,
            Action::Bottom => isize::MAX / 2,
            Action::NextTask => {
                v.task = match v.task {
                    Task::Kl => Task::Op,
                    Task::Op => Task::Kl,
                };
                v.scroll = 0;
                return self.want_figures(false);
            }
            Action::CycleCohort => {
                v.cohort = match v.cohort {
                    Some(Phase::Prospective) => Some(Phase::Retrospective),
                    Some(Phase::Retrospective) => None,
                    None => Some(Phase::Prospective),
                };
                v.scroll = 0;
                return self.want_figures(false);
            }
            Action::OpenJobs => return self.open_jobs(),
            Action::OpenDashboard => return self.open_dashboard(),
            Action::Back => {
                self.screen = v.from;
                return Vec::new();
            }
            Action::ActivateModel => return self.ask_activate(),
            _ => 0,
        };
        v.scroll = v.scroll.saturating_add_signed(delta).min(max);
        Vec::new()
    }

    /// `a` on the model screen: asks to make the task's newest inactive version the
    /// active one, the figures of both side by side (activation is never a side
    /// effect of training).
    fn ask_activate(&mut self) -> Vec<Request> {
        if !self.may_run_jobs() {
            let e = DbError::NotAllowed {
                user: self.session.user.clone(),
                role: self.session.role.to_string(),
                what: "choose the active model (coordinators and admins)".into(),
            };
            self.error(e.to_string());
            return Vec::new();
        }
        let Some(v) = self.jobs.model.as_ref() else {
            return Vec::new();
        };
        let task = v.task;
        let (old, new) = match v.current() {
            Some(f) => (f.active.clone(), f.candidate.clone()),
            None => (None, None),
        };
        let Some(new) = new else {
            self.info(format!(
                "no inactive {} model version to activate (`marrow train --task {}` makes one)",
                task.code(),
                task.code()
            ));
            return Vec::new();
        };
        let (old, old_figures) = match old {
            Some(m) => (m.label(), m.validation_summary()),
            None => (
                "the shipped model (registered on first use)".into(),
                "—".into(),
            ),
        };
        self.jobs.confirm = Some(Confirmation::ActivateModel {
            task,
            old,
            old_figures,
            new: new.label(),
            new_figures: new.validation_summary(),
        });
        Vec::new()
    }

    /// The requests that reload the jobs or model screen on show (`r`).
    pub(crate) fn reload_jobs(&mut self) -> Vec<Request> {
        match self.screen {
            Screen::Jobs => {
                if let Some(v) = self.jobs.jobs.as_mut() {
                    // A reload is asked even if a refresh is on its way.
                    v.in_flight = false;
                }
                self.load_jobs()
            }
            Screen::Model => self.want_figures(true),
            _ => Vec::new(),
        }
    }

    /// About once a second: refreshes the jobs list while a job runs (every few
    /// seconds otherwise, to see jobs started elsewhere), and gives up waiting for
    /// cancelled jobs when quitting takes too long.
    pub fn tick(&mut self) -> Vec<Request> {
        if let Some(n) = self.jobs.quitting.as_mut() {
            *n += 1;
            if *n >= QUIT_WAIT_TICKS {
                tracing::warn!("tui: the cancelled jobs did not stop in time; quitting anyway");
                self.quit = true;
                return Vec::new();
            }
        }
        if self.screen != Screen::Jobs {
            return Vec::new();
        }
        let busy = !self.jobs.own.is_empty() || self.jobs.starting > 0;
        let Some(v) = self.jobs.jobs.as_mut() else {
            return Vec::new();
        };
        if v.in_flight {
            return Vec::new();
        }
        if busy || v.any_active() {
            return self.load_jobs();
        }
        v.idle_ticks += 1;
        if v.idle_ticks >= IDLE_REFRESH_TICKS {
            return self.load_jobs();
        }
        Vec::new()
    }

    /// Takes a response of the jobs and model screens.
    pub(crate) fn apply_jobs(&mut self, response: Response) -> Vec<Request> {
        match response {
            Response::Jobs(result) => {
                if let Some(v) = self.jobs.jobs.as_mut() {
                    v.in_flight = false;
                    match result {
                        Ok(rows) => v.set(rows),
                        Err(e) => {
                            v.state = LoadState::Failed(e.clone());
                            if self.screen == Screen::Jobs {
                                self.error(format!("the jobs did not load: {e}"));
                            }
                        }
                    }
                }
            }
            Response::JobQueued(result) => {
                self.jobs.starting = self.jobs.starting.saturating_sub(1);
                match result {
                    Ok(id) => {
                        self.jobs.last_queued = Some(id);
                        if !self.jobs.ended_early.remove(&id) {
                            self.jobs.own.insert(id);
                        }
                        if self.jobs.quitting.is_some() {
                            return vec![Request::CancelJob { id }];
                        }
                        self.success(format!(
                            "job {id} queued; it runs in the background (c cancels it)"
                        ));
                        if let Some(v) = self.jobs.jobs.as_mut() {
                            v.select = Some(id);
                            v.in_flight = false;
                        }
                        return self.load_jobs();
                    }
                    Err(e) => {
                        self.error(format!("the job was not started: {e}"));
                        self.quit_if_done();
                    }
                }
            }
            Response::JobCancel { id, result } => {
                if self.jobs.quitting.is_some() {
                    return Vec::new();
                }
                match result {
                    Ok(j) if j.state == JobState::Cancelled => {
                        self.success(format!("job {id} cancelled"));
                    }
                    Ok(_) => self.info(format!(
                        "job {id} asked to stop; it stops after its current batch"
                    )),
                    Err(e) => self.error(format!("job {id} was not cancelled: {e}")),
                }
                return self.load_jobs();
            }
            Response::JobEnded { id, result } => {
                if !self.jobs.own.remove(&id) && self.jobs.starting > 0 {
                    self.jobs.ended_early.insert(id);
                }
                if self.jobs.quitting.is_some() {
                    self.quit_if_done();
                    return Vec::new();
                }
                match result {
                    Ok(r) => {
                        let text = format!("job {id} {}: {}", r.state.code(), r.message);
                        match r.state {
                            JobState::Done => self.success(text),
                            JobState::Failed => self.error(text),
                            _ => self.info(text),
                        }
                    }
                    Err(e) => self.error(format!("job {id} failed: {e}")),
                }
                // New predictions: the figures computed so far are out of date.
                let mut out = Vec::new();
                if let Some(m) = self.jobs.model.as_mut() {
                    m.computed.clear();
                    if self.screen == Screen::Model {
                        out.extend(self.want_figures(false));
                    }
                }
                if let Some(v) = self.jobs.jobs.as_mut() {
                    v.in_flight = false;
                }
                out.extend(self.load_jobs());
                return out;
            }
            Response::ModelActivated { task, result } => {
                match result {
                    Ok((was, now)) if was.id == now.id => self.info(format!(
                        "{} is already the active {} model; nothing changed",
                        now.label(),
                        task.code()
                    )),
                    Ok((was, now)) => self.success(format!(
                        "{} is the active {} model now (was {}); audited",
                        now.label(),
                        task.code(),
                        was.label()
                    )),
                    Err(e) => self.error(format!("the active model stays: {e}")),
                }
                // Every figure of the task is of the model that was active.
                let mut out = Vec::new();
                if let Some(m) = self.jobs.model.as_mut() {
                    m.computed.retain(|(t, _), _| *t != task);
                    if self.screen == Screen::Model {
                        out.extend(self.want_figures(false));
                    }
                }
                return out;
            }
            Response::Evaluation {
                task,
                phase,
                active,
                candidate,
                result,
            } => {
                if let Some(v) = self.jobs.model.as_mut() {
                    let entry = v
                        .computed
                        .entry((task, phase))
                        .or_insert_with(ModelFigures::loading);
                    entry.state = LoadState::Loaded;
                    entry.active = active;
                    entry.candidate = candidate;
                    match result {
                        Ok(f) => {
                            entry.figures = Some(f);
                            entry.missing = None;
                        }
                        Err(e) => {
                            entry.figures = None;
                            entry.missing = Some(e);
                        }
                    }
                }
            }
            _ => {}
        }
        Vec::new()
    }

    /// After the worker stopped: nothing on these screens waits any longer.
    pub(crate) fn jobs_worker_stopped(&mut self) {
        if let Some(v) = self.jobs.jobs.as_mut() {
            v.in_flight = false;
            if v.state == LoadState::Loading {
                v.state = LoadState::Failed("database worker stopped".into());
            }
        }
        if let Some(m) = self.jobs.model.as_mut() {
            for f in m.computed.values_mut() {
                if f.state == LoadState::Loading {
                    f.state = LoadState::Failed("database worker stopped".into());
                }
            }
        }
        self.jobs.starting = 0;
        if self.jobs.quitting.is_some() {
            self.quit = true;
        }
    }
}
