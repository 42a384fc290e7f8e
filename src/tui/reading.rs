//! Blinded reading and adjudication in the TUI (issue 4): the reader's worklist, the
//! read screen (image, KL reference card, the read form; locked once submitted), the
//! adjudication queue and screen, and the agreement figures.
//!
//! Blinding is the data layer's: these screens show what `Study::case_view` gives
//! (a `Blinded::Hidden` value shows its reason) and never ask for anything else.
//! Every database call goes through the worker, like the other screens'.

use super::app::{App, ImagesView, LoadState, Screen};
use super::jobs::Answer;
use super::keymap::Action;
use super::worker::{
    AgreementFigures, ExplanationFigures, LoadedCase, Preview, Request, Response, SaveFailure,
};
use crate::db::DbError;
use crate::db::reading::{Blinded, CaseState, CaseSummary, QueueItem, ReadRecord, describe_grade};
use crate::domain::reading::{
    FinalGrade, Grade, Oarsi, OpImpression, ReadInput, Side, read_words, validate_final,
};
use crate::domain::user::Permission;
use std::cell::Cell;
use std::sync::Arc;

/// Bootstrap resamples of the agreement screen's confidence intervals.
pub const AGREEMENT_RESAMPLES: usize = 2000;

/// A list of cases (the reader's worklist or the adjudication queue).
#[derive(Debug)]
pub struct CaseList<T> {
    pub(crate) rows: Vec<T>,
    pub(crate) selected: usize,
    pub(crate) offset: Cell<usize>,
    pub(crate) state: LoadState,
}

impl<T> CaseList<T> {
    fn loading() -> CaseList<T> {
        CaseList {
            rows: Vec::new(),
            selected: 0,
            offset: Cell::new(0),
            state: LoadState::Loading,
        }
    }

    fn set(&mut self, rows: Vec<T>) {
        self.rows = rows;
        self.selected = self.selected.min(self.rows.len().saturating_sub(1));
        self.state = LoadState::Loaded;
    }

    fn move_by(&mut self, delta: isize) {
        let last = self.rows.len().saturating_sub(1);
        self.selected = self.selected.saturating_add_signed(delta).min(last);
    }

    fn navigate(&mut self, action: Action) -> bool {
        match action {
            Action::Down => self.move_by(1),
            Action::Up => self.move_by(-1),
            Action::Top => self.selected = 0,
            Action::Bottom => self.selected = self.rows.len().saturating_sub(1),
            _ => return false,
        }
        true
    }

    pub fn rows(&self) -> &[T] {
        &self.rows
    }

    pub fn selected(&self) -> usize {
        self.selected
    }

    pub fn state(&self) -> &LoadState {
        &self.state
    }
}

/// What a form records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormMode {
    /// The reader's first read of the case.
    Read,
    /// A correction of the reader's submitted read: a new version with a reason.
    Correct,
    /// The adjudicator's final grade, with a rationale.
    Adjudicate,
}

/// The grade of a read or final: KL (knee), OP (patient case), or not assessable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GradeChoice {
    Kl(u8),
    Op(OpImpression),
    NotAssessable,
}

/// A line of the form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormField {
    /// KL 0-4 (knee) or OP impression (patient case), or not assessable.
    Grade,
    /// Why the image is not assessable.
    NotAssessableReason,
    JsnMedial,
    JsnLateral,
    OsteophyteMedial,
    OsteophyteLateral,
    /// The OP impression (or OP stage) of a knee case, optional.
    OpImpression,
    Confidence,
    /// The correction's reason, or the adjudication's rationale.
    Reason,
}

impl FormField {
    /// Whether the field takes typed text.
    pub fn is_text(self) -> bool {
        matches!(self, FormField::NotAssessableReason | FormField::Reason)
    }

    fn oarsi_index(self) -> Option<usize> {
        match self {
            FormField::JsnMedial => Some(0),
            FormField::JsnLateral => Some(1),
            FormField::OsteophyteMedial => Some(2),
            FormField::OsteophyteLateral => Some(3),
            _ => None,
        }
    }
}

/// The read or adjudication form: one field at a time has the keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GradeForm {
    pub(crate) side: Side,
    pub(crate) mode: FormMode,
    pub(crate) grade: Option<GradeChoice>,
    pub(crate) not_assessable: String,
    /// JSN medial, JSN lateral, osteophyte medial, osteophyte lateral.
    pub(crate) oarsi: [Option<u8>; 4],
    /// A knee case's OP impression (or the final OP stage), optional.
    pub(crate) op: Option<OpImpression>,
    pub(crate) confidence: Option<u8>,
    /// The correction's reason or the adjudication's rationale.
    pub(crate) reason: String,
    /// Index into `fields()`.
    pub(crate) field: usize,
    /// The confirmation is open.
    pub(crate) confirming: bool,
    pub(crate) saving: bool,
    pub(crate) error: Option<String>,
}

impl GradeForm {
    pub fn new(side: Side, mode: FormMode) -> GradeForm {
        GradeForm {
            side,
            mode,
            grade: None,
            not_assessable: String::new(),
            oarsi: [None; 4],
            op: None,
            confidence: None,
            reason: String::new(),
            field: 0,
            confirming: false,
            saving: false,
            error: None,
        }
    }

    /// A correction starts from the read it corrects.
    pub fn correcting(side: Side, r: &ReadInput) -> GradeForm {
        let mut f = GradeForm::new(side, FormMode::Correct);
        match (&r.kl, side.is_knee()) {
            (Some(Grade::Value(k)), _) => f.grade = Some(GradeChoice::Kl(*k)),
            (Some(Grade::NotAssessable(why)), _) => {
                f.grade = Some(GradeChoice::NotAssessable);
                f.not_assessable = why.clone();
            }
            (None, false) => f.grade = r.op_impression.map(GradeChoice::Op),
            (None, true) => {}
        }
        if side.is_knee() {
            f.op = r.op_impression;
        }
        let o = &r.oarsi;
        f.oarsi = [
            o.jsn_medial,
            o.jsn_lateral,
            o.osteophyte_medial,
            o.osteophyte_lateral,
        ];
        f.confidence = r.confidence;
        f
    }

