//! The patient's screening screen: the checklist (automatic answer and source, manual
//! answer, effective answer), the selected criterion in full (who answered, why), and
//! the bone-density pane (WHO stage or Z-score reading, flags, DXA scans, labs).

use super::{answer_span, decision_span, ellipsize, scroll_offset, wrap};
use crate::db::study::PatientDetail;
use crate::domain::eligibility::ChecklistItem;
use crate::tui::app::{App, LoadState, Pane, PatientView};
use crate::tui::theme::{FLAG_SYMBOL, Theme, flag_label};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Block, Borders, Cell, HighlightSpacing, Padding, Paragraph, Row, Table, TableState, Wrap,
};

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let Some(view) = app.patient.as_ref() else {
        return;
    };
    let Some(detail) = view.detail.as_deref() else {
        let (line, style) = match &view.state {
            LoadState::Failed(e) => (format!("✗ {} did not load: {e}", view.study_id), t.error()),
            _ => (format!("Loading {}…", view.study_id), t.muted()),
        };
        let block = pane_block(t, pane_title(t, &view.study_id, true), true);
        let inner = block.inner(area);
        frame.render_widget(block, area);
        let mut text = vec![Line::styled(line, style)];
        if matches!(view.state, LoadState::Failed(_)) {
            text.push(Line::styled(
                "Press r to try again, Esc to go back.",
                t.muted(),
            ));
        }
        frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), inner);
        return;
    };

    let wide = area.width >= 120;
    let checklist_height = detail.screening.checklist.len() as u16 + 3;
    let (check_area, detail_area, side_area) = if wide {
        // Full titles in the checklist; the criterion and the bone density side by side.
        let [c, rest] =
            Layout::vertical([Constraint::Length(checklist_height), Constraint::Fill(1)])
                .areas(area);
        let [d, s] =
            Layout::horizontal([Constraint::Fill(1), Constraint::Percentage(50)]).areas(rest);
        (c, d, s)
    } else {
        let detail_height = if area.height >= 28 { 6 } else { 4 };
        let [c, d, s] = Layout::vertical([
            Constraint::Length(checklist_height),
            Constraint::Length(detail_height),
            Constraint::Fill(1),
        ])
        .areas(area);
        (c, d, s)
    };
    render_checklist(app, view, detail, frame, check_area);
    render_selected(t, view, detail, frame, detail_area, wide);
    render_side(app, view, detail, frame, side_area);
}

/// "2026-01-06T10:00:00.000Z" -> "2026-01-06 10:00 UTC"; other text as it is.
fn short_time(at: &str) -> String {
    match (at.get(..10), at.get(10..11), at.get(11..16)) {
        (Some(day), Some("T"), Some(hm)) if at.ends_with('Z') => format!("{day} {hm} UTC"),
        _ => at.to_string(),
    }
}

fn title_line(t: &Theme, d: &PatientDetail, state: &LoadState) -> Line<'static> {
    let s = &d.summary;
    let mut spans = vec![
        Span::styled(format!(" {} ", s.study_id), t.focused_title()),
        Span::raw(format!(
            "· {} {} {} · {} · age {} · ",
            s.site,
            s.group.code(),
            s.phase,
            s.sex.map_or("sex —", |x| x.code()),
            s.age.map_or("—".into(), |a| a.to_string()),
        )),
        decision_span(t, s.decision),
    ];
    let codes = |v: &[crate::domain::eligibility::Criterion]| {
        v.iter().map(|c| c.code()).collect::<Vec<_>>().join(", ")
    };
    if !s.reasons.is_empty() {
        spans.push(Span::raw(format!(" ({})", codes(&s.reasons))));
    } else if !s.pending.is_empty() {
        spans.push(Span::raw(format!(" ({} open)", codes(&s.pending))));
    }
    match state {
        LoadState::Loading => spans.push(Span::styled("  · reloading…", t.muted())),
        LoadState::Failed(_) => spans.push(Span::styled("  · reload failed", t.error())),
        LoadState::Loaded => {}
    }
    Line::from(spans)
}

