//! The keymap: one table that decides what a key does, and from which the help popup
//! and the footer are generated, so they never lie.

use super::app::Choice;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};

/// Where a binding applies. The app asks for a stack of contexts, innermost first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Context {
    /// Everywhere, even while typing.
    Always,
    /// Every screen when no popup or text field has the keys.
    Global,
    Worklist,
    /// Typing a search in the worklist.
    Search,
    Patient,
    /// The patient's images.
    Images,
    /// The answer popup, choosing the answer.
    AnswerChoice,
    /// The answer popup, typing the reason.
    AnswerReason,
    /// The reader's worklist of cases.
    ReaderWorklist,
    /// The cases waiting for adjudication.
    AdjudicationQueue,
    /// A case's image on the read and adjudication screens.
    CaseImage,
    /// The read or adjudication form, on a field that is chosen (not typed).
    CaseForm,
    /// The read or adjudication form, typing a reason.
    CaseText,
    /// A case without a form: a submitted (locked) read, a decided case.
    CaseView,
    /// The confirmation before a read or an adjudication is submitted.
    Confirm,
    /// The agreement figures.
    Agreement,
    /// The inference jobs.
    Jobs,
    /// The model's outcome figures.
    Model,
    /// The confirmation before a job starts or is cancelled, or before quitting
    /// while a job runs.
    JobConfirm,
    /// The study dashboard: enrollment, the CONSORT flow, what is outstanding.
    Dashboard,
    /// The patients behind a CONSORT box.
    BoxPatients,
    /// Follow-up visits: the due list or one patient's visits.
    Followup,
    /// The form that enters or corrects a follow-up visit.
    VisitForm,
    /// The combined summary of two sites' summary files.
    Summary,
    Help,
}

impl Context {
    /// Heading of the context in the help popup.
    pub fn title(self) -> &'static str {
        match self {
            Context::Always => "Everywhere",
            Context::Global => "Every screen (not while typing)",
            Context::Worklist => "Worklist",
            Context::Search => "Search (after /)",
            Context::Patient => "Patient screening",
            Context::Images => "Patient images",
            Context::AnswerChoice => "Answer popup: choosing the answer",
            Context::AnswerReason => "Answer popup: typing the reason",
            Context::ReaderWorklist => "Reading worklist (readers)",
            Context::AdjudicationQueue => "Adjudication queue",
            Context::CaseImage => "Read and adjudication screens: the image",
            Context::CaseForm => "Read and adjudication form",
            Context::CaseText => "Read and adjudication form: typing a reason",
            Context::CaseView => "A submitted read or a decided case",
            Context::Confirm => "Confirming a read or an adjudication",
            Context::Agreement => "Agreement figures",
            Context::Jobs => "Inference jobs",
            Context::Model => "Model: outcome figures and ROC curve",
            Context::JobConfirm => "Confirming a job, a cancel, or quitting while a job runs",
            Context::Dashboard => "Dashboard: enrollment and the CONSORT flow",
            Context::BoxPatients => "Dashboard: the patients behind a CONSORT box",
            Context::Followup => "Follow-up visits: due in 30 days and overdue, or one patient's",
            Context::VisitForm => "Follow-up visit form: entering or correcting a visit",
            Context::Summary => "Combined summary of two sites (summary merge --tui)",
            Context::Help => "This help",
        }
    }

    /// The order of contexts in the help popup.
    pub const HELP_ORDER: [Context; 25] = [
        Context::Worklist,
        Context::Search,
        Context::Patient,
        Context::Images,
        Context::AnswerChoice,
        Context::AnswerReason,
        Context::ReaderWorklist,
        Context::CaseForm,
        Context::CaseText,
        Context::CaseImage,
        Context::Confirm,
        Context::CaseView,
        Context::AdjudicationQueue,
        Context::Agreement,
        Context::Jobs,
        Context::JobConfirm,
        Context::Model,
        Context::Dashboard,
        Context::BoxPatients,
        Context::Followup,
        Context::VisitForm,
        Context::Summary,
        Context::Global,
        Context::Always,
        Context::Help,
    ];
}

/// A key, or a key sequence, as written in the keymap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySpec {
    /// A character, typed with or without Shift.
    Char(char),
    /// Ctrl and a letter.
    Ctrl(char),
    /// A named key without Ctrl or Alt.
    Code(KeyCode),
    /// Two characters in a row (`gg`).
    Seq(char, char),
    /// Any printable character, for text fields.
    Text,
    /// A digit 0-9 (the action carries it).
    Digits,
    /// A mouse gesture.
    Mouse(MouseSpec),
}

/// A mouse gesture as written in the keymap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MouseSpec {
    WheelDown,
    WheelUp,
    /// The wheel with Ctrl held, where the terminal passes it on (many keep it for
    /// their own font zoom).
    CtrlWheelDown,
    CtrlWheelUp,
    /// A left click (what it picks depends on where it lands).
    Click,
}

impl MouseSpec {
    fn matches(self, m: &MouseEvent) -> bool {
        let ctrl = m.modifiers.contains(KeyModifiers::CONTROL);
        match self {
            MouseSpec::WheelDown => !ctrl && m.kind == MouseEventKind::ScrollDown,
            MouseSpec::WheelUp => !ctrl && m.kind == MouseEventKind::ScrollUp,
            MouseSpec::CtrlWheelDown => ctrl && m.kind == MouseEventKind::ScrollDown,
            MouseSpec::CtrlWheelUp => ctrl && m.kind == MouseEventKind::ScrollUp,
            MouseSpec::Click => m.kind == MouseEventKind::Down(MouseButton::Left),
        }
    }
}

