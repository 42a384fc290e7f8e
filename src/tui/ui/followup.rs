//! The follow-up screen: the visits due in the next 30 days and the overdue ones (or
//! one patient's planned visits) as a table, and the visit form drawn over it. Readers
//! see why they are blinded to it.

use super::images::block;
use super::{ellipsize, footer_line, thousands, wrap};
use crate::domain::followup::VisitState;
use crate::tui::app::{App, LoadState};
use crate::tui::followup::{DUE_DAYS, VisitField, visit_text};
use crate::tui::keymap::{self, Context};
use crate::tui::theme::Theme;
use crate::tui::worker::FollowupScope;
use ratatui::Frame;
use ratatui::layout::{Constraint, Margin, Position, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

/// A state with its symbol (never colour alone) and style.
fn state_span(t: &Theme, s: VisitState) -> (&'static str, Style) {
    match s {
        VisitState::Overdue => ("! overdue", t.warning()),
        VisitState::Due => ("○ due", t.text()),
        VisitState::NotYetDue => ("· soon", t.muted()),
        VisitState::Done => ("✓ done", t.success()),
    }
}

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let view = app.followup_view();
    let title = match view.map(|v| v.scope()) {
        Some(FollowupScope::Patient(id)) => format!("Follow-up: every planned visit of {id}"),
        _ => format!("Follow-up: visits due in the next {DUE_DAYS} days and overdue"),
    };
    let b = block(
        t,
        ellipsize(&title, area.width.saturating_sub(6) as usize),
        app.visit_form().is_none(),
    );
    let inner = b.inner(area).inner(Margin::new(1, 0));
    frame.render_widget(b, area);
    let width = inner.width as usize;
    if app.followup_blinded() {
        let mut lines = vec![Line::styled(
            "Blinded: readers do not see follow-up visits.",
            t.warning(),
        )];
        for l in wrap(
            "Pain scores, knee scores and new fractures are clinical findings a blinded \
             reader must not see. Coordinators and admins enter visits here; PIs and \
             adjudicators look.",
            width,
        ) {
            lines.push(Line::styled(l, t.muted()));
        }
        frame.render_widget(Paragraph::new(lines), inner);
        return;
    }
    let Some(v) = view else {
        return;
    };
    let rows = v.rows();
    let sep = || Span::styled(" · ", t.muted());
    let mut lines = Vec::new();
    lines.push(match v.state() {
        LoadState::Failed(e) => Line::styled(
            ellipsize(
                &format!("could not load the visits: {e} (r: try again)"),
                width,
            ),
            t.error(),
        ),
        LoadState::Loading if rows.is_empty() => Line::styled("loading the visits…", t.muted()),
        _ => {
            let mut spans = vec![Span::styled(
                format!("{} visits", thousands(rows.len() as u64)),
                t.title(),
            )];
            for s in [
                VisitState::Overdue,
                VisitState::Due,
                VisitState::NotYetDue,
                VisitState::Done,
            ] {
                let n = rows
                    .iter()
                    .filter(|r| r.state == s && !(r.baseline && r.recorded.is_none()))
                    .count();
                if n > 0 {
                    let (word, style) = state_span(t, s);
                    spans.push(sep());
                    spans.push(Span::styled(format!("{n} {word}"), style));
                }
            }
            if let Some(d) = v.today() {
                spans.push(sep());
                spans.push(Span::styled(format!("today {d}"), t.muted()));
            }
            if *v.state() == LoadState::Loading {
                spans.push(sep());
                spans.push(Span::styled("reloading…", t.muted()));
            }
            Line::from(spans)
        }
    });
    let note = if app.may_record_visits() {
        "Enter: enter or correct the selected visit · p: all visits of its patient"
    } else {
        "read-only: coordinators and admins enter visits · p: all visits of the patient"
    };
    lines.push(Line::styled(ellipsize(note, width), t.muted()));
    if rows.is_empty() {
        if *v.state() == LoadState::Loaded {
            lines.push(Line::styled(
                match v.scope() {
                    FollowupScope::Due { .. } => {
                        "no visit is due in the next 30 days and none is overdue"
                    }
                    FollowupScope::Patient(_) => {
                        "no planned visits: only eligible patients with an index date are followed up"
                    }
                },
                t.muted(),
            ));
        }
        frame.render_widget(Paragraph::new(lines), inner);
        return;
    }
    // The target date goes first when the terminal is narrow.
    let wide = width >= 78;
    lines.push(Line::styled(
        ellipsize(
            &format!(
                "  {:<18} {:>3} {:<9} {:<10} {}{:<10} {}",
                "Study ID",
                "Mo",
                "State",
                "Opens",
                if wide { "Target     " } else { "" },
                "Closes",
                "Recorded"
            ),
            width,
        ),
        t.table_header(),
    ));
    let fits = (inner.height as usize).saturating_sub(lines.len()).max(1);
    let offset = v.selected().saturating_sub(fits - 1);
    for (i, r) in rows.iter().enumerate().skip(offset).take(fits) {
        let sel = i == v.selected();
        let style = if sel { t.selected() } else { t.text() };
        let (word, state_style) = if r.baseline && r.recorded.is_none() {
            ("baseline", t.muted())
        } else {
            state_span(t, r.state)
        };
        let head = format!(
            "{}{:<18} {:>3} ",
            if sel { "▶ " } else { "  " },
            ellipsize(&r.study_id, 18),
            r.window.month
        );
        let dates = format!(
            " {} {}{} ",
            r.window.opens,
            if wide {
                format!("{} ", r.window.target)
            } else {
                String::new()
            },
            r.window.closes
        );
        let used = head.chars().count() + 9 + dates.chars().count();
        let recorded = r.recorded.as_ref().map_or(String::new(), |x| {
            let out_of_window = if r.in_window == Some(false) {
                " (out of window)"
            } else {
                ""
            };
            format!("{} v{}{out_of_window}", visit_text(&x.visit), x.version)
        });
        lines.push(Line::from(vec![
            Span::styled(head, style),
            Span::styled(format!("{word:<9}"), if sel { style } else { state_style }),
            Span::styled(dates, style),
            Span::styled(ellipsize(&recorded, width.saturating_sub(used)), style),
        ]));
    }
    frame.render_widget(Paragraph::new(lines), inner);
}

