//! `marrow infer`, `jobs`, `models`, `train`, `evaluate` (issue 5).

use super::output::Align;
use super::{EXIT_CHECK_FAILED, Global, open};
use crate::db::inference::{EvaluationPairs, JobRow, JobState, ModelRow};
use crate::domain::agreement::Estimate;
use crate::domain::evaluation::{self, EvalOptions, Evaluation, ReferenceStandard};
use crate::domain::protocol::Phase;
use crate::inference::Task;
use crate::inference::backend::BackendChoice;
use crate::inference::jobs::{self, InferOptions, TrainOptions};
use anyhow::{Result, anyhow};
use clap::{Args, Subcommand};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::io::IsTerminal;

#[derive(Debug, Args)]
pub struct InferArgs {
    /// Predict every image again (default: only images without a prediction of the active model).
    #[arg(long, conflicts_with = "pending")]
    pub all: bool,
    /// Only images without a prediction of the active model (the default).
    #[arg(long)]
    pub pending: bool,
    /// kl or op (default: both).
    #[arg(long)]
    pub task: Option<String>,
    /// auto (CUDA when built with it and a GPU answers), cpu or cuda.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct JobsArgs {
    #[command(subcommand)]
    pub action: Option<JobsCommand>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Ask a queued or running job to stop (it stops after its current batch).
    Cancel { id: i64 },
}

