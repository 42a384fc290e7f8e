//! The agreement screen: percent agreement, Cohen's kappa and quadratic-weighted kappa
//! with bootstrap 95% intervals, sensitivity and specificity for OA (KL ≥ 2) or
//! osteoporosis, per reader pair and per reader against the final grade, and the
//! confusion matrix of the pooled readers. Undefined values show as "—".

use super::images::block;
use super::{ellipsize, thousands, wrap};
use crate::db::agreement::{AgreementSummary, Comparison, Scale};
use crate::domain::agreement::Estimate;
use crate::tui::app::{App, LoadState};
use crate::tui::reading::AGREEMENT_RESAMPLES;
use crate::tui::theme::Theme;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

/// "0.62 [0.20, 1.00]"; "—" when undefined.
pub fn estimate(e: &Estimate) -> String {
    match (e.value, e.ci95) {
        (None, _) => "—".into(),
        (Some(v), None) => format!("{v:.2} [—]"),
        (Some(v), Some(ci)) => format!("{v:.2} [{:.2}, {:.2}]", ci.lower, ci.upper),
    }
}

/// "75.0% [50, 100]"; "—" when undefined.
pub fn percent(e: &Estimate) -> String {
    match (e.value, e.ci95) {
        (None, _) => "—".into(),
        (Some(v), None) => format!("{:.1}% [—]", v * 100.0),
        (Some(v), Some(ci)) => format!(
            "{:.1}% [{:.0}, {:.0}]",
            v * 100.0,
            ci.lower * 100.0,
            ci.upper * 100.0
        ),
    }
}

/// "li vs wang", "li vs final"; the pooled readers as "readers pooled".
fn label(kind: &str, c: &Comparison) -> String {
    if kind == "pooled" {
        "readers pooled".into()
    } else {
        format!("{} vs {}", c.first, c.second)
    }
}

fn categories(scale: &Scale, op: bool) -> Vec<String> {
    if op {
        vec!["normal".into(), "osteopenia".into(), "osteoporosis".into()]
    } else {
        (0..scale.categories).map(|k| format!("KL{k}")).collect()
    }
}

/// The comparisons of a scale in the order the tables list them.
fn comparisons(scale: &Scale) -> Vec<(&'static str, &Comparison)> {
    let mut out = Vec::new();
    if let Some(p) = &scale.readers_pooled {
        out.push(("pooled", p));
    }
    out.extend(scale.reader_vs_reader.iter().map(|c| ("pair", c)));
    out.extend(scale.reader_vs_final.iter().map(|c| ("final", c)));
    out
}

