//! The model card: `models/<name>/model.toml` beside the weights file (issue 5).
//!
//! The card says what the model is (name, version, task, classes), how its input
//! is prepared (the [`ModelSpec`]: preprocessing, clinical features and their
//! normalisation, architecture), what it was trained on, its validation metrics,
//! and the SHA-256 of the weights file. Loading checks that hash and refuses a
//! mismatch, naming the file and both hashes.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Task;
use super::model::ModelSpec;
use crate::domain::reading::ImageInputs;

/// What the shipped model of `task` reads, and what a card that does not say reads:
/// KL, DX and CR knee radiographs in AP or PA view; OP, DX and CR hip or pelvis
/// radiographs in AP view.
pub fn default_inputs(task: Task) -> ImageInputs {
    match task {
        Task::Kl => ImageInputs::knee_default(),
        Task::Op => ImageInputs::op_default(),
    }
}

/// File name of the card inside a model directory.
pub const CARD_FILE: &str = "model.toml";
/// Default file name of the weights inside a model directory.
pub const WEIGHTS_FILE: &str = "weights.mpk";

/// What the shipped weights were trained on, said plainly.
pub const PHANTOM_TRAINING_NOTE: &str = "trained on synthetic phantoms, not for clinical use; \
train on the cohort with `marrow train`";

/// Why a model could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum CardError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("model card {path} is not valid: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error(
        "weights file {file} does not match its model card: SHA-256 {actual}, the card expects {expected}; \
refusing to load it (restore the file or retrain with `marrow train`)"
    )]
    HashMismatch {
        file: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("cannot decode weights {file}: {message}")]
    Weights { file: PathBuf, message: String },
}

/// Training data and procedure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingInfo {
    /// Plain description of the data (for the shipped weights: [`PHANTOM_TRAINING_NOTE`]).
    pub data: String,
    pub n_train: usize,
    pub n_validation: usize,
    /// Cases per class in the training set, index = class.
    pub class_counts: Vec<usize>,
    pub epochs_run: usize,
    pub best_epoch: usize,
    pub seed: u64,
    pub backend: String,
    /// Seconds of wall time.
    pub seconds: f64,
    /// `k` when k-fold cross-validation produced the metrics; 0 = one validation split.
    #[serde(default)]
    pub folds: usize,
    /// How the validation part (or the folds) was drawn; empty on cards written
    /// before marrow split by patient.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub split: String,
}

/// Metrics on the validation set (or pooled out-of-fold predictions).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Metrics {
    pub n: usize,
    pub loss: f64,
    pub accuracy: f64,
    /// Quadratic-weighted kappa against the labels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quadratic_kappa: Option<f64>,
    /// One-vs-rest AUC per class (absent where undefined).
    pub auc_per_class: Vec<ClassAuc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auc_macro: Option<f64>,
    /// AUC of "class >= positive_from" (OA: KL >= 2; osteoporosis vs not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auc_binary: Option<f64>,
    /// Rows = label, columns = prediction.
    pub confusion: Vec<Vec<u64>>,
}

/// How a figure spread over the folds of a cross-validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoldSpread {
    pub figure: String,
    pub folds: usize,
    pub mean: f64,
    /// Sample standard deviation over the folds where the figure is defined.
    pub sd: f64,
    pub min: f64,
    pub max: f64,
}

/// One-vs-rest AUC of one class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassAuc {
    pub class: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auc: Option<f64>,
}

/// The card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    pub name: String,
    pub version: String,
    pub created: String,
    /// Weights file name, relative to the card's directory.
    pub weights: String,
    pub weights_sha256: String,
    /// Plainly: what this model may be used for.
    pub intended_use: String,
    /// The images the model reads: modalities, body parts, views. A card without
    /// it (written before marrow checked) reads what the shipped model of its task
    /// reads ([`default_inputs`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<ImageInputs>,
    pub spec: ModelSpec,
    pub training: TrainingInfo,
    pub validation: Metrics,
    /// k-fold cross-validation: how the figures spread over the folds (the
    /// `validation` figures are the pooled out-of-fold ones).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validation_spread: Vec<FoldSpread>,
}

