//! The jobs screen: every inference and training job, newest first, each with a gauge
//! of its progress, its rate and its last message; the selected job's details below;
//! and the confirmation popup of the jobs keys (and of quitting while a job runs).

use super::confirm;
use super::images::block;
use super::{ellipsize, scroll_offset, wrap};
use crate::db::inference::{JobKind, JobRow, JobState};
use crate::domain::user::Permission;
use crate::tui::app::{App, LoadState};
use crate::tui::jobs::{Confirmation, images_per_second, task_label};
use crate::tui::keymap::{Action, Context, KEYMAP};
use crate::tui::theme::Theme;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Margin, Rect};
use ratatui::style::Style;
use ratatui::symbols;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, LineGauge, Paragraph};

/// Rows a job takes in the list.
const JOB_ROWS: u16 = 2;

/// The key of a jobs-screen action, from the keymap (so the note never lies).
fn key_of(action: Action) -> String {
    KEYMAP
        .iter()
        .find(|b| b.context == Context::Jobs && b.action == action)
        .and_then(|b| b.keys.first())
        .map(|k| k.label())
        .unwrap_or_default()
}

/// The state in words with its symbol (never colour alone), and its style.
pub fn state_span(t: &Theme, j: &JobRow) -> Span<'static> {
    let (text, style) = match j.state {
        JobState::Queued => ("… queued", t.muted()),
        JobState::Running if j.cancel_requested => ("▶ stopping", t.warning()),
        JobState::Running => ("▶ running", t.focused_title()),
        JobState::Done => ("✓ done", t.success()),
        JobState::Failed => ("✗ failed", t.error()),
        JobState::Cancelled => ("■ cancelled", t.muted()),
    };
    Span::styled(text, style)
}

/// "128/300 · 14.2 img/s", "3/20 epochs".
pub fn progress_label(j: &JobRow) -> String {
    let n = j.done + j.failed;
    match (j.kind, images_per_second(j)) {
        (JobKind::Train, _) => format!("{n}/{} epochs", j.total),
        (_, Some(rate)) => format!("{n}/{} · {rate:.1} img/s", j.total),
        (_, None) => format!("{n}/{}", j.total),
    }
}

/// "2026-11-27 17:03:05" from a stored UTC timestamp.
fn when(at: &str) -> String {
    at.get(..19).unwrap_or(at).replace('T', " ")
}

fn gauge_styles(t: &Theme, j: &JobRow) -> (Style, Style) {
    let filled = match j.state {
        JobState::Done => t.success(),
        JobState::Failed => t.error(),
        JobState::Cancelled | JobState::Queued => t.muted(),
        JobState::Running => t.focused_border(),
    };
    (filled, t.muted())
}

/// The note above the list: what the keys do, or why they are refused.
fn note(app: &App, width: usize) -> Line<'static> {
    let t = &app.theme;
    if app.session.role.allows(Permission::Model) {
        let text = format!(
            "{}: infer images not yet predicted · {}: all images · {}: cancel selected job",
            key_of(Action::InferPending),
            key_of(Action::InferAll),
            key_of(Action::CancelJob)
        );
        Line::styled(ellipsize(&text, width), t.muted())
    } else {
        let text = format!(
            "Read-only: coordinators and admins start and cancel jobs (you are {}).",
            app.session.role
        );
        Line::styled(ellipsize(&text, width), t.warning())
    }
}

/// One job's two rows: id, kind, task, state, gauge and progress; then its message.
fn render_job(app: &App, j: &JobRow, selected: bool, label_w: u16, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let [top, bottom] =
        Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(area);
    let marker = if selected { "▶ " } else { "  " };
    let head = Line::from(vec![
        Span::styled(
            format!(
                "{marker}{:>4}  {:<5}  {:<5}  ",
                j.id,
                j.kind.code(),
                task_label(j.task)
            ),
            if selected { t.selected() } else { t.text() },
        ),
        state_span(t, j),
    ]);
    let label = progress_label(j);
    let [text, gauge, progress] = Layout::horizontal([
        Constraint::Length(34),
        Constraint::Fill(1),
        Constraint::Length(label_w),
    ])
    .areas(top);
    frame.render_widget(head, text);
    let (filled, unfilled) = gauge_styles(t, j);
    frame.render_widget(
        LineGauge::default()
            .ratio(j.fraction())
            .filled_symbol(symbols::line::THICK_HORIZONTAL)
            .unfilled_symbol(symbols::line::HORIZONTAL)
            .filled_style(filled)
            .unfilled_style(unfilled),
        gauge.inner(Margin::new(1, 0)),
    );
    frame.render_widget(Line::raw(label).right_aligned(), progress);
    let message = match (j.state, j.message.as_deref()) {
        (_, Some(m)) if !m.is_empty() => m.to_string(),
        (JobState::Queued, _) => "waiting for its turn".to_string(),
        _ => String::new(),
    };
    let indent = 8usize;
    let width = (bottom.width as usize).saturating_sub(indent);
    frame.render_widget(
        Line::styled(
            format!("{:indent$}{}", "", ellipsize(&message, width)),
            t.muted(),
        ),
        bottom,
    );
}