#[derive(Debug, Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    pub action: Option<ModelsCommand>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Make a model version the one `marrow infer` uses for its task (audited, with the
    /// version it replaces and both validation figures; training never does it).
    Activate {
        /// kl or op, or the model's name as `marrow models` lists it (e.g. kl-study).
        task: String,
        /// The version (or "name version") as `marrow models` lists it.
        version: String,
        /// Why (kept in the audit trail).
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// kl or op.
    #[arg(long)]
    pub task: String,
    /// Most epochs (early stopping may end sooner).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// k-fold cross-validation for the card's metrics (0 or 1: one validation split).
    #[arg(long, default_value_t = 0)]
    pub folds: usize,
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
    /// The cohort whose final grades train the model.
    #[arg(long, default_value = "retrospective")]
    pub cohort: String,
    /// Refuse when a class has fewer final grades than this.
    #[arg(long)]
    pub min_per_class: Option<usize>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// kl or op.
    #[arg(long)]
    pub task: String,
    /// prospective (the external test, the default), retrospective (development
    /// data) or all (both, mixed).
    #[arg(long, default_value = "prospective")]
    pub cohort: String,
    /// A model version ("name version") with predictions (default: the latest that predicted).
    #[arg(long)]
    pub model: Option<String>,
    /// Operating point: positive when P(OA) or P(osteoporosis) >= this.
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f64,
    /// Bootstrap resamples for the 95% confidence intervals.
    #[arg(long, default_value_t = 1000)]
    pub resamples: usize,
    /// Another model version ("name version") to compare with on the same cases:
    /// DeLong's paired test of the two binary AUCs (difference, 95% CI, p).
    #[arg(long)]
    pub compare: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PredictionsArgs {
    /// kl or op (default: both).
    #[arg(long)]
    pub task: Option<String>,
    #[arg(long)]
    pub json: bool,
}

/// `marrow predictions [--task] [--json]`: every stored prediction, per image.
pub fn predictions(g: &Global, a: PredictionsArgs) -> Result<u8> {
    let study = open(g)?;
    let rows = study.predictions(a.task.as_deref().map(task_arg).transpose()?)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    if rows.is_empty() {
        println!("no predictions yet (`marrow infer`)");
        return Ok(0);
    }
    let mut cells = Vec::new();
    for r in &rows {
        let task: Task = r.task.parse().map_err(|e: String| anyhow!(e))?;
        cells.push(vec![
            r.study_id.clone(),
            r.side.clone(),
            r.task.clone(),
            r.model.clone(),
            task.classes()
                .get(usize::from(r.class))
                .cloned()
                .unwrap_or_default(),
            if r.counts { "yes" } else { "no" }.to_string(),
            r.probs
                .iter()
                .map(|p| format!("{p:.3}"))
                .collect::<Vec<_>>()
                .join(" "),
        ]);
    }
    print!(
        "{}",
        super::output::table(
            "",
            &[
                ("study ID", Align::Left),
                ("side", Align::Left),
                ("task", Align::Left),
                ("model", Align::Left),
                ("class", Align::Left),
                ("counts", Align::Left),
                ("probabilities", Align::Left),
            ],
            &cells,
        )
    );
    let stray = rows.iter().filter(|r| !r.counts).count();
    if stray > 0 {
        println!(
            "{stray} prediction{} of images the model does not read as that case (counts: no) are in no case prediction and not in `marrow evaluate`",
            if stray == 1 { "" } else { "s" }
        );
    }
    Ok(0)
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The case, e.g. C00012 (`marrow cases` lists them).
    pub case: String,
    /// Write each image with the occlusion heatmap over it: OUT.png, or OUT-2.png,
    /// OUT-3.png... when the case has several images.
    #[arg(long, value_name = "OUT.png")]
    pub png: Option<std::path::PathBuf>,
    /// Occlusion patch side and stride, in the network's input pixels.
    #[arg(long, default_value_t = 8)]
    pub patch: usize,
    #[arg(long, default_value_t = 4)]
    pub stride: usize,
    #[arg(long)]
    pub json: bool,
}

/// What `marrow explain` found for one image.
#[derive(Debug, Clone, Serialize)]
pub struct ImageExplanation {
    pub sop_uid: String,
    pub model: String,
    pub shapley: crate::inference::explain::GroupShapley,
    pub heatmap: crate::inference::explain::Heatmap,
    pub png: Option<String>,
}

/// The image with the heatmap over it ([`crate::inference::explain::overlay_rgb`]),
/// written as a PNG.
fn overlay_png(
    image: &crate::inference::Image,
    map: &crate::inference::explain::Heatmap,
    out: &std::path::Path,
) -> Result<()> {
    let (w, h, rgb) = crate::inference::explain::overlay_rgb(image, map);
    let img = image::RgbImage::from_raw(w as u32, h as u32, rgb)
        .ok_or_else(|| anyhow!("image size {w}x{h} does not match its pixels"))?;
    img.save(out)
        .map_err(|e| anyhow!("cannot write {}: {e}", out.display()))
}

/// `marrow explain CASE`: per image of the case, the contribution of each modality
/// group (exact Shapley values over image, demographics and labs) and an occlusion
/// heatmap. Shown to whoever may see the model's prediction of the case
/// ([`crate::inference::case_explain::explain_case`] checks).
pub fn explain(g: &Global, a: ExplainArgs) -> Result<u8> {
    let study = open(g)?;
    let explained =
        crate::inference::case_explain::explain_case(&study, &a.case, a.patch, a.stride)
            .map_err(|e| anyhow!(e))?;
    let task = explained.task;
    let mut out = Vec::new();
    for (n, e) in explained.images.into_iter().enumerate() {
        let png = match &a.png {
            Some(p) => {
                let path = if n == 0 {
                    p.clone()
                } else {
                    p.with_file_name(format!(
                        "{}-{}.png",
                        p.file_stem().and_then(|s| s.to_str()).unwrap_or("explain"),
                        n + 1
                    ))
                };
                overlay_png(&e.image, &e.heatmap, &path)?;
                Some(path.display().to_string())
            }
            None => None,
        };
        out.push(ImageExplanation {
            sop_uid: e.sop_uid,
            model: explained.model.clone(),
            shapley: e.shapley,
            heatmap: e.heatmap,
            png,
        });
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(0);
    }
    let classes = task.classes();
    for e in &out {
        let s = &e.shapley;
        println!(
            "{} ({} case, image {}), model {}",
            a.case, explained.side, e.sop_uid, e.model
        );
        println!(
            "  prediction: {} ({:.1}%); {}: {:.1}%",
            classes.get(s.predicted).cloned().unwrap_or_default(),
            s.full.get(s.predicted).copied().unwrap_or(0.0) * 100.0,
            evaluation::positive_name(task),
            s.binary().full * 100.0
        );
        println!(
            "  contribution of each modality (exact Shapley values; a group left out = its training mean):"
        );
        for (name, c) in [
            ("predicted class", s.predicted_class()),
            (evaluation::positive_name(task), s.binary()),
        ] {
            println!(
                "    {name:<28} base {:>6.1}%  image {:>+6.1}  demographics {:>+6.1}  labs {:>+6.1}  = {:>5.1}%",
                c.base * 100.0,
                c.image * 100.0,
                c.demographics * 100.0,
                c.labs * 100.0,
                c.full * 100.0
            );
        }
        let m = &e.heatmap;
        println!(
            "  occlusion: {}x{} patches of {} px (stride {}); largest drop of the predicted class {:.1} points{}",
            m.width,
            m.height,
            m.patch,
            m.stride,
            m.max_abs() * 100.0,
            e.png
                .as_deref()
                .map(|p| format!("; overlay written to {p}"))
                .unwrap_or_default()
        );
    }
    Ok(0)
}

fn task_arg(s: &str) -> Result<Task> {
    s.parse::<Task>().map_err(|e| anyhow!(e))
}

fn phase_arg(s: &str) -> Result<Phase> {
    s.parse::<Phase>().map_err(|e| anyhow!(e))
}

fn bar(template: &str) -> Option<indicatif::ProgressBar> {
    std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(template)
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    })
}

