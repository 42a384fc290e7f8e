//! The one confirmation pop-up: a bordered box in the middle of the screen with its
//! question as the title, what it is about, and its keys (y/Enter yes, n/Esc no) in
//! the bottom border. The jobs keys (infer all, cancel, quit while a job runs) and the
//! read and adjudication forms all draw theirs through it.

use super::footer_line;
use crate::tui::keymap::{self, Context};
use crate::tui::theme::Theme;
use ratatui::Frame;
use ratatui::layout::{Constraint, Margin, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

/// The pop-up's width on a screen `area` wide.
fn width(area: Rect) -> u16 {
    area.width.saturating_sub(8).min(70)
}

/// How wide the pop-up's text may be, to wrap its lines to.
pub fn text_width(area: Rect) -> usize {
    width(area).saturating_sub(4) as usize
}

/// Draws the pop-up over `area`: `title` in the top border, `lines` inside (wrapped to
/// [`text_width`] by the caller), the keys of `context` in the bottom border.
pub fn render(
    t: &Theme,
    frame: &mut Frame,
    area: Rect,
    title: &str,
    lines: Vec<Line<'_>>,
    context: Context,
) {
    let width = width(area);
    let height = (lines.len() as u16 + 2).min(area.height);
    let rect = area.centered(Constraint::Length(width), Constraint::Length(height));
    let hints = footer_line(
        t,
        &keymap::footer(&[context]),
        width.saturating_sub(2) as usize,
    );
    let b = Block::default()
        .borders(Borders::ALL)
        .border_style(t.focused_border())
        .title(Span::styled(format!(" {title} "), t.focused_title()))
        .title_bottom(hints);
    let inner = b.inner(rect).inner(Margin::new(1, 0));
    frame.render_widget(Clear, rect);
    frame.render_widget(b, rect);
    frame.render_widget(Paragraph::new(lines), inner);
}