/// The selected job in full.
fn details(j: &JobRow, width: usize) -> Vec<String> {
    let mut first = format!("scope {}", j.scope);
    if !j.backend.is_empty() {
        first.push_str(&format!(" · backend {}", j.backend));
    }
    if let Some(m) = j.model_version.as_deref().filter(|m| !m.is_empty()) {
        first.push_str(&format!(" · {m}"));
    }
    let mut second = format!("created {} by {}", when(&j.created_at), j.created_by);
    if let Some(s) = &j.started_at {
        second.push_str(&format!(" · started {}", when(s)));
    }
    if let Some(f) = &j.finished_at {
        second.push_str(&format!(" · ended {}", when(f)));
    }
    if j.failed > 0 {
        second.push_str(&format!(" · {} images unreadable", j.failed));
    }
    let mut out = wrap(&first, width);
    out.extend(wrap(&second, width));
    if let Some(m) = j.message.as_deref().filter(|m| !m.is_empty()) {
        out.extend(wrap(m, width));
    }
    out
}

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let Some(v) = app.jobs_view() else {
        return;
    };
    let b = block(t, "Jobs: inference and training".into(), true);
    let inner = b.inner(area).inner(Margin::new(1, 0));
    frame.render_widget(b, area);
    let width = inner.width as usize;
    let [note_area, head_area, list_area, detail_area] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(5),
    ])
    .areas(inner);
    frame.render_widget(note(app, width), note_area);
    let body: Vec<Line> = match (&v.state, v.rows.is_empty()) {
        (LoadState::Failed(e), _) => vec![
            Line::styled(format!("✗ the jobs did not load: {e}"), t.error()),
            Line::styled("Press r to try again, Esc to go back.", t.muted()),
        ],
        (LoadState::Loading, true) => vec![Line::styled("… loading the jobs", t.muted())],
        (_, true) => {
            let mut l = vec![Line::raw("No job yet.")];
            if app.session.role.allows(Permission::Model) {
                l.push(Line::styled(
                    format!(
                        "{} starts an inference job over the images without a prediction; \
                         `marrow infer` does the same from a shell.",
                        key_of(Action::InferPending)
                    ),
                    t.muted(),
                ));
            }
            l
        }
        _ => Vec::new(),
    };
    if !body.is_empty() {
        let lines: Vec<Line> = body
            .into_iter()
            .flat_map(|l| {
                let style = l.style;
                wrap(&l.to_string(), width)
                    .into_iter()
                    .map(move |s| Line::styled(s, style))
            })
            .collect();
        frame.render_widget(
            Paragraph::new(lines),
            Rect {
                y: head_area.y,
                height: head_area.height + list_area.height,
                ..head_area
            },
        );
        return;
    }
    frame.render_widget(
        Line::styled(
            ellipsize(
                &format!(
                    "  {:>4}  {:<5}  {:<5}  {:<12}  {}",
                    "job", "kind", "task", "state", "progress"
                ),
                width,
            ),
            t.table_header(),
        ),
        head_area,
    );
    let fits = (list_area.height / JOB_ROWS) as usize;
    let offset = scroll_offset(v.offset.get(), v.selected, v.rows.len(), fits);
    v.offset.set(offset);
    let shown = || v.rows.iter().enumerate().skip(offset).take(fits);
    // One width for every progress label, so the gauges line up.
    let label_w = shown()
        .map(|(_, j)| progress_label(j).chars().count() as u16 + 1)
        .max()
        .unwrap_or(0)
        .max(10);
    for (i, j) in shown() {
        let y = list_area.y + ((i - offset) as u16) * JOB_ROWS;
        let row = Rect::new(list_area.x, y, list_area.width, JOB_ROWS);
        render_job(app, j, i == v.selected, label_w, frame, row);
    }
    if v.rows.len() > fits {
        let more = format!(
            " {}-{}/{} ",
            offset + 1,
            (offset + fits).min(v.rows.len()),
            v.rows.len()
        );
        let w = more.chars().count() as u16;
        frame.render_widget(
            Line::styled(more, t.muted()),
            Rect::new(
                area.right().saturating_sub(w + 1),
                area.bottom().saturating_sub(1),
                w.min(area.width),
                1,
            ),
        );
    }
    if let Some(j) = v.selected() {
        let b = Block::default()
            .borders(Borders::TOP)
            .border_style(t.border())
            .title(Span::styled(
                format!(" job {}: {} {} ", j.id, j.kind.code(), task_label(j.task)),
                t.title(),
            ));
        let inner = b.inner(detail_area);
        frame.render_widget(b, detail_area);
        let lines: Vec<Line> = details(j, inner.width as usize)
            .into_iter()
            .map(|l| Line::styled(l, t.muted()))
            .collect();
        frame.render_widget(Paragraph::new(lines), inner);
    }
}

