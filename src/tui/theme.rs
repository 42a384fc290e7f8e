//! The semantic theme: screens ask for "focused border", "warning" or "muted", never a
//! raw colour. Only the 16 ANSI colours are used (readable on 16- and 256-colour
//! terminals), every colour comes with a symbol or a word, and `NO_COLOR` turns colour
//! off while keeping bold, dim and reverse.

use crate::domain::eligibility::{Answer, Criterion, Decision, Flag, decide};
use ratatui::style::{Color, Modifier, Style};

/// How something reads for eligibility: good, bad or still open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Good,
    Bad,
    Open,
}

impl Verdict {
    /// The symbol shown next to a verdict, so it never relies on colour alone.
    pub fn symbol(self) -> &'static str {
        match self {
            Verdict::Good => "✓",
            Verdict::Bad => "✗",
            Verdict::Open => "?",
        }
    }

    pub fn of_decision(d: Decision) -> Verdict {
        match d {
            Decision::Eligible => Verdict::Good,
            Decision::Ineligible => Verdict::Bad,
            Decision::Pending => Verdict::Open,
        }
    }

    /// What one answer to one criterion means for eligibility, by the domain's own rule.
    pub fn of_answer(c: Criterion, a: Answer) -> Verdict {
        Verdict::of_decision(decide(&[(c, a)]).0)
    }
}

/// The symbol of a flag (flags always ask for attention).
pub const FLAG_SYMBOL: &str = "⚠";

/// A short, readable name of a flag for tables.
pub fn flag_label(f: Flag) -> &'static str {
    match f {
        Flag::MissingDxa => "missing DXA",
        Flag::ZScoreApplies => "Z-score applies",
    }
}

/// The look of the application, by meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    color: bool,
}

impl Theme {
    /// Colours unless `NO_COLOR` is set to a non-empty value (<https://no-color.org>).
    pub fn from_env() -> Theme {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Theme { color: !no_color }
    }

    /// With colour.
    pub fn colored() -> Theme {
        Theme { color: true }
    }

    /// Without colour (modifiers only).
    pub fn plain() -> Theme {
        Theme { color: false }
    }

    pub fn has_color(&self) -> bool {
        self.color
    }

    fn fg(&self, c: Color) -> Style {
        if self.color {
            Style::new().fg(c)
        } else {
            Style::new()
        }
    }

    pub fn text(&self) -> Style {
        Style::new()
    }

    pub fn muted(&self) -> Style {
        Style::new().add_modifier(Modifier::DIM)
    }

    pub fn app_title(&self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    pub fn title(&self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }

    pub fn focused_title(&self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    pub fn border(&self) -> Style {
        self.muted()
    }

    pub fn focused_border(&self) -> Style {
        self.fg(Color::Cyan)
    }

    pub fn table_header(&self) -> Style {
        Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
    }

    /// The selected row of the focused list.
    pub fn selected(&self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }

    /// The selected row of a list that is not focused.
    pub fn selected_unfocused(&self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }

    /// A key name in the footer and help.
    pub fn key(&self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    /// A filter that is narrowing the list.
    pub fn active_filter(&self) -> Style {
        self.fg(Color::Yellow).add_modifier(Modifier::BOLD)
    }

    pub fn verdict(&self, v: Verdict) -> Style {
        match v {
            Verdict::Good => self.fg(Color::Green),
            Verdict::Bad => self.fg(Color::Red),
            Verdict::Open => self.fg(Color::Yellow),
        }
    }

    pub fn warning(&self) -> Style {
        self.fg(Color::Yellow).add_modifier(Modifier::BOLD)
    }

    pub fn error(&self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }

    pub fn success(&self) -> Style {
        self.fg(Color::Green)
    }

    /// A text field being edited.
    pub fn input(&self) -> Style {
        Style::new().add_modifier(Modifier::UNDERLINED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_follow_the_domain_rule() {
        assert_eq!(
            Verdict::of_answer(Criterion::I4, Answer::Yes),
            Verdict::Good
        );
        assert_eq!(Verdict::of_answer(Criterion::I4, Answer::No), Verdict::Bad);
        assert_eq!(Verdict::of_answer(Criterion::E2, Answer::Yes), Verdict::Bad);
        assert_eq!(Verdict::of_answer(Criterion::E2, Answer::No), Verdict::Good);
        assert_eq!(
            Verdict::of_answer(Criterion::E2, Answer::Unknown),
            Verdict::Open
        );
    }

    #[test]
    fn plain_theme_has_no_colour_but_keeps_modifiers() {
        let t = Theme::plain();
        assert_eq!(t.verdict(Verdict::Bad).fg, None);
        assert!(t.selected().add_modifier.contains(Modifier::REVERSED));
        assert_eq!(Theme::colored().verdict(Verdict::Bad).fg, Some(Color::Red));
    }
}