/// `marrow infer [--all|--pending] [--task] [--backend]`.
pub fn infer(g: &Global, a: InferArgs) -> Result<u8> {
    let mut study = open(g)?;
    let opts = InferOptions {
        task: a.task.as_deref().map(task_arg).transpose()?,
        all: a.all,
        backend: a.backend,
    };
    let b = bar("{spinner} predicting [{bar:30}] {pos}/{len} images ({per_sec}, {eta} left)");
    let report = jobs::infer(&mut study, &opts, &mut |done, total| {
        if let Some(b) = &b {
            b.set_length(total as u64);
            b.set_position(done as u64);
        }
    })?;
    if let Some(b) = &b {
        b.finish_and_clear();
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "job {}: {} on {} in {:.1} s: {}",
            report.job,
            report.state.code(),
            if report.backend.is_empty() {
                "-"
            } else {
                &report.backend
            },
            report.seconds,
            report.message
        );
        for (path, why) in &report.failed {
            println!("  not predicted: {path}: {why}");
        }
    }
    Ok(match report.state {
        JobState::Done if report.failed.is_empty() => 0,
        JobState::Done => super::EXIT_SOME_REJECTED,
        JobState::Cancelled => EXIT_CHECK_FAILED,
        _ => super::EXIT_COULD_NOT_RUN,
    })
}

/// The text table of jobs.
pub fn jobs_table(rows: &[JobRow]) -> String {
    let mut out = String::new();
    if rows.is_empty() {
        out.push_str("no jobs yet (`marrow infer` starts one)\n");
        return out;
    }
    let _ = writeln!(
        out,
        "{:>4}  {:<6} {:<5} {:<10} {:>11}  {:<20} {:<22} message",
        "job", "kind", "task", "state", "progress", "backend", "started"
    );
    for j in rows {
        let _ = writeln!(
            out,
            "{:>4}  {:<6} {:<5} {:<10} {:>11}  {:<20} {:<22} {}",
            j.id,
            j.kind.code(),
            j.task.map(Task::code).unwrap_or("kl+op"),
            format!(
                "{}{}",
                j.state.code(),
                if j.cancel_requested && !j.state.finished() {
                    "*"
                } else {
                    ""
                }
            ),
            format!("{}/{}", j.done + j.failed, j.total),
            j.backend,
            j.started_at.as_deref().unwrap_or(&j.created_at),
            j.message.as_deref().unwrap_or("")
        );
    }
    out
}