impl KeySpec {
    /// How the key is written in help and footer.
    pub fn label(self) -> String {
        match self {
            KeySpec::Char(' ') => "Space".into(),
            KeySpec::Char(c) => c.to_string(),
            KeySpec::Ctrl(c) => format!("Ctrl-{c}"),
            KeySpec::Seq(a, b) => format!("{a}{b}"),
            KeySpec::Text => "type".into(),
            KeySpec::Digits => "0-9".into(),
            KeySpec::Mouse(m) => match m {
                MouseSpec::WheelDown => "wheel↓".into(),
                MouseSpec::WheelUp => "wheel↑".into(),
                MouseSpec::CtrlWheelDown => "Ctrl-wheel↓".into(),
                MouseSpec::CtrlWheelUp => "Ctrl-wheel↑".into(),
                MouseSpec::Click => "click".into(),
            },
            KeySpec::Code(code) => match code {
                KeyCode::Up => "↑".into(),
                KeyCode::Down => "↓".into(),
                KeyCode::Left => "←".into(),
                KeyCode::Right => "→".into(),
                KeyCode::Enter => "Enter".into(),
                KeyCode::Esc => "Esc".into(),
                KeyCode::Tab => "Tab".into(),
                KeyCode::BackTab => "Shift-Tab".into(),
                KeyCode::Backspace => "Backspace".into(),
                KeyCode::Home => "Home".into(),
                KeyCode::End => "End".into(),
                KeyCode::PageUp => "PgUp".into(),
                KeyCode::PageDown => "PgDn".into(),
                other => format!("{other:?}"),
            },
        }
    }

    /// Whether a single key press matches (sequences are matched by `resolve`).
    fn matches(self, key: &KeyEvent) -> bool {
        let plain = !key
            .modifiers
            .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT);
        match self {
            KeySpec::Char(c) => plain && key.code == KeyCode::Char(c),
            KeySpec::Ctrl(c) => {
                key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char(c)
            }
            KeySpec::Code(code) => plain && key.code == code,
            KeySpec::Seq(..) | KeySpec::Mouse(_) => false,
            KeySpec::Text => plain && matches!(key.code, KeyCode::Char(c) if !c.is_control()),
            KeySpec::Digits => plain && matches!(key.code, KeyCode::Char(c) if c.is_ascii_digit()),
        }
    }
}

/// What a key asks the app to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Quit,
    ToggleHelp,
    /// Close the popup or go back one screen.
    Back,
    Reload,
    Up,
    Down,
    Top,
    Bottom,
    HalfPageUp,
    HalfPageDown,
    PageUp,
    PageDown,
    /// Open the selected patient.
    Open,
    NextPatient,
    PrevPatient,
    NextPane,
    StartSearch,
    ConfirmSearch,
    CancelSearch,
    CycleDecision,
    CycleFlag,
    CycleSite,
    CycleGroup,
    ClearFilters,
    /// Open the answer popup on the selected criterion.
    EditAnswer,
    /// Open the patient's images.
    OpenImages,
    /// Next frame of a multi-frame image.
    NextFrame,
    PrevFrame,
    /// Next window (VOI) preset of the image's file.
    CycleWindow,
    /// Window width: +1 wider, -1 narrower.
    WindowWidth(i8),
    /// Window center: +1 up (darker), -1 down (brighter).
    WindowLevel(i8),
    ZoomIn,
    ZoomOut,
    /// Move a zoomed image's view by (columns, rows) steps.
    Pan(i8, i8),
    /// Whole image again (zoom 1).
    ResetView,
    /// Select what the mouse clicked (the screen knows what is where).
    Select,
    /// Pick an answer in the popup and go on to the reason.
    Choose(Choice),
    /// Switch between the answer and the reason field.
    NextField,
    Save,
    /// A typed character (the keymap's `Text` binding carries the character typed).
    Input(char),
    Backspace,
    ClearInput,
    /// Open the reader's worklist of cases.
    OpenReading,
    /// Open the adjudication queue.
    OpenAdjudication,
    /// Open the agreement figures.
    OpenAgreement,
    /// Take the next case to read.
    TakeNext,
    /// Next / previous image of the case.
    NextImage,
    PrevImage,
    /// Correct a submitted read (a new version with a reason).
    Correct,
    /// Yes, submit.
    Confirm,
    /// The previous field of a form.
    PrevField,
    /// The previous (-1) or next (+1) value of a form field.
    StepValue(i8),
    /// A digit typed on a form field (the keymap's `Digits` binding carries it).
    Digit(u8),
    /// Clear an optional form field.
    ClearField,
    /// Open the jobs screen.
    OpenJobs,
    /// Open the model screen.
    OpenModel,
    /// Start inference on the images without a prediction (both tasks).
    InferPending,
    /// Start inference on every image again (asks to confirm).
    InferAll,
    /// Cancel the selected job (asks to confirm).
    CancelJob,
    /// The other task (KL / OP).
    NextTask,
    /// The next cohort (all, retrospective, prospective).
    CycleCohort,
    /// Open the study dashboard.
    OpenDashboard,
    /// Open the follow-up visits (due and overdue).
    OpenFollowup,
    /// The dashboard: show the secondary outcomes instead of the flow, or back.
    ToggleOutcomes,
    /// Show or hide the model's explanation of the case over its image.
    Explain,
    /// Make the task's newest inactive model version the active one (asks first,
    /// showing both versions' validation figures).
    ActivateModel,
}

