//! The reading screens: the reader's worklist, the adjudication queue, and one case
//! (the read screen for a reader, the adjudication screen for the others): the image,
//! the KL reference card, what the data layer lets the user see of the case (a
//! hidden value shows why it is hidden), and the form.

use super::confirm;
use super::images::{block, render_image};
use super::{ellipsize, scroll_offset, wrap};
use crate::db::reading::{
    Blinded, CaseSummary, CaseView, FinalRecord, QueueItem, ReadRecord, describe_grade,
};
use crate::domain::reading::{KL_REFERENCE, OpImpression, Side, read_words};
use crate::tui::app::{App, LoadState};
use crate::tui::keymap::Context;
use crate::tui::reading::{
    CaseList, CaseScreen, ExplainState, FormField, FormMode, GradeChoice, GradeForm,
};
use crate::tui::theme::{FLAG_SYMBOL, Theme, Verdict};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

/// "left knee (KL grade)", "patient (OP stage)".
pub fn side_words(side: Side) -> String {
    if side.is_knee() {
        format!("{side} knee · KL grade")
    } else {
        "patient · OP stage".into()
    }
}

/// What the image shown is, for the line over the case's image: "left knee · DX ·
/// PA · 2024-03-12", "both knees (bilateral film) · CR · AP", "hip, left · DX · AP".
pub fn image_label(side: Side, r: &crate::db::imaging::ImageRecord) -> String {
    let lat = r
        .laterality
        .as_deref()
        .map(|l| l.trim().to_ascii_uppercase())
        .unwrap_or_default();
    let what = if side.is_knee() {
        match lat.as_str() {
            "L" => "left knee".to_string(),
            "R" => "right knee".to_string(),
            "B" => "both knees (bilateral film)".to_string(),
            _ => "knee, side unknown".to_string(),
        }
    } else {
        let part = r
            .body_part
            .as_deref()
            .map(str::to_ascii_lowercase)
            .unwrap_or_else(|| "body part not stated".into());
        match lat.as_str() {
            "L" => format!("{part}, left"),
            "R" => format!("{part}, right"),
            "B" => format!("{part}, both sides"),
            _ => part,
        }
    };
    let mut parts = vec![
        what,
        r.modality.clone().unwrap_or_else(|| "modality ?".into()),
        r.view_position
            .clone()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| "view not stated".into()),
    ];
    if let Some(d) = &r.study_date {
        parts.push(d.clone());
    }
    parts.join(" · ")
}

/// The patient's images that cannot grade the case, counted by why: "4 CT, 1 MR, 1
/// right knee"; `None` when there are none.
fn other_images_words(v: &CaseView) -> Option<String> {
    if v.other_images.is_empty() {
        return None;
    }
    let mut by: Vec<(String, usize)> = Vec::new();
    for o in &v.other_images {
        match by.iter_mut().find(|(l, _)| *l == o.label) {
            Some((_, n)) => *n += 1,
            None => by.push((o.label.clone(), 1)),
        }
    }
    by.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    Some(
        by.iter()
            .map(|(l, n)| format!("{n} {l}"))
            .collect::<Vec<_>>()
            .join(", "),
    )
}

/// "2026-01-06T10:00:00.000Z" -> "2026-01-06 10:00 UTC".
fn short_time(at: &str) -> String {
    match (at.get(..10), at.get(10..11), at.get(11..16)) {
        (Some(day), Some("T"), Some(hm)) if at.ends_with('Z') => format!("{day} {hm} UTC"),
        _ => at.to_string(),
    }
}

fn status_lines(t: &Theme, state: &LoadState, what: &str) -> Option<Vec<Line<'static>>> {
    match state {
        LoadState::Loading => Some(vec![Line::styled(format!("Loading {what}…"), t.muted())]),
        LoadState::Failed(e) => Some(vec![
            Line::styled(format!("✗ {what} did not load: {e}"), t.error()),
            Line::styled("Press r to try again, Esc to go back.", t.muted()),
        ]),
        LoadState::Loaded => None,
    }
}

