//! The application state and its update logic: a key becomes an `Action` (through the
//! keymap), `update` changes the state and returns the requests for the database
//! worker, `apply` takes the worker's responses, and `render` draws from `&self`.
//! Nothing here touches a terminal or a database, so tests and benchmarks drive it
//! directly.

use super::dashboard::DashboardState;
use super::jobs::JobsState;
use super::keymap::{self, Action, Context};
use super::reading::ReadingState;
use super::theme::Theme;
use super::worker::{Preview, PreviewKey, RenderImage, Request, Response, SaveFailure, SetAnswer};
use crate::db::DbError;
use crate::db::imaging::PatientImage;
use crate::db::study::{PatientDetail, PatientSummary};
use crate::domain::eligibility::{Answer, Criterion, Decision, Flag};
use crate::domain::protocol::Group;
use crate::domain::status::StatusReport;
use crate::domain::user::{Permission, Role};
use crossterm::event::{KeyEvent, KeyEventKind, MouseEvent};
use ratatui::Frame;
use ratatui::layout::{Position, Rect};
use ratatui_image::FontSize;
use ratatui_image::picker::Picker;
use ratatui_image::protocol::Protocol;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

/// Who is using the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: String,
    pub role: Role,
    /// The protocol's sites, in its order (the site filter cycles through them).
    pub sites: Vec<String>,
    /// Something wrong with the study found on opening it (its image store
    /// missing), shown on the first screen.
    pub warning: Option<String>,
}

/// An answer picked in the popup: one of the three answers, or clearing the manual one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    Yes,
    No,
    Unknown,
    Clear,
}

impl Choice {
    pub const ALL: [Choice; 4] = [Choice::Yes, Choice::No, Choice::Unknown, Choice::Clear];

    /// The manual answer to store (`None` clears it).
    pub fn answer(self) -> Option<Answer> {
        match self {
            Choice::Yes => Some(Answer::Yes),
            Choice::No => Some(Answer::No),
            Choice::Unknown => Some(Answer::Unknown),
            Choice::Clear => None,
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Choice::Yes => "yes",
            Choice::No => "no",
            Choice::Unknown => "unknown",
            Choice::Clear => "clear",
        }
    }

    fn of(answer: Answer) -> Choice {
        match answer {
            Answer::Yes => Choice::Yes,
            Answer::No => Choice::No,
            Answer::Unknown => Choice::Unknown,
        }
    }
}

/// Where a screen's data stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadState {
    Loading,
    Loaded,
    Failed(String),
}

/// What a reader's patient worklist says instead of the patients.
pub const READER_WORKLIST: &str = "readers are blinded to the patient list (it names each patient's site, group and screening): press R for your reading worklist";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Worklist,
    Patient,
    /// The patient's images and the selected one drawn.
    Images,
    /// The reader's worklist of cases.
    Reading,
    /// The cases waiting for adjudication.
    Adjudication,
    /// One case: the read screen (readers) or the adjudication screen.
    Case,
    /// The agreement figures.
    Agreement,
    /// Inference jobs: progress, start, cancel.
    Jobs,
    /// The model's outcome figures and ROC curve.
    Model,
    /// The study dashboard: enrollment, the CONSORT flow, what is outstanding.
    Dashboard,
    /// The patients behind a CONSORT box.
    BoxPatients,
    /// Follow-up visits due and overdue, one patient's visits, the visit form.
    Followup,
    /// The combined view of two sites' summary files (read-only).
    Summary,
}

/// The worklist filters; `None` lets everything through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    pub decision: Option<Decision>,
    pub flag: Option<Flag>,
    pub site: Option<String>,
    pub group: Option<Group>,
}

impl Filters {
    pub fn matches(&self, p: &PatientSummary) -> bool {
        self.decision.is_none_or(|d| p.decision == d)
            && self.flag.is_none_or(|f| p.flags.contains(&f))
            && self
                .site
                .as_ref()
                .is_none_or(|s| p.site.eq_ignore_ascii_case(s))
            && self.group.is_none_or(|g| p.group == g)
    }

    pub fn is_empty(&self) -> bool {
        *self == Filters::default()
    }
}

/// Case-insensitive (ASCII) substring test without allocating: study IDs are ASCII.
fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    n.is_empty() || h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

/// What the worklist's filters and search look at, per patient, packed in one small
/// value: refiltering 100,000 patients on every key of a search walks one dense array
/// instead of chasing each summary's heap strings (12-18 ms a key before, at 100,000).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowKey {
    /// The study ID in upper case, when it fits (else `long`: the summary is asked).
    id: [u8; 16],
    id_len: u8,
    long: bool,
    decision: Decision,
    group: Group,
    /// Index of the site in the worklist's `sites` (`u16::MAX`: none of them).
    site: u16,
    /// Bit `i` set: the patient has `Flag::ALL[i]`.
    flags: u8,
}

impl RowKey {
    fn of(p: &PatientSummary, sites: &[String]) -> RowKey {
        let b = p.study_id.as_bytes();
        let mut id = [0u8; 16];
        let long = b.len() > id.len();
        let n = b.len().min(id.len());
        for (d, s) in id.iter_mut().zip(&b[..n]) {
            *d = s.to_ascii_uppercase();
        }
        let site = sites
            .iter()
            .position(|s| s.eq_ignore_ascii_case(&p.site))
            .map_or(u16::MAX, |i| i.min(u16::MAX as usize - 1) as u16);
        let flags = Flag::ALL
            .iter()
            .enumerate()
            .filter(|(_, f)| p.flags.contains(f))
            .fold(0u8, |m, (i, _)| m | (1 << i));
        RowKey {
            id,
            id_len: n as u8,
            long,
            decision: p.decision,
            group: p.group,
            site,
            flags,
        }
    }
}

/// The filters and search compiled for [`RowKey`]s.
struct CompiledFilter<'a> {
    /// Upper-cased search text.
    search: Vec<u8>,
    raw_search: &'a str,
    decision: Option<Decision>,
    group: Option<Group>,
    /// `Some(None)`: a site filter no patient's site matches.
    site: Option<Option<u16>>,
    flag: Option<u8>,
}

