//! The dashboard: enrollment against target per cohort, the CONSORT flow with its
//! counts, missing DXA, reads and adjudications outstanding, follow-up compliance and
//! enrollment by month, loaded on the database worker. A CONSORT box opens the list of
//! the patients behind it (`Study::consort_patients`), whose length is the box's
//! count; a patient there opens the patient screen. Readers are blinded to it.

use super::app::{App, LoadState, Screen};
use super::keymap::Action;
use super::worker::{Request, Response};
use crate::db::study::PatientSummary;
use crate::domain::consort::{BoxKey, Consort, Step};
use crate::domain::status::StatusReport;
use crate::domain::user::Role;

/// What the dashboard shows, as the worker loaded it.
#[derive(Debug, Clone, PartialEq)]
pub struct DashboardFigures {
    /// Cohorts against targets, missing DXA, reading and follow-up counts.
    pub status: StatusReport,
    pub consort: Consort,
    /// Eligible patients per month of their index date (YYYY-MM), both sites.
    pub by_month: Vec<(String, u64)>,
    /// The secondary outcomes of the prospective cohort (`Study::outcomes_report`),
    /// or why they could not be computed.
    pub outcomes: Result<crate::domain::outcomes::OutcomesReport, String>,
}

/// One line of the CONSORT list: the box, its count and how deep it is indented.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowLine {
    pub key: BoxKey,
    pub label: String,
    pub count: u64,
    pub depth: usize,
}

impl DashboardFigures {
    /// The CONSORT boxes in reading order, the exclusions per criterion under
    /// "excluded".
    pub fn flow(&self) -> Vec<FlowLine> {
        let mut out = Vec::new();
        for b in &self.consort.boxes {
            let depth = match b.key {
                BoxKey::Step(Step::Excluded | Step::Pending) => 1,
                _ => 0,
            };
            out.push(FlowLine {
                key: b.key,
                label: b.label.clone(),
                count: b.count,
                depth,
            });
            if b.key == BoxKey::Step(Step::Excluded) {
                out.extend(self.consort.excluded_by.iter().map(|e| FlowLine {
                    key: e.key,
                    label: e.label.clone(),
                    count: e.count,
                    depth: 2,
                }));
            }
        }
        out
    }
}

/// The dashboard screen.
#[derive(Debug, Clone, PartialEq)]
pub struct DashboardView {
    pub(crate) state: LoadState,
    pub(crate) figures: Option<Box<DashboardFigures>>,
    /// The selected line of the CONSORT list.
    pub(crate) selected: usize,
    /// The screen `D` was pressed on (Esc goes back there).
    pub(crate) from: Screen,
    /// `o`: the secondary outcomes are shown instead of the flow.
    pub(crate) outcomes: bool,
}

impl DashboardView {
    pub fn state(&self) -> &LoadState {
        &self.state
    }

    /// Whether the secondary outcomes are shown instead of the flow.
    pub fn showing_outcomes(&self) -> bool {
        self.outcomes
    }

    pub fn figures(&self) -> Option<&DashboardFigures> {
        self.figures.as_deref()
    }

    pub fn selected(&self) -> usize {
        self.selected
    }

    fn flow_len(&self) -> usize {
        self.figures.as_ref().map_or(0, |f| f.flow().len())
    }
}

/// The patients behind one CONSORT box.
#[derive(Debug, Clone, PartialEq)]
pub struct BoxPatients {
    pub(crate) key: BoxKey,
    pub(crate) label: String,
    /// The count the dashboard showed for the box.
    pub(crate) count: u64,
    pub(crate) state: LoadState,
    pub(crate) patients: Vec<PatientSummary>,
    pub(crate) selected: usize,
}

impl BoxPatients {
    pub fn key(&self) -> BoxKey {
        self.key
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn state(&self) -> &LoadState {
        &self.state
    }

    pub fn patients(&self) -> &[PatientSummary] {
        &self.patients
    }

    pub fn selected(&self) -> usize {
        self.selected
    }
}

/// The dashboard's part of the app.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DashboardState {
    pub(crate) view: Option<DashboardView>,
    pub(crate) drill: Option<BoxPatients>,
    /// Set when a patient was opened from a box's list (Esc goes back to it).
    pub(crate) patient_from_box: bool,
}

pub(crate) fn is_dashboard_response(r: &Response) -> bool {
    matches!(r, Response::Dashboard(_) | Response::BoxPatients { .. })
}

fn step(selected: usize, action: Action, len: usize) -> usize {
    let last = len.saturating_sub(1);
    match action {
        Action::Down => (selected + 1).min(last),
        Action::Up => selected.saturating_sub(1),
        Action::Top => 0,
        Action::Bottom => last,
        Action::PageDown => (selected + 10).min(last),
        Action::PageUp => selected.saturating_sub(10),
        _ => selected,
    }
}

impl App {
    pub fn dashboard_view(&self) -> Option<&DashboardView> {
        self.dashboard.view.as_ref()
    }

    pub fn box_patients(&self) -> Option<&BoxPatients> {
        self.dashboard.drill.as_ref()
    }