/// The visit form, over the list.
pub fn render_form(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let Some(f) = app.visit_form() else {
        return;
    };
    let width = area.width.saturating_sub(4).min(76);
    let inner_width = width.saturating_sub(4) as usize;
    let mut lines: Vec<Line> = Vec::new();
    lines.push(Line::from(vec![
        Span::styled(format!("{} ", f.study_id()), t.title()),
        Span::raw(format!(
            "{}-month visit · window {} … {}",
            f.month(),
            f.window().opens,
            f.window().closes
        )),
    ]));
    let shown = match f.recorded() {
        Some(r) => format!(
            "correcting version {} ({} by {}): {}",
            r.version,
            r.source,
            r.updated_by,
            visit_text(&r.visit)
        ),
        None => "a new visit (not recorded yet)".to_string(),
    };
    for l in wrap(&shown, inner_width) {
        lines.push(Line::styled(l, t.muted()));
    }
    lines.push(Line::raw(""));
    let label_w = 26;
    let value_w = inner_width.saturating_sub(label_w + 2).max(1);
    let mut cursor = None;
    for field in VisitField::ALL {
        let active = field == f.field();
        let label = match field {
            VisitField::Reason if f.recorded().is_some() => "Reason (needed)",
            VisitField::Reason => "Reason (optional)",
            other => other.label(),
        };
        let value = match field {
            VisitField::Fracture => match f.fracture() {
                Some(true) => "yes".to_string(),
                Some(false) => "no".to_string(),
                None => "– (y: yes, n: no)".to_string(),
            },
            other => f.text(other).to_string(),
        };
        // The end of a long value stays in view while typing.
        let skip = value
            .chars()
            .count()
            .saturating_sub(value_w.saturating_sub(1));
        let shown: String = value.chars().skip(skip).collect();
        if active && field != VisitField::Fracture {
            cursor = Some((
                (label_w + 2 + shown.chars().count()) as u16,
                lines.len() as u16,
            ));
        }
        lines.push(Line::from(vec![
            Span::styled(
                format!("{}{label:<label_w$}", if active { "▶ " } else { "  " }),
                if active { t.focused_title() } else { t.text() },
            ),
            Span::styled(shown, if active { t.input() } else { t.text() }),
        ]));
    }
    if f.is_saving() {
        lines.push(Line::raw(""));
        lines.push(Line::styled("saving…", t.muted()));
    }
    if let Some(e) = f.error() {
        lines.push(Line::raw(""));
        for l in wrap(e, inner_width) {
            lines.push(Line::styled(l, t.error()));
        }
    }
    if let Some(r) = f.theirs() {
        let text = format!(
            "saved meanwhile by {} at {} (version {}): {}",
            r.updated_by,
            r.updated_at,
            r.version,
            visit_text(&r.visit)
        );
        for l in wrap(&text, inner_width) {
            lines.push(Line::styled(l, t.warning()));
        }
    }
    let height = (lines.len() as u16 + 2).min(area.height);
    let rect = area.centered(Constraint::Length(width), Constraint::Length(height));
    let hints = footer_line(
        t,
        &keymap::footer(&[Context::VisitForm]),
        width.saturating_sub(2) as usize,
    );
    let title = if f.recorded().is_some() {
        " Correct a follow-up visit "
    } else {
        " Enter a follow-up visit "
    };
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(t.focused_border())
        .title(Span::styled(title, t.focused_title()))
        .title_bottom(hints);
    let inner = block.inner(rect).inner(Margin::new(1, 0));
    frame.render_widget(Clear, rect);
    frame.render_widget(block, rect);
    frame.render_widget(Paragraph::new(lines), inner);
    if let Some((x, y)) = cursor
        && !f.is_saving()
        && inner.y + y < inner.bottom()
    {
        frame.set_cursor_position(Position::new(
            (inner.x + x).min(inner.right().saturating_sub(1)),
            inner.y + y,
        ));
    }
}