    pub fn mode(&self) -> FormMode {
        self.mode
    }

    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    pub fn reason(&self) -> &str {
        &self.reason
    }

    pub fn is_confirming(&self) -> bool {
        self.confirming
    }

    pub fn is_saving(&self) -> bool {
        self.saving
    }

    /// The fields the form has now, in order.
    pub fn fields(&self) -> Vec<FormField> {
        let mut out = vec![FormField::Grade];
        let na = self.grade == Some(GradeChoice::NotAssessable);
        if na {
            out.push(FormField::NotAssessableReason);
        }
        if self.side.is_knee() {
            if self.mode != FormMode::Adjudicate && !na {
                out.extend([
                    FormField::JsnMedial,
                    FormField::JsnLateral,
                    FormField::OsteophyteMedial,
                    FormField::OsteophyteLateral,
                ]);
            }
            out.push(FormField::OpImpression);
        }
        if self.mode != FormMode::Adjudicate {
            out.push(FormField::Confidence);
        }
        if self.mode != FormMode::Read {
            out.push(FormField::Reason);
        }
        out
    }

    /// The field that has the keys.
    pub fn current(&self) -> FormField {
        let fields = self.fields();
        fields[self.field.min(fields.len() - 1)]
    }

    fn focus(&mut self, f: FormField) {
        if let Some(i) = self.fields().iter().position(|x| *x == f) {
            self.field = i;
        }
    }

    /// j/k: the next or previous field, stopping at the first and the last (no
    /// wrap: a `j` too many must not land on the KL grade).
    fn move_field(&mut self, delta: isize) {
        let last = self.fields().len() - 1;
        self.field = self.field.min(last).saturating_add_signed(delta).min(last);
    }

    /// The values the grade steps through.
    fn grade_choices(&self) -> Vec<GradeChoice> {
        let mut v: Vec<GradeChoice> = if self.side.is_knee() {
            (0..=4).map(GradeChoice::Kl).collect()
        } else {
            OpImpression::ALL.into_iter().map(GradeChoice::Op).collect()
        };
        v.push(GradeChoice::NotAssessable);
        v
    }

    /// h/l: the previous or next value of the field (optional fields pass "none").
    fn step(&mut self, delta: i8) {
        fn next<T: Copy + PartialEq>(
            all: &[T],
            cur: Option<T>,
            delta: i8,
            optional: bool,
        ) -> Option<T> {
            let mut slots: Vec<Option<T>> = Vec::with_capacity(all.len() + 1);
            if optional {
                slots.push(None);
            }
            slots.extend(all.iter().copied().map(Some));
            let n = slots.len() as isize;
            let at = slots.iter().position(|s| *s == cur);
            let i = match at {
                Some(i) => (i as isize + isize::from(delta)).rem_euclid(n),
                None if delta > 0 => 0,
                None => n - 1,
            };
            slots[i as usize]
        }
        let field = self.current();
        match field {
            FormField::Grade => {
                let choices = self.grade_choices();
                self.grade = next(&choices, self.grade, delta, false);
            }
            FormField::OpImpression => {
                self.op = next(&OpImpression::ALL, self.op, delta, true);
            }
            FormField::Confidence => {
                self.confidence = next(&[1, 2, 3, 4, 5], self.confidence, delta, false);
            }
            f => {
                if let Some(i) = f.oarsi_index() {
                    self.oarsi[i] = next(&[0, 1, 2, 3], self.oarsi[i], delta, true);
                }
            }
        }
        self.keep_focus(field);
    }

    /// A digit on a numeric field sets it; returns why not otherwise.
    fn digit(&mut self, d: u8) -> Result<(), String> {
        let field = self.current();
        match field {
            FormField::Grade if self.side.is_knee() => {
                if d > 4 {
                    return Err(format!("KL grades go from 0 to 4, not {d}"));
                }
                self.grade = Some(GradeChoice::Kl(d));
            }
            FormField::Confidence => {
                if !(1..=5).contains(&d) {
                    return Err(format!(
                        "confidence goes from 1 (unsure) to 5 (certain), not {d}"
                    ));
                }
                self.confidence = Some(d);
            }
            f => match f.oarsi_index() {
                Some(i) if d <= 3 => self.oarsi[i] = Some(d),
                Some(_) => return Err(format!("OARSI scores go from 0 to 3, not {d}")),
                None => return Err("this field is chosen with h/l (←/→), not a digit".into()),
            },
        }
        // A digit sets the focused field only: the focus stays (moving on is j's
        // job, so a digit typed once too often cannot overwrite the next field).
        self.keep_focus(field);
        Ok(())
    }

    /// Clears an optional field.
    fn clear(&mut self) {
        let field = self.current();
        match field {
            FormField::Grade => self.grade = None,
            FormField::OpImpression => self.op = None,
            FormField::Confidence => self.confidence = None,
            f => {
                if let Some(i) = f.oarsi_index() {
                    self.oarsi[i] = None;
                }
            }
        }
        self.keep_focus(field);
    }

    /// The field list changes with the grade (a reason for "not assessable"): the
    /// field being edited keeps the keys.
    fn keep_focus(&mut self, f: FormField) {
        self.focus(f);
    }

