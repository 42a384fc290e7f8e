//! The set-answer popup: pick yes / no / unknown / clear, type the reason, Enter saves.

use super::{answer_span, footer_line, wrap};
use crate::tui::app::{App, Choice, Field};
use crate::tui::keymap::{self, Action, Context, KEYMAP};
use ratatui::Frame;
use ratatui::layout::{Constraint, Position, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

/// The key that picks a choice, from the keymap.
fn choice_key(c: Choice) -> String {
    KEYMAP
        .iter()
        .find(|b| b.context == Context::AnswerChoice && b.action == Action::Choose(c))
        .and_then(|b| b.keys.first())
        .map(|k| k.label())
        .unwrap_or_default()
}

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let (Some(view), Some(popup)) = (app.patient.as_ref(), app.popup()) else {
        return;
    };
    let Some(detail) = view.detail.as_deref() else {
        return;
    };
    let c = popup.criterion;
    let Some(item) = detail.screening.checklist.iter().find(|i| i.criterion == c) else {
        return;
    };
    let width = area.width.saturating_sub(4).min(72);
    let inner_width = width.saturating_sub(4) as usize;

    let mut lines: Vec<Line> = Vec::new();
    lines.push(Line::from(vec![
        Span::styled(format!("{} ", detail.summary.study_id), t.title()),
        Span::raw(c.title()),
    ]));
    lines.push(Line::from(vec![
        Span::styled("Automatic: ", t.muted()),
        answer_span(t, c, item.auto.answer),
        Span::styled(format!(" · {}", item.auto.source), t.muted()),
    ]));
    lines.push(Line::raw(""));
    let choosing = popup.field == Field::Choice;
    lines.push(Line::styled(
        "Answer",
        if choosing {
            t.focused_title()
        } else {
            t.title()
        },
    ));
    for choice in Choice::ALL {
        let picked = choice == popup.choice;
        let marker = if picked { "▶ " } else { "  " };
        let meaning = match choice.answer() {
            Some(a) => answer_span(t, c, a),
            None => match item.manual {
                Some(_) => Span::styled(
                    format!(
                        "remove the manual answer (back to {})",
                        item.auto.answer.label(c)
                    ),
                    t.muted(),
                ),
                None => Span::styled("(no manual answer to remove)", t.muted()),
            },
        };
        let row_style = if picked && choosing {
            t.selected()
        } else if picked {
            t.selected_unfocused()
        } else {
            t.text()
        };
        lines.push(
            Line::from(vec![
                Span::raw(marker),
                Span::styled(format!("{:<2}", choice_key(choice)), t.key()),
                Span::raw(format!("{:<9}", choice.word())),
                meaning,
            ])
            .style(row_style),
        );
    }
    lines.push(Line::raw(""));
    lines.push(Line::styled(
        "Reason (kept in the audit trail)",
        if choosing {
            t.title()
        } else {
            t.focused_title()
        },
    ));
    // The field shows the end of a reason longer than the popup.
    let reason_chars = popup.reason.chars().count();
    let field_width = inner_width.saturating_sub(1);
    let shown: String = popup
        .reason
        .chars()
        .skip(reason_chars.saturating_sub(field_width))
        .collect();
    let pad = field_width.saturating_sub(shown.chars().count());
    lines.push(Line::from(vec![Span::styled(
        format!("{shown}{}", " ".repeat(pad)),
        t.input(),
    )]));
    let reason_row = lines.len() - 1;
    let status: Vec<Line> = if popup.saving {
        vec![Line::styled("… saving", t.muted())]
    } else if let Some(e) = &popup.error {
        wrap(&format!("✗ {e}"), inner_width)
            .into_iter()
            .map(|l| Line::styled(l, t.error()))
            .collect()
    } else {
        Vec::new()
    };
    if !status.is_empty() {
        lines.push(Line::raw(""));
        lines.extend(status);
    }

    let height = (lines.len() as u16 + 2).min(area.height);
    let rect = area.centered(Constraint::Length(width), Constraint::Length(height));
    let ctx = if choosing {
        Context::AnswerChoice
    } else {
        Context::AnswerReason
    };
    let hints = footer_line(t, &keymap::footer(&[ctx]), width.saturating_sub(2) as usize);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(t.focused_border())
        .title(Span::styled(
            format!(" Answer {} by hand ", c.code()),
            t.focused_title(),
        ))
        .title_bottom(hints);
    let inner = block.inner(rect).inner(ratatui::layout::Margin::new(1, 0));
    frame.render_widget(Clear, rect);
    frame.render_widget(block, rect);
    frame.render_widget(Paragraph::new(lines), inner);
    if !choosing && !popup.saving {
        let x = inner.x + shown.chars().count() as u16;
        let y = inner.y + reason_row as u16;
        if y < inner.bottom() {
            frame.set_cursor_position(Position::new(x.min(inner.right().saturating_sub(1)), y));
        }
    }
}