/// Rows of a list, the selected one reversed and kept in view; where they are
/// drawn is kept for mouse clicks.
fn list_rows<T>(
    app: &App,
    list: &CaseList<T>,
    area: Rect,
    row: impl Fn(&T) -> Line<'static>,
) -> Vec<Line<'static>> {
    let t = &app.theme;
    let height = area.height as usize;
    let offset = scroll_offset(list.offset.get(), list.selected, list.rows.len(), height);
    list.offset.set(offset);
    let shown = list.rows.len().saturating_sub(offset).min(height);
    let mut hits = app.hits.get();
    hits.case_list_rows = Rect::new(area.x, area.y, area.width, shown as u16);
    app.hits.set(hits);
    list.rows
        .iter()
        .enumerate()
        .skip(offset)
        .take(height)
        .map(|(i, r)| {
            let line = row(r);
            if i == list.selected {
                line.style(t.selected())
            } else {
                line
            }
        })
        .collect()
}

/// The reader's worklist: their cases, those waiting for their read first.
pub fn render_reader_list(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let Some(list) = app.reading.reader_list.as_ref() else {
        return;
    };
    let waiting = list
        .rows
        .iter()
        .filter(|c| c.your_read_version.is_none())
        .count();
    let title = format!(
        "Your reading worklist · {} case{} · {waiting} waiting for your read",
        list.rows.len(),
        if list.rows.len() == 1 { "" } else { "s" }
    );
    let b = block(t, title, true);
    let inner = b.inner(area);
    frame.render_widget(b, area);
    if let Some(lines) = status_lines(t, &list.state, "your reading worklist") {
        frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), inner);
        return;
    }
    let [head, body, foot] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(2),
    ])
    .areas(inner);
    frame.render_widget(
        Line::styled(
            format!(
                "  {:<8} {:<24} {:<8} {}",
                "case", "what", "reads", "your read"
            ),
            t.table_header(),
        ),
        head,
    );
    if list.rows.is_empty() {
        frame.render_widget(
            Paragraph::new(vec![
                Line::raw("No case is assigned to you yet."),
                Line::styled("Press t to take the next case to read.", t.muted()),
            ]),
            body,
        );
    } else {
        let rows = list_rows(app, list, body, |c: &CaseSummary| {
            let (mark, yours) = match c.your_read_version {
                Some(v) => ("✓", format!("read (v{v}), locked")),
                None => ("▶", "waiting for your read".to_string()),
            };
            Line::from(vec![
                Span::raw(format!(
                    "{mark} {:<8} {:<24} {:<8} ",
                    c.case,
                    side_words(c.side),
                    format!("{}/{}", c.reads_submitted, c.reads_needed)
                )),
                Span::styled(
                    yours,
                    if c.your_read_version.is_some() {
                        t.success()
                    } else {
                        t.warning()
                    },
                ),
            ])
        });
        frame.render_widget(Paragraph::new(rows), body);
    }
    frame.render_widget(
        Paragraph::new(vec![Line::styled(
            "Cases carry no study ID, and nothing of another reader, the DXA or the model \
             shows before your own read is submitted.",
            t.muted(),
        )])
        .wrap(Wrap { trim: true }),
        foot,
    );
}