/// `marrow jobs [cancel ID]`.
pub fn jobs(g: &Global, a: JobsArgs) -> Result<u8> {
    let mut study = open(g)?;
    match a.action {
        Some(JobsCommand::Cancel { id }) => {
            let j = study.cancel_job(id)?;
            println!(
                "job {id}: {}",
                if j.state == JobState::Cancelled {
                    "cancelled".to_string()
                } else {
                    "asked to stop; it stops after its current batch".to_string()
                }
            );
            Ok(0)
        }
        None => {
            // A listing also retires jobs whose process died (their rows say so).
            if study.role().allows(crate::domain::user::Permission::Model) {
                study.fail_stale_jobs()?;
            }
            let rows = study.jobs()?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", jobs_table(&rows));
            }
            Ok(0)
        }
    }
}

fn models_table(rows: &[ModelRow]) -> String {
    let mut out = String::new();
    if rows.is_empty() {
        out.push_str(
            "no model registered yet: the shipped (phantom-trained) ones are registered by the first `marrow infer`\n",
        );
        return out;
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|m| {
            vec![
                m.task.code().to_string(),
                if m.active { "yes" } else { "" }.to_string(),
                m.label(),
                m.validation_summary(),
                m.created_at.get(..19).unwrap_or(&m.created_at).to_string(),
                m.created_by.clone(),
                m.card["training"]["data"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            ]
        })
        .collect();
    out.push_str(&super::output::table(
        "",
        &[
            ("task", Align::Left),
            ("active", Align::Left),
            ("model", Align::Left),
            ("validation", Align::Left),
            ("created", Align::Left),
            ("by", Align::Left),
            ("training data", Align::Left),
        ],
        &cells,
    ));
    out
}

/// The task of `marrow models activate TASK|NAME VERSION`: a task code, or the name
/// of a registered model.
fn activation_target(
    study: &crate::db::Study,
    first: &str,
    version: &str,
) -> Result<(Task, String)> {
    if let Ok(t) = task_arg(first) {
        return Ok((t, version.to_string()));
    }
    let models = study.models()?;
    match models.iter().find(|m| m.name == first) {
        Some(m) => Ok((m.task, format!("{first} {version}"))),
        None => {
            let mut names: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
            names.dedup();
            Err(anyhow!(
                "{first:?} is neither a task (kl, op) nor a model's name ({}); `marrow models` lists them",
                if names.is_empty() {
                    "none registered yet".to_string()
                } else {
                    names.join(", ")
                }
            ))
        }
    }
}

/// `marrow models [activate TASK VERSION]`.
pub fn models(g: &Global, a: ModelsArgs) -> Result<u8> {
    let mut study = open(g)?;
    match a.action {
        Some(ModelsCommand::Activate {
            task,
            version,
            reason,
            json,
        }) => {
            let (task, version) = activation_target(&study, &task, &version)?;
            let (before, m) = study.activate_model(task, &version, reason.as_deref())?;
            if json || a.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "previous": before,
                        "active": m,
                        "changed": before.id != m.id,
                    }))?
                );
            } else if before.id == m.id {
                println!(
                    "{} is already the active {} model; nothing changed",
                    m.label(),
                    m.task.code()
                );
            } else {
                println!(
                    "{} is now the active {} model ({})",
                    m.label(),
                    m.task.code(),
                    m.dir.display()
                );
                print!(
                    "{}",
                    super::output::table(
                        "  ",
                        &[
                            ("", Align::Left),
                            ("model", Align::Left),
                            ("validation", Align::Left)
                        ],
                        &[
                            vec!["was".into(), before.label(), before.validation_summary()],
                            vec!["now".into(), m.label(), m.validation_summary()],
                        ],
                    )
                );
            }
            Ok(0)
        }
        None => {
            let rows = study.models()?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", models_table(&rows));
            }
            Ok(0)
        }
    }
}

