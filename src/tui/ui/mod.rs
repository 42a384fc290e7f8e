//! Drawing: pure functions of `&App` into a ratatui frame.

mod agreement;
mod confirm;
mod dashboard;
mod followup;
mod help;
mod images;
mod jobs;
mod model;
mod outcomes;
mod patient;
mod popup;
mod reading;
mod summary;
mod worklist;

pub use agreement::{estimate, percent};

use super::app::{App, LoadState, MessageKind, Screen};
use super::keymap;
use super::theme::{FLAG_SYMBOL, Theme, Verdict};
use crate::domain::eligibility::{Answer, Criterion, Decision};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

/// The smallest terminal the screens are laid out for.
pub const MIN_WIDTH: u16 = 80;
pub const MIN_HEIGHT: u16 = 24;

pub fn render(app: &App, frame: &mut Frame) {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        too_small(app, frame, area);
        return;
    }
    let [header, body, status, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    render_header(app, frame, header);
    match app.screen {
        Screen::Worklist => worklist::render(app, frame, body),
        Screen::Patient => patient::render(app, frame, body),
        Screen::Images => images::render(app, frame, body),
        Screen::Reading => reading::render_reader_list(app, frame, body),
        Screen::Adjudication => reading::render_queue(app, frame, body),
        Screen::Case => reading::render_case(app, frame, body),
        Screen::Agreement => agreement::render(app, frame, body),
        Screen::Jobs => jobs::render(app, frame, body),
        Screen::Model => model::render(app, frame, body),
        Screen::Dashboard => dashboard::render(app, frame, body),
        Screen::BoxPatients => dashboard::render_box_patients(app, frame, body),
        Screen::Followup => followup::render(app, frame, body),
        Screen::Summary => summary::render(app, frame, body),
    }
    render_status(app, frame, status);
    render_footer(app, frame, footer);
    if app.popup().is_some() {
        popup::render(app, frame, area);
    }
    if app.screen == Screen::Followup && app.visit_form().is_some() {
        followup::render_form(app, frame, area);
    }
    if app.help.is_some() {
        help::render(app, frame, area);
    }
    if app.confirmation().is_some() {
        jobs::render_confirm(app, frame, area);
    }
}

fn too_small(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let text = vec![
        Line::styled("terminal too small", t.warning()),
        Line::raw(format!(
            "{}x{} here; marrow needs at least {MIN_WIDTH}x{MIN_HEIGHT}.",
            area.width, area.height
        )),
        Line::styled("Enlarge the window, or press Ctrl-c to quit.", t.muted()),
    ];
    let y = area.height.saturating_sub(3) / 2;
    let inner = Rect::new(
        area.x,
        area.y + y,
        area.width,
        area.height.saturating_sub(y),
    );
    frame.render_widget(
        Paragraph::new(text).centered().wrap(Wrap { trim: true }),
        inner,
    );
}

/// 100000 -> "100,000".
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// "✓ eligible" in the decision's style.
pub fn decision_span(t: &Theme, d: Decision) -> Span<'static> {
    let v = Verdict::of_decision(d);
    Span::styled(format!("{} {}", v.symbol(), d.code()), t.verdict(v))
}

/// "✓ met", "✗ applies", "? unknown" in the answer's style.
pub fn answer_span(t: &Theme, c: Criterion, a: Answer) -> Span<'static> {
    let v = Verdict::of_answer(c, a);
    Span::styled(format!("{} {}", v.symbol(), a.label(c)), t.verdict(v))
}