/// The adjudication queue: each case with why the reads disagree.
pub fn render_queue(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let Some(q) = app.reading.queue.as_ref() else {
        return;
    };
    let title = format!(
        "Adjudication queue · {} case{}",
        q.rows.len(),
        if q.rows.len() == 1 { "" } else { "s" }
    );
    let b = block(t, title, true);
    let inner = b.inner(area);
    frame.render_widget(b, area);
    if let Some(lines) = status_lines(t, &q.state, "the adjudication queue") {
        frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), inner);
        return;
    }
    let [head, body] = Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(inner);
    let wide = inner.width >= 100;
    let id_w = if wide { 20 } else { 14 };
    frame.render_widget(
        Line::styled(
            format!(
                "  {:<8} {:<6} {:<id_w$} {:<5} why",
                "case", "side", "study ID", "reads"
            ),
            t.table_header(),
        ),
        head,
    );
    if q.rows.is_empty() {
        frame.render_widget(
            Line::raw("No case waits for adjudication: the reads agree or are still coming in."),
            body,
        );
        return;
    }
    let width = inner.width as usize;
    let rows = list_rows(app, q, body, |item: &QueueItem| {
        let s = &item.summary;
        let head = format!(
            "{FLAG_SYMBOL} {:<8} {:<6} {:<id_w$} {:<5} ",
            s.case,
            s.side.code(),
            ellipsize(s.study_id.as_deref().unwrap_or("—"), id_w),
            format!("{}/{}", s.reads_submitted, s.reads_needed),
        );
        let why = item
            .reasons
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join("; ");
        let room = width.saturating_sub(head.chars().count());
        Line::from(vec![
            Span::raw(head),
            Span::styled(ellipsize(&why, room), t.verdict(Verdict::Open)),
        ])
    });
    frame.render_widget(Paragraph::new(rows), body);
}

/// A hidden value in words.
fn hidden(t: &Theme, what: &str, why: &str, width: usize) -> Vec<Line<'static>> {
    wrap(&format!("{what}: hidden — {why}"), width)
        .into_iter()
        .map(|l| Line::styled(l, t.muted()))
        .collect()
}

fn read_lines(t: &Theme, label: &str, r: &ReadRecord, width: usize) -> Vec<Line<'static>> {
    let mut text = format!("{label} v{}: {}", r.version, read_words(&r.read));
    // The time when there is room for it (the audit trail has it in any case).
    if width >= 60 {
        text.push_str(&format!(" · {}", short_time(&r.submitted_at)));
    }
    if r.source == "import" {
        text.push_str(&format!(
            " · imported, read {}",
            r.read_date.as_deref().unwrap_or("?")
        ));
    }
    if let Some(why) = &r.correction_reason {
        text.push_str(&format!(" · correction: {why}"));
    }
    wrap(&text, width)
        .into_iter()
        .map(|l| Line::styled(l, t.text()))
        .collect()
}

fn final_text(f: &FinalRecord) -> String {
    let mut s = format!(
        "{} by {} at {} ({})",
        describe_grade(&f.grade),
        f.decided_by,
        short_time(&f.decided_at),
        f.meaning
    );
    if let Some(r) = &f.rationale {
        s.push_str(&format!(": {r}"));
    }
    s
}

