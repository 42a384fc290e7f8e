//! `marrow report --out DIR`: PNG charts (plotters, bitmap backend, text drawn with
//! ab_glyph from the bundled DejaVu Sans: no fontconfig, freetype or system font) of
//! enrollment over time, enrollment against the targets, the ROC curves when there are
//! predictions and reference grades, the CONSORT SVG, and an `index.html` showing them.

use super::export::{consort_title, today, write_private};
use super::{Global, open};
use crate::db::Study;
use crate::db::export::RocData;
use crate::domain::consort::{self, Step};
use crate::domain::roc;
use crate::domain::status::StatusReport;
use anyhow::{Context, Result, anyhow};
use clap::Args;
use plotters::coord::Shift;
use plotters::coord::ranged1d::AsRangedCoord;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The font every chart's text is drawn with.
pub const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The folder to write into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// What `report` wrote.
#[derive(Debug, Clone, Default)]
pub struct ReportFiles {
    pub index: PathBuf,
    pub pngs: Vec<PathBuf>,
    pub svg: PathBuf,
}

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for style in [FontStyle::Normal, FontStyle::Bold] {
            if plotters::style::register_font("sans-serif", style, FONT).is_err() {
                tracing::warn!("the bundled font could not be registered");
            }
        }
    });
}

fn pe<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("drawing a chart: {e}")
}

const W: u32 = 1000;
const H: u32 = 560;

/// The font of axis labels, in every chart.
const LABEL_FONT: (&str, u32) = ("sans-serif", 14);

/// What frames a chart's plot: the caption (text and size), the margin around it all
/// and the room for the labels of the x and y axes.
struct Frame<'a> {
    caption: &'a str,
    caption_size: u32,
    margin: u32,
    x_label_area: u32,
    y_label_area: u32,
}

/// A chart on a PNG, with axes `X` by `Y`.
type Chart<'a, 'b, X, Y> = ChartContext<
    'a,
    BitMapBackend<'b>,
    Cartesian2d<<X as AsRangedCoord>::CoordDescType, <Y as AsRangedCoord>::CoordDescType>,
>;

/// The set-up every chart shares, on a [`canvas`]: the white background, the frame and
/// the axes `x` by `y` (the caller draws the mesh, with [`LABEL_FONT`], and the series,
/// then presents the area).
fn chart_on<'a, 'b, X, Y>(
    root: &'a DrawingArea<BitMapBackend<'b>, Shift>,
    frame: Frame,
    x: X,
    y: Y,
) -> Result<Chart<'a, 'b, X, Y>>
where
    X: AsRangedCoord,
    Y: AsRangedCoord,
{
    root.fill(&WHITE).map_err(pe)?;
    ChartBuilder::on(root)
        .caption(frame.caption, ("sans-serif", frame.caption_size))
        .margin(frame.margin)
        .x_label_area_size(frame.x_label_area)
        .y_label_area_size(frame.y_label_area)
        .build_cartesian_2d(x, y)
        .map_err(pe)
}

/// The white canvas of a chart at `path` (with the bundled font registered).
fn canvas(path: &Path, size: (u32, u32)) -> DrawingArea<BitMapBackend<'_>, Shift> {
    register_font();
    BitMapBackend::new(path, size).into_drawing_area()
}