/// `marrow train --task kl|op`.
pub fn train(g: &Global, a: TrainArgs) -> Result<u8> {
    let mut study = open(g)?;
    let opts = TrainOptions {
        task: task_arg(&a.task)?,
        epochs: a.epochs,
        folds: a.folds,
        backend: a.backend,
        phase: phase_arg(&a.cohort)?,
        min_per_class: a.min_per_class,
    };
    let b = bar("{spinner} {msg} [{bar:30}] {pos}/{len} batches");
    let report = jobs::train(&mut study, &opts, &mut |p| {
        if let Some(b) = &b {
            b.set_length(p.steps as u64);
            b.set_position(p.step as u64);
            let fold = p
                .fold
                .map(|(f, k)| format!("fold {f}/{k} "))
                .unwrap_or_default();
            let val = p
                .val_loss
                .map(|v| format!(", validation loss {v:.3}"))
                .unwrap_or_default();
            b.set_message(format!(
                "{fold}epoch {}/{} loss {:.3}{val}",
                p.epoch, p.epochs, p.train_loss
            ));
        }
    });
    if let Some(b) = &b {
        b.finish_and_clear();
    }
    let report = report?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(0);
    }
    println!(
        "trained {} on {} images of {} {} labelled by {} ({} epochs, {:.1} s); registered, not active",
        report.model,
        report.images,
        report.cases,
        report.reference.unit(),
        report.reference.code(),
        report.epochs_run,
        report.seconds,
    );
    println!("  written to {}", report.dir);
    println!("  reference standard: {}", report.reference.describe());
    println!("  validation split {}", report.split);
    let v = &report.validation;
    println!(
        "  validation ({} images{}): accuracy {:.3}, quadratic-weighted kappa {}, binary AUC {}",
        v.n,
        if report.validation_spread.is_empty() {
            ""
        } else {
            ", pooled out-of-fold"
        },
        v.accuracy,
        v.quadratic_kappa
            .map(|k| format!("{k:.3}"))
            .unwrap_or_else(|| "-".into()),
        v.auc_binary
            .map(|k| format!("{k:.3}"))
            .unwrap_or_else(|| "-".into())
    );
    for f in &report.validation_spread {
        println!(
            "  {} over {} folds: mean {:.3}, SD {:.3}, range {:.3}-{:.3}",
            f.figure, f.folds, f.mean, f.sd, f.min, f.max
        );
    }
    for (path, why) in &report.skipped {
        println!("  left out: {path}: {why}");
    }
    print!(
        "{}",
        super::output::table(
            "  ",
            &[
                ("", Align::Left),
                ("model", Align::Left),
                ("validation", Align::Left)
            ],
            &[
                vec![
                    "active (stays)".into(),
                    report.active.clone(),
                    report.active_validation_summary.clone(),
                ],
                vec![
                    "new".into(),
                    report.model.clone(),
                    report.validation_summary.clone(),
                ],
            ],
        )
    );
    let version = report
        .model
        .split_once(' ')
        .map(|(_, v)| v)
        .unwrap_or(&report.model);
    println!(
        "  to use it: `marrow models activate {} {version} --reason TEXT` (audited), then `marrow infer --all --task {}`",
        opts.task.code(),
        opts.task.code()
    );
    Ok(0)
}

/// The outcome table with what it was computed on.
#[derive(Debug, Clone, Serialize)]
pub struct EvaluationReport {
    pub task: Task,
    /// `"prospective"`, `"retrospective"`, or null for both.
    pub cohort: Option<String>,
    /// What the cohort is to the study: the external test, development data, or both mixed.
    pub cohort_role: String,
    /// `"dxa_who"` (OP) or `"final_kl"` (KL): what the model is scored against.
    pub reference: ReferenceStandard,
    pub reference_description: String,
    /// Reference cases left out, by reason (cases of the cohort only).
    pub excluded: BTreeMap<String, usize>,
    pub model: String,
    /// The model card's data line: what the model was trained on.
    pub trained_on: Option<String>,
    pub resamples: usize,
    pub positive: String,
    #[serde(flatten)]
    pub evaluation: Evaluation,
    pub published: Vec<evaluation::Reference>,
    /// `--compare`: the two models on the cases both predicted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comparison: Option<ModelComparison>,
}