/// What the user may see of the case, as lines: values the data layer hides show
/// why (one line for all of them when the reason is the same).
fn case_lines(t: &Theme, cs: &CaseScreen, v: &CaseView, width: usize) -> Vec<Line<'static>> {
    let mut out = Vec::new();
    let field = |k: &str, v: String| -> Vec<Line<'static>> {
        let text = format!("{k}: {v}");
        wrap(&text, width).into_iter().map(Line::raw).collect()
    };
    if let Blinded::Shown(id) = &v.study_id {
        out.extend(field("study ID", id.clone()));
    }
    if let Some(words) = other_images_words(v) {
        out.extend(
            wrap(&format!("not this case's images: {words}"), width)
                .into_iter()
                .map(|l| Line::styled(l, t.muted())),
        );
    }
    for r in &v.your_reads {
        let mut l = read_lines(t, "your read", r, width);
        if let Some(first) = l.first_mut() {
            *first = first.clone().style(t.success());
        }
        out.extend(l);
    }
    if !v.your_reads.is_empty() && cs.form.is_none() {
        out.extend(
            wrap(
                "✓ submitted and locked: c corrects it (a new version, with a reason)",
                width,
            )
            .into_iter()
            .map(|l| Line::styled(l, t.success())),
        );
    }
    // The blinded parts, in order; the hidden ones grouped by their reason.
    let mut hidden_parts: Vec<(&str, &str)> = Vec::new();
    match &v.state {
        Blinded::Shown(s) => out.extend(field("state", s.code().to_string())),
        Blinded::Hidden(why) => hidden_parts.push(("case state", why)),
    }
    match &v.other_reads {
        Blinded::Shown(rs) if rs.is_empty() => out.extend(field("other reads", "none yet".into())),
        Blinded::Shown(rs) => {
            for r in rs {
                out.extend(read_lines(t, &format!("read by {}", r.reader), r, width));
            }
        }
        Blinded::Hidden(why) => hidden_parts.push(("other reads", why)),
    }
    if let Blinded::Shown(old) = &v.superseded_reads {
        for r in old {
            out.extend(
                read_lines(t, &format!("replaced: {}", r.reader), r, width)
                    .into_iter()
                    .map(|l| l.style(t.muted())),
            );
        }
    }
    match &v.dxa_stage {
        Blinded::Shown(s) => out.extend(field(
            "DXA stage",
            s.clone().unwrap_or_else(|| "none recorded".into()),
        )),
        Blinded::Hidden(why) => hidden_parts.push(("DXA stage", why)),
    }
    match &v.model_prediction {
        Blinded::Shown(Some(p)) => out.extend(field(
            "model",
            format!(
                "{}: KL {} · OP {}",
                p.model,
                probabilities(&p.kl_probabilities),
                probabilities(&p.op_probabilities)
            ),
        )),
        Blinded::Shown(None) => {
            out.extend(field("model", "none yet (inference has not run)".into()))
        }
        Blinded::Hidden(why) => hidden_parts.push(("model", why)),
    }
    match &v.disagreements {
        Blinded::Shown(d) => {
            for x in d {
                out.extend(
                    wrap(&format!("{FLAG_SYMBOL} {x}"), width)
                        .into_iter()
                        .map(|l| Line::styled(l, t.warning())),
                );
            }
        }
        Blinded::Hidden(why) => hidden_parts.push(("disagreement", why)),
    }
    match &v.final_grade {
        Blinded::Shown(Some(f)) => out.extend(
            wrap(&format!("final: {}", final_text(f)), width)
                .into_iter()
                .map(|l| Line::styled(l, t.title())),
        ),
        Blinded::Shown(None) => out.extend(field("final", "not yet".into())),
        Blinded::Hidden(why) => hidden_parts.push(("final grade", why)),
    }
    while let Some((_, why)) = hidden_parts.first().copied() {
        let (same, rest): (Vec<_>, Vec<_>) = hidden_parts.into_iter().partition(|(_, w)| *w == why);
        let names = same.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ");
        out.extend(hidden(t, &names, why, width));
        hidden_parts = rest;
    }
    out
}

fn probabilities(p: &[f64]) -> String {
    p.iter()
        .map(|x| format!("{:.0}%", x * 100.0))
        .collect::<Vec<_>>()
        .join("/")
}

