//! Jobs that run the model over the study (issue 5): inference over the stored
//! images and training on the final grades. A job is a row in `model_jobs`
//! (`db/inference.rs`); the runner here updates its progress and heartbeat after
//! each batch and stops at the next batch when someone cancels it (the TUI's jobs
//! screen or `marrow jobs cancel` from another process).

use super::backend::{BackendChoice, LoadedModel, train_on};
use super::card::ModelCard;
use super::train::{Progress, TrainConfig};
use super::{Example, Image, Input, Task};
use crate::db::Study;
use crate::db::inference::{JobKind, JobState, ModelRow, NewPrediction, PredictTarget, TargetsOf};
use crate::domain::protocol::Phase;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Images per forward pass and per stored batch.
pub const BATCH: usize = 32;

/// What an inference job should cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InferOptions {
    /// `None`: both tasks.
    pub task: Option<Task>,
    /// Predict every image again, not only those without a prediction of the
    /// active model.
    pub all: bool,
    pub backend: BackendChoice,
}

impl InferOptions {
    pub fn scope(&self) -> &'static str {
        if self.all { "all" } else { "pending" }
    }

    pub fn tasks(&self) -> Vec<Task> {
        match self.task {
            Some(t) => vec![t],
            None => vec![Task::Kl, Task::Op],
        }
    }
}

/// How a job went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobReport {
    pub job: i64,
    pub state: JobState,
    pub backend: String,
    pub models: Vec<String>,
    pub total: usize,
    pub predicted: usize,
    /// Image (store path) and why it could not be predicted.
    pub failed: Vec<(String, String)>,
    /// Per task, the images the model does not read (not its card's modality, body
    /// part or view, or not a case's: CT, MR, a screenshot, a knee of unknown side...),
    /// counted by why. Never predicted, never in `total`.
    #[serde(default)]
    pub skipped: BTreeMap<String, BTreeMap<String, usize>>,
    pub message: String,
    pub seconds: f64,
}

/// Reads one stored image as the model receives it: frame 0, modality LUT applied,
/// MONOCHROME1 inverted so bone is bright; colour images are refused.
pub fn model_image(path: &Path) -> Result<Image, String> {
    let image = crate::dicom::decode::load(path).map_err(|e| e.to_string())?;
    let v = crate::dicom::decode::decode_values(&image, 0).map_err(|e| e.to_string())?;
    if v.samples_per_pixel != 1 {
        return Err(format!(
            "{} is a colour image ({}); the models read grayscale radiographs",
            path.display(),
            v.photometric
        ));
    }
    let lut = image.modality_lut;
    let invert = v.photometric == "MONOCHROME1";
    let pixels: Vec<f32> = v
        .values
        .iter()
        .map(|&x| {
            let y = lut.apply(x as f64) as f32;
            if invert { -y } else { y }
        })
        .collect();
    Ok(Image {
        width: v.width,
        height: v.height,
        pixels,
    })
}

fn progress_message(task: Task, done: usize, total: usize) -> String {
    format!("{}: {done} of {total} images", task.code())
}