/// Hex SHA-256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl ModelCard {
    /// Reads `dir/model.toml` (no weights check).
    pub fn read(dir: &Path) -> Result<ModelCard, CardError> {
        let path = dir.join(CARD_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| CardError::Read {
            path: path.clone(),
            source,
        })?;
        let card: ModelCard = toml::from_str(&text).map_err(|e| CardError::Invalid {
            path: path.clone(),
            message: e.to_string(),
        })?;
        if let Some(Err(message)) = card.inputs.as_ref().map(ImageInputs::validate) {
            return Err(CardError::Invalid { path, message });
        }
        if card.spec.classes.len() != card.spec.task.num_classes() {
            return Err(CardError::Invalid {
                path,
                message: format!(
                    "task {} has {} classes, the card lists {}",
                    card.spec.task.code(),
                    card.spec.task.num_classes(),
                    card.spec.classes.len()
                ),
            });
        }
        Ok(card)
    }

    /// The images the model reads (the card's `[inputs]`, else its task's default).
    pub fn inputs(&self) -> ImageInputs {
        self.inputs
            .clone()
            .unwrap_or_else(|| default_inputs(self.spec.task))
    }

    /// Path of the weights file.
    pub fn weights_path(&self, dir: &Path) -> PathBuf {
        dir.join(&self.weights)
    }

    /// Reads the weights file and checks its SHA-256 against the card.
    pub fn read_weights(&self, dir: &Path) -> Result<Vec<u8>, CardError> {
        let file = self.weights_path(dir);
        let bytes = std::fs::read(&file).map_err(|source| CardError::Read {
            path: file.clone(),
            source,
        })?;
        let actual = sha256_hex(&bytes);
        if !actual.eq_ignore_ascii_case(self.weights_sha256.trim()) {
            return Err(CardError::HashMismatch {
                file,
                expected: self.weights_sha256.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Reads the card and its checked weights.
    pub fn load(dir: &Path) -> Result<(ModelCard, Vec<u8>), CardError> {
        let card = ModelCard::read(dir)?;
        let bytes = card.read_weights(dir)?;
        Ok((card, bytes))
    }

    /// Writes the weights and the card (with the weights' hash) into `dir`,
    /// creating it. The weights are written first, each file through a temporary
    /// name and a rename.
    pub fn save(&mut self, dir: &Path, weights: &[u8]) -> Result<(), CardError> {
        std::fs::create_dir_all(dir).map_err(|source| CardError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        if self.weights.is_empty() {
            self.weights = WEIGHTS_FILE.to_string();
        }
        self.weights_sha256 = sha256_hex(weights);
        let text = toml::to_string_pretty(self).map_err(|e| CardError::Invalid {
            path: dir.join(CARD_FILE),
            message: e.to_string(),
        })?;
        let header = format!(
            "# Model card of `{}` {} (marrow, issue 5). {}\n# The weights file must have the SHA-256 below; loading refuses any other.\n\n",
            self.name, self.version, self.intended_use
        );
        write_atomic(&dir.join(&self.weights), weights)?;
        write_atomic(&dir.join(CARD_FILE), (header + &text).as_bytes())
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CardError> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|source| CardError::Write {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIPPED_KL: &str = include_str!("../../models/kl/model.toml");

    fn card_in(dir: &Path, text: &str) -> Result<ModelCard, CardError> {
        std::fs::write(dir.join(CARD_FILE), text).unwrap();
        ModelCard::read(dir)
    }

    #[test]
    fn a_card_names_the_images_it_reads_and_an_old_card_reads_the_shipped_ones() {
        let dir = tempfile::tempdir().unwrap();
        let card = card_in(dir.path(), SHIPPED_KL).unwrap();
        assert_eq!(card.inputs, Some(ImageInputs::knee_default()));
        // A card written before [inputs]: the task's default.
        let start = SHIPPED_KL.find("[inputs]").unwrap();
        let end = SHIPPED_KL.find("[spec]").unwrap();
        let old = format!("{}{}", &SHIPPED_KL[..start], &SHIPPED_KL[end..]);
        let card = card_in(dir.path(), &old).unwrap();
        assert_eq!(card.inputs, None);
        assert_eq!(card.inputs(), default_inputs(Task::Kl));
        // An empty list is refused, naming it.
        let bad = SHIPPED_KL.replace("modalities = [\"DX\", \"CR\"]", "modalities = []");
        let e = card_in(dir.path(), &bad).unwrap_err().to_string();
        assert!(
            e.contains("inputs.modalities is empty: the model would read nothing"),
            "{e}"
        );
        // An unknown key in [inputs] too.
        let bad = SHIPPED_KL.replace("views = [", "view = [");
        let e = card_in(dir.path(), &bad).unwrap_err().to_string();
        assert!(e.contains("view"), "{e}");
    }
}