impl<'a> CompiledFilter<'a> {
    fn new(filters: &Filters, search: &'a str, sites: &[String]) -> CompiledFilter<'a> {
        CompiledFilter {
            search: search.bytes().map(|c| c.to_ascii_uppercase()).collect(),
            raw_search: search,
            decision: filters.decision,
            group: filters.group,
            site: filters.site.as_ref().map(|s| {
                sites
                    .iter()
                    .position(|x| x.eq_ignore_ascii_case(s))
                    .map(|i| i.min(u16::MAX as usize - 1) as u16)
            }),
            flag: filters.flag.map(|f| {
                Flag::ALL
                    .iter()
                    .position(|x| *x == f)
                    .map_or(0, |i| 1u8 << i)
            }),
        }
    }

    fn keeps(&self, k: &RowKey, p: &PatientSummary) -> bool {
        self.decision.is_none_or(|d| k.decision == d)
            && self.group.is_none_or(|g| k.group == g)
            && self.site.is_none_or(|s| s == Some(k.site))
            && self.flag.is_none_or(|f| k.flags & f != 0)
            && if k.long {
                contains_ignore_case(&p.study_id, self.raw_search)
            } else {
                let id = &k.id[..k.id_len as usize];
                match self.search.split_first() {
                    None => true,
                    // The first byte decides most windows without a slice compare.
                    Some((first, rest)) => id
                        .windows(rest.len() + 1)
                        .any(|w| w[0] == *first && &w[1..] == rest),
                }
            }
    }
}

/// The next value of a cycling filter: all, then each value, then all again.
fn cycle<T: Clone + PartialEq>(current: &Option<T>, all: &[T]) -> Option<T> {
    match current {
        None => all.first().cloned(),
        Some(c) => all
            .iter()
            .position(|x| x == c)
            .and_then(|i| all.get(i + 1))
            .cloned(),
    }
}

/// The worklist: every loaded summary, and the indices that pass filters and search.
#[derive(Debug)]
pub struct Worklist {
    pub(crate) patients: Vec<PatientSummary>,
    /// `patients[i]`'s filter key (see [`RowKey`]).
    pub(crate) keys: Vec<RowKey>,
    pub(crate) visible: Vec<usize>,
    /// Position in `visible`.
    pub(crate) selected: usize,
    /// First visible row, kept by `render` so the selection stays on screen.
    pub(crate) offset: Cell<usize>,
    /// Rows that fit on screen at the last render (a page).
    pub(crate) page: Cell<usize>,
    pub(crate) state: LoadState,
    pub(crate) filters: Filters,
    pub(crate) search: String,
    pub(crate) searching: bool,
    pub(crate) sites: Vec<String>,
    /// Widest study ID and site, so columns do not jump while scrolling.
    pub(crate) id_width: u16,
    pub(crate) site_width: u16,
}

impl Worklist {
    fn new(state: LoadState) -> Worklist {
        Worklist {
            patients: Vec::new(),
            keys: Vec::new(),
            visible: Vec::new(),
            selected: 0,
            offset: Cell::new(0),
            page: Cell::new(20),
            state,
            filters: Filters::default(),
            search: String::new(),
            searching: false,
            sites: Vec::new(),
            id_width: 8,
            site_width: 4,
        }
    }

    fn selected_index(&self) -> Option<usize> {
        self.visible.get(self.selected).copied()
    }

    fn set_patients(&mut self, patients: Vec<PatientSummary>, protocol_sites: &[String]) {
        let keep = self
            .selected_index()
            .and_then(|i| self.patients.get(i))
            .map(|p| p.study_id.clone());
        let extra: BTreeSet<&str> = patients
            .iter()
            .map(|p| p.site.as_str())
            .filter(|s| !protocol_sites.iter().any(|x| x == s))
            .collect();
        self.sites = protocol_sites
            .iter()
            .cloned()
            .chain(extra.into_iter().map(String::from))
            .collect();
        let width = |s: &str| s.chars().count().min(u16::MAX as usize) as u16;
        self.id_width = patients
            .iter()
            .map(|p| width(&p.study_id))
            .max()
            .unwrap_or(0)
            .max(8);
        self.site_width = self
            .sites
            .iter()
            .map(|s| width(s))
            .max()
            .unwrap_or(0)
            .max(4);
        self.keys = patients
            .iter()
            .map(|p| RowKey::of(p, &self.sites))
            .collect();
        self.patients = patients;
        self.state = LoadState::Loaded;
        self.refilter(false);
        if let Some(id) = keep
            && let Some(pos) = self
                .visible
                .iter()
                .position(|&i| self.patients[i].study_id == id)
        {
            self.selected = pos;
        }
    }

    /// Recomputes the visible rows. `narrowing` (the search only grew) filters the
    /// current rows instead of all of them. The selected patient stays selected when
    /// still visible.
    fn refilter(&mut self, narrowing: bool) {
        let before = self.selected_index();
        let search = self.search.trim();
        let f = CompiledFilter::new(&self.filters, search, &self.sites);
        let keep = |i: usize| f.keeps(&self.keys[i], &self.patients[i]);
        self.visible = if narrowing {
            self.visible.iter().copied().filter(|&i| keep(i)).collect()
        } else {
            (0..self.patients.len()).filter(|&i| keep(i)).collect()
        };
        self.selected = match before.map(|b| self.visible.binary_search(&b)) {
            Some(Ok(pos)) => pos,
            Some(Err(pos)) => pos.min(self.visible.len().saturating_sub(1)),
            None => 0,
        };
    }

    fn move_by(&mut self, delta: isize) {
        let last = self.visible.len().saturating_sub(1);
        self.selected = self.selected.saturating_add_signed(delta).min(last);
    }

    /// Replaces one patient's summary (after a save or a reload).
    fn replace(&mut self, s: PatientSummary) {
        if let Some(i) = self.patients.iter().position(|p| p.study_id == s.study_id) {
            self.keys[i] = RowKey::of(&s, &self.sites);
            self.patients[i] = s;
            self.refilter(false);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Checklist,
    BoneDensity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Choice,
    Reason,
}

/// The set-answer popup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerPopup {
    pub(crate) criterion: Criterion,
    pub(crate) choice: Choice,
    pub(crate) field: Field,
    pub(crate) reason: String,
    pub(crate) saving: bool,
    pub(crate) error: Option<String>,
}

impl AnswerPopup {
    pub fn criterion(&self) -> Criterion {
        self.criterion
    }
    pub fn choice(&self) -> Choice {
        self.choice
    }
    pub fn field(&self) -> Field {
        self.field
    }
    pub fn reason(&self) -> &str {
        &self.reason
    }
    pub fn is_saving(&self) -> bool {
        self.saving
    }
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }
}

/// One patient's screening screen.
#[derive(Debug)]
pub struct PatientView {
    pub(crate) study_id: String,
    pub(crate) detail: Option<Box<PatientDetail>>,
    pub(crate) state: LoadState,
    /// Row of the checklist.
    pub(crate) selected: usize,
    pub(crate) pane: Pane,
    pub(crate) side_scroll: usize,
    /// Lines of the bone-density pane and how many fit, from the last render.
    pub(crate) side_lines: Cell<(usize, usize)>,
    pub(crate) popup: Option<AnswerPopup>,
}

impl PatientView {
    fn loading(study_id: String) -> PatientView {
        PatientView {
            study_id,
            detail: None,
            state: LoadState::Loading,
            selected: 0,
            pane: Pane::Checklist,
            side_scroll: 0,
            side_lines: Cell::new((0, 0)),
            popup: None,
        }
    }

    fn is(&self, study_id: &str) -> bool {
        self.study_id.eq_ignore_ascii_case(study_id)
    }

    fn rows(&self) -> usize {
        self.detail
            .as_ref()
            .map_or(0, |d| d.screening.checklist.len())
    }

    fn scroll_side(&mut self, delta: isize) {
        let (lines, fits) = self.side_lines.get();
        let max = lines.saturating_sub(fits);
        self.side_scroll = self.side_scroll.saturating_add_signed(delta).min(max);
    }
}

/// The strongest zoom of the viewer.
pub const MAX_ZOOM: u8 = 8;

/// The cell size assumed for half-blocks when the terminal was not asked.
pub const HALFBLOCK_FONT: FontSize = FontSize::new(10, 20);

/// The largest side, in pixels, a frame is rendered at for the viewer.
pub const MAX_PREVIEW_PIXELS: usize = 2048;

/// How many rendered frames the viewer keeps.
pub const PREVIEW_CACHE: usize = 8;

/// The last rendered frames, oldest first.
#[derive(Debug, Default)]
pub struct PreviewCache {
    entries: VecDeque<(PreviewKey, Arc<Preview>)>,
}

impl PreviewCache {
    pub fn get(&self, key: &PreviewKey) -> Option<&Arc<Preview>> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, p)| p)
    }

    /// How many VOI presets an instance's file offers, once any frame of it rendered.
    fn presets_of(&self, instance_id: i64) -> Option<usize> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k.instance_id == instance_id)
            .map(|(_, p)| p.presets)
    }

    fn insert(&mut self, key: PreviewKey, preview: Arc<Preview>) {
        self.entries.retain(|(k, _)| *k != key);
        self.entries.push_back((key, preview));
        while self.entries.len() > PREVIEW_CACHE {
            self.entries.pop_front();
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A drawn frame encoded for the terminal, kept while its key and area stay the same.
pub(crate) struct EncodedImage {
    pub(crate) key: PreviewKey,
    pub(crate) area: Rect,
    /// Zoom and centre it was cut for.
    pub(crate) view: (u8, (f32, f32)),
    /// Whether it is the model's explanation over the image (not the plain frame).
    pub(crate) overlay: bool,
    pub(crate) protocol: Result<Protocol, String>,
}

impl std::fmt::Debug for EncodedImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncodedImage")
            .field("key", &self.key)
            .field("area", &self.area)
            .finish_non_exhaustive()
    }
}