/// Eligible patients over time: the cumulative count by month of the index date, per
/// site and in total.
pub fn enrollment_chart(path: &Path, by_month: &[(String, String, u64)]) -> Result<()> {
    let months = crate::domain::status::month_span(by_month.iter().map(|(m, _, _)| m.as_str()));
    let mut sites: Vec<String> = by_month.iter().map(|(_, s, _)| s.clone()).collect();
    sites.sort();
    sites.dedup();
    let idx = |m: &str| months.iter().position(|x| x == m).unwrap_or(0) as i32;
    let mut series: Vec<(String, Vec<(i32, u64)>)> = Vec::new();
    let mut total_by_month = vec![0u64; months.len()];
    for s in &sites {
        let mut per = vec![0u64; months.len()];
        for (m, site, n) in by_month {
            if site == s {
                per[idx(m) as usize] += n;
                total_by_month[idx(m) as usize] += n;
            }
        }
        let mut acc = 0;
        series.push((
            s.clone(),
            per.iter()
                .enumerate()
                .map(|(i, n)| {
                    acc += n;
                    (i as i32, acc)
                })
                .collect(),
        ));
    }
    let mut acc = 0;
    let total: Vec<(i32, u64)> = total_by_month
        .iter()
        .enumerate()
        .map(|(i, n)| {
            acc += n;
            (i as i32, acc)
        })
        .collect();
    let ymax = total.last().map(|x| x.1).unwrap_or(0).max(1);
    let xmax = (months.len() as i32 - 1).max(1);
    let label = |x: &i32| months.get(*x as usize).cloned().unwrap_or_default();
    let frame = Frame {
        caption: "Eligible patients over time (cumulative, by month of the index imaging)",
        caption_size: 22,
        margin: 16,
        x_label_area: 44,
        y_label_area: 64,
    };
    let y = 0u64..(ymax + ymax / 10 + 1);
    let root = canvas(path, (W, H));
    let mut chart = chart_on(&root, frame, 0i32..xmax, y)?;
    chart
        .configure_mesh()
        .x_labels(8)
        .x_label_formatter(&label)
        .y_desc("eligible patients")
        .x_desc("month of the index imaging")
        .label_style(LABEL_FONT)
        .draw()
        .map_err(pe)?;
    if months.is_empty() {
        chart
            .draw_series(std::iter::once(Text::new(
                "no eligible patient with an index date yet",
                (0, ymax / 2),
                ("sans-serif", 18),
            )))
            .map_err(pe)?;
    }
    for (i, (site, pts)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
            .map_err(pe)?
            .label(site.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .draw_series(LineSeries::new(
            total.iter().copied(),
            BLACK.stroke_width(3),
        ))
        .map_err(pe)?
        .label("all sites")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(3)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(pe)?;
    root.present().map_err(pe)?;
    Ok(())
}

/// Eligible patients of every cohort (site x group x phase) against its target.
pub fn targets_chart(path: &Path, status: &StatusReport) -> Result<()> {
    let n = status.cohorts.len().max(1) as u32;
    let xmax = status
        .cohorts
        .iter()
        .map(|c| u64::from(c.target).max(c.eligible))
        .max()
        .unwrap_or(1)
        .max(1);
    let xmax = xmax + xmax / 4 + 1;
    let h = (90 + 34 * n).max(300);
    let labels: Vec<String> = status
        .cohorts
        .iter()
        .map(|c| format!("{} {} {}", c.site, c.group.code(), c.phase.code()))
        .collect();
    let ylabel = |v: &SegmentValue<u32>| match v {
        SegmentValue::CenterOf(i) => labels.get(*i as usize).cloned().unwrap_or_default(),
        _ => String::new(),
    };
    let frame = Frame {
        caption: "Enrollment against target (eligible patients per cohort)",
        caption_size: 22,
        margin: 16,
        x_label_area: 40,
        y_label_area: 210,
    };
    let y = (0u32..n).into_segmented();
    let root = canvas(path, (W, h));
    let mut chart = chart_on(&root, frame, 0u64..xmax, y)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n as usize)
        .y_label_formatter(&ylabel)
        .x_desc("patients")
        .label_style(LABEL_FONT)
        .draw()
        .map_err(pe)?;
    let target_style = RGBColor(205, 214, 224).filled();
    let done_style = RGBColor(31, 94, 140).filled();
    chart
        .draw_series(status.cohorts.iter().enumerate().map(|(i, c)| {
            let i = i as u32;
            let mut r = Rectangle::new(
                [
                    (0, SegmentValue::Exact(i)),
                    (u64::from(c.target), SegmentValue::Exact(i + 1)),
                ],
                target_style,
            );
            r.set_margin(4, 4, 0, 0);
            r
        }))
        .map_err(pe)?
        .label("target")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 18, y + 5)], target_style));
    chart
        .draw_series(status.cohorts.iter().enumerate().map(|(i, c)| {
            let i = i as u32;
            let mut r = Rectangle::new(
                [
                    (0, SegmentValue::Exact(i)),
                    (c.eligible, SegmentValue::Exact(i + 1)),
                ],
                done_style,
            );
            r.set_margin(9, 9, 0, 0);
            r
        }))
        .map_err(pe)?
        .label("eligible")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 18, y + 5)], done_style));
    chart
        .draw_series(status.cohorts.iter().enumerate().map(|(i, c)| {
            let pct = crate::domain::status::percent(c.eligible, u64::from(c.target))
                .map(|p| format!(" ({p}%)"))
                .unwrap_or_default();
            Text::new(
                format!("{} / {}{pct}", c.eligible, c.target),
                (
                    u64::from(c.target).max(c.eligible) + xmax / 100,
                    SegmentValue::CenterOf(i as u32),
                ),
                TextStyle::from(("sans-serif", 14).into_font())
                    .pos(Pos::new(HPos::Left, VPos::Center)),
            )
        }))
        .map_err(pe)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(pe)?;
    root.present().map_err(pe)?;
    Ok(())
}

