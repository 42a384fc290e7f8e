//! The model screen: the active KL or OP model, its outcome figures against the final
//! grades with bootstrap 95% intervals (binary AUC, sensitivity and specificity at the
//! operating point, accuracy, quadratic-weighted kappa, AUC per class), the confusion
//! matrix and the published references of PROTOCOL.md, beside the ROC curve drawn in
//! braille with the chance diagonal. Readers see why they are blinded to it.

use super::agreement::{estimate, percent};
use super::images::block;
use super::{ellipsize, wrap};
use crate::cli::model::EvaluationReport;
use crate::db::inference::ModelRow;
use crate::domain::protocol::Phase;
use crate::inference::Task;
use crate::tui::app::{App, LoadState};
use crate::tui::jobs::{EVALUATION_RESAMPLES, ModelFigures, ModelView};
use crate::tui::keymap::{Action, Context, KEYMAP};
use crate::tui::theme::Theme;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Margin, Rect};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Chart, Dataset, GraphType, Paragraph};

/// The key of a model-screen action, from the keymap.
fn key_of(action: Action) -> String {
    KEYMAP
        .iter()
        .find(|b| b.context == Context::Model && b.action == action)
        .and_then(|b| b.keys.first())
        .map(|k| k.label())
        .unwrap_or_default()
}

fn task_name(task: Task) -> &'static str {
    match task {
        Task::Kl => "KL grade",
        Task::Op => "OP stage",
    }
}

fn cohort_name(c: Option<Phase>) -> &'static str {
    match c {
        None => "all cohorts (mixed)",
        Some(Phase::Retrospective) => "retrospective cohort (development)",
        Some(Phase::Prospective) => "prospective cohort (external test)",
    }
}

fn next_cohort(c: Option<Phase>) -> &'static str {
    match c {
        Some(Phase::Prospective) => "retrospective",
        Some(Phase::Retrospective) => "all",
        None => "prospective",
    }
}

/// The lines above the figures: task and cohort, the active model, what was scored.
fn header_lines(
    t: &Theme,
    v: &ModelView,
    f: Option<&ModelFigures>,
    width: usize,
) -> Vec<Line<'static>> {
    let other = match v.task {
        Task::Kl => "OP",
        Task::Op => "KL",
    };
    let mut out = vec![Line::from(vec![
        Span::styled(format!("{} model", task_name(v.task)), t.focused_title()),
        Span::styled(" · ", t.muted()),
        Span::styled(cohort_name(v.cohort), t.title()),
        Span::styled(
            ellipsize(
                &format!(
                    "   ({}: {other} · {}: {})",
                    key_of(Action::NextTask),
                    key_of(Action::CycleCohort),
                    next_cohort(v.cohort)
                ),
                width.saturating_sub(40),
            ),
            t.muted(),
        ),
    ])];
    let active = f.and_then(|f| f.active());
    out.push(match active {
        Some(m) => active_line(t, m, width),
        None if f.is_some_and(|f| f.state == LoadState::Loading) => Line::raw(""),
        None => Line::styled(
            ellipsize(
                "active model: none registered yet (the first inference job registers the shipped one)",
                width,
            ),
            t.muted(),
        ),
    });
    if let Some(c) = f.and_then(|f| f.candidate()) {
        out.push(Line::styled(
            ellipsize(
                &format!(
                    "newest inactive version: {} ({}) · {}: make it active (asks)",
                    c.label(),
                    c.validation_summary(),
                    key_of(Action::ActivateModel)
                ),
                width,
            ),
            t.muted(),
        ));
    }
    if let Some(r) = f.and_then(|f| f.figures()) {
        let r = &r.0;
        out.push(Line::styled(
            ellipsize(
                &format!(
                    "scored: {} on {} {} · 95% CI: bootstrap over {}s, {} resamples",
                    r.model,
                    r.evaluation.n,
                    r.reference.unit(),
                    r.evaluation.resampling_unit,
                    r.resamples
                ),
                width,
            ),
            t.muted(),
        ));
        let left_out = if r.excluded.is_empty() {
            String::new()
        } else {
            format!(
                " · left out: {}",
                crate::domain::evaluation::left_out(&r.excluded)
            )
        };
        for l in wrap(
            &format!(
                "reference ({}): {}{left_out}",
                r.reference.code(),
                r.reference.short()
            ),
            width,
        ) {
            out.push(Line::styled(l, t.muted()));
        }
    }
    out
}

fn active_line(t: &Theme, m: &ModelRow, width: usize) -> Line<'static> {
    let data = m.card["training"]["data"].as_str().unwrap_or("");
    let head = format!("active model: {} ", m.label());
    let rest = if data.is_empty() {
        String::new()
    } else {
        format!("· trained on {data}")
    };
    let room = width.saturating_sub(head.chars().count());
    Line::from(vec![
        Span::styled(head, t.title()),
        Span::styled(ellipsize(&rest, room), t.muted()),
    ])
}