/// The KL reference card (PROTOCOL.md's definitions), or the WHO thresholds for a
/// patient case. `roomy` wraps the definitions, else one line each (cut at the edge).
fn reference_lines(t: &Theme, side: Side, width: usize, roomy: bool) -> Vec<Line<'static>> {
    let mut out = Vec::new();
    if side.is_knee() {
        for (k, text) in KL_REFERENCE {
            // Grades of radiographic OA (KL >= 2) stand out, with a word as well.
            let style = if k >= 2 { t.title() } else { t.text() };
            if roomy {
                for (i, l) in wrap(text, width.saturating_sub(3)).into_iter().enumerate() {
                    let grade = if i == 0 { k.to_string() } else { String::new() };
                    out.push(Line::from(vec![
                        Span::styled(format!("{grade:<3}"), style),
                        Span::raw(l),
                    ]));
                }
            } else {
                out.push(Line::from(vec![
                    Span::styled(format!("{k:<3}"), style),
                    Span::raw(ellipsize(text, width.saturating_sub(3))),
                ]));
            }
        }
        out.push(Line::styled(
            ellipsize("radiographic OA: KL ≥ 2", width),
            t.muted(),
        ));
    } else {
        for (o, rule) in OpImpression::ALL.into_iter().zip([
            "T ≥ −1.0",
            "−2.5 < T < −1.0",
            "T ≤ −2.5 (severe: with a fragility fracture)",
        ]) {
            if roomy {
                for (i, l) in wrap(rule, width.saturating_sub(13)).into_iter().enumerate() {
                    let name = if i == 0 { o.code() } else { "" };
                    out.push(Line::raw(format!("{name:<13}{l}")));
                }
            } else {
                let text = format!("{:<13}{rule}", o.code());
                out.push(Line::raw(ellipsize(&text, width)));
            }
        }
        out.push(Line::styled(
            ellipsize("WHO, lowest T of spine, femoral neck, total hip", width),
            t.muted(),
        ));
    }
    out
}

fn field_label(f: FormField, form: &GradeForm) -> &'static str {
    let knee = form.side.is_knee();
    match f {
        FormField::Grade if form.mode == FormMode::Adjudicate && knee => "final KL grade",
        FormField::Grade if form.mode == FormMode::Adjudicate => "final OP stage",
        FormField::Grade if knee => "KL grade",
        FormField::Grade => "OP impression",
        FormField::NotAssessableReason => "not assessable: why",
        FormField::JsnMedial => "JSN medial",
        FormField::JsnLateral => "JSN lateral",
        FormField::OsteophyteMedial => "osteophyte medial",
        FormField::OsteophyteLateral => "osteophyte lateral",
        FormField::OpImpression if form.mode == FormMode::Adjudicate => "OP stage",
        FormField::OpImpression => "OP impression",
        FormField::Confidence => "confidence",
        FormField::Reason if form.mode == FormMode::Adjudicate => "rationale",
        FormField::Reason => "correction: why",
    }
}

fn field_value(f: FormField, form: &GradeForm) -> String {
    let dash = || "—".to_string();
    let num = |v: Option<u8>| v.map_or_else(dash, |n| n.to_string());
    match f {
        FormField::Grade => match form.grade {
            None => dash(),
            Some(GradeChoice::Kl(k)) => format!("KL {k}"),
            Some(GradeChoice::Op(o)) => o.to_string(),
            Some(GradeChoice::NotAssessable) => "not assessable".into(),
        },
        FormField::NotAssessableReason => form.not_assessable.clone(),
        FormField::JsnMedial => num(form.oarsi[0]),
        FormField::JsnLateral => num(form.oarsi[1]),
        FormField::OsteophyteMedial => num(form.oarsi[2]),
        FormField::OsteophyteLateral => num(form.oarsi[3]),
        FormField::OpImpression => form.op.map_or_else(dash, |o| o.to_string()),
        FormField::Confidence => num(form.confidence),
        FormField::Reason => form.reason.clone(),
    }
}

/// What the selected field takes, shown beside it.
fn field_hint(f: FormField, form: &GradeForm) -> &'static str {
    let knee = form.side.is_knee();
    match f {
        FormField::Grade if knee => "0-4, or h/l to not assessable",
        FormField::Grade => "h/l: normal, osteopenia, osteoporosis, not assessable",
        FormField::JsnMedial
        | FormField::JsnLateral
        | FormField::OsteophyteMedial
        | FormField::OsteophyteLateral => "0-3, optional (x clears)",
        FormField::OpImpression => "h/l, optional (x clears)",
        FormField::Confidence => "1 unsure … 5 certain",
        FormField::NotAssessableReason | FormField::Reason => "type",
    }
}

