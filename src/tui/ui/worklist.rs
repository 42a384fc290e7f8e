//! The worklist: filter bar, optional search line, and the table of patients. Only the
//! rows on screen are built, so 100,000 patients draw as fast as 20.

use super::{decision_span, scroll_offset, thousands};
use crate::db::study::PatientSummary;
use crate::domain::protocol::Phase;
use crate::tui::app::{App, Filters, LoadState};
use crate::tui::keymap::{Action, Context, KEYMAP, KeySpec};
use crate::tui::theme::{FLAG_SYMBOL, Theme, Verdict, flag_label};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Block, Borders, Cell, HighlightSpacing, Paragraph, Row, Table, TableState, Wrap,
};

/// The key of a worklist action, from the keymap (so the filter bar never lies).
fn key_of(action: Action) -> String {
    KEYMAP
        .iter()
        .find(|b| b.context == Context::Worklist && b.action == action)
        .and_then(|b| b.keys.first())
        .map(|k: &KeySpec| k.label())
        .unwrap_or_default()
}

fn filter_spans(t: &Theme, f: &Filters) -> Vec<Span<'static>> {
    let mut spans = vec![Span::raw(" ")];
    let mut item = |action: Action, name: &str, value: Option<Span<'static>>| {
        if spans.len() > 1 {
            spans.push(Span::styled(" │ ", t.border()));
        }
        spans.push(Span::styled(key_of(action), t.key()));
        spans.push(Span::raw(format!(" {name}: ")));
        spans.push(value.unwrap_or_else(|| Span::styled("all", t.muted())));
    };
    item(
        Action::CycleDecision,
        "decision",
        f.decision.map(|d| decision_span(t, d)),
    );
    item(
        Action::CycleFlag,
        "flag",
        f.flag.map(|x| {
            Span::styled(
                format!("{FLAG_SYMBOL} {}", flag_label(x)),
                t.active_filter(),
            )
        }),
    );
    item(
        Action::CycleSite,
        "site",
        f.site.clone().map(|s| Span::styled(s, t.active_filter())),
    );
    item(
        Action::CycleGroup,
        "group",
        f.group
            .map(|g| Span::styled(g.code().to_string(), t.active_filter())),
    );
    spans
}

fn phase_label(p: Phase, wide: bool) -> &'static str {
    match (p, wide) {
        (Phase::Retrospective, true) => "retrospective",
        (Phase::Prospective, true) => "prospective",
        (Phase::Retrospective, false) => "retro",
        (Phase::Prospective, false) => "prosp",
    }
}

/// Why a patient is not (yet) eligible: the failing criteria, else the open ones.
fn why(t: &Theme, p: &PatientSummary) -> Span<'static> {
    let list = |v: &[crate::domain::eligibility::Criterion]| {
        v.iter().map(|c| c.code()).collect::<Vec<_>>().join(" ")
    };
    if !p.reasons.is_empty() {
        Span::styled(list(&p.reasons), t.verdict(Verdict::Bad))
    } else if !p.pending.is_empty() {
        Span::styled(list(&p.pending), t.verdict(Verdict::Open))
    } else {
        Span::raw("")
    }
}