/// The confirmation popup: infer every image, cancel a job, or quit while jobs run.
pub fn render_confirm(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let Some(c) = app.confirmation() else {
        return;
    };
    let inner_w = confirm::text_width(area);
    if let Confirmation::ActivateModel {
        task,
        old,
        old_figures,
        new,
        new_figures,
    } = c
    {
        // The two versions side by side: label, model, validation figures.
        let mut lines: Vec<Line> = vec![Line::styled(
            ellipsize(
                &format!("The {} model `marrow infer` uses:", task.code()),
                inner_w,
            ),
            t.title(),
        )];
        let label_w = 5;
        let model_w = old.chars().count().max(new.chars().count());
        for (what, model, figures, style) in [
            ("now", old, old_figures, t.muted()),
            ("new", new, new_figures, t.title()),
        ] {
            let row = format!("{what:<label_w$} {model:<model_w$}");
            if row.chars().count() + 2 + figures.chars().count() <= inner_w {
                lines.push(Line::styled(format!("{row}  {figures}"), style));
            } else {
                lines.push(Line::styled(ellipsize(&row, inner_w), style));
                lines.push(Line::styled(
                    ellipsize(&format!("{:label_w$} {figures}", ""), inner_w),
                    style,
                ));
            }
        }
        lines.push(Line::raw(""));
        for l in wrap(
            "Validation figures from each model's card. The switch is audited (who, \
             when, both versions); predictions already made stay, `n` on the jobs \
             screen predicts with the new one.",
            inner_w,
        ) {
            lines.push(Line::styled(l, t.muted()));
        }
        let title = format!("Make {new} the active {} model?", task.code());
        confirm::render(t, frame, area, &title, lines, Context::JobConfirm);
        return;
    }
    let (title, head, note) = match c {
        Confirmation::InferAll => (
            "Infer every image again?".to_string(),
            "The active KL and OP models predict every image again, not only those \
             without a prediction."
                .to_string(),
            "It runs in the background on its own connection; c cancels it.",
        ),
        Confirmation::Cancel { what, .. } => (
            "Cancel the job?".to_string(),
            format!("Cancel {what}?"),
            "It stops after its current batch; the predictions made so far are kept \
             (n finishes the rest later).",
        ),
        Confirmation::ActivateModel { .. } => return,
        Confirmation::Quit { jobs } => {
            let ids = jobs
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            let head = match jobs.len() {
                0 => "A job is starting; it will be cancelled.".to_string(),
                1 => format!("A job is running (job {ids}); it will be cancelled."),
                _ => format!("Jobs are running (jobs {ids}); they will be cancelled."),
            };
            (
                "Quit marrow?".to_string(),
                head,
                "marrow quits once the job has stopped (after its current batch); the \
                 predictions made so far are kept, and `marrow infer --pending` finishes \
                 the rest.",
            )
        }
    };
    let mut lines: Vec<Line> = Vec::new();
    for l in wrap(&head, inner_w) {
        lines.push(Line::styled(l, t.title()));
    }
    lines.push(Line::raw(""));
    for l in wrap(note, inner_w) {
        lines.push(Line::styled(l, t.muted()));
    }
    confirm::render(t, frame, area, &title, lines, Context::JobConfirm);
}