/// Two models' binary AUCs on the same reference cases, by DeLong's paired test.
#[derive(Debug, Clone, Serialize)]
pub struct ModelComparison {
    /// The evaluated model ("a") and the one compared with ("b").
    pub model_a: String,
    pub model_b: String,
    /// Cases both models predicted, and how many of them are positive.
    pub n: usize,
    pub positives: usize,
    /// Reference cases of the cohort that one of the two models did not predict.
    pub not_in_both: usize,
    pub auc_a: f64,
    pub auc_b: f64,
    /// `auc_a - auc_b`, its standard error, 95% CI, z and two-sided p.
    pub difference: f64,
    pub se: f64,
    pub ci95: crate::domain::agreement::ConfidenceInterval,
    pub z: f64,
    pub p: f64,
    pub method: &'static str,
}

/// Compares the binary AUC of model `a` (its pairs) with model `b` on the cases both
/// predicted (DeLong, DeLong and Clarke-Pearson 1988, paired).
pub fn compare_models(
    study: &crate::db::Study,
    task: Task,
    phase: Option<Phase>,
    a: &EvaluationPairs,
    b: &str,
) -> Result<ModelComparison> {
    let other = study.evaluation_pairs(task, phase, Some(b))?;
    let key = |c: &crate::db::inference::LabelledCase| (c.patient_id, c.side.clone());
    let theirs: std::collections::HashMap<_, &Vec<f64>> =
        other.pairs.iter().map(|(c, p)| (key(c), p)).collect();
    let score = |p: &[f64]| p[task.positive_from() as usize..].iter().sum::<f64>();
    let (mut sa, mut sb, mut pos) = (Vec::new(), Vec::new(), Vec::new());
    for (c, p) in &a.pairs {
        if let Some(q) = theirs.get(&key(c)) {
            sa.push(score(p));
            sb.push(score(q));
            pos.push(c.label >= task.positive_from());
        }
    }
    let n_union = a.pairs.len() + other.pairs.len() - sa.len();
    if other.pairs.is_empty() {
        return Err(anyhow!(
            "--compare {b}: that model has no prediction of a reference case of {}",
            cohort_name(phase)
        ));
    }
    let d = crate::domain::stats::delong_paired(&sa, &sb, &pos).ok_or_else(|| {
        anyhow!(
            "--compare {b}: the {} cases both models predicted need positive and negative ones, and scores that differ",
            sa.len()
        )
    })?;
    Ok(ModelComparison {
        model_a: a.model.clone(),
        model_b: other.model,
        n: sa.len(),
        positives: pos.iter().filter(|p| **p).count(),
        not_in_both: n_union - sa.len(),
        auc_a: d.auc_a,
        auc_b: d.auc_b,
        difference: d.difference,
        se: d.se,
        ci95: d.ci,
        z: d.z,
        p: d.p,
        method: "DeLong's paired test (cases as independent; both knees of a patient count twice)",
    })
}

/// Computes `marrow evaluate` (also the TUI's model screen).
pub fn evaluation_report(
    study: &crate::db::Study,
    task: Task,
    phase: Option<Phase>,
    model: Option<&str>,
    threshold: f64,
    resamples: usize,
    compare: Option<&str>,
) -> Result<EvaluationReport> {
    let found = study.evaluation_pairs(task, phase, model)?;
    let comparison = match compare {
        Some(b) if !found.pairs.is_empty() => Some(compare_models(study, task, phase, &found, b)?),
        _ => None,
    };
    let EvaluationPairs {
        model: label,
        reference,
        pairs,
        excluded,
    } = found;
    if pairs.is_empty() {
        return Err(anyhow!(
            "no {} of {} has both a reference label ({}) and a prediction of {label}{}{}",
            reference.unit(),
            cohort_name(phase),
            reference.code(),
            if excluded.is_empty() {
                String::new()
            } else {
                format!(" (left out: {})", evaluation::left_out(&excluded))
            },
            match reference {
                ReferenceStandard::FinalKl => ": finish reads/adjudication, then `marrow infer`",
                ReferenceStandard::DxaWho =>
                    ": import the DXA scans (`marrow import dxa`), then `marrow infer`",
            }
        ));
    }
    let trained_on = study
        .models()
        .ok()
        .and_then(|ms| ms.into_iter().find(|m| m.label() == label))
        .and_then(|m| m.card["training"]["data"].as_str().map(str::to_string));
    let labels: Vec<u8> = pairs.iter().map(|(c, _)| c.label).collect();
    // Both knees of a patient are resampled together.
    let patients: Vec<u64> = pairs.iter().map(|(c, _)| c.patient_id as u64).collect();
    let probs: Vec<Vec<f64>> = pairs.into_iter().map(|(_, p)| p).collect();
    let e = evaluation::evaluate_clustered(
        &EvalOptions {
            k: task.num_classes(),
            positive_from: task.positive_from(),
            threshold,
            resamples,
            seed: 2026,
        },
        &labels,
        &probs,
        &patients,
    )?;
    Ok(EvaluationReport {
        task,
        cohort: phase.map(|p| p.to_string()),
        cohort_role: cohort_role(phase).to_string(),
        reference,
        reference_description: reference.describe().to_string(),
        excluded,
        model: label,
        trained_on,
        resamples,
        positive: evaluation::positive_name(task).to_string(),
        evaluation: e,
        published: evaluation::published(task),
        comparison,
    })
}