    fn text_mut(&mut self) -> Option<&mut String> {
        match self.current() {
            FormField::NotAssessableReason => Some(&mut self.not_assessable),
            FormField::Reason => Some(&mut self.reason),
            _ => None,
        }
    }

    /// The read the form holds, checked by the domain's own rule.
    pub fn read_input(&self) -> Result<ReadInput, String> {
        let knee = self.side.is_knee();
        let kl = match self.grade {
            Some(GradeChoice::Kl(k)) => Some(Grade::Value(k)),
            Some(GradeChoice::NotAssessable) => {
                Some(Grade::NotAssessable(self.not_assessable.trim().to_string()))
            }
            _ => None,
        };
        let op_impression = match self.grade {
            Some(GradeChoice::Op(o)) => Some(o),
            _ if knee => self.op,
            _ => None,
        };
        let na = self.grade == Some(GradeChoice::NotAssessable);
        let oarsi = if knee && !na {
            Oarsi {
                jsn_medial: self.oarsi[0],
                jsn_lateral: self.oarsi[1],
                osteophyte_medial: self.oarsi[2],
                osteophyte_lateral: self.oarsi[3],
            }
        } else {
            Oarsi::default()
        };
        let read = ReadInput {
            kl,
            oarsi,
            op_impression,
            confidence: self.confidence,
        };
        read.validate(self.side, false)?;
        if self.mode == FormMode::Correct && self.reason.trim().is_empty() {
            return Err("a correction needs a reason (it goes into the audit trail)".into());
        }
        Ok(read)
    }

    /// The final grade the form holds, checked by the domain's own rule.
    pub fn final_grade(&self) -> Result<FinalGrade, String> {
        let kl = match self.grade {
            Some(GradeChoice::Kl(k)) => Some(Grade::Value(k)),
            Some(GradeChoice::NotAssessable) => {
                Some(Grade::NotAssessable(self.not_assessable.trim().to_string()))
            }
            _ => None,
        };
        let op_stage = match self.grade {
            Some(GradeChoice::Op(o)) => Some(o),
            _ if self.side.is_knee() => self.op,
            _ => None,
        };
        let g = FinalGrade { kl, op_stage };
        validate_final(self.side, &g)?;
        if self.reason.trim().is_empty() {
            return Err(
                "an adjudication needs a rationale (it is part of the signed record)".into(),
            );
        }
        Ok(g)
    }

    /// What the form will submit, in words (the confirmation shows it).
    pub fn summary(&self) -> Result<String, String> {
        match self.mode {
            FormMode::Adjudicate => self.final_grade().map(|g| describe_grade(&g)),
            _ => self.read_input().map(|r| read_words(&r)),
        }
    }
}

/// One case on the read or adjudication screen.
#[derive(Debug)]
pub struct CaseScreen {
    pub(crate) case: String,
    pub(crate) state: LoadState,
    pub(crate) loaded: Option<Box<LoadedCase>>,
    /// The open form; `None`: read-only (a submitted read, a decided case, a PI).
    pub(crate) form: Option<GradeForm>,
    /// The list the screen was opened from (Esc goes back there).
    pub(crate) from: Screen,
    /// The model's explanation over the image, when asked for (`e`).
    pub(crate) explain: Option<ExplainState>,
}

/// The model's explanation on a case screen.
#[derive(Debug, Clone, PartialEq)]
pub enum ExplainState {
    /// Asked of the worker, not answered yet.
    Computing,
    Shown(ExplanationFigures),
}

impl CaseScreen {
    /// The model's explanation, once computed and while shown.
    pub fn explanation(&self) -> Option<&ExplanationFigures> {
        match &self.explain {
            Some(ExplainState::Shown(f)) => Some(f),
            _ => None,
        }
    }

    /// Whether the explanation is being computed.
    pub fn explaining(&self) -> bool {
        self.explain == Some(ExplainState::Computing)
    }

    fn is(&self, case: &str) -> bool {
        self.case.eq_ignore_ascii_case(case)
    }

    pub fn case(&self) -> &str {
        &self.case
    }

    pub fn loaded(&self) -> Option<&LoadedCase> {
        self.loaded.as_deref()
    }

    pub fn form(&self) -> Option<&GradeForm> {
        self.form.as_ref()
    }

    pub fn state(&self) -> &LoadState {
        &self.state
    }

    /// The acting reader's current read, if submitted.
    pub fn your_read(&self) -> Option<&ReadRecord> {
        self.loaded
            .as_ref()
            .and_then(|l| l.view.your_reads.iter().max_by_key(|r| r.version))
    }
}

/// The agreement screen: the figures once computed, the scale shown and the scroll.
#[derive(Debug)]
pub struct AgreementView {
    pub(crate) state: LoadState,
    pub(crate) figures: Option<AgreementFigures>,
    /// false: KL grade; true: OP impression.
    pub(crate) op: bool,
    pub(crate) scroll: usize,
    /// Lines and how many fit, from the last render.
    pub(crate) lines: Cell<(usize, usize)>,
}

impl AgreementView {
    pub fn state(&self) -> &LoadState {
        &self.state
    }

    pub fn figures(&self) -> Option<&AgreementFigures> {
        self.figures.as_ref()
    }

    pub fn shows_op(&self) -> bool {
        self.op
    }
}

/// Whether `apply_reading` takes this response.
pub(crate) fn is_reading_response(r: &Response) -> bool {
    matches!(
        r,
        Response::ReaderWorklist(_)
            | Response::TakenCase(_)
            | Response::Case { .. }
            | Response::ReadSubmitted { .. }
            | Response::AdjudicationQueue(_)
            | Response::Adjudicated { .. }
            | Response::Agreement(_)
            | Response::Explanation { .. }
    )
}