/// The form's lines and, when a text field has the keys, where the cursor goes
/// (line, column).
fn form_lines(
    t: &Theme,
    form: &GradeForm,
    width: usize,
) -> (Vec<Line<'static>>, Option<(usize, usize)>) {
    let mut out = Vec::new();
    let mut cursor = None;
    let current = form.current();
    let label_w = 20;
    for f in form.fields() {
        let selected = f == current;
        let value = field_value(f, form);
        let mark = if selected { "▶ " } else { "  " };
        let label = format!("{mark}{:<label_w$}", field_label(f, form));
        let room = width.saturating_sub(label.chars().count());
        let mut spans = vec![Span::raw(label.clone())];
        if f.is_text() {
            // The field shows the end of a text longer than the room.
            let n = value.chars().count();
            let shown: String = value
                .chars()
                .skip(n.saturating_sub(room.saturating_sub(1)))
                .collect();
            let pad = room.saturating_sub(shown.chars().count() + 1);
            if selected {
                cursor = Some((out.len(), label.chars().count() + shown.chars().count()));
            }
            spans.push(Span::styled(
                format!("{shown}{} ", " ".repeat(pad)),
                t.input(),
            ));
        } else {
            spans.push(Span::styled(value.clone(), t.title()));
            if selected {
                let hint = format!("  {}", field_hint(f, form));
                let left = room.saturating_sub(value.chars().count());
                spans.push(Span::styled(ellipsize(&hint, left), t.muted()));
            }
        }
        let line = Line::from(spans);
        out.push(if selected && !f.is_text() {
            line.style(t.selected_unfocused())
        } else {
            line
        });
    }
    if form.saving {
        out.push(Line::styled("… saving", t.muted()));
    } else if let Some(e) = &form.error {
        out.extend(
            wrap(&format!("✗ {e}"), width)
                .into_iter()
                .map(|l| Line::styled(l, t.error())),
        );
    }
    (out, cursor)
}

fn form_title(form: &GradeForm, case: &str) -> String {
    match form.mode {
        FormMode::Read => format!("Your read of {case}"),
        FormMode::Correct => format!("Correct your read of {case} (a new version)"),
        FormMode::Adjudicate => format!("Final grade of {case} (adjudication)"),
    }
}

/// The read or adjudication screen.
/// Wrapped lines of one style.
fn styled(out: &mut Vec<Line<'static>>, text: &str, style: ratatui::style::Style, width: usize) {
    out.extend(
        wrap(text, width)
            .into_iter()
            .map(|l| Line::styled(l, style)),
    );
}

/// The model's explanation under the case's image: computing, or the selected
/// image's Shapley contributions to the predicted class (percentage points).
fn explanation_lines(t: &Theme, app: &App, cs: &CaseScreen, width: usize) -> Vec<Line<'static>> {
    let mut out = Vec::new();
    match &cs.explain {
        None => {}
        Some(ExplainState::Computing) => {
            styled(&mut out, "computing the explanation…", t.muted(), width)
        }
        Some(ExplainState::Shown(f)) => {
            let e = &f.0;
            let current = app
                .images
                .as_ref()
                .and_then(|v| v.current())
                .map(|i| i.instance_id);
            match current.and_then(|id| e.image(id)) {
                None => styled(
                    &mut out,
                    "the model does not read this image ([ / ]: the case's other images)",
                    t.muted(),
                    width,
                ),
                Some(i) => {
                    let s = &i.shapley;
                    let class = e
                        .task
                        .classes()
                        .get(s.predicted)
                        .cloned()
                        .unwrap_or_default();
                    let c = s.predicted_class();
                    styled(
                        &mut out,
                        &format!("{class} {:.1}% · model {}", c.full * 100.0, e.model),
                        t.title(),
                        width,
                    );
                    styled(
                        &mut out,
                        &format!(
                            "image {:+.1} · demographics {:+.1} · labs {:+.1}",
                            c.image * 100.0,
                            c.demographics * 100.0,
                            c.labs * 100.0
                        ),
                        t.text(),
                        width,
                    );
                    styled(
                        &mut out,
                        &format!(
                            "points of {class} from a base of {:.1}% (Shapley values); red: for {class}, blue: against",
                            c.base * 100.0
                        ),
                        t.muted(),
                        width,
                    );
                }
            }
        }
    }
    out
}

