//! The help popup, generated from the keymap.

use super::footer_line;
use crate::tui::app::App;
use crate::tui::keymap::{self, Context, KEYMAP};
use ratatui::Frame;
use ratatui::layout::{Constraint, Margin, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

/// Every binding, by context, as lines.
pub fn help_lines(app: &App) -> Vec<Line<'static>> {
    let t = &app.theme;
    let mut out = Vec::new();
    for ctx in Context::HELP_ORDER {
        let bindings: Vec<_> = KEYMAP.iter().filter(|b| b.context == ctx).collect();
        if bindings.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(Line::raw(""));
        }
        out.push(Line::styled(ctx.title(), t.focused_title()));
        for b in bindings {
            out.push(Line::from(vec![
                Span::styled(format!("  {:<20}", keymap::keys_label(b)), t.key()),
                Span::raw(b.help),
            ]));
        }
    }
    out
}

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let Some(help) = app.help.as_ref() else {
        return;
    };
    let lines = help_lines(app);
    let width = area.width.saturating_sub(4).min(76);
    let height = area.height.saturating_sub(2).min(lines.len() as u16 + 2);
    let rect = area.centered(Constraint::Length(width), Constraint::Length(height));
    let fits = height.saturating_sub(2) as usize;
    help.lines.set((lines.len(), fits));
    let scroll = help.scroll.min(lines.len().saturating_sub(fits));
    let mut title = " Help: keys ".to_string();
    if lines.len() > fits {
        title = format!(
            " Help: keys [{}-{}/{}] ",
            scroll + 1,
            (scroll + fits).min(lines.len()),
            lines.len()
        );
    }
    let hints = footer_line(
        t,
        &keymap::footer(&[Context::Help]),
        width.saturating_sub(2) as usize,
    );
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(t.focused_border())
        .title(Span::styled(title, t.focused_title()))
        .title_bottom(hints);
    frame.render_widget(Clear, rect);
    let inner = block.inner(rect).inner(Margin::new(1, 0));
    frame.render_widget(block, rect);
    frame.render_widget(
        Paragraph::new(lines).scroll((scroll.min(u16::MAX as usize) as u16, 0)),
        inner,
    );
}