/// Runs the queued inference job `job` to its end (done, failed or cancelled).
/// `progress(done, total)` is called after each batch.
pub fn run_infer(
    study: &mut Study,
    job: i64,
    opts: &InferOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> crate::db::Result<JobReport> {
    let started = std::time::Instant::now();
    let store = crate::dicom::store::root_for(study.path());
    // Load every model first: a wrong hash or a missing CUDA stops the job before
    // anything is written.
    let mut plan: Vec<(Task, ModelRow, LoadedModel, Vec<PredictTarget>)> = Vec::new();
    let mut skipped: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for task in opts.tasks() {
        let row = study.active_model(task)?;
        let model = match LoadedModel::load(&row.dir, opts.backend) {
            Ok(m) => m,
            Err(e) => {
                let msg = format!("cannot load the {} model {}: {e}", task.code(), row.label());
                study.finish_job(job, JobState::Failed, &msg)?;
                return Ok(JobReport {
                    job,
                    state: JobState::Failed,
                    backend: String::new(),
                    models: vec![row.label()],
                    total: 0,
                    predicted: 0,
                    failed: Vec::new(),
                    skipped: BTreeMap::new(),
                    message: msg,
                    seconds: started.elapsed().as_secs_f64(),
                });
            }
        };
        let targets = study.predict_targets(
            task,
            TargetsOf::Model {
                model: &row,
                all: opts.all,
            },
        )?;
        if !targets.skipped.is_empty() {
            skipped.insert(task.code().to_string(), targets.skipped);
        }
        plan.push((task, row, model, targets.images));
    }
    let total: usize = plan.iter().map(|p| p.3.len()).sum();
    let backend = plan
        .first()
        .map(|p| p.2.backend_name())
        .unwrap_or_else(|| "cpu (burn-ndarray)".into());
    let models: Vec<String> = plan.iter().map(|p| p.1.label()).collect();
    study.start_job(job, &backend, &models.join(", "), total as i64)?;
    let mut done = 0usize;
    let mut predicted = 0usize;
    let mut failed: Vec<(String, String)> = Vec::new();
    progress(0, total);
    for (task, row, model, targets) in &plan {
        for chunk in targets.chunks(BATCH) {
            let ids: Vec<i64> = chunk.iter().map(|t| t.patient_id).collect();
            let clinical = study.clinical_inputs(&ids)?;
            let decoded: Vec<Result<Image, String>> = chunk
                .par_iter()
                .map(|t| model_image(&store.join(&t.store_path)))
                .collect();
            let mut inputs = Vec::new();
            let mut kept = Vec::new();
            for (t, d) in chunk.iter().zip(decoded) {
                match d {
                    Ok(image) => {
                        inputs.push(Input {
                            image,
                            clinical: clinical.get(&t.patient_id).cloned().unwrap_or_default(),
                        });
                        kept.push(t);
                    }
                    Err(e) => failed.push((t.store_path.clone(), e)),
                }
            }
            let preds = model.predict(&inputs);
            let batch: Vec<NewPrediction> = kept
                .iter()
                .zip(preds)
                .map(|(t, p)| NewPrediction {
                    instance_id: t.instance_id,
                    study_id: t.study_id.clone(),
                    side: t.side.clone(),
                    class: p.class,
                    probs: p.probs,
                })
                .collect();
            study.store_predictions(Some(job), *task, row, &backend, &batch)?;
            predicted += batch.len();
            done += chunk.len();
            progress(done, total);
            let msg = progress_message(*task, done, total);
            let cancel =
                study.job_progress(job, predicted as i64, failed.len() as i64, Some(&msg))?;
            if cancel {
                let message = format!(
                    "cancelled after {predicted} of {total} images (kept; `marrow infer --pending` finishes the rest)"
                );
                study.finish_job(job, JobState::Cancelled, &message)?;
                return Ok(JobReport {
                    job,
                    state: JobState::Cancelled,
                    backend,
                    models,
                    total,
                    predicted,
                    failed,
                    skipped,
                    message,
                    seconds: started.elapsed().as_secs_f64(),
                });
            }
        }
    }
    let mut message = format!(
        "{predicted} of {total} images predicted with {}",
        models.join(", ")
    );
    if let Some(words) = skipped_words(&skipped) {
        message.push_str(&format!("; {words}"));
    }
    if !failed.is_empty() {
        message.push_str(&format!("; {} could not be read: ", failed.len()));
        message.push_str(
            &failed
                .iter()
                .take(5)
                .map(|(p, e)| format!("{p}: {e}"))
                .collect::<Vec<_>>()
                .join("; "),
        );
    }
    study.finish_job(job, JobState::Done, &message)?;
    Ok(JobReport {
        job,
        state: JobState::Done,
        backend,
        models,
        total,
        predicted,
        failed,
        skipped,
        message,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// "9 skipped, not what the model reads (kl: 4 CT, 1 MR, 1 view LAT)"; `None` when
/// nothing was skipped.
pub fn skipped_words(skipped: &BTreeMap<String, BTreeMap<String, usize>>) -> Option<String> {
    let n: usize = skipped.values().flat_map(|m| m.values()).sum();
    if n == 0 {
        return None;
    }
    let per_task: Vec<String> = skipped
        .iter()
        .map(|(task, by)| {
            let mut by: Vec<(&String, &usize)> = by.iter().collect();
            by.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            let parts: Vec<String> = by.iter().map(|(why, k)| format!("{k} {why}")).collect();
            format!("{task}: {}", parts.join(", "))
        })
        .collect();
    Some(format!(
        "{n} skipped, not what the model reads ({})",
        per_task.join("; ")
    ))
}

/// Queues and runs an inference job in one go (the CLI and the demo).
pub fn infer(
    study: &mut Study,
    opts: &InferOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> crate::db::Result<JobReport> {
    let job = study.create_job(
        JobKind::Infer,
        opts.task,
        opts.scope(),
        &opts.backend.to_string(),
    )?;
    run_infer(study, job, opts, progress)
}

/// What to train.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOptions {
    pub task: Task,
    pub epochs: Option<usize>,
    pub folds: usize,
    pub backend: BackendChoice,
    /// The cohort whose final grades train the model (retrospective by protocol).
    pub phase: Phase,
    pub min_per_class: Option<usize>,
}

/// A trained and registered model.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    pub job: i64,
    pub model: String,
    pub dir: String,
    pub cases: usize,
    pub images: usize,
    pub skipped: Vec<(String, String)>,
    pub validation: super::card::Metrics,
    /// `"dxa_who"` or `"final_kl"`: the labels trained on.
    pub reference: crate::domain::evaluation::ReferenceStandard,
    /// How validation was split (by patient).
    pub split: String,
    /// k-fold cross-validation: the figures' spread over the folds.
    pub validation_spread: Vec<super::card::FoldSpread>,
    /// The new version's validation figures in a few words.
    pub validation_summary: String,
    /// The active model of the task, which training leaves as it is.
    pub active: String,
    pub active_validation_summary: String,
    pub epochs_run: usize,
    pub seconds: f64,
}

/// Why training did not finish.
#[derive(Debug, thiserror::Error)]
pub enum TrainJobError {
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error("{0}")]
    Train(String),
    #[error("training cancelled; no model version was written")]
    Cancelled,
}

/// Trains a new version of the `task` model on the final grades of the cohort,
/// writes it with its card under the study's model folder and registers it,
/// inactive: the active model stays until someone activates the new one
/// (`marrow models activate`, or the model screen), an audited act of its own. The
/// run is a job (progress per epoch; cancellable).
pub fn train(
    study: &mut Study,
    opts: &TrainOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<TrainReport, TrainJobError> {
    let started = std::time::Instant::now();
    let task = opts.task;
    let cases = study.labelled_cases(task, Some(opts.phase))?;
    let job = study.create_job(
        JobKind::Train,
        Some(task),
        opts.phase.to_string().as_str(),
        &opts.backend.to_string(),
    )?;
    let fail = |study: &mut Study, msg: String| -> Result<TrainReport, TrainJobError> {
        study.finish_job(job, JobState::Failed, &msg)?;
        Err(TrainJobError::Train(msg))
    };
    let store = crate::dicom::store::root_for(study.path());
    let mut targets: Vec<(PredictTarget, u8)> = Vec::new();
    for c in &cases {
        for t in study.image_targets(task, TargetsOf::Case(c))? {
            targets.push((t, c.label));
        }
    }
    let ids: Vec<i64> = targets.iter().map(|(t, _)| t.patient_id).collect();
    let clinical = study.clinical_inputs(&ids)?;
    let decoded: Vec<Result<Image, String>> = targets
        .par_iter()
        .map(|(t, _)| model_image(&store.join(&t.store_path)))
        .collect();
    let mut examples = Vec::new();
    let mut skipped = Vec::new();
    for ((t, label), d) in targets.iter().zip(decoded) {
        match d {
            Ok(image) => examples.push(Example {
                image,
                clinical: clinical.get(&t.patient_id).cloned().unwrap_or_default(),
                label: *label,
                group: t.patient_id as u64,
            }),
            Err(e) => skipped.push((t.store_path.clone(), e)),
        }
    }
    let mut config = TrainConfig::new(task);
    if let Some(e) = opts.epochs {
        config.epochs = e.max(1);
    }
    config.folds = opts.folds;
    if let Some(m) = opts.min_per_class {
        config.min_per_class = m;
    }
    let now = chrono::Utc::now();
    config.version = format!("{}", now.format("%Y%m%d-%H%M%S"));
    config.name = format!("{}-study", task.code());
    let reference = crate::domain::evaluation::ReferenceStandard::of(task);
    config.data_description = format!(
        "{} {} of the {} cohort of this study ({}), {} images, split by patient; trained with marrow train on {}",
        cases.len(),
        match reference {
            crate::domain::evaluation::ReferenceStandard::DxaWho =>
                "patients' DXA WHO stages (eligible, aged 50 or more)",
            crate::domain::evaluation::ReferenceStandard::FinalKl =>
                "knees' final (adjudicated or consensus) KL grades",
        },
        opts.phase,
        reference.code(),
        examples.len(),
        now.format("%Y-%m-%d")
    );
    let dir_name = format!("{}-{}", config.name, config.version);
    let dir = crate::db::inference::models_dir(study.path()).join(&dir_name);
    config.checkpoint_dir = Some(dir.join("checkpoints"));
    study.start_job(
        job,
        &opts.backend.to_string(),
        &format!("{} {}", config.name, config.version),
        config.epochs as i64,
    )?;
    let mut cancelled = false;
    let mut last_beat = std::time::Instant::now();
    let outcome = {
        let study_ref = &*study;
        let mut cb = |p: &Progress| -> bool {
            progress(p);
            if p.step == p.steps || last_beat.elapsed().as_secs() >= 2 {
                last_beat = std::time::Instant::now();
                let msg = match p.fold {
                    Some((f, k)) => format!("fold {f}/{k}, epoch {}/{}", p.epoch, p.epochs),
                    None => format!("epoch {}/{}", p.epoch, p.epochs),
                };
                match study_ref.job_progress(job, p.epoch as i64, 0, Some(&msg)) {
                    Ok(true) => {
                        cancelled = true;
                        return false;
                    }
                    Ok(false) => {}
                    Err(_) => {}
                }
            }
            true
        };
        train_on(opts.backend, &examples, &config, &mut cb)
    };
    let mut outcome = match outcome {
        Ok(o) => o,
        Err(_) if cancelled => {
            study.finish_job(
                job,
                JobState::Cancelled,
                "cancelled; no model version was written",
            )?;
            return Err(TrainJobError::Cancelled);
        }
        Err(e) => return fail(study, e.to_string()),
    };
    if let Err(e) = outcome.save(&dir) {
        return fail(study, e.to_string());
    }
    let _ = std::fs::remove_dir_all(dir.join("checkpoints"));
    let card: ModelCard = outcome.card.clone();
    // The shipped model is registered (and active) before any trained one, so a
    // trained version always has an active model beside it to be compared with.
    let active = study.active_model(task)?;
    let row = study.register_model(
        task,
        &card,
        &dir_name,
        false,
        "marrow train (registered inactive)",
    )?;
    let report = TrainReport {
        job,
        model: row.label(),
        dir: dir.display().to_string(),
        cases: cases.len(),
        images: examples.len(),
        skipped,
        validation: card.validation.clone(),
        reference,
        split: card.training.split.clone(),
        validation_spread: card.validation_spread.clone(),
        validation_summary: row.validation_summary(),
        active: active.label(),
        active_validation_summary: active.validation_summary(),
        epochs_run: outcome.history.len(),
        seconds: started.elapsed().as_secs_f64(),
    };
    study.finish_job(
        job,
        JobState::Done,
        &format!(
            "{} trained on {} images of {} cases; registered inactive ({} stays active)",
            report.model, report.images, report.cases, report.active
        ),
    )?;
    Ok(report)
}