/// A bordered pane; the focused one stands out.
fn pane_block(t: &Theme, title: Line<'static>, focused: bool) -> Block<'static> {
    Block::default()
        .borders(Borders::ALL)
        .border_style(if focused {
            t.focused_border()
        } else {
            t.border()
        })
        .title(title)
}

fn pane_title(t: &Theme, text: &str, focused: bool) -> Line<'static> {
    Line::styled(
        format!(" {text} "),
        if focused {
            t.focused_title()
        } else {
            t.title()
        },
    )
}

fn checklist_row(t: &Theme, i: &ChecklistItem, title_width: usize) -> Row<'static> {
    let c = i.criterion;
    Row::new(vec![
        Cell::from(c.code()),
        Cell::from(ellipsize(c.title(), title_width)),
        Cell::from(answer_span(t, c, i.auto.answer)),
        Cell::from(match i.manual {
            Some(a) => answer_span(t, c, a),
            None => Span::styled("—", t.muted()),
        }),
        Cell::from(answer_span(t, c, i.effective)),
    ])
}

fn render_checklist(
    app: &App,
    view: &PatientView,
    d: &PatientDetail,
    frame: &mut Frame,
    area: Rect,
) {
    let t = &app.theme;
    let focused = view.pane == Pane::Checklist && view.popup.is_none();
    let mut title = title_line(t, d, &view.state);
    // The image count, once the list is in (press i for the images).
    if let Some(v) = app
        .images
        .as_ref()
        .filter(|v| v.study_id == view.study_id && v.state == LoadState::Loaded)
    {
        // Right after the study ID, so a long title never cuts it off.
        let n = v.list.len();
        let flagged = v
            .list
            .iter()
            .filter(|i| i.record.review_reason.is_some())
            .count();
        let mut spans = vec![Span::styled(
            format!("· {n} image{} ", if n == 1 { "" } else { "s" }),
            t.text(),
        )];
        if flagged > 0 {
            spans.push(Span::styled(
                format!("({FLAG_SYMBOL} {flagged} to review) "),
                t.warning(),
            ));
        }
        let at = title.spans.len().min(1);
        title.spans.splice(at..at, spans);
    }
    title.spans.push(Span::raw(" "));
    let block = pane_block(t, title, focused);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let items = &d.screening.checklist;
    let height = inner.height.saturating_sub(1) as usize;
    let offset = scroll_offset(0, view.selected, items.len(), height);
    let end = (offset + height).min(items.len());
    // highlight symbol 2, code 2, three answer columns of 16, four gaps
    let title_width = (inner.width as usize).saturating_sub(2 + 2 + 3 * 16 + 4);
    let rows: Vec<Row> = items[offset..end]
        .iter()
        .map(|i| checklist_row(t, i, title_width))
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(2),
            Constraint::Fill(1),
            Constraint::Length(16),
            Constraint::Length(16),
            Constraint::Length(16),
        ],
    )
    .header(
        Row::new(vec!["", "Criterion", "Automatic", "Manual", "Effective"]).style(t.table_header()),
    )
    .row_highlight_style(if focused {
        t.selected()
    } else {
        t.selected_unfocused()
    })
    .highlight_symbol("▶ ")
    .highlight_spacing(HighlightSpacing::Always);
    let mut state = TableState::default().with_selected(Some(view.selected.saturating_sub(offset)));
    frame.render_stateful_widget(table, inner, &mut state);
    let mut hits = app.hits.get();
    hits.checklist_rows = Rect::new(inner.x, inner.y + 1, inner.width, (end - offset) as u16);
    hits.checklist_offset = offset;
    app.hits.set(hits);
}