/// The reading part of the app's state.
#[derive(Debug, Default)]
pub struct ReadingState {
    pub(crate) reader_list: Option<CaseList<CaseSummary>>,
    pub(crate) queue: Option<CaseList<QueueItem>>,
    pub(crate) case: Option<CaseScreen>,
    pub(crate) agreement: Option<AgreementView>,
}

impl App {
    /// The reader's worklist, once opened.
    pub fn reader_list(&self) -> Option<&CaseList<CaseSummary>> {
        self.reading.reader_list.as_ref()
    }

    /// The adjudication queue, once opened.
    pub fn adjudication_queue(&self) -> Option<&CaseList<QueueItem>> {
        self.reading.queue.as_ref()
    }

    /// The open case (read or adjudication screen).
    pub fn case_screen(&self) -> Option<&CaseScreen> {
        self.reading.case.as_ref()
    }

    /// The agreement screen, once opened.
    pub fn agreement(&self) -> Option<&AgreementView> {
        self.reading.agreement.as_ref()
    }

    /// The open case's form, if any.
    pub fn case_form(&self) -> Option<&GradeForm> {
        self.reading.case.as_ref().and_then(|c| c.form.as_ref())
    }

    /// Opens the reader's worklist (readers only: a read must be blinded).
    pub(crate) fn open_reader_list(&mut self) -> Vec<Request> {
        if !self.session.role.allows(Permission::Read) {
            let e = DbError::NotAllowed {
                user: self.session.user.clone(),
                role: self.session.role.to_string(),
                what: format!(
                    "{}; the adjudication queue is A, the agreement figures S",
                    Permission::Read.describe()
                ),
            };
            self.error(e.to_string());
            return Vec::new();
        }
        self.screen = Screen::Reading;
        let list = self
            .reading
            .reader_list
            .get_or_insert_with(CaseList::loading);
        list.state = LoadState::Loading;
        vec![Request::LoadReaderWorklist]
    }

    pub(crate) fn open_queue(&mut self) -> Vec<Request> {
        self.screen = Screen::Adjudication;
        let q = self.reading.queue.get_or_insert_with(CaseList::loading);
        q.state = LoadState::Loading;
        vec![Request::LoadAdjudicationQueue]
    }

    pub(crate) fn open_agreement(&mut self) -> Vec<Request> {
        self.screen = Screen::Agreement;
        let a = self.reading.agreement.get_or_insert_with(|| AgreementView {
            state: LoadState::Loading,
            figures: None,
            op: false,
            scroll: 0,
            lines: Cell::new((0, 0)),
        });
        a.state = LoadState::Loading;
        vec![Request::LoadAgreement {
            resamples: AGREEMENT_RESAMPLES,
        }]
    }

    fn open_case(&mut self, case: String, from: Screen) -> Vec<Request> {
        self.screen = Screen::Case;
        self.images = Some(ImagesView::loading(case.clone()));
        self.reading.case = Some(CaseScreen {
            case: case.clone(),
            state: LoadState::Loading,
            loaded: None,
            form: None,
            from,
            explain: None,
        });
        vec![Request::LoadCase { case }]
    }

    /// The overlay the case's image pane shows instead of the plain frame: the
    /// model's explanation of the selected image, while it is on.
    pub fn explanation_overlay(&self) -> Option<&Arc<Preview>> {
        if self.screen != Screen::Case {
            return None;
        }
        let image = self.images.as_ref()?.current()?;
        self.case_screen()?
            .explanation()?
            .0
            .image(image.instance_id)
            .map(|i| &i.overlay)
    }

    /// The frame the image pane shows now: the explanation's overlay, or the decoded
    /// frame of the selected image.
    pub fn shown_preview(&self) -> Option<&Arc<Preview>> {
        self.explanation_overlay().or_else(|| {
            let key = self.images.as_ref()?.key()?;
            self.previews.get(&key)
        })
    }

    /// `e` on a case: asks the worker for the model's explanation, or hides it. A
    /// user blinded to the model is told why and nothing is asked (the worker's
    /// `explain_case` refuses them too).
    fn toggle_explanation(&mut self) -> Vec<Request> {
        let Some(cs) = self.reading.case.as_mut() else {
            return Vec::new();
        };
        if cs.explain.take().is_some() {
            self.info("the plain image again (e: the model's explanation)");
            return Vec::new();
        }
        let case = cs.case.clone();
        // Blinded (with the data layer's reason), nothing predicted yet, or shown.
        let seen = cs.loaded.as_ref().map(|l| match &l.view.model_prediction {
            Blinded::Hidden(why) => Err(Some(why.clone())),
            Blinded::Shown(None) => Err(None),
            Blinded::Shown(Some(_)) => Ok(()),
        });
        match seen {
            None => {
                self.info(format!("{case} is still loading"));
                Vec::new()
            }
            Some(Err(Some(why))) => {
                self.error(format!("the model's view of {case} is hidden: {why}"));
                Vec::new()
            }
            Some(Err(None)) => {
                self.error(format!(
                    "the model has not predicted {case} yet: run inference first (`marrow infer`, or n on the jobs screen)"
                ));
                Vec::new()
            }
            Some(Ok(())) => {
                cs.explain = Some(ExplainState::Computing);
                self.info(format!("computing the explanation of {case}…"));
                vec![Request::ExplainCase { case }]
            }
        }
    }

    /// A click on the `row`th visible row of the reading worklist or the queue:
    /// selects it; on the selected row, opens it.
    pub(crate) fn click_case_list(&mut self, row: usize) -> Vec<Request> {
        fn pick<T>(l: &mut CaseList<T>, row: usize) -> Option<bool> {
            let at = l.offset.get() + row;
            (at < l.rows.len()).then(|| {
                let again = at == l.selected;
                l.selected = at;
                again
            })
        }
        let again = match self.screen {
            Screen::Reading => self.reading.reader_list.as_mut().and_then(|l| pick(l, row)),
            Screen::Adjudication => self.reading.queue.as_mut().and_then(|l| pick(l, row)),
            _ => None,
        };
        if again == Some(true) {
            self.update(Action::Open)
        } else {
            Vec::new()
        }
    }