/// One row of the images list, grouped by study, then series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageRow {
    /// A study: its first image (index into the list), its series and images.
    Study {
        first: usize,
        series: usize,
        images: usize,
    },
    /// A series of the study above: its first image and how many.
    Series { first: usize, images: usize },
    /// An image (index into the list).
    Image(usize),
}

impl ImageRow {
    /// The image a click on this row selects.
    pub fn image(self) -> usize {
        match self {
            ImageRow::Study { first, .. } | ImageRow::Series { first, .. } => first,
            ImageRow::Image(i) => i,
        }
    }
}

/// The list's rows: a study row, then each of its series with its images under it.
/// The list comes ordered by study and series (`patient_images`); an instance whose
/// study or series differs from the one above starts a new group.
pub fn group_images(list: &[PatientImage]) -> Vec<ImageRow> {
    let mut rows = Vec::with_capacity(list.len() + 4);
    let mut study_row = 0;
    let mut series_row = 0;
    for (i, img) in list.iter().enumerate() {
        let prev = i.checked_sub(1).map(|p| &list[p].record);
        let new_study = prev.is_none_or(|p| p.study_uid != img.record.study_uid);
        if new_study {
            study_row = rows.len();
            rows.push(ImageRow::Study {
                first: i,
                series: 0,
                images: 0,
            });
        }
        if new_study || prev.is_some_and(|p| p.series_uid != img.record.series_uid) {
            series_row = rows.len();
            rows.push(ImageRow::Series {
                first: i,
                images: 0,
            });
            if let ImageRow::Study { series, .. } = &mut rows[study_row] {
                *series += 1;
            }
        }
        for at in [study_row, series_row] {
            if let ImageRow::Study { images, .. } | ImageRow::Series { images, .. } = &mut rows[at]
            {
                *images += 1;
            }
        }
        rows.push(ImageRow::Image(i));
    }
    rows
}

/// The images screen of one patient: the list, the selection, frame and window.
#[derive(Debug)]
pub struct ImagesView {
    pub(crate) study_id: String,
    pub(crate) state: LoadState,
    pub(crate) list: Vec<PatientImage>,
    /// The list grouped by study and series, and the row of each image.
    pub(crate) rows: Vec<ImageRow>,
    pub(crate) image_rows: Vec<usize>,
    /// The selected image (index into `list`).
    pub(crate) selected: usize,
    pub(crate) frame: usize,
    pub(crate) voi_index: usize,
    /// A window set with the window/level keys (center, width), over the preset.
    pub(crate) window: Option<(i32, i32)>,
    /// Zoom (1, 2, 4, 8) and the centre of the view, as fractions of the image.
    pub(crate) zoom: u8,
    pub(crate) centre: (f32, f32),
    /// The last frame asked of the image thread and not answered yet.
    pub(crate) pending: Option<PreviewKey>,
    /// Frames that could not be rendered, and why.
    pub(crate) failed: HashMap<PreviewKey, String>,
    /// First visible row of the grouped list, kept by `render`.
    pub(crate) offset: Cell<usize>,
    /// Where the image was drawn at the last render (cells), to size the next one.
    pub(crate) image_area: Cell<Rect>,
    pub(crate) encoded: RefCell<Option<EncodedImage>>,
}

impl ImagesView {
    pub(crate) fn loading(study_id: String) -> ImagesView {
        ImagesView {
            study_id,
            state: LoadState::Loading,
            list: Vec::new(),
            rows: Vec::new(),
            image_rows: Vec::new(),
            selected: 0,
            frame: 0,
            voi_index: 0,
            window: None,
            zoom: 1,
            centre: (0.5, 0.5),
            pending: None,
            failed: HashMap::new(),
            offset: Cell::new(0),
            image_area: Cell::new(Rect::default()),
            encoded: RefCell::new(None),
        }
    }

    pub(crate) fn is(&self, study_id: &str) -> bool {
        self.study_id.eq_ignore_ascii_case(study_id)
    }

    /// Replaces the list and its grouping.
    pub(crate) fn set_list(&mut self, list: Vec<PatientImage>) {
        self.rows = group_images(&list);
        self.image_rows = self
            .rows
            .iter()
            .enumerate()
            .filter_map(|(r, row)| matches!(row, ImageRow::Image(_)).then_some(r))
            .collect();
        self.list = list;
    }

    /// The grouped rows of the list.
    pub fn rows(&self) -> &[ImageRow] {
        &self.rows
    }

    /// The row of the selected image.
    pub fn selected_row(&self) -> usize {
        self.image_rows.get(self.selected).copied().unwrap_or(0)
    }

    /// The selected image, if any.
    pub fn current(&self) -> Option<&PatientImage> {
        self.list.get(self.selected)
    }

    /// The rendering the screen wants now.
    pub fn key(&self) -> Option<PreviewKey> {
        self.current().map(|i| PreviewKey {
            instance_id: i.instance_id,
            frame: self.frame,
            voi_index: self.voi_index,
            window: self.window,
        })
    }

    fn frames(&self) -> usize {
        self.current()
            .map_or(1, |i| usize::try_from(i.record.frames).unwrap_or(1).max(1))
    }

    pub(crate) fn select(&mut self, index: usize) {
        let index = index.min(self.list.len().saturating_sub(1));
        if index != self.selected {
            self.selected = index;
            self.frame = 0;
            self.voi_index = 0;
            self.window = None;
            self.reset_view();
        }
    }

    fn reset_view(&mut self) {
        self.zoom = 1;
        self.centre = (0.5, 0.5);
    }

    /// The part of the image in view: (left, top, width, height) as fractions.
    pub fn view_window(&self) -> (f32, f32, f32, f32) {
        let side = 1.0 / f32::from(self.zoom.max(1));
        let left = (self.centre.0 - side / 2.0).clamp(0.0, 1.0 - side);
        let top = (self.centre.1 - side / 2.0).clamp(0.0, 1.0 - side);
        (left, top, side, side)
    }

    /// Keeps the view inside the image.
    pub(crate) fn clamp_centre(&mut self) {
        let half = 0.5 / f32::from(self.zoom.max(1));
        self.centre.0 = self.centre.0.clamp(half, 1.0 - half);
        self.centre.1 = self.centre.1.clamp(half, 1.0 - half);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Info,
    Success,
    Error,
}

/// The status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub kind: MessageKind,
    pub text: String,
}

/// The help popup's scroll position and, from the last render, its size.
#[derive(Debug, Default)]
pub struct HelpView {
    pub(crate) scroll: usize,
    pub(crate) lines: Cell<(usize, usize)>,
}

