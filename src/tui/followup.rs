//! The follow-up screen: the coordinator's list of the visits due in the next 30 days
//! and the overdue ones (`Study::visits_due`, the list of `marrow followup --overdue`),
//! one patient's planned visits (`Study::patient_visits`), and the form that enters or
//! corrects a visit. The form checks what was typed with the follow-up import's own
//! row check (`parse_visit_row`: a VAS of 11 or a visit without any outcome is
//! refused here as in a CSV; a date in the future as `record_visit` refuses it), and saves
//! through `Study::record_visit` on the worker with the version the screen showed, so
//! a visit someone else saved meanwhile is reported, never overwritten. Coordinators
//! and admins write; PIs and adjudicators look; readers are blinded (VAS, OKS and
//! fractures are clinical findings a blinded reader must not see).

use super::app::{App, LoadState, Screen};
use super::keymap::Action;
use super::worker::{FollowupScope, RecordVisit, Request, Response, SaveFailure};
use crate::db::DbError;
use crate::db::followup::{PlannedVisit, VisitRow};
use crate::domain::followup::{VisitInput, VisitWindow, parse_visit_row};
use crate::domain::records::RowFields;
use crate::domain::user::{Permission, Role};
use chrono::NaiveDate;

/// The coordinator's list: visits whose window opens within this many days (as
/// `marrow followup`'s default `--due-days`), and the overdue ones.
pub const DUE_DAYS: i64 = 30;

/// A field of the visit form, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VisitField {
    Date,
    Vas,
    Oks,
    Fracture,
    Reason,
}

impl VisitField {
    pub const ALL: [VisitField; 5] = [
        VisitField::Date,
        VisitField::Vas,
        VisitField::Oks,
        VisitField::Fracture,
        VisitField::Reason,
    ];

    pub fn label(self) -> &'static str {
        match self {
            VisitField::Date => "Visit date",
            VisitField::Vas => "VAS pain (0-10)",
            VisitField::Oks => "Oxford Knee Score (0-48)",
            VisitField::Fracture => "New fragility fracture",
            VisitField::Reason => "Reason",
        }
    }

    /// The field a row-check message is about (the messages start with the column).
    fn of_error(e: &str) -> Option<VisitField> {
        [
            ("visit_date", VisitField::Date),
            ("vas", VisitField::Vas),
            ("oks", VisitField::Oks),
            ("new_fragility_fracture", VisitField::Fracture),
            ("a correction needs a reason", VisitField::Reason),
        ]
        .into_iter()
        .find(|(p, _)| e.starts_with(p))
        .map(|(_, f)| f)
    }

    fn step(self, delta: isize) -> VisitField {
        let n = VisitField::ALL.len() as isize;
        let i = VisitField::ALL.iter().position(|f| *f == self).unwrap_or(0) as isize;
        VisitField::ALL[(i + delta).rem_euclid(n) as usize]
    }
}

/// "yes", "no" or "" (not asked).
pub fn fracture_word(f: Option<bool>) -> &'static str {
    match f {
        Some(true) => "yes",
        Some(false) => "no",
        None => "",
    }
}

/// A VAS as typed back into the form: "3", "2.5".
fn vas_text(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        v.to_string()
    }
}

/// A recorded visit on one line: "2026-06-01 · VAS 3 · OKS 30 · fracture no".
pub fn visit_text(v: &VisitInput) -> String {
    let or_dash = |s: Option<String>| s.unwrap_or_else(|| "–".into());
    format!(
        "{} · VAS {} · OKS {} · fracture {}",
        v.visit_date,
        or_dash(v.vas.map(vas_text)),
        or_dash(v.oks.map(|o| o.to_string())),
        match v.new_fragility_fracture {
            None => "–",
            Some(f) => fracture_word(Some(f)),
        }
    )
}

/// The form that enters a visit, or corrects the recorded one.
#[derive(Debug, Clone, PartialEq)]
pub struct VisitForm {
    pub(crate) study_id: String,
    pub(crate) month: u32,
    pub(crate) window: VisitWindow,
    /// The visit as recorded when the form opened (or as reloaded after a conflict):
    /// its version is the one the save expects; `None`: a new visit.
    pub(crate) recorded: Option<VisitRow>,
    pub(crate) field: VisitField,
    pub(crate) date: String,
    pub(crate) vas: String,
    pub(crate) oks: String,
    pub(crate) fracture: Option<bool>,
    pub(crate) reason: String,
    pub(crate) saving: bool,
    pub(crate) error: Option<String>,
    /// After a conflict: the visit as someone else saved it.
    pub(crate) theirs: Option<VisitRow>,
}