/// One line of the keymap.
#[derive(Debug, Clone, Copy)]
pub struct Binding {
    pub context: Context,
    pub keys: &'static [KeySpec],
    pub action: Action,
    /// What the help popup says.
    pub help: &'static str,
    /// What the footer says, when the binding is worth a place there. Bindings of
    /// one context with the same footer word are shown together ("j/k move").
    pub footer: Option<&'static str>,
}

use Action as A;
use Context as X;
use KeyCode as K;
use KeySpec::{Char, Code, Ctrl, Digits, Mouse, Seq, Text};
use MouseSpec::{Click, CtrlWheelDown, CtrlWheelUp, WheelDown, WheelUp};

const fn b(
    context: Context,
    keys: &'static [KeySpec],
    action: Action,
    help: &'static str,
    footer: Option<&'static str>,
) -> Binding {
    Binding {
        context,
        keys,
        action,
        help,
        footer,
    }
}

/// The whole keymap. Order matters only for display.
#[rustfmt::skip]
pub const KEYMAP: &[Binding] = &[
    // Worklist
    b(X::Worklist, &[Char('j'), Code(K::Down), Mouse(WheelDown)], A::Down, "next patient (wheel: three rows a notch)", Some("move")),
    b(X::Worklist, &[Char('k'), Code(K::Up), Mouse(WheelUp)], A::Up, "previous patient", Some("move")),
    b(X::Worklist, &[Seq('g', 'g'), Code(K::Home)], A::Top, "first patient", None),
    b(X::Worklist, &[Char('G'), Code(K::End)], A::Bottom, "last patient", None),
    b(X::Worklist, &[Ctrl('d')], A::HalfPageDown, "half a page down", None),
    b(X::Worklist, &[Ctrl('u')], A::HalfPageUp, "half a page up", None),
    b(X::Worklist, &[Code(K::PageDown)], A::PageDown, "a page down", None),
    b(X::Worklist, &[Code(K::PageUp)], A::PageUp, "a page up", None),
    b(X::Worklist, &[Code(K::Enter), Char('l'), Code(K::Right)], A::Open, "open the patient's screening", Some("open")),
    b(X::Worklist, &[Char('/')], A::StartSearch, "search by study ID (as you type)", Some("search")),
    b(X::Worklist, &[Char('d')], A::CycleDecision, "filter by decision (cycles)", Some("filter")),
    b(X::Worklist, &[Char('f')], A::CycleFlag, "filter by flag (cycles)", Some("filter")),
    b(X::Worklist, &[Char('s')], A::CycleSite, "filter by site (cycles)", Some("filter")),
    b(X::Worklist, &[Char('c')], A::CycleGroup, "filter by group OA/OP/CONTROL (cycles)", Some("filter")),
    b(X::Worklist, &[Char('x')], A::ClearFilters, "clear filters and search", Some("clear")),
    b(X::Worklist, &[Code(K::Esc)], A::CancelSearch, "clear the search", None),
    b(X::Worklist, &[Mouse(Click)], A::Select, "select the patient; on the selected one, open it", None),
    // Search
    b(X::Search, &[Text], A::Input(' '), "narrow the list by study ID", None),
    b(X::Search, &[Code(K::Backspace)], A::Backspace, "delete a character", None),
    b(X::Search, &[Ctrl('u')], A::ClearInput, "clear the search text", None),
    b(X::Search, &[Code(K::Down), Mouse(WheelDown)], A::Down, "next patient", None),
    b(X::Search, &[Code(K::Up), Mouse(WheelUp)], A::Up, "previous patient", None),
    b(X::Search, &[Code(K::Enter)], A::ConfirmSearch, "keep the search, back to the list", Some("keep")),
    b(X::Search, &[Code(K::Esc)], A::CancelSearch, "drop the search", Some("cancel")),
    // Patient
    b(X::Patient, &[Char('j'), Code(K::Down), Mouse(WheelDown)], A::Down, "next criterion (or scroll the pane)", Some("move")),
    b(X::Patient, &[Char('k'), Code(K::Up), Mouse(WheelUp)], A::Up, "previous criterion (or scroll the pane)", Some("move")),
    b(X::Patient, &[Seq('g', 'g'), Code(K::Home)], A::Top, "first criterion / top", None),
    b(X::Patient, &[Char('G'), Code(K::End)], A::Bottom, "last criterion / bottom", None),
    b(X::Patient, &[Ctrl('d'), Code(K::PageDown)], A::PageDown, "scroll down", None),
    b(X::Patient, &[Ctrl('u'), Code(K::PageUp)], A::PageUp, "scroll up", None),
    b(X::Patient, &[Code(K::Enter), Char('e')], A::EditAnswer, "answer the criterion by hand", Some("answer")),
    b(X::Patient, &[Code(K::Tab), Code(K::BackTab)], A::NextPane, "switch pane (checklist, bone density)", Some("pane")),
    b(X::Patient, &[Char(']')], A::NextPatient, "next patient of the worklist", Some("patient")),
    b(X::Patient, &[Char('[')], A::PrevPatient, "previous patient of the worklist", Some("patient")),
    b(X::Patient, &[Code(K::Esc), Char('h'), Code(K::Left)], A::Back, "back to the worklist", Some("back")),
    b(X::Patient, &[Char('i')], A::OpenImages, "the patient's images", Some("images")),
    b(X::Patient, &[Mouse(Click)], A::Select, "select the criterion, or focus the pane", None),
    // Images
    b(X::Images, &[Char('j'), Code(K::Down), Mouse(WheelDown)], A::Down, "next image (wheel: one image a notch)", Some("image")),
    b(X::Images, &[Char('k'), Code(K::Up), Mouse(WheelUp)], A::Up, "previous image", Some("image")),
    b(X::Images, &[Seq('g', 'g'), Code(K::Home)], A::Top, "first image", None),
    b(X::Images, &[Char('G'), Code(K::End)], A::Bottom, "last image", None),
    b(X::Images, &[Mouse(Click)], A::Select, "select the image (a study or series row: its first)", None),
    b(X::Images, &[Char(']')], A::NextFrame, "next frame (multi-frame images)", Some("frame")),
    b(X::Images, &[Char('[')], A::PrevFrame, "previous frame", Some("frame")),
    b(X::Images, &[Char('w')], A::CycleWindow, "next window preset of the file (cycles)", Some("window")),
    b(X::Images, &[Code(K::Esc), Char('h'), Code(K::Left)], A::Back, "back to the patient", Some("back")),
    b(X::Images, &[Char('+'), Char('='), Mouse(CtrlWheelUp)], A::ZoomIn, "zoom in (2x, 4x, 8x)", Some("zoom")),
    b(X::Images, &[Char('-'), Mouse(CtrlWheelDown)], A::ZoomOut, "zoom out", Some("zoom")),
    b(X::Images, &[Char('H')], A::Pan(-1, 0), "pan left (zoomed)", Some("pan")),
    b(X::Images, &[Char('J')], A::Pan(0, 1), "pan down (zoomed)", Some("pan")),
    b(X::Images, &[Char('K')], A::Pan(0, -1), "pan up (zoomed)", Some("pan")),
    b(X::Images, &[Char('L')], A::Pan(1, 0), "pan right (zoomed)", Some("pan")),
    b(X::Images, &[Char('>')], A::WindowWidth(1), "wider window (less contrast)", Some("width")),
    b(X::Images, &[Char('<')], A::WindowWidth(-1), "narrower window (more contrast)", Some("width")),
    b(X::Images, &[Char('}')], A::WindowLevel(1), "window center up (darker)", Some("level")),
    b(X::Images, &[Char('{')], A::WindowLevel(-1), "window center down (brighter)", Some("level")),
    b(X::Images, &[Char('0')], A::ResetView, "whole image, the file's window (reset)", None),
    // Answer popup, choosing
    b(X::AnswerChoice, &[Char('y')], A::Choose(Choice::Yes), "yes (met / applies), then the reason", Some("answer")),
    b(X::AnswerChoice, &[Char('n')], A::Choose(Choice::No), "no (not met / does not apply), then the reason", Some("answer")),
    b(X::AnswerChoice, &[Char('u')], A::Choose(Choice::Unknown), "unknown, then the reason", Some("answer")),
    b(X::AnswerChoice, &[Char('x')], A::Choose(Choice::Clear), "clear the manual answer, then the reason", Some("answer")),
    b(X::AnswerChoice, &[Char('j'), Code(K::Down)], A::Down, "next answer", None),
    b(X::AnswerChoice, &[Char('k'), Code(K::Up)], A::Up, "previous answer", None),
    b(X::AnswerChoice, &[Code(K::Tab), Code(K::BackTab)], A::NextField, "go to the reason", Some("reason")),
    b(X::AnswerChoice, &[Code(K::Enter)], A::Save, "save (asks for a reason first)", Some("save")),
    b(X::AnswerChoice, &[Code(K::Esc)], A::Back, "cancel, nothing is saved", Some("cancel")),
    // Answer popup, typing the reason
    b(X::AnswerReason, &[Text], A::Input(' '), "type why (kept in the audit trail)", None),
    b(X::AnswerReason, &[Code(K::Backspace)], A::Backspace, "delete a character", None),
    b(X::AnswerReason, &[Ctrl('u')], A::ClearInput, "clear the reason", None),
    b(X::AnswerReason, &[Code(K::Tab), Code(K::BackTab)], A::NextField, "back to the answer", Some("answer")),
    b(X::AnswerReason, &[Code(K::Enter)], A::Save, "save the answer", Some("save")),
    b(X::AnswerReason, &[Code(K::Esc)], A::Back, "cancel, nothing is saved", Some("cancel")),
    // Worklist: the reading screens
    b(X::Worklist, &[Char('R')], A::OpenReading, "your reading worklist (readers)", Some("reading")),
    b(X::Worklist, &[Char('A')], A::OpenAdjudication, "the adjudication queue (adjudicators, PIs, admins)", Some("queue")),
    b(X::Worklist, &[Char('S')], A::OpenAgreement, "agreement statistics (PIs, adjudicators, admins)", Some("agreement")),
    b(X::Worklist, &[Char('J')], A::OpenJobs, "inference jobs: progress, start, cancel", Some("jobs")),
    b(X::Worklist, &[Char('M')], A::OpenModel, "the model's outcome figures and ROC curve (not readers)", Some("model")),
    b(X::Worklist, &[Char('D')], A::OpenDashboard, "the study dashboard: enrollment, CONSORT flow (not readers)", Some("dashboard")),
    b(X::Worklist, &[Char('F')], A::OpenFollowup, "follow-up visits due in 30 days and overdue; enter or correct one (not readers)", Some("follow-up")),
    // Reading worklist
    b(X::ReaderWorklist, &[Char('j'), Code(K::Down), Mouse(WheelDown)], A::Down, "next case", Some("move")),
    b(X::ReaderWorklist, &[Char('k'), Code(K::Up), Mouse(WheelUp)], A::Up, "previous case", Some("move")),
    b(X::ReaderWorklist, &[Seq('g', 'g'), Code(K::Home)], A::Top, "first case", None),
    b(X::ReaderWorklist, &[Char('G'), Code(K::End)], A::Bottom, "last case", None),
    b(X::ReaderWorklist, &[Mouse(Click)], A::Select, "select the case; on the selected one, open it", None),
    b(X::ReaderWorklist, &[Char('t')], A::TakeNext, "take the next case to read (opens it)", Some("take next")),
    b(X::ReaderWorklist, &[Code(K::Enter), Char('l'), Code(K::Right)], A::Open, "open the case", Some("open")),
    b(X::ReaderWorklist, &[Code(K::Esc), Char('h'), Code(K::Left)], A::Back, "back to the patient worklist", Some("back")),
    b(X::ReaderWorklist, &[Char('J')], A::OpenJobs, "inference jobs (read-only)", Some("jobs")),
    b(X::ReaderWorklist, &[Char('M')], A::OpenModel, "the model screen (blinded for readers)", None),
    b(X::ReaderWorklist, &[Char('D')], A::OpenDashboard, "the study dashboard: enrollment, CONSORT flow (not readers)", None),
    // Read and adjudication form
    b(X::CaseForm, &[Char('j'), Code(K::Down), Code(K::Tab)], A::Down, "next field (stops at the last)", Some("field")),
    b(X::CaseForm, &[Char('k'), Code(K::Up), Code(K::BackTab)], A::Up, "previous field (stops at the first)", Some("field")),
    b(X::CaseForm, &[Char('l'), Code(K::Right)], A::StepValue(1), "next value of the field", Some("value")),
    b(X::CaseForm, &[Char('h'), Code(K::Left)], A::StepValue(-1), "previous value of the field", Some("value")),
    b(X::CaseForm, &[Digits], A::Digit(0), "set the focused field: KL (0-4), an OARSI score (0-3) or the confidence (1-5); the focus stays", Some("grade")),
    b(X::CaseForm, &[Char('x'), Code(K::Backspace), Code(K::Delete)], A::ClearField, "clear an optional field", None),
    b(X::CaseForm, &[Code(K::Enter)], A::Save, "submit (asks to confirm)", Some("submit")),
    b(X::CaseForm, &[Code(K::Esc)], A::Back, "back, nothing is saved", Some("back")),
    // Read and adjudication form, typing
    b(X::CaseText, &[Text], A::Input(' '), "type the reason", None),
    b(X::CaseText, &[Code(K::Backspace)], A::Backspace, "delete a character", None),
    b(X::CaseText, &[Ctrl('u')], A::ClearInput, "clear the text", None),
    b(X::CaseText, &[Code(K::Tab), Code(K::Down)], A::NextField, "next field", Some("field")),
    b(X::CaseText, &[Code(K::BackTab), Code(K::Up)], A::PrevField, "previous field", Some("field")),
    b(X::CaseText, &[Code(K::Enter)], A::Save, "submit (asks to confirm)", Some("submit")),
    b(X::CaseText, &[Code(K::Esc)], A::Back, "back, nothing is saved", Some("back")),
    // The case's image
    b(X::CaseImage, &[Char(']')], A::NextImage, "next image of the case", Some("image")),
    b(X::CaseImage, &[Char('[')], A::PrevImage, "previous image of the case", Some("image")),
    b(X::CaseImage, &[Char('+'), Char('=')], A::ZoomIn, "zoom in (2x, 4x, 8x)", Some("zoom")),
    b(X::CaseImage, &[Char('-')], A::ZoomOut, "zoom out", Some("zoom")),
    b(X::CaseImage, &[Char('e')], A::Explain, "the model's explanation: occlusion heatmap over the image (red for its class, blue against) and each modality's Shapley contribution; again: the plain image (not before your own read)", None),
    // Confirmation
    b(X::Confirm, &[Char('y'), Code(K::Enter)], A::Confirm, "yes, submit (a read is locked once submitted)", Some("submit")),
    b(X::Confirm, &[Char('n'), Code(K::Esc)], A::Back, "no, back to the form", Some("back")),
    // A submitted read, a decided case
    b(X::CaseView, &[Char('c')], A::Correct, "correct your read (a new version, with a reason)", Some("correct")),
    b(X::CaseView, &[Char('t')], A::TakeNext, "take the next case to read", Some("next case")),
    b(X::CaseView, &[Code(K::Esc), Char('h'), Code(K::Left)], A::Back, "back to the list", Some("back")),
    // Adjudication queue
    b(X::AdjudicationQueue, &[Char('j'), Code(K::Down), Mouse(WheelDown)], A::Down, "next case", Some("move")),
    b(X::AdjudicationQueue, &[Char('k'), Code(K::Up), Mouse(WheelUp)], A::Up, "previous case", Some("move")),
    b(X::AdjudicationQueue, &[Seq('g', 'g'), Code(K::Home)], A::Top, "first case", None),
    b(X::AdjudicationQueue, &[Char('G'), Code(K::End)], A::Bottom, "last case", None),
    b(X::AdjudicationQueue, &[Mouse(Click)], A::Select, "select the case; on the selected one, open it", None),
    b(X::AdjudicationQueue, &[Code(K::Enter), Char('l'), Code(K::Right)], A::Open, "open the case: image, reads, DXA, final grade form", Some("open")),
    b(X::AdjudicationQueue, &[Char('S')], A::OpenAgreement, "agreement statistics", Some("agreement")),
    b(X::AdjudicationQueue, &[Code(K::Esc), Char('h'), Code(K::Left)], A::Back, "back to the patient worklist", Some("back")),
    b(X::AdjudicationQueue, &[Char('J')], A::OpenJobs, "inference jobs", Some("jobs")),
    b(X::AdjudicationQueue, &[Char('M')], A::OpenModel, "the model's outcome figures and ROC curve", Some("model")),
    b(X::AdjudicationQueue, &[Char('D')], A::OpenDashboard, "the study dashboard", None),
    // Agreement
    b(X::Agreement, &[Char('j'), Code(K::Down), Mouse(WheelDown)], A::Down, "scroll down", Some("scroll")),
    b(X::Agreement, &[Char('k'), Code(K::Up), Mouse(WheelUp)], A::Up, "scroll up", Some("scroll")),
    b(X::Agreement, &[Seq('g', 'g'), Code(K::Home)], A::Top, "top", None),
    b(X::Agreement, &[Char('G'), Code(K::End)], A::Bottom, "bottom", None),
    b(X::Agreement, &[Ctrl('d'), Code(K::PageDown)], A::PageDown, "a page down", None),
    b(X::Agreement, &[Ctrl('u'), Code(K::PageUp)], A::PageUp, "a page up", None),
    b(X::Agreement, &[Code(K::Tab), Code(K::BackTab)], A::NextPane, "KL grade / OP impression", Some("scale")),
    b(X::Agreement, &[Code(K::Esc), Char('h'), Code(K::Left)], A::Back, "back to the patient worklist", Some("back")),
    b(X::Agreement, &[Char('J')], A::OpenJobs, "inference jobs", Some("jobs")),
    b(X::Agreement, &[Char('M')], A::OpenModel, "the model's outcome figures and ROC curve", Some("model")),
    b(X::Agreement, &[Char('D')], A::OpenDashboard, "the study dashboard", None),
    // Jobs
    b(X::Jobs, &[Char('j'), Code(K::Down), Mouse(WheelDown)], A::Down, "next (older) job", Some("move")),
    b(X::Jobs, &[Char('k'), Code(K::Up), Mouse(WheelUp)], A::Up, "previous (newer) job", Some("move")),
    b(X::Jobs, &[Seq('g', 'g'), Code(K::Home)], A::Top, "newest job", None),
    b(X::Jobs, &[Char('G'), Code(K::End)], A::Bottom, "oldest job", None),
    b(X::Jobs, &[Char('n')], A::InferPending, "infer the images without a prediction, KL and OP (coordinators, admins)", Some("infer")),
    b(X::Jobs, &[Char('a')], A::InferAll, "infer every image again, KL and OP (asks to confirm)", Some("all")),
    b(X::Jobs, &[Char('c')], A::CancelJob, "cancel the selected job (asks; it stops after its batch)", Some("cancel")),
    b(X::Jobs, &[Char('M')], A::OpenModel, "the model's outcome figures", Some("model")),
    b(X::Jobs, &[Char('D')], A::OpenDashboard, "the study dashboard", None),
    b(X::Jobs, &[Code(K::Esc), Char('h'), Code(K::Left)], A::Back, "back", Some("back")),
    // Job confirmation
    b(X::JobConfirm, &[Char('y'), Code(K::Enter)], A::Confirm, "yes", Some("yes")),
    b(X::JobConfirm, &[Char('n'), Code(K::Esc)], A::Back, "no, back", Some("no")),
    // Model
    b(X::Model, &[Code(K::Tab), Code(K::BackTab), Char('t')], A::NextTask, "KL / OP model", Some("task")),
    b(X::Model, &[Char('p')], A::CycleCohort, "cohort: prospective (external test), retrospective (development), all (cycles)", Some("cohort")),
    b(X::Model, &[Char('j'), Code(K::Down), Mouse(WheelDown)], A::Down, "scroll the figures down", Some("scroll")),
    b(X::Model, &[Char('k'), Code(K::Up), Mouse(WheelUp)], A::Up, "scroll the figures up", Some("scroll")),
    b(X::Model, &[Seq('g', 'g'), Code(K::Home)], A::Top, "top", None),
    b(X::Model, &[Char('G'), Code(K::End)], A::Bottom, "bottom", None),
    b(X::Model, &[Ctrl('d'), Code(K::PageDown)], A::PageDown, "a page down", None),
    b(X::Model, &[Ctrl('u'), Code(K::PageUp)], A::PageUp, "a page up", None),
    b(X::Model, &[Char('a')], A::ActivateModel, "make the newest inactive version active (asks, old and new figures side by side; coordinators, admins)", None),
    b(X::Model, &[Char('J')], A::OpenJobs, "the jobs screen", Some("jobs")),
    b(X::Model, &[Code(K::Esc), Char('h'), Code(K::Left)], A::Back, "back", Some("back")),
    // Dashboard
    b(X::Dashboard, &[Char('j'), Code(K::Down), Mouse(WheelDown)], A::Down, "next CONSORT box", Some("move")),
    b(X::Dashboard, &[Char('k'), Code(K::Up), Mouse(WheelUp)], A::Up, "previous CONSORT box", Some("move")),
    b(X::Dashboard, &[Seq('g', 'g'), Code(K::Home)], A::Top, "first box", None),
    b(X::Dashboard, &[Char('G'), Code(K::End)], A::Bottom, "last box", None),
    b(X::Dashboard, &[Code(K::Enter), Char('l'), Code(K::Right)], A::Open, "the patients behind the selected box", Some("patients")),
    b(X::Dashboard, &[Char('F')], A::OpenFollowup, "the follow-up visits behind the follow-up numbers (due, overdue)", None),
    b(X::Dashboard, &[Char('o')], A::ToggleOutcomes, "secondary outcomes: fractures by OP stage (Kaplan–Meier), VAS/OKS change by KL; o again: the flow", Some("outcomes")),
    b(X::Dashboard, &[Code(K::Esc), Char('h'), Code(K::Left)], A::Back, "back", Some("back")),
    // The patients behind a CONSORT box
    b(X::BoxPatients, &[Char('j'), Code(K::Down), Mouse(WheelDown)], A::Down, "next patient", Some("move")),
    b(X::BoxPatients, &[Char('k'), Code(K::Up), Mouse(WheelUp)], A::Up, "previous patient", Some("move")),
    b(X::BoxPatients, &[Seq('g', 'g'), Code(K::Home)], A::Top, "first patient", None),
    b(X::BoxPatients, &[Char('G'), Code(K::End)], A::Bottom, "last patient", None),
    b(X::BoxPatients, &[Ctrl('d'), Code(K::PageDown)], A::PageDown, "ten patients down", None),
    b(X::BoxPatients, &[Ctrl('u'), Code(K::PageUp)], A::PageUp, "ten patients up", None),
    b(X::BoxPatients, &[Code(K::Enter), Char('l'), Code(K::Right)], A::Open, "open the patient's screening", Some("open")),
    b(X::BoxPatients, &[Code(K::Esc), Char('h'), Code(K::Left)], A::Back, "back to the dashboard", Some("back")),
    // Follow-up visits
    b(X::Followup, &[Char('j'), Code(K::Down), Mouse(WheelDown)], A::Down, "next visit", Some("move")),
    b(X::Followup, &[Char('k'), Code(K::Up), Mouse(WheelUp)], A::Up, "previous visit", Some("move")),
    b(X::Followup, &[Seq('g', 'g'), Code(K::Home)], A::Top, "first visit", None),
    b(X::Followup, &[Char('G'), Code(K::End)], A::Bottom, "last visit", None),
    b(X::Followup, &[Ctrl('d'), Code(K::PageDown)], A::PageDown, "ten visits down", None),
    b(X::Followup, &[Ctrl('u'), Code(K::PageUp)], A::PageUp, "ten visits up", None),
    b(X::Followup, &[Code(K::Enter), Char('e'), Char('l'), Code(K::Right)], A::Open, "enter or correct the selected visit (coordinators, admins)", Some("enter visit")),
    b(X::Followup, &[Char('p'), Code(K::Tab)], A::NextPane, "every planned visit of the selected patient and the baseline (month 0), to enter or correct one; again: the due list", Some("patient")),
    b(X::Followup, &[Char('D')], A::OpenDashboard, "the study dashboard", None),
    b(X::Followup, &[Code(K::Esc), Char('h'), Code(K::Left)], A::Back, "back (from a patient's visits: to the due list)", Some("back")),
    // Follow-up visit form
    b(X::VisitForm, &[Text], A::Input(' '), "type into the field (fracture: y or n)", None),
    b(X::VisitForm, &[Code(K::Backspace)], A::Backspace, "delete a character", None),
    b(X::VisitForm, &[Ctrl('u')], A::ClearInput, "clear the field", None),
    b(X::VisitForm, &[Code(K::Tab), Code(K::Down)], A::NextField, "next field", Some("field")),
    b(X::VisitForm, &[Code(K::BackTab), Code(K::Up)], A::PrevField, "previous field", Some("field")),
    b(X::VisitForm, &[Code(K::Left), Code(K::Right)], A::StepValue(1), "fracture: yes, no, not asked (cycles)", None),
    b(X::VisitForm, &[Code(K::Enter)], A::Save, "save the visit (checked as an imported row; a correction needs a reason)", Some("save")),
    b(X::VisitForm, &[Code(K::Esc)], A::Back, "cancel, nothing is saved", Some("cancel")),
    // Combined summary
    b(X::Summary, &[Char('j'), Code(K::Down), Mouse(WheelDown)], A::Down, "scroll down", Some("scroll")),
    b(X::Summary, &[Char('k'), Code(K::Up), Mouse(WheelUp)], A::Up, "scroll up", Some("scroll")),
    b(X::Summary, &[Seq('g', 'g'), Code(K::Home)], A::Top, "top", None),
    b(X::Summary, &[Char('G'), Code(K::End)], A::Bottom, "bottom", None),
    b(X::Summary, &[Ctrl('d'), Code(K::PageDown)], A::PageDown, "a page down", None),
    b(X::Summary, &[Ctrl('u'), Code(K::PageUp)], A::PageUp, "a page up", None),
    b(X::Summary, &[Code(K::Esc), Char('h'), Code(K::Left)], A::Back, "back (nothing is behind the summary files: q quits)", None),
    // Screens
    b(X::Global, &[Char('r')], A::Reload, "reload from the database", Some("reload")),
    b(X::Global, &[Char('?')], A::ToggleHelp, "this help", Some("help")),
    b(X::Global, &[Char('q')], A::Quit, "quit", Some("quit")),
    b(X::Always, &[Ctrl('c')], A::Quit, "quit", None),
    // Help
    b(X::Help, &[Char('j'), Code(K::Down), Mouse(WheelDown)], A::Down, "scroll down", Some("scroll")),
    b(X::Help, &[Char('k'), Code(K::Up), Mouse(WheelUp)], A::Up, "scroll up", Some("scroll")),
    b(X::Help, &[Seq('g', 'g'), Code(K::Home)], A::Top, "top", None),
    b(X::Help, &[Char('G'), Code(K::End)], A::Bottom, "bottom", None),
    b(X::Help, &[Ctrl('d'), Code(K::PageDown)], A::PageDown, "a page down", None),
    b(X::Help, &[Ctrl('u'), Code(K::PageUp)], A::PageUp, "a page up", None),
    b(X::Help, &[Code(K::Esc), Char('?'), Char('q')], A::Back, "close the help", Some("close")),
];