    /// What a key does on the reader's worklist.
    pub(crate) fn update_reader_list(&mut self, action: Action) -> Vec<Request> {
        let Some(list) = self.reading.reader_list.as_mut() else {
            self.screen = Screen::Worklist;
            return Vec::new();
        };
        if list.navigate(action) {
            return Vec::new();
        }
        match action {
            Action::Back => self.screen = Screen::Worklist,
            Action::TakeNext => {
                self.info("taking the next case…");
                return vec![Request::TakeNextCase];
            }
            Action::Open => {
                if let Some(c) = list.rows.get(list.selected) {
                    let case = c.case.clone();
                    return self.open_case(case, Screen::Reading);
                }
            }
            Action::OpenAdjudication => return self.open_queue(),
            Action::OpenAgreement => return self.open_agreement(),
            Action::OpenJobs => return self.open_jobs(),
            Action::OpenModel => return self.open_model(),
            Action::OpenDashboard => return self.open_dashboard(),
            _ => {}
        }
        Vec::new()
    }

    /// What a key does on the adjudication queue.
    pub(crate) fn update_queue(&mut self, action: Action) -> Vec<Request> {
        let Some(q) = self.reading.queue.as_mut() else {
            self.screen = Screen::Worklist;
            return Vec::new();
        };
        if q.navigate(action) {
            return Vec::new();
        }
        match action {
            Action::Back => self.screen = Screen::Worklist,
            Action::Open => {
                if let Some(c) = q.rows.get(q.selected) {
                    let case = c.summary.case.clone();
                    return self.open_case(case, Screen::Adjudication);
                }
            }
            Action::OpenReading => return self.open_reader_list(),
            Action::OpenAgreement => return self.open_agreement(),
            Action::OpenJobs => return self.open_jobs(),
            Action::OpenModel => return self.open_model(),
            Action::OpenDashboard => return self.open_dashboard(),
            _ => {}
        }
        Vec::new()
    }

    pub(crate) fn update_agreement(&mut self, action: Action) -> Vec<Request> {
        let Some(a) = self.reading.agreement.as_mut() else {
            self.screen = Screen::Worklist;
            return Vec::new();
        };
        let (lines, fits) = a.lines.get();
        let max = lines.saturating_sub(fits);
        let page = fits.max(1) as isize;
        let delta: isize = match action {
            Action::Down => 1,
            Action::Up => -1,
            Action::PageDown | Action::HalfPageDown => page,
            Action::PageUp | Action::HalfPageUp => -page,
            Action::Top => isize::MIN / 2,
            Action::Bottom => isize::MAX / 2,
            Action::NextPane => {
                a.op = !a.op;
                a.scroll = 0;
                return Vec::new();
            }
            Action::Back => {
                self.screen = Screen::Worklist;
                return Vec::new();
            }
            Action::OpenJobs => return self.open_jobs(),
            Action::OpenModel => return self.open_model(),
            Action::OpenDashboard => return self.open_dashboard(),
            _ => 0,
        };
        a.scroll = a.scroll.saturating_add_signed(delta).min(max);
        Vec::new()
    }

    /// What a key does on the read or adjudication screen.
    pub(crate) fn update_case(&mut self, action: Action) -> Vec<Request> {
        let role = self.session.role;
        let Some(cs) = self.reading.case.as_mut() else {
            self.screen = Screen::Worklist;
            return Vec::new();
        };
        // The image keys work with or without a form.
        match action {
            Action::NextImage | Action::PrevImage => {
                if let Some(v) = self.images.as_mut() {
                    let at = v.selected;
                    let to = if action == Action::NextImage {
                        at + 1
                    } else {
                        at.saturating_sub(1)
                    };
                    v.select(to);
                }
                return self.want_preview();
            }
            Action::Explain => return self.toggle_explanation(),
            Action::ZoomIn | Action::ZoomOut => {
                if let Some(v) = self.images.as_mut() {
                    v.zoom = if action == Action::ZoomIn {
                        (v.zoom * 2).min(super::app::MAX_ZOOM)
                    } else {
                        (v.zoom / 2).max(1)
                    };
                    v.clamp_centre();
                }
                return Vec::new();
            }
            _ => {}
        }
        let from = cs.from;
        let Some(form) = cs.form.as_mut() else {
            match action {
                Action::Back => self.leave_case(from),
                Action::TakeNext if role.allows(Permission::Read) => {
                    self.info("taking the next case…");
                    return vec![Request::TakeNextCase];
                }
                Action::Correct => {
                    let side = cs.loaded.as_ref().map(|l| l.view.side);
                    match (side, cs.your_read()) {
                        (Some(side), Some(r)) if role.allows(Permission::Read) => {
                            let mut f = GradeForm::correcting(side, &r.read);
                            f.focus(FormField::Reason);
                            cs.form = Some(f);
                            self.info(
                                "correcting your read: change what is wrong, type the reason, Enter",
                            );
                        }
                        _ => self.error("there is no read of yours to correct on this case"),
                    }
                }
                _ => {}
            }
            return Vec::new();
        };
        if form.saving {
            return Vec::new();
        }
        if form.confirming {
            match Answer::of(&action) {
                Answer::Yes => {
                    form.confirming = false;
                    let loaded = cs.loaded.as_ref();
                    let case = cs.case.clone();
                    let request = match form.mode {
                        FormMode::Adjudicate => {
                            let Some(version) = loaded.map(|l| l.view.version) else {
                                return Vec::new();
                            };
                            form.final_grade().map(|grade| Request::Adjudicate {
                                case,
                                grade,
                                rationale: form.reason.trim().to_string(),
                                expected_version: version,
                            })
                        }
                        mode => form.read_input().map(|read| Request::SubmitRead {
                            case,
                            read,
                            correction: (mode == FormMode::Correct)
                                .then(|| form.reason.trim().to_string()),
                        }),
                    };
                    match request {
                        Ok(r) => {
                            form.saving = true;
                            form.error = None;
                            return vec![r];
                        }
                        Err(e) => form.error = Some(e),
                    }
                }
                Answer::No => form.confirming = false,
                Answer::Other => {}
            }
            return Vec::new();
        }
        match action {
            Action::Back => {
                if form.mode == FormMode::Correct {
                    // Back to the locked read; the correction is dropped.
                    cs.form = None;
                    self.info("correction cancelled; nothing was saved");
                } else {
                    self.leave_case(from);
                }
            }
            Action::Down | Action::NextField => form.move_field(1),
            Action::Up | Action::PrevField => form.move_field(-1),
            Action::StepValue(d) => form.step(d),
            Action::Digit(d) => {
                if let Err(e) = form.digit(d) {
                    self.error(e);
                }
            }
            Action::ClearField => form.clear(),
            Action::Input(c) => {
                if let Some(t) = form.text_mut() {
                    t.push(c);
                }
            }
            Action::Backspace => {
                if let Some(t) = form.text_mut() {
                    t.pop();
                }
            }
            Action::ClearInput => {
                if let Some(t) = form.text_mut() {
                    t.clear();
                }
            }
            Action::Save => match form.summary() {
                Ok(_) => {
                    form.error = None;
                    form.confirming = true;
                }
                Err(e) => {
                    form.error = Some(e);
                }
            },
            _ => {}
        }
        Vec::new()
    }

