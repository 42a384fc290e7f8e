//! The secondary outcomes on the dashboard (`o`): the cumulative incidence of new
//! fragility fractures by baseline OP stage as Kaplan–Meier step curves in braille,
//! beside a table of incidence, interval and numbers at risk at 6, 12, 24 and 36
//! months, the log-rank test, and the VAS and OKS change from baseline by KL grade.

use super::images::block;
use super::{ellipsize, wrap};
use crate::domain::outcomes::{OutcomesReport, REPORT_MONTHS};
use crate::tui::theme::Theme;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::symbols::Marker;
use ratatui::text::Line;
use ratatui::widgets::{Axis, Chart, Dataset, GraphType, Paragraph};

fn pct(v: f64) -> String {
    format!("{:.0}%", v * 100.0)
}

/// The text lines: what is shown, the table, the log-rank test, the changes.
pub fn lines(t: &Theme, r: &OutcomesReport, width: usize) -> Vec<Line<'static>> {
    let o = &r.outcomes;
    let mut out = vec![Line::styled(
        ellipsize(
            &format!(
                "Secondary outcomes · {} · {} eligible patients   (o: back to the flow)",
                r.cohort_role, r.patients
            ),
            width,
        ),
        t.title(),
    )];
    for l in wrap(
        "New fragility fractures by baseline OP stage (DXA WHO): Kaplan–Meier cumulative \
         incidence, 95% CI (Greenwood, log-log), n at risk",
        width,
    ) {
        out.push(Line::styled(l, t.muted()));
    }
    let wide = width >= 100;
    let mut head = format!("{:<13}{:>4}{:>4}", "stage", "n", "ev");
    for m in REPORT_MONTHS {
        head.push_str(&if wide {
            format!("  {:<19}", format!("{m} mo"))
        } else {
            format!("  {:<9}", format!("{m} mo"))
        });
    }
    out.push(Line::styled(
        ellipsize(head.trim_end(), width),
        t.table_header(),
    ));
    for c in &o.fractures {
        let mut row = format!("{:<13}{:>4}{:>4}", c.stage, c.patients, c.events);
        for a in &c.at {
            let cell = if c.patients == 0 {
                "-".to_string()
            } else if wide {
                format!(
                    "{} [{}, {}] {}",
                    pct(a.incidence),
                    pct(a.lower),
                    pct(a.upper),
                    a.at_risk
                )
            } else {
                format!("{} ·{}", pct(a.incidence), a.at_risk)
            };
            row.push_str(&if wide {
                format!("  {cell:<19}")
            } else {
                format!("  {cell:<9}")
            });
        }
        out.push(Line::raw(ellipsize(row.trim_end(), width)));
    }
    if !wide {
        out.push(Line::styled(
            ellipsize(
                "cells: incidence ·n at risk (wider: with the 95% CI)",
                width,
            ),
            t.muted(),
        ));
    }
    out.push(Line::styled(
        ellipsize(
            &match &o.logrank {
                Some(l) => format!(
                    "log-rank between the stages: χ² {:.2}, df {}, p {}",
                    l.chi2,
                    l.df,
                    crate::domain::stats::p_text(l.p)
                ),
                None => "log-rank: not defined (two stages with patients and a fracture needed)"
                    .to_string(),
            },
            width,
        ),
        t.text(),
    ));
    if !o.fracture_excluded.is_empty() {
        for l in wrap(
            &format!(
                "left out: {}",
                crate::domain::evaluation::left_out(&o.fracture_excluded)
            ),
            width,
        ) {
            out.push(Line::styled(l, t.muted()));
        }
    }
    out.push(Line::raw(""));
    out.push(Line::styled(
        ellipsize(
            "VAS and OKS change from the month-0 visit by baseline KL (worse knee)",
            width,
        ),
        t.title(),
    ));
    if o.changes.is_empty() {
        out.push(Line::styled(
            ellipsize(
                "none yet: a change needs a month-0 visit and a later one with the score",
                width,
            ),
            t.muted(),
        ));
    }
    for c in &o.changes {
        let ci = c
            .change
            .ci95
            .map(|ci| format!("[{:+.1}, {:+.1}]", ci.lower, ci.upper))
            .unwrap_or_else(|| "(n < 2)".into());
        out.push(Line::raw(ellipsize(
            &format!(
                "{:<4} KL{}  {:>2} mo  n {:>3}  {:+.1} {ci}",
                c.score.to_uppercase(),
                c.kl,
                c.month,
                c.change.n,
                c.change.mean
            ),
            width,
        )));
    }
    out
}

/// The outcomes pane: text on the left, the curves on the right where there is room.
pub fn render(t: &Theme, r: &Result<OutcomesReport, String>, frame: &mut Frame, area: Rect) {
    let r = match r {
        Ok(r) => r,
        Err(e) => {
            frame.render_widget(
                Paragraph::new(Line::styled(
                    ellipsize(
                        &format!("could not compute the outcomes: {e}"),
                        area.width as usize,
                    ),
                    t.error(),
                )),
                area,
            );
            return;
        }
    };
    let chart = area.width >= 100 && area.height >= 12;
    let [text_area, chart_area] = Layout::horizontal([
        Constraint::Fill(1),
        Constraint::Length(if chart { 44 } else { 0 }),
    ])
    .areas(area);
    frame.render_widget(
        Paragraph::new(lines(t, r, text_area.width as usize)),
        text_area,
    );
    if !chart {
        return;
    }
    let until = 36.0;
    let curves: Vec<(String, Vec<(f64, f64)>)> = r
        .outcomes
        .fractures
        .iter()
        .filter(|c| c.patients > 0)
        .map(|c| (c.stage.clone(), c.step_points(until)))
        .collect();
    let styles = [t.muted(), t.text(), t.focused_border()];
    let markers = [Marker::Dot, Marker::Braille, Marker::Braille];
    let datasets: Vec<Dataset> = curves
        .iter()
        .enumerate()
        .map(|(i, (name, pts))| {
            Dataset::default()
                .name(name.clone())
                .marker(markers[i % 3])
                .graph_type(GraphType::Line)
                .style(styles[i % 3])
                .data(pts)
        })
        .collect();
    let b = block(t, "Fracture incidence".into(), false)
        .title_bottom(Line::styled(" ↑ incidence  → months ", t.muted()));
    let chart = Chart::new(datasets)
        .block(b)
        .hidden_legend_constraints((Constraint::Percentage(60), Constraint::Percentage(60)))
        .x_axis(
            Axis::default()
                .style(t.muted())
                .bounds([0.0, until])
                .labels(["0", "12", "24", "36"]),
        )
        .y_axis(
            Axis::default()
                .style(t.muted())
                .bounds([0.0, 1.0])
                .labels(["0", "50%", "100%"]),
        )
        .style(Style::default());
    frame.render_widget(chart, chart_area);
}