/// Every line of the figures pane.
pub fn figure_lines(t: &Theme, r: &EvaluationReport, width: usize) -> Vec<Line<'static>> {
    let e = &r.evaluation;
    let classes = r.task.classes();
    let label_w = width.saturating_sub(18).clamp(12, 40);
    let row = |label: &str, value: String| {
        Line::raw(format!("{:<label_w$} {value}", ellipsize(label, label_w)))
    };
    let mut out = vec![Line::styled(
        format!("{:<label_w$} {}", "figure", "estimate [95% CI]"),
        t.table_header(),
    )];
    out.push(row(
        &format!("AUC, {}", r.positive),
        estimate(&e.auc_binary),
    ));
    out.push(row(
        &format!("sensitivity at P ≥ {:.2}", e.threshold),
        percent(&e.sensitivity),
    ));
    out.push(row(
        &format!("specificity at P ≥ {:.2}", e.threshold),
        percent(&e.specificity),
    ));
    out.push(row("accuracy (most probable class)", percent(&e.accuracy)));
    out.push(row(
        "quadratic-weighted kappa",
        estimate(&e.quadratic_kappa),
    ));
    out.push(Line::styled("AUC per class, one vs rest", t.title()));
    for (c, a) in classes.iter().zip(&e.auc_per_class) {
        out.push(row(&format!("  {c}"), estimate(a)));
    }
    if let Some(y) = e.youden_threshold {
        for l in wrap(
            &format!("Youden's best threshold on this sample: {y:.2} (optimistic if chosen here)"),
            width,
        ) {
            out.push(Line::styled(l, t.muted()));
        }
    }
    out.push(Line::raw(""));
    out.push(Line::styled(
        ellipsize("Confusion matrix (rows: reference, columns: model)", width),
        t.title(),
    ));
    let first = classes
        .iter()
        .map(|c| c.chars().count())
        .max()
        .unwrap_or(4)
        .min(12)
        + 1;
    let total_w = 6;
    let k = classes.len().max(1);
    let widest = classes.iter().map(|c| c.chars().count()).max().unwrap_or(3) + 1;
    let cell = widest.min(width.saturating_sub(first + total_w) / k).max(4);
    let mut head = format!("{:<first$}", "");
    for c in &classes {
        head.push_str(&format!("{:>cell$}", ellipsize(c, cell - 1)));
    }
    head.push_str(&format!("{:>total_w$}", "total"));
    out.push(Line::styled(head, t.table_header()));
    let mut column_totals = vec![0u64; k];
    for (i, row) in e.confusion.iter().enumerate() {
        let name = classes.get(i).cloned().unwrap_or_default();
        let mut spans = vec![Span::styled(
            format!("{:<first$}", ellipsize(&name, first - 1)),
            t.title(),
        )];
        for (j, n) in row.iter().enumerate() {
            if let Some(c) = column_totals.get_mut(j) {
                *c += n;
            }
            let text = format!("{n:>cell$}");
            spans.push(if i == j {
                Span::styled(text, t.success())
            } else if *n == 0 {
                Span::styled(text, t.muted())
            } else {
                Span::raw(text)
            });
        }
        spans.push(Span::styled(
            format!("{:>total_w$}", row.iter().sum::<u64>()),
            t.muted(),
        ));
        out.push(Line::from(spans));
    }
    let mut total = format!("{:<first$}", "total");
    for n in &column_totals {
        total.push_str(&format!("{n:>cell$}"));
    }
    total.push_str(&format!("{:>total_w$}", e.n));
    out.push(Line::styled(total, t.muted()));
    out.push(Line::raw(""));
    out.push(Line::styled(
        "Published references (PROTOCOL.md)",
        t.title(),
    ));
    for p in &r.published {
        for (i, l) in wrap(
            &format!("{}: {}", p.source, p.figures),
            width.saturating_sub(2),
        )
        .into_iter()
        .enumerate()
        {
            let lead = if i == 0 { "· " } else { "  " };
            out.push(Line::raw(format!("{lead}{l}")));
        }
    }
    out.push(Line::raw(""));
    for l in wrap(
        "— not defined: no positive or no negative case in the cohort, or fewer than half the \
         resamples defined (an interval).",
        width,
    ) {
        out.push(Line::styled(l, t.muted()));
    }
    out
}