/// One ROC curve: `pairs` are (reference class, class probabilities); positive is
/// class >= `threshold`, scored by the summed probability of those classes.
pub fn roc_chart(
    path: &Path,
    title: &str,
    pairs: &[(u8, Vec<f64>)],
    threshold: u8,
) -> Result<Option<f64>> {
    let scores: Vec<f64> = pairs
        .iter()
        .map(|(_, p)| p.iter().skip(usize::from(threshold)).sum())
        .collect();
    let truth: Vec<bool> = pairs.iter().map(|(l, _)| *l >= threshold).collect();
    let Some(curve) = roc::roc_curve(&scores, &truth) else {
        return Ok(None);
    };
    let auc = roc::auc(&scores, &truth);
    let note = format!(
        "AUC {}   (n = {}, {} positive)",
        auc.map(|a| format!("{a:.3}")).unwrap_or_else(|| "-".into()),
        pairs.len(),
        truth.iter().filter(|t| **t).count()
    );
    let frame = Frame {
        caption: title,
        caption_size: 17,
        margin: 18,
        x_label_area: 44,
        y_label_area: 56,
    };
    let root = canvas(path, (720, 660));
    let mut chart = chart_on(&root, frame, 0f64..1f64, 0f64..1f64)?;
    chart
        .configure_mesh()
        .x_desc("1 - specificity (false-positive rate)")
        .y_desc("sensitivity (true-positive rate)")
        .label_style(LABEL_FONT)
        .draw()
        .map_err(pe)?;
    chart
        .draw_series(LineSeries::new(
            [(0.0, 0.0), (1.0, 1.0)],
            RGBColor(160, 160, 160).stroke_width(1),
        ))
        .map_err(pe)?;
    let color = RGBColor(31, 94, 140);
    chart
        .draw_series(LineSeries::new(
            curve.iter().map(|p| (p.fpr, p.tpr)),
            color.stroke_width(3),
        ))
        .map_err(pe)?;
    chart
        .draw_series(std::iter::once(Text::new(
            note,
            (0.35, 0.12),
            ("sans-serif", 20),
        )))
        .map_err(pe)?;
    root.present().map_err(pe)?;
    Ok(auc)
}