pub fn render_case(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let Some(cs) = app.reading.case.as_ref() else {
        return;
    };
    let Some(loaded) = cs.loaded.as_deref() else {
        let b = block(t, cs.case.clone(), true);
        let inner = b.inner(area);
        frame.render_widget(b, area);
        let lines = status_lines(t, &cs.state, &cs.case)
            .unwrap_or_else(|| vec![Line::styled("Loading…", t.muted())]);
        frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), inner);
        return;
    };
    let v = &loaded.view;
    let wide = area.width >= 110;
    let [image_area, right] = Layout::horizontal([
        Constraint::Percentage(if wide { 42 } else { 36 }),
        Constraint::Fill(1),
    ])
    .areas(area);
    // The model's explanation, when asked for, under the image.
    let elines = explanation_lines(t, app, cs, image_area.width.saturating_sub(2) as usize);
    let [image_area, explain_area] = Layout::vertical([
        Constraint::Fill(1),
        Constraint::Length(if elines.is_empty() {
            0
        } else {
            (elines.len() as u16 + 2).min(image_area.height / 2)
        }),
    ])
    .areas(image_area);
    if !elines.is_empty() {
        let b = block(t, "model explanation · e: plain image".into(), false);
        let inner = b.inner(explain_area);
        frame.render_widget(b, explain_area);
        frame.render_widget(Paragraph::new(elines), inner);
    }
    match app.images.as_ref() {
        Some(view) if !view.list.is_empty() => {
            // What the image shown is: side, modality, view.
            let label = view.current().map(|i| image_label(v.side, &i.record));
            let [label_area, image_area] = Layout::vertical([
                Constraint::Length(u16::from(label.is_some())),
                Constraint::Fill(1),
            ])
            .areas(image_area);
            if let Some(l) = label {
                let w = label_area.width as usize;
                frame.render_widget(
                    Paragraph::new(Line::styled(ellipsize(&l, w), t.title())),
                    label_area,
                );
            }
            render_image(app, view, frame, image_area)
        }
        _ => {
            let b = block(t, "image".into(), false);
            let inner = b.inner(image_area);
            frame.render_widget(b, image_area);
            let what = if v.side.is_knee() {
                format!(
                    "No radiograph (DX, CR) of the {} knee can grade this case.",
                    v.side
                )
            } else {
                "No radiograph (DX, CR) of the hip, pelvis or spine can grade this case.".into()
            };
            let mut lines = vec![Line::styled(what, t.muted())];
            if let Some(words) = other_images_words(v) {
                lines.push(Line::styled(
                    format!("Not used, the patient's other images: {words}."),
                    t.muted(),
                ));
            }
            frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), inner);
        }
    }
    let inner_w = right.width.saturating_sub(2) as usize;
    let form = cs.form.as_ref();
    let (flines, cursor) = form.map_or((Vec::new(), None), |f| form_lines(t, f, inner_w));
    let form_h = if form.is_some() {
        flines.len() as u16 + 2
    } else {
        0
    };
    let lines = case_lines(t, cs, v, inner_w);
    // The case pane keeps what it says (up to half the column); the reference card
    // takes the rest, its definitions wrapped when they fit, else one line each.
    // Without a form (a submitted read, a decided case) the case pane comes first.
    let most = if form.is_some() {
        right.height / 2
    } else {
        right.height.saturating_sub(7)
    };
    let case_need = (lines.len() as u16 + 2).clamp(4, most.max(4));
    let room = right.height.saturating_sub(form_h + case_need);
    let wrapped = reference_lines(t, v.side, inner_w, true);
    let card = if wrapped.len() as u16 + 2 <= room {
        wrapped
    } else {
        reference_lines(t, v.side, inner_w, false)
    };
    // A card cut short of its grades would mislead: then none at all.
    let grades = if v.side.is_knee() {
        KL_REFERENCE.len()
    } else {
        OpImpression::ALL.len()
    };
    let card_h = if room >= grades as u16 + 2 {
        (card.len() as u16 + 2).min(room)
    } else {
        0
    };
    let [case_area, form_area, card_area] = Layout::vertical([
        Constraint::Fill(1),
        Constraint::Length(form_h),
        Constraint::Length(card_h),
    ])
    .areas(right);
    let state = match &v.state {
        Blinded::Shown(s) => format!(" · {}", s.code()),
        Blinded::Hidden(_) => String::new(),
    };
    let title = format!(
        "{} · {} · reads {}/{}{state}",
        v.case,
        side_words(v.side),
        v.reads_submitted,
        v.reads_needed
    );
    let b = block(t, title, form.is_none());
    let inner = b.inner(case_area);
    frame.render_widget(b, case_area);
    frame.render_widget(Paragraph::new(lines), inner);
    if let Some(f) = form {
        let b = block(t, form_title(f, &v.case), true);
        let inner = b.inner(form_area);
        frame.render_widget(b, form_area);
        frame.render_widget(Paragraph::new(flines), inner);
        if let Some((row, col)) = cursor
            && !f.confirming
        {
            let y = inner.y + row as u16;
            let x = (inner.x + col as u16).min(inner.right().saturating_sub(1));
            if y < inner.bottom() {
                frame.set_cursor_position(Position::new(x, y));
            }
        }
    }
    let card_title = if v.side.is_knee() {
        "KL reference (Kellgren-Lawrence)"
    } else {
        "OP stage reference (DXA T-score)"
    };
    let b = block(t, card_title.into(), false);
    let inner = b.inner(card_area);
    frame.render_widget(b, card_area);
    frame.render_widget(Paragraph::new(card), inner);
    if let Some(f) = form.filter(|f| f.confirming) {
        render_confirm(app, f, v, frame, area);
    }
}