/// Screen areas from the last render, for mouse clicks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Hits {
    pub(crate) worklist_rows: Rect,
    pub(crate) checklist_rows: Rect,
    pub(crate) checklist_offset: usize,
    pub(crate) side: Rect,
    /// The rows of the images list (the first is `ImagesView::offset`).
    pub(crate) image_list_rows: Rect,
    /// The rows of the reading worklist or the adjudication queue (the first is the
    /// list's offset).
    pub(crate) case_list_rows: Rect,
}

/// The whole terminal application, without terminal or database.
#[derive(Debug)]
pub struct App {
    pub(crate) session: Session,
    pub(crate) theme: Theme,
    pub(crate) screen: Screen,
    pub(crate) worklist: Worklist,
    pub(crate) patient: Option<PatientView>,
    /// The open patient's images (loaded with the patient, shown by the images screen).
    pub(crate) images: Option<ImagesView>,
    pub(crate) previews: PreviewCache,
    /// How images are drawn, chosen when the images screen first opens; `None` (tests,
    /// benchmarks, or not chosen yet): half-blocks at an assumed cell size.
    pub(crate) picker: Option<Picker>,
    /// A picker will be handed over (`expect_picker`): the images screen waits for it
    /// before asking for a frame, whose size depends on the terminal's cells.
    picker_expected: bool,
    pub(crate) help: Option<HelpView>,
    pub(crate) status: Option<StatusReport>,
    pub(crate) message: Option<Message>,
    /// The reading screens: the reader's worklist, the queue, a case, agreement.
    pub(crate) reading: ReadingState,
    /// The jobs and model screens, the confirmation, the jobs this app started.
    pub(crate) jobs: JobsState,
    /// The dashboard and the patients behind a CONSORT box.
    pub(crate) dashboard: DashboardState,
    /// The follow-up screen and its visit form.
    pub(crate) followup: Option<super::followup::FollowupView>,
    /// The combined summary of summary files.
    pub(crate) summary: Option<super::summary::SummaryView>,
    /// The app shows only summary files: no study, no worker.
    pub(crate) summary_only: bool,
    pending_key: Option<char>,
    pub(crate) quit: bool,
    pub(crate) hits: Cell<Hits>,
}

impl App {
    /// An app waiting for its worklist (send `start()`'s requests to the worker).
    pub fn new(session: Session) -> App {
        let warning = session.warning.clone();
        let mut app = App {
            session,
            theme: Theme::from_env(),
            screen: Screen::Worklist,
            worklist: Worklist::new(LoadState::Loading),
            patient: None,
            images: None,
            previews: PreviewCache::default(),
            picker: None,
            picker_expected: false,
            help: None,
            status: None,
            message: None,
            reading: ReadingState::default(),
            jobs: JobsState::default(),
            dashboard: DashboardState::default(),
            followup: None,
            summary: None,
            summary_only: false,
            pending_key: None,
            quit: false,
            hits: Cell::new(Hits::default()),
        };
        if let Some(w) = warning {
            app.error(w);
        }
        app
    }

    /// An app on an already-loaded worklist (tests, benchmarks).
    pub fn with_patients(session: Session, patients: Vec<PatientSummary>) -> App {
        let mut app = App::new(session);
        app.worklist.set_patients(patients, &app.session.sites);
        app
    }

    /// The requests that fill the app at start-up. A reader starts on their reading
    /// worklist (the patient worklist is a key away).
    pub fn start(&mut self) -> Vec<Request> {
        if self.summary_only {
            return Vec::new();
        }
        let mut out = self.load_worklist();
        if self.session.role.allows(Permission::Read) {
            out.extend(self.open_reader_list());
        }
        out
    }

    /// Asks for the patient worklist, except for a reader: the data layer refuses
    /// readers the patient lists (they name each patient's site, group and
    /// screening), so the screen says so instead of asking.
    fn load_worklist(&mut self) -> Vec<Request> {
        if self.session.role == Role::Reader {
            self.worklist.state = LoadState::Failed(READER_WORKLIST.into());
            return Vec::new();
        }
        self.worklist.state = LoadState::Loading;
        vec![Request::LoadWorklist]
    }

    /// Says that a picker will come once the images screen opens (`wants_picker`),
    /// so the terminal is asked about graphics only by users who look at images.
    pub fn expect_picker(&mut self) {
        self.picker_expected = true;
    }

    /// Whether the images screen is open and waits for `set_picker`.
    pub fn wants_picker(&self) -> bool {
        self.picker_expected && self.picker.is_none() && self.shows_image()
    }

    /// Whether the screen draws an image (the images screen, a case).
    fn shows_image(&self) -> bool {
        matches!(self.screen, Screen::Images | Screen::Case)
    }

    /// Sets how images are drawn, with a note for the status line (the terminal did
    /// not answer); returns the frame the images screen waited for.
    pub fn set_picker(&mut self, picker: Picker, note: Option<String>) -> Vec<Request> {
        self.picker = Some(picker);
        if let Some(note) = note {
            self.info(note);
        }
        if self.shows_image() {
            self.want_preview()
        } else {
            Vec::new()
        }
    }

    pub fn picker(&self) -> Option<&Picker> {
        self.picker.as_ref()
    }

    /// The terminal's cell size in pixels (a common 10x20 when unknown).
    pub fn font_size(&self) -> FontSize {
        self.picker
            .as_ref()
            .map_or(HALFBLOCK_FONT, |p| p.font_size())
    }

    /// The open patient's images screen state.
    pub fn images(&self) -> Option<&ImagesView> {
        self.images.as_ref()
    }

    /// The rendered frames kept for the viewer.
    pub fn previews(&self) -> &PreviewCache {
        &self.previews
    }

    pub fn set_theme(&mut self, theme: Theme) {
        self.theme = theme;
    }

    /// Sets the status counts shown in the header.
    pub fn set_status(&mut self, status: StatusReport) {
        self.status = Some(status);
    }

    pub fn should_quit(&self) -> bool {
        self.quit
    }