/// The cumulative incidence of new fragility fractures by baseline OP stage (step
/// curves of the Kaplan–Meier estimate, 0-36 months); `false` when no stage has a
/// patient (nothing drawn).
pub fn fracture_chart(path: &Path, o: &crate::domain::outcomes::Outcomes) -> Result<bool> {
    if o.fractures.iter().all(|c| c.patients == 0) {
        return Ok(false);
    }
    let frame = Frame {
        caption: "New fragility fractures by baseline OP stage (Kaplan-Meier)",
        caption_size: 17,
        margin: 18,
        x_label_area: 44,
        y_label_area: 56,
    };
    let root = canvas(path, (720, 520));
    let mut chart = chart_on(&root, frame, 0f64..36f64, 0f64..1f64)?;
    chart
        .configure_mesh()
        .x_desc("months from the index date")
        .y_desc("cumulative incidence")
        .label_style(LABEL_FONT)
        .draw()
        .map_err(pe)?;
    let colours = [
        RGBColor(120, 120, 120),
        RGBColor(214, 140, 30),
        RGBColor(31, 94, 140),
    ];
    for (c, colour) in o.fractures.iter().zip(colours) {
        if c.patients == 0 {
            continue;
        }
        let pts = c.step_points(36.0);
        chart
            .draw_series(LineSeries::new(pts, colour.stroke_width(3)))
            .map_err(pe)?
            .label(format!(
                "{} (n = {}, {} events)",
                c.stage, c.patients, c.events
            ))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], colour.stroke_width(3)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(LABEL_FONT)
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()
        .map_err(pe)?;
    root.present().map_err(pe)?;
    Ok(true)
}