/// The confirmation before a read or an adjudication is submitted.
fn render_confirm(app: &App, form: &GradeForm, v: &CaseView, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let inner_w = confirm::text_width(area);
    let what = form.summary().unwrap_or_else(|e| format!("✗ {e}"));
    let mut lines: Vec<Line> = Vec::new();
    let (title, head, note) = match form.mode {
        FormMode::Read => (
            "Submit your read?",
            format!("{} · {}", v.case, side_words(v.side)),
            "Once submitted your read is locked; a correction is a new version with a reason. \
             Then the other reads and the DXA stage show.",
        ),
        FormMode::Correct => (
            "Submit the correction?",
            format!("{} · {}", v.case, side_words(v.side)),
            "The correction is a new version; your earlier read stays in the audit trail.",
        ),
        FormMode::Adjudicate => (
            "Record the final grade?",
            format!("{} · {}", v.case, side_words(v.side)),
            "Signed with your name, the UTC time and the meaning \"adjudicated\"; it is never \
             changed afterwards.",
        ),
    };
    lines.push(Line::styled(head, t.title()));
    for l in wrap(&what, inner_w) {
        lines.push(Line::styled(l, t.focused_title()));
    }
    if form.mode != FormMode::Read {
        let label = if form.mode == FormMode::Adjudicate {
            "rationale"
        } else {
            "why"
        };
        for l in wrap(&format!("{label}: {}", form.reason.trim()), inner_w) {
            lines.push(Line::raw(l));
        }
    }
    lines.push(Line::raw(""));
    for l in wrap(note, inner_w) {
        lines.push(Line::styled(l, t.muted()));
    }
    confirm::render(t, frame, area, title, lines, Context::Confirm);
}