fn render_selected(
    t: &Theme,
    view: &PatientView,
    d: &PatientDetail,
    frame: &mut Frame,
    area: Rect,
    boxed: bool,
) {
    let Some(item) = d.screening.checklist.get(view.selected) else {
        return;
    };
    let c = item.criterion;
    let block = Block::default()
        .borders(if boxed { Borders::ALL } else { Borders::TOP })
        .border_style(t.border())
        .padding(Padding::horizontal(1))
        .title(Span::styled(
            format!(" {} · {} ", c.code(), c.title()),
            t.title(),
        ));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let mut lines = vec![Line::from(vec![
        Span::styled("Automatic: ", t.muted()),
        answer_span(t, c, item.auto.answer),
        Span::raw(format!(" · {}", item.auto.source)),
    ])];
    match d.manual.iter().find(|m| m.criterion == c) {
        Some(m) => lines.push(Line::from(vec![
            Span::styled("Manual: ", t.muted()),
            answer_span(t, c, m.answer),
            Span::raw(format!(
                " · {}, {} · “{}”",
                m.by,
                short_time(&m.at),
                m.reason
            )),
        ])),
        None => lines.push(Line::from(vec![
            Span::styled("Manual: ", t.muted()),
            Span::styled("none (Enter answers it by hand)", t.muted()),
        ])),
    }
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
}

/// The lines of the bone-density pane, wrapped to `width`.
fn side_lines(t: &Theme, d: &PatientDetail, width: usize) -> Vec<Line<'static>> {
    let mut out: Vec<Line<'static>> = Vec::new();
    let para = |label: &str, text: String, style: Style, out: &mut Vec<Line<'static>>| {
        let indent = label.chars().count();
        for (n, l) in wrap(&text, width.saturating_sub(indent).max(10))
            .into_iter()
            .enumerate()
        {
            let head = if n == 0 {
                label.to_string()
            } else {
                " ".repeat(indent)
            };
            out.push(Line::from(vec![
                Span::styled(head, t.muted()),
                Span::styled(l, style),
            ]));
        }
    };
    if d.screening.flags.is_empty() {
        para("Flags:   ", "none".into(), t.muted(), &mut out);
    } else {
        let flags = d
            .screening
            .flags
            .iter()
            .map(|f| format!("{FLAG_SYMBOL} {}", flag_label(*f)))
            .collect::<Vec<_>>()
            .join(", ");
        para("Flags:   ", flags, t.warning(), &mut out);
    }
    para(
        "Reading: ",
        d.screening.op_reading.describe(),
        t.text(),
        &mut out,
    );
    out.push(Line::styled("DXA scans", t.title()));
    if d.dxa.is_empty() {
        out.push(Line::styled("  none imported", t.muted()));
    }
    for s in &d.dxa {
        let z = s.z_score.map_or("  —".into(), |z| format!("{z:+.1}"));
        let bmd = s
            .bmd_g_cm2
            .map_or(String::new(), |b| format!("  BMD {b:.3}"));
        out.push(Line::raw(format!(
            "  {}  {:<12}  T {:+.1}  Z {z}{bmd}",
            s.scan_date,
            s.region.code(),
            s.t_score
        )));
    }
    if !d.labs.is_empty() {
        out.push(Line::styled("Labs", t.title()));
        for l in &d.labs {
            // The canonical value; the reported one beside it when it was converted.
            let reported =
                if !l.original_unit.eq_ignore_ascii_case(&l.unit) || l.original_value != l.value {
                    format!(" ({} {})", l.original_value, l.original_unit)
                } else {
                    String::new()
                };
            out.push(Line::raw(format!(
                "  {}  {:<14} {} {}{reported}",
                l.date, l.analyte, l.value, l.unit
            )));
        }
    }
    out
}

fn render_side(app: &App, view: &PatientView, d: &PatientDetail, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let focused = view.pane == Pane::BoneDensity && view.popup.is_none();
    let lines = side_lines(t, d, area.width.saturating_sub(2) as usize);
    let fits = area.height.saturating_sub(2) as usize;
    view.side_lines.set((lines.len(), fits));
    let scroll = view.side_scroll.min(lines.len().saturating_sub(fits));
    let mut title = "Bone density & flags".to_string();
    if lines.len() > fits {
        title.push_str(&format!(
            " [{}-{}/{}]",
            scroll + 1,
            (scroll + fits).min(lines.len()),
            lines.len()
        ));
    }
    let block = pane_block(t, pane_title(t, &title, focused), focused);
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .scroll((scroll.min(u16::MAX as usize) as u16, 0)),
        area,
    );
    let mut hits = app.hits.get();
    hits.side = area;
    app.hits.set(hits);
}