/// The ROC curve of the binary outcome with the chance diagonal, in braille.
fn render_roc(t: &Theme, r: &EvaluationReport, frame: &mut Frame, area: Rect) {
    let e = &r.evaluation;
    let title = match e.auc_binary.value {
        Some(a) => format!("ROC · AUC {a:.2}"),
        None => "ROC".to_string(),
    };
    let wide = area.width >= 36;
    let axes = if wide {
        " ↑ sensitivity  → 1 − specificity "
    } else {
        " ↑ sens.  → 1 − spec. "
    };
    let b = block(t, title, false).title_bottom(Line::styled(axes, t.muted()));
    if e.roc.is_empty() {
        let inner = b.inner(area).inner(Margin::new(1, 0));
        frame.render_widget(b, area);
        let lines: Vec<Line> = wrap(
            "No ROC curve: the cohort has no positive or no negative case.",
            inner.width as usize,
        )
        .into_iter()
        .map(|l| Line::styled(l, t.muted()))
        .collect();
        frame.render_widget(Paragraph::new(lines), inner);
        return;
    }
    let curve: Vec<(f64, f64)> = e.roc.iter().map(|p| (p.fpr, p.tpr)).collect();
    let chance = [(0.0, 0.0), (1.0, 1.0)];
    let chart = Chart::new(vec![
        // Dots, so the diagonal stays apart from the curve without colour.
        Dataset::default()
            .name("chance")
            .marker(Marker::Dot)
            .graph_type(GraphType::Line)
            .style(t.muted())
            .data(&chance),
        Dataset::default()
            .name("model")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(t.focused_border())
            .data(&curve),
    ])
    .block(b)
    .x_axis(
        Axis::default()
            .style(t.muted())
            .bounds([0.0, 1.0])
            .labels(["0", "0.5", "1"]),
    )
    .y_axis(
        Axis::default()
            .style(t.muted())
            .bounds([0.0, 1.0])
            .labels(["0", "0.5", "1"]),
    )
    .hidden_legend_constraints((Constraint::Ratio(1, 2), Constraint::Ratio(1, 4)));
    frame.render_widget(chart, area);
}

/// Lines of the pane while there are no figures to show.
fn placeholder(
    t: &Theme,
    v: &ModelView,
    f: Option<&ModelFigures>,
    width: usize,
) -> Vec<Line<'static>> {
    let mut out = Vec::new();
    let mut say = |text: &str, style| {
        for l in wrap(text, width) {
            out.push(Line::styled(l, style));
        }
    };
    match f.map(|f| (&f.state, f.missing())) {
        Some((LoadState::Failed(e), _)) => {
            say(&format!("✗ the figures did not load: {e}"), t.error());
            say("Press r to try again, Esc to go back.", t.muted());
        }
        Some((LoadState::Loaded, Some(why))) => {
            say(&format!("· No figures yet: {why}"), t.warning());
            say(
                "They need final grades (reading and adjudication) and the model's \
                 predictions: J opens the jobs screen, where n starts an inference job.",
                t.muted(),
            );
        }
        _ => {
            say(
                &format!(
                    "Computing the {} figures, {} ({} bootstrap resamples)…",
                    task_name(v.task),
                    cohort_name(v.cohort),
                    EVALUATION_RESAMPLES
                ),
                t.muted(),
            );
            say("The other screens stay usable meanwhile.", t.muted());
        }
    }
    out
}

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let Some(v) = app.model_view() else {
        return;
    };
    let b = block(t, "Model: the study's primary outcome".into(), true);
    let inner = b.inner(area).inner(Margin::new(1, 0));
    frame.render_widget(b, area);
    let width = inner.width as usize;
    if app.model_blinded() {
        let mut lines = vec![Line::styled(
            "Blinded: readers do not see the model's figures.",
            t.warning(),
        )];
        for l in wrap(
            "They are computed from the final grades and the model's predictions; a reader \
             sees the model's prediction for a case only after submitting their own read of \
             it. PIs, adjudicators, coordinators and admins see this screen.",
            width,
        ) {
            lines.push(Line::styled(l, t.muted()));
        }
        frame.render_widget(Paragraph::new(lines), inner);
        return;
    }
    let f = v.current();
    let header = header_lines(t, v, f, width);
    let [head_area, body] = Layout::vertical([
        Constraint::Length(header.len() as u16 + 1),
        Constraint::Fill(1),
    ])
    .areas(inner);
    frame.render_widget(Paragraph::new(header), head_area);
    let Some(report) = f.and_then(|f| f.figures()) else {
        v.lines.set((0, 0));
        frame.render_widget(Paragraph::new(placeholder(t, v, f, width)), body);
        return;
    };
    let report = &report.0;
    // The figures take what they need (up to 60 columns); the curve the rest.
    let text_w = (body.width * 3 / 5).clamp(50.min(body.width), 64);
    let [text_area, _, chart_area] = Layout::horizontal([
        Constraint::Length(text_w),
        Constraint::Length(1),
        Constraint::Fill(1),
    ])
    .areas(body);
    let mut lines = figure_lines(t, report, text_area.width as usize);
    if f.is_some_and(|f| f.state == LoadState::Loading) {
        lines.insert(0, Line::styled("… recomputing", t.muted()));
    }
    let fits = text_area.height as usize;
    let total = lines.len();
    v.lines.set((total, fits));
    let scroll = v.scroll.min(total.saturating_sub(fits));
    frame.render_widget(
        Paragraph::new(lines).scroll((scroll.min(u16::MAX as usize) as u16, 0)),
        text_area,
    );
    if total > fits {
        let more = format!(" {}-{}/{} ", scroll + 1, (scroll + fits).min(total), total);
        let w = (more.chars().count() as u16).min(area.width);
        frame.render_widget(
            Line::styled(more, t.muted()),
            Rect::new(area.x + 2, area.bottom().saturating_sub(1), w, 1),
        );
    }
    render_roc(t, report, frame, chart_area);
}
