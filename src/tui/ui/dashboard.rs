//! The dashboard: what is outstanding (missing DXA, reads, adjudications, follow-up)
//! on top, enrollment against target per cohort beside the CONSORT flow, and the
//! eligible patients per month as a bar chart where the terminal is tall enough.
//! Readers see why they are blinded to it. Also the list of the patients behind a box.

use super::images::block;
use super::{decision_span, ellipsize, thousands, wrap};
use crate::domain::status::CohortStatus;
use crate::tui::app::{App, LoadState};
use crate::tui::dashboard::DashboardFigures;
use crate::tui::theme::Theme;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Margin, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Bar, BarChart, BarGroup, Paragraph};

/// Rows the month chart needs (title, bars, labels) before it is drawn at all.
const CHART_MIN_ROWS: u16 = 7;

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let b = block(t, "Dashboard: enrollment and the CONSORT flow".into(), true);
    let inner = b.inner(area).inner(Margin::new(1, 0));
    frame.render_widget(b, area);
    let width = inner.width as usize;
    if app.dashboard_blinded() {
        let mut lines = vec![Line::styled(
            "Blinded: readers do not see the dashboard.",
            t.warning(),
        )];
        for l in wrap(
            "It counts reads, final grades and model predictions across the study; a \
             reader's view of the study is their own reading worklist. PIs, adjudicators, \
             coordinators and admins see this screen.",
            width,
        ) {
            lines.push(Line::styled(l, t.muted()));
        }
        frame.render_widget(Paragraph::new(lines), inner);
        return;
    }
    let Some(v) = app.dashboard_view() else {
        return;
    };
    let Some(f) = v.figures() else {
        let line = match v.state() {
            LoadState::Failed(e) => Line::styled(
                ellipsize(
                    &format!("could not load the dashboard: {e} (r: try again)"),
                    width,
                ),
                t.error(),
            ),
            _ => Line::styled("loading the dashboard…", t.muted()),
        };
        frame.render_widget(Paragraph::new(line), inner);
        return;
    };
    let mut head = outstanding_lines(t, f, width);
    match v.state() {
        LoadState::Loading => head.push(Line::styled("reloading…", t.muted())),
        LoadState::Failed(e) => head.push(Line::styled(
            ellipsize(&format!("reload failed: {e}"), width),
            t.error(),
        )),
        LoadState::Loaded => {}
    }
    if v.showing_outcomes() {
        let [head_area, rest] = Layout::vertical([
            Constraint::Length(head.len() as u16 + 1),
            Constraint::Fill(1),
        ])
        .areas(inner);
        frame.render_widget(Paragraph::new(head), head_area);
        super::outcomes::render(t, &f.outcomes, frame, rest);
        return;
    }
    let flow_rows = f.flow().len() as u16 + 1;
    let enrol_rows = f.status.cohorts.len() as u16 + 1;
    let cols_rows = flow_rows.max(enrol_rows);
    let rest = inner.height.saturating_sub(head.len() as u16 + 1);
    let chart = !f.by_month.is_empty() && rest >= cols_rows + CHART_MIN_ROWS;
    let [head_area, cols_area, chart_area] = Layout::vertical([
        Constraint::Length(head.len() as u16 + 1),
        Constraint::Length(if chart { cols_rows } else { rest }),
        Constraint::Fill(1),
    ])
    .areas(inner);
    frame.render_widget(Paragraph::new(head), head_area);
    let [left, _, right] = Layout::horizontal([
        Constraint::Percentage(55),
        Constraint::Length(2),
        Constraint::Fill(1),
    ])
    .areas(cols_area);
    render_enrollment(t, f, frame, left);
    render_flow(t, f, v.selected(), frame, right);
    if chart {
        render_months(t, f, frame, chart_area);
    }
}