/// The bindings of the given contexts, innermost first.
pub fn bindings(stack: &[Context]) -> impl Iterator<Item = &'static Binding> + '_ {
    stack
        .iter()
        .flat_map(|c| KEYMAP.iter().filter(move |b| b.context == *c))
}

/// The action a key press asks for, given the active contexts (innermost first) and
/// the first key of a pending sequence. Sets `pending` when the key starts a sequence.
pub fn resolve(stack: &[Context], key: &KeyEvent, pending: &mut Option<char>) -> Option<Action> {
    let typed = match key.code {
        KeyCode::Char(c)
            if !key
                .modifiers
                .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT) =>
        {
            Some(c)
        }
        _ => None,
    };
    if let Some(first) = pending.take()
        && let Some(second) = typed
        && let Some(b) = bindings(stack).find(|b| b.keys.contains(&KeySpec::Seq(first, second)))
    {
        return Some(b.action);
    }
    for b in bindings(stack) {
        for k in b.keys {
            if k.matches(key) {
                return Some(match (k, typed) {
                    (KeySpec::Text, Some(c)) => Action::Input(c),
                    (KeySpec::Digits, Some(c)) => Action::Digit(c as u8 - b'0'),
                    _ => b.action,
                });
            }
        }
    }
    if let Some(c) = typed
        && bindings(stack).any(|b| {
            b.keys
                .iter()
                .any(|k| matches!(k, KeySpec::Seq(a, _) if *a == c))
        })
    {
        *pending = Some(c);
    }
    None
}