    pub fn screen(&self) -> Screen {
        self.screen
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    pub fn filters(&self) -> &Filters {
        &self.worklist.filters
    }

    pub fn search(&self) -> &str {
        &self.worklist.search
    }

    pub fn is_searching(&self) -> bool {
        self.worklist.searching
    }

    pub fn worklist_state(&self) -> &LoadState {
        &self.worklist.state
    }

    /// How many patients pass the filters and search.
    pub fn visible_len(&self) -> usize {
        self.worklist.visible.len()
    }

    /// The patients that pass the filters and search, in order.
    pub fn visible_patients(&self) -> impl Iterator<Item = &PatientSummary> {
        self.worklist
            .visible
            .iter()
            .map(|&i| &self.worklist.patients[i])
    }

    pub fn selected_patient(&self) -> Option<&PatientSummary> {
        self.worklist
            .selected_index()
            .map(|i| &self.worklist.patients[i])
    }

    /// The patient screen's data, once loaded.
    pub fn patient_detail(&self) -> Option<&PatientDetail> {
        self.patient.as_ref().and_then(|p| p.detail.as_deref())
    }

    pub fn patient_state(&self) -> Option<&LoadState> {
        self.patient.as_ref().map(|p| &p.state)
    }

    pub fn selected_criterion(&self) -> Option<Criterion> {
        let p = self.patient.as_ref()?;
        let d = p.detail.as_ref()?;
        d.screening.checklist.get(p.selected).map(|i| i.criterion)
    }

    pub fn pane(&self) -> Option<Pane> {
        self.patient.as_ref().map(|p| p.pane)
    }

    pub fn popup(&self) -> Option<&AnswerPopup> {
        self.patient.as_ref().and_then(|p| p.popup.as_ref())
    }

    pub fn help_open(&self) -> bool {
        self.help.is_some()
    }

    pub fn message(&self) -> Option<&Message> {
        self.message.as_ref()
    }

    /// The keymap contexts that receive keys now, innermost first.
    pub fn contexts(&self) -> Vec<Context> {
        if self.jobs.confirm.is_some() {
            return vec![Context::JobConfirm, Context::Always];
        }
        if self.help.is_some() {
            return vec![Context::Help, Context::Always];
        }
        match self.screen {
            Screen::Worklist if self.worklist.searching => vec![Context::Search, Context::Always],
            Screen::Worklist => vec![Context::Worklist, Context::Global, Context::Always],
            Screen::Patient => match self.popup().map(|p| p.field) {
                Some(Field::Choice) => vec![Context::AnswerChoice, Context::Always],
                Some(Field::Reason) => vec![Context::AnswerReason, Context::Always],
                None => vec![Context::Patient, Context::Global, Context::Always],
            },
            Screen::Images => vec![Context::Images, Context::Global, Context::Always],
            Screen::Reading => vec![Context::ReaderWorklist, Context::Global, Context::Always],
            Screen::Adjudication => {
                vec![Context::AdjudicationQueue, Context::Global, Context::Always]
            }
            Screen::Agreement => vec![Context::Agreement, Context::Global, Context::Always],
            Screen::Jobs => vec![Context::Jobs, Context::Global, Context::Always],
            Screen::Model => vec![Context::Model, Context::Global, Context::Always],
            Screen::Dashboard => vec![Context::Dashboard, Context::Global, Context::Always],
            Screen::BoxPatients => vec![Context::BoxPatients, Context::Global, Context::Always],
            Screen::Followup if self.visit_form().is_some() => {
                vec![Context::VisitForm, Context::Always]
            }
            Screen::Followup => vec![Context::Followup, Context::Global, Context::Always],
            Screen::Summary => vec![Context::Summary, Context::Global, Context::Always],
            Screen::Case => match self.case_form() {
                Some(f) if f.is_confirming() => vec![Context::Confirm, Context::Always],
                Some(f) if f.current().is_text() && !f.is_saving() => {
                    vec![Context::CaseText, Context::Always]
                }
                Some(_) => vec![
                    Context::CaseForm,
                    Context::CaseImage,
                    Context::Global,
                    Context::Always,
                ],
                None => vec![
                    Context::CaseView,
                    Context::CaseImage,
                    Context::Global,
                    Context::Always,
                ],
            },
        }
    }

    /// Draws the whole application into the frame.
    pub fn render(&self, frame: &mut Frame) {
        super::ui::render(self, frame);
    }

    /// A key press: through the keymap to an action. Releases and repeats are ignored.
    pub fn handle_key(&mut self, key: KeyEvent) -> Vec<Request> {
        if key.kind != KeyEventKind::Press {
            return Vec::new();
        }
        let stack = self.contexts();
        match keymap::resolve(&stack, &key, &mut self.pending_key) {
            Some(action) => self.update(action),
            None => Vec::new(),
        }
    }

    /// Mouse, through the keymap: the wheel moves the focused list three rows a notch
    /// (the images screen: one image, Ctrl-wheel zooms), a click selects what is under
    /// it (a click on the selected worklist row opens it).
    pub fn handle_mouse(&mut self, m: MouseEvent) -> Vec<Request> {
        let stack = self.contexts();
        match keymap::resolve_mouse(&stack, &m) {
            Some(Action::Select) => self.click(Position::new(m.column, m.row)),
            // A radiologist's wheel steps through the stack one image a notch.
            Some(action) if self.help.is_none() && self.screen == Screen::Images => {
                self.update(action)
            }
            Some(action) => self.repeat(action, 3),
            None => Vec::new(),
        }
    }

    /// A left click at `at`, on the areas of the last render.
    fn click(&mut self, at: Position) -> Vec<Request> {
        let hits = self.hits.get();
        match self.screen {
            Screen::Worklist if hits.worklist_rows.contains(at) => {
                let row = self.worklist.offset.get() + (at.y - hits.worklist_rows.y) as usize;
                if row >= self.worklist.visible.len() {
                    return Vec::new();
                }
                if row == self.worklist.selected {
                    return self.update(Action::Open);
                }
                self.worklist.selected = row;
                Vec::new()
            }
            Screen::Patient => {
                if let Some(p) = self.patient.as_mut().filter(|p| p.popup.is_none()) {
                    if hits.checklist_rows.contains(at) {
                        let row = hits.checklist_offset + (at.y - hits.checklist_rows.y) as usize;
                        if row < p.rows() {
                            p.selected = row;
                        }
                        p.pane = Pane::Checklist;
                    } else if hits.side.contains(at) {
                        p.pane = Pane::BoneDensity;
                    }
                }
                Vec::new()
            }
            Screen::Reading | Screen::Adjudication if hits.case_list_rows.contains(at) => {
                self.click_case_list((at.y - hits.case_list_rows.y) as usize)
            }
            Screen::Images if hits.image_list_rows.contains(at) => {
                let Some(v) = self.images.as_mut() else {
                    return Vec::new();
                };
                let row = v.offset.get() + (at.y - hits.image_list_rows.y) as usize;
                let Some(target) = v.rows.get(row).map(|r| r.image()) else {
                    return Vec::new();
                };
                self.message = None;
                v.select(target);
                self.want_preview()
            }
            _ => Vec::new(),
        }
    }

    fn repeat(&mut self, action: Action, n: usize) -> Vec<Request> {
        (0..n).flat_map(|_| self.update(action)).collect()
    }

    /// Applies one action; returns what the database worker should do.
    pub fn update(&mut self, action: Action) -> Vec<Request> {
        if !matches!(action, Action::Input(_)) {
            self.message = None;
        }
        match action {
            _ if self.jobs.confirm.is_some() => self.update_confirm(action),
            Action::Quit => self.request_quit(),
            Action::ToggleHelp => {
                self.help = match self.help {
                    Some(_) => None,
                    None => Some(HelpView::default()),
                };
                Vec::new()
            }
            _ if self.help.is_some() => {
                self.update_help(action);
                Vec::new()
            }
            Action::Reload if self.summary_only => {
                self.info(
                    "the summary files were read at start: run the command again to read them anew",
                );
                Vec::new()
            }
            Action::Reload => self.reload(),
            _ => match self.screen {
                Screen::Worklist => self.update_worklist(action),
                Screen::Patient => self.update_patient(action),
                Screen::Images => self.update_images(action),
                Screen::Reading => self.update_reader_list(action),
                Screen::Adjudication => self.update_queue(action),
                Screen::Case => self.update_case(action),
                Screen::Agreement => self.update_agreement(action),
                Screen::Jobs => self.update_jobs(action),
                Screen::Model => self.update_model(action),
                Screen::Dashboard => self.update_dashboard(action),
                Screen::BoxPatients => self.update_box_patients(action),
                Screen::Followup => self.update_followup(action),
                Screen::Summary => {
                    self.update_summary(action);
                    Vec::new()
                }
            },
        }
    }

    fn update_help(&mut self, action: Action) {
        let Some(h) = self.help.as_mut() else { return };
        let (lines, fits) = h.lines.get();
        let max = lines.saturating_sub(fits);
        let page = fits.max(1) as isize;
        let delta: isize = match action {
            Action::Down => 1,
            Action::Up => -1,
            Action::PageDown => page,
            Action::PageUp => -page,
            Action::Top => isize::MIN / 2,
            Action::Bottom => isize::MAX / 2,
            Action::Back => {
                self.help = None;
                return;
            }
            _ => 0,
        };
        h.scroll = h.scroll.saturating_add_signed(delta).min(max);
    }

    fn reload(&mut self) -> Vec<Request> {
        let mut out = self.load_worklist();
        out.extend(self.reload_reading());
        out.extend(self.reload_jobs());
        out.extend(self.reload_dashboard());
        out.extend(self.reload_followup());
        if self.screen == Screen::Patient
            && let Some(p) = self.patient.as_mut()
        {
            p.state = LoadState::Loading;
            out.push(Request::LoadPatient {
                study_id: p.study_id.clone(),
            });
        }
        if self.screen == Screen::Images
            && let Some(v) = self.images.as_mut()
        {
            v.state = LoadState::Loading;
            v.failed.clear();
            out.push(Request::LoadImages {
                study_id: v.study_id.clone(),
            });
        }
        self.info("reloading from the database…");
        out
    }

    pub(crate) fn info(&mut self, text: impl Into<String>) {
        self.message = Some(Message {
            kind: MessageKind::Info,
            text: text.into(),
        });
    }

    pub(crate) fn error(&mut self, text: impl Into<String>) {
        self.message = Some(Message {
            kind: MessageKind::Error,
            text: text.into(),
        });
    }

    pub(crate) fn success(&mut self, text: impl Into<String>) {
        self.message = Some(Message {
            kind: MessageKind::Success,
            text: text.into(),
        });
    }

    fn update_worklist(&mut self, action: Action) -> Vec<Request> {
        let w = &mut self.worklist;
        let page = w.page.get().max(1) as isize;
        match action {
            Action::Down => w.move_by(1),
            Action::Up => w.move_by(-1),
            Action::Top => w.selected = 0,
            Action::Bottom => w.selected = w.visible.len().saturating_sub(1),
            Action::HalfPageDown => w.move_by(page / 2),
            Action::HalfPageUp => w.move_by(-page / 2),
            Action::PageDown => w.move_by(page),
            Action::PageUp => w.move_by(-page),
            Action::Open => return self.open_selected(),
            Action::StartSearch => w.searching = true,
            Action::Input(c) => {
                w.search.push(c);
                w.refilter(true);
            }
            Action::Backspace => {
                w.search.pop();
                w.refilter(false);
            }
            Action::ClearInput => {
                w.search.clear();
                w.refilter(false);
            }
            Action::ConfirmSearch => w.searching = false,
            Action::CancelSearch => {
                w.searching = false;
                if !w.search.is_empty() {
                    w.search.clear();
                    w.refilter(false);
                }
            }
            Action::CycleDecision => {
                w.filters.decision = cycle(&w.filters.decision, &Decision::ALL);
                w.refilter(false);
            }
            Action::CycleFlag => {
                w.filters.flag = cycle(&w.filters.flag, &Flag::ALL);
                w.refilter(false);
            }
            Action::CycleSite => {
                w.filters.site = cycle(&w.filters.site, &w.sites);
                w.refilter(false);
            }
            Action::CycleGroup => {
                w.filters.group = cycle(&w.filters.group, &Group::ALL);
                w.refilter(false);
            }
            Action::ClearFilters => {
                w.filters = Filters::default();
                w.search.clear();
                w.refilter(false);
            }
            Action::OpenReading => return self.open_reader_list(),
            Action::OpenAdjudication => return self.open_queue(),
            Action::OpenAgreement => return self.open_agreement(),
            Action::OpenJobs => return self.open_jobs(),
            Action::OpenModel => return self.open_model(),
            Action::OpenDashboard => return self.open_dashboard(),
            Action::OpenFollowup => return self.open_followup(),
            _ => {}
        }
        Vec::new()
    }

    fn open_selected(&mut self) -> Vec<Request> {
        let Some(p) = self.selected_patient() else {
            return Vec::new();
        };
        let study_id = p.study_id.clone();
        self.dashboard.patient_from_box = false;
        self.open_patient(study_id)
    }

    /// Opens a patient's screening (and loads its images).
    pub(crate) fn open_patient(&mut self, study_id: String) -> Vec<Request> {
        self.screen = Screen::Patient;
        self.patient = Some(PatientView::loading(study_id.clone()));
        self.images = Some(ImagesView::loading(study_id.clone()));
        vec![
            Request::LoadPatient {
                study_id: study_id.clone(),
            },
            Request::LoadImages { study_id },
        ]
    }

    fn open_images(&mut self) -> Vec<Request> {
        let Some(p) = self.patient.as_ref() else {
            return Vec::new();
        };
        let study_id = p.study_id.clone();
        self.screen = Screen::Images;
        match self.images.as_mut() {
            Some(v) if v.is(&study_id) => match v.state {
                LoadState::Loaded => self.want_preview(),
                LoadState::Loading => Vec::new(),
                LoadState::Failed(_) => {
                    v.state = LoadState::Loading;
                    vec![Request::LoadImages { study_id }]
                }
            },
            _ => {
                self.images = Some(ImagesView::loading(study_id.clone()));
                vec![Request::LoadImages { study_id }]
            }
        }
    }

    fn update_images(&mut self, action: Action) -> Vec<Request> {
        let presets = self
            .images
            .as_ref()
            .and_then(|v| v.current())
            .and_then(|i| self.previews.presets_of(i.instance_id));
        // The window of the frame on screen: where window/level steps start from.
        let shown_window = self
            .images
            .as_ref()
            .and_then(|v| v.key())
            .and_then(|k| self.previews.get(&k))
            .and_then(|p| p.rendered.window);
        let Some(v) = self.images.as_mut() else {
            self.screen = Screen::Patient;
            return Vec::new();
        };
        let last = v.list.len().saturating_sub(1);
        match action {
            Action::Back => {
                self.screen = if self.patient.is_some() {
                    Screen::Patient
                } else {
                    Screen::Worklist
                };
                return Vec::new();
            }
            Action::Down => v.select(v.selected + 1),
            Action::Up => v.select(v.selected.saturating_sub(1)),
            Action::Top => v.select(0),
            Action::Bottom => v.select(last),
            Action::NextFrame | Action::PrevFrame => {
                let frames = v.frames();
                if frames <= 1 {
                    self.info("this image has one frame");
                    return Vec::new();
                }
                v.frame = if action == Action::NextFrame {
                    (v.frame + 1) % frames
                } else {
                    (v.frame + frames - 1) % frames
                };
            }
            Action::CycleWindow => match presets {
                None => {
                    self.info("the image is still decoding; press w again once it shows");
                    return Vec::new();
                }
                Some(n) if n <= 1 => {
                    let what = if n == 0 {
                        "the file has no window preset: the automatic window is used"
                    } else {
                        "the file has only one window preset"
                    };
                    self.info(what);
                    return Vec::new();
                }
                Some(n) => {
                    v.voi_index = (v.voi_index + 1) % n;
                    v.window = None;
                }
            },
            Action::WindowWidth(step) | Action::WindowLevel(step) => {
                let Some((center, width)) = v
                    .window
                    .map(|(c, w)| (f64::from(c), f64::from(w)))
                    .or(shown_window)
                else {
                    self.info("this image has no window to adjust (a VOI LUT or colour), or it is still decoding");
                    return Vec::new();
                };
                let (center, width) = match action {
                    // A fifth wider or narrower a step.
                    Action::WindowWidth(_) => (center, width * if step > 0 { 1.25 } else { 0.8 }),
                    // A tenth of the width up or down a step (up = darker).
                    _ => (center + f64::from(step) * (width / 10.0).max(1.0), width),
                };
                v.window = Some((center.round() as i32, width.round().max(1.0) as i32));
            }
            Action::ZoomIn => {
                v.zoom = (v.zoom * 2).min(MAX_ZOOM);
                v.clamp_centre();
            }
            Action::ZoomOut => {
                v.zoom = (v.zoom / 2).max(1);
                v.clamp_centre();
            }
            Action::ResetView => {
                v.reset_view();
                v.window = None;
            }
            Action::Pan(dx, dy) => {
                if v.zoom <= 1 {
                    self.info("the whole image is in view; zoom in with + first");
                    return Vec::new();
                }
                // A quarter of the view a step.
                let step = 0.25 / f32::from(v.zoom);
                v.centre.0 += f32::from(dx) * step;
                v.centre.1 += f32::from(dy) * step;
                v.clamp_centre();
            }
            _ => return Vec::new(),
        }
        self.want_preview()
    }

    /// Asks for the selected frame unless it is drawn, on its way, or failed already
    /// (or the picker, which sizes it, is still to come).
    pub(crate) fn want_preview(&mut self) -> Vec<Request> {
        if self.picker_expected && self.picker.is_none() {
            return Vec::new();
        }
        let (fw, fh) = {
            let f = self.font_size();
            (usize::from(f.width.max(1)), usize::from(f.height.max(1)))
        };
        let Some(v) = self.images.as_mut() else {
            return Vec::new();
        };
        let (Some(key), Some(image)) = (v.key(), v.current()) else {
            return Vec::new();
        };
        if self.previews.get(&key).is_some()
            || v.pending == Some(key)
            || v.failed.contains_key(&key)
        {
            return Vec::new();
        }
        let area = v.image_area.get();
        // Before the first render: a guess at the viewer's pane on a common terminal.
        let (cols, rows) = if area.is_empty() {
            (60, 30)
        } else {
            (usize::from(area.width), usize::from(area.height))
        };
        let store_path = image.record.store_path.clone();
        v.pending = Some(key);
        vec![Request::RenderImage(RenderImage {
            key,
            store_path,
            // Twice the pane, so a 2x zoom stays sharp.
            max_w: (2 * cols * fw).min(MAX_PREVIEW_PIXELS),
            max_h: (2 * rows * fh).min(MAX_PREVIEW_PIXELS),
        })]
    }

    fn update_patient(&mut self, action: Action) -> Vec<Request> {
        if self.popup().is_some() {
            return self.update_popup(action);
        }
        let Some(p) = self.patient.as_mut() else {
            self.screen = Screen::Worklist;
            return Vec::new();
        };
        let rows = p.rows();
        let last = rows.saturating_sub(1);
        let side_page = p.side_lines.get().1.max(1) as isize;
        match (action, p.pane) {
            (Action::Back, _) => {
                self.patient = None;
                self.images = None;
                self.screen = if std::mem::take(&mut self.dashboard.patient_from_box) {
                    Screen::BoxPatients
                } else {
                    Screen::Worklist
                };
            }
            (Action::NextPane, _) => {
                p.pane = match p.pane {
                    Pane::Checklist => Pane::BoneDensity,
                    Pane::BoneDensity => Pane::Checklist,
                }
            }
            (Action::NextPatient | Action::PrevPatient, _) => {
                let delta = if action == Action::NextPatient { 1 } else { -1 };
                let before = self.worklist.selected;
                self.worklist.move_by(delta);
                if self.worklist.selected == before {
                    self.info(if delta > 0 {
                        "this is the last patient of the worklist"
                    } else {
                        "this is the first patient of the worklist"
                    });
                    return Vec::new();
                }
                return self.open_selected();
            }
            (Action::EditAnswer, _) => return self.open_popup(),
            (Action::OpenImages, _) => return self.open_images(),
            (Action::Down, Pane::Checklist) => p.selected = (p.selected + 1).min(last),
            (Action::Up, Pane::Checklist) => p.selected = p.selected.saturating_sub(1),
            (Action::Top, Pane::Checklist) | (Action::PageUp, Pane::Checklist) => p.selected = 0,
            (Action::Bottom, Pane::Checklist) | (Action::PageDown, Pane::Checklist) => {
                p.selected = last
            }
            (Action::Down, Pane::BoneDensity) => p.scroll_side(1),
            (Action::Up, Pane::BoneDensity) => p.scroll_side(-1),
            (Action::PageDown, Pane::BoneDensity) => p.scroll_side(side_page),
            (Action::PageUp, Pane::BoneDensity) => p.scroll_side(-side_page),
            (Action::Top, Pane::BoneDensity) => p.side_scroll = 0,
            (Action::Bottom, Pane::BoneDensity) => p.scroll_side(isize::MAX / 2),
            _ => {}
        }
        Vec::new()
    }

    fn open_popup(&mut self) -> Vec<Request> {
        if !self.session.role.allows(Permission::Screen) {
            let e = DbError::NotAllowed {
                user: self.session.user.clone(),
                role: self.session.role.to_string(),
                what: Permission::Screen.describe().into(),
            };
            self.error(e.to_string());
            return Vec::new();
        }
        let Some(p) = self.patient.as_mut() else {
            return Vec::new();
        };
        let Some(item) = p
            .detail
            .as_ref()
            .and_then(|d| d.screening.checklist.get(p.selected))
        else {
            return Vec::new();
        };
        p.popup = Some(AnswerPopup {
            criterion: item.criterion,
            choice: item.manual.map_or(Choice::Yes, Choice::of),
            field: Field::Choice,
            reason: String::new(),
            saving: false,
            error: None,
        });
        Vec::new()
    }

    fn update_popup(&mut self, action: Action) -> Vec<Request> {
        let Some(p) = self.patient.as_mut() else {
            return Vec::new();
        };
        let Some(popup) = p.popup.as_mut() else {
            return Vec::new();
        };
        let step = |c: Choice, d: isize| {
            let i = Choice::ALL.iter().position(|x| *x == c).unwrap_or(0) as isize;
            Choice::ALL[(i + d).rem_euclid(Choice::ALL.len() as isize) as usize]
        };
        match action {
            Action::Back => p.popup = None,
            Action::Choose(c) => {
                popup.choice = c;
                popup.field = Field::Reason;
            }
            Action::Down => popup.choice = step(popup.choice, 1),
            Action::Up => popup.choice = step(popup.choice, -1),
            Action::NextField => {
                popup.field = match popup.field {
                    Field::Choice => Field::Reason,
                    Field::Reason => Field::Choice,
                }
            }
            Action::Input(c) => popup.reason.push(c),
            Action::Backspace => {
                popup.reason.pop();
            }
            Action::ClearInput => popup.reason.clear(),
            Action::Save => {
                if popup.saving {
                    return Vec::new();
                }
                if popup.reason.trim().is_empty() {
                    if popup.field == Field::Choice {
                        popup.field = Field::Reason;
                    } else {
                        popup.error =
                            Some("type a reason first: it goes into the audit trail".into());
                    }
                    return Vec::new();
                }
                let Some(detail) = p.detail.as_ref() else {
                    return Vec::new();
                };
                let criterion = popup.criterion;
                let has_manual = detail
                    .screening
                    .checklist
                    .iter()
                    .any(|i| i.criterion == criterion && i.manual.is_some());
                if popup.choice == Choice::Clear && !has_manual {
                    popup.error = Some(format!(
                        "{criterion} has no manual answer to clear; pick yes, no or unknown"
                    ));
                    return Vec::new();
                }
                popup.saving = true;
                popup.error = None;
                return vec![Request::SetAnswer(SetAnswer {
                    study_id: detail.summary.study_id.clone(),
                    criterion,
                    answer: popup.choice.answer(),
                    reason: popup.reason.trim().to_string(),
                    expected_version: detail.summary.version,
                })];
            }
            _ => {}
        }
        Vec::new()
    }

    /// Takes one response of a worker; returns the requests that follow from it (the
    /// first frame of an image list that arrived while the images screen is open).
    pub fn apply(&mut self, response: Response) -> Vec<Request> {
        if super::reading::is_reading_response(&response) {
            return self.apply_reading(response);
        }
        if super::jobs::is_jobs_response(&response) {
            return self.apply_jobs(response);
        }
        if super::dashboard::is_dashboard_response(&response) {
            return self.apply_dashboard(response);
        }
        if super::followup::is_followup_response(&response) {
            return self.apply_followup(response);
        }
        match response {
            Response::Images { study_id, images } => {
                if let Some(v) = self.images.as_mut().filter(|v| v.is(&study_id)) {
                    let keep = v.current().map(|i| i.instance_id);
                    v.set_list(images);
                    v.state = LoadState::Loaded;
                    let at = keep
                        .and_then(|id| v.list.iter().position(|i| i.instance_id == id))
                        .unwrap_or(0);
                    v.selected = at;
                    v.frame = v.frame.min(v.frames() - 1);
                    if self.screen == Screen::Images {
                        return self.want_preview();
                    }
                }
            }
            Response::ImagesFailed { study_id, error } => {
                if let Some(v) = self.images.as_mut().filter(|v| v.is(&study_id)) {
                    v.state = LoadState::Failed(error.clone());
                    if self.screen == Screen::Images {
                        self.error(format!("the images did not load: {error}"));
                    }
                }
            }
            Response::Rendered { key, result } => {
                let v = self.images.as_mut();
                match result {
                    Ok(preview) => {
                        self.previews.insert(key, preview);
                    }
                    Err(e) => {
                        if let Some(v) = v {
                            v.failed.insert(key, e);
                        }
                    }
                }
                if let Some(v) = self.images.as_mut()
                    && v.pending == Some(key)
                {
                    v.pending = None;
                }
            }
            Response::Worklist { patients, status } => {
                self.worklist.set_patients(patients, &self.session.sites);
                if let Some(s) = status {
                    self.status = Some(s);
                }
                if self
                    .message
                    .as_ref()
                    .is_some_and(|m| m.kind == MessageKind::Info)
                {
                    self.message = None;
                }
            }
            Response::WorklistFirstPage { patients, status } => {
                // Shown at once; the worklist stays Loading until the whole list arrives.
                if self.worklist.patients.is_empty() {
                    self.worklist.set_patients(patients, &self.session.sites);
                    self.worklist.state = LoadState::Loading;
                }
                if let Some(s) = status {
                    self.status = Some(s);
                }
            }
            Response::WorklistFailed(e) => {
                self.error(format!("the worklist did not load: {e}"));
                self.worklist.state = LoadState::Failed(e);
            }
            Response::Patient(detail) => {
                self.worklist.replace(detail.summary.clone());
                if let Some(p) = self
                    .patient
                    .as_mut()
                    .filter(|p| p.is(&detail.summary.study_id))
                {
                    p.selected = p
                        .selected
                        .min(detail.screening.checklist.len().saturating_sub(1));
                    p.detail = Some(detail);
                    p.state = LoadState::Loaded;
                }
            }
            Response::PatientFailed { study_id, error } => {
                if let Some(p) = self.patient.as_mut().filter(|p| p.is(&study_id)) {
                    p.state = LoadState::Failed(error.clone());
                    self.error(error);
                }
            }
            Response::Saved {
                detail,
                criterion,
                answer,
                status,
            } => {
                if let Some(s) = status {
                    self.status = Some(s);
                }
                let sid = detail.summary.study_id.clone();
                let decision = detail.summary.decision;
                self.worklist.replace(detail.summary.clone());
                if let Some(p) = self.patient.as_mut().filter(|p| p.is(&sid)) {
                    if p.popup.as_ref().is_some_and(|x| x.criterion == criterion) {
                        p.popup = None;
                    }
                    p.detail = Some(detail);
                    p.state = LoadState::Loaded;
                }
                let what = match answer {
                    Some(a) => format!("{criterion} set to {}", a.label(criterion)),
                    None => format!("{criterion} manual answer cleared"),
                };
                self.message = Some(Message {
                    kind: MessageKind::Success,
                    text: format!(
                        "saved: {sid} {what}; now {} {decision}",
                        super::theme::Verdict::of_decision(decision).symbol()
                    ),
                });
            }
            Response::SaveFailed {
                study_id,
                criterion,
                kind,
                error,
                fresh,
            } => {
                if let Some(f) = &fresh {
                    self.worklist.replace(f.summary.clone());
                }
                if let Some(p) = self.patient.as_mut().filter(|p| p.is(&study_id)) {
                    if let Some(f) = fresh {
                        p.detail = Some(f);
                        p.state = LoadState::Loaded;
                    }
                    if kind == SaveFailure::NotAllowed {
                        p.popup = None;
                    } else if let Some(popup) =
                        p.popup.as_mut().filter(|x| x.criterion == criterion)
                    {
                        // The typed reason stays: the user answers again on the fresh data.
                        popup.saving = false;
                        popup.error = Some(match kind {
                            SaveFailure::Conflict => {
                                format!(
                                    "{error} (reloaded; your reason is kept: press Enter to save again)"
                                )
                            }
                            _ => error.clone(),
                        });
                    }
                }
                self.error(error);
            }
            // Taken by `apply_reading` above.
            Response::ReaderWorklist(_)
            | Response::TakenCase(_)
            | Response::Case { .. }
            | Response::ReadSubmitted { .. }
            | Response::AdjudicationQueue(_)
            | Response::Adjudicated { .. }
            | Response::Agreement(_)
            | Response::Explanation { .. } => {}
            // Taken by `apply_jobs` above.
            Response::Jobs(_)
            | Response::JobQueued(_)
            | Response::JobCancel { .. }
            | Response::JobEnded { .. }
            | Response::Evaluation { .. }
            | Response::ModelActivated { .. } => {}
            // Taken by `apply_dashboard` above.
            Response::Dashboard(_) | Response::BoxPatients { .. } => {}
            // Taken by `apply_followup` above.
            Response::Followup { .. } | Response::VisitRecorded { .. } => {}
            Response::WorkerStopped => {
                self.reading_worker_stopped();
                self.jobs_worker_stopped();
                self.dashboard_worker_stopped();
                self.followup_worker_stopped();
                self.error(
                    "the database worker stopped; quit and start marrow again (details in the log)",
                );
                if self.worklist.state == LoadState::Loading {
                    self.worklist.state = LoadState::Failed("database worker stopped".into());
                }
                if let Some(p) = self.patient.as_mut() {
                    if p.state == LoadState::Loading {
                        p.state = LoadState::Failed("database worker stopped".into());
                    }
                    if let Some(popup) = p.popup.as_mut() {
                        popup.saving = false;
                    }
                }
                if let Some(v) = self.images.as_mut() {
                    if v.state == LoadState::Loading {
                        v.state = LoadState::Failed("database worker stopped".into());
                    }
                    if let Some(key) = v.pending.take() {
                        v.failed.insert(key, "the image thread stopped".into());
                    }
                }
            }
        }
        Vec::new()
    }
}