/// "the prospective cohort", "the retrospective cohort" or "both cohorts".
pub fn cohort_name(phase: Option<Phase>) -> String {
    match phase {
        Some(p) => format!("the {p} cohort"),
        None => "both cohorts".into(),
    }
}

/// What a cohort is to the study (PROTOCOL.md: the retrospective cohort develops
/// the model, the prospective one is its external test).
pub fn cohort_role(phase: Option<Phase>) -> &'static str {
    match phase {
        Some(Phase::Prospective) => "external test (the protocol's validation cohort)",
        Some(Phase::Retrospective) => {
            "development data (the model may have been trained on it: optimistic)"
        }
        None => "both cohorts mixed: development data and external test together (optimistic)",
    }
}

/// `--cohort`: prospective, retrospective or all (`None`).
pub fn cohort_arg(s: &str) -> Result<Option<Phase>> {
    match s {
        "all" | "both" => Ok(None),
        other => phase_arg(other)
            .map(Some)
            .map_err(|_| anyhow!("--cohort {other}: expected prospective, retrospective or all")),
    }
}

fn est(e: &Estimate) -> String {
    match (e.value, &e.ci95) {
        (None, _) => "-".to_string(),
        (Some(v), Some(ci)) => format!("{v:.3} ({:.3}-{:.3})", ci.lower, ci.upper),
        (Some(v), None) => format!("{v:.3}"),
    }
}

fn proportion(p: &evaluation::Proportion) -> String {
    match p.ci95 {
        Some(ci) => format!(
            "{}/{} = {:.3} ({:.3}-{:.3})",
            p.successes,
            p.n,
            p.successes as f64 / p.n as f64,
            ci.lower,
            ci.upper
        ),
        None => "-".to_string(),
    }
}