/// Cuts text to `width` characters, ending with "…" when it was longer.
pub fn ellipsize(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut out: String = text.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Word-wraps text to `width` columns (long words are cut), so scrolling knows the
/// number of lines.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let mut word = word.to_string();
        loop {
            let used = line.chars().count();
            let need = word.chars().count() + usize::from(used > 0);
            if used + need <= width {
                if used > 0 {
                    line.push(' ');
                }
                line.push_str(&word);
                break;
            }
            if used > 0 {
                lines.push(std::mem::take(&mut line));
                continue;
            }
            let head: String = word.chars().take(width).collect();
            word = word.chars().skip(width).collect();
            lines.push(head);
            if word.is_empty() {
                break;
            }
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// The status counts; `roomy` spells them out with more space.
fn count_spans(
    t: &Theme,
    s: &crate::domain::status::StatusReport,
    roomy: bool,
) -> Vec<Span<'static>> {
    let e = &s.eligibility;
    let (gap, sep, dxa) = if roomy {
        ("  ", " ", "missing DXA")
    } else {
        (" ", "", "no DXA")
    };
    let mut spans = Vec::new();
    for (d, n) in [
        (Decision::Eligible, e.eligible),
        (Decision::Ineligible, e.ineligible),
        (Decision::Pending, e.pending),
    ] {
        let v = Verdict::of_decision(d);
        spans.push(Span::styled(
            format!("{}{sep}{} {}", v.symbol(), thousands(n), d.code()),
            t.verdict(v),
        ));
        spans.push(Span::raw(gap));
    }
    spans.push(Span::styled(
        format!("{FLAG_SYMBOL}{sep}{} {dxa}", thousands(s.missing_dxa)),
        if s.missing_dxa > 0 {
            t.warning()
        } else {
            t.muted()
        },
    ));
    if s.quarantined > 0 {
        // Images whose patient is not imported yet (`marrow flags` lists them).
        let what = if roomy { "images waiting" } else { "waiting" };
        spans.push(Span::raw(gap));
        spans.push(Span::styled(
            format!("{FLAG_SYMBOL}{sep}{} {what}", thousands(s.quarantined)),
            t.warning(),
        ));
    }
    spans
}

fn render_header(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let title = Span::styled(" marrow  ", t.app_title());
    let counts = match &app.status {
        // Summary files only: no study is open, nothing is counted live.
        None if app.summary_only => {
            Line::styled("summary files only · read-only · no study open", t.muted())
        }
        Some(s) => {
            let roomy = Line::from(count_spans(t, s, true));
            if roomy.width() + title.width() <= area.width as usize {
                roomy
            } else {
                Line::from(count_spans(t, s, false))
            }
        }
        None => Line::styled("counts not loaded yet", t.muted()),
    };
    // Summary files only: nobody logged in to a study, so no user or role to show.
    let user = if app.summary_only {
        Line::default()
    } else {
        Line::styled(
            format!(" {} ({}) ", app.session.user, app.session.role),
            t.muted(),
        )
    };
    let mut left = vec![title];
    left.extend(counts.spans);
    let left = Line::from(left);
    // The user goes to the right when there is room for both.
    if left.width() + user.width() <= area.width as usize {
        frame.render_widget(user.right_aligned(), area);
    }
    frame.render_widget(left, area);
}

fn render_status(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let line = match &app.message {
        Some(m) => {
            let (sym, style) = match m.kind {
                MessageKind::Info => ("·", t.muted()),
                MessageKind::Success => ("✓", t.success()),
                MessageKind::Error => ("✗", t.error()),
            };
            Line::styled(format!(" {sym} {}", m.text), style)
        }
        None => {
            let loading = app.worklist.state == LoadState::Loading
                || app
                    .patient
                    .as_ref()
                    .is_some_and(|p| p.state == LoadState::Loading);
            if loading {
                Line::styled(" … loading", t.muted())
            } else {
                Line::raw("")
            }
        }
    };
    frame.render_widget(line, area);
}

/// Key hints for what receives keys now, from the keymap. Entries that do not fit are
/// dropped, but help and quit are kept at the end when they exist.
pub fn footer_line(t: &Theme, entries: &[(String, &'static str)], width: usize) -> Line<'static> {
    let is_tail = |w: &str| w == "help" || w == "quit";
    let tail: Vec<_> = entries.iter().filter(|(_, w)| is_tail(w)).collect();
    let len = |e: &(String, &str)| e.0.chars().count() + 1 + e.1.chars().count() + 2;
    let mut budget = width.saturating_sub(1 + tail.iter().map(|e| len(e)).sum::<usize>());
    let mut chosen = Vec::new();
    for e in entries.iter().filter(|(_, w)| !is_tail(w)) {
        if len(e) > budget {
            break;
        }
        budget -= len(e);
        chosen.push(e);
    }
    chosen.extend(tail);
    let mut spans = vec![Span::raw(" ")];
    for (keys, word) in chosen {
        spans.push(Span::styled(keys.clone(), t.key()));
        spans.push(Span::styled(format!(" {word}  "), t.muted()));
    }
    Line::from(spans)
}

fn render_footer(app: &App, frame: &mut Frame, area: Rect) {
    let entries = keymap::footer(&app.contexts());
    frame.render_widget(footer_line(&app.theme, &entries, area.width as usize), area);
}

/// The first row to show so that `selected` is visible in `height` rows, moving as
/// little as possible from `offset`.
pub fn scroll_offset(offset: usize, selected: usize, len: usize, height: usize) -> usize {
    if height == 0 || len <= height {
        return 0;
    }
    let mut off = offset.min(len - height);
    if selected < off {
        off = selected;
    } else if selected >= off + height {
        off = selected + 1 - height;
    }
    off
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(100000), "100,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    #[test]
    fn wrap_breaks_on_words_and_cuts_long_ones() {
        assert_eq!(wrap("a bb ccc", 4), vec!["a bb", "ccc"]);
        assert_eq!(wrap("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
        assert_eq!(wrap("", 4), vec![""]);
    }

    #[test]
    fn scroll_offset_moves_only_when_needed() {
        assert_eq!(scroll_offset(0, 5, 100, 10), 0);
        assert_eq!(scroll_offset(0, 10, 100, 10), 1);
        assert_eq!(scroll_offset(50, 45, 100, 10), 45);
        assert_eq!(scroll_offset(95, 99, 100, 10), 90);
        assert_eq!(scroll_offset(7, 3, 5, 10), 0);
    }
}