    fn leave_case(&mut self, from: Screen) {
        self.reading.case = None;
        self.images = None;
        self.screen = from;
    }

    /// The requests that reload the reading screen on show.
    pub(crate) fn reload_reading(&mut self) -> Vec<Request> {
        match self.screen {
            Screen::Reading => {
                if let Some(l) = self.reading.reader_list.as_mut() {
                    l.state = LoadState::Loading;
                }
                vec![Request::LoadReaderWorklist]
            }
            Screen::Adjudication => {
                if let Some(q) = self.reading.queue.as_mut() {
                    q.state = LoadState::Loading;
                }
                vec![Request::LoadAdjudicationQueue]
            }
            Screen::Agreement => {
                if let Some(a) = self.reading.agreement.as_mut() {
                    a.state = LoadState::Loading;
                }
                vec![Request::LoadAgreement {
                    resamples: AGREEMENT_RESAMPLES,
                }]
            }
            Screen::Case => match self.reading.case.as_mut() {
                Some(c) => {
                    c.state = LoadState::Loading;
                    if let Some(v) = self.images.as_mut() {
                        v.failed.clear();
                    }
                    vec![Request::LoadCase {
                        case: c.case.clone(),
                    }]
                }
                None => Vec::new(),
            },
            _ => Vec::new(),
        }
    }

    /// Takes a loaded case: the view, the image list, and the form the user may fill.
    fn set_case(&mut self, loaded: Box<LoadedCase>) -> Vec<Request> {
        let role = self.session.role;
        let Some(cs) = self
            .reading
            .case
            .as_mut()
            .filter(|c| c.is(&loaded.view.case))
        else {
            return Vec::new();
        };
        let view = &loaded.view;
        if cs.loaded.is_none() && cs.form.is_none() {
            cs.form = if role.allows(Permission::Read) {
                view.your_reads
                    .is_empty()
                    .then(|| GradeForm::new(view.side, FormMode::Read))
            } else if role.allows(Permission::Adjudicate)
                && view.state == Blinded::Shown(CaseState::Adjudication)
            {
                Some(GradeForm::new(view.side, FormMode::Adjudicate))
            } else {
                None
            };
        }
        let images = loaded.images.clone();
        cs.loaded = Some(loaded);
        cs.state = LoadState::Loaded;
        let case = cs.case.clone();
        let v = self
            .images
            .get_or_insert_with(|| ImagesView::loading(case.clone()));
        if v.is(&case) {
            let keep = v.current().map(|i| i.instance_id);
            v.set_list(images);
            v.state = LoadState::Loaded;
            v.selected = keep
                .and_then(|id| v.list.iter().position(|i| i.instance_id == id))
                .unwrap_or(0);
        }
        if self.screen == Screen::Case {
            self.want_preview()
        } else {
            Vec::new()
        }
    }