impl VisitForm {
    pub fn study_id(&self) -> &str {
        &self.study_id
    }
    pub fn month(&self) -> u32 {
        self.month
    }
    pub fn window(&self) -> &VisitWindow {
        &self.window
    }
    pub fn recorded(&self) -> Option<&VisitRow> {
        self.recorded.as_ref()
    }
    pub fn field(&self) -> VisitField {
        self.field
    }
    pub fn is_saving(&self) -> bool {
        self.saving
    }
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }
    pub fn theirs(&self) -> Option<&VisitRow> {
        self.theirs.as_ref()
    }
    pub fn fracture(&self) -> Option<bool> {
        self.fracture
    }

    /// What a field holds, as typed.
    pub fn text(&self, f: VisitField) -> &str {
        match f {
            VisitField::Date => &self.date,
            VisitField::Vas => &self.vas,
            VisitField::Oks => &self.oks,
            VisitField::Fracture => fracture_word(self.fracture),
            VisitField::Reason => &self.reason,
        }
    }

    fn text_mut(&mut self) -> Option<&mut String> {
        match self.field {
            VisitField::Date => Some(&mut self.date),
            VisitField::Vas => Some(&mut self.vas),
            VisitField::Oks => Some(&mut self.oks),
            VisitField::Reason => Some(&mut self.reason),
            VisitField::Fracture => None,
        }
    }

    /// The visit typed, checked as a followup.csv row is, and (with the day the screen
    /// was drawn for) refused when dated in the future, as `record_visit` refuses it.
    pub fn checked(&self, today: Option<NaiveDate>) -> Result<VisitInput, String> {
        let month = self.month.to_string();
        let (_, _, v) = parse_visit_row(&FormRow {
            form: self,
            month: &month,
        })?;
        if let Some(today) = today {
            v.check(None, today)?;
        }
        Ok(v)
    }
}

/// The form as a followup.csv row, for the import's row check.
struct FormRow<'a> {
    form: &'a VisitForm,
    month: &'a str,
}

impl RowFields for FormRow<'_> {
    fn field(&self, name: &str) -> Option<&str> {
        match name {
            // The row check wants the MRN of a CSV row; the form's patient is known by
            // study ID, so a placeholder stands in (it is dropped, never stored).
            "mrn" => Some("-"),
            "visit_month" => Some(self.month),
            "visit_date" => Some(&self.form.date),
            "vas" => Some(&self.form.vas),
            "oks" => Some(&self.form.oks),
            "new_fragility_fracture" => Some(fracture_word(self.form.fracture)),
            _ => None,
        }
    }
}

/// The follow-up screen.
#[derive(Debug, Clone, PartialEq)]
pub struct FollowupView {
    pub(crate) scope: FollowupScope,
    pub(crate) state: LoadState,
    pub(crate) rows: Vec<PlannedVisit>,
    /// The day the rows were computed for (the worker's today).
    pub(crate) today: Option<NaiveDate>,
    pub(crate) selected: usize,
    /// The due list's selection, kept while one patient's visits are shown.
    pub(crate) due_selected: usize,
    /// The screen `F` was pressed on (Esc goes back there).
    pub(crate) from: Screen,
    pub(crate) form: Option<VisitForm>,
}

impl FollowupView {
    pub fn scope(&self) -> &FollowupScope {
        &self.scope
    }
    pub fn state(&self) -> &LoadState {
        &self.state
    }
    pub fn rows(&self) -> &[PlannedVisit] {
        &self.rows
    }
    pub fn today(&self) -> Option<NaiveDate> {
        self.today
    }
    pub fn selected(&self) -> usize {
        self.selected
    }
    pub fn selected_row(&self) -> Option<&PlannedVisit> {
        self.rows.get(self.selected)
    }
    pub fn form(&self) -> Option<&VisitForm> {
        self.form.as_ref()
    }
}