/// Missing DXA, reads and adjudications outstanding, follow-up compliance.
fn outstanding_lines(t: &Theme, f: &DashboardFigures, width: usize) -> Vec<Line<'static>> {
    let s = &f.status;
    let n = |k: &str, v: u64, warn: bool| -> Vec<Span<'static>> {
        let style = if warn && v > 0 { t.warning() } else { t.text() };
        let mark = if warn && v > 0 { "! " } else { "" };
        vec![
            Span::styled(format!("{k} "), t.muted()),
            Span::styled(format!("{mark}{}", thousands(v)), style),
        ]
    };
    let sep = || Span::styled(" · ", t.muted());
    let mut first = vec![Span::styled(
        format!(
            "{} patients: {} eligible, {} ineligible, {} pending",
            thousands(s.patients),
            thousands(s.eligibility.eligible),
            thousands(s.eligibility.ineligible),
            thousands(s.eligibility.pending)
        ),
        t.title(),
    )];
    let _ = width;
    first.push(sep());
    first.extend(n("missing DXA", s.missing_dxa, true));
    let mut second = n("reads outstanding", s.reads_pending, true);
    second.push(sep());
    second.extend(n("to adjudicate", s.adjudication_pending, true));
    second.push(sep());
    second.extend(n("final graded", s.final_graded, false));
    let fu = &s.follow_up;
    let mut third = vec![Span::styled("Follow-up visits: ", t.muted())];
    third.extend(n("done", fu.done, false));
    third.push(sep());
    third.extend(n("due", fu.due, false));
    third.push(sep());
    third.extend(n("overdue", fu.overdue, true));
    third.push(sep());
    third.extend(n("not yet due", fu.not_yet_due, false));
    if fu.done_out_of_window > 0 {
        third.push(sep());
        third.extend(n("out of window", fu.done_out_of_window, true));
    }
    vec![Line::from(first), Line::from(second), Line::from(third)]
}

fn group_short(c: &CohortStatus) -> &'static str {
    match c.group {
        crate::domain::protocol::Group::Control => "CTRL",
        g => g.code(),
    }
}

fn phase_short(c: &CohortStatus) -> &'static str {
    match c.phase {
        crate::domain::protocol::Phase::Retrospective => "retro",
        crate::domain::protocol::Phase::Prospective => "prosp",
    }
}

/// One bar per cohort: eligible against target, with the count and the percentage.
fn render_enrollment(t: &Theme, f: &DashboardFigures, frame: &mut Frame, area: Rect) {
    let width = area.width as usize;
    let labels: Vec<String> = f
        .status
        .cohorts
        .iter()
        .map(|c| format!("{} {} {}", c.site, group_short(c), phase_short(c)))
        .collect();
    let label_w = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let counts_w = f
        .status
        .cohorts
        .iter()
        .map(|c| format!(" {}/{}", c.eligible, c.target).len())
        .max()
        .unwrap_or(0);
    let mut lines = vec![Line::styled(
        "Enrollment: eligible / target",
        t.focused_title(),
    )];
    for (c, label) in f.status.cohorts.iter().zip(&labels) {
        let counts = format!(" {}/{}", c.eligible, c.target);
        let pct = crate::domain::status::percent(c.eligible, u64::from(c.target))
            .map_or_else(|| "   —".to_string(), |p| format!(" {p:>3}%"));
        let bar_w = width.saturating_sub(label_w + 1 + counts_w + 5);
        let filled = if c.target > 0 {
            ((c.eligible.min(u64::from(c.target)) as usize) * bar_w)
                .div_ceil(c.target as usize)
                .min(bar_w)
        } else {
            0
        };
        let done = c.target > 0 && c.eligible >= u64::from(c.target);
        lines.push(Line::from(vec![
            Span::styled(format!("{label:<label_w$} "), t.text()),
            Span::styled(
                "█".repeat(filled),
                if done { t.success() } else { t.title() },
            ),
            Span::styled("░".repeat(bar_w - filled), t.muted()),
            Span::styled(format!("{counts:>counts_w$}"), t.text()),
            Span::styled(pct, if done { t.success() } else { t.muted() }),
        ]));
    }
    frame.render_widget(Paragraph::new(lines), area);
}