    /// Takes a reading response (see [`is_reading_response`]); returns what follows.
    pub(crate) fn apply_reading(&mut self, response: Response) -> Vec<Request> {
        match response {
            Response::ReaderWorklist(result) => {
                let list = self
                    .reading
                    .reader_list
                    .get_or_insert_with(CaseList::loading);
                match result {
                    Ok(rows) => list.set(rows),
                    Err(e) => {
                        list.state = LoadState::Failed(e.clone());
                        self.error(format!("your reading worklist did not load: {e}"));
                    }
                }
            }
            Response::TakenCase(result) => match result {
                Ok(Some(t)) => {
                    let case = t.summary.case.clone();
                    let side = t.summary.side;
                    let what = if t.newly_assigned && side.is_knee() {
                        format!("took {case} ({side} knee): grade it blinded")
                    } else if t.newly_assigned {
                        format!("took {case} (patient, OP stage): grade it blinded")
                    } else {
                        format!("{case} is still waiting for your read")
                    };
                    let from = Screen::Reading;
                    let mut out = self.open_case(case, from);
                    self.success(what);
                    out.push(Request::LoadReaderWorklist);
                    return out;
                }
                Ok(None) => self.info("no case is waiting for you: every case has its readers"),
                Err(e) => self.error(format!("no case was taken: {e}")),
            },
            Response::Case { case, result } => match result {
                Ok(loaded) => return self.set_case(loaded),
                Err(e) => {
                    if let Some(c) = self.reading.case.as_mut().filter(|c| c.is(&case)) {
                        c.state = LoadState::Failed(e.clone());
                        if let Some(v) = self.images.as_mut().filter(|v| v.is(&case)) {
                            v.state = LoadState::Failed(e.clone());
                        }
                        self.error(e);
                    }
                }
            },
            Response::ReadSubmitted {
                case,
                result,
                fresh,
            } => {
                let Some(cs) = self.reading.case.as_mut().filter(|c| c.is(&case)) else {
                    return Vec::new();
                };
                match result {
                    Ok(outcome) => {
                        cs.form = None;
                        let mut text = format!(
                            "{case}: your read v{} is submitted and locked ({})",
                            outcome.read.version,
                            read_words(&outcome.read.read)
                        );
                        text.push_str(&format!("; the case is {}", outcome.state.code()));
                        if let Some(n) = &outcome.note {
                            text.push_str(&format!("; {n}"));
                        }
                        self.success(text);
                    }
                    Err(e) => {
                        if let Some(f) = cs.form.as_mut() {
                            f.saving = false;
                            f.error =
                                Some(format!("{e} (nothing was saved; your entries are kept)"));
                        }
                        self.error(e);
                    }
                }
                let mut out = match fresh {
                    Some(l) => self.set_case(l),
                    None => Vec::new(),
                };
                out.push(Request::LoadReaderWorklist);
                return out;
            }
            Response::AdjudicationQueue(result) => {
                let q = self.reading.queue.get_or_insert_with(CaseList::loading);
                match result {
                    Ok(rows) => q.set(rows),
                    Err(e) => {
                        q.state = LoadState::Failed(e.clone());
                        self.error(format!("the adjudication queue did not load: {e}"));
                    }
                }
            }
            Response::Adjudicated {
                case,
                result,
                fresh,
            } => {
                let Some(cs) = self.reading.case.as_mut().filter(|c| c.is(&case)) else {
                    return Vec::new();
                };
                match result {
                    Ok(rec) => {
                        cs.form = None;
                        self.success(format!(
                            "{case}: {} by {} at {} ({})",
                            describe_grade(&rec.grade),
                            rec.decided_by,
                            rec.decided_at,
                            rec.meaning
                        ));
                    }
                    Err((kind, e)) => {
                        if kind == SaveFailure::NotAllowed {
                            cs.form = None;
                        } else if let Some(f) = cs.form.as_mut() {
                            // The typed rationale stays: the adjudicator reads who
                            // decided what, and decides what to do with it.
                            f.saving = false;
                            f.error = Some(e.clone());
                        }
                        self.error(e);
                    }
                }
                let mut out = match fresh {
                    Some(l) => self.set_case(l),
                    None => Vec::new(),
                };
                if self.reading.queue.is_some() {
                    out.push(Request::LoadAdjudicationQueue);
                }
                return out;
            }
            Response::Explanation { case, result } => {
                // Dropped when the user has left the case or hidden it meanwhile.
                let Some(cs) = self
                    .reading
                    .case
                    .as_mut()
                    .filter(|c| c.is(&case) && c.explaining())
                else {
                    return Vec::new();
                };
                match result {
                    Ok(f) => {
                        let first = f.0.images.first().map(|i| i.instance_id);
                        let (n, model) = (f.0.images.len(), f.0.model.clone());
                        cs.explain = Some(ExplainState::Shown(f.clone()));
                        // On an image the model does not read (a hip on a knee
                        // case): to the first one it does.
                        if let Some(v) = self.images.as_mut().filter(|v| v.is(&case))
                            && v.current()
                                .is_none_or(|i| f.0.image(i.instance_id).is_none())
                            && let Some(at) =
                                first.and_then(|id| v.list.iter().position(|i| i.instance_id == id))
                        {
                            v.select(at);
                        }
                        self.success(format!(
                            "{case}: the explanation of model {model} over {n} image{} (red: supported its class, blue: against; e: the plain image)",
                            if n == 1 { "" } else { "s" }
                        ));
                        return self.want_preview();
                    }
                    Err(e) => {
                        cs.explain = None;
                        self.error(e);
                    }
                }
            }
            Response::Agreement(result) => {
                if let Some(a) = self.reading.agreement.as_mut() {
                    match result {
                        Ok(f) => {
                            a.figures = Some(f);
                            a.state = LoadState::Loaded;
                        }
                        Err(e) => {
                            a.state = LoadState::Failed(e.clone());
                            self.error(format!("the agreement figures did not load: {e}"));
                        }
                    }
                }
            }
            _ => {}
        }
        Vec::new()
    }

