//! The combined summary of two sites: a column per summary file and the total, a row
//! per count. Counts print as `Count` does: "<5" for a suppressed cell, a range for a
//! total over one; "–" where a file has no such row.

use super::images::block;
use super::{ellipsize, wrap};
use crate::tui::app::App;
use crate::tui::summary::SummaryLine;
use ratatui::Frame;
use ratatui::layout::{Margin, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

/// Width of a count column.
const COL: usize = 11;

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let Some(v) = app.summary_view() else {
        return;
    };
    let title = format!(
        "Combined summary: {} (read-only)",
        v.merged().sites.join(" + ")
    );
    let b = block(
        t,
        ellipsize(&title, area.width.saturating_sub(6) as usize),
        true,
    );
    let inner = b.inner(area).inner(Margin::new(1, 0));
    frame.render_widget(b, area);
    let width = inner.width as usize;
    let columns = v.parts().len() + 1;
    let label_w = width.saturating_sub(columns * (COL + 1)).max(12);
    let mut fixed = vec![Line::styled(
        ellipsize(
            &format!(
                "{} · generated {} · a total over a \"<5\" cell is a range",
                v.merged().suppression,
                v.merged().generated_at
            ),
            width,
        ),
        t.muted(),
    )];
    let mut header = format!("{:<label_w$}", "");
    for p in v.parts() {
        header.push_str(&format!(" {:>COL$}", ellipsize(&p.label, COL)));
    }
    header.push_str(&format!(" {:>COL$}", "total"));
    fixed.push(Line::styled(ellipsize(&header, width), t.table_header()));

    let mut body: Vec<Line> = Vec::new();
    for line in v.lines() {
        match line {
            SummaryLine::Heading(h) => body.push(Line::styled(ellipsize(&h, width), t.title())),
            SummaryLine::Blank => body.push(Line::raw("")),
            SummaryLine::Note(n) => {
                for l in wrap(&format!("note: {n}"), width) {
                    body.push(Line::styled(l, t.warning()));
                }
            }
            SummaryLine::Row {
                label,
                indent,
                cells,
                total,
            } => {
                let label = format!("{:indent$}{label}", "", indent = indent + 2);
                let mut spans = vec![Span::styled(
                    format!("{:<label_w$}", ellipsize(&label, label_w)),
                    t.text(),
                )];
                for c in cells {
                    let (text, style) = match c {
                        Some(c) => (c.to_string(), t.text()),
                        None => ("–".to_string(), t.muted()),
                    };
                    spans.push(Span::styled(format!(" {text:>COL$}"), style));
                }
                spans.push(Span::styled(
                    format!(" {:>COL$}", total.to_string()),
                    t.title(),
                ));
                body.push(Line::from(spans));
            }
        }
    }
    let fits = (inner.height as usize).saturating_sub(fixed.len());
    v.lines.set((body.len(), fits));
    let scroll = v.scroll().min(body.len().saturating_sub(fits));
    fixed.extend(body.into_iter().skip(scroll).take(fits));
    frame.render_widget(Paragraph::new(fixed), inner);
}
