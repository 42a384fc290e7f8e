//! The combined view of two sites' aggregate summaries (`marrow summary merge A.json
//! B.json --tui`): a read-only screen of the counts of each file side by side and their
//! total (`summary::merge`). A suppressed cell stays "<5" and a total over one is a
//! range: no count the files hid is ever shown as a number. It needs no study database:
//! the app runs without a worker and nobody logs in (the files hold no patient data).

use super::app::{App, LoadState, Screen, Session};
use super::keymap::Action;
use crate::domain::summary::{self, Count, Summary};
use crate::domain::user::Role;
use std::cell::Cell;
use std::path::Path;

/// One summary file: its column heading and its counts.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryPart {
    pub label: String,
    /// The file's name without its extension (the heading when labels collide).
    pub file: String,
    pub summary: Summary,
}

impl SummaryPart {
    /// A file's summary, headed by its sites (or the file's name when it has none).
    pub fn of_file(path: &Path, summary: Summary) -> SummaryPart {
        let file = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "summary".into());
        let label = if summary.sites.is_empty() {
            file.clone()
        } else {
            summary.sites.join("+")
        };
        SummaryPart {
            label,
            file,
            summary,
        }
    }
}

/// A line of the combined table.
#[derive(Debug, Clone, PartialEq)]
pub enum SummaryLine {
    Heading(String),
    /// A count per part (`None`: the part has no such row) and the combined one.
    Row {
        label: String,
        indent: usize,
        cells: Vec<Option<Count>>,
        total: Count,
    },
    Note(String),
    Blank,
}

/// The combined summary screen.
#[derive(Debug)]
pub struct SummaryView {
    pub(crate) parts: Vec<SummaryPart>,
    pub(crate) merged: Summary,
    pub(crate) scroll: usize,
    /// Lines of the table and how many fit, from the last render.
    pub(crate) lines: Cell<(usize, usize)>,
    /// The screen it was opened from (`None`: the app shows nothing else).
    pub(crate) from: Option<Screen>,
}

fn row(label: impl Into<String>, cells: Vec<Option<Count>>, total: Count) -> SummaryLine {
    SummaryLine::Row {
        label: label.into(),
        indent: 0,
        cells,
        total,
    }
}

/// A CONSORT box's count in each part (`None`: the part has no such box).
fn box_cells(
    parts: &[SummaryPart],
    pick: fn(&Summary) -> &[summary::BoxSummary],
    key: &str,
) -> Vec<Option<Count>> {
    parts
        .iter()
        .map(|p| {
            pick(&p.summary)
                .iter()
                .find(|x| x.key == key)
                .map(|x| x.count)
        })
        .collect()
}

impl SummaryView {
    pub fn parts(&self) -> &[SummaryPart] {
        &self.parts
    }

    pub fn merged(&self) -> &Summary {
        &self.merged
    }

    pub fn scroll(&self) -> usize {
        self.scroll
    }