    /// After the worker stopped: nothing reading waits any longer.
    pub(crate) fn reading_worker_stopped(&mut self) {
        let stopped = || LoadState::Failed("database worker stopped".into());
        if let Some(l) = self.reading.reader_list.as_mut()
            && l.state == LoadState::Loading
        {
            l.state = stopped();
        }
        if let Some(q) = self.reading.queue.as_mut()
            && q.state == LoadState::Loading
        {
            q.state = stopped();
        }
        if let Some(a) = self.reading.agreement.as_mut()
            && a.state == LoadState::Loading
        {
            a.state = stopped();
        }
        if let Some(c) = self.reading.case.as_mut() {
            if c.state == LoadState::Loading {
                c.state = stopped();
            }
            if let Some(f) = c.form.as_mut() {
                f.saving = false;
            }
            if c.explaining() {
                c.explain = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_knee_read_needs_a_grade_and_a_confidence_and_checks_by_the_domain_rule() {
        let mut f = GradeForm::new(Side::Left, FormMode::Read);
        assert!(f.read_input().unwrap_err().contains("KL grade"));
        f.digit(2).unwrap();
        assert_eq!(f.current(), FormField::Grade, "a digit does not move on");
        f.move_field(1);
        assert_eq!(f.current(), FormField::JsnMedial);
        assert!(f.digit(4).unwrap_err().contains("0 to 3"));
        f.digit(1).unwrap();
        assert!(f.read_input().unwrap_err().contains("confidence"));
        f.focus(FormField::Confidence);
        assert!(f.digit(0).is_err());
        f.digit(4).unwrap();
        let r = f.read_input().unwrap();
        assert_eq!(r.kl, Some(Grade::Value(2)));
        assert_eq!(r.oarsi.jsn_medial, Some(1));
        assert_eq!(r.confidence, Some(4));
        assert_eq!(f.summary().unwrap(), "KL 2, JSN medial 1, confidence 4");
    }

    /// Issue 13 item 7: `2 j j j j j j 4` used to wrap back to KL and make it 4.
    #[test]
    fn a_digit_sets_the_focused_field_only_and_moving_stops_at_the_ends() {
        let mut f = GradeForm::new(Side::Left, FormMode::Read);
        let fields = f.fields();
        f.digit(2).unwrap();
        for _ in 0..6 {
            f.move_field(1);
        }
        assert_eq!(f.current(), *fields.last().unwrap());
        f.move_field(1);
        assert_eq!(
            f.current(),
            FormField::Confidence,
            "j stops at the last field"
        );
        f.digit(4).unwrap();
        assert_eq!(f.grade, Some(GradeChoice::Kl(2)), "KL keeps its 2");
        assert_eq!(f.confidence, Some(4));
        assert_eq!(f.oarsi, [None; 4]);
        for _ in 0..10 {
            f.move_field(-1);
        }
        assert_eq!(f.current(), FormField::Grade, "k stops at the first field");
    }

    #[test]
    fn not_assessable_asks_why_and_drops_the_oarsi_scores() {
        let mut f = GradeForm::new(Side::Right, FormMode::Read);
        f.digit(3).unwrap();
        f.move_field(1);
        f.digit(2).unwrap();
        f.field = 0;
        // KL 3 -> 4 -> not assessable
        f.step(1);
        f.step(1);
        assert_eq!(f.grade, Some(GradeChoice::NotAssessable));
        assert_eq!(f.current(), FormField::Grade, "the grade keeps the keys");
        assert!(f.fields().contains(&FormField::NotAssessableReason));
        assert!(!f.fields().contains(&FormField::JsnMedial));
        f.confidence = Some(2);
        assert!(f.read_input().unwrap_err().contains("reason"));
        f.focus(FormField::NotAssessableReason);
        f.text_mut().unwrap().push_str("rotated");
        let r = f.read_input().unwrap();
        assert_eq!(r.not_assessable(), Some("rotated"));
        assert!(r.oarsi.is_empty());
    }

    #[test]
    fn a_patient_case_is_graded_by_op_impression_with_h_and_l() {
        let mut f = GradeForm::new(Side::Patient, FormMode::Read);
        assert_eq!(f.fields(), vec![FormField::Grade, FormField::Confidence]);
        assert!(f.digit(1).is_err(), "no digits for an OP impression");
        f.step(1);
        f.step(1);
        assert_eq!(f.grade, Some(GradeChoice::Op(OpImpression::Osteopenia)));
        f.step(-1);
        f.step(-1);
        assert_eq!(
            f.grade,
            Some(GradeChoice::NotAssessable),
            "h from the first value wraps"
        );
        f.step(1);
        f.confidence = Some(3);
        let r = f.read_input().unwrap();
        assert_eq!(r.kl, None);
        assert_eq!(r.op_impression, Some(OpImpression::Normal));
    }

    #[test]
    fn a_correction_starts_from_the_read_and_needs_a_reason() {
        let read = ReadInput {
            kl: Some(Grade::Value(2)),
            oarsi: Oarsi {
                osteophyte_lateral: Some(2),
                ..Oarsi::default()
            },
            op_impression: Some(OpImpression::Normal),
            confidence: Some(4),
        };
        let mut f = GradeForm::correcting(Side::Left, &read);
        assert_eq!(
            f.read_input().unwrap_err(),
            "a correction needs a reason (it goes into the audit trail)"
        );
        f.reason = "osteophyte missed".into();
        assert_eq!(f.read_input().unwrap(), read);
    }

    #[test]
    fn an_adjudication_needs_a_final_grade_and_a_rationale() {
        let mut f = GradeForm::new(Side::Left, FormMode::Adjudicate);
        assert_eq!(
            f.fields(),
            vec![FormField::Grade, FormField::OpImpression, FormField::Reason]
        );
        f.digit(3).unwrap();
        assert!(f.final_grade().unwrap_err().contains("rationale"));
        f.reason = "definite JSN".into();
        let g = f.final_grade().unwrap();
        assert_eq!(g.kl, Some(Grade::Value(3)));
        assert_eq!(g.op_stage, None);
        let mut p = GradeForm::new(Side::Patient, FormMode::Adjudicate);
        p.reason = "DXA agrees".into();
        assert!(p.final_grade().unwrap_err().contains("OP stage"));
        p.step(-1);
        p.step(-1);
        assert_eq!(
            p.final_grade().unwrap().op_stage,
            Some(OpImpression::Osteoporosis)
        );
    }
}