fn row<'a>(t: &Theme, p: &'a PatientSummary, wide: bool) -> Row<'a> {
    let flags = if p.flags.is_empty() {
        Span::raw("")
    } else {
        Span::styled(
            format!(
                "{FLAG_SYMBOL} {}",
                p.flags
                    .iter()
                    .map(|f| flag_label(*f))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            t.warning(),
        )
    };
    let mut cells = vec![
        Cell::from(p.study_id.as_str()),
        Cell::from(p.site.as_str()),
        Cell::from(p.group.code()),
        Cell::from(phase_label(p.phase, wide)),
        Cell::from(Line::from(p.age.map_or("—".into(), |a| a.to_string())).right_aligned()),
        Cell::from(decision_span(t, p.decision)),
    ];
    if wide {
        cells.push(Cell::from(why(t, p)));
        cells.push(Cell::from(p.who_stage.clone().unwrap_or_default()));
    }
    cells.push(Cell::from(flags));
    Row::new(cells)
}

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let w = &app.worklist;
    let show_search = w.searching || !w.search.is_empty();
    let [bar, search, list] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(u16::from(show_search)),
        Constraint::Fill(1),
    ])
    .areas(area);
    frame.render_widget(Line::from(filter_spans(t, &w.filters)), bar);
    if show_search {
        let mut spans = vec![
            Span::raw(" "),
            Span::styled(key_of(Action::StartSearch), t.key()),
            Span::raw(" search study ID: "),
        ];
        let style = if w.searching {
            t.input()
        } else {
            t.active_filter()
        };
        spans.push(Span::styled(w.search.clone(), style));
        frame.render_widget(Line::from(spans), search);
        if w.searching {
            let x = search.x + 20 + w.search.chars().count() as u16;
            frame.set_cursor_position(Position::new(
                x.min(search.right().saturating_sub(1)),
                search.y,
            ));
        }
    }

    let mut title = vec![Span::styled(" Patients ", t.focused_title())];
    if w.state != LoadState::Loading {
        title.push(Span::raw(format!(
            "{} of {} ",
            thousands(w.visible.len() as u64),
            thousands(w.patients.len() as u64)
        )));
    } else if !w.patients.is_empty() {
        // The first page arrived ahead of the rest (a large study).
        title.push(Span::raw(format!(
            "first {} ",
            thousands(w.patients.len() as u64)
        )));
    }
    if w.state == LoadState::Loading {
        title.push(Span::styled("· loading… ", t.muted()));
    }
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(if w.searching {
            t.border()
        } else {
            t.focused_border()
        })
        .title(Line::from(title));
    let inner = block.inner(list);
    frame.render_widget(block, list);

    let notice = |text: Vec<Line<'static>>, frame: &mut Frame| {
        frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), inner);
    };
    match &w.state {
        LoadState::Failed(e) if e == crate::tui::app::READER_WORKLIST => {
            return notice(vec![Line::styled(e.clone(), t.muted())], frame);
        }
        LoadState::Failed(e) if w.patients.is_empty() => {
            return notice(
                vec![
                    Line::styled(format!("✗ the worklist did not load: {e}"), t.error()),
                    Line::styled("Press r to try again.", t.muted()),
                ],
                frame,
            );
        }
        LoadState::Loading if w.patients.is_empty() => {
            return notice(
                vec![Line::styled("Loading the worklist…", t.muted())],
                frame,
            );
        }
        _ => {}
    }
    if w.visible.is_empty() {
        let text = if w.patients.is_empty() {
            vec![
                Line::raw("No patients in this study yet."),
                Line::styled(
                    "Import them with `marrow import patients FILE.csv`, then press r.",
                    t.muted(),
                ),
            ]
        } else {
            vec![
                Line::raw("No patient matches these filters."),
                Line::styled(
                    format!(
                        "Press {} to clear filters and search.",
                        key_of(Action::ClearFilters)
                    ),
                    t.muted(),
                ),
            ]
        };
        return notice(text, frame);
    }

    let wide = inner.width >= 110;
    let rows_height = inner.height.saturating_sub(1) as usize;
    w.page.set(rows_height.max(1));
    let offset = scroll_offset(w.offset.get(), w.selected, w.visible.len(), rows_height);
    w.offset.set(offset);
    let end = (offset + rows_height).min(w.visible.len());
    let rows: Vec<Row> = w.visible[offset..end]
        .iter()
        .map(|&i| row(t, &w.patients[i], wide))
        .collect();
    let mut header = vec!["Study ID", "Site", "Group", "Phase", "Age", "Decision"];
    let mut widths = vec![
        Constraint::Length(w.id_width),
        Constraint::Length(w.site_width),
        Constraint::Length(7),
        Constraint::Length(if wide { 13 } else { 5 }),
        Constraint::Length(3),
        Constraint::Length(12),
    ];
    if wide {
        header.extend(["Why", "WHO stage"]);
        widths.extend([Constraint::Length(14), Constraint::Length(12)]);
    }
    header.push("Flags");
    widths.push(Constraint::Fill(1));
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(t.table_header()))
        .row_highlight_style(t.selected())
        .highlight_symbol("▶ ")
        .highlight_spacing(HighlightSpacing::Always);
    let mut state = TableState::default().with_selected(Some(w.selected - offset));
    frame.render_stateful_widget(table, inner, &mut state);
    let mut hits = app.hits.get();
    hits.worklist_rows = Rect::new(inner.x, inner.y + 1, inner.width, (end - offset) as u16);
    app.hits.set(hits);
}