/// Every line of the screen for one scale.
pub fn agreement_lines(
    t: &Theme,
    a: &AgreementSummary,
    op: bool,
    width: usize,
) -> Vec<Line<'static>> {
    let scale = if op { &a.op } else { &a.kl };
    let mut out = Vec::new();
    let other = if op { "KL grade" } else { "OP impression" };
    out.push(Line::from(vec![
        Span::styled(scale.scale.clone(), t.focused_title()),
        Span::styled(format!("   (Tab: {other})"), t.muted()),
    ]));
    for l in wrap(
        &format!(
            "{} cases, {} with a final grade; {} not-assessable read{} left out. \
             95% intervals: percentile bootstrap, {} resamples.",
            thousands(a.cases as u64),
            thousands(a.cases_with_final as u64),
            a.not_assessable_reads,
            if a.not_assessable_reads == 1 { "" } else { "s" },
            thousands(a.bootstrap_resamples as u64)
        ),
        width,
    ) {
        out.push(Line::styled(l, t.muted()));
    }
    out.push(Line::raw(""));
    let rows = comparisons(scale);
    if rows.is_empty() {
        out.push(Line::raw(
            "No case has two reads on this scale yet: nothing to compare.",
        ));
        return out;
    }
    let name_w = width.saturating_sub(5 + 18 + 20 + 20).clamp(14, 36);
    out.push(Line::styled(
        format!(
            "{:<name_w$} {:>4} {:<17} {:<19} {:<19}",
            "agreement", "n", "% agreement", "kappa", "weighted κ (quad.)"
        ),
        t.table_header(),
    ));
    for (kind, c) in &rows {
        let r = &c.report;
        out.push(Line::raw(format!(
            "{:<name_w$} {:>4} {:<17} {:<19} {:<19}",
            ellipsize(&label(kind, c), name_w),
            r.n,
            percent(&r.percent_agreement),
            estimate(&r.cohen_kappa),
            estimate(&r.quadratic_weighted_kappa)
        )));
    }
    out.push(Line::raw(""));
    let positive = if op { "osteoporosis" } else { "OA (KL ≥ 2)" };
    out.push(Line::styled(
        format!(
            "{:<name_w$} {:>4} {:<17} {:<17} {}",
            ellipsize(positive, name_w),
            "n",
            "sensitivity",
            "specificity",
            "TP/FN/TN/FP"
        ),
        t.table_header(),
    ));
    for (kind, c) in &rows {
        let r = &c.report;
        let Some(b) = &r.binary else { continue };
        let k = &b.counts;
        out.push(Line::raw(format!(
            "{:<name_w$} {:>4} {:<17} {:<17} {}/{}/{}/{}",
            ellipsize(&label(kind, c), name_w),
            r.n,
            percent(&b.sensitivity),
            percent(&b.specificity),
            k.true_positive,
            k.false_negative,
            k.true_negative,
            k.false_positive
        )));
    }
    out.push(Line::styled(
        ellipsize(
            "the second rater (the later reader, or the final grade) is the reference",
            width,
        ),
        t.muted(),
    ));
    for l in wrap(&scale.reference_note(), width) {
        out.push(Line::styled(l, t.muted()));
    }
    if let Some(p) = &scale.readers_pooled {
        out.push(Line::raw(""));
        out.push(Line::styled(
            ellipsize(
                "Confusion matrix, readers pooled (rows: first read, columns: second read)",
                width,
            ),
            t.title(),
        ));
        let names = categories(scale, op);
        let cell = names.iter().map(|n| n.chars().count()).max().unwrap_or(4) + 1;
        let first = cell.max(6);
        let mut head = format!("{:<first$}", "");
        for n in &names {
            head.push_str(&format!("{n:>cell$}"));
        }
        head.push_str(&format!("{:>7}", "total"));
        out.push(Line::styled(head, t.table_header()));
        let m = &p.report.confusion_matrix;
        let rows_total = m.row_totals();
        for (i, row) in m.counts().iter().enumerate() {
            let mut spans = vec![Span::styled(
                format!("{:<first$}", names.get(i).cloned().unwrap_or_default()),
                t.title(),
            )];
            for (j, n) in row.iter().enumerate() {
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
                format!("{:>7}", rows_total.get(i).copied().unwrap_or(0)),
                t.muted(),
            ));
            out.push(Line::from(spans));
        }
        let mut total = format!("{:<first$}", "total");
        for n in m.column_totals() {
            total.push_str(&format!("{n:>cell$}"));
        }
        total.push_str(&format!("{:>7}", m.n()));
        out.push(Line::styled(total, t.muted()));
    }
    out.push(Line::raw(""));
    for l in wrap(
        "— not defined: too few cases, or the raters leave no room for chance (kappa when \
         expected agreement is 1), no positive or negative reference case (sensitivity, \
         specificity), or fewer than half the resamples defined (an interval).",
        width,
    ) {
        out.push(Line::styled(l, t.muted()));
    }
    out
}

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let Some(a) = app.reading.agreement.as_ref() else {
        return;
    };
    let b = block(t, "Agreement: readers and the final grade".into(), true);
    let inner = b.inner(area);
    let width = inner.width.saturating_sub(1) as usize;
    let lines: Vec<Line> = match (&a.state, a.figures.as_ref()) {
        (LoadState::Failed(e), _) => vec![
            Line::styled(
                format!("✗ the agreement figures did not load: {e}"),
                t.error(),
            ),
            Line::styled("Press r to try again, Esc to go back.", t.muted()),
        ],
        (LoadState::Loading, None) => vec![
            Line::styled(
                format!(
                    "Computing agreement over every case ({} bootstrap resamples per interval)…",
                    thousands(AGREEMENT_RESAMPLES as u64)
                ),
                t.muted(),
            ),
            Line::styled(
                "This can take a moment; the other screens stay usable.",
                t.muted(),
            ),
        ],
        (_, Some(f)) => {
            let mut l = agreement_lines(t, &f.0, a.op, width);
            if a.state == LoadState::Loading {
                l.insert(0, Line::styled("… recomputing", t.muted()));
            }
            l
        }
        (LoadState::Loaded, None) => Vec::new(),
    };
    let fits = inner.height as usize;
    a.lines.set((lines.len(), fits));
    let scroll = a.scroll.min(lines.len().saturating_sub(fits));
    let b = if lines.len() > fits {
        b.title_bottom(
            Line::styled(
                format!(
                    " {}-{}/{} ",
                    scroll + 1,
                    (scroll + fits).min(lines.len()),
                    lines.len()
                ),
                t.muted(),
            )
            .right_aligned(),
        )
    } else {
        b
    };
    frame.render_widget(b, area);
    frame.render_widget(
        Paragraph::new(lines).scroll((scroll.min(u16::MAX as usize) as u16, 0)),
        Rect {
            x: inner.x + 1,
            width: inner.width.saturating_sub(1),
            ..inner
        },
    );
}