    /// Whether the user is blinded to the dashboard (readers: it counts reads and
    /// final grades).
    pub fn dashboard_blinded(&self) -> bool {
        self.session.role == Role::Reader
    }

    /// Opens the dashboard (loading it the first time); readers see why they may not.
    pub(crate) fn open_dashboard(&mut self) -> Vec<Request> {
        let from = match self.screen {
            Screen::Dashboard | Screen::BoxPatients => self
                .dashboard
                .view
                .as_ref()
                .map_or(Screen::Worklist, |v| v.from),
            s => s,
        };
        self.screen = Screen::Dashboard;
        let blinded = self.dashboard_blinded();
        let v = self.dashboard.view.get_or_insert(DashboardView {
            state: LoadState::Loading,
            figures: None,
            selected: 0,
            from,
            outcomes: false,
        });
        v.from = from;
        if blinded || v.figures.is_some() {
            return Vec::new();
        }
        v.state = LoadState::Loading;
        vec![Request::LoadDashboard]
    }

    /// `r` on the dashboard or a box's list: load again.
    pub(crate) fn reload_dashboard(&mut self) -> Vec<Request> {
        if self.dashboard_blinded() {
            return Vec::new();
        }
        let mut out = Vec::new();
        if let Some(v) = self.dashboard.view.as_mut()
            && matches!(self.screen, Screen::Dashboard | Screen::BoxPatients)
        {
            v.state = LoadState::Loading;
            out.push(Request::LoadDashboard);
        }
        if self.screen == Screen::BoxPatients
            && let Some(d) = self.dashboard.drill.as_mut()
        {
            d.state = LoadState::Loading;
            out.push(Request::LoadBoxPatients { key: d.key });
        }
        out
    }

    pub(crate) fn update_dashboard(&mut self, action: Action) -> Vec<Request> {
        let Some(v) = self.dashboard.view.as_mut() else {
            self.screen = Screen::Worklist;
            return Vec::new();
        };
        match action {
            Action::Back => {
                self.screen = v.from;
                Vec::new()
            }
            Action::Open => {
                let Some(line) = v
                    .figures
                    .as_ref()
                    .and_then(|f| f.flow().into_iter().nth(v.selected))
                else {
                    return Vec::new();
                };
                self.screen = Screen::BoxPatients;
                self.dashboard.drill = Some(BoxPatients {
                    key: line.key,
                    label: line.label,
                    count: line.count,
                    state: LoadState::Loading,
                    patients: Vec::new(),
                    selected: 0,
                });
                vec![Request::LoadBoxPatients { key: line.key }]
            }
            // The follow-up numbers' drill-down: the visits due and overdue.
            Action::OpenFollowup => self.open_followup(),
            Action::ToggleOutcomes => {
                v.outcomes = !v.outcomes;
                Vec::new()
            }
            a => {
                let len = v.flow_len();
                v.selected = step(v.selected, a, len);
                Vec::new()
            }
        }
    }

    pub(crate) fn update_box_patients(&mut self, action: Action) -> Vec<Request> {
        let Some(d) = self.dashboard.drill.as_mut() else {
            self.screen = Screen::Dashboard;
            return Vec::new();
        };
        match action {
            Action::Back => {
                self.screen = Screen::Dashboard;
                Vec::new()
            }
            Action::Open => {
                let Some(p) = d.patients.get(d.selected) else {
                    return Vec::new();
                };
                let study_id = p.study_id.clone();
                self.dashboard.patient_from_box = true;
                self.open_patient(study_id)
            }
            a => {
                d.selected = step(d.selected, a, d.patients.len());
                Vec::new()
            }
        }
    }

    pub(crate) fn apply_dashboard(&mut self, response: Response) -> Vec<Request> {
        match response {
            Response::Dashboard(result) => {
                if let Some(v) = self.dashboard.view.as_mut() {
                    match result {
                        Ok(f) => {
                            // The header's counts come from the same report.
                            self.status = Some(f.status.clone());
                            v.figures = Some(f);
                            v.state = LoadState::Loaded;
                            v.selected = v.selected.min(v.flow_len().saturating_sub(1));
                        }
                        Err(e) => v.state = LoadState::Failed(e),
                    }
                }
            }
            Response::BoxPatients { key, result } => {
                if let Some(d) = self.dashboard.drill.as_mut().filter(|d| d.key == key) {
                    match result {
                        Ok(rows) => {
                            d.selected = d.selected.min(rows.len().saturating_sub(1));
                            d.patients = rows;
                            d.state = LoadState::Loaded;
                        }
                        Err(e) => d.state = LoadState::Failed(e),
                    }
                }
            }
            _ => {}
        }
        Vec::new()
    }

    pub(crate) fn dashboard_worker_stopped(&mut self) {
        let stopped = || LoadState::Failed("the database worker stopped".into());
        if let Some(v) = self
            .dashboard
            .view
            .as_mut()
            .filter(|v| v.state == LoadState::Loading)
        {
            v.state = stopped();
        }
        if let Some(d) = self
            .dashboard
            .drill
            .as_mut()
            .filter(|d| d.state == LoadState::Loading)
        {
            d.state = stopped();
        }
    }
}