    /// The table: totals, enrollment per cohort, the CONSORT flow, reading, follow-up,
    /// enrollment by month and the merge's notes.
    pub fn lines(&self) -> Vec<SummaryLine> {
        let m = &self.merged;
        let each = |f: fn(&Summary) -> Count| -> Vec<Option<Count>> {
            self.parts.iter().map(|p| Some(f(&p.summary))).collect()
        };
        let mut out = vec![SummaryLine::Heading("Patients".into())];
        out.push(row("assessed", each(|s| s.patients), m.patients));
        out.push(row("eligible", each(|s| s.eligible), m.eligible));
        out.push(row("ineligible", each(|s| s.ineligible), m.ineligible));
        out.push(row("pending", each(|s| s.pending), m.pending));
        out.push(row("missing DXA", each(|s| s.missing_dxa), m.missing_dxa));
        out.push(SummaryLine::Blank);
        out.push(SummaryLine::Heading(
            "Enrollment: eligible per cohort (target)".into(),
        ));
        for c in &m.cohorts {
            let cells = self
                .parts
                .iter()
                .map(|p| {
                    p.summary
                        .cohorts
                        .iter()
                        .find(|x| x.site == c.site && x.group == c.group && x.phase == c.phase)
                        .map(|x| x.eligible)
                })
                .collect();
            out.push(row(
                format!(
                    "{} {} {} ({})",
                    c.site,
                    c.group.code(),
                    c.phase.code(),
                    c.target
                ),
                cells,
                c.eligible,
            ));
        }
        out.push(SummaryLine::Blank);
        out.push(SummaryLine::Heading("CONSORT flow".into()));
        for b in &m.consort {
            out.push(SummaryLine::Row {
                label: b.label.clone(),
                indent: 0,
                cells: box_cells(&self.parts, |s| s.consort.as_slice(), &b.key),
                total: b.count,
            });
            if b.key == "excluded" {
                for x in &m.consort_excluded_by {
                    out.push(SummaryLine::Row {
                        label: x.label.clone(),
                        indent: 2,
                        cells: box_cells(&self.parts, |s| s.consort_excluded_by.as_slice(), &x.key),
                        total: x.count,
                    });
                }
            }
        }
        out.push(SummaryLine::Blank);
        out.push(SummaryLine::Heading("Reading".into()));
        let r = &m.reading;
        out.push(row("images", each(|s| s.reading.images), r.images));
        out.push(row(
            "reads pending",
            each(|s| s.reading.reads_pending),
            r.reads_pending,
        ));
        out.push(row(
            "adjudication pending",
            each(|s| s.reading.adjudication_pending),
            r.adjudication_pending,
        ));
        out.push(row(
            "final graded",
            each(|s| s.reading.final_graded),
            r.final_graded,
        ));
        out.push(SummaryLine::Blank);
        out.push(SummaryLine::Heading("Follow-up visits".into()));
        let f = &m.follow_up;
        out.push(row("done", each(|s| s.follow_up.done), f.done));
        out.push(row("due", each(|s| s.follow_up.due), f.due));
        out.push(row("overdue", each(|s| s.follow_up.overdue), f.overdue));
        out.push(row(
            "not yet due",
            each(|s| s.follow_up.not_yet_due),
            f.not_yet_due,
        ));
        if !m.enrollment_by_month.is_empty() {
            out.push(SummaryLine::Blank);
            out.push(SummaryLine::Heading(
                "Eligible by month of index date".into(),
            ));
            for mo in &m.enrollment_by_month {
                let cells = self
                    .parts
                    .iter()
                    .map(|p| {
                        p.summary
                            .enrollment_by_month
                            .iter()
                            .find(|x| x.month == mo.month)
                            .map(|x| x.eligible)
                    })
                    .collect();
                out.push(row(mo.month.clone(), cells, mo.eligible));
            }
        }
        if !m.notes.is_empty() {
            out.push(SummaryLine::Blank);
            out.extend(m.notes.iter().map(|n| SummaryLine::Note(n.clone())));
        }
        out
    }

    fn scroll_by(&mut self, action: Action) {
        let (lines, fits) = self.lines.get();
        let max = lines.saturating_sub(fits);
        let page = fits.max(1) as isize;
        let delta: isize = match action {
            Action::Down => 1,
            Action::Up => -1,
            Action::PageDown => page,
            Action::PageUp => -page,
            Action::Top => isize::MIN / 2,
            Action::Bottom => isize::MAX / 2,
            _ => 0,
        };
        self.scroll = self.scroll.saturating_add_signed(delta).min(max);
    }
}

impl App {
    /// An app that shows only the combined view of summary files (no database, no
    /// worker): `marrow summary merge A.json B.json --tui`. Two parts are merged with
    /// `summary::merge`, more one after the other.
    pub fn summary_only(mut parts: Vec<SummaryPart>) -> Result<App, String> {
        let Some(first) = parts.first() else {
            return Err("no summary to show".into());
        };
        let mut merged = first.summary.clone();
        merged.check()?;
        for p in &parts[1..] {
            merged = summary::merge(&merged, &p.summary)?;
        }
        // Two files of the same sites are headed by their file names.
        let labels: Vec<String> = parts.iter().map(|p| p.label.clone()).collect();
        for p in parts.iter_mut() {
            if labels.iter().filter(|l| **l == p.label).count() > 1 {
                p.label = p.file.clone();
            }
        }
        let session = Session {
            user: std::env::var("USER").unwrap_or_else(|_| "you".into()),
            // Nothing here writes or unblinds: the role only fills the type.
            role: Role::Pi,
            sites: merged.sites.clone(),
            warning: None,
        };
        let mut app = App::new(session);
        app.worklist.state = LoadState::Loaded;
        app.summary_only = true;
        app.screen = Screen::Summary;
        app.summary = Some(SummaryView {
            parts,
            merged,
            scroll: 0,
            lines: Cell::new((0, 0)),
            from: None,
        });
        Ok(app)
    }

    pub fn summary_view(&self) -> Option<&SummaryView> {
        self.summary.as_ref()
    }

    /// Whether the app shows only summary files (no study open).
    pub fn is_summary_only(&self) -> bool {
        self.summary_only
    }

    pub(crate) fn update_summary(&mut self, action: Action) {
        let Some(v) = self.summary.as_mut() else {
            self.screen = Screen::Worklist;
            return;
        };
        if action != Action::Back {
            v.scroll_by(action);
            return;
        }
        match v.from {
            Some(s) => self.screen = s,
            None => self.info("nothing is open behind the summary: q quits"),
        }
    }
}