/// The action a mouse event asks for, given the active contexts (innermost first).
pub fn resolve_mouse(stack: &[Context], m: &MouseEvent) -> Option<Action> {
    bindings(stack)
        .find(|b| {
            b.keys
                .iter()
                .any(|k| matches!(k, KeySpec::Mouse(spec) if spec.matches(m)))
        })
        .map(|b| b.action)
}

/// The keys of a binding as help shows them ("j/↓").
pub fn keys_label(b: &Binding) -> String {
    b.keys
        .iter()
        .map(|k| k.label())
        .collect::<Vec<_>>()
        .join("/")
}

/// Footer entries for the active contexts: (keys, word), bindings with the same word
/// in one context merged ("j/k move", "d/f/s/c filter").
pub fn footer(stack: &[Context]) -> Vec<(String, &'static str)> {
    let mut out: Vec<(Context, String, &'static str)> = Vec::new();
    for b in bindings(stack) {
        let Some(word) = b.footer else { continue };
        let first = b.keys.first().map(|k| k.label()).unwrap_or_default();
        match out
            .iter_mut()
            .find(|(c, _, w)| *c == b.context && *w == word)
        {
            Some((_, keys, _)) => {
                keys.push('/');
                keys.push_str(&first);
            }
            None => out.push((b.context, first, word)),
        }
    }
    out.into_iter().map(|(_, k, w)| (k, w)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn no_key_is_bound_twice_in_one_context() {
        let mut seen = HashSet::new();
        for b in KEYMAP {
            for k in b.keys {
                assert!(
                    seen.insert((b.context, format!("{k:?}"))),
                    "{k:?} bound twice in {:?}",
                    b.context
                );
            }
        }
    }

    #[test]
    fn gg_is_a_sequence_and_g_alone_waits() {
        let stack = [Context::Worklist, Context::Global, Context::Always];
        let mut pending = None;
        assert_eq!(
            resolve(&stack, &key(KeyCode::Char('g')), &mut pending),
            None
        );
        assert_eq!(pending, Some('g'));
        assert_eq!(
            resolve(&stack, &key(KeyCode::Char('g')), &mut pending),
            Some(Action::Top)
        );
        assert_eq!(pending, None);
        // g then something else: the second key acts on its own
        resolve(&stack, &key(KeyCode::Char('g')), &mut pending);
        assert_eq!(
            resolve(&stack, &key(KeyCode::Char('j')), &mut pending),
            Some(Action::Down)
        );
    }

    #[test]
    fn text_contexts_take_letters_but_ctrl_c_still_quits() {
        let stack = [Context::Search, Context::Always];
        let mut p = None;
        assert_eq!(
            resolve(&stack, &key(KeyCode::Char('q')), &mut p),
            Some(Action::Input('q'))
        );
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(resolve(&stack, &ctrl_c, &mut p), Some(Action::Quit));
    }

    #[test]
    fn footer_merges_keys_with_the_same_word() {
        let f = footer(&[Context::Worklist, Context::Global, Context::Always]);
        assert!(f.contains(&("j/k".to_string(), "move")));
        assert!(f.contains(&("d/f/s/c".to_string(), "filter")));
        assert!(f.contains(&("?".to_string(), "help")));
    }
}