/// The CONSORT boxes with their counts, the selected one marked; scrolls to keep it
/// in view.
fn render_flow(t: &Theme, f: &DashboardFigures, selected: usize, frame: &mut Frame, area: Rect) {
    let width = area.width as usize;
    let flow = f.flow();
    let rows = (area.height as usize).saturating_sub(1).max(1);
    let offset = selected.saturating_sub(rows - 1);
    let mut lines = vec![Line::styled(
        ellipsize("CONSORT flow (Enter: patients)", width),
        t.focused_title(),
    )];
    for (i, l) in flow.iter().enumerate().skip(offset).take(rows) {
        let count = thousands(l.count);
        let indent = "  ".repeat(l.depth);
        let mark = if i == selected { "▶ " } else { "  " };
        let room = width.saturating_sub(2 + indent.len() + count.len() + 1);
        let label = ellipsize(&l.label, room);
        let pad = width.saturating_sub(2 + indent.len() + label.chars().count() + count.len());
        let style = if i == selected {
            t.selected()
        } else {
            t.text()
        };
        lines.push(Line::from(vec![
            Span::styled(format!("{mark}{indent}{label}{}", " ".repeat(pad)), style),
            Span::styled(count, style),
        ]));
    }
    frame.render_widget(Paragraph::new(lines), area);
}

/// Eligible patients per month of their index date, the latest months that fit.
fn render_months(t: &Theme, f: &DashboardFigures, frame: &mut Frame, area: Rect) {
    let bar_w: u16 = 5;
    let fits = (area.width / (bar_w + 1)).max(1) as usize;
    let months = &f.by_month[f.by_month.len().saturating_sub(fits)..];
    let (Some(first), Some(last)) = (months.first(), months.last()) else {
        return;
    };
    let [title, chart] = Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(area);
    frame.render_widget(
        Paragraph::new(Line::styled(
            format!("Eligible by month of index date ({} … {})", first.0, last.0),
            t.focused_title(),
        )),
        title,
    );
    let bars: Vec<Bar> = months
        .iter()
        .map(|(m, n)| {
            Bar::default()
                .value(*n)
                .label(Line::from(m.get(2..).unwrap_or(m).to_string()))
                .style(t.title())
                .value_style(t.selected())
        })
        .collect();
    frame.render_widget(
        BarChart::default()
            .data(BarGroup::default().bars(&bars))
            .bar_width(bar_w)
            .bar_gap(1)
            .label_style(t.muted()),
        chart,
    );
}

/// The patients behind a CONSORT box.
pub fn render_box_patients(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let Some(d) = app.box_patients() else {
        return;
    };
    let title = format!("CONSORT: {} ({})", d.label(), thousands(d.count()));
    let b = block(
        t,
        ellipsize(&title, area.width.saturating_sub(6) as usize),
        true,
    );
    let inner = b.inner(area).inner(Margin::new(1, 0));
    frame.render_widget(b, area);
    let width = inner.width as usize;
    match d.state() {
        LoadState::Loading => {
            frame.render_widget(
                Paragraph::new(Line::styled("loading the patients…", t.muted())),
                inner,
            );
            return;
        }
        LoadState::Failed(e) => {
            frame.render_widget(
                Paragraph::new(Line::styled(
                    ellipsize(
                        &format!("could not load the patients: {e} (r: try again)"),
                        width,
                    ),
                    t.error(),
                )),
                inner,
            );
            return;
        }
        LoadState::Loaded => {}
    }
    let mut lines = vec![Line::styled(
        ellipsize(
            &format!(
                "{} patients in this box · Enter: open a patient · Esc: the dashboard",
                thousands(d.patients().len() as u64)
            ),
            width,
        ),
        t.muted(),
    )];
    if d.patients().is_empty() {
        lines.push(Line::styled("no patients in this box", t.muted()));
        frame.render_widget(Paragraph::new(lines), inner);
        return;
    }
    lines.push(Line::styled(
        format!(
            "  {:<18} {:<8} {:<8} {:<14} {}",
            "Study ID", "Site", "Group", "Phase", "Decision"
        ),
        t.table_header(),
    ));
    let rows = (inner.height as usize).saturating_sub(2).max(1);
    let offset = d.selected().saturating_sub(rows - 1);
    for (i, p) in d.patients().iter().enumerate().skip(offset).take(rows) {
        let sel = i == d.selected();
        let style = if sel { t.selected() } else { t.text() };
        lines.push(Line::from(vec![
            Span::styled(
                format!(
                    "{}{:<18} {:<8} {:<8} {:<14} ",
                    if sel { "▶ " } else { "  " },
                    ellipsize(&p.study_id, 18),
                    ellipsize(&p.site, 8),
                    p.group.code(),
                    p.phase.code()
                ),
                style,
            ),
            decision_span(t, p.decision),
        ]));
    }
    frame.render_widget(Paragraph::new(lines), inner);
}