pub(crate) fn is_followup_response(r: &Response) -> bool {
    matches!(
        r,
        Response::Followup { .. } | Response::VisitRecorded { .. }
    )
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
    pub fn followup_view(&self) -> Option<&FollowupView> {
        self.followup.as_ref()
    }

    pub fn visit_form(&self) -> Option<&VisitForm> {
        self.followup.as_ref().and_then(|v| v.form.as_ref())
    }

    /// Readers are blinded to follow-up (pain scores and fractures are clinical findings).
    pub fn followup_blinded(&self) -> bool {
        self.session.role == Role::Reader
    }

    /// Whether the user may enter or correct visits (the permission `record_visit` checks).
    pub fn may_record_visits(&self) -> bool {
        self.session.role.allows(Permission::Screen)
    }

    fn load_followup(&mut self) -> Vec<Request> {
        if self.followup_blinded() {
            return Vec::new();
        }
        let Some(v) = self.followup.as_mut() else {
            return Vec::new();
        };
        v.state = LoadState::Loading;
        vec![Request::LoadFollowup {
            scope: v.scope.clone(),
        }]
    }

    /// Opens the follow-up screen on the due list (loaded afresh each time).
    pub(crate) fn open_followup(&mut self) -> Vec<Request> {
        let from = match self.screen {
            Screen::Followup => self.followup.as_ref().map_or(Screen::Worklist, |v| v.from),
            s => s,
        };
        self.screen = Screen::Followup;
        let v = self.followup.get_or_insert(FollowupView {
            scope: FollowupScope::Due { days: DUE_DAYS },
            state: LoadState::Loading,
            rows: Vec::new(),
            today: None,
            selected: 0,
            due_selected: 0,
            from,
            form: None,
        });
        v.from = from;
        self.load_followup()
    }

    /// `r` on the follow-up screen: load the list again.
    pub(crate) fn reload_followup(&mut self) -> Vec<Request> {
        if self.screen != Screen::Followup {
            return Vec::new();
        }
        self.load_followup()
    }

    pub(crate) fn update_followup(&mut self, action: Action) -> Vec<Request> {
        let Some(v) = self.followup.as_mut() else {
            self.screen = Screen::Worklist;
            return Vec::new();
        };
        if v.form.is_some() {
            return self.update_visit_form(action);
        }
        match action {
            Action::Back => {
                if matches!(v.scope, FollowupScope::Patient(_)) {
                    return self.show_due_list();
                }
                self.screen = v.from;
                Vec::new()
            }
            Action::NextPane => {
                if matches!(v.scope, FollowupScope::Patient(_)) {
                    return self.show_due_list();
                }
                let Some(id) = v.rows.get(v.selected).map(|r| r.study_id.clone()) else {
                    return Vec::new();
                };
                v.scope = FollowupScope::Patient(id);
                v.due_selected = v.selected;
                v.selected = 0;
                v.rows.clear();
                self.load_followup()
            }
            Action::Open => self.open_visit_form(),
            Action::OpenDashboard => self.open_dashboard(),
            a => {
                v.selected = step(v.selected, a, v.rows.len());
                Vec::new()
            }
        }
    }

    fn show_due_list(&mut self) -> Vec<Request> {
        let Some(v) = self.followup.as_mut() else {
            return Vec::new();
        };
        v.scope = FollowupScope::Due { days: DUE_DAYS };
        v.selected = v.due_selected;
        v.rows.clear();
        self.load_followup()
    }

    fn open_visit_form(&mut self) -> Vec<Request> {
        if self.followup_blinded() {
            return Vec::new();
        }
        if !self.may_record_visits() {
            let e = DbError::NotAllowed {
                user: self.session.user.clone(),
                role: self.session.role.to_string(),
                what: "enter follow-up visits (coordinators and admins do)".into(),
            };
            self.error(e.to_string());
            return Vec::new();
        }
        let Some(v) = self.followup.as_mut() else {
            return Vec::new();
        };
        let Some(row) = v.rows.get(v.selected) else {
            return Vec::new();
        };
        let recorded = row.recorded.clone();
        let (date, vas, oks, fracture) = match &recorded {
            Some(r) => (
                r.visit.visit_date.to_string(),
                r.visit.vas.map(vas_text).unwrap_or_default(),
                r.visit.oks.map(|o| o.to_string()).unwrap_or_default(),
                r.visit.new_fragility_fracture,
            ),
            None => (
                v.today.map(|d| d.to_string()).unwrap_or_default(),
                String::new(),
                String::new(),
                None,
            ),
        };
        v.form = Some(VisitForm {
            study_id: row.study_id.clone(),
            month: row.window.month,
            window: row.window,
            recorded,
            field: VisitField::Date,
            date,
            vas,
            oks,
            fracture,
            reason: String::new(),
            saving: false,
            error: None,
            theirs: None,
        });
        Vec::new()
    }

    fn update_visit_form(&mut self, action: Action) -> Vec<Request> {
        let Some(v) = self.followup.as_mut() else {
            return Vec::new();
        };
        let today = v.today;
        let Some(f) = v.form.as_mut() else {
            return Vec::new();
        };
        if action == Action::Back {
            v.form = None;
            return Vec::new();
        }
        if f.saving {
            return Vec::new();
        }
        match action {
            Action::NextField | Action::Down => f.field = f.field.step(1),
            Action::PrevField | Action::Up => f.field = f.field.step(-1),
            Action::Input(c) if f.field == VisitField::Fracture => match c {
                'y' | 'Y' => f.fracture = Some(true),
                'n' | 'N' => f.fracture = Some(false),
                '-' | ' ' => f.fracture = None,
                _ => {}
            },
            Action::Input(c) => {
                if let Some(t) = f.text_mut() {
                    t.push(c);
                }
            }
            Action::Backspace => match f.text_mut() {
                Some(t) => {
                    t.pop();
                }
                None => f.fracture = None,
            },
            Action::ClearInput => match f.text_mut() {
                Some(t) => t.clear(),
                None => f.fracture = None,
            },
            Action::StepValue(_) if f.field == VisitField::Fracture => {
                f.fracture = match f.fracture {
                    None => Some(true),
                    Some(true) => Some(false),
                    Some(false) => None,
                }
            }
            Action::Save => {
                let visit = match f.checked(today) {
                    Ok(visit) => visit,
                    Err(e) => {
                        f.field = VisitField::of_error(&e).unwrap_or(f.field);
                        f.error = Some(format!("not saved: {e}"));
                        return Vec::new();
                    }
                };
                f.saving = true;
                f.error = None;
                return vec![Request::RecordVisit(RecordVisit {
                    study_id: f.study_id.clone(),
                    month: f.month,
                    visit,
                    reason: f.reason.trim().to_string(),
                    expected_version: f.recorded.as_ref().map(|r| r.version),
                })];
            }
            _ => {}
        }
        Vec::new()
    }

    pub(crate) fn apply_followup(&mut self, response: Response) -> Vec<Request> {
        match response {
            Response::Followup {
                scope,
                today,
                result,
            } => {
                if let Some(v) = self.followup.as_mut().filter(|v| v.scope == scope) {
                    v.today = Some(today);
                    match result {
                        Ok(rows) => {
                            v.selected = v.selected.min(rows.len().saturating_sub(1));
                            v.rows = rows;
                            v.state = LoadState::Loaded;
                        }
                        Err(e) => v.state = LoadState::Failed(e),
                    }
                }
                Vec::new()
            }
            Response::VisitRecorded {
                study_id,
                month,
                result,
                fresh,
            } => {
                let Some(v) = self.followup.as_mut() else {
                    return Vec::new();
                };
                let ours = v
                    .form
                    .as_ref()
                    .is_some_and(|f| f.study_id == study_id && f.month == month);
                match result {
                    Ok(row) => {
                        if ours {
                            v.form = None;
                        }
                        self.success(format!(
                            "saved: the {}-month visit of {} ({}), version {}",
                            row.visit_month,
                            row.study_id,
                            visit_text(&row.visit),
                            row.version
                        ));
                    }
                    Err((kind, e)) => {
                        if ours && kind == SaveFailure::NotAllowed {
                            v.form = None;
                        } else if let Some(f) = v.form.as_mut().filter(|_| ours) {
                            f.saving = false;
                            if kind == SaveFailure::Conflict {
                                // The typed values stay; the form now expects the
                                // version just read, so Enter saves over it knowingly.
                                f.theirs = fresh.as_ref().and_then(|p| p.recorded.clone());
                                f.recorded = f.theirs.clone();
                                f.error = Some(format!(
                                    "{e}. Your values are kept: compare them with the saved \
                                     visit below; Enter saves yours over it (give a reason), \
                                     Esc keeps theirs"
                                ));
                            } else {
                                f.field = VisitField::of_error(&e).unwrap_or(f.field);
                                f.error = Some(format!("not saved: {e}"));
                            }
                        }
                        self.error(format!("not saved: {e}"));
                    }
                }
                if self.screen == Screen::Followup {
                    self.load_followup()
                } else {
                    Vec::new()
                }
            }
            _ => Vec::new(),
        }
    }

    pub(crate) fn followup_worker_stopped(&mut self) {
        if let Some(v) = self.followup.as_mut() {
            if v.state == LoadState::Loading {
                v.state = LoadState::Failed("the database worker stopped".into());
            }
            if let Some(f) = v.form.as_mut() {
                f.saving = false;
            }
        }
    }
}