/// The secondary outcomes as HTML tables.
fn outcomes_html(html: &mut String, r: &crate::domain::outcomes::OutcomesReport, chart: bool) {
    let o = &r.outcomes;
    let _ = writeln!(
        html,
        "<h2>Secondary outcomes</h2><p>{} ({} eligible patients). Baseline OP stage: {}. Event: {}; censored at {}. {}.</p>",
        esc(&r.cohort_role),
        r.patients,
        esc(r.definitions.op_stage),
        esc(r.definitions.fracture_event),
        esc(r.definitions.fracture_censoring),
        esc(r.definitions.fracture_interval)
    );
    if chart {
        let _ = writeln!(
            html,
            "<img src=\"fractures_by_op_stage.png\" alt=\"cumulative incidence of new fragility fractures by baseline OP stage\">"
        );
    }
    html.push_str("<table><tr><th>stage</th><th>patients</th><th>events</th>");
    for m in crate::domain::outcomes::REPORT_MONTHS {
        let _ = write!(html, "<th>{m} months: incidence (95% CI), at risk</th>");
    }
    html.push_str("</tr>\n");
    for c in &o.fractures {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td>",
            esc(&c.stage),
            c.patients,
            c.events
        );
        for a in &c.at {
            let _ = write!(
                html,
                "<td>{:.1}% ({:.1}-{:.1}%), {}</td>",
                a.incidence * 100.0,
                a.lower * 100.0,
                a.upper * 100.0,
                a.at_risk
            );
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</table>\n");
    let _ = writeln!(
        html,
        "<p>{}</p>",
        match &o.logrank {
            Some(l) => format!(
                "Log-rank test between the stages: chi2 {:.3}, df {}, p {}.",
                l.chi2,
                l.df,
                crate::domain::stats::p_text(l.p)
            ),
            None => "Log-rank test: not defined (two stages with patients and a fracture needed)."
                .into(),
        }
    );
    if !o.fracture_excluded.is_empty() {
        let _ = writeln!(
            html,
            "<p>Left out: {}.</p>",
            esc(&crate::domain::evaluation::left_out(&o.fracture_excluded))
        );
    }
    let _ = writeln!(
        html,
        "<h3>VAS and OKS change from baseline by baseline KL grade</h3><p>{}; baseline KL: {}.</p>",
        esc(r.definitions.change),
        esc(r.definitions.kl)
    );
    if o.changes.is_empty() {
        html.push_str(
            "<p>No patient has a month-0 visit and a later visit with the same score yet.</p>\n",
        );
    } else {
        html.push_str("<table><tr><th>score</th><th>baseline KL</th><th>month</th><th>n</th><th>mean change</th><th>95% CI</th></tr>\n");
        for c in &o.changes {
            let _ = writeln!(
                html,
                "<tr><td>{}</td><td>KL{}</td><td>{}</td><td>{}</td><td>{:+.2}</td><td>{}</td></tr>",
                c.score.to_uppercase(),
                c.kl,
                c.month,
                c.change.n,
                c.change.mean,
                c.change
                    .ci95
                    .map(|ci| format!("{:+.2} to {:+.2}", ci.lower, ci.upper))
                    .unwrap_or_else(|| "- (n &lt; 2)".into())
            );
        }
        html.push_str("</table>\n");
    }
    if !o.change_excluded.is_empty() {
        let _ = writeln!(
            html,
            "<p>Left out: {}.</p>",
            esc(&crate::domain::evaluation::left_out(&o.change_excluded))
        );
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Writes the report into `dir` and returns what it wrote.
pub fn write_report(study: &Study, dir: &Path) -> Result<ReportFiles> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let status = study.status()?;
    let consort = study.consort()?;
    let by_month = study.enrollment_by_month()?;
    let roc: RocData = study.roc_data()?;
    let follow = study.followup_counts(today())?;
    let mut files = ReportFiles::default();

    let p = dir.join("enrollment_over_time.png");
    enrollment_chart(&p, &by_month)?;
    files.pngs.push(p);
    let p = dir.join("enrollment_vs_target.png");
    targets_chart(&p, &status)?;
    files.pngs.push(p);
    let mut roc_notes = Vec::new();
    for (name, title, pairs, threshold, what) in [
        (
            "roc_kl.png",
            "ROC, radiographic OA (KL >= 2): model vs final KL grade (final_kl)",
            &roc.kl,
            2u8,
            "knees of eligible patients, both cohorts, with a final KL grade and a KL prediction",
        ),
        (
            "roc_op.png",
            "ROC, osteoporosis: model vs DXA WHO stage (dxa_who)",
            &roc.op,
            2u8,
            "eligible patients aged 50 or more, both cohorts, with a DXA WHO stage and an OP prediction",
        ),
    ] {
        let p = dir.join(name);
        if roc_chart(&p, title, pairs, threshold)?.is_some() {
            files.pngs.push(p);
        } else {
            // a curve of an earlier report would no longer match the data
            let _ = std::fs::remove_file(&p);
            roc_notes.push(format!(
                "{title}: not drawn ({} {what}; a curve needs both positive and negative cases)",
                pairs.len()
            ));
        }
    }
    let svg = dir.join("consort.svg");
    write_private(
        &svg,
        consort::svg(&consort, &consort_title(study)).as_bytes(),
    )?;
    files.svg = svg;

    let mut html = String::new();
    let _ = writeln!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>marrow report</title>\
         <style>body{{font-family:sans-serif;max-width:1040px;margin:2em auto;color:#1a1a1a}}\
         img{{max-width:100%;border:1px solid #ddd;margin:0.5em 0}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}th{{background:#f2f2f2}}</style></head><body>"
    );
    let _ = writeln!(
        html,
        "<h1>Study report</h1><p>Sites: {}. Made by marrow {} on {} (UTC). Aggregate figures only; no patient-level data.</p>",
        esc(&study.protocol().sites.join(", ")),
        env!("CARGO_PKG_VERSION"),
        today()
    );
    let _ = writeln!(
        html,
        "<h2>Where the study stands</h2><table><tr><th>patients</th><th>eligible</th><th>ineligible</th>\
         <th>pending</th><th>missing DXA</th><th>images</th><th>reads pending</th>\
         <th>adjudication pending</th><th>final graded cases</th></tr>\
         <tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr></table>",
        status.patients,
        status.eligibility.eligible,
        status.eligibility.ineligible,
        status.eligibility.pending,
        status.missing_dxa,
        status.images,
        status.reads_pending,
        status.adjudication_pending,
        status.final_graded
    );
    let _ = writeln!(
        html,
        "<h2>CONSORT flow</h2><img src=\"consort.svg\" alt=\"CONSORT flow: {} assessed, {} eligible, {} analysed\">",
        consort.count(Step::Assessed),
        consort.count(Step::Eligible),
        consort.count(Step::Analysed)
    );
    let _ = writeln!(html, "<h2>Enrollment</h2>");
    for p in &files.pngs {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with("roc_") {
            continue;
        }
        let _ = writeln!(html, "<img src=\"{}\" alt=\"{}\">", esc(&name), esc(&name));
    }
    let _ = writeln!(html, "<h2>Model accuracy</h2>");
    for p in &files.pngs {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with("roc_") {
            let _ = writeln!(html, "<img src=\"{}\" alt=\"{}\">", esc(&name), esc(&name));
        }
    }
    for n in &roc_notes {
        let _ = writeln!(html, "<p>{}</p>", esc(n));
    }
    // what each active model was trained on, beside its curve and any published figure
    for m in study.models()?.iter().filter(|m| m.active) {
        if let Some(data) = m.card["training"]["data"].as_str() {
            let _ = writeln!(
                html,
                "<p>Active {} model {}: trained on {}.</p>",
                esc(m.task.code()),
                esc(&m.label()),
                esc(data)
            );
        }
    }
    let _ = writeln!(
        html,
        "<h2>Follow-up</h2><p>Visits at 6, 12, 24 and 36 months of the eligible patients: {} done, {} due, {} overdue, {} not yet due{}.</p>",
        follow.done,
        follow.due,
        follow.overdue,
        follow.not_yet_due,
        crate::domain::status::percent(follow.done, follow.done + follow.due + follow.overdue)
            .map(|c| format!(" (compliance {c}% of the visits whose window has opened)"))
            .unwrap_or_default()
    );
    let outcomes = study.outcomes_report(Some(crate::domain::protocol::Phase::Prospective))?;
    let p = dir.join("fractures_by_op_stage.png");
    let drawn = fracture_chart(&p, &outcomes.outcomes)?;
    if drawn {
        files.pngs.push(p);
    } else {
        let _ = std::fs::remove_file(&p);
    }
    outcomes_html(&mut html, &outcomes, drawn);
    html.push_str("</body></html>\n");
    let index = dir.join("index.html");
    write_private(&index, html.as_bytes())?;
    files.index = index;
    Ok(files)
}

pub fn run(g: &Global, a: ReportArgs) -> Result<u8> {
    let study = open(g)?;
    let files = write_report(&study, &a.out)?;
    for p in &files.pngs {
        println!("wrote {}", p.display());
    }
    println!("wrote {}", files.svg.display());
    println!("open {} in a browser", files.index.display());
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_axis_has_every_month_between_the_first_and_the_last() {
        let m = crate::domain::status::month_span(["2025-11", "2024-12", "2025-02", "x"]);
        assert_eq!(m.first().map(String::as_str), Some("2024-12"));
        assert_eq!(m.last().map(String::as_str), Some("2025-11"));
        assert_eq!(m.len(), 12);
        assert!(m.contains(&"2025-01".to_string()));
        assert!(crate::domain::status::month_span(std::iter::empty::<&str>()).is_empty());
    }

    #[test]
    fn charts_are_drawn_without_system_fonts() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("roc.png");
        let pairs: Vec<(u8, Vec<f64>)> = (0..20)
            .map(|i| {
                let pos = i % 2 == 0;
                let s = if pos {
                    0.6 + 0.01 * i as f64
                } else {
                    0.2 + 0.02 * i as f64
                };
                (if pos { 3 } else { 0 }, vec![0.0, 1.0 - s, 0.0, s, 0.0])
            })
            .collect();
        let auc = roc_chart(&p, "ROC", &pairs, 2).unwrap().unwrap();
        assert!(auc > 0.5);
        let img = image::open(&p).unwrap().to_rgb8();
        assert!(img.pixels().filter(|px| px.0 == [31, 94, 140]).count() > 100);
        // one class only: no curve, no file
        let q = dir.path().join("none.png");
        assert!(roc_chart(&q, "ROC", &pairs[..1], 2).unwrap().is_none());
        assert!(!q.exists());
    }
}