/// The text form of the outcome table.
pub fn evaluation_text(r: &EvaluationReport) -> String {
    let e = &r.evaluation;
    let classes = r.task.classes();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} model {} on {}: {} {}{}. 95% CIs: bootstrap over {}s, {} resamples.",
        r.task.code().to_uppercase(),
        r.model,
        r.cohort
            .as_deref()
            .map(|c| format!("the {c} cohort"))
            .unwrap_or_else(|| "both cohorts".into()),
        e.n,
        r.reference.unit(),
        if r.reference.unit() == "patients" {
            String::new()
        } else {
            format!(" of {} patients", e.clusters)
        },
        e.resampling_unit,
        r.resamples
    );
    let _ = writeln!(out, "  cohort: {}", r.cohort_role);
    let _ = writeln!(
        out,
        "  reference standard ({}): {}",
        r.reference.code(),
        r.reference_description
    );
    if !r.excluded.is_empty() {
        let _ = writeln!(out, "  left out: {}", evaluation::left_out(&r.excluded));
    }
    if let Some(d) = &r.trained_on {
        let _ = writeln!(out, "  trained on: {d}");
    }
    let _ = writeln!(
        out,
        "  cases per class: {}",
        classes
            .iter()
            .zip(&e.class_counts)
            .map(|(c, n)| format!("{c} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(out, "\n  {:<34} estimate (95% CI)", "figure");
    let _ = writeln!(
        out,
        "  {:<34} {}",
        format!("AUC, {}", r.positive),
        est(&e.auc_binary)
    );
    let _ = writeln!(
        out,
        "  {:<34} {}",
        format!("sensitivity at P >= {:.2}", e.threshold),
        est(&e.sensitivity)
    );
    let _ = writeln!(
        out,
        "  {:<34} {}",
        format!("specificity at P >= {:.2}", e.threshold),
        est(&e.specificity)
    );
    let _ = writeln!(
        out,
        "  {:<34} {}",
        "accuracy (most probable class)",
        est(&e.accuracy)
    );
    let _ = writeln!(
        out,
        "  {:<34} {}",
        "quadratic-weighted kappa",
        est(&e.quadratic_kappa)
    );
    for (c, a) in classes.iter().zip(&e.auc_per_class) {
        let _ = writeln!(out, "  {:<34} {}", format!("AUC {c} vs rest"), est(a));
    }
    let _ = writeln!(out, "\n  {:<34} estimate (95% CI)", "analytic intervals");
    if let Some(d) = &e.auc_binary_delong {
        let _ = writeln!(
            out,
            "  {:<34} {:.3} ({:.3}-{:.3}), SE {:.3}",
            "AUC, DeLong", d.auc, d.ci.lower, d.ci.upper, d.se
        );
    }
    for (name, p) in [
        ("sensitivity, Wilson", &e.sensitivity_wilson),
        ("specificity, Wilson", &e.specificity_wilson),
        ("accuracy, Wilson", &e.accuracy_wilson),
    ] {
        let _ = writeln!(out, "  {:<34} {}", name, proportion(p));
    }
    if let Some(t) = e.youden_threshold {
        let _ = writeln!(
            out,
            "  (Youden's best threshold on this sample: {t:.3}; choosing it here is optimistic)"
        );
    }
    let _ = writeln!(
        out,
        "\n  confusion matrix (rows: reference, columns: model)"
    );
    let _ = writeln!(
        out,
        "  {:<13}{}",
        "",
        classes
            .iter()
            .map(|c| format!("{c:>13}"))
            .collect::<String>()
    );
    for (c, row) in classes.iter().zip(&e.confusion) {
        let _ = writeln!(
            out,
            "  {c:<13}{}",
            row.iter().map(|n| format!("{n:>13}")).collect::<String>()
        );
    }
    if let Some(c) = &r.comparison {
        let _ = writeln!(
            out,
            "\n  {} vs {} on the {} cases both predicted ({} positive; {} predicted by one only)",
            c.model_a, c.model_b, c.n, c.positives, c.not_in_both
        );
        let _ = writeln!(
            out,
            "  AUC {:.3} vs {:.3}: difference {:+.3} (95% CI {:+.3} to {:+.3}), SE {:.3}, z {:.2}, p {}",
            c.auc_a,
            c.auc_b,
            c.difference,
            c.ci95.lower,
            c.ci95.upper,
            c.se,
            c.z,
            crate::domain::stats::p_text(c.p)
        );
        let _ = writeln!(out, "  {}", c.method);
    }
    let _ = writeln!(out, "\n  published references (PROTOCOL.md)");
    for p in &r.published {
        let _ = writeln!(out, "  - {}: {}", p.source, p.figures);
    }
    out
}

/// `marrow evaluate --task kl|op [--cohort] [--json]`.
pub fn evaluate(g: &Global, a: EvaluateArgs) -> Result<u8> {
    let study = open(g)?;
    let task = task_arg(&a.task)?;
    let phase = cohort_arg(&a.cohort)?;
    if !(0.0..=1.0).contains(&a.threshold) {
        return Err(anyhow!("--threshold {} is outside 0-1", a.threshold));
    }
    let r = evaluation_report(
        &study,
        task,
        phase,
        a.model.as_deref(),
        a.threshold,
        a.resamples,
        a.compare.as_deref(),
    )?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print!("{}", evaluation_text(&r));
    }
    Ok(0)
}
